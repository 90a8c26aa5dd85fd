"""Real-valued data sets and ``mnist-logit``: the MAF paper's grey MNIST in logit space, its
split and noise, and the conversion of its log-densities to bits per pixel."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

import densitykit as dk
from densitykit.data import load_dataset
from densitykit.data.dataset import Dataset
from densitykit.data.idx import write_idx
from densitykit.data.mnist_logit import (
    LOGIT_ALPHA,
    bits_per_pixel,
    dequantize_logit,
    pixel_log_density,
    pixels_from_logits,
)
from densitykit.errors import DataError, DensitykitError
from densitykit.family import DataFacts, check_head_fits, default_head


def tiny_mnist(folder: Path, num_train: int = 30, num_test: int = 7, side: int = 4) -> Path:
    """Random grey images (with 0 and 255 present) as the two IDX image files and labels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    for name, count in (("train", num_train), ("t10k", num_test)):
        images = rng.integers(0, 256, size=(count, side, side), dtype=np.uint8)
        images[0, 0, :2] = (0, 255)
        write_idx(images, folder / f"{name}-images-idx3-ubyte")
        write_idx(
            rng.integers(0, 10, size=count, dtype=np.uint8), folder / f"{name}-labels-idx1-ubyte"
        )
    return folder


def raw_images(folder: Path, split: str) -> np.ndarray:
    return dk.data.read_idx(folder / f"{split}-images-idx3-ubyte")


# -- the transform -----------------------------------------------------------------------------
def test_dequantize_logit_keeps_every_grey_level_in_its_own_bin() -> None:
    grey = np.arange(256, dtype=np.uint8).repeat(50)
    y = dequantize_logit(grey, np.random.default_rng(0))
    assert y.dtype == np.float32 and np.isfinite(y).all()
    pixels = pixels_from_logits(torch.from_numpy(y).double())
    # p + u lies in [p, p + 1): the floor gives the grey level back (float32 rounding of
    # y moves v by far less than the distance to a bin edge for these draws).
    assert torch.equal(pixels.floor().long(), torch.from_numpy(grey.astype(np.int64)))
    # the logit is increasing, and the noise is not the same for every pixel
    assert (np.diff(y.reshape(256, 50).mean(axis=1)) > 0).all()
    assert len(np.unique(y[:50])) == 50


def test_dequantize_logit_is_the_papers_formula_and_seeded() -> None:
    grey = np.array([[0, 17, 255]], dtype=np.uint8)
    u = np.random.default_rng(5).random(grey.shape)
    s = LOGIT_ALPHA + (1 - 2 * LOGIT_ALPHA) * (grey + u) / 256
    expected = np.log(s / (1 - s))
    got = dequantize_logit(grey, np.random.default_rng(5))
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    assert not np.array_equal(got, dequantize_logit(grey, np.random.default_rng(6)))


@pytest.mark.parametrize("alpha", [0.0, 0.5, -1.0])
def test_bad_alpha_is_refused(alpha: float) -> None:
    with pytest.raises(ValueError, match=r"alpha must lie in \(0, 0.5\)"):
        dequantize_logit(np.zeros(2, dtype=np.uint8), np.random.default_rng(0), alpha)
    with pytest.raises(TypeError, match="alpha must be a number"):
        pixels_from_logits(torch.zeros(1), "0.1")  # type: ignore[arg-type]


# -- the conversion to pixel space -------------------------------------------------------------
def test_a_standard_logistic_in_logit_space_is_eight_bits_per_pixel() -> None:
    """The logistic density of y is s(1 - s): mapped back to pixels it is uniform over
    [0, 256) (up to the factor 1 - 2 alpha), which is 8 bits per pixel."""
    y = torch.tensor([[-7.0, 0.0, 0.3], [2.5, -1.0, 11.0]], dtype=torch.float64)
    logistic = (torch.nn.functional.logsigmoid(y) + torch.nn.functional.logsigmoid(-y)).sum(1)
    pixel = pixel_log_density(logistic, y)
    uniform = 3 * (math.log1p(-2 * LOGIT_ALPHA) - math.log(256))
    torch.testing.assert_close(pixel, torch.full((2,), uniform, dtype=torch.float64))
    assert bits_per_pixel(pixel, 3).tolist() == pytest.approx([8.0, 8.0], abs=1e-5)


def test_the_jacobian_is_that_of_the_inverse_map() -> None:
    """log p(v) - log p(y) is log |det dy/dv|, computed here by autograd on a tiny example."""
    alpha = 0.01
    v = torch.tensor([3.7, 128.2, 250.9], dtype=torch.float64)

    def to_logit(pixels: torch.Tensor) -> torch.Tensor:
        s = alpha + (1 - 2 * alpha) * pixels / 256
        return torch.log(s) - torch.log1p(-s)

    jacobian = torch.autograd.functional.jacobian(to_logit, v)
    log_det = torch.linalg.slogdet(jacobian).logabsdet
    y = to_logit(v)[None]
    converted = pixel_log_density(torch.tensor([-2.5]), y, alpha)
    torch.testing.assert_close(converted, (-2.5 + log_det)[None])
    with pytest.raises(ValueError, match=r"expected log-densities \(N,\) and values \(N, D\)"):
        pixel_log_density(torch.zeros(2), y, alpha)


# -- the data set ------------------------------------------------------------------------------
def test_mnist_logit_has_the_fixed_split_and_real_values(tmp_path: Path) -> None:
    folder = tiny_mnist(tmp_path / "m")
    ds = load_dataset("mnist-logit", data_dir=folder, num_val=10)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (20, 10, 7)
    assert ds.num_values == 0 and ds.is_real and ds.kind == "image" and ds.shape == (4, 4)
    assert all(split.dtype == torch.float32 for split in ds.splits().values())
    # the first images train, the last validate, in order: each one's grey levels come back
    train_images, test_images = raw_images(folder, "train"), raw_images(folder, "t10k")
    for split, images in ((ds.train, train_images[:20]), (ds.val, train_images[20:]),
                          (ds.test, test_images)):  # fmt: skip
        grey = pixels_from_logits(split.double()).floor().long().reshape(images.shape)
        assert torch.equal(grey, torch.from_numpy(images.astype(np.int64)))
    assert torch.equal(ds.labels("val"), torch.from_numpy(dk.data.read_idx(
        folder / "train-labels-idx1-ubyte")[20:].astype(np.int64)))  # fmt: skip
    assert load_dataset("mnist-logit", **ds.options).train.equal(ds.train)


def test_the_noise_is_seeded_and_does_not_depend_on_max_train(tmp_path: Path) -> None:
    folder = tiny_mnist(tmp_path / "m")
    ds = load_dataset("mnist-logit", data_dir=folder, num_val=10, seed=1)
    again = load_dataset("mnist-logit", data_dir=folder, num_val=10, seed=1)
    other = load_dataset("mnist-logit", data_dir=folder, num_val=10, seed=2)
    small = load_dataset("mnist-logit", data_dir=folder, num_val=10, seed=1, max_train=5)
    assert ds.train.equal(again.train) and ds.test.equal(again.test)
    assert not ds.train.equal(other.train) and not ds.test.equal(other.test)
    assert small.train.equal(ds.train[:5]) and small.val.equal(ds.val)
    assert small.test.equal(ds.test)


def test_mnist_logit_refuses_bad_options(tmp_path: Path) -> None:
    folder = tiny_mnist(tmp_path / "m")
    with pytest.raises(DataError, match="expected more than num_val=30 training images, got 30"):
        load_dataset("mnist-logit", data_dir=folder, num_val=30)
    with pytest.raises(ValueError, match="alpha must lie"):
        load_dataset("mnist-logit", data_dir=folder, num_val=10, alpha=0.7)
    with pytest.raises(TypeError, match="data_dir must be a folder path or None, got int"):
        load_dataset("mnist-logit", data_dir=3)


# -- real values in a Dataset, and the heads that fit them -------------------------------------
def real(rows: list[list[float]], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(rows, dtype=dtype)


def test_a_real_dataset_holds_finite_float32_values() -> None:
    data = real([[0.5, -2.0], [1.0, 3.0]])
    ds = Dataset("r", data, data, data, num_values=0, kind="vector", shape=(2,))
    assert ds.is_real and ds.dim == 2
    with pytest.raises(
        DataError, match=r"must be a 2-D torch.float32 tensor \(N, D\), got torch.int64"
    ):
        Dataset("r", data.long(), data, data, num_values=0, kind="vector", shape=(2,))
    bad = real([[float("nan"), 1.0], [float("inf"), 0.0]])
    with pytest.raises(DataError, match="Dataset.val values must be finite reals, got 2 NaN"):
        Dataset("r", data, bad, data, num_values=0, kind="vector", shape=(2,))
    with pytest.raises(DataError, match="must be >= 2, or 0 for real values, got 1"):
        Dataset("r", data.long(), data.long(), data.long(), num_values=1, kind="vector", shape=(2,))
    # integer data sets are unchanged: floats are refused there
    with pytest.raises(DataError, match="must be a 2-D torch.int64 tensor"):
        Dataset("i", data, data, data, num_values=4, kind="vector", shape=(2,))


def facts(num_values: int) -> DataFacts:
    return DataFacts(name="d", dim=3, num_values=num_values, kind="vector", shape=(3,))


def test_real_heads_fit_real_data_and_only_real_heads_do() -> None:
    assert default_head(0) == "gaussian"
    for head in ("gaussian", "gaussian-mixture"):
        check_head_fits(head, 3, 0, {}, facts(0))
        with pytest.raises(DensitykitError, match="holds the integers 0..3"):
            check_head_fits(head, 3, 4, {}, facts(4))
    for head in ("bernoulli", "categorical"):
        with pytest.raises(
            DensitykitError,
            match=f"head '{head}' models integers 0..K-1, but data set 'd' holds real",
        ):
            check_head_fits(head, 3, 0, {}, facts(0))


@pytest.mark.slow
def test_a_run_trains_a_mixture_of_gaussians_on_mnist_logit(tmp_path: Path) -> None:
    from densitykit.model import ModelConfig
    from densitykit.runs import DataConfig, RunConfig, fit_run, load_run
    from densitykit.train import TrainConfig

    folder = tiny_mnist(tmp_path / "m")
    options = {"data_dir": str(folder), "num_val": 10}
    model = ModelConfig(
        head="gaussian-mixture", hidden_sizes=(8,), head_options={"num_components": 2}
    )
    config = RunConfig(
        DataConfig("mnist-logit", options), model, TrainConfig(epochs=2, batch_size=10)
    )
    metrics = fit_run(config, tmp_path / "run")
    assert metrics["num_values"] == 0 and math.isfinite(metrics["test_nll_nats"])
    assert (tmp_path / "run" / "samples.png").is_file()
    run = load_run(tmp_path / "run")
    with torch.no_grad():
        log_prob = run.model.log_prob(run.dataset.test)
    assert log_prob.shape == (7,)
    assert -float(log_prob.mean()) == pytest.approx(metrics["test_nll_nats"], rel=1e-5)
    # the default head of a real data set is the Gaussian
    config = RunConfig(DataConfig("mnist-logit", options), ModelConfig(hidden_sizes=(8,)),
                       TrainConfig(epochs=1, batch_size=10))  # fmt: skip
    assert fit_run(config, tmp_path / "gauss")["head"] == "gaussian"
