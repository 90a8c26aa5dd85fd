"""Exact probability mass functions: entropy and seeded sampling of grid cells."""

from __future__ import annotations

import numpy as np

from densitykit.errors import DataError

__all__ = ["entropy_nats", "normalize", "sample_cells"]


def normalize(weights: np.ndarray) -> np.ndarray:
    """Return ``weights / weights.sum()`` as ``float64``.

    Raises:
        DataError: If a weight is negative or not finite, or all are zero.

    Example:
        >>> normalize(np.array([1, 3])).tolist()
        [0.25, 0.75]
    """
    weights = np.asarray(weights, dtype=np.float64)
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise DataError("expected finite non-negative weights, got a negative or non-finite one")
    total = weights.sum()
    if total <= 0:
        raise DataError(f"expected weights with a positive total, got all {weights.size} zero")
    return weights / total


def entropy_nats(probs: np.ndarray) -> float:
    """Return the entropy $-\\sum_x p(x) \\log p(x)$ in nats (with $0 \\log 0 = 0$).

    Example:
        >>> round(entropy_nats(np.full(4, 0.25)), 6) == round(float(np.log(4)), 6)
        True
    """
    p = np.asarray(probs, dtype=np.float64).ravel()
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def sample_cells(probs: np.ndarray, num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``num_samples`` grid cells ``(row, col)`` from a 2-D pmf.

    Args:
        probs: ``(H, W)`` probabilities summing to one.
        num_samples: How many cells to draw (with replacement).
        rng: The generator to draw with.

    Returns:
        ``(num_samples, 2)`` ``int64`` array of ``(row, col)`` pairs.

    Example:
        >>> cells = sample_cells(np.array([[0.0, 1.0], [0.0, 0.0]]), 3, np.random.default_rng(0))
        >>> cells.tolist()
        [[0, 1], [0, 1], [0, 1]]
    """
    flat = np.asarray(probs, dtype=np.float64).ravel()
    index = rng.choice(flat.size, size=num_samples, p=flat / flat.sum())
    rows, cols = np.divmod(index, probs.shape[1])
    return np.stack([rows, cols], axis=1).astype(np.int64)
