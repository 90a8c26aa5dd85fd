"""The scikit-learn-shaped estimator: its methods, scikit-learn's checks, model selection."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from densitykit.errors import DataError, ResourceError
from densitykit.estimator import MADEEstimator

sklearn = pytest.importorskip("sklearn")  # an optional extra: densitykit[sklearn]

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

X = np.random.default_rng(0).integers(0, 2, size=(300, 6))
X[:, 1] = X[:, 0]  # a dependence for the model to learn
SMALL = {"hidden_sizes": (8,), "epochs": 2}

# scikit-learn's checks feed continuous data (Gaussian floats) to every estimator. A
# density estimator of discrete data rightly refuses non-integers, so the checks that
# fit on such data cannot apply; tests below prove the same contracts on integer data.
NOT_APPLICABLE = {
    name: "fits on continuous float data; a discrete density estimator refuses non-integers"
    for name in [
        "check_dict_unchanged", "check_dont_overwrite_parameters", "check_estimators_dtypes",
        "check_estimators_fit_returns_self", "check_estimators_nan_inf",
        "check_estimators_overwrite_params", "check_estimators_pickle",
        "check_f_contiguous_array_estimator", "check_fit2d_1feature", "check_fit2d_1sample",
        "check_fit2d_predict1d", "check_fit_check_is_fitted", "check_fit_idempotent",
        "check_fit_score_takes_y", "check_methods_sample_order_invariance",
        "check_methods_subset_invariance", "check_n_features_in",
        "check_n_features_in_after_fitting", "check_pipeline_consistency",
        "check_readonly_memmap_input",
    ]
}  # fmt: skip
NOT_APPLICABLE["check_dtype_object"] = "fits on strings stored as objects; never accepted"


def test_scikit_learns_checks_that_apply_pass() -> None:
    results = check_estimator(
        MADEEstimator(hidden_sizes=(4,), epochs=1),
        on_fail=None,
        expected_failed_checks=NOT_APPLICABLE,
    )
    failed = [r["check_name"] for r in results if r["status"] == "failed"]
    assert not failed, failed
    passed = {r["check_name"] for r in results if r["status"] == "passed"}
    assert {"check_estimators_unfitted", "check_set_params", "check_estimator_cloneable",
            "check_fit_non_negative", "check_complex_data"} <= passed  # fmt: skip


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
    with pytest.raises(DataError, match="non-integer 0.5"):
        MADEEstimator().fit(X * 0.5 + 0.5)
    with pytest.raises(ValueError, match="Negative values"):
        MADEEstimator().fit(-X)


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
