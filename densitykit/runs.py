"""Run folders: train a model on a data set and keep everything needed to use it again.

This is the Python API behind ``densitykit fit / resume / eval / sample``. What a run
folder holds, and how it is kept safe, is described in
[`densitykit.runfolder`][densitykit.runfolder]. A run's configuration is its parts'
configurations side by side: a [`DataConfig`][densitykit.runs.DataConfig], a
[`ModelConfig`][densitykit.model.ModelConfig] and a
[`TrainConfig`][densitykit.train.TrainConfig], each defined once.

Loading a run never runs code: the ``.pt`` files are read without unpickling objects,
and the plug-ins a run was trained with are imported only when the caller passes them
(``plugins=[...]``, or ``--plugin`` on the command line).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from densitykit import plots
from densitykit.atomic import atomic_path, atomic_write
from densitykit.checkpoint import (
    json_text,
    load_checkpoint,
    load_object,
    read_json,
    save_checkpoint,
    save_object,
    write_json,
)
from densitykit.checks import check_int, check_output_file, check_seed
from densitykit.data import Dataset, load_dataset
from densitykit.data.files import write_table
from densitykit.data.tables import DEFAULT_COMPONENTS
from densitykit.devices import resolve_device
from densitykit.distributed import is_main, local_main_first, on_main
from densitykit.errors import CheckpointError, DensitykitError, PluginError, ResourceError
from densitykit.family import FAMILIES, DataFacts, DensityModel
from densitykit.family import default_head as family_default_head
from densitykit.heads import HEADS
from densitykit.histogram import HistogramConfig, resolve_family
from densitykit.memory import check_allocation, format_bytes
from densitykit.model import (
    AutoregressiveModel,
    ModelConfig,
)
from densitykit.numerics import per_dimension
from densitykit.plugins import import_plugins, normalize, require_registered
from densitykit.runfolder import (
    CHECKPOINT_FILE,
    CONFIG_FILE,
    METRICS_FILE,
    METRICS_LOG,
    STATE_FILE,
    Replacement,
    RunLock,
    prepare_run_folder,
    recover_replacement,
    remove_stale_temporaries,
)
from densitykit.train import (
    Callback,
    TrainConfig,
    TrainResult,
    TrainState,
    evaluate,
    fit,
)
from densitykit.version import __version__

__all__ = [
    "CONDITIONS",
    "SAMPLE_CHUNK",
    "DataConfig",
    "Run",
    "RunConfig",
    "default_head",
    "describe_table",
    "draw_pictures",
    "evaluate_run",
    "fit_run",
    "is_plane",
    "plane_grid",
    "label_grid",
    "load_run",
    "mixture_size",
    "plane_picture",
    "query_orderings",
    "read_run_config",
    "require_capability",
    "require_finished",
    "resume_run",
    "sample_run",
    "split_context",
    "table_head",
    "table_log_jacobian",
]

_LOG = logging.getLogger("densitykit")

SAMPLE_CHUNK = 10_000
"""Samples drawn at once by [`sample_run`][densitykit.runs.sample_run] into a ``.npy`` file."""
MAX_PICTURE_SAMPLES = 100_000
"""At most this many samples are drawn into a picture."""


CONDITIONS: tuple[str, ...] = ("label",)
"""What a run can condition its model on (``DataConfig.condition``)."""


@dataclass
class DataConfig:
    r"""Which data set a run trains on.

    Attributes:
        name: Registered data set name (see ``densitykit.data.names()``).
        options: Keyword options of the data set (``seed``, ``data_dir``, ...).
        condition: ``None`` for a model of $p(x)$, or ``"label"`` for a
            class-conditional model $p(x \mid y)$ of the data set's labels (see
            [`Dataset.labels`][densitykit.data.dataset.Dataset.labels]).
    """

    name: str = "2d-smiley"
    options: dict[str, Any] = field(default_factory=dict)
    condition: str | None = None

    def __post_init__(self) -> None:
        if self.condition is not None and self.condition not in CONDITIONS:
            raise ValueError(
                f"condition must be None or one of {', '.join(CONDITIONS)}, got {self.condition!r}"
            )


@dataclass
class RunConfig:
    """What a run trains: data, model and training configuration, side by side.

    ``model.head``, ``model.dim`` and ``model.num_values`` may be left ``None``: the
    data set fills them in (the head by [`default_head`][densitykit.runs.default_head]).
    ``model.seed`` seeds the masks; ``train.seed`` seeds the initial weights and the
    shuffling.

    A MADE config whose head is ``histogram`` is read as the
    [histogram family][densitykit.histogram]'s config (``family="histogram"``), here
    and in [`from_dict`][densitykit.runs.RunConfig.from_dict]: ``--head histogram``, and
    the run folders written when the histogram was a MADE head, are histogram runs.

    Attributes:
        data: The data set.
        model: The model.
        train: The training hyperparameters.
        plugins: Modules or ``.py`` files imported first (user heads, masks, data sets).

    Example:
        >>> from densitykit.model import ModelConfig
        >>> config = RunConfig(DataConfig("2d-smiley", {"grid_size": 8}),
        ...                    ModelConfig(hidden_sizes=(16,)), TrainConfig(epochs=1))
        >>> RunConfig.from_dict(config.to_dict()) == config
        True
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: Any = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    plugins: list[str] = field(default_factory=list)
    family: str = "made"

    def __post_init__(self) -> None:
        if not isinstance(self.family, str):
            raise TypeError(f"family must be a registered family name, got {self.family!r}")
        if isinstance(self.model, ModelConfig) and self.model.head == "histogram":
            self.family = "histogram"
            self.model = HistogramConfig.from_made_dict(self.model.to_dict())

    def family_class(self) -> type[DensityModel]:
        """The run's [model family][densitykit.family] (registered by its name).

        Raises:
            UnknownNameError: If no imported module registers it (the names are listed).
        """
        return FAMILIES.get(self.family)

    def to_dict(self) -> dict[str, Any]:
        """The ``config.json`` content (a ``.py`` plug-in by absolute path)."""
        return {
            "densitykit_version": __version__,
            "family": self.family,
            "data": {
                "name": self.data.name,
                "options": dict(self.data.options),
                "condition": self.data.condition,
            },
            "model": self.model.to_dict(),
            "train": self.train.to_dict(),
            "plugins": [normalize(plugin) for plugin in self.plugins],
        }

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "run config") -> RunConfig:
        """Rebuild from ``to_dict`` output.

        Raises:
            CheckpointError: If ``data`` is not a run config.
        """
        try:
            if not isinstance(data, dict):
                raise TypeError(f"expected a JSON object, got {type(data).__name__}")
            section = data["data"]
            if not isinstance(section, dict) or not isinstance(section.get("options"), dict):
                raise TypeError("data must be an object with name and options")
            plugins = data.get("plugins", [])
            if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
                raise TypeError("plugins must be a list of strings")
            family = data.get("family", "made")  # configs written before families: MADE
            if not isinstance(family, str):
                raise TypeError(f"family must be a name, got {family!r}")
            family, model = resolve_family(family, dict(data["model"]))
            config_class = _family(family).config_class
            return cls(
                data=DataConfig(
                    str(section["name"]), dict(section["options"]), section.get("condition")
                ),
                model=config_class.from_dict(model),
                train=TrainConfig.from_dict(dict(data["train"])),
                plugins=list(plugins),
                family=family,
            )
        except PluginError:
            raise
        except (KeyError, TypeError, ValueError) as error:
            detail = f"missing {error}" if isinstance(error, KeyError) else str(error)
            raise CheckpointError(f"{where}: malformed run config ({detail})") from None

    def needed_names(self) -> dict[str, str]:
        """The registered names this run uses, by registry (for loading checks)."""
        return {
            "data set": self.data.name,
            "model family": self.family,
            **self.family_class().needed_names(self.model),
        }


@dataclass
class Run:
    """A loaded run folder."""

    path: Path
    config: RunConfig
    model: AutoregressiveModel
    dataset: Dataset


def _family(name: str) -> type[DensityModel]:
    """A registered family, or a one-line error: a plug-in family is imported only when
    the user passes it (``--plugin``), never from a config."""
    if name not in FAMILIES:
        raise PluginError(
            f"the run's model family {name!r} is not registered (registered: "
            f"{', '.join(FAMILIES.names())}); pass the plug-in that defines it with --plugin"
        )
    return FAMILIES.get(name)


def read_run_config(run_dir: str | os.PathLike) -> RunConfig:
    """Read a run folder's ``config.json``.

    Raises:
        CheckpointError: If the folder or its config is missing or malformed.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run folder")
    recover_replacement(path)  # a replacing run killed before its first epoch: put back
    return RunConfig.from_dict(read_json(path / CONFIG_FILE), where=str(path / CONFIG_FILE))


def default_head(dataset: Dataset) -> str:
    """``bernoulli`` for binary data, ``categorical`` otherwise."""
    return family_default_head(dataset.num_values)


class _RunFolderWriter(Callback):
    """Writes the metrics log and the resumable state after every epoch."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        # The log is rewritten from the state's history, so it always matches the
        # saved state: a crash between the two writes loses or duplicates nothing.
        save_object(self.path / STATE_FILE, state.to_dict())
        lines = "".join(json_text(r, indent=None) + "\n" for r in state.history)
        atomic_write(self.path / METRICS_LOG, lambda handle: handle.write(lines.encode()))


class _CommitReplacement(Callback):
    """Deletes the replaced run once the new one has completed its first epoch."""

    def __init__(self, replacement: Replacement) -> None:
        self.replacement = replacement

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        self.replacement.commit()


def data_facts(config: RunConfig, dataset: Dataset) -> DataFacts:
    """What a family may know of the run's data set (its labels only if the run
    conditions on them)."""
    num_labels = 0
    if config.data.condition == "label":
        dataset.labels("train")  # a data set without labels says so
        num_labels = dataset.num_labels
    return DataFacts(
        name=config.data.name,
        dim=dataset.dim,
        num_values=dataset.num_values,
        kind=dataset.kind,
        shape=tuple(dataset.shape),
        num_labels=num_labels,
        columns=()
        if dataset.table is None
        else tuple(zip(dataset.table.names, dataset.table.kinds)),
    )


def split_context(model: DensityModel, dataset: Dataset, split: str) -> torch.Tensor | None:
    """The context of ``split``'s examples for ``model``: the labels for a label model.

    Args:
        model: A run's model.
        dataset: Its data set.
        split: ``"train"``, ``"val"`` or ``"test"``.

    Returns:
        ``(N,)`` labels for a class-conditional model, ``None`` for an unconditional one.

    Raises:
        DataError: If the model conditions on labels the data set does not have.
        DensitykitError: If the model takes real features (no run trains those).
    """
    if model.num_labels:
        return dataset.labels(split)
    if model.is_conditional:
        raise DensitykitError(
            "a run's model conditions on labels only; this one takes real context features"
        )
    return None


def _check_settings(config: RunConfig, model_config: Any) -> None:
    """Every check that can fail before training, done before anything is written."""
    train = config.train
    device = resolve_device(train.device)
    if train.precision != "fp32" and device.type != "cuda":
        raise DensitykitError(
            f"precision {train.precision!r} is autocast on CUDA only, but the run would train "
            f"on {device}; use --precision fp32 there"
        )
    family = config.family_class()
    weights = family.parameter_count(model_config)
    check_allocation(family.training_bytes(model_config), f"a model of {weights:,} weights")


def table_head(config: RunConfig, dataset: Dataset) -> RunConfig:
    """``config`` with the head a table's columns need, when the user left it out.

    All real columns take ``gaussian-mixture`` (its default 5 components, or
    ``--num-components``); all discrete ones ``bernoulli`` or ``categorical`` as the
    integer data do; any other mix the ``mixed`` head, with each column's kind and 5
    components for the real and spike columns (or ``--num-components``). A head
    over real values given for a table with discrete or spike columns is refused (it
    would model their codes as reals).

    Raises:
        DensitykitError: If the head the columns need is not registered, or the given
            head cannot model the columns.
    """
    table = dataset.table
    fields = {item.name for item in dataclasses.fields(config.model)}
    if table is None or not {"head", "head_options"} <= fields:
        return config  # a family with a head of its own: its config checks the data
    name, options = table.default_head()
    head = config.model.head or name
    if head == "mixed" and name != "mixed":
        options = {
            "kinds": [column.head_kind() for column in table.columns],
            "num_components": DEFAULT_COMPONENTS,
        }
    elif head != name:
        options = {}
    if head not in HEADS:
        raise DensitykitError(
            f"the columns of {dataset.name!r} ({table.describe()}) need the {head!r} head, "
            "which is not registered here; give the other columns the kind real with "
            "--columns NAME:real, or pass the plug-in that defines it with --plugin"
        )
    real = HEADS.get(head).value_dtype.is_floating_point
    if real and head != "mixed" and set(table.kinds) != {"real"}:
        others = [c.name for c in table.columns if c.kind != "real"]
        raise DensitykitError(
            f"head {head!r} models every column as real, but {', '.join(others)} "
            f"{'is' if len(others) == 1 else 'are'} not ({table.describe()}); leave --head "
            "out to take the mixed head, or give them the kind real with --columns"
        )
    model = replace(config.model, head=head, head_options={**options, **config.model.head_options})
    return replace(config, model=model)


def table_log_jacobian(dataset: Dataset, split: str) -> float:
    """The mean log-Jacobian of a table's ``split`` (0 for other data): a mean NLL of
    model values minus it is the mean NLL in the data's units
    (see [`Table.log_jacobian`][densitykit.data.tables.Table.log_jacobian])."""
    if dataset.table is None:
        return 0.0
    return float(dataset.table.log_jacobian(dataset.splits()[split]).mean())


def describe_table(dataset: Dataset) -> dict[str, Any]:
    """What a report says of a table's columns (empty for other data)."""
    table = dataset.table
    if table is None:
        return {}
    return {
        "columns": list(table.names),
        "column_kinds": list(table.kinds),
        "spike_columns": list(table.spike_columns()),
        "units": "data",
    }


def _build(config: RunConfig) -> tuple[Dataset, DensityModel]:
    import_plugins(config.plugins)
    with local_main_first():  # one download per machine in a distributed run
        dataset = load_dataset(config.data.name, **config.data.options)
    config = table_head(config, dataset)
    family = config.family_class()
    model_config = family.complete_config(config.model, data_facts(config, dataset))
    _check_settings(config, model_config)
    torch.manual_seed(config.train.seed)
    model = family.from_config(model_config)
    if config.train.data_init:  # a new model's start; resumed weights replace it
        model.initialize_from_data(dataset.train)
    eval_masks = config.train.eval_masks
    if eval_masks is not None and eval_masks > model.num_masks:
        raise DensitykitError(
            f"--eval-masks {eval_masks} asks for more masks than the model has "
            f"({model.num_masks}); give at most {model.num_masks}"
        )
    return dataset, model


def fit_run(
    config: RunConfig,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
) -> dict[str, Any]:
    """Train a new run into folder ``out`` and return its ``metrics.json`` content.

    Every setting is checked before anything is written. With ``overwrite``, an
    existing *run folder* (and only one: see [`densitykit.runfolder`][densitykit.runfolder])
    is replaced; the old run is deleted once the new one has completed its first
    epoch, and put back if the new one fails before.

    In a distributed run (under ``torchrun``; see
    [`densitykit.distributed`][densitykit.distributed]) every process trains and returns
    the metrics; only rank 0 writes the folder and calls ``callbacks``.

    Raises:
        RunFolderError: If ``out`` exists (without ``overwrite``), is not a run folder
            (with it), or cannot be written.
        DensitykitError: If a setting cannot work (the head does not suit the data,
            bf16 off CUDA, more evaluation masks than masks, a model too large).
        ValueError: On bad options (unknown names list the registered ones).
    """
    path = Path(out)
    resolve_device(config.train.device)  # a device that is not here: refused before writing
    dataset, model = _build(config)
    saved = replace(config, model=model.config)
    if dataset.table is not None:  # the columns and training statistics, for eval/score
        table = dataset.options["table"]
        found = {key: dataset.options[key] for key in ("header",) if key in dataset.options}
        options = {**config.data.options, **found, "table": table}
        saved = replace(saved, data=replace(config.data, options=options))
    replacement: list[Replacement | None] = [None]
    lock = RunLock(path)

    def prepare() -> None:
        replacement[0] = prepare_run_folder(
            path, overwrite=overwrite, parse_config=RunConfig.from_dict, lock=lock
        )
        try:
            write_json(path / CONFIG_FILE, saved.to_dict())
        except BaseException:
            if replacement[0] is not None:
                replacement[0].rollback()
            raise

    try:
        on_main(prepare)
        extra = [_CommitReplacement(replacement[0])] if replacement[0] is not None else []
        try:
            metrics = _train_and_report(
                path, model, dataset, config.train, None, [*extra, *callbacks]
            )
        except BaseException:
            if replacement[0] is not None:
                replacement[0].rollback()
            raise
        if replacement[0] is not None:
            replacement[0].commit()
        return metrics
    finally:
        lock.release()


def resume_run(
    out: str | os.PathLike,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    patience: int | None = None,
    plugins: Sequence[str] = (),
    callbacks: Sequence[Callback] = (),
) -> dict[str, Any]:
    """Continue a run from its last completed epoch (weights, optimizer, RNG, early stopping).

    Args:
        out: The run folder.
        epochs: A new maximum number of epochs, if given.
        lr: A new learning rate (e.g. after a non-finite loss), if given.
        patience: A new early-stopping patience (0 turns early stopping off); needed to
            continue a run that stopped early.
        plugins: Plug-ins to import first (never imported from the run's config).

    Raises:
        CheckpointError: If the folder has no config or resumable state.
        DensitykitError: If the settings cannot do what they say (fewer epochs than
            already run; more epochs for a run that stopped early, without more patience).
    """
    path = Path(out)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run folder")
    lock = RunLock(path)
    on_main(lock.acquire)
    try:
        on_main(lambda: recover_replacement(path, lock=lock))
        return _resume_locked(path, epochs, lr, patience, plugins, callbacks)
    finally:
        lock.release()


def _resume_locked(
    path: Path,
    epochs: int | None,
    lr: float | None,
    patience: int | None,
    plugins: Sequence[str],
    callbacks: Sequence[Callback],
) -> dict[str, Any]:
    import_plugins(plugins)  # first: a plug-in family's config is read by its class
    config = read_run_config(path)
    require_registered(config.needed_names(), config.plugins, where=str(path))
    state = None
    if (path / STATE_FILE).exists():
        state = TrainState.from_dict(load_object(path / STATE_FILE))
    else:
        _check_untrained(path)
    updates: dict[str, Any] = {}
    if epochs is not None:
        updates["epochs"] = epochs
    if lr is not None:
        updates["lr"] = lr
    if patience is not None:
        updates["patience"] = patience or None
    train = TrainConfig.from_dict({**config.train.to_dict(), **updates})
    resolve_device(train.device)
    if state is not None:
        _check_resumable(path, state, train, epochs=epochs, patience=patience)
        if not updates and state.history and state.history[-1].get("stop_reason"):
            _LOG.warning(
                f"{path} is finished (after epoch {state.epoch}: "
                f"{state.history[-1]['stop_reason']}); nothing was trained. To train "
                "further, give --epochs N with N > "
                f"{state.epoch}" + (" and --patience" if state.stopped_early else "")
            )
    # The run's plug-ins were imported above only if the caller passed them: _build
    # must not import the recorded ones, but config.json keeps recording them.
    dataset, model = _build(replace(config, train=train, plugins=[]))
    _check_model_fits(path / CONFIG_FILE, model.config, dataset)
    _check_state_fits(path, state, model, train)
    saved = replace(config, train=train, model=model.config)

    def prepare() -> None:
        remove_stale_temporaries(path)
        if updates:
            write_json(path / CONFIG_FILE, saved.to_dict())

    on_main(prepare)
    return _train_and_report(path, model, dataset, train, state, callbacks)


def _check_untrained(path: Path) -> None:
    """A run without ``train_state.pt`` is resumed from scratch only if it never trained."""
    trained = [
        name
        for name in (CHECKPOINT_FILE, METRICS_FILE, METRICS_LOG)
        if (path / name).is_file() and (path / name).stat().st_size > 0
    ]
    if trained:
        raise CheckpointError(
            f"{path} has trained ({', '.join(trained)}) but its {STATE_FILE} is missing, so "
            "it cannot be resumed exactly; it was not changed. Put the file back, or start "
            f"a new run: densitykit fit ... --out {path} --overwrite"
        )


def _check_resumable(
    path: Path, state: TrainState, train: TrainConfig, *, epochs: int | None, patience: int | None
) -> None:
    if epochs is not None and epochs < state.epoch:
        raise DensitykitError(
            f"{path} has already run {state.epoch} epochs; --epochs {epochs} cannot undo them "
            f"(give more than {state.epoch} to train further)"
        )
    if state.stopped_early:
        waited = state.epochs_without_improvement
        if patience is None or (train.patience is not None and train.patience <= waited):
            if epochs is None and patience is None:
                return  # nothing asked: resuming a finished run changes nothing
            raise DensitykitError(
                f"{path} stopped early after epoch {state.epoch}: {waited} epochs without "
                f"improvement reached its patience; more epochs alone would train nothing, so "
                f"give --patience N with N > {waited} (or 0 for no early stopping)"
            )
        state.stopped_early = False


def _check_state_fits(
    path: Path, state: TrainState | None, model: DensityModel, train: TrainConfig
) -> None:
    """Refuse to resume if config.json (edited since) no longer builds the saved state's model."""
    problem = None if state is None else state.mismatch(model, train.optimizer)
    if problem is not None:
        raise CheckpointError(
            f"{path / CONFIG_FILE} no longer matches the saved training state "
            f"{path / STATE_FILE} ({problem}); undo the edit of the config (nothing was written)"
        )


def _check_model_fits(where: Path, config: Any, dataset: Dataset) -> None:
    if config is None or (config.dim, config.num_values) != (dataset.dim, dataset.num_values):
        expected = "?" if config is None else f"{config.dim} variables with {config.num_values}"
        raise CheckpointError(
            f"{where}: the model expects {expected} values, but the data set has "
            f"{dataset.dim} variables with {dataset.num_values} values"
        )


def _train_and_report(
    path: Path,
    model: AutoregressiveModel,
    dataset: Dataset,
    train_config: TrainConfig,
    state: TrainState | None,
    callbacks: Sequence[Callback],
) -> dict[str, Any]:
    result = fit(
        model,
        dataset.train,
        dataset.val,
        train_config,
        callbacks=[_RunFolderWriter(path), *callbacks] if is_main() else [],
        state=state,
        train_context=split_context(model, dataset, "train"),
        val_context=split_context(model, dataset, "val"),
        train_draws=dataset.train_draws,
    )
    on_main(lambda: save_checkpoint(path / CHECKPOINT_FILE, model))
    metrics = _metrics(model, dataset, train_config, result)

    def report() -> None:
        write_json(path / METRICS_FILE, metrics)
        draw_pictures(path, model, dataset, result.history, seed=train_config.seed)

    on_main(report)
    return metrics


def _metrics(
    model: AutoregressiveModel, dataset: Dataset, config: TrainConfig, result: TrainResult
) -> dict[str, Any]:
    test_nll = evaluate(
        model,
        dataset.test,
        batch_size=config.eval_batch_size,
        num_masks=config.eval_masks,
        distributed=True,
        context=split_context(model, dataset, "test"),
    )
    model_units = test_nll
    test_nll -= table_log_jacobian(dataset, "test")  # in the data's units
    best = next((r for r in result.history if r["epoch"] == result.best_epoch), None)
    entropy = dataset.true_entropy_nats
    return {
        "dataset": dataset.name,
        "family": model.family,
        "head": getattr(model.config, "head", None),
        "dim": dataset.dim,
        "num_values": dataset.num_values,
        "condition": "label" if model.num_labels else None,
        "test_nll_nats": test_nll,
        "test_nats_per_dim": per_dimension(test_nll, dataset.dim)[0],
        "test_bits_per_dim": per_dimension(test_nll, dataset.dim)[1],
        "true_entropy_nats": entropy,
        "gap_to_entropy_nats": None if entropy is None else test_nll - entropy,
        "val_nll_nats": result.best_val_nll,
        "train_nll_nats": best["train_nll"] if best else None,
        "num_params": sum(p.numel() for p in model.parameters()),
        "num_masks": model.num_masks,
        "eval_masks": config.eval_masks or model.num_masks,
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "stopped_early": result.stopped_early,
        "stop_reason": result.stop_reason,
        "train_seconds": sum(r["seconds"] for r in result.history),
        **describe_table(dataset),
        **({"test_nll_model_units_nats": model_units} if dataset.table is not None else {}),
        **_true_nll(dataset, test_nll),
    }


def _true_nll(dataset: Dataset, test_nll: float) -> dict[str, float]:
    """For real data whose law is known: the true law's test NLL in the data's units
    (what a perfect model scores) and the model's gap to it."""
    if dataset.true_log_density is None or dataset.table is None:
        return {}
    rows = dataset.table.decode(dataset.test)
    true_nll = -float(np.mean(dataset.true_log_density(rows)))
    return {"true_test_nll_nats": true_nll, "gap_to_true_nll_nats": test_nll - true_nll}


def draw_pictures(
    path: Path,
    model: AutoregressiveModel,
    dataset: Dataset,
    history: Sequence[dict[str, Any]],
    *,
    seed: int = 0,
) -> list[Path]:
    """Draw the run's pictures: learning curves plus samples, density or histogram."""
    written = []
    if history:
        written.append(
            plots.learning_curves(
                history, path / "learning_curves.png", true_entropy=dataset.true_entropy_nats
            )
        )
    generator = torch.Generator().manual_seed(seed)
    model.eval()
    with torch.no_grad():
        if dataset.kind == "image":
            if model.num_labels:
                written.append(
                    label_grid(model, dataset, 8, path / "samples.png", generator=generator)
                )
            else:
                samples = model.sample(64, generator=generator)
                written.append(
                    plots.sample_grid(
                        samples,
                        dataset.shape,
                        path / "samples.png",
                        num_values=dataset.num_values,
                        columns=8,
                        title=f"{getattr(model.config, 'head', None) or ''} {model.family} samples",
                    )
                )
            written.append(
                plots.sample_grid(
                    dataset.test[:64],
                    dataset.shape,
                    path / "data.png",
                    num_values=dataset.num_values,
                    columns=8,
                    title=f"{dataset.name} test images",
                )
            )
        elif model.is_conditional:
            pass  # a density picture would need one per label; image data sets carry labels
        elif dataset.kind == "2d":
            k = dataset.num_values
            grid = torch.cartesian_prod(torch.arange(k), torch.arange(k))
            probs = _batched_probs(model, grid).reshape(k, k)
            samples = model.sample(len(dataset.train), generator=generator)
            written.append(plots.density_2d(dataset.train, probs, samples, path / "density.png"))
        elif is_plane(dataset):
            written.append(plane_picture(model, dataset, path / "density.png", generator=generator))
        elif dataset.kind == "1d":
            probs = _batched_probs(model, torch.arange(dataset.num_values)[:, None])
            written.append(
                plots.histogram_1d(
                    dataset.train, probs, path / "histogram.png", true_probs=dataset.true_probs
                )
            )
    return written


PLANE_GRID = 200
"""Points per side of the grid a real 2-D density is drawn on."""


def is_plane(dataset: Dataset) -> bool:
    """Whether ``dataset`` is a table of two real columns (drawn as a density in the plane)."""
    return dataset.table is not None and dataset.table.kinds == ("real", "real")


def plane_grid(dataset: Dataset) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The ``(PLANE_GRID**2, 2)`` points, in the data's units, that a 2-D table's density is
    drawn on (rows along y), spanning its training data with a margin, and their extent
    ``(x low, x high, y low, y high)``."""
    train = dataset.table.decode(dataset.train)
    low, high = np.quantile(train, 0.001, axis=0), np.quantile(train, 0.999, axis=0)
    margin = 0.15 * (high - low)
    low, high = low - margin, high + margin
    xs = np.linspace(low[0], high[0], PLANE_GRID)
    ys = np.linspace(low[1], high[1], PLANE_GRID)
    points = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)  # rows along y
    return points, (low[0], high[0], low[1], high[1])


def plane_picture(
    model: DensityModel,
    dataset: Dataset,
    out: str | os.PathLike,
    *,
    generator: torch.Generator | None = None,
    samples: torch.Tensor | None = None,
) -> Path:
    """A real 2-D model's density in the data's units beside its training data (and the
    true density where the data set knows it), on a grid spanning the data.

    Args:
        model: A model of ``dataset``'s two real columns.
        dataset: A table of two real columns (see [`is_plane`][densitykit.runs.is_plane]).
        out: The ``.png`` file to write.
        generator: Random source of the samples drawn when ``samples`` is not given.
        samples: The model's samples (model values) to show.
    """
    table = dataset.table
    train = table.decode(dataset.train)
    points, extent = plane_grid(dataset)
    values = table.encode(points, where="the grid")
    with torch.no_grad():
        log_density = torch.cat(
            [
                model.log_prob(values[i : i + 4096].to(model.device)).double().cpu()
                for i in range(0, len(values), 4096)
            ]
        )
        if samples is None:
            samples = model.sample(min(len(dataset.train), 20_000), generator=generator)
    density = (log_density + table.log_jacobian(values)).exp().numpy()
    truth = None
    if dataset.true_log_density is not None:
        truth = np.exp(dataset.true_log_density(points)).reshape(PLANE_GRID, PLANE_GRID)
    return plots.density_plane(
        train,
        density.reshape(PLANE_GRID, PLANE_GRID),
        extent,
        table.decode(samples),
        out,
        true_density=truth,
        title=f"{dataset.name}: density in the data's units",
    )


def label_grid(
    model: AutoregressiveModel,
    dataset: Dataset,
    per_label: int,
    out: str | os.PathLike,
    *,
    generator: torch.Generator | None = None,
) -> Path:
    """A picture of a label model's samples: one row of ``per_label`` samples per class.

    Args:
        model: A class-conditional model of ``dataset``'s images.
        dataset: Its image data set (for the shape and the class names).
        per_label: Samples in each row.
        out: The ``.png`` file to write.
        generator: Random source.

    Returns:
        The path written.
    """
    labels = torch.arange(model.num_labels).repeat_interleave(per_label)
    samples = model.sample(len(labels), generator=generator, context=labels)
    names = dataset.label_names or tuple(map(str, range(model.num_labels)))
    return plots.sample_grid(
        samples.cpu(),
        dataset.shape,
        out,
        num_values=dataset.num_values,
        columns=per_label,
        title="rows: " + ", ".join(names),
    )


def _batched_probs(
    model: AutoregressiveModel, points: torch.Tensor, batch: int = 4096
) -> torch.Tensor:
    return torch.cat(
        [model.log_prob(points[i : i + batch]).exp().cpu() for i in range(0, len(points), batch)]
    )


def require_finished(run_dir: str | os.PathLike) -> None:
    """Refuse a run that has no model yet because its training stopped before the end.

    Raises:
        CheckpointError: If the folder holds a training state but no checkpoint: the
            message says how to resume the run.
    """
    path = Path(run_dir)
    if not (path / CHECKPOINT_FILE).exists() and (path / STATE_FILE).is_file():
        raise CheckpointError(
            f"{path} is an unfinished run: it has {STATE_FILE} but no {CHECKPOINT_FILE} "
            f"yet; finish its training with: densitykit resume {path}"
        )


def load_run(
    run_dir: str | os.PathLike, *, device: str = "cpu", plugins: Sequence[str] = ()
) -> Run:
    """Load a run folder: its config, best model and data set.

    Nothing from the folder is imported or unpickled: the plug-ins a run needs are
    imported only if given here (``plugins``), and a run whose head, masks, activation
    or data set no imported module registers is refused with the plug-ins to pass.

    Args:
        run_dir: The run folder.
        device: Where to put the model.
        plugins: Modules or ``.py`` files to import first.

    Raises:
        CheckpointError: If the folder, config or checkpoint is missing, unsafe,
            corrupted, or does not match the data.
        PluginError: If the run needs a plug-in that was not given.
    """
    path = Path(run_dir)
    import_plugins(plugins)  # first: a plug-in family's config is read by its class
    config = read_run_config(path)
    require_registered(config.needed_names(), config.plugins, where=str(path))
    require_finished(path)
    model = load_checkpoint(path / CHECKPOINT_FILE, map_location=resolve_device(device))
    dataset = load_dataset(config.data.name, **config.data.options)
    _check_model_fits(path / CHECKPOINT_FILE, model.config, dataset)
    return Run(path=path, config=config, model=model, dataset=dataset)


def mixture_size(model: AutoregressiveModel, num_masks: int | None) -> int:
    """How many of a run's masks (orderings) a query mixes: its first ``num_masks``, or
    all of them for ``None``.

    Raises:
        ValueError: If ``num_masks`` is outside ``1..model.num_masks``.

    Example:
        >>> import densitykit as dk
        >>> model = dk.create_model("bernoulli", 4, hidden_sizes=(8,), masks="random", num_masks=3)
        >>> mixture_size(model, None), mixture_size(model, 2)
        (3, 2)
    """
    count = model.num_masks if num_masks is None else num_masks
    if not 1 <= count <= model.num_masks:
        raise ValueError(f"num_masks must be in 1..{model.num_masks} for this run, got {count}")
    return count


def require_capability(model: DensityModel, capability: str, what: str) -> None:
    """Refuse, in one line, a query the model's family does not answer.

    Raises:
        ValueError: If ``model`` lacks ``capability`` (its family and what it offers named).
    """
    if not model.can(capability):
        offered = ", ".join(sorted(model.capabilities)) or "none"
        raise ValueError(
            f"{what} needs {capability}, which a {model.family} model does not answer "
            f"(its optional queries: {offered})"
        )


def query_orderings(
    model: DensityModel,
    num_masks: int | None = None,
    draw_orderings: int | None = None,
    ordering_seed: int = 0,
) -> Any:
    """What a query of a run mixes (the model's
    [`query_mixture`][densitykit.family.DensityModel.query_mixture]): the model's first
    ``num_masks`` connectivities or orderings (all for ``None``), or ``draw_orderings``
    seeded ones drawn at inference; ``None`` for a model with no orderings to mix (the
    histogram).

    Args:
        model: A run's model.
        num_masks: How many of the model's own orderings (its first ones).
        draw_orderings: How many orderings to draw at inference instead.
        ordering_seed: Seed of the drawn orderings.

    Raises:
        ValueError: If both counts are given, ``num_masks`` is outside
            ``1..model.num_masks``, or orderings are drawn for a model with a fixed stack.

    Example:
        >>> import densitykit as dk
        >>> model = dk.create_model("bernoulli", 4, hidden_sizes=(8,), masks="any-order",
        ...                         num_masks=3)
        >>> len(query_orderings(model)), len(query_orderings(model, 2))
        (3, 2)
        >>> len(query_orderings(model, draw_orderings=10, ordering_seed=1))
        10
    """
    return model.query_mixture(num_masks, draw_orderings, ordering_seed)


def evaluate_run(
    run_dir: str | os.PathLike,
    *,
    num_masks: int | None = None,
    split: str = "test",
    device: str = "cpu",
    batch_size: int = 1000,
    plugins: Sequence[str] = (),
    draw_orderings: int | None = None,
    ordering_seed: int = 0,
) -> dict[str, Any]:
    """Evaluate a saved run on a split with the mixture of its first ``num_masks`` masks,
    or (a run trained over all orderings) of ``draw_orderings`` orderings drawn at
    inference with ``ordering_seed`` (see [`query_orderings`][densitykit.runs.query_orderings])."""
    run = load_run(run_dir, device=device, plugins=plugins)
    splits = run.dataset.splits()
    if split not in splits:
        raise ValueError(f"split must be one of {sorted(splits)}, got {split!r}")
    drawn = None
    if draw_orderings is not None:
        drawn = query_orderings(run.model, num_masks, draw_orderings, ordering_seed)
    count = len(drawn) if drawn is not None else mixture_size(run.model, num_masks)
    nll = evaluate(
        run.model,
        splits[split],
        batch_size=batch_size,
        num_masks=num_masks,
        context=split_context(run.model, run.dataset, split),
        connectivities=drawn,
    )
    nll -= table_log_jacobian(run.dataset, split)
    return {
        **describe_table(run.dataset),
        "split": split,
        "condition": "label" if run.model.num_labels else None,
        "num_masks": count,
        "drawn_orderings_seed": None if drawn is None else ordering_seed,
        "nll_nats": nll,
        "nats_per_dim": per_dimension(nll, run.dataset.dim)[0],
        "bits_per_dim": per_dimension(nll, run.dataset.dim)[1],
        "true_entropy_nats": run.dataset.true_entropy_nats,
    }


def sample_run(
    run_dir: str | os.PathLike,
    num_samples: int,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    device: str = "cpu",
    overwrite: bool = False,
    plugins: Sequence[str] = (),
    label: int | None = None,
) -> Path:
    """Draw samples from a saved run into a ``.npy`` array, a ``.png`` picture, or (a
    table's run) a ``.csv`` file with the columns' names.

    A table's samples are in the data's own units: real columns un-standardised,
    categorical codes given back as their levels (``.npy``: float64).

    A class-conditional run draws ``num_samples`` samples of class ``label``; without
    a label its picture has one row of ``num_samples`` samples per class, and a
    ``.npy`` file needs a label.

    A ``.npy`` file is written [`SAMPLE_CHUNK`][densitykit.runs.SAMPLE_CHUNK] samples at
    a time, so memory does not grow with ``num_samples``; a request whose file would not
    fit on the disk is refused before sampling, stating the size. The output is written
    to a temporary file and renamed, and an existing file is replaced only with
    ``overwrite``.

    Raises:
        ValueError: On a bad count or file name, a label for an unconditional run,
            a label out of range, or a ``.npy`` file from a label run without a label.
        ResourceError: If the output cannot fit.
        FileExistsError: If ``out`` exists and ``overwrite`` is false.
    """
    out = check_output_file(out, [".npy", ".png", ".csv"], overwrite=overwrite)
    num_samples = _check_count(num_samples)
    seed = check_seed(seed)
    if out.is_dir():
        raise IsADirectoryError(f"{out} is a folder; give a file name ending in {out.suffix}")
    run = load_run(run_dir, device=device, plugins=plugins)
    table = run.dataset.table
    if out.suffix == ".csv" and table is None:
        raise ValueError(f"a .csv file holds a table's samples; {run.path} is not a table's run")
    context = _label_context(run, label, out)
    dim = run.dataset.dim
    out.parent.mkdir(parents=True, exist_ok=True)
    generator = torch.Generator().manual_seed(seed)
    if out.suffix == ".csv":
        chunks = (
            table.decode(run.model.sample(min(SAMPLE_CHUNK, num_samples - at), generator=generator))
            for at in range(0, num_samples, SAMPLE_CHUNK)
        )
        write_table(out, chunks, table.names)
        return out
    if out.suffix == ".npy":
        size = num_samples * dim * 8 + 128
        free = shutil.disk_usage(out.parent).free
        if size > free:
            raise ResourceError(
                f"{num_samples:,} samples of {dim} variables need {format_bytes(size)} in "
                f"{out.name}, but the disk has {format_bytes(free)} free; ask for fewer"
            )
        decode = None if table is None else table.decode
        _write_samples_npy(run.model, num_samples, out, generator, context, decode)
        return out
    if num_samples > MAX_PICTURE_SAMPLES:
        raise ResourceError(
            f"a picture shows at most {MAX_PICTURE_SAMPLES:,} samples, got {num_samples:,}; "
            "write a .npy file for more"
        )
    if run.model.num_labels and context is None:
        if num_samples * run.model.num_labels > MAX_PICTURE_SAMPLES:
            raise ResourceError(
                f"a picture shows at most {MAX_PICTURE_SAMPLES:,} samples, got "
                f"{num_samples:,} for each of {run.model.num_labels} labels"
            )
        label_grid(run.model, run.dataset, num_samples, out, generator=generator)
    else:
        samples = run.model.sample(num_samples, generator=generator, context=context).cpu()
        _picture(run, samples, out)  # pictures are written atomically
    return out


def _check_count(num_samples: Any) -> int:
    return check_int(num_samples, "num_samples", minimum=0)


def _label_context(run: Run, label: int | None, out: Path) -> torch.Tensor | None:
    """The context tensor of ``--label``, checked against the run (``None``: no label)."""
    model = run.model
    if label is None:
        if model.num_labels and out.suffix == ".npy":
            raise ValueError(
                f"{run.path} is class-conditional ({model.num_labels} labels); a .npy file "
                f"holds samples of one class: pass --label in 0..{model.num_labels - 1}"
            )
        return None
    if not model.num_labels:
        raise ValueError(f"{run.path} is not class-conditional; sample it without --label")
    label = check_int(label, "label")
    if not 0 <= label < model.num_labels:
        names = run.dataset.label_names or ()
        shown = ", ".join(f"{i}={n}" for i, n in enumerate(names)) if names else ""
        raise ValueError(
            f"label must be in 0..{model.num_labels - 1}"
            + (f" ({shown})" if shown else "")
            + f", got {label}"
        )
    return torch.tensor(label)


def _write_samples_npy(
    model: AutoregressiveModel,
    num_samples: int,
    out: Path,
    generator: torch.Generator,
    context: torch.Tensor | None = None,
    decode: Any = None,
) -> None:
    """Samples into a ``.npy`` file (``decode``: a table's model values to its rows)."""

    def draw(count: int) -> np.ndarray:
        samples = model.sample(count, generator=generator, context=context)
        return samples.cpu().numpy() if decode is None else decode(samples)

    with atomic_path(out) as tmp:
        if num_samples <= SAMPLE_CHUNK:  # one draw: the same samples as model.sample
            with open(tmp, "wb") as handle:
                np.save(handle, draw(num_samples))
        else:
            array = np.lib.format.open_memmap(
                tmp,
                mode="w+",
                dtype=np.int64 if decode is None else np.float64,
                shape=(num_samples, model.dim),
            )
            for start in range(0, num_samples, SAMPLE_CHUNK):
                count = min(SAMPLE_CHUNK, num_samples - start)
                array[start : start + count] = draw(count)
            array.flush()
            del array


def _picture(run: Run, samples: torch.Tensor, out: Path) -> Path:
    dataset = run.dataset
    if is_plane(dataset):
        return plane_picture(run.model, dataset, out, samples=samples)
    if dataset.kind == "image":
        return plots.sample_grid(samples, dataset.shape, out, num_values=dataset.num_values)
    if dataset.kind == "2d":
        k = dataset.num_values
        grid = torch.cartesian_prod(torch.arange(k), torch.arange(k))
        probs = _batched_probs(run.model, grid).reshape(k, k)
        return plots.density_2d(dataset.train, probs, samples, out)
    if dataset.kind != "1d":
        raise ValueError(f"a {dataset.kind} data set has no picture; write a .npy file instead")
    probs = torch.bincount(samples[:, 0], minlength=dataset.num_values).double() / max(
        len(samples), 1
    )
    return plots.histogram_1d(dataset.train, probs, out, true_probs=dataset.true_probs)
