r"""The MAF family: a Masked Autoregressive Flow, a stack of MADEs over real values.

Masked Autoregressive Flow (Papamakarios, Pavlakou and Murray, 2017) maps data $x$ to
random numbers $z$ through $K$ affine autoregressive layers. Layer $k$ reads its input
$h$ in its own ordering $o_k$ and, with a [`MADE`][densitykit.made.MADE] computing a
shift $\mu_i$ and a log-scale $\alpha_i$ of each variable from the variables before it,

$$z_{o_i} = (h_{o_i} - \mu_i)\,e^{-\alpha_i}, \qquad
(\mu_i, \alpha_i) = \mathrm{MADE}_k(h_{o_1}, \dots, h_{o_{i-1}}).$$

Its Jacobian is triangular under $o_k$, so $\log|\det| = -\sum_i \alpha_i$, and

$$\log p(x) = \log p_0(z_K)
+ \sum_{k=1}^{K} \log\left|\det \frac{\partial z_k}{\partial z_{k-1}}\right|$$

with $z_0 = x$. The orderings are reversed from layer to layer (``"reverse"``) or
drawn at random (``"random"``), seeded, and kept as the buffer ``orderings``.
The log-scale is kept in a safe range by a soft clamp,
$\alpha = b \tanh(a / b)$ for the network's output $a$ and the bound
$b$ = ``log_scale_bound`` (3 by default: each layer scales a variable by at most
$e^{\pm 3}$), smooth, with gradients everywhere.

Options of the paper:

- *Batch normalisation* between the layers (``batch_norm``): in training mode it
  uses the batch's mean and variance (and updates running averages); in evaluation
  mode and in sampling, the running averages. Its log-determinant is included.
  Under ``torchrun`` each process normalises by its own shard's statistics.
- *MAF MoG* (``base="mog"``): the base density $p_0$ is a MADE with the
  ``gaussian-mixture`` head ([`GaussianMixtureHead`][densitykit.heads.GaussianMixtureHead])
  instead of a standard normal.

A conditional MAF (``num_labels`` or ``context_size``) gives the context to every
MADE (and to a MoG base); the MADE adds it to every hidden layer *and to the
outputs*, so the first variable of every layer depends on it too.

Sampling inverts each layer, $h_{o_i} = \mu_i + e^{\alpha_i} z_{o_i}$, in its
ordering. Done naively (nflows, zuko, pyro, sbi) that is one MADE pass per variable,
$D$ passes a layer. Here each inverse is the MADE's incremental ancestral sampler
([`sample_fast`][densitykit.sampling.sample_fast]) with the random numbers given: it
computes every hidden unit once, so a layer's inverse costs about one pass of
arithmetic, and drawing costs about as much as scoring. The $D$-pass inverse
([`sample_reference`][densitykit.sampling.sample_reference]) stays available
(``reference=True``) and gives the same samples within float rounding.

A flow models real values only: a discrete column (integers $0..K-1$) is refused;
model such data with a MADE and a discrete head (``--family made``). The family
offers exact ``log_prob`` and ``sample`` and none of the optional queries
(conditional and marginal likelihoods over subsets of the variables, completions):
``capabilities`` is empty, and the command line refuses them.

Example:
    >>> import torch
    >>> model = MAFModel(MAFConfig(dim=3, num_transforms=2, hidden_sizes=(8,)))
    >>> x = torch.randn(4, 3)
    >>> model.log_prob(x).shape
    torch.Size([4])
    >>> z, log_det = model.transform(x)
    >>> bool(torch.allclose(model.inverse(z), x, atol=1e-5))
    True
    >>> model.sample(5, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([5, 3])
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar

import torch
from torch import nn
from torch.distributions import constraints

from densitykit import masks
from densitykit.checks import check_generator, check_int, check_positive_int, check_seed
from densitykit.errors import DensitykitError
from densitykit.family import (
    FAMILIES,
    DataFacts,
    DensityModel,
    check_sample_shape,
    encode_features,
    encode_labels,
)
from densitykit.heads import GaussianMixtureHead, Head
from densitykit.made import ACTIVATIONS, MADE
from densitykit.memory import check_allocation
from densitykit.numerics import marginal_moments
from densitykit.sampling import sample_fast, sample_reference

__all__ = ["BASES", "PERMUTATIONS", "MAFConfig", "MAFModel", "orderings", "soft_clamp"]

PERMUTATIONS = ("reverse", "random")
"""How the orderings change from layer to layer (``MAFConfig.permutation``)."""

BASES = ("normal", "mog")
"""The base densities (``MAFConfig.base``): a standard normal, or a MADE MoG."""

_HALF_LOG_TWO_PI = 0.5 * math.log(2.0 * math.pi)
_BATCH_NORM_MOMENTUM = 0.1
_BATCH_NORM_EPS = 1e-5

_FIELDS = (
    "dim", "num_transforms", "hidden_sizes", "activation", "permutation", "batch_norm",
    "base", "num_components", "log_scale_bound", "seed", "num_labels", "context_size",
)  # fmt: skip


@dataclass(frozen=True)
class MAFConfig:
    r"""What builds a [`MAFModel`][densitykit.maf.MAFModel] (saved beside its weights).

    ``dim`` may be left ``None`` in a run's config: the data set fills it in.

    Attributes:
        dim: The number of variables D.
        num_transforms: The affine MADE layers K.
        hidden_sizes: Each MADE's hidden layer widths.
        activation: The MADEs' hidden activation
            ([`ACTIVATIONS`][densitykit.made.ACTIVATIONS]).
        permutation: ``"reverse"`` (each layer reverses the last one's ordering; the
            first is the natural order) or ``"random"`` (a seeded random ordering per
            layer).
        batch_norm: Batch normalisation between the layers (see the module docstring).
        base: ``"normal"`` (a standard normal) or ``"mog"`` (a MADE with the
            ``gaussian-mixture`` head, the paper's MAF MoG).
        num_components: The mixture components of a MoG base.
        log_scale_bound: The soft clamp's bound $b$ of the log-scales (positive).
        seed: Seed of the random orderings (the MADEs' hidden degrees are spread
            evenly, as in nflows and zuko: no seed).
        num_labels: Classes ``L`` of a class-conditional flow $p(x \mid y)$ (0: none,
            else at least 2), given one-hot to every MADE.
        context_size: Real context features ``C`` of a flow $p(x \mid c)$ (0: none);
            not with ``num_labels``.

    Example:
        >>> MAFConfig(dim=2, num_transforms=3).to_dict()["permutation"]
        'reverse'
        >>> MAFConfig.from_dict({"dim": 2, "layers": 3})
        Traceback (most recent call last):
        ...
        ValueError: unknown maf config keys ['layers']; expected some of [...]
    """

    dim: int | None = None
    num_transforms: int = 5
    hidden_sizes: tuple[int, ...] = (256, 256)
    activation: str = "relu"
    permutation: str = "reverse"
    batch_norm: bool = False
    base: str = "normal"
    num_components: int = 10
    log_scale_bound: float = 3.0
    seed: int = 0
    num_labels: int = 0
    context_size: int = 0
    num_values: ClassVar[int] = 0
    """Real values have no finite number (what a run's records read as K)."""

    def __post_init__(self) -> None:
        if self.dim is not None:
            object.__setattr__(self, "dim", check_positive_int(self.dim, "dim"))
        check_positive_int(self.num_transforms, "num_transforms")
        if isinstance(self.hidden_sizes, (str, bytes)) or not isinstance(
            self.hidden_sizes, Sequence
        ):
            raise TypeError(
                f"hidden_sizes must be a sequence of positive integers, got {self.hidden_sizes!r}"
            )
        sizes = tuple(check_int(size, "hidden_sizes", minimum=1) for size in self.hidden_sizes)
        object.__setattr__(self, "hidden_sizes", sizes)
        ACTIVATIONS.get(self.activation)
        for name, allowed in (("permutation", PERMUTATIONS), ("base", BASES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if not isinstance(self.batch_norm, bool):
            raise TypeError(f"batch_norm must be a bool, got {self.batch_norm!r}")
        check_positive_int(self.num_components, "num_components")
        bound = self.log_scale_bound
        if (
            isinstance(bound, bool)
            or not isinstance(bound, (int, float))
            or not (math.isfinite(bound) and bound > 0)
        ):
            raise ValueError(f"log_scale_bound must be a positive finite number, got {bound!r}")
        object.__setattr__(self, "log_scale_bound", float(bound))
        check_seed(self.seed)
        check_int(self.num_labels, "num_labels", minimum=0)
        check_int(self.context_size, "context_size", minimum=0)
        if self.num_labels == 1:
            raise ValueError("num_labels must be 0 (no label) or at least 2, got 1")
        if self.num_labels and self.context_size:
            raise ValueError(
                "a flow conditions on a label (num_labels) or on real features "
                f"(context_size), not both; got num_labels={self.num_labels} and "
                f"context_size={self.context_size}"
            )

    @property
    def context_width(self) -> int:
        """The context features each MADE takes (``L`` for labels, one-hot)."""
        return self.num_labels or self.context_size

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON-ready)."""
        data = asdict(self)
        data["hidden_sizes"] = list(self.hidden_sizes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MAFConfig:
        """Rebuild from ``to_dict`` output.

        Raises:
            ValueError: On keys this class does not know.
        """
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise ValueError(f"unknown maf config keys {unknown}; expected some of {list(_FIELDS)}")
        data = dict(data)
        if "hidden_sizes" in data:
            data["hidden_sizes"] = tuple(data["hidden_sizes"])
        return cls(**data)


def orderings(config: MAFConfig) -> torch.Tensor:
    """The orderings of a complete config's layers, one row per layer (and a last row
    for a MoG base, which is autoregressive too).

    Example:
        >>> orderings(MAFConfig(dim=3, num_transforms=3)).tolist()
        [[0, 1, 2], [2, 1, 0], [0, 1, 2]]
    """
    dim = int(config.dim)  # type: ignore[arg-type]
    count = config.num_transforms + (config.base == "mog")
    if config.permutation == "reverse":
        natural = torch.arange(dim)
        return torch.stack([natural if k % 2 == 0 else natural.flip(0) for k in range(count)])
    generator = torch.Generator().manual_seed(config.seed)
    return torch.stack([torch.randperm(dim, generator=generator) for _ in range(count)])


def soft_clamp(raw: torch.Tensor, bound: float) -> torch.Tensor:
    r"""$b \tanh(a / b)$: about $a$ near 0, never beyond $\pm b$.

    Example:
        >>> soft_clamp(torch.tensor([0.0, 100.0]), 3.0).tolist()
        [0.0, 3.0]
    """
    return bound * torch.tanh(raw / bound)


class _GivenNoise(Head):
    """One affine layer's inverse as a head whose random numbers are given.

    $h_i = \\mu_i + e^{\\alpha_i} z_i$ is the draw of a Gaussian of mean $\\mu_i$ and
    scale $e^{\\alpha_i}$ with the standard normal number $z_i$ given: the MADE samplers
    run it unchanged (calling ``sample`` for each variable in turn), and so invert the
    layer. It is no registered head: it lives for one inversion.
    """

    value_dtype = torch.float64
    support = constraints.real
    uniforms_per_sample = 0

    def __init__(self, noise: torch.Tensor, bound: float) -> None:
        super().__init__(noise.shape[1], 0)
        self.params_per_variable = 2
        self.input_width = 1
        self.value_dtype = noise.dtype
        self.bound = bound
        # One contiguous row per variable: the sampler reads one variable per step.
        self.noise_rows = noise.t().contiguous()

    def encode(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return x if x.dtype == dtype else x.to(dtype)

    def _log_prob(self, params: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        log_scale = soft_clamp(params[..., 1], self.bound)
        z = (x - params[..., 0]) * torch.exp(-log_scale)
        return -0.5 * z.square() - log_scale - _HALF_LOG_TWO_PI

    def sample(
        self, params: torch.Tensor, variable: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        # mu + exp(soft_clamp(a)) * z, in place on fresh temporaries (one step of D).
        scale = torch.tanh(params[:, 1] * (1.0 / self.bound)).mul_(self.bound).exp_()
        return scale.mul_(self.noise_rows[variable]).add_(params[:, 0])


class _BatchNorm(nn.Module):
    r"""Batch normalisation as a flow layer (the MAF paper's, section 3.4).

    $y = (x - m) / \sqrt{v + \epsilon}\; e^{\gamma} + \beta$ with the batch's mean and
    (biased) variance in training mode, the running averages otherwise (and always in
    ``inverse``); $\log|\det| = \sum_i \gamma_i - \frac12 \log(v_i + \epsilon)$.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.log_gamma = nn.Parameter(torch.zeros(dim))
        self.beta = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and x.shape[0] > 1:
            mean, var = x.mean(0), x.var(0, unbiased=False)
            with torch.no_grad():
                self.running_mean.lerp_(mean.detach(), _BATCH_NORM_MOMENTUM)
                self.running_var.lerp_(var.detach(), _BATCH_NORM_MOMENTUM)
        else:
            mean, var = self.running_mean, self.running_var
        var = var + _BATCH_NORM_EPS
        y = (x - mean) * torch.rsqrt(var) * torch.exp(self.log_gamma) + self.beta
        log_det = (self.log_gamma - 0.5 * torch.log(var)).sum()
        return y, log_det.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        std = torch.sqrt(self.running_var + _BATCH_NORM_EPS)
        return (y - self.beta) * torch.exp(-self.log_gamma) * std + self.running_mean


class MAFModel(DensityModel):
    r"""A Masked Autoregressive Flow: the ``maf`` model family.

    Args:
        config: A complete config (``dim`` set).
        validate_args: Check inputs in ``log_prob`` (a floating tensor ``(..., D)`` of
            finite values); ``validate=False`` skips them in one call.

    Attributes:
        transforms: The K MADEs, each with two outputs per variable (shift, raw
            log-scale), in natural order over its layer's ordering of the variables.
        norms: The batch normalisations after the first K - 1 layers (empty without).
        base_made, base_head: A MoG base's MADE and ``gaussian-mixture`` head (``None``
            for a standard normal base).

    Raises:
        TypeError, ValueError: If the config is not a complete ``MAFConfig``.

    Example:
        >>> model = MAFModel(MAFConfig(dim=2, num_transforms=2, hidden_sizes=(8,),
        ...                            base="mog", num_components=3, batch_norm=True))
        >>> model.eval().log_prob(torch.zeros(5, 2)).shape
        torch.Size([5])
    """

    family = "maf"
    capabilities = frozenset()
    config_class = MAFConfig

    def __init__(self, config: MAFConfig, *, validate_args: bool = True) -> None:
        super().__init__()
        if not isinstance(config, MAFConfig):
            raise TypeError(f"config must be a MAFConfig, got {type(config).__name__}")
        if config.dim is None:
            raise ValueError("a MAF is built from a config with dim set")
        self.config = config
        self.num_labels = config.num_labels
        self.validate_args = bool(validate_args)
        dim = config.dim
        self.register_buffer("orderings", orderings(config))
        self.register_buffer("inverse_orderings", torch.argsort(self.orderings, dim=1))
        self.transforms = nn.ModuleList(
            self._made(params_per_variable=2) for _ in range(config.num_transforms)
        )
        self.norms = nn.ModuleList(
            _BatchNorm(dim) for _ in range(config.num_transforms - 1) if config.batch_norm
        )
        self.base_made: MADE | None = None
        self.base_head: GaussianMixtureHead | None = None
        if config.base == "mog":
            self.base_head = GaussianMixtureHead(dim, num_components=config.num_components)
            self.base_made = self._made(params_per_variable=self.base_head.params_per_variable)

    def _made(self, *, params_per_variable: int) -> MADE:
        """A layer's MADE (natural order: its inputs arrive in its layer's ordering)."""
        config = self.config
        # Hidden degrees spread evenly (as nflows and zuko do): with at least D - 1
        # units a layer, every allowed dependence has a path.
        connectivity = masks.create(
            "natural", dim=config.dim, hidden_sizes=config.hidden_sizes, spread="even"
        )
        return MADE(
            connectivity,
            params_per_variable=params_per_variable,
            activation=config.activation,
            context_size=config.context_width,
        )

    # -- configs ---------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: MAFConfig) -> MAFModel:
        """Build the model, once its size is known to fit in memory.

        Raises:
            ResourceError: If its weights would need more than the machine's memory allows.
        """
        weights = cls.parameter_count(config)
        check_allocation(12 * weights, f"a flow of {weights:,} weights")
        return cls(config)

    @classmethod
    def complete_config(cls, config: MAFConfig, data: DataFacts) -> MAFConfig:
        """Fill in D and the labels from the data.

        Raises:
            DensitykitError: If the data are discrete, or say another D or labels.
        """
        if data.num_values:
            raise DensitykitError(
                f"a flow cannot model a discrete column: data set {data.name!r} holds the "
                f"integers 0..{data.num_values - 1}; model discrete data with a MADE and a "
                "discrete head (--family made --head bernoulli, categorical or "
                "logistic-mixture)"
            )
        other = [f"{name} ({kind})" for name, kind in data.columns if kind != "real"]
        if other:
            raise DensitykitError(
                f"a flow cannot model a discrete column (or a spike, a point with "
                f"probability): data set {data.name!r} has {', '.join(other)}; model the "
                "table with a MADE, whose heads take discrete and spike columns "
                "(--family made), or give its real columns only"
            )
        if config.dim is not None and config.dim != data.dim:
            raise DensitykitError(
                f"the maf config says dim={config.dim}, but data set {data.name!r} has "
                f"dim={data.dim}; leave it unset to take the data's"
            )
        if config.context_size:
            raise DensitykitError(
                "a run conditions on labels only (--condition label); a flow of real "
                "context features is trained from Python"
            )
        if config.num_labels not in (0, data.num_labels):
            raise DensitykitError(
                f"the maf config says num_labels={config.num_labels}, but the run conditions "
                f"on {data.num_labels} labels"
            )
        return replace(config, dim=data.dim, num_labels=data.num_labels)

    @classmethod
    def needed_names(cls, config: MAFConfig) -> dict[str, str]:
        """The activation (every other part is built in)."""
        return {"activation": config.activation}

    @classmethod
    def parameter_count(cls, config: MAFConfig) -> int:
        """The floating values of a model's ``state_dict`` (what a checkpoint holds): the
        MADEs' weights, a MoG base's, and the batch normalisations' parameters and
        running statistics.

        Example:
            >>> config = MAFConfig(dim=3, num_transforms=2, hidden_sizes=(4,), batch_norm=True)
            >>> state = MAFModel(config).state_dict().values()
            >>> MAFModel.parameter_count(config) == sum(
            ...     v.numel() for v in state if v.is_floating_point())
            True
        """
        dim, context = int(config.dim), config.context_width  # type: ignore[arg-type]

        def made(params: int) -> int:
            widths = [dim, *config.hidden_sizes, dim * params]
            count = sum(a * b + b for a, b in itertools.pairwise(widths))
            return count + context * sum(widths[1:])

        count = config.num_transforms * made(2)
        count += 4 * dim * (config.num_transforms - 1) * config.batch_norm
        if config.base == "mog":
            count += made(3 * config.num_components)
        return count

    # -- training hooks ------------------------------------------------------------------
    def initialize_from_data(self, values: torch.Tensor) -> bool:
        r"""Make the first layer start by standardising each variable of ``values``
        ``(N, D)``: its output bias gives shift $\mu_d$ (the variable's mean) and a
        log-scale of $\log \sigma_d$ (its standard deviation, within the layer's
        bound), so the flow starts from the Gaussian fitted to each marginal. Returns
        ``True``.

        Raises:
            ValueError: If ``values`` is not ``(N, D)`` of finite values.

        Example:
            >>> model = MAFModel(MAFConfig(dim=2, num_transforms=2, hidden_sizes=(8,)))
            >>> x = torch.tensor([[0.0, 10.0], [2.0, 14.0]])
            >>> model.initialize_from_data(x)
            True
            >>> z, _ = model.transform(x)  # the first layer: (x - mean) / std, to start
        """
        if values.ndim != 2 or values.shape[-1] != self.dim:
            raise ValueError(
                f"expected training values of shape (N, {self.dim}), got {tuple(values.shape)}"
            )
        mean, std = marginal_moments(values)
        bound = self.config.log_scale_bound
        # soft_clamp(a) = b tanh(a / b) = log std, for log std inside (-b, b).
        ratio = (std.clamp_min(1e-6).log() / bound).clamp(-0.99, 0.99)
        raw = bound * torch.atanh(ratio)
        order = self.orderings[0].cpu()
        self.transforms[0].set_output_bias(torch.stack([mean[order], raw[order]], dim=-1))
        return True

    # -- facts -----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """The number of variables D."""
        return int(self.config.dim)  # type: ignore[arg-type]

    @property
    def num_values(self) -> int:
        """0: real values have no finite number."""
        return 0

    @property
    def is_conditional(self) -> bool:
        """Whether likelihoods and samples take a ``context``."""
        return self.config.context_width > 0

    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return self.orderings.device

    @property
    def dtype(self) -> torch.dtype:
        """The parameters' floating dtype."""
        return self.transforms[0].layers[0].bias.dtype

    def check_values(self, x: torch.Tensor) -> None:
        """Raise unless ``x`` is a floating tensor ``(..., D)`` of finite values.

        Raises:
            TypeError: If ``x`` is not a floating tensor (a discrete column: a flow
                cannot model it).
            ValueError: On a wrong shape or NaN/inf.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of real values, got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(
                f"a flow cannot model a discrete column: x has dtype {x.dtype}; give real "
                "values as a floating tensor, or model discrete data with a MADE and a "
                "discrete head (family 'made')"
            )
        if x.ndim == 0 or x.shape[-1] != self.dim:
            raise ValueError(
                f"x must have shape (..., D) with D={self.dim} variables, got {tuple(x.shape)}"
            )
        if x.numel() and not bool(torch.isfinite(x).all()):
            raise ValueError("x contains NaN or infinite values; a flow models finite reals")

    def encode_context(
        self, context: torch.Tensor | None, batch_shape: Sequence[int]
    ) -> torch.Tensor | None:
        """Check a context for ``batch_shape`` examples: ``(prod(batch_shape), C)``
        features (labels one-hot) in the model's dtype, or ``None`` without one.

        Labels are integers of shape ``batch_shape`` or ``()`` in ``0..L-1``; features
        finite floats ``(*batch_shape, C)`` or ``(C,)``.

        Raises:
            TypeError, ValueError: If the context is missing, unexpected or does not fit.
        """
        if not self.is_conditional:
            return super().encode_context(context, batch_shape)
        where = {"device": self.device, "dtype": self.dtype}
        if self.num_labels:
            return encode_labels(context, batch_shape, self.num_labels, **where)
        return encode_features(context, batch_shape, self.config.context_size, **where)

    # -- the flow --------------------------------------------------------------------------
    def _layer(
        self, index: int, h: torch.Tensor, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Layer ``index`` forward: its output and ``(B,)`` log-determinant."""
        u = h.index_select(1, self.orderings[index])
        params = self.transforms[index](u, context=context)
        log_scale = soft_clamp(params[..., 1], self.config.log_scale_bound)
        z = (u - params[..., 0]) * torch.exp(-log_scale)
        return z.index_select(1, self.inverse_orderings[index]), -log_scale.sum(-1)

    def _transform(
        self, x: torch.Tensor, context: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h, log_det = x, x.new_zeros(x.shape[0])
        for index in range(self.config.num_transforms):
            h, layer_log_det = self._layer(index, h, context)
            log_det = log_det + layer_log_det
            if index < len(self.norms):
                h, norm_log_det = self.norms[index](h)
                log_det = log_det + norm_log_det
        return h, log_det

    def _base_log_prob(self, z: torch.Tensor, context: torch.Tensor | None) -> torch.Tensor:
        if self.base_made is None or self.base_head is None:
            return (-0.5 * z.square() - _HALF_LOG_TWO_PI).sum(-1)
        u = z.index_select(1, self.orderings[-1])
        params = self.base_made(u, context=context)
        return self.base_head._log_prob(params, u).sum(-1)

    def _inverse(
        self, z: torch.Tensor, context: torch.Tensor | None, reference: bool
    ) -> torch.Tensor:
        invert: Callable[..., torch.Tensor] = sample_reference if reference else sample_fast
        h = z
        for index in reversed(range(self.config.num_transforms)):
            if index < len(self.norms):
                h = self.norms[index].inverse(h)
            noise = h.index_select(1, self.orderings[index])
            head = _GivenNoise(noise, self.config.log_scale_bound)
            u = invert(self.transforms[index], head, noise.shape[0], context=context)
            h = u.index_select(1, self.inverse_orderings[index])
        return h

    def _rows(self, x: torch.Tensor, validate: bool | None) -> torch.Tensor:
        if self.validate_args if validate is None else validate:
            self.check_values(x)
        return x.reshape(-1, self.dim).to(device=self.device, dtype=self.dtype)

    def transform(
        self,
        x: torch.Tensor,
        *,
        context: torch.Tensor | None = None,
        validate: bool | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Data to base random numbers: ``z`` ``(..., D)`` and ``(...)`` log-determinants
        $\\log|\\det \\partial z / \\partial x|$.

        Args:
            x: ``(..., D)`` real values.
            context: A conditional flow's context (see ``encode_context``).
            validate: Check ``x`` first; ``None`` follows ``self.validate_args``.
        """
        rows = self._rows(x, validate)
        z, log_det = self._transform(rows, self.encode_context(context, x.shape[:-1]))
        return z.reshape(x.shape), log_det.reshape(x.shape[:-1])

    @torch.no_grad()
    def inverse(
        self,
        z: torch.Tensor,
        *,
        context: torch.Tensor | None = None,
        reference: bool = False,
    ) -> torch.Tensor:
        """Base random numbers to data: the inverse of ``transform`` (batch
        normalisation by its running averages, as in evaluation mode).

        Args:
            z: ``(..., D)`` real values.
            context: A conditional flow's context (see ``encode_context``).
            reference: Invert each layer with $D$ MADE passes
                ([`sample_reference`][densitykit.sampling.sample_reference]) instead of
                the incremental sampler (same values within float rounding).

        Returns:
            ``(..., D)`` values in the model's dtype.
        """
        rows = self._rows(z, True)
        features = self.encode_context(context, z.shape[:-1])
        return self._inverse(rows, features, bool(reference)).reshape(z.shape)

    # -- likelihood ------------------------------------------------------------------------
    def log_prob(
        self,
        x: torch.Tensor,
        *,
        validate: bool | None = None,
        context: torch.Tensor | None = None,
        connectivities: Any = None,
    ) -> torch.Tensor:
        r"""$\log p(x)$ (or $\log p(x \mid c)$) in nats: the base density of $z$ plus the
        log-determinants.

        Args:
            x: ``(..., D)`` real values.
            validate: Check ``x`` first; ``None`` follows ``self.validate_args``.
            context: A conditional flow's context (see ``encode_context``).
            connectivities: Must be ``None`` (a flow has no mixture of orderings).

        Returns:
            ``(...)`` log-densities.

        Raises:
            TypeError, ValueError: On values that are not finite reals ``(..., D)``, a
                context that does not fit, or connectivities.
        """
        if connectivities is not None:
            raise ValueError("a maf model has no mixture of connectivities to choose from")
        rows = self._rows(x, validate)
        features = self.encode_context(context, x.shape[:-1])
        z, log_det = self._transform(rows, features)
        return (self._base_log_prob(z, features) + log_det).reshape(x.shape[:-1])

    def forward(self, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        """Same as [`log_prob`][densitykit.maf.MAFModel.log_prob]."""
        return self.log_prob(x, **kwargs)

    def training_log_prob(
        self, x: torch.Tensor, draw: Any, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The exact log-densities (there is nothing to draw per step)."""
        return self.log_prob(x, validate=False, context=context)

    # -- sampling --------------------------------------------------------------------------
    def check_sample_size(self, num_samples: int) -> None:
        """Refuse ``num_samples`` rows that cannot fit: each holds its values, base
        numbers and a MADE's hidden units and outputs, twice over while updated.

        Raises:
            ResourceError: If they would need more than the machine's memory allows.
        """
        row = 8 * (4 * self.dim + sum(self.config.hidden_sizes))
        check_allocation(2 * num_samples * row, f"{num_samples:,} samples of {self.dim} variables")

    @torch.no_grad()
    def sample_base(
        self,
        num_samples: int,
        *,
        generator: torch.Generator | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(N, D)`` draws of the base density (standard normal, or the MoG base's fast
        sampler), in the model's dtype; ``context`` is already encoded ``(N, C)``."""
        source = generator.device if generator is not None else self.device
        if self.base_made is None or self.base_head is None:
            z = torch.randn(num_samples, self.dim, generator=generator, device=source)
            return z.to(device=self.device, dtype=self.dtype)
        u = sample_fast(
            self.base_made, self.base_head, num_samples, generator=generator, context=context
        )
        return u.to(self.dtype).index_select(1, self.inverse_orderings[-1])

    @torch.no_grad()
    def sample(
        self,
        sample_shape: int | Sequence[int] = (),
        *,
        generator: torch.Generator | None = None,
        context: torch.Tensor | None = None,
        connectivities: Any = None,
        reference: bool = False,
    ) -> torch.Tensor:
        """Exact samples ``(*sample_shape, D)``: base draws through the inverse flow.

        Args:
            sample_shape: The shape of the batch of samples (an integer ``n`` is ``(n,)``).
            generator: Random source (its device may differ from the model's).
            context: A conditional flow's context: one per sample or one for all.
            connectivities: Must be ``None``.
            reference: Invert with $D$ MADE passes per layer (same samples, slower).

        Raises:
            TypeError: If ``sample_shape`` or ``generator`` has the wrong type.
            ValueError: On a negative size, connectivities, or a context that does not fit.
            ResourceError: If the samples cannot fit in memory.
        """
        if connectivities is not None:
            raise ValueError("a maf model has no mixture of connectivities to choose from")
        shape = check_sample_shape(sample_shape)
        check_generator(generator)
        count = math.prod(shape)
        self.check_sample_size(count)
        features = self.encode_context(context, shape)
        z = self.sample_base(count, generator=generator, context=features)
        return self._inverse(z, features, bool(reference)).reshape(*shape, self.dim)


FAMILIES.register("maf", MAFModel)
