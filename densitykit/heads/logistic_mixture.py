"""Discretized logistic mixture head (PixelCNN++ style) over ordinal values."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from densitykit.heads.base import (
    Head,
    float32_at_least,
    inverse_cdf,
    scale_to_unit_interval,
    uniform,
)
from densitykit.heads.registry import register

__all__ = ["LogisticMixtureHead", "discretized_logistic_log_prob"]

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
    return F.logsigmoid(upper) + F.logsigmoid(-lower) + torch.log(-torch.expm1(-width))


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
        if (
            not isinstance(num_components, int)
            or isinstance(num_components, bool)
            or num_components < 1
        ):
            raise ValueError(f"num_components must be a positive integer, got {num_components!r}")
        self.num_components = num_components
        self.one_hot = bool(one_hot)
        self.params_per_variable = 3 * num_components
        self.input_width = num_values if self.one_hot else 1
        spread = torch.linspace(-1.0, 1.0, num_components + 2)[1:-1]
        self.register_buffer("mean_offset", spread, persistent=False)
        self.log_scale_offset = math.log(1.0 / num_components)

    def encode(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if self.one_hot:
            return F.one_hot(x, self.num_values).to(dtype).flatten(-2)
        return scale_to_unit_interval(x, self.num_values, dtype)

    def _split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        params = float32_at_least(params)
        logits, means, log_scales = params.split(self.num_components, dim=-1)
        return (
            logits,
            means + self.mean_offset.to(params.dtype),
            log_scales + self.log_scale_offset,
        )

    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logits, means, log_scales = self._split(params)
        component = discretized_logistic_log_prob(x[..., None], means, log_scales, self.num_values)
        return torch.logsumexp(F.log_softmax(logits, dim=-1) + component, dim=-1)

    def sample(
        self, params: torch.Tensor, variable: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        logits, means, log_scales = self._split(params)
        rows = torch.arange(params.shape[0], device=params.device)
        u_component = uniform(
            (params.shape[0],), generator, device=params.device, dtype=means.dtype
        )
        component = inverse_cdf(F.softmax(logits, dim=-1), u_component)
        u = uniform((params.shape[0],), generator, device=params.device, dtype=means.dtype)
        scale = log_scales[rows, component].clamp(MIN_LOG_SCALE, MAX_LOG_SCALE).exp()
        continuous = means[rows, component] + scale * (torch.log(u) - torch.log1p(-u))
        # Bin k covers [c_k - h, c_k + h) with c_k = -1 + 2hk; the edge bins absorb the tails.
        half = 1.0 / (self.num_values - 1)
        bins = torch.floor((continuous + 1.0 + half) / (2.0 * half))
        return bins.clamp(0, self.num_values - 1).long()

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, num_components={self.num_components}, one_hot={self.one_hot}"
        )
