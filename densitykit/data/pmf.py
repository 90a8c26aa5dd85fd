"""Exact probability mass functions: entropy, seeded sampling of grid cells, data sets."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from densitykit.data.dataset import Dataset, as_examples
from densitykit.data.splits import SPLIT_STREAM, carve_validation, generator, train_test_split
from densitykit.errors import DataError

__all__ = ["entropy_nats", "known_pmf_dataset", "normalize", "sample_cells"]


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


def known_pmf_dataset(
    name: str,
    examples: np.ndarray,
    probs: np.ndarray,
    *,
    kind: str,
    shape: tuple[int, ...],
    val_fraction: float,
    seed: int,
    options: dict[str, Any],
) -> Dataset:
    """Split draws from a known pmf into a [`Dataset`][densitykit.data.dataset.Dataset].

    The first 80 % of ``examples`` form the training part, of which ``val_fraction``
    is held out for validation (seeded by ``seed``), and the last 20 % the test
    split; the pmf gives the true entropy and the true probabilities.

    Args:
        name: The data set's name.
        examples: ``(N,)`` or ``(N, D)`` integer draws, in the order they were drawn.
        probs: The pmf they were drawn from; ``probs.shape[0]`` is the number of values.
        kind: ``"1d"`` or ``"2d"``.
        shape: The shape for drawing.
        val_fraction: Fraction of the training part held out, in ``[0, 1)``.
        seed: Seed of the validation split.
        options: The options that rebuild the data set.

    Returns:
        The data set.

    Example:
        >>> probs = np.full((4, 4), 1 / 16)
        >>> cells = sample_cells(probs, 100, np.random.default_rng(0))
        >>> data = known_pmf_dataset("uniform", cells, probs, kind="2d", shape=(4, 4),
        ...                          val_fraction=0.25, seed=0, options={})
        >>> len(data.train), len(data.val), len(data.test), round(data.true_entropy_nats, 4)
        (60, 20, 20, 2.7726)
    """
    train_pool, test = train_test_split(examples, 0.8)
    train, val = carve_validation(
        train_pool, val_fraction=val_fraction, rng=generator(seed, SPLIT_STREAM)
    )
    return Dataset(
        name=name,
        train=as_examples(train),
        val=as_examples(val),
        test=as_examples(test),
        num_values=probs.shape[0],
        kind=kind,
        shape=shape,
        true_entropy_nats=entropy_nats(probs),
        true_probs=torch.from_numpy(probs),
        options=options,
    )
