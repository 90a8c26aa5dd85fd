r"""A densitykit plug-in: a binomial head and a column-major mask builder.

Nothing here is part of densitykit: the file registers two new names, and from
then on they work wherever a built-in name does (``create_model``, the CLI, run
folders and checkpoints). Load it with ``--plugin`` on the command line:

    densitykit heads --plugin examples/binomial_plugin.py
    densitykit fit --plugin examples/binomial_plugin.py --head binomial --data 1d-gaussian
    densitykit fit --plugin examples/binomial_plugin.py --masks column-major --data shapes \
        --hidden-sizes 500

or from Python with a plain import (or ``densitykit.plugins.import_plugins``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

import densitykit as dk
from densitykit.masks import Connectivity, hidden_degrees

# (The "--8<--" comments mark the parts that docs/extending.md shows.)


# --8<-- [start:head]
@dk.heads.register("binomial")
class BinomialHead(dk.Head):
    r"""Ordinal values 0..K-1 as a binomial count, one logit per variable.

    Each variable is Binomial$(n, \pi)$ with $n = K - 1$ and $\pi = \sigma(\ell)$ for
    its logit $\ell$:

    $$\log p(x = k) = \log\binom{n}{k} + k \log\sigma(\ell) + (n - k)\log\sigma(-\ell).$$

    One parameter per variable whatever $K$ is, and a unimodal shape: a good fit
    for counts and for bell-shaped ordinal data, a poor one for anything bimodal.

    Args:
        dim: The number of variables D.
        num_values: Values per variable K (the count runs from 0 to K - 1).
    """

    def __init__(self, dim: int, num_values: int) -> None:
        super().__init__(dim, num_values)
        self.params_per_variable = 1  # the backbone gives one logit per variable
        self.input_width = 1  # each value is fed back as one scalar
        counts = torch.arange(num_values, dtype=torch.float64)
        n = torch.tensor(num_values - 1, dtype=torch.float64)
        log_binomial = torch.lgamma(n + 1) - torch.lgamma(counts + 1) - torch.lgamma(n - counts + 1)
        self.register_buffer("log_binomial", log_binomial.float(), persistent=False)

    def encode(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Feed values back as scalars in $[-1, 1]$, one per variable."""
        return x.to(dtype) * (2.0 / (self.num_values - 1)) - 1.0

    def _log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Per-variable log-probabilities ``(B, D)`` of values ``x`` given logits ``(B, D, 1)``."""
        logits = params[..., 0].float()
        counts = x.to(logits.dtype)
        n = self.num_values - 1
        return (
            self.log_binomial[x]
            + counts * F.logsigmoid(logits)
            + (n - counts) * F.logsigmoid(-logits)
        )

    def sample(
        self, params: torch.Tensor, variable: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Draw one variable for each row of logits ``(N, 1)``, by inverting the CDF."""
        logits = params[:, 0].float()
        values = torch.arange(self.num_values, device=params.device)
        n = self.num_values - 1
        log_probs = (
            self.log_binomial
            + values * F.logsigmoid(logits)[:, None]
            + (n - values) * F.logsigmoid(-logits)[:, None]
        )
        cdf = torch.softmax(log_probs, dim=-1).cumsum(-1)
        # Draw on the generator's device, so a CPU generator drives any model reproducibly.
        source = generator.device if generator is not None else params.device
        u = torch.rand(logits.shape[0], generator=generator, device=source).to(params.device)
        return (cdf < u[:, None]).sum(-1).clamp(max=n)


# --8<-- [end:head]


# --8<-- [start:masks]
@dk.masks.register("column-major")
def column_major(
    dim: int,
    hidden_sizes: Sequence[int] = (),
    *,
    num_masks: int = 1,
    seed: int | None = 0,
    spread: str = "even",
) -> list[Connectivity]:
    """Square images read column by column (top to bottom, then left to right).

    The built-in ``natural`` ordering reads images row by row; this one transposes
    the raster. Hidden degrees are spread evenly by default, so a layer of at least
    ``D - 1`` units connects every pixel to all the pixels before it. Several masks
    share the ordering and differ in hidden connectivity.

    Args:
        dim: The number of variables D, a perfect square (an image's pixels).
        hidden_sizes: Units per hidden layer.
        num_masks: How many masks to build.
        seed: Seed of the hidden degrees.
        spread: ``"even"`` or ``"random"`` hidden degrees (see ``hidden_degrees``).

    Returns:
        One [`Connectivity`][densitykit.masks.Connectivity] per mask.

    Raises:
        ValueError: If ``dim`` is not a perfect square.
    """
    side = math.isqrt(dim)
    if side * side != dim:
        raise ValueError(f"column-major needs a square image, got dim={dim} (not a square)")
    ordering = torch.arange(dim).reshape(side, side).t().flatten()
    generator = torch.Generator().manual_seed(0 if seed is None else seed)
    connectivities = [
        Connectivity.from_ordering(
            ordering, hidden_degrees(dim, hidden_sizes, generator=generator, spread=spread)
        )
        for _ in range(num_masks)
    ]
    return connectivities  # the MADE warns if a layer is too narrow to connect them


# --8<-- [end:masks]
