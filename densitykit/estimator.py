"""A MADE density estimator shaped like scikit-learn's ``KernelDensity`` and ``GaussianMixture``.

[`MADEEstimator`][densitykit.estimator.MADEEstimator] is driven by ``fit(X)``,
``score_samples(X)`` (per-example log-likelihood in nats), ``score(X)`` (their mean),
``sample(n)``, ``get_params`` / ``set_params``, on NumPy arrays ``(N, D)`` of integer
codes (a Bernoulli or categorical MADE), of real numbers (a MADE with a mixture of
Gaussians per variable, on columns standardised by the training data), or of mixed
columns (real, binary, categorical, zero-inflated: the ``mixed`` head over the columns
of a [`Table`][densitykit.data.tables.Table]); see
[`value_kind`][densitykit.estimator.value_kind] for which. With scikit-learn installed
(``pip install densitykit[sklearn]``) it is a real ``BaseEstimator`` and
``DensityMixin`` that passes every one of scikit-learn's ``check_estimator`` checks, so
``GridSearchCV`` selects hidden sizes or masks by held-out log-likelihood, and it fits in
a ``Pipeline``; without scikit-learn it works alone, with the same methods.

Example:
    >>> import numpy as np
    >>> X = np.random.default_rng(0).integers(0, 2, size=(200, 4))
    >>> est = MADEEstimator(hidden_sizes=(16,), epochs=2).fit(X)
    >>> est.score_samples(X[:3]).shape, est.sample(5, random_state=0).shape
    ((3,), (5, 4))
    >>> reals = np.random.default_rng(0).normal(50.0, 10.0, size=(200, 3))
    >>> est = MADEEstimator(hidden_sizes=(16,), epochs=2).fit(reals)
    >>> est.kind_, est.model_.config.head, est.sample(2, random_state=0).dtype
    ('real', 'gaussian-mixture', dtype('float64'))
    >>> amount = np.where(reals[:, 2] > 55, 0.0, reals[:, 2])  # zero-inflated
    >>> rows = np.column_stack([reals[:, 0], reals[:, 1] > 50, amount])
    >>> est = MADEEstimator(hidden_sizes=(16,), epochs=2).fit(rows)
    >>> est.kind_, est.table_.kinds
    ('mixed', ('real', 'binary', 'spike'))
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
from densitykit.data.tables import Table, infer_table, parse_columns
from densitykit.errors import DataError, ResourceError
from densitykit.family import FAMILIES, DensityModel
from densitykit.heads import HEADS
from densitykit.histogram import resolve_family
from densitykit.memory import check_allocation
from densitykit.model import ModelConfig
from densitykit.scoring import score as score_examples
from densitykit.train import TrainConfig, fit

__all__ = ["MAX_INFERRED_VALUES", "VALUE_KINDS", "MADEEstimator", "columns_of", "value_kind"]

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

VALUE_KINDS: tuple[str, ...] = ("auto", "discrete", "real")
"""The strings [`MADEEstimator`][densitykit.estimator.MADEEstimator]'s ``kinds`` takes
besides a list of column kinds."""

_SCORE_ROWS = 1000  # rows per forward pass when scoring a table


def _is_codes(X: np.ndarray) -> bool:
    """Whether every value is a non-negative integer (integer dtype or whole floats)."""
    if X.dtype.kind == "b" or X.size == 0:
        return True
    whole = X.dtype.kind in "iu" or bool(np.all(np.floor(X) == X))
    return whole and X.min() >= 0


def columns_of(X: np.ndarray, kinds: str | list[str] | tuple[str, ...] = "auto") -> Table | None:
    """The columns ``X`` is modelled by: ``None`` for integer codes, else a
    [`Table`][densitykit.data.tables.Table] (kinds, levels, means and scales of ``X``).

    ``kinds`` is ``"auto"``, ``"discrete"``, ``"real"`` (see
    [`value_kind`][densitykit.estimator.value_kind]) or one kind per column as the
    tables take them: ``real``, ``binary``, ``categorical``, ``spike`` (at the most
    common value), ``spike=V`` or ``auto`` (inferred), as a list or a comma-separated
    string.

    Raises:
        ValueError: If ``kinds`` is none of these, or a table of ``X`` needs two rows
            and ``X`` has one.
        DataError: If the kinds do not fit ``X`` (a constant column, too many levels,
            another number of kinds than columns).

    Example:
        >>> X = np.array([[0.5, 1.0], [1.5, 0.0], [2.5, 1.0], [3.5, 0.0]])
        >>> columns_of(X).kinds, columns_of(X, "real").kinds, columns_of(X, "real,auto").kinds
        (('real', 'binary'), ('real', 'real'), ('real', 'binary'))
    """
    if isinstance(kinds, str) and kinds in VALUE_KINDS:
        if kinds == "discrete" or (kinds == "auto" and _is_codes(X)):
            return None
        specs = None if kinds == "auto" else parse_columns(",".join(["real"] * X.shape[1]))
    elif isinstance(kinds, str) or (
        isinstance(kinds, (list, tuple)) and kinds and all(isinstance(k, str) for k in kinds)
    ):
        specs = parse_columns(kinds if isinstance(kinds, str) else ",".join(kinds))
    else:
        raise ValueError(
            f"kinds must be one of {list(VALUE_KINDS)} or a list of column kinds (real, "
            f"binary, categorical, spike, spike=V, auto), got {kinds!r}"
        )
    if len(X) < 2:
        raise ValueError(
            f"X: a table of real or mixed columns needs at least 2 rows to read its columns' "
            f"kinds and scales, got n_samples={len(X)}"
        )
    return infer_table(X, X, None, where="X", specs=specs)


def value_kind(X: np.ndarray, kinds: str | list[str] | tuple[str, ...] = "auto") -> str:
    """Which model ``X`` gets: ``"discrete"`` (integer codes), ``"real"`` or ``"mixed"``.

    The rule of ``kinds="auto"``: ``X`` whose every value is a non-negative integer
    (integer or boolean dtype, or floats that are all whole) is discrete codes
    ``0..K-1``, as it always was. Anything else (a fraction, a negative value) is a
    table whose columns' kinds are inferred
    ([`infer_table`][densitykit.data.tables.infer_table]: two values 0/1 binary, a few
    values categorical, one value held by many rows a spike, the rest real): all real
    is ``"real"``, any other mix ``"mixed"``. ``kinds="discrete"`` or ``"real"`` forces
    a path (integer-valued measurements such as counts are real only when asked, and a
    fraction given as codes is refused); a list of column kinds gives them (see
    [`columns_of`][densitykit.estimator.columns_of]).

    Raises:
        ValueError: If ``kinds`` is not valid.

    Example:
        >>> value_kind(np.array([[0, 1], [2, 1]])), value_kind(np.array([[0.5], [1.0]]))
        ('discrete', 'real')
        >>> value_kind(np.array([[-1, 2], [0, 3]])), value_kind(np.array([[0], [1]]), "real")
        ('real', 'real')
        >>> value_kind(np.array([[0.5, 1], [1.5, 0], [2.5, 1]]))
        'mixed'
    """
    table = columns_of(X, kinds)
    if table is None:
        return "discrete"
    return "real" if set(table.kinds) == {"real"} else "mixed"


def _numbers(X: Any, where: str) -> np.ndarray:
    """``X`` as a 2-D array of finite numbers (integers, booleans or floats), else say why.

    The messages carry scikit-learn's own wording for the problems its checks feed in.
    """
    if hasattr(X, "toarray") and not isinstance(X, np.ndarray):
        raise TypeError(f"{where}: expected a dense array of numbers, got a sparse matrix")
    raw = X.detach().cpu().numpy() if isinstance(X, torch.Tensor) else np.asarray(X)
    if raw.dtype.kind == "c":
        raise ValueError(f"{where}: Complex data not supported; expected real numbers")
    if raw.dtype == object:  # numbers stored as objects; a string or a dict raises here
        raw = raw.astype(np.float64)
    if raw.dtype.kind not in "biuf":
        raise DataError(
            f"{where}: expected an array of numbers, got dtype {raw.dtype} of shape {raw.shape}"
        )
    if raw.ndim != 2:
        raise ValueError(
            f"{where}: expected a 2-D array (n_samples, n_features), got shape {raw.shape}"
        )
    if raw.shape[1] == 0:
        raise ValueError(
            f"{where}: Found array with 0 feature(s) (shape={raw.shape}) while a minimum "
            "of 1 is required."
        )
    if raw.shape[0] == 0:
        raise DataError(f"{where}: expected at least one example, got shape {raw.shape}")
    if raw.dtype.kind == "f" and not np.isfinite(raw).all():
        raise ValueError(f"Input {where} contains NaN or infinity; expected finite numbers")
    return raw


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
    width = config.num_values or 3 * int(config.head_options.get("num_components", 5))
    outputs = batch_size * config.dim * width * 4 * 3  # outputs, log-probs, gradients
    check_allocation(
        weights * (16 + 5 * (config.num_masks or 1)) + outputs,
        f"training a model of {weights:,} weights on batches of {batch_size:,}",
    )


def _real_heads() -> list[str]:
    return [name for name in HEADS.names() if HEADS.get(name).value_dtype.is_floating_point]


class MADEEstimator(_Density, _Base):
    """A MADE fitted to discrete codes, real numbers or mixed columns, with
    scikit-learn's density-estimator methods.

    Every argument is stored as given (scikit-learn's rule) and read by ``fit``.
    Which model ``X`` gets follows ``kinds`` (see
    [`value_kind`][densitykit.estimator.value_kind]): non-negative integers are codes
    ``0..K-1`` of a Bernoulli or categorical MADE; other data are a
    [`Table`][densitykit.data.tables.Table] of columns (``table_``), each real, binary,
    categorical or spike (a real column with a point mass, as zero-inflated amounts
    have). Real and spike columns are standardised by the training data's means and
    standard deviations (``loc_`` and ``scale_``); discrete columns become codes. All
    real columns get a mixture of Gaussians per variable (``gaussian-mixture``), any
    other mix the ``mixed`` head. ``score_samples`` of a table is the log-likelihood in
    ``X``'s own units (the standardisation's Jacobian, $-\\log \\sigma_d$ per real
    value, included; a discrete value or a spike is a probability), and ``sample``
    returns rows in those units, a categorical column's levels and a spike's exact value
    included.

    Args:
        hidden_sizes: Units per hidden layer.
        head: Head name; ``None`` picks ``bernoulli`` for binary codes, ``categorical``
            for other codes, ``gaussian-mixture`` for real columns, ``mixed`` for a mix.
        num_values: $K$ of discrete codes; ``None`` takes ``max + 1`` of the training
            data, at most [`MAX_INFERRED_VALUES`][densitykit.estimator.MAX_INFERRED_VALUES]
            (a larger value in ``X`` is refused unless ``num_values`` says it is meant).
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
        kinds: ``"auto"`` (codes if every value is a non-negative integer, else a table
            of columns whose kinds are inferred), ``"discrete"``, ``"real"`` (every
            column), or one kind per column (``["real", "binary", "categorical",
            "spike=0", "auto"]`` or the same comma-separated).

    Attributes:
        model_: The trained [`AutoregressiveModel`][densitykit.model.AutoregressiveModel]
            (a [`HistogramModel`][densitykit.histogram.HistogramModel] for ``head="histogram"``).
        n_features_in_: $D$.
        kind_: ``"discrete"``, ``"real"`` or ``"mixed"``: the path ``X`` took.
        table_: The [`Table`][densitykit.data.tables.Table] of ``X``'s columns
            (``None`` for codes).
        num_values_: $K$ used (0 for real or mixed columns).
        loc_: ``(D,)`` the training columns' means (of the values other than the spike
            for a spike column; 0 for a discrete column or codes).
        scale_: ``(D,)`` their standard deviations (1 for a discrete column or codes).
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
        kinds: str = "auto",
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
        self.kinds = kinds

    def _codes(self, raw: np.ndarray, where: str) -> np.ndarray:
        if raw.dtype.kind in "if" and raw.min() < 0:
            raise ValueError(
                f"Negative values in data passed to {type(self).__name__}: {where} must hold "
                f"integers 0..K-1, got {raw.min()}"
            )
        return check_values(raw, where)

    def _discrete_head(self, X: np.ndarray) -> tuple[str, int]:
        """The head and $K$ of codes ``X``, refusing a $K$ that the data cannot mean."""
        largest = int(X.max())
        num_values = self.num_values if self.num_values is not None else max(largest + 1, 2)
        if largest >= num_values:
            raise DataError(f"X: num_values={num_values} means 0..{num_values - 1}, got {largest}")
        if self.num_values is None and num_values > MAX_INFERRED_VALUES:
            raise ResourceError(
                f"X holds the value {largest:,}, so num_values would be {num_values:,} (a "
                f"categorical over that many values per variable); values above "
                f"{MAX_INFERRED_VALUES - 1:,} are refused unless num_values is given "
                "(or kinds='real' models them as real numbers)"
            )
        return self.head or ("bernoulli" if num_values == 2 else "categorical"), num_values

    def _table_head(self, table: Table) -> tuple[str, dict[str, Any]]:
        """The head of ``table``'s columns and its options: the table's own
        ([`Table.default_head`][densitykit.data.tables.Table.default_head]), or the
        ``head`` asked for where it can model them."""
        if self.num_values is not None:
            raise ValueError(
                f"num_values={self.num_values} counts discrete codes, but X is a table "
                f"({table.describe()}); leave num_values=None, or pass kinds='discrete' for codes"
            )
        name, options = table.default_head()
        head = self.head or name
        if head == "mixed" and name != "mixed":
            options = {"kinds": [column.head_kind() for column in table.columns]}
        elif head != name:
            real = head in HEADS and HEADS.get(head).value_dtype.is_floating_point
            if not (real and name == "gaussian-mixture") and table.value_dtype != torch.int64:
                raise ValueError(
                    f"head {head!r} cannot model the columns of X ({table.describe()}); "
                    f"expected {name!r} (or 'mixed'), or one of {_real_heads()} when every "
                    "column is real (or kinds='discrete' for codes)"
                )
            options = {}
        return head, {**options, **dict(self.head_options or {})}

    def fit(self, X: Any, y: Any = None) -> MADEEstimator:
        """Train on ``X`` ``(N, D)``: codes or real numbers (``y`` is ignored).

        Returns:
            ``self``.

        Raises:
            DataError: If ``X`` holds anything but finite numbers, or codes out of range.
        """
        raw = _numbers(X, "X")
        table = columns_of(raw, self.kinds)
        if table is None:
            values = self._codes(raw, "X")
            head, num_values = self._discrete_head(values)
            head_options = dict(self.head_options or {})
            data = torch.from_numpy(values)
        else:
            (head, head_options), num_values = self._table_head(table), table.num_values
            data = table.encode(raw, where="X")
        seed = check_seed(self.random_state or 0, "random_state")
        if self.validation_fraction and len(data) >= 2:
            train, val = carve_validation(
                data, val_fraction=self.validation_fraction, rng=generator(seed, SPLIT_STREAM)
            )
        else:
            train, val = data, data
        config = ModelConfig(
            head=head,
            dim=raw.shape[1],
            num_values=num_values,
            hidden_sizes=tuple(self.hidden_sizes),
            masks=self.masks,
            num_masks=self.num_masks,
            seed=seed,
            activation=self.activation,
            direct_connections=self.direct_connections,
            head_options=head_options,
        )
        _check_training_size(config, int(self.batch_size))
        torch.manual_seed(seed)
        family, family_config = _family_config(config)
        model = family.from_config(family_config)
        result = fit(
            model,
            torch.as_tensor(train),
            torch.as_tensor(val),
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
        self.n_features_in_ = raw.shape[1]
        self.table_ = table
        self.kind_ = (
            "discrete" if table is None else "real" if set(table.kinds) == {"real"} else "mixed"
        )
        self.num_values_ = num_values
        columns = table.columns if table is not None else ()
        self.loc_ = np.array([c.mean for c in columns]) if columns else np.zeros(raw.shape[1])
        self.scale_ = np.array([c.scale for c in columns]) if columns else np.ones(raw.shape[1])
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
        """Log-likelihood in nats of each example of ``X``: ``(N,)`` ``float64``; for real
        values the log-density in ``X``'s own units.

        Raises:
            ValueError: If ``X`` has another number of features than the training data.
            DataError: If codes are out of ``0..K-1``.
        """
        model = self._fitted()
        raw = _numbers(X, "X")
        if raw.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {raw.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        if self.table_ is None:
            return score_examples(model, self._codes(raw, "X"), where="X")
        values = self.table_.encode(raw, where="X")
        out = np.empty(len(values), dtype=np.float64)
        with torch.no_grad():
            for start in range(0, len(values), _SCORE_ROWS):
                rows = values[start : start + _SCORE_ROWS]
                out[start : start + len(rows)] = model.evaluation_log_prob(rows).double().cpu()
        return out + self.table_.log_jacobian(values).numpy()

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-likelihood per example of ``X`` in nats (higher is better)."""
        return float(np.mean(self.score_samples(X)))

    def sample(self, n_samples: int = 1, random_state: int | None = None) -> np.ndarray:
        """Draw ``n_samples`` examples ``(n_samples, D)`` from the model: ``int64`` codes,
        or ``float64`` real values in the training data's units."""
        model = self._fitted()
        generator_ = torch.Generator()
        if random_state is None:
            generator_.seed()  # fresh entropy for this generator only, not torch's global one
        else:
            generator_.manual_seed(check_seed(random_state, "random_state"))
        drawn = model.sample(int(n_samples), generator=generator_).cpu()
        return drawn.numpy() if self.table_ is None else self.table_.decode(drawn)

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
        if "model_" in self.__dict__ and "table_" not in self.__dict__:
            self.kind_, self.table_ = "discrete", None  # pickled before tables were taken

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.requires_fit = True
        return tags
