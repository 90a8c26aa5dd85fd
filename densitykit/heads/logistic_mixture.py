"""Discretized logistic mixture head (PixelCNN++ style) over ordinal values."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import Categorical, Distribution, constraints

from densitykit.checks import check_int, check_positive_int
from densitykit.heads.base import (
    Head,
    encode_values,
    float32_at_least,
    inverse_cdf,
    scale_to_unit_interval,
)
from densitykit.heads.registry import register
from densitykit.numerics import log_sigmoid

__all__ = [
    "DiscretizedLogisticMixture",
    "LogisticMixtureHead",
    "discretized_logistic_log_prob",
]

MIN_LOG_SCALE = -7.0
MAX_LOG_SCALE = 7.0


def discretized_logistic_log_prob(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, num_values: int
) -> torch.Tensor:
    r"""Log-mass of value ``x`` under a logistic discretized to ``num_values`` bins.

    Values $k \in \{0..K-1\}$ sit at $c_k = 2k/(K-1) - 1$ with half-width
    $h = 1/(K-1)$; the first bin extends to $-\infty$, the last to $+\infty$. With
    $a = (c_k + h - \mu)/s$ and $b = (c_k - h - \mu)/s$ the mass is
    $\sigma(a) - \sigma(b) = \sigma(a)\,\sigma(-b)\,(1 - e^{-(a-b)})$, so

    $$\log P(k) = \log\sigma(a) + \log\sigma(-b) + \log(1 - e^{-2h/s}),$$

    every term computed in a stable form (log-sigmoid and ``expm1``). This is exact
    where PixelCNN++ needs its mid-bin density fallback: a bin far in a tail gets
    its true (tiny) log-mass instead of ``log(0)``. Log-scales are clamped to
    ``[-7, 7]``.

    Args:
        x: Long values, broadcastable with ``mean``.
        mean: Component means on the $[-1, 1]$ scale.
        log_scale: Component log-scales.
        num_values: K.

    Returns:
        The log-masses, shaped like the broadcast of the inputs.
    """
    half = 1.0 / (num_values - 1)
    log_scale = log_scale.clamp(MIN_LOG_SCALE, MAX_LOG_SCALE)
    inv_scale = torch.exp(-log_scale)
    centre = scale_to_unit_interval(x, num_values, mean.dtype)
    upper = (centre + half - mean) * inv_scale
    lower = (centre - half - mean) * inv_scale
    first = x == 0
    last = x == num_values - 1
    inf = torch.tensor(math.inf, dtype=mean.dtype, device=mean.device)
    upper = torch.where(last, inf, upper)
    lower = torch.where(first, -inf, lower)
    width = torch.where(first | last, inf, 2.0 * half * inv_scale)
    return log_sigmoid(upper) + log_sigmoid(-lower) + torch.log(-torch.expm1(-width))


def _mixture_log_prob(
    x: torch.Tensor,
    logits: torch.Tensor,
    means: torch.Tensor,
    log_scales: torch.Tensor,
    num_values: int,
) -> torch.Tensor:
    """Log-mass of long values ``x`` ``(...)`` under mixtures with parameters ``(..., M)``."""
    component = discretized_logistic_log_prob(x[..., None], means, log_scales, num_values)
    return torch.logsumexp(F.log_softmax(logits, dim=-1) + component, dim=-1)


def _discretized_draw(
    mean: torch.Tensor, log_scale: torch.Tensor, u: torch.Tensor, num_values: int
) -> torch.Tensor:
    """Bins of logistic draws ``mean + s * logit(u)`` (inverse CDF), as long values."""
    scale = log_scale.clamp(MIN_LOG_SCALE, MAX_LOG_SCALE).exp()
    continuous = mean + scale * (torch.log(u) - torch.log1p(-u))
    # Bin k covers [c_k - h, c_k + h) with c_k = -1 + 2hk; the edge bins absorb the tails.
    half = 1.0 / (num_values - 1)
    bins = torch.floor((continuous + 1.0 + half) / (2.0 * half))
    return bins.clamp(0, num_values - 1).long()


class DiscretizedLogisticMixture(Distribution):
    r"""A mixture of M logistics discretized to the values ``0..K-1``, as a torch Distribution.

    The distribution the [`LogisticMixtureHead`][densitykit.heads.LogisticMixtureHead]
    hands back: $p(k) = \sum_m \pi_m P_m(k)$ with $\pi = \mathrm{softmax}$ of the
    ``logits`` and $P_m$ the mass of bin $k$ under the logistic of mean $\mu_m$ (on the
    $[-1, 1]$ scale) and log-scale $\log s_m$ (see
    [`discretized_logistic_log_prob`][densitykit.heads.logistic_mixture.discretized_logistic_log_prob]).
    The last dimension of the parameters indexes the components; the rest is the batch
    shape. With ``validate_args`` (the torch default) ``log_prob`` refuses values
    outside ``support``.

    Args:
        logits: Mixture logits ``(..., M)``.
        means: Component means ``(..., M)``.
        log_scales: Component log-scales ``(..., M)`` (clamped to ``[-7, 7]``).
        num_values: K, at least 2.
        validate_args: Check parameters and values, as in ``torch.distributions``.

    Example:
        >>> mixture = DiscretizedLogisticMixture(
        ...     torch.zeros(2), torch.tensor([-0.5, 0.5]), torch.full((2,), -2.0), num_values=5)
        >>> mixture.support
        IntegerInterval(lower_bound=0, upper_bound=4)
        >>> round(float(mixture.log_prob(torch.arange(5)).exp().sum()), 6)
        1.0
        >>> mixture.sample((3,)).shape
        torch.Size([3])
        >>> mixture.log_prob(torch.tensor(5))
        Traceback (most recent call last):
        ...
        ValueError: Expected value argument ... to be within the support ...
    """

    arg_constraints = {  # noqa: RUF012 - the torch.distributions convention
        "logits": constraints.real_vector,
        "means": constraints.real_vector,
        "log_scales": constraints.real_vector,
    }

    def __init__(
        self,
        logits: torch.Tensor,
        means: torch.Tensor,
        log_scales: torch.Tensor,
        num_values: int,
        validate_args: bool | None = None,
    ) -> None:
        self.num_values = check_int(num_values, "num_values", minimum=2)
        self.logits, self.means, self.log_scales = torch.broadcast_tensors(
            logits, means, log_scales
        )
        super().__init__(batch_shape=self.logits.shape[:-1], validate_args=validate_args)

    @constraints.dependent_property(is_discrete=True, event_dim=0)
    def support(self) -> constraints.Constraint:
        """``integer_interval(0, num_values - 1)``."""
        return constraints.integer_interval(0, self.num_values - 1)

    @property
    def num_components(self) -> int:
        """M."""
        return self.logits.shape[-1]

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        """Log-mass of ``value`` (broadcastable with the batch shape), in nats."""
        if self._validate_args:
            self._validate_sample(value)
        value, logits = torch.broadcast_tensors(value, self.logits[..., 0])[0], self.logits
        shape = value.shape
        expand = (*shape, self.num_components)
        return _mixture_log_prob(
            value.long(),
            logits.expand(expand),
            self.means.expand(expand),
            self.log_scales.expand(expand),
            self.num_values,
        )

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        """Long values of shape ``sample_shape + batch_shape`` (no graph is built)."""
        shape = self._extended_shape(torch.Size(sample_shape))
        with torch.no_grad():
            component = Categorical(logits=self.logits).sample(sample_shape)[..., None]
            expand = (*shape, self.num_components)
            mean = self.means.expand(expand).gather(-1, component)[..., 0]
            log_scale = self.log_scales.expand(expand).gather(-1, component)[..., 0]
            dtype = mean.dtype
            u = torch.rand(shape, dtype=dtype, device=mean.device)
            u = u.clamp(torch.finfo(dtype).tiny, 1.0 - torch.finfo(dtype).eps)
            return _discretized_draw(mean, log_scale, u, self.num_values)


@register("logistic-mixture")
class LogisticMixtureHead(Head):
    r"""A mixture of M discretized logistics per variable over ordinal values 0..K-1.

    $$p(x = k) = \sum_{m=1}^M \pi_m \left[\sigma\!\left(\tfrac{c_k + h - \mu_m}{s_m}\right)
    - \sigma\!\left(\tfrac{c_k - h - \mu_m}{s_m}\right)\right]$$

    with the edge bins extended to $\pm\infty$ (see
    [`discretized_logistic_log_prob`][densitykit.heads.logistic_mixture.discretized_logistic_log_prob]),
    $\pi = \mathrm{softmax}$ of M logits (combined by log-sum-exp). Parameter layout
    per variable ($P = 3M$): ``[logits (M), means (M), log-scales (M)]``. Means start
    spread evenly over $[-1, 1]$ (a fixed offset added to the network output) so the
    components begin distinct. Inputs are fed back as one scalar in $[-1, 1]$, or
    one-hot with ``one_hot=True``.

    Args:
        dim: The number of variables D.
        num_values: Values per variable K.
        num_components: Mixture components M.
        one_hot: Feed inputs back one-hot instead of as a scalar.

    Example:
        >>> head = LogisticMixtureHead(dim=1, num_values=8, num_components=2)
        >>> params = torch.zeros(1, 1, head.params_per_variable)
        >>> values = torch.arange(8)[:, None]
        >>> float(head.log_prob(params.expand(8, 1, 6), values).exp().sum())  # doctest: +ELLIPSIS
        1.0...
    """

    def __init__(
        self, dim: int, num_values: int, num_components: int = 4, one_hot: bool = False
    ) -> None:
        super().__init__(dim, num_values)
        self.num_components = check_positive_int(num_components, "num_components")
        self.one_hot = bool(one_hot)
        self.params_per_variable = 3 * num_components
        self.input_width = num_values if self.one_hot else 1
        spread = torch.linspace(-1.0, 1.0, num_components + 2)[1:-1]
        self.register_buffer("mean_offset", spread, persistent=False)
        self.log_scale_offset = math.log(1.0 / num_components)

    def encode(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return encode_values(x, self.num_values, dtype, one_hot=self.one_hot)

    def _split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        params = float32_at_least(params)
        logits, means, log_scales = params.split(self.num_components, dim=-1)
        return (
            logits,
            means + self.mean_offset.to(params.dtype),
            log_scales + self.log_scale_offset,
        )

    def _log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logits, means, log_scales = self._split(params)
        return _mixture_log_prob(x, logits, means, log_scales, self.num_values)

    def distribution(self, params: torch.Tensor) -> DiscretizedLogisticMixture:
        """The [`DiscretizedLogisticMixture`][densitykit.heads.DiscretizedLogisticMixture]
        of parameters ``(..., 3M)`` (batch ``(...)``), offsets applied."""
        return DiscretizedLogisticMixture(*self._split(params), num_values=self.num_values)

    uniforms_per_sample = 2

    def sample(
        self, params: torch.Tensor, variable: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return self.sample_by_uniforms(params, generator)

    def sample_from_uniforms(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The component from ``u[0]``, then the value from ``u[1]``."""
        logits, means, log_scales = self._split(params)
        rows = torch.arange(params.shape[0], device=params.device)
        component = inverse_cdf(F.softmax(logits, dim=-1), u[0])
        return _discretized_draw(
            means[rows, component], log_scales[rows, component], u[1], self.num_values
        )

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, num_components={self.num_components}, one_hot={self.one_hot}"
        )
