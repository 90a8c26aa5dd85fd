"""A head and a mask builder registered from outside densitykit, used through the CLI.

``binomial_plugin.py`` (beside this file) registers a ``binomial`` head and a
``column-major`` mask builder. The ``densitykit`` command loads it with
``--plugin``; the run folder records the plug-in, and ``densitykit eval`` and
``densitykit sample`` take it again with ``--plugin`` (a run folder never imports
code by itself). This script runs the
commands you would type in a shell (in this process, through the same typer
application, to pay for importing PyTorch once):

    densitykit heads --plugin examples/binomial_plugin.py
    densitykit fit --plugin examples/binomial_plugin.py --head binomial --data 1d-gaussian ...
    densitykit eval RUN --plugin examples/binomial_plugin.py
    densitykit sample RUN -o samples.png --plugin examples/binomial_plugin.py
    densitykit fit --plugin examples/binomial_plugin.py --masks column-major --data shapes ...

    python examples/custom_head_cli.py              # about a minute on a laptop CPU
    python examples/custom_head_cli.py --quick      # a few seconds
    python examples/custom_head_cli.py --out runs   # another output folder

The run folders and pictures go to ``runs/examples/custom_head_cli/`` by default.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

import typer.main

from densitykit.cli import app

# The plug-in is passed by absolute path, so the commands work from any folder.
PLUGIN = str(Path(__file__).resolve().with_name("binomial_plugin.py"))


OUT = Path("runs/examples/custom_head_cli")


def densitykit(*args: str) -> None:
    """Run ``densitykit ARGS...`` as the shell would, and stop if it fails."""
    print("$", shlex.join(["densitykit", *args]).replace(PLUGIN, "examples/binomial_plugin.py"))
    command = typer.main.get_command(app)
    exit_code = command.main(args=list(args), prog_name="densitykit", standalone_mode=False)
    if exit_code:  # a library error: the one-line message is already on stderr
        raise SystemExit(exit_code)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings, for tests")
    parser.add_argument(
        "--out", type=Path, default=OUT, help="output folder (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    binomial_run, columns_run = args.out / "binomial-run", args.out / "column-major-run"
    if args.quick:
        epochs, shapes = "2", ["--data-option", "size=12", "--data-option", "num_samples=300"]
        shape_epochs, hidden = "1", "160"
    else:
        epochs, shapes, shape_epochs, hidden = "50", ["--max-train", "4000"], "10", "500"

    # The registered names now include the plug-in's.
    densitykit("heads", "--plugin", PLUGIN)
    densitykit("masks", "--plugin", PLUGIN)

    # One logit per variable: Binomial(19, p) for the 20 values of the 1-D Gaussian set.
    densitykit(
        "fit", "--plugin", PLUGIN, "--head", "binomial", "--data", "1d-gaussian",
        "--hidden-sizes", "", "--epochs", epochs, "--lr", "0.05", "--batch-size", "50",
        "--device", "cpu", "--out", str(binomial_run), "--overwrite", "--quiet",
    )  # fmt: skip
    densitykit("eval", str(binomial_run), "--plugin", PLUGIN)
    densitykit(
        "sample", str(binomial_run), "-n", "1000", "-o", str(args.out / "binomial.png"),
        "--overwrite", "--plugin", PLUGIN,
    )  # fmt: skip

    # The mask builder: shape images read column by column, with the built-in Bernoulli head.
    densitykit(
        "fit", "--plugin", PLUGIN, "--masks", "column-major", "--data", "shapes", *shapes,
        "--hidden-sizes", hidden, "--epochs", shape_epochs, "--device", "cpu",
        "--out", str(columns_run), "--overwrite", "--quiet",
    )  # fmt: skip
    densitykit(
        "sample", str(columns_run), "-n", "36", "-o", str(args.out / "column-major.png"),
        "--overwrite", "--plugin", PLUGIN,
    )  # fmt: skip


if __name__ == "__main__":
    main()
