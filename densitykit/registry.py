"""A generic name -> factory registry, in the style of timm's model registry.

Heads, mask builders and datasets are each kept in one [`Registry`][densitykit.registry.Registry].
Built-in entries register themselves with the decorator at import time; user code
registers its own the same way, and from then on the name works everywhere a
built-in name does (``create_model``, the CLI, checkpoints).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, overload

from densitykit.errors import DuplicateNameError, UnknownNameError, UnknownOptionError

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
        given: Parameters the library itself passes to every factory (a head's
            ``dim`` and ``num_values``); they are not listed among its options.

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
        >>> widgets.create("square", r=2)
        Traceback (most recent call last):
        ...
        densitykit.errors.UnknownOptionError: widget 'square' takes no option 'r'; it takes: side
    """

    def __init__(self, kind: str, *, given: Iterable[str] = ()) -> None:
        self.kind = kind
        self.given = tuple(given)
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
            UnknownOptionError: If the factory takes no keyword of that name; the
                message lists the options it takes.
        """
        factory = self.get(name)
        accepted = self._parameters(factory)
        if accepted is not None:
            unknown = [key for key in options if key not in accepted]
            if unknown:
                takes = ", ".join(self.options(name)) or "no options"
                shown = ", ".join(repr(key) for key in unknown)
                noun = "option" if len(unknown) == 1 else "options"
                raise UnknownOptionError(
                    f"{self.kind} {name!r} takes no {noun} {shown}; it takes: {takes}"
                )
        return factory(**options)

    def options(self, name: str) -> list[str]:
        """The keyword options ``name``'s factory takes, beyond the ``given`` ones.

        Empty when the factory's signature cannot be read or takes ``**kwargs`` only.

        Raises:
            UnknownNameError: If ``name`` is not registered.
        """
        accepted = self._parameters(self.get(name)) or {}
        return [key for key in accepted if key not in self.given]

    @staticmethod
    def _parameters(factory: Callable[..., Any]) -> dict[str, inspect.Parameter] | None:
        """The keyword-passable parameters of ``factory``; ``None`` if any keyword goes."""
        try:
            parameters = inspect.signature(factory).parameters
        except (TypeError, ValueError):  # a builtin without a readable signature
            return None
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
            return None
        keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        return {key: p for key, p in parameters.items() if p.kind in keyword}

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
