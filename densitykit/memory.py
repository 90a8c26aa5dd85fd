"""Memory bounds: refuse what cannot fit before allocating it.

A request that would need more memory than the machine has ends with one line that
states the size, instead of a traceback from the allocator after minutes of work.
"""

from __future__ import annotations

import os
from pathlib import Path

from densitykit.errors import ResourceError

try:
    import resource
except ImportError:  # pragma: no cover - not POSIX
    resource = None  # type: ignore[assignment]

__all__ = ["check_allocation", "format_bytes", "total_memory"]


def total_memory() -> int:
    """The memory this process may use, in bytes: the machine's physical memory, or
    less when a limit is set (``ulimit -d`` / ``-v``, a cgroup's ``memory.max``, as
    batch schedulers and containers set); a large number if none can be read."""
    try:
        limits = [int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))]
    except (ValueError, OSError, AttributeError):  # not POSIX: do not refuse on a guess
        limits = [1 << 50]
    if resource is not None:
        for which in (resource.RLIMIT_DATA, resource.RLIMIT_AS):
            soft = resource.getrlimit(which)[0]
            if soft != resource.RLIM_INFINITY and soft > 0:
                limits.append(soft)
    try:
        cgroup = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        cgroup = "max"
    if cgroup.isdigit():
        limits.append(int(cgroup))
    return min(limits)


def format_bytes(size: float) -> str:
    """``size`` bytes in readable units.

    Example:
        >>> format_bytes(3 * 1024**3)
        '3.2 GB'
        >>> format_bytes(512)
        '512 bytes'
    """
    if size < 1000:
        return f"{int(size)} bytes"
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        size /= 1000
        if size < 1000 or unit == "PB":
            return f"{size:.1f} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def check_allocation(num_bytes: float, what: str, *, fraction: float = 0.8) -> None:
    """Refuse ``what`` if it needs more than ``fraction`` of the machine's memory.

    Args:
        num_bytes: The estimated size.
        what: What would be allocated, for the message (``"the model"``).
        fraction: Share of physical memory allowed.

    Raises:
        ResourceError: If it cannot fit.

    Example:
        >>> check_allocation(1024, "a small array")
        >>> check_allocation(1e30, "a big one")
        Traceback (most recent call last):
        ...
        densitykit.errors.ResourceError: a big one would need 1000000000000000.0 PB, more than ...
    """
    limit = total_memory() * fraction
    if num_bytes > limit:
        raise ResourceError(
            f"{what} would need {format_bytes(num_bytes)}, more than this machine's "
            f"{format_bytes(total_memory())} of memory allows; ask for less"
        )
