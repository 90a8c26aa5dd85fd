r"""Masked linear layers, with dense or degree-grouped products.

A MADE mask is a staircase once units are sorted by degree: hidden unit $k$ sees the
units below of degree $\le m(k)$, so with both sides sorted, each output row reads
a prefix of the input columns. Splitting the sorted output rows into $B$ contiguous
groups, group $b$ needs only the prefix up to its largest row's, and the layer is
$B$ dense products on prefixes: about $(B+1)/2B$ of the dense arithmetic, in the
forward product and in both backward ones.
[`MaskedLinear.forward_grouped`][densitykit.layers.MaskedLinear.forward_grouped]
computes that from any row and column orders (the prefixes are read off the
permuted mask, so the result is exact for any mask and any orders; orders by degree
make it fast), and [`grouped_linear`][densitykit.layers.grouped_linear] is the
product itself.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from densitykit.caching import TensorCache

__all__ = ["Grouping", "MaskedLinear", "grouped_linear", "grouping"]

# The number of groups minimises the arithmetic plus this fraction of a dense product
# per extra product (an estimate of a call's fixed cost, not tuned by measurement).
_GROUP_COST = 0.02
_MAX_GROUPS = 16


@dataclass(frozen=True, eq=False)
class Grouping:
    """How a masked product splits into dense products on prefixes.

    Attributes:
        rows: Output units in group order ``(out,)``, or ``None`` if already in order.
        cols: Input units in prefix order ``(in,)``, or ``None`` if already in order.
        mask: The mask with rows and columns in those orders, in the weight's dtype.
        groups: ``(start, end, prefix)`` per group: rows ``start:end`` (in group order)
            read the first ``prefix`` columns.
        fraction: The arithmetic of the groups over that of the dense product.
    """

    rows: torch.Tensor | None
    cols: torch.Tensor | None
    mask: torch.Tensor
    groups: tuple[tuple[int, int, int], ...]
    fraction: float


def grouping(
    mask: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, dtype: torch.dtype
) -> Grouping:
    """The grouping of ``mask`` ``(out, in)`` with rows and columns in the given orders.

    Each row's prefix is read off the permuted mask (one past its last allowed
    column); contiguous groups of rows share the largest prefix among them. The
    number of groups minimises the arithmetic plus a fixed cost per product.

    Example:
        >>> mask = torch.tensor([[1, 0, 0], [1, 1, 0], [1, 1, 1]]).bool()
        >>> g = grouping(mask, torch.arange(3), torch.arange(3), torch.float32)
        >>> g.groups
        ((0, 1, 1), (1, 2, 2), (2, 3, 3))
    """
    permuted = mask.bool().index_select(0, rows).index_select(1, cols)
    num_rows, num_cols = permuted.shape
    allowed = permuted.any(1)
    last = num_cols - permuted.flip(1).int().argmax(1)
    prefix = torch.where(allowed, last, torch.zeros_like(last)).tolist()
    best: tuple[float, tuple[tuple[int, int, int], ...]] | None = None
    for count in range(1, min(_MAX_GROUPS, max(num_rows, 1)) + 1):
        edges = [round(i * num_rows / count) for i in range(count + 1)]
        groups = tuple(
            (start, end, max(prefix[start:end]))
            for start, end in itertools.pairwise(edges)
            if end > start
        )
        area = sum((end - start) * width for start, end, width in groups)
        cost = area / max(num_rows * num_cols, 1) + _GROUP_COST * (len(groups) - 1)
        if best is None or cost < best[0]:
            best = (cost, groups)
    assert best is not None  # internal invariant: at least one candidate
    groups = best[1]
    area = sum((end - start) * width for start, end, width in groups)
    return Grouping(
        rows=None if _is_identity(rows) else rows,
        cols=None if _is_identity(cols) else cols,
        mask=permuted.to(dtype),
        groups=groups,
        fraction=area / max(num_rows * num_cols, 1),
    )


class _GroupedLinear(torch.autograd.Function):
    """``x @ weight.T + bias`` where rows ``start:end`` of ``weight`` read only the
    first ``prefix`` columns (the rest of each row is zero)."""

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        groups: Sequence[tuple[int, int, int]],
    ) -> torch.Tensor:
        out = x.new_empty(x.shape[0], weight.shape[0])
        for start, end, prefix in groups:
            target = out[:, start:end]
            if prefix == 0:
                target.copy_(
                    bias[start:end].expand_as(target)
                ) if bias is not None else target.zero_()
            elif bias is None:
                torch.mm(x[:, :prefix], weight[start:end, :prefix].t(), out=target)
            else:
                torch.addmm(
                    bias[start:end], x[:, :prefix], weight[start:end, :prefix].t(), out=target
                )
        ctx.save_for_backward(x, weight)
        ctx.groups = groups
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.zeros_like(x)
        if ctx.needs_input_grad[1]:
            grad_weight = torch.empty_like(weight)
        for start, end, prefix in ctx.groups:
            rows = grad[:, start:end]
            if grad_weight is not None:
                grad_weight[start:end, prefix:].zero_()
            if prefix == 0:
                continue
            if grad_x is not None:
                grad_x[:, :prefix].addmm_(rows, weight[start:end, :prefix])
            if grad_weight is not None:
                torch.mm(rows.t(), x[:, :prefix], out=grad_weight[start:end, :prefix])
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(0)
        return grad_x, grad_weight, grad_bias, None


def grouped_linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    groups: Sequence[tuple[int, int, int]],
) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` for a ``weight`` whose rows ``start:end`` are zero
    beyond column ``prefix``, for each ``(start, end, prefix)`` of ``groups``.

    Only the prefixes are multiplied, in the forward product and in both backward
    products; the gradient of ``weight`` is zero beyond each group's prefix.

    Args:
        x: ``(batch, in)`` inputs.
        weight: ``(out, in)``, zero outside the groups' prefixes (not checked).
        bias: ``(out,)`` or ``None``.
        groups: ``(start, end, prefix)`` covering the rows ``0..out`` in order.
    """
    return _GroupedLinear.apply(x, weight, bias, tuple(groups))


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
        return grouped_linear(x, weight * groups.mask, bias, groups.groups)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_masks={self.mask_stack.shape[0]}"


def _is_identity(order: torch.Tensor) -> bool:
    return bool(torch.equal(order, torch.arange(order.numel(), device=order.device)))
