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

What bounds the speed is not the arithmetic but the $D$ small steps. Three things
keep them short:

- *Blocks of steps.* Computing a unit's whole sum at its own step would re-read the
  whole prefix below it at every step (a matrix-vector product per step, bound by
  memory). Instead, at the first step of each block of ``_BLOCK_STEPS`` steps, one
  product per layer adds to every unit computed in the block its share from the
  units already known; each step then adds only the few rows computed since the
  block began. Hidden and output rows start as their biases and accumulate in place.
- *Few operations per step.* Steps with no new hidden units skip the hidden layers;
  ReLU is applied in place; the drawn values are kept per step and placed once at the
  end; the new variable alone is encoded into a preallocated buffer.
- *One thread.* The step loop runs with one intra-op thread (``torch.set_num_threads``,
  restored afterwards; process-wide, like every thread setting of PyTorch): its
  products are small and each depends on the last, and on a shared machine a second
  OpenMP thread spinning between them slowed the loop several-fold (62 ms against
  650 ms for 1,000 samples from a 784-500-784 MADE at a load of 2.8 on 2 cores).

A conditional backbone's context (one row per sample) is constant during sampling:
its share of each unit's sum is added once, when the rows start as their biases.

The random numbers are drawn by ``head.sample`` at each step, as in the reference
sampler: drawing them all at once would need each head to expose how many draws a
variable consumes, and heads are free to draw as they like.

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
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from densitykit.caching import TensorCache
from densitykit.checks import check_index, check_int
from densitykit.heads import Head
from densitykit.layers import MaskedLinear
from densitykit.made import MADE

__all__ = ["check_parts", "encodes_per_variable", "sample_fast", "sample_reference"]


# A product ``(weight, start, end, base, prefix)`` adds ``weight[start:end, base:prefix] @
# source[base:prefix]`` to rows ``start:end`` of the weight's target buffer (weights:
# the hidden layers, then the output layer, then the direct connections).
_Product = tuple[int, int, int, int, int]


@dataclass(frozen=True)
class _Step:
    """The work of one sampling step.

    Attributes:
        variable: The variable drawn at this step.
        flush: At the first step of a block of steps, the products that add to every
            unit computed in the block (hidden units and output rows) the part of its
            sum over the units known when the block starts: one large product per layer
            and block instead of a re-read of the whole prefix at every step.
        hidden: Per hidden layer with units of this step's degree, one product (the
            rest of their sum); those units are activated right after it.
        output: The products completing the drawn variable's output rows.
    """

    variable: int
    flush: tuple[_Product, ...]
    hidden: tuple[_Product, ...]
    output: tuple[_Product, ...]


@dataclass(frozen=True)
class _Plan:
    """Index groups of one mask, independent of the weights (cached per mask).

    Attributes:
        steps: One ``_Step`` per variable, in sampling order.
        input_order: Input units in step order ``(D*W,)``.
        unit_orders: Per hidden layer, its units sorted by degree ``(H_l,)``.
        output_order: Output units in step order ``(D*P,)``.
        positions: The step at which each variable is drawn ``(D,)``.
        consistent: Whether the stored masks allow no connection the degrees forbid;
            if not, the sampler defers to the reference sampler.
        exact: Whether the stored masks are exactly the degrees' masks, so that the
            products, which read only allowed weights, need not apply them.
    """

    steps: tuple[_Step, ...]
    input_order: torch.Tensor
    unit_orders: tuple[torch.Tensor, ...]
    output_order: torch.Tensor
    positions: torch.Tensor
    consistent: bool
    exact: bool


# Groups up to this many rows are computed row by row (see _accumulate).
_ROW_BY_ROW = 8
# Steps per block (see _Step.flush): the rows a step re-reads span at most this many degrees.
_BLOCK_STEPS = 32


# Plans per backbone and mask; entries go with their backbone.
_PLANS: weakref.WeakKeyDictionary[MADE, dict[int, TensorCache[_Plan]]] = weakref.WeakKeyDictionary()


def check_parts(backbone: object, head: object) -> None:
    """Check that ``backbone`` can feed ``head``: a MADE of the head's shape, or ``None``.

    Raises:
        TypeError: If ``head`` is not a ``Head``, or ``backbone`` not a ``MADE`` for a
            head that takes parameters from one.
        ValueError: If a head without parameters from a backbone is given one, or the
            backbone's ``(dim, params_per_variable, input_width)`` differ from the head's.
    """
    if not isinstance(head, Head):
        raise TypeError(f"head must be a densitykit Head, got {type(head).__name__}")
    if head.params_per_variable == 0:
        if backbone is not None:
            raise ValueError(
                f"{type(head).__name__} takes no parameters from a backbone; pass backbone=None"
            )
        return
    if not isinstance(backbone, MADE):
        raise TypeError(
            f"{type(head).__name__} needs a MADE backbone, got {type(backbone).__name__}"
        )
    expected = (head.dim, head.params_per_variable, head.input_width)
    actual = (backbone.dim, backbone.params_per_variable, backbone.input_width)
    if expected != actual:
        raise ValueError(
            "backbone does not fit the head: expected (dim, params_per_variable, "
            f"input_width) = {expected}, got {actual}"
        )


def _check_arguments(
    backbone: MADE | None,
    head: Head,
    num_samples: object,
    mask: object,
    generator: object,
    context: torch.Tensor | None,
) -> None:
    check_parts(backbone, head)
    num_samples = check_int(num_samples, "num_samples", minimum=0)
    check_index(mask, backbone.num_masks if backbone is not None else 1, "mask")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(
            f"generator must be a torch.Generator or None, got {type(generator).__name__}"
        )
    context_size = backbone.context_size if backbone is not None else 0
    if context_size == 0:
        if context is not None:
            raise ValueError("this model takes no context (context_size=0); got a context")
        return
    if not isinstance(context, torch.Tensor) or not context.is_floating_point():
        raise TypeError(
            f"a conditional backbone needs a floating-point context ({num_samples}, "
            f"{context_size}), got {getattr(context, 'dtype', type(context).__name__)}"
        )
    if tuple(context.shape) != (num_samples, context_size):
        raise ValueError(
            f"context must have shape (num_samples, C) = ({num_samples}, {context_size}), "
            f"got {tuple(context.shape)}"
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
    context: torch.Tensor | None = None,
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
        context: ``(N, C)`` features, one row per sample, for a conditional backbone
            (``context_size=C > 0``); ``None`` otherwise.

    Returns:
        ``(N, D)`` long values in ``0..K-1``.

    Raises:
        TypeError: If ``head`` is not a ``Head``, ``backbone`` not a ``MADE`` (or not
            ``None`` for a head without parameters), ``generator`` not a
            ``torch.Generator``, or a needed context not a floating-point tensor.
        ValueError: If ``num_samples`` is negative, ``mask`` out of range, or the
            context missing, unexpected or not ``(N, C)``.

    Example:
        >>> import torch, densitykit as dk
        >>> model = dk.create_model("bernoulli", 6, hidden_sizes=(12,),
        ...                         masks="multi-ordering", num_masks=2)
        >>> generator = torch.Generator().manual_seed(0)
        >>> sample_fast(model.backbone, model.head, 3, mask=1, generator=generator).shape
        torch.Size([3, 6])
    """
    _check_arguments(backbone, head, num_samples, mask, generator, context)
    return _sample_fast(backbone, head, num_samples, mask, generator, context)


def sample_reference(
    backbone: MADE | None,
    head: Head,
    num_samples: int,
    *,
    mask: int = 0,
    generator: torch.Generator | None = None,
    context: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reference ancestral sampler: one full forward pass per variable ($D$ passes).

    Simple and slow, it defines what [`sample_fast`][densitykit.sampling.sample_fast]
    must draw. Arguments, result and errors are those of ``sample_fast``.
    """
    _check_arguments(backbone, head, num_samples, mask, generator, context)
    return _sample_reference(backbone, head, num_samples, mask, generator, context)


@torch.no_grad()
def _sample_reference(
    backbone: MADE | None,
    head: Head,
    num_samples: int,
    mask: int,
    generator: torch.Generator | None,
    context: torch.Tensor | None = None,
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
            params = backbone(head.encode(x, dtype), context=context)
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
    sources += [layer.mask_stack for layer in backbone.layers]
    if backbone.direct is not None:
        sources.append(backbone.direct.mask_stack)
    return tuple(sources)


def _plan(backbone: MADE, mask: int) -> _Plan:
    """The plan of ``mask``, cached until a degree buffer or a mask is replaced or edited.

    The cache keeps the source tensors themselves (so their identity cannot be
    recycled) with their version counters, which in-place edits bump. Inference
    tensors have no version counter; their plans are rebuilt at every call.
    """
    cache = _PLANS.setdefault(backbone, {}).setdefault(mask, TensorCache())
    return cache.get(_plan_sources(backbone), _BLOCK_STEPS, lambda: _build_plan(backbone, mask))


def _build_plan(backbone: MADE, mask: int) -> _Plan:
    conn = backbone.connectivity(mask)
    dim, width, params = backbone.dim, backbone.input_width, backbone.params_per_variable
    device = backbone.input_degrees.device

    # The masks the layers hold must allow nothing the degrees forbid, or skipping the
    # units outside a prefix would drop real connections.
    expected = conn.layer_masks(width, params)
    held = [layer.mask_stack[mask].cpu().bool() for layer in backbone.layers]
    if backbone.direct is not None:
        expected.append(conn.direct_mask(width, params))
        held.append(backbone.direct.mask_stack[mask].cpu().bool())
    consistent = all(not bool((got & ~want).any()) for got, want in zip(held, expected))
    exact = all(torch.equal(got, want) for got, want in zip(held, expected))

    ordering = conn.ordering
    unit_orders, ends = [], []
    for degrees in conn.hidden_degrees:
        unit_orders.append(torch.argsort(degrees, stable=True))
        # ends[t] = number of units of degree <= t, for t = 0..D.
        counts = torch.bincount(degrees, minlength=dim + 1)[: dim + 1]
        ends.append(counts.cumsum(0).tolist())
    num_hidden = len(ends)

    def known(layer: int, step: int) -> int:
        """Rows of the layer below ``layer`` (``num_hidden``: the output) that the
        units computed at ``step`` read: those of degree <= step."""
        return step * width if layer == 0 else ends[layer - 1][step]

    def known_at_start(layer: int, step: int) -> int:
        """Rows of the layer below ``layer`` known before ``step`` begins."""
        if layer == 0:
            return step * width
        return ends[layer - 1][step - 1] if step else 0

    steps, block_start = [], 0
    for step, variable in enumerate(ordering.tolist()):
        flush = []
        if step % _BLOCK_STEPS == 0:
            block_start, block_end = step, min(step + _BLOCK_STEPS, dim)
            for layer, layer_ends in enumerate(ends):
                start = layer_ends[step - 1] if step else 0
                flush.append(
                    (layer, start, layer_ends[block_end - 1], 0, known_at_start(layer, step))
                )
            rows = (step * params, block_end * params)
            flush.append((num_hidden, *rows, 0, known_at_start(num_hidden, step)))
            if backbone.direct is not None:
                flush.append((num_hidden + 1, *rows, 0, step * width))
        hidden = []
        for layer, layer_ends in enumerate(ends):
            start, end = (layer_ends[step - 1] if step else 0), layer_ends[step]
            if end > start:
                base = known_at_start(layer, block_start)
                hidden.append((layer, start, end, base, known(layer, step)))
        rows = (step * params, (step + 1) * params)
        output = [
            (num_hidden, *rows, known_at_start(num_hidden, block_start), known(num_hidden, step))
        ]
        if backbone.direct is not None:
            output.append((num_hidden + 1, *rows, block_start * width, step * width))
        steps.append(
            _Step(
                variable=variable,
                flush=tuple(
                    product
                    for product in flush
                    if product[4] > product[3] and product[2] > product[1]
                ),
                hidden=tuple(hidden),
                output=tuple(product for product in output if product[4] > product[3]),
            )
        )
    input_order = (ordering[:, None] * width + torch.arange(width)).flatten()
    output_order = (ordering[:, None] * params + torch.arange(params)).flatten()
    return _Plan(
        steps=tuple(steps),
        input_order=input_order.to(device),
        unit_orders=tuple(order.to(device) for order in unit_orders),
        output_order=output_order.to(device),
        positions=(conn.input_degrees - 1).to(device),
        consistent=consistent,
        exact=exact,
    )


def _permuted(
    layer: MaskedLinear, mask: int, rows: torch.Tensor, cols: torch.Tensor, apply_mask: bool
) -> torch.Tensor:
    weight = layer.weight
    if apply_mask:
        weight = weight * layer.mask_stack[mask]
    return weight.index_select(0, rows).index_select(1, cols)


def _bias(layer: MaskedLinear, rows: torch.Tensor) -> torch.Tensor:
    bias = layer.bias
    if bias is None:
        bias = layer.weight.new_zeros(layer.out_features)
    return bias.index_select(0, rows)[:, None]


def _prepare(
    backbone: MADE, mask: int, plan: _Plan, context: torch.Tensor | None = None
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The weights and biases of ``mask`` with units in degree (step) order.

    Returns:
        The weights in product order (hidden layers, output layer, direct
        connections) and, for the hidden layers and the output layer, the biases
        ``(rows, 1)``, or with a context ``(N, C)`` the biases plus the context's
        share of each row, ``(rows, N)``.
    """
    apply_mask = not plan.exact
    below, weights, biases = plan.input_order, [], []
    layers = list(backbone.layers)
    context_layers = backbone.context_layers or [None] * len(layers)
    first = backbone.hidden_degrees_0[mask] if backbone.hidden_sizes else None
    mask_terms = backbone.mask_input_terms(backbone.input_degrees[mask], first)
    for index, (layer, order, context_layer) in enumerate(
        zip(layers, [*plan.unit_orders, plan.output_order], context_layers)
    ):
        weights.append(_permuted(layer, mask, order, below, apply_mask))
        bias = _bias(layer, order)
        if mask_terms is not None and mask_terms[index] is not None:
            bias = bias + mask_terms[index].index_select(0, order)[:, None]
        if context_layer is not None and context is not None:
            bias = torch.addmm(bias, context_layer.weight.index_select(0, order), context.t())
        biases.append(bias)
        below = order
    if backbone.direct is not None:
        weights.append(
            _permuted(backbone.direct, mask, plan.output_order, plan.input_order, apply_mask)
        )
    return weights, biases


def _accumulate(out: torch.Tensor, weight: torch.Tensor, source: torch.Tensor) -> None:
    """``out += weight @ source``, in place.

    Activations are ``(rows, samples)``. A few rows go one at a time: a single-row
    product runs as a single-threaded matrix-vector product, while a small multi-row
    GEMM is threaded and stalls badly when another process holds one of the cores.
    """
    if out.shape[0] > _ROW_BY_ROW:
        out.addmm_(weight, source)
        return
    for row in range(out.shape[0]):
        out[row : row + 1].addmm_(weight[row : row + 1], source)


@torch.no_grad()
def _sample_fast(
    backbone: MADE | None,
    head: Head,
    num_samples: int,
    mask: int,
    generator: torch.Generator | None,
    context: torch.Tensor | None = None,
) -> torch.Tensor:
    if backbone is None:
        return _sample_reference(backbone, head, num_samples, mask, generator)
    plan = _plan(backbone, mask)
    if not plan.consistent:
        return _sample_reference(backbone, head, num_samples, mask, generator, context)
    dtype, device = _dtype_and_device(backbone, head)
    width = backbone.input_width
    per_variable = encodes_per_variable(head, dtype, device)
    # Permuted once per call: the weights change in training.
    weights, biases = _prepare(backbone, mask, plan, context)

    # Activations as (units, samples), units in degree order: a unit's inputs are a
    # contiguous prefix of rows. Hidden and output rows start as their biases and
    # accumulate their products; input rows are read only once written.
    inputs = torch.empty(backbone.dim * width, num_samples, dtype=dtype, device=device)
    targets = [bias.expand(-1, num_samples).clone() for bias in biases]
    sources = [inputs, *targets[:-1]]
    if backbone.direct is not None:
        targets.append(targets[-1])
        sources.append(inputs)
    # Re-encoding reads every column, so the not yet drawn ones must be valid values.
    values = (
        None
        if per_variable
        else torch.zeros(num_samples, backbone.dim, dtype=torch.long, device=device)
    )
    state = _State(
        weights=weights,
        targets=targets,
        sources=sources,
        activations=[_in_place(activation) for activation in backbone.activations],
        inputs=inputs,
        values=values,
    )

    threads = torch.get_num_threads()
    single = device.type == "cpu" and threads > 1
    if single:
        # The steps are chains of small products: a second thread does not pay, and on
        # a shared machine its OpenMP worker, spinning between products, slows the
        # main thread several-fold (see the module docstring).
        torch.set_num_threads(1)
    try:
        _run_steps(plan, head, generator, state)
    finally:
        if single:
            torch.set_num_threads(threads)
    if state.values is not None:
        return state.values
    return torch.stack(state.drawn, 1).index_select(1, plan.positions)


@dataclass
class _State:
    """The tensors of one call of the fast sampler.

    Attributes:
        weights: Degree-sorted weights in product order (see ``_Product``).
        targets: Per weight, the ``(rows, samples)`` buffer its products add to.
        sources: Per weight, the buffer its products read.
        activations: Per hidden layer, the in-place activation of a slice of units.
        inputs: The encoded inputs in step order ``(D*W, samples)``.
        values: The values drawn so far ``(samples, D)``, kept only for heads that
            re-encode every value at every step; otherwise ``None``.
        drawn: The values drawn at each step, in step order.
    """

    weights: list[torch.Tensor]
    targets: list[torch.Tensor]
    sources: list[torch.Tensor]
    activations: list[Callable[[torch.Tensor], object]]
    inputs: torch.Tensor
    values: torch.Tensor | None
    drawn: list[torch.Tensor] = field(default_factory=list)


def _run_steps(plan: _Plan, head: Head, generator: torch.Generator | None, state: _State) -> None:
    """Draw the variables step by step (see ``_Step``) into ``state``."""
    targets, sources, weights, inputs = state.targets, state.sources, state.weights, state.inputs
    num_hidden = len(state.activations)
    outputs, params = targets[num_hidden], head.params_per_variable
    width, dtype = head.input_width, inputs.dtype
    last_step = len(plan.steps) - 1

    def run(product: _Product) -> None:
        index, start, end, base, prefix = product
        _accumulate(
            targets[index][start:end],
            weights[index][start:end, base:prefix],
            sources[index][base:prefix],
        )

    for step, work in enumerate(plan.steps):
        for product in work.flush:
            run(product)
        for product in work.hidden:
            run(product)
            state.activations[product[0]](targets[product[0]][product[1] : product[2]])
        for product in work.output:
            run(product)
        out = outputs[step * params : (step + 1) * params]
        values = head.sample(out.t().contiguous(), work.variable, generator)
        if state.values is None:
            state.drawn.append(values)
        else:
            state.values[:, work.variable] = values
        if step == last_step:
            return  # the last variable feeds no output
        if state.values is None:
            encoded = head.encode(values[:, None], dtype)
        else:
            begin = work.variable * width
            encoded = head.encode(state.values, dtype)[:, begin : begin + width]
        inputs[step * width : (step + 1) * width] = encoded.t()


def _in_place(activation: nn.Module) -> Callable[[torch.Tensor], object]:
    """Apply ``activation`` to a slice of units, in place (element-wise, as MADE requires)."""
    if type(activation) is nn.ReLU:
        return torch.relu_
    return lambda units: units.copy_(activation(units))
