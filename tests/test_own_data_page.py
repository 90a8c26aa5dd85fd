"""The "Your own data" page: its Python blocks and its command-line block run as written."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from densitykit.cli import app

PAGE = Path(__file__).resolve().parents[1] / "docs" / "own-data.md"
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
SNIPPET = re.compile(r'^--8<-- "([^"]+)"$', re.MULTILINE)


def _blocks(language: str) -> list[str]:
    return [
        body
        for lang, body in FENCE.findall(PAGE.read_text())
        if lang == language and not SNIPPET.fullmatch(body.strip())
    ]


def test_python_blocks_then_commands_run(tmp_path: Path) -> None:
    blocks = _blocks("python")
    assert len(blocks) == 4
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    for index, block in enumerate(blocks):  # each on its own, in one folder
        script = tmp_path / f"block{index}.py"
        script.write_text(block)
        result = subprocess.run(
            [sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
            text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        if index == 0:
            nll = float(re.search(r"test NLL ([\d.]+)", result.stdout).group(1))
            assert 4.2 < nll < 4.7, result.stdout  # the page says "about 4.4"
        if index == 3:
            assert "vector 3 5 720 80 200" in result.stdout
    assert (tmp_path / "pairs-scores.csv").is_file() and (tmp_path / "runs/pairs").is_dir()
    (command_block,) = _blocks("bash")
    runner = CliRunner()
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        for line in command_block.strip().splitlines():
            args = shlex.split(line)
            assert args[0] == "densitykit"
            result = runner.invoke(app, [*args[1:], *(["--quiet"] if args[1] == "fit" else [])])
            assert result.exit_code == 0, f"{line}\n{result.output}"
    finally:
        os.chdir(cwd)
    assert (tmp_path / "pairs-cli-scores.csv").read_text().count("\n") == 2001
    assert (tmp_path / "runs/codes/config.json").is_file()


def test_the_page_shows_the_measured_figures() -> None:
    text = PAGE.read_text()
    assert "(assets/ood-mnist-fashion.png)" in text and "AUROC" in text
    assert "GRID_TABLE" not in text and "OOD_REVERSE" not in text
