"""The [`Dataset`][densitykit.data.dataset.Dataset] record every data factory returns.

A data set here is three tensors (train, validation, test) of examples, each a row of
``dim`` variables: integers in ``0..num_values-1`` (``int64``) for discrete data, or
real values (``num_values = 0``, ``float32``, every value finite; see
[`REAL_VALUES`][densitykit.data.dataset.REAL_VALUES]), such as ``mnist-logit`` or a
table of real or mixed columns (``kind="table"``, with the
[`Table`][densitykit.data.tables.Table] that encodes its model values); plus what is
known about the distribution they were drawn from.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from densitykit.checks import check_int
from densitykit.data.tables import Table
from densitykit.errors import DataError

__all__ = ["KINDS", "REAL_VALUES", "Dataset", "as_examples", "as_real_examples"]

KINDS: tuple[str, ...] = ("1d", "2d", "image", "vector", "table")
"""The kinds of data set: one variable, a point on a grid, an image, any other vector,
or a table of real or mixed columns (see [`densitykit.data.tables`][densitykit.data.tables])."""
REAL_VALUES = 0
"""The ``num_values`` of a data set of real values (``float32``), as of a head over the reals."""


def as_examples(array: np.ndarray) -> torch.Tensor:
    """Turn an array of ``N`` examples of any shape into an ``(N, D)`` ``int64`` tensor.

    Args:
        array: An integer array whose first axis indexes examples; the remaining
            axes (if any) are flattened in row-major order.

    Returns:
        A new ``(N, D)`` tensor of dtype ``torch.int64`` (``D = 1`` for a 1-D array).

    Example:
        >>> as_examples(np.array([[0, 1], [1, 0], [1, 1]], dtype=np.uint8)).shape
        torch.Size([3, 2])
        >>> as_examples(np.array([3, 1, 2])).tolist()
        [[3], [1], [2]]
    """
    array = np.asarray(array)
    if array.ndim == 0:
        raise DataError(
            f"expected an array of examples with at least one axis, got a scalar {array!r}"
        )
    rows = array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(-1, 1)
    return torch.from_numpy(np.ascontiguousarray(rows, dtype=np.int64))


def as_real_examples(array: np.ndarray) -> torch.Tensor:
    """Turn an array of ``N`` real examples of any shape into an ``(N, D)`` ``float32`` tensor.

    Args:
        array: A real array whose first axis indexes examples; the remaining axes (if
            any) are flattened in row-major order.

    Returns:
        A new ``(N, D)`` tensor of dtype ``torch.float32``.

    Example:
        >>> as_real_examples(np.array([[0.5, -1.0], [2.0, 0.25]])).dtype
        torch.float32
    """
    array = np.asarray(array)
    if array.ndim == 0:
        raise DataError(
            f"expected an array of examples with at least one axis, got a scalar {array!r}"
        )
    rows = array.reshape(array.shape[0], -1) if array.ndim > 1 else array.reshape(-1, 1)
    return torch.from_numpy(np.array(rows, dtype=np.float32, order="C", copy=True))


@dataclass(eq=False)
class Dataset:
    """Train, validation and test splits of a data set, with what is known of its law.

    Attributes:
        name: The registered name that built it (``"mnist"``).
        train: ``(N_train, D)`` ``int64`` tensor with values in ``0..num_values-1``, or
            for real values ``float32`` with every value finite.
        val: ``(N_val, D)`` validation examples, carved from the training part.
        test: ``(N_test, D)`` test examples.
        num_values: $K$, the number of values each variable takes, or
            [`REAL_VALUES`][densitykit.data.dataset.REAL_VALUES] (0) for real values
            (modelled by a head over the reals, ``gaussian`` or ``gaussian-mixture``).
        kind: ``"1d"`` ($D = 1$), ``"2d"`` ($D = 2$, a point ``(row, col)`` of a
            $K \\times K$ grid), ``"image"`` ($D = H W$, pixels in row-major order) or
            ``"vector"`` (any other $D$ variables, e.g. the columns of a CSV file).
        shape: How one example is drawn: ``(1,)`` for 1d, ``(K, K)`` for 2d, ``(H, W)``
            for an image, ``(D,)`` for a vector.
        true_entropy_nats: The exact entropy of the true distribution of one example,
            in nats, or ``None`` if unknown. A perfect model's test NLL equals it.
        true_probs: The exact probability mass function where known, ``(K,)`` for 1d
            or ``(K, K)`` for 2d (``float64``), else ``None``.
        options: JSON-serialisable keyword options such that
            ``load_dataset(name, **options)`` rebuilds this data set.
        train_labels: ``(N_train,)`` ``int64`` class labels in ``0..L-1`` of the
            training examples, or ``None`` for a data set without labels; the three
            splits have labels or none has.
        val_labels: ``(N_val,)`` labels of the validation examples, or ``None``.
        test_labels: ``(N_test,)`` labels of the test examples, or ``None``.
        label_names: The ``L`` class names (``"0"`` to ``"9"`` for MNIST digits),
            given with the labels.
        train_draws: For a data set whose training examples are drawn afresh every
            epoch (``binarized-mnist`` with ``resample=True``, dynamic binarization):
            the epoch's index (0 for the first) to that epoch's ``(N_train, D)``
            examples, the same draw for the same index (so a resumed run trains on the
            same examples). ``None``: ``train`` serves every epoch. ``train`` is kept
            either way (one fixed draw, for pictures and the training-set NLL).
        table: For a table of columns (``kind="table"``): its columns and encoder; the
            splits hold model values (float32 when ``num_values`` is 0, else int64
            codes). ``None`` for other data sets.
        true_log_density: For real data whose law is known, a function from ``(N, D)``
            float64 rows in the data's units to their exact ``(N,)`` log-density in
            nats (data units), else ``None``.

    Raises:
        TypeError: If a field has the wrong type.
        DataError: If the fields disagree (shapes, value range, kind, probabilities).

    Example:
        >>> data = torch.tensor([[0], [2], [1]])
        >>> ds = Dataset("toy", data, data[:1], data[1:], num_values=3, kind="1d", shape=(1,))
        >>> ds.dim, len(ds.train)
        (1, 3)
    """

    name: str
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    num_values: int
    kind: str
    shape: tuple[int, ...]
    true_entropy_nats: float | None = None
    true_probs: torch.Tensor | None = None
    options: dict[str, Any] = field(default_factory=dict)
    train_labels: torch.Tensor | None = None
    val_labels: torch.Tensor | None = None
    test_labels: torch.Tensor | None = None
    label_names: tuple[str, ...] | None = None
    train_draws: Callable[[int], torch.Tensor] | None = None
    table: Table | None = None
    true_log_density: Any = None

    @property
    def dim(self) -> int:
        """$D$, the number of variables of one example."""
        return int(self.train.shape[1])

    @property
    def is_real(self) -> bool:
        """Whether the variables are real (``num_values == 0``, ``float32`` splits)."""
        return self.num_values == REAL_VALUES

    @property
    def num_labels(self) -> int:
        """$L$, the number of classes of the labels (0 for a data set without labels)."""
        return 0 if self.label_names is None else len(self.label_names)

    def labels(self, split: str) -> torch.Tensor:
        """The labels of ``split`` (``"train"``, ``"val"`` or ``"test"``), ``(N,)`` ``int64``.

        Raises:
            DataError: If the data set has no labels (the message says which data
                sets carry them).
            ValueError: On an unknown split name.

        Example:
            >>> from densitykit.data import load_dataset
            >>> ds = load_dataset("shapes", size=12, num_samples=50)
            >>> ds.label_names, ds.labels("test").shape
            (('rectangle', 'circle', 'triangle', 'line'), torch.Size([10]))
        """
        if split not in ("train", "val", "test"):
            raise ValueError(f"split must be 'train', 'val' or 'test', got {split!r}")
        labels = getattr(self, f"{split}_labels")
        if labels is None:
            raise DataError(
                f"the {self.name!r} data set has no labels to condition on; labels come "
                "with mnist, fashion-mnist, binarized-mnist (when the label files are "
                "present) and shapes (the kind of shape)"
            )
        return labels

    def splits(self) -> dict[str, torch.Tensor]:
        """Return the three splits by name: ``{"train": ..., "val": ..., "test": ...}``."""
        return {"train": self.train, "val": self.val, "test": self.test}

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"Dataset.name must be a non-empty string, got {self.name!r}")
        self.num_values = check_int(self.num_values, "Dataset.num_values")
        if self.num_values < 2 and self.num_values != REAL_VALUES:
            raise DataError(
                f"Dataset.num_values must be >= 2, or {REAL_VALUES} for real values, "
                f"got {self.num_values}"
            )
        if self.table is not None and not isinstance(self.table, Table):
            raise TypeError(
                f"Dataset.table must be a Table or None, got {type(self.table).__name__}"
            )
        if (self.kind == "table") != (self.table is not None):
            raise DataError("a data set of kind 'table' comes with its table, and only it")
        if self.kind not in KINDS:
            raise DataError(f"Dataset.kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        self.shape = tuple(int(s) for s in self.shape)
        self._check_splits()
        self._check_shape()
        self._check_truth()
        self._check_labels()
        if not isinstance(self.options, dict):
            raise TypeError(f"Dataset.options must be a dict, got {type(self.options).__name__}")
        try:
            json.dumps(self.options)
        except (TypeError, ValueError) as error:
            raise DataError(
                f"Dataset.options must be JSON-serialisable, got {self.options!r} ({error})"
            ) from None

    def _check_splits(self) -> None:
        dims = set()
        for split, tensor in self.splits().items():
            if not isinstance(tensor, torch.Tensor):
                raise TypeError(
                    f"Dataset.{split} must be a torch.Tensor, got {type(tensor).__name__}"
                )
            if self.is_real:
                self._check_real_split(split, tensor)
                dims.add(tensor.shape[1])
                continue
            if tensor.dtype != torch.int64 or tensor.ndim != 2:
                raise DataError(
                    f"Dataset.{split} must be a 2-D torch.int64 tensor (N, D), "
                    f"got {tensor.dtype} of shape {tuple(tensor.shape)}"
                )
            dims.add(tensor.shape[1])
            if tensor.numel() and (int(tensor.min()) < 0 or int(tensor.max()) >= self.num_values):
                raise DataError(
                    f"Dataset.{split} values must lie in 0..{self.num_values - 1}, "
                    f"got min {int(tensor.min())} and max {int(tensor.max())}"
                )
        if len(dims) != 1 or 0 in dims:
            raise DataError(
                f"train, val and test must share one D >= 1, got D values {sorted(dims)}"
            )

    @staticmethod
    def _check_real_split(split: str, tensor: torch.Tensor) -> None:
        if tensor.dtype != torch.float32 or tensor.ndim != 2:
            raise DataError(
                f"Dataset.{split} of real values (num_values=0) must be a 2-D torch.float32 "
                f"tensor (N, D), got {tensor.dtype} of shape {tuple(tensor.shape)}"
            )
        if tensor.numel() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise DataError(
                f"Dataset.{split} values must be finite reals, got {bad} NaN or infinite values"
            )

    def _check_labels(self) -> None:
        given = {
            split: getattr(self, f"{split}_labels") is not None
            for split in ("train", "val", "test")
        }
        if self.label_names is None and not any(given.values()):
            return
        if self.label_names is None or not all(given.values()):
            raise DataError(
                "Dataset labels come with label_names and one label tensor per split; got "
                f"label_names={self.label_names!r} and labels for "
                f"{[split for split, has in given.items() if has]}"
            )
        self.label_names = tuple(self.label_names)
        if len(self.label_names) < 2 or not all(isinstance(n, str) for n in self.label_names):
            raise DataError(
                f"Dataset.label_names must be at least two strings, got {self.label_names!r}"
            )
        for split, values in self.splits().items():
            labels = getattr(self, f"{split}_labels")
            if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64:
                raise DataError(
                    f"Dataset.{split}_labels must be an int64 torch.Tensor, got "
                    f"{getattr(labels, 'dtype', type(labels).__name__)}"
                )
            if tuple(labels.shape) != (values.shape[0],):
                raise DataError(
                    f"Dataset.{split}_labels must have shape ({values.shape[0]},), one per "
                    f"example, got {tuple(labels.shape)}"
                )
            if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= self.num_labels):
                raise DataError(
                    f"Dataset.{split}_labels must lie in 0..{self.num_labels - 1}, got labels "
                    f"in {int(labels.min())}..{int(labels.max())}"
                )

    def _check_shape(self) -> None:
        k, d = self.num_values, self.dim
        expected = {"1d": (1,), "2d": (k, k)}.get(self.kind)
        if self.kind in ("vector", "table") and self.shape != (d,):
            raise DataError(f"a vector data set needs shape (D,) = ({d},), got {self.shape}")
        if expected is not None and (d != len(expected) or self.shape != expected):
            raise DataError(
                f"a {self.kind} data set must have D={len(expected)} and shape {expected}, "
                f"got D={d} and shape {self.shape}"
            )
        if self.kind == "image" and (len(self.shape) != 2 or math.prod(self.shape) != d):
            raise DataError(
                f"an image data set needs shape (H, W) with H*W = D = {d}, got {self.shape}"
            )

    def _check_truth(self) -> None:
        if self.true_entropy_nats is not None:
            entropy = self.true_entropy_nats
            if isinstance(entropy, bool) or not isinstance(entropy, (int, float)):
                raise TypeError(
                    "Dataset.true_entropy_nats must be a float or None, "
                    f"got {type(entropy).__name__}"
                )
            self.true_entropy_nats = entropy = float(entropy)
            if not math.isfinite(entropy) or entropy < 0:
                raise DataError(f"Dataset.true_entropy_nats must be finite and >= 0, got {entropy}")
        if self.true_probs is None:
            return
        if not isinstance(self.true_probs, torch.Tensor):
            raise TypeError(
                "Dataset.true_probs must be a torch.Tensor or None, "
                f"got {type(self.true_probs).__name__}"
            )
        k = self.num_values
        expected = {"1d": (k,), "2d": (k, k)}.get(self.kind)
        if expected is None or tuple(self.true_probs.shape) != expected:
            raise DataError(
                f"Dataset.true_probs of a {self.kind} data set must have shape "
                f"{expected or 'None (unknown)'}, got {tuple(self.true_probs.shape)}"
            )
        total = float(self.true_probs.sum())
        if float(self.true_probs.min()) < 0 or abs(total - 1.0) > 1e-6:
            raise DataError(
                f"Dataset.true_probs must be non-negative and sum to 1, got sum {total}"
            )

    def __repr__(self) -> str:
        entropy = (
            "unknown" if self.true_entropy_nats is None else f"{self.true_entropy_nats:.4f} nats"
        )
        return (
            f"Dataset({self.name!r}, kind={self.kind!r}, shape={self.shape}, "
            f"num_values={self.num_values}, train={len(self.train)}, val={len(self.val)}, "
            f"test={len(self.test)}, true_entropy={entropy}, labels={self.num_labels})"
        )
