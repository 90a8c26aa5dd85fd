"""Model families: one workflow (fit, run folders, resume, torchrun, the CLI) for each.

The orderless model and a user's own family (``examples/family_plugin.py``, loaded
with ``--plugin``) go through the same commands as the MADE.
"""

from __future__ import annotations

import ast
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from typer.testing import CliRunner

import densitykit as dk
from densitykit import family, runs
from densitykit.checkpoint import load_object, read_json, save_object
from densitykit.cli import app
from densitykit.errors import UnknownNameError
from densitykit.orderless import OrderlessConfig, OrderlessModel

runner = CliRunner()
REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "examples" / "family_plugin.py"
IMAGES = ["--data", "shapes", "--data-option", "size=8", "--data-option", "num_samples=300"]
ORDERLESS = ["--family", "orderless", "--hidden-sizes", "16", "--num-masks", "2"]
WORKFLOW = ("train", "distributed", "runs", "runfolder", "checkpoint", "scoring", "cli")


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


# -- the import rule ---------------------------------------------------------------------
def _imports(module: str) -> set[str]:
    """Every densitykit module ``densitykit/<module>.py`` imports, inside functions too."""
    tree = ast.parse((REPO / "densitykit" / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            if node.module == "densitykit":
                found |= {f"densitykit.{alias.name}" for alias in node.names}
    return found


@pytest.mark.parametrize("module", WORKFLOW)
def test_the_workflow_imports_neither_masks_nor_made(module) -> None:
    """The workflow knows a model through the family protocol only: MADE machinery
    (masks, mask mixtures, the backbone) stays in the MADE family."""
    imported = _imports(module)
    assert not imported & {"densitykit.masks", "densitykit.made"}, module


def test_the_import_rule_test_can_fail() -> None:
    assert "densitykit.masks" in _imports("model")  # the MADE family does import them


def test_backbone_is_none_only_inside_the_made_family() -> None:
    for module in WORKFLOW:
        assert "backbone" not in (REPO / "densitykit" / f"{module}.py").read_text(), module


# -- the registry ------------------------------------------------------------------------
def test_families_are_registered_and_listed() -> None:
    assert {"made", "orderless"} <= set(family.names())
    assert family.FAMILIES.get("orderless") is OrderlessModel
    result = invoke("families")
    assert result.exit_code == 0
    listed = [line.split()[0] for line in result.output.splitlines() if line.strip()]
    assert {"histogram", "made", "maf", "orderless"} <= set(listed)
    with pytest.raises(UnknownNameError, match="'made', 'maf', 'orderless'"):
        family.FAMILIES.get("nope")
    refused = invoke("fit", "--family", "nope", "--out", "x")
    assert refused.exit_code == 1 and "unknown model family 'nope'" in refused.output


def test_a_config_written_before_families_reads_as_made(tmp_path) -> None:
    out = tmp_path / "run"
    result = invoke("fit", "--grid-size", "16", "--hidden-sizes", "8", "--epochs", "1",
                    "--quiet", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["family"] == "made"
    del config["family"]
    (out / "config.json").write_text(json.dumps(config))
    data = load_object(out / "checkpoint.pt")
    del data["family"]
    save_object(out / "checkpoint.pt", data)  # atomic: the loaded file is memory-mapped
    state = load_object(out / "train_state.pt")
    state["mask_index"] = state.pop("family_state")["mask_index"]  # a state of before
    save_object(out / "train_state.pt", state)
    assert runs.load_run(out).config.family == "made"
    assert invoke("eval", out).exit_code == 0
    assert invoke("resume", out, "--epochs", "2", "--quiet").exit_code == 0


# -- the orderless family through the command line ----------------------------------------
@pytest.fixture(scope="module")
def orderless_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("orderless") / "run"
    result = invoke("fit", *IMAGES, *ORDERLESS, "--epochs", "3", "--quiet", "--out", out)
    assert result.exit_code == 0, result.output
    return out


def test_orderless_fit_writes_a_run_folder_of_its_family(orderless_run) -> None:
    config = read_json(orderless_run / "config.json")
    assert config["family"] == "orderless"
    assert config["model"]["hidden_sizes"] == [16] and config["model"]["num_orderings"] == 2
    run = runs.load_run(orderless_run)
    assert isinstance(run.model, OrderlessModel)
    metrics = read_json(orderless_run / "metrics.json")
    assert metrics["family"] == "orderless" and metrics["epochs_run"] == 3
    # The joint NLL in metrics.json is the model's own: its two orderings, exactly.
    test = run.dataset.splits()["test"]
    expected = float(-run.model.log_prob(test).mean())
    assert metrics["test_nll_nats"] == pytest.approx(expected, rel=1e-6)


def test_orderless_runs_answer_every_command(orderless_run, tmp_path) -> None:
    joint = invoke("eval", orderless_run, "--json")
    assert joint.exit_code == 0, joint.output
    top = invoke("eval", orderless_run, "--observed", "top-half", "--json")
    assert top.exit_code == 0, top.output
    joint_nll = json.loads(joint.output)["nll_nats"]
    conditional = json.loads(top.output)["conditional_nll_nats"]
    assert 0 < conditional < joint_nll
    drawn = invoke("eval", orderless_run, "--draw-orderings", "3")
    assert drawn.exit_code == 0 and "3 mask(s) drawn" in drawn.output
    for args in (
        ["sample", orderless_run, "-n", "5", "-o", tmp_path / "s.npy"],
        ["sample", orderless_run, "-n", "5", "-o", tmp_path / "s.png"],
        ["inpaint", orderless_run, "--out", tmp_path / "i.png", "--num-images", "2"],
        ["score", orderless_run, "shapes", "--data-option", "size=8",
         "--data-option", "num_samples=300", "-o", tmp_path / "scores.csv"],
    ):  # fmt: skip
        result = invoke(*args)
        assert result.exit_code == 0, (args, result.output)
    samples = torch.from_numpy(__import__("numpy").load(tmp_path / "s.npy"))
    assert samples.shape == (5, 64) and set(samples.unique().tolist()) <= {0, 1}


def test_orderless_resume_continues(tmp_path) -> None:
    out = tmp_path / "run"
    assert (
        invoke("fit", *IMAGES, *ORDERLESS, "--epochs", "1", "--quiet", "--out", out).exit_code == 0
    )
    result = invoke("resume", out, "--epochs", "2", "--quiet")
    assert result.exit_code == 0, result.output
    assert read_json(out / "metrics.json")["epochs_run"] == 2


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dropout", "0.1"], "--dropout set MADE settings"),
        (["--masks", "natural"], "--masks set MADE settings"),
        (["--preset", "shapes"], "--preset does not apply"),
    ],
)
def test_orderless_refuses_what_does_not_apply(tmp_path, args, message) -> None:
    result = invoke("fit", *IMAGES, *ORDERLESS, *args, "--epochs", "1", "--out", tmp_path / "r")
    assert result.exit_code == 1 and message in result.output, result.output
    assert not (tmp_path / "r").exists()


def test_the_draw_of_a_step_shards_with_its_rows() -> None:
    model = OrderlessModel(OrderlessConfig("bernoulli", 6, hidden_sizes=(8,)))
    orderings, cuts = model.training_draw(10, torch.Generator().manual_seed(0))
    rows = torch.tensor([3, 4, 5])
    shard_orderings, shard_cuts = model.shard_draw((orderings, cuts), rows)
    assert torch.equal(shard_orderings, orderings[3:6]) and torch.equal(shard_cuts, cuts[3:6])
    x = torch.randint(0, 2, (10, 6))
    whole = model.training_log_prob(x, (orderings, cuts))
    torch.testing.assert_close(model.training_log_prob(x[3:6], (shard_orderings, shard_cuts)),
                               whole[3:6])  # fmt: skip


@pytest.mark.slow
def test_orderless_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    fit = [sys.executable, "-m", "densitykit", "fit", *IMAGES[:4],
           "--data-option", "num_samples=2000", "--family", "orderless",
           "--hidden-sizes", "64", "--num-masks", "2", "--epochs", "6", "--patience", "0",
           "--batch-size", "20", "--quiet"]  # fmt: skip
    reference = tmp_path / "reference"
    subprocess.run([*fit, "--out", str(reference)], check=True, env=env, timeout=600)
    killed = tmp_path / "killed"
    process = subprocess.Popen([*fit, "--out", str(killed)], env=env)
    log = killed / "metrics.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and process.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= 2:
            break
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert not (killed / "metrics.json").exists()
    subprocess.run([sys.executable, "-m", "densitykit", "resume", str(killed), "--quiet"],
                   check=True, env=env, timeout=600)  # fmt: skip

    def timeless(record: dict) -> dict:
        return {k: v for k, v in record.items() if k not in ("seconds", "train_seconds")}

    expected = read_json(reference / "metrics.json")
    assert timeless(read_json(killed / "metrics.json")) == timeless(expected)
    a = runs.load_run(reference).model.state_dict()
    b = runs.load_run(killed).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed gloo"
)
def test_orderless_two_gloo_processes_train_like_one(tmp_path) -> None:
    from test_distributed import WEIGHT_TOLERANCE, _max_abs_diff, _torchrun

    args = [*IMAGES, *ORDERLESS, "--epochs", "2", "--batch-size", "25", "--quiet",
            "--device", "cpu"]  # fmt: skip
    workdir = tmp_path / "torchrun"
    workdir.mkdir()
    result = _torchrun(["fit", *args, "--out", "run"], cwd=workdir, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    single = tmp_path / "single"
    assert invoke("fit", *args, "--out", single).exit_code == 0
    state_parallel = load_object(workdir / "run" / "train_state.pt")
    state_single = load_object(single / "train_state.pt")
    assert state_parallel["step"] == state_single["step"]
    # Both drew every step's orderings and cuts from the same generator, whole batch first.
    assert torch.equal(state_parallel["draw_rng"], state_single["draw_rng"])
    assert _max_abs_diff(state_parallel["model"], state_single["model"]) < WEIGHT_TOLERANCE


# -- your own family in one file -------------------------------------------------------------
@pytest.fixture
def forget_plugin_family():
    yield
    if "independent" in family.names():
        family.FAMILIES.unregister("independent")
    for name in [n for n in sys.modules if "family_plugin" in n]:
        del sys.modules[name]


def test_a_plugin_family_goes_through_every_command(tmp_path, forget_plugin_family) -> None:
    out = tmp_path / "run"
    plugin = ["--plugin", PLUGIN]
    result = invoke("fit", *plugin, "--family", "independent", *IMAGES, "--epochs", "2",
                    "--quiet", "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert read_json(out / "config.json")["family"] == "independent"
    for args in (
        ["resume", out, "--epochs", "3", "--quiet"],
        ["eval", out],
        ["sample", out, "-n", "4", "-o", tmp_path / "s.npy"],
        ["score", out, "shapes", "--data-option", "size=8", "--data-option", "num_samples=300"],
    ):
        result = invoke(*args, *plugin)
        assert result.exit_code == 0, (args, result.output)
    assert read_json(out / "metrics.json")["epochs_run"] == 3
    refused = invoke("eval", out, "--observed", "top-half", *plugin)
    assert refused.exit_code == 1 and "does not answer" in refused.output
    # Without the plug-in, the run says what it needs (nothing is imported from it).
    family.FAMILIES.unregister("independent")
    missing = invoke("eval", out)
    assert missing.exit_code == 1 and "'independent' is not registered" in missing.output


def test_a_plugin_family_learns(forget_plugin_family) -> None:
    dk.plugins.import_plugins([str(PLUGIN)])
    model_class = family.FAMILIES.get("independent")
    data = dk.load_dataset("shapes", size=8, num_samples=300)
    facts = family.DataFacts("shapes", data.dim, data.num_values, data.kind, data.shape)
    config = model_class.complete_config(model_class.config_class(), facts)
    model = model_class.from_config(config)
    before = dk.evaluate(model, data.val)
    result = dk.fit(model, data.train, data.val, dk.TrainConfig(epochs=3, lr=0.05))
    assert result.best_val_nll < before - 1.0


def test_options_not_given_keep_the_familys_own_defaults(tmp_path) -> None:
    """`fit --family orderless` without --hidden-sizes or --direct builds the orderless
    model's defaults (500 units, direct connections), not the MADE's 256,256."""
    out = tmp_path / "run"
    result = invoke("fit", *IMAGES, "--family", "orderless", "--epochs", "1", "--quiet",
                    "--out", out)  # fmt: skip
    assert result.exit_code == 0, result.output
    model = read_json(out / "config.json")["model"]
    defaults = OrderlessConfig()
    assert model["hidden_sizes"] == list(defaults.hidden_sizes)
    assert model["direct_connections"] is defaults.direct_connections is True
    assert model["num_orderings"] == defaults.num_orderings
