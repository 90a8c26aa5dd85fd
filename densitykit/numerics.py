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

__all__ = ["bernoulli_log_prob", "log_mean_exp", "log_sigmoid", "marginal_moments", "per_dimension"]

# Dtypes whose CPU log-sigmoid takes the fast path (see log_sigmoid).
_FAST = (torch.float32, torch.float16, torch.bfloat16)


def _log_sigmoid_fast(t: torch.Tensor) -> torch.Tensor:
    """``min(t, 0) + log(sigmoid(|t|))`` in float32 (see ``log_sigmoid``), no graph."""
    wide = t.float()
    return torch.sigmoid(wide.abs()).log_().add_(wide.clamp(max=0)).to(t.dtype)


class _FastLogSigmoid(torch.autograd.Function):
    """log-sigmoid as ``min(t, 0) + log(sigmoid(|t|))`` in float32; derivative ``sigmoid(-t)``."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(t)
        return _log_sigmoid_fast(t)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        (t,) = ctx.saved_tensors
        return grad * torch.sigmoid(-t)


def log_sigmoid(t: torch.Tensor) -> torch.Tensor:
    r"""$\log \sigma(t) = -\log(1 + e^{-t})$, element-wise, stable for every $t$.

    On the CPU, a float32 (or half, computed in float32) ``t`` takes a fast path:
    $\min(t, 0) + \log \sigma(|t|)$, where $\sigma(|t|) \in [\tfrac12, 1)$, so the
    logarithm never sees an underflow: vectorized element-wise operations only, where
    PyTorch's own float32 CPU kernel runs its ``log1p`` without vector instructions
    (torch 2.14; the effect on a training step and a likelihood is in
    ``benchmarks/throughput.py``). Its absolute error stays within about one float32
    rounding of 1
    (5.4e-7 at most over $t \in [-100, 100]$, against 4.8e-7 for torch's kernel); an
    absolute error in $\log p$ is a relative error in $p$, so a probability keeps
    float32's relative precision, while a log-probability within about 1e-7 of 0
    (a value all but certain) is not resolved further. The gradient is
    $\sigma(-t)$, as torch's. Elsewhere, and for float64, it is ``F.logsigmoid``.

    Example:
        >>> log_sigmoid(torch.tensor([-200.0, 0.0, 3.0]))
        tensor([-2.0000e+02, -6.9315e-01, -4.8587e-02])
    """
    if t.device.type == "cpu" and t.dtype in _FAST:
        return _FastLogSigmoid.apply(t)
    return F.logsigmoid(t)


class _BernoulliLogProb(torch.autograd.Function):
    """``log_sigmoid(l)`` where ``x`` is 1 and ``log_sigmoid(-l)`` where it is 0, in one
    node; the derivative in ``l`` is ``x - sigmoid(l)``."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits, values)
        # (2x - 1) l exactly, as -l + 2 l x: one fused element-wise op (not torch.where).
        return _log_sigmoid_fast(torch.addcmul(logits.neg(), logits, values, value=2))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, values = ctx.saved_tensors
        return grad * (values - torch.sigmoid(logits)), None


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    r"""$\log p(x)$ of Bernoulli variables with ``logits``, element-wise, for ``x`` in {0, 1}.

    $\log \sigma(\ell)$ where $x = 1$ and $\log \sigma(-\ell)$ where $x = 0$, as
    [`log_sigmoid`][densitykit.numerics.log_sigmoid] computes them (the same values and
    accuracy); on the CPU in float32 as one autograd node whose derivative is
    $x - \sigma(\ell)$.

    Args:
        logits: Logits of any shape.
        x: Values 0 or 1 (any dtype) of the same shape.

    Example:
        >>> bernoulli_log_prob(torch.tensor([0.0, 2.0]), torch.tensor([1, 0])).exp()
        tensor([0.5000, 0.1192])
    """
    if logits.device.type == "cpu" and logits.dtype in _FAST:
        return _BernoulliLogProb.apply(logits, x.to(logits.dtype))
    return log_sigmoid(logits * (x.to(logits.dtype) * 2 - 1))


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


def marginal_moments(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each variable's mean and standard deviation over ``values`` ``(N, D)``, computed
    in float64 (float32 ``(D,)`` each).

    Example:
        >>> [t.tolist() for t in marginal_moments(torch.tensor([[0.0, 10.0], [2.0, 14.0]]))]
        [[1.0, 12.0], [1.0, 2.0]]

    Raises:
        ValueError: If ``values`` is not ``(N, D)`` with ``N >= 1`` finite rows.
    """
    if values.ndim != 2 or values.shape[0] < 1:
        raise ValueError(f"expected values of shape (N, D) with N >= 1, got {tuple(values.shape)}")
    values = values.detach().to(torch.float64)
    if not bool(torch.isfinite(values).all()):
        raise ValueError("expected finite values to start from, got NaN or inf")
    mean = values.mean(dim=0)
    std = values.std(dim=0, unbiased=False)
    return mean.float(), std.float()
