"""``--threads N``: every command that computes takes it, sets torch's thread count before
its work, and refuses anything but a positive integer in one line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import typer.main
from typer.testing import CliRunner

from densitykit.cli import app

runner = CliRunner()
COMPUTING = ["fit", "eval", "sample", "score", "inpaint", "resume"]


@pytest.fixture
def keep_threads() -> Iterator[int]:
    """Torch's thread count, restored after the test (the option sets it process-wide)."""
    before = torch.get_num_threads()
    yield before
    torch.set_num_threads(before)


def test_every_computing_command_has_the_same_threads_option() -> None:
    group = typer.main.get_command(app)
    options = {}
    for name in COMPUTING:
        [param] = [p for p in group.commands[name].params if p.name == "threads"]
        assert param.opts == ["--threads"] and param.default is None, name
        options[name] = param.help
    assert len(set(options.values())) == 1, "declare --threads once and reuse it"
    for name in ("datasets", "heads", "masks"):  # listings compute nothing
        assert "threads" not in {p.name for p in group.commands[name].params}


@pytest.mark.parametrize("command", COMPUTING)
def test_threads_is_set_before_the_command_runs(
    command: str, tmp_path: Path, keep_threads: int
) -> None:
    """The thread count is in force even when the command then fails (here on a missing
    run folder or data set)."""
    torch.set_num_threads(2)
    missing = str(tmp_path / "missing")
    args = {
        "fit": ["fit", "--data", missing, "--out", str(tmp_path / "run")],
        "score": ["score", missing, missing],
        "sample": ["sample", missing, "-o", str(tmp_path / "s.png")],
        "inpaint": ["inpaint", missing, "-o", str(tmp_path / "i.png")],
    }.get(command, [command, missing])
    result = runner.invoke(app, [*args, "--threads", "1"])
    assert result.exit_code == 1, result.output
    assert torch.get_num_threads() == 1


@pytest.mark.parametrize("value", ["0", "-3"])
def test_threads_must_be_a_positive_integer(value: str, keep_threads: int) -> None:
    torch.set_num_threads(2)
    result = runner.invoke(app, ["eval", "no-such-run", "--threads", value])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == [f"error: --threads must be a positive integer, got {value}"], result.output
    assert torch.get_num_threads() == 2
