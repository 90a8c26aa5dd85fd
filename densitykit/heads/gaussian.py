"""Heads over real values: a Gaussian, and a mixture of Gaussians, per variable."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.distributions import Categorical, MixtureSameFamily, Normal, constraints

from densitykit.checks import check_positive_int
from densitykit.heads.base import Head, float32_at_least, inverse_cdf
from densitykit.heads.registry import register
from densitykit.numerics import marginal_moments

__all__ = ["GaussianHead", "GaussianMixtureHead"]

_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)
_RAW_UNIT_SCALE = math.log(math.expm1(1.0))
"""The raw scale whose softplus is 1: a scale starts at ``min_scale + 1``."""


def _check_min_scale(min_scale: float) -> float:
    if isinstance(min_scale, bool) or not isinstance(min_scale, (int, float)):
        raise TypeError(f"min_scale must be a positive number, got {type(min_scale).__name__}")
    if not (math.isfinite(min_scale) and min_scale > 0):
        raise ValueError(f"min_scale must be a positive finite number, got {min_scale}")
    return float(min_scale)


def _inverse_softplus(y: torch.Tensor) -> torch.Tensor:
    """The ``r`` with ``softplus(r) = y`` for ``y > 0``: ``y + log(1 - exp(-y))``, stable
    for small and large ``y``."""
    return y + torch.log(-torch.expm1(-y))


def _normal_log_prob(x: torch.Tensor, mean: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    r"""$\log \mathcal{N}(x; \mu, s^2) = -\frac{1}{2}((x - \mu)/s)^2 - \log s
    - \frac{1}{2}\log 2\pi$."""
    return -0.5 * ((x - mean) / scale).square() - scale.log() - _HALF_LOG_TWO_PI


class _RealHead(Head):
    """What the two Gaussian heads share: real values fed back as themselves."""

    value_dtype = torch.float32
    support = constraints.real

    def __init__(self, dim: int, num_values: int, min_scale: float) -> None:
        super().__init__(dim, num_values)
        self.min_scale = _check_min_scale(min_scale)
        self.input_width = 1

    def encode(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The value itself is the backbone's input: ``(B, D)`` values to ``(B, D)``."""
        return x.to(dtype)

    def _scale(self, raw: torch.Tensor) -> torch.Tensor:
        return self.min_scale + F.softplus(raw)

    def _raw_scale(self, scale: torch.Tensor) -> torch.Tensor:
        """The raw scale whose ``_scale`` is ``scale`` (at least twice ``min_scale``)."""
        return _inverse_softplus(scale.clamp_min(2 * self.min_scale) - self.min_scale)

    def _marginals(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if values.ndim != 2 or values.shape[-1] != self.dim:
            raise ValueError(
                f"expected training values of shape (N, {self.dim}), got {tuple(values.shape)}"
            )
        return marginal_moments(values)


@register("gaussian")
class GaussianHead(_RealHead):
    r"""A Gaussian per variable over the reals: a mean and a scale from the backbone.

    $$p(x_d \mid x_{<d}) = \mathcal{N}(x_d;\ \mu_d,\ s_d^2), \qquad
    s_d = s_{\min} + \operatorname{softplus}(r_d)$$

    Parameter layout per variable ($P = 2$): ``[mean, raw scale]``. The softplus keeps
    the scale above ``min_scale`` with gradients that neither vanish nor explode (a
    clamped log-scale has no gradient below its bound). Values are ``float32`` and are
    fed back as themselves (``input_width = 1``); ``num_values`` is 0. Sampling is by
    the inverse CDF of one uniform per draw (``torch.special.ndtri``), so the fast
    sampler draws exactly what the reference sampler draws.

    Args:
        dim: The number of variables D.
        num_values: Must be 0 (real values have no finite number).
        min_scale: The smallest standard deviation $s_{\min} > 0$.

    Raises:
        ValueError: If ``num_values`` is not 0 or ``min_scale`` is not positive.

    Example:
        >>> head = GaussianHead(dim=2)
        >>> params = torch.zeros(3, 2, head.params_per_variable)
        >>> normal = head.distribution(params)
        >>> normal.batch_shape, round(float(normal.scale[0, 0]), 4)
        (torch.Size([3, 2]), 0.6941)
        >>> head.log_prob(params, torch.zeros(3, 2)).shape
        torch.Size([3, 2])
    """

    def __init__(self, dim: int, num_values: int = 0, min_scale: float = 1e-3) -> None:
        super().__init__(dim, num_values, min_scale)
        self.params_per_variable = 2

    def _split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        params = float32_at_least(params)
        return params[..., 0], self._scale(params[..., 1])

    def initial_bias(self) -> torch.Tensor:
        """``[0, raw scale of 1]``: a network starts near mean 0 and scale ``1 + min_scale``,
        as nflows and zuko start theirs (a softplus of 0 would start at 0.69, which on
        data of scale 3 to 4, such as MNIST in logit space, costs the first hundreds of
        steps)."""
        return torch.tensor([0.0, _RAW_UNIT_SCALE])

    def data_initial_bias(self, values: torch.Tensor) -> torch.Tensor:
        """``[mean, raw scale of the standard deviation]`` of each variable of ``values``
        ``(N, D)``: a network starts at the Gaussian fitted to each marginal.

        Raises:
            ValueError: If ``values`` is not ``(N, D)`` of finite values.

        Example:
            >>> head = GaussianHead(dim=2)
            >>> bias = head.data_initial_bias(torch.tensor([[0.0, 10.0], [2.0, 14.0]]))
            >>> normal = head.distribution(bias)
            >>> normal.mean.tolist(), [round(s, 4) for s in normal.stddev.tolist()]
            ([1.0, 12.0], [1.0, 2.0])
        """
        mean, std = self._marginals(values)
        return torch.stack([mean, self._raw_scale(std)], dim=-1)

    def distribution(self, params: torch.Tensor) -> Normal:
        """The ``Normal`` of parameters ``(..., 2)`` (batch shape ``(...)``)."""
        return Normal(*self._split(params))

    def _log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        mean, scale = self._split(params)
        return _normal_log_prob(x.to(mean.dtype), mean, scale)

    uniforms_per_sample = 1

    def sample(
        self, params: torch.Tensor, variable: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return self.sample_by_uniforms(params, generator)

    def sample_from_uniforms(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """$\\mu + s\\,\\Phi^{-1}(u_0)$."""
        mean, scale = self._split(params)
        return mean + scale * torch.special.ndtri(u[0].to(mean.dtype))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, min_scale={self.min_scale:g}"


@register("gaussian-mixture")
class GaussianMixtureHead(_RealHead):
    r"""A mixture of M Gaussians per variable over the reals: the MADE MoG.

    The MADE MoG of Papamakarios et al. (2017), "Masked Autoregressive Flow for
    Density Estimation":

    $$p(x_d \mid x_{<d}) = \sum_{m=1}^M \pi_{d,m}\,\mathcal{N}(x_d;\ \mu_{d,m},\ s_{d,m}^2),
    \qquad \pi_d = \operatorname{softmax}(\ell_d),\quad
    s_{d,m} = s_{\min} + \operatorname{softplus}(r_{d,m})$$

    combined by log-sum-exp. Parameter layout per variable ($P = 3M$):
    ``[logits (M), means (M), raw scales (M)]``. The means start spread evenly over
    $[-1, 1]$ (a fixed offset added to the network output) so the components begin
    distinct. Values are ``float32``, fed back as themselves; sampling takes two
    uniforms per draw: the component by the inverse CDF of the mixture weights, then
    the value by the inverse normal CDF.

    Args:
        dim: The number of variables D.
        num_values: Must be 0 (real values have no finite number).
        num_components: Mixture components M.
        min_scale: The smallest standard deviation of a component, $s_{\min} > 0$.

    Raises:
        ValueError: If ``num_values`` is not 0, ``num_components`` is not positive or
            ``min_scale`` is not positive.

    Example:
        >>> head = GaussianMixtureHead(dim=2, num_components=3)
        >>> head.params_per_variable
        9
        >>> mixture = head.distribution(torch.zeros(4, 2, 9))
        >>> mixture.batch_shape, mixture.mixture_distribution.probs.shape
        (torch.Size([4, 2]), torch.Size([4, 2, 3]))
    """

    def __init__(
        self, dim: int, num_values: int = 0, num_components: int = 5, min_scale: float = 1e-3
    ) -> None:
        super().__init__(dim, num_values, min_scale)
        self.num_components = check_positive_int(num_components, "num_components")
        self.params_per_variable = 3 * self.num_components
        # Computed on the CPU, then placed on the default device: a linspace on "meta"
        # (parameter_count builds heads there) would import torch._dynamo (about 1 s).
        spread = torch.linspace(-1.0, 1.0, self.num_components + 2, device="cpu")[1:-1]
        spread = spread.to(torch.empty(0).device)  # (torch.get_default_device needs 2.3)
        self.register_buffer("mean_offset", spread, persistent=False)

    def _split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        params = float32_at_least(params)
        logits, means, raw_scales = params.split(self.num_components, dim=-1)
        return logits, means + self.mean_offset.to(params.dtype), self._scale(raw_scales)

    def initial_bias(self) -> torch.Tensor:
        """Zero logits and means, and the raw scale of 1 for every component: a network
        starts near equal weights, the spread means and scales ``1 + min_scale``."""
        m = self.num_components
        return torch.cat([torch.zeros(2 * m), torch.full((m,), _RAW_UNIT_SCALE)])

    def data_initial_bias(self, values: torch.Tensor) -> torch.Tensor:
        r"""Each variable of ``values`` ``(N, D)`` starts with equal weights, its
        components' means spread over its mean $\pm$ 0.8 standard deviations (the fixed
        offsets, scaled) and their scales at its standard deviation.

        Raises:
            ValueError: If ``values`` is not ``(N, D)`` of finite values.

        Example:
            >>> head = GaussianMixtureHead(dim=1, num_components=3)
            >>> bias = head.data_initial_bias(torch.tensor([[0.0], [4.0]]))
            >>> [round(v, 2) for v in head._split(bias)[1][0].tolist()]
            [1.0, 2.0, 3.0]
        """
        mean, std = self._marginals(values)
        offset = self.mean_offset.to(device=mean.device, dtype=mean.dtype)
        m = self.num_components
        means = mean[:, None] + (std[:, None] - 1.0) * offset  # + offset in _split
        raw = self._raw_scale(std)[:, None].expand(-1, m)
        return torch.cat([torch.zeros_like(means), means, raw], dim=-1)

    def distribution(self, params: torch.Tensor) -> MixtureSameFamily:
        """The ``MixtureSameFamily(Categorical, Normal)`` of parameters ``(..., 3M)``
        (batch shape ``(...)``), offsets applied."""
        logits, means, scales = self._split(params)
        return MixtureSameFamily(Categorical(logits=logits), Normal(means, scales))

    def _log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        logits, means, scales = self._split(params)
        component = _normal_log_prob(x.to(means.dtype)[..., None], means, scales)
        return torch.logsumexp(F.log_softmax(logits, dim=-1) + component, dim=-1)

    uniforms_per_sample = 2

    def sample(
        self, params: torch.Tensor, variable: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return self.sample_by_uniforms(params, generator)

    def sample_from_uniforms(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """The component from ``u[0]``, then $\\mu_m + s_m\\,\\Phi^{-1}(u_1)$."""
        logits, means, scales = self._split(params)
        rows = torch.arange(params.shape[0], device=params.device)
        component = inverse_cdf(F.softmax(logits, dim=-1), u[0])
        noise = torch.special.ndtri(u[1].to(means.dtype))
        return means[rows, component] + scales[rows, component] * noise

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, num_components={self.num_components}, "
            f"min_scale={self.min_scale:g}"
        )
