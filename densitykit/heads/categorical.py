"""Categorical head: a softmax over K values per variable."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from densitykit.heads.base import Head, encode_values, float32_at_least, inverse_cdf
from densitykit.heads.registry import register

__all__ = ["CategoricalHead"]


@register("categorical")
class CategoricalHead(Head):
    r"""K unordered values per variable: a softmax over K logits, one-hot inputs.

    $p(x=k) = \mathrm{softmax}(\ell)_k$ for the K logits $\ell$ of the variable.

    Inputs are one-hot by default (``input_width = K``), or a single scalar in
    $[-1, 1]$ with ``one_hot=False``.

    Args:
        dim: The number of variables D.
        num_values: Values per variable K.
        one_hot: Feed inputs back one-hot (default) or as one scaled scalar.

    Example:
        >>> head = CategoricalHead(dim=1, num_values=3)
        >>> head.encode(torch.tensor([[2]]), torch.float32)
        tensor([[0., 0., 1.]])
    """

    def __init__(self, dim: int, num_values: int, one_hot: bool = True) -> None:
        super().__init__(dim, num_values)
        self.one_hot = bool(one_hot)
        self.params_per_variable = num_values
        self.input_width = num_values if self.one_hot else 1

    def encode(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return encode_values(x, self.num_values, dtype, one_hot=self.one_hot)

    def _log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(float32_at_least(params), dim=-1)
        return log_probs.gather(-1, x[..., None]).squeeze(-1)

    uniforms_per_sample = 1

    def sample(
        self, params: torch.Tensor, variable: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return self.sample_by_uniforms(params, generator)

    def sample_from_uniforms(self, params: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        return inverse_cdf(F.softmax(float32_at_least(params), dim=-1), u[0])

    def distribution(self, params: torch.Tensor) -> torch.distributions.Categorical:
        """The ``torch.distributions.Categorical`` of parameters ``(..., K)`` (batch ``(...)``)."""
        return torch.distributions.Categorical(logits=float32_at_least(params))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, one_hot={self.one_hot}"
