"""Small binary images of simple shapes: a quick stand-in for MNIST that needs no files.

Each image holds one shape, drawn with a seeded numpy generator: a rectangle, a
circle or a triangle (filled or outlined), or a straight line, at a random
position and size. Every shape lies wholly inside the canvas; pixels of the
shape are 1, the background 0.
"""

from __future__ import annotations

import numpy as np
import torch

from densitykit.checks import check_fraction, check_int, check_optional_int, check_seed
from densitykit.data.dataset import Dataset, as_examples
from densitykit.data.registry import register
from densitykit.data.splits import (
    SAMPLE_STREAM,
    SPLIT_STREAM,
    carve_validation,
    generator,
    train_test_split,
)
from densitykit.memory import check_allocation

__all__ = ["SHAPE_KINDS", "draw_shapes", "shapes"]

SHAPE_KINDS: tuple[str, ...] = ("rectangle", "circle", "triangle", "line")
"""The kinds of shape, drawn with equal probability."""
MIN_SIZE = 8
MAX_SIZE = 128
CHUNK = 1024
"""Images rasterised at once (bounds the temporary arrays)."""


def _outline(masks: np.ndarray) -> np.ndarray:
    """The pixels of each mask with a 4-neighbour outside it (the canvas edge counts as outside)."""
    padded = np.pad(masks, ((0, 0), (1, 1), (1, 1)), constant_values=False)
    interior = (
        padded[:, :-2, 1:-1] & padded[:, 2:, 1:-1] & padded[:, 1:-1, :-2] & padded[:, 1:-1, 2:]
    )
    return masks & ~interior


def _column(values: np.ndarray) -> np.ndarray:
    """Shape ``(n,)`` parameters as ``(n, 1, 1)``, to broadcast against the pixel grid."""
    return values[:, None, None]


def _pixels(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates shaped ``(1, size, 1)`` (rows) and ``(1, 1, size)`` (cols)."""
    coordinates = np.arange(size, dtype=np.float64)
    return coordinates[None, :, None], coordinates[None, None, :]


def _rectangles(rng: np.random.Generator, count: int, size: int, min_side: int) -> np.ndarray:
    rows, cols = _pixels(size)
    height, width = rng.integers(min_side, size + 1, size=(2, count))
    top, left = rng.integers(0, size - height + 1), rng.integers(0, size - width + 1)
    return (
        (rows >= _column(top))
        & (rows < _column(top + height))
        & (cols >= _column(left))
        & (cols < _column(left + width))
    )


def _circles(rng: np.random.Generator, count: int, size: int, min_side: int) -> np.ndarray:
    rows, cols = _pixels(size)
    radius = rng.uniform(min_side / 2, (size - 1) / 2, size=count)
    # Centres at least a radius from every edge keep the whole disc on the canvas.
    centre = rng.uniform(radius[:, None], (size - 1 - radius)[:, None], size=(count, 2))
    return (rows - _column(centre[:, 0])) ** 2 + (cols - _column(centre[:, 1])) ** 2 <= _column(
        radius
    ) ** 2


def _doubled_area(vertices: np.ndarray) -> np.ndarray:
    (r0, c0), (r1, c1), (r2, c2) = np.moveaxis(vertices, (1, 2), (0, 1))
    return (r1 - r0) * (c2 - c0) - (r2 - r0) * (c1 - c0)


def _too_thin(vertices: np.ndarray, size: int) -> np.ndarray:
    """Triangles too small (area under ``size**2 / 8``) or too flat to read as triangles."""
    doubled_area = np.abs(_doubled_area(vertices))
    longest = ((vertices - np.roll(vertices, 1, axis=1)) ** 2).sum(axis=2).max(axis=1)
    # 2 * area / longest**2 is 0.87 for an equilateral triangle and 0 for a segment.
    return (doubled_area < size**2 / 4) | (doubled_area < 0.3 * longest)


def _triangles(rng: np.random.Generator, count: int, size: int, min_side: int) -> np.ndarray:
    rows, cols = _pixels(size)
    vertices = rng.uniform(0, size - 1, size=(count, 3, 2))
    redraw = _too_thin(vertices, size)
    while redraw.any():
        vertices[redraw] = rng.uniform(0, size - 1, size=(int(redraw.sum()), 3, 2))
        redraw = _too_thin(vertices, size)
    # Inside means on the same side of each edge as the opposite vertex.
    orientation = _column(np.sign(_doubled_area(vertices)))
    sides = []
    for a, b in ((0, 1), (1, 2), (2, 0)):
        ra, ca = _column(vertices[:, a, 0]), _column(vertices[:, a, 1])
        rb, cb = _column(vertices[:, b, 0]), _column(vertices[:, b, 1])
        sides.append(orientation * ((rb - ra) * (cols - ca) - (rows - ra) * (cb - ca)) >= 0)
    return sides[0] & sides[1] & sides[2]


def _lines(rng: np.random.Generator, count: int, size: int, min_side: int) -> np.ndarray:
    rows, cols = _pixels(size)
    ends = rng.uniform(1, size - 2, size=(count, 2, 2))
    short = np.hypot(*(ends[:, 1] - ends[:, 0]).T) < 2 * min_side
    while short.any():
        ends[short] = rng.uniform(1, size - 2, size=(int(short.sum()), 2, 2))
        short = np.hypot(*(ends[:, 1] - ends[:, 0]).T) < 2 * min_side
    half_width = rng.choice([0.5, 1.0], size=count)  # one or two pixels thick
    start, step = ends[:, 0], ends[:, 1] - ends[:, 0]
    length = np.hypot(step[:, 0], step[:, 1])
    unit = step / length[:, None]
    # Distance from each pixel to the nearest point of the segment.
    along = np.clip(
        (rows - _column(start[:, 0])) * _column(unit[:, 0])
        + (cols - _column(start[:, 1])) * _column(unit[:, 1]),
        0.0,
        _column(length),
    )
    nearest_row = _column(start[:, 0]) + along * _column(unit[:, 0])
    nearest_col = _column(start[:, 1]) + along * _column(unit[:, 1])
    return np.hypot(rows - nearest_row, cols - nearest_col) <= _column(half_width)


_DRAWERS = {"rectangle": _rectangles, "circle": _circles, "triangle": _triangles, "line": _lines}


def draw_shapes(num_images: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``num_images`` independent random shapes, one per ``size x size`` image.

    The kind is uniform over [`SHAPE_KINDS`][densitykit.data.shapes.SHAPE_KINDS];
    rectangles, circles and triangles are filled or outlined with equal
    probability; lines are one or two pixels thick. Sides, radii and line lengths
    are at least ``max(3, size // 5)`` pixels, so every shape is visible.

    Args:
        num_images: How many images to draw.
        size: The canvas side in pixels.
        rng: The generator of every random choice.

    Returns:
        A ``(num_images, size, size)`` ``uint8`` array, 1 on the shapes and 0 elsewhere.

    Example:
        >>> images = draw_shapes(5, 12, np.random.default_rng(0))
        >>> images.shape, images.dtype.name, bool(images.reshape(5, -1).any(axis=1).all())
        ((5, 12, 12), 'uint8', True)
    """
    return _draw(num_images, size, rng)[0]


def _draw(num_images: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``draw_shapes``' images and, per image, its kind's index in ``SHAPE_KINDS``."""
    min_side = max(3, size // 5)
    images = np.zeros((num_images, size, size), dtype=np.uint8)
    labels = np.zeros(num_images, dtype=np.int64)
    for start in range(0, num_images, CHUNK):
        count = min(CHUNK, num_images - start)
        kinds = rng.integers(len(SHAPE_KINDS), size=count)
        outlined = rng.integers(2, size=count).astype(bool) & (kinds != SHAPE_KINDS.index("line"))
        chunk = np.zeros((count, size, size), dtype=bool)
        for code, kind in enumerate(SHAPE_KINDS):
            chosen = np.flatnonzero(kinds == code)
            if chosen.size:
                chunk[chosen] = _DRAWERS[kind](rng, chosen.size, size, min_side)
        chunk[outlined] = _outline(chunk[outlined])
        images[start : start + count] = chunk
        labels[start : start + count] = kinds
    return images, labels


@register("shapes")
def shapes(
    *,
    size: int = 20,
    num_samples: int = 10000,
    val_fraction: float = 0.1,
    max_train: int | None = None,
    seed: int = 0,
) -> Dataset:
    """Generated binary images (20x20 by default) of rectangles, circles, triangles and lines.

    ``num_samples`` images are drawn; the first 80 % form the training part
    (``val_fraction`` of it held out for validation) and the last 20 % the test
    split (8,000 / 2,000 by default).

    Args:
        size: The side of the images in pixels, in ``8..128``.
        num_samples: Number of images in all, at least 10.
        val_fraction: Fraction of the training part held out, in ``[0, 1)``;
            ``0.0`` makes the validation split the training split itself.
        max_train: Keep only the first ``max_train`` training examples (after the
            validation split), for quick runs; ``None`` keeps all.
        seed: Seed of the images and of the validation split.

    Returns:
        An ``"image"`` data set with ``num_values=2`` and ``shape=(size, size)``;
        the true entropy is unknown. Its labels are the kinds of shape (in the
        order of [`SHAPE_KINDS`][densitykit.data.shapes.SHAPE_KINDS]).

    Example:
        >>> ds = shapes(size=12, num_samples=50)
        >>> ds.shape, ds.dim, len(ds.test)
        ((12, 12), 144, 10)
    """
    name = "shapes"
    size = check_int(size, f"{name}: size", minimum=MIN_SIZE, maximum=MAX_SIZE)
    num_samples = check_int(num_samples, f"{name}: num_samples", minimum=10)
    val_fraction = check_fraction(val_fraction, f"{name}: val_fraction")
    max_train = check_optional_int(max_train, f"{name}: max_train", minimum=1)
    seed = check_seed(seed, f"{name}: seed")
    check_allocation(num_samples * size * size * 24, f"{name} with num_samples={num_samples:,}")

    images, kinds = _draw(num_samples, size, generator(seed, SAMPLE_STREAM))
    pool_rows, test_rows = train_test_split(np.arange(num_samples), 0.8)
    # Carved on indices, so the labels follow their images.
    train_rows, val_rows = carve_validation(
        pool_rows,
        val_fraction=val_fraction,
        rng=generator(seed, SPLIT_STREAM),
        max_train=max_train,
    )
    return Dataset(
        name=name,
        train=as_examples(images[train_rows]),
        val=as_examples(images[val_rows]),
        test=as_examples(images[test_rows]),
        num_values=2,
        kind="image",
        shape=(size, size),
        train_labels=torch.from_numpy(kinds[train_rows]),
        val_labels=torch.from_numpy(kinds[val_rows]),
        test_labels=torch.from_numpy(kinds[test_rows]),
        label_names=SHAPE_KINDS,
        options={
            "size": size,
            "num_samples": num_samples,
            "val_fraction": val_fraction,
            "max_train": max_train,
            "seed": seed,
        },
    )
