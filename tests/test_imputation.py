"""Imputing a table's empty cells, and conditional scores of named columns."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import densitykit as dk
from densitykit.cli import app
from densitykit.data.files import read_table, write_table
from densitykit.data.tables import infer_table, parse_columns
from densitykit.imputation import impute

runner = CliRunner()
NAMES = ["age", "flag", "grade"]
FAST = ["--epochs", "2", "--hidden-sizes", "16", "--batch-size", "64", "--quiet"]


def _rows(n: int = 150) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.column_stack(
        [rng.normal(40.0, 12.0, n), rng.integers(0, 2, n), rng.choice([1.5, 2.5, 10.0], n)]
    )


@pytest.fixture(scope="module")
def any_order_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("impute")
    data = write_table(folder / "people.csv", _rows(), NAMES)
    run = folder / "run"
    args = ["fit", "--data", str(data), "--masks", "any-order", *FAST, "--out", str(run)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return run


HOLES = "age,flag,grade\n30.5,,2.5\n,1,\n50.25,0,10\n41,1,\n"


def test_impute_fills_only_the_empty_cells(any_order_run: Path, tmp_path: Path) -> None:
    holes = tmp_path / "holes.csv"
    holes.write_text(HOLES)
    out = tmp_path / "filled.csv"
    result = runner.invoke(app, ["impute", str(any_order_run), str(holes), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "filled 4 empty cells in 3 of 4 rows" in result.output
    before = read_table(holes)[0]["data"]
    after, names = read_table(out)
    after = after["data"]
    assert names == NAMES and not np.isnan(after).any()
    seen = ~np.isnan(before)
    assert (after[seen] == before[seen]).all()  # observed cells kept exactly
    assert (after[2] == before[2]).all()  # a complete row passes through
    assert set(after[:, 1]) <= {0.0, 1.0} and set(after[:, 2]) <= {1.5, 2.5, 10.0}


def test_multiple_imputation_numbers_its_draws(any_order_run: Path, tmp_path: Path) -> None:
    holes = tmp_path / "holes.csv"
    holes.write_text(HOLES)
    out = tmp_path / "filled.csv"
    args = ["impute", str(any_order_run), str(holes), "--out", str(out), "--draws", "3"]
    assert runner.invoke(app, args).exit_code == 0
    table, names = read_table(out)
    assert names == ["draw", *NAMES]
    assert table["data"][:, 0].tolist() == [0.0] * 4 + [1.0] * 4 + [2.0] * 4
    npy = tmp_path / "filled.npy"
    args = ["impute", str(any_order_run), str(holes), "--out", str(npy), "--draws", "3"]
    assert runner.invoke(app, args).exit_code == 0
    array = np.load(npy)
    assert array.shape == (3, 4, 3)
    np.testing.assert_array_equal(array.reshape(12, 3), table["data"][:, 1:])


def test_imputed_levels_follow_the_models_conditional() -> None:
    """Draws of a missing categorical cell have the frequencies of the model's exact
    conditional p(missing | observed)."""
    torch.manual_seed(0)
    rng = np.random.default_rng(1)
    rows = np.column_stack([rng.choice([0.5, 1.5, 2.5], 60), rng.choice([3.0, 4.0, 7.0], 60)])
    table = infer_table(rows, rows, ["a", "b"], where="t")
    assert table.value_dtype == torch.int64
    model = dk.create_model("categorical", 2, num_values=3, hidden_sizes=(16,), masks="any-order")
    draws = 6000
    filled = impute(
        model, table, np.array([[np.nan, 7.0]]), draws=draws,
        generator=torch.Generator().manual_seed(0),
    )  # fmt: skip
    counts = np.array([(filled[:, 0, 0] == level).sum() for level in (0.5, 1.5, 2.5)])
    candidates = torch.tensor([[0, 2], [1, 2], [2, 2]])
    observed = torch.tensor([False, True])
    with torch.no_grad():
        probs = model.conditional_log_prob(candidates, observed).exp().numpy()
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(counts / draws, probs, atol=4 * np.sqrt(0.25 / draws))


def test_a_run_that_has_not_learnt_every_conditional_is_refused(tmp_path: Path) -> None:
    data = write_table(tmp_path / "people.csv", _rows(), NAMES)
    run = tmp_path / "natural"
    assert runner.invoke(app, ["fit", "--data", str(data), *FAST, "--out", str(run)]).exit_code == 0
    holes = tmp_path / "holes.csv"
    holes.write_text(HOLES)
    out = tmp_path / "filled.csv"
    result = runner.invoke(app, ["impute", str(run), str(holes), "--out", str(out)])
    assert result.exit_code == 1 and "needs any_subset" in result.output
    assert "--masks any-order" in result.output
    assert result.output.count("\n") == 1 and not out.exists()
    result = runner.invoke(app, ["eval", str(run), "--observed", "age"])
    assert result.exit_code == 1 and "needs any_subset" in result.output


def test_impute_refuses_other_columns(any_order_run: Path, tmp_path: Path) -> None:
    holes = tmp_path / "holes.csv"
    holes.write_text(HOLES.replace("grade", "level"))
    out = tmp_path / "filled.csv"
    result = runner.invoke(app, ["impute", str(any_order_run), str(holes), "--out", str(out)])
    assert result.exit_code == 1 and "trained on the columns age, flag, grade" in result.output
    assert not out.exists()


def test_eval_observed_takes_column_names(any_order_run: Path) -> None:
    result = runner.invoke(app, ["eval", str(any_order_run), "--observed", "age,flag", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["missing"] == ["grade"] and report["units"] == "data"
    # A categorical column given the others: a probability, so a positive NLL.
    assert report["conditional_nll_nats"] > 0
    bad = runner.invoke(app, ["eval", str(any_order_run), "--observed", "age,height"])
    assert bad.exit_code == 1 and "names height, but the run's columns are" in bad.output
    every = runner.invoke(app, ["eval", str(any_order_run), "--observed", "age,flag,grade"])
    assert every.exit_code == 1 and "leave some missing" in every.output


def test_conditional_nll_includes_the_missing_columns_jacobian(any_order_run: Path) -> None:
    run = dk.runs.load_run(any_order_run)
    table, test = run.dataset.table, run.dataset.test
    observed = torch.tensor([False, True, True])  # age missing: a density, -log s added
    from densitykit.imputation import conditional_nll

    nll = conditional_nll(run.model, table, test, observed)
    with torch.no_grad():
        model_units = -run.model.conditional_log_prob(test, observed).double()
    expected = model_units + np.log(table.columns[0].scale)
    np.testing.assert_allclose(nll.numpy(), expected.numpy(), rtol=1e-6)
    assert parse_columns("age:real")[0].kind == "real"
