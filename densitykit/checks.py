"""Checks of user-given options, with messages that say what was expected and what came.

Written once and used everywhere: integers (anything ``operator.index`` accepts,
as torch does, so ``numpy.int64(3)`` is an integer and ``3.0`` and ``True`` are not),
positive integers, indices into ``0..size-1``, fractions, choices and flags. A
``name`` is what the message calls the option, with its owner where that helps
(``"shapes: num_samples"``).

Example:
    >>> check_int(3, "num_samples", minimum=10)
    Traceback (most recent call last):
    ...
    ValueError: num_samples must be an integer >= 10, got 3
"""

from __future__ import annotations

import math
import operator
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "check_bool",
    "check_choice",
    "check_fraction",
    "check_generator",
    "check_index",
    "check_int",
    "check_optional_int",
    "check_output_file",
    "check_positive_int",
    "check_seed",
]

SEED_MAX = 2**63 - 1
"""The largest seed: seeds are integers in ``0..SEED_MAX`` (torch takes no more than 64 bits)."""


def check_int(
    value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int:
    """Return ``value`` as an ``int`` if it is an integer in ``[minimum, maximum]``.

    Args:
        value: The option's value.
        name: What messages call it.
        minimum: The smallest allowed value (no bound if ``None``).
        maximum: The largest allowed value (no bound if ``None``).

    Raises:
        TypeError: If ``value`` is not an integer (``bool`` and floats are refused;
            integer-like numbers such as ``numpy.int64`` are accepted).
        ValueError: If it is out of range.

    Example:
        >>> import numpy as np
        >>> check_int(np.int64(20), "size", minimum=8)
        20
        >>> check_int(0, "epochs", minimum=1)
        Traceback (most recent call last):
        ...
        ValueError: epochs must be a positive integer, got 0
        >>> check_int(2.0, "epochs")
        Traceback (most recent call last):
        ...
        TypeError: epochs must be an integer, got float 2.0
    """
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, got bool {value!r}")
    try:
        number = operator.index(value)
    except TypeError:
        raise TypeError(
            f"{name} must be an integer, got {type(value).__name__} {value!r}"
        ) from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise ValueError(f"{name} must be {_integer_range(minimum, maximum)}, got {number}")
    return number


def _integer_range(minimum: int | None, maximum: int | None) -> str:
    if maximum is not None:
        return (
            f"an integer in {minimum}..{maximum}"
            if minimum is not None
            else (f"an integer <= {maximum}")
        )
    if minimum == 1:
        return "a positive integer"
    if minimum == 0:
        return "a non-negative integer"
    return f"an integer >= {minimum}"


def check_optional_int(
    value: Any, name: str, *, minimum: int | None = None, maximum: int | None = None
) -> int | None:
    """Like [`check_int`][densitykit.checks.check_int], but ``None`` passes through."""
    return None if value is None else check_int(value, name, minimum=minimum, maximum=maximum)


def check_positive_int(value: Any, name: str) -> int:
    """Return ``value`` as an ``int`` if it is an integer >= 1.

    Example:
        >>> check_positive_int(-2, "dim")
        Traceback (most recent call last):
        ...
        ValueError: dim must be a positive integer, got -2
    """
    return check_int(value, name, minimum=1)


def check_seed(value: Any, name: str = "seed") -> int:
    """Return ``value`` as an ``int`` if it is a seed, an integer in ``0..SEED_MAX``.

    Example:
        >>> check_seed(2**70)
        Traceback (most recent call last):
        ...
        ValueError: seed must be an integer in 0..9223372036854775807, got 1180591620717411303424
    """
    return check_int(value, name, minimum=0, maximum=SEED_MAX)


def check_index(value: Any, size: int, name: str) -> int:
    """Return ``value`` as an ``int`` if it indexes one of ``size`` items (``0..size-1``).

    Raises:
        TypeError: If ``value`` is not an integer.
        ValueError: If it is outside ``0..size-1`` (negative indices are refused).

    Example:
        >>> check_index(3, 3, "mask")
        Traceback (most recent call last):
        ...
        ValueError: mask must be an integer in 0..2, got 3
    """
    return check_int(value, name, minimum=0, maximum=size - 1)


def check_fraction(value: Any, name: str) -> float:
    """Return ``value`` as a float if it is a real number in ``[0, 1)``.

    Raises:
        TypeError: If ``value`` is not a real number.
        ValueError: If it is outside ``[0, 1)`` or not finite.

    Example:
        >>> check_fraction(0.1, "mnist: val_fraction")
        0.1
        >>> check_fraction(1.0, "mnist: val_fraction")
        Traceback (most recent call last):
        ...
        ValueError: mnist: val_fraction must be a number in [0, 1), got 1.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number in [0, 1), got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def check_generator(value: Any) -> None:
    """Check that ``value`` is a ``torch.Generator`` or ``None``.

    Raises:
        TypeError: If it is anything else.

    Example:
        >>> check_generator(0)
        Traceback (most recent call last):
        ...
        TypeError: generator must be a torch.Generator or None, got int
    """
    if value is not None and not isinstance(value, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(value).__name__}")


def check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``.

    Raises:
        TypeError: If it is not a string.
        ValueError: If it is not one of ``choices``.

    Example:
        >>> check_choice("glow", "2d-image: mass", ("dark", "bright"))
        Traceback (most recent call last):
        ...
        ValueError: 2d-image: mass must be one of 'dark', 'bright', got 'glow'
    """
    expected = ", ".join(repr(c) for c in choices)
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {expected}, got {type(value).__name__} {value!r}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {expected}, got {value!r}")
    return value


def check_bool(value: Any, name: str) -> bool:
    """Return ``value`` if it is a ``bool``.

    Raises:
        TypeError: If it is anything else (``1`` and ``"yes"`` included).
    """
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return value


def check_output_file(
    path: str | os.PathLike[str],
    suffixes: Sequence[str],
    *,
    overwrite: bool,
    name: str = "the output file",
) -> Path:
    """Return ``path`` if it ends in one of ``suffixes`` and may be written.

    A file that exists is a user's file: it is replaced only with ``overwrite``.

    Raises:
        ValueError: On another ending.
        FileExistsError: If ``path`` exists and ``overwrite`` is false.

    Example:
        >>> check_output_file("samples.txt", [".npy", ".png"], overwrite=False)
        Traceback (most recent call last):
        ...
        ValueError: the output file must end in .npy or .png, got 'samples.txt'
    """
    path = Path(path)
    if path.suffix not in suffixes:
        raise ValueError(f"{name} must end in {' or '.join(suffixes)}, got {path.name!r}")
    if os.path.lexists(path) and not overwrite:  # a dangling link is a user's file too
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
    return path
