"""Helpers shared by the benchmark scripts: machine details, timing, tables."""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from densitykit.train import Callback, TrainState

__all__ = [
    "EpochProgress",
    "add_recipe_arguments",
    "cpu_model",
    "machine_report",
    "median_time",
    "parse_architecture",
    "table",
]


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (the platform's guess elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_report() -> str:
    """One block of text: CPU, cores, Python, torch and its thread count."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    lines = [
        f"CPU:            {cpu_model()}",
        f"cores:          {os.cpu_count()} logical"
        + (f", {affinity} usable by this process" if affinity is not None else ""),
        f"load (1 min):   {load:.2f} (other processes share these cores)",
        f"python:         {platform.python_version()}",
        f"torch:          {torch.__version__} (threads: {torch.get_num_threads()})",
    ]
    return "\n".join(lines)


def median_time(
    run: Callable[[], object], *, repeats: int, warmup: int = 1
) -> tuple[float, list[float]]:
    """Median wall time of ``run()`` in seconds over ``repeats`` timed calls, after warm-ups.

    Returns:
        The median and every timed value.
    """
    for _ in range(warmup):
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table with right-aligned columns (left-aligned first column)."""
    cells = [[str(cell) for cell in header], *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: list[str]) -> str:
        first = row[0].ljust(widths[0])
        return "  ".join([first, *(cell.rjust(w) for cell, w in zip(row[1:], widths[1:]))])

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def parse_architecture(text: str) -> tuple[int, tuple[int, ...]]:
    """``"784-500-784"`` -> ``(784, (500,))``; the first and last sizes are D."""
    sizes = [int(part) for part in text.split("-")]
    if len(sizes) < 2 or sizes[0] != sizes[-1]:
        raise argparse.ArgumentTypeError(
            f"expected D-H1-...-D with equal first and last sizes, got {text!r}"
        )
    return sizes[0], tuple(sizes[1:-1])


def add_recipe_arguments(
    parser: argparse.ArgumentParser,
    recipes: Iterable[str],
    *,
    data_dir_required: bool = True,
    out_help: str = "The run folder to write.",
) -> None:
    """The arguments of a benchmark of named recipes trained on MNIST IDX files.

    The recipe name, ``--data-dir``, ``--out``, ``--save``, ``--device``, ``--threads``,
    ``--seed``, ``--data-seed`` and ``--epochs``.
    """
    parser.add_argument("recipe", choices=sorted(recipes), help="The named recipe to run.")
    parser.add_argument(
        "--data-dir", type=Path, required=data_dir_required, help="Folder of the IDX files."
    )
    parser.add_argument("--out", type=Path, default=None, help=out_help)
    parser.add_argument("--save", type=Path, default=None, help="The figures' JSON file.")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N].")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of weights and shuffling.")
    parser.add_argument("--data-seed", type=int, default=0, help="Seed of the binarization.")
    parser.add_argument("--epochs", type=int, default=None, help="Override the epoch limit.")


class EpochProgress(Callback):
    """Prints one line per epoch to stderr, after ``name`` if one is given."""

    def __init__(self, name: str = "") -> None:
        self.prefix = f"{name} " if name else ""

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        print(
            f"{self.prefix}epoch {record['epoch']:3d}  train {record['train_nll']:.3f}  "
            f"val {record['val_nll']:.3f}{'  *' if record['improved'] else ''}  "
            f"({record['seconds']:.1f}s, load {os.getloadavg()[0]:.2f})",
            file=sys.stderr,
            flush=True,
        )


def fit_recipe_run(
    config: Any, out: Path, *, name: str, description: str, overwrite: bool
) -> tuple[dict[str, Any], float, tuple[float, float, float]]:
    """Print the machine and the recipe, then train ``config`` into the run folder ``out``
    with per-epoch progress: the run's metrics, its wall seconds (data and pictures
    included) and the load average before it."""
    from densitykit.runs import fit_run

    print(machine_report(), file=sys.stderr)
    print(f"recipe {name}: {description}", file=sys.stderr, flush=True)
    load_before = os.getloadavg()
    started = time.perf_counter()
    metrics = fit_run(config, out, overwrite=overwrite, callbacks=[EpochProgress()])
    return metrics, time.perf_counter() - started, load_before
