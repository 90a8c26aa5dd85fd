"""Tests of densitykit.data: every registered data set, the IDX reader and the MNIST loader.

No test reads real data files or touches the network: MNIST-style folders are
written into tmp_path, the default data locations are pointed at empty tmp
folders, and torchvision's downloaders are replaced by fakes.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torchvision.datasets
from helpers import write_gzip_bomb
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from densitykit.data import DATASETS, Dataset, load_dataset, names, read_idx, register
from densitykit.data import mnist as mnist_module
from densitykit.data import shapes as shapes_module
from densitykit.data.idx import write_idx
from densitykit.data.pmf import entropy_nats
from densitykit.data.smiley import BACKGROUND_MASS, smiley_probs
from densitykit.data.splits import carve_validation, generator
from densitykit.data.toy1d import quantize
from densitykit.errors import DataError, ResourceError, UnknownNameError

TRAIN_IMAGES, TEST_IMAGES = 30, 10


# --------------------------------------------------------------------------- fixtures


class _NoNetwork:
    """Stands in for torchvision's MNIST classes: tests must never download."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("a test tried to download a data set")


@pytest.fixture(autouse=True)
def isolated_data_locations(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Point every default data location at an empty folder and forbid downloads."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DENSITYKIT_DATA", str(home / "densitykit-data"))
    monkeypatch.setattr(mnist_module, "SYSTEM_FOLDERS", {"mnist": (), "fashion-mnist": ()})
    monkeypatch.setattr(torchvision.datasets, "MNIST", _NoNetwork)
    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", _NoNetwork)
    return home


def _tiny_images(count: int, seed: int) -> np.ndarray:
    images = np.random.default_rng(seed).integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
    images[:, 0, 0], images[:, 0, 1] = 0, 255  # both extremes present in every image
    return images


TINY_TRAIN = _tiny_images(TRAIN_IMAGES, 1)
TINY_TEST = _tiny_images(TEST_IMAGES, 2)


def _write_mnist_folder(folder: Path, *, gz: bool = True, labels: bool = True) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    write_idx(TINY_TRAIN, folder / f"train-images-idx3-ubyte{suffix}")
    write_idx(TINY_TEST, folder / f"t10k-images-idx3-ubyte{suffix}")
    if labels:
        write_idx(
            np.arange(TRAIN_IMAGES, dtype=np.uint8) % 10,
            folder / f"train-labels-idx1-ubyte{suffix}",
        )
        write_idx(
            np.arange(TEST_IMAGES, dtype=np.uint8) % 10, folder / f"t10k-labels-idx1-ubyte{suffix}"
        )
    return folder


def _write_images_npy(path: Path) -> Path:
    """Binary 28 x 28 images in a .npy file, for the ``file`` data set."""
    np.save(path, (TINY_TRAIN > 127).astype(np.uint8))
    return path


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Path:
    return _write_mnist_folder(tmp_path / "mnist")


@pytest.fixture
def face_png(tmp_path: Path) -> Path:
    """A 16 x 16 picture: white, with a black square and a grey band."""
    pixels = np.full((16, 16), 255, dtype=np.uint8)
    pixels[2:6, 2:6] = 0
    pixels[10:12, :] = 128
    path = tmp_path / "face.png"
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture
def tiny_options(mnist_dir: Path, face_png: Path) -> dict[str, dict[str, Any]]:
    """Options that build each built-in data set quickly from files the tests wrote."""
    return {
        "1d-gaussian": {},
        "1d-bimodal": {},
        "2d-smiley": {"grid_size": 16, "num_samples": 500},
        "2d-image": {"path": str(face_png), "num_samples": 500},
        "shapes": {"num_samples": 200},
        "mnist": {"data_dir": str(mnist_dir)},
        "fashion-mnist": {"data_dir": str(mnist_dir)},
        "binarized-mnist": {"data_dir": str(mnist_dir), "num_val": 6},
        "file": {"path": str(_write_images_npy(mnist_dir.parent / "images.npy"))},
        **{name: {"num_samples": 200} for name in TOY_2D},
    }


TOY_2D = ("moons", "8gaussians", "checkerboard", "pinwheel", "rings")  # tables of real x, y


def _build(name: str, tiny_options: dict[str, dict[str, Any]], **overrides: Any) -> Dataset:
    return load_dataset(name, **{**tiny_options.get(name, {}), **overrides})


def _same(a: Dataset, b: Dataset) -> bool:
    return all(
        torch.equal(x, y) for x, y in zip(a.splits().values(), b.splits().values(), strict=True)
    )


ALL = DATASETS.names()
# Their test split depends on the seed too (a draw of points, shapes or binarized pixels).
SAMPLED = {"2d-smiley", "2d-image", "shapes", "binarized-mnist", *TOY_2D}
FIXED_SPLIT = {"binarized-mnist"}  # a benchmark's fixed split: no val_fraction


# --------------------------------------------------------------------------- every data set


def test_builtins_are_registered() -> None:
    assert {
        "1d-gaussian",
        "1d-bimodal",
        "2d-smiley",
        "2d-image",
        "shapes",
        "mnist",
        "fashion-mnist",
    } <= set(names())
    assert names() == DATASETS.names()


@pytest.mark.parametrize("name", ALL)
def test_splits_are_int64_in_range_and_match_kind(
    name: str, tiny_options: dict[str, dict[str, Any]]
) -> None:
    ds = _build(name, tiny_options)
    assert ds.name == name
    assert DATASETS.describe(name)  # the one-line description `densitykit datasets` shows
    for split in ds.splits().values():
        assert split.ndim == 2 and split.shape[1] == ds.dim and len(split) > 0
        if ds.kind == "table":  # real values: float32 model values of its columns
            assert split.dtype == torch.float32 and ds.num_values == 0
            assert bool(torch.isfinite(split).all()) and ds.table.dim == ds.dim
            continue
        assert split.dtype == torch.int64
        assert int(split.min()) >= 0 and int(split.max()) < ds.num_values
    assert ds.kind in {"1d", "2d", "image", "table"}
    if ds.kind == "table":
        assert ds.shape == (ds.dim,)
    elif ds.kind == "1d":
        assert ds.dim == 1 and ds.shape == (1,)
    elif ds.kind == "2d":
        assert ds.dim == 2 and ds.shape == (ds.num_values, ds.num_values)
    else:
        assert len(ds.shape) == 2 and math.prod(ds.shape) == ds.dim
    json.dumps(ds.options)


@pytest.mark.parametrize("name", ALL)
def test_same_seed_gives_identical_tensors(
    name: str, tiny_options: dict[str, dict[str, Any]]
) -> None:
    assert _same(_build(name, tiny_options, seed=3), _build(name, tiny_options, seed=3))


@pytest.mark.parametrize("name", ALL)
def test_other_seed_changes_the_validation_split(
    name: str, tiny_options: dict[str, dict[str, Any]]
) -> None:
    first, second = _build(name, tiny_options, seed=0), _build(name, tiny_options, seed=1)
    assert not torch.equal(first.val, second.val)
    # Fixed test sets (the course's last 20 %, the official test images) never move.
    assert torch.equal(first.test, second.test) == (name not in SAMPLED)


@pytest.mark.parametrize("name", ALL)
def test_options_rebuild_the_same_data(name: str, tiny_options: dict[str, dict[str, Any]]) -> None:
    ds = _build(name, tiny_options, seed=5)
    again = load_dataset(name, **json.loads(json.dumps(ds.options)))
    assert _same(ds, again) and again.options == ds.options
    assert ds.options["seed"] == 5


@pytest.mark.parametrize("name", ALL)
def test_true_probs_and_entropy_agree(name: str, tiny_options: dict[str, dict[str, Any]]) -> None:
    ds = _build(name, tiny_options)
    if ds.true_probs is None:
        assert ds.kind in ("image", "table")  # a table's law is a density, not a pmf
        return
    probs = ds.true_probs
    assert probs.dtype == torch.float64 and float(probs.min()) >= 0
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-12)
    positive = probs[probs > 0]
    assert ds.true_entropy_nats == pytest.approx(
        float(-(positive * positive.log()).sum()), rel=1e-12
    )


@pytest.mark.parametrize("name", sorted(set(ALL) - FIXED_SPLIT))
def test_zero_val_fraction_makes_validation_the_training_split(
    name: str, tiny_options: dict[str, dict[str, Any]]
) -> None:
    ds = _build(name, tiny_options, val_fraction=0.0)
    assert torch.equal(ds.val, ds.train)
    held_out = _build(name, tiny_options, val_fraction=0.25)
    assert len(held_out.train) + len(held_out.val) == len(ds.train)


@pytest.mark.parametrize("name", ["shapes", "mnist", "fashion-mnist", "binarized-mnist"])
def test_max_train_keeps_the_first_training_examples(
    name: str, tiny_options: dict[str, dict[str, Any]]
) -> None:
    full = _build(name, tiny_options)
    short = _build(name, tiny_options, max_train=5)
    assert torch.equal(short.train, full.train[:5])
    assert torch.equal(short.val, full.val) and torch.equal(short.test, full.test)
    assert short.options["max_train"] == 5


def test_unknown_name_lists_the_registered_ones() -> None:
    with pytest.raises(UnknownNameError) as caught:
        load_dataset("cifar-100")
    assert "cifar-100" in str(caught.value)
    for name in ("1d-gaussian", "2d-smiley", "mnist", "shapes"):
        assert repr(name) in str(caught.value)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("1d-gaussian", {"val_fraction": 1.0}),
        ("1d-gaussian", {"val_fraction": -0.1}),
        ("1d-bimodal", {"val_fraction": float("nan")}),
        ("1d-bimodal", {"seed": -1}),
        ("2d-smiley", {"grid_size": 8}),
        ("2d-smiley", {"num_samples": 0}),
        ("2d-smiley", {"num_samples": 10, "val_fraction": 0.95}),
        ("2d-image", {}),
        ("2d-image", {"path": "unused.png", "mass": "glow"}),
        ("2d-image", {"path": "unused.png", "grid_size": 1}),
        ("shapes", {"size": 4}),
        ("shapes", {"max_train": 0}),
        ("mnist", {"binarize": "grey"}),
        ("fashion-mnist", {"max_train": -3}),
        ("binarized-mnist", {"num_val": 0}),
        ("binarized-mnist", {"seed": -1}),
    ],
)
def test_bad_option_values_raise_value_error(name: str, options: dict[str, Any]) -> None:
    with pytest.raises(ValueError) as caught:
        load_dataset(name, **options)
    assert name in str(caught.value) or "val_fraction" in str(caught.value)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("1d-gaussian", {"seed": "0"}),
        ("2d-smiley", {"grid_size": 25.0}),
        ("shapes", {"num_samples": True}),
        ("mnist", {"download": "yes"}),
        ("binarized-mnist", {"num_val": 1.5}),
        ("binarized-mnist", {"val_fraction": 0.1}),  # the benchmark's split is fixed
        ("1d-gaussian", {"num_values": 20}),  # not an option of this data set
    ],
)
def test_bad_option_types_raise_type_error(name: str, options: dict[str, Any]) -> None:
    with pytest.raises(TypeError):
        load_dataset(name, **options)


def test_a_registered_factory_loads_by_name() -> None:
    @register("test-constant")
    def constant(*, seed: int = 0) -> Dataset:
        """Every example is zero (a test data set)."""
        data = torch.zeros(4, 1, dtype=torch.int64)
        return Dataset(
            "test-constant",
            data,
            data,
            data,
            num_values=2,
            kind="1d",
            shape=(1,),
            options={"seed": seed},
        )

    try:
        assert "test-constant" in names()
        assert DATASETS.describe("test-constant") == "Every example is zero (a test data set)."
        assert load_dataset("test-constant").dim == 1
    finally:
        DATASETS.unregister("test-constant")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"train": torch.zeros(3, 1)}, DataError),  # float, not int64
        ({"train": torch.full((3, 1), 5)}, DataError),  # value out of 0..K-1
        ({"test": torch.zeros(3, 2, dtype=torch.int64)}, DataError),  # D differs
        ({"kind": "2d"}, DataError),  # D = 1 is not a grid
        ({"kind": "3d"}, DataError),
        ({"true_probs": torch.tensor([0.5, 0.6, 0.0], dtype=torch.float64)}, DataError),
        ({"options": {"path": Path("x")}}, DataError),  # not JSON
        ({"num_values": 2.0}, TypeError),
    ],
)
def test_dataset_refuses_inconsistent_fields(
    change: dict[str, Any], error: type[Exception]
) -> None:
    data = torch.tensor([[0], [1], [2]])
    fields: dict[str, Any] = {
        "name": "toy",
        "train": data,
        "val": data,
        "test": data,
        "num_values": 3,
        "kind": "1d",
        "shape": (1,),
    }
    with pytest.raises(error):
        Dataset(**{**fields, **change})


# --------------------------------------------------------------------------- splits


@settings(max_examples=60)
@given(
    size=st.integers(min_value=2, max_value=300),
    val_fraction=st.floats(min_value=0.0, max_value=0.5),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_carve_validation_partitions_the_pool_in_order(
    size: int, val_fraction: float, seed: int
) -> None:
    pool = np.arange(size) * 7
    train, val = carve_validation(pool, val_fraction=val_fraction, rng=generator(seed, 1))
    if val_fraction == 0.0:
        assert val is train and len(train) == size
        return
    assert len(val) == max(1, round(val_fraction * size)) and len(train) + len(val) == size
    assert sorted([*train.tolist(), *val.tolist()]) == pool.tolist()
    assert (np.diff(train) > 0).all() and (np.diff(val) > 0).all()


# --------------------------------------------------------------------------- 1-D course data


def _course_values(which: int) -> tuple[np.ndarray, int]:
    """CS294-158 (2020) HW1 sample_data_1 / sample_data_2, verbatim, with our 0..K-1 shift."""
    rand = np.random.RandomState(0)
    if which == 1:
        samples = 0.4 + 0.1 * rand.randn(1000)
        k = 20
    else:
        a = 0.3 + 0.1 * rand.randn(10000)
        b = 0.8 + 0.05 * rand.randn(10000)
        mask = rand.rand(10000) < 0.5
        samples = np.clip(a * mask + b * (1 - mask), 0.0, 1.0)
        k = 100
    data = np.digitize(samples, np.linspace(0.0, 1.0, k))
    return np.clip(data - 1, 0, k - 1), k


@pytest.mark.parametrize(
    ("name", "which", "sizes"), [("1d-gaussian", 1, (800, 200)), ("1d-bimodal", 2, (8000, 2000))]
)
def test_1d_sets_are_the_course_data_and_split(
    name: str, which: int, sizes: tuple[int, int]
) -> None:
    values, k = _course_values(which)
    split = int(0.8 * len(values))
    whole = load_dataset(name, val_fraction=0.0)
    assert (len(whole.train), len(whole.test)) == sizes and whole.num_values == k
    assert whole.train[:, 0].tolist() == values[:split].tolist()
    assert whole.test[:, 0].tolist() == values[split:].tolist()
    carved = load_dataset(name)  # val_fraction=0.1 of the course's training part
    assert (len(carved.train), len(carved.val)) == (sizes[0] * 9 // 10, sizes[0] // 10)
    assert sorted(torch.cat([carved.train, carved.val])[:, 0].tolist()) == sorted(
        values[:split].tolist()
    )
    assert torch.equal(carved.test, whole.test)


def test_quantize_maps_onto_0_to_k_minus_1_with_both_ends_reachable() -> None:
    k = 20
    edges = np.linspace(0.0, 1.0, k)
    assert quantize(np.array([-5.0, 0.0, edges[1] - 1e-12]), k).tolist() == [0, 0, 0]
    assert quantize(np.array([edges[1], edges[2] - 1e-12, edges[-2]]), k).tolist() == [1, 1, k - 2]
    assert quantize(np.array([1.0 - 1e-12, 1.0, 7.0]), k).tolist() == [k - 2, k - 1, k - 1]
    spread = quantize(np.random.default_rng(0).uniform(-0.5, 1.5, 10000), k)
    assert set(spread.tolist()) == set(range(k))


@pytest.mark.parametrize("name", ["1d-gaussian", "1d-bimodal"])
def test_1d_true_probs_match_fresh_draws_of_the_generator(name: str) -> None:
    rng = np.random.default_rng(123)
    n = 400_000
    if name == "1d-gaussian":
        samples = 0.4 + 0.1 * rng.standard_normal(n)
    else:
        pick = rng.random(n) < 0.5
        samples = np.clip(
            np.where(pick, 0.3 + 0.1 * rng.standard_normal(n), 0.8 + 0.05 * rng.standard_normal(n)),
            0,
            1,
        )
    ds = load_dataset(name)
    counts = np.bincount(quantize(samples, ds.num_values), minlength=ds.num_values)
    probs = ds.true_probs.numpy()
    # Five binomial standard deviations per bin (plus a little for empty-ish bins).
    assert np.all(np.abs(counts / n - probs) <= 5 * np.sqrt(probs * (1 - probs) / n) + 2e-5)


def test_1d_true_entropies() -> None:
    assert load_dataset("1d-gaussian").true_entropy_nats == pytest.approx(2.0720966, abs=1e-6)
    assert load_dataset("1d-bimodal").true_entropy_nats == pytest.approx(4.0558320, abs=1e-6)


# --------------------------------------------------------------------------- 2-D sets


@pytest.mark.parametrize("grid_size", [16, 25, 64])
def test_smiley_draws_a_face(grid_size: int) -> None:
    probs = smiley_probs(grid_size)
    assert probs.shape == (grid_size, grid_size)
    assert probs.sum() == pytest.approx(1.0) and probs.min() >= BACKGROUND_MASS / grid_size**2 * (
        1 - 1e-9
    )

    def at(row: float, col: float) -> float:
        return float(probs[int(row * grid_size), int(col * grid_size)])

    background = BACKGROUND_MASS / grid_size**2
    assert at(0.5, 0.5) < 3 * background  # the nose is empty
    assert at(0.95, 0.95) < 3 * background  # so is the corner outside the face
    for row, col in [
        (0.36, 0.34),
        (0.36, 0.66),
        (0.5, 0.08),
        (0.5, 0.92),
        (0.08, 0.5),
        (0.68, 0.5),
    ]:
        assert (
            at(row, col) > 10 * background
        )  # eyes, the outline's sides and top, the mouth's bottom
    assert np.allclose(probs, probs[:, ::-1])  # symmetric left to right


def test_smiley_samples_follow_the_pmf() -> None:
    ds = load_dataset("2d-smiley", grid_size=16, num_samples=50000, val_fraction=0.0)
    cells = torch.cat([ds.train, ds.test])
    counts = np.zeros((16, 16))
    np.add.at(counts, (cells[:, 0].numpy(), cells[:, 1].numpy()), 1)
    probs = ds.true_probs.numpy()
    n = len(cells)
    assert np.all(np.abs(counts / n - probs) <= 5 * np.sqrt(probs * (1 - probs) / n) + 1e-4)
    assert ds.true_entropy_nats == pytest.approx(entropy_nats(probs))


def test_image_dark_and_bright_mass(face_png: Path) -> None:
    dark = load_dataset("2d-image", path=str(face_png), num_samples=100)
    bright = load_dataset("2d-image", path=face_png, mass="bright", num_samples=100)
    assert dark.shape == (16, 16) and dark.num_values == 16
    assert (
        dark.true_probs[3, 3] > 0 and dark.true_probs[0, 0] == 0
    )  # black square has mass, white none
    assert float(dark.true_probs[2:6, 2:6].sum()) == pytest.approx(16 * 255 / (16 * 255 + 32 * 127))
    assert bright.true_probs[3, 3] == 0 and bright.true_probs[0, 0] > 0
    assert dark.options["path"] == str(face_png.absolute())


def test_image_grid_size_resizes_and_non_square_needs_it(tmp_path: Path) -> None:
    path = tmp_path / "wide.jpg"
    Image.new("RGB", (40, 20), (10, 200, 30)).save(path)
    with pytest.raises(DataError, match="square"):
        load_dataset("2d-image", path=str(path))
    ds = load_dataset("2d-image", path=str(path), grid_size=18, num_samples=100)
    assert ds.shape == (18, 18) and ds.num_values == 18


@pytest.mark.parametrize("content", [None, b"this is not a picture", b""])
def test_image_missing_or_unreadable_file_is_a_one_line_data_error(
    tmp_path: Path, content: bytes | None
) -> None:
    path = tmp_path / "face.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as caught:
        load_dataset("2d-image", path=str(path))
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_image_without_mass_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "white.png"
    Image.new("L", (8, 8), 255).save(path)
    with pytest.raises(DataError, match="all white"):
        load_dataset("2d-image", path=str(path))


# --------------------------------------------------------------------------- shapes


def test_shapes_are_binary_varied_and_never_empty() -> None:
    ds = load_dataset("shapes", num_samples=400, val_fraction=0.0)
    assert ds.num_values == 2 and ds.shape == (20, 20) and ds.kind == "image"
    images = torch.cat([ds.train, ds.test])
    ink = images.sum(dim=1)
    assert int(ink.min()) >= 4
    assert len({tuple(row) for row in images.tolist()}) > 390  # nearly all distinct
    assert float(ink.float().std()) > 10  # small outlines and large filled shapes


def test_default_shapes_split_sizes() -> None:
    ds = load_dataset("shapes", val_fraction=0.0)
    assert (len(ds.train), len(ds.test)) == (8000, 2000)


@pytest.mark.parametrize("kind", shapes_module.SHAPE_KINDS)
def test_every_kind_of_shape_stays_inside_the_canvas(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    size, margin = 20, 4

    def wider_pixels(side: int) -> tuple[np.ndarray, np.ndarray]:
        coordinates = np.arange(-margin, side + margin, dtype=np.float64)
        return coordinates[None, :, None], coordinates[None, None, :]

    # Rasterise on a canvas with a margin: no shape may put ink in the margin.
    monkeypatch.setattr(shapes_module, "_pixels", wider_pixels)
    masks = shapes_module._DRAWERS[kind](np.random.default_rng(0), 300, size, max(3, size // 5))
    inside = masks[:, margin:-margin, margin:-margin]
    assert inside.reshape(300, -1).sum(axis=1).min() >= 4
    assert inside.sum() == masks.sum()


# --------------------------------------------------------------------------- IDX reader


def _idx_bytes(code: int, shape: tuple[int, ...], payload: bytes) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}i", *shape) + payload


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_reads_uint8_plain_and_gzipped(tmp_path: Path, gz: bool) -> None:
    content = _idx_bytes(0x08, (2, 3, 2), bytes(range(12)))
    path = tmp_path / "x-idx3-ubyte"
    path.write_bytes(gzip.compress(content) if gz else content)
    array = read_idx(path)
    assert array.dtype == np.uint8 and array.shape == (2, 3, 2)
    assert array.ravel().tolist() == list(range(12))
    array[0, 0, 0] = 99  # a writable copy


def test_read_idx_reads_big_endian_int16(tmp_path: Path) -> None:
    path = tmp_path / "x-idx1-short"
    path.write_bytes(_idx_bytes(0x0B, (3,), struct.pack(">3h", -2, 300, 7)))
    array = read_idx(path)
    assert array.tolist() == [-2, 300, 7] and array.dtype == np.int16 and array.dtype.isnative


def test_write_idx_round_trips(tmp_path: Path) -> None:
    for dtype in (np.uint8, np.int32, np.float64):
        array = (
            (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
            if dtype != np.uint8
            else np.arange(24, dtype=np.uint8)
        )
        assert np.array_equal(read_idx(write_idx(array, tmp_path / "a.gz")), array)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (
            _idx_bytes(0x08, (2, 2), bytes(4)).replace(b"\x00\x00", b"\x01\x00", 1),
            "not an IDX file",
        ),
        (b"", "not an IDX file"),
        (_idx_bytes(0x07, (2, 2), bytes(4)), "element type code 0x07"),
        (_idx_bytes(0x08, (2, 2), bytes(3)), "truncated"),
        (_idx_bytes(0x08, (2, 2), bytes(5)), "longer than its header"),
        (bytes([0, 0, 8, 3, 0, 0, 0, 2]), "truncated"),  # header cut short
        (b"\x1f\x8b\x08\x00garbage", "damaged gzip"),
    ],
)
def test_read_idx_refuses_malformed_files(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "bad-idx2-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError, match=words) as caught:
        read_idx(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_read_idx_of_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_idx(tmp_path / "absent-idx3-ubyte.gz")


def test_read_idx_of_a_truncated_gzip_stream(tmp_path: Path) -> None:
    path = tmp_path / "cut-idx3-ubyte.gz"
    pixels = np.random.default_rng(0).integers(0, 256, 78400, dtype=np.uint8).tobytes()
    path.write_bytes(gzip.compress(_idx_bytes(0x08, (100, 28, 28), pixels))[:2000])
    with pytest.raises(DataError):
        read_idx(path)


def test_read_idx_stops_a_gzip_bomb_at_the_headers_size(tmp_path: Path) -> None:
    # 10,000 images of 28 x 28 (7.8 MB) announced, 200 MB inflated from a 200 kB file.
    path = write_gzip_bomb(
        tmp_path / "bomb-idx3-ubyte.gz", _idx_bytes(0x08, (10_000, 28, 28), b""), 200
    )
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="longer than its header says") as caught:
            read_idx(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)
    assert peak < 20e6  # the 7.8 MB announced and a piece, never the 200 MB


def test_read_idx_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    fifo = tmp_path / "train-images-idx3-ubyte"
    os.mkfifo(fifo)
    with pytest.raises(DataError, match="not a regular file"):
        read_idx(fifo)
    (tmp_path / "link-idx3-ubyte").symlink_to("/dev/zero")
    with pytest.raises(DataError, match="not a regular file"):
        read_idx(tmp_path / "link-idx3-ubyte")


def test_read_idx_refuses_a_shape_beyond_memory_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(_idx_bytes(0x08, (2**31 - 1, 2**31 - 1, 2**31 - 1), b"")))
    with pytest.raises(ResourceError, match="would need"):
        read_idx(path)


# --------------------------------------------------------------------------- MNIST loader


def test_mnist_threshold_binarization_is_exact(mnist_dir: Path) -> None:
    ds = load_dataset("mnist", data_dir=str(mnist_dir), val_fraction=0.0)
    assert ds.shape == (28, 28) and ds.dim == 784 and ds.num_values == 2
    assert torch.equal(
        ds.test, torch.from_numpy((TINY_TEST > 127.5).reshape(TEST_IMAGES, -1).astype(np.int64))
    )
    assert torch.equal(
        ds.train, torch.from_numpy((TINY_TRAIN > 127.5).reshape(TRAIN_IMAGES, -1).astype(np.int64))
    )


def test_mnist_validation_is_carved_from_the_training_images(mnist_dir: Path) -> None:
    ds = load_dataset("fashion-mnist", data_dir=str(mnist_dir), binarize="none", val_fraction=0.2)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (24, 6, 10)
    rows = sorted(map(tuple, torch.cat([ds.train, ds.val]).tolist()))
    assert rows == sorted(map(tuple, TINY_TRAIN.reshape(TRAIN_IMAGES, -1).tolist()))


def test_mnist_stochastic_binarization_is_fixed_per_seed(mnist_dir: Path) -> None:
    first = load_dataset("mnist", data_dir=str(mnist_dir), binarize="stochastic", seed=4)
    again = load_dataset("mnist", data_dir=str(mnist_dir), binarize="stochastic", seed=4)
    other = load_dataset("mnist", data_dir=str(mnist_dir), binarize="stochastic", seed=5)
    assert _same(first, again) and not torch.equal(first.test, other.test)
    assert set(first.test.unique().tolist()) == {0, 1}
    grey = torch.from_numpy(TINY_TEST.reshape(TEST_IMAGES, -1).astype(np.int64))
    assert bool((first.test[grey == 0] == 0).all()) and bool((first.test[grey == 255] == 1).all())
    # Each pixel is on with probability pixel / 255.
    assert float(first.test.float().mean()) == pytest.approx(
        float(grey.float().mean()) / 255, abs=0.02
    )


def test_mnist_without_binarization_keeps_256_levels(mnist_dir: Path) -> None:
    ds = load_dataset("mnist", data_dir=str(mnist_dir), binarize="none")
    assert ds.num_values == 256
    assert torch.equal(
        ds.test, torch.from_numpy(TINY_TEST.reshape(TEST_IMAGES, -1).astype(np.int64))
    )
    assert int(ds.test.min()) == 0 and int(ds.test.max()) == 255


def test_binarized_mnist_splits_the_training_file_in_order(mnist_dir: Path) -> None:
    ds = load_dataset("binarized-mnist", data_dir=str(mnist_dir), num_val=6, seed=3)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (TRAIN_IMAGES - 6, 6, TEST_IMAGES)
    assert ds.shape == (28, 28) and ds.num_values == 2 and ds.kind == "image"
    # The pixels of mnist's stochastic binarization with the same seed, in file order:
    # the first images train, the last num_val validate, the official test set tests.
    pool = load_dataset(
        "mnist", data_dir=str(mnist_dir), binarize="stochastic", seed=3, val_fraction=0.0
    )
    assert torch.equal(ds.train, pool.train[: TRAIN_IMAGES - 6])
    assert torch.equal(ds.val, pool.train[TRAIN_IMAGES - 6 :])
    assert torch.equal(ds.test, pool.test)


def test_binarized_mnist_defaults_to_the_benchmark(tmp_path: Path) -> None:
    folder = tmp_path / "official-sized"
    folder.mkdir()
    write_idx(np.zeros((60_000, 2, 2), dtype=np.uint8), folder / "train-images-idx3-ubyte.gz")
    write_idx(np.zeros((10_000, 2, 2), dtype=np.uint8), folder / "t10k-images-idx3-ubyte.gz")
    ds = load_dataset("binarized-mnist", data_dir=str(folder))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (50_000, 10_000, 10_000)
    assert ds.options == {
        "data_dir": str(folder),
        "seed": 0,
        "num_val": 10_000,
        "max_train": None,
        "download": True,
    }


def test_binarized_mnist_draws_each_pixel_once_from_grey_over_255(tmp_path: Path) -> None:
    folder = tmp_path / "grey"
    folder.mkdir()
    train = np.full((40, 28, 28), 51, dtype=np.uint8)  # on with probability 51 / 255 = 0.2
    train[:, 0, :] = 0
    train[:, 1, :] = 255
    write_idx(train, folder / "train-images-idx3-ubyte.gz")
    write_idx(train[:5], folder / "t10k-images-idx3-ubyte.gz")
    first = load_dataset("binarized-mnist", data_dir=str(folder), num_val=10)
    again = load_dataset("binarized-mnist", data_dir=str(folder), num_val=10)
    other = load_dataset("binarized-mnist", data_dir=str(folder), num_val=10, seed=1)
    assert _same(first, again) and not torch.equal(first.train, other.train)
    pixels = torch.cat([first.train, first.val]).reshape(40, 28, 28)
    assert bool((pixels[:, 0] == 0).all()) and bool((pixels[:, 1] == 1).all())
    # 40 x 26 x 28 draws with p = 0.2: the standard deviation of their mean is 0.0022.
    assert float(pixels[:, 2:].float().mean()) == pytest.approx(0.2, abs=0.01)


def test_binarized_mnist_needs_more_training_images_than_validation(mnist_dir: Path) -> None:
    with pytest.raises(DataError, match="num_val=10000"):
        load_dataset("binarized-mnist", data_dir=str(mnist_dir))


def test_binarized_mnist_leaves_the_mnist_options_as_they_were(mnist_dir: Path) -> None:
    load_dataset("binarized-mnist", data_dir=str(mnist_dir), num_val=6)
    ds = load_dataset("mnist", data_dir=str(mnist_dir), seed=3)
    assert ds.options["binarize"] == "threshold" and (len(ds.train), len(ds.val)) == (27, 3)
    assert set(torch.cat([ds.train, ds.val, ds.test]).unique().tolist()) <= {0, 1}


@pytest.mark.parametrize(
    ("name", "layout", "gz"),
    [
        ("mnist", "raw", False),
        ("mnist", "MNIST/raw", True),
        ("fashion-mnist", "FashionMNIST/raw", False),
        ("fashion-mnist", ".", False),
    ],
)
def test_mnist_reads_torchvision_layouts(tmp_path: Path, name: str, layout: str, gz: bool) -> None:
    _write_mnist_folder(tmp_path / "root" / layout, gz=gz, labels=False)
    ds = load_dataset(name, data_dir=str(tmp_path / "root"), binarize="none", val_fraction=0.0)
    assert ds.test.shape == (TEST_IMAGES, 784) and len(ds.train) == TRAIN_IMAGES


@pytest.mark.parametrize(
    ("name", "hint"),
    [("mnist", "yann.lecun.com"), ("fashion-mnist", "apt-get install dataset-fashion-mnist")],
)
def test_missing_folder_says_what_was_expected_and_how_to_get_it(
    tmp_path: Path, name: str, hint: str
) -> None:
    folder = tmp_path / "nowhere"
    with pytest.raises(DataError) as caught:
        load_dataset(name, data_dir=str(folder))
    message = str(caught.value)
    assert "\n" not in message
    for words in (
        "train-images-idx3-ubyte",
        "t10k-images-idx3-ubyte",
        str(folder),
        "no such folder",
        hint,
    ):
        assert words in message


def test_folder_without_the_test_file_lists_what_it_found(tmp_path: Path) -> None:
    folder = _write_mnist_folder(tmp_path / "half")
    (folder / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(
        DataError, match="found only t10k-labels-idx1-ubyte.gz, train-images-idx3-ubyte.gz"
    ):
        load_dataset("mnist", data_dir=str(folder))


def test_malformed_mnist_files_are_data_errors(tmp_path: Path) -> None:
    folder = _write_mnist_folder(tmp_path / "bad", gz=False)
    (folder / "t10k-images-idx3-ubyte").write_bytes(_idx_bytes(0x08, (10, 28, 28), bytes(100)))
    with pytest.raises(DataError, match="truncated"):
        load_dataset("mnist", data_dir=str(folder))
    write_idx(np.zeros((10, 28, 28), dtype=np.int16), folder / "t10k-images-idx3-ubyte")
    with pytest.raises(DataError, match="uint8 images"):
        load_dataset("mnist", data_dir=str(folder))


def test_default_locations_are_searched_before_downloading(
    isolated_data_locations: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_mnist_folder(isolated_data_locations / "densitykit-data" / "mnist")
    assert len(load_dataset("mnist", val_fraction=0.0).train) == TRAIN_IMAGES
    _write_mnist_folder(
        isolated_data_locations / ".cache" / "densitykit" / "fashion-mnist" / "raw", gz=False
    )
    assert len(load_dataset("fashion-mnist", val_fraction=0.0).test) == TEST_IMAGES
    system = _write_mnist_folder(tmp_path / "usr-share-datasets-fashion-mnist")
    monkeypatch.setattr(
        mnist_module, "SYSTEM_FOLDERS", {"mnist": (), "fashion-mnist": (str(system),)}
    )
    assert load_dataset("fashion-mnist").options["data_dir"] is None


def test_download_uses_torchvision_into_the_data_home(
    isolated_data_locations: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, bool, bool]] = []

    class FakeMNIST:
        def __init__(self, root: str, train: bool, download: bool) -> None:
            calls.append((root, train, download))
            self.data = torch.from_numpy(TINY_TRAIN if train else TINY_TEST)
            self.targets = torch.arange(len(self.data)) % 10  # torchvision's labels

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    ds = load_dataset("mnist", val_fraction=0.0)
    home = str(isolated_data_locations / "densitykit-data")
    assert calls == [(home, True, True), (home, False, True)]
    assert len(ds.train) == TRAIN_IMAGES and len(ds.test) == TEST_IMAGES
    assert torch.equal(ds.labels("test"), torch.arange(TEST_IMAGES) % 10)


def test_failed_download_explains_the_offline_options(monkeypatch: pytest.MonkeyPatch) -> None:
    class Offline:
        def __init__(self, **kwargs: Any) -> None:
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz:\nTried mirror ...")

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", Offline)
    with pytest.raises(DataError) as caught:
        load_dataset("fashion-mnist")
    message = str(caught.value)
    assert (
        "\n" not in message
        and "data_dir=" in message
        and "--data-dir" in message  # the command line's name of the same option
        and "apt-get install dataset-fashion-mnist" in message
    )


def test_no_download_when_forbidden() -> None:
    with pytest.raises(DataError, match="download=False") as caught:
        load_dataset("mnist", download=False)  # _NoNetwork would fail the test if called
    assert "data_dir= (--data-dir on the command line)" in str(caught.value)
