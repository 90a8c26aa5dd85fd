r"""The columns of a table of real or mixed values, and how they become model values.

A user's table (a ``.csv``, ``.tsv``, ``.npy`` or ``.npz`` file read by
[`densitykit.data.files`][densitykit.data.files]) is a float64 array ``(N, D)`` in the
data's own units. Each column has a *kind*:

- ``real``: any finite number; standardised for the model, $z = (x - m) / s$, with the
  mean $m$ and standard deviation $s$ of the **training split** only;
- ``binary``: two values (``0``/``1``, or any two numbers), coded ``0`` and ``1``;
- ``categorical``: a few distinct values (the *levels*, sorted), coded ``0..K-1``, at
  most [`MAX_LEVELS`][densitykit.data.tables.MAX_LEVELS]; a sample's code is given back
  as its level;
- ``spike``: a real column where one value (the *spike*, e.g. ``0`` of a zero-inflated
  amount) repeats: the model gives the spike a probability and the other values a
  density; standardised like a real column, with $m$ and $s$ of the training values
  other than the spike.

**Inference** (a column whose kind is not given): all values in ``{0, 1}`` is binary;
at most [`INFER_MAX_LEVELS`][densitykit.data.tables.INFER_MAX_LEVELS] distinct values,
each held on average by at least two rows, is categorical over them (integer or not);
otherwise, a value held by at least [`SPIKE_FRACTION`][densitykit.data.tables.SPIKE_FRACTION]
of the rows (and by at least [`SPIKE_MIN_ROWS`][densitykit.data.tables.SPIKE_MIN_ROWS]
rows) makes a spike column at that value; the rest is real. A constant column is refused.

**Kinds given by the user** (``--columns`` on the command line,
[`parse_columns`][densitykit.data.tables.parse_columns]): comma-separated entries, either
all ``name:kind`` (any subset of the columns, by their header names; a file without a
header names its columns ``column1``, ``column2``, ...) or all bare ``kind``, one per
column in order. A kind is ``real``, ``binary``, ``categorical``, ``spike`` (at the
most common value), ``spike=V`` (at the value ``V``) or ``auto`` (inferred)::

    age:real,sex:binary,job:categorical,income:spike=0
    real,binary,auto

**Units.** The model scores standardised values $z$; a log-density in the data's units
adds the log-Jacobian $\log |dz/dx| = -\log s$ of every real column, and of every spike
column whose value is not the spike
([`Table.log_jacobian`][densitykit.data.tables.Table.log_jacobian]). Discrete columns
and spike values are probabilities: they add nothing.

Example:
    >>> raw = np.array([[0.5, 1.0, 3.0], [1.5, 0.0, 3.0], [2.5, 1.0, 7.0], [3.5, 0.0, 3.0]])
    >>> table = infer_table(raw, raw, ["x", "flag", "level"], where="t.csv")
    >>> table.kinds
    ('real', 'binary', 'categorical')
    >>> values = table.encode(raw, where="t.csv")
    >>> values.dtype, np.allclose(table.decode(values), raw)
    (torch.float32, True)
    >>> round(float(table.log_jacobian(values)[0]), 4)  # -log s of the real column
    -0.1116
    >>> Table.from_dict(table.to_dict()) == table
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from densitykit.errors import DataError

__all__ = [
    "COLUMN_KINDS",
    "DEFAULT_COMPONENTS",
    "INFER_MAX_LEVELS",
    "MAX_LEVELS",
    "SPIKE_FRACTION",
    "SPIKE_MIN_ROWS",
    "Column",
    "ColumnSpec",
    "Table",
    "check_finite",
    "infer_table",
    "parse_columns",
]

COLUMN_KINDS: tuple[str, ...] = ("real", "binary", "categorical", "spike")
"""The kinds of column."""
INFER_MAX_LEVELS = 10
"""A column with at most this many distinct values (each held by two rows on average)
is inferred categorical."""
SPIKE_FRACTION = 0.1
"""A non-categorical column where one value is held by at least this share of the rows
is inferred a spike column at that value."""
SPIKE_MIN_ROWS = 5
"""...and by at least this many rows (two equal values in twenty rows are no spike)."""
DEFAULT_COMPONENTS = 5
"""Gaussian components of the real and spike columns' heads unless ``--num-components``
says otherwise (the ``gaussian-mixture`` head's own default)."""
MAX_LEVELS = 256
"""The most levels a categorical column may have."""


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, got {type(value).__name__} {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{what} must be finite, got {value}")
    return value


@dataclass(frozen=True)
class Column:
    """One column of a table: its name, kind and what encodes it.

    Attributes:
        name: The column's name (its header cell, or ``column<i>`` counting from 1).
        kind: One of [`COLUMN_KINDS`][densitykit.data.tables.COLUMN_KINDS].
        levels: For ``binary`` and ``categorical``: the sorted distinct values, coded
            ``0..K-1``; empty otherwise.
        mean: For ``real`` and ``spike``: the training split's mean (of the values other
            than the spike); 0 otherwise.
        scale: For ``real`` and ``spike``: the training split's standard deviation; 1
            otherwise.
        spike: For ``spike``: the value given a probability of its own; ``None`` otherwise.

    Raises:
        ValueError: If the fields do not fit the kind.

    Example:
        >>> Column("age", "real", mean=40.0, scale=10.0).to_dict()["scale"]
        10.0
    """

    name: str
    kind: str
    levels: tuple[float, ...] = ()
    mean: float = 0.0
    scale: float = 1.0
    spike: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"a column name must be a non-empty string, got {self.name!r}")
        if self.kind not in COLUMN_KINDS:
            raise ValueError(
                f"column {self.name}: kind must be one of {', '.join(COLUMN_KINDS)}, "
                f"got {self.kind!r}"
            )
        levels = tuple(_number(v, f"column {self.name}: a level") for v in self.levels)
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "mean", _number(self.mean, f"column {self.name}: mean"))
        object.__setattr__(self, "scale", _number(self.scale, f"column {self.name}: scale"))
        if self.spike is not None:
            object.__setattr__(self, "spike", _number(self.spike, f"column {self.name}: spike"))
        discrete = self.kind in ("binary", "categorical")
        if discrete != bool(levels):
            raise ValueError(
                f"column {self.name}: a {self.kind} column has levels only if discrete"
            )
        if discrete and (list(levels) != sorted(set(levels))):
            raise ValueError(
                f"column {self.name}: levels must be sorted and distinct, got {levels}"
            )
        if self.kind == "binary" and len(levels) != 2:
            raise ValueError(f"column {self.name}: a binary column has 2 levels, got {levels}")
        if self.kind == "categorical" and not 2 <= len(levels) <= MAX_LEVELS:
            raise ValueError(
                f"column {self.name}: a categorical column has 2..{MAX_LEVELS} levels, "
                f"got {len(levels)}"
            )
        if self.scale <= 0:
            raise ValueError(f"column {self.name}: scale must be positive, got {self.scale}")
        if (self.kind == "spike") != (self.spike is not None):
            raise ValueError(f"column {self.name}: a spike value is given for spike columns only")

    @property
    def is_discrete(self) -> bool:
        """Whether the column's values are codes (binary or categorical)."""
        return self.kind in ("binary", "categorical")

    @property
    def num_levels(self) -> int:
        """K of a discrete column (0 for real and spike columns)."""
        return len(self.levels)

    @property
    def model_spike(self) -> float:
        """The spike in model units, rounded to float32 as the model values are."""
        if self.spike is None:
            raise ValueError(f"column {self.name} is a {self.kind} column, not a spike column")
        return float(np.float32((self.spike - self.mean) / self.scale))

    def head_kind(self) -> str:
        """This column's entry of the ``mixed`` head's ``kinds``: ``real``, ``binary``,
        ``categorical:K`` or ``spike:V`` (``V`` in model units)."""
        if self.kind == "categorical":
            return f"categorical:{self.num_levels}"
        if self.kind == "spike":
            return f"spike:{self.model_spike!r}"
        return self.kind

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``from_dict`` rebuilds the column)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "levels": list(self.levels),
            "mean": self.mean,
            "scale": self.scale,
            "spike": self.spike,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Column:
        """Rebuild from ``to_dict`` output."""
        return cls(
            name=data["name"],
            kind=data["kind"],
            levels=tuple(data.get("levels", ())),
            mean=data.get("mean", 0.0),
            scale=data.get("scale", 1.0),
            spike=data.get("spike"),
        )


@dataclass(frozen=True)
class Table:
    """The columns of a table, and the encoder between its raw values and model values.

    Model values are a float32 tensor when any column is real or spike (discrete codes
    held as exact floats), and an int64 tensor of codes when every column is discrete.

    Attributes:
        columns: One [`Column`][densitykit.data.tables.Column] per variable, in order.
    """

    columns: tuple[Column, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        columns = tuple(self.columns)
        if not columns or not all(isinstance(c, Column) for c in columns):
            raise TypeError(f"a table needs at least one Column, got {self.columns!r}")
        names = [c.name for c in columns]
        if len(set(names)) != len(names):
            repeated = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"column names must be distinct, got {repeated} more than once")
        object.__setattr__(self, "columns", columns)

    @property
    def dim(self) -> int:
        """D, the number of columns."""
        return len(self.columns)

    @property
    def names(self) -> tuple[str, ...]:
        """The columns' names."""
        return tuple(c.name for c in self.columns)

    @property
    def kinds(self) -> tuple[str, ...]:
        """The columns' kinds."""
        return tuple(c.kind for c in self.columns)

    @property
    def is_discrete(self) -> bool:
        """Whether every column is binary or categorical (model values are int64 codes)."""
        return all(c.is_discrete for c in self.columns)

    @property
    def num_values(self) -> int:
        """The model's K: the largest number of levels for an all-discrete table, else 0."""
        return max(c.num_levels for c in self.columns) if self.is_discrete else 0

    @property
    def value_dtype(self) -> torch.dtype:
        """``torch.int64`` for an all-discrete table, else ``torch.float32``."""
        return torch.int64 if self.is_discrete else torch.float32

    def default_head(self) -> tuple[str, dict[str, Any]]:
        """The head that models this table, and its options.

        ``gaussian-mixture`` when every column is real (its default 5 components);
        ``bernoulli`` when every column is binary; ``categorical`` when every column is
        discrete with one number of levels; ``mixed`` otherwise, with each column's kind
        and [`DEFAULT_COMPONENTS`][densitykit.data.tables.DEFAULT_COMPONENTS]
        components for its real and spike columns.

        Example:
            >>> flag = Column("b", "binary", levels=(0.0, 1.0))
            >>> Table((Column("a", "real"), flag)).default_head()
            ('mixed', {'kinds': ['real', 'binary'], 'num_components': 5})
        """
        kinds = set(self.kinds)
        if kinds == {"real"}:
            return "gaussian-mixture", {}
        if kinds == {"binary"}:
            return "bernoulli", {}
        if self.is_discrete and len({c.num_levels for c in self.columns}) == 1:
            return "categorical", {}
        return "mixed", {
            "kinds": [c.head_kind() for c in self.columns],
            "num_components": DEFAULT_COMPONENTS,
        }

    def spike_columns(self) -> tuple[str, ...]:
        """The names of the spike columns."""
        return tuple(c.name for c in self.columns if c.kind == "spike")

    def describe(self) -> str:
        """One line: every column's name and kind (a spike's value)."""
        parts = []
        for c in self.columns:
            detail = f"={c.spike:g}" if c.kind == "spike" else ""
            if c.kind == "categorical":
                detail = f" ({c.num_levels} levels)"
            parts.append(f"{c.name}:{c.kind}{detail}")
        return ", ".join(parts)

    # -- checks ------------------------------------------------------------------------
    def check_same_columns(self, other: Table, where: str) -> None:
        """Refuse ``other`` unless it has this table's column names and kinds, in order.

        Raises:
            DataError: Naming the first difference (count, name or kind).
        """
        if other.dim != self.dim:
            raise DataError(
                f"{where}: the run was trained on {self.dim} columns ({', '.join(self.names)}), "
                f"got {other.dim} ({', '.join(other.names)})"
            )
        for mine, theirs in zip(self.columns, other.columns, strict=True):
            if mine.name != theirs.name:
                raise DataError(
                    f"{where}: the run was trained on the columns {', '.join(self.names)}, "
                    f"got {', '.join(other.names)} (column {theirs.name!r} for {mine.name!r})"
                )
            if mine.kind != theirs.kind:
                raise DataError(
                    f"{where}: column {mine.name} was {mine.kind} in training, got {theirs.kind}"
                )

    def check_names(self, names: Sequence[str] | None, where: str) -> None:
        """Refuse a file whose header names (or column count) differ from the table's.

        Args:
            names: The file's header names, or ``None`` for a file without names.
            where: The file, for the message.

        Raises:
            DataError: Naming what the run was trained on and what came.
        """
        if names is not None and tuple(names) != self.names:
            raise DataError(
                f"{where}: the run was trained on the columns {', '.join(self.names)}, "
                f"got {', '.join(names)}"
            )

    # -- encoding ----------------------------------------------------------------------
    def encode(
        self, raw: Any, *, where: str, allow_missing: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Turn raw rows into model values.

        Args:
            raw: ``(N, D)`` numbers in the data's units (NumPy array or tensor).
            where: The data's name, for messages (a file).
            allow_missing: Accept NaN as a missing cell: return the values (a placeholder,
                0, where missing) and the ``(N, D)`` bool mask of observed cells.

        Returns:
            ``(N, D)`` model values (``value_dtype``), or ``(values, observed)`` with
            ``allow_missing``.

        Raises:
            DataError: On another number of columns, NaN (unless allowed), infinite
                values, or a value of a discrete column that is not one of its levels;
                the message names the column and the row.
        """
        array = _as_float_rows(raw, self.dim, where)
        missing = np.isnan(array)
        if missing.any() and not allow_missing:
            row, col = map(int, np.argwhere(missing)[0])
            raise DataError(
                f"{where}: column {self.columns[col].name} has NaN (or an empty cell) in data "
                f"row {row + 1}; every value is required here"
            )
        infinite = np.isinf(array)
        if infinite.any():
            row, col = map(int, np.argwhere(infinite)[0])
            raise DataError(
                f"{where}: column {self.columns[col].name} has {array[row, col]} in data row "
                f"{row + 1}; expected finite numbers"
            )
        values = np.zeros(array.shape, dtype=np.float64)
        for index, column in enumerate(self.columns):
            present = ~missing[:, index]
            values[present, index] = _encode_column(column, array[present, index], where)
        tensor = torch.from_numpy(values).to(self.value_dtype)
        if allow_missing:
            return tensor, torch.from_numpy(~missing)
        return tensor

    def decode(self, values: Any) -> np.ndarray:
        """Turn model values ``(N, D)`` back into raw rows in the data's units (float64).

        Raises:
            DataError: If a discrete column's code is not one of its levels' codes.
        """
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().double().numpy()
        values = np.asarray(values, dtype=np.float64).reshape(-1, self.dim)
        raw = np.empty_like(values)
        for index, column in enumerate(self.columns):
            z = values[:, index]
            if column.is_discrete:
                codes = np.rint(z).astype(np.int64)
                if len(codes) and (codes.min() < 0 or codes.max() >= column.num_levels):
                    raise DataError(
                        f"column {column.name}: codes must lie in 0..{column.num_levels - 1}, "
                        f"got {int(codes.min())}..{int(codes.max())}"
                    )
                raw[:, index] = np.asarray(column.levels)[codes]
            else:
                raw[:, index] = z * column.scale + column.mean
                if column.kind == "spike":
                    raw[z == column.model_spike, index] = column.spike
        return raw

    def log_jacobian(self, values: Any, columns: Any = None) -> torch.Tensor:
        r"""Per row, $\log |dz/dx|$ of the columns scored: what turns the model's
        log-density of standardised values into one in the data's units.

        $-\log s$ for every real column, and for every spike column whose value is not
        the spike; 0 for discrete columns and for a spike value (a probability).

        Args:
            values: ``(N, D)`` model values.
            columns: ``(N, D)`` or ``(D,)`` bool, the columns scored (e.g. the missing
                ones of a conditional); all by default.

        Returns:
            ``(N,)`` float64.
        """
        if isinstance(values, torch.Tensor):
            values = values.detach().cpu().double().numpy()
        values = np.asarray(values, dtype=np.float64).reshape(-1, self.dim)
        terms = np.zeros(values.shape, dtype=np.float64)
        for index, column in enumerate(self.columns):
            if column.kind == "real":
                terms[:, index] = -math.log(column.scale)
            elif column.kind == "spike":
                off = values[:, index] != column.model_spike
                terms[off, index] = -math.log(column.scale)
        if columns is not None:
            if isinstance(columns, torch.Tensor):
                columns = columns.detach().cpu().numpy()
            terms = terms * np.broadcast_to(np.asarray(columns, dtype=bool), terms.shape)
        return torch.from_numpy(terms.sum(axis=1))

    # -- serialisation -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (``from_dict`` rebuilds the table)."""
        return {"columns": [c.to_dict() for c in self.columns]}

    @classmethod
    def from_dict(cls, data: Any) -> Table:
        """Rebuild from ``to_dict`` output.

        Raises:
            DataError: If ``data`` is not a table's dict.
        """
        try:
            return cls(tuple(Column.from_dict(dict(c)) for c in data["columns"]))
        except (KeyError, TypeError, ValueError) as error:
            raise DataError(f"malformed table of columns ({error})") from None


def _as_float_rows(raw: Any, dim: int, where: str) -> np.ndarray:
    if isinstance(raw, torch.Tensor):
        raw = raw.detach().cpu().numpy()
    array = np.asarray(raw)
    if array.dtype == object or array.dtype.kind not in "biuf":
        raise DataError(f"{where}: expected numbers, got dtype {array.dtype}")
    if array.ndim == 1 and dim == 1:
        array = array[:, None]
    if array.ndim != 2 or array.shape[1] != dim:
        raise DataError(
            f"{where}: expected rows of {dim} columns, got an array of shape {array.shape}"
        )
    return array.astype(np.float64, copy=False)


def _encode_column(column: Column, x: np.ndarray, where: str) -> np.ndarray:
    if column.is_discrete:
        levels = np.asarray(column.levels)
        codes = np.searchsorted(levels, x).clip(0, len(levels) - 1)
        unknown = levels[codes] != x
        if unknown.any():
            shown = ", ".join(f"{v:g}" for v in column.levels[:10])
            raise DataError(
                f"{where}: column {column.name} is {column.kind} over the levels {shown}"
                f"{' ...' if column.num_levels > 10 else ''}; got {x[unknown][0]:g}"
            )
        return codes.astype(np.float64)
    z = (x - column.mean) / column.scale
    if column.kind == "spike":
        z = np.where(x == column.spike, column.model_spike, z)
    return z


# -- user's kinds and inference ----------------------------------------------------------


@dataclass(frozen=True)
class ColumnSpec:
    """A kind the user gave for a column (a parsed ``--columns`` entry).

    Attributes:
        name: The column's name, or ``None`` for a positional entry.
        kind: A column kind, or ``"auto"`` to infer it.
        spike: The spike's value of ``spike=V``; ``None`` for the most common value.
    """

    name: str | None
    kind: str
    spike: float | None = None


def parse_columns(text: str) -> list[ColumnSpec]:
    """Parse a ``--columns`` value: ``name:kind,...`` or ``kind,...`` (see the module notes).

    Raises:
        DataError: On an unknown kind, a mix of named and positional entries, a name
            given twice, or a spike value that is not a number.

    Example:
        >>> [(s.name, s.kind, s.spike) for s in parse_columns("age:real,pay:spike=0")]
        [('age', 'real', None), ('pay', 'spike', 0.0)]
        >>> [s.kind for s in parse_columns("real, binary, auto")]
        ['real', 'binary', 'auto']
    """
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"--columns: expected name:kind,... or kind,..., got {text!r}")
    specs = []
    for entry in (part.strip() for part in text.split(",")):
        name, _, kind = entry.rpartition(":")
        kind, _, value = kind.strip().partition("=")
        kind = kind.strip().lower()
        if kind not in (*COLUMN_KINDS, "auto"):
            raise DataError(
                f"--columns: the kind of {entry!r} must be one of "
                f"{', '.join(COLUMN_KINDS)}, spike=V or auto, got {kind!r}"
            )
        spike = None
        if value:
            if kind != "spike":
                raise DataError(f"--columns: only a spike takes a value (spike=V), got {entry!r}")
            try:
                spike = _number(float(value), "spike")
            except ValueError:
                raise DataError(
                    f"--columns: the spike of {entry!r} must be a finite number, got {value!r}"
                ) from None
        specs.append(ColumnSpec(name.strip() or None, kind, spike))
    named = {spec.name is not None for spec in specs}
    if len(named) > 1:
        raise DataError(f"--columns: give every entry a name (name:kind) or none, got {text!r}")
    names = [spec.name for spec in specs if spec.name is not None]
    if len(set(names)) != len(names):
        raise DataError(f"--columns: a column is named twice in {text!r}")
    return specs


def _assign(
    specs: Sequence[ColumnSpec] | None, names: Sequence[str], where: str
) -> list[ColumnSpec]:
    """One spec per column: the user's, or ``auto``."""
    if not specs:
        return [ColumnSpec(name, "auto") for name in names]
    if specs[0].name is None:
        if len(specs) != len(names):
            raise DataError(
                f"{where}: --columns gives {len(specs)} kinds, but the file has {len(names)} "
                "columns; give one kind per column"
            )
        return [
            ColumnSpec(name, spec.kind, spec.spike) for name, spec in zip(names, specs, strict=True)
        ]
    unknown = [spec.name for spec in specs if spec.name not in names]
    if unknown:
        raise DataError(
            f"{where}: --columns names {', '.join(map(str, unknown))}, but the file's columns are "
            f"{', '.join(names)}"
        )
    given = {spec.name: spec for spec in specs}
    return [given.get(name, ColumnSpec(name, "auto")) for name in names]


def check_finite(raw: np.ndarray, names: Sequence[str] | None, where: str) -> None:
    """Refuse NaN (an empty cell) or an infinite value, naming its column and data row.

    Raises:
        DataError: At the first such value, row by row.

    Example:
        >>> check_finite(np.array([[1.0, 2.0], [3.0, np.nan]]), ["a", "b"], "t.csv")
        Traceback (most recent call last):
        ...
        densitykit.errors.DataError: t.csv: column b has NaN (or an empty cell) in data row 2; ...
    """
    bad = ~np.isfinite(raw)
    if bad.any():
        row, col = map(int, np.argwhere(bad)[0])
        name = names[col] if names is not None else f"column{col + 1}"
        what = "NaN (or an empty cell)" if np.isnan(raw[row, col]) else str(raw[row, col])
        raise DataError(
            f"{where}: column {name} has {what} in data row {row + 1}; every value is "
            "required to train"
        )


def infer_table(
    raw: np.ndarray,
    train: np.ndarray,
    names: Sequence[str] | None,
    *,
    where: str,
    specs: Sequence[ColumnSpec] | None = None,
) -> Table:
    """The columns of a table: kinds inferred or given, levels, and training statistics.

    Args:
        raw: ``(N, D)`` every row of the file (kinds and levels are read on them all,
            so a test value is a level too).
        train: ``(N_train, D)`` the training split's rows (the means and scales).
        names: The header's names, or ``None`` (``column1``, ``column2``, ...).
        where: The file, for messages.
        specs: The user's kinds ([`parse_columns`][densitykit.data.tables.parse_columns]).

    Raises:
        DataError: On NaN or infinite values, a constant column, a discrete column with
            too many levels (or a binary one with more than two), or kinds that do not
            fit the file's columns; the message names the column.
    """
    raw = np.asarray(raw, dtype=np.float64)
    dim = raw.shape[1]
    names = list(names) if names is not None else [f"column{i + 1}" for i in range(dim)]
    columns = []
    check_finite(raw, names, where)
    for index, spec in enumerate(_assign(specs, names, where)):
        name = names[index]
        values = raw[:, index]
        columns.append(_column(name, spec, values, np.asarray(train, np.float64)[:, index], where))
    return Table(tuple(columns))


def _column(
    name: str, spec: ColumnSpec, values: np.ndarray, train: np.ndarray, where: str
) -> Column:
    levels, counts = np.unique(values, return_counts=True)
    if len(levels) < 2:
        raise DataError(
            f"{where}: column {name} is constant (every row is {levels[0]:g}); drop it, a "
            "constant has no density"
        )
    kind = spec.kind
    if kind == "auto":
        kind = _infer_kind(levels, counts, len(values))
    if kind in ("binary", "categorical"):
        limit = 2 if kind == "binary" else MAX_LEVELS
        if len(levels) > limit:
            raise DataError(
                f"{where}: column {name} is {kind} but has {len(levels)} distinct values, "
                f"at most {limit} allowed (give it the kind real with --columns {name}:real)"
            )
        return Column(name, kind, levels=tuple(float(v) for v in levels))
    spike = None
    if kind == "spike":
        spike = spec.spike if spec.spike is not None else float(levels[np.argmax(counts)])
        train = train[train != spike]
    if len(train) < 2 or float(np.std(train)) == 0.0:
        raise DataError(
            f"{where}: column {name} is constant on the training rows"
            + (f" other than its spike {spike:g}" if spike is not None else "")
            + "; a constant has no density (drop it, or give it a discrete kind)"
        )
    return Column(name, kind, mean=float(np.mean(train)), scale=float(np.std(train)), spike=spike)


def _infer_kind(levels: np.ndarray, counts: np.ndarray, rows: int) -> str:
    if len(levels) == 2 and levels[0] == 0.0 and levels[1] == 1.0:
        return "binary"
    if len(levels) <= INFER_MAX_LEVELS and 2 * len(levels) <= rows:
        return "categorical"
    if counts.max() >= max(SPIKE_MIN_ROWS, SPIKE_FRACTION * rows):
        return "spike"
    return "real"
