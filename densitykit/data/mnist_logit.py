r"""MNIST in logit space: the real-valued benchmark of the MAF paper (``mnist-logit``).

Papamakarios, Pavlakou and Murray (2017), "Masked Autoregressive Flow for Density
Estimation", model grey-level MNIST as real values. Each pixel $p \in \{0, \dots, 255\}$
is dequantized with one uniform draw $u \in [0, 1)$ and mapped to the real line:

$$x = \frac{p + u}{256} \in [0, 1), \qquad
y = \operatorname{logit}\bigl(\alpha + (1 - 2\alpha)\,x\bigr), \quad \alpha = 10^{-6}.$$

The paper's figure is the mean test log-density $\log p(y)$ **in logit space**, without
the logit's Jacobian, with $\pm$ two standard errors. The density of the same image in
pixel space $v = p + u = 256\,x \in [0, 256)^D$ adds the Jacobian of $v \mapsto y$:

$$\log p(v) = \log p(y) + \sum_{d=1}^{D} \Bigl[\log(1 - 2\alpha)
- \log s_d - \log(1 - s_d)\Bigr] - D \log 256, \qquad s_d = \sigma(y_d),$$

and bits per pixel are $-\log p(v) / (D \log 2)$, the figure of the image-model
literature (8 for a uniform density over the 256 grey levels).
[`pixel_log_density`][densitykit.data.mnist_logit.pixel_log_density] and
[`bits_per_pixel`][densitykit.data.mnist_logit.bits_per_pixel] compute both.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F

from densitykit.checks import check_int
from densitykit.data.dataset import REAL_VALUES, Dataset, as_real_examples
from densitykit.data.mnist import BINARIZED_MNIST_VAL, _labels, fixed_split
from densitykit.data.registry import register
from densitykit.data.splits import NOISE_STREAM, generator
from densitykit.errors import DataError

__all__ = [
    "LOGIT_ALPHA",
    "bits_per_pixel",
    "dequantize_logit",
    "mnist_logit",
    "pixel_log_density",
    "pixels_from_logits",
]

LOGIT_ALPHA = 1e-6
r"""$\alpha$ of the logit transform, the MAF paper's: it keeps $x = 0$ off $-\infty$."""
LEVELS = 256
"""Grey levels of a pixel: the dequantized value ``p + u`` lies in ``[0, 256)``."""


def _check_alpha(alpha: float) -> float:
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)):
        raise TypeError(f"alpha must be a number in (0, 0.5), got {type(alpha).__name__}")
    if not 0.0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5), got {alpha}")
    return float(alpha)


def dequantize_logit(
    images: np.ndarray, rng: np.random.Generator, alpha: float = LOGIT_ALPHA
) -> np.ndarray:
    r"""Dequantize ``uint8`` grey levels and map them to logit space.

    $y = \operatorname{logit}(\alpha + (1 - 2\alpha)(p + u) / 256)$ with one uniform
    $u$ per pixel from ``rng``, computed in ``float64`` and returned as ``float32``.

    Args:
        images: ``uint8`` grey levels ``0..255`` of any shape.
        rng: The generator of the dequantization noise.
        alpha: $\alpha$ of the transform, in ``(0, 0.5)``.

    Returns:
        A ``float32`` array of the same shape, every value finite.

    Example:
        >>> y = dequantize_logit(np.array([0, 255], dtype=np.uint8), np.random.default_rng(0))
        >>> bool(y[0] < -5 and y[1] > 5)
        True
    """
    alpha = _check_alpha(alpha)
    if images.dtype != np.uint8:
        raise DataError(f"expected uint8 grey levels, got {images.dtype}")
    out = np.empty(images.shape, dtype=np.float32)
    flat_in, flat_out = images.reshape(-1), out.reshape(-1)
    chunk = 1 << 22  # float64 temporaries of a few tens of MB, not of the whole set
    for start in range(0, flat_in.size, chunk):
        grey = flat_in[start : start + chunk].astype(np.float64)
        x = (grey + rng.random(grey.shape)) / LEVELS
        s = alpha + (1.0 - 2.0 * alpha) * x
        flat_out[start : start + chunk] = np.log(s) - np.log1p(-s)
    return out


def pixels_from_logits(values: torch.Tensor, alpha: float = LOGIT_ALPHA) -> torch.Tensor:
    r"""Map logit-space values back to dequantized pixels $v = 256\,x \in [0, 256)$.

    The inverse of [`dequantize_logit`][densitykit.data.mnist_logit.dequantize_logit]
    before the rounding: $v = 256\,(\sigma(y) - \alpha) / (1 - 2\alpha)$, clamped to
    ``[0, 256)`` (a model's sample may fall outside the data's range).

    Example:
        >>> pixels_from_logits(torch.tensor([0.0])).tolist()
        [128.0]
    """
    alpha = _check_alpha(alpha)
    x = (torch.sigmoid(values) - alpha) / (1.0 - 2.0 * alpha)
    return (LEVELS * x).clamp(0.0, math.nextafter(LEVELS, 0.0))


def pixel_log_density(
    logit_log_density: torch.Tensor, values: torch.Tensor, alpha: float = LOGIT_ALPHA
) -> torch.Tensor:
    r"""Turn log-densities in logit space into log-densities in pixel space ``[0, 256)^D``.

    $\log p(v) = \log p(y) + \sum_d [\log(1 - 2\alpha) - \log s_d - \log(1 - s_d)]
    - D \log 256$ with $s_d = \sigma(y_d)$; the sum is computed stably in ``float64`` as
    $\log s = -\operatorname{softplus}(-y)$, $\log(1 - s) = -\operatorname{softplus}(y)$.

    Args:
        logit_log_density: ``(N,)`` log-densities $\log p(y)$ of the examples in nats
            (a model's ``log_prob``, the MAF paper's figure).
        values: ``(N, D)`` the examples $y$ in logit space.
        alpha: $\alpha$ of the transform.

    Returns:
        ``(N,)`` ``float64`` log-densities $\log p(v)$ in nats.

    Raises:
        ValueError: If the shapes do not match.

    Example:
        >>> y = torch.zeros(1, 2)  # two mid-grey pixels
        >>> round(float(pixel_log_density(torch.zeros(1), y)[0]), 4)  # 2 (log 4 - log 256)
        -8.3178
    """
    alpha = _check_alpha(alpha)
    if values.ndim != 2 or logit_log_density.shape != values.shape[:1]:
        raise ValueError(
            f"expected log-densities (N,) and values (N, D), got shapes "
            f"{tuple(logit_log_density.shape)} and {tuple(values.shape)}"
        )
    y = values.double()
    dim = y.shape[1]
    jacobian = (F.softplus(-y) + F.softplus(y)).sum(dim=1) + dim * math.log1p(-2.0 * alpha)
    return logit_log_density.double() + jacobian - dim * math.log(LEVELS)


def bits_per_pixel(log_density: torch.Tensor | float, dim: int) -> torch.Tensor | float:
    r"""Bits per pixel $-\log p(v) / (D \log 2)$ of pixel-space log-densities in nats.

    Example:
        >>> bits_per_pixel(-784 * math.log(256), 784)
        8.0
    """
    dim = check_int(dim, "dim", minimum=1)
    return -log_density / (dim * math.log(2.0))


@register("mnist-logit")
def mnist_logit(
    *,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    num_val: int = BINARIZED_MNIST_VAL,
    max_train: int | None = None,
    alpha: float = LOGIT_ALPHA,
    download: bool = True,
) -> Dataset:
    """Grey-level MNIST in logit space, 50,000 / 10,000 / 10,000 images (the MAF paper's).

    Every pixel is dequantized with one uniform draw and mapped by
    ``logit(alpha + (1 - 2 alpha) (p + u) / 256)`` (see the module notes); the values are
    real (``num_values = 0``, ``float32``), modelled by the ``gaussian`` or
    ``gaussian-mixture`` head. The split is ``binarized-mnist``'s and the MAF paper's:
    the first 50,000 official training images train, the last 10,000 validate, the
    official 10,000 test images test. A model's ``log_prob`` is the paper's figure (the
    log-density in logit space, without the logit's Jacobian);
    [`pixel_log_density`][densitykit.data.mnist_logit.pixel_log_density] and
    [`bits_per_pixel`][densitykit.data.mnist_logit.bits_per_pixel] convert it.

    Args:
        data_dir: A folder with the IDX files (see
            [`densitykit.data.mnist`][densitykit.data.mnist]); ``None`` searches the
            default places and then downloads.
        seed: Seed of the dequantization noise (the training file first, then the test
            file, from one stream; the split does not depend on it).
        num_val: How many of the last official training images validate (10,000 for the
            benchmark; smaller only for a subset of the files).
        max_train: Keep only the first ``max_train`` training images, for quick runs;
            ``None`` keeps all 50,000.
        alpha: $\\alpha$ of the logit transform, in ``(0, 0.5)``.
        download: Without ``data_dir``, download with torchvision if needed.

    Returns:
        An ``"image"`` data set of ``float32`` values with ``shape=(28, 28)``.

    Raises:
        DataError: If the files cannot be found, read or downloaded, or the training
            file holds no more than ``num_val`` images.
    """
    name = "mnist-logit"
    split = fixed_split(name, data_dir, seed, num_val, max_train, download)
    seed, num_val, max_train, download = split.options
    alpha = _check_alpha(alpha)
    train_images, test_images, train_labels, test_labels = split.files
    train_rows, val_rows = split.train_rows, split.val_rows
    # One stream, the whole training file first: the noise of an image does not depend
    # on max_train.
    noise = generator(seed, NOISE_STREAM)
    train_pool = dequantize_logit(train_images, noise, alpha)
    test = dequantize_logit(test_images, noise, alpha)
    return Dataset(
        name=name,
        train=as_real_examples(train_pool[train_rows]),
        val=as_real_examples(train_pool[val_rows]),
        test=as_real_examples(test),
        num_values=REAL_VALUES,
        kind="image",
        shape=tuple(train_images.shape[1:]),
        **_labels("mnist", train_labels, test_labels, train_rows, val_rows),
        options={
            "data_dir": None if data_dir is None else os.fspath(data_dir),
            "seed": seed,
            "num_val": num_val,
            "max_train": max_train,
            "alpha": alpha,
            "download": download,
        },
    )
