"""The command line, through typer's CliRunner, on tiny configurations."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import densitykit
from densitykit.cli import app
from densitykit.data.idx import write_idx

runner = CliRunner()

TINY = ["--hidden-sizes", "16", "--epochs", "2", "--batch-size", "50", "--quiet"]


def invoke(*args: str):
    return runner.invoke(app, list(args), catch_exceptions=False)


def test_version_and_help() -> None:
    result = invoke("--version")
    assert result.exit_code == 0 and densitykit.__version__ in result.output
    for command in ([], ["fit"], ["eval"], ["sample"], ["datasets"], ["heads"], ["masks"]):
        result = invoke(*command, "--help")
        assert result.exit_code == 0, command
        assert "Usage" in result.output


@pytest.mark.parametrize(
    ("command", "names"),
    [
        ("heads", densitykit.heads.names()),
        ("masks", densitykit.masks.names()),
        ("datasets", densitykit.data.names()),
    ],
)
def test_listings_show_every_name_with_a_description(command: str, names: list[str]) -> None:
    result = invoke(command)
    assert result.exit_code == 0
    # `densitykit datasets` adds indented lines: each set's recommended settings by head.
    lines = [line for line in result.output.strip().splitlines() if not line.startswith(" ")]
    assert [line.split()[0] for line in lines] == names
    assert all(len(line.split()) > 2 for line in lines)


def test_default_fit_path_in_short_mode(tmp_path: Path) -> None:
    """The built-in example (2-D smiley) end to end, shortened; then eval and sample."""
    out = tmp_path / "run"
    result = runner.invoke(
        app,
        ["fit", "--epochs", "1", "--hidden-sizes", "32", "--out", str(out), "--grid-size", "16"],
    )
    assert result.exit_code == 0, result.output
    assert "test NLL" in result.output and str(out) in result.output
    for name in (
        "config.json",
        "checkpoint.pt",
        "metrics.jsonl",
        "metrics.json",
        "density.png",
        "learning_curves.png",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (
        "test_nll_nats",
        "test_nats_per_dim",
        "test_bits_per_dim",
        "true_entropy_nats",
        "num_params",
        "best_epoch",
        "train_seconds",
    ):
        assert key in metrics, key
    assert metrics["test_nats_per_dim"] == pytest.approx(metrics["test_nll_nats"] / 2)
    assert metrics["true_entropy_nats"] > 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1]

    evaluated = invoke("eval", str(out), "--json")
    assert evaluated.exit_code == 0
    assert json.loads(evaluated.output)["nll_nats"] == pytest.approx(metrics["test_nll_nats"])
    npy = tmp_path / "s.npy"
    assert invoke("sample", str(out), "-n", "7", "--out", str(npy)).exit_code == 0
    samples = np.load(npy)
    assert samples.shape == (7, 2) and samples.max() < 16
    png = tmp_path / "s.png"
    assert invoke("sample", str(out), "-n", "20", "--out", str(png)).exit_code == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_logistic_mixture_and_multi_mask_fit(tmp_path: Path) -> None:
    out = tmp_path / "lm"
    result = invoke(
        "fit",
        "--head",
        "logistic-mixture",
        "--num-components",
        "3",
        "--masks",
        "multi-ordering",
        "--num-masks",
        "3",
        "--grid-size",
        "16",
        "--out",
        str(out),
        *TINY,
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["head"] == "logistic-mixture"
    assert config["model"]["head_options"] == {"num_components": 3}
    assert config["model"]["num_masks"] == 3
    two = invoke("eval", str(out), "--num-masks", "2", "--json")
    assert json.loads(two.output)["num_masks"] == 2


def test_one_d_histogram_writes_histogram_picture(tmp_path: Path) -> None:
    out = tmp_path / "hist"
    result = invoke(
        "fit",
        "--data",
        "1d-gaussian",
        "--head",
        "histogram",
        "--lr",
        "0.05",
        "--out",
        str(out),
        *TINY,
    )
    assert result.exit_code == 0, result.output
    assert (out / "histogram.png").is_file()


def write_mnist_folder(folder: Path, train: int = 40, test: int = 20) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", train), ("t10k", test)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        write_idx(images, folder / f"{prefix}-images-idx3-ubyte.gz")
        write_idx(
            rng.integers(0, 10, count, dtype=np.uint8), folder / f"{prefix}-labels-idx1-ubyte"
        )


def test_mnist_from_local_folder_draws_digits(tmp_path: Path) -> None:
    data_dir = tmp_path / "mnist"
    write_mnist_folder(data_dir)
    out = tmp_path / "m"
    result = invoke(
        "fit",
        "--data",
        "mnist",
        "--data-dir",
        str(data_dir),
        "--head",
        "bernoulli",
        "--out",
        str(out),
        "--hidden-sizes",
        "8",
        "--epochs",
        "1",
        "--quiet",
    )
    assert result.exit_code == 0, result.output
    assert (out / "samples.png").is_file()
    # bernoulli on grey levels is refused in one line
    bad = runner.invoke(
        app,
        [
            "fit",
            "--data",
            "mnist",
            "--data-dir",
            str(data_dir),
            "--binarize",
            "none",
            "--head",
            "bernoulli",
            "--out",
            str(tmp_path / "x"),
        ],
    )
    assert bad.exit_code == 1
    assert "does not fit data set 'mnist'" in bad.output and "2 values" in bad.output
    assert "Traceback" not in bad.output


@pytest.mark.parametrize("head", ["gaussian", "gaussian-mixture"])
@pytest.mark.parametrize("family", ["made", "orderless"])
def test_a_real_head_on_integer_data_is_refused_in_one_line(
    head: str, family: str, tmp_path: Path
) -> None:
    # The data sets hold integer codes 0..K-1: a density over the reals is refused, not fitted.
    out = tmp_path / "run"
    args = ["fit", "--data", "2d-smiley", "--family", family, "--head", head, "--out", str(out)]
    result = runner.invoke(app, [*args, *TINY])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output
    assert f"head {head!r} models real values" in lines[0]
    assert "holds the integers 0..24" in lines[0] and "--head" in lines[0]
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["fit", "--head", "gauss"], "registered heads: 'bernoulli'"),
        (["fit", "--data", "nope"], "registered datasets"),
        (["fit", "--masks", "zigzag"], "registered mask builders"),
        (["fit", "--data", "1d-gaussian", "--binarize", "none"], "--binarize does not apply"),
        (["fit", "--data", "mnist", "--data-dir", "/definitely/missing"], "expected train-images"),
        (["fit", "--hidden-sizes", "12,x"], "--hidden-sizes must be comma-separated"),
        (["fit", "--epochs", "0"], "epochs must be a positive integer"),
        (["fit", "--lr", "-1"], "lr must be a positive"),
        (["fit", "--device", "tpu"], "device must be"),
        (["eval", "/definitely/missing"], "no such run folder"),
        (["sample", "/definitely/missing", "--out", "x.png"], "no such run folder"),
    ],
)
def test_errors_are_one_line_and_exit_1(args: list[str], message: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 3  # one message (rich may wrap it)


def test_existing_run_folder_is_refused_without_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["fit", "--grid-size", "16", "--out", str(out), *TINY]
    assert invoke(*args).exit_code == 0
    again = runner.invoke(app, args)
    assert again.exit_code == 1 and "already exists" in again.output
    assert invoke(*args, "--overwrite").exit_code == 0


def test_debug_shows_the_traceback() -> None:
    result = runner.invoke(app, ["--debug", "fit", "--head", "gauss"])
    assert result.exit_code != 0
    assert isinstance(result.exception, densitykit.UnknownNameError)


@pytest.fixture
def forget_plugin_head():
    """Undo the plug-in's registration so no other test sees it."""
    yield
    if "test-cli-plugin-head" in densitykit.heads.names():
        densitykit.heads.HEADS.unregister("test-cli-plugin-head")
    sys.modules.pop("densitykit_plugin_my_head", None)


def test_custom_head_plugin_through_the_cli(tmp_path: Path, forget_plugin_head: None) -> None:
    plugin = tmp_path / "my_head.py"
    plugin.write_text(
        "import densitykit as dk\n"
        "from densitykit.heads import CategoricalHead\n"
        "@dk.heads.register('test-cli-plugin-head')\n"
        "class PluginHead(CategoricalHead):\n"
        "    '''A categorical head registered from a user file.'''\n"
    )
    listing = invoke("heads", "--plugin", str(plugin))
    assert "test-cli-plugin-head" in listing.output
    out = tmp_path / "run"
    result = invoke(
        "fit",
        "--plugin",
        str(plugin),
        "--head",
        "test-cli-plugin-head",
        "--grid-size",
        "16",
        "--out",
        str(out),
        *TINY,
    )
    assert result.exit_code == 0, result.output
    assert invoke("eval", str(out)).exit_code == 0
    # The plug-in is stored by absolute path, so the run loads from any folder.
    saved = json.loads((out / "config.json").read_text())
    assert saved["plugins"] == [str(plugin.resolve())]


def test_mask_options_reach_the_mask_builder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["fit", "--grid-size", "16", "--out", str(out), *TINY]
    result = invoke(*args, "--mask-option", "spread=even")
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "config.json").read_text())
    assert saved["model"]["mask_options"] == {"spread": "even"}
    bad = invoke(*args, "--overwrite", "--mask-option", "spread=sideways")
    assert bad.exit_code == 1
    assert "spread must be 'random' or 'even'" in bad.output
    assert "Traceback" not in bad.output


def test_half_precision_on_cpu_is_refused(tmp_path: Path) -> None:
    result = invoke(
        "fit", "--grid-size", "16", "--device", "cpu", "--precision", "bf16",
        "--out", str(tmp_path / "run"), *TINY,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "CUDA only" in result.output


def test_fit_takes_the_training_levers_and_saves_them(tmp_path: Path) -> None:
    out = tmp_path / "run"
    levers = ["--optimizer", "adagrad", "--lr", "0.01", "--lr-schedule", "cosine"]
    levers += ["--ema-decay", "0.9", "--time-budget", "30"]
    result = invoke("fit", "--grid-size", "16", *TINY, *levers, "--out", str(out))
    assert result.exit_code == 0, result.output
    train = json.loads((out / "config.json").read_text())["train"]
    assert (train["optimizer"], train["lr_schedule"]) == ("adagrad", "cosine")
    assert (train["ema_decay"], train["time_budget_minutes"]) == (0.9, 30.0)
    assert json.loads((out / "metrics.json").read_text())["stop_reason"] == "epochs"
    refused = runner.invoke(app, ["fit", "--optimizer", "sgd", "--out", str(tmp_path / "x")])
    assert refused.exit_code == 1
    assert "optimizer must be one of 'adam', 'adamw', 'adagrad', got 'sgd'" in refused.output


def test_fit_records_the_layout_and_refuses_an_impossible_one(tmp_path: Path) -> None:
    out = tmp_path / "packed"
    common = ["--epochs", "1", "--hidden-sizes", "32", "--grid-size", "16", "--quiet"]
    result = runner.invoke(app, ["fit", *common, "--layout", "packed", "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["layout"] == "packed"
    assert densitykit.runs.load_run(out).model.backbone.layout == "packed"
    default = tmp_path / "default"
    assert runner.invoke(app, ["fit", *common, "--out", str(default)]).exit_code == 0
    assert json.loads((default / "config.json").read_text())["model"]["layout"] == "dense"
    bad = runner.invoke(
        app,
        [
            "fit",
            *common,
            "--layout",
            "packed",
            "--masks",
            "multi-ordering",
            "--num-masks",
            "2",
            "--out",
            str(tmp_path / "b"),
        ],
    )
    assert bad.exit_code == 1 and "cannot be packed" in bad.output
    assert "Traceback" not in bad.output and not (tmp_path / "b").exists()


# -- what reaches the terminal --------------------------------------------------------------
HOSTILE = "r\x1b]0;pwned\x07\x1b[2J\nx"  # an OSC set-title, a clear-screen, a line break


def test_control_characters_in_paths_are_shown_escaped(tmp_path: Path) -> None:
    out = tmp_path / HOSTILE
    missing = runner.invoke(app, ["eval", str(out)])
    assert missing.exit_code == 1 and missing.stdout == ""
    assert missing.stderr.count("\n") == 1 and missing.stderr.startswith("error: ")
    assert "\x1b" not in missing.output and "\x07" not in missing.output
    assert "r\\x1b]0;pwned\\x07\\x1b[2J\\nx" in missing.stderr
    assert "no such run folder" in missing.stderr  # the message is not cut at the newline

    fitted = runner.invoke(app, ["fit", "--grid-size", "16", *TINY, "--out", str(out)])
    assert fitted.exit_code == 0, fitted.output
    assert "\x1b" not in fitted.output and "\x07" not in fitted.output
    (line,) = [line for line in fitted.output.splitlines() if line.startswith("outputs in")]
    assert "pwned\\x07\\x1b[2J\\nx/: " in line and line.endswith("train_state.pt")
    sampled = runner.invoke(app, ["sample", str(out), "-n", "2", "-o", str(tmp_path / "é\x1b.npy")])
    assert sampled.exit_code == 0, sampled.output
    assert sampled.output == f"wrote 2 samples to {tmp_path}/é\\x1b.npy\n"


@pytest.mark.parametrize(
    "args",
    [
        ["fit", "--epochs", "abc"],
        ["fit", "--epoch", "3"],
        ["frobnicate"],
        ["resume", "run", "--seed", "3"],
        ["resume", "run", "--hidden-sizes", "8"],
        ["eval"],
        ["sample", "run"],
        ["eval", "run", "extra"],
        ["heads", "--plugin"],
        ["frob\x1b[2J"],
    ],
)
def test_usage_errors_are_one_line_and_exit_1(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert result.stdout == "" and result.stderr.startswith("error: "), result.output
    assert result.stderr.count("\n") == 1, result.stderr  # no usage box
    assert "--help" in result.stderr and "\x1b" not in result.stderr


def test_help_is_unchanged_by_the_one_line_errors() -> None:
    result = runner.invoke(app, ["fit", "--help"])
    assert result.exit_code == 0 and "Usage" in result.stdout and "--epochs" in result.stdout
    bare = runner.invoke(app, [])
    assert "Usage" in bare.output and "error:" not in bare.output


@pytest.fixture
def narrow_data(tmp_path: Path) -> Path:
    """8 binary variables: a hidden layer of 3 units cannot hold the 7 degrees needed."""
    path = tmp_path / "bits.npy"
    np.save(path, (np.random.default_rng(0).random((300, 8)) < 0.3).astype(np.int64))
    return path


def test_warnings_become_one_note_in_the_report_of_fit_only(
    tmp_path: Path, narrow_data: Path
) -> None:
    out = tmp_path / "narrow"
    with pytest.warns() as seen:  # nothing escapes the command line to Python either
        warnings.warn("sentinel", UserWarning, stacklevel=1)
        args = ["--data", str(narrow_data), "--hidden-sizes", "3", "--epochs", "1", "--quiet"]
        fitted = runner.invoke(app, ["fit", *args, "--out", str(out)])
        assert fitted.exit_code == 0, fitted.output
        for command in (
            ["eval", str(out)],
            ["sample", str(out), "-n", "2", "-o", str(tmp_path / "s.npy")],
            ["score", str(out), str(narrow_data)],
            ["inpaint", str(out), "-o", str(tmp_path / "i.npy"), "--observed", "random:0.5"],
        ):
            result = runner.invoke(app, command)
            assert result.exit_code in (0, 1), result.output  # inpaint refuses flat data
            assert "connectivity" not in result.output and "Warning" not in result.output
    assert [str(w.message) for w in seen] == ["sentinel"]
    notes = [line for line in fitted.output.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and "MADE connectivity is incomplete" in notes[0], fitted.output
    assert "layer 0 has 3 units but 7 degrees are needed" in notes[0]
    assert "Warning" not in fitted.output and fitted.output.endswith(notes[0] + "\n")


def test_an_unfinished_run_says_how_to_resume_it(tmp_path: Path, narrow_data: Path) -> None:
    out = tmp_path / "run"
    args = ["fit", "--data", str(narrow_data), "--hidden-sizes", "8", "--epochs", "1", "--quiet"]
    assert runner.invoke(app, [*args, "--out", str(out)]).exit_code == 0
    (out / "checkpoint.pt").unlink()  # as a run killed before its end leaves it
    for command in (
        ["eval", str(out)],
        ["sample", str(out), "-o", str(tmp_path / "s.npy")],
        ["score", str(out), str(narrow_data)],
    ):
        result = runner.invoke(app, command)
        assert result.exit_code == 1, result.output
        assert "unfinished run" in result.stderr, result.output
        assert f"densitykit resume {out}" in result.stderr


def test_a_full_disk_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failed write() names no file; the scores and pictures say which file it was."""
    import errno

    from matplotlib.figure import Figure

    out = tmp_path / "run"
    assert invoke("fit", "--grid-size", "16", *TINY, "--out", str(out)).exit_code == 0
    data = tmp_path / "points.npy"
    np.save(data, np.zeros((5, 2), dtype=np.int64))

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")  # as a write() says it

    monkeypatch.setattr(np, "savetxt", full)
    monkeypatch.setattr(np, "save", full)
    monkeypatch.setattr(Figure, "savefig", full)
    for path in (tmp_path / "scores.csv", tmp_path / "scores.npy"):
        result = runner.invoke(app, ["score", str(out), str(data), "-o", str(path)])
        assert result.exit_code == 1, result.output
        assert f"cannot write {path} (No space left on device)" in result.stderr, result.output
        assert not path.exists()
    picture = tmp_path / "curves.png"
    with pytest.raises(densitykit.CheckpointError, match="curves.png .No space left on device"):
        densitykit.plots.learning_curves([{"epoch": 1, "train_nll": 1.0, "val_nll": 1.0}], picture)


def test_a_presets_narrow_layers_get_no_note(tmp_path: Path, narrow_data: Path) -> None:
    """The sizes a preset chose are deliberate (as the image presets' are): no note."""
    densitykit.presets.PRESETS.register(
        "test-narrow", lambda: {"hidden_sizes": (3,), "epochs": 1}, description="narrow"
    )
    out = tmp_path / "run"
    args = ["--data", str(narrow_data), "--preset", "test-narrow", "--quiet", "--out", str(out)]
    try:
        result = runner.invoke(app, ["fit", *args])
    finally:
        densitykit.presets.PRESETS.unregister("test-narrow")
    assert result.exit_code == 0, result.output
    assert json.loads((out / "config.json").read_text())["model"]["hidden_sizes"] == [3]
    assert "note:" not in result.output and "connectivity" not in result.output


# -- every size and seed option refuses what makes no sense, in one line ----------------------
_FIT = ["fit", "--data", "shapes", "--max-train", "100", "--epochs", "1", "--hidden-sizes", "8"]
_FIT += ["--masks", "any-order", "--num-masks", "2", "--batch-size", "50", "--quiet"]
_BIG_SEED = str(2**70)
# (command and options up to the run folder, options after it); RUN stands for the run folder.
# Zero is meaningful for --patience and --mask-every (off, as documented), --hidden-sizes
# (no hidden layer) and sample -n (an empty array); score --batch-size is tested elsewhere.
_REFUSED = [
    *[
        (["fit", *opts], [])
        for opts in (
            ["--num-masks", "0"], ["--num-masks", "-1"], ["--epochs", "0"], ["--epochs", "-1"],
            ["--batch-size", "0"], ["--batch-size", "-1"], ["--patience", "-1"],
            ["--mask-every", "-1"], ["--eval-masks", "0"], ["--eval-masks", "-1"],
            ["--num-components", "0"], ["--num-components", "-1"], ["--grid-size", "0"],
            ["--grid-size", "-1"], ["--max-train", "0"], ["--max-train", "-1"],
            ["--hidden-sizes", "-1"], ["--hidden-sizes", "8,0"],
            ["--seed", "-1"], ["--seed", _BIG_SEED], ["--data-seed", "-1"],
            ["--data-seed", _BIG_SEED],
        )
    ],
    *[
        (["eval", "RUN"], opts)
        for opts in (
            ["--num-masks", "0"], ["--num-masks", "-1"], ["--draw-orderings", "0"],
            ["--draw-orderings", "-1"], ["--draw-orderings", str(10**9)],
            ["--draw-orderings", "2", "--ordering-seed", "-1"],
            ["--draw-orderings", "2", "--ordering-seed", _BIG_SEED],
        )
    ],
    *[
        (["inpaint", "RUN"], ["--out", "OUT.png", *opts])
        for opts in (
            ["-n", "0"], ["-n", "-1"], ["-n", "40000"], ["--num-images", "0"],
            ["--num-images", "-1"], ["--seed", "-1"], ["--seed", _BIG_SEED],
            ["--draw-orderings", "0"], ["--draw-orderings", "-1"],
            ["--draw-orderings", "2", "--ordering-seed", _BIG_SEED],
        )
    ],
    *[
        (["sample", "RUN"], ["--out", "OUT.npy", *opts])
        for opts in (["-n", "-1"], ["-n", str(10**13)], ["--seed", "-1"],
                     ["--seed", _BIG_SEED], ["--label", "-1"])
    ],
    *[(["score", "RUN", "DATA"], ["--num-masks", value]) for value in ("0", "-1")],
    *[
        (["resume", "RUN"], opts)
        for opts in (["--epochs", "0"], ["--epochs", "-1"], ["--patience", "-1"])
    ],
]  # fmt: skip


@pytest.fixture(scope="module")
def finished_image_run(tmp_path_factory) -> Path:
    """A tiny run on image data over all orderings (every command applies to it)."""
    run = tmp_path_factory.mktemp("finished") / "run"
    result = runner.invoke(app, [*_FIT, "--out", str(run)])
    assert result.exit_code == 0, result.output
    return run


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize(("before", "after"), _REFUSED, ids=lambda args: " ".join(args))
def test_every_size_and_seed_option_refuses_nonsense_in_one_line_and_writes_nothing(
    finished_image_run, tmp_path, monkeypatch, before, after
) -> None:
    monkeypatch.chdir(tmp_path)
    run = finished_image_run
    data = tmp_path / "data.npy"
    if before[0] == "score":
        dim = json.loads((run / "config.json").read_text())["model"]["dim"]
        np.save(data, np.zeros((3, dim), dtype=np.int64))
    if before[0] == "fit":  # the option given last wins
        before, after = ["fit", *_FIT[1:], *before[1:]], ["--out", str(tmp_path / "new")]
    args = [{"RUN": str(run), "DATA": str(data)}.get(a, a) for a in before + after]
    args = [str(tmp_path / a) if a.startswith("OUT.") else a for a in args]
    run_before, here_before = _files(run), _files(tmp_path)
    result = runner.invoke(app, args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    assert _files(run) == run_before and _files(tmp_path) == here_before
    assert not (tmp_path / "new").exists()
