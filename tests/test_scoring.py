"""Scoring new data with a trained run: the Python call and `densitykit score`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from densitykit import runs
from densitykit.cli import app
from densitykit.errors import DataError
from densitykit.model import create_model
from densitykit.scoring import SCORE_COLUMNS, Scores, read_scoring_data, score, score_data

runner = CliRunner()
CODES = np.random.default_rng(1).integers(0, 4, size=(80, 3))


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("scoring")
    np.save(folder / "codes.npy", CODES)
    out = folder / "run"
    result = runner.invoke(
        app,
        ["fit", "--data", str(folder / "codes.npy"), "--hidden-sizes", "8", "--epochs", "1",
         "--num-masks", "2", "--masks", "multi-ordering", "--quiet", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return out


def test_score_matches_the_models_log_prob() -> None:
    model = create_model(
        "categorical", dim=3, num_values=4, hidden_sizes=(8,), masks="multi-ordering", num_masks=3
    )
    expected = model.log_prob(torch.from_numpy(CODES)).double().detach().numpy()
    assert np.allclose(score(model, CODES, batch_size=7), expected, atol=1e-5)
    one = model.log_prob(torch.from_numpy(CODES), mask=0).double().detach().numpy()
    assert np.allclose(score(model, CODES, num_masks=1), one, atol=1e-5)


def test_scores_agree_with_eval_and_are_written_as_csv_or_npy(run: Path, tmp_path: Path) -> None:
    test = runs.load_run(run).dataset.test
    scores = score_data(run, run.parent / "codes.npy")
    assert scores.log_prob.shape == (80,)
    # The mean NLL over the run's test examples is what `densitykit eval` reports.
    rows = {tuple(r): i for i, r in enumerate(CODES.tolist())}
    on_test = scores.log_prob[[rows[tuple(r)] for r in test.tolist()]]
    assert -on_test.mean() == pytest.approx(runs.evaluate_run(run)["nll_nats"], rel=1e-5)
    table = np.loadtxt(scores.save(tmp_path / "s.csv"), delimiter=",", skiprows=1)
    assert (tmp_path / "s.csv").read_text().splitlines()[0] == ",".join(("index", *SCORE_COLUMNS))
    assert np.allclose(table[:, 1], scores.log_prob, atol=1e-5)
    assert np.allclose(table[:, 3], -scores.log_prob / 3 / math.log(2), atol=1e-5)
    assert np.allclose(np.load(scores.save(tmp_path / "s.npy")), scores.log_prob)
    with pytest.raises(FileExistsError):
        scores.save(tmp_path / "s.npy")


def test_score_command(run: Path, tmp_path: Path) -> None:
    out = tmp_path / "scores.csv"
    result = runner.invoke(
        app, ["score", str(run), str(run.parent / "codes.npy"), "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "scored 80 examples: mean NLL" in result.output and "bits/dim" in result.output
    assert len(out.read_text().splitlines()) == 81
    again = runner.invoke(
        app, ["score", str(run), str(run.parent / "codes.npy"), "--out", str(out)]
    )
    assert again.exit_code == 1 and "--overwrite" in again.output


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (np.array([[0, 1, 4]]), "takes values 0..3, got 4"),
        (np.array([[0, 1]]), "expects examples of 3 values"),
        (np.array([[0.5, 1, 1]]), "non-integer 0.5"),
        (np.array([[-1, 1, 1]]), "non-negative"),
    ],
)
def test_bad_data_is_refused_in_one_line(run: Path, tmp_path: Path, data, says: str) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, data)
    with pytest.raises(DataError, match=says):
        score_data(run, path)
    result = runner.invoke(app, ["score", str(run), str(path)])
    assert result.exit_code == 1 and says.split()[0] in result.output
    assert result.output.count("\n") == 1


def test_a_large_npy_is_read_in_batches_from_disk(run: Path, tmp_path: Path) -> None:
    path = tmp_path / "many.npy"
    np.save(path, np.tile(CODES, (50, 1)))
    seen = []
    scores = score_data(run, path, batch_size=1000, on_batch=lambda done, total: seen.append(done))
    assert seen == [1000, 2000, 3000, 4000] and len(scores.log_prob) == 4000


def test_summary_line() -> None:
    text = Scores(np.array([-2.0, -4.0]), dim=2).summary()
    assert text.startswith("2 examples: mean NLL 3.0000 nats (1.50000 nats/dim")


def test_a_registered_name_wins_over_a_folder_of_that_name(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "1d-gaussian").mkdir()  # an unrelated folder named like a data set
    examples, where = read_scoring_data("1d-gaussian")
    assert where == "1d-gaussian test" and examples.shape == (200, 1)


def test_an_npz_with_splits_needs_a_split(run: Path, tmp_path: Path) -> None:
    path = tmp_path / "splits.npz"
    np.savez(path, train=CODES[:60], test=CODES[60:])
    with pytest.raises(DataError, match=r"holds arrays \['test', 'train'\]; choose one"):
        score_data(run, path)
    assert len(score_data(run, path, split="test").log_prob) == 20


def test_a_vector_run_samples_to_npy_and_refuses_a_picture(run: Path, tmp_path: Path) -> None:
    result = runner.invoke(app, ["sample", str(run), "-n", "7", "--out", str(tmp_path / "s.npy")])
    assert result.exit_code == 0, result.output
    assert np.load(tmp_path / "s.npy").shape == (7, 3)
    result = runner.invoke(app, ["sample", str(run), "--out", str(tmp_path / "s.png")])
    assert result.exit_code == 1 and "no picture; write a .npy file" in result.output
    assert not (tmp_path / "s.png").exists()
