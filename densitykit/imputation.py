r"""Imputation of a table's missing cells, and conditional scores of its columns.

The table counterpart of [`densitykit.inpainting`][densitykit.inpainting], behind
``densitykit impute`` and ``densitykit eval --observed COLUMNS`` for a run trained on a
table of real or mixed columns (see [`densitykit.data.tables`][densitykit.data.tables]):

* [`impute`][densitykit.imputation.impute]: every empty cell (NaN) drawn from the
  model's $p(x_\text{missing} \mid x_\text{observed})$ with its completion query, in
  the data's units; observed cells are kept exactly, rows with nothing missing pass
  through; ``draws`` completed copies for multiple imputation;
* [`impute_file`][densitykit.imputation.impute_file]: the same from a run folder and a
  file, written to a ``.csv``/``.tsv``/``.npy`` file;
* [`conditional_nll`][densitykit.imputation.conditional_nll]: $-\log p(x_m \mid x_o)$
  per row in the data's units, for named observed columns.

Only a model that has learnt the conditionals of any subset answers these (the
``any_subset`` capability: the orderless family, the histogram, a MADE trained with
``masks="any-order"``); others are refused in one line.

Example:
    >>> import numpy as np, torch, densitykit as dk
    >>> from densitykit.data.tables import infer_table, parse_columns
    >>> rows = np.random.default_rng(0).normal(size=(50, 2))
    >>> table = infer_table(rows, rows, ["a", "b"], where="x", specs=parse_columns("real,real"))
    >>> model = dk.create_model("gaussian", 2, num_values=0, hidden_sizes=(8,),
    ...                         masks="any-order")
    >>> holes = np.array([[0.5, np.nan], [1.0, 2.0]])
    >>> filled = impute(model, table, holes, generator=torch.Generator().manual_seed(0))
    >>> filled.shape, filled[0, 0, 0], filled[0, 1].tolist()
    ((1, 2, 2), np.float64(0.5), [1.0, 2.0])
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from densitykit.atomic import atomic_write
from densitykit.checks import check_int, check_output_file, check_seed
from densitykit.data.files import write_table
from densitykit.data.tables import Table
from densitykit.errors import DataError
from densitykit.family import DensityModel
from densitykit.runs import load_run, query_orderings, require_capability
from densitykit.scoring import read_table_rows

__all__ = [
    "IMPUTE_CHUNK",
    "conditional_nll",
    "impute",
    "impute_file",
    "observed_columns",
]

IMPUTE_CHUNK = 4096
"""Rows completed at once (times the number of draws)."""
_NEEDS = "imputing (train with --masks any-order, or --family orderless)"


def impute(
    model: DensityModel,
    table: Table,
    rows: Any,
    *,
    draws: int = 1,
    generator: torch.Generator | None = None,
    connectivities: Sequence[Any] | None = None,
) -> np.ndarray:
    """Fill the NaN cells of ``rows`` with exact draws from the model's conditional.

    Args:
        model: A model of ``table``'s model values that answers ``any_subset``.
        table: The run's table (its columns and training statistics).
        rows: ``(N, D)`` raw rows in the data's units, NaN where missing.
        draws: Completed copies of the table (multiple imputation).
        generator: Random source.
        connectivities: What the completions mix (a run's
            [`query_orderings`][densitykit.runs.query_orderings]); the model's own by
            default.

    Returns:
        ``(draws, N, D)`` float64: ``rows`` with their missing cells drawn; observed
        cells are ``rows``' own values exactly.

    Raises:
        ValueError: If the model cannot complete arbitrary subsets, or ``draws`` < 1.
        DataError: If an observed cell does not fit its column (an unknown level,
            infinity) or a row has a different number of columns.
    """
    require_capability(model, "any_subset", _NEEDS)
    draws = check_int(draws, "draws", minimum=1)
    values, observed = table.encode(rows, where="the table", allow_missing=True)
    raw = np.asarray(rows, dtype=np.float64).reshape(-1, table.dim)
    out = np.broadcast_to(raw, (draws, *raw.shape)).copy()
    holes = np.flatnonzero((~observed).any(dim=1).numpy())
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(holes), IMPUTE_CHUNK):
            index = holes[start : start + IMPUTE_CHUNK]
            model.check_sample_size(len(index) * draws)
            x = values[index].repeat(draws, 1).to(model.device)
            known = observed[index].repeat(draws, 1).to(model.device)
            filled = model.complete(x, known, generator=generator, connectivities=connectivities)
            decoded = table.decode(filled).reshape(draws, len(index), table.dim)
            missing = ~observed[index].numpy()
            block = out[:, index]
            block[:, missing] = decoded[:, missing]
            out[:, index] = block
    finally:
        model.train(was_training)
    return out


def impute_file(
    run_dir: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    draws: int = 1,
    seed: int = 0,
    device: str = "cpu",
    plugins: Sequence[str] = (),
    overwrite: bool = False,
    draw_orderings: int | None = None,
    ordering_seed: int = 0,
) -> dict[str, Any]:
    """Impute a table file's empty cells with a run's model and write the completed table.

    The file must have the run's columns (names and count). ``out`` is a ``.csv`` or
    ``.tsv`` with the columns' header (with ``draws`` > 1, a first column ``draw``
    numbers the completed copies ``0..draws-1``, each copy's rows in the file's order),
    or a ``.npy`` of shape ``(N, D)`` (one draw) or ``(draws, N, D)``.

    Returns:
        What was done: ``{"out", "rows", "rows_with_missing", "missing_cells", "draws"}``.

    Raises:
        ValueError: If the run is not a table's, or its model cannot complete arbitrary
            subsets (see [`impute`][densitykit.imputation.impute]).
        DataError: If the file's columns differ from the run's.
        FileExistsError: If ``out`` exists and ``overwrite`` is false.
    """
    out = check_output_file(out, [".csv", ".tsv", ".npy"], overwrite=overwrite, name="--out")
    seed = check_seed(seed)
    draws = check_int(draws, "draws", minimum=1)
    run = load_run(run_dir, device=device, plugins=plugins)
    table = run.dataset.table
    if table is None:
        raise ValueError(f"{run.path} was not trained on a table of columns; impute needs one")
    require_capability(run.model, "any_subset", _NEEDS)
    rows, _ = read_table_rows(data, table, allow_missing=True)
    connectivities = query_orderings(run.model, None, draw_orderings, ordering_seed)
    filled = impute(
        run.model,
        table,
        rows,
        draws=draws,
        generator=torch.Generator().manual_seed(seed),
        connectivities=connectivities,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".npy":
        array = filled[0] if draws == 1 else filled
        atomic_write(out, lambda handle: np.save(handle, array))
    elif draws == 1:
        write_table(out, filled[0], table.names)
    else:
        numbered = (
            np.column_stack([np.full(len(rows), draw, dtype=np.float64), filled[draw]])
            for draw in range(draws)
        )
        write_table(out, numbered, ["draw", *table.names])
    missing = np.isnan(rows)
    return {
        "out": str(out),
        "rows": len(rows),
        "rows_with_missing": int(missing.any(axis=1).sum()),
        "missing_cells": int(missing.sum()),
        "draws": draws,
    }


def observed_columns(spec: str, table: Table) -> torch.Tensor:
    """The ``(D,)`` bool pattern of comma-separated observed column names.

    Raises:
        DataError: On an unknown name, or a pattern that observes every column or none.

    Example:
        >>> from densitykit.data.tables import Column
        >>> table = Table((Column("a", "real"), Column("b", "real"), Column("c", "real")))
        >>> observed_columns("a,c", table).tolist()
        [True, False, True]
    """
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in table.names]
    if unknown:
        raise DataError(
            f"--observed names {', '.join(unknown)}, but the run's columns are "
            f"{', '.join(table.names)}"
        )
    pattern = torch.tensor([name in names for name in table.names])
    if bool(pattern.all()) or not bool(pattern.any()):
        raise DataError(
            f"--observed must name some of the columns {', '.join(table.names)} and leave "
            f"some missing, got {spec!r}"
        )
    return pattern


def conditional_nll(
    model: DensityModel,
    table: Table,
    values: torch.Tensor,
    observed: torch.Tensor,
    *,
    connectivities: Sequence[Any] | None = None,
    batch_size: int = 1000,
) -> torch.Tensor:
    r"""$-\log p(x_m \mid x_o)$ per row in the data's units: the model's conditional of
    model values minus the log-Jacobian of the missing columns.

    Args:
        model: A model that answers ``any_subset``.
        table: The run's table.
        values: ``(N, D)`` model values (a split of the run's data set).
        observed: ``(D,)`` or ``(N, D)`` bool, the observed columns.
        connectivities: What the query mixes.
        batch_size: Rows per pass.

    Returns:
        ``(N,)`` float64.
    """
    require_capability(model, "any_subset", "a conditional of named columns")
    observed = observed.expand(values.shape[0], table.dim)
    scores = []
    with torch.no_grad():
        for start in range(0, values.shape[0], batch_size):
            x = values[start : start + batch_size].to(model.device)
            known = observed[start : start + batch_size].to(model.device)
            log_prob = model.conditional_log_prob(x, known, connectivities=connectivities)
            scores.append(-log_prob.double().cpu() - table.log_jacobian(x, ~known.cpu()))
    return torch.cat(scores)
