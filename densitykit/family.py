r"""Model families: the small protocol the workflow knows a model by, and their registry.

A *model family* is a kind of density model: the MADE (``made``), the orderless model
(``orderless``), or a user's own. [`fit`][densitykit.train.fit],
[`evaluate`][densitykit.train.evaluate] and data-parallel training know a model only
through [`DensityModel`][densitykit.family.DensityModel], shaped like nflows'
``Distribution``: public methods that check and private ones that compute, with the
training-specific parts as hooks a family fills in.

A training step goes:

1. ``draw = model.training_draw(batch_size, generator)``: what the step is decided with
   (the MADE's active mask or a fresh ordering, the orderless model's per-example
   orderings and cuts), drawn once for the whole global batch;
2. under ``torchrun``, each process keeps its rows: ``model.shard_draw(draw, rows)``;
3. the loss is $-\frac1B \sum_b$ ``model.training_log_prob(x, draw, context)``;
4. after the optimizer step, ``model.after_step(step, config)`` (the MADE moves to its
   next mask every ``mask_every`` steps).

Whatever a family needs to resume exactly (the active mask; a generator's state that
is not a buffer) is ``training_state()``, saved with the loop state and given back to
``load_training_state``. Validation scores ``evaluation_log_prob``: the model's own
exact likelihood (the MADE's mixture of its first ``num_masks`` masks).

Optional queries are *capabilities* (``capabilities``), asked for by name, never by
class: ``"conditional_log_prob"``, ``"marginal_log_prob"``, ``"complete"``, and
``"any_subset"``: the model has learnt the conditionals of every subset of observed
variables (the orderless model, the histogram, a MADE trained over all orderings),
so its completions of arbitrary patterns are the ones it was trained for.

Example:
    >>> import densitykit as dk
    >>> model = dk.create_model("bernoulli", 3, hidden_sizes=(8,))
    >>> isinstance(model, DensityModel), model.family
    (True, 'made')
    >>> "conditional_log_prob" in model.capabilities
    True
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from densitykit.checks import check_int
from densitykit.errors import DensitykitError
from densitykit.heads import HEADS
from densitykit.memory import check_allocation
from densitykit.registry import Registry

__all__ = [
    "CAPABILITIES",
    "FAMILIES",
    "DataFacts",
    "DensityModel",
    "check_head_fits",
    "check_sample_shape",
    "default_head",
    "encode_features",
    "encode_labels",
    "names",
]

CAPABILITIES: tuple[str, ...] = (
    "conditional_log_prob",
    "marginal_log_prob",
    "complete",
    "any_subset",
)
"""The optional queries a family may offer (``DensityModel.capabilities``)."""

FAMILIES: Registry[type] = Registry("model family")
"""The registered families, by name: each entry is a
[`DensityModel`][densitykit.family.DensityModel] subclass."""


def default_head(num_values: int) -> str:
    """``bernoulli`` for two values, ``gaussian`` for real values (0), ``categorical`` otherwise.

    Example:
        >>> default_head(2), default_head(256), default_head(0)
        ('bernoulli', 'categorical', 'gaussian')
    """
    if num_values == 0:
        return "gaussian"
    return "bernoulli" if num_values == 2 else "categorical"


def check_head_fits(
    head: str, dim: int, num_values: int, options: dict[str, Any], data: DataFacts
) -> None:
    """Refuse a head that cannot model the data, in one line that says how to choose.

    A head over real values (``gaussian``, ``gaussian-mixture``, ``mixed``) is refused on
    discrete data sets, which hold integers ``0..K-1``: the integers are codes of bins,
    pixels or categories, and a density over them would be neither the data's model nor
    comparable with the discrete heads' log-likelihoods. A table of real or mixed
    columns (``num_values`` 0) takes a head over real values only.

    Raises:
        DensitykitError: If the head's values do not match the data's, or its factory
            refuses the data's D or K or the options.
    """
    real_head = getattr(HEADS.get(head), "value_dtype", torch.long).is_floating_point
    if real_head and num_values:
        raise DensitykitError(
            f"head {head!r} models real values, but data set {data.name!r} holds the "
            f"integers 0..{num_values - 1} (choose a discrete head with --head, or read a "
            "file as a table of real columns with --columns; `densitykit heads` lists them)"
        )
    if not real_head and not num_values:
        raise DensitykitError(
            f"head {head!r} models integers 0..K-1, but data set {data.name!r} holds real "
            "values: a head over real values models them (gaussian, gaussian-mixture or "
            "mixed, which the made and orderless families take; leave --head out to choose)"
        )
    try:
        HEADS.create(head, dim=dim, num_values=num_values, **options)
    except (ValueError, TypeError) as error:
        if isinstance(error, DensitykitError):
            raise
        raise DensitykitError(
            f"head {head!r} does not fit data set {data.name!r}: {error} "
            "(choose another with --head; `densitykit heads` lists them)"
        ) from None


def encode_labels(
    context: Any,
    batch_shape: Sequence[int],
    num_labels: int,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Check class labels for a batch of shape ``batch_shape`` and encode them one-hot,
    as a label-conditional model's ``encode_context`` does.

    Args:
        context: Integer labels of shape ``batch_shape`` (one per example) or ``()``
            (one for all), in ``0..num_labels-1``.
        batch_shape: The batch shape of the values they condition.
        num_labels: The classes ``L``.
        device: Where the encoding goes.
        dtype: Its floating dtype.

    Returns:
        ``(prod(batch_shape), L)`` one-hot rows.

    Raises:
        TypeError: If the labels are not a tensor or not of an integer dtype.
        ValueError: If they are missing, of another shape, or outside ``0..L-1``.

    Example:
        >>> import torch
        >>> encode_labels(torch.tensor(1), (2,), 3).tolist()
        [[0.0, 1.0, 0.0], [0.0, 1.0, 0.0]]
    """
    batch_shape = tuple(int(size) for size in batch_shape)
    what = f"a label tensor of shape {batch_shape} or () in 0..{num_labels - 1}"
    if context is None:
        raise ValueError(f"this model is conditional; pass context= {what}")
    if not isinstance(context, torch.Tensor):
        raise TypeError(f"context must be {what}, got {type(context).__name__}")
    if context.dtype not in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64):
        raise TypeError(f"context must be {what} with an integer dtype, got {context.dtype}")
    if tuple(context.shape) not in (batch_shape, ()):
        raise ValueError(f"context must be {what}, got shape {tuple(context.shape)}")
    if context.numel():
        low, high = torch.aminmax(context)
        if low < 0 or high >= num_labels:
            raise ValueError(
                f"context labels must lie in 0..{num_labels - 1}, got labels in "
                f"{int(low)}..{int(high)}"
            )
    labels = context.to(device=device, dtype=torch.long).expand(batch_shape)
    labels = labels.reshape(math.prod(batch_shape))
    return nn.functional.one_hot(labels, num_labels).to(dtype)


def encode_features(
    context: Any,
    batch_shape: Sequence[int],
    size: int,
    *,
    device: torch.device | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Check real context features for a batch of shape ``batch_shape``, as a model
    conditioned on ``size`` features reads them.

    Args:
        context: Finite floats of shape ``(*batch_shape, C)`` (one row per example) or
            ``(C,)`` (one for all), ``C = size``.
        batch_shape: The batch shape of the values they condition.
        size: The features ``C``.
        device: Where the features go.
        dtype: Their floating dtype.

    Returns:
        ``(prod(batch_shape), C)`` features.

    Raises:
        TypeError: If the context is not a tensor or not of a floating dtype.
        ValueError: If it is missing, of another shape, or not finite.

    Example:
        >>> import torch
        >>> encode_features(torch.tensor([0.5, 1.0]), (3,), 2).shape
        torch.Size([3, 2])
    """
    batch_shape = tuple(int(item) for item in batch_shape)
    what = f"features of shape {(*batch_shape, size)} or ({size},)"
    if context is None:
        raise ValueError(f"this model is conditional; pass context= {what}")
    if not isinstance(context, torch.Tensor):
        raise TypeError(f"context must be {what}, got {type(context).__name__}")
    if not context.is_floating_point():
        raise TypeError(f"context must be {what} with a floating dtype, got {context.dtype}")
    if tuple(context.shape) not in ((*batch_shape, size), (size,)):
        raise ValueError(f"context must be {what}, got shape {tuple(context.shape)}")
    if not bool(torch.isfinite(context).all()):
        raise ValueError("context features contain NaN or infinite values")
    features = context.to(device=device, dtype=dtype)
    return features.expand(*batch_shape, size).reshape(math.prod(batch_shape), size)


def check_sample_shape(sample_shape: int | Sequence[int]) -> tuple[int, ...]:
    """``sample_shape`` as a tuple of non-negative ints (an integer ``n`` is ``(n,)``), as
    every family's ``sample`` reads it.

    Raises:
        TypeError: If it is not an integer or a sequence of integers.
        ValueError: If a size is negative.

    Example:
        >>> check_sample_shape(3), check_sample_shape((2, 5)), check_sample_shape(())
        ((3,), (2, 5), ())
    """
    try:
        return (check_int(sample_shape, "sample_shape", minimum=0),)
    except TypeError:
        if isinstance(sample_shape, (str, bytes)) or not isinstance(sample_shape, Sequence):
            raise TypeError(
                "sample_shape must be an integer or a sequence of integers (a tuple or "
                f"torch.Size), got {type(sample_shape).__name__} {sample_shape!r}"
            ) from None
    return tuple(check_int(size, "sample_shape sizes", minimum=0) for size in sample_shape)


def names() -> list[str]:
    """The registered family names (sorted)."""
    return FAMILIES.names()


@dataclass(frozen=True)
class DataFacts:
    """What a family may know of a run's data set to complete its config.

    Attributes:
        name: The data set's registered name (for messages).
        dim: Variables per example D.
        num_values: Values per variable K.
        kind: ``"image"``, ``"2d"``, ``"1d"`` or ``"table"``.
        shape: One example's shape (``(H, W)`` for images).
        num_labels: The labels the run conditions on (0: none).
        columns: For a table of columns, each column's ``(name, kind)`` (``real``,
            ``binary``, ``categorical``, ``spike``, as ``densitykit.data.tables`` infers
            them); empty otherwise.
    """

    name: str
    dim: int
    num_values: int
    kind: str
    shape: tuple[int, ...]
    num_labels: int = 0
    columns: tuple[tuple[str, str], ...] = ()


class DensityModel(nn.Module):
    """The base of every model family: what the workflow relies on, and nothing more.

    Subclasses set ``family`` (their registered name) and ``capabilities``, and
    implement ``dim``, ``is_conditional``, ``check_values``, ``encode_context``,
    ``log_prob``, ``sample`` and ``training_log_prob``; the other hooks have defaults
    that suit a family with nothing to draw per step and nothing extra to resume.
    """

    family: ClassVar[str] = ""
    """The family's registered name (recorded in run folders and checkpoints)."""
    capabilities: ClassVar[frozenset[str]] = frozenset()
    """The optional queries this family answers (a subset of ``CAPABILITIES``)."""
    config_class: ClassVar[type] = object
    """The family's config dataclass (with ``to_dict`` and a ``from_dict`` classmethod);
    a model keeps its own as ``model.config``."""
    config: Any
    num_labels: int = 0
    """The class labels a label-conditional model takes (0: it takes none)."""

    # -- configs ---------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Any) -> DensityModel:
        """Build a model of this family from a complete config."""
        return cls(config)

    @classmethod
    def complete_config(cls, config: Any, data: DataFacts) -> Any:
        """``config`` with what the data decide filled in (D, K, a default head, ...),
        checked against them.

        Raises:
            DensitykitError: If the config does not fit the data.
        """
        return config

    @classmethod
    def needed_names(cls, config: Any) -> dict[str, str]:
        """The registered names a config uses, by registry word (``{"head": ...}``), so a
        run that needs a plug-in says which before anything is built."""
        head = getattr(config, "head", None)
        return {"head": head} if head is not None else {}

    @classmethod
    def parameter_count(cls, config: Any) -> int:
        """The weights a model of a complete ``config`` has, computed without building it
        (so a config asking for too much is refused before anything is allocated)."""
        raise NotImplementedError

    @classmethod
    def training_bytes(cls, config: Any) -> int:
        """Memory that training a model of ``config`` needs: float32 weights, gradients
        and two optimizer moments by default."""
        return 16 * cls.parameter_count(config)

    # -- facts ---------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """The number of variables D."""
        raise NotImplementedError

    @property
    def num_masks(self) -> int:
        """How many members the model's exact evaluation mixture has (1: none)."""
        return 1

    @property
    def is_conditional(self) -> bool:
        """Whether likelihoods, samples and queries take a ``context``."""
        return False

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters."""
        return next(self.parameters()).device

    def check_values(self, x: torch.Tensor) -> None:
        """Raise ``TypeError``/``ValueError`` unless ``x`` ``(..., D)`` is in the support."""
        raise NotImplementedError

    def encode_context(
        self, context: torch.Tensor | None, batch_shape: Sequence[int]
    ) -> torch.Tensor | None:
        """Check a context for ``batch_shape`` examples (``None`` without one)."""
        if context is not None:
            raise ValueError(
                f"this {self.family or type(self).__name__} model is not conditional; "
                "give no context"
            )
        return None

    # -- training hooks ------------------------------------------------------------------
    def initialize_from_data(self, values: torch.Tensor) -> bool:
        """Start a new model at its training data's marginals, where the family can;
        return whether anything changed.

        The workflow calls it once on a model it has just built, before training (a run
        resumed from its saved weights does not). The default does nothing: families
        and heads with a data-dependent starting point override it (the MADE and the
        orderless model set their output bias to the head's
        [`data_initial_bias`][densitykit.heads.Head.data_initial_bias]; a MAF makes its
        first layer standardise each variable). Never call it on a trained model: it
        overwrites those weights.

        Args:
            values: ``(N, D)`` training values (as the model reads them).
        """
        return False

    def training_draw(self, batch_size: int, generator: torch.Generator | None = None) -> Any:
        """What one training step is decided with, for a global batch of ``batch_size``
        examples (``None``: nothing to draw). Called once per step, before sharding."""
        return None

    def shard_draw(self, draw: Any, rows: torch.Tensor) -> Any:
        """The part of ``draw`` for the batch's rows ``rows`` (one process's shard)."""
        return draw

    def training_log_prob(
        self, x: torch.Tensor, draw: Any, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``(B,)`` per-example log-likelihoods the step maximises, given its ``draw``
        (values already checked)."""
        raise NotImplementedError

    def after_step(self, step: int, config: Any) -> None:
        """Called after optimizer step ``step`` (1-based) with the ``TrainConfig``."""

    def training_state(self) -> dict[str, Any]:
        """What resuming needs beyond the weights and buffers (plain data, tensors)."""
        return {}

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Restore ``training_state()`` output."""

    def evaluation_log_prob(
        self,
        x: torch.Tensor,
        *,
        context: torch.Tensor | None = None,
        num_masks: int | None = None,
        connectivities: Sequence[Any] | None = None,
    ) -> torch.Tensor:
        """``(B,)`` exact log-likelihoods of checked values, as validation scores them.

        ``num_masks`` (the first members of the model's mixture) and ``connectivities``
        (orderings drawn at inference) apply to families with mixtures; others refuse.
        """
        if num_masks not in (None, 1) or connectivities is not None:
            raise ValueError(
                f"a {self.family or type(self).__name__} model has no mixture of masks or "
                "connectivities to choose from"
            )
        return self.log_prob(x, validate=False, context=context)

    def query_mixture(
        self, num_masks: int | None = None, draw: int | None = None, seed: int = 0
    ) -> Any:
        """What a query mixes, passed to the queries as ``connectivities=``: the first
        ``num_masks`` members of the model's own mixture, or ``draw`` members drawn at
        inference with ``seed`` (``None``: the model's only member).

        Raises:
            ValueError: If the family has no mixture to choose from.
        """
        if num_masks not in (None, 1) or draw is not None:
            raise ValueError(
                f"a {self.family or type(self).__name__} model has no mixture of orderings "
                "to choose from or draw"
            )
        return None

    # -- queries -------------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Log-likelihood of ``x`` in nats."""
        raise NotImplementedError

    def sample(self, sample_shape: int | Sequence[int] = (), **kwargs: Any) -> torch.Tensor:
        """Exact samples ``(*sample_shape, D)``."""
        raise NotImplementedError

    def check_sample_size(self, num_samples: int) -> None:
        """Refuse to draw (or complete) ``num_samples`` rows at once if they cannot fit
        (by default a row costs its values and a few float copies of them).

        Raises:
            ResourceError: If they would need more than the machine's memory allows.
        """
        check_allocation(
            2 * num_samples * 64 * self.dim, f"{num_samples:,} samples of {self.dim} variables"
        )

    def can(self, capability: str) -> bool:
        """Whether this model answers the optional query ``capability``.

        Raises:
            ValueError: If ``capability`` is not one of ``CAPABILITIES``.
        """
        if capability not in CAPABILITIES:
            raise ValueError(
                f"capability must be one of {', '.join(CAPABILITIES)}, got {capability!r}"
            )
        return capability in self.capabilities
