"""Tables of real or mixed columns: kinds, the encoder, its Jacobian, the readers' errors."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from densitykit.data import load_dataset
from densitykit.data.files import read_table, write_table
from densitykit.data.tables import (
    INFER_MAX_LEVELS,
    MAX_LEVELS,
    Column,
    Table,
    infer_table,
    parse_columns,
)
from densitykit.errors import DataError
from densitykit.model import create_model

RNG = np.random.default_rng(0)


def _mixed_rows(n: int = 200, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    amount = np.where(rng.random(n) < 0.3, 0.0, rng.gamma(2.0, 3.0, n))
    return np.column_stack(
        [
            rng.normal(40.0, 12.0, n),  # real
            rng.integers(0, 2, n),  # binary
            rng.choice([1.5, 2.5, 10.0], n),  # categorical, not integers
            amount,  # spike at 0
        ]
    )


NAMES = ["age", "flag", "grade", "amount"]


def test_kinds_are_inferred_as_documented() -> None:
    raw = _mixed_rows()
    table = infer_table(raw, raw[:150], NAMES, where="t")
    assert table.kinds == ("real", "binary", "categorical", "spike")
    assert table.columns[2].levels == (1.5, 2.5, 10.0)
    assert table.columns[3].spike == 0.0
    # Standardisation from the training rows only (and, for the spike, off the spike).
    assert table.columns[0].mean == pytest.approx(raw[:150, 0].mean())
    assert table.columns[0].scale == pytest.approx(raw[:150, 0].std())
    off = raw[:150, 3][raw[:150, 3] != 0]
    assert table.columns[3].mean == pytest.approx(off.mean())
    # Just past the categorical threshold: a real column.
    many = np.repeat(np.arange(INFER_MAX_LEVELS + 1) * 0.5, 20)[:, None]
    assert infer_table(many, many, None, where="t").kinds == ("real",)
    few = many[many[:, 0] < INFER_MAX_LEVELS * 0.5 - 0.25]
    assert infer_table(few, few, None, where="t").kinds == ("categorical",)


def test_user_kinds_named_and_positional() -> None:
    raw = _mixed_rows()
    named = parse_columns("grade:real, amount:spike=0")
    table = infer_table(raw, raw, NAMES, where="t", specs=named)
    assert table.kinds == ("real", "binary", "real", "spike")
    positional = infer_table(
        raw, raw, None, where="t", specs=parse_columns("real,categorical,auto,real")
    )
    assert positional.names == ("column1", "column2", "column3", "column4")
    assert positional.kinds == ("real", "categorical", "categorical", "real")
    spiked = infer_table(raw, raw, NAMES, where="t", specs=parse_columns("age:spike=40"))
    assert spiked.columns[0].spike == 40.0


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("age:number", "must be one of real, binary"),
        ("age:real,binary", "give every entry a name"),
        ("age:real,age:binary", "named twice"),
        ("age:real=3", "only a spike takes a value"),
        ("age:spike=x", "must be a finite number"),
        ("", "expected name:kind"),
    ],
)
def test_bad_column_kinds_are_one_line(text: str, says: str) -> None:
    with pytest.raises(DataError, match=says) as error:
        parse_columns(text)
    assert "\n" not in str(error.value)


def test_kinds_that_do_not_fit_the_file() -> None:
    raw = _mixed_rows()
    with pytest.raises(DataError, match="gives 2 kinds, but the file has 4 columns"):
        infer_table(raw, raw, NAMES, where="t", specs=parse_columns("real,real"))
    with pytest.raises(DataError, match="names salary, but the file's columns are age"):
        infer_table(raw, raw, NAMES, where="t", specs=parse_columns("salary:real"))
    with pytest.raises(DataError, match="column age is binary but has 200 distinct values"):
        infer_table(raw, raw, NAMES, where="t", specs=parse_columns("age:binary"))


def test_encode_decode_round_trip_and_spike_exactly() -> None:
    raw = _mixed_rows()
    table = infer_table(raw, raw[:150], NAMES, where="t")
    values = table.encode(raw, where="t")
    assert values.dtype == torch.float32
    assert torch.equal(values[:, 1], torch.from_numpy(raw[:, 1]).float())  # codes exact
    assert set(values[:, 2].tolist()) == {0.0, 1.0, 2.0}
    assert bool((values[raw[:, 3] == 0, 3] == table.columns[3].model_spike).all())
    back = table.decode(values)
    np.testing.assert_allclose(back, raw, rtol=1e-5, atol=1e-4)
    assert (back[:, 2] == raw[:, 2]).all() and (back[raw[:, 3] == 0, 3] == 0.0).all()
    assert Table.from_dict(table.to_dict()) == table


def test_all_discrete_tables_hold_int64_codes() -> None:
    raw = np.column_stack([RNG.choice([0.5, 1.5], 60), RNG.choice([2.0, 4.0], 60)])
    table = infer_table(raw, raw, None, where="t")
    assert table.kinds == ("categorical", "categorical") and table.num_values == 2
    assert table.encode(raw, where="t").dtype == torch.int64
    assert table.default_head() == ("categorical", {})
    assert (table.decode(table.encode(raw, where="t")) == raw).all()


def test_log_jacobian_counts_real_columns_and_spike_off_its_value() -> None:
    raw = _mixed_rows()
    table = infer_table(raw, raw, NAMES, where="t")
    values = table.encode(raw, where="t")
    age, amount = table.columns[0], table.columns[3]
    expected = -math.log(age.scale) - np.where(raw[:, 3] == 0, 0.0, math.log(amount.scale))
    np.testing.assert_allclose(table.log_jacobian(values).numpy(), expected)
    only_age = torch.tensor([True, False, False, False])
    np.testing.assert_allclose(table.log_jacobian(values, only_age).numpy(), -math.log(age.scale))


@pytest.mark.parametrize("dim", [1, 2])
def test_density_in_data_units_integrates_to_one(dim: int) -> None:
    """A tiny real model's density, turned into data units by the log-Jacobian, sums to
    one over a grid of the data's space (trapezoid rule); without it, it would not."""
    torch.manual_seed(0)
    scales = [30.0, 0.2][:dim]
    raw = RNG.normal(size=(100, dim)) * np.array(scales) + np.array([100.0, -3.0][:dim])
    table = infer_table(raw, raw, None, where="t", specs=parse_columns(",".join(["real"] * dim)))
    model = create_model("gaussian-mixture", dim, num_values=0, hidden_sizes=(8,), num_components=2)
    axes = [
        np.linspace(c.mean - 12 * c.scale, c.mean + 12 * c.scale, 401 if dim == 1 else 161)
        for c in table.columns
    ]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, dim)
    values = table.encode(grid, where="grid")
    with torch.no_grad():
        log_density = model.log_prob(values).double() + table.log_jacobian(values)
    density = log_density.exp().numpy().reshape([len(a) for a in axes])
    for axis in reversed(axes):
        density = np.trapezoid(density, axis, axis=-1)
    assert float(density) == pytest.approx(1.0, abs=2e-3)
    with torch.no_grad():
        model_units = model.log_prob(values).double().exp().numpy().reshape(density.shape or -1)
    assert not math.isclose(float(np.sum(model_units)), 1.0, abs_tol=0.1)


# -- files -----------------------------------------------------------------------------------


def _write(path: Path, rows: np.ndarray, names: list[str] | None = None) -> Path:
    if path.suffix == ".npy":
        np.save(path, rows)
    else:
        write_table(path, rows, names or [f"c{i}" for i in range(rows.shape[1])])
    return path


def test_a_real_csv_is_read_as_a_table(tmp_path: Path) -> None:
    raw = _mixed_rows()
    ds = load_dataset("file", path=str(_write(tmp_path / "t.csv", raw, NAMES)))
    assert ds.kind == "table" and ds.num_values == 0 and ds.table.names == tuple(NAMES)
    assert ds.train.dtype == torch.float32 and ds.options["table"] == ds.table.to_dict()
    # The training statistics are the training split's.
    train_rows = ds.table.decode(ds.train)
    assert ds.table.columns[0].mean == pytest.approx(train_rows[:, 0].mean(), rel=1e-5)
    # A recorded table is reused as it is.
    again = load_dataset("file", path=str(tmp_path / "t.csv"), table=ds.options["table"])
    assert again.table == ds.table and torch.equal(again.test, ds.test)


def test_npy_and_headerless_tables(tmp_path: Path) -> None:
    raw = _mixed_rows()
    ds = load_dataset("file", path=str(_write(tmp_path / "t.npy", raw)))
    assert ds.table.names == ("column1", "column2", "column3", "column4")
    text = tmp_path / "plain.csv"
    np.savetxt(text, raw, delimiter=",")
    assert load_dataset("file", path=str(text)).table.kinds == ds.table.kinds


def test_integer_files_stay_discrete_unless_columns_are_given(tmp_path: Path) -> None:
    codes = RNG.integers(0, 50, size=(80, 2))
    path = tmp_path / "ints.csv"
    np.savetxt(path, codes, delimiter=",", fmt="%d")
    ds = load_dataset("file", path=str(path))
    assert ds.kind == "2d" and ds.table is None and ds.train.dtype == torch.int64
    real = load_dataset("file", path=str(path), columns="real,real")
    assert real.kind == "table" and real.table.kinds == ("real", "real")


def test_read_table_keeps_empty_cells_as_nan(tmp_path: Path) -> None:
    path = tmp_path / "gaps.csv"
    path.write_text("a,b\n1.5,2\n,3\n4.25,\n")
    arrays, names = read_table(path)
    assert names == ["a", "b"]
    assert np.isnan(arrays["data"][1, 0]) and np.isnan(arrays["data"][2, 1])


BAD = [
    ("nan.csv", "a,b\n1.5,2\n,3\n4.5,1\n2.5,2\n", "column a has NaN .* in data row 2"),
    ("inf.csv", "a,b\n1.5,2\ninf,3\n4.5,1\n2.5,2\n", "column a has inf in data row 2"),
    ("text.csv", "a,b\n1.5,2\n2.5,x\n4.5,1\n", "column b holds text, expected numbers"),
    ("const.csv", "a,b\n1.5,2\n1.5,3\n1.5,1\n1.5,2\n", "column a is constant"),
]


@pytest.mark.parametrize(("name", "content", "says"), BAD)
def test_bad_tables_are_one_line(tmp_path: Path, name: str, content: str, says: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=says) as error:
        load_dataset("file", path=str(path))
    assert "\n" not in str(error.value) and str(path) in str(error.value)


def test_too_many_levels_and_unknown_levels(tmp_path: Path) -> None:
    raw = np.column_stack([np.arange(MAX_LEVELS + 1) + 0.5, RNG.normal(size=MAX_LEVELS + 1)])
    path = _write(tmp_path / "levels.csv", raw, ["job", "x"])
    with pytest.raises(DataError, match=f"job is categorical but has {MAX_LEVELS + 1} distinct"):
        load_dataset("file", path=str(path), columns="job:categorical")
    table = Table((Column("job", "categorical", levels=(1.0, 2.0, 3.0)),))
    with pytest.raises(DataError, match="column job is categorical over the levels 1, 2, 3; got 7"):
        table.encode(np.array([[7.0]]), where="t")


def test_recorded_columns_must_match_the_file(tmp_path: Path) -> None:
    raw = _mixed_rows()
    ds = load_dataset("file", path=str(_write(tmp_path / "t.csv", raw, NAMES)))
    renamed = _write(tmp_path / "renamed.csv", raw, ["age", "flag", "level", "amount"])
    with pytest.raises(DataError, match="trained on the columns age, flag, grade, amount"):
        load_dataset("file", path=str(renamed), table=ds.options["table"])
    fewer = _write(tmp_path / "fewer.npy", raw[:, :3])
    with pytest.raises(DataError, match="trained on 4 columns"):
        load_dataset("file", path=str(fewer), table=ds.options["table"])
    with pytest.raises(DataError, match="column flag was binary in training, got real"):
        load_dataset(
            "file", path=str(tmp_path / "t.csv"), table=ds.options["table"], columns="flag:real"
        )


def test_a_spike_columns_total_is_its_probability_plus_its_density() -> None:
    """A spike column in data units: the probability of the spike plus the integral of
    the density elsewhere (with the log-Jacobian) is one."""
    torch.manual_seed(0)
    raw = np.concatenate([np.zeros(40), RNG.gamma(2.0, 30.0, 160)])[:, None]
    table = infer_table(raw, raw, ["amount"], where="t")
    assert table.kinds == ("spike",)
    name, options = table.default_head()
    model = create_model(name, 1, num_values=0, hidden_sizes=(4,), **options)
    column = table.columns[0]
    grid = np.linspace(column.mean - 15 * column.scale, column.mean + 15 * column.scale, 4001)
    values = table.encode(grid[grid != 0.0][:, None], where="grid")
    spike = table.encode(np.zeros((1, 1)), where="spike")
    with torch.no_grad():
        density = (model.log_prob(values).double() + table.log_jacobian(values)).exp()
        mass = float(model.log_prob(spike).double().exp())
    assert float(table.log_jacobian(spike)) == 0.0
    total = mass + float(np.trapezoid(density.numpy(), grid[grid != 0.0]))
    assert 0.0 < mass < 1.0 and total == pytest.approx(1.0, abs=2e-3)
