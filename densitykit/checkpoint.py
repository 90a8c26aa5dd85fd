"""Safe checkpoints: atomic writes, pickle-free loading, clear errors.

A checkpoint is a ``torch.save`` file holding only tensors and plain data: the
model's family name, its config as a dict (a MADE's
[`ModelConfig`][densitykit.model.ModelConfig], say) and its ``state_dict``. It is read
back with ``torch.load(..., weights_only=True)``, so a file crafted to run code on load
is refused instead of executed. Every write goes to a temporary file in the same
folder, is flushed to disk, then renamed over the target, so a crash mid-write leaves
the previous file intact.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from densitykit.atomic import FILE_MODE, atomic_write
from densitykit.errors import CheckpointError
from densitykit.family import FAMILIES, DensityModel
from densitykit.histogram import resolve_family
from densitykit.memory import format_bytes

__all__ = [
    "FILE_MODE",
    "FORMAT",
    "atomic_write",
    "json_text",
    "load_checkpoint",
    "load_object",
    "read_json",
    "save_checkpoint",
    "save_object",
    "write_json",
]

FORMAT = "densitykit-checkpoint"
ORDERLESS_FORMAT = "densitykit-orderless"
"""The format of orderless models saved before families (they load as the ``orderless``
family)."""
VERSION = 1


def _plain_json(value: Any) -> Any:
    """``value`` with every non-finite float as ``None``: JSON has no NaN or infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _plain_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_json(item) for item in value]
    return value


def json_text(data: Any, *, indent: int | None = 2) -> str:
    """``data`` as strict JSON text (a non-finite float is written ``null``)."""
    return json.dumps(_plain_json(data), indent=indent, allow_nan=False)


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write ``data`` as indented JSON, atomically."""
    text = json_text(data) + "\n"
    atomic_write(path, lambda handle: handle.write(text.encode()))


def read_json(path: str | os.PathLike, *, max_bytes: int = 10_000_000) -> Any:
    """Read a JSON file, turning a missing or malformed file into a one-line error.

    Args:
        path: The file.
        max_bytes: The largest file read (a run's JSON files are a few kilobytes).

    Raises:
        CheckpointError: If the file is missing, not a regular file, larger than
            ``max_bytes``, not valid JSON, or nested too deeply to read.
    """
    path = Path(path)
    try:
        if not path.is_file():  # a pipe or a device could block or never end
            if not path.exists():
                raise FileNotFoundError(path)
            found = "a folder" if path.is_dir() else "something that is not a regular file"
            raise CheckpointError(f"{path}: expected a JSON file, got {found}")
        size = path.stat().st_size
        if size > max_bytes:
            raise CheckpointError(
                f"{path}: expected a JSON file of at most {max_bytes:,} bytes, got {size:,} bytes"
            )
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from None
    except RecursionError:
        raise CheckpointError(
            f"{path}: not readable JSON (nested too deeply for Python's parser)"
        ) from None


def save_object(path: str | os.PathLike, data: dict[str, Any]) -> None:
    """``torch.save`` a dict of tensors and plain data atomically."""
    atomic_write(path, lambda handle: torch.save(data, handle))


def load_object(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load a file written by [`save_object`][densitykit.checkpoint.save_object], safely.

    Only tensors and plain Python data are accepted (``weights_only=True``).

    Raises:
        CheckpointError: If the file is missing, truncated or corrupted, or holds
            objects that would need to run code to load.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    mapped = _check_records(path)
    try:
        # Mapped, the tensors take memory only when read: their sizes can be checked
        # against a config before anything that large is allocated.
        data = torch.load(path, map_location=map_location, weights_only=True, mmap=mapped)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else "unsafe content"
        if "weights_only" in str(error) or "Unsupported global" in str(error):
            reason = "it holds Python objects that would run code when loaded"
        raise CheckpointError(f"{path}: refused to load ({reason})") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: corrupted or truncated checkpoint ({detail})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(data).__name__}")
    return data


def _check_records(path: Path) -> bool:
    """Refuse a zip whose records would inflate to more than the file holds.

    ``torch.save`` stores its records uncompressed, so a record compressed in the zip
    (a 2 MB file that inflates to gigabytes) was not written by it. Returns whether
    the file is a zip of stored records (so ``torch.load`` can map it).
    """
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False  # not a zip: torch.load reports what it is
    inflated = sum(record.file_size for record in records)
    compressed = [record for record in records if record.compress_type != zipfile.ZIP_STORED]
    size = path.stat().st_size
    if compressed or inflated > size:
        raise CheckpointError(
            f"{path}: refused to load: its records would inflate to {format_bytes(inflated)} "
            f"from a file of {format_bytes(size)} (torch.save writes them uncompressed)"
        )
    return True


def save_checkpoint(path: str | os.PathLike, model: DensityModel) -> None:
    """Save a model's family, config and weights to ``path`` (atomically).

    Raises:
        ValueError: If the model has no config (compose it with ``create_model`` or
            ``build_model``, or set ``model.config``).
    """
    if getattr(model, "config", None) is None:
        raise ValueError("only a model with a ModelConfig can be saved; build it with create_model")
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_object(
        path,
        {
            "format": FORMAT,
            "version": VERSION,
            "family": model.family,
            "model_config": model.config.to_dict(),
            "state_dict": state,
        },
    )


def _check_size(path: str | os.PathLike, family: type[DensityModel], config: Any, state: Any):
    """Refuse a config that asks for other weights than the file holds, before building it."""
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: the state_dict is not a dict of tensors")
    stored = sum(v.numel() for v in state.values() if v.is_floating_point())
    expected = family.parameter_count(config)
    if expected != stored:
        raise CheckpointError(
            f"{path}: the weights do not fit the saved config: it describes a model of "
            f"{expected:,} weights, but the file holds "
            f"{stored:,}; the config or the weights were changed"
        )


def _family_of(path: str | os.PathLike, data: dict[str, Any]) -> tuple[str, Any]:
    """The family and config dict of a loaded checkpoint (files of earlier versions: a
    MADE checkpoint without a family, a MADE with the histogram head (the histogram
    family), or an orderless model's own format)."""
    if data.get("format") == ORDERLESS_FORMAT and "config" in data and "state_dict" in data:
        return "orderless", data["config"]
    if data.get("format") != FORMAT or "state_dict" not in data or "model_config" not in data:
        raise CheckpointError(
            f"{path}: not a densitykit checkpoint (no format/model_config/state_dict)"
        )
    if data.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint version {data.get('version')!r}, expected {VERSION}"
        )
    family = data.get("family", "made")
    if family == "made":
        try:
            family, config = resolve_family(family, data["model_config"])
        except ValueError as error:
            raise CheckpointError(f"{path}: malformed model config ({error})") from None
        return family, config
    if not isinstance(family, str) or family not in FAMILIES:
        raise CheckpointError(
            f"{path}: its model family {family!r} is not registered (registered: "
            f"{', '.join(FAMILIES.names())}); import the plug-in that defines it first"
        )
    return family, data["model_config"]


def load_checkpoint(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> DensityModel:
    """Rebuild a model saved by [`save_checkpoint`][densitykit.checkpoint.save_checkpoint],
    of whichever registered family it is.

    Files of earlier versions load too: a MADE checkpoint (it names no family) and an
    orderless model saved by ``save_orderless``.

    Raises:
        CheckpointError: If the file is unsafe, corrupted, of another format or of an
            unregistered family, or its weights do not fit its config.

    Example:
        >>> import tempfile, os, densitykit as dk
        >>> model = dk.create_model("bernoulli", 3, hidden_sizes=(4,))
        >>> path = os.path.join(tempfile.mkdtemp(), "checkpoint.pt")
        >>> save_checkpoint(path, model)
        >>> load_checkpoint(path).config.dim
        3
    """
    data = load_object(path, map_location)
    name, config_dict = _family_of(path, data)
    family = FAMILIES.get(name)
    try:
        config = family.config_class.from_dict(config_dict)
        _check_size(path, family, config, data["state_dict"])
        model = family.from_config(config)
        model.load_state_dict(data["state_dict"])
    except CheckpointError:
        raise
    except (ValueError, TypeError, RuntimeError, KeyError) as error:
        detail = str(error).strip().splitlines()[0]
        raise CheckpointError(
            f"{path}: the weights do not fit the saved config ({detail})"
        ) from None
    return model.to(map_location)
