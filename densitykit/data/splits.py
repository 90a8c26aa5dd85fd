"""Seeded random streams and the train / validation / test split shared by every family.

Every data set follows one rule: the test split is fixed by the family (the
course's last 20 %, the official MNIST test set, the last 20 % of generated
samples); the validation split is a seeded random subset of the training part;
``max_train`` then keeps the first training examples. Both carved parts keep the
order of the data they came from.
"""

from __future__ import annotations

import numpy as np

from densitykit.errors import DataError

__all__ = [
    "NOISE_STREAM",
    "SAMPLE_STREAM",
    "SPLIT_STREAM",
    "carve_validation",
    "generator",
    "train_test_split",
]

SAMPLE_STREAM = 0
"""Stream of the examples' own randomness (drawn points, generated shapes)."""
SPLIT_STREAM = 1
"""Stream of the validation split."""
NOISE_STREAM = 2
"""Stream of fixed noise applied to data (stochastic binarization)."""
EPOCH_STREAM = 3
"""Stream of the training examples drawn afresh each epoch (``generator(seed, EPOCH_STREAM,
epoch)``: dynamic binarization)."""


def generator(seed: int, stream: int, *more: int) -> np.random.Generator:
    """Return a numpy generator for ``seed`` and one independent ``stream``.

    Separate streams keep the split from shifting when, say, the number of
    samples changes the amount of randomness drawn before it. Further integers
    (``more``, e.g. an epoch) pick independent sub-streams of one stream.

    Example:
        >>> a = generator(0, SPLIT_STREAM).permutation(5)
        >>> bool((a == generator(0, SPLIT_STREAM).permutation(5)).all())
        True
    """
    return np.random.default_rng([stream, seed, *more])


def train_test_split(
    samples: np.ndarray, train_fraction: float = 0.8
) -> tuple[np.ndarray, np.ndarray]:
    """Split in order: the first ``int(train_fraction * N)`` examples train, the rest test.

    Example:
        >>> train, test = train_test_split(np.arange(10))
        >>> train.tolist(), test.tolist()
        ([0, 1, 2, 3, 4, 5, 6, 7], [8, 9])
    """
    split = int(train_fraction * len(samples))
    return samples[:split], samples[split:]


def carve_validation(
    train: np.ndarray,
    *,
    val_fraction: float,
    rng: np.random.Generator,
    max_train: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Carve a validation split out of ``train``, then keep at most ``max_train`` examples.

    ``round(val_fraction * N)`` examples (at least one when ``val_fraction > 0``),
    chosen by a seeded permutation, become the validation split; both parts keep
    their original order. With ``val_fraction == 0`` no example is held out and the
    validation split *is* the (possibly truncated) training split, so validation
    losses then measure the fit to the training data.

    Args:
        train: The training pool, examples along the first axis.
        val_fraction: Fraction of the pool to hold out, in ``[0, 1)``.
        rng: The generator of the permutation.
        max_train: Keep only the first ``max_train`` training examples after the split.

    Returns:
        ``(train, val)``.

    Raises:
        DataError: If the pool is too small to leave a training example.

    Example:
        >>> train, val = carve_validation(np.arange(10), val_fraction=0.2, rng=generator(0, 1))
        >>> len(train), len(val), sorted(train.tolist() + val.tolist()) == list(range(10))
        (8, 2, True)
    """
    n = len(train)
    if val_fraction == 0.0:
        kept = train[:max_train] if max_train is not None else train
        return kept, kept
    num_val = max(1, round(val_fraction * n))
    if num_val >= n:
        raise DataError(
            f"val_fraction={val_fraction} of {n} training examples leaves none to train on; "
            "expected a smaller val_fraction or more samples"
        )
    held_out = np.zeros(n, dtype=bool)
    held_out[rng.permutation(n)[:num_val]] = True
    kept = train[~held_out]
    if max_train is not None:
        kept = kept[:max_train]
    return kept, train[held_out]
