"""The interface every output distribution ("head") implements."""

from __future__ import annotations

import abc

import torch
from torch import nn

__all__ = ["Head", "scale_to_unit_interval", "uniform"]


def uniform(
    shape: tuple[int, ...],
    generator: torch.Generator | None,
    *,
    device: torch.device,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Uniform draws in $(0, 1)$ from ``generator``, placed on ``device``.

    The draw happens on the generator's own device (so a CPU generator drives a
    CUDA model reproducibly) and is then moved.
    """
    source = generator.device if generator is not None else device
    draws = torch.rand(shape, generator=generator, device=source, dtype=torch.float64)
    tiny = torch.finfo(dtype).tiny
    return draws.to(device=device, dtype=dtype).clamp(tiny, 1.0 - torch.finfo(dtype).eps)


def inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """Index drawn from each row of ``probs`` ``(N, K)`` given uniforms ``u`` ``(N,)``."""
    cdf = probs.cumsum(-1)
    return (cdf < u[:, None] * cdf[:, -1:]).sum(-1).clamp(max=probs.shape[-1] - 1)


def scale_to_unit_interval(x: torch.Tensor, num_values: int, dtype: torch.dtype) -> torch.Tensor:
    """Map values ``0..K-1`` to $[-1, 1]$ (bin centres of an ordinal variable)."""
    return x.to(dtype) * (2.0 / (num_values - 1)) - 1.0


class Head(nn.Module, abc.ABC):
    r"""An output distribution over one discrete variable given its parameters.

    A head tells the backbone how many parameters it needs per variable
    (``params_per_variable``), how values are fed back as inputs (``encode`` and
    ``input_width``), how to score values (``log_prob``) and how to draw one
    variable (``sample``). Every head's support is ``0..num_values-1``.

    Subclasses set ``params_per_variable`` and ``input_width`` in ``__init__`` and
    implement ``encode``, ``log_prob`` and ``sample``. A head whose
    ``params_per_variable`` is 0 has parameters of its own and ignores the backbone
    (the histogram baseline); it should set ``autoregressive = False``.

    Args:
        dim: The number of variables D.
        num_values: Values per variable K (support ``0..K-1``), at least 2.
    """

    params_per_variable: int
    input_width: int
    autoregressive: bool = True

    def __init__(self, dim: int, num_values: int) -> None:
        super().__init__()
        if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
            raise ValueError(f"dim must be a positive integer, got {dim!r}")
        if not isinstance(num_values, int) or isinstance(num_values, bool) or num_values < 2:
            raise ValueError(f"num_values must be an integer >= 2, got {num_values!r}")
        self.dim = dim
        self.num_values = num_values

    @abc.abstractmethod
    def encode(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Turn values ``(B, D)`` into backbone inputs ``(B, D * input_width)``."""

    @abc.abstractmethod
    def log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-variable log-probabilities.

        Args:
            params: ``(B, D, P)`` parameters from the backbone.
            x: ``(B, D)`` long values in ``0..K-1`` (already validated).

        Returns:
            ``(B, D)`` log-probabilities in nats, in at least float32.
        """

    @abc.abstractmethod
    def sample(
        self, params: torch.Tensor, variable: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw variable ``variable`` for each row of ``params`` ``(N, P)``: ``(N,)`` long."""

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_values={self.num_values}"


def float32_at_least(params: torch.Tensor) -> torch.Tensor:
    """Upcast half-precision parameters so likelihood arithmetic runs in float32."""
    if params.dtype in (torch.float16, torch.bfloat16):
        return params.float()
    return params
