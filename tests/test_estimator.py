"""The scikit-learn-shaped estimator: its methods, scikit-learn's checks, model selection."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from densitykit.errors import DataError, ResourceError
from densitykit.estimator import MADEEstimator, value_kind

sklearn = pytest.importorskip("sklearn")  # an optional extra: densitykit[sklearn]

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

X = np.random.default_rng(0).integers(0, 2, size=(300, 6))
X[:, 1] = X[:, 0]  # a dependence for the model to learn
SMALL = {"hidden_sizes": (8,), "epochs": 2}
ROOT = Path(__file__).resolve().parents[1]

CHECKED = MADEEstimator(hidden_sizes=(4,), epochs=1)  # small: the checks fit it ~40 times


@parametrize_with_checks([CHECKED])
def test_every_scikit_learn_check(estimator: MADEEstimator, check: Any) -> None:
    # Every check runs and passes; scikit-learn itself skips check_array_api_input unless
    # SCIPY_ARRAY_API=1 was set before SciPy was imported (run below in a fresh process).
    check(estimator)


@pytest.mark.slow
def test_the_array_api_check_in_a_process_with_scipys_array_api() -> None:
    code = (
        "import collections\n"
        "from sklearn.utils.estimator_checks import check_estimator\n"
        "from densitykit.estimator import MADEEstimator\n"
        "results = check_estimator(MADEEstimator(hidden_sizes=(4,), epochs=1), on_fail=None)\n"
        "print(sorted(collections.Counter(r['status'] for r in results).items()))\n"
        "print([r['check_name'] for r in results if r['status'] != 'passed'])\n"
    )
    env = {**os.environ, "SCIPY_ARRAY_API": "1", "OMP_NUM_THREADS": "1"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    counts, not_passed = done.stdout.strip().splitlines()
    assert not_passed == "[]", done.stdout
    assert counts.startswith("[('passed', ") and int(counts.split()[-1].rstrip(")]")) >= 41


def test_fit_returns_self_and_the_fitted_attributes() -> None:
    est = MADEEstimator(**SMALL)
    assert est.fit(X) is est
    assert est.n_features_in_ == 6 and est.num_values_ == 2 and len(est.history_) == 2
    assert est.model_.config.head == "bernoulli"


def test_scores_samples_and_sampling() -> None:
    est = MADEEstimator(**SMALL).fit(X)
    scores = est.score_samples(X)
    assert scores.shape == (300,) and scores.dtype == np.float64 and (scores < 0).all()
    assert est.score(X) == pytest.approx(scores.mean())
    assert est.bits_per_dim(X) == pytest.approx(-scores.mean() / 6 / np.log(2))
    # Order and subset invariance, on integer data.
    order = np.random.default_rng(1).permutation(300)
    assert np.allclose(est.score_samples(X[order]), scores[order])
    assert np.allclose(est.score_samples(X[:7]), scores[:7])
    samples = est.sample(50, random_state=3)
    assert (
        samples.shape == (50, 6) and samples.dtype == np.int64 and set(np.unique(samples)) <= {0, 1}
    )
    assert np.array_equal(samples, est.sample(50, random_state=3))


def test_fitting_is_idempotent_and_pickles() -> None:
    first = MADEEstimator(**SMALL).fit(X).score_samples(X)
    est = MADEEstimator(**SMALL).fit(X).fit(X)
    assert np.allclose(est.score_samples(X), first)
    again = pickle.loads(pickle.dumps(est))
    assert np.allclose(again.score_samples(X), first)
    assert clone(est).get_params() == est.get_params()


def test_errors() -> None:
    with pytest.raises(NotFittedError):
        MADEEstimator().score_samples(X)
    est = MADEEstimator(**SMALL).fit(X)
    with pytest.raises(ValueError, match="X has 5 features"):
        est.score_samples(X[:, :5])
    with pytest.raises(DataError, match="takes values 0..1, got 2"):
        est.score_samples(np.full((2, 6), 2))
    with pytest.raises(DataError, match="non-integer 0.5"):  # codes asked for
        MADEEstimator(kinds="discrete").fit(X * 0.5 + 0.5)
    with pytest.raises(ValueError, match="Negative values"):
        MADEEstimator(kinds="discrete").fit(-X)


def test_grid_search_by_held_out_log_likelihood_and_a_pipeline() -> None:
    search = GridSearchCV(
        MADEEstimator(epochs=3),
        {"hidden_sizes": [(4,), (16,)], "masks": ["natural", "multi-ordering"]},
        cv=2,
    )
    search.fit(X)
    assert set(search.best_params_) == {"hidden_sizes", "masks"}
    assert search.cv_results_["mean_test_score"].shape == (4,)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    pipe = make_pipeline(
        FunctionTransformer(lambda a: (a > 0.5).astype(int)), MADEEstimator(**SMALL)
    )
    pipe.fit(X * 0.9)
    assert pipe.score_samples(X * 0.9).shape == (300,)


def test_unseeded_sampling_leaves_torchs_global_generator_alone() -> None:
    import torch

    est = MADEEstimator(**SMALL).fit(X)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    est.sample(5)
    assert torch.equal(torch.rand(3), expected)


def test_one_huge_value_is_refused_before_building_a_model_for_it() -> None:
    X = np.array([[0, 1], [1, 0], [5_000_000, 1]])
    with pytest.raises(ResourceError, match=r"X holds the value 5,000,000.*num_values is given"):
        MADEEstimator(epochs=1).fit(X)
    with pytest.raises(ResourceError, match="would need"):  # asked for: the size is checked
        MADEEstimator(epochs=1, num_values=10**9).fit(X)
    fitted = MADEEstimator(epochs=1).fit(np.array([[0, 1], [1, 0]]))
    with pytest.raises(ValueError, match=r"random_state must be an integer in 0\.\."):
        fitted.sample(2, random_state=2**70)


# Real values: a MADE with a mixture of Gaussians per variable, on standardised columns.
REALS = np.random.default_rng(2).normal(size=(240, 3)) @ np.array(
    [[1.0, 0.8, 0.0], [0.0, 0.6, 0.5], [0.0, 0.0, 0.3]]
)


def mixed_rows(num_rows: int, seed: int) -> np.ndarray:
    """A real, a binary it drives, a categorical (levels 2.5, 7, 9) and a zero-inflated
    amount they drive."""
    rng = np.random.default_rng(seed)
    real = rng.normal(10.0, 3.0, size=num_rows)
    flag = rng.random(num_rows) < 1.0 / (1.0 + np.exp(-(real - 10.0)))
    level = np.array([2.5, 7.0, 9.0])[rng.integers(0, 3, size=num_rows)]
    amount = np.where(flag, rng.exponential(level), 0.0)
    return np.column_stack([real, flag, level, amount])


MIXED = mixed_rows(300, 5)


def test_which_path_x_takes() -> None:
    assert value_kind(np.array([[0, 3], [1, 2]])) == "discrete"
    assert value_kind(np.array([[0.0, 3.0], [1.0, 2.0]])) == "discrete"  # whole floats
    assert value_kind(np.array([[True, False]])) == "discrete"
    assert value_kind(np.array([[0.0, 0.5], [0.25, 1.5]])) == "real"
    assert value_kind(np.array([[0, -1], [2, -5], [3, 4]])) == "real"  # no code is negative
    assert value_kind(np.array([[0.5]]), "discrete") == "discrete"  # forced: refused in fit
    assert value_kind(np.array([[0, 1], [1, 0]]), "real") == "real"
    assert value_kind(MIXED) == "mixed"
    assert value_kind(MIXED, ["real", "real", "real", "real"]) == "real"
    assert value_kind(X, ["binary"] * 6) == "mixed"  # a table of codes (its own head)
    with pytest.raises(ValueError, match=r"kinds must be one of \['auto', 'discrete', 'real'\]"):
        value_kind(np.array([[0, 1]]), 3)
    with pytest.raises(DataError, match="the kind of 'mixed-up' must be one of"):
        value_kind(np.array([[0, 1]]), "mixed-up")
    with pytest.raises(ValueError, match="n_samples=1"):
        value_kind(np.array([[0.5, 1.5]]))


def test_real_x_is_standardised_and_scored_in_its_own_units() -> None:
    est = MADEEstimator(**SMALL).fit(REALS)
    assert est.kind_ == "real" and est.num_values_ == 0
    assert est.model_.config.head == "gaussian-mixture"
    assert np.allclose(est.loc_, REALS.mean(axis=0)) and np.allclose(est.scale_, REALS.std(axis=0))
    # The same data in other units (x -> c x + b per column) trains the same network on the
    # same standardised values, so its log-density differs by the Jacobian -sum log c.
    units = np.array([100.0, 0.01, 3.0])
    moved = MADEEstimator(**SMALL).fit(REALS * units - 7.0)
    assert np.allclose(
        moved.score_samples(REALS * units - 7.0),
        est.score_samples(REALS) - np.log(units).sum(),
        atol=1e-3,
    )
    drawn = est.sample(20, random_state=4)
    assert np.allclose(moved.sample(20, random_state=4), drawn * units - 7.0)
    samples = est.sample(30, random_state=1)
    assert samples.shape == (30, 3) and samples.dtype == np.float64


def test_a_real_density_integrates_to_one_in_the_datas_units() -> None:
    # One variable on a scale of 40 units: exp(score_samples) integrates to 1 over x.
    x = np.random.default_rng(3).normal(500.0, 40.0, size=(200, 1))
    est = MADEEstimator(**SMALL).fit(x)
    grid = np.linspace(0.0, 1000.0, 20001)[:, None]
    area = np.exp(est.score_samples(grid)).sum() * (grid[1, 0] - grid[0, 0])
    assert area == pytest.approx(1.0, abs=1e-3)


def test_forcing_a_path_and_its_errors() -> None:
    counts = MADEEstimator(**SMALL, kinds="real").fit(X)  # integer-valued, modelled as real
    assert counts.kind_ == "real" and counts.sample(3, random_state=0).dtype == np.float64
    constant = np.column_stack([REALS[:, 0], np.full(240, 2.5)])
    with pytest.raises(DataError, match="column column2 is constant"):
        MADEEstimator(**SMALL).fit(constant)
    with pytest.raises(ValueError, match="num_values=4 counts discrete codes, but X is a table"):
        MADEEstimator(num_values=4).fit(REALS)
    with pytest.raises(ValueError, match="head 'categorical' cannot model the columns.*gaussian"):
        MADEEstimator(head="categorical").fit(REALS)
    with pytest.raises(ValueError, match="contains NaN or infinity"):
        MADEEstimator(**SMALL).fit(REALS).score_samples(np.full((1, 3), np.nan))
    with pytest.raises(DataError, match="non-integer 0.5"):  # a code model refuses fractions
        MADEEstimator(**SMALL).fit(X).score_samples(np.full((1, 6), 0.5))


def test_a_real_model_pickles_and_selects_by_grid_search() -> None:
    est = MADEEstimator(**SMALL).fit(REALS)
    again = pickle.loads(pickle.dumps(est))
    assert np.allclose(again.score_samples(REALS), est.score_samples(REALS))
    search = GridSearchCV(MADEEstimator(epochs=2), {"hidden_sizes": [(4,), (16,)]}, cv=2)
    assert np.isfinite(search.fit(REALS).cv_results_["mean_test_score"]).all()


def test_mixed_columns_are_inferred_and_sampled_in_their_own_values() -> None:
    est = MADEEstimator(**SMALL).fit(MIXED)
    assert est.kind_ == "mixed" and est.num_values_ == 0
    assert est.table_.kinds == ("real", "binary", "categorical", "spike")
    config = est.model_.config
    assert config.head == "mixed" and config.head_options["kinds"][:3] == [
        "real", "binary", "categorical:3"
    ]  # fmt: skip
    assert np.allclose(est.loc_[[1, 2]], 0.0) and est.loc_[0] == pytest.approx(MIXED[:, 0].mean())
    drawn = est.sample(400, random_state=0)
    assert drawn.shape == (400, 4) and drawn.dtype == np.float64
    assert set(np.unique(drawn[:, 1])) <= {0.0, 1.0}
    assert set(np.unique(drawn[:, 2])) <= {2.5, 7.0, 9.0}  # levels, not codes
    assert (drawn[:, 3] == 0.0).any() and (drawn[:, 3] != 0.0).any()  # exact spikes and slab
    scores = est.score_samples(MIXED)
    assert scores.shape == (300,) and np.isfinite(scores).all()
    again = pickle.loads(pickle.dumps(est))
    assert np.allclose(again.score_samples(MIXED), scores)
    with pytest.raises(DataError, match="column column3 is categorical over the levels 2.5, 7, 9"):
        est.score_samples(np.array([[10.0, 1.0, 3.0, 0.0]]))


def test_a_mixed_likelihood_sums_and_integrates_to_one_in_the_datas_units() -> None:
    # A binary and an amount in the hundreds, zero for a third of the rows: for each
    # binary value, P(amount = 0) plus the density of the rest integrated over the
    # amount's own units sums to P(binary value); the two add to one.
    rng = np.random.default_rng(4)
    flag = (rng.random(300) < 0.4).astype(float)
    amount = np.where(rng.random(300) < 0.3, 0.0, rng.normal(300.0 + 100.0 * flag, 40.0))
    est = MADEEstimator(**SMALL).fit(np.column_stack([flag, amount]))
    assert est.table_.kinds == ("binary", "spike")
    grid = np.linspace(-200.0, 900.0, 11001)
    grid = grid[grid != 0.0]
    total = 0.0
    for value in (0.0, 1.0):
        spike = np.exp(est.score_samples(np.array([[value, 0.0]])))[0]
        rows = np.column_stack([np.full(len(grid), value), grid])
        total += spike + np.exp(est.score_samples(rows)).sum() * (grid[1] - grid[0])
    assert total == pytest.approx(1.0, abs=2e-3)


def test_kinds_given_per_column_and_the_heads_they_allow() -> None:
    est = MADEEstimator(**SMALL, kinds=["real", "auto", "categorical", "real"]).fit(MIXED)
    assert est.table_.kinds == ("real", "binary", "categorical", "real")
    assert est.kind_ == "mixed"
    assert MADEEstimator(**SMALL, kinds="real,auto,auto,spike=0").fit(MIXED).table_.kinds[3] == (
        "spike"
    )
    codes = MADEEstimator(**SMALL, kinds=["binary"] * 6).fit(X)  # codes as a table
    assert codes.model_.config.head == "bernoulli" and codes.sample(3, random_state=0).dtype == (
        np.float64
    )
    options = MADEEstimator(**SMALL, head_options={"num_components": 2}).fit(MIXED)
    assert options.model_.config.head_options["num_components"] == 2
    with pytest.raises(ValueError, match="head 'gaussian' cannot model the columns of X"):
        MADEEstimator(**SMALL, head="gaussian").fit(MIXED)
    with pytest.raises(DataError, match="gives 2 kinds, but the file has 4 columns"):
        MADEEstimator(**SMALL, kinds=["real", "real"]).fit(MIXED)
