"""Heads own their values: a head over real values, added in this one file, trains,
samples exactly, answers queries and is checked against its own support."""

from __future__ import annotations

import math

import pytest
import strategies
import torch
from torch.distributions import Normal, constraints

import densitykit as dk
from densitykit.heads import Head
from densitykit.heads.base import float32_at_least
from densitykit.orderless import OrderlessConfig, OrderlessModel
from densitykit.queries import complete, complete_reference
from densitykit.sampling import encodes_per_variable, sample_fast, sample_reference
from densitykit.train import TrainConfig, fit

NAME = "test-values-gaussian"
MIN_LOG_SCALE = -4.0


class GaussianHead(Head):
    """A Gaussian per variable: a mean and a log-scale (bounded below) from the backbone."""

    support = constraints.real
    value_dtype = torch.float32

    def __init__(self, dim: int, num_values: int = 0) -> None:
        super().__init__(dim, num_values)
        self.params_per_variable = 2
        self.input_width = 1

    def encode(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return x.to(dtype)  # the value itself is the input

    def distribution(self, params: torch.Tensor) -> Normal:
        params = float32_at_least(params)
        log_scale = params[..., 1].clamp(min=MIN_LOG_SCALE)
        return Normal(params[..., 0], log_scale.exp())

    def _log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.distribution(params).log_prob(x)

    def sample(
        self, params: torch.Tensor, variable: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        normal = self.distribution(params)
        source = generator.device if generator is not None else params.device
        noise = torch.randn(params.shape[0], generator=generator, device=source)
        return normal.loc + normal.scale * noise.to(device=params.device, dtype=params.dtype)


class GaussianByUniforms(GaussianHead):
    """The same head drawing by the inverse CDF of declared uniforms (the sampler's
    path that draws the uniforms of many steps at once)."""

    uniforms_per_sample = 1

    def sample(
        self, params: torch.Tensor, variable: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return self.sample_by_uniforms(params, generator)

    def sample_from_uniforms(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return self.distribution(params).icdf(u[0])


@pytest.fixture
def gaussian():
    """The head registered for one test (not at import: other modules list the heads)."""
    dk.heads.register(NAME)(GaussianHead)
    try:
        yield NAME
    finally:
        dk.heads.HEADS.unregister(NAME)


@pytest.fixture(params=[GaussianHead, GaussianByUniforms], ids=["own-draws", "uniforms"])
def any_gaussian(request: pytest.FixtureRequest):
    """Each way of drawing, registered for one test."""
    dk.heads.register(NAME)(request.param)
    try:
        yield NAME
    finally:
        dk.heads.HEADS.unregister(NAME)


def correlated(num: int, seed: int) -> torch.Tensor:
    """``(num, 2)`` draws of a Gaussian of correlation 0.9 (unit variances)."""
    generator = torch.Generator().manual_seed(seed)
    first, noise = torch.randn(2, num, generator=generator)
    return torch.stack([first, 0.9 * first + math.sqrt(1 - 0.9**2) * noise], 1)


def build(name: str, dim: int = 5, **options) -> dk.AutoregressiveModel:
    options = {"hidden_sizes": (9, 4), "masks": "multi-ordering", "num_masks": 3, **options}
    return dk.create_model(name, dim, seed=7, **options).double()


# -- the head's kind of values -------------------------------------------------------------
def test_a_real_head_has_no_finite_number_of_values(gaussian: str) -> None:
    model = dk.create_model(gaussian, 2, hidden_sizes=(8,))
    assert model.num_values == 0 and model.config.num_values == 0
    assert dk.ModelConfig.from_dict(model.config.to_dict()) == model.config
    assert model.head.placeholder == 0.0
    with pytest.raises(ValueError, match="num_values must be 0, got 3"):
        GaussianHead(dim=2, num_values=3)
    with pytest.raises(ValueError, match="num_values"):
        dk.heads.create("categorical", dim=2, num_values=1)


def test_a_real_head_without_its_own_distribution_says_so() -> None:
    class Bare(GaussianHead):
        distribution = Head.distribution

    with pytest.raises(NotImplementedError, match="over real values.*distribution"):
        Bare(dim=1).distribution(torch.zeros(3, 1, 2))


# -- (1) training ---------------------------------------------------------------------------
def test_fit_lowers_the_nll_of_correlated_gaussian_data(gaussian: str) -> None:
    torch.manual_seed(0)
    model = dk.create_model(gaussian, 2, hidden_sizes=(32,))
    train, val = correlated(2000, seed=1), correlated(500, seed=2)
    with torch.no_grad():
        before = float(-model.log_prob(val).mean())
    result = fit(model, train, val, TrainConfig(epochs=15, batch_size=100, lr=1e-2, patience=None))
    with torch.no_grad():
        after = float(-model.log_prob(val).mean())
    nlls = [record["val_nll"] for record in result.history]
    assert nlls[-1] < nlls[0] and after < before - 0.5
    # The truth: 2-D Gaussian entropy 0.5 log((2 pi e)^2 det) with det = 1 - 0.9^2.
    entropy = math.log(2 * math.pi * math.e) + 0.5 * math.log(1 - 0.9**2)
    assert after < entropy + 0.15, (after, entropy)
    assert model.sample(3).dtype == torch.float32


# -- (2) exact sampling -----------------------------------------------------------------------
def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(1000 + seed)


@pytest.mark.parametrize("hidden_sizes", [(), (12,), (9, 4)])
@pytest.mark.parametrize("direct", [False, True], ids=["", "direct"])
def test_fast_sampler_is_the_reference_sampler(
    any_gaussian: str, hidden_sizes: tuple[int, ...], direct: bool
) -> None:
    model = build(any_gaussian, hidden_sizes=hidden_sizes, direct_connections=direct)
    strategies.sharpen(model, 0.7, seed=3)  # past values matter, draws stay moderate
    assert encodes_per_variable(model.head, torch.float64)
    parts = model.backbone, model.head
    for mask in range(model.num_masks):
        fast = sample_fast(*parts, 50, mask=mask, generator=seeded(mask))
        naive = sample_reference(*parts, 50, mask=mask, generator=seeded(mask))
        assert fast.dtype == torch.float32 and fast.shape == (50, 5)
        assert torch.equal(fast, naive)
        assert bool(torch.isfinite(fast).all())
        assert len(fast.unique()) == fast.numel()  # real draws, not a stuck buffer
    samples = model.sample((4, 6), generator=seeded(9))
    assert samples.shape == (4, 6, 5) and samples.dtype == torch.float32


def test_fast_completion_is_the_reference_completion(any_gaussian: str) -> None:
    model = build(any_gaussian)
    strategies.sharpen(model, 0.7, seed=3)
    x = correlated(40, seed=4).repeat(1, 3)[:, :5]
    observed = torch.rand(40, 5, generator=seeded(0)) < 0.5
    parts = model.backbone, model.head
    fast = complete(*parts, x, observed, generator=seeded(1))
    slow = complete_reference(*parts, x, observed, generator=seeded(1))
    assert torch.equal(fast, slow) and fast.dtype == torch.float32
    assert torch.equal(fast[observed], x[observed])
    through_model = model.complete(x, observed, generator=seeded(1))
    assert torch.equal(through_model, fast)


# -- (3) queries ------------------------------------------------------------------------------
def test_marginal_plus_conditional_is_the_joint(gaussian: str) -> None:
    # One ordering (the natural one) that puts the observed variable first.
    model = dk.create_model(gaussian, 2, hidden_sizes=(16,)).double()
    strategies.sharpen(model, 1.5, seed=5)
    x = correlated(30, seed=6)
    observed = torch.tensor([True, False])
    joint = model.log_prob(x).double()
    marginal = model.marginal_log_prob(x, observed)
    conditional = model.conditional_log_prob(x, observed)
    torch.testing.assert_close(marginal + conditional, joint)
    # The missing value is never read by the marginal.
    moved = x.clone()
    moved[:, 1] = 1e3
    torch.testing.assert_close(model.marginal_log_prob(moved, observed), marginal)


def test_the_conditional_integrates_to_one(gaussian: str) -> None:
    model = dk.create_model(gaussian, 2, hidden_sizes=(16,)).double()
    strategies.sharpen(model, 1.0, seed=8)
    grid = torch.linspace(-30.0, 30.0, 6001, dtype=torch.float64)
    for first in (-1.0, 0.3, 2.0):
        x = torch.stack([torch.full_like(grid, first), grid], 1)
        with torch.no_grad():
            density = model.conditional_log_prob(x, torch.tensor([True, False])).exp()
        assert abs(float(torch.trapezoid(density, grid)) - 1.0) < 1e-3


def test_the_model_density_integrates_to_one(gaussian: str) -> None:
    model = dk.create_model(gaussian, 2, hidden_sizes=(16,), num_masks=1).double()
    strategies.sharpen(model, 1.0, seed=8)
    grid = torch.linspace(-30.0, 30.0, 1201, dtype=torch.float64)
    points = torch.cartesian_prod(grid, grid)
    with torch.no_grad():
        density = model.log_prob(points).exp().reshape(len(grid), len(grid))
    total = torch.trapezoid(torch.trapezoid(density, grid, dim=1), grid)
    assert abs(float(total) - 1.0) < 1e-3


def test_an_orderless_model_takes_the_real_head(gaussian: str) -> None:
    model = OrderlessModel(OrderlessConfig(gaussian, dim=3, hidden_sizes=(8,))).double()
    x = correlated(6, seed=9).repeat(1, 2)[:, :3]
    observed = torch.tensor([True, False, False])
    joint = model.log_prob(x, orderings=torch.tensor([[0, 1, 2]]))
    split = model.marginal_log_prob(x, observed, orderings=torch.tensor([[0, 1, 2]]))
    split = split + model.conditional_log_prob(x, observed, orderings=torch.tensor([[0, 1, 2]]))
    torch.testing.assert_close(split, joint)
    drawn = model.complete(x, observed, generator=seeded(2))
    assert drawn.dtype == torch.float32 and torch.equal(drawn[:, 0], x[:, 0])


# -- (4) checks against the head's support ----------------------------------------------------
def test_check_values_follows_the_head_support(gaussian: str) -> None:
    real = dk.create_model(gaussian, 2, hidden_sizes=(8,))
    expected = r"NaN or infinite values; expected values in the support Real\(\)"
    with pytest.raises(ValueError, match=expected):
        real.check_values(torch.tensor([[0.0, float("nan")]]))
    with pytest.raises(ValueError, match=r"NaN.*Real\(\)"):
        real.log_prob(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(TypeError, match="torch.Tensor of real values"):
        real.log_prob([[0.5, 1.0]])
    # Real values (integers are reals too) are taken as they are, not rounded.
    assert torch.equal(real.validate(torch.tensor([[0.5, -2.25]])), torch.tensor([[0.5, -2.25]]))
    assert real.validate(torch.tensor([[1, 2]])).dtype == torch.float32

    bernoulli = dk.create_model("bernoulli", 3, hidden_sizes=(4,))
    expected = r"non-integer values \(such as 0.5\).*support Boolean\(\)"
    with pytest.raises(ValueError, match=expected):
        bernoulli.check_values(torch.tensor([[0.0, 0.5, 1.0]]))
    with pytest.raises(ValueError, match=r"support 0..1 \(Boolean\(\)\).*got values in 0..2"):
        bernoulli.check_values(torch.tensor([[0, 2, 1]]))


class PositiveHead(GaussianHead):
    """A log-normal per variable: values on the positive reals."""

    support = constraints.positive

    def encode(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return torch.log(x.to(dtype))

    def _log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return super()._log_prob(params, torch.log(x)) - torch.log(x)

    def sample(
        self, params: torch.Tensor, variable: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return super().sample(params, variable, generator).exp()


def test_a_support_without_bounds_is_checked_by_its_constraint() -> None:
    head = PositiveHead(dim=2)
    assert head.placeholder == 1.0  # biject_to(positive)(0) = exp(0): never log(0)
    backbone = dk.MADE(
        dk.masks.create("natural", dim=2, hidden_sizes=(8,)),
        params_per_variable=2,
        input_width=1,
    )
    model = dk.AutoregressiveModel(backbone, head)
    with pytest.raises(ValueError, match=r"support GreaterThan\(lower_bound=0.0\).*got -1, 0"):
        model.check_values(torch.tensor([[1.0, -1.0], [0.0, 2.0]]))
    # Queries fill the missing values with the placeholder, inside the support.
    x = torch.tensor([[2.0, 0.5]])
    assert torch.isfinite(model.marginal_log_prob(x, torch.tensor([True, False]))).all()
    drawn = model.complete(x, torch.tensor([True, False]), generator=seeded(0))
    assert bool((drawn > 0).all())
