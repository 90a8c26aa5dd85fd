"""The two 1-D data sets of Berkeley CS294-158 (spring 2020), homework 1.

Both are drawn exactly as the course draws them (``np.random.RandomState(0)``) and
split as the course splits them: the first 80 % train, the last 20 % test. The
validation split is then carved from the training 80 % (the course trains on all
of it), so ``seed`` only changes which training examples are held out.

Quantization follows the course's ``np.digitize(x, np.linspace(0, 1, K))``, which
returns ``0..K``; we subtract one and clip to ``0..K-1``. With edges
$e_i = i / (K - 1)$ the value $v$ then covers

- $v = 0$: $x < e_1$ (everything below zero included),
- $v = i$ for $1 \\le i \\le K - 2$: $e_i \\le x < e_{i+1}$,
- $v = K - 1$: $x \\ge 1$,

so the exact pmf is a difference of the generating CDF at the edges, with the
tails' mass in the end values.
"""

from __future__ import annotations

import numpy as np

from densitykit.checks import check_fraction, check_seed
from densitykit.data.dataset import Dataset
from densitykit.data.pmf import known_pmf_dataset
from densitykit.data.registry import register

__all__ = ["bimodal_1d", "bin_probs", "course_samples", "gaussian_1d", "quantize"]


def quantize(samples: np.ndarray, num_values: int) -> np.ndarray:
    """Quantize reals to ``0..num_values-1`` as the course does, shifted to start at zero.

    Example:
        >>> quantize(np.array([-0.5, 0.0, 0.06, 0.5, 0.99, 1.0, 7.0]), 20).tolist()
        [0, 0, 1, 9, 18, 19, 19]
    """
    codes = np.digitize(samples, np.linspace(0.0, 1.0, num_values)) - 1
    return np.clip(codes, 0, num_values - 1).astype(np.int64)


def bin_probs(cdf: np.ndarray, num_values: int) -> np.ndarray:
    """Return the exact pmf of [`quantize`][densitykit.data.toy1d.quantize] given ``cdf``.

    Args:
        cdf: A vectorized CDF of the real-valued samples.
        num_values: $K$.

    Returns:
        ``(K,)`` ``float64`` probabilities: $F(e_1)$, $F(e_{i+1}) - F(e_i)$, ..., $1 - F(1)$.

    Example:
        >>> bin_probs(lambda x: np.clip(x, 0, 1), 3).tolist()  # uniform on [0, 1]
        [0.5, 0.5, 0.0]
    """
    inner = cdf(np.linspace(0.0, 1.0, num_values)[1:])
    return np.diff(np.concatenate([[0.0], inner, [1.0]]))


def course_samples(which: int) -> tuple[np.ndarray, int, np.ndarray]:
    """Return the course's data set ``which`` (1 or 2), its $K$ and its exact pmf.

    Returns:
        ``(values, num_values, probs)``: all quantized values in the course's order
        (1,000 or 10,000), $K$ (20 or 100), and the ``(K,)`` pmf.

    Raises:
        ValueError: If ``which`` is not 1 or 2.
    """
    from scipy.stats import norm  # imported here: scipy.stats takes about a second to import

    rand = np.random.RandomState(0)
    if which == 1:
        num_values = 20
        samples = 0.4 + 0.1 * rand.randn(1000)
        probs = bin_probs(lambda x: norm.cdf(x, loc=0.4, scale=0.1), num_values)
    elif which == 2:
        num_values = 100
        a = 0.3 + 0.1 * rand.randn(10000)
        b = 0.8 + 0.05 * rand.randn(10000)
        mask = rand.rand(10000) < 0.5
        samples = np.clip(a * mask + b * (1 - mask), 0.0, 1.0)
        # Clipping to [0, 1] moves the tails onto 0 and 1, which fall in the end values.
        probs = bin_probs(
            lambda x: (
                0.5 * norm.cdf(x, loc=0.3, scale=0.1) + 0.5 * norm.cdf(x, loc=0.8, scale=0.05)
            ),
            num_values,
        )
    else:
        raise ValueError(f"the course has 1-D data sets 1 and 2, got {which!r}")
    return quantize(samples, num_values), num_values, probs


def _build(name: str, which: int, val_fraction: float, seed: int) -> Dataset:
    val_fraction = check_fraction(val_fraction, f"{name}: val_fraction")
    seed = check_seed(seed, f"{name}: seed")
    values, _, probs = course_samples(which)
    return known_pmf_dataset(
        name,
        values,
        probs,
        kind="1d",
        shape=(1,),
        val_fraction=val_fraction,
        seed=seed,
        options={"val_fraction": val_fraction, "seed": seed},
    )


@register("1d-gaussian")
def gaussian_1d(*, val_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """CS294-158 HW1 1-D data set 1: 1,000 draws of N(0.4, 0.1^2) quantized to 20 values.

    The course's first 800 examples form the training part (of which
    ``val_fraction`` is held out for validation) and its last 200 the test split.

    Args:
        val_fraction: Fraction of the 800 training examples held out, in ``[0, 1)``;
            ``0.0`` makes the validation split the training split itself.
        seed: Seed of the validation split (the data are always the course's).

    Returns:
        A ``"1d"`` data set with ``num_values=20``, its exact pmf and entropy.

    Example:
        >>> ds = gaussian_1d()
        >>> len(ds.train) + len(ds.val), len(ds.test), ds.num_values
        (800, 200, 20)
    """
    return _build("1d-gaussian", 1, val_fraction, seed)


@register("1d-bimodal")
def bimodal_1d(*, val_fraction: float = 0.1, seed: int = 0) -> Dataset:
    """CS294-158 HW1 1-D data set 2: 10,000 draws of a clipped two-Gaussian mixture, 100 values.

    The mixture is $\\frac12 N(0.3, 0.1^2) + \\frac12 N(0.8, 0.05^2)$ clipped to
    $[0, 1]$; the first 8,000 examples form the training part and the last 2,000
    the test split.

    Args:
        val_fraction: Fraction of the 8,000 training examples held out, in ``[0, 1)``;
            ``0.0`` makes the validation split the training split itself.
        seed: Seed of the validation split (the data are always the course's).

    Returns:
        A ``"1d"`` data set with ``num_values=100``, its exact pmf and entropy.
    """
    return _build("1d-bimodal", 2, val_fraction, seed)
