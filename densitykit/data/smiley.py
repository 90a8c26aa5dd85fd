"""A smiley face drawn as a density on a $K \\times K$ grid.

The face is drawn procedurally in the unit square, so it looks the same at any
grid size: a ring for the outline, two round eyes and a smiling arc, each a soft
stroke whose width never drops below about one cell. A uniform background
carries a small share of the mass, so every cell has positive probability.
"""

from __future__ import annotations

import numpy as np

from densitykit.checks import check_fraction, check_int, check_seed
from densitykit.data.dataset import Dataset
from densitykit.data.pmf import known_pmf_dataset, normalize, sample_cells
from densitykit.data.registry import register
from densitykit.data.splits import (
    SAMPLE_STREAM,
    generator,
)
from densitykit.memory import check_allocation

__all__ = ["BACKGROUND_MASS", "MIN_GRID_SIZE", "smiley_2d", "smiley_probs"]

BACKGROUND_MASS = 0.01
"""Share of the total mass spread uniformly over the grid."""
MIN_GRID_SIZE = 16
"""The smallest grid on which the face is still recognisable."""
MAX_GRID_SIZE = 1024


def _stroke(distance: np.ndarray, width: float) -> np.ndarray:
    """A soft stroke: weight 1 on the line, falling off as a Gaussian of ``distance``."""
    return np.exp(-0.5 * (distance / width) ** 2)


def smiley_probs(grid_size: int) -> np.ndarray:
    """Return the smiley pmf on a ``grid_size x grid_size`` grid (rows top to bottom).

    Args:
        grid_size: $K$, at least [`MIN_GRID_SIZE`][densitykit.data.smiley.MIN_GRID_SIZE].

    Returns:
        ``(K, K)`` ``float64`` probabilities summing to one, all positive.

    Example:
        >>> probs = smiley_probs(16)
        >>> probs.shape, bool(probs.min() > 0), round(float(probs.sum()), 12)
        ((16, 16), True, 1.0)
    """
    centres = (np.arange(grid_size) + 0.5) / grid_size
    y, x = np.meshgrid(centres, centres, indexing="ij")  # y grows downwards, as rows do
    width = max(0.022, 0.5 / grid_size)

    face = _stroke(np.hypot(y - 0.5, x - 0.5) - 0.42, width)
    eyes = sum(
        _stroke(np.maximum(np.hypot(y - 0.36, x - eye_x) - 0.045, 0.0), width)
        for eye_x in (0.34, 0.66)
    )
    # The mouth: the lower part of a circle centred above the middle, from 35 to 145
    # degrees below the horizontal; beyond the ends, the distance to the nearest end.
    cy, cx, radius = 0.42, 0.5, 0.26
    angle = np.degrees(np.arctan2(y - cy, x - cx))
    on_arc = (angle >= 35) & (angle <= 145)
    ends = [
        (cy + radius * np.sin(np.radians(a)), cx + radius * np.cos(np.radians(a)))
        for a in (35, 145)
    ]
    to_end = np.minimum(*(np.hypot(y - ey, x - ex) for ey, ex in ends))
    mouth = _stroke(np.where(on_arc, np.abs(np.hypot(y - cy, x - cx) - radius), to_end), width)

    drawing = normalize(face + 1.5 * eyes + 1.2 * mouth)
    return (1.0 - BACKGROUND_MASS) * drawing + BACKGROUND_MASS / drawing.size


@register("2d-smiley")
def smiley_2d(
    *,
    grid_size: int = 25,
    num_samples: int = 20000,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Dataset:
    """A smiley face on a K x K grid: outline, eyes and mouth, with 1% uniform background.

    ``num_samples`` cells ``(row, col)`` are drawn from the exact pmf; the first
    80 % form the training part (``val_fraction`` of it held out for validation)
    and the last 20 % the test split.

    Args:
        grid_size: $K$, the side of the grid, in ``16..1024``.
        num_samples: Number of cells drawn in all, at least 10.
        val_fraction: Fraction of the training part held out, in ``[0, 1)``;
            ``0.0`` makes the validation split the training split itself.
        seed: Seed of the samples and of the validation split.

    Returns:
        A ``"2d"`` data set with ``num_values=grid_size``, its pmf and exact entropy.

    Example:
        >>> ds = smiley_2d(grid_size=16, num_samples=100)
        >>> ds.kind, ds.shape, ds.dim, len(ds.test)
        ('2d', (16, 16), 2, 20)
    """
    name = "2d-smiley"
    grid_size = check_int(
        grid_size, f"{name}: grid_size", minimum=MIN_GRID_SIZE, maximum=MAX_GRID_SIZE
    )
    num_samples = check_int(num_samples, f"{name}: num_samples", minimum=10)
    val_fraction = check_fraction(val_fraction, f"{name}: val_fraction")
    seed = check_seed(seed, f"{name}: seed")
    check_allocation(num_samples * 64, f"{name} with num_samples={num_samples:,}")

    probs = smiley_probs(grid_size)
    cells = sample_cells(probs, num_samples, generator(seed, SAMPLE_STREAM))
    return known_pmf_dataset(
        name,
        cells,
        probs,
        kind="2d",
        shape=(grid_size, grid_size),
        val_fraction=val_fraction,
        seed=seed,
        options={
            "grid_size": grid_size,
            "num_samples": num_samples,
            "val_fraction": val_fraction,
            "seed": seed,
        },
    )
