"""Tables from the command line and the run API: fit, eval, sample, score (data units)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from densitykit.cli import app
from densitykit.data.files import read_table, write_table
from densitykit.model import ModelConfig
from densitykit.runs import DataConfig, RunConfig, evaluate_run, fit_run, load_run
from densitykit.scoring import score_data
from densitykit.train import TrainConfig

runner = CliRunner()
FAST = ["--epochs", "2", "--hidden-sizes", "8", "--batch-size", "64", "--quiet"]
NAMES = ["height", "weight"]


def _real_rows(n: int = 120, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    height = rng.normal(170.0, 9.0, n)
    return np.column_stack([height, 0.9 * height - 90.0 + rng.normal(0.0, 4.0, n)])


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tables")
    data = write_table(folder / "people.csv", _real_rows(), NAMES)
    run = folder / "run"
    result = runner.invoke(app, ["fit", "--data", str(data), *FAST, "--out", str(run)])
    assert result.exit_code == 0, result.output
    return data, run


def test_fit_reports_columns_and_data_units(real_run: tuple[Path, Path]) -> None:
    _, run = real_run
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["head"] == "gaussian-mixture" and metrics["columns"] == NAMES
    config = json.loads((run / "config.json").read_text())
    table = config["data"]["options"]["table"]
    assert [c["kind"] for c in table["columns"]] == ["real", "real"]
    scales = [c["scale"] for c in table["columns"]]
    # Data units: the model's NLL of standardised values plus the log of the scales.
    expected = metrics["test_nll_model_units_nats"] + sum(math.log(s) for s in scales)
    assert metrics["test_nll_nats"] == pytest.approx(expected)


def test_eval_prints_kinds_and_units(real_run: tuple[Path, Path]) -> None:
    _, run = real_run
    result = runner.invoke(app, ["eval", str(run)])
    assert result.exit_code == 0, result.output
    assert "columns: height:real, weight:real" in result.output
    assert "no spike columns" in result.output and "in the data's units" in result.output
    as_json = json.loads(runner.invoke(app, ["eval", str(run), "--json"]).output)
    assert as_json["units"] == "data" and as_json["column_kinds"] == ["real", "real"]


def test_samples_are_in_the_data_units(real_run: tuple[Path, Path], tmp_path: Path) -> None:
    _, run = real_run
    for name in ("s.csv", "s.npy"):
        result = runner.invoke(
            app, ["sample", str(run), "-n", "300", "--out", str(tmp_path / name)]
        )
        assert result.exit_code == 0, result.output
    arrays, names = read_table(tmp_path / "s.csv")
    assert names == NAMES
    samples = arrays["data"]
    np.testing.assert_allclose(samples, np.load(tmp_path / "s.npy"), rtol=1e-8)
    # Un-standardised: the heights are around 170, not around 0.
    assert 150 < samples[:, 0].mean() < 190 and samples[:, 0].std() > 3


def test_score_is_the_model_density_plus_the_jacobian(
    real_run: tuple[Path, Path], tmp_path: Path
) -> None:
    data, run = real_run
    scores = score_data(run, data)
    loaded = load_run(run)
    rows = read_table(data)[0]["data"]
    values = loaded.dataset.table.encode(rows, where="t")
    with torch.no_grad():
        model_units = loaded.model.log_prob(values).double()
    jacobian = -sum(math.log(c.scale) for c in loaded.dataset.table.columns)
    np.testing.assert_allclose(scores.log_prob, model_units.numpy() + jacobian, rtol=1e-5)
    out = tmp_path / "scores.csv"
    result = runner.invoke(app, ["score", str(run), str(data), "--out", str(out)])
    assert result.exit_code == 0 and len(out.read_text().splitlines()) == 121


def test_an_integer_file_with_real_columns(tmp_path: Path) -> None:
    rows = np.rint(_real_rows()).astype(int)
    data = tmp_path / "ints.csv"
    data.write_text("height,weight\n" + "\n".join(f"{a},{b}" for a, b in rows) + "\n")
    run = tmp_path / "run"
    result = runner.invoke(
        app, ["fit", "--data", str(data), "--columns", "real,real", *FAST, "--out", str(run)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((run / "metrics.json").read_text())["head"] == "gaussian-mixture"


@pytest.mark.parametrize(
    ("content", "says"),
    [
        ("height,weight\n170.5,70\n,80\n160,60\n180,75\n", "column height has NaN"),
        ("height,weight\n170.5,70\n180.5,x\n160,60\n", "column weight holds text"),
        ("height,weight\n170.5,70\n170.5,80\n170.5,60\n170.5,75\n", "column height is constant"),
    ],
)
def test_bad_tables_fail_in_one_line_and_write_nothing(
    tmp_path: Path, content: str, says: str
) -> None:
    data = tmp_path / "bad.csv"
    data.write_text(content)
    result = runner.invoke(app, ["fit", "--data", str(data), *FAST, "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and says in result.output
    errors = [line for line in result.output.splitlines() if not line.startswith("note:")]
    assert len(errors) == 1 and not (tmp_path / "r").exists()


def test_columns_that_change_between_fit_and_score_are_refused(
    real_run: tuple[Path, Path], tmp_path: Path
) -> None:
    _, run = real_run
    rows = _real_rows(20, seed=1)
    for name, table, names, says in [
        ("renamed.csv", rows, ["height", "mass"], "trained on the columns height, weight"),
        ("wider.csv", np.column_stack([rows, rows[:, :1]]), [*NAMES, "x"], "height, weight"),
        ("narrow.npy", rows[:, :1], None, "trained on 2 columns"),
    ]:
        path = tmp_path / name
        if path.suffix == ".npy":
            np.save(path, table)
        else:
            write_table(path, table, names)
        result = runner.invoke(
            app, ["score", str(run), str(path), "--out", str(tmp_path / "o.csv")]
        )
        assert result.exit_code == 1 and says in result.output, result.output
        assert result.output.count("\n") == 1 and not (tmp_path / "o.csv").exists()


def test_a_mixed_table_fits_and_samples_give_the_levels_back(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    amount = np.where(rng.random(200) < 0.3, 0.0, rng.gamma(2.0, 3.0, 200))
    rows = np.column_stack(
        [rng.normal(size=200), rng.integers(0, 2, 200), rng.choice([1.5, 2.5, 10.0], 200), amount]
    )
    data = write_table(tmp_path / "mixed.csv", rows, ["x", "flag", "grade", "amount"])
    config = RunConfig(
        DataConfig("file", {"path": str(data)}),
        ModelConfig(hidden_sizes=(8,)),
        TrainConfig(epochs=1, batch_size=50),
    )
    metrics = fit_run(config, tmp_path / "run")
    assert metrics["head"] == "mixed" and metrics["spike_columns"] == ["amount"]
    assert metrics["column_kinds"] == ["real", "binary", "categorical", "spike"]
    assert math.isfinite(evaluate_run(tmp_path / "run")["nll_nats"])
    out = tmp_path / "samples.csv"
    result = runner.invoke(app, ["sample", str(tmp_path / "run"), "-n", "400", "--out", str(out)])
    assert result.exit_code == 0, result.output
    samples = read_table(out)[0]["data"]
    assert set(samples[:, 1]) == {0.0, 1.0} and set(samples[:, 2]) == {1.5, 2.5, 10.0}
    assert (samples[:, 3] == 0.0).any() and (samples[:, 3] != 0.0).any()
    eval_output = runner.invoke(app, ["eval", str(tmp_path / "run")]).output
    assert "spike head (a probability at the spike, a density elsewhere): amount" in eval_output


def test_a_real_head_on_discrete_columns_is_refused(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    rows = np.column_stack([rng.normal(size=100), rng.integers(0, 2, 100)])
    data = write_table(tmp_path / "mixed.csv", rows, ["x", "flag"])
    result = runner.invoke(
        app, ["fit", "--data", str(data), "--head", "gaussian", *FAST, "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 1 and "flag is not" in result.output
    assert not (tmp_path / "r").exists()


def test_npy_and_npz_tables_from_the_command_line(tmp_path: Path) -> None:
    rows = _real_rows()
    np.save(tmp_path / "people.npy", rows)
    run = tmp_path / "run"
    args = ["fit", "--data", str(tmp_path / "people.npy"), "--columns", "real,real", *FAST]
    result = runner.invoke(app, [*args, "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "columns: column1:real, column2:real" in result.output
    result = runner.invoke(app, ["score", str(run), str(tmp_path / "people.npy")])
    assert result.exit_code == 0 and "scored 120 examples" in result.output
    np.savez(tmp_path / "split.npz", train=rows[:100], test=rows[100:])
    ds_run = tmp_path / "npz-run"
    result = runner.invoke(
        app, ["fit", "--data", str(tmp_path / "split.npz"), *FAST, "--out", str(ds_run)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((ds_run / "metrics.json").read_text())["column_kinds"] == ["real", "real"]


def test_other_families_on_a_table(tmp_path: Path) -> None:
    data = write_table(tmp_path / "people.csv", _real_rows(), NAMES)
    run = tmp_path / "orderless"
    args = ["fit", "--data", str(data), "--family", "orderless", "--hidden-sizes", "8"]
    result = runner.invoke(app, [*args, "--epochs", "1", "--quiet", "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "metrics.json").read_text())["head"] == "gaussian-mixture"
    args = ["fit", "--data", str(data), "--family", "histogram", "--quiet"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "h")])
    assert result.exit_code == 1 and "holds real values" in result.output
    assert not (tmp_path / "h").exists()


def test_resume_keeps_the_recorded_columns(tmp_path: Path) -> None:
    data = write_table(tmp_path / "people.csv", _real_rows(), NAMES)
    run = tmp_path / "run"
    assert runner.invoke(app, ["fit", "--data", str(data), *FAST, "--out", str(run)]).exit_code == 0
    before = json.loads((run / "config.json").read_text())["data"]["options"]["table"]
    write_table(data, _real_rows(seed=5) * 10.0, NAMES)  # the file changed since
    result = runner.invoke(app, ["resume", str(run), "--epochs", "3", "--quiet"])
    assert result.exit_code == 0, result.output
    after = json.loads((run / "config.json").read_text())["data"]["options"]["table"]
    assert after == before  # the training statistics are the run's, not the new file's
