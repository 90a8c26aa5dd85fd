"""Proofs for the heads over real values, ``gaussian`` and ``gaussian-mixture``: their
densities integrate to one, sampling is exact, training finds a Gaussian's entropy."""

from __future__ import annotations

import math

import pytest
import strategies
import torch
from torch.distributions import MixtureSameFamily, Normal

import densitykit as dk
from densitykit.heads import GaussianHead, GaussianMixtureHead
from densitykit.sampling import sample_fast, sample_reference
from densitykit.train import TrainConfig, fit

REAL_HEADS = ["gaussian", "gaussian-mixture"]
OPTIONS = {"gaussian": {}, "gaussian-mixture": {"num_components": 3}}


def build(
    head: str, dim: int, scale: float = 1.0, seed: int = 8, **options
) -> dk.AutoregressiveModel:
    """A float64 MADE with random (seeded) weights large enough to matter."""
    options = {"hidden_sizes": (16,), **OPTIONS[head], **options}
    model = dk.create_model(head, dim, seed=seed, **options).double()
    strategies.sharpen(model, scale, seed=seed)
    return model


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(1000 + seed)


def correlated(num: int, seed: int) -> torch.Tensor:
    """``(num, 2)`` draws of a Gaussian of correlation 0.9 (unit variances)."""
    generator = torch.Generator().manual_seed(seed)
    first, noise = torch.randn(2, num, generator=generator)
    return torch.stack([first, 0.9 * first + math.sqrt(1 - 0.9**2) * noise], 1)


# -- the heads themselves ---------------------------------------------------------------------
def test_the_heads_are_registered_over_the_reals() -> None:
    for name, kind in (("gaussian", GaussianHead), ("gaussian-mixture", GaussianMixtureHead)):
        assert name in dk.heads.names() and dk.heads.get(name) is kind
        head = dk.heads.create(name, dim=3)
        assert head.num_values == 0 and dk.heads.default_num_values(name) == 0
        assert head.value_dtype == torch.float32 and head.placeholder == 0.0
        assert head.support is torch.distributions.constraints.real
        assert head.input_width == 1
    assert dk.heads.create("gaussian", dim=1).params_per_variable == 2
    assert dk.heads.create("gaussian-mixture", dim=1).params_per_variable == 3 * 5
    assert dk.heads.create("gaussian-mixture", dim=1, num_components=2).params_per_variable == 6


@pytest.mark.parametrize("head", REAL_HEADS)
def test_bad_options_are_refused(head: str) -> None:
    with pytest.raises(ValueError, match="num_values must be 0, got 4"):
        dk.heads.create(head, dim=2, num_values=4)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="min_scale must be a positive finite number"):
            dk.heads.create(head, dim=2, min_scale=bad)
    with pytest.raises(TypeError, match="min_scale must be a positive number, got str"):
        dk.heads.create(head, dim=2, min_scale="0.1")


def test_gaussian_is_a_normal_with_a_scale_bounded_below() -> None:
    head = GaussianHead(dim=2, min_scale=0.05).double()
    params = torch.tensor([[[1.5, -60.0], [-0.5, 2.0]]], dtype=torch.float64)
    normal = head.distribution(params)
    assert isinstance(normal, Normal) and normal.batch_shape == (1, 2)
    torch.testing.assert_close(normal.loc, torch.tensor([[1.5, -0.5]], dtype=torch.float64))
    scale = torch.tensor([[0.05, 0.05 + math.log1p(math.exp(2.0))]], dtype=torch.float64)
    torch.testing.assert_close(normal.scale, scale)  # a very negative raw scale stops at 0.05
    x = torch.tensor([[1.0, 3.0]])
    torch.testing.assert_close(head.log_prob(params, x), normal.log_prob(x.double()))


def test_gaussian_mixture_is_mixture_same_family() -> None:
    head = GaussianMixtureHead(dim=2, num_components=3).double()
    params = torch.randn(4, 2, 9, generator=seeded(0), dtype=torch.float64)
    mixture = head.distribution(params)
    assert isinstance(mixture, MixtureSameFamily) and mixture.batch_shape == (4, 2)
    assert isinstance(mixture.component_distribution, Normal)
    x = torch.randn(4, 2, generator=seeded(1))
    torch.testing.assert_close(head.log_prob(params, x), mixture.log_prob(x.double()))
    # By hand: the component means are the outputs plus offsets spread over [-1, 1].
    logits, means, raw = params[0, 0].split(3)
    means = means + torch.tensor([-0.5, 0.0, 0.5], dtype=torch.float64)
    scales = 1e-3 + torch.nn.functional.softplus(raw)
    density = (logits.softmax(0) * Normal(means, scales).log_prob(x[0, 0].double()).exp()).sum()
    torch.testing.assert_close(head.log_prob(params, x)[0, 0], density.log())


# -- (1) the densities integrate to one ---------------------------------------------------------
@pytest.mark.parametrize("head", REAL_HEADS)
def test_a_one_variable_density_integrates_to_one(head: str) -> None:
    model = build(head, 1, scale=2.0)
    grid = torch.linspace(-40.0, 40.0, 40001, dtype=torch.float64)
    with torch.no_grad():
        density = model.log_prob(grid[:, None]).double().exp()
    assert abs(float(torch.trapezoid(density, grid)) - 1.0) < 1e-3


@pytest.mark.parametrize("head", REAL_HEADS)
@pytest.mark.parametrize("num_masks", [1, 3])
def test_a_two_variable_density_integrates_to_one(head: str, num_masks: int) -> None:
    model = build(head, 2, masks="multi-ordering", num_masks=num_masks)
    grid = torch.linspace(-25.0, 25.0, 1001, dtype=torch.float64)
    points = torch.cartesian_prod(grid, grid)
    with torch.no_grad():
        density = model.log_prob(points).double().exp().reshape(len(grid), len(grid))
    total = torch.trapezoid(torch.trapezoid(density, grid, dim=1), grid)
    assert abs(float(total) - 1.0) < 1e-3


@pytest.mark.parametrize("head", REAL_HEADS)
def test_a_conditional_integrates_to_one(head: str) -> None:
    model = build(head, 2, masks="ordering", mask_options={"ordering": [1, 0]})
    grid = torch.linspace(-40.0, 40.0, 20001, dtype=torch.float64)
    observed = torch.tensor([False, True])  # the second variable comes first in the ordering
    for given in (-1.0, 0.3, 2.0):
        x = torch.stack([grid, torch.full_like(grid, given)], 1)
        with torch.no_grad():
            density = model.conditional_log_prob(x, observed).double().exp()
        assert abs(float(torch.trapezoid(density, grid)) - 1.0) < 1e-3


# -- (2) exact sampling -----------------------------------------------------------------------
@pytest.mark.parametrize("head", REAL_HEADS)
@pytest.mark.parametrize("hidden_sizes", [(), (12,), (9, 4)])
@pytest.mark.parametrize("direct", [False, True], ids=["", "direct"])
def test_fast_sampler_is_the_reference_sampler(
    head: str, hidden_sizes: tuple[int, ...], direct: bool
) -> None:
    model = build(
        head,
        5,
        scale=0.7,
        hidden_sizes=hidden_sizes,
        direct_connections=direct,
        masks="multi-ordering",
        num_masks=3,
    )
    parts = model.backbone, model.head
    for mask in range(model.num_masks):
        fast = sample_fast(*parts, 80, mask=mask, generator=seeded(mask))
        naive = sample_reference(*parts, 80, mask=mask, generator=seeded(mask))
        assert fast.dtype == torch.float32 and fast.shape == (80, 5)
        assert torch.equal(fast, naive)
        assert bool(torch.isfinite(fast).all()) and len(fast.unique()) == fast.numel()
    again = model.sample(40, generator=seeded(7))
    assert torch.equal(again, model.sample(40, generator=seeded(7)))  # same seed, same samples


@pytest.mark.parametrize("head", REAL_HEADS)
def test_sample_moments_match_the_distribution(head: str) -> None:
    model = build(head, 1, scale=2.0)
    with torch.no_grad():
        params = model.backbone(torch.zeros(1, 1, dtype=torch.float64))  # D = 1: no inputs read
        dist = model.head.distribution(params)
    mean, variance = float(dist.mean), float(dist.variance)
    num = 200_000
    samples = model.sample(num, generator=seeded(3)).double()[:, 0]
    # Standard errors of the sample mean and variance (the fourth moment from the samples).
    mean_error = math.sqrt(variance / num)
    fourth = float(((samples - mean) ** 4).mean())
    variance_error = math.sqrt((fourth - variance**2) / num)
    assert abs(float(samples.mean()) - mean) < 5 * mean_error
    assert abs(float(samples.var()) - variance) < 5 * variance_error
    # The moments of the distribution are those of its density (quadrature).
    grid = torch.linspace(mean - 60, mean + 60, 60001, dtype=torch.float64)
    with torch.no_grad():
        density = model.log_prob(grid[:, None]).double().exp()
    assert abs(float(torch.trapezoid(grid * density, grid)) - mean) < 1e-3 * (1 + abs(mean))
    second = float(torch.trapezoid((grid - mean) ** 2 * density, grid))
    assert abs(second - variance) < 1e-3 * (1 + variance)


# -- (3) the autoregressive property, under every mask builder ---------------------------------
@pytest.mark.parametrize("head", REAL_HEADS)
@pytest.mark.parametrize("masks", dk.masks.names())
def test_parameters_ignore_own_and_later_values(head: str, masks: str) -> None:
    """The Jacobian of each variable's parameters is zero on its own and later values."""
    mask_options = {"ordering": [3, 0, 2, 1]} if masks == "ordering" else {}
    model = build(
        head, 4, hidden_sizes=(10, 7), masks=masks, num_masks=2, mask_options=mask_options
    )
    backbone, reached = model.backbone, 0
    for mask in range(model.num_masks):
        degrees = backbone.connectivity(mask).input_degrees
        backbone.set_mask(mask)
        for point in range(3):  # several points: ReLU can hide an edge at one of them
            x = torch.randn(1, 4, dtype=torch.float64, generator=seeded(10 * mask + point))
            jac = torch.autograd.functional.jacobian(
                lambda values: backbone(model.head.encode(values, values.dtype)), x
            )[0, :, :, 0]  # (D, P, D)
            for variable in range(4):
                forbidden = degrees >= degrees[variable]
                assert torch.count_nonzero(jac[variable][:, forbidden]) == 0
                reached += torch.count_nonzero(jac[variable][:, ~forbidden])
    assert reached > 0  # the earlier values do reach the parameters


# -- (4) training ---------------------------------------------------------------------------
@pytest.mark.parametrize("head", REAL_HEADS)
def test_fit_lowers_the_nll_of_correlated_data_to_the_entropy(head: str) -> None:
    torch.manual_seed(0)
    model = dk.create_model(head, 2, hidden_sizes=(32,), **OPTIONS[head])
    train, val = correlated(2000, seed=1), correlated(500, seed=2)
    with torch.no_grad():
        before = float(-model.log_prob(val).mean())
    config = TrainConfig(epochs=15, batch_size=100, lr=1e-2, patience=None)
    result = fit(model, train, val, config)
    with torch.no_grad():
        after = float(-model.log_prob(val).mean())
    # The truth: 2-D Gaussian entropy 0.5 log((2 pi e)^2 det) with det = 1 - 0.9^2.
    entropy = math.log(2 * math.pi * math.e) + 0.5 * math.log(1 - 0.9**2)
    assert len(result.history) == 15 and math.isfinite(result.history[-1]["val_nll"])
    assert after < before - 0.5
    assert abs(after - entropy) < 0.15, (after, entropy)


# -- (5) checks -------------------------------------------------------------------------------
@pytest.mark.parametrize("head", REAL_HEADS)
def test_check_values_refuses_nan_and_infinity(head: str) -> None:
    model = dk.create_model(head, 2, hidden_sizes=(8,))
    for bad in (float("nan"), float("inf"), -float("inf")):
        with pytest.raises(ValueError, match=r"NaN or infinite values; expected .*Real\(\)"):
            model.check_values(torch.tensor([[0.0, bad]]))
        with pytest.raises(ValueError, match=r"NaN or infinite"):
            model.log_prob(torch.tensor([[bad, 1.0]]))
    model.check_values(torch.tensor([[0.25, -1e6]]))  # any finite real
    model.check_values(torch.tensor([[1, 2]]))  # integers are reals


# -- where a network starts --------------------------------------------------------------------
@pytest.mark.parametrize("head", REAL_HEADS)
@pytest.mark.parametrize(
    "options",
    [
        {"hidden_sizes": (8,)},  # dense (small)
        {"hidden_sizes": (600,), "layout": "packed"},
        {"hidden_sizes": (8, 8), "masks": "random", "num_masks": 2, "direct_connections": True},
    ],
)
def test_a_new_network_starts_at_the_heads_initial_bias(head: str, options: dict) -> None:
    """Every variable's parameters start from initial_bias (scale 1 + min_scale), whatever
    the layout: with every weight zeroed the network outputs exactly its output bias."""
    dim = 5
    model = dk.create_model(head, dim, **OPTIONS[head], **options)
    expected = model.head.initial_bias()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "bias" not in name:
                parameter.zero_()
        params = model.backbone(torch.zeros(3, dim))
    torch.testing.assert_close(params, expected.expand(3, dim, -1))
    scale = model.head.distribution(params).stddev if head == "gaussian" else None
    if scale is not None:
        torch.testing.assert_close(scale, torch.full((3, dim), 1.0 + model.head.min_scale))
    else:
        components = model.head.distribution(params).component_distribution.scale
        torch.testing.assert_close(components, torch.full_like(components, 1.001))


def test_the_orderless_model_starts_at_the_heads_initial_bias() -> None:
    from densitykit.orderless import OrderlessConfig, OrderlessModel

    config = OrderlessConfig(head="gaussian-mixture", dim=4, hidden_sizes=(6,),
                             head_options={"num_components": 2})  # fmt: skip
    model = OrderlessModel(config)
    bias = model.out.bias.view(4, -1)
    torch.testing.assert_close(bias, model.head.initial_bias().expand(4, -1))


def test_set_output_bias_refuses_the_wrong_shape() -> None:
    model = dk.create_model("gaussian", 3, hidden_sizes=(4,))
    with pytest.raises(ValueError, match=r"expected an output bias of shape \(2,\).*got \(3,\)"):
        model.backbone.set_output_bias(torch.zeros(3))
