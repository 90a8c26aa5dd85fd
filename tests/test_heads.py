"""Every registered head passes the same invariants; each head's own maths is checked."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import strategies
import torch
from helpers import REAL_HEAD_SKIP, head_num_values, head_options, head_values, is_real_head
from scipy import stats

import densitykit as dk
from densitykit.heads.logistic_mixture import discretized_logistic_log_prob


def tiny_model(
    head: str,
    *,
    dim: int = 3,
    num_masks: int = 1,
    masks: str = "multi-ordering",
    hidden_sizes=(6, 5),
    seed: int = 0,
    direct: bool = True,
    **options,
) -> dk.AutoregressiveModel:
    return dk.create_model(
        head,
        dim,
        head_num_values(head, 3),
        hidden_sizes=hidden_sizes,
        **head_options(head, dim),
        masks=masks,
        num_masks=num_masks,
        seed=seed,
        direct_connections=direct,
        **options,
    )


def all_inputs(dim: int, num_values: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(num_values), repeat=dim)))


def data(head: str, dim: int, num_values: int) -> torch.Tensor:
    """Every input of a discrete head; 50 rows of its values for a real (or mixed) head."""
    if is_real_head(head):
        return head_values(head, (50, dim), num_values, torch.Generator().manual_seed(0))
    return all_inputs(dim, num_values)


def sharpen(model: dk.AutoregressiveModel, scale: float = 3.0) -> None:
    """Scale every parameter so the tiny model's distribution is far from uniform."""
    strategies.sharpen(model, scale, seed=1)


@pytest.mark.parametrize("head", dk.heads.names())
def test_shapes_and_dtypes(head: str) -> None:
    model = tiny_model(head)
    x = head_values(head, (7, 3), model.num_values)
    assert model.log_prob(x).shape == (7,)
    assert model.log_prob(x.view(7, 1, 3)).shape == (7, 1)
    assert model.log_prob(x[0]).shape == ()
    samples = model.sample(11, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (11, 3) and samples.dtype == model.head.value_dtype
    assert bool(model.head.support.check(samples).all())
    if not is_real_head(head):
        assert samples.dtype == torch.long
        assert int(samples.min()) >= 0 and int(samples.max()) < model.num_values
    assert model.log_prob(x).dtype == torch.float32


@pytest.mark.parametrize("head", dk.heads.names())
def test_gradients_reach_every_trainable_parameter(head: str) -> None:
    model = tiny_model(head, num_masks=2, hidden_sizes=(8,))
    x = data(head, 3, model.num_values)
    (-model.log_prob(x).mean()).backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert bool(parameter.grad.abs().sum() > 0), name


@pytest.mark.parametrize("head", dk.heads.names())
def test_state_dict_round_trip(head: str) -> None:
    model = tiny_model(head, num_masks=3)
    sharpen(model)
    clone = tiny_model(head, num_masks=3, seed=123)  # other masks: the load must restore them
    clone.load_state_dict(model.state_dict())
    x = data(head, 3, model.num_values)
    assert torch.equal(model.log_prob(x), clone.log_prob(x))


@pytest.mark.parametrize("head", dk.heads.names())
@pytest.mark.parametrize("num_masks", [1, 4])
def test_exact_normalization(head: str, num_masks: int) -> None:
    """Enumerate every input of a tiny model: the probabilities sum to one."""
    if is_real_head(head):
        pytest.skip(f"{REAL_HEAD_SKIP}: tests/test_heads_real.py integrates its density")
    for dim in (1, 3):
        model = tiny_model(head, dim=dim, num_masks=num_masks).double()
        sharpen(model)
        total = model.log_prob(all_inputs(dim, model.num_values)).detach().exp().sum()
        assert abs(float(total) - 1.0) < 1e-12


@pytest.mark.parametrize("one_hot", [False, True])
@pytest.mark.parametrize("num_values", [2, 5, 256])
def test_logistic_mixture_normalizes_for_extreme_parameters(num_values: int, one_hot: bool) -> None:
    head = dk.heads.create(
        "logistic-mixture", dim=1, num_values=num_values, num_components=3, one_hot=one_hot
    ).double()
    values = torch.arange(num_values)[:, None]
    for means, log_scales in [
        ((-30.0, 0.1, 40.0), (-9.0, 0.0, 9.0)),
        ((0.0, 0.0, 0.0), (-7.0, -7.0, -7.0)),
    ]:
        params = torch.tensor([[2.0, -1.0, 0.5, *means, *log_scales]], dtype=torch.float64)
        log_prob = head.log_prob(params[:, None, :].expand(num_values, 1, 9), values)
        assert torch.isfinite(log_prob).all()
        assert abs(float(log_prob.exp().sum()) - 1.0) < 1e-12


def test_discretized_logistic_is_exact_in_vanishing_bins() -> None:
    """Where sigma(a) - sigma(b) underflows, the log-mass still matches a float64 reference."""
    num_values = 256
    x = torch.tensor([200, 250, 128])
    mean = torch.tensor([-1.0, -1.0, -0.9])
    log_scale = torch.tensor([-6.0, -5.0, -6.5])
    got = discretized_logistic_log_prob(x, mean, log_scale, num_values)  # float32
    half = 1.0 / (num_values - 1)
    for value, mu, log_s, result in zip(
        x.tolist(), mean.tolist(), log_scale.tolist(), got.tolist()
    ):
        centre = 2 * value / (num_values - 1) - 1
        s = math.exp(log_s)
        upper, lower = (centre + half - mu) / s, (centre - half - mu) / s
        # log(sigma(upper) - sigma(lower)) with both sigmas ~ 1: use the upper tails.
        reference = math.log(
            math.exp(-lower) / (1 + math.exp(-lower)) - math.exp(-upper) / (1 + math.exp(-upper))
        )
        naive = torch.sigmoid(torch.tensor(upper)) - torch.sigmoid(torch.tensor(lower))
        assert float(naive) == 0.0  # the naive float32 difference vanishes here
        assert math.isfinite(result) and abs(result - reference) < 1e-3 * abs(reference)


def test_bernoulli_is_log_sigmoid_and_stable() -> None:
    head = dk.heads.create("bernoulli", dim=1)
    logits = torch.tensor([[[-200.0]], [[0.0]], [[200.0]]])
    got = head.log_prob(logits, torch.tensor([[1], [1], [0]]))
    assert torch.allclose(got[:, 0], torch.tensor([-200.0, -math.log(2.0), -200.0]))
    dist = head.distribution(logits)  # batch shape (3, 1)
    ones = torch.ones(3, 1, dtype=torch.long)
    assert torch.allclose(dist.log_prob(ones.float()), head.log_prob(logits, ones))


def test_categorical_matches_torch_distributions() -> None:
    head = dk.heads.create("categorical", dim=2, num_values=5)
    params = torch.randn(4, 2, 5)
    x = torch.randint(0, 5, (4, 2))
    assert torch.allclose(head.log_prob(params, x), head.distribution(params).log_prob(x))


def test_histogram_is_exactly_softmax_of_theta() -> None:
    model = dk.create_model("histogram", 1, 6)
    assert torch.equal(model.head.logits, torch.zeros(1, 6))  # initialised to zero
    with torch.no_grad():
        model.head.logits.copy_(torch.randn(1, 6))
    x = torch.arange(6)[:, None]
    expected = torch.softmax(model.head.logits[0], 0)
    assert torch.allclose(model.log_prob(x).exp(), expected)
    assert isinstance(model, dk.HistogramModel) and model.family == "histogram"  # no network


@pytest.mark.parametrize("head", dk.heads.names())
def test_sample_frequencies_match_probabilities(head: str) -> None:
    """Chi-square goodness of fit of samples against exp(log_prob), non-trivial orderings."""
    if is_real_head(head):
        pytest.skip(f"{REAL_HEAD_SKIP}: tests/test_heads_real.py checks sample moments")
    model = tiny_model(head, dim=2, num_masks=3, hidden_sizes=(6,), seed=5).double()
    sharpen(model, 2.0)
    support = all_inputs(2, model.num_values)
    probs = model.log_prob(support).detach().exp()
    num_samples = 20000
    samples = model.sample(num_samples, generator=torch.Generator().manual_seed(2024))
    codes = samples[:, 0] * model.num_values + samples[:, 1]
    observed = torch.bincount(codes, minlength=len(support)).double()
    expected = probs * num_samples
    keep = expected > 5
    statistic = float((((observed - expected) ** 2 / expected)[keep]).sum())
    statistic += (
        float(
            (observed[~keep].sum() - expected[~keep].sum()) ** 2
            / max(float(expected[~keep].sum()), 1e-9)
        )
        if bool((~keep).any())
        else 0.0
    )
    dof = int(keep.sum()) - 1 + int(bool((~keep).any()))
    assert stats.chi2.sf(statistic, dof) > 1e-3
    assert (
        model.family == "histogram"
        or len({tuple(model.backbone.connectivity(k).ordering.tolist()) for k in range(3)}) > 1
        or head == "histogram"
    )


def test_mixture_sampling_uses_every_mask() -> None:
    model = tiny_model("categorical", dim=2, num_masks=4)
    sharpen(model)
    per_mask = model.log_prob_per_mask(all_inputs(2, 3)).exp()
    mixture = model.log_prob(all_inputs(2, 3)).exp()
    assert torch.allclose(mixture, per_mask.mean(0), atol=1e-6)
    assert np.isclose(float(mixture.sum()), 1.0, atol=1e-5)


# -- shaped like torch.distributions ------------------------------------------------------
def head_and_params(name: str, batch: int = 6, dim: int = 2, seed: int = 0):
    """A head over K values (2 for bernoulli) and random parameters ``(batch, dim, P)``."""
    head = tiny_model(name, dim=dim).head.double()
    generator = torch.Generator().manual_seed(seed)
    params = torch.randn(batch, dim, head.params_per_variable, generator=generator).double()
    if name == "histogram":
        with torch.no_grad():
            head.logits.copy_(torch.randn(head.logits.shape, generator=generator))
    return head, params


@pytest.mark.parametrize("head", dk.heads.names())
def test_support_is_a_constraint_and_log_prob_checks_it(head: str) -> None:
    module, params = head_and_params(head)
    support = module.support
    assert isinstance(support, torch.distributions.constraints.Constraint)
    inside = head_values(head, (6, 2), module.num_values)
    assert bool(support.check(inside).all())
    assert module.log_prob(params, inside).shape == (6, 2)  # a known-good case passes
    outside = ("nan",) if is_real_head(head) else (-1, module.num_values)
    for bad in outside:
        x = inside.clone()
        x[3, 1] = float(bad) if is_real_head(head) else bad
        assert not bool(support.check(x).all())
        with pytest.raises(ValueError, match=rf"support .*got {bad}"):
            module.log_prob(params, x)
    with pytest.raises(TypeError, match="torch.Tensor"):
        module.log_prob(params, inside.tolist())


def test_bernoulli_support_is_boolean_and_others_integer_intervals() -> None:
    constraints = torch.distributions.constraints
    assert dk.heads.create("bernoulli", dim=1).support is constraints.boolean
    support = dk.heads.create("categorical", dim=1, num_values=5).support
    assert isinstance(support, constraints.integer_interval)
    assert (support.lower_bound, support.upper_bound) == (0, 4)


@pytest.mark.parametrize("head", dk.heads.names())
def test_distribution_is_a_torch_distribution_that_agrees_with_log_prob(head: str) -> None:
    module, params = head_and_params(head)
    if head == "mixed":  # a row of mixed kinds: one distribution per variable instead
        with pytest.raises(NotImplementedError, match="variable_distributions"):
            module.distribution(params)
        values = head_values(head, (9, 6, 2), 0, torch.Generator().manual_seed(1)).double()
        expected = module.log_prob(params.expand(9, 6, 2, -1), values)
        for variable, dist in enumerate(module.variable_distributions(params)):
            assert isinstance(dist, torch.distributions.Distribution)
            assert dist.batch_shape == (6,)
            got = dist.log_prob(values[..., variable]).double()
            torch.testing.assert_close(got, expected[..., variable].double())
        return
    dist = module.distribution(params)
    assert isinstance(dist, torch.distributions.Distribution)
    assert dist.batch_shape == (6, 2)
    if is_real_head(head):
        values = torch.linspace(-4.0, 4.0, 9, dtype=torch.float64)[:, None, None].expand(-1, 6, 2)
        expected = module.log_prob(params.expand(9, 6, 2, -1), values)
        torch.testing.assert_close(dist.log_prob(values).double(), expected.double())
        with pytest.raises(NotImplementedError, match="no values to enumerate"):
            dk.Head.distribution(module, params)
        samples = dist.sample((5,))
        assert samples.shape == (5, 6, 2) and bool(module.support.check(samples).all())
        return
    values = torch.arange(module.num_values)[:, None, None].expand(-1, 6, 2)
    expected = module.log_prob(params.expand(module.num_values, 6, 2, -1), values)
    got = dist.log_prob(values.to(torch.float64 if head == "bernoulli" else torch.long))
    torch.testing.assert_close(got.double(), expected.double())
    # The base class's enumeration gives the same distribution for every head.
    generic = dk.Head.distribution(module, params)
    torch.testing.assert_close(generic.probs.double(), got.exp().movedim(0, -1).double())
    samples = dist.sample((5,))
    assert samples.shape == (5, 6, 2)
    assert bool(module.support.check(samples).all())


def test_logistic_mixture_distribution_samples_follow_its_probabilities() -> None:
    head, params = head_and_params("logistic-mixture", batch=1, dim=1, seed=3)
    dist = head.distribution(params[0, 0])
    assert isinstance(dist, dk.heads.DiscretizedLogisticMixture) and dist.batch_shape == ()
    torch.manual_seed(0)
    samples = dist.sample((20000,))
    observed = torch.bincount(samples, minlength=head.num_values).double()
    expected = dist.log_prob(torch.arange(head.num_values)).exp() * 20000
    statistic = float(((observed - expected) ** 2 / expected).sum())
    assert stats.chi2.sf(statistic, head.num_values - 1) > 1e-3
    with pytest.raises(ValueError, match="support"):
        dist.log_prob(torch.tensor(head.num_values))
    unchecked = dk.heads.DiscretizedLogisticMixture(
        dist.logits, dist.means, dist.log_scales, head.num_values, validate_args=False
    )
    assert torch.isfinite(unchecked.log_prob(torch.tensor(0)))
