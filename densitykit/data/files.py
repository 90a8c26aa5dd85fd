"""A user's own discrete data: arrays in memory, ``.npy`` / ``.npz`` / ``.csv`` / ``.tsv``
files, and folders of PNG images.

What a file may hold:

- ``.npy``: one integer array, ``(N,)``, ``(N, D)`` or ``(N, H, W)`` (images). Read
  with ``allow_pickle=False``: a file of Python objects is refused, never unpickled.
- ``.npz``: named arrays. With a ``train`` array, ``val`` and ``test`` are taken from
  the file when present; with a single array of another name, that array is the data.
- ``.csv`` / ``.tsv``: UTF-8 text (Excel's "CSV UTF-8" byte-order mark is fine), one
  example per row, integer values separated by commas (tabs), an optional header row
  (a first row whose cells are all names, none empty and none a number; the data
  set's ``header`` option records what was found).
- a folder of ``.png`` images of one size, grey or colour 8-bit (read as grey, values
  ``0..255``), 16-bit grey (values ``0..65535``; 16-bit colour is refused), or binary
  (only black and white, read as 0 and 1).

A path must be a regular file (after symlinks) or a folder: a pipe or a device is
refused, since reading it could wait forever or never end.

Values must be non-negative integers (an integral float such as ``3.0`` is accepted);
``num_values`` is ``max + 1`` unless given. The kind of data set follows the shape of
one example: ``(H, W)`` is an ``"image"``; one variable is ``"1d"``; two variables
with at most [`MAX_GRID`][densitykit.data.files.MAX_GRID] values are ``"2d"`` (a
point on a grid); anything else is a ``"vector"``.

Splits follow the built-in sets: the test split is the file's own ``test`` array,
or else a fixed [`TEST_FRACTION`][densitykit.data.files.TEST_FRACTION] of the examples
chosen by a permutation that does not depend on ``seed`` (so every run of a file tests
on the same examples); the validation split is the file's ``val`` array, or else a
seeded ``val_fraction`` of the rest.

Data that would not fit in memory is refused before it is read, with the size stated:
the size comes from the headers (``.npy``, ``.npz``, PNG) or the file's length
(``.csv``), counted at [`BYTES_PER_VALUE`][densitykit.data.files.BYTES_PER_VALUE] bytes a
value, and a header that promises more data than its file holds is refused.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import os
import re
import stat
import struct
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from densitykit.atomic import atomic_path
from densitykit.checks import check_fraction, check_optional_int, check_seed
from densitykit.data.dataset import Dataset, as_examples
from densitykit.data.registry import register
from densitykit.data.splits import SPLIT_STREAM, carve_validation, generator
from densitykit.data.tables import Table, check_finite, infer_table, parse_columns
from densitykit.errors import DataError
from densitykit.memory import check_allocation

_LOG = logging.getLogger("densitykit")

__all__ = [
    "BYTES_PER_VALUE",
    "FILE_SUFFIXES",
    "MAX_GRID",
    "TEST_FRACTION",
    "TEST_STREAM",
    "check_values",
    "file",
    "from_array",
    "is_data_file",
    "kind_of",
    "read_arrays",
    "read_npy_header",
    "read_table",
    "table_dataset",
    "write_table",
]

FILE_SUFFIXES: tuple[str, ...] = (".npy", ".npz", ".csv", ".tsv")
"""The file endings read as data (a folder is read as PNG images)."""
TEST_FRACTION = 0.2
"""Share of a file's examples held out for test when the file has no ``test`` array."""
TEST_STREAM = 3
"""Stream of the fixed test permutation (independent of the data set's ``seed``)."""
MAX_GRID = 256
"""Two variables with at most this many values are drawn as a point on a grid."""
BYTES_PER_VALUE = 32
"""Memory a value of a file takes at the peak of ``densitykit fit``, in bytes: the
file's own array (one or two bytes for images), its ``int64`` copy, the splits'
``int64`` copies (reading and splitting peak at about 22 bytes a value) and what
training adds (measured at 28 to 31 bytes a value on a folder of PNG images)."""
_INT64_END = 2.0**63
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_SPLITS = ("train", "val", "test")


def is_data_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names something [`read_arrays`][densitykit.data.files.read_arrays]
    can read: a file with one of [`FILE_SUFFIXES`][densitykit.data.files.FILE_SUFFIXES]
    or an existing folder."""
    path = Path(path)
    return path.suffix.lower() in FILE_SUFFIXES or path.is_dir()


def check_values(array: Any, where: str) -> np.ndarray:
    """Return ``array`` as ``int64`` if it holds non-negative integers, else say why not.

    Args:
        array: A NumPy array or a torch tensor (examples along the first axis).
        where: What the values are, for the message (a file name, ``"X"``).

    Raises:
        DataError: On an empty array, a non-numeric dtype, NaN or infinite values,
            non-integer floats or negative values; the message states what came.

    Example:
        >>> check_values(np.array([[0, 1], [2, 1]], dtype=np.uint8), "x").dtype
        dtype('int64')
        >>> check_values(np.array([0.5, 1.0]), "x")
        Traceback (most recent call last):
        ...
        densitykit.errors.DataError: x: expected integer values, got the non-integer 0.5 ...
    """
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise DataError(
            f"{where}: expected an array of integers, got dtype {array.dtype} "
            f"of shape {array.shape}"
        )
    if array.ndim == 0 or array.shape[0] == 0 or array.size == 0:
        raise DataError(f"{where}: expected at least one example, got shape {array.shape}")
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        if not finite.all():
            index = np.unravel_index(int(np.argmin(finite)), array.shape)
            raise DataError(
                f"{where}: expected integer values, got {array[index]} at example {index[0]}"
            )
        whole = array == np.floor(array)
        if not whole.all():
            index = np.unravel_index(int(np.argmin(whole)), array.shape)
            raise DataError(
                f"{where}: expected integer values, got the non-integer {array[index]} at "
                f"example {index[0]}"
            )
    if array.dtype.kind in "uf" and array.max() >= _INT64_END:  # int64 could not hold it
        index = np.unravel_index(int(np.argmax(array)), array.shape)
        raise DataError(
            f"{where}: expected integer values below 2**63, got {array[index]} "
            f"at example {index[0]}"
        )
    if array.dtype.kind != "b" and array.dtype.kind != "u" and (array < 0).any():
        index = np.unravel_index(int(np.argmin(array)), array.shape)
        raise DataError(
            f"{where}: expected non-negative values (0..K-1), got {array[index]} "
            f"at example {index[0]}"
        )
    return np.ascontiguousarray(array, dtype=np.int64)


def kind_of(shape: tuple[int, ...], num_values: int) -> tuple[str, tuple[int, ...]]:
    """The kind of data set and its ``shape`` for examples of ``shape`` with ``num_values``.

    Example:
        >>> kind_of((28, 28), 2), kind_of((1,), 100), kind_of((2,), 16), kind_of((5,), 3)
        (('image', (28, 28)), ('1d', (1,)), ('2d', (16, 16)), ('vector', (5,)))
    """
    if len(shape) == 2:
        return "image", tuple(shape)
    dim = math.prod(shape)
    if dim == 1:
        return "1d", (1,)
    if dim == 2 and num_values <= MAX_GRID:
        return "2d", (num_values, num_values)
    return "vector", (dim,)


# -- reading -------------------------------------------------------------------------------


def _check_size(num_elements: int, where: str) -> None:
    check_allocation(num_elements * BYTES_PER_VALUE, f"{where} ({num_elements:,} values)")


def _check_regular_file(path: Path) -> None:
    """Refuse what is not a regular file (after symlinks): a pipe could block forever
    and a device (``/dev/zero``) never ends."""
    mode = path.stat().st_mode
    if not stat.S_ISREG(mode):
        kind = "a pipe (FIFO)" if stat.S_ISFIFO(mode) else "a device or a socket"
        raise DataError(f"{path}: expected a regular data file, got {kind}")


def read_npy_header(
    handle: Any, where: str, size: int | None = None
) -> tuple[tuple[int, ...], np.dtype]:
    """Read a ``.npy`` header from an open binary ``handle``: ``(shape, dtype)``.

    Args:
        handle: The stream, at the start of the ``.npy`` content.
        where: The file's name, for messages.
        size: The stream's size in bytes; ``None`` takes the file's size when the
            handle is a file (a stream without a size is not checked).

    Raises:
        DataError: If it is not a ``.npy`` header, the array holds Python objects, or
            the header promises more data than the stream holds.
    """
    try:
        version = np.lib.format.read_magic(handle)
        reader = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, _, dtype = reader(handle)
    except ValueError as error:
        raise DataError(f"{where}: expected a NumPy .npy array, got an unreadable header "
                        f"({error})") from None  # fmt: skip
    if dtype.hasobject:
        raise DataError(
            f"{where}: expected an array of integers, got Python objects (dtype {dtype}); "
            "densitykit never unpickles data, save it with an integer dtype"
        )
    if size is None:
        try:
            size = os.fstat(handle.fileno()).st_size
        except (AttributeError, OSError, io.UnsupportedOperation):  # not a file: unchecked
            size = None
    if size is not None:
        needed = math.prod(shape) * dtype.itemsize
        held = size - handle.tell()
        if held < needed:
            raise DataError(
                f"{where}: the .npy header promises shape {tuple(shape)} of {dtype} "
                f"({needed:,} bytes), but the file holds {held:,} bytes after it"
            )
    return tuple(shape), dtype


def _load_npy(path: Path) -> dict[str, np.ndarray]:
    if path.stat().st_size == 0:
        raise DataError(f"{path}: expected a NumPy .npy array, got an empty file")
    with path.open("rb") as handle:
        shape, _ = read_npy_header(handle, str(path))
    _check_size(math.prod(shape), str(path))
    return {"data": np.load(path, allow_pickle=False)}


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    if path.stat().st_size == 0:
        raise DataError(f"{path}: expected a NumPy .npz archive, got an empty file")
    try:
        with zipfile.ZipFile(path) as archive:
            total = 0
            for member in archive.namelist():
                with archive.open(member) as handle:
                    shape, _ = read_npy_header(
                        handle, f"{path}:{member}", archive.getinfo(member).file_size
                    )
                total += math.prod(shape)
    except zipfile.BadZipFile:
        raise DataError(
            f"{path}: expected a NumPy .npz archive, got a file that is not one"
        ) from None
    _check_size(total, str(path))
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    if not arrays:
        raise DataError(f"{path}: expected at least one array, got an empty archive")
    if "train" in arrays:
        unknown = sorted(set(arrays) - set(_SPLITS))
        if unknown:
            raise DataError(
                f"{path}: expected arrays named train, val and test, got also {unknown}"
            )
        return arrays
    if len(arrays) == 1:
        return {"data": next(iter(arrays.values()))}
    raise DataError(
        f"{path}: expected one array, or arrays named train (val, test optional), "
        f"got {sorted(arrays)}"
    )


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _decode(path: Path) -> str:
    """The file's text, UTF-8 with or without Excel's byte-order mark."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        # The offset counts from after a byte-order mark, which is three bytes.
        start = error.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        line = raw.count(b"\n", 0, start) + 1
        raise DataError(
            f"{path}: expected UTF-8 text, got the byte 0x{raw[start]:02x} on line {line} "
            "(save the file as UTF-8)"
        ) from None


def _is_header(cells: list[str]) -> bool:
    """A first row is a header when every cell is a name: not empty, not a number."""
    return all(cell.strip() and not _is_number(cell) for cell in cells)


def _load_table(path: Path, header: bool | None) -> tuple[dict[str, np.ndarray], bool]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    size = path.stat().st_size
    # Each value takes at least two characters (a digit and a separator).
    _check_size(size // 2 + 1, str(path))
    text = _decode(path)
    first = text.split("\n", 1)[0]
    if not first.strip():
        raise DataError(f"{path}: expected rows of integers, got an empty file")
    if header is None:
        header = _is_header(next(csv.reader([first], delimiter=delimiter)))
    try:
        with warnings.catch_warnings():  # an empty table is refused below, in one line
            warnings.simplefilter("ignore", UserWarning)
            values = np.loadtxt(
                io.StringIO(text),
                delimiter=delimiter,
                skiprows=int(header),
                ndmin=2,
                dtype=np.float64,
            )
    except ValueError as error:
        detail = str(error).split("; use `usecols`")[0].strip().splitlines()[0]
        raise DataError(
            f"{path}: expected rows of integers with the same number of values "
            f"(header row optional), got: {detail}"
        ) from None
    if values.size == 0:
        raise DataError(f"{path}: expected rows of integers, got a header and no rows")
    beyond = np.abs(values) >= _INT64_END  # int64 cannot hold it: name it before casting
    if beyond.any():
        row, column = np.unravel_index(int(np.argmax(beyond)), values.shape)
        raise DataError(
            f"{path}: expected integers below 2**63, got {values[row, column]:g} in data row "
            f"{row + 1}, column {column + 1}"
        )
    return {"data": values}, header


_CELL_ERROR = re.compile(r"could not convert string '(.*)' to float64 at row (\d+), column (\d+)")


def _cell(text: str) -> float:
    """A table cell: a number, or NaN for an empty cell (a missing value)."""
    text = text.strip()
    return float(text) if text else math.nan


def _load_cells(path: Path, header: bool | None) -> tuple[np.ndarray, list[str] | None]:
    """A ``.csv``/``.tsv`` table of numbers with empty cells as NaN, and its header names.

    Raises:
        DataError: Naming the column and data row of a cell that is not a number.
    """
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    _check_regular_file(path)  # a pipe could block forever
    _check_size(path.stat().st_size // 2 + 1, str(path))
    text = _decode(path)
    first = text.split("\n", 1)[0]
    if not first.strip():
        raise DataError(f"{path}: expected rows of numbers, got an empty file")
    cells = next(csv.reader([first], delimiter=delimiter))
    if header is None:
        header = _is_header(cells)
    names = [cell.strip() for cell in cells] if header else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            values = np.loadtxt(
                io.StringIO(text), delimiter=delimiter, skiprows=int(header), ndmin=2,
                dtype=np.float64, converters=_cell,
            )  # fmt: skip
    except ValueError as error:
        found = _CELL_ERROR.search(str(error))
        if found is None:
            detail = str(error).split("; use `usecols`")[0].strip().splitlines()[0]
            raise DataError(
                f"{path}: expected rows of numbers with the same number of values, got: {detail}"
            ) from None
        column = int(found.group(3))
        name = names[column - 1] if names and column <= len(names) else f"column{column}"
        raise DataError(
            f"{path}: column {name} holds text, expected numbers: could not convert "
            f"{found.group(1)!r} in data row {int(found.group(2)) + 1}"
        ) from None
    if values.size == 0:
        raise DataError(f"{path}: expected rows of numbers, got a header and no rows")
    return values, names


def read_table(
    path: str | os.PathLike[str], *, header: bool | None = None
) -> tuple[dict[str, np.ndarray], list[str] | None]:
    """Read a table of real or mixed values: float64 arrays ``(N, D)`` and the header names.

    Empty cells of a ``.csv``/``.tsv`` file (and NaN in a ``.npy``/``.npz``) are NaN; what
    a NaN may mean (a missing value to impute, or an error) is the caller's to say.

    Args:
        path: A ``.csv``, ``.tsv``, ``.npy`` or ``.npz`` file.
        header: For a text table, whether its first row names the columns (``None``:
            detected as in [`read_arrays`][densitykit.data.files.read_arrays]).

    Returns:
        ``({"data": rows} or {"train": ..., "val": ..., "test": ...}, names)``; ``names``
        is ``None`` for a file without a header (and for ``.npy``/``.npz``).

    Raises:
        DataError: If the file is missing, of another kind, malformed, not numeric,
            or not of examples ``(N,)`` or ``(N, D)``; text in a cell names its column.
        ResourceError: If it would not fit in memory.
    """
    path = Path(path).expanduser()
    arrays, names = _read_raw(path, header, cells=True)[::2]
    return {key: _as_table(value, f"{path} ({key})") for key, value in arrays.items()}, names


def _as_table(array: np.ndarray, where: str) -> np.ndarray:
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise DataError(f"{where}: expected an array of numbers, got dtype {array.dtype}")
    if array.ndim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[0] == 0:
        raise DataError(
            f"{where}: a table holds examples of shape (N,) or (N, D), got shape {array.shape}"
        )
    return np.asarray(array, dtype=np.float64)


def write_table(
    path: str | os.PathLike[str],
    chunks: Any,
    names: Sequence[str],
    *,
    missing: str = "",
) -> Path:
    """Write rows of numbers as a ``.csv`` (``.tsv``) table with a header, atomically.

    Args:
        path: The file (its folder is created).
        chunks: An array ``(N, D)``, or an iterable of such arrays written one after the
            other (memory stays bounded by a chunk).
        names: The D column names of the header.
        missing: What a NaN is written as (an empty cell by default).

    Returns:
        The path written; every number reads back as the same float64.
    """
    path = Path(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    if isinstance(chunks, np.ndarray):
        chunks = [chunks]
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter, lineterminator="\n")
        writer.writerow(names)
        for chunk in chunks:
            for row in np.asarray(chunk, dtype=np.float64).reshape(-1, len(names)):
                writer.writerow([_format_cell(float(v), missing) for v in row])
    return path


def _format_cell(value: float, missing: str) -> str:
    """A number as the shortest text that reads back as the same float64."""
    if math.isnan(value):
        return missing
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _png_header(path: Path) -> tuple[int, int, int, int]:
    """``(width, height, bit depth, colour type)`` from a PNG's first bytes, decoding nothing."""
    with path.open("rb") as handle:
        head = handle.read(26)
    if len(head) < 26 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise DataError(f"{path}: expected a PNG image, got a file without a PNG header")
    width, height = struct.unpack(">II", head[16:24])
    depth, colour = head[24], head[25]
    if depth == 16 and colour != 0:
        raise DataError(
            f"{path}: 16-bit colour PNGs are not supported; expected grey or colour 8-bit "
            "images (read as grey 0..255) or 16-bit grey images (0..65535)"
        )
    return width, height, depth, colour


def _decode_png(path: Path, wide: bool) -> np.ndarray:
    from PIL import Image

    try:
        with warnings.catch_warnings():
            # The folder's size was checked against memory from the headers already.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if wide:
                    return np.asarray(image).astype(np.uint16, copy=False)
                return np.asarray(image if image.mode == "L" else image.convert("L"))
    except Image.DecompressionBombError:
        raise DataError(
            f"{path}: expected an image of at most {2 * Image.MAX_IMAGE_PIXELS:,} pixels, "
            "the most Pillow decodes"
        ) from None
    except (OSError, SyntaxError, ValueError) as error:  # Pillow's truncated or broken data
        raise DataError(f"{path}: expected a PNG image, got an unreadable file ({error})") from None


def _load_pngs(folder: Path) -> dict[str, np.ndarray]:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".png" and p.is_file())
    if not files:
        found = sorted(p.name for p in folder.iterdir())[:5]
        raise DataError(f"{folder}: expected .png images in the folder, got {found or 'none'}")
    sizes: dict[tuple[int, int], Path] = {}
    depths: dict[bool, Path] = {}
    for file_path in files:
        width, height, depth, _ = _png_header(file_path)
        sizes.setdefault((width, height), file_path)
        depths.setdefault(depth == 16, file_path)
        if len(sizes) > 1:
            (a, first), (b, other) = list(sizes.items())[:2]
            raise DataError(
                f"{folder}: expected images of one size, got {a[0]}x{a[1]} ({first.name}) "
                f"and {b[0]}x{b[1]} ({other.name})"
            )
        if len(depths) > 1:
            raise DataError(
                f"{folder}: expected images of one bit depth, got 16-bit "
                f"({depths[True].name}) and 8-bit or less ({depths[False].name})"
            )
    width, height = next(iter(sizes))
    wide = next(iter(depths))
    _check_size(len(files) * width * height, str(folder))
    images = np.empty((len(files), height, width), dtype=np.uint16 if wide else np.uint8)
    white = 65535 if wide else 255
    binary = True  # black and white only: read as 0 and 1
    for index, file_path in enumerate(files):
        pixels = _decode_png(file_path, wide)
        if pixels.shape != (height, width):
            raise DataError(
                f"{file_path}: expected a grey image of {width}x{height}, "
                f"got pixels of shape {pixels.shape}"
            )
        images[index] = pixels
        binary = binary and bool(((pixels == 0) | (pixels == white)).all())
    if binary:
        images //= white
    return {"data": images}


def read_arrays(
    path: str | os.PathLike[str], *, header: bool | None = None
) -> dict[str, np.ndarray]:
    """Read a data file (or a folder of PNG images) into checked ``int64`` arrays.

    Args:
        path: A ``.npy``, ``.npz``, ``.csv`` or ``.tsv`` file, or a folder of ``.png``.
        header: For a table, whether its first row is a header; ``None`` takes it as
            one when every cell is a name (not empty, not a number).

    Returns:
        ``{"data": array}``, or ``{"train": ..., "val": ..., "test": ...}`` (``val`` and
        ``test`` when the ``.npz`` file has them); each array ``(N, ...)`` ``int64``.

    Raises:
        DataError: If the file is missing, not a regular file (a pipe, a device), of an
            unknown kind, malformed, or its values are not non-negative integers (the
            message says what was expected and what came).
        ResourceError: If the values would not fit in memory (the size is stated).
    """
    return _read(Path(path).expanduser(), header)[0]


def _read(path: Path, header: bool | None) -> tuple[dict[str, np.ndarray], bool | None]:
    """The checked arrays of ``path`` and, for a table, whether it had a header row."""
    arrays, header, _ = _read_raw(path, header)
    return _check_arrays(path, arrays), header


def _read_raw(
    path: Path, header: bool | None, *, cells: bool = False
) -> tuple[dict[str, np.ndarray], bool | None, list[str] | None]:
    """The file's arrays as stored (unchecked), whether a text table had a header row,
    and its header names (with ``cells``, empty cells read as NaN)."""
    suffix = path.suffix.lower()
    names = None
    if path.is_dir():
        if cells:
            raise DataError(f"{path}: a table is a .csv, .tsv, .npy or .npz file, got a folder")
        return _load_pngs(path), None, None
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if suffix not in FILE_SUFFIXES:
        raise DataError(
            f"{path}: expected a file ending in {', '.join(FILE_SUFFIXES)} or a folder of "
            f".png images, got {suffix or 'no ending'}"
        )
    _check_regular_file(path)
    if suffix == ".npy":
        arrays = _load_npy(path)
    elif suffix == ".npz":
        arrays = _load_npz(path)
    elif cells:
        values, names = _load_cells(path, header)
        arrays, header = {"data": values}, names is not None
    else:
        arrays, header = _load_table(path, header)
    return arrays, header if suffix in (".csv", ".tsv") else None, names


def _check_arrays(path: Path, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    checked = {}
    shapes = set()
    for name in list(arrays):
        where = str(path) if name == "data" else f"{path} ({name})"
        array = arrays.pop(name)  # each file array is let go once its int64 copy is made
        if array.ndim > 3:
            raise DataError(
                f"{where}: expected examples of shape (N,), (N, D) or (N, H, W), "
                f"got shape {array.shape}"
            )
        checked[name] = check_values(array, where)
        shapes.add(checked[name].shape[1:])
    if len(shapes) > 1:
        raise DataError(f"{path}: expected train, val and test examples of one shape, got "
                        f"{sorted(shapes)}")  # fmt: skip
    return checked


def _read_for_file(
    path: Path, header: bool | None, table: Any
) -> tuple[dict[str, np.ndarray], bool | None, list[str] | None, bool]:
    """A data file's arrays, its header flag and names, and whether to read it as a table:
    when ``table`` (columns or a recorded table) is given, or a value is not an integer.

    An integer file is read exactly as before (a text table by NumPy's fast reader);
    a text table is read cell by cell (names, empty cells) only when it is a table.
    """
    text = path.suffix.lower() in (".csv", ".tsv") and not path.is_dir()
    if not table:
        try:
            arrays, found, _ = _read_raw(path, header)
        except DataError as error:
            if not text:
                raise
            fast_error = error
        else:
            if not _has_fractions(arrays):
                return _check_arrays(path, arrays), found, None, False
            if not text:
                return arrays, found, None, True
            fast_error = None
        values, names = _load_cells(path, header)  # names the column of a bad cell
        if fast_error is not None and not _has_fractions({"data": values}):
            raise fast_error  # a file of integers keeps its message
        return {"data": values}, names is not None, names, True
    if text:
        values, names = _load_cells(path, header)
        return {"data": values}, names is not None, names, True
    arrays, found, _ = _read_raw(path, header)
    return arrays, found, None, True


def _has_fractions(arrays: dict[str, np.ndarray]) -> bool:
    """Whether a finite value of the arrays is not an integer (NaN and inf are left to the
    integer checks, which name them as today)."""
    for array in arrays.values():
        if array.dtype.kind == "f":
            finite = array[np.isfinite(array)]
            if (finite != np.floor(finite)).any():
                return True
    return False


# -- data sets -----------------------------------------------------------------------------


def _example_shape(array: np.ndarray, image_shape: Any, where: str) -> tuple[int, ...]:
    shape = array.shape[1:] or (1,)
    if image_shape is None:
        return tuple(shape)
    image_shape = tuple(image_shape)
    if (
        len(image_shape) != 2
        or not all(isinstance(s, int) and s > 0 for s in image_shape)
        or math.prod(image_shape) != math.prod(shape)
    ):
        raise DataError(
            f"{where}: image_shape must be two positive sizes whose product is the "
            f"{math.prod(shape)} values of an example, got {image_shape}"
        )
    return image_shape


def _split(
    arrays: dict[str, np.ndarray],
    where: str,
    *,
    val_fraction: float,
    test_fraction: float,
    max_train: int | None,
    seed: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Train, validation and test rows of a file's arrays (see the module notes)."""
    if "train" in arrays:
        pool, test = arrays["train"], arrays.get("test")
    else:
        pool, test = arrays["data"], None
    if test is None:
        if test_fraction == 0.0 or len(pool) < 3:
            raise DataError(
                f"{where}: expected a test split, got {len(pool)} example(s) and "
                f"test_fraction={test_fraction}; give test_fraction > 0 and at least 3 examples"
            )
        held = np.zeros(len(pool), dtype=bool)
        count = min(max(1, round(test_fraction * len(pool))), len(pool) - 2)
        held[generator(0, TEST_STREAM).permutation(len(pool))[:count]] = True
        pool, test = pool[~held], pool[held]
    if "val" in arrays:
        train, val = pool[:max_train] if max_train is not None else pool, arrays["val"]
    else:
        train, val = carve_validation(
            pool, val_fraction=val_fraction, rng=generator(seed, SPLIT_STREAM), max_train=max_train
        )
    return train, val, test


def table_dataset(
    name: str,
    splits: tuple[np.ndarray, np.ndarray, np.ndarray],
    names: list[str] | None,
    *,
    where: str,
    columns: str | None = None,
    table: dict[str, Any] | None = None,
    options: dict[str, Any],
    true_log_density: Any = None,
) -> Dataset:
    """A data set of a table's raw train, validation and test rows (float64, data units).

    The columns are ``table`` (a recorded [`Table`][densitykit.data.tables.Table]'s dict:
    its kinds, levels and training statistics are used as they are, after checking the
    file has its columns), or else inferred on every row with the kinds of ``columns``
    (``--columns`` syntax) and standardised with the training rows' statistics.

    Raises:
        DataError: On NaN or infinite values, a constant column, unknown levels, text,
            or columns that differ from the recorded table's (names, count, kinds).
    """
    train, val, test = splits
    if table is not None:
        recorded = Table.from_dict(table)
        recorded.check_names(names, where)
        if recorded.dim != train.shape[1]:
            raise DataError(
                f"{where}: the run was trained on {recorded.dim} columns "
                f"({', '.join(recorded.names)}), got {train.shape[1]}"
            )
        if columns is not None:
            given = infer_table(
                np.concatenate([train, val, test]), train, names or list(recorded.names),
                where=where, specs=parse_columns(columns),
            )  # fmt: skip
            recorded.check_same_columns(given, where)
    else:
        specs = parse_columns(columns) if columns is not None else None
        recorded = infer_table(np.concatenate([train, val, test]), train, names, where=where,
                               specs=specs)  # fmt: skip
    return Dataset(
        name=name,
        train=recorded.encode(train, where=where),
        val=recorded.encode(val, where=where),
        test=recorded.encode(test, where=where),
        num_values=recorded.num_values,
        kind="table",
        shape=(recorded.dim,),
        table=recorded,
        true_log_density=true_log_density,
        options={**options, "table": recorded.to_dict()},
    )


def _build(
    name: str,
    arrays: dict[str, np.ndarray],
    *,
    where: str,
    num_values: int | None,
    val_fraction: float,
    test_fraction: float,
    max_train: int | None,
    seed: int,
    image_shape: Any,
    options: dict[str, Any],
) -> Dataset:
    val_fraction = check_fraction(val_fraction, f"{name}: val_fraction")
    test_fraction = check_fraction(test_fraction, f"{name}: test_fraction")
    max_train = check_optional_int(max_train, f"{name}: max_train", minimum=1)
    num_values = check_optional_int(num_values, f"{name}: num_values", minimum=2)
    seed = check_seed(seed, f"{name}: seed")
    example_shape = _example_shape(next(iter(arrays.values())), image_shape, where)
    largest = max(int(array.max()) for array in arrays.values())
    if num_values is None:
        num_values = max(largest + 1, 2)
    elif largest >= num_values:
        raise DataError(
            f"{where}: num_values={num_values} means values 0..{num_values - 1}, "
            f"got the value {largest}"
        )
    train, val, test = _split(
        arrays, where, val_fraction=val_fraction, test_fraction=test_fraction,
        max_train=max_train, seed=seed,
    )  # fmt: skip
    kind, shape = kind_of(example_shape, num_values)
    return Dataset(
        name=name,
        train=as_examples(train),
        val=as_examples(val),
        test=as_examples(test),
        num_values=num_values,
        kind=kind,
        shape=shape,
        options={
            **options,
            "val_fraction": val_fraction,
            "test_fraction": test_fraction,
            "max_train": max_train,
            "seed": seed,
            "image_shape": None if image_shape is None else list(image_shape),
        },
    )


@register("file")
def file(
    *,
    path: str | os.PathLike[str] | None = None,
    num_values: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = TEST_FRACTION,
    max_train: int | None = None,
    seed: int = 0,
    image_shape: list[int] | None = None,
    header: bool | None = None,
    columns: str | None = None,
    table: dict[str, Any] | None = None,
) -> Dataset:
    """Your own data: a .npy/.npz/.csv/.tsv file of integers, real or mixed values, or a
    folder of PNG images.

    On the command line ``densitykit fit --data PATH`` is the same as
    ``--data file --data-option path=PATH``. The run folder records the file's
    absolute path: keep the file where it is to evaluate, sample or resume the run.

    Args:
        path: The file or folder (see the module notes for what each may hold).
        num_values: $K$, the values of each variable; ``max + 1`` of the data if ``None``.
        val_fraction: Share of the training part held out for validation, in ``[0, 1)``,
            unless the file has a ``val`` array.
        test_fraction: Share of the examples held out for test (a fixed choice), unless
            the file has a ``test`` array.
        max_train: Keep only the first ``max_train`` training examples.
        seed: Seed of the validation split.
        image_shape: ``[H, W]`` to read ``(N, H*W)`` rows as images.
        header: For a ``.csv`` / ``.tsv`` file, whether the first row names the columns
            (``--data-option header=false`` reads it as data). ``None`` detects it: a
            first row whose cells are all names, none empty and none a number. What
            was found is kept in the data set's options (``header``), so the run's
            config says it and rebuilding reads the file the same way.
        columns: The kinds of a table's columns (``--columns``; see
            [`densitykit.data.tables`][densitykit.data.tables]): the file is then read
            as a table of real or mixed columns even if every value is an integer (an
            integer column given ``real`` is modelled by a density). Without it, a file
            of integers is read as today (discrete, ``0..K-1``) and a file with a
            non-integer value as a table whose kinds are inferred.
        table: A recorded table (``Table.to_dict()``), which a run folder keeps: its
            columns and training statistics are reused, and a file whose columns
            differ (names, count, kinds) is refused.

    Raises:
        DataError: If the file cannot be read (the message says why).
        ResourceError: If it would not fit in memory.
    """
    if header is not None and not isinstance(header, bool):
        raise TypeError(f"file: header must be true, false or None, got {header!r}")
    if path is None:
        raise DataError("file: expected path= a data file or folder (--data PATH), got none")
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"file: path must be a file path, got {type(path).__name__} {path!r}")
    absolute = Path(path).expanduser().resolve()
    detect = header is None
    arrays, header, names, as_table = _read_for_file(absolute, header, columns or table)
    if detect and header:
        _LOG.info(
            f"the first row of {absolute} is a row of names: it was taken as a header "
            "(--data-option header=false reads it as data)"
        )
    if as_table:
        val_fraction = check_fraction(val_fraction, "file: val_fraction")
        test_fraction = check_fraction(test_fraction, "file: test_fraction")
        max_train = check_optional_int(max_train, "file: max_train", minimum=1)
        seed = check_seed(seed, "file: seed")
        if num_values is not None or image_shape is not None:
            raise DataError(f"{absolute}: num_values and image_shape do not apply to a table")
        tables = {key: _as_table(value, f"{absolute} ({key})") for key, value in arrays.items()}
        for key, value in tables.items():
            check_finite(value, names, str(absolute) if key == "data" else f"{absolute} ({key})")
        if len({value.shape[1] for value in tables.values()}) > 1:
            raise DataError(f"{absolute}: expected train, val and test rows of one width")
        splits = _split(
            tables, str(absolute), val_fraction=val_fraction, test_fraction=test_fraction,
            max_train=max_train, seed=seed,
        )  # fmt: skip
        return table_dataset(
            "file", splits, names, where=str(absolute), columns=columns, table=table,
            options={
                "path": str(absolute), "header": header, "columns": columns,
                "val_fraction": val_fraction,
                "test_fraction": test_fraction, "max_train": max_train, "seed": seed,
            },
        )  # fmt: skip
    return _build(
        "file",
        arrays,
        where=str(absolute),
        num_values=num_values,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        max_train=max_train,
        seed=seed,
        image_shape=image_shape,
        options={"path": str(absolute), "num_values": num_values, "header": header},
    )


def from_array(
    data: Any,
    *,
    test: Any = None,
    num_values: int | None = None,
    val_fraction: float = 0.1,
    test_fraction: float = TEST_FRACTION,
    seed: int = 0,
    image_shape: tuple[int, int] | None = None,
    name: str = "array",
) -> Dataset:
    """Wrap an in-memory array or tensor of integers as a data set, with the same checks
    and splits as a file.

    Such a data set lives in memory only: to train a run folder from the command line
    or with [`fit_run`][densitykit.runs.fit_run], save the array with ``np.save`` and
    use the file.

    Args:
        data: ``(N,)``, ``(N, D)`` or ``(N, H, W)`` non-negative integers.
        test: Test examples of the same shape; else ``test_fraction`` of ``data``.
        num_values: $K$; ``max + 1`` of the data if ``None``.
        val_fraction: Share of the training part held out for validation.
        test_fraction: Share held out for test when ``test`` is not given.
        seed: Seed of the validation split.
        image_shape: ``(H, W)`` to read ``(N, H*W)`` rows as images.
        name: The data set's name.

    Example:
        >>> ds = from_array(np.random.default_rng(0).integers(0, 2, size=(100, 6)))
        >>> ds.kind, ds.num_values, len(ds.train), len(ds.val), len(ds.test)
        ('vector', 2, 72, 8, 20)
    """
    arrays = {"train" if test is not None else "data": check_values(data, "data")}
    if test is not None:
        arrays["test"] = check_values(test, "test")
        if arrays["test"].shape[1:] != arrays["train"].shape[1:]:
            raise DataError(
                f"test: expected examples of shape {arrays['train'].shape[1:]} like the data, "
                f"got {arrays['test'].shape[1:]}"
            )
    return _build(
        name,
        arrays,
        where="data",
        num_values=num_values,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        max_train=None,
        seed=seed,
        image_shape=image_shape,
        options={"num_values": num_values},
    )
