"""Masked layers: grouped products equal the dense masked ones, values and gradients."""

from __future__ import annotations

import warnings

import pytest
import strategies
import torch
import torch.nn.functional as F
from helpers import head_num_values, head_options, head_values

import densitykit as dk
from densitykit import layers
from densitykit.layers import MaskedLinear, grouped_linear, grouping
from densitykit.made import MADE, PRODUCTS

# Heads that take their parameters from a backbone (the histogram has its own).
BACKBONE_HEADS = [
    name
    for name in dk.heads.names()
    if dk.heads.create(
        name, dim=2, num_values=head_num_values(name), **head_options(name, 2)
    ).params_per_variable
    > 0
]


@pytest.fixture(autouse=True, params=["estimated", "free"])
def product_costs(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the estimated costs of a product (tiny layers: one group)
    and with free products (as many groups as the cost of the arithmetic wants)."""
    if request.param == "free":
        monkeypatch.setattr(layers, "_PRODUCT_CALL", 0.0)
        monkeypatch.setattr(layers, "_PRODUCT_SLOWDOWN", 0.0)
    return request.param


def staircase(rows: int, cols: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A MADE-like hidden mask with shuffled units, and the degree orders that sort it."""
    generator = torch.Generator().manual_seed(seed)
    col_degrees = torch.randint(1, 6, (cols,), generator=generator)
    row_degrees = torch.randint(1, 6, (rows,), generator=generator)
    mask = row_degrees[:, None] >= col_degrees[None, :]
    return mask, torch.argsort(row_degrees, stable=True), torch.argsort(col_degrees, stable=True)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("count", [None, 1, 2, 3, 5, 23])
def test_grouped_layer_equals_dense_with_gradients(
    seed: int, bias: bool, count: int | None
) -> None:
    mask, rows, cols = staircase(23, 17, seed)
    layer = MaskedLinear(17, 23, masks=mask, bias=bias).double()
    x = torch.randn(9, 17, dtype=torch.float64, requires_grad=True)
    groups = grouping(layer.mask, rows, cols, torch.float64, count=count)
    if count is not None:
        assert len(groups.groups) == count
    assert groups.fraction < 1.0 or len(groups.groups) == 1

    dense = layer(x)
    grouped = layer.forward_grouped(x[:, cols], groups)
    torch.testing.assert_close(grouped, dense[:, rows])

    weights = torch.randn(9, 23, dtype=torch.float64)
    dense_grads = torch.autograd.grad((dense[:, rows] * weights).sum(), [x, *layer.parameters()])
    grouped_grads = torch.autograd.grad((grouped * weights).sum(), [x, *layer.parameters()])
    for expected, actual in zip(dense_grads, grouped_grads):
        torch.testing.assert_close(actual, expected)
    # Masked weights get no gradient on either path.
    assert bool((grouped_grads[1][~mask] == 0).all())


@pytest.mark.parametrize("count", [None, 1, 2, 4, 12])
def test_grouping_of_any_mask_and_order_is_exact(count: int | None) -> None:
    # Not a staircase in these orders: prefixes and bands are read off the mask.
    generator = torch.Generator().manual_seed(0)
    mask = torch.rand(12, 10, generator=generator) < 0.3
    mask[3] = False  # a row that sees nothing
    mask[7] = True  # a row that sees everything
    rows, cols = torch.randperm(12, generator=generator), torch.randperm(10, generator=generator)
    groups = grouping(mask, rows, cols, torch.float64, count=count)
    covered = [index for group in groups.groups for index in range(group.start, group.end)]
    assert covered == list(range(12))
    weight = torch.randn(12, 10, dtype=torch.float64, requires_grad=True)
    x = torch.randn(5, 10, dtype=torch.float64, requires_grad=True)
    sorted_weight = weight.index_select(0, rows).index_select(1, cols)
    sorted_mask = mask.index_select(0, rows).index_select(1, cols).double()
    expected = F.linear(x[:, cols], sorted_weight * sorted_mask)
    actual = grouped_linear(x[:, cols], sorted_weight, None, groups)
    torch.testing.assert_close(actual, expected)
    outer = torch.randn(5, 12, dtype=torch.float64)
    for want, got in zip(
        torch.autograd.grad((expected * outer).sum(), [x, weight], retain_graph=True),
        torch.autograd.grad((actual * outer).sum(), [x, weight]),
    ):
        torch.testing.assert_close(got, want)


@pytest.mark.parametrize("seed", range(3))
def test_groups_read_the_mask_exactly(seed: int) -> None:
    """Columns before ``full`` are allowed for every row of a group, those from
    ``prefix`` on for none, and the band is the mask in between."""
    mask, rows, cols = staircase(31, 19, seed)
    for count in (1, 3, 7):
        groups = grouping(mask, rows, cols, torch.float32, count=count)
        permuted = mask[rows][:, cols]
        for group, band in zip(groups.groups, groups.bands):
            block = permuted[group.start : group.end]
            assert bool(block[:, : group.full].all())
            assert not bool(block[:, group.prefix :].any())
            if band is None:
                assert group.full == group.prefix
            else:
                assert torch.equal(band, block[:, group.full : group.prefix].float())
        area = sum((g.end - g.start) * g.prefix for g in groups.groups)
        assert groups.fraction == pytest.approx(area / mask.numel())


def test_grouped_linear_checks_the_weight() -> None:
    mask, rows, cols = staircase(6, 5, 0)
    groups = grouping(mask, rows, cols, torch.float32)
    with pytest.raises(ValueError, match=r"grouping's shape \(6, 5\), got \(5, 6\)"):
        grouped_linear(torch.zeros(2, 6), torch.zeros(5, 6), None, groups)
    with pytest.raises(ValueError, match="count"):
        grouping(mask, rows, cols, torch.float32, count=0)


def test_more_groups_for_larger_batches(product_costs: str) -> None:
    """A product's fixed cost weighs less in a larger batch, so it takes more groups."""
    generator = torch.Generator().manual_seed(0)
    degrees = torch.randint(1, 784, (500,), generator=generator).sort().values
    mask = degrees[:, None] >= torch.arange(1, 785)[None, :]
    order_rows, order_cols = torch.arange(500), torch.arange(784)
    small = grouping(mask, order_rows, order_cols, torch.float32, batch=100)
    large = grouping(mask, order_rows, order_cols, torch.float32, batch=1000)
    if product_costs == "free":  # the arithmetic alone: as many groups as allowed
        assert len(small.groups) == len(large.groups) == layers._MAX_GROUPS
    else:
        assert 1 < len(small.groups) < len(large.groups)
        assert large.fraction < small.fraction < 0.8


def test_grouping_identity_orders_are_dropped() -> None:
    mask = torch.tril(torch.ones(4, 4, dtype=torch.bool))
    groups = grouping(mask, torch.arange(4), torch.arange(4), torch.float32)
    assert groups.rows is None and groups.cols is None


def build(
    head: str,
    hidden_sizes: tuple[int, ...],
    *,
    masks: str = "multi-ordering",
    direct: bool = False,
    **options,
) -> dk.AutoregressiveModel:
    mask_options = {"ordering": [3, 0, 6, 1, 5, 2, 4]} if masks == "ordering" else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dk.masks.ConnectivityWarning)
        model = dk.create_model(
            head,
            7,
            options.pop("num_values", head_num_values(head)),
            hidden_sizes=hidden_sizes,
            masks=masks,
            **head_options(head, 7),
            num_masks=3,
            seed=5,
            direct_connections=direct,
            mask_options=mask_options,
            **options,
        ).double()
    strategies.sharpen(model, 2.0, seed=1)
    return model


def assert_paths_agree(model: dk.AutoregressiveModel, num_rows: int = 13) -> None:
    """Dense and grouped products give the same log-likelihoods and gradients, per mask."""
    x = head_values(
        model.config.head,
        (num_rows, model.dim),
        model.num_values,
        generator=torch.Generator().manual_seed(2),
    )
    for mask in range(model.num_masks):
        results = {}
        for products in ("dense", "grouped"):
            model.backbone.products = products
            log_prob = model.log_prob(x, mask=mask)
            parameters = [p for p in model.parameters() if p.requires_grad]
            grads = torch.autograd.grad(log_prob.sum(), parameters, allow_unused=True)
            results[products] = (log_prob.detach(), grads)
        torch.testing.assert_close(results["grouped"][0], results["dense"][0])
        for dense, grouped in zip(results["dense"][1], results["grouped"][1]):
            if dense is None or grouped is None:
                assert dense is None and grouped is None
            else:
                torch.testing.assert_close(grouped, dense)


@pytest.mark.parametrize("head", BACKBONE_HEADS)
@pytest.mark.parametrize(
    "hidden_sizes",
    [(), (12,), (3, 20), (16, 2, 9)],
    ids=["depth-0", "depth-1", "depth-2", "depth-3"],
)
@pytest.mark.parametrize("direct", [False, True], ids=["", "direct"])
def test_grouped_equals_dense_for_every_head_and_depth(
    head: str, hidden_sizes: tuple[int, ...], direct: bool
) -> None:
    assert_paths_agree(build(head, hidden_sizes, direct=direct))


@pytest.mark.parametrize("masks", dk.masks.names())
def test_grouped_equals_dense_for_every_mask_source(masks: str) -> None:
    assert_paths_agree(build("categorical", (10, 8), masks=masks, direct=True))


@pytest.mark.parametrize(
    ("head", "options"),
    [
        ("categorical", {"num_values": 6}),
        ("logistic-mixture", {"num_values": 9, "num_components": 3, "one_hot": True}),
    ],
)
def test_grouped_equals_dense_with_one_hot_inputs(head: str, options: dict) -> None:
    model = build(head, (14,), direct=True, **options)
    assert model.backbone.input_width > 1
    assert_paths_agree(model)


def test_mixture_log_prob_agrees() -> None:
    model = build("categorical", (12,), direct=True)
    x = torch.randint(0, 5, (8, 7))
    model.backbone.products = "dense"
    dense = model.log_prob(x)
    model.backbone.products = "grouped"
    torch.testing.assert_close(model.log_prob(x), dense)


def test_groupings_follow_new_masks() -> None:
    model = build("bernoulli", (12,), direct=True)
    assert_paths_agree(model)  # caches the groupings
    layer = model.backbone.layers[0]
    layer.set_masks(torch.ones_like(layer.mask_stack))  # replaced: sees every input
    assert_paths_agree(model)
    model.backbone.direct.mask_stack.fill_(True)  # edited in place
    assert_paths_agree(model)
    other = build("bernoulli", (12,), masks="random", direct=True)
    model.load_state_dict(other.state_dict())  # new degrees and masks
    assert_paths_agree(model)


def test_automatic_choice(product_costs: str) -> None:
    small = MADE(dk.masks.create("natural", dim=5, hidden_sizes=[8]))
    assert not small._grouped_pays(torch.zeros(2, 5))
    large = MADE(dk.masks.create("natural", dim=600, hidden_sizes=[400]))
    assert large.products == "auto"
    x = torch.randint(0, 2, (100, 600)).float()
    shuffled = MADE(dk.masks.create("random", dim=600, hidden_sizes=[400], seed=1))
    two = MADE(dk.masks.create("multi-ordering", dim=600, hidden_sizes=[400], num_masks=2))
    for made in (large, shuffled, two):
        assert not made._grouped_pays(x)  # training: dense
    with torch.no_grad():
        assert large._grouped_pays(x) and shuffled._grouped_pays(x)  # evaluation: grouped
        assert two._grouped_pays(x)
        assert not large._grouped_pays(x[:1]) or product_costs == "free"  # one row: one group
        auto = large(x)
        large.products = "dense"
        torch.testing.assert_close(auto, large(x))
        many = MADE(dk.masks.create("multi-ordering", dim=600, hidden_sizes=[400], num_masks=9))
        assert not many._grouped_pays(x)  # more masks than groupings kept


def test_a_single_mask_keeps_its_hidden_units_in_degree_order() -> None:
    """The MADE sorts the builder's hidden units by degree and permutes their weights
    with them: the same network as the builder's connectivity with those weights."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dk.masks.ConnectivityWarning)
        built = dk.masks.create("random", dim=9, hidden_sizes=[13, 11], seed=4)
        made = MADE(built, direct_connections=True, context_size=2, mask_input=True).double()
    conn = made.connectivity()
    assert torch.equal(conn.input_degrees, built[0].input_degrees)
    weights = [layer.weight for layer in made.layers]
    biases = [layer.bias for layer in made.layers]
    contexts = [layer.weight for layer in made.context_layers]
    first_input_weights = made.mask_input_weights[0]
    for index, (mine, theirs) in enumerate(zip(conn.hidden_degrees, built[0].hidden_degrees)):
        assert bool((mine[1:] >= mine[:-1]).all())
        order = torch.argsort(theirs, stable=True)
        assert torch.equal(mine, theirs[order])
        inverse = torch.argsort(order)  # back to the builder's unit order
        weights[index] = weights[index][inverse]
        biases[index] = biases[index][inverse]
        contexts[index] = contexts[index][inverse]
        weights[index + 1] = weights[index + 1][:, inverse]
        if index == 0:
            first_input_weights = first_input_weights[inverse]
    # The builder's network, written out by hand with the builder's degrees.
    masks = [m.double() for m in built[0].layer_masks()]
    direct = built[0].direct_mask().double()
    x = torch.randint(0, 2, (6, 9)).double()
    c = torch.randn(6, 2, dtype=torch.float64)
    degrees = built[0]
    sees = (degrees.hidden_degrees[0][:, None] >= degrees.input_degrees[None, :]).double()
    strict = (degrees.input_degrees[:, None] > degrees.input_degrees[None, :]).double()
    h = x
    for index in range(2):
        h = F.linear(h, weights[index] * masks[index], biases[index]) + F.linear(c, contexts[index])
        if index == 0:
            h = h + (first_input_weights * sees).sum(1)
        h = torch.relu(h)
    out = F.linear(h, weights[2] * masks[2], biases[2]) + F.linear(c, contexts[2])
    out = (
        out
        + (made.mask_input_weights[1] * strict).sum(1)
        + F.linear(x, made.direct.weight * direct)
    )
    with torch.no_grad():
        torch.testing.assert_close(made(x, context=c)[..., 0], out)


def test_products_is_checked_and_leaves_the_state_alone() -> None:
    with pytest.raises(ValueError, match="products"):
        MADE(dk.masks.create("natural", dim=3, hidden_sizes=[4]), products="sparse")
    assert PRODUCTS == ("auto", "dense", "grouped")
    dense = MADE(dk.masks.create("natural", dim=3, hidden_sizes=[4]), products="dense")
    grouped = MADE(dk.masks.create("natural", dim=3, hidden_sizes=[4]), products="grouped")
    grouped(torch.zeros(1, 3))
    assert list(dense.state_dict()) == list(grouped.state_dict())


@pytest.mark.parametrize(
    "options", [{"num_labels": 3}, {"context_size": 2}, {"mask_input": True}], ids=str
)
def test_grouped_equals_dense_with_a_context_or_the_mask_as_input(options: dict) -> None:
    """The context's and the mask input's shares follow the units into group order."""
    model = build("categorical", (10, 8), direct=True, **options)
    x = torch.randint(0, 5, (9, 7), generator=torch.Generator().manual_seed(4))
    context = {}
    if options.get("num_labels"):
        context = {"context": torch.arange(9) % 3}
    elif options.get("context_size"):
        context = {"context": torch.randn(9, 2, dtype=torch.float64)}
    for mask in range(model.num_masks):
        results = {}
        for products in ("dense", "grouped"):
            model.backbone.products = products
            log_prob = model.log_prob(x, mask=mask, **context)
            grads = torch.autograd.grad(log_prob.sum(), list(model.parameters()))
            results[products] = (log_prob.detach(), grads)
        torch.testing.assert_close(results["grouped"][0], results["dense"][0])
        for dense, grouped in zip(results["dense"][1], results["grouped"][1]):
            torch.testing.assert_close(grouped, dense)
