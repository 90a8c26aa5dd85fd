"""The dataset registry: every data family registers its factories here by name.

A factory takes keyword-only options (each with a default) and returns a
[`Dataset`][densitykit.data.dataset.Dataset]; the first line of its docstring is the
description that ``densitykit datasets`` prints.
"""

from __future__ import annotations

from typing import Any

from densitykit.data.dataset import Dataset
from densitykit.registry import Registry

__all__ = ["DATASETS", "load_dataset", "names", "register"]

DATASETS: Registry[Any] = Registry("dataset")
"""Every registered data set factory, by name."""

register = DATASETS.register


def load_dataset(name: str, /, **options: Any) -> Dataset:
    """Build the data set registered as ``name`` with keyword ``options``.

    Args:
        name: A registered name, one of [`names()`][densitykit.data.registry.names].
        **options: The factory's keyword options (``seed``, ``val_fraction``, ...).

    Returns:
        The data set; ``load_dataset(name, **ds.options)`` builds it again.

    Raises:
        UnknownNameError: If ``name`` is not registered; the message lists the names.
        ValueError: If an option value is out of range (``DataError`` for data problems).
        TypeError: If an option is unknown or of the wrong type.

    Example:
        >>> ds = load_dataset("1d-gaussian", val_fraction=0.25)
        >>> len(ds.train), len(ds.val), len(ds.test)
        (600, 200, 200)
    """
    return DATASETS.create(name, **options)


def names() -> list[str]:
    """Return the registered data set names, sorted."""
    return DATASETS.names()
