"""A new model starts at its training data's marginals (``initialize_from_data``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import densitykit as dk
from densitykit.heads import GaussianHead, GaussianMixtureHead
from densitykit.maf import MAFConfig, MAFModel
from densitykit.orderless import OrderlessConfig, OrderlessModel
from densitykit.runs import DataConfig, RunConfig, fit_run, load_run
from densitykit.train import TrainConfig


def shifted(num: int = 400, dim: int = 3, seed: int = 0) -> torch.Tensor:
    """Data far from N(0, 1): variable d has mean -8 + 5 d and scale 0.5 + d."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(num, dim, generator=generator)
    return -8.0 + 5.0 * torch.arange(dim) + (0.5 + torch.arange(dim)) * noise


def test_gaussian_head_starts_at_each_marginal() -> None:
    x = shifted()
    head = GaussianHead(dim=3)
    normal = head.distribution(head.data_initial_bias(x))
    torch.testing.assert_close(normal.mean, x.mean(0))
    torch.testing.assert_close(normal.stddev, x.std(0, unbiased=False), rtol=1e-5, atol=1e-5)


def test_mixture_head_spreads_its_components_over_each_marginal() -> None:
    x = shifted()
    head = GaussianMixtureHead(dim=3, num_components=4)
    mixture = head.distribution(head.data_initial_bias(x))
    std = x.std(0, unbiased=False)
    # Equal weights, means symmetric about the marginal mean, each component as wide.
    torch.testing.assert_close(mixture.mixture_distribution.probs, torch.full((3, 4), 0.25))
    torch.testing.assert_close(mixture.mean, x.mean(0), rtol=1e-5, atol=1e-5)
    means = mixture.component_distribution.loc
    spread = (means - x.mean(0)[:, None]) / std[:, None]
    torch.testing.assert_close(spread, head.mean_offset.expand(3, -1), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(
        mixture.component_distribution.scale, std[:, None].expand(3, 4), rtol=1e-5, atol=1e-5
    )


def test_a_constant_variable_starts_at_twice_the_smallest_scale() -> None:
    x = torch.cat([torch.zeros(10, 1), torch.randn(10, 1)], dim=1)
    head = GaussianHead(dim=2, min_scale=1e-3)
    scale = head.distribution(head.data_initial_bias(x)).stddev
    assert float(scale[0]) == pytest.approx(2e-3, rel=1e-4)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (torch.zeros(5, 2), r"shape \(N, 3\)"),
        (torch.zeros(0, 3), r"N >= 1"),
        (torch.tensor([[0.0, float("nan"), 1.0]]), "finite"),
    ],
)
def test_bad_values_are_refused(values: torch.Tensor, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        GaussianHead(dim=3).data_initial_bias(values)


@pytest.mark.parametrize(
    ("head", "options"),
    [("gaussian", {}), ("gaussian-mixture", {"num_components": 3})],
)
@pytest.mark.parametrize("layout", ["dense", "packed"])
def test_the_made_starts_where_the_head_says(head: str, options: dict, layout: str) -> None:
    """With the hidden weights zeroed, the network outputs its output bias: the head's
    data_initial_bias, one row per variable, in either layout."""
    x = shifted()
    model = dk.create_model(head, 3, hidden_sizes=(600,), layout=layout, **options)
    assert model.initialize_from_data(x) is True
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "bias" not in name:
                parameter.zero_()
        params = model.backbone(torch.zeros(2, 3))
    torch.testing.assert_close(params, model.head.data_initial_bias(x).expand(2, -1, -1))


def test_the_first_variable_of_a_made_is_its_marginal_gaussian() -> None:
    """The first variable has no inputs: its conditional is the marginal fit exactly."""
    x = shifted()
    model = dk.create_model("gaussian", 3, hidden_sizes=(16,))
    model.initialize_from_data(x)
    params = model.backbone(model.head.encode(x[:5], torch.float32))
    normal = model.head.distribution(params[:, 0])
    torch.testing.assert_close(normal.mean, x[:, 0].mean().expand(5))
    torch.testing.assert_close(
        normal.stddev, x[:, 0].std(unbiased=False).expand(5), rtol=1e-5, atol=1e-5
    )


def test_the_orderless_model_starts_where_the_head_says() -> None:
    x = shifted()
    config = OrderlessConfig(head="gaussian", dim=3, hidden_sizes=(6,))
    model = OrderlessModel(config)
    assert model.initialize_from_data(x) is True
    torch.testing.assert_close(model.out.bias.view(3, -1), model.head.data_initial_bias(x))


@pytest.mark.parametrize("permutation", ["reverse", "random"])
def test_the_first_maf_layer_standardises_its_first_variable(permutation: str) -> None:
    """The first variable in the first layer's ordering has no inputs: that layer maps
    it to (x - mean) / std exactly, whatever the ordering."""
    x = shifted()
    config = MAFConfig(dim=3, num_transforms=1, hidden_sizes=(8,), permutation=permutation,
                       seed=3)  # fmt: skip
    model = MAFModel(config)
    assert model.initialize_from_data(x) is True
    first = int(model.orderings[0, 0])
    z, _ = model.transform(x)
    expected = (x[:, first] - x[:, first].mean()) / x[:, first].std(unbiased=False)
    torch.testing.assert_close(z[:, first], expected, rtol=1e-4, atol=1e-4)


def test_discrete_models_have_no_data_start() -> None:
    model = dk.create_model("bernoulli", 4, hidden_sizes=(8,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert model.initialize_from_data(torch.ones(6, 4)) is False
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_data_starts_far_ahead_of_a_fixed_start() -> None:
    """On data far from N(0, 1), the start alone is worth most of the likelihood."""
    x = shifted(num=2000)
    fixed = dk.create_model("gaussian-mixture", 3, hidden_sizes=(16,), num_components=3)
    fitted = dk.create_model("gaussian-mixture", 3, hidden_sizes=(16,), num_components=3)
    fitted.load_state_dict(fixed.state_dict())
    fitted.initialize_from_data(x)
    with torch.no_grad():
        assert float(fitted.log_prob(x).mean()) > float(fixed.log_prob(x).mean()) + 10


@pytest.mark.parametrize("data_init", [True, False])
def test_a_run_records_and_applies_its_data_start(tmp_path: Path, data_init: bool) -> None:
    """``TrainConfig.data_init`` is saved beside the weights; with it the run's model
    starts at the (standardised) training values' marginals, without it at the fixed
    start. One epoch at a learning rate of 1e-12 leaves the start as it was."""
    raw = shifted(num=300)
    np.save(tmp_path / "values.npy", raw.numpy())
    config = RunConfig(
        DataConfig("file", {"path": str(tmp_path / "values.npy")}),
        dk.ModelConfig(head="gaussian", hidden_sizes=(8,)),
        TrainConfig(epochs=1, data_init=data_init, lr=1e-12),
    )
    fit_run(config, tmp_path / "run")
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["train"]["data_init"] is data_init
    run = load_run(tmp_path / "run")
    bias = run.model.backbone.layers[-1].bias.view(3, 2)
    train = run.dataset.train
    if data_init:
        expected = run.model.head.data_initial_bias(train)
    else:
        expected = run.model.head.initial_bias().expand(3, -1)
    torch.testing.assert_close(bias, expected, rtol=1e-4, atol=1e-4)
