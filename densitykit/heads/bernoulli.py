"""Bernoulli head: binary variables with logits."""

from __future__ import annotations

import torch
from torch.distributions import constraints

from densitykit.heads.base import Head, float32_at_least
from densitykit.heads.registry import register
from densitykit.numerics import bernoulli_log_prob

__all__ = ["BernoulliHead"]


@register("bernoulli")
class BernoulliHead(Head):
    r"""Binary {0, 1} variables with one logit per variable.

    For a logit $\ell$,

    $\log p(x=1) = \log\sigma(\ell)$ and $\log p(x=0) = \log\sigma(-\ell)$, computed
    with the stable log-sigmoid. Inputs are fed back as the values 0/1.

    Args:
        dim: The number of variables D.
        num_values: Must be 2 (the default).

    Example:
        >>> head = BernoulliHead(dim=2)
        >>> head.log_prob(torch.zeros(1, 2, 1), torch.tensor([[0, 1]])).exp()
        tensor([[0.5000, 0.5000]])
        >>> head.support
        Boolean()
    """

    support = constraints.boolean

    def __init__(self, dim: int, num_values: int = 2) -> None:
        if num_values != 2:
            raise ValueError(f"the bernoulli head models 2 values, got num_values={num_values}")
        super().__init__(dim, num_values)
        self.params_per_variable = 1
        self.input_width = 1

    def encode(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return x.to(dtype)

    def _log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        # log sigma(l) if x = 1, log sigma(-l) if x = 0.
        return bernoulli_log_prob(float32_at_least(params[..., 0]), x)

    uniforms_per_sample = 1

    def sample(
        self, params: torch.Tensor, variable: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return self.sample_by_uniforms(params, generator)

    def sample_from_uniforms(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return (u[0] < torch.sigmoid(float32_at_least(params[:, 0]))).long()

    def encode_into(self, values: torch.Tensor, out: torch.Tensor) -> None:
        out[0].copy_(values)

    def distribution(self, params: torch.Tensor) -> torch.distributions.Bernoulli:
        """The ``torch.distributions.Bernoulli`` of parameters ``(..., 1)`` (batch ``(...)``)."""
        return torch.distributions.Bernoulli(logits=float32_at_least(params[..., 0]))
