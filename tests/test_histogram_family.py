"""The histogram family: independent per-variable histograms, a family of its own.

Exact by enumeration, its queries from independence, its samples by frequency, and
the ways in: ``--family histogram``, ``--head histogram``, ``create_model`` and the
run folders written when the histogram was a MADE head without a backbone.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import densitykit as dk
from densitykit import runs
from densitykit.checkpoint import load_object, read_json, save_object
from densitykit.cli import app
from densitykit.family import FAMILIES
from densitykit.histogram import HistogramConfig, HistogramModel, resolve_family
from tests.helpers import every_value, frequencies_match

runner = CliRunner()
FIT = ["fit", "--data", "1d-bimodal", "--epochs", "3", "--quiet", "--device", "cpu"]


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def peaked(dim: int, num_values: int, seed: int = 0) -> HistogramModel:
    """A float64 histogram with random (far from uniform) logits."""
    model = HistogramModel(HistogramConfig(dim, num_values)).double()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.head.logits.copy_(
            torch.randn(dim, num_values, generator=generator, dtype=torch.float64) * 2
        )
    return model


# -- the family --------------------------------------------------------------------------
def test_histogram_is_a_registered_family_with_every_capability() -> None:
    assert FAMILIES.get("histogram") is HistogramModel
    model = dk.create_model("histogram", 2, 3)
    assert isinstance(model, HistogramModel) and model.family == "histogram"
    assert model.capabilities == frozenset(dk.family.CAPABILITIES)
    assert not hasattr(model, "backbone")  # no network at all
    assert list(model.state_dict()) == ["head.logits"]  # the name it had as a MADE head


@pytest.mark.parametrize(("dim", "num_values"), [(1, 2), (1, 5), (2, 3), (3, 2)])
def test_log_prob_is_normalised_by_enumeration(dim: int, num_values: int) -> None:
    model = peaked(dim, num_values)
    total = model.log_prob(every_value(dim, num_values)).exp().sum()
    assert float(total) == pytest.approx(1.0, abs=1e-12)


def test_log_prob_is_the_product_of_the_softmaxes() -> None:
    model = peaked(3, 4)
    x = every_value(3, 4)
    probs = torch.softmax(model.head.logits, -1)
    expected = probs[0, x[:, 0]] * probs[1, x[:, 1]] * probs[2, x[:, 2]]
    torch.testing.assert_close(model.log_prob(x).exp(), expected)
    assert model.log_prob(x.reshape(4, 16, 3)).shape == (4, 16)  # batch shapes kept


def test_marginal_plus_conditional_is_the_joint_for_every_pattern() -> None:
    model = peaked(3, 3, seed=1)
    values = every_value(3, 3)
    joint = model.log_prob(values)
    for pattern in itertools.product([False, True], repeat=3):
        observed = torch.tensor(pattern)
        if observed.all() or not observed.any():
            continue
        marginal = model.marginal_log_prob(values, observed)
        conditional = model.conditional_log_prob(values, observed)
        assert marginal.dtype == conditional.dtype == torch.float64
        torch.testing.assert_close(marginal + conditional, joint.double(), rtol=0, atol=1e-12)
        # Each is normalised: the conditional over the missing values, for each observed.
        codes = (values * observed * 3 ** torch.arange(3)).sum(1)
        for code in codes.unique():
            rows = codes == code
            assert float(conditional[rows].exp().sum()) == pytest.approx(1.0, abs=1e-12)
        assert float(marginal.exp().sum()) == pytest.approx(3 ** int((~observed).sum()))


def test_queries_ignore_orderings_and_refuse_a_context() -> None:
    model = peaked(3, 3)
    x, observed = every_value(3, 3), torch.tensor([True, False, False])
    orderings = [torch.tensor([2, 1, 0])]
    torch.testing.assert_close(
        model.conditional_log_prob(x, observed, connectivities=orderings),
        model.conditional_log_prob(x, observed),
    )
    assert model.query_mixture() is None
    with pytest.raises(ValueError, match="not conditional"):
        model.log_prob(x, context=torch.zeros(len(x)))
    with pytest.raises(ValueError, match="no mixture"):
        model.query_mixture(num_masks=2)


def test_sample_frequencies_match_the_probabilities() -> None:
    model = peaked(2, 3, seed=2)
    support = every_value(2, 3)
    samples = model.sample(20_000, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (20_000, 2) and samples.dtype == torch.long
    assert frequencies_match(samples, support, model.log_prob(support).exp().detach())
    assert model.sample((2, 5)).shape == (2, 5, 2)


def test_completions_keep_the_observed_values_and_draw_the_missing_ones_exactly() -> None:
    model = peaked(2, 3, seed=3)
    observed = torch.tensor([True, False])
    x = torch.tensor([[2, 0]]).repeat(20_000, 1)
    done = model.complete(x, observed, generator=torch.Generator().manual_seed(1))
    assert bool((done[:, 0] == 2).all())
    candidates = every_value(2, 3)[every_value(2, 3)[:, 0] == 2]
    expected = model.conditional_log_prob(candidates, observed).exp()
    assert frequencies_match(done, candidates, expected)


def test_check_values_names_what_came() -> None:
    model = peaked(2, 3)
    with pytest.raises(ValueError, match=r"shape \(\.\.\., D\) with D=2"):
        model.log_prob(torch.zeros(4, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="support 0..2"):
        model.log_prob(torch.tensor([[0, 3]]))
    with pytest.raises(TypeError, match="torch.Tensor"):
        model.log_prob([[0, 1]])


def test_config_round_trip_and_refusals() -> None:
    config = HistogramConfig(3, 4)
    assert HistogramConfig.from_dict(config.to_dict()) == config
    assert config.head == "histogram" and "head" not in config.to_dict()
    with pytest.raises(ValueError, match="unknown histogram config keys"):
        HistogramConfig.from_dict({"dim": 3, "num_values": 4, "hidden_sizes": [8]})
    with pytest.raises(ValueError, match="num_values"):
        HistogramConfig(3, 1)
    with pytest.raises(ValueError, match="cannot be conditioned"):
        dk.create_model("histogram", 4, 3, num_labels=2)


def test_the_made_has_a_backbone_and_refuses_the_histogram_head() -> None:
    config = dk.ModelConfig("histogram", dim=2, num_values=3)
    with pytest.raises(ValueError, match="family of its own"):
        dk.build_model(config)
    head = dk.heads.create("histogram", dim=2, num_values=3)
    with pytest.raises(ValueError, match="takes no parameters from a backbone"):
        dk.AutoregressiveModel(None, head)


def test_resolve_family_reads_a_made_with_the_histogram_head() -> None:
    made = dk.ModelConfig("histogram", dim=1, num_values=6, layout="dense").to_dict()
    assert resolve_family("made", made) == ("histogram", {"dim": 1, "num_values": 6})
    assert resolve_family("orderless", {"head": "histogram"})[0] == "orderless"
    config = dk.RunConfig(model=dk.ModelConfig(head="histogram"))
    assert config.family == "histogram" and config.model == HistogramConfig()


def test_checkpoints_round_trip_and_old_made_checkpoints_load(tmp_path: Path) -> None:
    model = peaked(2, 3).float()
    dk.save_checkpoint(tmp_path / "new.pt", model)
    loaded = dk.load_checkpoint(tmp_path / "new.pt")
    assert isinstance(loaded, HistogramModel)
    assert torch.equal(loaded.head.logits, model.head.logits)
    old = load_object(tmp_path / "new.pt")
    old["family"] = "made"
    old["model_config"] = dk.ModelConfig("histogram", 2, 3, layout="dense").to_dict()
    save_object(tmp_path / "old.pt", old)
    loaded = dk.load_checkpoint(tmp_path / "old.pt")
    assert isinstance(loaded, HistogramModel) and loaded.config == HistogramConfig(2, 3)
    assert torch.equal(loaded.head.logits, model.head.logits)


# -- through the CLI ---------------------------------------------------------------------
def test_families_lists_histogram() -> None:
    result = invoke("families")
    assert result.exit_code == 0
    assert "histogram" in [line.split()[0] for line in result.output.splitlines() if line.strip()]


def test_head_histogram_and_family_histogram_make_the_same_run(tmp_path: Path) -> None:
    by_head = invoke(*FIT, "--head", "histogram", "--out", tmp_path / "head")
    by_family = invoke(*FIT, "--family", "histogram", "--out", tmp_path / "family")
    assert by_head.exit_code == 0, by_head.output
    assert by_family.exit_code == 0, by_family.output
    config = read_json(tmp_path / "head" / "config.json")
    assert config == read_json(tmp_path / "family" / "config.json")
    assert config["family"] == "histogram"
    assert config["model"] == {"dim": 1, "num_values": 100}
    assert config["train"]["lr"] == 0.05  # the histogram's preset, either way
    metrics = [json.loads((tmp_path / r / "metrics.json").read_text()) for r in ("head", "family")]
    for key in ("test_nll_nats", "val_nll_nats", "train_nll_nats", "best_epoch", "num_params"):
        assert metrics[0][key] == metrics[1][key], key
    assert metrics[0]["family"] == "histogram" and metrics[0]["head"] == "histogram"
    assert metrics[0]["num_params"] == 100


def test_family_histogram_refuses_options_it_does_not_have(tmp_path: Path) -> None:
    for extra in (["--hidden-sizes", "8"], ["--masks", "random"], ["--head", "categorical"]):
        result = invoke(*FIT, "--family", "histogram", *extra, "--out", tmp_path / "x")
        assert result.exit_code == 1 and "apply to --family histogram" in result.output
    result = invoke(
        "fit", "--data", "shapes", "--data-option", "size=8", "--data-option",
        "num_samples=200", "--family", "histogram", "--condition", "label", "--out",
        tmp_path / "y", "--quiet",
    )  # fmt: skip
    assert result.exit_code == 1 and "does not condition on labels" in result.output
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def _as_old_made_run(run: Path) -> None:
    """Rewrite a histogram run folder as the MADE with the histogram head wrote it."""
    config = read_json(run / "config.json")
    made = dk.ModelConfig("histogram", **config["model"], layout="dense").to_dict()
    config["family"], config["model"] = "made", made
    (run / "config.json").write_text(json.dumps(config, indent=2))
    checkpoint = load_object(run / "checkpoint.pt")
    checkpoint["family"], checkpoint["model_config"] = "made", made
    save_object(run / "checkpoint.pt", checkpoint)
    state = load_object(run / "train_state.pt")
    state["family_state"] = {"mask_index": 0}
    save_object(run / "train_state.pt", state)


def test_an_old_made_histogram_run_folder_loads_evaluates_samples_and_resumes(
    tmp_path: Path,
) -> None:
    run = tmp_path / "run"
    assert invoke(*FIT, "--family", "histogram", "--patience", "0", "--out", run).exit_code == 0
    before = json.loads((run / "metrics.json").read_text())
    uninterrupted = tmp_path / "uninterrupted"
    assert invoke(*FIT, "--family", "histogram", "--patience", "0", "--epochs", "5", "--out",
                  uninterrupted).exit_code == 0  # fmt: skip
    _as_old_made_run(run)
    assert read_json(run / "config.json")["family"] == "made"

    loaded = runs.load_run(run)
    assert isinstance(loaded.model, HistogramModel) and loaded.config.family == "histogram"
    evaluated = runs.evaluate_run(run)
    assert evaluated["nll_nats"] == pytest.approx(before["test_nll_nats"], abs=1e-9)
    result = invoke("sample", run, "-n", "7", "--out", tmp_path / "s.npy")
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "s.npy").shape == (7, 1)
    result = invoke("inpaint", "--help")  # a histogram answers the queries: no refusal
    assert result.exit_code == 0

    resumed = invoke("resume", run, "--epochs", "5", "--quiet")
    assert resumed.exit_code == 0, resumed.output
    after = json.loads((run / "metrics.json").read_text())
    exact = json.loads((uninterrupted / "metrics.json").read_text())
    assert after["test_nll_nats"] == exact["test_nll_nats"]  # as if never stopped
    assert read_json(run / "config.json")["family"] == "histogram"


def test_an_old_config_without_a_family_reads_as_the_histogram(tmp_path: Path) -> None:
    old = {
        "data": {"name": "1d-bimodal", "options": {}},
        "model": dk.ModelConfig("histogram").to_dict(),
        "train": dk.TrainConfig().to_dict(),
    }
    config = dk.RunConfig.from_dict(old)
    assert config.family == "histogram" and config.model == HistogramConfig()
