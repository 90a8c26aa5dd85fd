"""A reader for the IDX format of MNIST and Fashion-MNIST, plain or gzipped.

An IDX file is a header and then the array in row-major order, big-endian:

| bytes | what |
| --- | --- |
| 2 | zero |
| 1 | element type: ``0x08`` uint8, ``0x09`` int8, ``0x0B`` int16, ``0x0C`` int32, |
|   | ``0x0D`` float32, ``0x0E`` float64 |
| 1 | number of dimensions $n$ |
| $4n$ | each dimension's size, a big-endian int32 |

The reader trusts the header's sizes (a subset such as a 10,000-image training
file reads as 10,000 images) but checks that the file holds exactly that many
bytes of data, and reads no more than that (plus one byte, to tell a longer file).
"""

from __future__ import annotations

import gzip
import io
import math
import os
import stat
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from densitykit.atomic import atomic_write
from densitykit.errors import DataError
from densitykit.memory import check_allocation

__all__ = ["IDX_DTYPES", "read_idx", "write_idx"]

IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
"""Element type codes of the IDX format and their big-endian numpy types."""

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20  # bytes read at a time


def _open(path: Path) -> BinaryIO:
    """Open ``path`` for reading, through gzip when its content starts with gzip's magic."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise DataError(f"expected an IDX file at '{path}', found no such file") from None
    if stat.S_ISDIR(info.st_mode):
        raise DataError(f"expected an IDX file at '{path}', found a folder")
    if not stat.S_ISREG(info.st_mode):
        raise DataError(
            f"expected an IDX file at '{path}', found something that is not a regular file "
            "(a device, a pipe or a socket)"
        )
    handle = path.open("rb")
    if handle.read(2) == _GZIP_MAGIC:
        handle.seek(0)
        return gzip.GzipFile(fileobj=handle, mode="rb")  # type: ignore[return-value]
    handle.seek(0)
    return handle


def _read_exactly(handle: BinaryIO, buffer: memoryview) -> int:
    """Fill ``buffer`` from ``handle`` in pieces; return how many bytes came."""
    filled = 0
    while filled < len(buffer):
        count = handle.readinto(buffer[filled : filled + _CHUNK])  # type: ignore[attr-defined]
        if not count:
            break
        filled += count
    return filled


def _read(path: Path, handle: BinaryIO) -> np.ndarray:
    head = handle.read(4)
    if len(head) < 4 or head[:2] != b"\x00\x00":
        raise DataError(
            f"'{path}' is not an IDX file: expected a header starting with two zero bytes, "
            f"got {head.hex(' ') or 'an empty file'}"
        )
    code, ndim = head[2], head[3]
    if code not in IDX_DTYPES:
        known = ", ".join(f"0x{c:02X}" for c in IDX_DTYPES)
        raise DataError(
            f"'{path}' has IDX element type code 0x{code:02X}; "
            f"expected one of {known} (0x08 is uint8)"
        )
    sizes = handle.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise DataError(
            f"'{path}' is truncated: its header announces {ndim} dimensions "
            f"({4 + 4 * ndim} header bytes), but the file has {4 + len(sizes)} bytes"
        )
    shape = tuple(int(s) for s in np.frombuffer(sizes, dtype=">i4"))
    if any(size < 0 for size in shape):
        raise DataError(f"'{path}' is not an IDX file: its header gives the shape {shape}")
    dtype = IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    if isinstance(handle, io.BufferedReader):  # a plain file: its size is known up front
        actual = os.fstat(handle.fileno()).st_size - 4 - 4 * ndim
        if actual != expected:
            problem = "truncated" if actual < expected else "longer than its header says"
            raise DataError(
                f"'{path}' is {problem}: shape {shape} of {dtype.name} "
                f"needs {expected} data bytes, found {actual}"
            )
    # The big-endian array, then its native copy (one array when the bytes are single).
    copies = 1 if dtype.itemsize == 1 else 2
    check_allocation(expected * copies, f"'{path}' (shape {shape} of {dtype.name})")
    data = np.empty(math.prod(shape), dtype=dtype)
    actual = _read_exactly(handle, memoryview(data).cast("B"))
    if actual < expected:
        raise DataError(
            f"'{path}' is truncated: shape {shape} of {dtype.name} "
            f"needs {expected} data bytes, found {actual}"
        )
    if handle.read(1):  # a gzip stream longer than the header says: stop at one byte more
        raise DataError(
            f"'{path}' is longer than its header says: shape {shape} of {dtype.name} "
            f"needs {expected} data bytes, found more"
        )
    return data.astype(dtype.newbyteorder("="), copy=False).reshape(shape)


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an IDX file (gzipped or not, told apart by content) into a numpy array.

    The data are read in pieces up to the size the header states: a gzip stream
    that inflates to more than that is refused after one byte more, never held.

    Args:
        path: The file, e.g. ``train-images-idx3-ubyte`` or ``train-images-idx3-ubyte.gz``.

    Returns:
        A new array in native byte order with the header's shape, e.g.
        ``(60000, 28, 28)`` ``uint8`` for MNIST's training images.

    Raises:
        DataError: If the file is missing or not a regular file, the gzip stream is
            damaged, the magic number is wrong, the element type is unknown, or the
            data are shorter or longer than the header says.
        ResourceError: If the header's shape would not fit in memory (the size is stated).

    Example:
        >>> import tempfile
        >>> folder = tempfile.mkdtemp()
        >>> array = np.arange(6, dtype=np.uint8).reshape(2, 3)
        >>> path = write_idx(array, f"{folder}/tiny-idx2-ubyte.gz")
        >>> read_idx(path).tolist()
        [[0, 1, 2], [3, 4, 5]]
    """
    path = Path(path)
    with _open(path) as handle:
        try:
            return _read(path, handle)
        except (OSError, EOFError, zlib.error) as error:
            raise DataError(
                f"'{path}' is a damaged gzip file ({error}); expected a gzipped IDX file"
            ) from None


def write_idx(array: np.ndarray, path: str | os.PathLike[str]) -> Path:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``.

    The inverse of [`read_idx`][densitykit.data.idx.read_idx]; handy for tests and
    for turning other data into MNIST-style folders.

    Raises:
        TypeError: If the array's dtype has no IDX code.
        ValueError: If it has more than 255 dimensions.
    """
    array = np.asarray(array)
    codes = {dtype.newbyteorder("=").str: code for code, dtype in IDX_DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("=").str)
    if code is None:
        raise TypeError(
            f"IDX stores uint8, int8, int16, int32, float32 or float64, got {array.dtype}"
        )
    if array.ndim > 255:
        raise ValueError(f"IDX stores at most 255 dimensions, got {array.ndim}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">i4").tobytes()
    content = header + np.ascontiguousarray(array, dtype=IDX_DTYPES[code]).tobytes()
    path = Path(path)
    data = gzip.compress(content, mtime=0) if path.suffix == ".gz" else content
    atomic_write(path, lambda handle: handle.write(data))
    return path
