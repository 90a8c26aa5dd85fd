"""Reliability and security: safe checkpoints, crash-safe resume, repeatable runs, bad input."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import Zeros, run_cli, write_inflating
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

import densitykit as dk
from densitykit import checkpoint, runs
from densitykit.cli import app
from densitykit.model import ModelConfig
from densitykit.train import Callback, TrainConfig

runner = CliRunner()
TIMING = {"train_seconds", "seconds"}


def without_timing(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in TIMING}


def small_config(**train) -> runs.RunConfig:
    return runs.RunConfig(
        data=runs.DataConfig("2d-smiley", {"grid_size": 16, "num_samples": 2000}),
        model=ModelConfig(hidden_sizes=(16,)),
        train=TrainConfig(epochs=2, batch_size=100, **train),
    )


# -- checkpoints -------------------------------------------------------------------------
def test_interrupted_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch) -> None:
    model = dk.create_model("bernoulli", 4, hidden_sizes=(8,))
    path = tmp_path / "checkpoint.pt"
    checkpoint.save_checkpoint(path, model)
    before = path.read_bytes()

    def crash(obj, handle, *args, **kwargs):
        handle.write(b"partial bytes")
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(path, dk.create_model("bernoulli", 4, hidden_sizes=(8,), seed=3))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]  # no temp file left
    checkpoint.load_checkpoint(path)


class _Exploit:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (open, (str(self.target), "w"))


def test_malicious_checkpoint_is_refused_and_does_not_run(tmp_path) -> None:
    target = tmp_path / "pwned.txt"
    path = tmp_path / "checkpoint.pt"
    payload = {
        "format": checkpoint.FORMAT,
        "version": 1,
        "model_config": {},
        "state_dict": {},
        "exploit": _Exploit(target),
    }
    torch.save(payload, path)
    # Sanity: the file really would create the target if unpickled unsafely.
    probe = tmp_path / "probe.pt"
    torch.save(_Exploit(tmp_path / "probe.txt"), probe)
    torch.load(probe, weights_only=False)
    assert (tmp_path / "probe.txt").exists()

    with pytest.raises(dk.CheckpointError, match="refused to load") as info:
        checkpoint.load_checkpoint(path)
    assert str(path) in str(info.value)
    assert not target.exists()
    # A plain pickle (not a torch zip file) is refused as well.
    with open(tmp_path / "plain.pt", "wb") as handle:
        pickle.dump(_Exploit(target), handle)
    with pytest.raises(dk.CheckpointError):
        checkpoint.load_checkpoint(tmp_path / "plain.pt")
    assert not target.exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_damaged_checkpoint_gives_one_line_naming_the_file(tmp_path, damage) -> None:
    path = tmp_path / "checkpoint.pt"
    checkpoint.save_checkpoint(path, dk.create_model("categorical", 3, 4, hidden_sizes=(8,)))
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        path.write_bytes(data[:100] + os.urandom(len(data) - 100))
    else:
        path.write_bytes(b"")
    with pytest.raises(dk.CheckpointError) as info:
        checkpoint.load_checkpoint(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_checkpoint_of_another_shape_or_format(tmp_path) -> None:
    path = tmp_path / "c.pt"
    checkpoint.save_object(path, {"weights": torch.zeros(2)})
    with pytest.raises(dk.CheckpointError, match="not a densitykit checkpoint"):
        checkpoint.load_checkpoint(path)
    model = dk.create_model("categorical", 3, 4, hidden_sizes=(8,))
    data = {
        "format": checkpoint.FORMAT,
        "version": 1,
        "model_config": model.config.to_dict(),
        "state_dict": dk.create_model("categorical", 3, 4, hidden_sizes=(9,)).state_dict(),
    }
    checkpoint.save_object(path, data)
    with pytest.raises(dk.CheckpointError, match="do not fit the saved config"):
        checkpoint.load_checkpoint(path)


@pytest.mark.slow
def test_a_small_checkpoint_that_inflates_to_a_gigabyte_is_refused_in_bounded_memory(
    tmp_path,
) -> None:
    out = tmp_path / "run"
    runs.fit_run(small_config(), out)
    data = torch.load(out / "checkpoint.pt", weights_only=True)
    key = next(k for k, v in data["state_dict"].items() if v.is_floating_point())
    data["state_dict"][key] = Zeros(2**14, 2**14)  # 1 GiB
    write_inflating(out / "checkpoint.pt", data)
    assert (out / "checkpoint.pt").stat().st_size < 2_000_000
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    outcome = run_cli(["eval", str(out)], env=env)
    # The refusal peaks at about 800 MB here (importing torch and densitykit is most of
    # it; 1,140 MB was seen once in a loaded parallel run); inflating would take 1.7 GB.
    assert outcome.max_rss_mb < 1300, outcome.max_rss_mb
    assert outcome.one_line_error(), outcome.stderr
    assert "inflate to 1.1 GB" in outcome.stderr


def test_an_inflating_train_state_is_refused_before_resuming(tmp_path) -> None:
    out = tmp_path / "run"
    runs.fit_run(small_config(), out)
    data = torch.load(out / "train_state.pt", weights_only=True)
    key = next(k for k, v in data["model"].items() if v.is_floating_point())
    data["model"][key] = Zeros(2**12, 2**12)  # 64 MiB
    write_inflating(out / "train_state.pt", data)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(dk.CheckpointError, match="inflate to 67.1 MB"):
        runs.resume_run(out, epochs=3)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_run_whose_config_does_not_match_its_data(tmp_path) -> None:
    out = tmp_path / "run"
    runs.fit_run(small_config(), out)
    config = json.loads((out / "config.json").read_text())
    config["data"]["options"]["grid_size"] = 20
    (out / "config.json").write_text(json.dumps(config))
    with pytest.raises(dk.CheckpointError, match="20 values") as info:
        runs.load_run(out)
    assert "checkpoint.pt" in str(info.value)
    result = runner.invoke(app, ["eval", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output


# -- resume after SIGKILL ------------------------------------------------------------------
FIT = [
    "-m",
    "densitykit",
    "fit",
    "--grid-size",
    "20",
    "--hidden-sizes",
    "256,256",
    "--epochs",
    "6",
    "--patience",
    "3",
    "--masks",
    "multi-ordering",
    "--num-masks",
    "3",
    "--device",
    "cpu",
    "--quiet",
]


def _env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONHASHSEED="0")
    return env


@pytest.mark.slow
def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path) -> None:
    reference = tmp_path / "reference"
    subprocess.run(
        [sys.executable, *FIT, "--out", str(reference)],
        check=True,
        env=_env(),
        cwd=tmp_path,
        timeout=300,
    )

    killed = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, *FIT, "--out", str(killed)], env=_env(), cwd=tmp_path
    )
    log = killed / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 2:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not (killed / "metrics.json").exists()
    done_before = len(log.read_text().splitlines())
    assert 2 <= done_before < 6

    subprocess.run(
        [sys.executable, "-m", "densitykit", "resume", str(killed), "--quiet"],
        check=True,
        env=_env(),
        cwd=tmp_path,
        timeout=300,
    )
    expected = json.loads((reference / "metrics.json").read_text())
    got = json.loads((killed / "metrics.json").read_text())
    assert without_timing(got) == without_timing(expected)
    lines = [json.loads(x) for x in (killed / "metrics.jsonl").read_text().splitlines()]
    reference_lines = [
        json.loads(x) for x in (reference / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r["epoch"] for r in lines] == list(range(1, len(reference_lines) + 1))
    assert [without_timing(r) for r in lines] == [without_timing(r) for r in reference_lines]
    a = runs.load_run(reference).model.state_dict()
    b = runs.load_run(killed).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_of_a_finished_run_changes_nothing(tmp_path) -> None:
    out = tmp_path / "run"
    first = runs.fit_run(small_config(), out)
    again = runs.resume_run(out)
    assert without_timing(again) == without_timing(first)


def test_a_run_folder_written_before_the_levers_loads_and_resumes(tmp_path) -> None:
    """config.json and train_state.pt without the lever keys (optimizer, lr_schedule,
    ema_decay, time_budget_minutes, weight_average) still load, with their defaults."""
    out = tmp_path / "run"
    runs.fit_run(small_config(), out)
    saved = json.loads((out / "config.json").read_text())
    for key in ("optimizer", "lr_schedule", "ema_decay", "time_budget_minutes"):
        del saved["train"][key]
    (out / "config.json").write_text(json.dumps(saved))
    state = checkpoint.load_object(out / "train_state.pt")
    del state["weight_average"]
    checkpoint.save_object(out / "train_state.pt", state)
    assert runs.load_run(out).config.train.optimizer == "adam"
    assert runs.resume_run(out, epochs=3)["epochs_run"] == 3


@pytest.mark.parametrize(
    ("section", "key", "value", "names"),
    [
        ("model", "hidden_sizes", [9], "hidden_degrees_0"),
        ("model", "direct_connections", True, "backbone.direct.weight"),
        ("train", "optimizer", "adagrad", "adagrad needs ['step', 'sum']"),
    ],
)
def test_resume_after_an_edit_of_the_config_refuses_in_one_line_and_writes_nothing(
    tmp_path, section, key, value, names
) -> None:
    out = tmp_path / "run"
    runs.fit_run(small_config(), out)
    saved = json.loads((out / "config.json").read_text())
    saved[section][key] = value
    (out / "config.json").write_text(json.dumps(saved))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    result = runner.invoke(app, ["resume", str(out), "--epochs", "3"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert "no longer matches the saved training state" in lines[0] and names in lines[0]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_resume_with_adagrad_is_bit_identical(tmp_path) -> None:
    whole, split = tmp_path / "whole", tmp_path / "split"
    runs.fit_run(small_config(optimizer="adagrad", lr=0.01), whole)
    config = small_config(optimizer="adagrad", lr=0.01)
    runs.fit_run(replace(config, train=replace(config.train, epochs=1)), split)
    runs.resume_run(split, epochs=2)
    for name in ("checkpoint.pt", "train_state.pt"):
        a, b = (torch.load(run / name, weights_only=True) for run in (whole, split))
        for key, value in a["state_dict" if name == "checkpoint.pt" else "model"].items():
            other = b["state_dict" if name == "checkpoint.pt" else "model"][key]
            assert torch.equal(value, other), key


# -- non-finite loss -------------------------------------------------------------------------
class _PoisonAfterFirstEpoch(Callback):
    def __init__(self, model_holder: list) -> None:
        self.holder = model_holder

    def on_epoch_end(self, state, record) -> None:
        if state.epoch == 1:
            model = self.holder[0]
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))


def test_non_finite_loss_stops_with_advice_and_keeps_the_last_good_state(tmp_path, monkeypatch):
    out = tmp_path / "run"
    holder: list = []
    original = runs._build

    def build(config):
        dataset, model = original(config)
        holder.append(model)
        return dataset, model

    monkeypatch.setattr(runs, "_build", build)
    config = small_config(lr=1e-3)
    config.train.epochs = 3
    with pytest.raises(dk.TrainingError, match=r"densitykit resume .* --lr") as info:
        runs.fit_run(config, out, callbacks=[_PoisonAfterFirstEpoch(holder)])
    assert "epoch 1" in str(info.value)
    monkeypatch.undo()
    state = checkpoint.load_object(out / "train_state.pt")
    assert state["epoch"] == 1
    assert all(
        bool(torch.isfinite(v).all()) for v in state["model"].values() if v.is_floating_point()
    )
    metrics = runs.resume_run(out, lr=1e-4)
    assert metrics["epochs_run"] == 3
    assert json.loads((out / "config.json").read_text())["train"]["lr"] == 1e-4


# -- repeatability ---------------------------------------------------------------------------
def test_same_seed_gives_identical_metrics_and_samples(tmp_path) -> None:
    results = []
    for name in ("a", "b"):
        out = tmp_path / name
        result = runner.invoke(
            app,
            [
                "fit",
                "--grid-size",
                "16",
                "--hidden-sizes",
                "32",
                "--epochs",
                "2",
                "--masks",
                "multi-ordering",
                "--num-masks",
                "2",
                "--quiet",
                "--out",
                str(out),
            ],
        )
        assert result.exit_code == 0, result.output
        runner.invoke(
            app,
            ["sample", str(out), "-n", "50", "--seed", "3", "--out", str(tmp_path / f"{name}.npy")],
        )
        results.append(json.loads((out / "metrics.json").read_text()))
    assert without_timing(results[0]) == without_timing(results[1])
    assert np.array_equal(np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy"))


# -- bad input everywhere --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "--batch-size", "0"], "batch_size must be a positive integer"),
        (["fit", "--patience", "-2"], "patience"),
        (["fit", "--precision", "fp8"], "precision must be one of"),
        (["fit", "--num-masks", "0"], "num_masks must be a positive integer"),
        (["fit", "--activation", "swish"], "registered activations"),
        (["fit", "--data", "2d-image", "--image", "/no/such.png"], "/no/such.png"),
        (["fit", "--grid-size", "1"], "grid_size"),
        (
            ["fit", "--head", "categorical", "--num-components", "3"],
            "--num-components does not apply",
        ),
        (["fit", "--masks", "ordering", "--ordering", "1,0,0"], "permutation"),
        (["fit", "--resume", "/no/such/run"], "densitykit resume /no/such/run"),
        (["resume", "/no/such/run"], "/no/such/run"),
        (["sample", "/no/such/run", "--out", "x.txt"], "must end in .npy or .png"),
        (["fit", "--plugin", "no_such_module_xyz"], "cannot import plug-in"),
    ],
)
def test_cli_bad_values_one_line_exit_1(args, message) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_unwritable_output_folder(tmp_path) -> None:
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    result = runner.invoke(
        app,
        [
            "fit",
            "--grid-size",
            "16",
            "--hidden-sizes",
            "8",
            "--epochs",
            "1",
            "--quiet",
            "--out",
            str(blocker / "run"),
        ],
    )
    assert result.exit_code == 1 and "cannot write to run folder" in result.output
    assert "Traceback" not in result.output


MODEL = dk.create_model(
    "logistic-mixture",
    3,
    5,
    hidden_sizes=(6,),
    masks="multi-ordering",
    num_masks=2,
    num_components=2,
)


@given(
    num_samples=st.one_of(
        st.integers(-3, 5), st.floats(allow_nan=True), st.none(), st.text(max_size=2)
    ),
    mask=st.one_of(st.none(), st.integers(-2, 3), st.floats(), st.booleans()),
)
def test_sample_accepts_good_arguments_and_refuses_bad_ones(num_samples, mask) -> None:
    try:
        samples = MODEL.sample(num_samples, mask=mask, generator=torch.Generator().manual_seed(0))
    except (ValueError, TypeError):
        return
    assert samples.shape == (num_samples, 3)
    if samples.numel():
        assert int(samples.min()) >= 0 and int(samples.max()) <= 4


@given(
    x=st.lists(
        st.lists(
            st.one_of(st.integers(-3, 7), st.floats(allow_nan=True, allow_infinity=True)),
            min_size=0,
            max_size=4,
        ),
        min_size=0,
        max_size=3,
    ),
    dtype=st.sampled_from([torch.int64, torch.int8, torch.float16, torch.float64, torch.bool]),
)
def test_log_prob_on_random_values_returns_or_raises_documented_errors(x, dtype) -> None:
    try:
        tensor = torch.tensor(x).to(dtype)
    except (ValueError, TypeError, RuntimeError, OverflowError):
        return
    try:
        out = MODEL.log_prob(tensor)
    except (ValueError, TypeError):
        return
    assert bool(torch.isfinite(out).all()) and bool((out <= 0).all())


@given(
    name=st.sampled_from(["1d-gaussian", "1d-bimodal", "2d-smiley", "shapes"]),
    options=st.dictionaries(
        st.sampled_from(
            ["seed", "val_fraction", "grid_size", "num_samples", "size", "max_train", "colour"]
        ),
        st.one_of(st.integers(-5, 40), st.floats(allow_nan=True), st.text(max_size=3), st.none()),
        max_size=3,
    ),
)
def test_dataset_loaders_raise_only_documented_errors(name, options) -> None:
    try:
        dataset = dk.data.load_dataset(name, **options)
    except (ValueError, TypeError):  # DataError is a ValueError
        return
    assert dataset.train.dtype == torch.int64
    assert int(dataset.train.max()) < dataset.num_values
