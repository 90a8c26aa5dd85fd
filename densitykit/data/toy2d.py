r"""Two-dimensional real data sets as the flow papers show them.

Five point clouds in the plane, drawn as in FFJORD's ``toy_data.py`` (Grathwohl et al.,
2019) with NumPy generators seeded by ``seed``, each a table of two real columns ``x``
and ``y`` (see [`densitykit.data.tables`][densitykit.data.tables]): the model sees them
standardised with the training split's statistics, and its log-densities are reported
in the plane's own units.

| name | what | exact log-density |
| --- | --- | --- |
| ``moons`` | two interleaved half circles with Gaussian noise 0.1, scaled by 2 | no |
| ``8gaussians`` | 8 equal Gaussians on a circle of radius $4/\sqrt2$, std $0.5/\sqrt2$ | yes |
| ``checkerboard`` | uniform on the 8 dark squares of a $4 \times 4$ board on $[-4, 4]^2$ | yes |
| ``pinwheel`` | 5 spiral arms (radial std 0.3, tangential std 0.1, rate 0.25), scaled by 2 | no |
| ``rings`` | 4 rings of radius 1, 2, 3, 4, radial Gaussian noise 0.1, equal weights | yes |

``rings`` is defined here as a mixture: a ring's point is $\rho(\cos\theta, \sin\theta)$
with $\theta$ uniform and $\rho \sim \mathcal N(r_k, \sigma^2)$, so a point at distance
$s$ from the origin has density $\frac1K \sum_k \frac{\mathcal N(s; r_k, \sigma^2) +
\mathcal N(-s; r_k, \sigma^2)}{2 \pi s}$ (a negative $\rho$ lands on the other side).

The test split is its own draw (``num_samples // 4`` points, a stream apart from the
training draw), and the validation split a ``val_fraction`` of the training draw.

Example:
    >>> from densitykit.data import load_dataset
    >>> ds = load_dataset("8gaussians", num_samples=400, seed=1)
    >>> ds.kind, ds.table.names, len(ds.train) + len(ds.val), len(ds.test)
    ('table', ('x', 'y'), 400, 100)
    >>> float(ds.true_log_density(np.zeros((1, 2)))[0]) < -10  # the centre is empty
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from densitykit.checks import check_fraction, check_int, check_seed
from densitykit.data.dataset import Dataset
from densitykit.data.files import table_dataset
from densitykit.data.registry import register
from densitykit.data.splits import carve_validation, generator

__all__ = [
    "NAMES",
    "checkerboard",
    "draw",
    "eight_gaussians",
    "moons",
    "pinwheel",
    "rings",
    "true_log_density",
]

NAMES: tuple[str, ...] = ("moons", "8gaussians", "checkerboard", "pinwheel", "rings")
"""The registered 2-D real data sets."""

_EIGHT_SCALE = 4.0 / math.sqrt(2.0)
_EIGHT_STD = 0.5 / math.sqrt(2.0)
_RING_RADII = (1.0, 2.0, 3.0, 4.0)
_RING_STD = 0.1
_TRAIN_STREAM, _TEST_STREAM, _VAL_STREAM = 11, 12, 13


def _moons(rng: np.random.Generator, n: int) -> np.ndarray:
    outer = n // 2
    t = rng.uniform(0.0, math.pi, n)
    points = np.where(
        (np.arange(n) < outer)[:, None],
        np.column_stack([np.cos(t), np.sin(t)]),
        np.column_stack([1.0 - np.cos(t), 0.5 - np.sin(t)]),
    )
    points += rng.normal(0.0, 0.1, (n, 2))
    return rng.permutation(points * 2.0 + np.array([-1.0, -0.2]))


def _eight_centres() -> np.ndarray:
    angles = np.arange(8) * (math.pi / 4)
    return np.column_stack([np.cos(angles), np.sin(angles)]) * _EIGHT_SCALE


def _eight_gaussians(rng: np.random.Generator, n: int) -> np.ndarray:
    centres = _eight_centres()[rng.integers(0, 8, n)]
    return centres + rng.normal(0.0, _EIGHT_STD, (n, 2))


def _checkerboard(rng: np.random.Generator, n: int) -> np.ndarray:
    x1 = rng.uniform(0.0, 4.0, n) - 2.0
    x2 = rng.uniform(0.0, 1.0, n) - rng.integers(0, 2, n) * 2.0
    x2 = x2 + np.floor(x1) % 2
    return np.column_stack([x1, x2]) * 2.0


def _pinwheel(rng: np.random.Generator, n: int) -> np.ndarray:
    arms, rate = 5, 0.25
    labels = rng.integers(0, arms, n)
    features = rng.normal(0.0, 1.0, (n, 2)) * np.array([0.3, 0.1])
    features[:, 0] += 1.0
    angles = labels * (2 * math.pi / arms) + rate * np.exp(features[:, 0])
    cos, sin = np.cos(angles), np.sin(angles)
    rotated = np.column_stack(
        [features[:, 0] * cos - features[:, 1] * sin, features[:, 0] * sin + features[:, 1] * cos]
    )
    return 2.0 * rotated


def _rings(rng: np.random.Generator, n: int) -> np.ndarray:
    radii = np.asarray(_RING_RADII)[rng.integers(0, len(_RING_RADII), n)]
    rho = radii + rng.normal(0.0, _RING_STD, n)
    theta = rng.uniform(0.0, 2 * math.pi, n)
    return np.column_stack([rho * np.cos(theta), rho * np.sin(theta)])


def _normal_log_pdf(x: np.ndarray, mean: np.ndarray | float, std: float) -> np.ndarray:
    return -0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)


def _eight_log_density(points: np.ndarray) -> np.ndarray:
    per_centre = _normal_log_pdf(points[:, None, :], _eight_centres()[None], _EIGHT_STD).sum(-1)
    top = per_centre.max(axis=1)
    return top + np.log(np.exp(per_centre - top[:, None]).mean(axis=1))


def _checkerboard_log_density(points: np.ndarray) -> np.ndarray:
    x1, x2 = points[:, 0] / 2.0, points[:, 1] / 2.0  # the board before the scaling by 2
    inside = (np.abs(x1) <= 2.0) & (np.abs(x2) <= 2.0)
    dark = (np.floor(x1) % 2) == (np.floor(x2) % 2)  # the squares a draw lands on
    # 8 squares of side 2 after the scaling: an area of 32.
    return np.where(inside & dark, -math.log(32.0), -np.inf)


def _rings_log_density(points: np.ndarray) -> np.ndarray:
    s = np.maximum(np.hypot(points[:, 0], points[:, 1]), 1e-300)
    total = np.zeros_like(s)
    for radius in _RING_RADII:
        total += np.exp(_normal_log_pdf(s, radius, _RING_STD))
        total += np.exp(_normal_log_pdf(-s, radius, _RING_STD))
    with np.errstate(divide="ignore"):  # far from every ring the density underflows to 0
        return np.log(total / len(_RING_RADII)) - np.log(2 * math.pi * s)


_DRAWS: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "moons": _moons,
    "8gaussians": _eight_gaussians,
    "checkerboard": _checkerboard,
    "pinwheel": _pinwheel,
    "rings": _rings,
}
_LOG_DENSITIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "8gaussians": _eight_log_density,
    "checkerboard": _checkerboard_log_density,
    "rings": _rings_log_density,
}


def draw(name: str, num_samples: int, seed: int = 0) -> np.ndarray:
    """``num_samples`` points ``(N, 2)`` float64 of the data set ``name``.

    Raises:
        ValueError: If ``name`` is not one of [`NAMES`][densitykit.data.toy2d.NAMES].

    Example:
        >>> draw("checkerboard", 5, seed=0).shape
        (5, 2)
    """
    if name not in _DRAWS:
        raise ValueError(f"name must be one of {', '.join(NAMES)}, got {name!r}")
    return _DRAWS[name](generator(seed, _TRAIN_STREAM), check_int(num_samples, "num_samples"))


def true_log_density(name: str) -> Callable[[np.ndarray], np.ndarray] | None:
    """The exact log-density of ``name`` in the plane's units, as a function of ``(N, 2)``
    points, or ``None`` where it is not known in closed form (``moons``, ``pinwheel``).

    Example:
        >>> round(float(true_log_density("checkerboard")(np.array([[0.5, 0.5]]))[0]), 4)
        -3.4657
    """
    return _LOG_DENSITIES.get(name)


def _build(
    name: str, num_samples: int, val_fraction: float, seed: int, table: dict[str, Any] | None
) -> Dataset:
    num_samples = check_int(num_samples, f"{name}: num_samples", minimum=8)
    val_fraction = check_fraction(val_fraction, f"{name}: val_fraction")
    seed = check_seed(seed, f"{name}: seed")
    pool = _DRAWS[name](generator(seed, _TRAIN_STREAM), num_samples)
    test = _DRAWS[name](generator(seed, _TEST_STREAM), max(num_samples // 4, 2))
    train, val = carve_validation(
        pool, val_fraction=val_fraction, rng=generator(seed, _VAL_STREAM), max_train=None
    )
    return table_dataset(
        name,
        (train, val, test),
        ["x", "y"],
        where=name,
        columns="real,real",
        table=table,
        options={"num_samples": num_samples, "val_fraction": val_fraction, "seed": seed},
        true_log_density=true_log_density(name),
    )


@register("moons")
def moons(
    *,
    num_samples: int = 10_000,
    val_fraction: float = 0.1,
    seed: int = 0,
    table: dict[str, Any] | None = None,
) -> Dataset:
    """Two interleaved half moons in the plane (real x, y), seeded.

    Args:
        num_samples: Points of the training draw (the test draw has a quarter as many).
        val_fraction: Share of the training draw held out for validation.
        seed: Seed of the draws.
        table: The columns' recorded standardisation (a run keeps it); ``None``
            computes it on the training split.
    """
    return _build("moons", num_samples, val_fraction, seed, table)


@register("8gaussians")
def eight_gaussians(
    *,
    num_samples: int = 10_000,
    val_fraction: float = 0.1,
    seed: int = 0,
    table: dict[str, Any] | None = None,
) -> Dataset:
    """Eight Gaussians on a circle (real x, y), seeded; exact log-density known.

    Args:
        num_samples: Points of the training draw (the test draw has a quarter as many).
        val_fraction: Share of the training draw held out for validation.
        seed: Seed of the draws.
        table: The columns' recorded standardisation (a run keeps it); ``None``
            computes it on the training split.
    """
    return _build("8gaussians", num_samples, val_fraction, seed, table)


@register("checkerboard")
def checkerboard(
    *,
    num_samples: int = 10_000,
    val_fraction: float = 0.1,
    seed: int = 0,
    table: dict[str, Any] | None = None,
) -> Dataset:
    """A checkerboard of uniform squares (real x, y), seeded; exact log-density known.

    Args:
        num_samples: Points of the training draw (the test draw has a quarter as many).
        val_fraction: Share of the training draw held out for validation.
        seed: Seed of the draws.
        table: The columns' recorded standardisation (a run keeps it); ``None``
            computes it on the training split.
    """
    return _build("checkerboard", num_samples, val_fraction, seed, table)


@register("pinwheel")
def pinwheel(
    *,
    num_samples: int = 10_000,
    val_fraction: float = 0.1,
    seed: int = 0,
    table: dict[str, Any] | None = None,
) -> Dataset:
    """Five spiral arms of a pinwheel (real x, y), seeded.

    Args:
        num_samples: Points of the training draw (the test draw has a quarter as many).
        val_fraction: Share of the training draw held out for validation.
        seed: Seed of the draws.
        table: The columns' recorded standardisation (a run keeps it); ``None``
            computes it on the training split.
    """
    return _build("pinwheel", num_samples, val_fraction, seed, table)


@register("rings")
def rings(
    *,
    num_samples: int = 10_000,
    val_fraction: float = 0.1,
    seed: int = 0,
    table: dict[str, Any] | None = None,
) -> Dataset:
    """Four concentric noisy rings (real x, y), seeded; exact log-density known.

    Args:
        num_samples: Points of the training draw (the test draw has a quarter as many).
        val_fraction: Share of the training draw held out for validation.
        seed: Seed of the draws.
        table: The columns' recorded standardisation (a run keeps it); ``None``
            computes it on the training split.
    """
    return _build("rings", num_samples, val_fraction, seed, table)
