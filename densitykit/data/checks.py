"""Validation of data set options, with messages that say what was expected and what came.

Each check names the data set and the option, so a message read on the command
line says where it came from: ``shapes: num_samples must be an integer >= 10, got 3``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

__all__ = [
    "check_bool",
    "check_choice",
    "check_fraction",
    "check_int",
    "check_optional_int",
    "check_seed",
]


def check_int(
    dataset: str, option: str, value: Any, *, minimum: int, maximum: int | None = None
) -> int:
    """Return ``value`` if it is an int in ``[minimum, maximum]``.

    Raises:
        TypeError: If ``value`` is not an int (``bool`` is refused).
        ValueError: If it is out of range.

    Example:
        >>> check_int("shapes", "size", 20, minimum=8)
        20
        >>> check_int("shapes", "size", 3, minimum=8)
        Traceback (most recent call last):
        ...
        ValueError: shapes: size must be an integer >= 8, got 3
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(
            f"{dataset}: {option} must be an integer, got {type(value).__name__} {value!r}"
        )
    if value < minimum or (maximum is not None and value > maximum):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ValueError(f"{dataset}: {option} must be an integer {bound}, got {value}")
    return int(value)


def check_optional_int(
    dataset: str, option: str, value: Any, *, minimum: int, maximum: int | None = None
) -> int | None:
    """Like [`check_int`][densitykit.data.checks.check_int], but ``None`` passes through."""
    return (
        None
        if value is None
        else check_int(dataset, option, value, minimum=minimum, maximum=maximum)
    )


def check_fraction(dataset: str, option: str, value: Any) -> float:
    """Return ``value`` as a float if it is a real number in ``[0, 1)``.

    Raises:
        TypeError: If ``value`` is not a real number.
        ValueError: If it is outside ``[0, 1)`` or not finite.

    Example:
        >>> check_fraction("mnist", "val_fraction", 0.1)
        0.1
        >>> check_fraction("mnist", "val_fraction", 1.0)
        Traceback (most recent call last):
        ...
        ValueError: mnist: val_fraction must be a number in [0, 1), got 1.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(
            f"{dataset}: {option} must be a number in [0, 1), got {type(value).__name__} {value!r}"
        )
    if not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"{dataset}: {option} must be a number in [0, 1), got {value!r}")
    return float(value)


def check_choice(dataset: str, option: str, value: Any, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``.

    Raises:
        ValueError: If it is not (``TypeError`` if it is not even a string).

    Example:
        >>> check_choice("2d-image", "mass", "glow", ("dark", "bright"))
        Traceback (most recent call last):
        ...
        ValueError: 2d-image: mass must be one of 'dark', 'bright', got 'glow'
    """
    expected = ", ".join(repr(c) for c in choices)
    if not isinstance(value, str):
        raise TypeError(
            f"{dataset}: {option} must be one of {expected}, got {type(value).__name__} {value!r}"
        )
    if value not in choices:
        raise ValueError(f"{dataset}: {option} must be one of {expected}, got {value!r}")
    return value


def check_seed(dataset: str, value: Any) -> int:
    """Return ``value`` if it is a non-negative int (what numpy's seeding accepts)."""
    return check_int(dataset, "seed", value, minimum=0)


def check_bool(dataset: str, option: str, value: Any) -> bool:
    """Return ``value`` if it is a ``bool``.

    Raises:
        TypeError: If it is anything else (``1`` and ``"yes"`` included).
    """
    if not isinstance(value, bool):
        raise TypeError(
            f"{dataset}: {option} must be True or False, got {type(value).__name__} {value!r}"
        )
    return value
