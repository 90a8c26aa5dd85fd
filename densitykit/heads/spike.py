r"""A head over real values with a spike: a point mass at one value plus a density.

Zero-inflated data (a rainfall, an amount spent, a count of events measured as a
real) put a positive probability on one exact value and spread the rest. The
``spike`` head models variable $d$ as

$$p(x_d \mid x_{<d}) = \pi_d\,\delta_V(x_d) + (1 - \pi_d)\, f_d(x_d),
\qquad \pi_d = \sigma(\ell_d),$$

with $f_d$ a Gaussian mixture (a Gaussian for one component) over the reals. Its
``log_prob`` is a log-mass at $x_d = V$ exactly ($\log \pi_d$) and a log-density
elsewhere ($\log(1 - \pi_d) + \log f_d(x_d)$): the measure is the point mass plus
Lebesgue measure, so the total mass is $\pi_d + (1 - \pi_d)\int f_d = 1$ (the
single point $V$ carries no Lebesgue mass, so $f_d$ there does not count).
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch.distributions import Distribution, constraints

from densitykit.checks import check_positive_int
from densitykit.heads.base import Head, float32_at_least
from densitykit.heads.gaussian import GaussianHead, GaussianMixtureHead
from densitykit.heads.registry import register

__all__ = ["SpikeAndSlab", "SpikeHead", "check_spike_value"]


def check_spike_value(value: object) -> float:
    """The spike's value as a float; refuses a non-number, NaN and infinity.

    Raises:
        TypeError: If ``value`` is not a real number.
        ValueError: If it is NaN or infinite.

    Example:
        >>> check_spike_value(0)
        0.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"the spike value must be a real number, got {type(value).__name__}")
    if not math.isfinite(value):
        raise ValueError(f"the spike value must be finite, got {value}")
    return float(value)


def slab_head(
    dim: int, num_components: int, min_scale: float
) -> GaussianHead | GaussianMixtureHead:
    """The density part: a ``GaussianHead`` for one component, else a ``GaussianMixtureHead``."""
    num_components = check_positive_int(num_components, "num_components")
    if num_components == 1:
        return GaussianHead(dim, min_scale=min_scale)
    return GaussianMixtureHead(dim, num_components=num_components, min_scale=min_scale)


class SpikeAndSlab(Distribution):
    r"""$\pi\,\delta_V + (1 - \pi)\,f$ as a ``torch.distributions.Distribution``.

    ``log_prob`` is $\log \pi$ at exactly $V$ and $\log(1-\pi) + \log f(x)$
    elsewhere (a mass and a density, as the head's). ``mean`` and ``variance`` are
    the mixture's: $m = \pi V + (1-\pi)\mu_f$ and
    $\pi V^2 + (1-\pi)(\sigma_f^2 + \mu_f^2) - m^2$.

    Args:
        spike_logits: $\ell$ with $\pi = \sigma(\ell)$, of the batch shape.
        value: $V$.
        slab: The density $f$, a distribution over the reals of the same batch shape
            with ``mean`` and ``variance``.

    Example:
        >>> from torch.distributions import Normal
        >>> dist = SpikeAndSlab(torch.tensor([0.0]), 1.0, Normal(torch.zeros(1), torch.ones(1)))
        >>> dist.mean, dist.log_prob(torch.tensor([1.0])).exp()
        (tensor([0.5000]), tensor([0.5000]))
    """

    arg_constraints: ClassVar[dict[str, constraints.Constraint]] = {
        "spike_logits": constraints.real
    }
    support = constraints.real

    def __init__(
        self,
        spike_logits: torch.Tensor,
        value: float,
        slab: Distribution,
        validate_args: bool | None = None,
    ) -> None:
        self.spike_logits = spike_logits
        self.value = check_spike_value(value)
        self.slab = slab
        super().__init__(spike_logits.shape, validate_args=validate_args)

    @property
    def spike_probs(self) -> torch.Tensor:
        """$\\pi$, the probability of exactly $V$."""
        return torch.sigmoid(self.spike_logits)

    @property
    def mean(self) -> torch.Tensor:
        probs = self.spike_probs
        return probs * self.value + (1 - probs) * self.slab.mean

    @property
    def variance(self) -> torch.Tensor:
        probs, slab = self.spike_probs, self.slab
        second = probs * self.value**2 + (1 - probs) * (slab.variance + slab.mean.square())
        return second - self.mean.square()

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        logits = self.spike_logits
        at_spike = value == value.new_tensor(self.value)
        density = F.logsigmoid(-logits) + self.slab.log_prob(value)
        return torch.where(at_spike, F.logsigmoid(logits), density)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> torch.Tensor:
        with torch.no_grad():
            shape = self._extended_shape(torch.Size(sample_shape))
            spike = torch.rand(shape, device=self.spike_logits.device) < self.spike_probs
            draws = self.slab.sample(torch.Size(sample_shape))
            return torch.where(spike, draws.new_tensor(self.value), draws)


@register("spike")
class SpikeHead(Head):
    r"""Real values with a point mass at ``value``: zero-inflated data.

    $p(x_d \mid x_{<d}) = \pi_d\,\delta_V(x_d) + (1 - \pi_d)\,f_d(x_d)$ with
    $\pi_d = \sigma(\ell_d)$ and $f_d$ the ``gaussian`` head's Gaussian (one component)
    or the ``gaussian-mixture`` head's mixture of ``num_components`` (see the module
    docstring for what ``log_prob`` returns). Parameter layout per variable:
    ``[spike logit, the density's parameters]``, so $P = 3$ for one component and
    $1 + 3M$ for $M$. Values are ``float32`` (the spike compared exactly, in the
    values' dtype), fed back as themselves (``input_width = 1``); ``num_values`` is 0.
    Sampling takes one uniform for the spike, then the density's own uniforms, so the
    fast sampler draws exactly what the reference sampler draws.

    Args:
        dim: The number of variables D.
        num_values: Must be 0 (real values have no finite number).
        value: The spike's value $V$ (in model units: after any standardisation).
        num_components: Components $M$ of the density (1: a Gaussian).
        min_scale: The smallest standard deviation of a component, $s_{\min} > 0$.

    Raises:
        TypeError, ValueError: On a bad ``value``, ``num_components`` or ``min_scale``.

    Example:
        >>> head = SpikeHead(dim=1, value=0.0)
        >>> params = torch.zeros(2, 1, head.params_per_variable)
        >>> head.log_prob(params, torch.tensor([[0.0], [1.0]])).exp().flatten()
        tensor([0.5000, 0.1018])
        >>> head.distribution(params).mean.flatten()
        tensor([0., 0.])
    """

    value_dtype = torch.float32
    support = constraints.real

    def __init__(
        self,
        dim: int,
        num_values: int = 0,
        value: float = 0.0,
        num_components: int = 1,
        min_scale: float = 1e-3,
    ) -> None:
        super().__init__(dim, num_values)
        self.value = check_spike_value(value)
        self.slab = slab_head(dim, num_components, min_scale)
        self.num_components = num_components
        self.params_per_variable = 1 + self.slab.params_per_variable
        self.input_width = 1
        self.uniforms_per_sample = 1 + self.slab.uniforms_per_sample

    def encode(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """The value itself is the backbone's input: ``(B, D)`` values to ``(B, D)``."""
        return x.to(dtype)

    def _log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        params = float32_at_least(params)
        logits = params[..., 0]
        density = self.slab._log_prob(params[..., 1 : self.params_per_variable], x)
        at_spike = x == x.new_tensor(self.value)
        return torch.where(at_spike, F.logsigmoid(logits), F.logsigmoid(-logits) + density)

    def distribution(self, params: torch.Tensor) -> SpikeAndSlab:
        """The [`SpikeAndSlab`][densitykit.heads.spike.SpikeAndSlab] of parameters
        ``(..., P)`` (batch shape ``(...)``)."""
        params = float32_at_least(params)
        slab = self.slab.distribution(params[..., 1 : self.params_per_variable])
        return SpikeAndSlab(params[..., 0], self.value, slab)

    def sample(
        self, params: torch.Tensor, variable: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return self.sample_by_uniforms(params, generator)

    def sample_from_uniforms(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """$V$ where $u_0 < \\pi$, else the density's draw from the other uniforms."""
        params = float32_at_least(params)
        spike = u[0] < torch.sigmoid(params[:, 0]).to(u.dtype)
        draws = self.slab.sample_from_uniforms(params[:, 1 : self.params_per_variable], u[1:])
        return torch.where(spike, draws.new_tensor(self.value), draws)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, value={self.value:g}, num_components={self.num_components}"
