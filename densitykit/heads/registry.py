"""The head registry (kept apart so head modules can register without import cycles)."""

from __future__ import annotations

from densitykit.registry import Registry

__all__ = ["HEADS", "create", "get", "names", "register"]

HEADS: Registry = Registry("head", given=("dim", "num_values"))
"""Output distributions by name: ``HEADS.create(name, dim=..., num_values=..., **options)``."""

register = HEADS.register
create = HEADS.create
names = HEADS.names
get = HEADS.get
