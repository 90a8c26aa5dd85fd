"""A 2-D density read from a picture: grey levels become probability mass on a grid.

This is how CS294-158's 2-D exercise builds its target (an image, resized to
$K \\times K$, normalised to a pmf over ``(row, col)``); here the image is any file
Pillow reads, converted to grey, and ``mass`` says whether dark or bright pixels
carry the mass.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from densitykit.checks import (
    check_choice,
    check_fraction,
    check_int,
    check_optional_int,
    check_seed,
)
from densitykit.data.dataset import Dataset
from densitykit.data.pmf import known_pmf_dataset, normalize, sample_cells
from densitykit.data.registry import register
from densitykit.data.splits import (
    SAMPLE_STREAM,
    generator,
)
from densitykit.errors import DataError
from densitykit.memory import check_allocation

__all__ = ["MASS_MODES", "image_2d", "image_probs"]

MASS_MODES: tuple[str, ...] = ("dark", "bright")
"""Which pixels carry the mass: darker ones, or brighter ones."""
MAX_GRID_SIZE = 1024
MAX_PIXELS = 50_000_000
"""Pictures with more pixels are refused from their header, before decoding."""


def _read_grey(path: Path) -> Image.Image:
    if not path.is_file():
        found = "a folder" if path.is_dir() else "nothing"
        raise DataError(f"2d-image: expected an image file at '{path}', found {found}")
    try:
        with Image.open(path) as image:  # reads the header only, not the pixels
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise DataError(
                    f"2d-image: '{path}' claims {width} x {height} pixels; at most "
                    f"{MAX_PIXELS:,} pixels are read (resize the picture first)"
                )
            return image.convert("L")
    except Image.DecompressionBombError as error:
        raise DataError(
            f"2d-image: '{path}' claims more pixels than are safe to decode ({error}); "
            f"at most {MAX_PIXELS:,} pixels are read (resize the picture first)"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError) as error:
        if isinstance(error, DataError):
            raise
        raise DataError(
            f"2d-image: cannot read '{path}' as an image ({type(error).__name__}: {error})"
        ) from None


def image_probs(
    path: str | os.PathLike[str], *, mass: str = "dark", grid_size: int | None = None
) -> np.ndarray:
    """Return the pmf over ``(row, col)`` that the picture at ``path`` draws.

    Args:
        path: An image file Pillow can read (colour is converted to grey).
        mass: ``"dark"`` gives pixel ``(r, c)`` the weight $255 - g_{rc}$,
            ``"bright"`` the weight $g_{rc}$.
        grid_size: Resize the image to ``grid_size x grid_size`` first (bilinear);
            without it the image must already be square.

    Returns:
        ``(K, K)`` ``float64`` probabilities summing to one.

    Raises:
        DataError: If the file is missing or unreadable, the image is not square
            (without ``grid_size``), or it carries no mass (all white for ``"dark"``,
            all black for ``"bright"``).
    """
    path = Path(path)
    image = _read_grey(path)
    if grid_size is not None:
        image = image.resize((grid_size, grid_size), Image.Resampling.BILINEAR)
    width, height = image.size
    if width != height:
        raise DataError(
            f"2d-image: expected a square image or a grid_size to resize to, "
            f"got {width} x {height} pixels in '{path}'"
        )
    if width < 2:
        raise DataError(
            "2d-image: expected an image of at least 2 x 2 pixels, "
            f"got {width} x {height} in '{path}'"
        )
    grey = np.asarray(image, dtype=np.float64)
    weights = 255.0 - grey if mass == "dark" else grey
    if weights.sum() <= 0:
        shade = "white" if mass == "dark" else "black"
        raise DataError(
            f"2d-image: '{path}' is all {shade}, so mass={mass!r} gives no probability anywhere"
        )
    return normalize(weights)


@register("2d-image")
def image_2d(
    *,
    path: str | os.PathLike[str] | None = None,
    mass: str = "dark",
    grid_size: int | None = None,
    num_samples: int = 20000,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> Dataset:
    """A 2-D density drawn from a picture: darker (or brighter) pixels get more mass.

    ``num_samples`` cells ``(row, col)`` are drawn from the picture's pmf; the
    first 80 % form the training part (``val_fraction`` of it held out for
    validation) and the last 20 % the test split. The recorded ``options["path"]``
    is absolute, so the data set rebuilds from any working directory.

    Args:
        path: The image file (required); any format Pillow reads, converted to grey.
        mass: ``"dark"`` (darker pixels get more mass) or ``"bright"``.
        grid_size: Resize to ``grid_size x grid_size`` (``2..1024``); without it the
            image must be square and its side is $K$.
        num_samples: Number of cells drawn in all, at least 10.
        val_fraction: Fraction of the training part held out, in ``[0, 1)``;
            ``0.0`` makes the validation split the training split itself.
        seed: Seed of the samples and of the validation split.

    Returns:
        A ``"2d"`` data set over a $K \\times K$ grid with its pmf and exact entropy.

    Raises:
        ValueError: If ``path`` is missing or an option is out of range.
        DataError: If the image cannot be read or used (see
            [`image_probs`][densitykit.data.image2d.image_probs]).
    """
    name = "2d-image"
    if path is None:
        raise ValueError(f"{name}: path must name an image file (path='face.png'), got None")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name}: path must be a str or path, got {type(path).__name__} {path!r}")
    mass = check_choice(mass, f"{name}: mass", MASS_MODES)
    grid_size = check_optional_int(
        grid_size, f"{name}: grid_size", minimum=2, maximum=MAX_GRID_SIZE
    )
    num_samples = check_int(num_samples, f"{name}: num_samples", minimum=10)
    val_fraction = check_fraction(val_fraction, f"{name}: val_fraction")
    seed = check_seed(seed, f"{name}: seed")
    check_allocation(num_samples * 64, f"{name} with num_samples={num_samples:,}")

    probs = image_probs(path, mass=mass, grid_size=grid_size)
    side = probs.shape[0]
    if side > MAX_GRID_SIZE:
        raise DataError(
            f"{name}: expected an image side of at most {MAX_GRID_SIZE}, got {side}; pass grid_size"
        )
    cells = sample_cells(probs, num_samples, generator(seed, SAMPLE_STREAM))
    return known_pmf_dataset(
        name,
        cells,
        probs,
        kind="2d",
        shape=(side, side),
        val_fraction=val_fraction,
        seed=seed,
        options={
            "path": str(Path(path).absolute()),
            "mass": mass,
            "grid_size": grid_size,
            "num_samples": num_samples,
            "val_fraction": val_fraction,
            "seed": seed,
        },
    )
