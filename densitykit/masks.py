r"""Orderings, degrees and masks: the connectivity of a MADE.

MADE (Germain et al., 2015) makes a feed-forward network autoregressive by
giving every unit a *degree* and zeroing the weights that would break the
ordering:

* input unit of variable $i$: degree $m(i) \in \{1, \dots, D\}$, its position in
  the ordering (the variable sampled first has degree 1);
* hidden unit $k$ of layer $l$: degree $m^l(k) \in \{\min_j m^{l-1}(j), \dots, D-1\}$,
  the largest input degree it may see;
* hidden mask: unit $k$ sees unit $j$ of the layer below iff $m^l(k) \ge m^{l-1}(j)$;
* output mask (strict): the output of variable $d$ sees hidden unit $k$ iff
  $m(d) > m^L(k)$, and, for direct input-to-output connections, input $j$ iff
  $m(d) > m(j)$.

A [`Connectivity`][densitykit.masks.Connectivity] holds the degrees of one mask;
mask builders, registered by name in [`MASKS`][densitykit.masks.MASKS], return a
list of them (several for order/connectivity-agnostic training). A
[`ConnectivitySampler`][densitykit.masks.ConnectivitySampler] draws fresh ones on
demand from a seeded generator (training over all orderings), and
[`observed_first`][densitykit.masks.observed_first] turns any connectivity into the one
a query needs, with the observed variables first.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from densitykit.checks import check_int, check_positive_int, check_seed
from densitykit.registry import Registry

__all__ = [
    "IMAGE_ORDERINGS",
    "MASKS",
    "ORDERINGS",
    "Connectivity",
    "ConnectivitySampler",
    "ConnectivityWarning",
    "OnDemandConnectivities",
    "any_order",
    "check_connectivity",
    "create",
    "explicit_ordering",
    "hidden_degrees",
    "missing_connections",
    "missing_per_output",
    "multi_ordering",
    "names",
    "natural",
    "observed_first",
    "random_ordering",
    "random_region",
    "reachability",
    "region_first_ordering",
    "register",
    "scan_first_ordering",
    "scan_orderings",
]

MASKS: Registry = Registry("mask builder")
"""The registry of mask builders: ``MASKS.create(name, dim=..., hidden_sizes=...)``."""

register = MASKS.register
create = MASKS.create
names = MASKS.names


class ConnectivityWarning(UserWarning):
    """A mask cannot connect every output to all of its predecessors."""


def _as_list(values: object) -> list:
    if isinstance(values, torch.Tensor):
        return values.tolist() if values.ndim == 1 else [values]
    try:
        return list(values)  # type: ignore[call-overload]
    except TypeError:
        return [values]


def _is_int(value: object) -> bool:
    try:
        check_int(value, "value")
    except TypeError:
        return False
    return True


def _check_ordering(ordering: torch.Tensor, dim: int) -> torch.Tensor:
    ordering = torch.as_tensor(ordering, dtype=torch.long).flatten()
    expected = torch.arange(dim, device=ordering.device)
    if ordering.numel() != dim or not torch.equal(torch.sort(ordering).values, expected):
        raise ValueError(
            f"an ordering of {dim} variables must be a permutation of 0..{dim - 1}, "
            f"got {ordering.tolist()}"
        )
    return ordering


@dataclass(frozen=True, eq=False)
class Connectivity:
    """The degrees of one MADE mask.

    Attributes:
        input_degrees: ``(D,)`` long tensor; ``input_degrees[i]`` is the 1-based
            position of variable ``i`` in the ordering.
        hidden_degrees: one ``(H_l,)`` long tensor per hidden layer.

    Example:
        >>> c = Connectivity.from_ordering([2, 0, 1], [[1, 2, 1]])
        >>> c.input_degrees.tolist()       # variable 2 first, then 0, then 1
        [2, 3, 1]
        >>> c.ordering.tolist()
        [2, 0, 1]
        >>> [m.int().tolist() for m in c.layer_masks()][1]   # output mask (D, H)
        [[1, 0, 1], [1, 1, 1], [0, 0, 0]]
    """

    input_degrees: torch.Tensor
    hidden_degrees: tuple[torch.Tensor, ...]

    def __post_init__(self) -> None:
        dim = self.input_degrees.numel()
        _check_ordering(self.input_degrees - 1, dim)
        for layer, degrees in enumerate(self.hidden_degrees):
            if degrees.ndim != 1 or degrees.numel() == 0:
                raise ValueError(
                    f"hidden layer {layer} needs a non-empty 1-D degree tensor, "
                    f"got shape {tuple(degrees.shape)}"
                )
            if degrees.min() < 1 or degrees.max() > max(dim - 1, 1):
                raise ValueError(
                    f"hidden degrees must lie in 1..{max(dim - 1, 1)} for {dim} variables, "
                    f"got layer {layer} in {int(degrees.min())}..{int(degrees.max())}"
                )

    @classmethod
    def from_ordering(
        cls, ordering: Sequence[int] | torch.Tensor, hidden: Sequence[Sequence[int] | torch.Tensor]
    ) -> Connectivity:
        """Build from an ordering (variables in the order they are sampled) and hidden degrees."""
        dim = len(ordering)
        ordering = _check_ordering(torch.as_tensor(ordering), dim)
        input_degrees = torch.empty(dim, dtype=torch.long)
        input_degrees[ordering] = torch.arange(1, dim + 1)
        return cls(input_degrees, tuple(torch.as_tensor(h, dtype=torch.long) for h in hidden))

    @property
    def dim(self) -> int:
        """The number of variables D."""
        return self.input_degrees.numel()

    @property
    def ordering(self) -> torch.Tensor:
        """The variables in the order they are sampled: ``ordering[t]`` is drawn at step ``t``."""
        return torch.argsort(self.input_degrees)

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """Units per hidden layer."""
        return tuple(degrees.numel() for degrees in self.hidden_degrees)

    def to(self, device: torch.device | str) -> Connectivity:
        """The same degrees on ``device`` (masks are then built there)."""
        return Connectivity(
            self.input_degrees.to(device), tuple(h.to(device) for h in self.hidden_degrees)
        )

    def layer_masks(
        self, input_width: int | Sequence[int] = 1, params_per_variable: int | Sequence[int] = 1
    ) -> list[torch.Tensor]:
        """The boolean masks, shaped like ``nn.Linear`` weights ``(out_features, in_features)``.

        Layout: input unit ``i * input_width + w`` belongs to variable ``i``; output
        unit ``i * params_per_variable + p`` is parameter ``p`` of variable ``i``. With
        one width per variable (a sequence), the units of variable ``i`` follow those
        of the variables before it (see [`densitykit.widths`][densitykit.widths]).

        Args:
            input_width: Input units per variable (``K`` for one-hot inputs), or one
                entry per variable.
            params_per_variable: Output units per variable (``P``), or one entry per
                variable.

        Returns:
            One mask per hidden layer followed by the output mask; with no hidden
            layer, the single input-to-output mask (strict rule).
        """
        in_deg = _unit_degrees(self.input_degrees, input_width)
        out_deg = _unit_degrees(self.input_degrees, params_per_variable)
        masks, below = [], in_deg
        for degrees in self.hidden_degrees:
            masks.append(degrees[:, None] >= below[None, :])
            below = degrees
        masks.append(out_deg[:, None] > below[None, :])
        return masks

    def direct_mask(
        self, input_width: int | Sequence[int] = 1, params_per_variable: int | Sequence[int] = 1
    ) -> torch.Tensor:
        """The strict input-to-output mask of direct connections ``(D*P, D*W)`` (widths
        as in ``layer_masks``)."""
        in_deg = _unit_degrees(self.input_degrees, input_width)
        out_deg = _unit_degrees(self.input_degrees, params_per_variable)
        return out_deg[:, None] > in_deg[None, :]


def _unit_degrees(degrees: torch.Tensor, widths: int | Sequence[int]) -> torch.Tensor:
    """Each unit's degree: variable ``i``'s repeated ``widths`` (or ``widths[i]``) times."""
    if isinstance(widths, int):
        return degrees.repeat_interleave(widths)
    return degrees.repeat_interleave(torch.as_tensor(widths, device=degrees.device))


def hidden_degrees(
    dim: int,
    hidden_sizes: Sequence[int],
    *,
    generator: torch.Generator | None = None,
    spread: str = "random",
) -> tuple[torch.Tensor, ...]:
    """Draw the degrees of every hidden layer.

    Each layer's degrees lie in ``[min degree of the layer below, D - 1]`` so that no
    unit is useless (a unit of degree ``D`` could feed no output, and one below the
    previous minimum would see nothing). With ``D = 1`` no unit can be useful; they get
    degree 1 and the output mask cuts them off.

    Args:
        dim: The number of variables D.
        hidden_sizes: Units per hidden layer.
        generator: Random source for ``spread="random"``.
        spread: ``"random"`` (uniform draws, as in the paper) or ``"even"`` (deterministic,
            every admissible degree used as evenly as the width allows).

    Returns:
        One ``(H_l,)`` long tensor per hidden layer.

    Example:
        >>> [d.tolist() for d in hidden_degrees(4, [6, 3], spread="even")]
        [[1, 1, 2, 2, 3, 3], [1, 2, 3]]
    """
    if spread not in ("random", "even"):
        raise ValueError(f"spread must be 'random' or 'even', got {spread!r}")
    layers, low = [], 1
    top = max(dim - 1, 1)
    for size in hidden_sizes:
        if spread == "random":
            degrees = torch.randint(low, top + 1, (size,), generator=generator)
        else:
            degrees = low + (torch.arange(size) * (top - low + 1)) // size
        layers.append(degrees)
        low = int(degrees.min())
    return tuple(layers)


def _check_sizes(dim: int, hidden_sizes: Sequence[int], num_masks: int) -> list[int]:
    check_positive_int(dim, "dim")
    sizes = [check_positive_int(size, "hidden_sizes") for size in hidden_sizes]
    check_positive_int(num_masks, "num_masks")
    return sizes


def _generator(seed: int | None) -> torch.Generator:
    generator = torch.Generator()
    if seed is None:
        generator.seed()
    else:
        generator.manual_seed(check_seed(seed))
    return generator


def _build(
    orderings: Sequence[torch.Tensor],
    hidden_sizes: Sequence[int],
    generator: torch.Generator,
    spread: str,
) -> list[Connectivity]:
    conns = []
    for index, ordering in enumerate(orderings):
        # With even spread, vary connectivity across masks by shuffling unit positions.
        hidden = hidden_degrees(len(ordering), hidden_sizes, generator=generator, spread=spread)
        if spread == "even" and index > 0:
            hidden = tuple(h[torch.randperm(h.numel(), generator=generator)] for h in hidden)
        conns.append(Connectivity.from_ordering(ordering, hidden))
    return conns


@register("natural")
def natural(
    dim: int,
    hidden_sizes: Sequence[int] = (),
    *,
    num_masks: int = 1,
    seed: int | None = 0,
    spread: str = "random",
) -> list[Connectivity]:
    """Variables in index order 0..D-1; several masks differ in hidden connectivity only."""
    sizes = _check_sizes(dim, hidden_sizes, num_masks)
    generator = _generator(seed)
    return _build([torch.arange(dim)] * num_masks, sizes, generator, spread)


@register("random")
def random_ordering(
    dim: int,
    hidden_sizes: Sequence[int] = (),
    *,
    num_masks: int = 1,
    seed: int | None = 0,
    spread: str = "random",
) -> list[Connectivity]:
    """One seeded random ordering; several masks differ in hidden connectivity only."""
    sizes = _check_sizes(dim, hidden_sizes, num_masks)
    generator = _generator(seed)
    ordering = torch.randperm(dim, generator=generator)
    return _build([ordering] * num_masks, sizes, generator, spread)


@register("multi-ordering")
def multi_ordering(
    dim: int,
    hidden_sizes: Sequence[int] = (),
    *,
    num_masks: int = 8,
    seed: int | None = 0,
    spread: str = "random",
) -> list[Connectivity]:
    """K masks, each with its own random ordering and hidden connectivity (order-agnostic)."""
    sizes = _check_sizes(dim, hidden_sizes, num_masks)
    generator = _generator(seed)
    orderings = [torch.randperm(dim, generator=generator) for _ in range(num_masks)]
    return _build(orderings, sizes, generator, spread)


@register("ordering")
def explicit_ordering(
    dim: int,
    hidden_sizes: Sequence[int] = (),
    *,
    ordering: Sequence[int] | None = None,
    num_masks: int = 1,
    seed: int | None = 0,
    spread: str = "random",
) -> list[Connectivity]:
    """A user-given ordering (ordering=[...], the variables in sampling order)."""
    sizes = _check_sizes(dim, hidden_sizes, num_masks)
    if ordering is None:
        raise ValueError(
            "the 'ordering' mask builder needs ordering=[...], a permutation of 0..D-1"
        )
    if isinstance(ordering, (str, bytes)) or not all(_is_int(v) for v in _as_list(ordering)):
        raise ValueError(
            f"ordering must be a list of integers, a permutation of 0..{dim - 1}, got {ordering!r}"
        )
    order = _check_ordering(torch.as_tensor(_as_list(ordering)), dim)
    generator = _generator(seed)
    return _build([order] * num_masks, sizes, generator, spread)


def observed_first(connectivity: Connectivity, observed: torch.Tensor) -> Connectivity:
    """The connectivity with the observed variables moved to the front of the ordering.

    The observed variables keep their relative order, then the missing ones keep
    theirs; the hidden degrees are kept. Under the result, the first ``|observed|``
    conditionals give $\\log p(x_\\text{observed})$ and the rest
    $\\log p(x_\\text{missing} \\mid x_\\text{observed})$.

    Args:
        connectivity: The connectivity to start from.
        observed: ``(D,)`` bool, true for the observed variables.

    Returns:
        A new [`Connectivity`][densitykit.masks.Connectivity].

    Raises:
        TypeError: If ``observed`` is not a bool tensor.
        ValueError: If it is not of shape ``(D,)``.

    Example:
        >>> c = Connectivity.from_ordering([0, 1, 2, 3], [[1, 2, 3]])
        >>> observed_first(c, torch.tensor([False, True, False, True])).ordering.tolist()
        [1, 3, 0, 2]
    """
    if not isinstance(observed, torch.Tensor) or observed.dtype != torch.bool:
        raise TypeError(f"observed must be a bool tensor, got {_describe(observed)}")
    if tuple(observed.shape) != (connectivity.dim,):
        raise ValueError(
            f"observed must have shape ({connectivity.dim},), got {tuple(observed.shape)}"
        )
    ordering = connectivity.ordering
    seen = observed.to(ordering.device)[ordering]
    # A stable sort on "missing" keeps each group's relative order.
    moved = ordering[torch.sort((~seen).to(torch.uint8), stable=True).indices]
    return Connectivity.from_ordering(moved, connectivity.hidden_degrees)


def _describe(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor"
    return type(value).__name__


ORDERINGS: tuple[str, ...] = ("uniform", "regions", "scans")
"""The ordering distributions of a [`ConnectivitySampler`][densitykit.masks.ConnectivitySampler]."""


def _check_image_shape(
    image_shape: object, dim: int | None = None, orderings: str | None = None
) -> tuple[int, int]:
    """``(H, W)`` from a pair or a string such as ``"28x28"``; with ``dim``, ``H * W = D``."""
    sizes = None
    if isinstance(image_shape, str):
        parsed = re.fullmatch(r"\s*(\d+)\s*[x,]\s*(\d+)\s*", image_shape.lower())
        sizes = [int(size) for size in parsed.groups()] if parsed else None
    elif image_shape is not None:
        sizes = _as_list(image_shape)
    if (
        sizes is None
        or len(sizes) != 2
        or not all(_is_int(size) and int(size) > 0 for size in sizes)
        or (dim is not None and int(sizes[0]) * int(sizes[1]) != dim)
    ):
        if dim is None:
            raise ValueError(
                "image_shape must be two positive sizes (H, W), e.g. [28, 28] or '28x28'; "
                f"got {image_shape!r}"
            )
        raise ValueError(
            f"orderings={orderings!r} needs image_shape: two positive sizes (H, W) with "
            f"H * W = D = {dim}, e.g. [28, 28] or '28x28'; got {image_shape!r}"
        )
    return int(sizes[0]), int(sizes[1])


def random_region(
    image_shape: Sequence[int], generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random region of an ``H x W`` image, for region-first orderings.

    With chance 1/2 the pixels on one side of a line at a uniform angle, holding a
    uniform 5 % to 95 % of the image (a half-plane; pixels on the line are split at
    random); with chance 1/4 an axis-aligned rectangle of uniform corners; with chance
    1/4 the outside of one.

    Args:
        image_shape: ``(H, W)`` (or a string such as ``"28x28"``); pixels are numbered
            in raster order.
        generator: Random source.

    Returns:
        A ``(H * W,)`` bool tensor, true on the region.

    Raises:
        ValueError: If ``image_shape`` is not two positive sizes.

    Example:
        >>> random_region((3, 4), torch.Generator().manual_seed(0)).view(3, 4).int().tolist()
        [[1, 1, 1, 1], [1, 0, 0, 0], [1, 1, 1, 1]]
    """
    height, width = _check_image_shape(image_shape)
    dim = height * width
    choice, angle, share = torch.rand(3, generator=generator, dtype=torch.float64).tolist()
    if choice < 0.5:
        rows = torch.arange(height, dtype=torch.float64) - (height - 1) / 2
        cols = torch.arange(width, dtype=torch.float64) - (width - 1) / 2
        theta = 2 * math.pi * angle
        side = (rows[:, None] * math.cos(theta) + cols[None, :] * math.sin(theta)).reshape(-1)
        side = side + 1e-6 * torch.rand(dim, generator=generator, dtype=torch.float64)
        region = torch.zeros(dim, dtype=torch.bool)
        region[torch.argsort(side)[: max(1, round((0.05 + 0.9 * share) * dim))]] = True
        return region
    top, bottom = torch.randint(height, (2,), generator=generator).sort().values.tolist()
    left, right = torch.randint(width, (2,), generator=generator).sort().values.tolist()
    box = torch.zeros(height, width, dtype=torch.bool)
    box[top : bottom + 1, left : right + 1] = True
    return box.reshape(-1) if choice < 0.75 else ~box.reshape(-1)


def region_first_ordering(
    image_shape: Sequence[int], generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random ordering of an image's pixels that puts a random region first.

    The region is a [`random_region`][densitykit.masks.random_region]; its pixels
    come first and the others after, each part in uniform random order. Every
    ordering is possible, and the prefixes include the contiguous observed sets an
    inpainting query meets (an image's top or left part, a box, the outside of a box),
    which uniform orderings almost never make.

    Args:
        image_shape: ``(H, W)``, as for ``random_region``.
        generator: Random source.

    Returns:
        A ``(H * W,)`` long permutation.

    Example:
        >>> ordering = region_first_ordering((3, 4), torch.Generator().manual_seed(0))
        >>> ordering[:9].sort().values.tolist()  # the outside of a box first
        [0, 1, 2, 3, 4, 8, 9, 10, 11]
    """
    region = random_region(image_shape, generator)
    first, rest = torch.nonzero(region).flatten(), torch.nonzero(~region).flatten()
    first = first[torch.randperm(first.numel(), generator=generator)]
    rest = rest[torch.randperm(rest.numel(), generator=generator)]
    return torch.cat([first, rest])


def scan_orderings(image_shape: Sequence[int] | str) -> torch.Tensor:
    """The 8 scan orders of an ``H x W`` image: row by row or column by column, each
    axis forwards or backwards.

    Row 0 is the raster order (row by row, each left to right: the natural ordering
    of the pixels), row 4 the column-major order (column by column, each top to
    bottom). Row ``k`` flips the rows if bit 1 of ``k`` is set, the columns if bit 0
    is, and goes column by column if bit 2 is.

    Args:
        image_shape: ``(H, W)`` (or a string such as ``"28x28"``); pixels are numbered
            in raster order.

    Returns:
        An ``(8, H * W)`` long tensor, one permutation per row.

    Raises:
        ValueError: If ``image_shape`` is not two positive sizes.

    Example:
        >>> scan_orderings((2, 3))[[0, 3, 4]].tolist()
        [[0, 1, 2, 3, 4, 5], [5, 4, 3, 2, 1, 0], [0, 3, 1, 4, 2, 5]]
    """
    height, width = _check_image_shape(image_shape)
    return torch.stack([_scan(height, width, code) for code in range(8)])


def _scan(height: int, width: int, code: int) -> torch.Tensor:
    """Scan ``code`` of ``scan_orderings``: bit 2 columns first, bit 1 rows backwards,
    bit 0 columns backwards."""
    grid = torch.arange(height * width).view(height, width)
    grid = grid.flip(0) if code & 2 else grid
    grid = grid.flip(1) if code & 1 else grid
    return (grid.t() if code & 4 else grid).reshape(-1)


def scan_first_ordering(
    image_shape: Sequence[int] | str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """A random scan order of an image's pixels, often with a random set of them first.

    One of the 8 [`scan_orderings`][densitykit.masks.scan_orderings], drawn
    uniformly. With chance 1/2 that is the ordering; otherwise a random set of pixels
    comes first and the rest after, each part in that scan order. The set is, with
    chance 1/2, a [`random_region`][densitykit.masks.random_region], and otherwise
    every pixel independently with a rate drawn uniformly from ``[0, 1)``.

    Under a scan order each pixel is predicted from the pixels before it in reading
    order, as in a natural-order model. Moving a set first gives the orderings an
    inpainting query asks: the observed pixels, then the missing ones in scan order.

    Args:
        image_shape: ``(H, W)``, as for ``scan_orderings``.
        generator: Random source.

    Returns:
        A ``(H * W,)`` long permutation.

    Example:
        >>> ordering = scan_first_ordering((3, 4), torch.Generator().manual_seed(1))
        >>> ordering.tolist()  # column by column, right to left, each top to bottom
        [3, 7, 11, 2, 6, 10, 1, 5, 9, 0, 4, 8]
    """
    height, width = _check_image_shape(image_shape)
    scan = _scan(height, width, int(torch.randint(8, (), generator=generator)))
    kind = float(torch.rand((), generator=generator, dtype=torch.float64))
    if kind < 0.5:
        return scan
    if kind < 0.75:
        first = random_region((height, width), generator)
    else:
        rate = float(torch.rand((), generator=generator, dtype=torch.float64))
        first = torch.rand(height * width, generator=generator, dtype=torch.float64) < rate
    # A stable sort on "not first" keeps the scan order within each part.
    return scan[torch.sort((~first[scan]).to(torch.uint8), stable=True).indices]


# Per ordering distribution drawn on an image: its share option and its draw.
_IMAGE_DRAWS = {
    "regions": ("region_share", region_first_ordering),
    "scans": ("scan_share", scan_first_ordering),
}

IMAGE_ORDERINGS: tuple[str, ...] = tuple(_IMAGE_DRAWS)
"""The ordering distributions drawn on an image, which need its ``image_shape``."""


def _share(value: object, name: str, owner: str, orderings: str) -> float | None:
    """The share option ``name`` of the orderings ``owner``: ``None`` for other orderings."""
    if orderings != owner:
        if value is not None:
            raise ValueError(
                f"{name} is for orderings={owner!r}; these orderings are {orderings!r}"
            )
        return None
    if value is None:
        return 0.5
    if isinstance(value, bool) or not (isinstance(value, (int, float)) and 0 <= value <= 1):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


class ConnectivitySampler:
    """A seeded source of fresh connectivities: a random ordering and hidden degrees per draw.

    Drawing one per training step trains a MADE over all $D!$ orderings (the
    order-agnostic training of Germain et al., 2015, section 3.3). Nothing is kept
    per draw: the generator's state is the whole state, saved and restored with
    ``state_dict`` / ``load_state_dict``.

    The orderings are uniform by default. Uniform orderings put a uniformly random
    subset of the pixels first, so a model trained on them alone rarely meets a
    contiguous observed part (an image's top half, a box). ``orderings="regions"``
    draws, with chance ``region_share``, a
    [`region_first_ordering`][densitykit.masks.region_first_ordering] of the
    ``image_shape`` image instead: still every ordering, weighted towards those an
    inpainting query asks. ``orderings="scans"`` draws, with chance ``scan_share``, a
    [`scan_first_ordering`][densitykit.masks.scan_first_ordering]: a scan order of
    the image (row by row or column by column), often after a random set of pixels.
    The rest are uniform, so every ordering stays possible.

    Args:
        dim: The number of variables D.
        hidden_sizes: Units per hidden layer.
        seed: Seed of the generator (``None`` for a non-deterministic one).
        spread: Hidden degrees ``"random"`` or ``"even"`` (then shuffled across units),
            as in [`hidden_degrees`][densitykit.masks.hidden_degrees].
        orderings: One of [`ORDERINGS`][densitykit.masks.ORDERINGS].
        image_shape: ``(H, W)`` with ``H * W = D``, for the orderings of
            [`IMAGE_ORDERINGS`][densitykit.masks.IMAGE_ORDERINGS] (a list, or a string
            such as ``"28x28"``).
        region_share: With ``orderings="regions"``, the chance of a region-first
            ordering, in ``[0, 1]`` (``None``: 0.5). Refused with other orderings.
        scan_share: With ``orderings="scans"``, the chance of a scan ordering, in
            ``[0, 1]`` (``None``: 0.5). Refused with other orderings.

    Example:
        >>> source = ConnectivitySampler(4, [8], seed=0)
        >>> state = source.state_dict()
        >>> first = source.draw()
        >>> source.load_state_dict(state)
        >>> torch.equal(source.draw().input_degrees, first.input_degrees)
        True
        >>> regions = ConnectivitySampler(784, [500], orderings="regions", image_shape=(28, 28))
        >>> regions.draw().ordering.shape
        torch.Size([784])
    """

    def __init__(
        self,
        dim: int,
        hidden_sizes: Sequence[int] = (),
        *,
        seed: int | None = 0,
        spread: str = "random",
        orderings: str = "uniform",
        image_shape: Sequence[int] | str | None = None,
        region_share: float | None = None,
        scan_share: float | None = None,
    ) -> None:
        self.dim = check_positive_int(dim, "dim")
        self.hidden_sizes = tuple(check_positive_int(s, "hidden_sizes") for s in hidden_sizes)
        if spread not in ("random", "even"):
            raise ValueError(f"spread must be 'random' or 'even', got {spread!r}")
        if orderings not in ORDERINGS:
            raise ValueError(
                f"orderings must be one of {', '.join(map(repr, ORDERINGS))}, got {orderings!r}"
            )
        if orderings in IMAGE_ORDERINGS:
            image_shape = _check_image_shape(image_shape, self.dim, orderings)
        elif image_shape is not None:
            raise ValueError(
                f"image_shape is for orderings {' or '.join(map(repr, IMAGE_ORDERINGS))}; "
                f"these orderings are {orderings!r}"
            )
        self.spread = spread
        self.orderings = orderings
        self.image_shape = image_shape  # None unless orderings in IMAGE_ORDERINGS
        self.region_share = _share(region_share, "region_share", "regions", orderings)
        self.scan_share = _share(scan_share, "scan_share", "scans", orderings)
        self.generator = _generator(seed)

    def reseeded(self, seed: int | None) -> ConnectivitySampler:
        """A new source of the same distribution, with its own generator seeded ``seed``."""
        return ConnectivitySampler(
            self.dim,
            self.hidden_sizes,
            seed=seed,
            spread=self.spread,
            orderings=self.orderings,
            **self._image_options(),
        )

    def _image_options(self) -> dict[str, object]:
        """``image_shape`` and the share option of orderings drawn on an image, else ``{}``."""
        if self.orderings not in _IMAGE_DRAWS:
            return {}
        share = _IMAGE_DRAWS[self.orderings][0]
        return {"image_shape": self.image_shape, share: getattr(self, share)}

    def draw_ordering(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """An ordering ``(D,)`` of this source's distribution, drawn from ``generator``
        (the source's own by default), without hidden degrees.

        Example:
            >>> source = ConnectivitySampler(6, orderings="scans", image_shape=(2, 3))
            >>> sorted(source.draw_ordering(torch.Generator().manual_seed(0)).tolist())
            [0, 1, 2, 3, 4, 5]
        """
        generator = self.generator if generator is None else generator
        share, first = _IMAGE_DRAWS.get(self.orderings, (None, None))
        if share is not None and (
            float(torch.rand((), generator=generator, dtype=torch.float64)) < getattr(self, share)
        ):
            return first(self.image_shape, generator)
        return torch.randperm(self.dim, generator=generator)

    def draw(self) -> Connectivity:
        """A fresh connectivity: a new ordering and new hidden degrees."""
        ordering = self.draw_ordering()
        hidden = hidden_degrees(
            self.dim, self.hidden_sizes, generator=self.generator, spread=self.spread
        )
        if self.spread == "even":
            hidden = tuple(h[torch.randperm(h.numel(), generator=self.generator)] for h in hidden)
        return Connectivity.from_ordering(ordering, hidden)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The generator's state: ``{"generator": ByteTensor}``."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Restore the generator's state from ``state_dict`` output."""
        self.generator.set_state(state["generator"].to("cpu", torch.uint8))

    def __repr__(self) -> str:
        image = "".join(f", {name}={value}" for name, value in self._image_options().items())
        return (
            f"ConnectivitySampler(dim={self.dim}, hidden_sizes={self.hidden_sizes}, "
            f"spread={self.spread!r}, orderings={self.orderings!r}{image})"
        )


class OnDemandConnectivities(list):
    """A mask builder's fixed connectivities plus a source of fresh ones for training.

    The list (the evaluation mixture) is what a MADE is built with; ``source`` draws
    a new connectivity at every training step.
    """

    def __init__(self, connectivities: Sequence[Connectivity], source: ConnectivitySampler):
        super().__init__(connectivities)
        self.source = source


@register("any-order")
def any_order(
    dim: int,
    hidden_sizes: Sequence[int] = (),
    *,
    num_masks: int = 8,
    seed: int | None = 0,
    spread: str = "random",
    orderings: str = "uniform",
    image_shape: Sequence[int] | str | None = None,
    region_share: float | None = None,
    scan_share: float | None = None,
) -> OnDemandConnectivities:
    """Training over all orderings: a fresh ordering and connectivity at every step.

    A [`ConnectivitySampler`][densitykit.masks.ConnectivitySampler] seeded from
    ``seed`` draws the training ones; ``orderings``, ``image_shape``,
    ``region_share`` and ``scan_share`` choose its distribution (uniform orderings by
    default; ``"regions"``: part of them put a random image region first; ``"scans"``:
    part of them are scan orders of the image, often after a random set of pixels;
    the arguments are those of ``ConnectivitySampler``). The ``num_masks`` seeded
    connectivities of the evaluation mixture come from the same distribution (with
    uniform orderings, those of ``multi-ordering``), so evaluation is reproducible.

    Example:
        >>> conns = any_order(784, [500], num_masks=4, orderings="regions",
        ...                   image_shape="28x28")
        >>> len(conns), conns.source.orderings
        (4, 'regions')
    """
    sizes = _check_sizes(dim, hidden_sizes, num_masks)
    source_seed = None
    if seed is not None:
        # A stream apart from the stack's, still fixed by ``seed``.
        source_seed = int(torch.randint(2**62, (1,), generator=_generator(seed + 1)))
    source = ConnectivitySampler(
        dim,
        sizes,
        seed=source_seed,
        spread=spread,
        orderings=orderings,
        image_shape=image_shape,
        region_share=region_share,
        scan_share=scan_share,
    )
    if source.orderings == "uniform":
        stack = multi_ordering(dim, sizes, num_masks=num_masks, seed=seed, spread=spread)
    else:
        stack_source = source.reseeded(seed)
        stack = [stack_source.draw() for _ in range(num_masks)]
    return OnDemandConnectivities(stack, source)


def reachability(connectivity: Connectivity, *, direct: bool = False) -> torch.Tensor:
    """Which inputs each output can reach through the product of the masks.

    Args:
        connectivity: The degrees of one mask.
        direct: Whether direct input-to-output connections are present.

    Returns:
        A ``(D, D)`` bool tensor: ``[d, i]`` is true iff some path of unmasked weights
        leads from input ``i`` to the output of variable ``d``.

    Example:
        >>> c = Connectivity.from_ordering([0, 1, 2], [[1, 2]])
        >>> reachability(c).int().tolist()
        [[0, 0, 0], [1, 0, 0], [1, 1, 0]]
    """
    masks = connectivity.layer_masks()
    # float32 matmul is exact here: entries are clamped to {0, 1} after every product.
    reach = masks[0].to(torch.float32)
    for mask in masks[1:]:
        reach = (mask.to(torch.float32) @ reach).clamp(max=1.0)
    reach = reach.bool()
    if direct and connectivity.hidden_degrees:
        reach = reach | connectivity.direct_mask()
    return reach


def missing_connections(connectivity: Connectivity, *, direct: bool = False) -> torch.Tensor:
    """The allowed dependencies the mask fails to realise.

    Returns:
        A ``(D, D)`` bool tensor, true where input ``i`` precedes output ``d`` in the
        ordering but no path connects them.
    """
    allowed = connectivity.direct_mask()
    return allowed & ~reachability(connectivity, direct=direct)


def missing_per_output(connectivity: Connectivity, *, direct: bool = False) -> torch.Tensor:
    r"""How many allowed dependencies each output misses, from the degrees alone.

    The same counts as ``missing_connections(connectivity, direct=direct).sum(-1)``,
    computed in $O((D + H) \log(D + H))$ memory and time instead of a ``(D, D)``
    matrix, so it stays cheap for any ``D``. A unit of degree ``m`` reaches through
    the masks the inputs of degree at most a threshold ``R(m)``: ``m`` itself in the
    first hidden layer, the largest threshold of the units of degree ``<= m`` below
    it in a higher one; an output of degree ``k`` reaches the inputs of degree at
    most the largest threshold of the units of degree ``< k`` in the last layer, and
    misses the other ``k - 1 - T(k)`` of its ``k - 1`` predecessors.

    Returns:
        A ``(D,)`` long tensor: entry ``d`` counts the inputs before output ``d`` in
        the ordering that no path reaches.

    Example:
        >>> c = Connectivity.from_ordering([0, 1, 2, 3], [[1, 1], [2, 3]])
        >>> missing_per_output(c).tolist()
        [0, 1, 1, 2]
    """
    degrees = connectivity.input_degrees
    if direct or not connectivity.hidden_degrees:
        return torch.zeros_like(degrees)
    below = connectivity.hidden_degrees[0]
    reach = below  # inputs are a permutation of 1..D: a first-layer unit of degree m sees m
    for layer in connectivity.hidden_degrees[1:]:
        reach = _largest_reach(below, reach, layer, strict=False)
        below = layer
    top = _largest_reach(below, reach, degrees, strict=True)
    return (degrees - 1 - top).clamp(min=0)


def _largest_reach(
    degrees: torch.Tensor, reach: torch.Tensor, queries: torch.Tensor, *, strict: bool
) -> torch.Tensor:
    """For each query degree, the largest ``reach`` of the units of degree ``<= q`` (``< q``
    if ``strict``), 0 where there is none."""
    order = torch.argsort(degrees)
    best = torch.cummax(reach[order], dim=0).values
    count = torch.searchsorted(degrees[order], queries, right=not strict)
    padded = torch.cat([best.new_zeros(1), best])
    return padded[count]


def check_connectivity(
    connectivities: Sequence[Connectivity], *, direct: bool = False, warn: bool = True
) -> list[str]:
    """Report the masks that cannot connect every output to all its predecessors.

    A hidden layer narrower than ``D - 1`` units cannot hold every degree, so some
    output of degree ``d`` finds no unit of degree ``d - 1`` and loses the input
    just before it. Random degrees in wide layers can also miss a degree by chance.

    Args:
        connectivities: The masks to check.
        direct: Whether direct connections fill the gaps.
        warn: Emit a [`ConnectivityWarning`][densitykit.masks.ConnectivityWarning] with the report.

    Returns:
        One line per deficient mask (empty if every mask is complete).
    """
    problems = []
    for index, conn in enumerate(connectivities):
        # Counted from the degrees: a (D, D) reachability matrix grows with D^2.
        missing = missing_per_output(conn, direct=direct)
        if bool(missing.any()):
            narrow = [
                f"layer {layer} has {h.numel()} units"
                for layer, h in enumerate(conn.hidden_degrees)
                if h.numel() < conn.dim - 1
            ]
            reason = (
                f" ({'; '.join(narrow)} but {conn.dim - 1} degrees are needed)" if narrow else ""
            )
            problems.append(
                f"mask {index}: {int(missing.sum())} of {conn.dim * (conn.dim - 1) // 2} allowed "
                f"input->output dependencies are unreachable{reason}"
            )
    if problems and warn:
        warnings.warn(
            "MADE connectivity is incomplete: "
            + "; ".join(problems[:3])
            + (f"; and {len(problems) - 3} more masks" if len(problems) > 3 else ""),
            ConnectivityWarning,
            stacklevel=3,
        )
    return problems
