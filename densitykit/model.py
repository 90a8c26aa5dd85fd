r"""An autoregressive model: a MADE backbone composed with an output head.

$$\log p(x) = \sum_{t=1}^{D} \log p\big(x_{o_t} \mid x_{o_1}, \dots, x_{o_{t-1}}\big)$$

for the ordering $o$ of the active mask. A model with K masks is the uniform
mixture of the K autoregressive models:
$\log p(x) = \log \frac{1}{K}\sum_k p_k(x)$ (log-mean-exp), which is a density;
averaging the masks' logits is not, and is not offered.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from densitykit import masks as masks_module
from densitykit.heads import HEADS, Head
from densitykit.made import MADE
from densitykit.sampling import sample_fast, sample_reference

__all__ = ["AutoregressiveModel", "ModelConfig", "build_model", "create_model"]


@dataclass
class ModelConfig:
    """Everything needed to rebuild a model (saved as JSON beside the weights).

    Attributes:
        head: Registered head name.
        dim: Number of variables D.
        num_values: Values per variable K.
        hidden_sizes: Units per hidden layer of the MADE.
        masks: Registered mask-builder name.
        num_masks: Number of masks (orderings/connectivities) K.
        seed: Seed of the mask builder.
        activation: Hidden activation name.
        direct_connections: Masked input-to-output weights.
        head_options: Extra keyword options of the head (e.g. ``num_components``).
        mask_options: Extra keyword options of the mask builder (e.g. ``ordering``).
    """

    head: str
    dim: int
    num_values: int
    hidden_sizes: tuple[int, ...] = (128, 128)
    masks: str = "natural"
    num_masks: int = 1
    seed: int | None = 0
    activation: str = "relu"
    direct_connections: bool = False
    head_options: dict[str, Any] = field(default_factory=dict)
    mask_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        data = asdict(self)
        data["hidden_sizes"] = list(self.hidden_sizes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Rebuild from ``to_dict`` output; unknown keys raise ``ValueError``."""
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"unknown model config keys {unknown}; expected some of {sorted(known)}"
            )
        data = dict(data)
        if "hidden_sizes" in data:
            data["hidden_sizes"] = tuple(data["hidden_sizes"])
        return cls(**data)


class AutoregressiveModel(nn.Module):
    """A MADE backbone and a head, with exact likelihoods and ancestral sampling.

    Args:
        backbone: The [`MADE`][densitykit.made.MADE]; ``None`` for heads that take no
            parameters from a backbone (``head.params_per_variable == 0``).
        head: The output distribution.
        config: The config that built the model, if any (kept for checkpoints).

    Example:
        >>> from densitykit import masks, heads
        >>> head = heads.create("categorical", dim=3, num_values=4)
        >>> backbone = MADE(masks.create("random", dim=3, hidden_sizes=[16]),
        ...                 params_per_variable=head.params_per_variable,
        ...                 input_width=head.input_width)
        >>> model = AutoregressiveModel(backbone, head)
        >>> model.log_prob(torch.tensor([[0, 3, 1]])).shape
        torch.Size([1])
        >>> model.sample(5, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([5, 3])
    """

    def __init__(
        self, backbone: MADE | None, head: Head, config: ModelConfig | None = None
    ) -> None:
        super().__init__()
        if not isinstance(head, Head):
            raise TypeError(f"head must be a densitykit Head, got {type(head).__name__}")
        if head.params_per_variable == 0:
            if backbone is not None:
                raise ValueError(
                    f"{type(head).__name__} takes no parameters from a backbone; pass backbone=None"
                )
        else:
            if not isinstance(backbone, MADE):
                raise TypeError(
                    f"{type(head).__name__} needs a MADE backbone, got {type(backbone).__name__}"
                )
            expected = (head.dim, head.params_per_variable, head.input_width)
            actual = (backbone.dim, backbone.params_per_variable, backbone.input_width)
            if expected != actual:
                raise ValueError(
                    "backbone does not fit the head: expected (dim, params_per_variable, "
                    f"input_width) = {expected}, got {actual}"
                )
        self.backbone = backbone
        self.head = head
        self.config = config

    # -- properties ----------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """The number of variables D."""
        return self.head.dim

    @property
    def num_values(self) -> int:
        """Values per variable K."""
        return self.head.num_values

    @property
    def num_masks(self) -> int:
        """How many masks the mixture averages over (1 without a backbone)."""
        return self.backbone.num_masks if self.backbone is not None else 1

    @property
    def device(self) -> torch.device:
        """The device of the model's parameters."""
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """The floating dtype of the model's parameters."""
        return next(self.parameters()).dtype

    # -- validation ----------------------------------------------------------------------
    def validate(self, x: torch.Tensor) -> torch.Tensor:
        """Check ``x`` is ``(..., D)`` values in ``0..K-1`` and return it as long ``(B, D)``.

        Raises:
            TypeError: If ``x`` is not a tensor, or has a complex or non-numeric dtype.
            ValueError: On a wrong shape, NaN/inf, non-integer or out-of-support values.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of integer values, got {type(x).__name__}")
        if x.is_complex() or not (x.dtype == torch.bool or x.is_floating_point() or _is_integer(x)):
            raise TypeError(f"x must have an integer (or integral float) dtype, got {x.dtype}")
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(
                f"x must have shape (..., D) with D={self.dim} variables, got {tuple(x.shape)}"
            )
        if x.is_floating_point():
            if not bool(torch.isfinite(x).all()):
                raise ValueError("x contains NaN or infinite values; expected integers 0..K-1")
            if not bool((x == torch.round(x)).all()):
                raise ValueError("x contains non-integer values; expected integers 0..K-1")
        if x.numel():
            low, high = torch.aminmax(x.to(torch.uint8) if x.dtype == torch.bool else x)
            if low < 0 or high > self.num_values - 1:
                raise ValueError(
                    f"x values must lie in the support 0..{self.num_values - 1} of the "
                    f"{type(self.head).__name__}, got values in {int(low)}..{int(high)}"
                )
        return x.reshape(-1, self.dim).to(device=self.device, dtype=torch.long)

    def _check_mask(self, mask: int | None) -> int | None:
        if mask is None:
            return None
        if not isinstance(mask, int) or isinstance(mask, bool) or not 0 <= mask < self.num_masks:
            raise ValueError(
                f"mask must be None or an integer in 0..{self.num_masks - 1}, got {mask!r}"
            )
        return mask

    # -- likelihood ----------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, mask: int | None = None) -> torch.Tensor:
        """Log-likelihood of ``x`` in nats.

        Args:
            x: ``(..., D)`` integer values in ``0..K-1``.
            mask: ``None`` for the mixture over all masks (log-mean-exp), or one mask's
                index for that autoregressive model alone.

        Returns:
            ``(...)`` log-likelihoods, in at least float32.
        """
        batch_shape = x.shape[:-1] if isinstance(x, torch.Tensor) and x.ndim else ()
        mask = self._check_mask(mask)
        values = self.validate(x)
        return self._log_prob(values, mask).reshape(batch_shape)

    def _log_prob(self, x: torch.Tensor, mask: int | None) -> torch.Tensor:
        if self.backbone is None:
            return self.head.log_prob(
                x.new_empty(x.shape[0], self.dim, 0, dtype=self.dtype), x
            ).sum(-1)
        if mask is not None:
            return self._log_prob_mask(x, mask)
        if self.num_masks == 1:
            return self._log_prob_mask(x, 0)
        per_mask = self.log_prob_per_mask(x, validate=False)
        return torch.logsumexp(per_mask, dim=0) - math.log(self.num_masks)

    def _log_prob_mask(self, x: torch.Tensor, mask: int) -> torch.Tensor:
        assert self.backbone is not None  # internal invariant, not user input
        active = self.backbone.mask_index
        self.backbone.set_mask(mask)
        try:
            params = self.backbone(self.head.encode(x, self.dtype))
        finally:
            self.backbone.set_mask(active)
        return self.head.log_prob(params, x).sum(-1)

    def log_prob_per_mask(
        self,
        x: torch.Tensor,
        *,
        masks: Sequence[int] | None = None,
        validate: bool = True,
    ) -> torch.Tensor:
        """Log-likelihood of ``x`` ``(B, D)`` under each mask alone: ``(num_masks, B)``.

        Args:
            x: ``(B, D)`` values.
            masks: Which masks (all by default).
            validate: Check ``x`` first (skip only for already validated long tensors).
        """
        if validate:
            x = self.validate(x)
        indices = range(self.num_masks) if masks is None else [self._check_mask(k) for k in masks]
        return torch.stack([self._log_prob(x, k) for k in indices])

    def forward(self, x: torch.Tensor, mask: int | None = None) -> torch.Tensor:
        """Same as [`log_prob`][densitykit.model.AutoregressiveModel.log_prob]."""
        return self.log_prob(x, mask)

    # -- sampling ------------------------------------------------------------------------
    @torch.no_grad()
    def sample(
        self,
        num_samples: int,
        *,
        generator: torch.Generator | None = None,
        mask: int | None = None,
    ) -> torch.Tensor:
        """Exact ancestral samples ``(num_samples, D)`` (long) from the model.

        With several masks and ``mask=None``, each sample first draws its mask
        uniformly (the mixture that ``log_prob`` scores), then its variables in that
        mask's ordering.

        Args:
            num_samples: How many samples.
            generator: Random source (its device may differ from the model's).
            mask: Sample from one mask's model instead of the mixture.
        """
        if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 0:
            raise ValueError(f"num_samples must be a non-negative integer, got {num_samples!r}")
        mask = self._check_mask(mask)
        if mask is None and self.num_masks > 1:
            source = generator.device if generator is not None else self.device
            choice = torch.randint(
                self.num_masks, (num_samples,), generator=generator, device=source
            ).to(self.device)
        else:
            choice = torch.full((num_samples,), mask or 0, device=self.device, dtype=torch.long)
        out = torch.zeros(num_samples, self.dim, dtype=torch.long, device=self.device)
        for k in range(self.num_masks):
            rows = (choice == k).nonzero().squeeze(-1)
            if rows.numel():
                out[rows] = self._sample_mask(rows.numel(), k, generator)
        return out

    def _sample_mask(
        self, num_samples: int, mask: int, generator: torch.Generator | None
    ) -> torch.Tensor:
        return sample_fast(self.backbone, self.head, num_samples, mask=mask, generator=generator)

    @torch.no_grad()
    def sample_naive(
        self, num_samples: int, *, mask: int = 0, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Reference ancestral sampler: one full forward pass per variable (D passes)."""
        return sample_reference(
            self.backbone, self.head, num_samples, mask=mask, generator=generator
        )


def _is_integer(x: torch.Tensor) -> bool:
    return x.dtype in (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def build_model(config: ModelConfig) -> AutoregressiveModel:
    """Build a model from a [`ModelConfig`][densitykit.model.ModelConfig] through the registries."""
    head = HEADS.create(
        config.head, dim=config.dim, num_values=config.num_values, **config.head_options
    )
    backbone = None
    if head.params_per_variable > 0:
        connectivities = masks_module.MASKS.create(
            config.masks,
            dim=config.dim,
            hidden_sizes=tuple(config.hidden_sizes),
            num_masks=config.num_masks,
            seed=config.seed,
            **config.mask_options,
        )
        backbone = MADE(
            connectivities,
            params_per_variable=head.params_per_variable,
            input_width=head.input_width,
            activation=config.activation,
            direct_connections=config.direct_connections,
        )
    return AutoregressiveModel(backbone, head, config)


def create_model(
    head: str,
    dim: int,
    num_values: int | None = None,
    *,
    hidden_sizes: Sequence[int] = (128, 128),
    masks: str = "natural",
    num_masks: int | None = None,
    seed: int | None = 0,
    activation: str = "relu",
    direct_connections: bool = False,
    mask_options: dict[str, Any] | None = None,
    **head_options: Any,
) -> AutoregressiveModel:
    """Compose a model from registered parts by name.

    Args:
        head: Head name (see ``densitykit.heads.names()``).
        dim: Number of variables D.
        num_values: Values per variable K; may be omitted for ``head="bernoulli"`` (2).
        hidden_sizes: Units per hidden layer (empty for none).
        masks: Mask-builder name (see ``densitykit.masks.names()``).
        num_masks: Number of masks; ``None`` takes the builder's default.
        seed: Seed of the mask builder.
        activation: Hidden activation name.
        direct_connections: Add masked input-to-output weights.
        mask_options: Extra options for the mask builder (e.g. ``{"ordering": [2, 0, 1]}``).
        **head_options: Extra options for the head (e.g. ``num_components=4``).

    Returns:
        The model, with its [`ModelConfig`][densitykit.model.ModelConfig] in ``model.config``.

    Example:
        >>> import torch, densitykit as dk
        >>> model = dk.create_model(head="logistic-mixture", dim=2, num_values=64,
        ...                         hidden_sizes=(32,), masks="multi-ordering",
        ...                         num_masks=4, seed=0, num_components=2)
        >>> x = torch.randint(0, 64, (10, 2))
        >>> model.log_prob(x).shape
        torch.Size([10])
    """
    if num_values is None:
        if head != "bernoulli":
            raise ValueError(
                f"num_values is required for head={head!r} (only 'bernoulli' defaults to 2)"
            )
        num_values = 2
    HEADS.get(head)
    masks_module.MASKS.get(masks)
    options = dict(mask_options or {})
    if num_masks is None:
        probe = masks_module.MASKS.create(masks, dim=dim, hidden_sizes=(), seed=seed, **options)
        num_masks = len(probe)
    config = ModelConfig(
        head=head,
        dim=dim,
        num_values=num_values,
        hidden_sizes=tuple(hidden_sizes),
        masks=masks,
        num_masks=num_masks,
        seed=seed,
        activation=activation,
        direct_connections=direct_connections,
        head_options=dict(head_options),
        mask_options=options,
    )
    return build_model(config)
