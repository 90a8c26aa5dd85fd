"""A user's files are sacred: run folders, plug-ins, terminal text, resume, size bounds.

Each test works on real files in a temporary folder and checks what is on disk
afterwards, not only what the command said.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import densitykit as dk
from densitykit import checkpoint, runs
from densitykit.cli import app
from densitykit.model import ModelConfig
from densitykit.runfolder import is_run_folder
from densitykit.train import Callback, TrainConfig

runner = CliRunner()
TINY = [
    "--grid-size", "16", "--data-option", "num_samples=200", "--hidden-sizes", "8",
    "--epochs", "1", "--batch-size", "100", "--quiet",
]  # fmt: skip


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path) with the SHA-256 of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def user_folder(path: Path) -> Path:
    """A folder of a user's own files (one in a subfolder)."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "thesis.tex").write_text("\\section{Results}\n")
    (path / "data").mkdir(exist_ok=True)
    (path / "data" / "table.csv").write_text("a,b\n1,2\n")
    return path


def small_config(**train) -> runs.RunConfig:
    return runs.RunConfig(
        data=runs.DataConfig("2d-smiley", {"grid_size": 16, "num_samples": 200}),
        model=ModelConfig(hidden_sizes=(8,)),
        train=TrainConfig(epochs=1, batch_size=100, **train),
    )


@pytest.fixture
def finished_run(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    assert invoke("fit", *TINY, "--out", out).exit_code == 0
    return out


# -- --overwrite -------------------------------------------------------------------------------
def test_overwrite_never_deletes_the_working_folder(tmp_path, monkeypatch) -> None:
    home = user_folder(tmp_path / "home")
    before = snapshot(home)
    monkeypatch.chdir(home)
    result = invoke("fit", *TINY, "--out", ".", "--overwrite")
    assert result.exit_code == 1
    assert "never replaces the current folder" in result.output
    assert snapshot(home) == before


def test_overwrite_never_deletes_a_folder_holding_the_working_folder(tmp_path, monkeypatch):
    home = user_folder(tmp_path / "home")
    (home / "deeper").mkdir()
    before = snapshot(home)
    monkeypatch.chdir(home / "deeper")
    for out in ("..", str(home)):
        result = invoke("fit", *TINY, "--out", out, "--overwrite")
        assert result.exit_code == 1, result.output
        assert "nothing was deleted" in result.output
    assert snapshot(home) == before


def test_overwrite_refuses_a_folder_of_user_files(tmp_path) -> None:
    folder = user_folder(tmp_path / "mine")
    before = snapshot(folder)
    result = invoke("fit", *TINY, "--out", folder, "--overwrite")
    assert result.exit_code == 1
    assert "not one" in result.output and "nothing was deleted" in result.output
    assert snapshot(folder) == before


def test_overwrite_refuses_a_run_folder_that_also_holds_user_files(finished_run) -> None:
    (finished_run / "my-notes.txt").write_text("do not lose me")
    before = snapshot(finished_run)
    result = invoke("fit", *TINY, "--out", finished_run, "--overwrite")
    assert result.exit_code == 1 and "'my-notes.txt'" in result.output
    assert snapshot(finished_run) == before


def test_overwrite_refuses_a_folder_whose_config_is_not_a_run_config(tmp_path) -> None:
    folder = tmp_path / "other"
    folder.mkdir()
    (folder / "config.json").write_text('{"name": "some other tool"}')
    result = invoke("fit", *TINY, "--out", folder, "--overwrite")
    assert result.exit_code == 1 and "not a densitykit run config" in result.output
    assert (folder / "config.json").read_text() == '{"name": "some other tool"}'


def test_overwrite_replaces_a_run_folder(finished_run) -> None:
    first = json.loads((finished_run / "config.json").read_text())
    result = invoke("fit", *TINY, "--seed", "7", "--out", finished_run, "--overwrite")
    assert result.exit_code == 0, result.output
    second = json.loads((finished_run / "config.json").read_text())
    assert first["train"]["seed"] == 0 and second["train"]["seed"] == 7
    assert is_run_folder(finished_run)
    leftovers = [p.name for p in finished_run.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # the moved-aside old run is gone


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--device", "cpu", "--precision", "bf16"], "CUDA only"),
        (["--eval-masks", "5"], "more masks than the model has"),
        (["--hidden-sizes", "1000000000"], "would need"),
    ],
)
def test_bad_settings_are_refused_before_the_old_run_is_touched(
    finished_run, extra, message
) -> None:
    before = snapshot(finished_run)
    result = invoke("fit", *TINY, *extra, "--out", finished_run, "--overwrite")
    assert result.exit_code == 1 and message in result.output, result.output
    assert snapshot(finished_run) == before


@pytest.mark.parametrize(
    "extra", [["--device", "cpu", "--precision", "bf16"], ["--eval-masks", "5"]]
)
def test_bad_settings_write_nothing(tmp_path, extra) -> None:
    out = tmp_path / "new"
    result = invoke("fit", *TINY, *extra, "--out", out)
    assert result.exit_code == 1
    assert not out.exists()  # no folder with a lone config.json blocks the next try
    assert invoke("fit", *TINY, "--out", out).exit_code == 0


class _FailInFirstEpoch(Callback):
    def on_batch_end(self, state, loss) -> None:
        raise RuntimeError("the GPU fell off the bus")


def test_a_replacing_run_that_fails_before_its_first_epoch_puts_the_old_run_back(
    finished_run,
) -> None:
    before = snapshot(finished_run)
    with pytest.raises(RuntimeError, match="fell off"):
        runs.fit_run(small_config(), finished_run, overwrite=True, callbacks=[_FailInFirstEpoch()])
    assert snapshot(finished_run) == before
    assert [p.name for p in finished_run.parent.iterdir() if p.name.startswith(".")] == []


# -- plug-ins are never imported from a run folder ---------------------------------------------
EVIL = "from pathlib import Path\nPath({marker!r}).write_text('ran')\n"


@pytest.fixture
def plugin_run(tmp_path):
    plugin = tmp_path / "good_head.py"
    plugin.write_text(
        "import densitykit as dk\n"
        "from densitykit.heads import CategoricalHead\n"
        "@dk.heads.register('test-runfolder-head')\n"
        "class GoodHead(CategoricalHead):\n"
        "    '''A categorical head from a user file.'''\n"
    )
    out = tmp_path / "run"
    result = invoke("fit", *TINY, "--plugin", plugin, "--head", "test-runfolder-head", "--out", out)
    assert result.exit_code == 0, result.output
    dk.heads.HEADS.unregister("test-runfolder-head")
    sys.modules.pop("densitykit_plugin_good_head", None)
    yield out, plugin
    if "test-runfolder-head" in dk.heads.names():
        dk.heads.HEADS.unregister("test-runfolder-head")
    sys.modules.pop("densitykit_plugin_good_head", None)


def test_a_run_needing_a_plugin_says_which_and_does_not_import_it(plugin_run) -> None:
    out, plugin = plugin_run
    for command in (["eval", out], ["sample", out, "-o", out.parent / "s.npy"], ["resume", out]):
        result = invoke(*command)
        assert result.exit_code == 1, result.output
        assert "test-runfolder-head" in result.output and "--plugin" in result.output
        assert "test-runfolder-head" not in dk.heads.names()  # nothing was imported
    assert invoke("eval", out, "--plugin", plugin).exit_code == 0


def test_a_plugin_written_into_config_json_never_runs(tmp_path, finished_run, monkeypatch) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.py"
    evil.write_text(EVIL.format(marker=str(marker)))
    config = json.loads((finished_run / "config.json").read_text())
    config["plugins"] = [str(evil), "evil"]
    (finished_run / "config.json").write_text(json.dumps(config))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert invoke("eval", finished_run).exit_code == 0
    assert invoke("sample", finished_run, "-o", tmp_path / "s.npy").exit_code == 0
    runs.load_run(finished_run)
    assert not marker.exists()
    assert "evil" not in sys.modules


# -- terminal output is text ---------------------------------------------------------------
@pytest.mark.parametrize("name", ["r[/x]", "r[red]x", "r[bold]y[/bold]"])
def test_markup_in_paths_is_printed_as_text(tmp_path, name) -> None:
    out = tmp_path / name
    result = invoke("fit", *TINY, "--out", out)
    assert result.exit_code == 0, result.output
    assert f"outputs in {out}/" in result.output
    assert out.is_dir() and is_run_folder(out)
    evaluated = invoke("eval", out)
    assert evaluated.exit_code == 0


@pytest.mark.parametrize("value", ["[/bold]", "[red]x", "[link=file:///etc]y"])
def test_markup_in_values_is_printed_as_text(value) -> None:
    result = invoke("fit", "--data", value)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert repr(value) in result.output


# -- resume ---------------------------------------------------------------------------------
def test_resume_refuses_options_that_cannot_apply(finished_run) -> None:
    for option in (["--batch-size", "7"], ["--hidden-sizes", "8"], ["--data", "mnist"]):
        result = invoke("resume", finished_run, *option)
        assert result.exit_code == 1 and "No such option" in result.output, option
    result = invoke("fit", "--resume", finished_run)
    assert result.exit_code == 1 and "densitykit resume" in result.output


def test_resume_with_more_epochs_trains_them(finished_run) -> None:
    result = invoke("resume", finished_run, "--epochs", "3", "--quiet")
    assert result.exit_code == 0, result.output
    metrics = json.loads((finished_run / "metrics.json").read_text())
    assert metrics["epochs_run"] == 3
    refused = invoke("resume", finished_run, "--epochs", "2")
    assert refused.exit_code == 1 and "already run 3 epochs" in refused.output


def test_resume_of_an_early_stopped_run_needs_more_patience(tmp_path) -> None:
    out = tmp_path / "run"
    config = small_config(lr=1e-9)  # no improvement after the first epoch
    config.train.epochs, config.train.patience = 30, 1
    first = runs.fit_run(config, out)
    assert first["stopped_early"] and first["epochs_run"] < 30
    before = snapshot(out)
    result = invoke("resume", out, "--epochs", "40")
    assert result.exit_code == 1 and "--patience" in result.output
    assert snapshot(out) == before  # nothing recorded
    result = invoke("resume", out, "--epochs", "40", "--patience", "3", "--quiet")
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs_run"] > first["epochs_run"]
    assert json.loads((out / "config.json").read_text())["train"]["patience"] == 3


def test_resume_removes_temporaries_a_killed_write_left(finished_run) -> None:
    stale = finished_run / ".train_state.pt.k2j4h1_x.tmp"
    stale.write_bytes(b"half a file")
    assert invoke("resume", finished_run, "--quiet").exit_code == 0
    assert not stale.exists()


def test_ctrl_c_says_how_to_resume(tmp_path, monkeypatch) -> None:
    from densitykit import cli

    original = cli._ProgressCallback.on_epoch_end

    def interrupt(self, state, record):
        original(self, state, record)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli._ProgressCallback, "on_epoch_end", interrupt)
    out = tmp_path / "run"
    args = [a for a in TINY if a != "--quiet"]
    result = invoke("fit", *args, "--epochs", "3", "--out", out)
    assert result.exit_code == 130
    assert f"densitykit resume {out}" in result.output
    assert "after 1 completed epoch" in result.output


# -- one line, bounded memory ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hidden-sizes", "1000000000"], "would need"),
        (
            ["--head", "logistic-mixture", "--head-option", "num_components=100000000"],
            "would need",
        ),
        (["--data-option", "num_samples=10000000000"], "would need"),
        (["--data-option", "grid_size=30"], "conflicts with --grid-size"),
        (["--mask-option", "ordering=abc", "--masks", "ordering"], "list of integers"),
    ],
)
def test_requests_that_cannot_fit_end_in_one_line(tmp_path, args, message) -> None:
    result = invoke("fit", *TINY, *args, "--out", tmp_path / "run")
    assert result.exit_code == 1, result.output
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "run").exists()


def test_sample_refuses_what_the_disk_cannot_hold_and_streams_the_rest(finished_run, tmp_path):
    result = invoke("sample", finished_run, "-n", str(10**13), "-o", tmp_path / "big.npy")
    assert result.exit_code == 1 and "TB" in result.output and "free" in result.output
    assert not (tmp_path / "big.npy").exists()
    chunk = runs.SAMPLE_CHUNK
    runs.SAMPLE_CHUNK = 64  # stream in several chunks
    try:
        path = runs.sample_run(finished_run, 200, tmp_path / "s.npy", seed=1)
    finally:
        runs.SAMPLE_CHUNK = chunk
    samples = np.load(path)
    assert samples.shape == (200, 2) and samples.min() >= 0 and samples.max() < 16
    again = invoke("sample", finished_run, "-n", "5", "-o", path)
    assert again.exit_code == 1 and "already exists" in again.output
    assert np.array_equal(np.load(path), samples)  # the user's file is untouched
    picture = invoke("sample", finished_run, "-n", str(10**7), "-o", tmp_path / "p.png")
    assert picture.exit_code == 1 and "at most" in picture.output


def test_checkpoint_whose_config_asks_for_a_huge_model_is_refused_before_building(
    finished_run,
) -> None:
    path = finished_run / "checkpoint.pt"
    data = torch.load(path, weights_only=True)
    data["model_config"]["hidden_sizes"] = [200_000_000]
    torch.save(data, path)
    result = invoke("eval", finished_run)
    assert result.exit_code == 1
    assert "describes a model of" in result.output and "checkpoint.pt" in result.output


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


def test_picture_bomb_is_refused_from_its_header(tmp_path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(100_000, 100_000))
    with pytest.raises(dk.DataError, match="at most 50,000,000 pixels"):
        dk.data.load_dataset("2d-image", path=str(bomb))
    bomb.write_bytes(_png_header(10_000, 8_000))  # under Pillow's limit, over ours
    with pytest.raises(dk.DataError, match="10000 x 8000"):
        dk.data.load_dataset("2d-image", path=str(bomb))
    result = invoke("fit", "--data", "2d-image", "--image", bomb, "--out", tmp_path / "r")
    assert result.exit_code == 1 and "Traceback" not in result.output


@pytest.mark.parametrize("content", ["[1, 2, 3]", '"text"', "null", '{"data": 3}'])
def test_config_json_of_another_shape_is_one_line(finished_run, content) -> None:
    (finished_run / "config.json").write_text(content)
    for command in (["eval", finished_run], ["resume", finished_run]):
        result = invoke(*command)
        assert result.exit_code == 1 and "malformed run config" in result.output, result.output


def test_disk_full_while_writing_a_checkpoint_names_the_file(tmp_path, monkeypatch) -> None:
    path = tmp_path / "checkpoint.pt"
    model = dk.create_model("bernoulli", 3, hidden_sizes=(4,))
    checkpoint.save_checkpoint(path, model)
    before = path.read_bytes()

    def full(*args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(dk.CheckpointError, match="nothing was lost") as info:
        checkpoint.save_checkpoint(path, model)
    assert str(path) in str(info.value) and "previous file is intact" in str(info.value)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_run_files_share_one_mode(finished_run) -> None:
    umask = os.umask(0)
    os.umask(umask)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in finished_run.iterdir() if p.is_file()}
    assert set(modes.values()) == {0o644 & ~umask}, modes


# -- the fuzz test --------------------------------------------------------------------------
MARKUP = st.sampled_from(["[/x]", "[red]", "[bold]a[/bold]", "[link=x]", "\\[", "]["])
HUGE = st.sampled_from(["1000000000", "10000000000000", "-1", "0", "1e309", "nan"])
OPTION_VALUES = {
    "--hidden-sizes": st.one_of(HUGE, MARKUP, st.sampled_from(["8", "4,4", "", "-5"])),
    "--epochs": st.one_of(MARKUP, st.sampled_from(["0", "-3", "1", "2", "x"])),
    "--batch-size": st.one_of(HUGE, MARKUP, st.sampled_from(["1", "7", "100"])),
    "--lr": st.one_of(HUGE, MARKUP, st.sampled_from(["0.01", "inf"])),
    # Hostile inputs (made in the work folder by hostile_inputs): a FIFO, a link to
    # /dev/zero, a gzipped IDX bomb in an MNIST folder, a 9,000 x 9,000 PNG, a wide .npy.
    "--data": st.one_of(
        MARKUP,
        st.sampled_from(
            ["2d-smiley", "1d-bimodal", "nope", "fifo.csv", "zero.csv", "big-png", "wide.npy"]
        ),
    ),
    "--family": st.sampled_from(["made", "orderless", "nope"]),
    "--head": st.one_of(MARKUP, st.sampled_from(["categorical", "histogram", "bernoulli"])),
    "--masks": st.one_of(MARKUP, st.sampled_from(["random", "multi-ordering", "ordering"])),
    "--num-masks": st.one_of(HUGE, st.sampled_from(["2", "3"])),
    "--eval-masks": st.one_of(HUGE, st.sampled_from(["1", "4"])),
    "--precision": st.one_of(MARKUP, st.sampled_from(["bf16", "fp16", "fp32"])),
    "--device": st.one_of(MARKUP, st.sampled_from(["cpu", "cuda", "cuda:7"])),
    "--data-option": st.sampled_from(
        ["num_samples=10000000000", "grid_size=30", "seed=[red]", "x", "=1", "colour=3"]
    ),
    "--head-option": st.sampled_from(["num_components=100000000", "one_hot=true", "k=[/x]"]),
    "--mask-option": st.sampled_from(["ordering=abc", "ordering=[1,0]", "spread=even"]),
    "--plugin": st.one_of(MARKUP, st.sampled_from(["no_such_module", "sentinel/notes.txt"])),
    "--out": st.one_of(
        st.sampled_from(
            [".", "..", "sentinel", "sentinel/..", "runs/ok", "to-sentinel", "dangling"]
        ),
        MARKUP.map(lambda m: f"runs/r{m}"),
    ),
}


def hostile_inputs(work: Path) -> None:
    """The files the fuzz's hostile option values name, in the work folder."""
    os.mkfifo(work / "fifo.csv")
    (work / "zero.csv").symlink_to("/dev/zero")
    (work / "to-sentinel").symlink_to(work / "sentinel")
    (work / "dangling").symlink_to(work / "sentinel" / "nowhere")
    (work / "big-png").mkdir()
    from PIL import Image

    Image.new("L", (9000, 9000)).save(work / "big-png" / "a.png")
    np.save(work / "wide.npy", np.zeros((4, 3000), dtype=np.uint8))


@pytest.mark.slow
@settings(max_examples=40)
@given(
    options=st.lists(st.sampled_from(sorted(OPTION_VALUES)), max_size=4, unique=True).flatmap(
        lambda names: st.tuples(*(OPTION_VALUES[n].map(lambda v, n=n: (n, v)) for n in names))
    ),
    overwrite=st.booleans(),
    then=st.sampled_from(["eval", "sample", "resume", None]),
)
def test_fuzzed_command_lines_exit_0_or_1_and_touch_nothing_outside_the_run(
    tmp_path_factory, options, overwrite, then
) -> None:
    work = tmp_path_factory.mktemp("fuzz")
    sentinel = user_folder(work / "sentinel")
    hostile_inputs(work)
    before = snapshot(sentinel)
    args = ["fit", *TINY]
    out = "runs/default"
    for name, value in options:
        args += [name, value]
        out = value if name == "--out" else out
    if "--out" not in dict(options):
        args += ["--out", out]
    if overwrite:
        args.append("--overwrite")
    cwd = os.getcwd()
    os.chdir(work)
    try:
        results = [runner.invoke(app, args)]
        if then is not None:
            follow = {
                "eval": ["eval", out],
                "sample": ["sample", out, "-n", "3", "-o", "runs/s.npy"],
                "resume": ["resume", out, "--quiet"],
            }[then]
            results.append(runner.invoke(app, follow))
    finally:
        os.chdir(cwd)
    for result in results:
        crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
        assert not crashed, (args, result.output, repr(result.exception))
        assert result.exit_code in (0, 1), (args, result.output, result.exception)
        assert "Traceback" not in result.output, (args, result.output)
    assert snapshot(sentinel) == before, args


@pytest.mark.parametrize("head", ["histogram", "categorical", "bernoulli"])
def test_negative_hidden_sizes_are_refused_for_every_head(head) -> None:
    with pytest.raises(ValueError, match="hidden_sizes must be a positive integer, got -5"):
        dk.create_model(head, 3, 2, hidden_sizes=(-5,))
    with pytest.raises(ValueError, match="hidden_sizes"):
        ModelConfig(head=head, dim=3, num_values=2, hidden_sizes=(-5,))
