"""Masked linear layers."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MaskedLinear"]


class MaskedLinear(nn.Linear):
    """A linear layer whose weight is multiplied by a fixed 0/1 mask.

    The layer can hold several masks (one per MADE mask) stacked in the buffer
    ``masks`` of shape ``(num_masks, out_features, in_features)``; ``mask_index``
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

    masks: torch.Tensor

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
        self.register_buffer("masks", torch.empty(0, dtype=torch.bool), persistent=False)
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
        self.masks = masks.to(device=self.weight.device, dtype=torch.bool)
        self.mask_index = min(self.mask_index, masks.shape[0] - 1)

    @property
    def mask(self) -> torch.Tensor:
        """The active mask ``(out_features, in_features)``."""
        return self.masks[self.mask_index]

    def _weight_mask(self) -> torch.Tensor:
        """The active mask in the weight's dtype, cached between calls.

        Multiplying by a bool mask converts it on every call (a fifth of a training
        step's time on a 784-500-784 MADE). The cache keeps the ``masks`` tensor itself
        (so its identity cannot be recycled) and its version counter, so replacing,
        moving or editing the masks in place, or switching the active mask, rebuilds it.
        """
        masks, weight = self.masks, self.weight
        if masks.is_inference():  # no version counter to watch: convert every call
            return masks[self.mask_index].to(weight.dtype)
        key = (masks._version, self.mask_index, weight.dtype, weight.device)
        cached = self.__dict__.get("_mask_cache")
        if cached is None or cached[0] is not masks or cached[1] != key:
            cached = (masks, key, masks[self.mask_index].to(weight.dtype))
            self.__dict__["_mask_cache"] = cached
        return cached[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self._weight_mask(), self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_masks={self.masks.shape[0]}"
