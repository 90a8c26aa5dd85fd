"""Data sets for density estimation, one module per family, behind one registry.

Every data set is a [`Dataset`][densitykit.data.dataset.Dataset]: integer
train / validation / test tensors (or, for a table of real or mixed columns, its
model values and columns) plus what is known of the true distribution.
Build one by name with [`load_dataset`][densitykit.data.registry.load_dataset];
[`names`][densitykit.data.registry.names] lists what is registered:

| name | family | values |
| --- | --- | --- |
| ``1d-gaussian``, ``1d-bimodal`` | CS294-158 HW1 1-D sets (``toy1d``) | 20, 100 |
| ``2d-smiley`` | a drawn smiley face on a grid (``smiley``) | grid side |
| ``2d-image`` | a picture's grey levels as a density (``image2d``) | image side |
| ``shapes`` | generated binary shape images (``shapes``) | 2 |
| ``mnist``, ``fashion-mnist`` | IDX image files (``mnist``) | 2 or 256 |
| ``binarized-mnist`` | the 50k / 10k / 10k benchmark, one fixed Bernoulli draw (``mnist``) | 2 |
| ``moons``, ``8gaussians``, ``checkerboard``, ``pinwheel``, ``rings`` | ``toy2d`` | real |
| ``file`` | your own .npy, .npz, .csv, .tsv or PNG folder (``files``) | max + 1, or real |

Register your own factory with ``@register("name")``; it must return a
``Dataset`` and take keyword-only options with defaults.

Example:
    >>> from densitykit.data import load_dataset
    >>> ds = load_dataset("2d-smiley", grid_size=16, num_samples=200, seed=1)
    >>> ds.kind, ds.train.dtype, ds.options["seed"]
    ('2d', torch.int64, 1)
"""

from __future__ import annotations

from densitykit.data import (  # noqa: F401 - registers the built-ins
    files,
    image2d,
    mnist,
    shapes,
    smiley,
    toy1d,
    toy2d,
)
from densitykit.data.dataset import Dataset
from densitykit.data.files import from_array
from densitykit.data.idx import read_idx
from densitykit.data.registry import DATASETS, load_dataset, names, register

__all__ = ["DATASETS", "Dataset", "from_array", "load_dataset", "names", "read_idx", "register"]
