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
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["log_mean_exp", "log_sigmoid", "per_dimension"]

# Low-precision dtypes whose CPU log-sigmoid is computed in float64 (see log_sigmoid).
_WIDENED = (torch.float32, torch.float16, torch.bfloat16)


class _WideLogSigmoid(torch.autograd.Function):
    """log-sigmoid computed in float64 and rounded back; derivative ``sigmoid(-t)``."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(t)
        return F.logsigmoid(t.double()).to(t.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (t,) = ctx.saved_tensors
        return grad * torch.sigmoid(-t)


def log_sigmoid(t: torch.Tensor) -> torch.Tensor:
    r"""$\log \sigma(t) = -\log(1 + e^{-t})$, element-wise, stable for every $t$.

    The same values as ``torch.nn.functional.logsigmoid`` up to float rounding (its
    float64 values rounded to ``t``'s dtype) and the same gradient, $\sigma(-t)$. On
    the CPU, a float32 (or half) ``t`` is computed in float64: PyTorch's float32 CPU
    kernel runs its ``log1p`` without vector instructions and took twice as long as
    the float64 one, with its conversions, on a 2-core AVX-512 CPU (torch 2.14; the
    Bernoulli head's log-likelihood, a tenth of a training step, rests on it).
    Elsewhere, and for float64, it is ``F.logsigmoid``.

    Example:
        >>> log_sigmoid(torch.tensor([-200.0, 0.0, 30.0]))
        tensor([-2.0000e+02, -6.9315e-01, -9.3576e-14])
    """
    if t.device.type == "cpu" and t.dtype in _WIDENED:
        return _WideLogSigmoid.apply(t)
    return F.logsigmoid(t)


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
