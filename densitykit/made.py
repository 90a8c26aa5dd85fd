r"""The MADE backbone: a masked MLP whose outputs respect an autoregressive ordering.

Output layout: ``forward`` returns ``(B, D, P)``, parameter ``p`` of variable ``i``
at ``[:, i, p]``; in the flat output layer that is unit ``i * P + p``.
Input layout: ``(B, D * W)``, unit ``i * W + w`` belongs to variable ``i`` (for
one-hot inputs ``W = K`` and all ``W`` units of a variable share its degree).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from densitykit.layers import MaskedLinear
from densitykit.masks import Connectivity, check_connectivity
from densitykit.registry import Registry

__all__ = ["ACTIVATIONS", "MADE"]

ACTIVATIONS: Registry = Registry("activation")
"""Element-wise activations by name (``relu``, ``tanh``, ``elu``, ``gelu``, ``silu``, ...)."""

for _name, _cls in {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "elu": nn.ELU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "leaky-relu": nn.LeakyReLU,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
}.items():
    ACTIVATIONS.register(_name, _cls, description=f"torch.nn.{_cls.__name__}")


class MADE(nn.Module):
    """Masked Autoencoder for Distribution Estimation (Germain et al., 2015).

    Args:
        connectivities: One [`Connectivity`][densitykit.masks.Connectivity] per mask
            (from a mask builder); all must share ``D`` and the hidden sizes.
        params_per_variable: Outputs per variable ``P`` (a head's parameter count).
        input_width: Input units per variable ``W`` (1 for scalar inputs, ``K`` for one-hot).
        activation: Name in [`ACTIVATIONS`][densitykit.made.ACTIVATIONS].
        direct_connections: Add masked (strict rule) input-to-output weights.

    Example:
        >>> from densitykit import masks
        >>> made = MADE(masks.create("natural", dim=3, hidden_sizes=[8]), params_per_variable=2)
        >>> made(torch.zeros(5, 3)).shape
        torch.Size([5, 3, 2])
    """

    def __init__(
        self,
        connectivities: Sequence[Connectivity],
        *,
        params_per_variable: int = 1,
        input_width: int = 1,
        activation: str = "relu",
        direct_connections: bool = False,
    ) -> None:
        super().__init__()
        connectivities = list(connectivities)
        if not connectivities:
            raise ValueError("MADE needs at least one Connectivity (mask), got none")
        first = connectivities[0]
        self.dim = first.dim
        self.hidden_sizes = tuple(h.numel() for h in first.hidden_degrees)
        for index, conn in enumerate(connectivities[1:], start=1):
            sizes = tuple(h.numel() for h in conn.hidden_degrees)
            if conn.dim != self.dim or sizes != self.hidden_sizes:
                raise ValueError(
                    f"all masks must share D={self.dim} and hidden sizes {self.hidden_sizes}; "
                    f"mask {index} has D={conn.dim} and {sizes}"
                )
        for label, value in (
            ("params_per_variable", params_per_variable),
            ("input_width", input_width),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{label} must be a positive integer, got {value!r}")
        self.params_per_variable = params_per_variable
        self.input_width = input_width
        self.activation = activation
        self.direct_connections = bool(direct_connections) and len(self.hidden_sizes) > 0
        # Warn about dependencies no path realises (direct connections fill any gap).
        check_connectivity(connectivities, direct=self.direct_connections, warn=True)

        widths = [self.dim * input_width, *self.hidden_sizes, self.dim * params_per_variable]
        self.layers = nn.ModuleList(
            MaskedLinear(widths[i], widths[i + 1]) for i in range(len(widths) - 1)
        )
        self.activations = nn.ModuleList(ACTIVATIONS.create(activation) for _ in self.hidden_sizes)
        self.direct = (
            MaskedLinear(widths[0], widths[-1], bias=False) if self.direct_connections else None
        )
        # Degrees are the persistent truth; masks are derived buffers rebuilt on load.
        self.register_buffer(
            "input_degrees", torch.stack([c.input_degrees for c in connectivities])
        )
        for layer in range(len(self.hidden_sizes)):
            self.register_buffer(
                f"hidden_degrees_{layer}",
                torch.stack([c.hidden_degrees[layer] for c in connectivities]),
            )
        self._rebuild_masks()
        self.register_load_state_dict_post_hook(lambda module, keys: module._rebuild_masks())

    # -- masks ---------------------------------------------------------------------------
    @property
    def num_masks(self) -> int:
        """How many masks the backbone holds."""
        return self.input_degrees.shape[0]

    @property
    def mask_index(self) -> int:
        """The index of the active mask."""
        return self.layers[0].mask_index

    def connectivity(self, index: int | None = None) -> Connectivity:
        """The degrees of mask ``index`` (the active one by default)."""
        index = self.mask_index if index is None else self._check_index(index)
        return Connectivity(
            self.input_degrees[index].cpu(),
            tuple(
                getattr(self, f"hidden_degrees_{layer}")[index].cpu()
                for layer in range(len(self.hidden_sizes))
            ),
        )

    def _rebuild_masks(self) -> None:
        per_mask = [
            self.connectivity(k).masks(self.input_width, self.params_per_variable)
            for k in range(self.num_masks)
        ]
        for layer_index, layer in enumerate(self.layers):
            layer.set_masks(torch.stack([masks[layer_index] for masks in per_mask]))
        if self.direct is not None:
            self.direct.set_masks(
                torch.stack(
                    [
                        self.connectivity(k).direct_mask(self.input_width, self.params_per_variable)
                        for k in range(self.num_masks)
                    ]
                )
            )

    def _check_index(self, index: int) -> int:
        if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < self.num_masks:
            raise ValueError(
                f"mask index must be an integer in 0..{self.num_masks - 1}, got {index!r}"
            )
        return index

    def set_mask(self, index: int) -> None:
        """Make mask ``index`` the active one."""
        index = self._check_index(index)
        for layer in self.layers:
            layer.mask_index = index
        if self.direct is not None:
            self.direct.mask_index = index

    def next_mask(self) -> int:
        """Cycle to the next mask (for connectivity-agnostic training); returns its index."""
        self.set_mask((self.mask_index + 1) % self.num_masks)
        return self.mask_index

    # -- computation ---------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map encoded inputs ``(B, D*W)`` to parameters ``(B, D, P)`` with the active mask."""
        h = x
        for layer, activation in zip(self.layers[:-1], self.activations):
            h = activation(layer(h))
        out = self.layers[-1](h)
        if self.direct is not None:
            out = out + self.direct(x)
        return out.view(x.shape[0], self.dim, self.params_per_variable)

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, hidden_sizes={self.hidden_sizes}, params_per_variable="
            f"{self.params_per_variable}, input_width={self.input_width}, "
            f"num_masks={self.num_masks}, direct_connections={self.direct_connections}"
        )
