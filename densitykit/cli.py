"""The ``densitykit`` command line: a thin typer layer over [`densitykit.runs`][densitykit.runs].

Library errors and usage errors become one line on stderr and exit code 1 (a traceback
only with ``--debug``). Everything printed goes through
[`printable`][densitykit.errors.printable], so a path or value never reaches the terminal
as an escape sequence or a line break. Python warnings are caught: a command says once
what the user can act on, in its report, and drops the rest.
"""

import dataclasses
import inspect
import json
import logging
import sys
import warnings
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import torch
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text
from typer.core import TyperGroup

import densitykit
from densitykit import imputation, inpainting, plots, presets, runs, scoring
from densitykit.checkpoint import atomic_write
from densitykit.checks import check_output_file, check_positive_int, check_seed
from densitykit.data import DATASETS, load_dataset
from densitykit.data.files import is_data_file
from densitykit.distributed import launch_environment, session
from densitykit.errors import DensitykitError, ResourceError, printable
from densitykit.family import FAMILIES
from densitykit.heads import HEADS
from densitykit.model import DEFAULT_HIDDEN_SIZES, ConnectivityWarning, ModelConfig
from densitykit.optim import OPTIMIZERS
from densitykit.plugins import REGISTRIES, import_plugins
from densitykit.runfolder import METRICS_LOG
from densitykit.train import Callback, TrainConfig, TrainResult, TrainState

__all__ = ["app", "main"]


class _Group(TyperGroup):
    """The command group; a usage error (an unknown command or option, a value of the
    wrong type, a missing argument) is one line on stderr and exit code 1 like every
    other error, not click's box and code 2."""

    def main(
        self,
        args: Any = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except typer.TyperException as error:  # click's usage errors
            if type(error).__name__ != "NoArgsIsHelpError":  # that one printed the help
                _print_error(_usage_message(error, prog_name or self.name or "densitykit"))
            code = 1
        except typer.Abort:
            _print_error("aborted")
            code = 1
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)


def _usage_message(error: typer.TyperException, program: str) -> str:
    """A usage error in one line, with where to read the command's usage."""
    message = " ".join(error.format_message().split())
    context = getattr(error, "ctx", None)
    if context is not None and context.command.get_help_option(context) is not None:
        return f"{message} (try: {context.command_path} {context.help_option_names[0]})"
    return f"{message} (try: {program} --help)"


app = typer.Typer(
    name="densitykit",
    cls=_Group,
    help="Autoregressive density estimation with MADE: fit, evaluate and sample.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=False)
errors = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"densitykit {densitykit.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """densitykit: MADE density estimation from the command line."""
    # The invocation's settings live in the object of click's context, which every
    # command's context inherits: nothing is kept in this module between invocations.
    ctx.ensure_object(dict)["debug"] = debug
    _show_library_notes()


class _NoteHandler(logging.Handler):
    """Prints the library's notes (a run put back, a finished run) as one line each."""

    def emit(self, record: logging.LogRecord) -> None:
        errors.print(
            Text("note: " + printable(record.getMessage())), highlight=False, soft_wrap=True
        )


def _show_library_notes() -> None:
    logger = logging.getLogger("densitykit")
    if not any(isinstance(h, _NoteHandler) for h in logger.handlers):
        logger.addHandler(_NoteHandler(logging.INFO))
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _settings(ctx: typer.Context) -> dict[str, Any]:
    """The invocation's settings in click's context: ``debug`` (set by ``--debug``) and
    ``warnings`` (those the running command raised, see `_guard`)."""
    return ctx.ensure_object(dict)


def _fail(error: BaseException, ctx: typer.Context) -> None:
    if _settings(ctx).get("debug", False):
        raise error
    message = str(error).strip() or type(error).__name__
    if isinstance(error, KeyError) and message.startswith("'"):
        message = f"missing {message}"
    _print_error(message)
    raise typer.Exit(1)


def _print_error(message: str) -> None:
    """Print ``error: MESSAGE`` as one line on stderr."""
    # User text (paths, names, values) is printed as text, never read as rich markup, and
    # with its control characters made visible.
    errors.print(
        Text("error: ", style="bold red") + Text(printable(message)),
        highlight=False,
        soft_wrap=True,
    )


def _say(message: str) -> None:
    """Print one line of plain text (no markup, no highlighting, no control characters)."""
    console.print(Text(printable(message)), highlight=False, soft_wrap=True)


def _echo(line: str) -> None:
    """Print a line of a listing (names and descriptions may come from plug-ins)."""
    typer.echo(printable(line))


def _caught(ctx: typer.Context, category: type[Warning]) -> list[str]:
    """The distinct messages of the ``category`` warnings the running command raised."""
    caught = _settings(ctx).get("warnings", [])
    return list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, category)))


def _guard(function: Any) -> Any:
    """Turn library and input errors into one-line messages.

    The command receives click's context as typer passes it (a ``ctx`` parameter, added
    to the signature typer reads when the command does not declare one).
    """
    signature = inspect.signature(function)
    takes_context = "ctx" in signature.parameters

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        ctx = kwargs["ctx"] if takes_context else kwargs.pop("ctx")
        # Warnings are the library's word to a Python caller; on the command line, a
        # command reports (once, in its report) the few a user can act on, see `_caught`,
        # and the others (a library's internals, a run already trained) are dropped.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            _settings(ctx)["warnings"] = caught
            try:
                return function(*args, **kwargs)
            except typer.Exit:
                raise
            except (DensitykitError, ValueError, TypeError, OSError, KeyError) as error:
                _fail(error, ctx)
            finally:
                _settings(ctx)["warnings"] = []

    if not takes_context:
        context = inspect.Parameter(
            "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
        )
        signature = signature.replace(parameters=[context, *signature.parameters.values()])
    wrapper.__signature__ = signature  # type: ignore[attr-defined]
    wrapper.__doc__ = function.__doc__
    wrapper.__name__ = function.__name__
    return wrapper


def _parse_sizes(text: str) -> tuple[int, ...]:
    text = text.strip()
    if text in ("", "none", "0"):
        return ()
    try:
        sizes = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(
            f"--hidden-sizes must be comma-separated positive integers like 512,512, got {text!r}"
        ) from None
    if any(size < 1 for size in sizes):
        raise ValueError(f"--hidden-sizes must be positive integers, got {text!r}")
    return sizes


def _parse_pairs(pairs: list[str], option: str) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"{option} takes key=value, got {pair!r}")
        try:
            parsed[key.replace("-", "_")] = json.loads(value)
        except json.JSONDecodeError:
            parsed[key.replace("-", "_")] = value
    return parsed


def _accepted(factory: Any) -> set[str]:
    return set(inspect.signature(factory).parameters)


def _filter_options(
    kind: str, name: str, factory: Any, named: dict[str, tuple[str, Any]], given: set[str]
) -> dict:
    """Keep the options the factory takes; refuse explicit ones (in ``given``) it does not."""
    accepted = _accepted(factory)
    options = {}
    for key, (flag, value) in named.items():
        if value is None:
            continue
        if key not in accepted:
            if flag.lstrip("-").replace("-", "_") not in given:
                continue  # a default the factory does not take
            takes = sorted(k for k in accepted if k not in ("dim", "num_values"))
            raise ValueError(
                f"{flag} does not apply to {kind} {name!r} "
                f"(it takes: {', '.join(takes) or 'no options'})"
            )
        options[key] = value
    return options


class _ProgressCallback(Callback):
    """A rich progress bar with live train / validation loss."""

    def __init__(self, progress: Progress, epochs: int, message: str = "") -> None:
        self.message = message
        self.progress = progress
        self.epochs = epochs
        self.task: Any = None
        self.last_val = float("nan")
        self.running = 0.0
        self.count = 0

    def on_train_begin(self, state: TrainState, num_batches: int) -> None:
        if self.message:
            self.progress.console.print(Text(printable(self.message)), highlight=False)
        self.num_batches = num_batches
        self.task = self.progress.add_task("epoch", total=num_batches, loss="")
        self._epoch = state.epoch + 1

    def on_batch_end(self, state: TrainState, loss: float) -> None:
        self.running += loss
        self.count += 1
        self.progress.update(
            self.task,
            advance=1,
            description=f"epoch {self._epoch}/{self.epochs}",
            loss=f"train {self.running / self.count:.4f}  val {self.last_val:.4f}",
        )

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        self.last_val = record["val_nll"]
        mark = "*" if record["improved"] else " "
        self.progress.console.print(
            Text(
                f"epoch {record['epoch']:3d}  train {record['train_nll']:.4f}  "
                f"val {record['val_nll']:.4f} {mark} ({record['seconds']:.1f}s)"
            ),
            highlight=False,
        )
        self.running, self.count = 0.0, 0
        self._epoch = state.epoch + 1
        self.progress.reset(self.task, total=self.num_batches)

    def on_train_end(self, result: TrainResult) -> None:
        self.progress.remove_task(self.task)


def _progress(quiet: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[loss]}", markup=False),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=quiet,
    )


def _report(metrics: dict[str, Any], out: Path) -> None:
    entropy = (
        f"; true entropy {metrics['true_entropy_nats']:.4f} nats "
        f"(gap {metrics['gap_to_entropy_nats']:.4f})"
        if metrics.get("true_entropy_nats") is not None
        else ""
    )
    given = " given the label" if metrics.get("condition") else ""
    if "columns" in metrics:
        _say_columns(metrics)
        given += " in the data's units (log-density)"
    _say(
        f"test NLL{given} {metrics['test_nll_nats']:.4f} nats "
        f"({metrics['test_nats_per_dim']:.4f} nats/dim, "
        f"{metrics['test_bits_per_dim']:.4f} bits/dim){entropy}"
    )
    _say(
        f"best epoch {metrics['best_epoch']} of {metrics['epochs_run']}"
        f"{_stopped(metrics.get('stop_reason'))}, "
        f"{metrics['num_params']:,} parameters, {metrics['train_seconds']:.1f}s of training"
    )
    files = ", ".join(sorted(p.name for p in out.iterdir() if not p.name.startswith(".")))
    _say(f"outputs in {out}/: {files}")


def _stopped(reason: str | None) -> str:
    """How the report names why training stopped (a full run of epochs says nothing)."""
    return f" (stopped by the {reason})" if reason in ("patience", "time budget") else ""


def _interrupted(out: Path) -> None:
    """Ctrl-C: say where the run stands and how to continue it; exit 130 like a shell."""
    log = out / METRICS_LOG
    epochs = len(log.read_text().splitlines()) if log.is_file() else 0
    if epochs:
        message = (
            f"stopped by the user after {epochs} completed epoch(s); continue with: "
            f"densitykit resume {out}"
        )
    else:
        message = f"stopped by the user before the first epoch ended; {out} holds no new epoch"
    errors.print(Text(printable(message)), highlight=False, soft_wrap=True)
    raise typer.Exit(130)


_TRAIN = TrainConfig()
_MODEL = ModelConfig()
_HIDDEN_SIZES = ",".join(map(str, DEFAULT_HIDDEN_SIZES))
MAX_COMPLETIONS = 65_536
"""The most completions ``inpaint`` draws in one call (images times ``-n``): a few GB
for 784 variables, held at once with the images they complete."""


def _use_threads(ctx: typer.Context, threads: int | None) -> int | None:
    """Have torch compute with ``threads`` intra-op threads (``None``: torch's default)."""
    if threads is not None:
        try:
            torch.set_num_threads(check_positive_int(threads, "--threads"))
        except ValueError as error:
            _fail(error, ctx)
    return threads


def _names(registry: Any) -> str:
    """The names registered when the app is built, for an option's help."""
    return ", ".join(registry.names()) + " (a --plugin may register more)"


# -- the options, each declared once and used by every command that takes it -------------
# The panels group `fit --help` (and the other commands' help) by what an option sets.
_DATA, _MODEL_PANEL, _TRAINING, _OUTPUT, _RUNTIME = "Data", "Model", "Training", "Output", "Runtime"

_RunDir = Annotated[Path, typer.Argument(help="A run folder written by `densitykit fit`.")]
_Threads = Annotated[
    int | None,
    typer.Option(
        callback=_use_threads,
        help="Torch threads to compute with, a positive integer (default: torch's own choice).",
        rich_help_panel=_RUNTIME,
    ),
]
_Plugins = Annotated[
    list[str],
    typer.Option(
        help="Module or .py file to import first (user heads/masks/data); repeatable.",
        rich_help_panel=_RUNTIME,
    ),
]
_Device = Annotated[str, typer.Option(help="auto, cpu or cuda[:N].", rich_help_panel=_RUNTIME)]
_Seed = Annotated[
    int,
    typer.Option(
        help="Seed of the command's random draws: fit's weights, masks and shuffling; "
        "sample's samples; inpaint's pattern and completions.",
        rich_help_panel=_RUNTIME,
    ),
]
_Quiet = Annotated[
    bool,
    typer.Option(
        help="No progress bar (nor, for fit and resume, per-epoch lines).",
        rich_help_panel=_OUTPUT,
    ),
]
_Overwrite = Annotated[
    bool,
    typer.Option(
        help="Replace the output if it exists (fit: only a densitykit run folder).",
        rich_help_panel=_OUTPUT,
    ),
]
_Json = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON.", rich_help_panel=_OUTPUT)
]
_OUT_HELP = (
    "Where to write: fit's run folder (default: runs/<data>-<time>); sample's and inpaint's "
    "picture (.png) or array (.npy), or a table run's samples as .csv; score's scores (.csv "
    "with a header, or .npy); impute's completed table (.csv, .tsv or .npy)."
)
_Out = Annotated[Path, typer.Option("--out", "-o", help=_OUT_HELP, rich_help_panel=_OUTPUT)]
_OptionalOut = Annotated[Path | None, _Out.__metadata__[0]]
_NumSamples = Annotated[
    int,
    typer.Option(
        "-n",
        "--num-samples",
        help=f"How many samples (inpaint: completions per image, at most {MAX_COMPLETIONS:,} "
        "in all over the images).",
        rich_help_panel=_OUTPUT,
    ),
]
_Observed = Annotated[
    str,
    typer.Option(
        help="The observed part: top-half, bottom-half, left-half, right-half, random:F, or a "
        "PNG of the images' size whose light pixels are observed (eval: report the "
        "conditional NLL of the missing part given it; its random:F is drawn with seed 0). "
        "For a table's run: the observed columns' names, comma-separated.",
        rich_help_panel=_DATA,
    ),
]
_OptionalObserved = Annotated[str | None, _Observed.__metadata__[0]]
_DrawOrderings = Annotated[
    int | None,
    typer.Option(
        help="Ask a model trained over all orderings (--masks any-order) with this many "
        "seeded orderings drawn at inference instead of its own mixture.",
        rich_help_panel=_MODEL_PANEL,
    ),
]
_OrderingSeed = Annotated[
    int, typer.Option(help="Seed of --draw-orderings.", rich_help_panel=_MODEL_PANEL)
]
_NumMasks = Annotated[
    int | None,
    typer.Option(
        help="Number of masks (orderings/connectivities): fit trains this many; eval and "
        "score mix this many of the model's (default: all).",
        rich_help_panel=_MODEL_PANEL,
    ),
]

# Data.
_Split = Annotated[
    str | None,
    typer.Option(
        help="A data set's split: train, val or test (default test); score: or an .npz "
        "file's array.",
        rich_help_panel=_DATA,
    ),
]
_DataName = Annotated[
    str,
    typer.Option(
        help="Data set name: "
        + _names(DATASETS)
        + "; see `densitykit datasets`. Or a data file: .npy, .npz, .csv, .tsv or a folder "
        "of PNG images.",
        rich_help_panel=_DATA,
    ),
]
_Condition = Annotated[
    str | None,
    typer.Option(
        help="Train a conditional model: 'label' for p(x | label), with the data set's "
        "labels (mnist, fashion-mnist, binarized-mnist, shapes).",
        rich_help_panel=_DATA,
    ),
]
_DataDir = Annotated[
    Path | None,
    typer.Option(help="Folder with the data set's files (MNIST IDX files).", rich_help_panel=_DATA),
]
_Binarize = Annotated[
    str | None, typer.Option(help="MNIST: threshold, stochastic or none.", rich_help_panel=_DATA)
]
_GridSize = Annotated[
    int | None, typer.Option(help="2-D data: grid side K.", rich_help_panel=_DATA)
]
_Image = Annotated[
    Path | None, typer.Option(help="2d-image: the picture file.", rich_help_panel=_DATA)
]
_MaxTrain = Annotated[
    int | None,
    typer.Option(help="Keep only this many training examples.", rich_help_panel=_DATA),
]
_DataSeed = Annotated[
    int, typer.Option(help="Seed of the data set's draws and splits.", rich_help_panel=_DATA)
]
_Columns = Annotated[
    str | None,
    typer.Option(
        help="A data file's column kinds, making it a table of real or mixed columns: "
        "name:kind,... (any columns, by header name) or kind,... (one per column); kinds "
        "real, binary, categorical, spike, spike=V, auto. Default: a file with a "
        "non-integer value is a table with inferred kinds; an integer file is discrete.",
        rich_help_panel=_DATA,
    ),
]
_DataOption = Annotated[
    list[str],
    typer.Option(help="Extra data set option key=value (repeatable).", rich_help_panel=_DATA),
]

_EvalSplit = Annotated[str, _Split.__metadata__[0]]
_DataArgument = Annotated[
    str,
    typer.Argument(
        help="A data file (.npy, .npz, .csv, .tsv, a folder of PNG images) or a data set name."
    ),
]
_NumImages = Annotated[int, typer.Option(help="Test images to complete.", rich_help_panel=_DATA)]
_Label = Annotated[
    int | None,
    typer.Option(
        help="For a class-conditional run: draw this class. Without it, a picture has "
        "one row of -n samples per class.",
        rich_help_panel=_DATA,
    ),
]

# Model.
_Family = Annotated[
    str,
    typer.Option(
        help="Model family: " + _names(FAMILIES) + "; see `densitykit families` (orderless: "
        "one network for every conditional; histogram: independent variables, also "
        "--head histogram; maf: a flow of MADEs over real values).",
        rich_help_panel=_MODEL_PANEL,
    ),
]
_Preset = Annotated[
    str | None,
    typer.Option(
        help="Recommended settings by name (default: the data set's for its head; "
        "'none' for the library defaults). Options given here win.",
        rich_help_panel=_MODEL_PANEL,
    ),
]
_Head = Annotated[
    str | None,
    typer.Option(
        help="Head: " + _names(HEADS) + "; see `densitykit heads`. Default: one that suits "
        "the data.",
        rich_help_panel=_MODEL_PANEL,
    ),
]
_Masks = Annotated[
    str,
    typer.Option(
        help="Mask builder: " + _names(REGISTRIES["mask builder"]) + "; see `densitykit masks`.",
        rich_help_panel=_MODEL_PANEL,
    ),
]
_HiddenSizes = Annotated[
    str,
    typer.Option(
        help="Hidden layer widths, comma-separated (empty for none).",
        rich_help_panel=_MODEL_PANEL,
    ),
]
_Activation = Annotated[
    str,
    typer.Option(
        help="Hidden activation: " + _names(REGISTRIES["activation"]) + ".",
        rich_help_panel=_MODEL_PANEL,
    ),
]
_Direct = Annotated[
    bool, typer.Option(help="Direct input-to-output connections.", rich_help_panel=_MODEL_PANEL)
]
_Dropout = Annotated[
    float,
    typer.Option(
        help="Dropout probability of the hidden units in training.", rich_help_panel=_MODEL_PANEL
    ),
]
_MaskInput = Annotated[
    bool,
    typer.Option(
        help="Tell the first hidden layer and the outputs which variables they see "
        "(the mask as an input; for --masks any-order).",
        rich_help_panel=_MODEL_PANEL,
    ),
]
_Layout = Annotated[
    str,
    typer.Option(
        help="How the masked weights are stored: auto, dense, or packed (only the "
        "weights a single natural-order mask can use).",
        rich_help_panel=_MODEL_PANEL,
    ),
]
_NumComponents = Annotated[
    int | None,
    typer.Option(
        help="Mixture components (logistic-mixture, gaussian-mixture and mixed heads).",
        rich_help_panel=_MODEL_PANEL,
    ),
]
_NumTransforms = Annotated[
    int | None,
    typer.Option(
        help="Affine MADE layers of a flow (--family maf; default 5). --hidden-sizes gives "
        "each MADE's hidden layers.",
        rich_help_panel=_MODEL_PANEL,
    ),
]
_FamilyOption = Annotated[
    list[str],
    typer.Option(
        help="A field of another family's config, key=value (repeatable; e.g. for maf "
        "base=mog, batch_norm=true, permutation=random, log_scale_bound=3).",
        rich_help_panel=_MODEL_PANEL,
    ),
]
_OneHot = Annotated[
    bool | None,
    typer.Option(
        "--one-hot/--no-one-hot",
        help="One-hot inputs (if the head allows).",
        rich_help_panel=_MODEL_PANEL,
    ),
]
_Ordering = Annotated[
    str | None,
    typer.Option(
        help="Explicit ordering for --masks ordering, e.g. 2,0,1.", rich_help_panel=_MODEL_PANEL
    ),
]
_HeadOption = Annotated[
    list[str],
    typer.Option(help="Extra head option key=value (repeatable).", rich_help_panel=_MODEL_PANEL),
]
_MaskOption = Annotated[
    list[str],
    typer.Option(
        help="Extra mask builder option key=value (repeatable), e.g. spread=even "
        "or orderings=regions (or scans).",
        rich_help_panel=_MODEL_PANEL,
    ),
]

# Training.
_Epochs = Annotated[
    int,
    typer.Option(
        help="Maximum epochs (resume: a new maximum, more than already run).",
        rich_help_panel=_TRAINING,
    ),
]
_OptionalEpochs = Annotated[int | None, _Epochs.__metadata__[0]]
_BatchSize = Annotated[
    int,
    typer.Option(
        help="Examples per batch (fit: per optimizer step; score: per forward pass).",
        rich_help_panel=_TRAINING,
    ),
]
_Optimizer = Annotated[
    str, typer.Option(help=f"Optimizer: {', '.join(OPTIMIZERS)}.", rich_help_panel=_TRAINING)
]
_Lr = Annotated[
    float,
    typer.Option(
        help="Learning rate (fit: the starting one; resume: a new one).",
        rich_help_panel=_TRAINING,
    ),
]
_OptionalLr = Annotated[float | None, _Lr.__metadata__[0]]
_LrSchedule = Annotated[
    str,
    typer.Option(
        help="Learning-rate schedule: constant, or cosine (to 0 over --epochs).",
        rich_help_panel=_TRAINING,
    ),
]
_WeightDecay = Annotated[
    float,
    typer.Option(help="Weight decay (L2; decoupled for adamw).", rich_help_panel=_TRAINING),
]
_EmaDecay = Annotated[
    float | None,
    typer.Option(
        help="Weight averaging (EMA) decay, e.g. 0.999: evaluate and save the average.",
        rich_help_panel=_TRAINING,
    ),
]
_TimeBudget = Annotated[
    float | None,
    typer.Option(
        "--time-budget",
        help="Stop after the first epoch that ends past this many minutes.",
        rich_help_panel=_TRAINING,
    ),
]
_DataInit = Annotated[
    bool,
    typer.Option(
        "--data-init/--no-data-init",
        help="Start a real-valued model at the training data's marginals (Gaussian heads, MAF).",
        rich_help_panel=_TRAINING,
    ),
]
_Patience = Annotated[
    int,
    typer.Option(
        help="Early-stopping patience in epochs (0 disables; resume: a new one, which "
        "continues an early stop).",
        rich_help_panel=_TRAINING,
    ),
]
_OptionalPatience = Annotated[int | None, _Patience.__metadata__[0]]
_GradClip = Annotated[
    float | None,
    typer.Option(help="Clip the gradient norm to this value.", rich_help_panel=_TRAINING),
]
_Precision = Annotated[
    str, typer.Option(help="fp32, or bf16/fp16 autocast on CUDA.", rich_help_panel=_TRAINING)
]
_MaskEvery = Annotated[
    int, typer.Option(help="Steps between mask changes (0: never).", rich_help_panel=_TRAINING)
]
_EvalMasks = Annotated[
    int | None,
    typer.Option(help="Masks in the evaluation mixture (default: all).", rich_help_panel=_TRAINING),
]
_Resume = Annotated[
    Path | None, typer.Option(hidden=True, help="Replaced by `densitykit resume RUN`.")
]


def _data_options(
    data: str, named: dict[str, tuple[str, Any]], pairs: list[str], given: set[str]
) -> dict[str, Any]:
    """The data set's options from its named flags and ``--data-option``; conflicts refused."""
    options = _filter_options("data set", data, DATASETS.get(data), named, given)
    extra = _parse_pairs(pairs, "--data-option")
    flags = {key: flag for key, (flag, _) in named.items()}
    for key, value in extra.items():
        if key in options and flags[key].lstrip("-").replace("-", "_") in given:
            raise ValueError(
                f"--data-option {key}={value!r} conflicts with {flags[key]} {options[key]!r}; "
                "give it once"
            )
    options.update(extra)
    return options


def _head_options(
    head: str | None, named: dict[str, tuple[str, Any]], pairs: list[str], given: set[str]
) -> dict[str, Any]:
    if head is not None:
        options = _filter_options("head", head, HEADS.get(head), named, given)
    else:
        options = {key: value for key, (_, value) in named.items() if value is not None}
    for key, value in _parse_pairs(pairs, "--head-option").items():
        if key in options:
            raise ValueError(
                f"--head-option {key}={value!r} conflicts with a named option; give it once"
            )
        options[key] = value
    return options


@app.command()
@_guard
def fit(
    ctx: typer.Context,
    data: _DataName = runs.DataConfig.name,
    condition: _Condition = None,
    data_dir: _DataDir = None,
    binarize: _Binarize = None,
    grid_size: _GridSize = None,
    image: _Image = None,
    max_train: _MaxTrain = None,
    data_seed: _DataSeed = 0,
    columns: _Columns = None,
    data_option: _DataOption = [],  # noqa: B006 - typer needs a literal default
    family: _Family = "made",
    preset: _Preset = None,
    head: _Head = None,
    masks: _Masks = _MODEL.masks,
    num_masks: _NumMasks = None,
    hidden_sizes: _HiddenSizes = _HIDDEN_SIZES,
    activation: _Activation = _MODEL.activation,
    direct: _Direct = _MODEL.direct_connections,
    dropout: _Dropout = _MODEL.dropout,
    mask_input: _MaskInput = _MODEL.mask_input,
    layout: _Layout = _MODEL.layout,
    num_components: _NumComponents = None,
    one_hot: _OneHot = None,
    ordering: _Ordering = None,
    head_option: _HeadOption = [],  # noqa: B006
    mask_option: _MaskOption = [],  # noqa: B006
    num_transforms: _NumTransforms = None,
    family_option: _FamilyOption = [],  # noqa: B006
    epochs: _Epochs = _TRAIN.epochs,
    batch_size: _BatchSize = _TRAIN.batch_size,
    optimizer: _Optimizer = _TRAIN.optimizer,
    lr: _Lr = _TRAIN.lr,
    lr_schedule: _LrSchedule = _TRAIN.lr_schedule,
    weight_decay: _WeightDecay = _TRAIN.weight_decay,
    ema_decay: _EmaDecay = None,
    time_budget_minutes: _TimeBudget = None,
    data_init: _DataInit = _TRAIN.data_init,
    patience: _Patience = _TRAIN.patience or 0,
    grad_clip: _GradClip = None,
    precision: _Precision = _TRAIN.precision,
    mask_every: _MaskEvery = _TRAIN.mask_every,
    eval_masks: _EvalMasks = None,
    out: _OptionalOut = None,
    overwrite: _Overwrite = False,
    quiet: _Quiet = False,
    seed: _Seed = _TRAIN.seed,
    device: _Device = _TRAIN.device,
    plugin: _Plugins = [],  # noqa: B006
    threads: _Threads = None,
    resume: _Resume = None,
) -> None:
    """Train a model (a MADE, or another family) on a data set and write a run folder
    (model, metrics, pictures): by default runs/<data>-<time>."""
    if resume is not None:
        raise ValueError(
            f"--resume is now its own command: densitykit resume {resume} [--epochs N]"
        )
    # The parsed options, by parameter name, for the helpers that build the run's config,
    # and the names of those typed on the command line (not left at their defaults).
    options = dict(locals())
    given = _typed(ctx)
    # Under torchrun every process runs this command; only rank 0 shows and reports.
    launch = launch_environment()
    main = launch is None or launch[0] == 0
    import_plugins(plugin)
    data_config, data_option = _fit_data_config(options, given)
    config = runs.RunConfig(
        data=data_config,
        model=_fit_model_config(options, given),
        train=_fit_train_config(options),
        plugins=list(plugin),
        family=family,
    )
    # The histogram's presets (looked up by its head, as for --head histogram) hold
    # training settings only.
    if config.family in ("made", "histogram"):
        config = _with_preset(config, preset, data_option, given, quiet=quiet or not main)
    elif preset not in (None, "none"):
        raise ValueError(f"presets are MADE settings; --preset does not apply to --family {family}")
    _fit_and_report(ctx, config, out, overwrite=overwrite, quiet=quiet or not main, launch=launch)


def _fit_data_config(options: dict[str, Any], given: set[str]) -> tuple[runs.DataConfig, list[str]]:
    """The data set of `fit`, and its ``--data-option`` pairs (a data file's path added)."""
    data, data_option = options["data"], list(options["data_option"])
    if data not in DATASETS and (is_data_file(data) or Path(data).exists()):
        data_option = [*data_option, f"path={json.dumps(str(Path(data).resolve()))}"]
        data = "file"
    data_dir, image = options["data_dir"], options["image"]
    named = {
        "data_dir": ("--data-dir", str(data_dir) if data_dir else None),
        "binarize": ("--binarize", options["binarize"]),
        "grid_size": ("--grid-size", options["grid_size"]),
        "path": ("--image", str(image) if image else None),
        "max_train": ("--max-train", options["max_train"]),
        "seed": ("--data-seed", options["data_seed"]),
        "columns": ("--columns", options["columns"]),
    }
    data_options = _data_options(data, named, data_option, given)
    return runs.DataConfig(data, data_options, options["condition"]), data_option


def _fit_model_config(options: dict[str, Any], given: set[str]) -> Any:
    """The model config of `fit`: a MADE's, or another family's from the options that apply."""
    head = options["head"]
    named_head = {
        "num_components": ("--num-components", options["num_components"]),
        "one_hot": ("--one-hot", options["one_hot"]),
    }
    head_options = _head_options(head, named_head, options["head_option"], given)
    REGISTRIES["mask builder"].get(options["masks"])
    mask_options = _parse_pairs(options["mask_option"], "--mask-option")
    ordering = options["ordering"]
    if ordering is not None:
        if "ordering" in mask_options:
            raise ValueError("--mask-option ordering=... conflicts with --ordering; give it once")
        try:
            mask_options["ordering"] = [int(v) for v in ordering.split(",")]
        except ValueError:
            raise ValueError(
                f"--ordering must be comma-separated integers, got {ordering!r}"
            ) from None
    FAMILIES.get(options["family"])  # an unknown family lists the registered ones
    common = {
        "head": head,
        "hidden_sizes": _parse_sizes(options["hidden_sizes"]),
        "head_options": head_options,
        "mask_options": mask_options,
        "num_masks": options["num_masks"],
        "seed": options["seed"],
    }
    if options["family"] != "made":
        other = {
            **common,
            "direct_connections": options["direct"],
            "activation": options["activation"],
            "num_transforms": options["num_transforms"],
            "num_components": options["num_components"],
            "family_option": options["family_option"],
        }
        return _other_family_config(options["family"], other, given)
    for flag in ("num_transforms", "family_option"):
        if flag in given:
            raise ValueError(
                f"--{flag.replace('_', '-')} sets another family's config; it does not apply "
                "to --family made"
            )
    return ModelConfig(
        **common,
        masks=options["masks"],
        activation=options["activation"],
        direct_connections=options["direct"],
        dropout=options["dropout"],
        mask_input=options["mask_input"],
        layout=options["layout"],
    )


def _fit_train_config(options: dict[str, Any]) -> TrainConfig:
    """The training settings of `fit` (a patience of 0 disables early stopping)."""
    same = (
        "epochs", "batch_size", "lr", "weight_decay", "seed", "device", "precision",
        "mask_every", "eval_masks", "grad_clip", "optimizer", "lr_schedule", "ema_decay",
        "time_budget_minutes", "data_init",
    )  # fmt: skip
    return TrainConfig(
        **{name: options[name] for name in same}, patience=options["patience"] or None
    )


def _fit_and_report(
    ctx: typer.Context,
    config: runs.RunConfig,
    out: Path | None,
    *,
    overwrite: bool,
    quiet: bool,
    launch: tuple[int, int] | None,
) -> None:
    """Train into ``out`` (default runs/<data>-<time>) with a progress bar, then report."""
    data = config.data.name
    path = config.data.options.get("path")
    name = Path(str(path)).stem if data == "file" and path is not None else data
    out = out or Path("runs") / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    message = f"training on {data} into {out}/"
    if launch is not None:
        message += f" with {launch[1]} processes"
    progress = _progress(quiet)
    callbacks = [] if quiet else [_ProgressCallback(progress, config.train.epochs, message)]
    try:
        with progress, session(config.train.device):
            metrics = runs.fit_run(config, out, overwrite=overwrite, callbacks=callbacks)
    except KeyboardInterrupt:
        _interrupted(out)
    if launch is None or launch[0] == 0:
        _report(metrics, out)
        # Narrow layers lose dependencies: worth a line when the user chose the sizes
        # (a preset's are deliberate; the Python API warns either way).
        for note in _caught(ctx, ConnectivityWarning)[:1] if "hidden_sizes" in _typed(ctx) else []:
            _say(f"note: {note}")


# Options of `fit` that set MADE-only settings: refused for another family when given.
_MADE_ONLY = (
    "masks", "dropout", "mask_input", "layout", "mask_every", "ordering", "eval_masks",
)  # fmt: skip


def _other_family_config(family: str, options: dict[str, Any], given: set[str]) -> Any:
    """The config of a family other than the MADE from the options of `fit` that apply.

    The orderless family takes the head and its options, the hidden sizes and direct
    connections; its training orderings come from ``--mask-option orderings=...`` (and
    their options), its query mixture from ``--num-masks`` orderings seeded by
    ``--seed``. Any family takes those of these fields its config has, and only those
    the user gave (its config's defaults hold for the others); an option given for a
    field it lacks is refused, and so are the MADE's own options.
    """
    made_only = [name for name in _MADE_ONLY if name in given]
    if made_only:
        flags = ", ".join("--" + name.replace("_", "-") for name in made_only)
        raise ValueError(f"{flags} set MADE settings; they do not apply to --family {family}")
    config_class = FAMILIES.get(family).config_class
    declared = dataclasses.fields(config_class) if dataclasses.is_dataclass(config_class) else ()
    fields = {item.name for item in declared}  # not class variables (the histogram's head)
    ordering_options = dict(options["mask_options"])
    # What the user gave, and nothing else: the family's own defaults hold otherwise
    # (the orderless model's 500 hidden units with direct connections, say, not the
    # MADE's 256,256 without).
    values = {"head": options["head"], "head_options": options["head_options"]}
    if "num_components" in fields:  # a family's own field (the MAF's MoG base), not a head's
        values.pop("head_options")
        if "num_components" in given:
            values["num_components"] = options["num_components"]
    if "activation" in given:
        values["activation"] = options["activation"]
    if "num_transforms" in given:
        values["num_transforms"] = options["num_transforms"]
    if "hidden_sizes" in given:
        values["hidden_sizes"] = options["hidden_sizes"]
    if "direct" in given:
        values["direct_connections"] = options["direct_connections"]
    if "mask_option" in given:
        values["orderings"] = ordering_options.pop("orderings", "uniform")
        values["ordering_options"] = ordering_options
    if "num_masks" in given:
        values["num_orderings"] = options["num_masks"]
    if "seed" in given:
        values["ordering_seed"] = values["seed"] = options["seed"]
    for param, field in _FAMILY_FIELDS.items():
        if param in given and field not in fields:
            flag = "--" + param.replace("_", "-")
            raise ValueError(f"{flag} does not apply to --family {family}")
    if "num_components" in given and not fields & {"num_components", "head_options"}:
        raise ValueError(f"--num-components does not apply to --family {family}")
    values = {key: value for key, value in values.items() if key in fields}
    for key, value in _parse_pairs(options["family_option"], "--family-option").items():
        if key not in fields or key in ("dim", "num_labels", "context_size"):
            settable = sorted(fields - {"dim", "num_labels", "context_size"})
            raise ValueError(
                f"--family-option {key}: the {family} family's config has no such setting; "
                f"it takes {', '.join(settable)}"
            )
        if key in values:
            raise ValueError(f"--family-option {key} repeats a named option; give it once")
        values[key] = value
    return config_class(**values)


# CLI parameter -> the field of another family's config it sets.
_FAMILY_FIELDS = {
    "head": "head",
    "hidden_sizes": "hidden_sizes",
    "direct": "direct_connections",
    "activation": "activation",
    "num_transforms": "num_transforms",
    "one_hot": "head_options",
    "head_option": "head_options",
    "mask_option": "orderings",
    "num_masks": "num_orderings",
}


# CLI parameter -> the config field it sets, for the settings a preset may fill.
_FIELDS = {
    "hidden_sizes": "hidden_sizes",
    "masks": "masks",
    "num_masks": "num_masks",
    "activation": "activation",
    "direct": "direct_connections",
    "dropout": "dropout",
    "mask_input": "mask_input",
    "layout": "layout",
    "epochs": "epochs",
    "batch_size": "batch_size",
    "lr": "lr",
    "weight_decay": "weight_decay",
    "patience": "patience",
    "grad_clip": "grad_clip",
    "seed": "seed",
    "device": "device",
    "precision": "precision",
    "mask_every": "mask_every",
    "eval_masks": "eval_masks",
    "optimizer": "optimizer",
    "lr_schedule": "lr_schedule",
    "ema_decay": "ema_decay",
    "time_budget_minutes": "time_budget_minutes",
    "data_init": "data_init",
}
_NAMED_DATA_OPTIONS = {
    "data_dir": "data_dir",
    "binarize": "binarize",
    "grid_size": "grid_size",
    "image": "path",
    "max_train": "max_train",
    "data_seed": "seed",
    "columns": "columns",
}


def _preset_key(config: runs.RunConfig) -> tuple[str, str | None]:
    """The (data set, head) a default preset is looked up by; a file's by its kind."""
    if config.data.name != "file":
        return config.data.name, config.model.head
    dataset = load_dataset("file", **config.data.options)
    return f"file:{dataset.kind}", config.model.head or runs.default_head(dataset)


def _with_preset(
    config: runs.RunConfig,
    name: str | None,
    data_option: list[str],
    typed: set[str],
    *,
    quiet: bool,
) -> runs.RunConfig:
    """Fill the settings the user did not give from the preset (named, or the default)."""
    if name is not None and name.lower() == "none":
        return config
    if name is None:
        name = presets.default_preset(*_preset_key(config))
        if name is None:
            return config
    settings = presets.get_preset(name)
    given = {field for param, field in _FIELDS.items() if param in typed}
    given_data = {key for key, _ in (p.partition("=")[::2] for p in data_option)}
    given_data |= {key for param, key in _NAMED_DATA_OPTIONS.items() if param in typed}
    updated = presets.apply_preset(config, settings, given=given, given_data_options=given_data)
    if not quiet:
        used = {key: value for key, value in settings.items() if key not in given}
        _say(
            f"preset {name}: {presets.describe_settings(used) or 'nothing to set'} "
            "(options given on the command line win)"
        )
    return updated


@app.command()
@_guard
def resume(
    run_dir: _RunDir,
    epochs: _OptionalEpochs = None,
    lr: _OptionalLr = None,
    patience: _OptionalPatience = None,
    quiet: _Quiet = False,
    plugin: _Plugins = [],  # noqa: B006
    threads: _Threads = None,
) -> None:
    """Continue a run from its last completed epoch, exactly as if it had not stopped.

    Only what can change for a run already under way is offered: more epochs, a new
    learning rate, a new patience. Everything else is the run's own (its config.json).
    """
    launch = launch_environment()
    main = launch is None or launch[0] == 0
    quiet = quiet or not main
    progress = _progress(quiet)
    import_plugins(plugin)  # first: a plug-in family's config is read by its class
    config = runs.read_run_config(run_dir)
    total = epochs if epochs is not None else config.train.epochs
    try:
        with progress, session(config.train.device):
            metrics = runs.resume_run(
                run_dir,
                epochs=epochs,
                lr=lr,
                patience=patience,
                plugins=plugin,
                callbacks=[] if quiet else [_ProgressCallback(progress, total)],
            )
    except KeyboardInterrupt:
        _interrupted(run_dir)
    if main:
        _report(metrics, run_dir)


def _typed(ctx: typer.Context) -> set[str]:
    """The parameters of a command typed on the command line (not left at their defaults),
    as click's context records them."""
    return {
        name
        for name in ctx.params
        if (source := ctx.get_parameter_source(name)) is not None and source.name == "COMMANDLINE"
    }


@app.command("eval")
@_guard
def eval_command(
    run_dir: _RunDir,
    split: _EvalSplit = "test",
    observed: _OptionalObserved = None,
    num_masks: _NumMasks = None,
    draw_orderings: _DrawOrderings = None,
    ordering_seed: _OrderingSeed = 0,
    as_json: _Json = False,
    device: _Device = "cpu",
    plugin: _Plugins = [],  # noqa: B006
    threads: _Threads = None,
) -> None:
    """Evaluate a run's model: NLL in nats per example, per dimension and bits per dimension."""
    if observed is not None:
        _eval_observed(
            run_dir,
            observed,
            split=split,
            device=device,
            plugins=plugin,
            num_masks=num_masks,
            as_json=as_json,
            draw_orderings=draw_orderings,
            ordering_seed=ordering_seed,
        )
        return
    result = runs.evaluate_run(
        run_dir,
        num_masks=num_masks,
        split=split,
        device=device,
        plugins=plugin,
        draw_orderings=draw_orderings,
        ordering_seed=ordering_seed,
    )
    if as_json:
        typer.echo(json.dumps(result))
        return
    given = " given the label, -log p(x | label)," if result["condition"] else ""
    if "columns" in result:
        _say_columns(result)
    units = " in the data's units (log-density)" if "columns" in result else ""
    _say(
        f"{split} NLL{given}{units} {result['nll_nats']:.4f} nats ({result['nats_per_dim']:.5f} "
        f"nats/dim, {result['bits_per_dim']:.5f} bits/dim) with {result['num_masks']} mask(s)"
        + _drawn(result["drawn_orderings_seed"])
    )


def _say_columns(result: dict[str, Any]) -> None:
    """A table run's columns, their kinds and which have a spike head."""
    kinds = ", ".join(f"{n}:{k}" for n, k in zip(result["columns"], result["column_kinds"]))
    _say(f"columns: {kinds}")
    spikes = result.get("spike_columns") or []
    _say(
        f"spike head (a probability at the spike, a density elsewhere): {', '.join(spikes)}"
        if spikes
        else "no spike columns"
    )


def _drawn(seed: int | None) -> str:
    return "" if seed is None else f" drawn at inference (seed {seed})"


def _image_shape(run: runs.Run) -> tuple[int, ...]:
    shape = tuple(run.dataset.shape)
    size = 1
    for side in shape:
        size *= side
    if size != run.dataset.dim:
        raise ValueError(
            f"observed patterns are drawn on images; {run.dataset.name!r} has {run.dataset.dim} "
            f"variables of shape {shape}"
        )
    return shape


def _eval_observed(
    run_dir: Path,
    observed: str,
    *,
    split: str,
    device: str,
    plugins: list[str],
    num_masks: int | None = None,
    as_json: bool = False,
    draw_orderings: int | None = None,
    ordering_seed: int = 0,
) -> None:
    """The conditional NLL of the missing part of a split, given a named observed pattern."""
    run = runs.load_run(run_dir, device=device, plugins=plugins)
    if run.dataset.table is not None:
        _eval_observed_columns(run, observed, split, num_masks, draw_orderings, ordering_seed,
                               as_json)  # fmt: skip
        return
    runs.require_capability(run.model, "conditional_log_prob", "eval --observed")
    connectivities = runs.query_orderings(run.model, num_masks, draw_orderings, ordering_seed)
    count = run.model.num_masks if connectivities is None else len(connectivities)
    splits = run.dataset.splits()
    if split not in splits:
        raise ValueError(f"split must be one of {sorted(splits)}, got {split!r}")
    data = splits[split]
    labels = runs.split_context(run.model, run.dataset, split)
    pattern = inpainting.observed_pattern_from_spec(
        observed, _image_shape(run), data.shape[0], torch.Generator().manual_seed(0)
    )
    nll = inpainting.conditional_nll(
        run.model, data, pattern, context=labels, connectivities=connectivities
    )
    missing = (~pattern).sum(1).double()
    result = {
        "split": split,
        "observed": observed,
        "conditional_nll_nats": float(nll.mean()),
        "nats_per_missing_variable": float(nll.sum() / missing.sum()),
        "missing_variables_mean": float(missing.mean()),
        "num_examples": data.shape[0],
        "num_masks": count,
        "drawn_orderings_seed": None if draw_orderings is None else ordering_seed,
        "condition": labels is not None,
    }
    if as_json:
        typer.echo(json.dumps(result))
        return
    given = " given the label" if labels is not None else ""
    _say(
        f"{split} conditional NLL of the missing part{given} ({observed}, "
        f"{result['missing_variables_mean']:.0f} variables missing on average) "
        f"{result['conditional_nll_nats']:.4f} nats, "
        f"{result['nats_per_missing_variable']:.5f} nats per missing variable, "
        f"with {result['num_masks']} ordering(s)" + _drawn(result["drawn_orderings_seed"])
    )


def _eval_observed_columns(
    run: runs.Run,
    observed: str,
    split: str,
    num_masks: int | None,
    draw_orderings: int | None,
    ordering_seed: int,
    as_json: bool,
) -> None:
    """A table run's conditional NLL of the columns not named in ``observed``."""
    table = run.dataset.table
    runs.require_capability(
        run.model, "any_subset", "eval --observed COLUMNS (train with --masks any-order)"
    )
    connectivities = runs.query_orderings(run.model, num_masks, draw_orderings, ordering_seed)
    splits = run.dataset.splits()
    if split not in splits:
        raise ValueError(f"split must be one of {sorted(splits)}, got {split!r}")
    pattern = imputation.observed_columns(observed, table)
    nll = imputation.conditional_nll(
        run.model, table, splits[split], pattern, connectivities=connectivities
    )
    missing = [name for name, seen in zip(table.names, pattern.tolist()) if not seen]
    result = {
        **runs.describe_table(run.dataset),
        "split": split,
        "observed": [name for name in table.names if name not in missing],
        "missing": missing,
        "conditional_nll_nats": float(nll.mean()),
        "num_examples": int(nll.shape[0]),
        "drawn_orderings_seed": None if draw_orderings is None else ordering_seed,
    }
    if as_json:
        typer.echo(json.dumps(result))
        return
    _say_columns(result)
    _say(
        f"{split} conditional NLL of {', '.join(missing)} given {', '.join(result['observed'])} "
        f"in the data's units (log-density) {result['conditional_nll_nats']:.4f} nats"
        + _drawn(result["drawn_orderings_seed"])
    )


_Draws = Annotated[
    int,
    typer.Option(
        help="Completed copies of the table (multiple imputation); more than 1 adds a "
        "first column 'draw' (0..N-1) to a .csv, or a first axis to a .npy.",
        rich_help_panel=_OUTPUT,
    ),
]


@app.command()
@_guard
def impute(
    run_dir: _RunDir,
    data: Annotated[
        Path, typer.Argument(help="A table (.csv, .tsv, .npy, .npz) with the run's columns.")
    ],
    out: _Out,
    draws: _Draws = 1,
    draw_orderings: _DrawOrderings = None,
    ordering_seed: _OrderingSeed = 0,
    overwrite: _Overwrite = False,
    as_json: _Json = False,
    seed: _Seed = 0,
    device: _Device = "cpu",
    plugin: _Plugins = [],  # noqa: B006
    threads: _Threads = None,
) -> None:
    """Fill a table's empty cells (blank CSV fields, NaN) with draws from the model's
    p(missing | observed), in the data's units; observed cells are kept as they are.

    Needs a run whose model has learnt every conditional: --family orderless, or a MADE
    trained with --masks any-order.
    """
    done = imputation.impute_file(
        run_dir,
        data,
        out,
        draws=draws,
        seed=seed,
        device=device,
        plugins=plugin,
        overwrite=overwrite,
        draw_orderings=draw_orderings,
        ordering_seed=ordering_seed,
    )
    if as_json:
        typer.echo(json.dumps(done))
        return
    _say(
        f"filled {done['missing_cells']} empty cells in {done['rows_with_missing']} of "
        f"{done['rows']} rows, {done['draws']} draw(s), into {done['out']}"
    )


@app.command()
@_guard
def inpaint(
    run_dir: _RunDir,
    out: _Out,
    observed: _Observed = "top-half",
    num_samples: _NumSamples = 4,
    num_images: _NumImages = 8,
    draw_orderings: _DrawOrderings = None,
    ordering_seed: _OrderingSeed = 0,
    overwrite: _Overwrite = False,
    as_json: _Json = False,
    seed: _Seed = 0,
    device: _Device = "cpu",
    plugin: _Plugins = [],  # noqa: B006
    threads: _Threads = None,
) -> None:
    """Complete the missing part of test images: per image, the observed part (missing in
    grey), the completions and the original.

    A .npy output holds the numbers: (images, N + 2, D) integers, per image the observed
    part (-1 where missing), the N completions and the original. With --json, the pattern,
    each image's missing variables and the conditional NLL of its missing part (nats).
    """
    for name, value in (("num_samples", num_samples), ("num_images", num_images)):
        if value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    check_seed(seed)
    if num_images * num_samples > MAX_COMPLETIONS:
        raise ResourceError(
            f"inpaint draws at most {MAX_COMPLETIONS:,} completions at once, got {num_images:,} "
            f"images x {num_samples:,} = {num_images * num_samples:,}; ask for fewer"
        )
    check_output_file(out, [".png", ".npy"], overwrite=overwrite)
    run = runs.load_run(run_dir, device=device, plugins=plugin)
    runs.require_capability(run.model, "complete", "inpaint")
    connectivities = runs.query_orderings(run.model, None, draw_orderings, ordering_seed)
    shape = _image_shape(run)
    images = run.dataset.splits()["test"][:num_images].long()
    run.model.check_sample_size(images.shape[0] * num_samples)  # before repeating the images
    labels = runs.split_context(run.model, run.dataset, "test")
    labels = None if labels is None else labels[: images.shape[0]]
    pattern = inpainting.observed_pattern_from_spec(
        observed, shape, images.shape[0], torch.Generator().manual_seed(seed)
    )
    completed, rows = inpainting.complete_images(
        run.model,
        images,
        pattern,
        num_samples,
        generator=torch.Generator().manual_seed(seed),
        context=labels,
        connectivities=connectivities,
    )
    path = _write_completions(rows, out, shape, run.dataset.num_values, num_samples)
    if not as_json:
        _say(f"wrote {completed.shape[0]} completions of {images.shape[0]} images to {path}")
        return
    nll = inpainting.conditional_nll(
        run.model, images, pattern, context=labels, connectivities=connectivities
    )
    result = {
        "out": str(path),
        "observed": observed,
        "num_images": images.shape[0],
        "num_samples": num_samples,
        "num_masks": run.model.num_masks if connectivities is None else len(connectivities),
        "drawn_orderings_seed": None if draw_orderings is None else ordering_seed,
        "missing_variables": (~pattern).sum(1).tolist(),
        "conditional_nll_nats": nll.tolist(),
    }
    typer.echo(json.dumps(result))


def _write_completions(
    rows: torch.Tensor, out: Path, shape: tuple[int, ...], num_values: int, num_samples: int
) -> Path:
    """Write inpaint's rows: a picture, or a .npy array (-1 where missing)."""
    if out.suffix != ".npy":
        return plots.sample_grid(rows, shape, out, num_values=num_values, columns=num_samples + 2)
    array = rows.nan_to_num(-1.0).long().reshape(-1, num_samples + 2, rows.shape[1])
    atomic_write(out, lambda file: np.save(file, array.numpy()))
    return out


@app.command()
@_guard
def sample(
    run_dir: _RunDir,
    out: _Out,
    num_samples: _NumSamples = 64,
    label: _Label = None,
    overwrite: _Overwrite = False,
    seed: _Seed = 0,
    device: _Device = "cpu",
    plugin: _Plugins = [],  # noqa: B006
    threads: _Threads = None,
) -> None:
    """Draw samples from a run's model into a picture or an array (.npy: in chunks)."""
    path = runs.sample_run(
        run_dir,
        num_samples,
        out,
        seed=seed,
        device=device,
        overwrite=overwrite,
        plugins=plugin,
        label=label,
    )
    if label is not None:
        _say(f"wrote {num_samples} samples of label {label} to {path}")
    elif runs.read_run_config(run_dir).data.condition is not None:
        _say(f"wrote {num_samples} samples of each label, a row per label, to {path}")
    else:
        _say(f"wrote {num_samples} samples to {path}")


@app.command()
@_guard
def score(
    run_dir: _RunDir,
    data: _DataArgument,
    split: _Split = None,
    data_dir: _DataDir = None,
    binarize: _Binarize = None,
    data_option: _DataOption = [],  # noqa: B006
    num_masks: _NumMasks = None,
    batch_size: _BatchSize = 1000,
    out: _OptionalOut = None,
    overwrite: _Overwrite = False,
    quiet: _Quiet = False,
    device: _Device = "cpu",
    plugin: _Plugins = [],  # noqa: B006
    threads: _Threads = None,
) -> None:
    """Score every example of a data file or data set under a run's model (log-likelihood).

    Prints a summary line (mean NLL in nats, nats/dim, bits/dim); with --out, writes one
    row per example: index, log_prob_nats, nll_nats_per_dim, nll_bits_per_dim (.csv), or
    the log-likelihoods in nats (.npy).
    """
    if out is not None:  # checked before the scoring, which may take long
        check_output_file(out, [".csv", ".npy"], overwrite=overwrite, name="--out")
    options = _parse_pairs(data_option, "--data-option")
    for key, value in (("data_dir", data_dir), ("binarize", binarize)):
        if value is not None:
            options[key] = str(value)
    progress = Progress(
        TextColumn("scoring", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=quiet or not console.is_terminal,
    )
    with progress:
        task = progress.add_task("scoring", total=None)
        scores = scoring.score_data(
            run_dir,
            data,
            split=split,
            data_options=options,
            batch_size=batch_size,
            num_masks=num_masks,
            device=device,
            plugins=plugin,
            on_batch=lambda done, total: progress.update(task, completed=done, total=total),
        )
    _say(f"scored {scores.summary()}")
    if out is not None:
        _say(f"wrote {scores.save(out, overwrite=overwrite)}")


def _listing(registry: Any, plugin: list[str]) -> None:
    import_plugins(plugin)
    width = max((len(name) for name in registry.names()), default=0)
    for entry in registry.entries():
        _echo(f"{entry.name:<{width}}  {entry.description}")


@app.command()
@_guard
def datasets(plugin: _Plugins = []) -> None:  # noqa: B006
    """List the data sets, each with its recommended settings by head (its presets)."""
    import_plugins(plugin)
    width = max((len(name) for name in DATASETS.names()), default=0)
    defaults: dict[str, list[str]] = {}
    for (dataset, head), name in sorted(
        presets.DEFAULTS.items(), key=lambda item: (item[0][0], item[0][1] or "")
    ):
        settings = presets.describe_settings(presets.get_preset(name))
        defaults.setdefault(dataset, []).append(
            f"{' ' * (width + 2)}{head or 'default head'}: preset {name} ({settings})"
        )
    for entry in DATASETS.entries():
        _echo(f"{entry.name:<{width}}  {entry.description}")
        for line in defaults.get(entry.name, []) or (
            [] if entry.name == "file" else [f"{' ' * (width + 2)}library defaults"]
        ):
            _echo(line)
        if entry.name == "file":
            for key in sorted(k for k in defaults if k.startswith("file:")):
                for line in defaults[key]:
                    _echo(f"{line[: width + 2]}{key[5:]} data, {line[width + 2 :]}")


@app.command()
@_guard
def heads(plugin: _Plugins = []) -> None:  # noqa: B006
    """List the output heads."""
    _listing(HEADS, plugin)


@app.command("families")
@_guard
def families_command(plugin: _Plugins = []) -> None:  # noqa: B006
    """List the model families (`fit --family`)."""
    _listing(FAMILIES, plugin)


@app.command("masks")
@_guard
def masks_command(plugin: _Plugins = []) -> None:  # noqa: B006
    """List the mask builders."""
    _listing(REGISTRIES["mask builder"], plugin)


def main() -> None:
    """Entry point of the ``densitykit`` script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
