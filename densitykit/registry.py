"""A generic name -> factory registry, in the style of timm's model registry.

Heads, mask builders and datasets are each kept in one [`Registry`][densitykit.registry.Registry].
Built-in entries register themselves with the decorator at import time; user code
registers its own the same way, and from then on the name works everywhere a
built-in name does (``create_model``, the CLI, checkpoints).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from densitykit.errors import DuplicateNameError, UnknownNameError

__all__ = ["Registry", "RegistryEntry"]

T = TypeVar("T", bound=Callable[..., Any])


@dataclass(frozen=True)
class RegistryEntry:
    """One registered factory.

    Attributes:
        name: The registered name.
        factory: The class or function that ``create`` calls.
        description: One line shown by listings (the first docstring line by default).
    """

    name: str
    factory: Callable[..., Any]
    description: str


def _first_line(obj: object) -> str:
    doc = inspect.getdoc(obj) or ""
    return doc.strip().splitlines()[0].strip() if doc.strip() else ""


class Registry(Generic[T]):
    """A named collection of factories.

    Args:
        kind: What the registry holds, used in error messages (``"head"``).

    Example:
        >>> widgets = Registry("widget")
        >>> @widgets.register("square")
        ... def make_square(side: int = 1) -> int:
        ...     '''A square of the given side.'''
        ...     return side * side
        >>> widgets.create("square", side=3)
        9
        >>> widgets.names()
        ['square']
        >>> widgets.create("circle")
        Traceback (most recent call last):
        ...
        densitykit.errors.UnknownNameError: unknown widget 'circle'; registered widgets: 'square'
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, RegistryEntry] = {}

    @overload
    def register(self, name: str, factory: T, *, description: str | None = None) -> T: ...

    @overload
    def register(
        self, name: str, factory: None = None, *, description: str | None = None
    ) -> Callable[[T], T]: ...

    def register(
        self, name: str, factory: T | None = None, *, description: str | None = None
    ) -> T | Callable[[T], T]:
        """Register ``factory`` under ``name``; usable as a decorator.

        Args:
            name: The name users type. Must be a non-empty string not yet registered.
            factory: The class or function to register. When omitted, a decorator is returned.
            description: A one-line description; defaults to the first docstring line.

        Returns:
            The factory itself (so the decorated object is unchanged), or the decorator.

        Raises:
            DuplicateNameError: If ``name`` is already registered.
            TypeError: If ``name`` is not a non-empty string or ``factory`` is not callable.
        """
        if not isinstance(name, str) or not name:
            raise TypeError(f"a {self.kind} name must be a non-empty string, got {name!r}")

        def decorator(obj: T) -> T:
            if not callable(obj):
                raise TypeError(f"a {self.kind} factory must be callable, got {type(obj).__name__}")
            if name in self._entries:
                raise DuplicateNameError(
                    f"a {self.kind} named {name!r} is already registered "
                    f"({self._entries[name].factory!r}); choose another name"
                )
            text = description if description is not None else _first_line(obj)
            self._entries[name] = RegistryEntry(name, obj, text)
            return obj

        return decorator(factory) if factory is not None else decorator

    def unregister(self, name: str) -> None:
        """Remove ``name`` (mainly for tests and interactive sessions).

        Raises:
            UnknownNameError: If ``name`` is not registered.
        """
        self._entry(name)
        del self._entries[name]

    def _entry(self, name: str) -> RegistryEntry:
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            known = ", ".join(repr(n) for n in self.names()) or "none"
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; registered {self.kind}s: {known}"
            ) from None

    def get(self, name: str) -> T:
        """Return the factory registered under ``name``.

        Raises:
            UnknownNameError: If ``name`` is not registered; the message lists the known names.
        """
        return self._entry(name).factory  # type: ignore[return-value]

    def create(self, name: str, /, **options: Any) -> Any:
        """Build the entry ``name`` with keyword ``options``.

        Raises:
            UnknownNameError: If ``name`` is not registered.
        """
        return self.get(name)(**options)

    def describe(self, name: str) -> str:
        """Return the one-line description of ``name``."""
        return self._entry(name).description

    def names(self) -> list[str]:
        """Return the registered names, sorted."""
        return sorted(self._entries)

    def entries(self) -> list[RegistryEntry]:
        """Return every entry, sorted by name."""
        return [self._entries[n] for n in self.names()]

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, names={self.names()})"
