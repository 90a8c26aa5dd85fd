r"""The fast sampler's plans: which units each sampling step computes.

A plan is derived from degrees alone, never from the weights: the units of each
layer sorted by degree, and per step the products (row and column ranges of the
degree-sorted weights) that compute the units and output rows that step needs (see
[`densitykit.sampling`][densitykit.sampling] for the algorithm). Plans are cached:
per backbone and stored mask ([`mask_plan`][densitykit.plans.mask_plan]), rebuilt
when a degree buffer or a mask is replaced or edited in place; and, for any
connectivity ([`connectivity_plan`][densitykit.plans.connectivity_plan]), the last
one per backbone, so memory does not grow with the orderings seen.

Example:
    >>> import densitykit as dk
    >>> model = dk.create_model("bernoulli", 4, hidden_sizes=(6,))
    >>> plan = mask_plan(model.backbone, 0)
    >>> plan.start, len(plan.steps), plan.ordering.tolist()
    (0, 4, [0, 1, 2, 3])
    >>> connectivity_plan(model.backbone, model.backbone.connectivity(), 3).start
    3
"""

from __future__ import annotations

import weakref
from collections.abc import Hashable
from dataclasses import dataclass

import torch

from densitykit.caching import TensorCache
from densitykit.checks import check_index, check_int
from densitykit.made import MADE
from densitykit.masks import Connectivity

__all__ = [
    "BLOCK_STEPS",
    "Plan",
    "Product",
    "Step",
    "build_mask_plan",
    "connectivity_plan",
    "mask_plan",
]


Product = tuple[int, int, int, int, int]
"""``(weight, start, end, base, prefix)``: add ``weight[start:end, base:prefix] @
source[base:prefix]`` to rows ``start:end`` of the weight's target buffer (weights in
the order: the hidden layers, the output layer, the direct connections)."""


@dataclass(frozen=True)
class Step:
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
    flush: tuple[Product, ...]
    hidden: tuple[Product, ...]
    output: tuple[Product, ...]


@dataclass(frozen=True)
class Plan:
    """Index groups of one connectivity from a first step, independent of the weights.

    Attributes:
        start: The first step drawn; the variables of the steps before it are given.
        prefix: Per hidden layer with units of degree below ``start``, the product
            computing them all from the given variables: ``(layer, units, rows,
            mask)`` adds ``(weight[:units, :rows] * mask) @ source[:rows]`` (the mask,
            ``(units, rows)`` bool, is the degree rule among the degree-sorted units).
        steps: One ``Step`` per variable drawn, in sampling order.
        input_order: Input units in step order ``(D*W,)`` (``(sum W_i,)``).
        unit_orders: Per hidden layer, its units sorted by degree ``(H_l,)``.
        output_order: Output units in step order ``(D*P,)`` (``(sum P_i,)``).
        input_ends: ``D + 1`` offsets into ``input_order``: step ``t``'s variable's
            input units are ``input_order[input_ends[t]:input_ends[t + 1]]``.
        output_ends: ``D + 1`` offsets into ``output_order``, as ``input_ends``.
        ordering: The variable drawn at each step ``(D,)``.
        degrees: The degrees the plan was built from, on the backbone's device.
        consistent: Whether the stored masks allow no connection the degrees forbid;
            if not, the sampler defers to the reference sampler.
        exact: Whether the stored masks are exactly the degrees' masks, so that the
            products, which read only allowed weights, need not apply them.
    """

    start: int
    prefix: tuple[tuple[int, int, int, torch.Tensor], ...]
    steps: tuple[Step, ...]
    input_order: torch.Tensor
    unit_orders: tuple[torch.Tensor, ...]
    output_order: torch.Tensor
    input_ends: tuple[int, ...]
    output_ends: tuple[int, ...]
    ordering: torch.Tensor
    degrees: Connectivity
    consistent: bool
    exact: bool


BLOCK_STEPS = 32
"""Steps per block (see ``Step.flush``): the rows a step re-reads span at most this many
degrees."""


# Plans per backbone and mask; entries go with their backbone.
_PLANS: weakref.WeakKeyDictionary[MADE, dict[int, TensorCache[Plan]]] = weakref.WeakKeyDictionary()
# Per backbone, the plan of the last connectivity and prefix asked for, with them:
# ``(connectivity, key, plan)`` (see connectivity_plan).
_CONNECTIVITY_PLANS: weakref.WeakKeyDictionary[MADE, tuple[Connectivity, Hashable, Plan]] = (
    weakref.WeakKeyDictionary()
)


def _plan_sources(backbone: MADE) -> tuple[torch.Tensor, ...]:
    """The tensors a plan is derived from: the degree buffers and the stored masks."""
    hidden = range(len(backbone.hidden_sizes))
    sources = [backbone.input_degrees, *(getattr(backbone, f"hidden_degrees_{i}") for i in hidden)]
    sources += [layer.mask_stack for layer in backbone.layers]
    if backbone.direct is not None:
        sources.append(backbone.direct.mask_stack)
    return tuple(sources)


def mask_plan(backbone: MADE, mask: int) -> Plan:
    """The plan of stored mask ``mask``, cached until a degree buffer or a mask is
    replaced or edited.

    The cache keeps the source tensors themselves (so their identity cannot be
    recycled) with their version counters, which in-place edits bump. Inference
    tensors have no version counter; their plans are rebuilt at every call.

    Raises:
        TypeError, ValueError: If ``mask`` is not an index of the backbone's masks.
    """
    mask = check_index(mask, backbone.num_masks, "mask")
    cache = _PLANS.setdefault(backbone, {}).setdefault(mask, TensorCache())
    return cache.get(_plan_sources(backbone), BLOCK_STEPS, lambda: build_mask_plan(backbone, mask))


def build_mask_plan(backbone: MADE, mask: int) -> Plan:
    """The plan of stored mask ``mask``, built now (what ``mask_plan`` caches).

    Its ``consistent`` and ``exact`` flags compare the masks the layers hold with
    those of the mask's degrees.
    """
    conn = backbone.connectivity(mask)
    width, params = backbone.widths.inputs, backbone.widths.outputs

    # The masks the layers hold must allow nothing the degrees forbid, or skipping the
    # units outside a prefix would drop real connections.
    expected = conn.layer_masks(width, params)
    held = [layer.mask_stack[mask].cpu().bool() for layer in backbone.layers]
    if backbone.direct is not None:
        expected.append(conn.direct_mask(width, params))
        held.append(backbone.direct.mask_stack[mask].cpu().bool())
    consistent = all(not bool((got & ~want).any()) for got, want in zip(held, expected))
    exact = all(torch.equal(got, want) for got, want in zip(held, expected))
    return _degree_plan(backbone, conn, 0, consistent=consistent, exact=exact)


def connectivity_plan(backbone: MADE, connectivity: Connectivity, start: int) -> Plan:
    """The plan of ``connectivity`` from step ``start`` (the earlier steps given).

    The masks are taken to be the degrees' own, so the plan is ``exact``. Only the
    last plan per backbone is kept, found again for the same connectivity object or
    one with equal degrees: a completion runs one observed-first connectivity per
    pattern, and memory does not grow with the orderings seen.

    Raises:
        TypeError, ValueError: If ``connectivity`` does not fit the backbone or
            ``start`` is not in ``0..D``.
    """
    backbone.check_fit(connectivity)
    start = check_int(start, "start", minimum=0, maximum=backbone.dim)
    key = (start, backbone.input_degrees.device, BLOCK_STEPS)
    cached = _CONNECTIVITY_PLANS.get(backbone)
    if cached is not None and cached[1] == key and _same_degrees(cached[0], connectivity):
        return cached[2]
    plan = _degree_plan(backbone, connectivity, start, consistent=True, exact=True)
    _CONNECTIVITY_PLANS[backbone] = (connectivity, key, plan)
    return plan


def _same_degrees(first: Connectivity, second: Connectivity) -> bool:
    if first is second:
        return True
    pairs = [(first.input_degrees, second.input_degrees)]
    pairs += list(zip(first.hidden_degrees, second.hidden_degrees))
    return all(torch.equal(a, b.to(a.device)) for a, b in pairs)


def _degree_plan(
    backbone: MADE, conn: Connectivity, first_step: int, *, consistent: bool, exact: bool
) -> Plan:
    """The plan of ``conn``'s degrees, drawing from ``first_step`` (earlier steps given)."""
    dim, widths = backbone.dim, backbone.widths
    device = backbone.input_degrees.device
    conn = conn.to("cpu")
    ordering = conn.ordering
    # Units of the variables in step order: step t's inputs are in_ends[t]:in_ends[t+1].
    in_ends, out_ends = widths.in_order(ordering)
    unit_orders, ends = [], []
    for degrees in conn.hidden_degrees:
        unit_orders.append(torch.argsort(degrees, stable=True))
        # ends[t] = number of units of degree <= t, for t = 0..D.
        counts = torch.bincount(degrees, minlength=dim + 1)[: dim + 1]
        ends.append(counts.cumsum(0).tolist())
    num_hidden = len(ends)
    prefix = _prefix_products(conn, unit_orders, ends, in_ends, first_step)

    def known(layer: int, step: int) -> int:
        """Rows of the layer below ``layer`` (``num_hidden``: the output) that the
        units computed at ``step`` read: those of degree <= step."""
        return in_ends[step] if layer == 0 else ends[layer - 1][step]

    def known_at_start(layer: int, step: int) -> int:
        """Rows of the layer below ``layer`` known before ``step`` begins."""
        if layer == 0:
            return in_ends[step]
        return ends[layer - 1][step - 1] if step else 0

    steps, block_start = [], first_step
    for step in range(first_step, dim):
        variable = int(ordering[step])
        flush = []
        if (step - first_step) % BLOCK_STEPS == 0:
            block_start, block_end = step, min(step + BLOCK_STEPS, dim)
            for layer, layer_ends in enumerate(ends):
                start = layer_ends[step - 1] if step else 0
                flush.append(
                    (layer, start, layer_ends[block_end - 1], 0, known_at_start(layer, step))
                )
            rows = (out_ends[step], out_ends[block_end])
            flush.append((num_hidden, *rows, 0, known_at_start(num_hidden, step)))
            if backbone.direct is not None:
                flush.append((num_hidden + 1, *rows, 0, in_ends[step]))
        hidden = []
        for layer, layer_ends in enumerate(ends):
            start, end = (layer_ends[step - 1] if step else 0), layer_ends[step]
            if end > start:
                base = known_at_start(layer, block_start)
                hidden.append((layer, start, end, base, known(layer, step)))
        rows = (out_ends[step], out_ends[step + 1])
        output = [
            (num_hidden, *rows, known_at_start(num_hidden, block_start), known(num_hidden, step))
        ]
        if backbone.direct is not None:
            output.append((num_hidden + 1, *rows, in_ends[block_start], in_ends[step]))
        steps.append(
            Step(
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
    input_order = widths.input_units(ordering)
    output_order = widths.output_units(ordering)
    return Plan(
        start=first_step,
        prefix=tuple((*product[:3], product[3].to(device)) for product in prefix),
        steps=tuple(steps),
        input_order=input_order.to(device),
        unit_orders=tuple(order.to(device) for order in unit_orders),
        output_order=output_order.to(device),
        input_ends=in_ends,
        output_ends=out_ends,
        ordering=ordering.to(device),
        degrees=conn.to(device),
        consistent=consistent,
        exact=exact,
    )


def _prefix_products(
    conn: Connectivity,
    unit_orders: list[torch.Tensor],
    ends: list[list[int]],
    in_ends: tuple[int, ...],
    start: int,
) -> tuple[tuple[int, int, int, torch.Tensor], ...]:
    """The products computing every hidden unit of degree < ``start`` (see ``Plan.prefix``).

    Those units read only the given variables, so one product per layer computes them
    all; the rows each unit may read differ, hence the degree mask.
    """
    if start == 0:
        return ()
    products = []
    # The inputs of degree < start, in step order (step t's variable has degree t + 1).
    ends_in_steps = torch.tensor(in_ends[:start], dtype=torch.long)
    counts = ends_in_steps[1:] - ends_in_steps[:-1]
    below = torch.arange(1, start).repeat_interleave(counts)
    for layer, (degrees, order) in enumerate(zip(conn.hidden_degrees, unit_orders)):
        units = ends[layer][start - 1]
        sorted_degrees = degrees[order]
        if units:
            mask = sorted_degrees[:units, None] >= below[None, :]
            products.append((layer, units, below.numel(), mask))
        below = sorted_degrees[:units]
    return tuple(products)
