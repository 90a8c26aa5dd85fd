"""A MADE density estimator shaped like scikit-learn's ``KernelDensity`` and ``GaussianMixture``.

[`MADEEstimator`][densitykit.estimator.MADEEstimator] is driven by ``fit(X)``,
``score_samples(X)`` (per-example log-likelihood in nats), ``score(X)`` (their mean),
``sample(n)``, ``get_params`` / ``set_params``, on NumPy arrays of non-negative integers
``(N, D)``. With scikit-learn installed (``pip install densitykit[sklearn]``) it is a
real ``BaseEstimator`` and ``DensityMixin``, so ``GridSearchCV`` selects hidden sizes or
masks by held-out log-likelihood, and it fits in a ``Pipeline``; without scikit-learn it
works alone, with the same methods.

Example:
    >>> import numpy as np
    >>> X = np.random.default_rng(0).integers(0, 2, size=(200, 4))
    >>> est = MADEEstimator(hidden_sizes=(16,), epochs=2).fit(X)
    >>> est.score_samples(X[:3]).shape, est.sample(5, random_state=0).shape
    ((3,), (5, 4))
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import torch

from densitykit.checks import check_seed
from densitykit.data.files import check_values
from densitykit.data.splits import SPLIT_STREAM, carve_validation, generator
from densitykit.errors import DataError, ResourceError
from densitykit.family import FAMILIES, DensityModel
from densitykit.histogram import resolve_family
from densitykit.memory import check_allocation
from densitykit.model import ModelConfig
from densitykit.scoring import score as score_examples
from densitykit.train import TrainConfig, fit

__all__ = ["MAX_INFERRED_VALUES", "MADEEstimator"]

try:  # scikit-learn is optional: the estimator then has scikit-learn's own base classes
    from sklearn.base import BaseEstimator as _Base
    from sklearn.base import DensityMixin as _Density
except ImportError:  # pragma: no cover - exercised only without scikit-learn

    class _Base:  # type: ignore[no-redef]
        """``get_params`` / ``set_params`` as scikit-learn's ``BaseEstimator`` has them."""

        def get_params(self, deep: bool = True) -> dict[str, Any]:
            names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
            return {name: getattr(self, name) for name in names}

        def set_params(self, **params: Any) -> Any:
            valid = self.get_params()
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(f"invalid parameter {key!r}; expected one of {sorted(valid)}")
                setattr(self, key, value)
            return self

    class _Density:  # type: ignore[no-redef]
        _estimator_type = "DensityEstimator"


MAX_INFERRED_VALUES = 2**16
"""The largest ``num_values`` that [`MADEEstimator`][densitykit.estimator.MADEEstimator]
infers from its data (16-bit values); pass ``num_values`` for more."""


def _family_config(config: ModelConfig) -> tuple[type[DensityModel], Any]:
    """The family and family config ``config`` describes: the MADE, or for the
    ``histogram`` head the histogram family."""
    name, data = resolve_family("made", config.to_dict())
    family = FAMILIES.get(name)
    return family, family.config_class.from_dict(data)


def _check_training_size(config: ModelConfig, batch_size: int) -> None:
    """Refuse to train a model whose weights, Adam state and batch outputs cannot fit."""
    family, family_config = _family_config(config)
    weights = family.parameter_count(family_config)
    outputs = batch_size * config.dim * config.num_values * 4 * 3  # logits, log-probs, grads
    check_allocation(
        weights * (16 + 5 * (config.num_masks or 1)) + outputs,
        f"training a model of {weights:,} weights on batches of {batch_size:,}",
    )


class MADEEstimator(_Density, _Base):
    """A MADE fitted to discrete data, with scikit-learn's density-estimator methods.

    Every argument is stored as given (scikit-learn's rule) and read by ``fit``.

    Args:
        hidden_sizes: Units per hidden layer.
        head: Head name; ``None`` picks ``bernoulli`` for binary data, else ``categorical``.
        num_values: $K$; ``None`` takes ``max + 1`` of the training data, at most
            [`MAX_INFERRED_VALUES`][densitykit.estimator.MAX_INFERRED_VALUES] (a larger
            value in ``X`` is refused unless ``num_values`` says it is meant).
        masks: Mask builder name (``natural``, ``multi-ordering``, ...).
        num_masks: Number of masks; ``None`` takes the builder's default.
        direct_connections: Masked input-to-output weights.
        activation: Hidden activation name.
        head_options: Extra keyword options of the head (``{"num_components": 4}``).
        epochs: Maximum epochs.
        batch_size: Examples per Adam step.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        patience: Early-stopping patience in epochs (``None`` disables).
        validation_fraction: Share of ``X`` held out for early stopping (``0``: none,
            the training NLL decides).
        random_state: Seed (an int) of the weights, masks, shuffling and validation split.
        device: ``cpu``, ``cuda`` or ``auto``.

    Attributes:
        model_: The trained [`AutoregressiveModel`][densitykit.model.AutoregressiveModel]
            (a [`HistogramModel`][densitykit.histogram.HistogramModel] for ``head="histogram"``).
        n_features_in_: $D$.
        num_values_: $K$ used.
        history_: The per-epoch records of training.
    """

    def __init__(
        self,
        hidden_sizes: tuple[int, ...] = (256, 256),
        *,
        head: str | None = None,
        num_values: int | None = None,
        masks: str = "natural",
        num_masks: int | None = None,
        direct_connections: bool = False,
        activation: str = "relu",
        head_options: dict[str, Any] | None = None,
        epochs: int = 20,
        batch_size: int = 100,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        patience: int | None = 5,
        validation_fraction: float = 0.1,
        random_state: int = 0,
        device: str = "cpu",
    ) -> None:
        self.hidden_sizes = hidden_sizes
        self.head = head
        self.num_values = num_values
        self.masks = masks
        self.num_masks = num_masks
        self.direct_connections = direct_connections
        self.activation = activation
        self.head_options = head_options
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.device = device

    def _examples(self, X: Any, where: str = "X") -> np.ndarray:
        if hasattr(X, "toarray") and not isinstance(X, np.ndarray):
            raise TypeError(f"{where}: expected a dense array of integers, got a sparse matrix")
        raw = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
        # scikit-learn's own wording for the problems its estimator checks feed in.
        if raw.dtype.kind == "c":
            raise ValueError(f"{where}: Complex data not supported; expected integers")
        if raw.ndim == 2 and raw.shape[1] == 0:
            raise ValueError(
                f"{where}: Found array with 0 feature(s) (shape={raw.shape}) while a minimum "
                "of 1 is required."
            )
        if raw.dtype.kind == "f" and not np.isfinite(raw).all():
            raise ValueError(f"Input {where} contains NaN or infinity; expected integers")
        if raw.dtype.kind in "if" and raw.size and raw.min() < 0:
            raise ValueError(
                f"Negative values in data passed to {type(self).__name__}: {where} must hold "
                f"integers 0..K-1, got {raw.min()}"
            )
        array = check_values(raw, where)
        if array.ndim != 2:
            raise ValueError(
                f"{where}: expected a 2-D array (n_samples, n_features), got shape {array.shape}"
            )
        return array

    def fit(self, X: Any, y: Any = None) -> MADEEstimator:
        """Train on ``X`` ``(N, D)`` non-negative integers (``y`` is ignored).

        Returns:
            ``self``.

        Raises:
            DataError: If ``X`` holds anything but non-negative integers.
        """
        X = self._examples(X)
        largest = int(X.max())
        num_values = self.num_values if self.num_values is not None else max(largest + 1, 2)
        if largest >= num_values:
            raise DataError(f"X: num_values={num_values} means 0..{num_values - 1}, got {largest}")
        if self.num_values is None and num_values > MAX_INFERRED_VALUES:
            raise ResourceError(
                f"X holds the value {largest:,}, so num_values would be {num_values:,} (a "
                f"categorical over that many values per variable); values above "
                f"{MAX_INFERRED_VALUES - 1:,} are refused unless num_values is given"
            )
        seed = check_seed(self.random_state or 0, "random_state")
        if self.validation_fraction and len(X) >= 2:
            train, val = carve_validation(
                X, val_fraction=self.validation_fraction, rng=generator(seed, SPLIT_STREAM)
            )
        else:
            train, val = X, X
        config = ModelConfig(
            head=self.head or ("bernoulli" if num_values == 2 else "categorical"),
            dim=X.shape[1],
            num_values=num_values,
            hidden_sizes=tuple(self.hidden_sizes),
            masks=self.masks,
            num_masks=self.num_masks,
            seed=seed,
            activation=self.activation,
            direct_connections=self.direct_connections,
            head_options=dict(self.head_options or {}),
        )
        _check_training_size(config, int(self.batch_size))
        torch.manual_seed(seed)
        family, family_config = _family_config(config)
        model = family.from_config(family_config)
        result = fit(
            model,
            torch.from_numpy(train),
            torch.from_numpy(val),
            TrainConfig(
                epochs=self.epochs,
                batch_size=self.batch_size,
                lr=self.lr,
                weight_decay=self.weight_decay,
                patience=self.patience,
                seed=seed,
                device=self.device,
            ),
        )
        self.model_: DensityModel = model.eval()
        self.n_features_in_ = X.shape[1]
        self.num_values_ = num_values
        self.history_ = result.history
        return self

    def _fitted(self) -> DensityModel:
        if not hasattr(self, "model_"):
            try:
                from sklearn.exceptions import NotFittedError
            except ImportError:  # pragma: no cover
                NotFittedError = AttributeError
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(X) first")
        return self.model_

    def score_samples(self, X: Any) -> np.ndarray:
        """Log-likelihood in nats of each example of ``X``: ``(N,)`` ``float64``.

        Raises:
            DataError: If ``X`` has another number of features or values out of ``0..K-1``.
        """
        model = self._fitted()
        X = self._examples(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} was fitted with "
                f"{self.n_features_in_} features"
            )
        return score_examples(model, X, where="X")

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-likelihood per example of ``X`` in nats (higher is better)."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples: int = 1, random_state: int | None = None) -> np.ndarray:
        """Draw ``n_samples`` examples ``(n_samples, D)`` ``int64`` from the model."""
        model = self._fitted()
        generator_ = torch.Generator()
        if random_state is None:
            generator_.seed()  # fresh entropy for this generator only, not torch's global one
        else:
            generator_.manual_seed(check_seed(random_state, "random_state"))
        return model.sample(int(n_samples), generator=generator_).cpu().numpy()

    def bits_per_dim(self, X: Any) -> float:
        """Mean negative log-likelihood of ``X`` in bits per variable."""
        return -self.score(X) / self.n_features_in_ / math.log(2)

    # The model is pickled as its config and weights (its modules hold local functions).
    def __getstate__(self) -> dict[str, Any]:
        getstate = getattr(super(), "__getstate__", None)
        state = dict(getstate() if getstate is not None else self.__dict__)
        model = state.pop("model_", None)
        if model is not None:
            state["_model_state"] = {
                "family": model.family,
                "config": model.config.to_dict(),
                "weights": {k: v.cpu() for k, v in model.state_dict().items()},
            }
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        saved = state.pop("_model_state", None)
        setstate = getattr(super(), "__setstate__", None)
        if setstate is not None:
            setstate(state)
        else:  # pragma: no cover - without scikit-learn
            self.__dict__.update(state)
        if saved is not None:
            name, data = resolve_family(saved.get("family", "made"), saved["config"])
            family = FAMILIES.get(name)
            model = family.from_config(family.config_class.from_dict(data))
            model.load_state_dict(saved["weights"])
            self.model_ = model.eval()

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.input_tags.positive_only = True
        tags.requires_fit = True
        return tags
