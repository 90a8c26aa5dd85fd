"""Hypothesis strategies for densitykit models: shapes, orderings, hidden sizes, heads."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from hypothesis import strategies as st

import densitykit as dk


def sharpen(model: dk.AutoregressiveModel, scale: float, seed: int) -> None:
    """Redraw every parameter large (seeded), so conditionals are peaked and depend on the past."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(
                torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype)
                * scale
                / math.sqrt(max(parameter.shape[-1], 1))
            )


def mask_options(name: str, dim: int, draw: st.DrawFn) -> dict[str, Any]:
    """Options a mask builder needs beyond dim/hidden sizes/seed/num_masks."""
    if name == "ordering":
        return {"ordering": draw(st.permutations(list(range(dim))))}
    return {}


@dataclass
class ModelSpec:
    """What a test needs to build a model with ``dk.create_model``."""

    head: str
    dim: int
    num_values: int
    hidden_sizes: tuple[int, ...]
    masks: str
    num_masks: int
    seed: int
    direct_connections: bool
    activation: str
    head_options: dict[str, Any] = field(default_factory=dict)
    mask_options: dict[str, Any] = field(default_factory=dict)

    def build(self, **extra: Any) -> dk.AutoregressiveModel:
        """The model; ``extra`` options of ``create_model`` (a context) are passed on."""
        return dk.create_model(
            self.head,
            self.dim,
            self.num_values,
            hidden_sizes=self.hidden_sizes,
            masks=self.masks,
            num_masks=self.num_masks,
            seed=self.seed,
            activation=self.activation,
            direct_connections=self.direct_connections,
            mask_options=self.mask_options,
            **extra,
            **self.head_options,
        )


AUTOREGRESSIVE_HEADS = ("bernoulli", "categorical", "logistic-mixture")


@st.composite
def head_choices(draw: st.DrawFn, heads: tuple[str, ...] = AUTOREGRESSIVE_HEADS) -> tuple:
    """A head name, K and head options (P > 1 and one-hot inputs included)."""
    head = draw(st.sampled_from(heads))
    if head == "bernoulli":
        return head, 2, {}
    if head == "categorical":
        return head, draw(st.integers(2, 4)), {"one_hot": draw(st.booleans())}
    if head == "logistic-mixture":
        return (
            head,
            draw(st.integers(2, 6)),
            {
                "num_components": draw(st.integers(1, 3)),
                "one_hot": draw(st.booleans()),
            },
        )
    return head, draw(st.integers(2, 4)), {}


@st.composite
def model_specs(
    draw: st.DrawFn,
    max_dim: int = 12,
    max_layers: int = 3,
    heads: tuple[str, ...] = AUTOREGRESSIVE_HEADS,
    min_width: int = 1,
    max_width: int = 20,
) -> ModelSpec:
    """Random MADE configurations, narrow layers (narrower than D) included."""
    dim = draw(st.integers(1, max_dim))
    hidden = tuple(draw(st.lists(st.integers(min_width, max_width), max_size=max_layers)))
    masks = draw(st.sampled_from(dk.masks.names()))
    head, num_values, head_options = draw(head_choices(heads))
    return ModelSpec(
        head=head,
        dim=dim,
        num_values=num_values,
        hidden_sizes=hidden,
        masks=masks,
        num_masks=draw(st.integers(1, 3)),
        seed=draw(st.integers(0, 2**16)),
        direct_connections=draw(st.booleans()),
        activation=draw(st.sampled_from(["relu", "tanh", "gelu"])),
        head_options=head_options,
        mask_options=mask_options(masks, dim, draw),
    )
