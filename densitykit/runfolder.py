"""Run folders on disk: what is one, and how one is created or replaced without losing files.

A *run folder* holds only the files densitykit writes into it:

| file | content |
| --- | --- |
| ``config.json`` | data config, model config, train config, plug-ins |
| ``checkpoint.pt`` | the best weights with their model config (pickle-free) |
| ``train_state.pt`` | the loop state after the last completed epoch (for ``densitykit resume``) |
| ``metrics.jsonl`` | one JSON line per completed epoch |
| ``metrics.json`` | test NLL (nats per example, per dim, bits per dim) and run facts |
| ``*.png`` | learning curves, and samples / density / histogram pictures |

plus, for an instant, the hidden temporary files of atomic writes
(``.checkpoint.pt.<random>.tmp``). Every file is written with mode ``0644`` (less the
user's umask), like any file a program creates.

The promise to the user: nothing outside a run folder is ever deleted or overwritten.
``--overwrite`` replaces only a folder that *is* a run folder (its ``config.json``
says so, and it holds nothing but run files), never the current folder or one that
holds it, and the replaced run is moved aside and deleted only once the new run has
completed its first epoch; if the new run fails before, the old one is put back.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from pathlib import Path

from densitykit.checkpoint import FILE_MODE
from densitykit.errors import RunFolderError

__all__ = [
    "CHECKPOINT_FILE",
    "CONFIG_FILE",
    "FILE_MODE",
    "METRICS_FILE",
    "METRICS_LOG",
    "RUN_FILES",
    "STATE_FILE",
    "Replacement",
    "foreign_entries",
    "is_run_folder",
    "prepare_run_folder",
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
RUN_FILES: tuple[str, ...] = (CONFIG_FILE, CHECKPOINT_FILE, STATE_FILE, METRICS_LOG, METRICS_FILE)
"""The data files of a run folder (pictures, ``*.png``, come beside them)."""

_TEMPORARY = re.compile(r"^\.(?P<target>.+)\.[A-Za-z0-9_]+\.tmp$")


def _is_run_file(name: str) -> bool:
    return name in RUN_FILES or (name.endswith(".png") and not name.startswith("."))


def _is_temporary(name: str) -> bool:
    match = _TEMPORARY.match(name)
    return match is not None and _is_run_file(match.group("target"))


def foreign_entries(path: Path) -> list[str]:
    """The entries of folder ``path`` that a run folder does not hold (sorted).

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> for name in ("config.json", "samples.png", "notes.txt"):
        ...     _ = (folder / name).write_text("")
        >>> foreign_entries(folder)
        ['notes.txt']
    """
    return sorted(
        entry.name
        for entry in path.iterdir()
        if entry.is_symlink()
        or not entry.is_file()
        or not (_is_run_file(entry.name) or _is_temporary(entry.name))
    )


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` is a densitykit run folder, and nothing else.

    It must be a real folder (not a link) whose ``config.json`` is a densitykit run
    config, holding only run files.
    """
    if path.is_symlink() or not path.is_dir():
        return False
    try:
        config = json.loads((path / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "densitykit_version" in config and not foreign_entries(path)


def remove_stale_temporaries(path: Path) -> list[str]:
    """Delete the hidden temporary files an interrupted atomic write left in a run folder.

    Only names of the form ``.<run file>.<random>.tmp`` are touched.

    Returns:
        The names removed.
    """
    removed = []
    for entry in path.iterdir():
        if _is_temporary(entry.name) and entry.is_file() and not entry.is_symlink():
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
    return sorted(removed)


def _encloses_working_folder(path: Path) -> bool:
    here = Path.cwd().resolve()
    target = path.resolve()
    return target == here or target in here.parents


class Replacement:
    """An existing run folder being replaced by a new run, with a way back.

    [`begin`][densitykit.runfolder.Replacement.begin] moves the old run aside to a
    hidden sibling (``.<name>.replaced-<pid>``) and creates an empty folder in its
    place; [`commit`][densitykit.runfolder.Replacement.commit] deletes the old run's
    files (only run files, one by one); [`rollback`][densitykit.runfolder.Replacement.rollback]
    removes what the new run wrote and puts the old run back.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.backup = path.parent / f".{path.name}.replaced-{os.getpid()}"
        self.active = False

    def begin(self) -> None:
        """Move the old run aside and create the new, empty folder."""
        os.rename(self.path, self.backup)
        self.active = True
        self.path.mkdir()

    def commit(self) -> None:
        """Delete the old run (its run files only; anything else stays)."""
        if not self.active:
            return
        _remove_run_files(self.backup)
        self.active = False

    def rollback(self) -> None:
        """Remove the new run's files and put the old run back."""
        if not self.active:
            return
        _remove_run_files(self.path)
        if self.path.exists():
            # Something else appeared in the new folder: keep both, say where.
            raise RunFolderError(
                f"the new run in {self.path} failed and the folder holds files densitykit did "
                f"not write; the previous run is kept in {self.backup}"
            )
        os.rename(self.backup, self.path)
        self.active = False


def _remove_run_files(folder: Path) -> None:
    for entry in folder.iterdir():
        ours = _is_run_file(entry.name) or _is_temporary(entry.name)
        if ours and entry.is_file() and not entry.is_symlink():
            entry.unlink()
    with contextlib.suppress(OSError):  # not empty: what is not ours stays where it is
        folder.rmdir()


def prepare_run_folder(path: Path, *, overwrite: bool) -> Replacement | None:
    """Make ``path`` ready for a new run, deleting nothing yet.

    Args:
        path: The run folder to create.
        overwrite: Allow replacing an existing run folder (see the module's promise).

    Returns:
        A begun [`Replacement`][densitykit.runfolder.Replacement] when an existing run
        is being replaced (commit it once the new run has started, roll it back if it
        fails), else ``None``.

    Raises:
        RunFolderError: If ``path`` cannot hold a new run.
    """
    if path.is_symlink():
        raise RunFolderError(f"{path} is a symbolic link; give a real folder for the run")
    if path.exists() and not path.is_dir():
        raise RunFolderError(f"{path} exists and is not a folder")
    replacement = None
    if path.is_dir() and any(path.iterdir()):
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
        if not is_run_folder(path):
            foreign = foreign_entries(path)
            detail = (
                f"it holds {', '.join(repr(n) for n in foreign[:3])}"
                + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
                + ", which densitykit did not write"
                if foreign
                else "its config.json is not a densitykit run config"
            )
            raise RunFolderError(
                f"--overwrite replaces only a densitykit run folder, and {path} is not one: "
                f"{detail}; nothing was deleted"
            )
        replacement = Replacement(path)
    try:
        if replacement is not None:
            replacement.begin()
        else:
            path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        if replacement is not None:
            replacement.rollback()
        raise RunFolderError(
            f"cannot write to run folder {path}: {error.strerror or error}"
        ) from None
    return replacement
