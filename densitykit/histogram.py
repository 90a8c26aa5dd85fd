r"""The histogram family: independent per-variable histograms, the baseline.

$$p(x) = \prod_{i=1}^{D} \mathrm{softmax}(\theta_i)_{x_i}$$

Each variable has its own K logits $\theta_i$ (those of a
[`HistogramHead`][densitykit.heads.HistogramHead], initialised to zero: the uniform
distribution) and no dependence on any other variable. It is trained like every
family, by [`fit`][densitykit.train.fit]: its maximum-likelihood fit is the training
frequencies.

Independence answers every optional query exactly: the marginal of the observed
variables and the conditional of the missing ones are sums of per-variable
log-probabilities, and a completion draws the missing variables from their
histograms. Every ordering gives the same answers, so the queries ignore
``connectivities``.

A MADE config whose head is ``histogram`` (``--head histogram``, and the run folders
and checkpoints written when the histogram was a MADE head without a backbone)
describes this family: [`resolve_family`][densitykit.histogram.resolve_family]
reads it as one.

Example:
    >>> import torch
    >>> model = HistogramModel(HistogramConfig(dim=2, num_values=3))
    >>> model.log_prob(torch.tensor([[0, 2]])).exp()
    tensor([0.1111], grad_fn=<ExpBackward0>)
    >>> observed = torch.tensor([True, False])
    >>> x = torch.tensor([[1, 0]])
    >>> both = model.marginal_log_prob(x, observed) + model.conditional_log_prob(x, observed)
    >>> bool(torch.allclose(both, model.log_prob(x).double()))
    True
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar

import torch

from densitykit.checks import check_generator, check_int
from densitykit.errors import DensitykitError
from densitykit.family import (
    CAPABILITIES,
    FAMILIES,
    DataFacts,
    DensityModel,
    check_head_fits,
    check_sample_shape,
)
from densitykit.heads import HistogramHead
from densitykit.memory import check_allocation
from densitykit.queries import check_observed

__all__ = ["CHUNK_ROWS", "HistogramConfig", "HistogramModel", "resolve_family"]

CHUNK_ROWS = 65_536
"""Rows scored per pass by ``log_prob``: a larger batch is widened to int64 a chunk at a time."""


@dataclass(frozen=True)
class HistogramConfig:
    """What builds a [`HistogramModel`][densitykit.histogram.HistogramModel] (saved
    beside its weights): D and K, filled in from the data by
    [`complete_config`][densitykit.histogram.HistogramModel.complete_config].

    The histogram head takes no options, so neither does the family.

    Attributes:
        dim: The number of variables D.
        num_values: Values per variable K (at least 2).
        head: Always ``"histogram"``, the head whose maths the family uses (not a field:
            it is what a run's records and presets name).

    Example:
        >>> HistogramConfig.from_dict({"dim": 3, "num_values": 4}).to_dict()
        {'dim': 3, 'num_values': 4}
    """

    dim: int | None = None
    num_values: int | None = None
    head: ClassVar[str] = "histogram"

    def __post_init__(self) -> None:
        if self.dim is not None:
            object.__setattr__(self, "dim", check_int(self.dim, "dim", minimum=1))
        if self.num_values is not None:
            object.__setattr__(
                self, "num_values", check_int(self.num_values, "num_values", minimum=2)
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HistogramConfig:
        """Rebuild from ``to_dict`` output.

        Raises:
            ValueError: On keys this class does not know.
        """
        unknown = sorted(set(data) - {"dim", "num_values"})
        if unknown:
            raise ValueError(
                f"unknown histogram config keys {unknown}; expected some of ['dim', 'num_values']"
            )
        return cls(**data)

    @classmethod
    def from_made_dict(cls, data: dict[str, Any]) -> HistogramConfig:
        """The histogram config of a MADE config dict whose head is ``histogram``.

        Its D and K are kept; its network settings (hidden sizes, masks, ...) never
        built anything for this head and are dropped.

        Raises:
            ValueError: If it conditions on a context or gives the head options (the
                histogram takes neither).

        Example:
            >>> HistogramConfig.from_made_dict({"head": "histogram", "dim": 1,
            ...                                 "num_values": 6, "hidden_sizes": [256]})
            HistogramConfig(dim=1, num_values=6)
        """
        if data.get("num_labels") or data.get("context_size"):
            raise ValueError(
                "the 'histogram' head takes no parameters from a backbone, so it cannot be "
                "conditioned on a context; choose a head with a MADE backbone"
            )
        if data.get("head_options"):
            raise ValueError(
                f"the histogram takes no head options, got {sorted(data['head_options'])}"
            )
        return cls(dim=data.get("dim"), num_values=data.get("num_values"))


def resolve_family(family: str, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A recorded ``(family, config dict)`` as the current families read it: a MADE
    whose head is ``histogram`` is the ``histogram`` family.

    Run folders and checkpoints written when the histogram was a MADE head without a
    backbone go through here, so they load, evaluate, sample and resume.

    Example:
        >>> resolve_family("made", {"head": "histogram", "dim": 2, "num_values": 5})
        ('histogram', {'dim': 2, 'num_values': 5})
        >>> resolve_family("made", {"head": "bernoulli"})
        ('made', {'head': 'bernoulli'})
    """
    if family == "made" and isinstance(config, dict) and config.get("head") == "histogram":
        return "histogram", HistogramConfig.from_made_dict(config).to_dict()
    return family, config


class HistogramModel(DensityModel):
    r"""Independent per-variable histograms: the ``histogram`` model family.

    Its parameters are a [`HistogramHead`][densitykit.heads.HistogramHead]'s logits,
    ``model.head.logits`` ``(D, K)``, under the name ``head.logits`` (as when the
    histogram was a MADE head, so those checkpoints load).

    Args:
        config: A complete config (D and K set).
        validate_args: Check inputs in ``log_prob`` and the queries (shape, dtype,
            support); ``validate=False`` skips them in one call.

    Example:
        >>> model = HistogramModel(HistogramConfig(dim=3, num_values=4))
        >>> model.sample((2, 5), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 5, 3])
    """

    family = "histogram"
    capabilities = frozenset(CAPABILITIES)
    config_class = HistogramConfig

    def __init__(self, config: HistogramConfig, *, validate_args: bool = True) -> None:
        super().__init__()
        if not isinstance(config, HistogramConfig):
            raise TypeError(f"config must be a HistogramConfig, got {type(config).__name__}")
        if config.dim is None or config.num_values is None:
            raise ValueError("a histogram model is built from a config with dim and num_values set")
        self.config = config
        self.head = HistogramHead(config.dim, config.num_values)
        self.validate_args = bool(validate_args)

    # -- configs ---------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: HistogramConfig) -> HistogramModel:
        """Build the model, once its size is known to fit in memory.

        Raises:
            ResourceError: If its logits would need more than the machine's memory allows.
        """
        weights = cls.parameter_count(config)
        check_allocation(4 * weights, f"a model of {weights:,} weights")
        return cls(config)

    @classmethod
    def complete_config(cls, config: HistogramConfig, data: DataFacts) -> HistogramConfig:
        """Fill in D and K from the data.

        Raises:
            DensitykitError: If the config says other D or K than the data, the run
                conditions on labels, or the data do not suit the histogram head.
        """
        for name, actual in (("dim", data.dim), ("num_values", data.num_values)):
            given = getattr(config, name)
            if given is not None and given != actual:
                raise DensitykitError(
                    f"the histogram config says {name}={given}, but data set {data.name!r} "
                    f"has {name}={actual}; leave it unset to take the data's"
                )
        if data.num_labels:
            raise DensitykitError(
                "the histogram family does not condition on labels; train a MADE "
                "(--family made) for --condition label"
            )
        check_head_fits("histogram", data.dim, data.num_values, {}, data)
        return replace(config, dim=data.dim, num_values=data.num_values)

    @classmethod
    def needed_names(cls, config: HistogramConfig) -> dict[str, str]:
        """None: the family uses the built-in histogram head directly."""
        return {}

    @classmethod
    def parameter_count(cls, config: HistogramConfig) -> int:
        """$D \\cdot K$ logits.

        Example:
            >>> HistogramModel.parameter_count(HistogramConfig(dim=3, num_values=4))
            12
        """
        return int(config.dim) * int(config.num_values)  # type: ignore[arg-type]

    # -- facts -----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """The number of variables D."""
        return self.head.dim

    @property
    def num_values(self) -> int:
        """Values per variable K."""
        return self.head.num_values

    @property
    def device(self) -> torch.device:
        """Where the logits live."""
        return self.head.logits.device

    @property
    def dtype(self) -> torch.dtype:
        """The logits' dtype."""
        return self.head.logits.dtype

    def check_values(self, x: torch.Tensor) -> None:
        """Raise unless ``x`` is ``(..., D)`` integers in ``0..K-1``.

        Raises:
            TypeError: If ``x`` is not a tensor, or has a complex or non-numeric dtype.
            ValueError: On a wrong shape, NaN/inf, non-integer or out-of-support values.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of integer values, got {type(x).__name__}")
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(
                f"x must have shape (..., D) with D={self.dim} variables, got {tuple(x.shape)}"
            )
        self.head.check_values(x)

    # -- likelihood ------------------------------------------------------------------------
    def _per_variable(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, D)`` log-probabilities of checked values ``(B, D)`` (long, on the device):
        the head's, given the empty parameters it takes from no backbone."""
        return self.head._log_prob(x.new_empty(x.shape[0], self.dim, 0, dtype=self.dtype), x)

    def _chunks(self, x: torch.Tensor) -> Iterator[torch.Tensor]:
        """``x`` as ``(b, D)`` long chunks of at most ``CHUNK_ROWS`` rows on the device (a
        large uint8 batch is never widened all at once)."""
        rows = x.reshape(-1, self.dim)
        for start in range(0, max(rows.shape[0], 1), CHUNK_ROWS):
            yield rows[start : start + CHUNK_ROWS].to(device=self.device, dtype=torch.long)

    def log_prob(
        self,
        x: torch.Tensor,
        *,
        validate: bool | None = None,
        context: torch.Tensor | None = None,
        connectivities: Any = None,
    ) -> torch.Tensor:
        r"""$\log p(x) = \sum_i \log \mathrm{softmax}(\theta_i)_{x_i}$ in nats.

        Args:
            x: ``(..., D)`` integers in ``0..K-1``.
            validate: Check ``x`` first; ``None`` follows ``self.validate_args``.
            context: Must be ``None`` (the family is not conditional).
            connectivities: Ignored: every ordering of independent variables is the
                same model.

        Returns:
            ``(...)`` log-likelihoods, in at least float32.

        Raises:
            TypeError, ValueError: On values that are not ``(..., D)`` integers of the
                support (when validating), or a context.
        """
        if self.validate_args if validate is None else validate:
            self.check_values(x)
        self.encode_context(context, x.shape[:-1])
        chunks = [self._per_variable(rows).sum(-1) for rows in self._chunks(x)]
        log_prob = chunks[0] if len(chunks) == 1 else torch.cat(chunks)
        return log_prob.reshape(x.shape[:-1])

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Same as [`log_prob`][densitykit.histogram.HistogramModel.log_prob]."""
        return self.log_prob(x, **kwargs)

    def training_log_prob(
        self, x: torch.Tensor, draw: Any, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The exact log-likelihoods (there is nothing to draw per step)."""
        return self.log_prob(x, validate=False, context=context)

    # -- sampling --------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        sample_shape: int | Sequence[int] = (),
        *,
        generator: torch.Generator | None = None,
        context: torch.Tensor | None = None,
        connectivities: Any = None,
    ) -> torch.Tensor:
        """Exact samples ``(*sample_shape, D)``: each variable from its histogram.

        Variables are drawn in turn, ``0`` to ``D - 1``, from ``generator`` (the draws a
        MADE with the histogram head made, so old seeds give the same samples).

        Raises:
            TypeError: If ``sample_shape`` is not an integer or a sequence of them, or
                ``generator`` not a ``torch.Generator``.
            ValueError: On a negative size or a context.
            ResourceError: If the samples cannot fit in memory.
        """
        shape = check_sample_shape(sample_shape)
        check_generator(generator)
        count = math.prod(shape)
        self.check_sample_size(count)
        self.encode_context(context, shape)
        out = self.head.blank(count, self.device)
        self._draw(out, torch.zeros_like(out, dtype=torch.bool), generator)
        return out.reshape(*shape, self.dim)

    def _draw(
        self, out: torch.Tensor, keep: torch.Tensor, generator: torch.Generator | None
    ) -> None:
        """Draw every variable of ``out`` ``(N, D)`` in place, except where ``keep``."""
        empty = torch.empty(out.shape[0], 0, dtype=self.dtype, device=self.device)
        for variable in range(self.dim):
            drawn = self.head.sample(empty, variable, generator)
            out[:, variable] = torch.where(keep[:, variable], out[:, variable], drawn)

    # -- queries ---------------------------------------------------------------------------
    def _query_values(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        validate: bool | None,
        *,
        scored: bool,
        **need: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``x`` ``(B, D)`` as long values on the device and ``observed`` ``(B, D)``; the
        entries not scored (``scored=False``: the missing ones) are set to 0 first."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of integer values, got {type(x).__name__}")
        observed = check_observed(x, observed, self.dim, **need)
        if not scored:
            x = x.masked_fill(~observed, self.head.placeholder)
        if self.validate_args if validate is None else validate:
            self.check_values(x)
        return x.to(device=self.device, dtype=torch.long), observed.to(self.device)

    def conditional_log_prob(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        *,
        connectivities: Any = None,
        validate: bool | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""$\log p(x_\text{missing} \mid x_\text{observed}) = \sum_{i \notin o} \log
        p(x_i)$ per example: the observed values do not change the others.

        Args:
            x: ``(B, D)`` values in the support (the missing ones are scored).
            observed: ``(B, D)`` or ``(D,)`` bool; every example must miss a variable.
            connectivities: Ignored (every ordering gives the same answer).
            validate: Check ``x`` first; ``None`` follows ``self.validate_args``.
            context: Must be ``None``.

        Returns:
            ``(B,)`` float64 log-probabilities in nats.
        """
        self.encode_context(context, ())
        x, observed = self._query_values(x, observed, validate, scored=True, need_missing=True)
        per_variable = self._per_variable(x).double()
        return per_variable.masked_fill(observed, 0).sum(-1)

    def marginal_log_prob(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        *,
        connectivities: Any = None,
        validate: bool | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""$\log p(x_\text{observed}) = \sum_{i \in o} \log p(x_i)$ per example; the
        missing values are not read.

        Args:
            x: ``(B, D)`` values; only the observed ones are checked and read.
            observed: ``(B, D)`` or ``(D,)`` bool; every example must observe a variable.
            connectivities: Ignored (every ordering gives the same answer).
            validate: Check the observed values first; ``None`` follows ``self.validate_args``.
            context: Must be ``None``.

        Returns:
            ``(B,)`` float64 log-probabilities in nats.
        """
        self.encode_context(context, ())
        x, observed = self._query_values(x, observed, validate, scored=False, need_observed=True)
        per_variable = self._per_variable(x).double()
        return per_variable.masked_fill(~observed, 0).sum(-1)

    @torch.no_grad()
    def complete(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
        connectivities: Any = None,
        validate: bool | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Exact samples of the missing values given the observed ones: each missing
        variable from its histogram.

        Args:
            x: ``(B, D)`` values; only the observed ones are checked and read.
            observed: ``(B, D)`` or ``(D,)`` bool (nothing missing returns ``x``).
            generator: Random source.
            connectivities: Ignored (every ordering gives the same answer).
            validate: Check the observed values first; ``None`` follows ``self.validate_args``.
            context: Must be ``None``.

        Returns:
            ``(B, D)`` long values: ``x`` where observed, drawn elsewhere.

        Raises:
            ResourceError: If the completions cannot fit in memory.
        """
        check_generator(generator)
        self.encode_context(context, ())
        if isinstance(x, torch.Tensor) and x.ndim == 2:
            self.check_sample_size(x.shape[0])
        x, observed = self._query_values(x, observed, validate, scored=False)
        out = x.clone()
        self._draw(out, observed, generator)
        return out


FAMILIES.register("histogram", HistogramModel)
