"""Histogram head: the non-autoregressive baseline."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from densitykit.heads.base import Head, float32_at_least, inverse_cdf, uniform
from densitykit.heads.registry import register

__all__ = ["HistogramHead"]


@register("histogram")
class HistogramHead(Head):
    r"""Independent per-variable histograms: the non-autoregressive baseline.

    $p(x) = \prod_i \mathrm{softmax}(\theta_i)_{x_i}$.

    Each variable has its own K logits $\theta_i$, initialised to zero (the uniform
    distribution), and no dependence on any other variable; the head takes no
    parameters from a backbone (``params_per_variable = 0``). For ``D = 1`` this is
    exactly the histogram model $p(x) = \mathrm{softmax}(\theta)_x$. The
    [histogram family][densitykit.histogram] is this head's maths as a model (no MADE
    takes it).

    Args:
        dim: The number of variables D.
        num_values: Values per variable K.

    Example:
        >>> head = HistogramHead(dim=1, num_values=4)
        >>> head.log_prob(torch.empty(2, 1, 0), torch.tensor([[0], [3]])).exp()
        tensor([[0.2500],
                [0.2500]], grad_fn=<ExpBackward0>)
    """

    def __init__(self, dim: int, num_values: int) -> None:
        super().__init__(dim, num_values)
        self.params_per_variable = 0
        self.input_width = 1
        self.logits = nn.Parameter(torch.zeros(dim, num_values))

    def encode(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return x.to(dtype)

    def _log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(float32_at_least(self.logits), dim=-1)
        return log_probs[torch.arange(self.dim, device=x.device), x]

    def sample(
        self, params: torch.Tensor, variable: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        probs = F.softmax(self.logits[variable].detach(), dim=-1)
        u = uniform((params.shape[0],), generator, device=probs.device, dtype=probs.dtype)
        return inverse_cdf(probs.expand(params.shape[0], -1), u)

    def distribution(self, params: torch.Tensor) -> torch.distributions.Categorical:
        """The ``Categorical`` of the histograms, batch ``params.shape[:-1]`` (``(..., D)``).

        ``params`` (``(..., D, 0)``, as the model passes) only gives the batch shape.

        Example:
            >>> head = HistogramHead(dim=2, num_values=4)
            >>> head.distribution(torch.empty(3, 2, 0)).probs.shape
            torch.Size([3, 2, 4])
        """
        logits = float32_at_least(self.logits)
        return torch.distributions.Categorical(
            logits=logits.expand(*params.shape[:-1], self.num_values)
        )
