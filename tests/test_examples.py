"""Every script in examples/ runs in its quick mode and writes what it promises.

Each runs as a user would run it (a subprocess of this Python, in an empty working
folder) with the network made unreachable: no proxy that works, no data in the
default places (``HOME`` and ``DENSITYKIT_DATA`` point into the temporary folder).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from helpers import offline_env

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"

# script -> files it must write into --out
OUTPUTS = {
    "compose_model.py": ["smiley.png", "learning_curves.png"],
    "mnist_ensemble.py": ["samples.png", "data.png"],
    "heads_1d.py": ["heads_1d.png"],
    "custom_head_cli.py": [
        "binomial-run/checkpoint.pt",
        "binomial-run/metrics.json",
        "binomial.png",
        "column-major-run/checkpoint.pt",
        "column-major.png",
    ],
}


def run_example(script: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=tmp_path,
        env=offline_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_every_example_is_tested() -> None:
    scripts = {p.name for p in EXAMPLES.glob("*.py")} - {"binomial_plugin.py", "family_plugin.py"}
    assert scripts == set(OUTPUTS)


def check_heads_table(stdout: str) -> None:
    """heads_1d.py prints one row per (data, head) with a positive test NLL per dim."""
    rows = [line.split() for line in stdout.splitlines() if line.startswith("1d-")]
    assert {row[-3] for row in rows} == {"logistic-mixture", "histogram"} and len(rows) == 6
    assert all(float(row[-2]) > 0 for row in rows)


def check_mixture_report(stdout: str) -> None:
    """mnist_ensemble.py reports the test NLL of mixtures of 1, 2, 4 and 8 masks."""
    for count in (1, 2, 4, 8):
        assert f"test NLL with {count} mask(s)" in stdout


CHECKS = {"heads_1d.py": check_heads_table, "mnist_ensemble.py": check_mixture_report}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(OUTPUTS))
def test_example_runs_in_quick_mode(script: str, tmp_path: Path) -> None:
    result = run_example(script, tmp_path, "--quick", "--out", "results")
    assert result.returncode == 0, f"{script} failed:\n{result.stdout}\n{result.stderr}"
    for name in OUTPUTS[script]:
        path = tmp_path / "results" / name
        assert path.is_file() and path.stat().st_size > 0, f"{script} did not write {name}"
    if script in CHECKS:
        CHECKS[script](result.stdout)


@pytest.mark.slow
def test_mnist_example_reads_a_local_idx_folder(tmp_path: Path) -> None:
    """--data-dir is honoured: a folder in torchvision's MNIST/raw layout is found."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        from mnist_ensemble import write_fake_mnist
    finally:
        sys.path.remove(str(EXAMPLES))
    folder = write_fake_mnist(tmp_path / "local" / "MNIST" / "raw", num_train=120, num_test=30)
    data_dir = str(folder.parents[1])
    result = run_example("mnist_ensemble.py", tmp_path, "--quick", "--data-dir", data_dir)
    assert result.returncode == 0, result.stderr
    assert "108 training, 30 test images" in result.stdout
    out = tmp_path / "runs" / "examples" / "mnist_ensemble"  # the default --out
    assert (out / "samples.png").is_file()
    assert not (out / "fake-mnist").exists()  # nothing generated when given data
