"""Score new data under a trained model: the log-likelihood of every example.

[`score`][densitykit.scoring.score] scores an array or tensor with a model in batches;
[`score_data`][densitykit.scoring.score_data] does it in one call from a run folder and
a data file (``.npy``, ``.npz``, ``.csv``, ``.tsv``, a folder of PNG images) or a
registered data set's split, with the same input checks as training. A ``.npy`` file is
read in batches from disk (memory-mapped), so it may be larger than memory.

Example:
    >>> import torch
    >>> from densitykit.model import create_model
    >>> model = create_model("bernoulli", dim=3, num_values=2, hidden_sizes=(8,))
    >>> scores = Scores(score(model, torch.tensor([[0, 1, 1], [1, 1, 0]])), dim=3)
    >>> scores.log_prob.shape, bool((scores.log_prob < 0).all())
    ((2,), True)
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from densitykit.atomic import atomic_path
from densitykit.checkpoint import load_checkpoint
from densitykit.checks import check_int, check_output_file
from densitykit.data import DATASETS, load_dataset
from densitykit.data.files import (
    check_values,
    is_data_file,
    read_arrays,
    read_npy_header,
    read_table,
)
from densitykit.data.tables import Table
from densitykit.errors import DataError
from densitykit.family import DensityModel
from densitykit.plugins import import_plugins, require_registered
from densitykit.runfolder import CHECKPOINT_FILE
from densitykit.runs import read_run_config, require_finished
from densitykit.train import resolve_device

__all__ = [
    "SCORE_COLUMNS",
    "Scores",
    "auroc",
    "load_model",
    "read_scoring_data",
    "read_table_rows",
    "run_table",
    "score",
    "score_data",
]

SCORE_COLUMNS: tuple[str, ...] = ("log_prob_nats", "nll_nats_per_dim", "nll_bits_per_dim")
"""The columns of a scores CSV, after ``index``: the log-likelihood of the example in
nats, and its negative per dimension in nats and in bits."""


@dataclass
class Scores:
    """Per-example log-likelihoods of ``dim``-variable examples.

    Attributes:
        log_prob: ``(N,)`` ``float64`` log-likelihoods in nats.
        dim: $D$, the variables of one example.
    """

    log_prob: np.ndarray
    dim: int

    @property
    def nll_nats_per_dim(self) -> np.ndarray:
        """$-\\log p(x) / D$ per example."""
        return -self.log_prob / self.dim

    @property
    def nll_bits_per_dim(self) -> np.ndarray:
        """$-\\log_2 p(x) / D$ per example."""
        return -self.log_prob / self.dim / math.log(2)

    def summary(self) -> str:
        """One line: the count, the mean NLL in nats, nats/dim and bits/dim, and the range."""
        nll = -float(self.log_prob.mean())
        return (
            f"{len(self.log_prob):,} examples: mean NLL {nll:.4f} nats "
            f"({nll / self.dim:.5f} nats/dim, {nll / self.dim / math.log(2):.5f} bits/dim); "
            f"log-likelihood from {float(self.log_prob.min()):.4f} "
            f"to {float(self.log_prob.max()):.4f} nats"
        )

    def save(self, path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write a ``.csv`` (``index`` and [`SCORE_COLUMNS`][densitykit.scoring.SCORE_COLUMNS])
        or a ``.npy`` (the ``(N,)`` log-likelihoods in nats); through a temporary file.

        Raises:
            ValueError: On another file ending.
            FileExistsError: If ``path`` exists and ``overwrite`` is false.
        """
        path = check_output_file(
            path, [".csv", ".npy"], overwrite=overwrite, name="the scores file"
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            if path.suffix == ".npy":
                np.save(handle, self.log_prob)
            else:
                table = np.column_stack(
                    [
                        np.arange(len(self.log_prob)),
                        self.log_prob,
                        self.nll_nats_per_dim,
                        self.nll_bits_per_dim,
                    ]
                )
                np.savetxt(
                    handle,
                    table,
                    delimiter=",",
                    header=",".join(("index", *SCORE_COLUMNS)),
                    comments="",
                    fmt=["%d", "%.6f", "%.6f", "%.6f"],
                )
        return path


def _flat(array: np.ndarray, dim: int, where: str) -> np.ndarray:
    per_example = math.prod(array.shape[1:]) if array.ndim > 1 else 1
    if per_example != dim:
        raise DataError(
            f"{where}: the model expects examples of {dim} values, got examples of shape "
            f"{array.shape[1:] or '(1,)'} ({per_example} values)"
        )
    return array.reshape(len(array), dim)


def score(
    model: DensityModel,
    data: Any,
    *,
    batch_size: int = 1000,
    num_masks: int | None = None,
    where: str = "data",
    on_batch: Callable[[int, int], None] | None = None,
    table: Table | None = None,
) -> np.ndarray:
    """Log-likelihood in nats of every example of ``data`` under ``model``.

    With a ``table`` (a table's run), ``data`` are raw rows in the data's units: they are
    encoded with the run's columns and training statistics, and the log-likelihoods are
    in the data's units (the standardisation's log-Jacobian added; see
    [`Table.log_jacobian`][densitykit.data.tables.Table.log_jacobian]).

    Args:
        model: A trained model.
        data: ``(N, D)`` (or ``(N, H, W)``) non-negative integers: a tensor, an array,
            or a memory-mapped array (read one batch at a time).
        batch_size: Examples per forward pass.
        num_masks: Score with the mixture of the first ``num_masks`` masks (all by default).
        where: What the data are, for error messages.
        on_batch: Called with ``(examples done, total)`` after each batch.
        table: The run's table of columns, for raw rows of a table.

    Returns:
        ``(N,)`` ``float64`` log-likelihoods.

    Raises:
        DataError: If the values are not integers in the model's ``0..K-1`` or the
            examples do not have the model's number of values.
        ValueError: If ``batch_size`` is not a positive integer, ``num_masks`` is out of
            range, or the model is conditional
            (scoring takes no context: score it with ``model.log_prob(x, context=c)``).
    """
    batch_size = check_int(batch_size, "batch_size", minimum=1)
    if model.is_conditional:
        raise ValueError(
            "this model is conditional, p(x | context); scoring files takes no context, so "
            "score it in Python with model.log_prob(x, context=...)"
        )
    total_masks = model.num_masks
    count = total_masks if num_masks is None else num_masks
    if not isinstance(count, int) or not 1 <= count <= total_masks:
        raise ValueError(f"num_masks must be in 1..{total_masks} for this model, got {num_masks!r}")
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu().numpy()
    if not isinstance(data, np.ndarray):
        data = np.asarray(data)
    if data.ndim == 0 or len(data) == 0:
        raise DataError(f"{where}: expected at least one example, got shape {data.shape}")
    if table is not None:
        data = table.encode(data, where=where)
    out = np.empty(len(data), dtype=np.float64)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(data), batch_size):
                if table is not None:
                    values = data[start : start + batch_size].to(model.device)
                    log_prob = model.evaluation_log_prob(values, num_masks=count).double().cpu()
                    log_prob += table.log_jacobian(values)
                    out[start : start + len(values)] = log_prob.numpy()
                    if on_batch is not None:
                        on_batch(start + len(values), len(data))
                    continue
                batch = _flat(check_values(data[start : start + batch_size], where), model.dim,
                              where)  # fmt: skip
                high = int(batch.max())
                if high >= model.num_values:
                    row = start + int(np.argmax(batch.max(axis=1)))
                    raise DataError(
                        f"{where}: the model takes values 0..{model.num_values - 1}, "
                        f"got {high} at example {row}"
                    )
                if not batch.flags.writeable:  # a memory-mapped file's rows
                    batch = batch.copy()
                values = torch.from_numpy(batch).to(model.device)
                log_prob = model.evaluation_log_prob(values, num_masks=count)
                out[start : start + len(batch)] = log_prob.double().cpu().numpy()
                if on_batch is not None:
                    on_batch(start + len(batch), len(data))
    finally:
        model.train(was_training)
    return out


def load_model(
    run_dir: str | os.PathLike[str], *, device: str = "cpu", plugins: Sequence[str] = ()
) -> DensityModel:
    """Load a run folder's best model only (not its data set), as safely as
    [`load_run`][densitykit.runs.load_run]: nothing from the folder is imported."""
    path = Path(run_dir)
    import_plugins(plugins)  # first: a plug-in family's config is read by its class
    config = read_run_config(path)
    require_registered(config.needed_names(), config.plugins, where=str(path))
    require_finished(path)
    return load_checkpoint(path / CHECKPOINT_FILE, map_location=resolve_device(device))


def read_scoring_data(
    data: str | os.PathLike[str], *, split: str | None = None, **options: Any
) -> tuple[np.ndarray, str]:
    """The examples to score: a data file's (a ``.npy`` memory-mapped) or a data set's split.

    Args:
        data: A data file or folder of PNG images, or a registered data set name.
        split: For a data set, ``train``, ``val`` or ``test`` (default ``test``); for an
            ``.npz`` file with several arrays, the array's name.
        **options: The data set's options (not for files).

    Returns:
        ``(examples, description)``.

    Raises:
        DataError: If the file cannot be read, or ``split`` names nothing there.
    """
    text = os.fspath(data)
    path = Path(text).expanduser()
    # A registered name wins over a file of that name, as with `densitykit fit --data`.
    if text not in DATASETS and (is_data_file(path) or path.exists()):
        if options:
            raise ValueError(f"{path}: data set options {sorted(options)} do not apply to a file")
        if path.suffix.lower() == ".npy" and path.is_file():
            if path.stat().st_size == 0:
                raise DataError(f"{path}: expected a NumPy .npy array, got an empty file")
            with path.open("rb") as handle:
                read_npy_header(handle, str(path))
            array = np.load(path, mmap_mode="r", allow_pickle=False)
            if split not in (None, "data"):
                raise DataError(f"{path}: a .npy file holds one array, got split={split!r}")
            return array, str(path)
        arrays = read_arrays(path)
        if split is None and len(arrays) > 1:
            raise DataError(
                f"{path}: the file holds arrays {sorted(arrays)}; choose one with --split"
            )
        name = split or next(iter(arrays))
        if name not in arrays:
            raise DataError(f"{path}: expected an array named {name!r}, got {sorted(arrays)}")
        return arrays[name], str(path) if len(arrays) == 1 else f"{path} ({name})"
    dataset = load_dataset(text, **options)
    split = split or "test"
    splits = dataset.splits()
    if split not in splits:
        raise ValueError(f"split must be one of {sorted(splits)}, got {split!r}")
    return splits[split].numpy(), f"{text} {split}"


def score_data(
    run_dir: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    split: str | None = None,
    data_options: dict[str, Any] | None = None,
    batch_size: int = 1000,
    num_masks: int | None = None,
    device: str = "cpu",
    plugins: Sequence[str] = (),
    on_batch: Callable[[int, int], None] | None = None,
) -> Scores:
    """Score a data file or a data set's split with a run folder's model, in one call.

    Example:
        ``densitykit.scoring.score_data("runs/mnist", "fashion-mnist").save("f.csv")``
        scores the Fashion-MNIST test set with an MNIST model.

    Raises:
        DataError: If the data do not fit the model (values, number of variables).
        CheckpointError: If the run folder cannot be loaded.
    """
    model = load_model(run_dir, device=device, plugins=plugins)
    table = run_table(run_dir)
    if table is None:
        examples, where = read_scoring_data(data, split=split, **(data_options or {}))
    else:
        examples, where = read_table_rows(data, table, split=split, **(data_options or {}))
    log_prob = score(
        model, examples, batch_size=batch_size, num_masks=num_masks, where=where,
        on_batch=on_batch, table=table,
    )  # fmt: skip
    return Scores(log_prob, model.dim)


def run_table(run_dir: str | os.PathLike[str]) -> Table | None:
    """The table of columns a run was trained on (its recorded columns and training
    statistics), or ``None`` for a run of other data."""
    recorded = read_run_config(run_dir).data.options.get("table")
    return None if recorded is None else Table.from_dict(recorded)


def read_table_rows(
    data: str | os.PathLike[str],
    table: Table,
    *,
    split: str | None = None,
    allow_missing: bool = False,
    **options: Any,
) -> tuple[np.ndarray, str]:
    """A table's raw rows (data units) to score or impute with a run of ``table``: a
    table file's (its columns checked against the run's) or a data set's split.

    Args:
        data: A ``.csv``/``.tsv``/``.npy``/``.npz`` file, or a registered data set name.
        table: The run's table.
        split: As in [`read_scoring_data`][densitykit.scoring.read_scoring_data].
        allow_missing: Accept NaN (empty cells); otherwise they are refused here.
        **options: The data set's options (not for files).

    Raises:
        DataError: If the file's columns differ from the run's (names or count), or a
            value is missing where it is required.
    """
    text = os.fspath(data)
    path = Path(text).expanduser()
    if text in DATASETS or not (is_data_file(path) or path.exists()):
        dataset = load_dataset(text, **options)
        if dataset.table is None:
            raise DataError(f"{text}: the run models a table of columns, but {text} is not one")
        split = split or "test"
        if split not in dataset.splits():
            raise ValueError(f"split must be one of {sorted(dataset.splits())}, got {split!r}")
        table.check_same_columns(dataset.table, text)
        return dataset.table.decode(dataset.splits()[split]), f"{text} {split}"
    if options:
        raise ValueError(f"{path}: data set options {sorted(options)} do not apply to a file")
    arrays, names = read_table(path)
    if split is None and len(arrays) > 1:
        raise DataError(f"{path}: the file holds arrays {sorted(arrays)}; choose one with --split")
    name = split or next(iter(arrays))
    if name not in arrays:
        raise DataError(f"{path}: expected an array named {name!r}, got {sorted(arrays)}")
    rows = arrays[name]
    table.check_names(names, str(path))
    if rows.shape[1] != table.dim:
        raise DataError(
            f"{path}: the run was trained on {table.dim} columns ({', '.join(table.names)}), "
            f"got {rows.shape[1]}"
        )
    if not allow_missing and np.isnan(rows).any():
        table.encode(rows, where=str(path))  # names the column and row
    return rows, str(path)


def auroc(negatives: Any, positives: Any) -> float:
    """Area under the ROC curve of a score that should be higher for ``positives``.

    With NLLs as scores and out-of-distribution examples as positives, it is the
    probability that a random out-of-distribution example gets a higher NLL than a random
    in-distribution one (ties count half): 1 separates perfectly, 0.5 is chance, below
    0.5 the model prefers the out-of-distribution data. Computed by ranks (Mann-Whitney U).

    Example:
        >>> auroc([1.0, 2.0], [3.0, 4.0]), auroc([1.0, 3.0], [2.0, 3.0])
        (1.0, 0.625)
    """
    from scipy.stats import rankdata  # imported here: scipy.stats takes a second to import

    negatives = np.asarray(negatives, dtype=np.float64).ravel()
    positives = np.asarray(positives, dtype=np.float64).ravel()
    if not len(negatives) or not len(positives):
        raise ValueError("auroc needs at least one negative and one positive score")
    ranks = rankdata(np.concatenate([negatives, positives]))[len(negatives) :]
    count = len(positives)
    return float((ranks.sum() - count * (count + 1) / 2) / (count * len(negatives)))
