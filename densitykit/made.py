r"""The MADE backbone: a masked MLP whose outputs respect an autoregressive ordering.

Output layout: ``forward`` returns ``(B, D, P)``, parameter ``p`` of variable ``i``
at ``[:, i, p]``; in the flat output layer that is unit ``i * P + p``.
Input layout: ``(B, D * W)``, unit ``i * W + w`` belongs to variable ``i`` (for
one-hot inputs ``W = K`` and all ``W`` units of a variable share its degree).

Per-variable widths: a backbone built with one parameter count $P_i$ and input width
$W_i$ per variable (``widths``, a [`VariableWidths`][densitykit.widths.VariableWidths];
the ``mixed`` head's) has exactly $\sum_i P_i$ output units, variable ``i``'s at
``output_starts[i] + p``, and $\sum_i W_i$ inputs, at ``input_starts[i] + w``, each
unit with its variable's degree: nothing padded, in the dense and the packed layouts.
``forward`` hands the outputs over zero-padded to ``(B, D, max P_i)``.

Context (a conditional MADE, $p(x \mid c)$): a backbone built with
``context_size=C`` takes a context ``(B, C)`` of real features beside the inputs.
The context is not masked with respect to ``x``: an unmasked linear map (no bias)
adds it to the pre-activations of every hidden layer and of the output layer. The
direct map to the outputs is what makes the first variable of every ordering depend
on the context: its outputs see no hidden unit (a hidden unit of degree $m \ge 1$
reads variable $m$ or later), so a context that entered the hidden layers only would
never reach it (the bug of nflows PR 85 and sbi issue 1394).

Mask as input (``mask_input=True``; the idea of deep orderless NADE, Uria et al.
2014, and of the MADE paper's section 3.3): a masked input of 0 means either "the
value 0" or "not visible to this unit". A backbone built with ``mask_input`` tells
every unit of the first hidden layer which variables it sees, and every output
which variables precede its variable: it adds ``(U * M) @ 1`` to their
pre-activations, where ``M`` is the unit's variable-level mask under the
connectivity in use and ``U`` a learnt weight per (unit, variable). The term depends
on the connectivity only, never on ``x``, so the autoregressive property holds; it
matters when the connectivity changes (training over all orderings).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from densitykit.checks import check_fraction, check_index, check_int, check_positive_int
from densitykit.layers import Grouping, MaskedLinear, PackedLinear, batch_bucket, grouping
from densitykit.masks import Connectivity, OnDemandConnectivities, check_connectivity
from densitykit.registry import Registry
from densitykit.widths import VariableWidths

__all__ = ["ACTIVATIONS", "LAYOUTS", "MADE", "PRODUCTS"]

PRODUCTS = ("auto", "dense", "grouped")
"""How [`MADE`][densitykit.made.MADE] multiplies its masked layers (see ``products``)."""

LAYOUTS = ("auto", "dense", "packed")
"""How [`MADE`][densitykit.made.MADE] stores its masked weights (see ``layout``)."""

# The automatic choice (measured on a 2-core CPU, see docs/benchmarks.md): grouped
# products on the CPU when the groups skip enough of the arithmetic and the layers
# are large enough for the saving to outweigh the permutations.
_GROUPED_MAX_FRACTION = 0.8
_GROUPED_MIN_WEIGHTS = 262_144
# Groupings kept per backbone (one per mask, the most recently used).
_GROUPINGS_KEPT = 8


@dataclass(frozen=True, eq=False)
class _Groupings:
    """The degree-sorted products of one mask: one grouping per layer (and direct)."""

    input_order: torch.Tensor | None
    output_inverse: torch.Tensor | None
    layers: tuple[Grouping, ...]
    direct: Grouping | None
    fraction: float
    weights: int


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
        params_per_variable: Outputs per variable ``P`` (a head's parameter count), or
            one count $P_i$ per variable (a head with per-variable widths, see
            [`densitykit.widths`][densitykit.widths]): the output layer then has
            $\\sum_i P_i$ units, each with its variable's degree, and ``forward``
            returns them zero-padded to ``(B, D, max P_i)``.
        input_width: Input units per variable ``W`` (1 for scalar inputs, ``K`` for
            one-hot), or one width $W_i$ per variable (inputs ``(B, sum W_i)``).
        activation: Name in [`ACTIVATIONS`][densitykit.made.ACTIVATIONS].
        direct_connections: Add masked (strict rule) input-to-output weights.
        context_size: Real context features ``C`` (0: an unconditional MADE). With
            ``C > 0`` every call takes ``context`` ``(B, C)``, which reaches every
            hidden layer and every output through unmasked weights
            ``context_layers`` (see the module docstring).
        mask_input: Tell the first hidden layer and the outputs which variables they
            see (``mask_input_weights``; see the module docstring).
        dropout: Probability of zeroing each hidden unit's activation, in ``[0, 1)``, in
            training mode only (as ``torch.nn.Dropout``): in eval mode, where
            likelihoods are evaluated and the samplers run, every unit is kept.
        products: How the masked layers are multiplied, one of
            [`PRODUCTS`][densitykit.made.PRODUCTS]. Dense layers: ``"dense"``
            multiplies the whole masked weight (zeros included); ``"grouped"`` sorts
            the units by degree and multiplies only the prefixes a group of units can
            see ([`MaskedLinear.forward_grouped`][densitykit.layers.MaskedLinear.forward_grouped]),
            about $(B+1)/2B$ of the arithmetic with $B$ groups, forward and backward;
            ``"auto"`` (the default) takes the grouped path for computations without
            gradients (likelihood evaluation) on the CPU when the groups skip at least
            a fifth of the arithmetic, the layers hold at least 262,144 weights in
            all and the backbone has at most 8 masks (the groupings kept), and the
            dense path otherwise (in training the grouped step measured from 3 %
            faster to 10 % slower than the dense one at batch 100 on a 2-core CPU).
            Packed layers (``layout``): ``"auto"`` and ``"grouped"`` multiply their
            blocks (prefix products) on the CPU; ``"dense"``, and ``"auto"`` on other
            devices, one product of the full weight. GPUs were not measured. Every
            path gives the same values and gradients up to float rounding; the
            attribute ``products`` can be changed at any time.
        layout: How the masked weights are stored, one of
            [`LAYOUTS`][densitykit.made.LAYOUTS]: ``"dense"`` keeps every weight
            ([`MaskedLinear`][densitykit.layers.MaskedLinear]); ``"packed"`` keeps,
            per group of units, only the block of weights the mask can use
            ([`PackedLinear`][densitykit.layers.PackedLinear]: an optimizer updates
            71 % of the weights of a 784-500-784 MADE, and no product or update
            touches the rest), possible for a single mask with the variables in their
            natural order and not for orderings drawn on demand (which use every
            weight); ``"auto"`` (the default) packs such a backbone of at least
            262,144 weights whose blocks hold at most 80 % of them (smaller layers
            trained faster dense), and keeps the rest dense. The ``state_dict`` is
            the same either way. A single-mask backbone keeps its hidden units in
            degree order whatever its layout (the weights permuted with them at
            construction: the same network).

    Raises:
        ValueError: If ``products`` or ``layout`` is not a known name, or
            ``layout="packed"`` is asked of a backbone that cannot be packed (the
            message says why).

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
        params_per_variable: int | Sequence[int] = 1,
        input_width: int | Sequence[int] = 1,
        activation: str = "relu",
        direct_connections: bool = False,
        context_size: int = 0,
        mask_input: bool = False,
        dropout: float = 0.0,
        products: str = "auto",
        layout: str = "auto",
    ) -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        on_demand = isinstance(connectivities, OnDemandConnectivities)
        self.dropout = check_fraction(dropout, "dropout")
        if products not in PRODUCTS:
            raise ValueError(f"products must be one of {PRODUCTS}, got {products!r}")
        self.products = products
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
            if not isinstance(value, Sequence):
                check_positive_int(value, label)
        self.widths = VariableWidths.of(self.dim, input_width, params_per_variable)
        if min(self.widths.outputs) < 1:
            raise ValueError(
                f"a MADE needs at least one parameter per variable, got {self.widths.outputs}"
            )
        # The largest of each: the last dimension of the parameters ``(B, D, P)``.
        self.params_per_variable = self.widths.max_outputs
        self.input_width = self.widths.max_inputs
        self.activation = activation
        self.direct_connections = bool(direct_connections) and len(self.hidden_sizes) > 0
        # Warn about dependencies no path realises (direct connections fill any gap).
        check_connectivity(connectivities, direct=self.direct_connections, warn=True)

        widths = [self.widths.num_inputs, *self.hidden_sizes, self.widths.num_outputs]
        self.layers = nn.ModuleList(
            MaskedLinear(widths[i], widths[i + 1]) for i in range(len(widths) - 1)
        )
        self.activations = nn.ModuleList(ACTIVATIONS.create(activation) for _ in self.hidden_sizes)
        self.direct = (
            MaskedLinear(widths[0], widths[-1], bias=False) if self.direct_connections else None
        )
        self.context_size = check_int(context_size, "context_size", minimum=0)
        # Unmasked context weights into every hidden layer and the output layer
        # (absent, so checkpoints are unchanged, in an unconditional MADE).
        self.context_layers = (
            nn.ModuleList(nn.Linear(self.context_size, width, bias=False) for width in widths[1:])
            if self.context_size
            else None
        )
        self.mask_input = bool(mask_input)
        # Per (unit, variable) weights of the first hidden layer and of the outputs
        # (the output layer alone without hidden layers); absent unless asked for.
        shapes = [(widths[1], self.dim)] + ([(widths[-1], self.dim)] if self.hidden_sizes else [])
        self.mask_input_weights = (
            nn.ParameterList(
                nn.Parameter(torch.empty(rows, cols).uniform_(-(cols**-0.5), cols**-0.5))
                for rows, cols in shapes
            )
            if self.mask_input
            else None
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
        if self.num_masks == 1:
            self._sort_hidden_units()
        self._rebuild_masks()
        self.layout = self._pack(layout, on_demand)
        if self.layout == "packed":
            self.register_load_state_dict_pre_hook(_refuse_other_degrees)
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

    def connectivities(self) -> list[Connectivity]:
        """The degrees of every mask the backbone was built with, in order."""
        return [self.connectivity(k) for k in range(self.num_masks)]

    def _rebuild_masks(self) -> None:
        per_mask = [
            self.connectivity(k).layer_masks(self.widths.inputs, self.widths.outputs)
            for k in range(self.num_masks)
        ]
        for layer_index, layer in enumerate(self.layers):
            layer.set_masks(torch.stack([masks[layer_index] for masks in per_mask]))
        if self.direct is not None:
            self.direct.set_masks(
                torch.stack(
                    [
                        self.connectivity(k).direct_mask(self.widths.inputs, self.widths.outputs)
                        for k in range(self.num_masks)
                    ]
                )
            )

    def _sort_hidden_units(self) -> None:
        """Put each hidden layer's units in degree order, permuting their weights with them.

        Hidden units are interchangeable: the permuted network computes the same
        function (up to float rounding) with the same connectivity up to the order of
        its units. In degree order, the grouped products of a single mask need not
        permute the weights at every step (see ``products``).
        """
        with torch.no_grad():
            for layer in range(len(self.hidden_sizes)):
                degrees = getattr(self, f"hidden_degrees_{layer}")
                order = torch.argsort(degrees[0], stable=True)
                if torch.equal(order, torch.arange(order.numel(), device=order.device)):
                    continue
                degrees.copy_(degrees[:, order])
                below, above = self.layers[layer], self.layers[layer + 1]
                below.weight.copy_(below.weight[order])
                below.bias.copy_(below.bias[order])
                above.weight.copy_(above.weight[:, order])
                if self.context_layers is not None:
                    self.context_layers[layer].weight.copy_(
                        self.context_layers[layer].weight[order]
                    )
                if layer == 0 and self.mask_input_weights is not None:
                    self.mask_input_weights[0].copy_(self.mask_input_weights[0][order])

    def _pack(self, layout: str, on_demand: bool) -> str:
        """Replace the dense layers by packed ones where ``layout`` asks (``"auto"``:
        where it can and pays); returns the layout taken, ``"packed"`` or ``"dense"``.

        Raises:
            ValueError: If ``layout="packed"`` and the backbone cannot be packed.
        """
        if layout == "dense":
            return "dense"
        reason = None
        parts = [*self.layers, *([self.direct] if self.direct is not None else [])]
        if self.num_masks != 1:
            reason = f"it holds {self.num_masks} masks (a packed layer stores one mask's weights)"
        elif on_demand:
            reason = "it is trained over orderings drawn on demand, which use every weight"
        elif not all(_is_staircase(part.mask) for part in parts):
            reason = "its variables are not in their natural order"
        if reason is not None:
            if layout == "packed":
                raise ValueError(
                    "layout='packed' needs a single mask with the variables in their natural "
                    f"order; this MADE cannot be packed: {reason}"
                )
            return "dense"
        packed = [PackedLinear(part.weight, part.bias, part.mask) for part in parts]
        if layout == "auto":
            weights = sum(part.mask.numel() for part in parts)
            stored = sum(part.packed.numel() for part in packed)
            if weights < _GROUPED_MIN_WEIGHTS or stored > _GROUPED_MAX_FRACTION * weights:
                return "dense"  # small layers: the dense products were faster (measured)
        self.layers = nn.ModuleList(packed[: len(self.layers)])
        if self.direct is not None:
            self.direct = packed[-1]
        return "packed"

    def _check_index(self, index: int) -> int:
        return check_index(index, self.num_masks, "mask index")

    def set_mask(self, index: int) -> None:
        """Make mask ``index`` the active one."""
        index = self._check_index(index)
        for layer in self.layers:
            layer.mask_index = index
        if self.direct is not None:
            self.direct.mask_index = index

    def set_output_bias(self, per_variable: torch.Tensor) -> None:
        """Set the output layer's bias to ``per_variable``: ``(P,)`` for every variable
        alike, or ``(D, P)`` one row per variable.

        What a head's [`initial_bias`][densitykit.heads.Head.initial_bias] and
        [`data_initial_bias`][densitykit.heads.Head.data_initial_bias] ask of a new
        network (the output units are in variable order whatever the layout).

        Raises:
            ValueError: If ``per_variable`` is neither ``(P,)`` nor ``(D, P)``.
        """
        shape, p = tuple(per_variable.shape), self.params_per_variable
        if shape not in ((p,), (self.dim, p)):
            raise ValueError(
                f"expected an output bias of shape ({p},) or ({self.dim}, {p}), one per "
                f"parameter of a variable, got {shape}"
            )
        bias = self.layers[-1].bias
        with torch.no_grad():
            bias.view(self.dim, p).copy_(per_variable.to(bias))

    def next_mask(self) -> int:
        """Cycle to the next mask (for connectivity-agnostic training); returns its index."""
        self.set_mask((self.mask_index + 1) % self.num_masks)
        return self.mask_index

    # -- computation ---------------------------------------------------------------------
    def forward(
        self,
        x: torch.Tensor,
        connectivity: Connectivity | None = None,
        *,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Map encoded inputs ``(B, D*W)`` to parameters ``(B, D, P)`` with the active mask.

        With ``connectivity``, that connectivity is used instead (see
        [`forward_with`][densitykit.made.MADE.forward_with]).

        Args:
            x: ``(B, D*W)`` encoded inputs.
            connectivity: Use this connectivity instead of the active mask.
            context: ``(B, C)`` real features, required by (and only by) a backbone
                built with ``context_size=C > 0``.

        Raises:
            ValueError: If ``context`` is missing, unexpected, or not ``(B, C)``.
        """
        if connectivity is not None:
            return self.forward_with(x, connectivity, context=context)
        terms = self._context_terms(x, context)
        if self.mask_input:
            index = self.mask_index
            terms = _add_terms(
                terms,
                self.mask_input_terms(
                    self.input_degrees[index],
                    self.hidden_degrees_0[index] if self.hidden_sizes else None,
                ),
            )
        if self.layout == "dense" and self.products == "grouped":
            return self._forward_grouped(x, terms, self._groupings(x.shape[0]))
        if self.layout == "dense" and self.products == "auto":
            groupings = self._paying_groupings(x)
            if groupings is not None:
                return self._forward_grouped(x, terms, groupings)
        # A packed layer multiplies its blocks (prefix products), or its full weight
        # for products="dense" and off the CPU; a dense layer its masked weight.
        whole = self.layout == "packed" and (
            self.products == "dense" or (self.products == "auto" and x.device.type != "cpu")
        )

        def linear(layer: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
            return layer.forward_dense(inputs) if whole else layer(inputs)

        h = x
        for index, (layer, activation) in enumerate(zip(self.layers[:-1], self.activations)):
            h = linear(layer, h)
            if terms is not None and terms[index] is not None:
                h = h + terms[index]
            h = self._drop(activation(h))
        out = linear(self.layers[-1], h)
        if terms is not None and terms[-1] is not None:
            out = out + terms[-1]
        if self.direct is not None:
            out = out + linear(self.direct, x)
        return self.widths.pad(out)

    def mask_input_terms(
        self, input_degrees: torch.Tensor, first_hidden_degrees: torch.Tensor | None
    ) -> list[torch.Tensor | None] | None:
        """The mask-as-input shares of each layer's pre-activations under some degrees.

        Args:
            input_degrees: ``(D,)`` degrees of the variables.
            first_hidden_degrees: ``(H_1,)`` degrees of the first hidden layer (``None``
                without hidden layers).

        Returns:
            ``None`` for a backbone without ``mask_input``; else one entry per layer:
            ``(width,)`` for the first hidden layer and the output layer, ``None``
            for the others.
        """
        if self.mask_input_weights is None:
            return None
        out_degrees = self.widths.output_degrees(input_degrees)
        strict = (out_degrees[:, None] > input_degrees[None, :]).to(self.mask_input_weights[0])
        terms: list[torch.Tensor | None] = [None] * len(self.layers)
        if first_hidden_degrees is None:
            terms[0] = (self.mask_input_weights[0] * strict).sum(1)
            return terms
        seen = (first_hidden_degrees[:, None] >= input_degrees[None, :]).to(strict)
        terms[0] = (self.mask_input_weights[0] * seen).sum(1)
        terms[-1] = (self.mask_input_weights[1] * strict).sum(1)
        return terms

    def _context_terms(
        self, x: torch.Tensor, context: torch.Tensor | None
    ) -> list[torch.Tensor] | None:
        """The context's share of each layer's pre-activations, ``(B, width)`` per layer."""
        if self.context_layers is None:
            if context is not None:
                raise ValueError(
                    "this MADE was built without a context (context_size=0); got a context "
                    f"of shape {tuple(context.shape)}"
                )
            return None
        if context is None:
            raise ValueError(
                f"this MADE is conditional (context_size={self.context_size}); pass "
                f"context of shape (B, {self.context_size})"
            )
        if not isinstance(context, torch.Tensor) or not context.is_floating_point():
            raise TypeError(
                "context must be a floating-point torch.Tensor (B, C), got "
                f"{getattr(context, 'dtype', type(context).__name__)}"
            )
        if context.ndim != 2 or context.shape != (x.shape[0], self.context_size):
            raise ValueError(
                f"context must have shape (B, C) = ({x.shape[0]}, {self.context_size}), "
                f"got {tuple(context.shape)}"
            )
        return [layer(context) for layer in self.context_layers]

    def forward_with(
        self,
        x: torch.Tensor,
        connectivity: Connectivity,
        *,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Map encoded inputs ``(B, D*W)`` to ``(B, D, P)`` under any connectivity.

        The masks are derived from ``connectivity``'s degrees: the backbone need not
        have been built with it, nothing is stored per ordering (only the last
        connectivity's masks are kept, for the next call with the same one), and the
        weights are shared with every other connectivity (training over all orderings, queries
        in orderings never seen). Building the masks of a 784-variable MADE with 500
        hidden units takes about a millisecond, a tenth of a training step (docs/any-order.md).

        Args:
            x: ``(B, D*W)`` encoded inputs.
            connectivity: Degrees with this backbone's ``D`` and hidden sizes.
            context: ``(B, C)`` features of a conditional backbone (as ``forward``).

        Raises:
            TypeError: If ``connectivity`` is not a ``Connectivity``.
            ValueError: If its ``D`` or hidden sizes differ from the backbone's, or
                the context is missing, unexpected or of the wrong shape.
        """
        self.check_fit(connectivity)
        terms = self._context_terms(x, context)
        if self.mask_input:
            device = self.input_degrees.device
            terms = _add_terms(
                terms,
                self.mask_input_terms(
                    connectivity.input_degrees.to(device),
                    connectivity.hidden_degrees[0].to(device) if self.hidden_sizes else None,
                ),
            )
        masks = self._connectivity_masks(connectivity)
        h = x
        for index, (layer, mask, activation) in enumerate(
            zip(self.layers[:-1], masks, self.activations)
        ):
            h = F.linear(h, layer.weight * mask, layer.bias)
            if terms is not None and terms[index] is not None:
                h = h + terms[index]
            h = self._drop(activation(h))
        out = F.linear(
            h, self.layers[-1].weight * masks[len(self.layers) - 1], self.layers[-1].bias
        )
        if terms is not None and terms[-1] is not None:
            out = out + terms[-1]
        if self.direct is not None:
            out = out + F.linear(x, self.direct.weight * masks[-1])
        return self.widths.pad(out)

    def check_fit(self, connectivity: object) -> None:
        """Check that ``connectivity`` can drive this backbone.

        Raises:
            TypeError: If ``connectivity`` is not a ``Connectivity``.
            ValueError: If its ``D`` or hidden sizes differ from the backbone's.

        Example:
            >>> from densitykit import masks
            >>> made = MADE(masks.create("natural", dim=3, hidden_sizes=[4]))
            >>> made.check_fit(masks.Connectivity.from_ordering([2, 0, 1], [[1, 2, 1, 2]]))
            >>> made.check_fit(masks.Connectivity.from_ordering([2, 0, 1], [[1, 2]]))
            Traceback (most recent call last):
            ...
            ValueError: connectivity must have D=3 and hidden sizes (4,), got D=3 and (2,)
        """
        if not isinstance(connectivity, Connectivity):
            raise TypeError(
                f"connectivity must be a densitykit Connectivity, got {type(connectivity).__name__}"
            )
        if connectivity.dim != self.dim or connectivity.hidden_sizes != self.hidden_sizes:
            raise ValueError(
                f"connectivity must have D={self.dim} and hidden sizes {self.hidden_sizes}, "
                f"got D={connectivity.dim} and {connectivity.hidden_sizes}"
            )

    def _drop(self, hidden: torch.Tensor) -> torch.Tensor:
        """Dropout on hidden activations in training mode (nothing when the rate is 0)."""
        return F.dropout(hidden, self.dropout, self.training) if self.dropout else hidden

    def _connectivity_masks(self, connectivity: Connectivity) -> list[torch.Tensor]:
        """The masks of ``connectivity`` in the weights' dtype (direct mask last, if any).

        The masks of the last connectivity are kept (with the connectivity itself, so
        its identity cannot be recycled): a query or a completion that runs one
        connectivity many times builds them once; a connectivity is not to be edited
        in place.
        """
        weight = self.layers[0].bias  # the weights' dtype and device, cheaply
        key = (weight.device, weight.dtype)
        cached = self.__dict__.get("_connectivity_cache")
        if cached is not None and cached[0] is connectivity and cached[1] == key:
            return cached[2]
        degrees = connectivity.to(weight.device)
        masks = degrees.layer_masks(self.widths.inputs, self.widths.outputs)
        if self.direct is not None:
            masks.append(degrees.direct_mask(self.widths.inputs, self.widths.outputs))
        masks = [mask.to(weight.dtype) for mask in masks]
        self.__dict__["_connectivity_cache"] = (connectivity, key, masks)
        return masks

    def _grouped_pays(self, x: torch.Tensor) -> bool:
        """Whether ``products="auto"`` takes the grouped path for this call."""
        return self._paying_groupings(x) is not None

    def _paying_groupings(self, x: torch.Tensor) -> _Groupings | None:
        """The groupings ``products="auto"`` multiplies with for ``x``, or ``None`` for
        the dense path."""
        if x.device.type != "cpu":
            return None  # GPUs were not measured
        if self.input_degrees.is_inference() or self.layers[0].mask_stack.is_inference():
            return None  # no version counters: the groupings would be rebuilt per call
        if torch.is_grad_enabled() and (x.requires_grad or self.layers[0].bias.requires_grad):
            # Training (batch 100, on a 2-core CPU): the groups' smaller products run at
            # a lower rate, and even without permutations (units in degree order) the
            # grouped step measured from 3 % faster to 10 % slower than the dense one
            # from run to run (benchmarks/throughput.py): dense.
            return None
        if self.num_masks > _GROUPINGS_KEPT:
            # Groupings are kept for a few masks; rebuilding one costs several forward
            # passes' worth of time, so ensembles that cycle through more stay dense.
            return None
        groupings = self._groupings(x.shape[0])
        if groupings.weights < _GROUPED_MIN_WEIGHTS or groupings.fraction > _GROUPED_MAX_FRACTION:
            return None
        return groupings

    def _forward_grouped(
        self, x: torch.Tensor, terms: list[torch.Tensor | None] | None, groupings: _Groupings
    ) -> torch.Tensor:
        sorted_x = x if groupings.input_order is None else x.index_select(1, groupings.input_order)
        if terms is not None:  # the context's shares, with units in group order
            terms = [
                term if term is None or groups.rows is None else term.index_select(-1, groups.rows)
                for term, groups in zip(terms, groupings.layers)
            ]
        h = sorted_x
        for index, (layer, activation, groups) in enumerate(
            zip(self.layers[:-1], self.activations, groupings.layers)
        ):
            h = layer.forward_grouped(h, groups)
            if terms is not None and terms[index] is not None:
                h = h + terms[index]
            h = self._drop(activation(h))
        out = self.layers[-1].forward_grouped(h, groupings.layers[-1])
        if terms is not None and terms[-1] is not None:
            out = out + terms[-1]
        if self.direct is not None:
            assert groupings.direct is not None  # internal invariant: built together
            out = out + self.direct.forward_grouped(sorted_x, groupings.direct)
        if groupings.output_inverse is not None:
            out = out.index_select(1, groupings.output_inverse)
        return self.widths.pad(out)

    def _groupings(self, batch: int) -> _Groupings:
        """The active mask's groupings for about ``batch`` rows, cached until a degree
        buffer or mask changes.

        The number of groups depends on the batch (a product's fixed cost weighs more
        in a small one); batches are rounded to a power of two, so a run's batches
        share one grouping. Like ``MaskedLinear``'s mask cache, the key holds the
        source tensors (so their identity cannot be recycled) and their version
        counters.
        """
        index, dtype = self.mask_index, self.layers[0].bias.dtype
        batch = batch_bucket(batch)
        sources = [self.input_degrees, *(layer.mask_stack for layer in self.layers)]
        sources += [getattr(self, f"hidden_degrees_{i}") for i in range(len(self.hidden_sizes))]
        if self.direct is not None:
            sources.append(self.direct.mask_stack)
        if any(tensor.is_inference() for tensor in sources):
            return self._build_groupings(index, dtype, batch)
        key = (index, dtype, tuple(tensor._version for tensor in sources))
        cache: dict = self.__dict__.setdefault("_groupings_cache", {})
        cached = cache.get((index, batch))
        if (
            cached is not None
            and cached[1] == key
            and all(old is new for old, new in zip(cached[0], sources))
        ):
            return cached[2]
        groupings = self._build_groupings(index, dtype, batch)
        cache.pop((index, batch), None)
        if len(cache) >= _GROUPINGS_KEPT:
            cache.pop(next(iter(cache)))
        cache[(index, batch)] = (sources, key, groupings)
        return groupings

    def _build_groupings(self, index: int, dtype: torch.dtype, batch: int) -> _Groupings:
        conn = self.connectivity(index)
        device = self.input_degrees.device
        input_degrees = self.widths.input_degrees(conn.input_degrees)
        output_degrees = self.widths.output_degrees(conn.input_degrees)
        orders = [torch.argsort(input_degrees, stable=True)]
        orders += [torch.argsort(degrees, stable=True) for degrees in conn.hidden_degrees]
        orders.append(torch.argsort(output_degrees, stable=True))
        orders = [order.to(device) for order in orders]
        layers = tuple(
            grouping(layer.mask_stack[index], orders[i + 1], orders[i], dtype, batch)
            for i, layer in enumerate(self.layers)
        )
        direct = None
        all_layers = list(layers)
        if self.direct is not None:
            direct = grouping(self.direct.mask_stack[index], orders[-1], orders[0], dtype, batch)
            all_layers.append(direct)
        weights = sum(g.shape[0] * g.shape[1] for g in all_layers)
        work = sum(g.fraction * g.shape[0] * g.shape[1] for g in all_layers)
        identity = torch.arange(orders[-1].numel(), device=device)
        output_inverse = torch.argsort(orders[-1])
        return _Groupings(
            input_order=layers[0].cols,
            output_inverse=None if torch.equal(output_inverse, identity) else output_inverse,
            layers=layers,
            direct=direct,
            fraction=work / max(weights, 1),
            weights=weights,
        )

    def extra_repr(self) -> str:
        return (
            f"dim={self.dim}, hidden_sizes={self.hidden_sizes}, params_per_variable="
            f"{self.params_per_variable}, input_width={self.input_width}, "
            f"num_masks={self.num_masks}, direct_connections={self.direct_connections}, "
            f"context_size={self.context_size}, mask_input={self.mask_input}, "
            f"dropout={self.dropout}, products={self.products!r}, layout={self.layout!r}"
        )


def _refuse_other_degrees(module: MADE, state_dict: dict, prefix: str, *args: object) -> None:
    """Before a packed MADE loads anything: the state's degrees must be its own.

    Raises:
        ValueError: If they differ (the blocks hold one connectivity's weights).
    """
    names = ["input_degrees", *(f"hidden_degrees_{i}" for i in range(len(module.hidden_sizes)))]
    for name in names:
        value = state_dict.get(prefix + name)
        mine = getattr(module, name)
        if isinstance(value, torch.Tensor) and not (
            value.shape == mine.shape and torch.equal(value.to(mine.device), mine)
        ):
            raise ValueError(
                f"this MADE's layers are packed: they store the weights of the connectivity "
                f"it was built with, and the state dict holds other degrees ({prefix}{name}; "
                "a checkpoint saved before layouts existed has its hidden units in another "
                "order); build the model with layout='dense' to load it"
            )


def _is_staircase(mask: torch.Tensor) -> bool:
    """Whether each row of ``mask`` allows a prefix of the columns (units in degree order)."""
    columns = torch.arange(mask.shape[1], device=mask.device)
    return torch.equal(mask, columns[None, :] < mask.sum(1, keepdim=True))


def _add_terms(
    first: list[torch.Tensor | None] | None, second: list[torch.Tensor | None] | None
) -> list[torch.Tensor | None] | None:
    """Per layer, the sum of two lists of optional pre-activation shares."""
    if first is None or second is None:
        return first if second is None else second
    return [
        a if b is None else b if a is None else a + b for a, b in zip(first, second, strict=True)
    ]
