"""Run folders: train a model on a data set and keep everything needed to use it again.

This is the Python API behind ``densitykit fit / eval / sample``. A run folder holds

| file | content |
| --- | --- |
| ``config.json`` | data set name and options, model config, train config, plug-ins |
| ``checkpoint.pt`` | the best weights with their model config (pickle-free) |
| ``train_state.pt`` | the loop state after the last completed epoch (for ``--resume``) |
| ``metrics.jsonl`` | one JSON line per completed epoch |
| ``metrics.json`` | test NLL (nats per example, per dim, bits per dim) and run facts |
| ``*.png`` | learning curves, and samples / density / histogram pictures |
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import densitykit
from densitykit import plots
from densitykit.checkpoint import (
    atomic_write,
    load_checkpoint,
    load_object,
    read_json,
    save_checkpoint,
    save_object,
    write_json,
)
from densitykit.data import Dataset, load_dataset
from densitykit.devices import resolve_device
from densitykit.distributed import is_main, local_main_first, on_main
from densitykit.errors import CheckpointError, DensitykitError
from densitykit.model import AutoregressiveModel, ModelConfig, create_model
from densitykit.train import (
    Callback,
    TrainConfig,
    TrainResult,
    TrainState,
    evaluate,
    fit,
)

__all__ = [
    "Run",
    "RunConfig",
    "default_head",
    "draw_pictures",
    "evaluate_run",
    "fit_run",
    "import_plugins",
    "load_run",
    "resume_run",
    "sample_run",
]

CONFIG_FILE = "config.json"
CHECKPOINT_FILE = "checkpoint.pt"
STATE_FILE = "train_state.pt"
METRICS_LOG = "metrics.jsonl"
METRICS_FILE = "metrics.json"
TIMING_KEYS = ("train_seconds", "seconds")


@dataclass
class RunConfig:
    """What a run trains: data, model options and training hyperparameters.

    Attributes:
        data: Registered data set name.
        data_options: Keyword options of the data set (``seed``, ``data_dir``, ...).
        head: Head name; ``None`` picks one for the data (``bernoulli`` for binary
            data, ``categorical`` otherwise).
        hidden_sizes: MADE hidden layer widths.
        masks: Mask-builder name.
        num_masks: Number of masks (``None``: the builder's default).
        activation: Hidden activation.
        direct_connections: Masked input-to-output weights.
        head_options: Extra head options (``num_components``, ``one_hot``, ...).
        mask_options: Extra mask-builder options (``ordering``, ``spread``).
        train: Training hyperparameters; ``train.seed`` also seeds the masks and weights.
        plugins: Modules or ``.py`` files imported first (user heads, masks, data sets).
    """

    data: str = "2d-smiley"
    data_options: dict[str, Any] = field(default_factory=dict)
    head: str | None = None
    hidden_sizes: tuple[int, ...] = (256, 256)
    masks: str = "natural"
    num_masks: int | None = None
    activation: str = "relu"
    direct_connections: bool = False
    head_options: dict[str, Any] = field(default_factory=dict)
    mask_options: dict[str, Any] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    plugins: list[str] = field(default_factory=list)


@dataclass
class Run:
    """A loaded run folder."""

    path: Path
    config: dict[str, Any]
    model: AutoregressiveModel
    dataset: Dataset


def import_plugins(plugins: Sequence[str]) -> None:
    """Import user modules (dotted names or ``.py`` paths) so their registrations happen.

    Raises:
        DensitykitError: If a plug-in cannot be imported.
    """
    for plugin in plugins:
        try:
            if plugin.endswith(".py"):
                path = Path(plugin).resolve()
                name = f"densitykit_plugin_{path.stem}"
                if name in sys.modules:
                    continue
                spec = importlib.util.spec_from_file_location(name, path)
                if spec is None or spec.loader is None or not path.is_file():
                    raise FileNotFoundError(f"no such file {path}")
                module = importlib.util.module_from_spec(spec)
                sys.modules[name] = module
                try:
                    spec.loader.exec_module(module)
                except BaseException:
                    del sys.modules[name]
                    raise
            else:
                importlib.import_module(plugin)
        except Exception as error:  # report any import failure as one line
            raise DensitykitError(f"cannot import plug-in {plugin!r}: {error}") from error


def default_head(dataset: Dataset) -> str:
    """``bernoulli`` for binary data, ``categorical`` otherwise."""
    return "bernoulli" if dataset.num_values == 2 else "categorical"


class _RunFolderWriter(Callback):
    """Writes the metrics log and the resumable state after every epoch."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        # The log is rewritten from the state's history, so it always matches the
        # saved state: a crash between the two writes loses or duplicates nothing.
        save_object(self.path / STATE_FILE, state.to_dict())
        lines = "".join(json.dumps(r) + "\n" for r in state.history)
        atomic_write(self.path / METRICS_LOG, lambda handle: handle.write(lines.encode()))


def _check_out_dir(path: Path, *, overwrite: bool) -> None:
    if path.exists() and not path.is_dir():
        raise DensitykitError(f"{path} exists and is not a folder")
    if path.is_dir() and any(path.iterdir()):
        if not overwrite:
            raise DensitykitError(
                f"run folder {path} already exists; pass --overwrite to replace it or "
                "--resume to continue it"
            )
        shutil.rmtree(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise DensitykitError(
            f"cannot write to run folder {path}: {error.strerror or error}"
        ) from None


def _build(config: RunConfig) -> tuple[Dataset, AutoregressiveModel]:
    import_plugins(config.plugins)
    with local_main_first():  # one download per machine in a distributed run
        dataset = load_dataset(config.data, **config.data_options)
    head = config.head or default_head(dataset)
    if head == "bernoulli" and dataset.num_values != 2:
        raise DensitykitError(
            f"the bernoulli head needs binary data, but {config.data!r} has {dataset.num_values} "
            "values per variable; use --head categorical or logistic-mixture (or binarize the data)"
        )
    torch.manual_seed(config.train.seed)
    model = create_model(
        head,
        dataset.dim,
        dataset.num_values,
        hidden_sizes=tuple(config.hidden_sizes),
        masks=config.masks,
        num_masks=config.num_masks,
        seed=config.train.seed,
        activation=config.activation,
        direct_connections=config.direct_connections,
        mask_options=config.mask_options,
        **config.head_options,
    )
    return dataset, model


def _config_dict(config: RunConfig, dataset: Dataset, model: AutoregressiveModel) -> dict[str, Any]:
    return {
        "densitykit_version": densitykit.__version__,
        "data": {"name": config.data, "options": dataset.options},
        "model": model.config.to_dict(),
        "train": config.train.to_dict(),
        # A .py plug-in is stored by absolute path: the run must load from any folder.
        "plugins": [
            str(Path(plugin).resolve()) if plugin.endswith(".py") else plugin
            for plugin in config.plugins
        ],
    }


def fit_run(
    config: RunConfig,
    out: str | os.PathLike,
    *,
    overwrite: bool = False,
    callbacks: Sequence[Callback] = (),
) -> dict[str, Any]:
    """Train a new run into folder ``out`` and return its ``metrics.json`` content.

    In a distributed run (under ``torchrun``; see
    [`densitykit.distributed`][densitykit.distributed]) every process trains and returns
    the metrics; only rank 0 writes the folder and calls ``callbacks``.

    Raises:
        DensitykitError: If ``out`` exists (without ``overwrite``) or cannot be written,
            or the head does not suit the data.
        ValueError: On bad options (unknown names list the registered ones).
    """
    path = Path(out)
    dataset, model = _build(config)

    def prepare() -> None:
        _check_out_dir(path, overwrite=overwrite)
        write_json(path / CONFIG_FILE, _config_dict(config, dataset, model))

    on_main(prepare)
    return _train_and_report(path, model, dataset, config.train, None, callbacks)


def resume_run(
    out: str | os.PathLike,
    *,
    epochs: int | None = None,
    lr: float | None = None,
    callbacks: Sequence[Callback] = (),
) -> dict[str, Any]:
    """Continue a run from its last completed epoch (weights, optimizer, RNG, early stopping).

    Args:
        out: The run folder.
        epochs: A new maximum number of epochs, if given.
        lr: A new learning rate (e.g. after a non-finite loss), if given.

    Raises:
        CheckpointError: If the folder has no config or resumable state.
    """
    path = Path(out)
    saved = read_json(path / CONFIG_FILE)
    run_config = _run_config_from_dict(saved, path)
    updates = {k: v for k, v in (("epochs", epochs), ("lr", lr)) if v is not None}
    train_config = TrainConfig.from_dict({**saved["train"], **updates})
    run_config.train = train_config
    dataset, model = _build(run_config)
    _check_model_fits(path / CONFIG_FILE, model.config, dataset)
    state = None
    if (path / STATE_FILE).exists():
        state = TrainState.from_dict(load_object(path / STATE_FILE))
    if updates:
        saved["train"] = train_config.to_dict()
        on_main(lambda: write_json(path / CONFIG_FILE, saved))
    return _train_and_report(path, model, dataset, train_config, state, callbacks)


def _run_config_from_dict(saved: dict[str, Any], path: Path) -> RunConfig:
    try:
        model = saved["model"]
        return RunConfig(
            data=saved["data"]["name"],
            data_options=dict(saved["data"]["options"]),
            head=model["head"],
            hidden_sizes=tuple(model["hidden_sizes"]),
            masks=model["masks"],
            num_masks=model["num_masks"],
            activation=model["activation"],
            direct_connections=model["direct_connections"],
            head_options=dict(model["head_options"]),
            mask_options=dict(model["mask_options"]),
            train=TrainConfig.from_dict(saved["train"]),
            plugins=list(saved.get("plugins", [])),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f"{path / CONFIG_FILE}: malformed run config ({error})") from None


def _check_model_fits(where: Path, config: ModelConfig, dataset: Dataset) -> None:
    if (config.dim, config.num_values) != (dataset.dim, dataset.num_values):
        raise CheckpointError(
            f"{where}: the model expects {config.dim} variables with {config.num_values} values, "
            f"but the data set has {dataset.dim} variables with {dataset.num_values} values"
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
    )
    best = next((r for r in result.history if r["epoch"] == result.best_epoch), None)
    entropy = dataset.true_entropy_nats
    return {
        "dataset": dataset.name,
        "head": model.config.head if model.config else type(model.head).__name__,
        "dim": dataset.dim,
        "num_values": dataset.num_values,
        "test_nll_nats": test_nll,
        "test_nats_per_dim": test_nll / dataset.dim,
        "test_bits_per_dim": test_nll / dataset.dim / math.log(2),
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
        "train_seconds": sum(r["seconds"] for r in result.history),
    }


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
            samples = model.sample(64, generator=generator)
            written.append(
                plots.sample_grid(
                    samples,
                    dataset.shape,
                    path / "samples.png",
                    num_values=dataset.num_values,
                    columns=8,
                    title=f"{model.config.head} MADE samples",
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
        elif dataset.kind == "2d":
            k = dataset.num_values
            grid = torch.cartesian_prod(torch.arange(k), torch.arange(k))
            probs = _batched_probs(model, grid).reshape(k, k)
            samples = model.sample(len(dataset.train), generator=generator)
            written.append(plots.density_2d(dataset.train, probs, samples, path / "density.png"))
        else:
            probs = _batched_probs(model, torch.arange(dataset.num_values)[:, None])
            written.append(
                plots.histogram_1d(
                    dataset.train, probs, path / "histogram.png", true_probs=dataset.true_probs
                )
            )
    return written


def _batched_probs(
    model: AutoregressiveModel, points: torch.Tensor, batch: int = 4096
) -> torch.Tensor:
    return torch.cat(
        [model.log_prob(points[i : i + batch]).exp().cpu() for i in range(0, len(points), batch)]
    )


def load_run(run_dir: str | os.PathLike, *, device: str = "cpu") -> Run:
    """Load a run folder: its config, best model and data set.

    Raises:
        CheckpointError: If the folder, config or checkpoint is missing, unsafe,
            corrupted, or does not match the data.
    """
    path = Path(run_dir)
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such run folder")
    saved = read_json(path / CONFIG_FILE)
    import_plugins(saved.get("plugins", []))
    model = load_checkpoint(path / CHECKPOINT_FILE, map_location=resolve_device(device))
    try:
        dataset = load_dataset(saved["data"]["name"], **saved["data"]["options"])
    except (KeyError, TypeError) as error:
        raise CheckpointError(f"{path / CONFIG_FILE}: malformed data section ({error})") from None
    _check_model_fits(path / CHECKPOINT_FILE, model.config, dataset)
    return Run(path=path, config=saved, model=model, dataset=dataset)


def evaluate_run(
    run_dir: str | os.PathLike,
    *,
    num_masks: int | None = None,
    split: str = "test",
    device: str = "cpu",
    batch_size: int = 1000,
) -> dict[str, Any]:
    """Evaluate a saved run on a split with the mixture of its first ``num_masks`` masks."""
    run = load_run(run_dir, device=device)
    splits = run.dataset.splits()
    if split not in splits:
        raise ValueError(f"split must be one of {sorted(splits)}, got {split!r}")
    nll = evaluate(run.model, splits[split], batch_size=batch_size, num_masks=num_masks)
    return {
        "split": split,
        "num_masks": num_masks or run.model.num_masks,
        "nll_nats": nll,
        "nats_per_dim": nll / run.dataset.dim,
        "bits_per_dim": nll / run.dataset.dim / math.log(2),
        "true_entropy_nats": run.dataset.true_entropy_nats,
    }


def sample_run(
    run_dir: str | os.PathLike,
    num_samples: int,
    out: str | os.PathLike,
    *,
    seed: int = 0,
    device: str = "cpu",
) -> Path:
    """Draw samples from a saved run into a ``.npy`` array or a ``.png`` picture."""
    out = Path(out)
    if out.suffix not in (".npy", ".png"):
        raise ValueError(f"the output file must end in .npy or .png, got {out.name!r}")
    run = load_run(run_dir, device=device)
    samples = run.model.sample(num_samples, generator=torch.Generator().manual_seed(seed)).cpu()
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        np.save(out, samples.numpy())
        return out
    dataset = run.dataset
    if dataset.kind == "image":
        return plots.sample_grid(samples, dataset.shape, out, num_values=dataset.num_values)
    if dataset.kind == "2d":
        k = dataset.num_values
        grid = torch.cartesian_prod(torch.arange(k), torch.arange(k))
        probs = _batched_probs(run.model, grid).reshape(k, k)
        return plots.density_2d(dataset.train, probs, samples, out)
    probs = torch.bincount(samples[:, 0], minlength=dataset.num_values).double() / max(
        num_samples, 1
    )
    return plots.histogram_1d(dataset.train, probs, out, true_probs=dataset.true_probs)
