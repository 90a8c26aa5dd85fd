"""Reproduce the CS294-158 (2020) homework-1 experiments with the densitykit CLI.

Each experiment is one ``densitykit fit`` command; this script runs them one after the
other, reads each run's ``metrics.json`` and prints a Markdown table of test NLL in
nats per dimension beside the course's official solutions, with the exact command.

    python benchmarks/reproductions.py --out runs/reproductions --mnist-dir DIR

where DIR is a folder holding the MNIST IDX files (without it, MNIST is skipped), or
``--quick`` for a smoke run of the same experiments with two epochs each.

The 1-D runs use ``val_fraction=0`` so that, as in the course, the whole 80% training
split is trained on (early stopping then watches the training NLL); the test split is
the course's last 20%.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

from _common import machine_report


def one_d(data: str, head: str, lr: str, *head_args: str) -> list[str]:
    """A 1-D run on the course's whole 80 % training split, as the course trains."""
    return [
        "--data", data, "--head", head, *head_args, "--data-option", "val_fraction=0",
        "--lr", lr, "--epochs", "300", "--patience", "30",
    ]  # fmt: skip


# D = 1: hidden units could feed no output (the output rule is strict), hence no layers.
MIXTURE = ("--num-components", "4", "--hidden-sizes", "")

# name, course figure (nats/dim on test; text when not comparable) or None, CLI arguments
# after `densitykit fit`
EXPERIMENTS: list[tuple[str, float | str | None, list[str]]] = [
    ("1d-gaussian, histogram", 2.0526, one_d("1d-gaussian", "histogram", "0.05")),
    (
        "1d-gaussian, logistic mixture (4)",
        2.0586,
        one_d("1d-gaussian", "logistic-mixture", "0.02", *MIXTURE),
    ),
    ("1d-bimodal, histogram", 4.0422, one_d("1d-bimodal", "histogram", "0.05")),
    (
        "1d-bimodal, logistic mixture (4)",
        4.0464,
        one_d("1d-bimodal", "logistic-mixture", "0.02", *MIXTURE),
    ),
    ("2d-smiley (25x25), MADE categorical", None, []),
    (
        "shapes (20x20, generated), MADE bernoulli",
        "0.0623 on the course's own shapes (another data set)",
        ["--data", "shapes", "--hidden-sizes", "512,512", "--epochs", "20"],
    ),
    (
        "mnist-10k (binarized), MADE bernoulli",
        "0.1106 with the full 60k training set",
        [
            "--data",
            "mnist",
            "--data-dir",
            "{mnist_dir}",
            "--hidden-sizes",
            "512,512",
            "--epochs",
            "20",
            "--patience",
            "20",
        ],
    ),
]


def quick(arguments: list[str]) -> list[str]:
    """The smoke-run version of a run: two epochs, image sets on 500 training images."""
    settings = {"--epochs": "2", "--patience": "2"}
    if "shapes" in arguments or "mnist" in arguments:
        settings["--max-train"] = "500"
    arguments = list(arguments)
    for option, value in settings.items():
        if option in arguments:
            arguments[arguments.index(option) + 1] = value
        else:
            arguments += [option, value]
    return arguments


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/reproductions"))
    parser.add_argument(
        "--mnist-dir",
        type=str,
        default=None,
        help="Folder of MNIST IDX files (skip MNIST if omitted).",
    )
    parser.add_argument(
        "--only", type=str, default=None, help="Run experiments containing this text."
    )
    parser.add_argument(
        "--quick", action="store_true", help="Two epochs per experiment (a smoke run)."
    )
    args = parser.parse_args()
    print(machine_report())
    print()
    rows = []
    for name, course, extra in EXPERIMENTS:
        if args.only and args.only not in name:
            continue
        if "{mnist_dir}" in extra and not args.mnist_dir:
            print(f"skipping {name}: no --mnist-dir", file=sys.stderr)
            continue
        extra = [a.replace("{mnist_dir}", args.mnist_dir or "") for a in extra]
        if args.quick:
            extra = quick(extra)
        slug = name.split(",")[0].replace(" ", "") + "-" + str(len(rows))
        out = args.out / slug
        command = ["densitykit", "fit", *extra, "--out", str(out), "--overwrite", "--quiet"]
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "densitykit", *command[1:]], check=True, stdout=sys.stderr
        )
        seconds = time.perf_counter() - started
        metrics = json.loads((out / "metrics.json").read_text())
        rows.append((name, course, metrics, seconds, shlex.join(command[:-4])))
        print(
            f"{name}: {metrics['test_nats_per_dim']:.4f} nats/dim ({seconds:.0f}s)", file=sys.stderr
        )
    print(
        "| experiment | test nats/dim | course solution | true entropy (nats/dim) "
        "| epochs (best) | wall s | command |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, course, m, seconds, command in rows:
        entropy = m["true_entropy_nats"]
        entropy_text = "-" if entropy is None else f"{entropy / m['dim']:.4f}"
        course_text = (
            "-" if course is None else course if isinstance(course, str) else f"{course:.4f}"
        )
        print(
            f"| {name} | {m['test_nats_per_dim']:.4f} | {course_text} | {entropy_text} | "
            f"{m['epochs_run']} ({m['best_epoch']}) | {seconds:.0f} | `{command}` |"
        )


if __name__ == "__main__":
    main()
