"""Run folders on disk: what is one, and how one is created, locked or replaced safely.

A *run folder* holds only the files densitykit writes into it, by name:

| file | content |
| --- | --- |
| ``config.json`` | data config, model config, train config, plug-ins |
| ``checkpoint.pt`` | the best weights with their model config (pickle-free) |
| ``train_state.pt`` | the loop state after the last completed epoch (for ``densitykit resume``) |
| ``metrics.jsonl`` | one JSON line per completed epoch |
| ``metrics.json`` | test NLL (nats per example, per dim, bits per dim) and run facts |
| ``learning_curves.png``, ``samples.png``, ``data.png`` | pictures (one of them) |
| ``density.png``, ``histogram.png`` | pictures of 2-D and 1-D data |
| ``.densitykit.lock`` | the lock a process holds while it writes the folder |

plus, for an instant, the hidden temporary files of atomic writes
(``.checkpoint.pt.dk<pid>_<random>.tmp``), and, while a run is being replaced, the
previous run's files in the hidden sub-folder ``.previous-run``. Any other file (a
picture of the user's own, ``notes.txt``) makes the folder a user's folder.

The promise to the user: nothing outside a run folder is ever deleted or overwritten.

- ``--overwrite`` replaces only a folder that *is* a run folder (its ``config.json``
  parses as a run config, and it holds nothing but run files), never the current folder
  or one that holds it.
- The replaced run's files are moved into ``.previous-run`` inside the folder and
  deleted only once the new run has completed its first epoch; if the new run fails
  before, they are put back. If the process is killed before either (``kill -9``), the
  next command on the folder puts the previous run back and says so.
- One process at a time writes a run folder: it holds an exclusive lock on
  ``.densitykit.lock`` (released by the system when the process ends, however it ends);
  a second process is refused in one line naming the holder.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from densitykit.atomic import FILE_MODE, remove_abandoned_temporaries
from densitykit.errors import RunFolderError

try:  # POSIX; elsewhere a run folder is not locked (documented)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "FILE_MODE",
    "LOCK_FILE",
    "METRICS_FILE",
    "METRICS_LOG",
    "PICTURE_FILES",
    "PREVIOUS_RUN",
    "RUN_FILES",
    "STATE_FILE",
    "Replacement",
    "RunLock",
    "foreign_entries",
    "is_run_folder",
    "prepare_run_folder",
    "recover_replacement",
    "remove_stale_temporaries",
]

CONFIG_FILE = "config.json"
"""The run's configuration: data, model and train configs, and the plug-ins it used."""
CHECKPOINT_FILE = "checkpoint.pt"
"""The best weights with their model config."""
STATE_FILE = "train_state.pt"
"""The loop state after the last completed epoch."""
METRICS_LOG = "metrics.jsonl"
"""One JSON line per completed epoch."""
METRICS_FILE = "metrics.json"
"""The final figures of the run."""
PICTURE_FILES: tuple[str, ...] = (
    "learning_curves.png",
    "samples.png",
    "data.png",
    "density.png",
    "histogram.png",
)
"""The pictures a run draws into its folder."""
RUN_FILES: tuple[str, ...] = (
    CONFIG_FILE,
    CHECKPOINT_FILE,
    STATE_FILE,
    METRICS_LOG,
    METRICS_FILE,
    *PICTURE_FILES,
)
"""Every file densitykit writes into a run folder, by name."""
LOCK_FILE = ".densitykit.lock"
"""The lock a process holds while it writes the run folder."""
PREVIOUS_RUN = ".previous-run"
"""The hidden sub-folder holding a replaced run until the new run has started."""
_MOVING = PREVIOUS_RUN + ".moving"  # files being moved in: not yet all there
_DISCARDING = PREVIOUS_RUN + ".discarding"  # the new run has started: delete it
_BACKUPS = (PREVIOUS_RUN, _MOVING, _DISCARDING)

_LOG = logging.getLogger("densitykit")
_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]+\.tmp$")


def _is_run_file(name: str) -> bool:
    return name in RUN_FILES


def _is_temporary(name: str) -> bool:
    match = _TEMPORARY.match(name)
    return match is not None and _is_run_file(match.group("target"))


def _holds_only_run_files(folder: Path) -> bool:
    return all(
        entry.is_file(follow_symlinks=False) and _is_run_file(entry.name)
        for entry in os.scandir(folder)
    )


def _is_ours(entry: os.DirEntry) -> bool:
    if entry.is_symlink():
        return False
    if entry.name in _BACKUPS:
        return entry.is_dir() and _holds_only_run_files(Path(entry.path))
    return entry.is_file() and (
        _is_run_file(entry.name) or _is_temporary(entry.name) or entry.name == LOCK_FILE
    )


def foreign_entries(path: Path) -> list[str]:
    """The entries of folder ``path`` that a run folder does not hold (sorted).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> for name in ("config.json", "samples.png", "notes.txt", "holiday.png"):
        ...     _ = (folder / name).write_text("")
        >>> foreign_entries(folder)
        ['holiday.png', 'notes.txt']
    """
    return sorted(entry.name for entry in os.scandir(path) if not _is_ours(entry))


def is_run_folder(path: Path, parse_config: Callable[[Any], object] | None = None) -> bool:
    """Whether ``path`` is a densitykit run folder, and nothing else.

    It must be a real folder (not a link) holding only run files, whose ``config.json``
    is a JSON object with a ``densitykit_version`` that ``parse_config`` accepts (the
    workflow passes ``RunConfig.from_dict``: a config that does not parse as a run
    config is a user's file).

    Args:
        path: The folder.
        parse_config: Raises on a config that is not a run config.
    """
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
        if not isinstance(config, dict) or "densitykit_version" not in config:
            return False
        if parse_config is not None:
            parse_config(config)
    except (OSError, ValueError, TypeError, KeyError, RecursionError):
        return False
    return not foreign_entries(path)


def remove_stale_temporaries(path: Path) -> list[str]:
    """Delete the hidden temporary files that interrupted writes left in a run folder.

    Call it while holding the folder's lock: then no other process is writing, and every
    name of the form ``.<run file>.<random>.tmp`` is a leftover.

    Returns:
        The names removed.
    """
    removed = []
    for entry in os.scandir(path):
        if _is_temporary(entry.name) and entry.is_file(follow_symlinks=False):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)
            removed.append(entry.name)
    return sorted(removed)


def _encloses_working_folder(path: Path) -> bool:
    here = Path.cwd().resolve()
    target = path.resolve()
    return target == here or target in here.parents


class RunLock:
    """An exclusive lock on a run folder, held while a process writes it.

    The lock is ``fcntl.flock`` on the folder's ``.densitykit.lock``: the system
    releases it when the process ends, ``kill -9`` included, so a lock is never stale.
    The file holds the holder's process id, host and command, to name it to a second
    process. On systems without ``fcntl`` nothing is locked.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> with RunLock(folder):
        ...     RunLock(folder).acquire()
        Traceback (most recent call last):
        ...
        densitykit.errors.RunFolderError: ... is being written by another densitykit process ...
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        """Take the lock, or refuse in one line naming the holder.

        Raises:
            RunFolderError: If another process holds it, or the lock file cannot be made.
        """
        if fcntl is None or self._fd is not None:  # pragma: no cover - Windows
            return self
        lock = self.path / LOCK_FILE
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(lock, flags, FILE_MODE)
        except OSError as error:
            raise RunFolderError(
                f"cannot lock run folder {self.path} ({error.strerror or error}); "
                "nothing was changed"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise RunFolderError(
                f"{self.path} is being written by another densitykit process ({holder}); "
                "wait until it ends, or stop it"
            ) from None
        command = " ".join(os.path.basename(a) if i == 0 else a for i, a in enumerate(sys.argv))
        holder = f"pid {os.getpid()} on {socket.gethostname()}: {command}"[:500]
        with contextlib.suppress(OSError):  # the holder's name is a courtesy
            os.ftruncate(fd, 0)
            os.pwrite(fd, holder.encode(errors="replace"), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Let the lock go (the lock file stays: removing it would race)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class Replacement:
    """An existing run being replaced by a new run in the same folder, with a way back.

    [`begin`][densitykit.runfolder.Replacement.begin] moves the old run's files into
    the hidden sub-folder ``.previous-run``;
    [`commit`][densitykit.runfolder.Replacement.commit] deletes them (only run files,
    one by one); [`rollback`][densitykit.runfolder.Replacement.rollback] removes what
    the new run wrote and puts the old run back. The folder itself, and its lock, stay
    where they are. A process killed in between leaves a state that
    [`recover_replacement`][densitykit.runfolder.recover_replacement] completes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.backup = path / PREVIOUS_RUN
        self.active = False

    def begin(self) -> None:
        """Move the old run aside (first to ``.previous-run.moving``, then renamed)."""
        moving = self.path / _MOVING
        moving.mkdir()
        for entry in os.scandir(self.path):
            if entry.is_file(follow_symlinks=False) and _is_run_file(entry.name):
                os.rename(entry.path, moving / entry.name)
        remove_abandoned_temporaries(self.path)
        os.rename(moving, self.backup)
        self.active = True

    def commit(self) -> None:
        """Delete the old run (its run files only; anything else stays)."""
        if not self.active:
            return
        discarding = self.path / _DISCARDING
        os.rename(self.backup, discarding)
        _remove_run_files(discarding, remove_folder=True)
        self.active = False

    def rollback(self) -> None:
        """Remove the new run's files and put the old run back."""
        if not self.active:
            return
        _remove_run_files(self.path, remove_folder=False)
        _move_back(self.backup, self.path)
        self.active = False


def _remove_run_files(folder: Path, *, remove_folder: bool) -> None:
    for entry in os.scandir(folder):
        ours = _is_run_file(entry.name) or _is_temporary(entry.name)
        if ours and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)
    if remove_folder:
        with contextlib.suppress(OSError):  # not empty: what is not ours stays where it is
            folder.rmdir()


def _move_back(backup: Path, path: Path) -> None:
    for entry in os.scandir(backup):
        if entry.is_file(follow_symlinks=False) and _is_run_file(entry.name):
            os.replace(entry.path, path / entry.name)
    with contextlib.suppress(OSError):
        backup.rmdir()


def recover_replacement(path: Path, *, lock: RunLock | None = None) -> str | None:
    """Finish what a process killed while replacing the run in ``path`` left undone.

    With the folder locked: a previous run still in ``.previous-run`` (the new run
    never completed its first epoch) is put back, the new run's files removed; a
    previous run half moved aside is put back; a previous run being deleted is deleted.
    A folder without such a sub-folder is left alone, and so is one that another
    process is writing.

    Args:
        path: The run folder.
        lock: The folder's lock, if the caller already holds it.

    Returns:
        A sentence saying what was put back (also logged as a warning of the
        ``densitykit`` logger, which reaches the terminal), or ``None`` if nothing was.
    """
    message = _recover(path, lock)
    if message:
        _LOG.warning(message)
    return message


def _recover(path: Path, lock: RunLock | None) -> str | None:
    if not path.is_dir() or not any((path / name).is_dir() for name in _BACKUPS):
        return None
    own = None
    if lock is None:
        try:
            own = RunLock(path).acquire()
        except RunFolderError:
            return None  # a live process is replacing it: not ours to touch
    try:
        if (path / _DISCARDING).is_dir():
            _remove_run_files(path / _DISCARDING, remove_folder=True)
        if (path / _MOVING).is_dir():
            _move_back(path / _MOVING, path)
            return (
                f"a process was killed while it replaced the run in {path}; "
                "the previous run was put back"
            )
        if (path / PREVIOUS_RUN).is_dir():
            _remove_run_files(path, remove_folder=False)
            _move_back(path / PREVIOUS_RUN, path)
            return (
                f"the run replacing the one in {path} was killed before its first epoch; "
                "the previous run was put back"
            )
        return None
    finally:
        if own is not None:
            own.release()


def _check_replaceable(
    path: Path, overwrite: bool, parse_config: Callable[[Any], object] | None
) -> bool:
    """Whether ``path`` holds a run to replace (``False``: empty or missing); refuse a
    folder that may not be written."""
    if path.is_symlink():
        raise RunFolderError(f"{path} is a symbolic link; give a real folder for the run")
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{path} exists and is not a folder")
    if not path.is_dir() or all(entry.name == LOCK_FILE for entry in os.scandir(path)):
        return False
    if not overwrite:
        raise RunFolderError(
            f"run folder {path} already exists; pass --overwrite to replace it, or "
            f"continue it with: densitykit resume {path}"
        )
    if _encloses_working_folder(path):
        raise RunFolderError(
            f"--overwrite never replaces the current folder or a folder that holds it "
            f"({path}); nothing was deleted"
        )
    if not is_run_folder(path, parse_config):
        foreign = foreign_entries(path)
        if foreign:
            detail = (
                f"it holds {', '.join(repr(n) for n in foreign[:3])}"
                + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
                + ", which densitykit did not write"
            )
        elif not (path / CONFIG_FILE).is_file():
            detail = "it has no config.json"
        else:
            detail = "its config.json is not a densitykit run config"
        raise RunFolderError(
            f"--overwrite replaces only a densitykit run folder, and {path} is not one: "
            f"{detail}; nothing was deleted"
        )
    return True


def prepare_run_folder(
    path: Path,
    *,
    overwrite: bool,
    parse_config: Callable[[Any], object] | None = None,
    lock: RunLock | None = None,
) -> Replacement | None:
    """Make ``path`` ready for a new run, deleting nothing yet.

    A folder that is neither missing, empty nor a run folder is refused before
    anything is written into it.

    Args:
        path: The run folder to create.
        overwrite: Allow replacing an existing run folder (see the module's promise).
        parse_config: Raises on a ``config.json`` that is not a run config.
        lock: A lock on ``path`` to take (and keep: the caller releases it); without
            one, the folder is not locked.

    Returns:
        A begun [`Replacement`][densitykit.runfolder.Replacement] when an existing run
        is being replaced (commit it once the new run has started, roll it back if it
        fails), else ``None``.

    Raises:
        RunFolderError: If ``path`` cannot hold a new run, or another process writes it.
    """
    recover_replacement(path)
    _check_replaceable(path, overwrite, parse_config)  # before writing anything in it
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise RunFolderError(
            f"cannot write to run folder {path}: {error.strerror or error}"
        ) from None
    if lock is not None:
        lock.acquire()
        recover_replacement(path, lock=lock)
    replacement = Replacement(path) if _check_replaceable(path, overwrite, parse_config) else None
    try:
        if replacement is not None:
            replacement.begin()
        probe = path / f".{CONFIG_FILE}.dk{os.getpid()}_probe.tmp"  # cleaned if left
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        if replacement is not None:
            replacement.rollback()
        raise RunFolderError(
            f"cannot write to run folder {path}: {error.strerror or error}"
        ) from None
    return replacement
