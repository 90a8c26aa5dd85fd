"""A value derived from tensors, kept until one of them is replaced or edited in place.

Masks converted to the weights' dtype, and the fast sampler's plans, are derived from
buffers that change rarely but can change at any time (a new mask, ``.to(device)``, an
in-place edit). [`TensorCache`][densitykit.caching.TensorCache] keeps the derived value
with the source tensors themselves (so their identity cannot be recycled) and their
version counters, which in-place edits bump, and rebuilds it when anything differs.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Generic, TypeVar

import torch

__all__ = ["TensorCache"]

T = TypeVar("T")


class TensorCache(Generic[T]):
    """One value computed from ``sources`` and a ``key``, rebuilt when either changes.

    Inference tensors have no version counter: a value derived from one is rebuilt at
    every call.

    Example:
        >>> mask = torch.tensor([True, False])
        >>> cache = TensorCache()
        >>> calls = []
        >>> def build():
        ...     calls.append(1)
        ...     return mask.float()
        >>> _ = cache.get((mask,), "float", build); _ = cache.get((mask,), "float", build)
        >>> len(calls)
        1
        >>> mask[1] = True  # an in-place edit bumps the version counter
        >>> cache.get((mask,), "float", build).tolist(), len(calls)
        ([1.0, 1.0], 2)
    """

    __slots__ = ("_key", "_sources", "_value")

    def __init__(self) -> None:
        self._sources: tuple[torch.Tensor, ...] = ()
        self._key: Hashable = None
        self._value: T | None = None

    def get(self, sources: Sequence[torch.Tensor], key: Hashable, build: Callable[[], T]) -> T:
        """The cached value, or ``build()`` if a source or the key changed.

        Args:
            sources: The tensors the value is derived from.
            key: Anything else the value depends on (an index, a dtype, a device).
            build: Computes the value.
        """
        versions = []
        for tensor in sources:
            if tensor.is_inference():
                return build()
            versions.append(tensor._version)
        full_key = (tuple(versions), key)
        old = self._sources
        same = len(old) == len(sources) and all(a is b for a, b in zip(old, sources))
        if not same or self._value is None or self._key != full_key:
            self._value = build()
            self._sources, self._key = tuple(sources), full_key
        return self._value  # type: ignore[return-value]
