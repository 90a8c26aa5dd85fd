"""Never lose a file: atomic writes, links, full disks, killed runs, two processes.

Each test checks what is on disk afterwards, byte for byte, not only what was said.
"""

from __future__ import annotations

import errno
import json
import math
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from densitykit import atomic, runs
from densitykit.cli import app
from densitykit.errors import CheckpointError, RunFolderError
from densitykit.runfolder import (
    LOCK_FILE,
    PREVIOUS_RUN,
    RunLock,
    is_run_folder,
    prepare_run_folder,
)

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
TINY = [
    "--grid-size", "16", "--data-option", "num_samples=200", "--hidden-sizes", "8",
    "--epochs", "1", "--batch-size", "100", "--quiet",
]  # fmt: skip
TEMPORARY = re.compile(r"^\..+\.dk[0-9]+_[A-Za-z0-9_]+\.tmp$")


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` with its bytes (links as their target's name)."""
    out = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_symlink():
            out[key] = b"-> " + os.readlink(path).encode()
        elif path.is_file():
            out[key] = path.read_bytes()
    return out


def one_line(result) -> bool:
    lines = [line for line in result.output.splitlines() if line.strip()]
    return result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory) -> Path:
    """A finished run of the smiley (2-D) data set, never modified by the tests."""
    out = tmp_path_factory.mktemp("runs") / "run"
    result = invoke("fit", *TINY, "--out", out)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def fresh_run(tmp_path) -> Path:
    out = tmp_path / "run"
    assert invoke("fit", *TINY, "--out", out).exit_code == 0
    return out


# -- atomic writes -------------------------------------------------------------------------
def test_atomic_write_replaces_a_link_instead_of_writing_through_it(tmp_path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "p.png").write_bytes(b"the user's picture")
    work = tmp_path / "work"
    work.mkdir()
    (work / "l.png").symlink_to("../victim/p.png")
    atomic.atomic_write(work / "l.png", lambda f: f.write(b"new"))
    assert (victim / "p.png").read_bytes() == b"the user's picture"
    assert not (work / "l.png").is_symlink() and (work / "l.png").read_bytes() == b"new"


def test_a_full_disk_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch) -> None:
    target = tmp_path / "user.png"
    target.write_bytes(b"the user's picture")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CheckpointError, match=r"user\.png.*No space left.*previous file is intact"):
        atomic.atomic_write(target, lambda f: f.write(b"x" * 4096))
    assert target.read_bytes() == b"the user's picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["user.png"]


def test_temporaries_of_killed_processes_go_and_live_ones_stay(tmp_path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    stale = tmp_path / f".s.npy.dk{int(dead.stdout)}_abc123.tmp"
    live = tmp_path / f".t.npy.dk{os.getpid()}_abc123.tmp"
    mine = tmp_path / ".s.npy.backup.tmp"  # not our pattern: a user's file
    for path in (stale, live, mine):
        path.write_bytes(b"627 MB, say")
    atomic.atomic_write(tmp_path / "other.txt", lambda f: f.write(b"x"))
    assert not stale.exists() and live.exists() and mine.exists()


# -- every file densitykit writes goes through the atomic path ---------------------------------
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_OPENED: list[tuple[str, str]] = []
_AUDITING = [False]


def _audit(event: str, args: tuple) -> None:
    if not _AUDITING[0] or event != "open":
        return
    path, mode, flags = args
    writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
        isinstance(flags, int) and flags & _WRITE_FLAGS
    )
    if writes and isinstance(path, (str, bytes, os.PathLike)):
        _OPENED.append((os.fsdecode(path), str(mode)))


sys.addaudithook(_audit)


@pytest.mark.parametrize(
    "command",
    [
        ["fit", *TINY, "--out", "{tmp}/new"],
        ["sample", "{run}", "-n", "5", "-o", "{tmp}/s.npy"],
        ["sample", "{run}", "-n", "5", "-o", "{tmp}/s.png"],
        ["score", "{run}", "2d-smiley", "--data-option", "grid_size=16", "-o", "{tmp}/scores.csv"],
        ["score", "{run}", "2d-smiley", "--data-option", "grid_size=16", "-o", "{tmp}/scores.npy"],
    ],
    ids=lambda c: " ".join(c[:2] + c[-1:]),
)
def test_every_file_a_command_writes_is_a_temporary_renamed_into_place(
    run_folder, tmp_path, command
) -> None:
    """An audit hook sees every ``open`` for writing: each must be an atomic temporary
    (or the run folder's lock). A picture written in place would show up here."""
    args = [a.format(tmp=tmp_path, run=run_folder) for a in command]
    _OPENED.clear()
    _AUDITING[0] = True
    try:
        result = invoke(*args)
    finally:
        _AUDITING[0] = False
    assert result.exit_code == 0, result.output
    written = [(p, m) for p, m in _OPENED if not p.startswith(("/dev/", "/proc/"))]
    in_place = [
        p
        for p, _ in written
        if not TEMPORARY.match(Path(p).name) and Path(p).name != LOCK_FILE
        and Path(p).is_relative_to(tmp_path) | Path(p).is_relative_to(run_folder)
    ]  # fmt: skip
    assert in_place == [], in_place
    assert written, "the audit hook saw no write at all: it is not working"


# -- pictures and outputs in a user's folder ------------------------------------------------------
def test_inpaint_out_through_a_link_replaces_the_link_not_its_target(tmp_path) -> None:
    images = tmp_path / "images.npy"
    np.save(images, (np.random.default_rng(0).random((60, 4, 4)) > 0.5).astype(np.int64))
    run = tmp_path / "run"
    result = invoke("fit", "--data", images, "--hidden-sizes", "8", "--epochs", "1",
                    "--batch-size", "20", "--quiet", "--out", run)  # fmt: skip
    assert result.exit_code == 0, result.output
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "p.png").write_bytes(b"the user's picture")
    (tmp_path / "l.png").symlink_to(victim / "p.png")
    refused = invoke("inpaint", run, "--out", tmp_path / "l.png", "--num-images", "2")
    assert refused.exit_code == 1 and "already exists" in refused.output
    result = invoke("inpaint", run, "--out", tmp_path / "l.png", "--num-images", "2",
                    "--overwrite")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (victim / "p.png").read_bytes() == b"the user's picture"
    assert not (tmp_path / "l.png").is_symlink()
    assert (tmp_path / "l.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("out", ["s.npy", "s.png"])
def test_sample_refuses_a_dangling_link_without_overwrite(run_folder, tmp_path, out) -> None:
    link = tmp_path / out
    link.symlink_to(tmp_path / "elsewhere" / out)
    result = invoke("sample", run_folder, "-n", "3", "-o", link)
    assert result.exit_code == 1 and "already exists" in result.output
    assert link.is_symlink() and not (tmp_path / "elsewhere").exists()


def test_score_refuses_a_dangling_link_without_overwrite(run_folder, tmp_path) -> None:
    link = tmp_path / "scores.csv"
    link.symlink_to(tmp_path / "elsewhere.csv")
    result = invoke("score", run_folder, "2d-smiley", "--data-option", "grid_size=16", "-o", link)
    assert result.exit_code == 1 and "already exists" in result.output
    assert link.is_symlink() and not (tmp_path / "elsewhere.csv").exists()


@pytest.mark.parametrize("command", ["inpaint", "sample"])
def test_a_full_disk_keeps_the_users_picture(tmp_path, monkeypatch, command) -> None:
    images = tmp_path / "images.npy"
    np.save(images, (np.random.default_rng(0).random((60, 4, 4)) > 0.5).astype(np.int64))
    run = tmp_path / "run"
    assert invoke("fit", "--data", images, "--hidden-sizes", "8", "--epochs", "1",
                  "--quiet", "--out", run).exit_code == 0  # fmt: skip
    picture = tmp_path / "user.png"
    picture.write_bytes(b"the user's picture")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    args = ["--num-images", "2"] if command == "inpaint" else ["-n", "4"]
    result = invoke(command, run, "--out" if command == "inpaint" else "-o", picture,
                    *args, "--overwrite")  # fmt: skip
    assert one_line(result), result.output
    assert "user.png" in result.output and "No space left" in result.output
    assert picture.read_bytes() == b"the user's picture"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images.npy", "run", "user.png"]


def test_a_full_disk_while_training_keeps_the_run_resumable(fresh_run, monkeypatch) -> None:
    before = files(fresh_run)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    result = invoke("resume", fresh_run, "--epochs", "2", "--quiet")
    assert one_line(result) and "No space left" in result.output, result.output
    monkeypatch.undo()
    assert files(fresh_run) == before  # not even config.json's new --epochs
    assert invoke("resume", fresh_run, "--epochs", "2", "--quiet").exit_code == 0


# -- what is a run folder ------------------------------------------------------------------------
def test_a_users_picture_in_a_run_folder_stops_overwrite(fresh_run, tmp_path) -> None:
    (fresh_run / "my_vacation_photo.png").write_bytes(b"precious")
    before = files(fresh_run)
    result = invoke("fit", *TINY, "--out", fresh_run, "--overwrite")
    assert one_line(result) and "'my_vacation_photo.png'" in result.output
    assert files(fresh_run) == before


def test_a_picture_sampled_into_a_run_folder_is_the_users(fresh_run) -> None:
    assert invoke("sample", fresh_run, "-n", "4", "-o", fresh_run / "x.png").exit_code == 0
    before = files(fresh_run)
    result = invoke("fit", *TINY, "--out", fresh_run, "--overwrite")
    assert one_line(result) and "'x.png'" in result.output
    assert files(fresh_run) == before


def test_a_config_with_only_a_version_key_is_not_a_run_config(tmp_path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "config.json").write_text('{"densitykit_version": "9", "mine": "precious"}')
    (folder / "metrics.json").write_text('{"my": "numbers"}')
    before = files(folder)
    assert not is_run_folder(folder, runs.RunConfig.from_dict)
    result = invoke("fit", *TINY, "--out", folder, "--overwrite")
    assert one_line(result) and "not a densitykit run config" in result.output
    assert files(folder) == before


def test_overwrite_of_a_users_folder_writes_nothing_into_it(tmp_path) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):
        assert invoke("fit", *TINY, "--out", folder, *extra).exit_code == 1
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"]  # no lock file either


# -- a replacing run killed before its first epoch -------------------------------------------------
def _kill_during_replacement(run: Path) -> dict[str, bytes]:
    """The state a kill -9 leaves after the old run was moved aside and the new
    config written, before the first epoch: what a killed ``fit --overwrite`` leaves."""
    before = files(run)
    replacement = prepare_run_folder(run, overwrite=True, parse_config=runs.RunConfig.from_dict)
    assert replacement is not None and (run / PREVIOUS_RUN).is_dir()
    (run / "config.json").write_text(json.dumps({"densitykit_version": "x", "new": True}))
    return before


@pytest.mark.parametrize("then", ["resume", "eval", "sample", "score", "fit"])
def test_the_next_command_puts_the_replaced_run_back(fresh_run, tmp_path, then) -> None:
    before = _kill_during_replacement(fresh_run)
    args = {
        "resume": ["resume", fresh_run, "--quiet"],
        "eval": ["eval", fresh_run],
        "sample": ["sample", fresh_run, "-n", "3", "-o", tmp_path / "s.npy"],
        "score": ["score", fresh_run, "2d-smiley", "--data-option", "grid_size=16"],
        "fit": ["fit", *TINY, "--out", fresh_run],
    }[then]
    result = invoke(*args)
    assert "previous run was put back" in result.output, result.output
    if then == "fit":  # the folder holds a run again: fit without --overwrite refuses
        assert result.exit_code == 1 and "already exists" in result.output
    else:
        assert result.exit_code == 0, result.output
    assert not (fresh_run / PREVIOUS_RUN).exists()
    restored = files(fresh_run)
    for name in ("config.json", "checkpoint.pt"):
        assert restored[name] == before[name]
    if then == "resume":  # the run it resumed is the old one, finished: nothing trained
        assert "is finished" in result.output


def test_a_kill_while_moving_the_old_run_aside_is_undone(fresh_run) -> None:
    before = files(fresh_run)
    moving = fresh_run / f"{PREVIOUS_RUN}.moving"
    moving.mkdir()
    for name in ("checkpoint.pt", "metrics.json"):
        os.rename(fresh_run / name, moving / name)
    result = invoke("eval", fresh_run)
    assert result.exit_code == 0 and "put back" in result.output, result.output
    assert files(fresh_run) == {**before, LOCK_FILE: files(fresh_run)[LOCK_FILE]}


@pytest.mark.slow
def test_a_real_kill_9_before_the_first_epoch(fresh_run) -> None:
    """A real ``fit --overwrite`` killed with SIGKILL while it is in its first epoch."""
    before = files(fresh_run)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "densitykit", "fit", "--grid-size", "16", "--data-option",
         "num_samples=200000", "--hidden-sizes", "8", "--epochs", "1", "--batch-size", "1",
         "--quiet", "--out", str(fresh_run), "--overwrite"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not (fresh_run / PREVIOUS_RUN).is_dir() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    process.kill()
    process.wait()
    assert (fresh_run / PREVIOUS_RUN).is_dir(), "the replacing run never started"
    result = invoke("eval", fresh_run)
    assert result.exit_code == 0 and "put back" in result.output, result.output
    after = files(fresh_run)
    assert {k: v for k, v in after.items() if k != LOCK_FILE} == {
        k: v for k, v in before.items() if k != LOCK_FILE
    }


# -- two processes, one run folder -----------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ["fit", *TINY, "--out", "{run}", "--overwrite"],
        ["resume", "{run}", "--epochs", "3", "--quiet"],
    ],
    ids=["fit --overwrite", "resume"],
)
def test_a_second_writer_is_refused_naming_the_holder(fresh_run, args) -> None:
    before = files(fresh_run)
    with RunLock(fresh_run):
        result = invoke(*[a.format(run=fresh_run) for a in args])
    assert one_line(result), result.output
    assert f"pid {os.getpid()}" in result.output and "another densitykit process" in result.output
    assert files(fresh_run) == before


@pytest.mark.slow
def test_two_real_processes_never_interleave(fresh_run) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        [sys.executable, "-m", "densitykit", "resume", str(fresh_run), "--epochs", "400",
         "--quiet"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        lock = fresh_run / LOCK_FILE
        while f"pid {first.pid}" not in lock.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = subprocess.run(
            [sys.executable, "-m", "densitykit", "fit", *TINY, "--out", str(fresh_run),
             "--overwrite"],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    finally:
        first.kill()
        first.wait()
    assert second.returncode == 1, second.stderr
    lines = [line for line in second.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and f"pid {first.pid}" in lines[0], second.stderr
    config = json.loads((fresh_run / "config.json").read_text())
    assert config["train"]["epochs"] == 400  # the first writer's config, untouched


# -- non-finite models are never kept ------------------------------------------------------------
def test_a_model_that_never_had_a_finite_validation_nll_is_not_saved(tmp_path) -> None:
    out = tmp_path / "run"
    result = invoke("fit", "--grid-size", "16", "--data-option", "num_samples=200",
                    "--hidden-sizes", "8", "--epochs", "1", "--lr", "1e30",
                    "--batch-size", "100000", "--quiet", "--out", out)  # fmt: skip
    assert one_line(result), result.output
    assert "no model was saved" in result.output
    assert not (out / "checkpoint.pt").exists() and not (out / "train_state.pt").exists()
    assert invoke("eval", out).exit_code == 1


def test_metrics_log_is_strict_json(fresh_run) -> None:
    for line in (fresh_run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} is not JSON"))
        assert all(not isinstance(v, float) or math.isfinite(v) for v in record.values())


# -- sizes and finished runs ----------------------------------------------------------------------
@pytest.mark.parametrize("size", ["-5", "0"])
def test_score_refuses_a_batch_size_that_is_not_positive(run_folder, tmp_path, size) -> None:
    out = tmp_path / "scores.csv"
    result = invoke("score", run_folder, "2d-smiley", "--data-option", "grid_size=16",
                    "--batch-size", size, "-o", out)  # fmt: skip
    assert one_line(result) and "batch_size must be a positive integer" in result.output
    assert not out.exists()


def test_resume_of_a_trained_run_without_its_state_is_refused(fresh_run) -> None:
    (fresh_run / "train_state.pt").unlink()
    before = files(fresh_run)
    result = invoke("resume", fresh_run, "--epochs", "3", "--quiet")
    assert one_line(result) and "train_state.pt is missing" in result.output
    assert files(fresh_run) == before


def test_resume_of_a_finished_run_says_so(fresh_run) -> None:
    result = invoke("resume", fresh_run, "--quiet")
    assert result.exit_code == 0 and "is finished" in result.output


def test_a_run_recorded_on_cuda_is_used_on_the_cpu(fresh_run, tmp_path) -> None:
    config = json.loads((fresh_run / "config.json").read_text())
    config["train"]["device"] = "cuda"
    (fresh_run / "config.json").write_text(json.dumps(config))
    for args in (
        ["eval", fresh_run, "--device", "cpu"],
        ["sample", fresh_run, "-n", "3", "-o", tmp_path / "s.npy", "--device", "cpu"],
        ["score", fresh_run, "2d-smiley", "--data-option", "grid_size=16", "--device", "cpu"],
    ):
        result = invoke(*args)
        assert result.exit_code == 0, (args, result.output)


def test_lock_is_released_when_the_process_ends(fresh_run) -> None:
    code = f"from densitykit.runfolder import RunLock; RunLock(__import__('pathlib').Path({str(fresh_run)!r})).acquire(); import os; os._exit(0)"  # noqa: E501
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    with RunLock(fresh_run):
        pass
    with pytest.raises(RunFolderError), RunLock(fresh_run), RunLock(fresh_run):
        pass


# -- a full disk at every write of every command ------------------------------------------------
class _FullDiskAt:
    """``os.fsync`` that fails with ENOSPC at its ``at``-th call (counting from 0), and
    counts the calls: every atomic write makes exactly one."""

    def __init__(self, at: int | None) -> None:
        self.at = at
        self.calls = 0
        self.real = os.fsync

    def __call__(self, fd: int) -> None:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # the folder's fsync after a rename
            return self.real(fd)
        index, self.calls = self.calls, self.calls + 1
        if index == self.at:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.real(fd)


FULL_DISK_COMMANDS = {
    "fit --overwrite": ["fit", *TINY, "--epochs", "2", "--seed", "3", "--out", "{run}",
                        "--overwrite"],
    "resume --epochs": ["resume", "{run}", "--epochs", "2", "--quiet"],
    "sample .npy": ["sample", "{run}", "-n", "5", "-o", "{out}/s.npy", "--overwrite"],
    "sample .png": ["sample", "{run}", "-n", "5", "-o", "{out}/s.png", "--overwrite"],
    "score .csv": ["score", "{run}", "2d-smiley", "--data-option", "grid_size=16", "-o",
                   "{out}/s.csv", "--overwrite"],
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FULL_DISK_COMMANDS))
def test_a_full_disk_at_any_write_loses_nothing(tmp_path, monkeypatch, name) -> None:
    """Fail the 1st, 2nd, ... write of a command with ENOSPC: each time one line naming
    the file, the user's files untouched, and the run still usable afterwards."""
    template = tmp_path / "template"
    assert invoke("fit", *TINY, "--out", template).exit_code == 0
    counter = _FullDiskAt(None)
    monkeypatch.setattr(os, "fsync", counter)
    work = tmp_path / "count"
    _copy_tree(template, work / "run")
    (work / "out").mkdir()
    args = [a.format(run=work / "run", out=work / "out") for a in FULL_DISK_COMMANDS[name]]
    assert invoke(*args).exit_code == 0
    writes = counter.calls
    assert writes >= 1
    for at in range(writes):
        work = tmp_path / f"at{at}"
        _copy_tree(template, work / "run")
        (work / "out").mkdir()
        for picture in ("s.npy", "s.png", "s.csv"):
            (work / "out" / picture).write_bytes(b"the user's " + picture.encode())
        before_out = files(work / "out")
        before_run = files(work / "run")
        monkeypatch.setattr(os, "fsync", _FullDiskAt(at))
        args = [a.format(run=work / "run", out=work / "out") for a in FULL_DISK_COMMANDS[name]]
        result = invoke(*args)
        monkeypatch.setattr(os, "fsync", counter.real)
        failures = [line for line in result.output.splitlines() if line.startswith("error:")]
        assert result.exit_code == 1 and "Traceback" not in result.output, (at, result.output)
        assert len(failures) == 1 and "No space left on device" in failures[0], result.output
        assert files(work / "out") == before_out, at
        # The run is whole: the old one (a write failed before the new run's first
        # epoch), or the new one, resumable.
        after_run = files(work / "run")
        if after_run.get("checkpoint.pt") == before_run["checkpoint.pt"]:
            assert invoke("eval", work / "run").exit_code == 0, at
        else:
            resumed = invoke("resume", work / "run", "--quiet")
            assert resumed.exit_code == 0, (at, resumed.output)


def _copy_tree(source: Path, target: Path) -> None:
    target.mkdir(parents=True)
    for path in source.iterdir():
        if path.is_file() and not path.name.startswith("."):
            (target / path.name).write_bytes(path.read_bytes())
