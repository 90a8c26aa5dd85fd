"""Atomic file writes: every file densitykit writes appears whole, or not at all.

Every write goes to a hidden temporary file in the destination's folder
(``.<name>.dk<pid>_<random>.tmp``), is flushed to disk, then renamed over the
destination. So:

- a crash, a kill or a full disk mid-write leaves the previous file as it was;
- a symbolic link at the destination is *replaced* by the new file, never followed,
  so a link cannot make densitykit write outside the folder it was given;
- a temporary file left by a process that was killed (``kill -9`` leaves no chance to
  clean up) is removed by the next write into the same folder, once its process is
  gone; only names of the pattern above are touched.

Every file is created with mode ``0644`` less the user's umask, as ``open`` does.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from densitykit.errors import CheckpointError

__all__ = [
    "FILE_MODE",
    "atomic_path",
    "atomic_write",
    "output_exists",
    "remove_abandoned_temporaries",
]

FILE_MODE = 0o644
"""The mode of every file densitykit writes, less the user's umask (as ``open`` does)."""

_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.dk(?P<pid>[0-9]+)_[A-Za-z0-9_]+\.tmp$")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def output_exists(path: str | os.PathLike[str]) -> bool:
    """Whether anything is at ``path``: a file, a folder, or a link (dangling ones too).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> (folder / "link.png").symlink_to(folder / "nowhere.png")
        >>> (folder / "link.png").exists(), output_exists(folder / "link.png")
        (False, True)
    """
    return os.path.lexists(path)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: alive
        return True
    return True


def remove_abandoned_temporaries(folder: str | os.PathLike[str]) -> list[str]:
    """Delete the temporary files that killed densitykit processes left in ``folder``.

    Only hidden files named ``.<name>.dk<pid>_<random>.tmp`` whose process ``<pid>`` no
    longer runs are removed; links and folders are never touched.

    Returns:
        The names removed (sorted).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / ".s.npy.dk999999999_abc.tmp").write_bytes(b"half")
        >>> _ = (folder / "notes.tmp").write_bytes(b"mine")
        >>> remove_abandoned_temporaries(folder)
        ['.s.npy.dk999999999_abc.tmp']
        >>> sorted(p.name for p in folder.iterdir())
        ['notes.tmp']
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMPORARY.match(entry.name)
        if match is None or _alive(int(match.group("pid"))):
            continue
        with contextlib.suppress(OSError):
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(entry.name)
    return sorted(removed)


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    return getattr(error, "strerror", None) or (
        text.splitlines()[0] if text else type(error).__name__
    )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Give a temporary path beside ``path`` to fill; on success it replaces ``path``.

    For writers that need a file name (``numpy.lib.format.open_memmap``). The file at
    the temporary path is flushed to disk before the rename; on any error it is
    removed and ``path`` is left as it was.

    Args:
        path: The destination. A link there is replaced, not followed.

    Raises:
        CheckpointError: If the file cannot be written (a full disk, no permission),
            naming it; nothing was lost.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "numbers.txt"
        >>> with atomic_path(target) as tmp:
        ...     _ = tmp.write_text("1 2 3")
        >>> target.read_text()
        '1 2 3'
    """
    path = Path(path)
    remove_abandoned_temporaries(path.parent)
    try:
        fd, name = tempfile.mkstemp(
            prefix=f".{path.name}.dk{os.getpid()}_", suffix=".tmp", dir=path.parent
        )
    except OSError as error:
        raise CheckpointError(
            f"cannot write {path} ({_reason(error)}); nothing was changed"
        ) from None
    tmp = Path(name)
    try:
        os.fchmod(fd, FILE_MODE & ~_UMASK)  # mkstemp makes 0600 files
        os.close(fd)
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(error, (OSError, RuntimeError)) and not isinstance(error, CheckpointError):
            # torch's zip writer reports a full disk as a RuntimeError.
            previous = "the previous file is intact" if output_exists(path) else "no file was left"
            raise CheckpointError(
                f"cannot write {path} ({_reason(error)}); {previous}, nothing was lost"
            ) from None
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> None:
    """Write ``path`` atomically: ``write(file)`` fills a temporary file that replaces it.

    Args:
        path: The destination. A link there is replaced, not followed.
        write: Called with a binary file object open on the temporary file.

    Raises:
        CheckpointError: If the file cannot be written, naming it; nothing was lost.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "hello.txt"
        >>> atomic_write(target, lambda file: file.write(b"hello"))
        >>> target.read_text()
        'hello'
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        write(handle)
