"""Proofs for the heads over mixed rows (``mixed``) and spiked reals (``spike``): each
variable takes exactly its own parameters, the model sums to one over the codes and
integrates to one over the reals (the spike counted as mass), its conditionals and
marginals too, under every mask and in the orderless model; parameters ignore the
present and the future; the fast sampler is the reference; sample moments are the
model's."""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import strategies
import torch
from hypothesis import given
from hypothesis import strategies as st

import densitykit as dk
from densitykit.heads import (
    BernoulliHead,
    CategoricalHead,
    GaussianHead,
    GaussianMixtureHead,
    MixedHead,
    SpikeAndSlab,
    SpikeHead,
)
from densitykit.heads.mixed import parse_kind
from densitykit.orderless import OrderlessConfig, OrderlessModel
from densitykit.sampling import complete_fast, complete_reference, sample_fast, sample_reference
from densitykit.train import TrainConfig, fit

SPIKE = 0.5


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(2000 + seed)


def build(kinds: list[str], scale: float = 1.5, seed: int = 3, **options) -> dk.AutoregressiveModel:
    """A float64 MADE over ``kinds`` with large random (seeded) weights."""
    # A smallest scale of 0.05 keeps every component wider than the quadrature's step.
    options = {
        "hidden_sizes": (12,),
        "num_components": 2,
        "seed": seed,
        "min_scale": 0.05,
        **options,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dk.masks.ConnectivityWarning)
        model = dk.create_model("mixed", len(kinds), 0, kinds=kinds, **options).double()
    strategies.sharpen(model, scale, seed=seed)
    return model


# -- quadrature over a row of mixed columns ---------------------------------------------------
def column_points(kind: str, half_width: float, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The points of one column and the weight of each in the total mass: codes with
    weight 1; a real grid with trapezoid weights; for a spike, the grid (which misses
    the spike) plus the spike itself with weight 1 (its log_prob is a log-mass)."""
    name, argument = parse_kind(kind)
    if name == "binary":
        return torch.tensor([0.0, 1.0], dtype=torch.float64), torch.ones(2, dtype=torch.float64)
    if name == "categorical":
        return torch.arange(argument, dtype=torch.float64), torch.ones(
            argument, dtype=torch.float64
        )
    grid = torch.linspace(-half_width, half_width, count, dtype=torch.float64)
    weights = torch.full_like(grid, float(grid[1] - grid[0]))
    weights[[0, -1]] /= 2
    if name == "real":
        return grid, weights
    assert not bool((grid.float() == argument).any())  # the grid misses the spike
    return torch.cat([grid, grid.new_tensor([argument])]), torch.cat([weights, grid.new_ones(1)])


def total_mass(
    log_prob,
    kinds: list[str],
    fixed: dict[int, float] | None = None,
    count: int = 801,
    half_width: float = 16.0,
) -> float:
    """$\\sum$ over codes, $\\int$ over reals (and the spike's mass) of ``exp(log_prob(rows))``
    over the columns not in ``fixed`` (those hold their given value)."""
    fixed = fixed or {}
    columns = [
        (torch.tensor([fixed[column]], dtype=torch.float64), torch.ones(1, dtype=torch.float64))
        if column in fixed
        else column_points(kind, half_width, count)
        for column, kind in enumerate(kinds)
    ]
    rows = torch.cartesian_prod(*(points for points, _ in columns)).reshape(-1, len(kinds))
    weights = torch.cartesian_prod(*(w for _, w in columns)).reshape(-1, len(kinds)).prod(1)
    with torch.no_grad():
        density = log_prob(rows).double().exp()
    return float((density * weights).sum())


# -- the heads --------------------------------------------------------------------------------
def test_the_heads_are_registered_with_the_contract() -> None:
    assert dk.heads.get("mixed") is MixedHead and dk.heads.get("spike") is SpikeHead
    head = dk.heads.create(
        "mixed", dim=4, num_values=0, kinds=["real", "binary", "categorical:5", "spike:-1.5"],
        num_components=3,
    )  # fmt: skip
    assert head.num_values == 0 and head.value_dtype == torch.float32
    assert head.variable_widths.outputs == (9, 1, 5, 10)
    assert head.variable_widths.inputs == (1, 1, 5, 1)
    assert (head.params_per_variable, head.input_width) == (10, 5)
    one = dk.heads.create("mixed", dim=1, num_values=0, kinds=["real"], num_components=1)
    assert isinstance(one.parts[0], GaussianHead)  # K = 1: a Gaussian
    spike = dk.heads.create("spike", dim=2, value=2.0, num_components=2)
    assert spike.params_per_variable == 7 and spike.value == 2.0
    # The options are JSON: a config saves them and rebuilds the head.
    config = dk.ModelConfig(
        "mixed", dim=2, num_values=0, hidden_sizes=(4,),
        head_options={"kinds": ["binary", "spike:0.25"], "num_components": 2},
    )  # fmt: skip
    again = dk.ModelConfig.from_dict(config.to_dict())
    assert dk.build_model(again).head.kinds == ["binary", "spike:0.25"]


@pytest.mark.parametrize("family", ["made", "orderless"])
def test_a_checkpoint_rebuilds_the_mixed_model(family: str, tmp_path) -> None:
    kinds = ["categorical:3", "real", f"spike:{SPIKE}", "binary"]
    if family == "made":
        model = build(kinds, layout="packed").float()
    else:
        options = {"kinds": kinds, "num_components": 2}
        model = OrderlessModel(OrderlessConfig("mixed", dim=4, num_values=0, head_options=options))
    x = torch.tensor([[2.0, 0.3, SPIKE, 1.0], [0.0, -1.0, 2.5, 0.0]])
    dk.save_checkpoint(tmp_path / "mixed.pt", model)
    loaded = dk.load_checkpoint(tmp_path / "mixed.pt")
    assert loaded.head.kinds == kinds
    torch.testing.assert_close(loaded.log_prob(x), model.log_prob(x))


@pytest.mark.parametrize(
    ("kinds", "error", "message"),
    [
        (["real", "gamma"], ValueError, "unknown column kind 'gamma'; expected one of"),
        (["categorical:1", "real"], ValueError, "N in categorical:N must be an integer >= 2"),
        (["categorical:x", "real"], ValueError, "N in categorical:N must be an integer >= 2"),
        (["spike:nan", "real"], ValueError, "V in spike:V must be a finite number"),
        (["spike:", "real"], ValueError, "V in spike:V must be a finite number"),
        (["real"], ValueError, r"kinds needs one entry per variable \(D=2\), got 1"),
        ("real", TypeError, "kinds must be a list of D kind strings, got str"),
        ([1, "real"], TypeError, "a column kind must be a string, got int"),
        (None, TypeError, "the mixed head needs kinds"),
    ],
)
def test_bad_kinds_are_refused_in_one_line(kinds, error, message) -> None:
    with pytest.raises(error, match=message) as info:
        dk.heads.create("mixed", dim=2, num_values=0, kinds=kinds)
    assert "\n" not in str(info.value)


def test_check_values_refuses_bad_codes_and_non_finite_values_in_one_line() -> None:
    model = build(["real", "binary", "categorical:3", f"spike:{SPIKE}"])
    good = torch.tensor([[0.3, 1.0, 2.0, SPIKE], [-4.0, 0.0, 0.0, 7.0]])
    model.check_values(good)
    model.check_values(good.double())
    cases = [
        ((0, 1), 0.5, r"x column 1 \(binary\) holds the non-integer 0.5; expected codes 0..1"),
        ((1, 1), 2.0, r"x column 1 \(binary\) holds the code 2; expected codes 0..1"),
        ((0, 2), 3.0, r"x column 2 \(categorical:3\) holds the code 3; expected codes 0..2"),
        ((1, 2), -1.0, r"x column 2 \(categorical:3\) holds the code -1; expected codes 0..2"),
        ((0, 2), 1.25, r"x column 2 \(categorical:3\) holds the non-integer 1.25"),
        ((0, 0), math.nan, r"x column 0 \(real\) contains NaN or infinite values"),
        ((1, 3), math.inf, r"x column 3 \(spike:0.5\) contains NaN or infinite values"),
    ]
    for where, bad, message in cases:
        x = good.clone()
        x[where] = bad
        with pytest.raises(ValueError, match=message) as info:
            model.log_prob(x)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"x must have shape \(\.\.\., D\) with D=4"):
        model.head.check_values(good[:, :3])


def test_the_orderless_model_checks_values_as_the_head_does() -> None:
    kinds = ["real", "categorical:3"]
    config = OrderlessConfig(
        "mixed", dim=2, num_values=0, hidden_sizes=(4,), head_options={"kinds": kinds}
    )
    model = OrderlessModel(config)
    for bad, message in (([math.inf, 1.0], "contains NaN or infinite"), ([0.0, 1.5], "non-int")):
        with pytest.raises(ValueError, match=message):
            model.log_prob(torch.tensor([bad]))
        with pytest.raises(ValueError, match=message):
            model.check_values(torch.tensor([bad]))


def test_mixed_scores_each_variable_with_its_single_kind_head() -> None:
    """The composite adds nothing: variable i's log-probability is its kind's head's,
    on its own P_i parameters (the padding is never read)."""
    kinds = ["spike:0.5", "categorical:4", "real", "binary", "real"]
    head = MixedHead(5, kinds=kinds, num_components=2).double()
    params = torch.randn(30, 5, head.params_per_variable, generator=seeded(0), dtype=torch.float64)
    x = torch.stack(
        [
            torch.where(torch.arange(30) % 3 == 0, 0.5, torch.randn(30, generator=seeded(1))),
            torch.randint(0, 4, (30,), generator=seeded(2)).double(),
            torch.randn(30, generator=seeded(3)),
            torch.randint(0, 2, (30,), generator=seeded(4)).double(),
            torch.randn(30, generator=seeded(5)),
        ],
        1,
    ).float()
    got = head.log_prob(params, x)
    singles = [
        (SpikeHead(1, value=0.5, num_components=2), 7, x[:, 0:1]),
        (CategoricalHead(1, 4), 4, x[:, 1:2].long()),
        (GaussianMixtureHead(1, num_components=2), 6, x[:, 2:3]),
        (BernoulliHead(1), 1, x[:, 3:4].long()),
        (GaussianMixtureHead(1, num_components=2), 6, x[:, 4:5]),
    ]
    for variable, (single, count, values) in enumerate(singles):
        own = params[:, variable : variable + 1, :count]
        torch.testing.assert_close(got[:, variable], single.double().log_prob(own, values)[:, 0])
        dist = head.variable_distributions(params)[variable]
        value = values[:, 0].double() if isinstance(single, BernoulliHead) else values[:, 0]
        torch.testing.assert_close(dist.log_prob(value).to(got.dtype), got[:, variable])
    padded = params.clone()
    for variable, (_, count, _) in enumerate(singles):
        padded[:, variable, count:] = 1e6  # what lies beyond P_i is never read
    assert torch.equal(head.log_prob(padded, x), got)


def test_spike_is_a_mass_and_a_density() -> None:
    head = SpikeHead(1, value=-0.25, num_components=1).double()
    params = torch.tensor([[[0.7, 0.2, -0.3]]], dtype=torch.float64)
    pi = torch.sigmoid(torch.tensor(0.7, dtype=torch.float64))
    normal = torch.distributions.Normal(
        0.2, 1e-3 + torch.nn.functional.softplus(torch.tensor(-0.3))
    )
    at = head.log_prob(params, torch.tensor([[-0.25]]))
    off = head.log_prob(params, torch.tensor([[1.0]]))
    torch.testing.assert_close(at[0, 0], pi.log())
    torch.testing.assert_close(
        off[0, 0], (1 - pi).log() + normal.log_prob(torch.tensor(1.0)).double()
    )
    dist = head.distribution(params)
    assert isinstance(dist, SpikeAndSlab) and dist.batch_shape == (1, 1)
    torch.testing.assert_close(dist.mean[0, 0], pi * -0.25 + (1 - pi) * 0.2)


# -- (1) nothing padded: each variable's own units carry its degree ---------------------------
@pytest.mark.parametrize("layout", ["dense", "packed"])
@pytest.mark.parametrize("direct", [False, True], ids=["", "direct"])
def test_each_variable_gets_exactly_its_units_with_its_degree(layout: str, direct: bool) -> None:
    kinds = ["categorical:3", "real", "binary", "spike:0.5", "categorical:2"]
    model = build(kinds, hidden_sizes=(10, 9), layout=layout, direct_connections=direct)
    backbone, widths = model.backbone, model.head.variable_widths
    assert backbone.layout == layout
    assert backbone.layers[-1].out_features == sum(widths.outputs) == 3 + 6 + 1 + 7 + 2
    assert backbone.layers[0].in_features == sum(widths.inputs) == 3 + 1 + 1 + 1 + 2
    degrees = backbone.connectivity().input_degrees
    out_degrees = torch.cat([degrees[i].repeat(p) for i, p in enumerate(widths.outputs)])
    in_degrees = torch.cat([degrees[i].repeat(w) for i, w in enumerate(widths.inputs)])
    last_hidden = backbone.connectivity().hidden_degrees[-1]
    expected = out_degrees[:, None] > last_hidden[None, :]
    assert torch.equal(backbone.layers[-1].mask.bool(), expected)
    if direct:
        assert torch.equal(backbone.direct.mask.bool(), out_degrees[:, None] > in_degrees[None, :])


def test_a_packed_mixed_model_is_the_dense_one() -> None:
    kinds = ["real", "categorical:3", f"spike:{SPIKE}", "binary"] * 2
    dense = build(kinds, hidden_sizes=(16, 16), layout="dense", direct_connections=True)
    packed = build(kinds, hidden_sizes=(16, 16), layout="packed", direct_connections=True)
    packed.load_state_dict(dense.state_dict())
    x = dense.sample(25, generator=seeded(0))
    torch.testing.assert_close(packed.log_prob(x), dense.log_prob(x))
    fast = sample_fast(packed.backbone, packed.head, 30, generator=seeded(1))
    assert torch.equal(fast, sample_reference(dense.backbone, dense.head, 30, generator=seeded(1)))


# -- (2) normalisation ------------------------------------------------------------------------
NORMALISED = [
    ["binary", "real"],
    ["real", "categorical:3"],  # the discrete variable depends on the real one
    [f"spike:{SPIKE}", "binary"],
    ["categorical:3", f"spike:{SPIKE}"],
    [f"spike:{SPIKE}", "binary", "real"],
]


@pytest.mark.parametrize("kinds", NORMALISED, ids=["-".join(k) for k in NORMALISED])
@pytest.mark.parametrize("num_masks", [1, 3])
def test_a_mixed_model_sums_and_integrates_to_one(kinds: list[str], num_masks: int) -> None:
    """Codes summed, reals integrated, the spike counted as mass: total 1, for one
    mask and for the log-mean-exp over a mask ensemble."""
    model = build(kinds, masks="multi-ordering", num_masks=num_masks)
    count = 801 if len(kinds) < 3 else 241
    assert abs(total_mass(model.log_prob, kinds, count=count) - 1.0) < 1e-3


def test_a_spike_model_is_a_mass_plus_a_density_of_the_rest() -> None:
    model = dk.create_model("spike", 1, 0, hidden_sizes=(8,), value=SPIKE, num_components=3)
    model = model.double()
    strategies.sharpen(model, 2.0, seed=4)
    kinds = [f"spike:{SPIKE}"]
    total = total_mass(model.log_prob, kinds, count=20001)
    mass = float(model.log_prob(torch.tensor([[SPIKE]])).exp())
    assert 0.0 < mass < 1.0 and abs(total - 1.0) < 1e-4


@pytest.mark.parametrize("family", ["made-any-order", "orderless"])
def test_conditionals_and_marginals_are_normalised(family: str) -> None:
    """Any observed set: the conditional sums/integrates to one over the missing
    columns, and the marginal over the observed ones; in drawn orderings of an
    any-order MADE and in the orderless model's mixture."""
    kinds = ["binary", "real", f"spike:{SPIKE}"]
    given = {0: 1.0, 1: -0.4, 2: SPIKE}
    if family == "orderless":
        config = OrderlessConfig(
            "mixed", dim=3, num_values=0, hidden_sizes=(12,), num_orderings=2,
            head_options={"kinds": kinds, "num_components": 2, "min_scale": 0.05},
            direct_connections=True,
        )  # fmt: skip
        model = OrderlessModel(config).double()
        strategies.sharpen(model, 1.5, seed=5)
        options: dict = {}
    else:
        model = build(kinds, masks="any-order", mask_input=True)
        options = {"connectivities": model.draw_orderings(2, seed=1)}
    for observed_columns in ([0], [1], [2], [0, 2], [1, 2]):
        observed = torch.zeros(3, dtype=torch.bool)
        observed[observed_columns] = True
        fixed = {c: given[c] for c in observed_columns}
        conditional = total_mass(
            lambda rows, o=observed: model.conditional_log_prob(rows, o, **options),
            kinds,
            fixed,
            count=300,  # an even count: the grid misses the spike at 0.5
            half_width=10.0,
        )
        assert abs(conditional - 1.0) < 1e-3, observed_columns
        free = {c: given[c] for c in range(3) if c not in observed_columns}
        marginal = total_mass(
            lambda rows, o=observed: model.marginal_log_prob(rows, o, **options),
            kinds,
            free,  # the missing columns are not read: fix them, sum over the observed
            count=300,  # an even count: the grid misses the spike at 0.5
            half_width=10.0,
        )
        assert abs(marginal - 1.0) < 1e-3, observed_columns
        x = torch.tensor([[given[0], given[1], given[2]]]).repeat(20, 1)
        done = model.complete(x, observed, generator=seeded(1), **options)
        assert torch.equal(done[:, observed], x[:, observed].to(done.dtype))
        model.check_values(done)


def test_the_orderless_joint_of_each_ordering_is_normalised() -> None:
    kinds = ["real", "categorical:3"]
    config = OrderlessConfig(
        "mixed", dim=2, num_values=0, hidden_sizes=(12,), num_orderings=2,
        head_options={"kinds": kinds}, direct_connections=True,
    )  # fmt: skip
    model = OrderlessModel(config).double()
    strategies.sharpen(model, 1.5, seed=6)
    for ordering in ([0, 1], [1, 0]):
        orderings = torch.tensor([ordering])
        total = total_mass(lambda rows, o=orderings: model.log_prob(rows, o), kinds, count=4001)
        assert abs(total - 1.0) < 1e-3, ordering


@pytest.mark.parametrize("direct", [False, True], ids=["", "direct"])
def test_the_orderless_step_scorer_is_the_networks_own_conditionals(direct: bool) -> None:
    """Scored one step at a time (per-variable widths), an ordering's joint is the sum
    of the network's conditionals, each from a full forward pass given the variables
    before it."""
    kinds = ["categorical:3", "real", f"spike:{SPIKE}", "binary", "real"]
    config = OrderlessConfig(
        "mixed", dim=5, num_values=0, hidden_sizes=(12, 7), direct_connections=direct,
        head_options={"kinds": kinds, "num_components": 2}, num_labels=2,
    )  # fmt: skip
    model = OrderlessModel(config).double()
    strategies.sharpen(model, 1.5, seed=8)
    x = build(kinds).sample(6, generator=seeded(3)).double()
    labels = torch.tensor([0, 1, 1, 0, 1, 0])
    ordering = torch.tensor([3, 0, 4, 2, 1])
    got = model.log_prob(x, ordering[None], context=labels)
    observed = torch.zeros(6, 5, dtype=torch.bool)
    expected = torch.zeros(6, dtype=torch.float64)
    with torch.no_grad():
        for variable in ordering.tolist():
            params = model(x, observed, model.encode_context(labels, (6,)))
            expected += model.head._log_prob(params, x)[:, variable].double()
            observed[:, variable] = True
    torch.testing.assert_close(got, expected)


def test_a_label_conditional_model_is_normalised_for_every_label() -> None:
    kinds = ["categorical:3", "real"]
    model = build(kinds, num_labels=3)
    labels = [torch.tensor(label) for label in range(3)]
    totals = [
        total_mass(lambda rows, y=label: model.log_prob(rows, context=y), kinds, count=4001)
        for label in labels
    ]
    assert all(abs(total - 1.0) < 1e-3 for total in totals), totals
    point = torch.tensor([[1.0, 0.3]])
    densities = [model.log_prob(point, context=torch.tensor(label)) for label in range(3)]
    assert len({round(float(d), 6) for d in densities}) == 3  # the label matters


# -- (3) the autoregressive property ---------------------------------------------------------
@pytest.mark.parametrize("masks", dk.masks.names())
def test_parameters_read_only_earlier_variables(masks: str) -> None:
    """Jacobian of the parameters with respect to the backbone's input units: zero from
    every unit of variable j to every parameter of variable i unless j comes before i
    (one-hot units included), at several points, under every mask builder."""
    kinds = ["categorical:3", "real", "binary", f"spike:{SPIKE}", "real"]
    mask_options = {"ordering": [3, 0, 4, 2, 1]} if masks == "ordering" else {}
    model = build(kinds, hidden_sizes=(10, 9), masks=masks, num_masks=2, mask_options=mask_options)
    backbone, widths = model.backbone, model.head.variable_widths
    starts, reached = widths.input_starts, 0
    x = model.sample(3, generator=seeded(9)).double()
    for mask in range(model.num_masks):
        if masks == "any-order":  # orderings drawn on demand
            connectivity = model.draw_connectivity()
        else:
            connectivity = backbone.connectivity(mask)
        degrees = connectivity.input_degrees
        for point in range(3):
            encoded = model.head.encode(x[point : point + 1], torch.float64)
            jac = torch.autograd.functional.jacobian(
                lambda units, c=connectivity: backbone(units, connectivity=c), encoded
            )[0, :, :, 0]  # (D, P, sum W_i)
            for i, j in itertools.product(range(5), range(5)):
                block = jac[i, : widths.outputs[i], starts[j] : starts[j + 1]]
                if degrees[j] >= degrees[i]:
                    assert torch.count_nonzero(block) == 0, (mask, i, j)
                else:
                    reached += torch.count_nonzero(block)
                assert torch.count_nonzero(jac[i, widths.outputs[i] :]) == 0  # the padding
    assert reached > 0


KIND_CHOICES = ["real", "binary", "categorical:2", "categorical:4", f"spike:{SPIKE}"]


@given(data=st.data())
def test_parameters_read_only_earlier_variables_in_any_ordering(data: st.DataObject) -> None:
    """The same zeros for random kinds, orderings, depths and one-hot or scalar inputs."""
    kinds = data.draw(st.lists(st.sampled_from(KIND_CHOICES), min_size=1, max_size=6))
    dim = len(kinds)
    ordering = data.draw(st.permutations(list(range(dim))))
    model = build(
        kinds,
        seed=data.draw(st.integers(0, 1000)),
        hidden_sizes=tuple(data.draw(st.lists(st.integers(1, 10), max_size=2))),
        direct_connections=data.draw(st.booleans()),
        one_hot=data.draw(st.booleans()),
        masks="ordering",
        mask_options={"ordering": ordering},
    )
    widths, degrees = model.head.variable_widths, model.backbone.connectivity().input_degrees
    encoded = model.head.encode(model.sample(1, generator=seeded(0)).double(), torch.float64)
    jac = torch.autograd.functional.jacobian(model.backbone, encoded)[0, :, :, 0]
    starts = widths.input_starts
    for i, j in itertools.product(range(dim), range(dim)):
        if degrees[j] >= degrees[i]:
            assert torch.count_nonzero(jac[i, :, starts[j] : starts[j + 1]]) == 0, (i, j)


# -- (4) exact sampling ----------------------------------------------------------------------
@given(
    kinds=st.lists(st.sampled_from(KIND_CHOICES), min_size=1, max_size=7),
    hidden_sizes=st.lists(st.integers(1, 12), max_size=2),
    direct=st.booleans(),
    one_hot=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_the_fast_sampler_draws_what_the_reference_draws(
    kinds: list[str], hidden_sizes: list[int], direct: bool, one_hot: bool, seed: int
) -> None:
    model = build(
        kinds,
        scale=0.8,
        seed=seed,
        hidden_sizes=tuple(hidden_sizes),
        direct_connections=direct,
        one_hot=one_hot,
        masks="multi-ordering",
        num_masks=2,
    )
    parts = model.backbone, model.head
    for mask in range(2):
        fast = sample_fast(*parts, 40, mask=mask, generator=seeded(mask))
        assert torch.equal(fast, sample_reference(*parts, 40, mask=mask, generator=seeded(mask)))
        model.check_values(fast)
    connectivity = model.backbone.connectivity(1)
    for num_given in range(len(kinds) + 1):
        got = complete_fast(*parts, connectivity, fast, num_given, generator=seeded(7))
        want = complete_reference(*parts, connectivity, fast, num_given, generator=seeded(7))
        assert torch.equal(got, want)


def test_label_conditional_sampling_is_exact_and_follows_the_label() -> None:
    kinds = ["categorical:3", "real", "binary"]
    model = build(kinds, num_labels=2, scale=2.0)
    labels = torch.arange(60) % 2
    context = model.encode_context(labels, (60,))
    parts = model.backbone, model.head
    fast = sample_fast(*parts, 60, generator=seeded(0), context=context)
    assert torch.equal(fast, sample_reference(*parts, 60, generator=seeded(0), context=context))
    drawn = model.sample(60, generator=seeded(0), context=labels)
    assert torch.equal(drawn, fast)


def test_orderless_completions_keep_the_observed_and_draw_valid_codes() -> None:
    kinds = ["categorical:3", "real", f"spike:{SPIKE}", "binary"]
    config = OrderlessConfig(
        "mixed", dim=4, num_values=0, hidden_sizes=(12,), head_options={"kinds": kinds}
    )
    model = OrderlessModel(config).double()
    x = torch.tensor([[2.0, 0.3, SPIKE, 1.0]]).repeat(50, 1)
    observed = torch.tensor([True, False, True, False])
    done = model.complete(x, observed, generator=seeded(0))
    assert torch.equal(done[:, observed], x[:, observed])
    model.check_values(done)
    assert set(done[:, 3].tolist()) == {0.0, 1.0}


# -- (5) sample moments ----------------------------------------------------------------------
def test_spike_samples_have_the_models_mass_mean_and_variance() -> None:
    model = dk.create_model("spike", 1, 0, hidden_sizes=(8,), value=SPIKE, num_components=2)
    model = model.double()
    strategies.sharpen(model, 2.0, seed=2)
    with torch.no_grad():
        dist = model.head.distribution(model.backbone(torch.zeros(1, 1, dtype=torch.float64)))
    mass, mean, variance = float(dist.spike_probs), float(dist.mean), float(dist.variance)
    num = 200_000
    samples = model.sample(num, generator=seeded(3)).double()[:, 0]
    at = (samples == SPIKE).double()
    assert abs(float(at.mean()) - mass) < 5 * math.sqrt(mass * (1 - mass) / num)
    assert abs(float(samples.mean()) - mean) < 5 * math.sqrt(variance / num)
    fourth = float(((samples - mean) ** 4).mean())
    assert abs(float(samples.var()) - variance) < 5 * math.sqrt((fourth - variance**2) / num)
    # The distribution's moments are those of the model's mass and density.
    grid = torch.linspace(mean - 60, mean + 60, 60001, dtype=torch.float64)
    with torch.no_grad():
        density = model.log_prob(grid[:, None]).exp()
        spike = float(model.log_prob(torch.tensor([[SPIKE]])).exp())
    assert abs(spike - mass) < 1e-12
    first = float(torch.trapezoid(grid * density, grid)) + spike * SPIKE
    assert abs(first - mean) < 1e-3 * (1 + abs(mean))


def test_mixed_sample_frequencies_and_moments_match_the_model() -> None:
    """A categorical first and a real given it: the codes' frequencies are the model's
    probabilities, and the real's mean and variance given each code are its own."""
    kinds = ["categorical:3", "real"]
    model = build(kinds, scale=2.0, seed=11, num_components=2)
    num = 60_000
    samples = model.sample(num, generator=seeded(4)).double()
    codes = torch.tensor([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]], dtype=torch.float64)
    with torch.no_grad():
        params = model.backbone(model.head.encode(codes, torch.float64))
    first, second = model.head.variable_distributions(params)
    probs = first.probs[0]
    for code in range(3):
        chosen = samples[:, 0] == code
        frequency = float(chosen.double().mean())
        p = float(probs[code])
        assert abs(frequency - p) < 5 * math.sqrt(p * (1 - p) / num)
        values = samples[chosen, 1]
        mean, variance = float(second.mean[code]), float(second.variance[code])
        assert abs(float(values.mean()) - mean) < 5 * math.sqrt(variance / len(values))


# -- (6) training ----------------------------------------------------------------------------
@pytest.mark.slow
def test_fit_learns_a_mixed_table() -> None:
    """A binary that sets the mean of a real, and a zero-inflated amount: fit lowers
    the validation NLL close to the truth's."""

    def table(num: int, seed: int) -> torch.Tensor:
        generator = seeded(seed)
        flag = (torch.rand(num, generator=generator) < 0.3).float()
        real = 2.0 * flag - 1.0 + 0.5 * torch.randn(num, generator=generator)
        zero = torch.rand(num, generator=generator) < 0.4
        amount = torch.where(zero, 0.0, 1.0 + 0.3 * torch.randn(num, generator=generator))
        return torch.stack([flag, real, amount], 1)

    torch.manual_seed(0)
    kinds = ["binary", "real", "spike:0"]
    model = dk.create_model("mixed", 3, 0, kinds=kinds, hidden_sizes=(32,))
    train, val = table(3000, 1), table(1000, 2)
    with torch.no_grad():
        before = float(-model.log_prob(val).mean())
    fit(model, train, val, TrainConfig(epochs=12, batch_size=100, lr=1e-2, patience=None))
    with torch.no_grad():
        after = float(-model.log_prob(val).mean())

    def entropy(p: float) -> float:
        return -(p * math.log(p) + (1 - p) * math.log(1 - p))

    gauss = 0.5 * math.log(2 * math.pi * math.e)
    truth = entropy(0.3) + (gauss + math.log(0.5)) + entropy(0.4) + 0.6 * (gauss + math.log(0.3))
    assert after < before - 0.5
    assert abs(after - truth) < 0.15, (after, truth)
