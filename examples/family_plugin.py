r"""A densitykit plug-in: a model family of its own, in one file.

Nothing here is part of densitykit. The file registers the family ``independent``:
every variable an independent categorical over ``0..K-1`` with its own learned
logits, $p(x) = \prod_i \mathrm{softmax}(\ell_i)_{x_i}$ (the baseline a model of
dependencies has to beat). From then on it goes wherever a built-in family goes:
``fit``, run folders, ``resume``, ``eval``, ``sample``, ``score`` and checkpoints.
Load it with ``--plugin``:

    densitykit families --plugin examples/family_plugin.py
    densitykit fit --plugin examples/family_plugin.py --family independent --data shapes \
        --out runs/independent
    densitykit eval runs/independent --plugin examples/family_plugin.py

A family answers the workflow's questions (``densitykit.family.DensityModel``): its
config, how to complete it from the data and count its weights, the likelihood of
a training step, exact likelihoods and samples. It offers none of the optional
queries (``capabilities`` is empty), so ``eval --observed`` and ``inpaint`` refuse it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

import densitykit as dk
from densitykit.family import FAMILIES, DataFacts, DensityModel


# --8<-- [start:family]
@dataclass(frozen=True)
class IndependentConfig:
    """What builds an independent model: D and K (filled in from the data)."""

    dim: int | None = None
    num_values: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IndependentConfig:
        unknown = sorted(set(data) - {"dim", "num_values"})
        if unknown:
            raise ValueError(f"unknown independent config keys {unknown}")
        return cls(**data)


@FAMILIES.register("independent")
class IndependentModel(DensityModel):
    """Independent categoricals, one learned distribution per variable."""

    family = "independent"
    config_class = IndependentConfig

    def __init__(self, config: IndependentConfig) -> None:
        super().__init__()
        self.config = config
        self.logits = nn.Parameter(torch.zeros(config.dim, config.num_values))

    @classmethod
    def complete_config(cls, config: IndependentConfig, data: DataFacts) -> IndependentConfig:
        if data.num_labels:
            raise dk.DensitykitError("the independent family does not condition on labels")
        return replace(config, dim=data.dim, num_values=data.num_values)

    @classmethod
    def parameter_count(cls, config: IndependentConfig) -> int:
        return config.dim * config.num_values

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def num_values(self) -> int:
        return self.config.num_values

    def check_values(self, x: torch.Tensor) -> None:
        if not isinstance(x, torch.Tensor) or x.dtype.is_floating_point:
            raise TypeError(f"x must be a tensor of integers, got {type(x).__name__}")
        if x.shape[-1:] != (self.dim,):
            raise ValueError(f"x must have shape (..., {self.dim}), got {tuple(x.shape)}")
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.num_values):
            raise ValueError(
                f"values must be in 0..{self.num_values - 1}, got {int(x.min())}..{int(x.max())}"
            )

    def log_prob(
        self,
        x: torch.Tensor,
        *,
        validate: bool | None = None,
        context: torch.Tensor | None = None,
        connectivities: Any = None,
    ) -> torch.Tensor:
        self.encode_context(context, x.shape[:-1])
        if validate is not False:
            self.check_values(x)
        log_probs = torch.log_softmax(self.logits, dim=-1)  # (D, K)
        index = x.to(self.logits.device, torch.long).unsqueeze(-1)
        picked = log_probs.expand(*x.shape, -1).gather(-1, index).squeeze(-1)
        return picked.sum(-1)

    def training_log_prob(
        self, x: torch.Tensor, draw: Any, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.log_prob(x, validate=False, context=context)

    @torch.no_grad()
    def sample(
        self,
        sample_shape: int | Sequence[int] = (),
        *,
        generator: torch.Generator | None = None,
        context: torch.Tensor | None = None,
        connectivities: Any = None,
    ) -> torch.Tensor:
        shape = (sample_shape,) if isinstance(sample_shape, int) else tuple(sample_shape)
        self.encode_context(context, shape)
        probs = torch.softmax(self.logits, dim=-1).cpu()
        count = math.prod(shape)
        draws = torch.multinomial(probs, count, replacement=True, generator=generator)
        return draws.t().reshape(*shape, self.dim).to(self.logits.device)


# --8<-- [end:family]
