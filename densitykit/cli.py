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
from PIL import Image, UnidentifiedImageError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text
from typer.core import TyperGroup

import densitykit
from densitykit import plots, presets, queries, runs, scoring
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
_state: dict[str, Any] = {"debug": False}


def _version(value: bool) -> None:
    if value:
        typer.echo(f"densitykit {densitykit.__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")] = False,
) -> None:
    """densitykit: MADE density estimation from the command line."""
    _state["debug"] = debug
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


def _fail(error: BaseException) -> None:
    if _state["debug"]:
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


def _caught(category: type[Warning]) -> list[str]:
    """The distinct messages of the ``category`` warnings the running command raised."""
    caught = _state.get("warnings", [])
    return list(dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, category)))


def _guard(function: Any) -> Any:
    """Turn library and input errors into one-line messages."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        # Warnings are the library's word to a Python caller; on the command line, a
        # command reports (once, in its report) the few a user can act on, see `_caught`,
        # and the others (a library's internals, a run already trained) are dropped.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")
            _state["warnings"] = caught
            try:
                return function(*args, **kwargs)
            except typer.Exit:
                raise
            except (DensitykitError, ValueError, TypeError, OSError, KeyError) as error:
                _fail(error)
            finally:
                _state["warnings"] = []

    wrapper.__signature__ = inspect.signature(function)  # type: ignore[attr-defined]
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


def _filter_options(kind: str, name: str, factory: Any, given: dict[str, tuple[str, Any]]) -> dict:
    """Keep the options the factory takes; refuse explicit ones it does not."""
    accepted = _accepted(factory)
    options = {}
    for key, (flag, value) in given.items():
        if value is None:
            continue
        if key not in accepted:
            if not _given(flag.lstrip("-").replace("-", "_")):
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
_PLUGIN_HELP = "Module or .py file to import first (user heads/masks/data); repeatable."


def _use_threads(threads: int | None) -> int | None:
    """Have torch compute with ``threads`` intra-op threads (``None``: torch's default)."""
    if threads is not None:
        try:
            torch.set_num_threads(check_positive_int(threads, "--threads"))
        except ValueError as error:
            _fail(error)
    return threads


# The option of every command that computes, declared once; it acts as it is parsed.
_Threads = Annotated[
    int | None,
    typer.Option(
        callback=_use_threads,
        help="Torch threads to compute with, a positive integer (default: torch's own choice).",
    ),
]


def _data_options(data: str, named: dict[str, tuple[str, Any]], pairs: list[str]) -> dict[str, Any]:
    """The data set's options from its named flags and ``--data-option``; conflicts refused."""
    options = _filter_options("data set", data, DATASETS.get(data), named)
    extra = _parse_pairs(pairs, "--data-option")
    flags = {key: flag for key, (flag, _) in named.items()}
    for key, value in extra.items():
        if key in options and _given(flags[key].lstrip("-").replace("-", "_")):
            raise ValueError(
                f"--data-option {key}={value!r} conflicts with {flags[key]} {options[key]!r}; "
                "give it once"
            )
    options.update(extra)
    return options


def _head_options(
    head: str | None, named: dict[str, tuple[str, Any]], pairs: list[str]
) -> dict[str, Any]:
    if head is not None:
        options = _filter_options("head", head, HEADS.get(head), named)
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
    data: Annotated[
        str,
        typer.Option(
            help="Data set name (see `densitykit datasets`), or a data file: .npy, .npz, "
            ".csv, .tsv or a folder of PNG images."
        ),
    ] = runs.DataConfig.name,
    family: Annotated[
        str,
        typer.Option(
            help="Model family (see `densitykit families`): made, orderless (one "
            "network for every conditional), or histogram (independent variables; "
            "also --head histogram).",
        ),
    ] = "made",
    preset: Annotated[
        str | None,
        typer.Option(
            help="Recommended settings by name (default: the data set's for its head; "
            "'none' for the library defaults). Options given here win."
        ),
    ] = None,
    head: Annotated[
        str | None,
        typer.Option(help="Head name (see `densitykit heads`); default suits the data."),
    ] = None,
    condition: Annotated[
        str | None,
        typer.Option(
            help="Train a conditional model: 'label' for p(x | label), with the data set's "
            "labels (mnist, fashion-mnist, binarized-mnist, shapes)."
        ),
    ] = None,
    masks: Annotated[
        str, typer.Option(help="Mask builder (see `densitykit masks`).")
    ] = _MODEL.masks,
    num_masks: Annotated[
        int | None, typer.Option(help="Number of masks (orderings/connectivities).")
    ] = None,
    hidden_sizes: Annotated[
        str, typer.Option(help="Hidden layer widths, comma-separated (empty for none).")
    ] = ",".join(map(str, DEFAULT_HIDDEN_SIZES)),
    epochs: Annotated[int, typer.Option(help="Maximum epochs.")] = _TRAIN.epochs,
    batch_size: Annotated[
        int, typer.Option(help="Examples per optimizer step.")
    ] = _TRAIN.batch_size,
    optimizer: Annotated[
        str, typer.Option(help=f"Optimizer: {', '.join(OPTIMIZERS)}.")
    ] = _TRAIN.optimizer,
    lr: Annotated[float, typer.Option(help="Learning rate (the starting one).")] = _TRAIN.lr,
    lr_schedule: Annotated[
        str,
        typer.Option(help="Learning-rate schedule: constant, or cosine (to 0 over --epochs)."),
    ] = _TRAIN.lr_schedule,
    weight_decay: Annotated[
        float, typer.Option(help="Weight decay (L2; decoupled for adamw).")
    ] = _TRAIN.weight_decay,
    ema_decay: Annotated[
        float | None,
        typer.Option(
            help="Weight averaging (EMA) decay, e.g. 0.999: evaluate and save the average."
        ),
    ] = None,
    time_budget_minutes: Annotated[
        float | None,
        typer.Option(
            "--time-budget", help="Stop after the first epoch that ends past this many minutes."
        ),
    ] = None,
    patience: Annotated[
        int, typer.Option(help="Early-stopping patience in epochs (0 disables).")
    ] = _TRAIN.patience or 0,
    grad_clip: Annotated[
        float | None, typer.Option(help="Clip the gradient norm to this value.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of weights, masks and shuffling.")] = _TRAIN.seed,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = _TRAIN.device,
    precision: Annotated[
        str, typer.Option(help="fp32, or bf16/fp16 autocast on CUDA.")
    ] = _TRAIN.precision,
    activation: Annotated[str, typer.Option(help="Hidden activation.")] = _MODEL.activation,
    direct: Annotated[
        bool, typer.Option(help="Direct input-to-output connections.")
    ] = _MODEL.direct_connections,
    dropout: Annotated[
        float, typer.Option(help="Dropout probability of the hidden units in training.")
    ] = _MODEL.dropout,
    mask_input: Annotated[
        bool,
        typer.Option(
            help="Tell the first hidden layer and the outputs which variables they see "
            "(the mask as an input; for --masks any-order)."
        ),
    ] = _MODEL.mask_input,
    layout: Annotated[
        str,
        typer.Option(
            help="How the masked weights are stored: auto, dense, or packed (only the "
            "weights a single natural-order mask can use)."
        ),
    ] = _MODEL.layout,
    mask_every: Annotated[
        int, typer.Option(help="Steps between mask changes (0: never).")
    ] = _TRAIN.mask_every,
    eval_masks: Annotated[
        int | None, typer.Option(help="Masks in the evaluation mixture (default: all).")
    ] = None,
    num_components: Annotated[
        int | None, typer.Option(help="Mixture components (logistic-mixture head).")
    ] = None,
    one_hot: Annotated[
        bool | None,
        typer.Option("--one-hot/--no-one-hot", help="One-hot inputs (if the head allows)."),
    ] = None,
    ordering: Annotated[
        str | None, typer.Option(help="Explicit ordering for --masks ordering, e.g. 2,0,1.")
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Folder with the data files (MNIST IDX files).")
    ] = None,
    binarize: Annotated[
        str | None, typer.Option(help="MNIST: threshold, stochastic or none.")
    ] = None,
    grid_size: Annotated[int | None, typer.Option(help="2-D data: grid side K.")] = None,
    image: Annotated[Path | None, typer.Option(help="2d-image: the picture file.")] = None,
    max_train: Annotated[
        int | None, typer.Option(help="Keep only this many training examples.")
    ] = None,
    data_seed: Annotated[int, typer.Option(help="Seed of the data set's draws and splits.")] = 0,
    head_option: Annotated[
        list[str], typer.Option(help="Extra head option key=value (repeatable).")
    ] = [],  # noqa: B006 - typer needs a literal default
    data_option: Annotated[
        list[str], typer.Option(help="Extra data set option key=value (repeatable).")
    ] = [],  # noqa: B006
    mask_option: Annotated[
        list[str],
        typer.Option(
            help="Extra mask builder option key=value (repeatable), e.g. spread=even "
            "or orderings=regions (or scans)."
        ),
    ] = [],  # noqa: B006
    plugin: Annotated[list[str], typer.Option(help=_PLUGIN_HELP)] = [],  # noqa: B006
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default: runs/<data>-<time>).")
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(help="Replace an existing run folder (only a densitykit run folder)."),
    ] = False,
    resume: Annotated[
        Path | None, typer.Option(hidden=True, help="Replaced by `densitykit resume RUN`.")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar or per-epoch lines.")] = False,
    threads: _Threads = None,
) -> None:
    """Train a model (a MADE, or another family) on a data set and write a run folder
    (model, metrics, pictures)."""
    _state["context"] = ctx
    if resume is not None:
        raise ValueError(
            f"--resume is now its own command: densitykit resume {resume} [--epochs N]"
        )
    # Under torchrun every process runs this command; only rank 0 shows and reports.
    launch = launch_environment()
    main = launch is None or launch[0] == 0
    quiet = quiet or not main
    progress = _progress(quiet)
    import_plugins(plugin)
    if data not in DATASETS and (is_data_file(data) or Path(data).exists()):
        data_option = [*data_option, f"path={json.dumps(str(Path(data).resolve()))}"]
        data = "file"
    data_options = _data_options(
        data,
        {
            "data_dir": ("--data-dir", str(data_dir) if data_dir else None),
            "binarize": ("--binarize", binarize),
            "grid_size": ("--grid-size", grid_size),
            "path": ("--image", str(image) if image else None),
            "max_train": ("--max-train", max_train),
            "seed": ("--data-seed", data_seed),
        },
        data_option,
    )
    head_options = _head_options(
        head,
        {
            "num_components": ("--num-components", num_components),
            "one_hot": ("--one-hot", one_hot),
        },
        head_option,
    )
    REGISTRIES["mask builder"].get(masks)
    mask_options = _parse_pairs(mask_option, "--mask-option")
    if ordering is not None:
        if "ordering" in mask_options:
            raise ValueError("--mask-option ordering=... conflicts with --ordering; give it once")
        try:
            mask_options["ordering"] = [int(v) for v in ordering.split(",")]
        except ValueError:
            raise ValueError(
                f"--ordering must be comma-separated integers, got {ordering!r}"
            ) from None
    FAMILIES.get(family)  # an unknown family lists the registered ones
    model_options = {
        "head": head,
        "hidden_sizes": _parse_sizes(hidden_sizes),
        "direct_connections": direct,
        "head_options": head_options,
        "mask_options": mask_options,
        "num_masks": num_masks,
        "seed": seed,
    }
    config = runs.RunConfig(
        data=runs.DataConfig(data, data_options, condition),
        model=_other_family_config(family, model_options)
        if family != "made"
        else ModelConfig(
            head=head,
            hidden_sizes=_parse_sizes(hidden_sizes),
            masks=masks,
            num_masks=num_masks,
            seed=seed,
            activation=activation,
            direct_connections=direct,
            dropout=dropout,
            mask_input=mask_input,
            layout=layout,
            head_options=head_options,
            mask_options=mask_options,
        ),
        train=TrainConfig(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            patience=patience or None,
            seed=seed,
            device=device,
            precision=precision,
            mask_every=mask_every,
            eval_masks=eval_masks,
            grad_clip=grad_clip,
            optimizer=optimizer,
            lr_schedule=lr_schedule,
            ema_decay=ema_decay,
            time_budget_minutes=time_budget_minutes,
        ),
        plugins=list(plugin),
        family=family,
    )
    # The histogram's presets (looked up by its head, as for --head histogram) hold
    # training settings only.
    if config.family in ("made", "histogram"):
        config = _with_preset(config, preset, data_option, quiet=quiet or not main)
    elif preset not in (None, "none"):
        raise ValueError(f"presets are MADE settings; --preset does not apply to --family {family}")
    epochs = config.train.epochs
    name = (
        Path(str(data_options["path"])).stem if data == "file" and "path" in data_options else data
    )
    out = out or Path("runs") / f"{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    message = f"training on {data} into {out}/"
    if launch is not None:
        message += f" with {launch[1]} processes"
    try:
        with progress, session(device):
            metrics = runs.fit_run(
                config,
                out,
                overwrite=overwrite,
                callbacks=[] if quiet else [_ProgressCallback(progress, epochs, message)],
            )
    except KeyboardInterrupt:
        _interrupted(out)
    if main:
        _report(metrics, out)
        # Narrow layers lose dependencies: worth a line when the user chose the sizes
        # (a preset's are deliberate; the Python API warns either way).
        for note in _caught(ConnectivityWarning)[:1] if _given("hidden_sizes") else []:
            _say(f"note: {note}")


# Options of `fit` that set MADE-only settings: refused for another family when given.
_MADE_ONLY = (
    "masks", "activation", "dropout", "mask_input", "layout", "mask_every", "ordering",
    "eval_masks",
)  # fmt: skip


def _other_family_config(family: str, options: dict[str, Any]) -> Any:
    """The config of a family other than the MADE from the options of `fit` that apply.

    The orderless family takes the head and its options, the hidden sizes and direct
    connections; its training orderings come from ``--mask-option orderings=...`` (and
    their options), its query mixture from ``--num-masks`` orderings seeded by
    ``--seed``. Any family takes those of these fields its config has; an option given
    for a field it lacks is refused, and so are the MADE's own options.
    """
    given = [name for name in _MADE_ONLY if _given(name)]
    if given:
        flags = ", ".join("--" + name.replace("_", "-") for name in given)
        raise ValueError(f"{flags} set MADE settings; they do not apply to --family {family}")
    config_class = FAMILIES.get(family).config_class
    declared = dataclasses.fields(config_class) if dataclasses.is_dataclass(config_class) else ()
    fields = {item.name for item in declared}  # not class variables (the histogram's head)
    ordering_options = dict(options["mask_options"])
    values = {
        "head": options["head"],
        "hidden_sizes": options["hidden_sizes"],
        "direct_connections": options["direct_connections"],
        "head_options": options["head_options"],
        "orderings": ordering_options.pop("orderings", "uniform"),
        "ordering_options": ordering_options,
        "num_orderings": options["num_masks"] or 1,
        "ordering_seed": options["seed"],
    }
    for param, field in _FAMILY_FIELDS.items():
        if _given(param) and field not in fields:
            flag = "--" + param.replace("_", "-")
            raise ValueError(f"{flag} does not apply to --family {family}")
    return config_class(**{key: value for key, value in values.items() if key in fields})


# CLI parameter -> the field of another family's config it sets.
_FAMILY_FIELDS = {
    "head": "head",
    "hidden_sizes": "hidden_sizes",
    "direct": "direct_connections",
    "num_components": "head_options",
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
}
_NAMED_DATA_OPTIONS = {
    "data_dir": "data_dir",
    "binarize": "binarize",
    "grid_size": "grid_size",
    "image": "path",
    "max_train": "max_train",
    "data_seed": "seed",
}


def _preset_key(config: runs.RunConfig) -> tuple[str, str | None]:
    """The (data set, head) a default preset is looked up by; a file's by its kind."""
    if config.data.name != "file":
        return config.data.name, config.model.head
    dataset = load_dataset("file", **config.data.options)
    return f"file:{dataset.kind}", config.model.head or runs.default_head(dataset)


def _with_preset(
    config: runs.RunConfig, name: str | None, data_option: list[str], *, quiet: bool
) -> runs.RunConfig:
    """Fill the settings the user did not give from the preset (named, or the default)."""
    if name is not None and name.lower() == "none":
        return config
    if name is None:
        name = presets.default_preset(*_preset_key(config))
        if name is None:
            return config
    settings = presets.get_preset(name)
    given = {field for param, field in _FIELDS.items() if _given(param)}
    given_data = {key for key, _ in (p.partition("=")[::2] for p in data_option)}
    given_data |= {key for param, key in _NAMED_DATA_OPTIONS.items() if _given(param)}
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
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `densitykit fit`.")],
    epochs: Annotated[
        int | None, typer.Option(help="A new maximum number of epochs (more than already run).")
    ] = None,
    lr: Annotated[float | None, typer.Option(help="A new learning rate.")] = None,
    patience: Annotated[
        int | None,
        typer.Option(help="A new early-stopping patience (0 disables); continues an early stop."),
    ] = None,
    plugin: Annotated[list[str], typer.Option(help=_PLUGIN_HELP)] = [],  # noqa: B006
    quiet: Annotated[bool, typer.Option(help="No progress bar or per-epoch lines.")] = False,
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


def _given(name: str) -> bool:
    """Whether an option was typed on the command line (not left at its default)."""
    context = _state.get("context")
    if context is None:
        return False
    source = context.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


_DrawOrderings = Annotated[
    int | None,
    typer.Option(
        help="Ask a model trained over all orderings (--masks any-order) with this many "
        "seeded orderings drawn at inference instead of its own mixture.",
    ),
]
_OrderingSeed = Annotated[int, typer.Option(help="Seed of --draw-orderings.")]


@app.command("eval")
@_guard
def eval_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `densitykit fit`.")],
    num_masks: Annotated[
        int | None, typer.Option(help="Masks in the mixture (default: all the model's).")
    ] = None,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "cpu",
    plugin: Annotated[list[str], typer.Option(help=_PLUGIN_HELP)] = [],  # noqa: B006
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    observed: Annotated[
        str | None,
        typer.Option(
            help="Report the conditional NLL of the missing part given this observed part: "
            "top-half, bottom-half, left-half, right-half, random:F (seed 0) or a PNG of the "
            "images' size whose light pixels are observed."
        ),
    ] = None,
    draw_orderings: _DrawOrderings = None,
    ordering_seed: _OrderingSeed = 0,
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
    _say(
        f"{split} NLL{given} {result['nll_nats']:.4f} nats ({result['nats_per_dim']:.5f} "
        f"nats/dim, {result['bits_per_dim']:.5f} bits/dim) with {result['num_masks']} mask(s)"
        + _drawn(result["drawn_orderings_seed"])
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


def _observed_pattern(
    spec: str, shape: tuple[int, ...], num_examples: int, generator: torch.Generator
) -> torch.Tensor:
    """A named pattern (see `queries.observed_pattern`), or a PNG of the images' size whose
    light pixels (grey level 128 or more) are the observed ones, the same for every image."""
    if not spec.lower().endswith(".png"):
        return queries.observed_pattern(spec, shape, num_examples, generator=generator)
    path = Path(spec)
    if len(shape) != 2:
        raise ValueError(f"a pattern picture needs image data (height, width), got {shape}")
    if not path.is_file():
        raise FileNotFoundError(f"no pattern picture at {path}")
    try:
        with Image.open(path) as picture:  # the header first: no decoding of a huge file
            width, height = picture.size
            if (height, width) != tuple(shape):
                raise ValueError(
                    f"the pattern picture {path} is {height} x {width} pixels (height x width), "
                    f"but the images are {shape[0]} x {shape[1]}"
                )
            grey = np.asarray(picture.convert("L"))
    except (UnidentifiedImageError, Image.DecompressionBombError) as error:
        raise ValueError(f"cannot read {path} as a picture ({error})") from None
    observed = torch.from_numpy(grey >= 128).reshape(1, -1)
    if bool(observed.all()) or not bool(observed.any()):
        raise ValueError(
            f"the pattern picture {path} must have light (observed) and dark (missing) pixels"
        )
    return observed.expand(num_examples, -1)


def _conditional_nll(
    model: densitykit.AutoregressiveModel,
    data: torch.Tensor,
    pattern: torch.Tensor,
    labels: torch.Tensor | None,
    connectivities: Any,
) -> torch.Tensor:
    """``-log p(x_missing | x_observed)`` per example ``(N,)``, in chunks of 1,000."""
    parts = []
    with torch.no_grad():
        for start in range(0, data.shape[0], 1000):
            chunk = slice(start, start + 1000)
            parts.append(
                -model.conditional_log_prob(
                    data[chunk],
                    pattern[chunk],
                    connectivities=connectivities,
                    context=None if labels is None else labels[chunk],
                ).cpu()
            )
    return torch.cat(parts)


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
    runs.require_capability(run.model, "conditional_log_prob", "eval --observed")
    connectivities = runs.query_orderings(run.model, num_masks, draw_orderings, ordering_seed)
    count = run.model.num_masks if connectivities is None else len(connectivities)
    splits = run.dataset.splits()
    if split not in splits:
        raise ValueError(f"split must be one of {sorted(splits)}, got {split!r}")
    data = splits[split]
    labels = runs.split_context(run.model, run.dataset, split)
    pattern = _observed_pattern(
        observed, _image_shape(run), data.shape[0], torch.Generator().manual_seed(0)
    )
    nll = _conditional_nll(run.model, data, pattern, labels, connectivities)
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


MAX_COMPLETIONS = 65_536
"""The most completions ``inpaint`` draws in one call (images times ``-n``): a few GB
for 784 variables, held at once with the images they complete."""


@app.command()
@_guard
def inpaint(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `densitykit fit`.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="A .png picture, or a .npy array of the numbers: (images, N + 2, D) integers, "
            "per image the observed part (-1 where missing), the N completions and the original.",
        ),
    ],
    observed: Annotated[
        str,
        typer.Option(
            help="top-half, bottom-half, left-half, right-half, random:F, or a PNG of the "
            "images' size whose light pixels are observed."
        ),
    ] = "top-half",
    num_samples: Annotated[
        int,
        typer.Option(
            "-n",
            "--num-samples",
            help=f"Completions per image (at most {MAX_COMPLETIONS:,} in all, over the images).",
        ),
    ] = 4,
    num_images: Annotated[int, typer.Option(help="Test images to complete.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the pattern and the completions.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "cpu",
    plugin: Annotated[list[str], typer.Option(help=_PLUGIN_HELP)] = [],  # noqa: B006
    overwrite: Annotated[bool, typer.Option(help="Replace the output file if it exists.")] = False,
    as_json: Annotated[
        bool,
        typer.Option(
            "--json",
            help="Print the numbers as JSON: the pattern, each image's missing variables and "
            "conditional NLL of its missing part (nats).",
        ),
    ] = False,
    draw_orderings: _DrawOrderings = None,
    ordering_seed: _OrderingSeed = 0,
    threads: _Threads = None,
) -> None:
    """Complete the missing part of test images: per image, the observed part (missing in
    grey), the completions and the original."""
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
    pattern = _observed_pattern(
        observed, shape, images.shape[0], torch.Generator().manual_seed(seed)
    )
    completed = run.model.complete(
        images.repeat_interleave(num_samples, 0),
        pattern.repeat_interleave(num_samples, 0),
        generator=torch.Generator().manual_seed(seed),
        context=None
        if labels is None
        else labels[: images.shape[0]].repeat_interleave(num_samples, 0),
        connectivities=connectivities,
    ).cpu()
    rows = plots.completion_rows(images, pattern, completed)
    if out.suffix == ".npy":
        array = rows.nan_to_num(-1.0).long().reshape(images.shape[0], -1, images.shape[1])
        atomic_write(out, lambda file: np.save(file, array.numpy()))
        path = out
    else:
        path = plots.sample_grid(
            rows,
            shape,
            out,
            num_values=run.dataset.num_values,
            columns=num_samples + 2,
        )
    if as_json:
        nll = _conditional_nll(
            run.model,
            images,
            pattern,
            None if labels is None else labels[: images.shape[0]],
            connectivities,
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
        return
    _say(f"wrote {completed.shape[0]} completions of {images.shape[0]} images to {path}")


@app.command()
@_guard
def sample(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `densitykit fit`.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output file: .png picture or .npy array.")
    ],
    num_samples: Annotated[int, typer.Option("-n", "--num-samples", help="How many samples.")] = 64,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "cpu",
    overwrite: Annotated[bool, typer.Option(help="Replace the output file if it exists.")] = False,
    plugin: Annotated[list[str], typer.Option(help=_PLUGIN_HELP)] = [],  # noqa: B006
    label: Annotated[
        int | None,
        typer.Option(
            help="For a class-conditional run: draw this class. Without it, a picture has "
            "one row of -n samples per class."
        ),
    ] = None,
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
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `densitykit fit`.")],
    data: Annotated[
        str,
        typer.Argument(
            help="A data file (.npy, .npz, .csv, .tsv, a folder of PNG images) or a data set name."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the scores: .csv (with a header) or .npy."),
    ] = None,
    split: Annotated[
        str | None,
        typer.Option(help="A data set's split (default test), or an .npz file's array."),
    ] = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="Folder with the data set's files (MNIST IDX files).")
    ] = None,
    binarize: Annotated[
        str | None, typer.Option(help="MNIST: threshold, stochastic or none.")
    ] = None,
    data_option: Annotated[
        list[str], typer.Option(help="Extra data set option key=value (repeatable).")
    ] = [],  # noqa: B006
    num_masks: Annotated[
        int | None, typer.Option(help="Masks in the mixture (default: all the model's).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per forward pass.")] = 1000,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda[:N].")] = "cpu",
    overwrite: Annotated[bool, typer.Option(help="Replace the output file if it exists.")] = False,
    plugin: Annotated[list[str], typer.Option(help=_PLUGIN_HELP)] = [],  # noqa: B006
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
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


_PLUGIN_OPTION = typer.Option(help=_PLUGIN_HELP)


@app.command()
@_guard
def datasets(plugin: Annotated[list[str], _PLUGIN_OPTION] = []) -> None:  # noqa: B006
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
def heads(plugin: Annotated[list[str], _PLUGIN_OPTION] = []) -> None:  # noqa: B006
    """List the output heads."""
    _listing(HEADS, plugin)


@app.command("families")
@_guard
def families_command(plugin: Annotated[list[str], _PLUGIN_OPTION] = []) -> None:  # noqa: B006
    """List the model families (`fit --family`)."""
    _listing(FAMILIES, plugin)


@app.command("masks")
@_guard
def masks_command(plugin: Annotated[list[str], _PLUGIN_OPTION] = []) -> None:  # noqa: B006
    """List the mask builders."""
    _listing(REGISTRIES["mask builder"], plugin)


def main() -> None:
    """Entry point of the ``densitykit`` script."""
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
