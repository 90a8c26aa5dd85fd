"""Pictures of data and models: sample grids, 2-D densities, 1-D histograms, learning curves.

Every function writes a PNG and returns its path; the PNG is written atomically (see
[`densitykit.atomic`][densitykit.atomic]), replacing a link rather than following it.
Figures are matplotlib ``Figure`` objects drawn by the Agg renderer, without pyplot:
nothing needs a screen, and importing densitykit leaves the user's matplotlib backend alone.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure

from densitykit.atomic import atomic_write

__all__ = [
    "completion_rows",
    "density_2d",
    "density_plane",
    "histogram_1d",
    "image_grid_array",
    "learning_curves",
    "sample_grid",
]


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def image_grid_array(
    images: torch.Tensor | np.ndarray,
    shape: Sequence[int],
    *,
    columns: int | None = None,
    pad: int = 1,
) -> np.ndarray:
    """Tile ``(N, H*W)`` images into one ``(rows*(H+pad), cols*(W+pad))`` array.

    Example:
        >>> image_grid_array(np.ones((4, 6)), (2, 3), columns=2, pad=0).shape
        (4, 6)
    """
    array = _numpy(images).reshape(-1, *shape).astype(np.float64)
    count = array.shape[0]
    columns = columns or max(1, math.ceil(math.sqrt(count)))
    rows = max(1, math.ceil(count / columns))
    height, width = shape
    grid = np.full((rows * (height + pad) - pad, columns * (width + pad) - pad), np.nan)
    for index in range(count):
        r, c = divmod(index, columns)
        grid[
            r * (height + pad) : r * (height + pad) + height,
            c * (width + pad) : c * (width + pad) + width,
        ] = array[index]
    return grid


def completion_rows(
    images: torch.Tensor, observed: torch.Tensor, completed: torch.Tensor
) -> torch.Tensor:
    """The rows of an inpainting picture: per image its observed part (NaN where
    missing), its completions and the original.

    Args:
        images: ``(N, D)`` originals.
        observed: ``(N, D)`` bool.
        completed: ``(N * S, D)`` completions, the S of each image together.

    Returns:
        ``(N * (S + 2), D)`` float64, for [`sample_grid`][densitykit.plots.sample_grid]
        with ``columns=S + 2``.

    Example:
        >>> rows = completion_rows(torch.tensor([[1, 0]]), torch.tensor([[True, False]]),
        ...                        torch.tensor([[1, 1], [1, 0]]))
        >>> rows.tolist()
        [[1.0, nan], [1.0, 1.0], [1.0, 0.0], [1.0, 0.0]]
    """
    count = images.shape[0]
    if count == 0 or completed.shape[0] % count:
        raise ValueError(
            f"completed must hold the same number of completions of each of the {count} "
            f"images, got {completed.shape[0]} rows"
        )
    per_image = completed.shape[0] // count
    rows = []
    for index in range(count):
        rows.append(images[index].double().masked_fill(~observed[index], float("nan")))
        rows.extend(completed[index * per_image : (index + 1) * per_image].double())
        rows.append(images[index].double())
    return torch.stack(rows)


def sample_grid(
    samples: torch.Tensor | np.ndarray,
    shape: Sequence[int],
    path: str | os.PathLike,
    *,
    num_values: int = 2,
    title: str | None = None,
    columns: int | None = None,
) -> Path:
    """Draw image samples ``(N, H*W)`` as a grid, black-on-white for binary data."""
    grid = image_grid_array(samples, shape, columns=columns)
    rows, cols = grid.shape
    scale = 6.0 / max(rows, cols)
    fig = Figure(figsize=(max(cols * scale, 2), max(rows * scale, 2) + (0.4 if title else 0)))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["gray_r" if num_values == 2 else "gray"].with_extremes(
        bad="#d0d0d0"
    )
    ax.imshow(
        np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=num_values - 1, interpolation="nearest"
    )
    ax.set_axis_off()
    if title:
        ax.set_title(title)
    return _save(fig, path)


def _histogram_2d(points: np.ndarray, num_values: int) -> np.ndarray:
    counts = np.zeros((num_values, num_values))
    np.add.at(counts, (points[:, 0], points[:, 1]), 1)
    return counts / max(counts.sum(), 1)


def density_2d(
    train: torch.Tensor | np.ndarray,
    model_probs: torch.Tensor | np.ndarray,
    samples: torch.Tensor | np.ndarray,
    path: str | os.PathLike,
    *,
    title: str | None = None,
) -> Path:
    """Three panels: training data histogram, model density over the grid, model samples.

    Args:
        train: ``(N, 2)`` training points ``(row, col)``.
        model_probs: ``(K, K)`` model probabilities ``exp(log_prob)`` of every cell.
        samples: ``(M, 2)`` model samples.
        path: The PNG to write.
        title: A figure title.
    """
    probs = _numpy(model_probs)
    num_values = probs.shape[0]
    panels = [
        ("training data", _histogram_2d(_numpy(train), num_values)),
        ("model density", probs),
        ("model samples", _histogram_2d(_numpy(samples), num_values)),
    ]
    fig = Figure(figsize=(12, 4.3))
    axes = fig.subplots(1, 3)
    for ax, (label, image) in zip(axes, panels):
        ax.imshow(image, cmap="viridis", interpolation="nearest")
        ax.set_title(label)
        ax.set_xlabel("x2")
        ax.set_ylabel("x1")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def density_plane(
    train: np.ndarray,
    model_density: np.ndarray,
    extent: Sequence[float],
    samples: np.ndarray,
    path: str | os.PathLike,
    *,
    true_density: np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """Real 2-D data beside the model: a histogram of the data, the model's density on a
    grid (in the data's units), the true density where known, and the model's samples.

    Args:
        train: ``(N, 2)`` points ``(x, y)`` in the data's units.
        model_density: ``(G, G)`` density of the grid's points, rows along ``y``
            (``model_density[i, j]`` at ``y_i``, ``x_j``).
        extent: ``(x_min, x_max, y_min, y_max)`` of the grid.
        samples: ``(M, 2)`` model samples.
        path: The PNG to write.
        true_density: ``(G, G)`` exact density on the same grid, or ``None``.
        title: A figure title.
    """
    bins = model_density.shape[0]
    ranges = [[extent[0], extent[1]], [extent[2], extent[3]]]

    def histogram(points: np.ndarray) -> np.ndarray:
        counts, _, _ = np.histogram2d(points[:, 1], points[:, 0], bins=bins, range=ranges[::-1])
        return counts

    panels = [("training data", histogram(_numpy(train)))]
    if true_density is not None:
        panels.append(("true density", _numpy(true_density)))
    panels += [
        ("model density", _numpy(model_density)),
        ("model samples", histogram(_numpy(samples))),
    ]
    fig = Figure(figsize=(4 * len(panels), 4.3))
    axes = fig.subplots(1, len(panels))
    for ax, (label, image) in zip(axes, panels):
        ax.imshow(image, cmap="viridis", origin="lower", extent=tuple(extent), aspect="auto")
        ax.set_title(label)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def histogram_1d(
    train: torch.Tensor | np.ndarray,
    model_probs: torch.Tensor | np.ndarray,
    path: str | os.PathLike,
    *,
    true_probs: torch.Tensor | np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """Training data frequencies (bars) against the model's probabilities (line)."""
    probs = _numpy(model_probs)
    num_values = probs.shape[0]
    counts = np.bincount(_numpy(train).reshape(-1), minlength=num_values) / max(len(train), 1)
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    values = np.arange(num_values)
    ax.bar(values, counts, width=1.0, alpha=0.45, label="training data")
    ax.plot(values, probs, "o-", color="C1", markersize=3, label="model")
    if true_probs is not None:
        ax.plot(values, _numpy(true_probs), "--", color="k", linewidth=1, label="true distribution")
    ax.set_xlabel("x")
    ax.set_ylabel("probability")
    ax.legend()
    if title:
        ax.set_title(title)
    return _save(fig, path)


def learning_curves(
    history: Sequence[dict[str, Any]],
    path: str | os.PathLike,
    *,
    true_entropy: float | None = None,
    unit: str = "nats per example",
) -> Path:
    """Train and validation NLL per epoch, with the true entropy as a floor when known."""
    epochs = [record["epoch"] for record in history]
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    ax.plot(epochs, [r["train_nll"] for r in history], "o-", markersize=3, label="train")
    ax.plot(epochs, [r["val_nll"] for r in history], "o-", markersize=3, label="validation")
    if true_entropy is not None:
        ax.axhline(true_entropy, color="k", linestyle="--", linewidth=1, label="true entropy")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"NLL ({unit})")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    fig.tight_layout()
    atomic_write(path, lambda handle: fig.savefig(handle, dpi=110, format="png"))
    return path
