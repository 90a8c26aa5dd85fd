r"""Numeric helpers shared by the model, the training loop and the run reports.

Example:
    >>> import torch
    >>> log_mean_exp(torch.log(torch.tensor([[0.2], [0.4]])), dim=0).exp()
    tensor([0.3000])
    >>> [round(v, 4) for v in per_dimension(2 * math.log(2), dim=2)]
    [0.6931, 1.0]
"""

from __future__ import annotations

import math

import torch

__all__ = ["log_mean_exp", "per_dimension"]


def log_mean_exp(values: torch.Tensor, dim: int = 0) -> torch.Tensor:
    r"""$\log \frac{1}{K} \sum_k e^{v_k}$ over ``dim``, computed stably (log-sum-exp).

    The log-likelihood of a uniform mixture of K models from each model's
    log-likelihoods (a model's mask ensemble).

    Args:
        values: Log-values; ``dim`` has the K terms.
        dim: The dimension averaged over (removed from the result).
    """
    return torch.logsumexp(values, dim=dim) - math.log(values.shape[dim])


def per_dimension(nats: float, dim: int) -> tuple[float, float]:
    """A negative log-likelihood per example, in nats, as (nats per dim, bits per dim).

    Args:
        nats: NLL of one example (nats).
        dim: The number of variables D of an example.
    """
    per_dim = nats / dim
    return per_dim, per_dim / math.log(2)
