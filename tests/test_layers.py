"""Masked layers: grouped products equal the dense masked ones, values and gradients."""

from __future__ import annotations

import warnings

import pytest
import strategies
import torch
import torch.nn.functional as F

import densitykit as dk
from densitykit.layers import MaskedLinear, grouped_linear, grouping
from densitykit.made import MADE, PRODUCTS

NUM_VALUES = {"bernoulli": 2}

# Heads that take their parameters from a backbone (the histogram has its own).
BACKBONE_HEADS = [
    name
    for name in dk.heads.names()
    if dk.heads.create(name, dim=2, num_values=2).params_per_variable > 0
]


def staircase(rows: int, cols: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A MADE-like hidden mask with shuffled units, and the degree orders that sort it."""
    generator = torch.Generator().manual_seed(seed)
    col_degrees = torch.randint(1, 6, (cols,), generator=generator)
    row_degrees = torch.randint(1, 6, (rows,), generator=generator)
    mask = row_degrees[:, None] >= col_degrees[None, :]
    return mask, torch.argsort(row_degrees, stable=True), torch.argsort(col_degrees, stable=True)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("bias", [True, False])
def test_grouped_layer_equals_dense_with_gradients(seed: int, bias: bool) -> None:
    mask, rows, cols = staircase(23, 17, seed)
    layer = MaskedLinear(17, 23, masks=mask, bias=bias).double()
    x = torch.randn(9, 17, dtype=torch.float64, requires_grad=True)
    groups = grouping(layer.mask, rows, cols, torch.float64)
    assert groups.fraction < 1.0

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


def test_grouping_of_any_mask_and_order_is_exact() -> None:
    # Not a staircase in these orders: the prefixes are read off the mask, so still exact.
    generator = torch.Generator().manual_seed(0)
    mask = torch.rand(12, 10, generator=generator) < 0.3
    mask[3] = False  # a row that sees nothing
    rows, cols = torch.randperm(12, generator=generator), torch.randperm(10, generator=generator)
    groups = grouping(mask, rows, cols, torch.float64)
    covered = [index for start, end, _ in groups.groups for index in range(start, end)]
    assert covered == list(range(12))
    weight = torch.randn(12, 10, dtype=torch.float64)
    x = torch.randn(5, 10, dtype=torch.float64)
    sorted_weight = (weight * mask).index_select(0, rows).index_select(1, cols)
    expected = F.linear(x[:, cols], sorted_weight)
    torch.testing.assert_close(
        grouped_linear(x[:, cols], sorted_weight, None, groups.groups), expected
    )


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
            options.pop("num_values", NUM_VALUES.get(head, 5)),
            hidden_sizes=hidden_sizes,
            masks=masks,
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
    x = torch.randint(
        0, model.num_values, (num_rows, model.dim), generator=torch.Generator().manual_seed(2)
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


def test_automatic_choice() -> None:
    small = MADE(dk.masks.create("natural", dim=5, hidden_sizes=[8]))
    assert not small._grouped_pays(torch.zeros(2, 5))
    large = MADE(dk.masks.create("natural", dim=600, hidden_sizes=[400]))
    assert large.products == "auto"
    assert not large._grouped_pays(torch.zeros(2, 600))  # training: dense
    with torch.no_grad():
        assert large._grouped_pays(torch.zeros(2, 600))  # evaluation: grouped
        x = torch.randint(0, 2, (4, 600)).float()
        auto = large(x)
        large.products = "dense"
        torch.testing.assert_close(auto, large(x))
        many = MADE(dk.masks.create("multi-ordering", dim=600, hidden_sizes=[400], num_masks=9))
        assert not many._grouped_pays(x)  # more masks than groupings kept


def test_products_is_checked_and_leaves_the_state_alone() -> None:
    with pytest.raises(ValueError, match="products"):
        MADE(dk.masks.create("natural", dim=3, hidden_sizes=[4]), products="sparse")
    assert PRODUCTS == ("auto", "dense", "grouped")
    dense = MADE(dk.masks.create("natural", dim=3, hidden_sizes=[4]), products="dense")
    grouped = MADE(dk.masks.create("natural", dim=3, hidden_sizes=[4]), products="grouped")
    grouped(torch.zeros(1, 3))
    assert list(dense.state_dict()) == list(grouped.state_dict())
