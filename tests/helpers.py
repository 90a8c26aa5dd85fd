"""Small helpers shared by the test modules (not Hypothesis strategies: see strategies.py)."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import torch
from scipy import stats


def offline_env(tmp_path: Path) -> dict[str, str]:
    """No network and no data in the default places, as a reader without them would be."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    unreachable = "http://127.0.0.1:9"  # the discard port: every connection fails at once
    env.update(
        HOME=str(tmp_path / "home"),
        DENSITYKIT_DATA=str(tmp_path / "data"),
        http_proxy=unreachable,
        https_proxy=unreachable,
        HTTP_PROXY=unreachable,
        HTTPS_PROXY=unreachable,
        no_proxy="",
        MPLBACKEND="Agg",
        OMP_NUM_THREADS="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def every_value(dim: int, num_values: int) -> torch.Tensor:
    """Every point of ``0..num_values-1`` to the power ``dim``, one per row."""

    import torch

    return torch.tensor(list(itertools.product(range(num_values), repeat=dim)))


def frequencies_match(
    samples: torch.Tensor, candidates: torch.Tensor, expected: torch.Tensor
) -> bool:
    """Chi-square test (p > 1e-3) that ``samples`` ``(N, D)`` are drawn with probabilities
    ``expected`` over the rows of ``candidates``; cells expecting fewer than 5 are pooled."""
    import torch

    num_samples = samples.shape[0]
    index = {tuple(row.tolist()): i for i, row in enumerate(candidates)}
    counts = torch.zeros(len(candidates), dtype=torch.float64)
    for row in samples.tolist():
        counts[index[tuple(row)]] += 1
    keep = expected * num_samples >= 5
    observed = torch.cat([counts[keep], counts[~keep].sum()[None]])
    wanted = torch.cat([expected[keep], expected[~keep].sum()[None]]) * num_samples
    observed, wanted = observed[wanted > 0], wanted[wanted > 0]
    statistic = float(((observed - wanted) ** 2 / wanted).sum())
    return bool(stats.chi2.sf(statistic, max(len(observed) - 1, 1)) > 1e-3)


class CliOutcome:
    """What a ``densitykit`` process did: exit code, output and its peak memory."""

    def __init__(self, returncode: int, stdout: str, stderr: str, max_rss_mb: float) -> None:
        self.returncode = returncode
        self.stdout = stdout
        self.stderr = stderr
        self.max_rss_mb = max_rss_mb

    def one_line_error(self) -> bool:
        """Exit 1 with one line on stderr and no traceback."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        return self.returncode == 1 and len(lines) == 1 and "Traceback" not in self.stderr


def run_cli(
    args: list[str],
    *,
    cwd: Path | str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 120,
    memory_limit_mb: int | None = None,
) -> CliOutcome:
    """Run ``python -m densitykit ARGS`` in a new process and measure its peak memory.

    The peak resident size comes from ``os.wait4`` on that one process, so a test can
    bound what a hostile input makes the command allocate. ``memory_limit_mb`` caps
    the process's data memory (``ulimit -d``): a regression then fails the test with
    an allocation error instead of taking the machine's memory.
    """
    import subprocess
    import sys
    import tempfile

    run_env = dict(os.environ if env is None else env)
    run_env.setdefault("OMP_NUM_THREADS", "1")
    run_env.setdefault("MPLBACKEND", "Agg")
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "densitykit", *args],
            cwd=cwd,
            env=run_env,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            preexec_fn=None if memory_limit_mb is None else lambda: _limit(memory_limit_mb),
        )
        try:
            _, status, usage = _wait4(process.pid, timeout)
        except TimeoutError:
            process.kill()
            os.wait4(process.pid, 0)
            raise
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return CliOutcome(
            process.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
            usage.ru_maxrss / 1024,  # kilobytes on Linux
        )


def _limit(megabytes: int) -> None:
    import resource

    limit = megabytes * 2**20
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def _wait4(pid: int, timeout: float):
    import time

    deadline = time.monotonic() + timeout
    while True:
        done, status, usage = os.wait4(pid, os.WNOHANG)
        if done:
            return done, status, usage
        if time.monotonic() > deadline:
            raise TimeoutError(f"densitykit did not finish within {timeout} s")
        time.sleep(0.05)


def write_gzip_bomb(path: Path, head: bytes, inflated_mb: int) -> Path:
    """Write ``head`` and then ``inflated_mb`` MB of zeros as a small gzip file.

    gzip allows members one after another; the zeros are one compressed member of
    1 MB written ``inflated_mb`` times, so a bomb of gigabytes takes no time to make.
    """
    import gzip

    zeros = gzip.compress(bytes(1 << 20), compresslevel=9, mtime=0)
    with path.open("wb") as handle:
        handle.write(gzip.compress(head, mtime=0))
        for _ in range(inflated_mb):
            handle.write(zeros)
    return path


# -- a small file that inflates: torch.save's format with a deflated record ----------------
class _Stored:
    """A tensor as ``torch.save`` pickles it: a storage record, its dtype and a shape."""

    def __init__(self, key: str, shape: tuple[int, ...], dtype, data: bytes | None) -> None:
        self.key, self.shape, self.dtype, self.data = key, tuple(shape), dtype, data

    def __reduce__(self):
        import collections

        import torch

        stride = torch.empty(self.shape, device="meta").stride()
        return (
            torch._utils._rebuild_tensor_v2,
            (_StorageRef(self), 0, self.shape, stride, False, collections.OrderedDict()),
        )


class _StorageRef:
    def __init__(self, tensor: _Stored) -> None:
        self.tensor = tensor


class Zeros:
    """Stands in ``write_inflating``'s data for a float32 tensor of zeros of ``shape``."""

    def __init__(self, *shape: int) -> None:
        self.shape = shape


def write_inflating(path: Path, data: object) -> None:
    """Write ``data`` in ``torch.save``'s zip format, every [`Zeros`] in it a tensor whose
    record is deflated: a file of a few MB that ``torch.load`` inflates to gigabytes."""
    import io
    import math
    import pickle
    import zipfile

    import torch

    storages = {
        torch.float32: torch.FloatStorage,
        torch.int64: torch.LongStorage,
        torch.bool: torch.BoolStorage,
        torch.uint8: torch.ByteStorage,
    }
    records: list[_Stored] = []

    def stand_in(value):
        if isinstance(value, dict):
            return {k: stand_in(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(stand_in(v) for v in value)
        if isinstance(value, Zeros):
            records.append(_Stored(str(len(records)), value.shape, torch.float32, None))
            return records[-1]
        if isinstance(value, torch.Tensor):
            value = value.contiguous()
            data = value.numpy().tobytes()
            records.append(_Stored(str(len(records)), value.shape, value.dtype, data))
            return records[-1]
        return value

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _StorageRef):
                tensor = obj.tensor
                numel = math.prod(tensor.shape)
                return ("storage", storages[tensor.dtype], tensor.key, "cpu", numel)
            return None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(stand_in(data))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("archive/data.pkl", buffer.getvalue())
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
        for tensor in records:
            with archive.open(f"archive/data/{tensor.key}", "w", force_zip64=True) as record:
                if tensor.data is not None:
                    record.write(tensor.data)
                    continue
                left, chunk = 4 * math.prod(tensor.shape), bytes(1 << 24)
                while left:
                    record.write(chunk[: min(left, len(chunk))])
                    left -= min(left, len(chunk))


def is_real_head(name: str) -> bool:
    """Whether the registered head ``name`` holds real values (a floating ``value_dtype``)
    rather than the integers ``0..K-1``.

    Tests about integer data (enumerating every value, frequencies of values, one-hot
    inputs, the integer data readers) do not apply to a real head, which has no finite
    set of values: they skip it by this, and say so.
    """
    import densitykit as dk

    factory = dk.heads.get(name)
    return bool(getattr(factory, "value_dtype", torch.long).is_floating_point)


REAL_HEAD_SKIP = "a head over real values has no finite set of values to enumerate or count"


def head_num_values(name: str, discrete: int = 5) -> int:
    """The K a test gives head ``name``: 0 (real), 2 (the Bernoulli), else ``discrete``."""
    if is_real_head(name):
        return 0
    return 2 if name == "bernoulli" else discrete


MIXED_KINDS = ("real", "binary", "categorical:3", "spike:0.5")
"""The kinds a test's ``mixed`` head cycles through, variable after variable."""


def head_options(name: str, dim: int) -> dict:
    """The options head ``name`` needs beyond ``dim`` and ``num_values``: the ``mixed``
    head's ``kinds`` (every kind, cycled over the D variables); none for the others."""
    if name == "mixed":
        return {"kinds": [MIXED_KINDS[i % len(MIXED_KINDS)] for i in range(dim)]}
    return {}


def head_values(
    name: str, shape: tuple[int, ...], num_values: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random values of the support of head ``name``: standard normals for a real head,
    uniform integers ``0..num_values-1`` for a discrete one; for ``mixed`` (with the
    kinds of ``head_options`` over ``shape[-1]`` variables) codes in the discrete
    columns and normals with every third value on the spike in the spiked ones."""
    if name == "mixed":
        values = torch.randn(shape, generator=generator)
        codes = torch.randint(0, 6, shape, generator=generator).double()
        for column, kind in enumerate(head_options(name, shape[-1])["kinds"]):
            if kind == "binary":
                values[..., column] = codes[..., column] % 2
            elif kind.startswith("categorical:"):
                values[..., column] = codes[..., column] % int(kind.split(":")[1])
            elif kind.startswith("spike:"):
                spiked = codes[..., column] % 3 == 0
                values[..., column][spiked] = float(kind.split(":")[1])
        return values
    if is_real_head(name):
        return torch.randn(shape, generator=generator)
    return torch.randint(0, num_values, shape, generator=generator)
