r"""Masked linear layers, with dense or degree-grouped products.

A MADE mask is a staircase once units are sorted by degree: hidden unit $k$ sees the
units below of degree $\le m(k)$, so with both sides sorted, each output row reads
a prefix of the input columns. Splitting the sorted output rows into $B$ contiguous
groups, group $b$ needs only the prefix up to its largest row's, and the layer is
$B$ dense products on prefixes: about $(B+1)/2B$ of the dense arithmetic, in the
forward product and in both backward ones. Within a group, the columns every row
sees need no mask at all; only the thin band between the group's smallest and
largest prefix is multiplied by the mask, so the weight matrix is never masked as a
whole (the dense path multiplies every weight by its mask in the forward pass and
every gradient in the backward pass).
[`MaskedLinear.forward_grouped`][densitykit.layers.MaskedLinear.forward_grouped]
computes that from any row and column orders (the prefixes and bands are read off the
permuted mask, so the result is exact for any mask and any orders; orders by degree
make it fast), and [`grouped_linear`][densitykit.layers.grouped_linear] is the
product itself.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from densitykit.caching import TensorCache
from densitykit.checks import check_positive_int

__all__ = [
    "Group",
    "Grouping",
    "MaskedLinear",
    "PackedLinear",
    "batch_bucket",
    "grouped_linear",
    "grouping",
]

# The number of groups minimises the estimated time of a layer's products, relative to
# the dense product: the arithmetic read (rows x prefix per group), plus per product a
# fixed cost of ``_PRODUCT_CALL`` multiply-adds (a call's overhead) and a slowdown
# ``_PRODUCT_SLOWDOWN`` (smaller products run at a lower rate), plus the band masks'
# element-wise work at ``_BAND_COST`` of a multiply-add per example. Fitted to the
# timings of 784-500-784 at batch 100 (training) and 1,000 (evaluation) on a 2-core
# CPU (benchmarks/throughput.py).
_PRODUCT_CALL = 1.5e6
_PRODUCT_SLOWDOWN = 0.005
_BAND_COST = 0.01
_MAX_GROUPS = 16
_DEFAULT_BATCH = 100


class Group(NamedTuple):
    """Rows ``start:end`` (in group order) read columns ``0:full`` with every weight
    allowed and columns ``full:prefix`` through the group's band mask; no column from
    ``prefix`` on."""

    start: int
    end: int
    full: int
    prefix: int


@dataclass(frozen=True, eq=False)
class Grouping:
    """How a masked product splits into dense products on prefixes.

    Attributes:
        rows: Output units in group order ``(out,)``, or ``None`` if already in order.
        cols: Input units in prefix order ``(in,)``, or ``None`` if already in order.
        groups: One [`Group`][densitykit.layers.Group] per group, covering the rows in
            order.
        bands: Per group, the mask of its rows on columns ``full:prefix`` in the
            weight's dtype (``None`` when ``full == prefix``): the only part of the
            mask a product applies.
        shape: ``(out, in)`` of the weight.
        fraction: The arithmetic of the groups over that of the dense product.
    """

    rows: torch.Tensor | None
    cols: torch.Tensor | None
    groups: tuple[Group, ...]
    bands: tuple[torch.Tensor | None, ...]
    shape: tuple[int, int]
    fraction: float


def batch_bucket(batch: int) -> int:
    """``batch`` rounded to a power of two: the batches that share one choice of groups.

    Example:
        >>> [batch_bucket(n) for n in (1, 100, 128, 1000)]
        [1, 128, 128, 1024]
    """
    return 1 << round(math.log2(max(batch, 1)))


def grouping(
    mask: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    dtype: torch.dtype,
    batch: int = _DEFAULT_BATCH,
    count: int | None = None,
) -> Grouping:
    """The grouping of ``mask`` ``(out, in)`` with rows and columns in the given orders.

    Each row's prefix (one past its last allowed column) and full part (its first
    masked column) are read off the permuted mask, so the grouping is exact for any
    mask and any orders; orders by degree make the prefixes of a MADE mask a
    staircase and the bands thin. Contiguous groups of rows share the largest prefix
    and the smallest full part among them. The number of groups minimises an
    estimate of the products' time for a batch of ``batch`` rows (see the constants
    above), unless ``count`` is given.

    Args:
        mask: ``(out, in)`` 0/1 mask.
        rows: Order of the output units ``(out,)``.
        cols: Order of the input units ``(in,)``.
        dtype: The weights' dtype (of the band masks).
        batch: The rows of the inputs the grouping is chosen for.
        count: The number of groups (at most ``out``); by default, the estimate's best.

    Raises:
        ValueError: If ``count`` is not a positive integer.

    Example:
        >>> mask = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]]).bool()
        >>> g = grouping(mask, torch.arange(3), torch.arange(3), torch.float32)
        >>> [tuple(group) for group in g.groups]
        [(0, 3, 1, 3)]
        >>> g.bands[0]
        tensor([[0., 0.],
                [1., 0.],
                [1., 1.]])
    """
    permuted = mask.bool().index_select(0, rows).index_select(1, cols)
    num_rows, num_cols = permuted.shape
    if num_cols == 0:  # rows that read nothing (a block of the rows that see no column)
        prefix, first_masked = [0] * num_rows, [0] * num_rows
    else:
        allowed = permuted.any(1)
        last = num_cols - permuted.flip(1).int().argmax(1)
        prefix = torch.where(allowed, last, torch.zeros_like(last)).tolist()
        blocked = ~permuted
        first_masked = torch.where(
            blocked.any(1), blocked.int().argmax(1), torch.full_like(last, num_cols)
        ).tolist()
    dense = max(num_rows * num_cols, 1)
    per_product = _PRODUCT_CALL / (max(batch, 1) * dense) + _PRODUCT_SLOWDOWN
    if count is not None:
        counts = [check_positive_int(count, "count")]
    else:
        counts = list(range(1, min(_MAX_GROUPS, max(num_rows, 1)) + 1))
    best: tuple[float, list[Group]] | None = None
    for number in counts:
        edges = [round(i * num_rows / number) for i in range(number + 1)]
        groups = []
        for start, end in itertools.pairwise(edges):
            if end > start:
                width = max(prefix[start:end])
                groups.append(Group(start, end, min(min(first_masked[start:end]), width), width))
        area = sum((g.end - g.start) * g.prefix for g in groups)
        band = sum((g.end - g.start) * (g.prefix - g.full) for g in groups)
        products = sum((g.full > 0) + (g.prefix > g.full) for g in groups)
        cost = (area + _BAND_COST * band) / dense + per_product * products
        if best is None or cost < best[0]:
            best = (cost, groups)
    if best is None:  # no rows: nothing to multiply
        best = (0.0, [])
    groups = best[1]
    bands = tuple(
        permuted[g.start : g.end, g.full : g.prefix].to(dtype) if g.prefix > g.full else None
        for g in groups
    )
    area = sum((g.end - g.start) * g.prefix for g in groups)
    return Grouping(
        rows=None if _is_identity(rows) else rows,
        cols=None if _is_identity(cols) else cols,
        groups=tuple(groups),
        bands=bands,
        shape=(num_rows, num_cols),
        fraction=area / dense,
    )


def _products(
    x: torch.Tensor,
    bias: torch.Tensor | None,
    groups: tuple[Group, ...],
    bands: tuple[torch.Tensor | None, ...],
    weights: list[torch.Tensor],
) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
    """``x @ (weight * mask).T + bias`` group by group, and each band's masked weights.

    ``weights[g]`` holds the rows of group ``g`` with at least ``prefix`` columns; only
    the prefix is multiplied, and the mask is applied on the band ``full:prefix`` only.
    """
    out = x.new_empty(x.shape[0], groups[-1].end if groups else 0)
    banded: list[torch.Tensor | None] = []
    for (start, end, full, prefix), band, weight in zip(groups, bands, weights):
        target = out[:, start:end]
        if full > 0:
            if bias is None:
                torch.mm(x[:, :full], weight[:, :full].t(), out=target)
            else:
                torch.addmm(bias[start:end], x[:, :full], weight[:, :full].t(), out=target)
        elif bias is None:
            target.zero_()
        else:
            target.copy_(bias[start:end].expand_as(target))
        if band is None:
            banded.append(None)
            continue
        masked = weight[:, full:prefix] * band
        target.addmm_(x[:, full:prefix], masked.t())
        banded.append(masked)
    return out, banded


def _products_backward(
    grad: torch.Tensor,
    x: torch.Tensor,
    groups: tuple[Group, ...],
    bands: tuple[torch.Tensor | None, ...],
    banded: list[torch.Tensor | None],
    weights: list[torch.Tensor],
    grad_weights: list[torch.Tensor | None],
    need_x: bool,
) -> torch.Tensor | None:
    """The gradient of ``x`` (if ``need_x``), writing each group's weight gradient into
    ``grad_weights[g]`` (of the weight's shape: zero beyond the prefix and where the
    band's mask is; ``None`` skips it)."""
    grad_x = torch.zeros_like(x) if need_x else None
    for (start, end, full, prefix), band, masked, weight, grad_weight in zip(
        groups, bands, banded, weights, grad_weights
    ):
        rows = grad[:, start:end]
        if grad_x is not None:
            if full > 0:
                grad_x[:, :full].addmm_(rows, weight[:, :full])
            if masked is not None:
                grad_x[:, full:prefix].addmm_(rows, masked)
        if grad_weight is None:
            continue
        grad_weight[:, prefix:].zero_()
        torch.mm(rows.t(), x[:, :prefix], out=grad_weight[:, :prefix])
        if band is not None:
            grad_weight[:, full:prefix].mul_(band)
    return grad_x


class _GroupedLinear(torch.autograd.Function):
    """``x @ (weight * mask).T + bias``, each group's rows from their own weight tensor
    (views of a full weight: see ``_products``); each weight's gradient has its shape."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        bias: torch.Tensor | None,
        groups: tuple[Group, ...],
        bands: tuple[torch.Tensor | None, ...],
        *weights: torch.Tensor,
    ) -> torch.Tensor:
        out, banded = _products(x, bias, groups, bands, list(weights))
        ctx.save_for_backward(x, *weights)
        ctx.groups, ctx.bands, ctx.banded = groups, bands, banded
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, *weights = ctx.saved_tensors
        grad_weights = [
            torch.empty_like(weight) if ctx.needs_input_grad[4 + index] else None
            for index, weight in enumerate(weights)
        ]
        grad_x = _products_backward(
            grad, x, ctx.groups, ctx.bands, ctx.banded, weights, grad_weights,
            ctx.needs_input_grad[0],
        )  # fmt: skip
        grad_bias = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[1] else None
        return (grad_x, grad_bias, None, None, *grad_weights)


class _PackedProducts(torch.autograd.Function):
    """The same products from one flat tensor holding every group's block in turn
    (``shapes``: each block's offset, rows and columns); its gradient is flat too."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        bias: torch.Tensor | None,
        packed: torch.Tensor,
        groups: tuple[Group, ...],
        bands: tuple[torch.Tensor | None, ...],
        shapes: tuple[tuple[int, int, int], ...],
    ) -> torch.Tensor:
        out, banded = _products(x, bias, groups, bands, _blocks(packed, shapes))
        ctx.save_for_backward(x, packed)
        ctx.groups, ctx.bands, ctx.banded, ctx.shapes = groups, bands, banded, shapes
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, packed = ctx.saved_tensors
        grad_packed = torch.empty_like(packed) if ctx.needs_input_grad[2] else None
        grad_blocks: list[torch.Tensor | None] = (
            list(_blocks(grad_packed, ctx.shapes))
            if grad_packed is not None
            else [None] * len(ctx.shapes)
        )
        grad_x = _products_backward(
            grad, x, ctx.groups, ctx.bands, ctx.banded, _blocks(packed, ctx.shapes),
            grad_blocks, ctx.needs_input_grad[0],
        )  # fmt: skip
        grad_bias = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[1] else None
        return grad_x, grad_bias, grad_packed, None, None, None


def _blocks(flat: torch.Tensor, shapes: tuple[tuple[int, int, int], ...]) -> list[torch.Tensor]:
    """Views of ``flat`` as blocks ``(rows, columns)`` starting at their offsets."""
    return [flat[offset : offset + rows * cols].view(rows, cols) for offset, rows, cols in shapes]


def grouped_linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, groups: Grouping
) -> torch.Tensor:
    """``F.linear(x, weight * mask, bias)``, with ``x``, ``weight`` and ``bias`` in the
    orders of ``groups`` (a [`grouping`][densitykit.layers.grouping] of ``mask``).

    Only the groups' prefixes are multiplied, in the forward product and in both
    backward products, and the mask is applied to the groups' bands only (the
    weight itself is not multiplied by the mask); the gradient of ``weight`` is zero
    where the mask is.

    Args:
        x: ``(batch, in)`` inputs, columns in ``groups.cols`` order.
        weight: ``(out, in)`` unmasked weights, rows and columns in the groups' orders.
        bias: ``(out,)`` in ``groups.rows`` order, or ``None``.
        groups: The grouping of the mask.

    Raises:
        ValueError: If ``weight`` is not of the grouping's shape.
    """
    if tuple(weight.shape) != groups.shape:
        raise ValueError(
            f"weight must have the grouping's shape {groups.shape}, got {tuple(weight.shape)}"
        )
    views = [weight[group.start : group.end] for group in groups.groups]
    return _GroupedLinear.apply(x, bias, groups.groups, groups.bands, *views)


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask.

    The layer can hold several masks (one per MADE mask) stacked in the buffer
    ``mask_stack`` of shape ``(num_masks, out_features, in_features)``; ``mask_index``
    selects the active one. Masks are buffers, so they follow ``.to(device)``.

    Args:
        in_features: Input width.
        out_features: Output width.
        masks: Bool tensor ``(out, in)`` or ``(num_masks, out, in)``; all ones if omitted.
        bias: Whether to learn an additive bias.

    Example:
        >>> layer = MaskedLinear(3, 2, masks=torch.tensor([[1, 0, 0], [1, 1, 0]]).bool())
        >>> x = torch.randn(4, 3, requires_grad=True)
        >>> layer(x)[:, 0].sum().backward()
        >>> bool((x.grad[:, 1:] == 0).all())
        True
    """

    mask_stack: torch.Tensor

    def __init__(
        self,
        in_features: int,
        out_features: int,
        masks: torch.Tensor | None = None,
        *,
        bias: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias, device=device, dtype=dtype)
        if masks is None:
            masks = torch.ones(1, out_features, in_features, dtype=torch.bool)
        self.register_buffer("mask_stack", torch.empty(0, dtype=torch.bool), persistent=False)
        self.mask_index = 0
        self.set_masks(masks)

    def set_masks(self, masks: torch.Tensor) -> None:
        """Replace the stored masks (``(out, in)`` or ``(K, out, in)``, any 0/1 dtype)."""
        masks = torch.as_tensor(masks)
        if masks.ndim == 2:
            masks = masks[None]
        expected = (self.out_features, self.in_features)
        if masks.ndim != 3 or tuple(masks.shape[1:]) != expected:
            raise ValueError(
                f"masks must have shape (out, in) = {expected} or (K, *{expected}), "
                f"got {tuple(masks.shape)}"
            )
        self.mask_stack = masks.to(device=self.weight.device, dtype=torch.bool)
        self.mask_index = min(self.mask_index, masks.shape[0] - 1)

    @property
    def mask(self) -> torch.Tensor:
        """The active mask ``(out_features, in_features)``."""
        return self.mask_stack[self.mask_index]

    def _weight_mask(self) -> torch.Tensor:
        """The active mask in the weight's dtype, cached between calls.

        Multiplying by a bool mask converts it on every call (a fifth of a training
        step's time on a 784-500-784 MADE). Replacing, moving or editing the masks in
        place, or switching the active mask, rebuilds it (a
        [`TensorCache`][densitykit.caching.TensorCache]).
        """
        masks, weight, index = self.mask_stack, self.weight, self.mask_index
        cache = self.__dict__.setdefault("_mask_cache", TensorCache())
        return cache.get(
            (masks,), (index, weight.dtype, weight.device), lambda: masks[index].to(weight.dtype)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self._weight_mask(), self.bias)

    def forward_grouped(self, x: torch.Tensor, groups: Grouping) -> torch.Tensor:
        """The same product with units permuted: inputs and outputs in grouping order.

        ``forward_grouped(x[:, g.cols], g)`` equals ``forward(x)[:, g.rows]`` up to float
        rounding (``g`` a [`Grouping`][densitykit.layers.Grouping] of the active mask),
        with only the groups' prefixes multiplied (see the module docstring).

        Args:
            x: ``(batch, in)`` inputs, columns in ``groups.cols`` order.
            groups: The grouping of the active mask.

        Returns:
            ``(batch, out)`` outputs, columns in ``groups.rows`` order.
        """
        weight, bias = self.weight, self.bias
        if groups.rows is not None:
            weight = weight.index_select(0, groups.rows)
            bias = None if bias is None else bias.index_select(0, groups.rows)
        if groups.cols is not None:
            weight = weight.index_select(1, groups.cols)
        return grouped_linear(x, weight, bias, groups)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_masks={self.mask_stack.shape[0]}"


def _is_identity(order: torch.Tensor) -> bool:
    return bool(torch.equal(order, torch.arange(order.numel(), device=order.device)))


class PackedLinear(nn.Module):
    r"""A masked linear layer that stores only the weights its mask can use.

    With units in degree order, each row of a MADE mask allows a prefix of the
    columns (a staircase). The layer keeps, per group of rows (a
    [`Group`][densitykit.layers.Group]), the block of weights up to the group's
    prefix: about $(B+1)/2B$ of the dense matrix with $B$ groups. The masked weights
    beyond the prefixes are not stored, not multiplied, and not updated by an
    optimizer (an Adam step costs in proportion to the weights it updates); inside
    the blocks the mask is applied on each group's band only. The result equals
    ``MaskedLinear`` with the same weights up to float rounding.

    Its ``state_dict`` is a ``MaskedLinear``'s: the full ``weight`` (zero where no
    block reaches) and ``bias``, so checkpoints are the same files either way; a
    full ``weight`` loads into the blocks (the weights beyond them are masked and
    dropped).

    Args:
        weight: ``(out, in)`` initial weights (copied into the blocks).
        bias: ``(out,)`` initial bias, or ``None`` for none.
        mask: ``(out, in)`` 0/1 mask, each row a prefix of the columns up to the
            group's band (a MADE mask with units in degree order).
        batch: The batch the number of groups is chosen for (see
            [`grouping`][densitykit.layers.grouping]).
        count: The number of groups (default: the estimate's best for ``batch``).

    Raises:
        ValueError: If the shapes disagree.

    Example:
        >>> mask = torch.tril(torch.ones(4, 4, dtype=torch.bool))
        >>> layer = PackedLinear(torch.ones(4, 4), torch.zeros(4), mask, count=2)
        >>> [tuple(block.shape) for block in layer.blocks()]
        [(2, 2), (2, 4)]
        >>> layer(torch.ones(1, 4))
        tensor([[1., 2., 3., 4.]], grad_fn=<_PackedProductsBackward>)
    """

    mask_stack: torch.Tensor

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        mask: torch.Tensor,
        *,
        batch: int = _DEFAULT_BATCH,
        count: int | None = None,
    ) -> None:
        super().__init__()
        if weight.ndim != 2 or tuple(mask.shape) != tuple(weight.shape):
            raise ValueError(
                f"weight and mask must be (out, in) of one shape, got {tuple(weight.shape)} "
                f"and {tuple(mask.shape)}"
            )
        self.out_features, self.in_features = weight.shape
        identity_rows = torch.arange(self.out_features, device=mask.device)
        identity_cols = torch.arange(self.in_features, device=mask.device)
        layout = grouping(mask, identity_rows, identity_cols, weight.dtype, batch, count)
        self.groups = layout.groups
        shapes, offset = [], 0
        for group in self.groups:
            shapes.append((offset, group.end - group.start, group.prefix))
            offset += (group.end - group.start) * group.prefix
        self._shapes = tuple(shapes)
        # One flat parameter (an optimizer's step is per tensor): the blocks in turn.
        blocks = [weight.detach()[g.start : g.end, : g.prefix].flatten() for g in self.groups]
        self.packed = nn.Parameter(torch.cat(blocks) if blocks else weight.new_zeros(0))
        if bias is not None and tuple(bias.shape) != (self.out_features,):
            raise ValueError(f"bias must be ({self.out_features},), got {tuple(bias.shape)}")
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.register_buffer("mask_stack", torch.empty(0, dtype=torch.bool), persistent=False)
        self.mask_index = 0
        self.set_masks(mask)

    def blocks(self) -> list[torch.Tensor]:
        """The weight blocks, one per group (rows ``start:end``, columns ``:prefix``):
        views of the flat parameter ``packed``, which holds them in turn."""
        return _blocks(self.packed, self._shapes)

    @property
    def mask(self) -> torch.Tensor:
        """The active mask ``(out_features, in_features)``."""
        return self.mask_stack[self.mask_index]

    def set_masks(self, masks: torch.Tensor) -> None:
        """Replace the mask (``(out, in)`` or ``(1, out, in)``, any 0/1 dtype).

        Raises:
            ValueError: If the mask allows a weight no block stores (a connectivity
                other than the one the layer was packed for; use a ``MaskedLinear``).
        """
        masks = torch.as_tensor(masks)
        if masks.ndim == 2:
            masks = masks[None]
        expected = (1, self.out_features, self.in_features)
        if tuple(masks.shape) != expected:
            raise ValueError(
                f"masks must have shape {expected[1:]} or {expected}, got {tuple(masks.shape)}"
            )
        masks = masks.to(device=self.mask_stack.device, dtype=torch.bool)
        for group in self.groups:
            if bool(masks[0, group.start : group.end, group.prefix :].any()):
                raise ValueError(
                    "the mask allows weights this packed layer does not store (rows "
                    f"{group.start}..{group.end - 1} beyond column {group.prefix}); a packed "
                    "layer keeps the connectivity it was built for (use layout='dense')"
                )
        self.mask_stack = masks

    @property
    def weight(self) -> torch.Tensor:
        """The full ``(out, in)`` weight, zero beyond the blocks (differentiable)."""
        rows = [F.pad(block, (0, self.in_features - block.shape[1])) for block in self.blocks()]
        return torch.cat(rows) if rows else self.packed.new_zeros(0, self.in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``F.linear(x, weight * mask, bias)`` from the blocks: prefix products only."""
        groups, bands, shapes = self._plan(x.dtype, x.shape[0])
        return _PackedProducts.apply(x, self.bias, self.packed, groups, bands, shapes)

    def forward_dense(self, x: torch.Tensor) -> torch.Tensor:
        """The same, as one dense product of the full weight (for devices where the
        prefix products do not pay)."""
        return F.linear(x, self.weight * self.mask.to(x.dtype), self.bias)

    def _plan(
        self, dtype: torch.dtype, batch: int
    ) -> tuple[
        tuple[Group, ...], tuple[torch.Tensor | None, ...], tuple[tuple[int, int, int], ...]
    ]:
        """The products for a batch of about ``batch`` rows: groups, bands and views.

        Each stored block is split again into groups of its rows, chosen by
        [`grouping`][densitykit.layers.grouping] for the batch (a larger batch pays for
        more, smaller products; a training batch usually keeps the blocks whole). A
        group's weights are a view of its rows of the block, all of its columns;
        its ``full`` part and band are read off the active mask. Kept per batch size
        rounded to a power of two, until the mask changes.
        """
        mask = self.mask
        bucket = batch_bucket(batch)
        caches = self.__dict__.setdefault("_plan_caches", {})
        cache = caches.setdefault(bucket, TensorCache())

        def build() -> tuple[
            tuple[Group, ...], tuple[torch.Tensor | None, ...], tuple[tuple[int, int, int], ...]
        ]:
            groups, bands, shapes = [], [], []
            for group, (offset, _, cols) in zip(self.groups, self._shapes):
                block = mask[group.start : group.end, :cols]
                rows = torch.arange(block.shape[0], device=mask.device)
                columns = torch.arange(cols, device=mask.device)
                split = grouping(block, rows, columns, dtype, bucket)
                for (start, end, full, prefix), band in zip(split.groups, split.bands):
                    groups.append(Group(group.start + start, group.start + end, full, prefix))
                    bands.append(band)
                    shapes.append((offset + start * cols, end - start, cols))
            return tuple(groups), tuple(bands), tuple(shapes)

        return cache.get((self.mask_stack,), (dtype, mask.device), build)

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        weight = self.weight
        destination[prefix + "weight"] = weight if keep_vars else weight.detach()
        if self.bias is not None:
            destination[prefix + "bias"] = self.bias if keep_vars else self.bias.detach()

    def _load_from_state_dict(
        self,
        state_dict: dict,
        prefix: str,
        local_metadata: dict,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        names = ["weight"] + (["bias"] if self.bias is not None else [])
        for key in state_dict:
            if key.startswith(prefix) and key[len(prefix) :].split(".", 1)[0] not in names:
                unexpected_keys.append(key)
        shapes = {"weight": (self.out_features, self.in_features), "bias": (self.out_features,)}
        for name in names:
            key = prefix + name
            if key not in state_dict:
                missing_keys.append(key)
                continue
            value = state_dict[key]
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != shapes[name]:
                error_msgs.append(
                    f"size mismatch for {key}: copying a param with shape "
                    f"{tuple(getattr(value, 'shape', ()))}, the shape in current model is "
                    f"{shapes[name]}."
                )
                continue
            with torch.no_grad():
                if name == "bias":
                    self.bias.copy_(value)
                else:
                    for group, block in zip(self.groups, self.blocks()):
                        block.copy_(value[group.start : group.end, : group.prefix])

    def extra_repr(self) -> str:
        stored = sum(block.numel() for block in self.blocks())
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}, groups={len(self.groups)}, "
            f"stored={stored}/{self.in_features * self.out_features}"
        )
