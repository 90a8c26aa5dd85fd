"""The head registry (kept apart so head modules can register without import cycles)."""

from __future__ import annotations

import inspect

from densitykit.registry import Registry

__all__ = ["HEADS", "create", "default_num_values", "get", "names", "register"]

HEADS: Registry = Registry("head", given=("dim", "num_values"))
"""Output distributions by name: ``HEADS.create(name, dim=..., num_values=..., **options)``."""

register = HEADS.register
create = HEADS.create
names = HEADS.names
get = HEADS.get


def default_num_values(name: str) -> int:
    """The head's own default ``num_values`` (the Bernoulli's 2), if its factory has one.

    Raises:
        ValueError: If ``name`` is not registered, or its factory has no default.

    Example:
        >>> default_num_values("bernoulli")
        2
    """
    parameter = inspect.signature(HEADS.get(name)).parameters.get("num_values")
    if parameter is None or parameter.default is inspect.Parameter.empty:
        raise ValueError(
            f"num_values is required for head={name!r}, which has no default number of values"
        )
    return parameter.default
