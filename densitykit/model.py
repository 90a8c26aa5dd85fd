r"""An autoregressive model: a MADE backbone composed with an output head.

$$\log p(x) = \sum_{t=1}^{D} \log p\big(x_{o_t} \mid x_{o_1}, \dots, x_{o_{t-1}}\big)$$

for the ordering $o$ of the active mask. A model with K masks is the uniform
mixture of the K autoregressive models:
$\log p(x) = \log \frac{1}{K}\sum_k p_k(x)$ (log-mean-exp), which is a density;
averaging the masks' logits is not, and is not offered.

A model built with an on-demand mask builder (``any-order``) also holds a
[`ConnectivitySampler`][densitykit.masks.ConnectivitySampler] whose generator state
is a buffer of the model (so it is saved and resumed with the weights):
[`draw_connectivity`][densitykit.model.AutoregressiveModel.draw_connectivity] gives
the training loop a fresh ordering per step. Queries with some variables observed
([`conditional_log_prob`][densitykit.model.AutoregressiveModel.conditional_log_prob],
[`marginal_log_prob`][densitykit.model.AutoregressiveModel.marginal_log_prob],
[`complete`][densitykit.model.AutoregressiveModel.complete]) are computed by
[`densitykit.queries`][densitykit.queries].

A conditional model, $p(x \mid c)$, is built with a context (``ModelConfig.num_labels``
for a class label, ``ModelConfig.context_size`` for real features): every
likelihood, sample and query then takes ``context=``; the backbone adds it,
unmasked, to every hidden layer and every output (see [`MADE`][densitykit.made.MADE]).
A label $y \in 0..L-1$ enters as its one-hot vector, so the unmasked weights acting
on it are a learnt per-class vector added to each layer (an embedding).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, overload

import torch

from densitykit import masks as masks_module
from densitykit import queries
from densitykit.checks import (
    check_fraction,
    check_generator,
    check_index,
    check_int,
    check_positive_int,
    check_seed,
)
from densitykit.errors import DensitykitError
from densitykit.family import (
    CAPABILITIES,
    FAMILIES,
    DataFacts,
    DensityModel,
    check_head_fits,
    check_sample_shape,
    default_head,
    encode_features,
    encode_labels,
)
from densitykit.heads import HEADS, Head, default_num_values
from densitykit.histogram import HistogramConfig, HistogramModel
from densitykit.made import LAYOUTS, MADE
from densitykit.masks import Connectivity, ConnectivitySampler, ConnectivityWarning
from densitykit.memory import check_allocation
from densitykit.numerics import log_mean_exp
from densitykit.sampling import check_parts, sample_fast, sample_reference

__all__ = [
    "CHUNK_ROWS",
    "DEFAULT_HIDDEN_SIZES",
    "AutoregressiveModel",
    "ConnectivityWarning",
    "ModelConfig",
    "build_model",
    "check_made_head",
    "check_model_size",
    "create_model",
    "parameter_count",
    "resolved_num_masks",
]

CHUNK_ROWS = 65_536
"""Rows scored per pass by ``log_prob``: a larger batch is widened to int64 a chunk at a time."""
DEFAULT_HIDDEN_SIZES: tuple[int, ...] = (256, 256)
"""Hidden layer widths of a model whose config does not say (the CLI's default too)."""


@dataclass
class ModelConfig:
    r"""Everything needed to rebuild a model (saved as JSON beside the weights).

    In a run's configuration ``head``, ``dim`` and ``num_values`` may be left ``None``:
    the data set fills them in (``head`` by
    [`default_head`][densitykit.runs.default_head]). A model is built only from a
    complete config.

    Attributes:
        head: Registered head name.
        dim: Number of variables D.
        num_values: Values per variable K (0 for a head over real values).
        hidden_sizes: Units per hidden layer of the MADE.
        masks: Registered mask-builder name.
        num_masks: Number of masks (orderings/connectivities); ``None`` takes the
            builder's default. For ``any-order``, which trains on a fresh ordering
            at every step, the seeded orderings of the evaluation mixture.
        seed: Seed of the mask builder.
        activation: Hidden activation name.
        direct_connections: Masked input-to-output weights.
        head_options: Extra keyword options of the head (e.g. ``num_components``).
        mask_options: Extra keyword options of the mask builder (e.g. ``ordering``).
        num_labels: Classes ``L`` of a class-conditional model $p(x \mid y)$, the
            context a label in ``0..L-1`` (one-hot); 0 for none.
        context_size: Real context features ``C`` of a model $p(x \mid c)$; 0 for
            none. At most one of ``num_labels`` and ``context_size`` is set.
        mask_input: Tell the first hidden layer and the outputs which variables
            they see, through learnt weights (deep orderless NADE's mask as input;
            see [`MADE`][densitykit.made.MADE]); for training over all orderings.
        dropout: Dropout probability of the hidden units in training (0 for none; see
            [`MADE`][densitykit.made.MADE]).
        layout: How the backbone stores its masked weights, one of
            [`LAYOUTS`][densitykit.made.LAYOUTS]: ``"auto"`` (the default) packs a
            single natural-order mask ([`PackedLinear`][densitykit.layers.PackedLinear])
            and keeps the rest dense. A built model's config records the layout taken;
            a config saved before layouts existed reads as ``"dense"``.
    """

    head: str | None = None
    dim: int | None = None
    num_values: int | None = None
    hidden_sizes: tuple[int, ...] = DEFAULT_HIDDEN_SIZES
    masks: str = "natural"
    num_masks: int | None = None
    seed: int | None = 0
    activation: str = "relu"
    direct_connections: bool = False
    head_options: dict[str, Any] = field(default_factory=dict)
    mask_options: dict[str, Any] = field(default_factory=dict)
    num_labels: int = 0
    context_size: int = 0
    mask_input: bool = False
    dropout: float = 0.0
    layout: str = "auto"

    def __post_init__(self) -> None:
        self.dropout = check_fraction(self.dropout, "dropout")
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        for name in ("num_labels", "context_size"):
            setattr(self, name, check_int(getattr(self, name), name, minimum=0))
        if self.num_labels and self.context_size:
            raise ValueError(
                "a model conditions on a label (num_labels) or on real features "
                f"(context_size), not both; got num_labels={self.num_labels} and "
                f"context_size={self.context_size}"
            )
        if self.num_labels == 1:
            raise ValueError("num_labels must be 0 (no label) or at least 2, got 1")
        if self.seed is not None:
            self.seed = check_seed(self.seed)
        for name in ("dim", "num_values", "num_masks"):
            if getattr(self, name) is not None:
                # num_values 0: a head over real values (the head checks its own K).
                minimum = 0 if name == "num_values" else 1
                setattr(self, name, check_int(getattr(self, name), name, minimum=minimum))
        if isinstance(self.hidden_sizes, (str, bytes)) or not isinstance(
            self.hidden_sizes, Sequence
        ):
            raise TypeError(
                f"hidden_sizes must be a sequence of positive integers, got {self.hidden_sizes!r}"
            )
        self.hidden_sizes = tuple(
            check_int(size, "hidden_sizes", minimum=1) for size in self.hidden_sizes
        )
        for name in ("head_options", "mask_options"):
            if not isinstance(getattr(self, name), dict):
                raise TypeError(f"{name} must be a dict, got {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        data = asdict(self)
        data["hidden_sizes"] = list(self.hidden_sizes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild from ``to_dict`` output; unknown keys raise ``ValueError``."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown model config keys {unknown}; expected some of {sorted(known)}"
            )
        data = dict(data)
        if "hidden_sizes" in data:
            data["hidden_sizes"] = tuple(data["hidden_sizes"])
        # Configs written before layouts existed describe dense layers (and their
        # training states hold a dense layer's optimizer moments).
        data.setdefault("layout", "dense")
        return cls(**data)


class AutoregressiveModel(DensityModel):
    """A MADE backbone and a head, with exact likelihoods and ancestral sampling.

    The ``made`` model family (see [`densitykit.family`][densitykit.family]).

    Args:
        backbone: The [`MADE`][densitykit.made.MADE] (the histogram, which takes no
            parameters from one, is a family of its own:
            [`HistogramModel`][densitykit.histogram.HistogramModel]).
        head: The output distribution.
        config: The config that built the model, if any (kept for checkpoints).
        validate_args: Check inputs in ``log_prob`` (shape, dtype, support), as
            ``torch.distributions`` does; set ``model.validate_args = False``, or pass
            ``validate=False`` to one call, to skip the checks in a hot loop on values
            known to be good.
        connectivity_source: A source of fresh connectivities for training over all
            orderings (from the ``any-order`` mask builder); its generator state
            becomes the buffer ``connectivity_source_state``.
        num_labels: For a backbone with a context, ``L > 0`` makes the context a
            class label in ``0..L-1`` (one-hot encoded, so the backbone's
            ``context_size`` must be ``L``); 0 (the default) takes the backbone's
            ``context_size`` real features.

    Example:
        >>> from densitykit import masks, heads
        >>> head = heads.create("categorical", dim=3, num_values=4)
        >>> backbone = MADE(masks.create("random", dim=3, hidden_sizes=[16]),
        ...                 params_per_variable=head.params_per_variable,
        ...                 input_width=head.input_width)
        >>> model = AutoregressiveModel(backbone, head)
        >>> model.log_prob(torch.tensor([[0, 3, 1]])).shape
        torch.Size([1])
        >>> model.sample(5, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([5, 3])
        >>> model.sample((2, 5)).shape
        torch.Size([2, 5, 3])
    """

    family = "made"
    config_class = ModelConfig

    @property
    def capabilities(self) -> frozenset[str]:  # type: ignore[override]
        """Every query; ``any_subset`` only for a model trained over all orderings
        (``masks="any-order"``): a fixed stack of masks has learnt the conditionals of
        its own orderings only."""
        trained_any_order = self.connectivity_source is not None
        return frozenset(c for c in CAPABILITIES if c != "any_subset" or trained_any_order)

    @classmethod
    def from_config(cls, config: ModelConfig) -> AutoregressiveModel:
        """[`build_model`][densitykit.model.build_model]."""
        return build_model(config)

    @classmethod
    def complete_config(cls, config: ModelConfig, data: DataFacts) -> ModelConfig:
        """Fill in D, K, the head (Bernoulli for two values, else categorical), the
        labels, and the image shape of region and scan orderings; check the head fits."""
        return _complete_config(config, data)

    @classmethod
    def needed_names(cls, config: ModelConfig) -> dict[str, str]:
        """The mask builder, the activation and the head (once set)."""
        needed = {"mask builder": config.masks, "activation": config.activation}
        if config.head is not None:
            needed["head"] = config.head
        return needed

    @classmethod
    def parameter_count(cls, config: ModelConfig) -> int:
        """[`parameter_count`][densitykit.model.parameter_count]."""
        return parameter_count(config)

    @classmethod
    def training_bytes(cls, config: ModelConfig) -> int:
        """Weights, gradients and two Adam moments, plus a bool and a float mask per mask."""
        return parameter_count(config) * (16 + 5 * resolved_num_masks(config))

    def __init__(
        self,
        backbone: MADE,
        head: Head,
        config: ModelConfig | None = None,
        *,
        validate_args: bool = True,
        connectivity_source: ConnectivitySampler | None = None,
        num_labels: int = 0,
    ) -> None:
        super().__init__()
        check_parts(backbone, head)
        self.num_labels = check_int(num_labels, "num_labels", minimum=0)
        width = backbone.context_size
        if self.num_labels and width != self.num_labels:
            raise ValueError(
                f"a model of {self.num_labels} labels needs a backbone with context_size="
                f"{self.num_labels} (the one-hot label), got context_size={width}"
            )
        self.backbone = backbone
        self.head = head
        self.config = config
        self.validate_args = bool(validate_args)
        self.connectivity_source = connectivity_source
        if connectivity_source is not None:
            if not isinstance(connectivity_source, ConnectivitySampler):
                raise TypeError(
                    "connectivity_source must be a ConnectivitySampler, got "
                    f"{type(connectivity_source).__name__}"
                )
            if (connectivity_source.dim, connectivity_source.hidden_sizes) != (
                backbone.dim,
                backbone.hidden_sizes,
            ):
                raise ValueError(
                    "connectivity_source must draw the backbone's D and hidden sizes "
                    f"{(backbone.dim, backbone.hidden_sizes)}, got "
                    f"{(connectivity_source.dim, connectivity_source.hidden_sizes)}"
                )
            # The buffer is the truth (saved, resumed, moved with the model); the
            # sampler is loaded from it and written back at every draw.
            self.register_buffer(
                "connectivity_source_state", connectivity_source.state_dict()["generator"]
            )

    # -- properties ----------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """The number of variables D."""
        return self.head.dim

    @property
    def num_values(self) -> int:
        """Values per variable K (0 for a head over real values)."""
        return self.head.num_values

    @property
    def num_masks(self) -> int:
        """How many masks the mixture averages over."""
        return self.backbone.num_masks

    @property
    def context_size(self) -> int:
        """Real context features ``C`` the backbone takes (``L`` for ``L`` labels; 0: none)."""
        return self.backbone.context_size

    @property
    def is_conditional(self) -> bool:
        """Whether every likelihood, sample and query takes a ``context``."""
        return self.context_size > 0

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters."""
        return self._first_parameter().device

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the model's parameters."""
        return self._first_parameter().dtype

    def _first_parameter(self) -> torch.Tensor:
        # The backbone's first bias directly (a packed layer's full weight is assembled
        # on read): walking the modules costs more than a small forward pass's arithmetic.
        return self.backbone.layers[0].bias

    # -- connectivities ------------------------------------------------------------------
    def draw_connectivity(self) -> Connectivity:
        """A fresh connectivity from the on-demand source (one per training step).

        Advances the source's generator, whose state is the buffer
        ``connectivity_source_state``: saving and loading the model's ``state_dict``
        resumes the same sequence of draws.

        Raises:
            ValueError: If the model has no on-demand source (a fixed stack of masks).
        """
        source = self.connectivity_source
        if source is None:
            raise ValueError(
                "this model has a fixed stack of masks and no source of fresh ones; build "
                "it with masks='any-order' to train over all orderings"
            )
        state = self.connectivity_source_state
        source.load_state_dict({"generator": state})
        connectivity = source.draw()
        state.copy_(source.state_dict()["generator"].to(state.device))
        return connectivity

    def draw_orderings(self, count: int, *, seed: int = 0) -> list[Connectivity]:
        """``count`` seeded connectivities drawn at inference, to ask a model trained over
        all orderings with orderings it was never built with.

        They come from a [`ConnectivitySampler`][densitykit.masks.ConnectivitySampler]
        like the training source's (the same distribution of orderings and hidden
        degrees: [`reseeded`][densitykit.masks.ConnectivitySampler.reseeded]), seeded
        with ``seed``; neither the model nor its training source changes. Pass them as
        ``connectivities`` to
        [`conditional_log_prob`][densitykit.model.AutoregressiveModel.conditional_log_prob],
        [`marginal_log_prob`][densitykit.model.AutoregressiveModel.marginal_log_prob],
        [`complete`][densitykit.model.AutoregressiveModel.complete] or
        [`densitykit.train.evaluate`][densitykit.train.evaluate]: the answer is the
        uniform mixture over them.

        Args:
            count: How many (a positive integer).
            seed: Seed of the draws.

        Returns:
            ``count`` connectivities on the model's device.

        Raises:
            ValueError: If the model has no on-demand source (a fixed stack of masks:
                its answers hold for its own orderings only), or ``count`` is not positive.

        Example:
            >>> model = create_model("bernoulli", 6, hidden_sizes=(12,), masks="any-order",
            ...                      num_masks=2)
            >>> drawn = model.draw_orderings(16, seed=3)
            >>> len(drawn), drawn[0].ordering.shape
            (16, torch.Size([6]))
            >>> x = torch.randint(0, 2, (5, 6))
            >>> model.conditional_log_prob(x, torch.arange(6) < 2, connectivities=drawn).shape
            torch.Size([5])
        """
        count = check_positive_int(count, "count")
        source = self.connectivity_source
        if source is None:
            raise ValueError(
                "orderings drawn at inference need a model trained over all orderings "
                f"(masks='any-order'); this model has a fixed stack of {self.num_masks} "
                "mask(s), whose answers hold for its own orderings only"
            )
        seed = check_seed(seed)
        per_draw = 8 * (self.dim + sum(self.backbone.hidden_sizes)) + MASK_OVERHEAD
        check_allocation(count * per_draw, f"{count:,} orderings drawn at inference")
        drawer = source.reseeded(seed)
        return [drawer.draw().to(self.device) for _ in range(count)]

    # -- validation ----------------------------------------------------------------------
    def validate(self, x: torch.Tensor) -> torch.Tensor:
        """Check ``x`` is ``(..., D)`` values of the head's support and return it as
        ``(B, D)`` in the head's ``value_dtype`` (long for the discrete heads).

        Raises:
            TypeError: If ``x`` is not a tensor, or has a complex or non-numeric dtype.
            ValueError: On a wrong shape, NaN/inf, non-integer (for a discrete head) or
                out-of-support values.
        """
        self.check_values(x)
        return x.reshape(-1, self.dim).to(device=self.device, dtype=self.head.value_dtype)

    def check_values(self, x: torch.Tensor) -> None:
        """Raise unless ``x`` is ``(..., D)`` values in the head's ``support``.

        The shape is checked here, the values by the head
        ([`Head.check_values`][densitykit.heads.Head.check_values]), which reads ``x``
        in its own dtype (a uint8 batch is not widened).

        Raises:
            TypeError: If ``x`` is not a tensor, or has a complex or non-numeric dtype.
            ValueError: On a wrong shape, NaN/inf, non-integer (for a discrete head) or
                out-of-support values; the message names the support and what came.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"x must be a torch.Tensor of {self._kind} values, got {type(x).__name__}"
            )
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(
                f"x must have shape (..., D) with D={self.dim} variables, got {tuple(x.shape)}"
            )
        self.head.check_values(x)

    @property
    def _kind(self) -> str:
        """What the values are, for messages: ``integer`` or ``real``."""
        return "real" if self.head.value_dtype.is_floating_point else "integer"

    def encode_context(
        self, context: torch.Tensor | None, batch_shape: Sequence[int]
    ) -> torch.Tensor | None:
        """Check a context for a batch of shape ``batch_shape``; the backbone's ``(B, C)``.

        A label model takes integer labels of shape ``batch_shape`` (one per example)
        or ``()`` (one for all), in ``0..L-1``, and encodes them one-hot; a model of
        ``C`` real features takes ``(*batch_shape, C)`` or ``(C,)`` finite floats. An
        unconditional model takes ``None``.

        Args:
            context: The context, or ``None``.
            batch_shape: The batch shape of the values it conditions (``x.shape[:-1]``,
                or a sample shape).

        Returns:
            ``(prod(batch_shape), C)`` features in the model's dtype and device, or
            ``None`` for an unconditional model.

        Raises:
            TypeError: If a needed context is missing its tensor type or has the wrong
                dtype (integer labels, floating features).
            ValueError: If the context is missing, unexpected, of the wrong shape,
                or holds labels outside ``0..L-1`` or non-finite features.

        Example:
            >>> import torch, densitykit as dk
            >>> model = dk.create_model("bernoulli", 3, hidden_sizes=(8,), num_labels=4)
            >>> model.encode_context(torch.tensor([2, 0]), (2,)).tolist()
            [[0.0, 0.0, 1.0, 0.0], [1.0, 0.0, 0.0, 0.0]]
        """
        batch_shape = tuple(int(size) for size in batch_shape)
        if not self.is_conditional:
            if context is not None:
                raise ValueError(
                    "this model is not conditional (built without num_labels or "
                    "context_size); call it without a context"
                )
            return None
        if self.num_labels:
            return encode_labels(
                context, batch_shape, self.num_labels, device=self.device, dtype=self.dtype
            )
        return encode_features(
            context, batch_shape, self.context_size, device=self.device, dtype=self.dtype
        )

    def _check_mask(self, mask: int | None) -> int | None:
        return None if mask is None else check_index(mask, self.num_masks, "mask")

    def _rows(
        self, x: torch.Tensor, validate: bool | None, context: torch.Tensor | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """``x`` as ``(b, D)`` chunks in the head's ``value_dtype`` of at most ``CHUNK_ROWS``
        rows, checked first, each with its rows of the encoded context (``None`` for an
        unconditional model)."""
        if self.validate_args if validate is None else validate:
            self.check_values(x)
        features = self.encode_context(context, x.shape[:-1])
        rows = x.reshape(-1, self.dim)
        for start in range(0, max(rows.shape[0], 1), CHUNK_ROWS):
            end = start + CHUNK_ROWS
            yield (
                rows[start:end].to(device=self.device, dtype=self.head.value_dtype),
                None if features is None else features[start:end],
            )

    # -- likelihood ----------------------------------------------------------------------
    def log_prob(
        self,
        x: torch.Tensor,
        mask: int | None = None,
        *,
        validate: bool | None = None,
        connectivity: Connectivity | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""Log-likelihood of ``x`` in nats ($\log p(x \mid c)$ for a conditional model).

        A batch of more than [`CHUNK_ROWS`][densitykit.model.CHUNK_ROWS] rows is scored a
        chunk at a time, so a large uint8 batch is never widened to int64 all at once.

        Args:
            x: ``(..., D)`` values in the head's support (integers ``0..K-1`` for the
                discrete heads).
            mask: ``None`` for the mixture over all masks (log-mean-exp), or one mask's
                index for that autoregressive model alone.
            validate: Check ``x`` first; ``None`` follows ``self.validate_args``. Skip
                the checks (``False``) only for values known to be in the support.
            connectivity: Score under this connectivity instead of the masks (any
                ordering, one the backbone was never built with included); not with
                ``mask``.
            context: A conditional model's context for each row of ``x`` (see
                [`encode_context`][densitykit.model.AutoregressiveModel.encode_context]);
                ``None`` for an unconditional model.

        Returns:
            ``(...)`` log-likelihoods, in at least float32.

        Raises:
            TypeError: If ``x`` is not a tensor of values (when validating),
                ``mask`` is not an integer, ``connectivity`` not a ``Connectivity``
                or the context of the wrong dtype.
            ValueError: On a wrong shape or values outside the support (when
                validating), a mask index out of range, both ``mask`` and
                ``connectivity``, or a context missing, unexpected or out of range.
        """
        mask = self._check_mask(mask)
        if connectivity is not None:
            if mask is not None:
                raise ValueError("pass a mask index or a connectivity, not both")
            chunks = [
                self._log_prob_connectivity(rows, connectivity, features)
                for rows, features in self._rows(x, validate, context)
            ]
            log_prob = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
            return log_prob.reshape(x.shape[:-1])
        chunks = [
            self._log_prob(rows, mask, features)
            for rows, features in self._rows(x, validate, context)
        ]
        log_prob = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
        return log_prob.reshape(x.shape[:-1])

    def _log_prob(
        self, x: torch.Tensor, mask: int | None, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        if mask is not None:
            return self._log_prob_mask(x, mask, context)
        if self.num_masks == 1:
            return self._log_prob_mask(x, 0, context)
        return log_mean_exp(
            torch.stack([self._log_prob_mask(x, k, context) for k in range(self.num_masks)])
        )

    def _log_prob_mask(
        self, x: torch.Tensor, mask: int, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        active = self.backbone.mask_index
        if mask == active:
            params = self.backbone(self.head.encode(x, self.dtype), context=context)
            return self.head._log_prob(params, x).sum(-1)
        self.backbone.set_mask(mask)
        try:
            params = self.backbone(self.head.encode(x, self.dtype), context=context)
        finally:
            self.backbone.set_mask(active)
        return self.head._log_prob(params, x).sum(-1)

    def _log_prob_connectivity(
        self, x: torch.Tensor, connectivity: Connectivity, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        params = self.backbone(
            self.head.encode(x, self.dtype), connectivity=connectivity, context=context
        )
        return self.head._log_prob(params, x).sum(-1)

    def log_prob_per_mask(
        self,
        x: torch.Tensor,
        *,
        mask_indices: Sequence[int] | None = None,
        validate: bool | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Log-likelihood of ``x`` ``(..., D)`` under each mask alone: ``(num_masks, ...)``.

        Args:
            x: ``(..., D)`` values.
            mask_indices: Which masks, by index (all by default); the result has one
                row per index.
            validate: Check ``x`` first; ``None`` follows ``self.validate_args``.
            context: A conditional model's context (as in ``log_prob``).
        """
        indices = (
            range(self.num_masks)
            if mask_indices is None
            else [self._check_mask(k) for k in mask_indices]
        )
        if not indices:
            raise ValueError("mask_indices must name at least one mask, got none")
        chunks = [
            torch.stack([self._log_prob(rows, k, features) for k in indices])
            for rows, features in self._rows(x, validate, context)
        ]
        per_mask = chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=1)
        return per_mask.reshape(len(indices), *x.shape[:-1])

    def forward(
        self,
        x: torch.Tensor,
        mask: int | None = None,
        *,
        validate: bool | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Same as [`log_prob`][densitykit.model.AutoregressiveModel.log_prob]."""
        return self.log_prob(x, mask, validate=validate, context=context)

    # -- the family's training hooks ------------------------------------------------------
    def training_draw(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> int | Connectivity | None:
        """The step's active mask, or, for a model trained over all orderings, a fresh
        connectivity (from the source whose state is a buffer, so it resumes exactly)."""
        if self.connectivity_source is not None:
            return self.draw_connectivity()
        return self.backbone.mask_index

    def training_log_prob(
        self,
        x: torch.Tensor,
        draw: int | Connectivity | None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Log-likelihoods of checked values under the step's mask or connectivity."""
        if isinstance(draw, Connectivity):
            return self.log_prob(x, validate=False, connectivity=draw, context=context)
        return self.log_prob(x, draw, validate=False, context=context)

    def initialize_from_data(self, values: torch.Tensor) -> bool:
        """Set the output bias to the head's
        [`data_initial_bias`][densitykit.heads.Head.data_initial_bias] of ``values``
        ``(N, D)``, if the head has one (the Gaussian heads: each variable starts at the
        Gaussian, or the spread mixture, fitted to its marginal); return whether it did.

        Example:
            >>> import torch, densitykit as dk
            >>> model = dk.create_model("gaussian", 2, hidden_sizes=(8,))
            >>> model.initialize_from_data(torch.tensor([[0.0, 10.0], [2.0, 14.0]]))
            True
        """
        bias = self.head.data_initial_bias(values)
        if bias is None:
            return False
        self.backbone.set_output_bias(bias)
        return True

    def after_step(self, step: int, config: Any) -> None:
        """Move to the next mask every ``config.mask_every`` steps (connectivity-agnostic
        training)."""
        every = getattr(config, "mask_every", 0)
        if every and step % every == 0:
            self.backbone.next_mask()

    def training_state(self) -> dict[str, Any]:
        """The active mask (an ``any-order`` model's source state is a buffer)."""
        return {"mask_index": self.backbone.mask_index}

    def load_training_state(self, state: dict[str, Any]) -> None:
        """Make the saved mask active again."""
        self.backbone.set_mask(int(state.get("mask_index", 0)) % self.num_masks)

    def evaluation_log_prob(
        self,
        x: torch.Tensor,
        *,
        context: torch.Tensor | None = None,
        num_masks: int | None = None,
        connectivities: Sequence[Connectivity] | None = None,
    ) -> torch.Tensor:
        """Log-likelihoods of checked values under the mixture of the first ``num_masks``
        masks (all by default), or of ``connectivities`` (orderings drawn at inference):
        the log-mean-exp of the members' likelihoods.

        Raises:
            ValueError: If ``num_masks`` is out of range, both are given, or
                ``connectivities`` is empty.
        """
        if connectivities is None:
            count = self.num_masks if num_masks is None else num_masks
            if not isinstance(count, int) or not 1 <= count <= self.num_masks:
                raise ValueError(
                    f"num_masks must be in 1..{self.num_masks} for this model, got {num_masks!r}"
                )
            per_member = self.log_prob_per_mask(
                x, mask_indices=range(count), context=context, validate=False
            )
        else:
            connectivities = list(connectivities)
            if num_masks is not None:
                raise ValueError(
                    "give num_masks (the model's first masks) or connectivities, not both"
                )
            if not connectivities:
                raise ValueError("connectivities must hold at least one connectivity, got none")
            per_member = torch.stack(
                [
                    self.log_prob(x, connectivity=conn, context=context, validate=False)
                    for conn in connectivities
                ]
            )
        return log_mean_exp(per_member)

    def query_mixture(
        self, num_masks: int | None = None, draw: int | None = None, seed: int = 0
    ) -> list[Connectivity] | None:
        """The connectivities a query mixes: the model's first ``num_masks`` (all for
        ``None``), or ``draw`` seeded ones drawn at inference
        ([`draw_orderings`][densitykit.model.AutoregressiveModel.draw_orderings]). Pass
        the result to the queries as ``connectivities=``.

        Raises:
            ValueError: If both counts are given, ``num_masks`` is outside
                ``1..num_masks``, or orderings are drawn for a model with a fixed stack.
        """
        if draw is not None:
            if num_masks is not None:
                raise ValueError(
                    "give num_masks (the model's own first orderings) or draw_orderings "
                    "(orderings drawn at inference), not both"
                )
            return self.draw_orderings(draw, seed=seed)
        count = self.num_masks if num_masks is None else num_masks
        if not isinstance(count, int) or not 1 <= count <= self.num_masks:
            raise ValueError(f"num_masks must be in 1..{self.num_masks} for this run, got {count}")
        return [self.backbone.connectivity(k) for k in range(count)]

    # -- sampling ------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        sample_shape: int | Sequence[int] = (),
        *,
        generator: torch.Generator | None = None,
        mask: int | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Exact ancestral samples ``(*sample_shape, D)`` (in the head's ``value_dtype``).

        With several masks and ``mask=None``, each sample first draws its mask
        uniformly (the mixture that ``log_prob`` scores), then its variables in that
        mask's ordering.

        Args:
            sample_shape: The shape of the batch of samples, as in ``torch.distributions``
                (a tuple or ``torch.Size``; an integer ``n`` means ``(n,)``; ``()``
                draws one sample ``(D,)``).
            generator: Random source (its device may differ from the model's).
            mask: Sample from one mask's model instead of the mixture.
            context: A conditional model's context: one per sample (labels of shape
                ``sample_shape``, features ``(*sample_shape, C)``) or one for all
                (a label of shape ``()``, features ``(C,)``); see
                [`encode_context`][densitykit.model.AutoregressiveModel.encode_context].

        Raises:
            TypeError: If ``sample_shape`` is not an integer or a sequence of integers,
                or the context has the wrong dtype.
            ValueError: If a size is negative, ``mask`` is out of range, or the context
                is missing, unexpected, of the wrong shape or out of range.

        Example:
            >>> import torch, densitykit as dk
            >>> model = dk.create_model("bernoulli", 4, hidden_sizes=(8,), num_labels=3)
            >>> model.sample(5, context=torch.tensor(2)).shape  # five samples of label 2
            torch.Size([5, 4])
        """
        shape = check_sample_shape(sample_shape)
        num_samples = math.prod(shape)
        check_generator(generator)
        mask = self._check_mask(mask)
        self.check_sample_size(num_samples)
        features = self.encode_context(context, shape)
        if mask is None and self.num_masks > 1:
            source = generator.device if generator is not None else self.device
            choice = torch.randint(
                self.num_masks, (num_samples,), generator=generator, device=source
            ).to(self.device)
        else:
            choice = torch.full((num_samples,), mask or 0, device=self.device, dtype=torch.long)
        out = self.head.blank(num_samples, self.device)
        for k in range(self.num_masks):
            rows = (choice == k).nonzero().squeeze(-1)
            if rows.numel():
                out[rows] = self._sample_mask(
                    rows.numel(), k, generator, None if features is None else features[rows]
                )
        return out.reshape(*shape, self.dim)

    def check_sample_size(self, num_samples: int) -> None:
        """Refuse to draw (or complete) ``num_samples`` rows at once if they cannot fit.

        Each row holds its long values and the sampler's float inputs, hidden units and
        parameters, about twice over while they are updated.

        Raises:
            ResourceError: If they would need more than the machine's memory allows.

        Example:
            >>> model = create_model("bernoulli", 4, hidden_sizes=(8,))
            >>> model.check_sample_size(10**12)
            Traceback (most recent call last):
            ...
            densitykit.errors.ResourceError: 1,000,000,000,000 samples of 4 variables would need ...
        """
        backbone = self.backbone
        row = 16 * self.dim  # the long values and the long inputs beside them
        row += 4 * (
            backbone.widths.num_inputs
            + self.dim * backbone.params_per_variable
            + sum(backbone.hidden_sizes)
        )
        check_allocation(2 * num_samples * row, f"{num_samples:,} samples of {self.dim} variables")

    def _sample_mask(
        self,
        num_samples: int,
        mask: int,
        generator: torch.Generator | None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return sample_fast(
            self.backbone, self.head, num_samples, mask=mask, generator=generator, context=context
        )

    @torch.no_grad()
    def sample_naive(
        self,
        num_samples: int,
        *,
        mask: int = 0,
        generator: torch.Generator | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Reference ancestral sampler: one full forward pass per variable (D passes).

        Raises:
            TypeError: If ``num_samples`` or ``mask`` is not an integer, or the
                context has the wrong dtype.
            ValueError: If ``num_samples`` is negative, ``mask`` is out of range, or
                the context does not fit (as in ``sample``).
        """
        num_samples = check_int(num_samples, "num_samples", minimum=0)
        mask = check_index(mask, self.num_masks, "mask")
        check_generator(generator)
        self.check_sample_size(num_samples)
        return sample_reference(
            self.backbone,
            self.head,
            num_samples,
            mask=mask,
            generator=generator,
            context=self.encode_context(context, (num_samples,)),
        )

    # -- queries -------------------------------------------------------------------------
    def _query_values(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        validate: bool | None,
        context: torch.Tensor | None,
        *,
        scored: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``x`` as ``(B, D)`` in the head's ``value_dtype`` on the model's device,
        ``observed`` as ``(B, D)`` and the encoded context ``(B, C)`` (``None`` for an
        unconditional model).

        Unscored (missing) entries are set to the head's placeholder before the checks:
        a query never reads them.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"x must be a torch.Tensor of {self._kind} values, got {type(x).__name__}"
            )
        observed = queries.check_observed(x, observed, self.dim)
        if not scored:
            x = x.masked_fill(~observed, self.head.placeholder)
        if self.validate_args if validate is None else validate:
            self.check_values(x)
        features = self.encode_context(context, x.shape[:1])
        value_dtype = self.head.value_dtype
        return x.to(device=self.device, dtype=value_dtype), observed.to(self.device), features

    def conditional_log_prob(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        *,
        connectivities: Sequence[Connectivity] | None = None,
        validate: bool | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""$\log p(x_\text{missing} \mid x_\text{observed})$ per example, in nats.

        Computed in orderings that put the observed variables first, one per
        connectivity (the model's masks by default), and mixed uniformly:
        $\log \frac1K \sum_k p_k(x_m \mid x_o)$. For $K > 1$ that is a distribution over
        the missing values but not the conditional of the joint mixture
        ``log_prob`` scores; see [`densitykit.queries`][densitykit.queries].

        Args:
            x: ``(B, D)`` values in the support (the missing ones are scored).
            observed: ``(B, D)`` bool, true where observed (a different pattern per
                example is allowed), or ``(D,)`` for all examples.
            connectivities: The orderings to use, as connectivities (moved to put
                the observed variables first); the model's own by default.
            validate: Check ``x`` first; ``None`` follows ``self.validate_args``.
            context: A conditional model's context, one per example or one for all
                (see [`encode_context`][densitykit.model.AutoregressiveModel.encode_context]):
                the query is then $\log p(x_m \mid x_o, c)$.

        Returns:
            ``(B,)`` float64 log-probabilities.

        Raises:
            TypeError: If ``x`` is not a tensor of values, ``observed`` not
                a bool tensor, or the context of the wrong dtype.
            ValueError: On shapes other than ``(B, D)`` (``observed`` also ``(D,)``),
                values outside the support, or an example with nothing missing.

        Example:
            >>> import torch, densitykit as dk
            >>> model = dk.create_model("bernoulli", 3, hidden_sizes=(8,))
            >>> x = torch.tensor([[1, 0, 1]])
            >>> observed = torch.tensor([True, False, False])
            >>> missing = torch.tensor([[1, 0, 1], [1, 0, 0], [1, 1, 1], [1, 1, 0]])
            >>> round(float(model.conditional_log_prob(missing, observed).exp().sum().detach()), 6)
            1.0
        """
        x, observed, features = self._query_values(x, observed, validate, context, scored=True)
        return queries.conditional_log_prob(
            self.backbone, self.head, x, observed, connectivities, context=features
        )

    def marginal_log_prob(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        *,
        connectivities: Sequence[Connectivity] | None = None,
        validate: bool | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""$\log p(x_\text{observed})$ per example, in nats; the missing values are not read.

        Computed in orderings that put the observed variables first (one per
        connectivity, the model's masks by default) and mixed uniformly: the
        marginal of the mixture of those observed-first models. With one ordering,
        ``marginal_log_prob + conditional_log_prob`` is that ordering's joint
        log-likelihood.

        Args:
            x: ``(B, D)`` values; only the observed ones are checked and read.
            observed: ``(B, D)`` or ``(D,)`` bool.
            connectivities: As in ``conditional_log_prob``.
            validate: Check the observed values first; ``None`` follows
                ``self.validate_args``.
            context: As in ``conditional_log_prob``.

        Returns:
            ``(B,)`` float64 log-probabilities.

        Raises:
            TypeError: As ``conditional_log_prob``.
            ValueError: On wrong shapes, observed values outside the support, or an
                example with nothing observed.
        """
        x, observed, features = self._query_values(x, observed, validate, context, scored=False)
        return queries.marginal_log_prob(
            self.backbone, self.head, x, observed, connectivities, context=features
        )

    @torch.no_grad()
    def complete(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        connectivities: Sequence[Connectivity] | None = None,
        validate: bool | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Exact samples of the missing values given the observed ones (inpainting).

        Each example draws one of the connectivities uniformly, then its missing
        variables in that observed-first ordering, through the fast sampler started
        after the observed prefix ([`queries.complete`][densitykit.queries.complete]):
        samples of the distribution ``conditional_log_prob`` scores. Repeat the rows
        of ``x`` for several completions of one example.

        Args:
            x: ``(B, D)`` values; only the observed ones are checked and read.
            observed: ``(B, D)`` or ``(D,)`` bool (nothing observed draws from the
                model in observed-first orderings; nothing missing returns ``x``).
            generator: Random source.
            connectivities: As in ``conditional_log_prob``.
            validate: Check the observed values first; ``None`` follows
                ``self.validate_args``.
            context: As in ``conditional_log_prob``.

        Returns:
            ``(B, D)`` values (``value_dtype``): ``x`` where observed, drawn elsewhere.

        Raises:
            TypeError: As ``conditional_log_prob``, or ``generator`` is not a
                ``torch.Generator``.
            ValueError: On wrong shapes or observed values outside the support.
            ResourceError: If the completions of ``x`` cannot fit in memory.
        """
        check_generator(generator)
        if isinstance(x, torch.Tensor) and x.ndim == 2:
            self.check_sample_size(x.shape[0])
        x, observed, features = self._query_values(x, observed, validate, context, scored=False)
        return queries.complete(
            self.backbone,
            self.head,
            x,
            observed,
            connectivities,
            generator=generator,
            context=features,
        )


def build_model(config: ModelConfig) -> AutoregressiveModel:
    """Build a model from a [`ModelConfig`][densitykit.model.ModelConfig] through the registries."""
    missing = [name for name in ("head", "dim", "num_values") if getattr(config, name) is None]
    if missing:
        raise ValueError(
            f"a model is built from a complete ModelConfig; {', '.join(missing)} not set"
        )
    check_model_size(config)  # refuses a head without parameters per variable too
    head = HEADS.create(
        config.head, dim=config.dim, num_values=config.num_values, **config.head_options
    )
    options = dict(config.mask_options)
    if config.num_masks is not None:
        options["num_masks"] = config.num_masks
    connectivities = masks_module.MASKS.create(
        config.masks,
        dim=config.dim,
        hidden_sizes=tuple(config.hidden_sizes),
        seed=config.seed,
        **options,
    )
    widths = head.variable_widths
    backbone = MADE(
        connectivities,
        # One int for a head whose variables are alike; one entry per variable otherwise.
        params_per_variable=head.params_per_variable if widths.is_uniform else widths.outputs,
        input_width=head.input_width if widths.is_uniform else widths.inputs,
        activation=config.activation,
        direct_connections=config.direct_connections,
        context_size=config.num_labels or config.context_size,
        mask_input=config.mask_input,
        dropout=config.dropout,
        layout=config.layout,
    )
    initial_bias = head.initial_bias()
    if initial_bias is not None:
        backbone.set_output_bias(initial_bias)
    source = getattr(connectivities, "source", None)
    # The layout the backbone took is recorded, so a saved config rebuilds the same.
    config = replace(config, layout=backbone.layout)
    return AutoregressiveModel(
        backbone, head, config, connectivity_source=source, num_labels=config.num_labels
    )


@overload
def create_model(
    head: Literal["histogram"], dim: int, num_values: int | None = None, **options: Any
) -> HistogramModel: ...


@overload
def create_model(
    head: str, dim: int, num_values: int | None = None, **options: Any
) -> AutoregressiveModel: ...


def create_model(
    head: str,
    dim: int,
    num_values: int | None = None,
    *,
    hidden_sizes: Sequence[int] = DEFAULT_HIDDEN_SIZES,
    masks: str = "natural",
    num_masks: int | None = None,
    seed: int | None = 0,
    activation: str = "relu",
    direct_connections: bool = False,
    mask_options: dict[str, Any] | None = None,
    num_labels: int = 0,
    context_size: int = 0,
    mask_input: bool = False,
    dropout: float = 0.0,
    layout: str = "auto",
    **head_options: Any,
) -> AutoregressiveModel | HistogramModel:
    r"""Compose a model from registered parts by name.

    ``head="histogram"`` builds the [histogram family][densitykit.histogram]'s model
    (independent per-variable histograms, with no network): a
    [`HistogramModel`][densitykit.histogram.HistogramModel]. The other options are
    checked as for any head and build nothing for it; a context is refused.

    Args:
        head: Head name (see ``densitykit.heads.names()``).
        dim: Number of variables D.
        num_values: Values per variable K; may be omitted for a head with a default
            (the Bernoulli's 2).
        hidden_sizes: Units per hidden layer (empty for none).
        masks: Mask-builder name (see ``densitykit.masks.names()``).
        num_masks: Number of masks; ``None`` takes the builder's default.
        seed: Seed of the mask builder.
        activation: Hidden activation name.
        direct_connections: Add masked input-to-output weights.
        mask_options: Extra options for the mask builder (e.g. ``{"ordering": [2, 0, 1]}``).
        num_labels: Classes of a class-conditional model $p(x \mid y)$ (0: none).
        context_size: Real context features of a model $p(x \mid c)$ (0: none).
        mask_input: Tell the first hidden layer and the outputs which variables they
            see (for training over all orderings; see [`MADE`][densitykit.made.MADE]).
        dropout: Dropout probability of the hidden units in training.
        layout: How the backbone stores its masked weights, one of
            [`LAYOUTS`][densitykit.made.LAYOUTS] (see [`MADE`][densitykit.made.MADE]).
        **head_options: Extra options for the head (e.g. ``num_components=4``).

    Returns:
        The model, with its [`ModelConfig`][densitykit.model.ModelConfig] in
        ``model.config`` (a [`HistogramConfig`][densitykit.histogram.HistogramConfig] for
        the histogram).

    Example:
        >>> import torch, densitykit as dk
        >>> model = dk.create_model(head="logistic-mixture", dim=2, num_values=64,
        ...                         hidden_sizes=(32,), masks="multi-ordering",
        ...                         num_masks=4, seed=0, num_components=2)
        >>> x = torch.randint(0, 64, (10, 2))
        >>> model.log_prob(x).shape
        torch.Size([10])
    """
    if num_values is None:
        num_values = default_num_values(head)
    masks_module.MASKS.get(masks)
    options = dict(mask_options or {})
    config = ModelConfig(
        head=head,
        dim=dim,
        num_values=num_values,
        hidden_sizes=tuple(hidden_sizes),
        masks=masks,
        num_masks=num_masks,
        seed=seed,
        activation=activation,
        direct_connections=direct_connections,
        head_options=dict(head_options),
        mask_options=options,
        num_labels=num_labels,
        context_size=context_size,
        mask_input=mask_input,
        dropout=dropout,
        layout=layout,
    )
    if head == "histogram":
        # A family of its own: the settings above were checked as for any head, and
        # (as when it was a MADE head without a backbone) the network's build nothing.
        return HistogramModel.from_config(HistogramConfig.from_made_dict(config.to_dict()))
    check_model_size(config)  # before the mask builder is probed for its default count
    return build_model(replace(config, num_masks=resolved_num_masks(config)))


def resolved_num_masks(config: ModelConfig) -> int:
    """``config.num_masks``, or the mask builder's default number when it is ``None``.

    Example:
        >>> resolved_num_masks(ModelConfig(dim=3, masks="multi-ordering"))
        8
    """
    if config.num_masks is not None:
        return config.num_masks
    probe = masks_module.MASKS.create(
        config.masks, dim=config.dim, hidden_sizes=(), seed=config.seed, **config.mask_options
    )
    return len(probe)


def parameter_count(config: ModelConfig) -> int:
    """How many weights a model of ``config`` has, computed without building it.

    Cheap for any size, so a config that asks for more than fits can be refused
    before anything is allocated. It counts every weight of the dense layers, as its
    ``state_dict`` (a checkpoint) holds them; a packed model (``layout``) trains only
    those its mask can use.

    Example:
        >>> parameter_count(ModelConfig("bernoulli", dim=3, num_values=2, hidden_sizes=(4,)))
        31
        >>> model = create_model("bernoulli", 3, hidden_sizes=(4,))
        >>> sum(v.numel() for v in model.state_dict().values() if v.is_floating_point())
        31
    """
    with torch.device("meta"):  # the head's own parameters are counted, not allocated
        head = HEADS.create(
            config.head, dim=config.dim, num_values=config.num_values, **config.head_options
        )
    own = sum(p.numel() for p in head.parameters())
    check_made_head(config.head, head)
    dim = int(config.dim)  # type: ignore[arg-type]
    units = head.variable_widths
    widths = [units.num_inputs, *config.hidden_sizes, units.num_outputs]
    count = sum(a * b + b for a, b in itertools.pairwise(widths))
    if config.direct_connections and config.hidden_sizes:
        count += widths[0] * widths[-1]
    count += (config.num_labels or config.context_size) * sum(widths[1:])
    if config.mask_input:
        count += dim * (widths[1] + (widths[-1] if config.hidden_sizes else 0))
    return own + count


def check_made_head(name: str | None, head: Head) -> None:
    """Refuse a head that takes no parameters from a MADE.

    Raises:
        ValueError: If ``head.params_per_variable`` is 0; for ``histogram``, the message
            names the histogram family, which models it.

    Example:
        >>> check_made_head("histogram", HEADS.create("histogram", dim=2, num_values=3))
        Traceback (most recent call last):
        ...
        ValueError: the 'histogram' head takes no parameters from a MADE: ...
    """
    if head.params_per_variable > 0:
        return
    if name == "histogram":
        raise ValueError(
            "the 'histogram' head takes no parameters from a MADE: the histogram is a model "
            "family of its own (dk.create_model('histogram', dim, num_values), "
            "densitykit.histogram.HistogramModel, or fit --family histogram)"
        )
    raise ValueError(
        f"a MADE needs a head with parameters per variable, got {name!r} (params_per_variable=0)"
    )


def _complete_config(config: ModelConfig, data: DataFacts) -> ModelConfig:
    for name, actual in (("dim", data.dim), ("num_values", data.num_values)):
        given = getattr(config, name)
        if given is not None and given != actual:
            raise DensitykitError(
                f"the model config says {name}={given}, but data set {data.name!r} "
                f"has {name}={actual}; leave it unset to take the data's"
            )
    num_labels = config.num_labels
    if data.num_labels:
        if num_labels not in (0, data.num_labels):
            raise DensitykitError(
                f"the model config says num_labels={num_labels}, but data set "
                f"{data.name!r} has {data.num_labels} labels"
            )
        num_labels = data.num_labels
    elif num_labels or config.context_size:
        raise DensitykitError(
            "the model config is conditional, but the run conditions on nothing; "
            "pass --condition label (or leave num_labels and context_size at 0)"
        )
    mask_options = config.mask_options
    if (
        mask_options.get("orderings") in masks_module.IMAGE_ORDERINGS
        and "image_shape" not in mask_options
        and data.kind == "image"  # its shape is (H, W) with H * W = D
    ):
        # Region-first and scan orderings are drawn on the data's images.
        mask_options = {**mask_options, "image_shape": list(data.shape)}
    complete = replace(
        config,
        head=config.head or default_head(data.num_values),
        dim=data.dim,
        num_values=data.num_values,
        num_labels=num_labels,
        mask_options=mask_options,
    )
    check_head_fits(complete.head, complete.dim, complete.num_values, complete.head_options, data)
    return complete


MASK_OVERHEAD = 4096
"""Bytes assumed per mask besides its mask tensors (its degrees and Python objects)."""


def check_model_size(config: ModelConfig) -> None:
    """Refuse a config whose model cannot fit in memory, before anything is built.

    A model holds its fp32 weights and, per mask, a bool and a float mask of the
    same size; ``num_masks=None`` counts one mask (a builder's default is small).

    Raises:
        ResourceError: If the model would need more than the machine's memory allows.

    Example:
        >>> check_model_size(ModelConfig("bernoulli", dim=3, num_values=2, hidden_sizes=(4,)))
        >>> check_model_size(ModelConfig("bernoulli", dim=3, num_values=2, hidden_sizes=(10**12,)))
        Traceback (most recent call last):
        ...
        densitykit.errors.ResourceError: a model of 7,000,000,000,003 weights would need ...
    """
    weights = parameter_count(config)
    num_masks = config.num_masks or 1
    check_allocation(
        weights * (4 + 5 * num_masks) + MASK_OVERHEAD * num_masks,
        f"a model of {weights:,} weights" + (f" with {num_masks:,} masks" if num_masks > 1 else ""),
    )


FAMILIES.register("made", AutoregressiveModel)
