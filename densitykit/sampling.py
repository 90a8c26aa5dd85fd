r"""Exact ancestral sampling from a MADE backbone and a head.

Both samplers take the parts they need, a backbone and a head, not the model that
composes them. The reference sampler
([`sample_reference`][densitykit.sampling.sample_reference]) runs $D$ full
forward passes, one per variable. Most of that work is repeated: a hidden unit of
degree $m$ depends only on the inputs of degree $\le m$, so its value is final as
soon as the first $m$ variables of the ordering are drawn; and the output of the
variable of degree $d$ needs only the last hidden layer's units of degree $< d$
(and, with direct connections, the inputs of degree $< d$).

[`sample_fast`][densitykit.sampling.sample_fast] therefore computes every unit once.
At step $t$ (the variable of input degree $t + 1$ is drawn), it evaluates, layer by
layer, just the units of degree $t$, whose inputs are now all known; then the $P$
output rows of the variable being drawn; draws it with ``head.sample`` (the same
calls, in the same order and with the same shapes as the reference sampler, so a
seeded generator yields the same samples); and writes the new variable's encoding
into the input buffer. The total arithmetic is the masked (nonzero) part of one
forward pass per sample, spread over $D$ steps and batched over the samples.

To keep every read contiguous, units are stored sorted by degree and the
activations are kept as ``(units, samples)``: the inputs a group of units needs are
then a prefix of the rows of the layer below.

Assumptions, each checked or documented: the activations are element-wise (as the
[`ACTIVATIONS`][densitykit.made.ACTIVATIONS] registry requires), so a slice of units can
be activated alone; the stored masks allow no connection the degrees forbid (true of
masks rebuilt from degrees; otherwise the reference sampler is used); and
``head.encode`` acts per variable (below). The index groups of each mask are cached
and rebuilt when a degree buffer or a mask is replaced or edited in place; the
weights are re-read at every call.

Contract on heads: ``head.encode`` acts per variable, i.e. for values ``x`` ``(B, D)``
and every variable ``i``,
``head.encode(x, dtype)[:, i*W:(i+1)*W] == head.encode(x[:, i:i+1], dtype)`` with
``W = head.input_width``, so the sampler encodes only the variable it has just drawn.
Every built-in head satisfies it. A head whose encoding depends on the variable's
index (or on other variables) is detected by a probe and sampled by re-encoding all
values at each step instead, which is exact but costs $O(D)$ more encoding work.

Example:
    >>> import torch, densitykit as dk
    >>> from densitykit.sampling import sample_fast, sample_reference
    >>> model = dk.create_model("categorical", 5, 3, hidden_sizes=(16, 16))
    >>> parts = model.backbone, model.head
    >>> fast = sample_fast(*parts, 4, generator=torch.Generator().manual_seed(0))
    >>> naive = sample_reference(*parts, 4, generator=torch.Generator().manual_seed(0))
    >>> fast.shape, torch.equal(fast, naive)
    (torch.Size([4, 5]), True)
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

from densitykit.heads import Head
from densitykit.layers import MaskedLinear
from densitykit.made import MADE

__all__ = ["encodes_per_variable", "sample_fast", "sample_reference"]


@dataclass(frozen=True)
class _Step:
    """The work of one sampling step: the variable drawn and the slices it needs.

    Attributes:
        variable: The variable drawn at this step.
        hidden: ``(layer, start, end, prefix)`` per hidden layer with units of this
            step's degree: units ``start:end`` (in degree-sorted order) read the
            first ``prefix`` rows of the layer below.
        hidden_prefix: Last-layer units (sorted) the variable's output reads.
        input_prefix: Input rows (in step order) known before this step.
    """

    variable: int
    hidden: tuple[tuple[int, int, int, int], ...]
    hidden_prefix: int
    input_prefix: int


@dataclass(frozen=True)
class _Plan:
    """Index groups of one mask, independent of the weights (cached per mask).

    Attributes:
        steps: One ``_Step`` per variable, in sampling order.
        input_order: Input units in step order ``(D*W,)``.
        unit_orders: Per hidden layer, its units sorted by degree ``(H_l,)``.
        consistent: Whether the stored masks allow no connection the degrees forbid;
            if not, the sampler defers to the reference sampler.
    """

    steps: tuple[_Step, ...]
    input_order: torch.Tensor
    unit_orders: tuple[torch.Tensor, ...]
    consistent: bool


# Groups up to this many rows are computed row by row (see _affine).
_ROW_BY_ROW = 8


@dataclass(frozen=True)
class _CacheEntry:
    sources: tuple[torch.Tensor, ...]
    versions: tuple[int, ...]
    plan: _Plan


# Plans per backbone and mask; entries go with their backbone.
_PLANS: weakref.WeakKeyDictionary[MADE, dict[int, _CacheEntry]] = weakref.WeakKeyDictionary()


def _check_parts(backbone: object, head: object) -> None:
    if not isinstance(head, Head):
        raise TypeError(f"head must be a densitykit Head, got {type(head).__name__}")
    if head.params_per_variable == 0:
        if backbone is not None:
            raise ValueError(
                f"{type(head).__name__} takes no parameters from a backbone; pass backbone=None"
            )
    elif not isinstance(backbone, MADE):
        raise TypeError(
            f"{type(head).__name__} needs a MADE backbone, got {type(backbone).__name__}"
        )


def _check_arguments(
    backbone: MADE | None,
    head: Head,
    num_samples: object,
    mask: object,
    generator: object,
) -> None:
    _check_parts(backbone, head)
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 0:
        raise ValueError(f"num_samples must be a non-negative integer, got {num_samples!r}")
    num_masks = backbone.num_masks if backbone is not None else 1
    if not isinstance(mask, int) or isinstance(mask, bool) or not 0 <= mask < num_masks:
        raise ValueError(f"mask must be an integer in 0..{num_masks - 1}, got {mask!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )


def _dtype_and_device(backbone: MADE | None, head: Head) -> tuple[torch.dtype, torch.device]:
    """The floating dtype and device of the parameters (the backbone's first)."""
    for module in (backbone, head):
        if module is not None:
            for parameter in module.parameters():
                return parameter.dtype, parameter.device
    return torch.get_default_dtype(), torch.device("cpu")


def sample_fast(
    backbone: MADE | None,
    head: Head,
    num_samples: int,
    *,
    mask: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Exact ancestral samples from one mask's model in about one forward pass each.

    Draws the same samples as [`sample_reference`][densitykit.sampling.sample_reference]
    given the same generator state: the heads are called identically, and only the
    order of floating-point summation differs (in float64 the samples agree in
    practice; in lower precision a draw landing within rounding error of a decision
    boundary can differ, which leaves the distribution exact). Heads without a
    backbone (the histogram head) use the reference sampler, which is already $O(D)$.

    Args:
        backbone: The [`MADE`][densitykit.made.MADE]; ``None`` for a head that takes
            no parameters from a backbone.
        head: The output distribution.
        num_samples: How many samples ``N``.
        mask: Which mask's autoregressive model to sample.
        generator: Random source (its device may differ from the model's).

    Returns:
        ``(N, D)`` long values in ``0..K-1``.

    Raises:
        TypeError: If ``head`` is not a ``Head``, ``backbone`` not a ``MADE`` (or not
            ``None`` for a head without parameters), or ``generator`` not a
            ``torch.Generator``.
        ValueError: If ``num_samples`` is negative or ``mask`` out of range.

    Example:
        >>> import torch, densitykit as dk
        >>> model = dk.create_model("bernoulli", 6, hidden_sizes=(12,),
        ...                         masks="multi-ordering", num_masks=2)
        >>> generator = torch.Generator().manual_seed(0)
        >>> sample_fast(model.backbone, model.head, 3, mask=1, generator=generator).shape
        torch.Size([3, 6])
    """
    _check_arguments(backbone, head, num_samples, mask, generator)
    return _sample_fast(backbone, head, num_samples, mask, generator)


def sample_reference(
    backbone: MADE | None,
    head: Head,
    num_samples: int,
    *,
    mask: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Reference ancestral sampler: one full forward pass per variable ($D$ passes).

    Simple and slow, it defines what [`sample_fast`][densitykit.sampling.sample_fast]
    must draw. Arguments, result and errors are those of ``sample_fast``.
    """
    _check_arguments(backbone, head, num_samples, mask, generator)
    return _sample_reference(backbone, head, num_samples, mask, generator)


@torch.no_grad()
def _sample_reference(
    backbone: MADE | None,
    head: Head,
    num_samples: int,
    mask: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    dtype, device = _dtype_and_device(backbone, head)
    x = torch.zeros(num_samples, head.dim, dtype=torch.long, device=device)
    if backbone is None:
        empty = torch.empty(num_samples, 0, dtype=dtype, device=device)
        for variable in range(head.dim):
            x[:, variable] = head.sample(empty, variable, generator)
        return x
    active = backbone.mask_index
    backbone.set_mask(mask)
    try:
        for variable in backbone.connectivity(mask).ordering.tolist():
            params = backbone(head.encode(x, dtype))
            x[:, variable] = head.sample(params[:, variable], variable, generator)
    finally:
        backbone.set_mask(active)
    return x


def encodes_per_variable(
    head: Head, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> bool:
    """Whether ``head.encode`` passes a probe of the per-variable contract.

    The probe encodes a few rows of varied values at once and one value at a time;
    the results must agree (see the module docstring for the contract).

    Args:
        head: The head to probe.
        dtype: The floating dtype to encode to.
        device: Where to place the probe values (CPU by default).

    Returns:
        ``True`` if encoding each variable alone gives the same inputs.

    Example:
        >>> import densitykit as dk
        >>> encodes_per_variable(dk.heads.create("categorical", dim=3, num_values=4))
        True
    """
    dim, num_values = head.dim, head.num_values
    index = torch.arange(dim)
    probe = torch.stack(
        [
            torch.zeros(dim, dtype=torch.long),
            torch.full((dim,), num_values - 1),
            index % num_values,
            (3 * index + 1) % num_values,
        ]
    ).to(device)
    together = head.encode(probe, dtype)
    apart = head.encode(probe.reshape(-1, 1), dtype)
    width = head.input_width
    if tuple(together.shape) != (probe.shape[0], dim * width):
        return False
    if tuple(apart.shape) != (probe.numel(), width):
        return False
    return torch.equal(together, apart.reshape(probe.shape[0], dim * width))


def _plan_sources(backbone: MADE) -> tuple[torch.Tensor, ...]:
    """The tensors a plan is derived from: the degree buffers and the stored masks."""
    hidden = range(len(backbone.hidden_sizes))
    sources = [backbone.input_degrees, *(getattr(backbone, f"hidden_degrees_{i}") for i in hidden)]
    sources += [layer.masks for layer in backbone.layers]
    if backbone.direct is not None:
        sources.append(backbone.direct.masks)
    return tuple(sources)


def _plan(backbone: MADE, mask: int) -> _Plan:
    """The plan of ``mask``, cached until a degree buffer or a mask is replaced or edited.

    The cache keeps the source tensors themselves (so their identity cannot be
    recycled) with their version counters, which in-place edits bump. Inference
    tensors have no version counter; their plans are rebuilt at every call.
    """
    sources = _plan_sources(backbone)
    if any(tensor.is_inference() for tensor in sources):
        return _build_plan(backbone, mask)
    versions = tuple(tensor._version for tensor in sources)
    per_mask = _PLANS.setdefault(backbone, {})
    cached = per_mask.get(mask)
    if (
        cached is not None
        and cached.versions == versions
        and all(old is new for old, new in zip(cached.sources, sources))
    ):
        return cached.plan
    plan = _build_plan(backbone, mask)
    per_mask[mask] = _CacheEntry(sources, versions, plan)
    return plan


def _build_plan(backbone: MADE, mask: int) -> _Plan:
    conn = backbone.connectivity(mask)
    dim, width, params = backbone.dim, backbone.input_width, backbone.params_per_variable
    device = backbone.input_degrees.device

    # The masks the layers hold must allow nothing the degrees forbid, or skipping the
    # units outside a prefix would drop real connections.
    expected = conn.masks(width, params)
    held = [layer.masks[mask].cpu().bool() for layer in backbone.layers]
    if backbone.direct is not None:
        expected.append(conn.direct_mask(width, params))
        held.append(backbone.direct.masks[mask].cpu().bool())
    consistent = all(not bool((got & ~want).any()) for got, want in zip(held, expected))

    ordering = conn.ordering
    input_order = (ordering[:, None] * width + torch.arange(width)).flatten()
    unit_orders, ends = [], []
    for degrees in conn.hidden_degrees:
        unit_orders.append(torch.argsort(degrees, stable=True))
        # ends[t] = number of units of degree <= t, for t = 0..D.
        counts = torch.bincount(degrees, minlength=dim + 1)[: dim + 1]
        ends.append(counts.cumsum(0).tolist())

    steps = []
    for step, variable in enumerate(ordering.tolist()):
        hidden = []
        for layer, layer_ends in enumerate(ends):
            start, end = (layer_ends[step - 1] if step else 0), layer_ends[step]
            if end > start:
                prefix = step * width if layer == 0 else ends[layer - 1][step]
                hidden.append((layer, start, end, prefix))
        steps.append(
            _Step(
                variable=variable,
                hidden=tuple(hidden),
                hidden_prefix=ends[-1][step] if ends else 0,
                input_prefix=step * width,
            )
        )
    return _Plan(
        steps=tuple(steps),
        input_order=input_order.to(device),
        unit_orders=tuple(order.to(device) for order in unit_orders),
        consistent=consistent,
    )


def _masked(
    layer: MaskedLinear, mask: int, rows: torch.Tensor | None, cols: torch.Tensor
) -> torch.Tensor:
    weight = layer.weight * layer.masks[mask]
    if rows is not None:
        weight = weight.index_select(0, rows)
    return weight.index_select(1, cols).contiguous()


def _bias(layer: MaskedLinear, rows: torch.Tensor | None) -> torch.Tensor:
    bias = layer.bias
    if bias is None:
        bias = layer.weight.new_zeros(layer.out_features)
    if rows is not None:
        bias = bias.index_select(0, rows)
    return bias[:, None]


def _affine(
    out: torch.Tensor, weight: torch.Tensor, source: torch.Tensor, bias: torch.Tensor | None
) -> None:
    """``out = bias + weight @ source`` (``out += weight @ source`` without a bias), in place.

    Activations are ``(rows, samples)``. A few rows go one at a time: a single-row
    product runs as a single-threaded matrix-vector product, while a small multi-row
    GEMM is threaded and stalls badly when another process holds one of the cores.
    """
    if out.shape[0] > _ROW_BY_ROW:
        if bias is None:
            out.addmm_(weight, source)
        else:
            torch.addmm(bias, weight, source, out=out)
        return
    for row in range(out.shape[0]):
        target = out[row : row + 1]
        if bias is None:
            target.addmm_(weight[row : row + 1], source)
        else:
            torch.addmm(bias[row : row + 1], weight[row : row + 1], source, out=target)


@torch.no_grad()
def _sample_fast(
    backbone: MADE | None,
    head: Head,
    num_samples: int,
    mask: int,
    generator: torch.Generator | None,
) -> torch.Tensor:
    if backbone is None:
        return _sample_reference(backbone, head, num_samples, mask, generator)
    plan = _plan(backbone, mask)
    if not plan.consistent:
        return _sample_reference(backbone, head, num_samples, mask, generator)
    dtype, device = _dtype_and_device(backbone, head)
    width, params = backbone.input_width, backbone.params_per_variable
    per_variable = encodes_per_variable(head, dtype, device)

    # Weights permuted into degree-sorted order once per call (they change in training).
    num_hidden = len(backbone.hidden_sizes)
    below = plan.input_order
    weights, biases = [], []
    for layer, order in zip(backbone.layers[:num_hidden], plan.unit_orders):
        weights.append(_masked(layer, mask, order, below))
        biases.append(_bias(layer, order))
        below = order
    out_layer = backbone.layers[-1]
    out_weight, out_bias = _masked(out_layer, mask, None, below), _bias(out_layer, None)
    direct = (
        None if backbone.direct is None else _masked(backbone.direct, mask, None, plan.input_order)
    )

    # Activations as (units, samples): a unit's inputs are a contiguous prefix of rows.
    # Rows are read only once written, so the buffers start uninitialised.
    inputs = torch.empty(backbone.dim * width, num_samples, dtype=dtype, device=device)
    hidden = [
        torch.empty(size, num_samples, dtype=dtype, device=device) for size in backbone.hidden_sizes
    ]
    activations = list(backbone.activations)
    # Re-encoding reads every column, so the not yet drawn ones must be valid values.
    make = torch.empty if per_variable else torch.zeros
    x = make(num_samples, backbone.dim, dtype=torch.long, device=device)
    last = hidden[-1] if hidden else inputs
    last_step = len(plan.steps) - 1

    for step, work in enumerate(plan.steps):
        for layer, start, end, prefix in work.hidden:
            source = inputs if layer == 0 else hidden[layer - 1]
            units = hidden[layer][start:end]
            _affine(
                units, weights[layer][start:end, :prefix], source[:prefix], biases[layer][start:end]
            )
            units.copy_(activations[layer](units))
        rows = slice(work.variable * params, (work.variable + 1) * params)
        prefix = work.hidden_prefix if hidden else work.input_prefix
        out = torch.empty(params, num_samples, dtype=dtype, device=device)
        _affine(out, out_weight[rows, :prefix], last[:prefix], out_bias[rows])
        if direct is not None:
            _affine(out, direct[rows, : work.input_prefix], inputs[: work.input_prefix], None)
        values = head.sample(out.t().contiguous(), work.variable, generator)
        x[:, work.variable] = values
        if step == last_step:
            break  # the last variable feeds no output
        if per_variable:
            encoded = head.encode(x[:, work.variable : work.variable + 1], dtype)
        else:
            begin = work.variable * width
            encoded = head.encode(x, dtype)[:, begin : begin + width]
        inputs[work.input_prefix : work.input_prefix + width] = encoded.t()
    return x
