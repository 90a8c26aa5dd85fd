"""MNIST and Fashion-MNIST: 28 x 28 grey images, binarized or kept at 256 levels.

Where the images come from, in order:

1. ``data_dir`` when given: the IDX files in that folder or in its ``raw/`` or
   ``MNIST/raw/`` (``FashionMNIST/raw/``) subfolder, the layouts of torchvision's
   download folders. Nothing else is tried, and nothing is downloaded.
2. Otherwise the default places: for Fashion-MNIST the folder of Debian's
   ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``), then
   for both ``$DENSITYKIT_DATA/<name>`` and ``~/.cache/densitykit/<name>`` (with
   the same subfolder layouts), and a torchvision download in
   ``$DENSITYKIT_DATA`` or ``~/.cache/densitykit``.
3. Failing those and with ``download=True``, torchvision downloads the data set
   into ``$DENSITYKIT_DATA`` (or ``~/.cache/densitykit``).

The image files (``train-images-idx3-ubyte`` and ``t10k-images-idx3-ubyte``, each
plain or ``.gz``) are required. The label files (``train-labels-idx1-ubyte`` and
``t10k-labels-idx1-ubyte``) are optional: when both are present (or downloaded),
the data set carries the labels (digits ``0`` to ``9``, or Fashion-MNIST's ten
clothing classes) for class-conditional models; without them it has none. The
headers' counts are trusted, so a subset such as a 10,000-image training file works
as is. The validation split is carved from the official training set.

``binarized-mnist`` is the density-estimation benchmark built from the same files
(Larochelle and Murray, 2011): the first 50,000 training images train, the last 10,000
validate, the official test set tests, each pixel drawn once as Bernoulli(grey / 255).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from densitykit.checks import (
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_optional_int,
    check_seed,
)
from densitykit.data.dataset import Dataset, as_examples
from densitykit.data.idx import read_idx
from densitykit.data.registry import register
from densitykit.data.splits import (
    EPOCH_STREAM,
    NOISE_STREAM,
    SPLIT_STREAM,
    carve_validation,
    generator,
)
from densitykit.errors import DataError

__all__ = [
    "BINARIZED_MNIST_VAL",
    "BINARIZE_MODES",
    "IMAGE_FILES",
    "LABEL_FILES",
    "LABEL_NAMES",
    "SYSTEM_FOLDERS",
    "FixedSplit",
    "binarize_images",
    "binarized_mnist",
    "data_home",
    "fashion_mnist",
    "find_idx_folder",
    "fixed_split",
    "load_images",
    "load_labelled_images",
    "mnist",
]

IMAGE_FILES: dict[str, str] = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
"""The image files read, by split (each may also be gzipped, with ``.gz`` appended)."""
LABEL_FILES: dict[str, str] = {"train": "train-labels-idx1-ubyte", "test": "t10k-labels-idx1-ubyte"}
"""The label files of the same folders (not needed: densitykit models images only)."""
BINARIZE_MODES: tuple[str, ...] = ("threshold", "stochastic", "none")
"""How grey levels become values: ``pixel > 127.5``, a fixed Bernoulli draw, or kept (0..255)."""
BINARIZED_MNIST_VAL = 10_000
"""Validation images of ``binarized-mnist``: the last ones of the official training file."""
SYSTEM_FOLDERS: dict[str, tuple[str, ...]] = {
    "mnist": (),
    "fashion-mnist": ("/usr/share/datasets/fashion-mnist",),  # Debian's dataset-fashion-mnist
}
"""Folders that system packages install the IDX files into, by data set name."""

_TORCHVISION_CLASS = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
_OFFLINE_HELP = {
    "mnist": (
        "to get them offline, put the four IDX files from https://yann.lecun.com/exdb/mnist/ "
        "(or a torchvision download folder) there"
    ),
    "fashion-mnist": (
        "to get them offline, run 'apt-get install dataset-fashion-mnist' "
        "('dpkg -L dataset-fashion-mnist' shows the folder, /usr/share/datasets/fashion-mnist)"
    ),
}
_WANTED = f"{IMAGE_FILES['train']}[.gz] and {IMAGE_FILES['test']}[.gz]"


def data_home() -> Path:
    """The folder for downloads: ``$DENSITYKIT_DATA`` if set, else ``~/.cache/densitykit``."""
    return _homes()[0]


def _image_file(folder: Path, split: str, files: dict[str, str] = IMAGE_FILES) -> Path | None:
    for candidate in (folder / files[split], folder / f"{files[split]}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _read_labels(name: str, folder: Path, images: dict[str, np.ndarray]) -> list | None:
    """The labels of both splits when both label files are there, else ``None``."""
    paths = {split: _image_file(folder, split, LABEL_FILES) for split in LABEL_FILES}
    if not all(paths.values()):
        return None
    labels = []
    for split, path in paths.items():
        values = read_idx(path)
        if values.dtype != np.uint8 or values.shape != (len(images[split]),):
            raise DataError(
                f"{name}: expected {path.name} to hold one uint8 label per image "
                f"({len(images[split])},), got {values.dtype} of shape {values.shape}"
            )
        labels.append(values.astype(np.int64))
    return labels


def _layouts(folder: Path, name: str) -> list[Path]:
    return [folder, folder / "raw", folder / _TORCHVISION_CLASS[name] / "raw"]


def _homes() -> list[Path]:
    homes = (
        [Path(os.environ["DENSITYKIT_DATA"]).expanduser()]
        if os.environ.get("DENSITYKIT_DATA")
        else []
    )
    return [*homes, Path.home() / ".cache" / "densitykit"]


def _default_folders(name: str) -> list[Path]:
    folders = [Path(folder) for folder in SYSTEM_FOLDERS.get(name, ())]
    for home in _homes():
        folders += [*_layouts(home / name, name), home / _TORCHVISION_CLASS[name] / "raw"]
    return folders


def find_idx_folder(folders: list[Path]) -> Path | None:
    """Return the first of ``folders`` holding both image files (plain or gzipped), or ``None``."""
    for folder in folders:
        if _image_file(folder, "train") and _image_file(folder, "test"):
            return folder
    return None


def _describe_folder(folder: Path) -> str:
    if not folder.exists():
        return "no such folder"
    if not folder.is_dir():
        return "a file, not a folder"
    entries = sorted(entry.name for entry in folder.iterdir())
    if not entries:
        return "an empty folder"
    shown = ", ".join(entries[:6]) + (f" and {len(entries) - 6} more" if len(entries) > 6 else "")
    return f"only {shown}"


def _read_images(name: str, folder: Path, split: str) -> np.ndarray:
    path = _image_file(folder, split)
    if path is None:  # pragma: no cover - find_idx_folder checked it
        raise DataError(f"{name}: expected {IMAGE_FILES[split]}[.gz] in '{folder}'")
    images = read_idx(path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(
            f"{name}: expected {path.name} to hold uint8 images (N, H, W), "
            f"got {images.dtype} of shape {images.shape}"
        )
    return images


def _download(name: str, root: Path) -> tuple[np.ndarray, np.ndarray, list | None]:
    class_name = _TORCHVISION_CLASS[name]
    try:
        import torchvision.datasets

        factory = getattr(torchvision.datasets, class_name)
        train_set = factory(root=str(root), train=True, download=True)
        test_set = factory(root=str(root), train=False, download=True)
        train, test = train_set.data, test_set.data
        labels = [np.asarray(train_set.targets), np.asarray(test_set.targets)]
    except Exception as error:  # whatever failed (network, mirror, disk), there are no images
        reason = (str(error).strip().splitlines() or [""])[0]
        raise DataError(
            f"{name}: the images are in none of the default places and downloading them "
            f"into '{root}' failed ({type(error).__name__}: {reason}); "
            f"pass data_dir= (--data-dir on the command line) a folder with {_WANTED}; "
            f"{_OFFLINE_HELP[name]}"
        ) from error
    train, test = np.asarray(train, dtype=np.uint8), np.asarray(test, dtype=np.uint8)
    if train.ndim != 3 or train.shape[1:] != test.shape[1:]:
        raise DataError(
            f"{name}: expected torchvision to give (N, H, W) images, "
            f"got shapes {train.shape} and {test.shape}"
        )
    return train, test, [values.astype(np.int64) for values in labels]


def load_images(
    name: str, data_dir: str | os.PathLike[str] | None = None, *, download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Return the official training and test images of ``name`` as ``uint8`` arrays.

    Args:
        name: ``"mnist"`` or ``"fashion-mnist"``.
        data_dir: A folder holding the IDX files (or a ``raw/`` or torchvision
            subfolder that does); ``None`` searches the default places.
        download: Without ``data_dir``, download with torchvision when the default
            places hold nothing.

    Returns:
        ``(train, test)``, each ``(N, H, W)`` ``uint8`` (``H = W = 28`` for the real sets).

    Raises:
        DataError: If no folder has the files (the one-line message lists the files
            expected, what was found and how to get them offline), a file is
            malformed, or the download fails.
    """
    return load_labelled_images(name, data_dir, download=download)[:2]


def load_labelled_images(
    name: str, data_dir: str | os.PathLike[str] | None = None, *, download: bool = True
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """[`load_images`][densitykit.data.mnist.load_images] with the labels, where present.

    Returns:
        ``(train, test, train_labels, test_labels)``: the images as ``load_images``
        gives them, and ``(N,)`` ``int64`` labels of each, or ``None`` for both when
        the folder lacks either label file.

    Raises:
        DataError: As ``load_images``, or if a label file does not hold one ``uint8``
            label per image.
    """
    if name not in _TORCHVISION_CLASS:
        raise ValueError(
            f"expected one of {', '.join(map(repr, _TORCHVISION_CLASS))}, got {name!r}"
        )
    if data_dir is not None:
        folder = Path(data_dir).expanduser()
        found = find_idx_folder(_layouts(folder, name))
        if found is None:
            raise DataError(
                f"{name}: expected {_WANTED} (labels optional) in '{folder}' or its raw/ or "
                f"{_TORCHVISION_CLASS[name]}/raw/ subfolder, found {_describe_folder(folder)}; "
                f"{_OFFLINE_HELP[name]}"
            )
    else:
        found = find_idx_folder(_default_folders(name))
        if found is None:
            if not download:
                places = ", ".join(
                    [*SYSTEM_FOLDERS.get(name, ()), *(str(home / name) for home in _homes())]
                )
                raise DataError(
                    f"{name}: expected {_WANTED} in one of the default places ({places}, "
                    "or their raw/ subfolders) and download=False; "
                    f"pass data_dir= (--data-dir on the command line) a folder with them; "
                    f"{_OFFLINE_HELP[name]}"
                )
            train, test, labels = _download(name, data_home())
            return train, test, *(labels or (None, None))
    train, test = _read_images(name, found, "train"), _read_images(name, found, "test")
    if train.shape[1:] != test.shape[1:]:
        raise DataError(
            f"{name}: expected training and test images of one size, "
            f"got {train.shape[1:]} and {test.shape[1:]}"
        )
    labels = _read_labels(name, found, {"train": train, "test": test})
    return train, test, *(labels or (None, None))


def binarize_images(
    images: np.ndarray, mode: str, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Turn ``uint8`` grey levels into the values a model sees.

    Args:
        images: ``uint8`` array of grey levels ``0..255``.
        mode: ``"threshold"`` (1 where ``pixel > 127.5``), ``"stochastic"`` (1 with
            probability ``pixel / 255``, one fixed draw from ``rng``) or ``"none"``.
        rng: The generator of the stochastic draw.

    Returns:
        A ``uint8`` array of the same shape: 0/1, or the grey levels for ``"none"``.

    Example:
        >>> binarize_images(np.array([0, 127, 128, 255], dtype=np.uint8), "threshold").tolist()
        [0, 0, 1, 1]
    """
    if mode == "threshold":
        return (images > 127.5).astype(np.uint8)
    if mode == "stochastic":
        if rng is None:
            raise ValueError("stochastic binarization needs a generator, got rng=None")
        # float32 halves the memory of the draw; 255/255 is exactly 1, above every draw.
        return (rng.random(images.shape, dtype=np.float32) < images / np.float32(255.0)).astype(
            np.uint8
        )
    if mode == "none":
        return images
    raise ValueError(
        f"binarization mode must be one of {', '.join(map(repr, BINARIZE_MODES))}, got {mode!r}"
    )


def _build(
    name: str,
    *,
    data_dir: str | os.PathLike[str] | None,
    binarize: str,
    val_fraction: float,
    max_train: int | None,
    seed: int,
    download: bool,
    resample: bool = False,
) -> Dataset:
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(
            f"{name}: data_dir must be a folder path or None, "
            f"got {type(data_dir).__name__} {data_dir!r}"
        )
    binarize = check_choice(binarize, f"{name}: binarize", BINARIZE_MODES)
    val_fraction = check_fraction(val_fraction, f"{name}: val_fraction")
    max_train = check_optional_int(max_train, f"{name}: max_train", minimum=1)
    seed = check_seed(seed, f"{name}: seed")
    download = check_bool(download, f"{name}: download")
    resample = check_bool(resample, f"{name}: resample")
    if resample and binarize != "stochastic":
        raise ValueError(
            f"{name}: resample draws each epoch's binary images afresh, so it needs "
            f"binarize='stochastic', got binarize={binarize!r}"
        )

    train_images, test_images, train_labels, test_labels = load_labelled_images(
        name, data_dir, download=download
    )
    noise = generator(seed, NOISE_STREAM)
    train_pool = binarize_images(train_images, binarize, noise)
    test = binarize_images(test_images, binarize, noise)
    # The split is carved on indices, so the labels follow their images.
    train_rows, val_rows = carve_validation(
        np.arange(len(train_pool)),
        val_fraction=val_fraction,
        rng=generator(seed, SPLIT_STREAM),
        max_train=max_train,
    )
    return Dataset(
        name=name,
        train=as_examples(train_pool[train_rows]),
        val=as_examples(train_pool[val_rows]),
        test=as_examples(test),
        num_values=256 if binarize == "none" else 2,
        kind="image",
        shape=tuple(train_images.shape[1:]),
        **_labels(name, train_labels, test_labels, train_rows, val_rows),
        options={
            "data_dir": None if data_dir is None else os.fspath(data_dir),
            "binarize": binarize,
            "val_fraction": val_fraction,
            "max_train": max_train,
            "seed": seed,
            "download": download,
            "resample": resample,
        },
        train_draws=_EpochDraws(train_images[train_rows], seed) if resample else None,
    )


LABEL_NAMES: dict[str, tuple[str, ...]] = {
    "mnist": tuple(str(digit) for digit in range(10)),
    "fashion-mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
}
"""The class names of each image set's labels, in label order."""


def _labels(
    name: str,
    train_labels: np.ndarray | None,
    test_labels: np.ndarray | None,
    train_rows: np.ndarray,
    val_rows: np.ndarray,
) -> dict:
    """The label fields of a ``Dataset`` (none when the files had no labels)."""
    if train_labels is None or test_labels is None:
        return {}
    return {
        "train_labels": torch.from_numpy(train_labels[train_rows]),
        "val_labels": torch.from_numpy(train_labels[val_rows]),
        "test_labels": torch.from_numpy(np.ascontiguousarray(test_labels)),
        "label_names": LABEL_NAMES[name],
    }


@register("mnist")
def mnist(
    *,
    data_dir: str | os.PathLike[str] | None = None,
    binarize: str = "threshold",
    val_fraction: float = 0.1,
    max_train: int | None = None,
    seed: int = 0,
    download: bool = True,
    resample: bool = False,
) -> Dataset:
    """MNIST handwritten digits, 28x28, binarized at 127.5 by default (or 256 grey levels).

    Args:
        data_dir: A folder with the IDX files (see the module notes); ``None``
            searches the default places and then downloads.
        binarize: ``"threshold"`` (``pixel > 127.5``), ``"stochastic"`` (a fixed
            Bernoulli(pixel / 255) draw seeded by ``seed``) or ``"none"`` (values
            0..255, ``num_values=256``).
        val_fraction: Fraction of the official training set held out for
            validation, in ``[0, 1)``; ``0.0`` makes it the training split itself.
        max_train: Keep only the first ``max_train`` training examples (after the
            validation split), for quick runs; ``None`` keeps all.
        seed: Seed of the validation split and of the stochastic binarization.
        download: Without ``data_dir``, download with torchvision if needed.
        resample: With ``binarize="stochastic"``, dynamic binarization: every epoch
            trains on a fresh seeded draw of the training images
            (``Dataset.train_draws``); validation and test keep the fixed draw.

    Returns:
        An ``"image"`` data set with ``shape=(28, 28)``; the official test set is the
        test split.

    Raises:
        DataError: If the files cannot be found, read or downloaded.
    """
    return _build(
        "mnist",
        data_dir=data_dir,
        binarize=binarize,
        val_fraction=val_fraction,
        max_train=max_train,
        seed=seed,
        download=download,
        resample=resample,
    )


@register("fashion-mnist")
def fashion_mnist(
    *,
    data_dir: str | os.PathLike[str] | None = None,
    binarize: str = "threshold",
    val_fraction: float = 0.1,
    max_train: int | None = None,
    seed: int = 0,
    download: bool = True,
    resample: bool = False,
) -> Dataset:
    """Fashion-MNIST clothing images, 28x28, binarized at 127.5 by default (or 256 grey levels).

    Takes the same options as [`mnist`][densitykit.data.mnist.mnist]; without
    ``data_dir`` it first looks where Debian's ``dataset-fashion-mnist`` package
    installs the files (``/usr/share/datasets/fashion-mnist``).

    Raises:
        DataError: If the files cannot be found, read or downloaded.
    """
    return _build(
        "fashion-mnist",
        data_dir=data_dir,
        binarize=binarize,
        val_fraction=val_fraction,
        max_train=max_train,
        seed=seed,
        download=download,
        resample=resample,
    )


@register("binarized-mnist")
def binarized_mnist(
    *,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    num_val: int = BINARIZED_MNIST_VAL,
    max_train: int | None = None,
    download: bool = True,
    resample: bool = False,
) -> Dataset:
    """The binarized MNIST benchmark: 50,000 / 10,000 / 10,000 images, one fixed Bernoulli draw.

    The split of Larochelle and Murray (2011), which the MADE paper and the other
    autoregressive models of its family report: the first 50,000 official training
    images train, the last 10,000 validate, and the 10,000 official test images test.
    Every pixel is drawn once as Bernoulli(grey / 255) and then fixed; ``seed`` fixes the
    draw. The draw is the one ``mnist`` makes with ``binarize="stochastic"`` and the same
    seed (the same pixels), only the split differs: here it is fixed, not random.

    Args:
        data_dir: A folder with the IDX files (see the module notes); ``None``
            searches the default places and then downloads.
        seed: Seed of the binarization (the split does not depend on it).
        num_val: How many of the last official training images validate (10,000 for the
            benchmark; smaller only for a subset of the files).
        max_train: Keep only the first ``max_train`` training images, for quick runs;
            ``None`` keeps all 50,000.
        download: Without ``data_dir``, download with torchvision if needed.
        resample: Dynamic binarization: train each epoch on a fresh Bernoulli(grey / 255)
            draw of the training images (``Dataset.train_draws``; epoch ``e`` draws from
            its own seeded stream, so a resumed run sees the same images). The
            validation and test images stay the benchmark's fixed draw. This trains on
            more than the fixed binary training set (the grey levels, through their
            draws): figures trained so are not comparable with models trained on one
            fixed draw (the MADE paper's), and the benchmark pages say which is which.

    Returns:
        An ``"image"`` data set of 0/1 values with ``shape=(28, 28)``.

    Raises:
        DataError: If the files cannot be found, read or downloaded, or the training
            file holds no more than ``num_val`` images.
    """
    name = "binarized-mnist"
    split = fixed_split(name, data_dir, seed, num_val, max_train, download)
    seed, num_val, max_train, download = split.options
    resample = check_bool(resample, f"{name}: resample")
    train_images, test_images, train_labels, test_labels = split.files
    train_rows, val_rows = split.train_rows, split.val_rows
    # Training file first, then the test file, from one stream: the pixels of
    # mnist(binarize="stochastic", seed=seed).
    noise = generator(seed, NOISE_STREAM)
    train_pool = binarize_images(train_images, "stochastic", noise)
    test = binarize_images(test_images, "stochastic", noise)
    return Dataset(
        name=name,
        train=as_examples(train_pool[train_rows]),
        val=as_examples(train_pool[val_rows]),
        test=as_examples(test),
        num_values=2,
        kind="image",
        shape=tuple(train_images.shape[1:]),
        **_labels("mnist", train_labels, test_labels, train_rows, val_rows),
        options={
            "data_dir": None if data_dir is None else os.fspath(data_dir),
            "seed": seed,
            "num_val": num_val,
            "max_train": max_train,
            "download": download,
            "resample": resample,
        },
        train_draws=_EpochDraws(train_images[train_rows], seed) if resample else None,
    )


class FixedSplit(NamedTuple):
    """The MNIST files and the benchmarks' fixed split, from ``fixed_split``."""

    files: tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]
    """Training images, test images, training labels, test labels (``None`` without them)."""
    train_rows: np.ndarray
    """Rows of the training file that train: the first ones, at most ``max_train``."""
    val_rows: np.ndarray
    """Rows of the training file that validate: the last ``num_val``."""
    options: tuple[int, int, int | None, bool]
    """The checked ``seed``, ``num_val``, ``max_train`` and ``download``."""


def fixed_split(
    name: str,
    data_dir: str | os.PathLike[str] | None,
    seed: int,
    num_val: int,
    max_train: int | None,
    download: bool,
) -> FixedSplit:
    """Check a benchmark's options, read the MNIST files and split them as the benchmarks do.

    The split of ``binarized-mnist`` and ``mnist-logit``: the first official training
    images train (at most ``max_train``), the last ``num_val`` validate, the official
    test images test. It does not depend on ``seed``.

    Raises:
        TypeError: If ``data_dir`` is not a path or ``None``.
        ValueError: On an option out of range.
        DataError: If the files cannot be read, or hold no more than ``num_val``
            training images.
    """
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(
            f"{name}: data_dir must be a folder path or None, "
            f"got {type(data_dir).__name__} {data_dir!r}"
        )
    seed = check_seed(seed, f"{name}: seed")
    num_val = check_int(num_val, f"{name}: num_val", minimum=1)
    max_train = check_optional_int(max_train, f"{name}: max_train", minimum=1)
    download = check_bool(download, f"{name}: download")
    files = load_labelled_images("mnist", data_dir, download=download)
    if len(files[0]) <= num_val:
        raise DataError(
            f"{name}: expected more than num_val={num_val} training images, "
            f"got {len(files[0])}; pass a smaller num_val for a subset of the files"
        )
    rows = np.arange(len(files[0]))
    return FixedSplit(
        files, rows[:-num_val][:max_train], rows[-num_val:], (seed, num_val, max_train, download)
    )


class _EpochDraws:
    """Each epoch's fresh Bernoulli(grey / 255) draw of the training images."""

    def __init__(self, images: np.ndarray, seed: int) -> None:
        self.images, self.seed = images, seed

    def __call__(self, epoch: int) -> torch.Tensor:
        noise = generator(self.seed, EPOCH_STREAM, check_int(epoch, "epoch", minimum=0))
        return as_examples(binarize_images(self.images, "stochastic", noise))
