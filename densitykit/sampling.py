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
  memory). Instead, at the first step of each block of
  [`BLOCK_STEPS`][densitykit.plans.BLOCK_STEPS] steps, one product per layer adds to
  every unit computed in the block its share from the units already known; each step
  then adds only the few rows computed since the block began. Hidden and output rows
  start as their biases and accumulate in place.
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

The same machinery completes a partly known ordering
([`complete_fast`][densitykit.sampling.complete_fast], behind
[`queries.complete`][densitykit.queries.complete]). Under any connectivity, not only
a stored mask, with the values of the first $k$ variables of its ordering given: the
given values are encoded at once; every hidden unit of degree below $k$ reads only
given inputs, so one product per layer computes them all (the degree rule, which
differs from unit to unit, applied as a mask among the degree-sorted units); and only
steps $k$ to $D - 1$ run, the first block starting at step $k$ (which computes the
units of degree $k$). A connectivity's plan
is built from its degrees, so it reads only the weights they allow and never needs
the masks; the last one is kept per backbone (found again for a connectivity with the
same degrees), so memory does not grow with the orderings seen.

The random numbers are drawn by ``head.sample`` at each step, as in the reference
sampler: drawing them all at once would need each head to expose how many draws a
variable consumes, and heads are free to draw as they like.

Assumptions, each checked or documented: the activations are element-wise (as the
[`ACTIVATIONS`][densitykit.made.ACTIVATIONS] registry requires), so a slice of units can
be activated alone; the stored masks allow no connection the degrees forbid (true of
masks rebuilt from degrees; otherwise the reference sampler is used); and
``head.encode`` acts per variable (below). The index groups (plans, in
[`densitykit.plans`][densitykit.plans]) of each mask are cached and rebuilt when a
degree buffer or a mask is replaced or edited in place; the weights are re-read at
every call.

Contract on heads: ``head.encode`` acts per variable, i.e. for values ``x`` ``(B, D)``
and every variable ``i``,
``head.encode(x, dtype)[:, i*W:(i+1)*W] == head.encode(x[:, i:i+1], dtype)`` with
``W = head.input_width``, so the sampler encodes only the variable it has just drawn.
Every built-in head satisfies it. A head whose variables differ (per-variable widths,
[`densitykit.widths`][densitykit.widths]: the ``mixed`` head) encodes a variable
knowing which, ``head.encode_variable_into(values, out, i)`` writing what
``head.encode(x, dtype)[:, input_starts[i]:input_starts[i+1]]`` holds, and draws it
with ``head.sample_variable_from_uniforms``; the steps then read and write each
variable's own units (``Plan.input_ends``, ``Plan.output_ends``). A head whose
encoding depends on other variables is detected by a probe and sampled by re-encoding
all values at each step instead, which is exact but costs $O(D)$ more encoding work.

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

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.distributions import biject_to

from densitykit.checks import check_generator, check_index, check_int
from densitykit.heads import Head
from densitykit.heads.base import uniform
from densitykit.layers import MaskedLinear
from densitykit.made import MADE
from densitykit.masks import Connectivity
from densitykit.plans import Plan, Product, connectivity_plan, mask_plan

# Groups up to this many rows are computed row by row (see _accumulate).
_ROW_BY_ROW = 8
# The uniforms of this many steps are drawn in one call (see _run_steps).
_DRAW_STEPS = 32

__all__ = [
    "check_parts",
    "complete_fast",
    "complete_reference",
    "encodes_per_variable",
    "sample_fast",
    "sample_reference",
]


def check_parts(backbone: object, head: object) -> None:
    """Check that ``backbone`` can feed ``head``: a MADE of the head's shape.

    Raises:
        TypeError: If ``head`` is not a ``Head``, or ``backbone`` not a ``MADE``.
        ValueError: If the head takes no parameters from a backbone (the histogram, a
            model family of its own), or the backbone's ``(dim, params_per_variable,
            input_width)`` differ from the head's.
    """
    if not isinstance(head, Head):
        raise TypeError(f"head must be a densitykit Head, got {type(head).__name__}")
    if head.params_per_variable == 0:
        raise ValueError(
            f"{type(head).__name__} takes no parameters from a backbone, so there is nothing "
            "to sample it with (the histogram is a model family of its own: "
            "densitykit.histogram.HistogramModel)"
        )
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
    if head.variable_widths != backbone.widths:
        raise ValueError(
            f"backbone does not fit the head: expected the widths {head.variable_widths}, "
            f"got {backbone.widths}"
        )


def _check_arguments(
    backbone: MADE,
    head: Head,
    num_samples: object,
    mask: object,
    generator: object,
    context: torch.Tensor | None,
) -> None:
    check_parts(backbone, head)
    num_samples = check_int(num_samples, "num_samples", minimum=0)
    check_index(mask, backbone.num_masks, "mask")
    check_generator(generator)
    _check_context(backbone, context, num_samples)


def _check_context(backbone: MADE, context: object, num_samples: int) -> None:
    """A conditional backbone needs a floating-point context ``(N, C)``; others none."""
    context_size = backbone.context_size
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


def _dtype_and_device(backbone: MADE, head: Head) -> tuple[torch.dtype, torch.device]:
    """The floating dtype and device of the parameters (the backbone's first)."""
    for module in (backbone, head):
        for parameter in module.parameters():
            return parameter.dtype, parameter.device
    return torch.get_default_dtype(), torch.device("cpu")


def sample_fast(
    backbone: MADE,
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
    boundary can differ, which leaves the distribution exact).

    Args:
        backbone: The [`MADE`][densitykit.made.MADE].
        head: The output distribution.
        num_samples: How many samples ``N``.
        mask: Which mask's autoregressive model to sample.
        generator: Random source (its device may differ from the model's).
        context: ``(N, C)`` features, one row per sample, for a conditional backbone
            (``context_size=C > 0``); ``None`` otherwise.

    Returns:
        ``(N, D)`` values of the head's support, in its ``value_dtype`` (long values
        ``0..K-1`` for the discrete heads).

    Raises:
        TypeError: If ``head`` is not a ``Head``, ``backbone`` not a ``MADE``,
            ``generator`` not a ``torch.Generator``, or a needed context not a
            floating-point tensor.
        ValueError: If the head takes no parameters from a backbone, the backbone does
            not fit it, ``num_samples`` is negative, ``mask`` out of range, or the
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
    backbone: MADE,
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
    backbone: MADE,
    head: Head,
    num_samples: int,
    mask: int,
    generator: torch.Generator | None,
    context: torch.Tensor | None = None,
) -> torch.Tensor:
    dtype, device = _dtype_and_device(backbone, head)
    x = head.blank(num_samples, device)
    active = backbone.mask_index
    backbone.set_mask(mask)
    try:
        for variable in backbone.connectivity(mask).ordering.tolist():
            params = backbone(head.encode(x, dtype), context=context)
            x[:, variable] = head.sample(params[:, variable], variable, generator)
    finally:
        backbone.set_mask(active)
    return x


def complete_fast(
    backbone: MADE,
    head: Head,
    connectivity: Connectivity,
    x: torch.Tensor,
    num_given: int,
    *,
    generator: torch.Generator | None = None,
    context: torch.Tensor | None = None,
) -> torch.Tensor:
    """Exact samples of the rest of an ordering given its first ``num_given`` variables.

    The fast sampler under any connectivity, the backbone's own or not, started after
    a given prefix: the given variables are encoded at once, the hidden units of
    degree below ``num_given`` (which read only given variables) are computed in one
    product per layer, and only the remaining ``D - num_given`` steps run. The
    heads are called as [`complete_reference`][densitykit.sampling.complete_reference]
    calls them, so the same generator state gives the same values (up to the order
    of floating-point summation, as for ``sample_fast``).

    Args:
        backbone: The [`MADE`][densitykit.made.MADE].
        head: The output distribution (one that takes parameters from a backbone).
        connectivity: The degrees to sample under; its masks are derived from them.
        x: ``(N, D)`` values (integers for a discrete head, floats for a head over
            real values); those of the first ``num_given`` variables of
            ``connectivity.ordering`` are read, the others ignored.
        num_given: How many variables of the ordering are given, ``0..D``.
        generator: Random source.
        context: ``(N, C)`` features, one row per example, for a conditional backbone
            (``context_size=C > 0``); ``None`` otherwise.

    Returns:
        ``(N, D)`` values (``head.value_dtype``): ``x`` on the given variables, drawn elsewhere.

    Raises:
        TypeError: If the parts, ``connectivity``, ``x`` or ``generator`` have the
            wrong type (``x`` must be an integer tensor).
        ValueError: If they do not fit one another, ``num_given`` is outside ``0..D``,
            or the context is missing, unexpected or not ``(N, C)``.

    Example:
        >>> import torch, densitykit as dk
        >>> from densitykit.masks import observed_first
        >>> model = dk.create_model("bernoulli", 4, hidden_sizes=(8,), masks="any-order")
        >>> observed = torch.tensor([False, True, True, False])
        >>> conn = observed_first(model.backbone.connectivity(), observed)
        >>> x = torch.tensor([[0, 1, 0, 0]])
        >>> parts = model.backbone, model.head
        >>> seeded = lambda: torch.Generator().manual_seed(0)
        >>> fast = complete_fast(*parts, conn, x, 2, generator=seeded())
        >>> slow = complete_reference(*parts, conn, x, 2, generator=seeded())
        >>> fast[:, observed].tolist(), torch.equal(fast, slow)
        ([[1, 0]], True)
    """
    given = _check_completion(backbone, head, connectivity, x, num_given, generator, context)
    if num_given == backbone.dim:
        return given
    with torch.no_grad():
        plan = connectivity_plan(backbone, connectivity, num_given)
        return _draw(backbone, head, plan, None, given, generator, context)


def complete_reference(
    backbone: MADE,
    head: Head,
    connectivity: Connectivity,
    x: torch.Tensor,
    num_given: int,
    *,
    generator: torch.Generator | None = None,
    context: torch.Tensor | None = None,
) -> torch.Tensor:
    """Reference for [`complete_fast`][densitykit.sampling.complete_fast]: one full
    forward pass per variable drawn. Arguments, result and errors are those of
    ``complete_fast``."""
    given = _check_completion(backbone, head, connectivity, x, num_given, generator, context)
    dtype, _ = _dtype_and_device(backbone, head)
    with torch.no_grad():
        for variable in connectivity.ordering[num_given:].tolist():
            encoded = head.encode(given, dtype)
            params = backbone(encoded, connectivity=connectivity, context=context)
            given[:, variable] = head.sample(params[:, variable], variable, generator)
    return given


def _check_completion(
    backbone: MADE,
    head: Head,
    connectivity: Connectivity,
    x: torch.Tensor,
    num_given: int,
    generator: torch.Generator | None,
    context: torch.Tensor | None,
) -> torch.Tensor:
    """Check the arguments of a completion; return ``x``'s given values, zeros elsewhere."""
    check_parts(backbone, head)
    backbone.check_fit(connectivity)
    real = head.value_dtype.is_floating_point
    if not isinstance(x, torch.Tensor) or x.is_complex() or (x.is_floating_point() and not real):
        kind = "a floating (or integer)" if real else "an integer"
        raise TypeError(f"x must be {kind} tensor of values, got {_describe(x)}")
    if x.ndim != 2 or x.shape[1] != backbone.dim:
        raise ValueError(f"x must have shape (N, D) with D={backbone.dim}, got {tuple(x.shape)}")
    check_int(num_given, "num_given", minimum=0, maximum=backbone.dim)
    check_generator(generator)
    _check_context(backbone, context, x.shape[0])
    given = x.to(head.value_dtype, copy=True)
    # The later variables are drawn; the placeholder keeps them in the support until then.
    given[:, connectivity.ordering[num_given:].to(x.device)] = head.placeholder
    return given


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of dtype {value.dtype}"
    return type(value).__name__


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
    probe = _probe_values(head)
    if probe is None:
        return False
    probe, dim, widths = probe.to(device), head.dim, head.variable_widths
    together = head.encode(probe, dtype)
    if tuple(together.shape) != (probe.shape[0], widths.num_inputs):
        return False
    if not widths.is_uniform or type(head).encode_variable_into is not Head.encode_variable_into:
        # A head that encodes each variable its own way: what the sampler calls, one
        # variable at a time.
        starts = widths.input_starts
        for variable in range(dim):
            out = together.new_empty(widths.inputs[variable], probe.shape[0])
            head.encode_variable_into(probe[:, variable], out, variable)
            if not torch.equal(out.t(), together[:, starts[variable] : starts[variable + 1]]):
                return False
        return True
    apart = head.encode(probe.reshape(-1, 1), dtype)
    width = head.input_width
    if tuple(apart.shape) != (probe.numel(), width):
        return False
    return torch.equal(together, apart.reshape(probe.shape[0], dim * width))


def _probe_values(head: Head) -> torch.Tensor | None:
    """``(4, D)`` varied values of the head's support (``None`` if none can be named).

    ``0..K-1`` patterns for a discrete head; for a continuous one, varied reals mapped
    into the support by ``torch.distributions.biject_to``.
    """
    dim, num_values = head.dim, head.num_values
    index = torch.arange(dim)
    if not head.value_dtype.is_floating_point:
        return torch.stack(
            [
                torch.zeros(dim, dtype=torch.long),
                torch.full((dim,), num_values - 1),
                index % num_values,
                (3 * index + 1) % num_values,
            ]
        ).to(head.value_dtype)
    reals = torch.stack(
        [torch.zeros(dim), torch.full((dim,), 1.5), index - dim / 2, (3 * index + 1) % 7 - 3.25]
    ).double()
    try:
        return biject_to(head.support)(reals).to(head.value_dtype)
    except NotImplementedError:  # no transform into the support: 0/1 patterns, if inside
        bits = torch.stack([torch.zeros(dim), torch.ones(dim), index % 2, (index + 1) % 2])
        bits = bits.to(head.value_dtype)
        return bits if bool(head.support.check(bits).all()) else None


def _permuted(
    layer: MaskedLinear, mask: int | None, rows: torch.Tensor, cols: torch.Tensor
) -> torch.Tensor:
    """The weight with rows and columns in step order; masked unless the plan is exact
    (``mask`` is then ``None``)."""
    weight = layer.weight
    if mask is not None:
        weight = weight * layer.mask_stack[mask]
    return weight.index_select(0, rows).index_select(1, cols)


def _bias(layer: MaskedLinear, rows: torch.Tensor) -> torch.Tensor:
    bias = layer.bias
    if bias is None:
        bias = layer.weight.new_zeros(layer.out_features)
    return bias.index_select(0, rows)[:, None]


def _prepare(
    backbone: MADE, mask: int | None, plan: Plan, context: torch.Tensor | None = None
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The weights and biases with units in degree (step) order.

    Args:
        backbone: The MADE.
        mask: The stored mask the plan was built for (``None`` for a connectivity's
            plan, which is exact).
        plan: The plan.
        context: ``(N, C)`` features of a conditional backbone, or ``None``.

    Returns:
        The weights in product order (hidden layers, output layer, direct
        connections) and, for the hidden layers and the output layer, the biases
        ``(rows, 1)``, or with a context ``(N, C)`` the biases plus the context's
        share of each row, ``(rows, N)``.
    """
    mask = None if plan.exact else mask
    below, weights, biases = plan.input_order, [], []
    layers = list(backbone.layers)
    context_layers = backbone.context_layers or [None] * len(layers)
    # The mask-as-input terms of the plan's degrees (the stored mask's or any other).
    degrees = plan.degrees
    first = degrees.hidden_degrees[0] if degrees.hidden_degrees else None
    mask_terms = backbone.mask_input_terms(degrees.input_degrees, first)
    for index, (layer, order, context_layer) in enumerate(
        zip(layers, [*plan.unit_orders, plan.output_order], context_layers)
    ):
        weights.append(_permuted(layer, mask, order, below))
        bias = _bias(layer, order)
        if mask_terms is not None and mask_terms[index] is not None:
            bias = bias + mask_terms[index].index_select(0, order)[:, None]
        if context_layer is not None and context is not None:
            bias = torch.addmm(bias, context_layer.weight.index_select(0, order), context.t())
        biases.append(bias)
        below = order
    if backbone.direct is not None:
        weights.append(_permuted(backbone.direct, mask, plan.output_order, plan.input_order))
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
    backbone: MADE,
    head: Head,
    num_samples: int,
    mask: int,
    generator: torch.Generator | None,
    context: torch.Tensor | None = None,
) -> torch.Tensor:
    plan = mask_plan(backbone, mask)
    if not plan.consistent:
        return _sample_reference(backbone, head, num_samples, mask, generator, context)
    _, device = _dtype_and_device(backbone, head)
    given = head.blank(num_samples, device)
    return _draw(backbone, head, plan, mask, given, generator, context)


def _draw(
    backbone: MADE,
    head: Head,
    plan: Plan,
    mask: int | None,
    given: torch.Tensor,
    generator: torch.Generator | None,
    context: torch.Tensor | None,
) -> torch.Tensor:
    """Run ``plan``: ``given`` ``(N, D)`` with the variables of steps ``plan.start..``
    drawn (the earlier ones are read, the later ones must be zero)."""
    dtype, device = _dtype_and_device(backbone, head)
    num_samples = given.shape[0]
    per_variable = encodes_per_variable(head, dtype, device)
    # Permuted once per call: the weights change in training.
    weights, biases = _prepare(backbone, mask, plan, context)

    # Activations as (units, samples), units in degree order: a unit's inputs are a
    # contiguous prefix of rows. Hidden and output rows start as their biases and
    # accumulate their products; input rows are read only once written.
    inputs = torch.empty(backbone.widths.num_inputs, num_samples, dtype=dtype, device=device)
    if plan.start:
        known = plan.input_order[: plan.input_ends[plan.start]]
        inputs[: known.numel()] = head.encode(given, dtype).index_select(1, known).t()
    targets = [bias.expand(-1, num_samples).clone() for bias in biases]
    sources = [inputs, *targets[:-1]]
    if backbone.direct is not None:
        targets.append(targets[-1])
        sources.append(inputs)
    state = _State(
        weights=weights,
        targets=targets,
        sources=sources,
        activations=[_in_place(activation) for activation in backbone.activations],
        inputs=inputs,
        # Re-encoding reads every column, so the not yet drawn ones must be valid values.
        values=None if per_variable else given.clone(),
    )
    with _one_thread(device):
        _run_prefix(plan, state)
        _run_steps(plan, head, generator, state)
    if state.values is not None:
        return state.values
    drawn = given.clone()
    if state.drawn:
        drawn[:, plan.ordering[plan.start :]] = torch.stack(state.drawn, 1)
    return drawn


@contextmanager
def _one_thread(device: torch.device) -> Iterator[None]:
    """Run the steps with one intra-op thread on the CPU (restored afterwards).

    The steps are chains of small products: a second thread does not pay, and on a
    shared machine its OpenMP worker, spinning between products, slows the main
    thread several-fold (see the module docstring).
    """
    threads = torch.get_num_threads()
    single = device.type == "cpu" and threads > 1
    if single:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if single:
            torch.set_num_threads(threads)


@dataclass
class _State:
    """The tensors of one call of the fast sampler.

    Attributes:
        weights: Degree-sorted weights in product order (see ``Product``).
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


def _run_prefix(plan: Plan, state: _State) -> None:
    """Compute the hidden units of degree below ``plan.start`` (see ``Plan.prefix``)."""
    for layer, units, rows, mask in plan.prefix:
        weight = state.weights[layer][:units, :rows] * mask
        state.targets[layer][:units].addmm_(weight, state.sources[layer][:rows])
        state.activations[layer](state.targets[layer][:units])


def _run_steps(plan: Plan, head: Head, generator: torch.Generator | None, state: _State) -> None:
    """Draw the variables step by step (see ``Step``) into ``state``."""
    targets, sources, weights, inputs = state.targets, state.sources, state.weights, state.inputs
    num_hidden = len(state.activations)
    outputs, dtype = targets[num_hidden], inputs.dtype
    in_ends, out_ends = plan.input_ends, plan.output_ends
    input_starts = head.variable_widths.input_starts
    last_step = plan.start + len(plan.steps) - 1
    # A head that declares its uniforms gets those of _DRAW_STEPS steps from one call:
    # a CPU generator yields the same stream in one call as in many, so the samples
    # are the reference's (a CUDA generator's offsets do not; it draws per step).
    draws, num_samples = head.uniforms_per_sample, inputs.shape[1]
    source = generator.device if generator is not None else inputs.device
    ahead = draws > 0 and source.type == "cpu"
    u_dtype = head.sample_dtype(dtype)
    block = inputs.new_empty(0)

    def run(product: Product) -> None:
        index, start, end, base, prefix = product
        _accumulate(
            targets[index][start:end],
            weights[index][start:end, base:prefix],
            sources[index][base:prefix],
        )

    for offset, (step, work) in enumerate(enumerate(plan.steps, plan.start)):
        for product in work.flush:
            run(product)
        for product in work.hidden:
            run(product)
            state.activations[product[0]](targets[product[0]][product[1] : product[2]])
        for product in work.output:
            run(product)
        out = outputs[out_ends[step] : out_ends[step + 1]].t().contiguous()
        if ahead:
            if offset % _DRAW_STEPS == 0:
                count = min(_DRAW_STEPS, len(plan.steps) - offset)
                block = uniform(
                    (count, draws, num_samples), generator, device=inputs.device, dtype=u_dtype
                )
            values = head.sample_variable_from_uniforms(
                out, block[offset % _DRAW_STEPS], work.variable
            )
        else:
            values = head.sample(out, work.variable, generator)
        # As the reference stores them: the encoding must read the values it holds.
        values = values.to(head.value_dtype)
        if state.values is None:
            state.drawn.append(values)
        else:
            state.values[:, work.variable] = values
        if step == last_step:
            return  # the last variable feeds no output
        rows = inputs[in_ends[step] : in_ends[step + 1]]
        if state.values is None:
            head.encode_variable_into(values, rows, work.variable)
        else:
            begin, end = input_starts[work.variable], input_starts[work.variable + 1]
            rows.copy_(head.encode(state.values, dtype)[:, begin:end].t())


def _in_place(activation: nn.Module) -> Callable[[torch.Tensor], object]:
    """Apply ``activation`` to a slice of units, in place (element-wise, as MADE requires)."""
    if type(activation) is nn.ReLU:
        return torch.relu_
    return lambda units: units.copy_(activation(units))
