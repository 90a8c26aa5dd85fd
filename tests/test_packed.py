"""Packed layers store only the weights a mask can use, and compute what dense ones do."""

from __future__ import annotations

import copy
import itertools
import warnings
from pathlib import Path

import pytest
import strategies
import torch
from helpers import head_num_values, head_options, head_values

import densitykit as dk
from densitykit import layers
from densitykit.checkpoint import load_checkpoint, save_checkpoint
from densitykit.layers import MaskedLinear, PackedLinear
from densitykit.made import LAYOUTS
from densitykit.model import ModelConfig, build_model
from densitykit.train import TrainConfig, TrainState, fit

BACKBONE_HEADS = [
    name
    for name in dk.heads.names()
    if dk.heads.create(
        name, dim=2, num_values=head_num_values(name), **head_options(name, 2)
    ).params_per_variable
    > 0
]


def staircase(rows: int, cols: int, seed: int, strict: bool = False) -> torch.Tensor:
    """A MADE mask with units in degree order (each row a prefix of the columns)."""
    generator = torch.Generator().manual_seed(seed)
    row_degrees = torch.randint(1, cols + 1, (rows,), generator=generator).sort().values
    col_degrees = torch.arange(1, cols + 1)
    if strict:
        return row_degrees[:, None] > col_degrees[None, :]
    return row_degrees[:, None] >= col_degrees[None, :]


@pytest.mark.parametrize("count", [None, 1, 2, 3, 7])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("split", [False, True], ids=["blocks", "blocks-split"])
def test_packed_layer_equals_the_masked_layer(
    count: int | None, bias: bool, strict: bool, split: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    mask = staircase(19, 13, seed=count or 0, strict=strict)
    dense = MaskedLinear(13, 19, masks=mask, bias=bias).double()
    packed = PackedLinear(dense.weight, dense.bias, mask, count=count)
    if count is not None:
        assert len(packed.groups) == count
    if split:  # free products: each block is split again into groups of its rows
        monkeypatch.setattr(layers, "_PRODUCT_CALL", 0.0)
        monkeypatch.setattr(layers, "_PRODUCT_SLOWDOWN", 0.0)
        assert len(packed._plan(torch.float64, 6)[0]) > len(packed.groups)
    stored = sum(block.numel() for block in packed.blocks())
    assert stored == sum((g.end - g.start) * g.prefix for g in packed.groups) <= mask.numel()
    x = torch.randn(6, 13, dtype=torch.float64, requires_grad=True)
    outer = torch.randn(6, 19, dtype=torch.float64)
    for forward in (packed, packed.forward_dense):
        y = forward(x)
        torch.testing.assert_close(y, dense(x))
        (grad_x,) = torch.autograd.grad((y * outer).sum(), x)
        (expected,) = torch.autograd.grad((dense(x) * outer).sum(), x)
        torch.testing.assert_close(grad_x, expected)
    # Each block's gradient is the dense gradient's block (zero where masked).
    dense_grads = torch.autograd.grad((dense(x) * outer).sum(), [dense.weight])
    (flat,) = torch.autograd.grad((packed(x) * outer).sum(), [packed.packed])
    packed_grads = layers._blocks(flat, packed._shapes)
    assert [tuple(g.shape) for g in packed_grads] == [tuple(b.shape) for b in packed.blocks()]
    for group, grad in zip(packed.groups, packed_grads):
        torch.testing.assert_close(grad, dense_grads[0][group.start : group.end, : group.prefix])
    if bias:
        (grad_bias,) = torch.autograd.grad((packed(x) * outer).sum(), [packed.bias])
        torch.testing.assert_close(grad_bias, outer.sum(0))


def test_state_dict_is_a_masked_layers() -> None:
    mask = staircase(9, 7, seed=1)
    dense = MaskedLinear(7, 9, masks=mask)
    packed = PackedLinear(dense.weight, dense.bias, mask, count=3)
    state = packed.state_dict()
    assert list(state) == list(dense.state_dict()) == ["weight", "bias"]
    assert torch.equal(state["weight"], packed.weight.detach())
    # Zero beyond the blocks; the blocks are the dense layer's weights.
    for group in packed.groups:
        assert not bool(state["weight"][group.start : group.end, group.prefix :].any())
        assert torch.equal(
            state["weight"][group.start : group.end, : group.prefix],
            dense.weight[group.start : group.end, : group.prefix].detach(),
        )
    # A dense layer's state dict loads (its masked weights are dropped) and back.
    other = MaskedLinear(7, 9, masks=mask)
    packed.load_state_dict(other.state_dict())
    x = torch.randn(4, 7)
    torch.testing.assert_close(packed(x), other(x))
    fresh = MaskedLinear(7, 9, masks=mask)
    fresh.load_state_dict(packed.state_dict())
    torch.testing.assert_close(fresh(x), other(x))


def test_state_dict_errors() -> None:
    mask = staircase(5, 4, seed=2)
    packed = PackedLinear(torch.randn(5, 4), torch.zeros(5), mask, count=2)
    with pytest.raises(RuntimeError, match="Unexpected key"):
        packed.load_state_dict(
            {"weight": torch.zeros(5, 4), "bias": torch.zeros(5), "x": torch.zeros(1)}
        )
    with pytest.raises(RuntimeError, match="Missing key"):
        packed.load_state_dict({"weight": torch.zeros(5, 4)})
    with pytest.raises(RuntimeError, match="size mismatch for weight"):
        packed.load_state_dict({"weight": torch.zeros(4, 5), "bias": torch.zeros(5)})
    with pytest.raises(ValueError, match="one shape"):
        PackedLinear(torch.randn(5, 4), None, torch.ones(4, 5, dtype=torch.bool))


def test_masks_within_the_blocks_only() -> None:
    mask = staircase(8, 6, seed=3)
    packed = PackedLinear(torch.randn(8, 6), None, mask, count=2)
    narrower = mask.clone()
    narrower[:, 0] = False  # sees less: fine, the band masks follow
    packed.set_masks(narrower)
    dense = MaskedLinear(6, 8, masks=narrower, bias=False)
    dense.weight.data.copy_(packed.weight.detach())
    x = torch.randn(3, 6)
    torch.testing.assert_close(packed(x), dense(x))
    with pytest.raises(ValueError, match="does not store"):
        packed.set_masks(torch.ones(8, 6, dtype=torch.bool))


def build(
    head: str, hidden_sizes: tuple[int, ...], layout: str, **options
) -> dk.AutoregressiveModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dk.masks.ConnectivityWarning)
        torch.manual_seed(0)
        model = dk.create_model(
            head,
            7,
            options.pop("num_values", head_num_values(head)),
            hidden_sizes=hidden_sizes,
            seed=5,
            **head_options(head, 7),
            layout=layout,
            **options,
        ).double()
    return model


def assert_layouts_agree(head: str, hidden_sizes: tuple[int, ...], **options) -> None:
    """Packed and dense models from the same seed: the same likelihoods, gradients
    (through the blocks) and, after three Adam steps, the same likelihoods again."""
    dense = build(head, hidden_sizes, "dense", **copy.deepcopy(options))
    packed = build(head, hidden_sizes, "packed", **copy.deepcopy(options))
    assert packed.backbone.layout == "packed" and dense.backbone.layout == "dense"
    strategies.sharpen(dense, 2.0, seed=1)
    packed.load_state_dict(dense.state_dict())
    x = head_values(head, (11, 7), dense.num_values, generator=torch.Generator().manual_seed(2))
    context = {"context": torch.arange(11) % 3} if options.get("num_labels") else {}
    torch.testing.assert_close(packed.log_prob(x, **context), dense.log_prob(x, **context))
    packed.backbone.products = "dense"  # the full weight, as off the CPU
    torch.testing.assert_close(packed.log_prob(x, **context), dense.log_prob(x, **context))
    packed.backbone.products = "auto"
    optimizers = [torch.optim.Adam(m.parameters(), lr=1e-2) for m in (dense, packed)]
    for _ in range(3):
        for model, optimizer in zip((dense, packed), optimizers):
            optimizer.zero_grad()
            (-model.log_prob(x, **context).mean()).backward()
            optimizer.step()
    torch.testing.assert_close(packed.log_prob(x, **context), dense.log_prob(x, **context))
    for key, value in dense.state_dict().items():  # the masked weights never moved
        if key.endswith("weight") and ("layers" in key or "direct" in key):
            torch.testing.assert_close(
                packed.state_dict()[key], value * (packed.state_dict()[key] != 0)
            )


@pytest.mark.parametrize("head", BACKBONE_HEADS)
@pytest.mark.parametrize("hidden_sizes", [(), (12,), (3, 20), (16, 2, 9)])
@pytest.mark.parametrize("direct", [False, True], ids=["", "direct"])
def test_packed_equals_dense_for_every_head_and_depth(
    head: str, hidden_sizes: tuple[int, ...], direct: bool
) -> None:
    assert_layouts_agree(head, hidden_sizes, direct_connections=direct)


@pytest.mark.parametrize(
    "options",
    [
        {"num_labels": 3},
        {"mask_input": True},
        {"head": "categorical", "num_values": 6},  # one-hot inputs
        {"head": "logistic-mixture", "num_values": 9, "num_components": 3, "one_hot": True},
    ],
    ids=["label", "mask-input", "one-hot", "mixture-one-hot"],
)
def test_packed_equals_dense_with_context_mask_input_and_one_hot(options: dict) -> None:
    options = dict(options)
    head = options.pop("head", "bernoulli")
    assert_layouts_agree(head, (10, 8), direct_connections=True, **options)


def test_which_models_are_packed() -> None:
    assert LAYOUTS == ("auto", "dense", "packed")
    large = dk.create_model("bernoulli", 784, hidden_sizes=(500,))
    assert large.backbone.layout == large.config.layout == "packed"
    stored = sum(p.numel() for p in large.parameters())
    assert stored < 0.8 * dk.model.parameter_count(large.config)
    assert dk.create_model("bernoulli", 8, hidden_sizes=(16,)).backbone.layout == "dense"  # small
    for masks, options in [
        ("random", {}),
        ("multi-ordering", {"num_masks": 2}),
        ("any-order", {"num_masks": 1}),
    ]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dk.masks.ConnectivityWarning)
            model = dk.create_model("bernoulli", 784, hidden_sizes=(500,), masks=masks, **options)
            assert model.backbone.layout == "dense", masks
            with pytest.raises(ValueError, match="cannot be packed"):
                dk.create_model(
                    "bernoulli", 20, hidden_sizes=(8,), masks=masks, layout="packed", **options
                )
    with pytest.raises(ValueError, match="layout must be one of"):
        dk.create_model("bernoulli", 4, layout="sparse")


def test_configs_record_the_layout_and_old_ones_read_as_dense(tmp_path: Path) -> None:
    model = dk.create_model("bernoulli", 6, hidden_sizes=(9,), layout="packed")
    data = model.config.to_dict()
    assert data["layout"] == "packed"
    del data["layout"]  # a config written before layouts existed
    assert ModelConfig.from_dict(data).layout == "dense"
    old = build_model(ModelConfig.from_dict(data))
    old.load_state_dict(model.state_dict())  # the same checkpoint format either way
    x = torch.randint(0, 2, (5, 6))
    torch.testing.assert_close(old.log_prob(x), model.log_prob(x))
    save_checkpoint(tmp_path / "packed.pt", model)
    loaded = load_checkpoint(tmp_path / "packed.pt")
    assert loaded.backbone.layout == "packed"
    torch.testing.assert_close(loaded.log_prob(x), model.log_prob(x))


def test_samplers_and_queries_on_a_packed_model() -> None:
    model = build("categorical", (12, 9), "packed", direct_connections=True)
    strategies.sharpen(model, 3.0, seed=2)
    parts = model.backbone, model.head
    fast = dk.sampling.sample_fast(*parts, 40, generator=torch.Generator().manual_seed(3))
    reference = dk.sampling.sample_reference(*parts, 40, generator=torch.Generator().manual_seed(3))
    assert torch.equal(fast, reference)
    observed = torch.zeros(40, 7, dtype=torch.bool)
    observed[:, [0, 4]] = True
    completed = dk.queries.complete(
        *parts, fast, observed, generator=torch.Generator().manual_seed(4)
    )
    expected = dk.queries.complete_reference(
        *parts, fast, observed, generator=torch.Generator().manual_seed(4)
    )
    assert torch.equal(completed, expected)


def test_other_orderings_normalise_on_a_packed_model() -> None:
    model = build("bernoulli", (10,), "packed")
    strategies.sharpen(model, 2.0, seed=3)
    every = torch.tensor(list(itertools.product([0, 1], repeat=7)))
    conn = dk.masks.Connectivity.from_ordering(
        [3, 0, 6, 1, 5, 2, 4], [model.backbone.connectivity().hidden_degrees[0]]
    )
    total = model.log_prob(every, connectivity=conn).exp().sum()
    torch.testing.assert_close(total, torch.tensor(1.0, dtype=torch.float64))


def test_a_packed_run_resumes_bit_identically() -> None:
    def run(epochs: int, state: TrainState | None = None) -> tuple[dk.AutoregressiveModel, object]:
        torch.manual_seed(0)
        model = dk.create_model("bernoulli", 6, hidden_sizes=(16,), layout="packed")
        data = torch.randint(0, 2, (48, 6), generator=torch.Generator().manual_seed(1))
        config = TrainConfig(
            epochs=epochs, batch_size=16, patience=None, device="cpu", ema_decay=0.9
        )
        return model, fit(model, data, data[:16], config, state=state)

    straight_model, straight = run(2)
    _, half = run(1)
    resumed_model, resumed = run(2, state=TrainState.from_dict(copy.deepcopy(half.state.to_dict())))
    for key, value in straight_model.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[key]), key
    assert [r["val_nll"] for r in resumed.history] == [r["val_nll"] for r in straight.history]
    assert list(dict(straight_model.backbone.layers[0].named_parameters())) == ["packed", "bias"]


def test_the_number_of_groups_follows_the_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    mask = staircase(500, 784, seed=0)
    few = PackedLinear(torch.zeros(500, 784), None, mask)
    monkeypatch.setattr(layers, "_PRODUCT_CALL", 0.0)
    monkeypatch.setattr(layers, "_PRODUCT_SLOWDOWN", 0.0)
    many = PackedLinear(torch.zeros(500, 784), None, mask)
    assert 1 < len(few.groups) < len(many.groups) == layers._MAX_GROUPS
    assert sum(b.numel() for b in many.blocks()) < sum(b.numel() for b in few.blocks())


def test_a_packed_model_refuses_other_degrees_before_loading_anything() -> None:
    packed = dk.create_model("bernoulli", 6, hidden_sizes=(9,), layout="packed")
    before = {k: v.clone() for k, v in packed.state_dict().items()}
    other = dk.create_model("bernoulli", 6, hidden_sizes=(9,), layout="dense", seed=3)
    state = other.state_dict()
    # An old checkpoint: hidden units in the builder's order, not in degree order.
    state["backbone.hidden_degrees_0"] = state["backbone.hidden_degrees_0"].flip(-1)
    with pytest.raises(ValueError, match="layout='dense'"):
        packed.load_state_dict(state)
    for key, value in packed.state_dict().items():
        assert torch.equal(value, before[key]), key
    dense = dk.create_model("bernoulli", 6, hidden_sizes=(9,), layout="dense")
    dense.load_state_dict(state)  # a dense model takes any degrees


def test_rows_that_see_nothing() -> None:
    """A strict mask's first row sees no column: a block of no columns, and its bias."""
    mask = staircase(6, 5, seed=4, strict=True)
    mask[:2] = False
    dense = MaskedLinear(5, 6, masks=mask).double()
    packed = PackedLinear(dense.weight, dense.bias, mask, count=3)
    assert packed.groups[0].prefix == 0 and packed.blocks()[0].numel() == 0
    x = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    for repeats in (1, 250):  # a batch of 4 and one of 1,000 (other groups of rows)
        torch.testing.assert_close(packed(x.repeat(repeats, 1))[:4], dense(x))
