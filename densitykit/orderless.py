r"""An orderless model: one network for every conditional $p(x_i \mid x_o)$.

Deep orderless NADE (Uria, Murray and Larochelle 2014) trains one network to answer
$p(x_i \mid x_o)$ for *any* observed set $o$ and any missing variable $i$: its input
is the observed values (the missing ones zeroed) beside the observed indicator
$m = 1[o]$, and its output holds the parameters of every variable's distribution.
Each factor of an ordering's chain rule

$$\log p_\pi(x) = \sum_{t=1}^{D} \log p(x_{\pi_t} \mid x_{\pi_{<t}})$$

is then one evaluation of that network with $o = \pi_{<t}$, so every ordering's joint,
and every conditional and marginal, is a normalised autoregressive distribution.

A MADE trained over all orderings (``masks="any-order"``) answers all $D$ factors of
an ordering in one pass, each hidden unit seeing a random prefix; here every hidden
unit sees every observed variable, at the price of one step per factor. A step is
not a full pass: revealing one variable adds its columns of the first layer's
weights to the pre-activations (NADE's update), and only the next variable's outputs
are computed (the layers after the first are evaluated in full at every step).

Training (``training_loss``) draws per example an ordering and a cut $d$ uniformly
in $0..D-1$, observes the first $d$ variables and scores the $D - d$ others, each
as if it came next, weighted $D / (D - d)$. With uniform orderings that is an
unbiased estimate of $\mathbb{E}_\pi[-\log p_\pi(x)]$, the mean over orderings of
their joint NLL; with region or scan orderings (``OrderlessConfig.orderings``) the
observed sets follow those orderings' prefixes, and the objective is a weighted one
of the same form.

Queries mix $K$ seeded orderings of all variables (``orderings``) as the MADE
queries do (``densitykit.queries``): each ordering moves the observed variables
first, keeping each group's relative order; the answers are log-mean-exps over the
$K$ orderings (the conditional is a distribution over the missing values for each
observed value, but not the conditional of the joint mixture).

Example:
    >>> import torch
    >>> model = OrderlessModel(OrderlessConfig("bernoulli", dim=4, hidden_sizes=(8,)))
    >>> x = torch.tensor([[1, 0, 1, 1]])
    >>> observed = torch.tensor([True, True, False, False])
    >>> both = model.marginal_log_prob(x, observed) + model.conditional_log_prob(x, observed)
    >>> torch.allclose(both, model.log_prob(x))
    True
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
from torch import nn

from densitykit.checks import check_int, check_positive_int, check_seed
from densitykit.errors import DensitykitError
from densitykit.family import (
    CAPABILITIES,
    FAMILIES,
    DataFacts,
    DensityModel,
    check_head_fits,
    check_sample_shape,
    default_head,
    encode_labels,
)
from densitykit.heads import HEADS, default_num_values
from densitykit.masks import IMAGE_ORDERINGS, ConnectivitySampler
from densitykit.memory import check_allocation
from densitykit.numerics import log_mean_exp
from densitykit.queries import check_observed, group_by_pattern
from densitykit.widths import VariableWidths

__all__ = [
    "OrderlessConfig",
    "OrderlessModel",
]


@dataclass(frozen=True)
class OrderlessConfig:
    r"""Everything that builds an [`OrderlessModel`][densitykit.orderless.OrderlessModel]
    (saved beside its weights).

    ``head`` and ``dim`` may be left ``None`` in a run's config: the data set fills
    them in ([`complete_config`][densitykit.orderless.OrderlessModel.complete_config]).

    Attributes:
        head: A registered head name (``densitykit.heads.names()``).
        dim: The number of variables D.
        num_values: The values each variable takes (``None``: the head's default, e.g.
            2 for ``"bernoulli"``).
        head_options: Keyword options of the head (e.g. ``{"num_components": 4}``).
        hidden_sizes: Widths of the hidden layers (ReLU), at least one.
        direct_connections: Add a linear map from the inputs to the outputs.
        num_orderings: Orderings of the default query mixture (and of validation).
        ordering_seed: Seed of those orderings.
        orderings: The distribution of the orderings of training and of the query
            mixture, one of [`ORDERINGS`][densitykit.masks.ORDERINGS] (as for a MADE
            trained over all orderings: ``"scans"`` puts scan orders of the image in a
            share of them, so the observed sets of training include its top rows,
            left columns and the like).
        ordering_options: ``image_shape`` and ``region_share`` / ``scan_share`` of
            those orderings (see [`ConnectivitySampler`][densitykit.masks.ConnectivitySampler]).
        num_labels: Classes ``L`` of a class-conditional model $p(x \mid y)$ (0: none,
            else at least 2): the one-hot label is an extra input of the first layer
            and of the direct connections.
    """

    head: str | None = None
    dim: int | None = None
    num_values: int | None = None
    head_options: dict[str, Any] = field(default_factory=dict)
    hidden_sizes: tuple[int, ...] = (500,)
    direct_connections: bool = True
    num_orderings: int = 1
    ordering_seed: int = 0
    orderings: str = "uniform"
    ordering_options: dict[str, Any] = field(default_factory=dict)
    num_labels: int = 0

    def __post_init__(self) -> None:
        if self.head is not None and not isinstance(self.head, str):
            raise TypeError(f"head must be a registered head name, got {type(self.head).__name__}")
        if self.dim is not None:
            check_positive_int(self.dim, "dim")
        if isinstance(self.hidden_sizes, (str, bytes)) or not isinstance(
            self.hidden_sizes, Sequence
        ):
            raise TypeError(f"hidden_sizes must be a sequence of ints, got {self.hidden_sizes!r}")
        sizes = tuple(check_positive_int(size, "hidden size") for size in self.hidden_sizes)
        if not sizes:
            raise ValueError("an orderless model needs at least one hidden layer, got none")
        object.__setattr__(self, "hidden_sizes", sizes)
        object.__setattr__(self, "head_options", dict(self.head_options))
        check_positive_int(self.num_orderings, "num_orderings")
        check_allocation(
            self.num_orderings * (self.dim or 1) * 16,
            f"num_orderings={self.num_orderings:,} orderings of {self.dim or 1} variables",
        )
        check_seed(self.ordering_seed, "ordering_seed")
        check_int(self.num_labels, "num_labels", minimum=0)
        if self.num_labels == 1:
            raise ValueError("num_labels must be 0 (no label) or at least 2, got 1")
        options = dict(self.ordering_options)
        if "image_shape" in options and not isinstance(options["image_shape"], str):
            options["image_shape"] = [int(size) for size in options["image_shape"]]
        object.__setattr__(self, "ordering_options", options)
        if self.dim is not None:
            self.ordering_source()  # checks the orderings and their options

    def ordering_source(self, seed: int | None = None) -> ConnectivitySampler:
        """A source of this config's orderings (``ordering_seed`` by default).

        Raises:
            ValueError: On unknown orderings or options that do not fit them.
        """
        seed = self.ordering_seed if seed is None else seed
        return ConnectivitySampler(
            self.dim, (), seed=seed, orderings=self.orderings, **self.ordering_options
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON-ready)."""
        data = asdict(self)
        data["hidden_sizes"] = list(self.hidden_sizes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OrderlessConfig:
        """Rebuild from ``to_dict`` output.

        Raises:
            ValueError: On keys this class does not know.
        """
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown orderless config keys {unknown}")
        return cls(**{**data, "hidden_sizes": tuple(data.get("hidden_sizes", (500,)))})


class OrderlessModel(DensityModel):
    r"""A density over ``D`` variables that answers every conditional with one network.

    The ``orderless`` model family (see [`densitykit.family`][densitykit.family]):
    trained by [`densitykit.train.fit`][densitykit.train.fit] like every family.

    Args:
        config: What to build (see [`OrderlessConfig`][densitykit.orderless.OrderlessConfig]).

    Raises:
        ValueError: If the head takes no parameters per variable (the histogram), or
            the head's options are refused by its factory.

    Example:
        >>> model = OrderlessModel(OrderlessConfig("categorical", dim=3, num_values=4,
        ...                                        hidden_sizes=(16,)))
        >>> model(torch.tensor([[0, 3, 1]]), torch.tensor([[True, False, False]])).shape
        torch.Size([1, 3, 4])
    """

    family = "orderless"
    capabilities = frozenset(CAPABILITIES)
    config_class = OrderlessConfig

    @classmethod
    def complete_config(cls, config: OrderlessConfig, data: DataFacts) -> OrderlessConfig:
        """Fill in D, K, the head (Bernoulli for two values, else categorical), the
        labels the run conditions on and the image shape of region and scan orderings;
        check the head fits.

        Raises:
            DensitykitError: If the config does not fit the data (its ``num_labels``
                included: a conditional config for a run that conditions on nothing).
        """
        for name, actual in (("dim", data.dim), ("num_values", data.num_values)):
            given = getattr(config, name)
            if given is not None and given != actual:
                raise DensitykitError(
                    f"the orderless config says {name}={given}, but data set {data.name!r} "
                    f"has {name}={actual}; leave it unset to take the data's"
                )
        if config.num_labels not in (0, data.num_labels):
            if data.num_labels:
                raise DensitykitError(
                    f"the orderless config says num_labels={config.num_labels}, but data "
                    f"set {data.name!r} has {data.num_labels} labels"
                )
            raise DensitykitError(
                "the orderless config is conditional, but the run conditions on nothing; "
                "pass --condition label (or leave num_labels at 0)"
            )
        options = dict(config.ordering_options)
        if config.orderings in IMAGE_ORDERINGS and "image_shape" not in options:
            if data.kind != "image":
                raise DensitykitError(
                    f"orderings {config.orderings!r} are drawn on images, and data set "
                    f"{data.name!r} holds {data.kind} data; give ordering_options image_shape"
                )
            options["image_shape"] = list(data.shape)
        complete = replace(
            config,
            head=config.head or default_head(data.num_values),
            dim=data.dim,
            num_values=data.num_values,
            ordering_options=options,
            num_labels=data.num_labels,
        )
        check_head_fits(complete.head, data.dim, data.num_values, complete.head_options, data)
        return complete

    @classmethod
    def parameter_count(cls, config: OrderlessConfig) -> int:
        """The weights of a model of a complete ``config``, without building it.

        Example:
            >>> config = OrderlessConfig("bernoulli", dim=3, hidden_sizes=(4,))
            >>> OrderlessModel.parameter_count(config), sum(
            ...     p.numel() for p in OrderlessModel(config).parameters())
            (61, 61)
        """
        num_values = config.num_values or default_num_values(config.head)
        head = HEADS.create(
            config.head, dim=config.dim, num_values=num_values, **config.head_options
        )
        dim, units = int(config.dim), head.variable_widths
        inputs = units.num_inputs + dim + config.num_labels
        outputs = units.num_outputs
        widths = [inputs, *config.hidden_sizes, outputs]
        count = sum(a * b + b for a, b in itertools.pairwise(widths))
        if config.direct_connections:
            count += inputs * outputs
        return count + sum(p.numel() for p in head.parameters())

    def __init__(self, config: OrderlessConfig) -> None:
        super().__init__()
        if not isinstance(config, OrderlessConfig):
            raise TypeError(f"config must be an OrderlessConfig, got {type(config).__name__}")
        if config.head is None or config.dim is None:
            raise ValueError("an orderless model is built from a config with its head and dim set")
        num_values = config.num_values
        if num_values is None:
            num_values = default_num_values(config.head)
            config = replace(config, num_values=num_values)
        head = HEADS.create(
            config.head, dim=config.dim, num_values=num_values, **config.head_options
        )
        if head.params_per_variable < 1:
            raise ValueError(
                f"an orderless model needs a head with parameters per variable, got "
                f"{config.head!r} (params_per_variable=0)"
            )
        self.config = config
        self.head = head
        self.num_labels = config.num_labels
        # Input units and parameters of each variable (one P and W for most heads;
        # each variable its own for a head over mixed columns): nothing padded.
        self.widths: VariableWidths = head.variable_widths
        dim, outputs = head.dim, self.widths.num_outputs
        # The masked values, the observed indicator, then the one-hot label (if any).
        inputs = self.widths.num_inputs + dim + config.num_labels
        sizes = config.hidden_sizes
        self.first = nn.Linear(inputs, sizes[0])
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.out = nn.Linear(sizes[-1], outputs)
        self.direct = nn.Linear(inputs, outputs, bias=False) if config.direct_connections else None
        initial_bias = head.initial_bias()
        if initial_bias is not None:  # the head's starting point (see Head.initial_bias)
            with torch.no_grad():
                self.out.bias.view(dim, -1).copy_(initial_bias)

    # -- shape -----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """The number of variables D."""
        return self.head.dim

    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return self.out.weight.device

    @property
    def is_conditional(self) -> bool:
        """Whether the model conditions on a class label (``num_labels > 0``)."""
        return self.num_labels > 0

    def encode_context(
        self, context: torch.Tensor | None, batch_shape: Sequence[int]
    ) -> torch.Tensor | None:
        """Check a context for a batch of shape ``batch_shape``: integer labels of shape
        ``batch_shape`` (one per example) or ``()`` (one for all), in ``0..L-1``, encoded
        one-hot; ``None`` for an unconditional model.

        Returns:
            ``(prod(batch_shape), L)`` one-hot labels in the model's dtype and device, or
            ``None`` for an unconditional model.

        Raises:
            TypeError: If the labels are not a tensor of an integer dtype.
            ValueError: If the context is missing, unexpected, of the wrong shape, or
                holds labels outside ``0..L-1``.

        Example:
            >>> model = OrderlessModel(OrderlessConfig("bernoulli", dim=3, hidden_sizes=(4,),
            ...                                        num_labels=3))
            >>> model.encode_context(torch.tensor([2, 0]), (2,)).tolist()
            [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
        """
        if not self.is_conditional:
            return super().encode_context(context, batch_shape)
        return encode_labels(
            context, batch_shape, self.num_labels, device=self.device, dtype=self.dtype
        )

    @property
    def dtype(self) -> torch.dtype:
        """The parameters' dtype."""
        return self.out.weight.dtype

    # -- the network -----------------------------------------------------------------------
    def inputs(
        self, x: torch.Tensor, observed: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The network's input ``(B, D * input_width + D + L)`` (``sum W_i`` value units
        for per-variable widths): the encoded values with
        the missing ones zeroed, the observed indicator (``observed`` ``(B, D)`` bool),
        then a conditional model's one-hot ``labels`` ``(B, L)`` (``encode_context``)."""
        encoded = self.head.encode(x, self.dtype)
        shown = observed.to(self.dtype)
        parts = [encoded * self.widths.repeat_inputs(shown), shown]
        if self.num_labels:
            if labels is None or labels.shape != (x.shape[0], self.num_labels):
                raise ValueError(
                    f"a model of {self.num_labels} labels needs one-hot labels of shape "
                    f"({x.shape[0]}, {self.num_labels}) (encode_context), got "
                    f"{None if labels is None else tuple(labels.shape)}"
                )
            parts.append(labels.to(self.dtype))
        elif labels is not None:
            raise ValueError("this orderless model is not conditional; give no labels")
        return torch.cat(parts, dim=1)

    def _hidden(self, pre: torch.Tensor) -> torch.Tensor:
        h = torch.relu(pre)
        for layer in self.hidden:
            h = torch.relu(layer(h))
        return h

    def forward(
        self, x: torch.Tensor, observed: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The parameters ``(B, D, P)`` of every variable given the observed ones (and a
        conditional model's one-hot ``labels`` ``(B, L)``, from ``encode_context``).

        The missing values of ``x`` ``(B, D)`` (in the support) do not change the
        result; an observed variable's own parameters are computed too but mean nothing.
        """
        inputs = self.inputs(x, observed, labels)
        out = self.out(self._hidden(self.first(inputs)))
        if self.direct is not None:
            out = out + self.direct(inputs)
        return self.widths.pad(out)

    # -- training --------------------------------------------------------------------------
    def check_values(self, x: torch.Tensor) -> None:
        """Raise unless ``x`` ``(..., D)`` holds finite values in the head's support
        ([`Head.check_values`][densitykit.heads.Head.check_values]).

        Raises:
            TypeError: If ``x`` is not a tensor.
            ValueError: On another last dimension, NaN/inf, or values outside the support.
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of values, got {type(x).__name__}")
        if x.ndim < 1 or x.shape[-1] != self.dim:
            raise ValueError(f"x must have shape (..., D) with D={self.dim}, got {tuple(x.shape)}")
        self.head.check_values(x.reshape(-1, self.dim))

    def initialize_from_data(self, values: torch.Tensor) -> bool:
        """Set the output bias to the head's
        [`data_initial_bias`][densitykit.heads.Head.data_initial_bias] of ``values``
        ``(N, D)``, if the head has one; return whether it did."""
        bias = self.head.data_initial_bias(values)
        if bias is None:
            return False
        with torch.no_grad():
            self.out.bias.view(self.dim, -1).copy_(bias.to(self.out.bias))
        return True

    def training_draw(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per example an ordering (``draw_orderings``) and a cut $d$ uniform in
        $0..D-1$, on the CPU: ``((B, D) orderings, (B, 1) cuts)``."""
        cut = torch.randint(0, self.dim, (batch_size, 1), generator=generator)
        return self.draw_orderings(batch_size, generator), cut

    def shard_draw(
        self, draw: tuple[torch.Tensor, torch.Tensor], rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The orderings and cuts of the rows ``rows``."""
        orderings, cut = draw
        return orderings[rows], cut[rows]

    def training_log_prob(
        self,
        x: torch.Tensor,
        draw: tuple[torch.Tensor, torch.Tensor],
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""Minus the training loss of each example, given its ordering and cut $d$:
        $-\frac{D}{D-d} \sum_{t > d} -\log p(x_{\pi_t} \mid x_{\pi_{\le d}})$."""
        orderings, cut = draw
        batch, dim = x.shape
        x = x.to(self.head.value_dtype)
        ranks = torch.empty_like(orderings).scatter_(
            1, orderings, torch.arange(dim).expand(batch, dim)
        )
        observed = (ranks < cut).to(x.device)
        params = self(x, observed, self.encode_context(context, (batch,)))
        nll = -self.head._log_prob(params, x).masked_fill(observed, 0).sum(1)
        weight = (dim / (dim - cut)).to(device=x.device, dtype=nll.dtype)[:, 0]
        return -nll * weight

    def training_loss(
        self,
        x: torch.Tensor,
        generator: torch.Generator | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""The training objective, per example: with uniform orderings, an unbiased
        estimate of the mean over orderings of the joint NLL.

        Each example draws an ordering (``draw_orderings``) and a cut $d$ uniformly
        in $0..D-1$ (from ``generator``, on the CPU); the loss is
        $\frac{D}{D-d} \sum_{t > d} -\log p(x_{\pi_t} \mid x_{\pi_{\le d}})$, averaged
        over the batch.

        Args:
            x: ``(B, D)`` values in the support.
            generator: The source of the orderings and cuts.
            context: A conditional model's labels ``(B,)`` (or one for all).

        Returns:
            A scalar in nats per example.
        """
        draw = self.training_draw(x.shape[0], generator)
        return -self.training_log_prob(x, draw, context).mean()

    def evaluation_log_prob(
        self,
        x: torch.Tensor,
        *,
        context: torch.Tensor | None = None,
        num_masks: int | None = None,
        connectivities: Sequence[Any] | None = None,
    ) -> torch.Tensor:
        """The exact joint log-likelihood of the model's own orderings (its first
        ``num_masks``), or of ``connectivities`` (a ``(K, D)`` tensor or list of
        orderings).

        Raises:
            ValueError: If both are given, ``num_masks`` is out of range, or the context
                does not fit (``encode_context``).
        """
        orderings = self._members(None, connectivities)
        if orderings is None and num_masks is not None:
            orderings = self.query_mixture(num_masks)
        elif num_masks is not None:
            raise ValueError("give num_masks or connectivities, not both")
        labels = self.encode_context(context, x.shape[:-1])
        return self._log_prob(self._check(x.reshape(-1, self.dim)), orderings, labels)

    # -- exact chains ----------------------------------------------------------------------
    def _complete(
        self,
        x: torch.Tensor,
        start: torch.Tensor,
        steps: torch.Tensor,
        generator: torch.Generator | None = None,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Draw ``steps`` (variables, in order) into ``x`` ``(B, D)`` in place, from the
        observed set ``start`` ``(D,)`` (and one-hot ``labels`` ``(B, L)``); returns ``x``.

        Revealing a variable adds its first-layer columns to the pre-activations (which
        start from the observed values and the label), and only the next variable's
        parameters are computed.
        """
        head, widths = self.head, self.widths
        inputs = self.inputs(x, start.expand(x.shape[0], self.dim), labels)
        pre = self.first(inputs)
        values, shown, out_weight, out_bias = self._step_weights()
        direct = None if self.direct is None else self._by_variable(self.direct.weight)
        starts = widths.input_starts
        for variable in steps.tolist():
            out = self._hidden(pre) @ out_weight[variable].t() + out_bias[variable]
            if direct is not None:
                out = out + inputs @ direct[variable].t()
            x[:, variable] = head.sample(out, variable, generator)
            encoded = self._encode_one(x[:, variable], variable)
            inputs[:, starts[variable] : starts[variable + 1]] = encoded
            inputs[:, widths.num_inputs + variable] = 1.0
            pre.addmm_(encoded, values[variable]).add_(shown[variable])
        return x

    def _encode_one(self, values: torch.Tensor, variable: int) -> torch.Tensor:
        """Variable ``variable``'s values ``(B,)`` encoded as ``head.encode`` encodes them
        among all: ``(B, W_i)``."""
        if self.widths.is_uniform:
            return self.head.encode(values[:, None], self.dtype)
        out = torch.empty(
            self.widths.inputs[variable], values.shape[0], dtype=self.dtype, device=values.device
        )
        self.head.encode_variable_into(values, out, variable)
        return out.t()

    def _by_variable(self, rows: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        """Output rows ``(sum P_i, ...)`` per variable: ``(D, P, ...)``, or a list of
        ``(P_i, ...)`` for per-variable widths."""
        if self.widths.is_uniform:
            return rows.reshape(self.dim, self.widths.outputs[0], *rows.shape[1:])
        ends = self.widths.output_starts
        return [rows[ends[i] : ends[i + 1]] for i in range(self.dim)]

    def _step_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per variable: its first-layer value columns ``(D, W, H)`` and observed
        column ``(D, H)``, its output rows ``(D, P, H_last)`` and biases ``(D, P)``
        (lists of ``(W_i, H)``, ``(P_i, H_last)`` and ``(P_i,)`` for per-variable widths)."""
        dim, widths = self.dim, self.widths
        weight, inputs = self.first.weight, widths.num_inputs
        if widths.is_uniform:
            width = widths.inputs[0]
            values = weight[:, :inputs].reshape(-1, dim, width).permute(1, 2, 0)
        else:
            starts = widths.input_starts
            values = [weight[:, starts[i] : starts[i + 1]].t() for i in range(dim)]
        return (
            values,
            weight[:, inputs : inputs + dim].t(),
            self._by_variable(self.out.weight),
            self._by_variable(self.out.bias),
        )

    def _score(
        self,
        x: torch.Tensor,
        start: torch.Tensor,
        steps: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``(B,)`` log-probabilities of ``x`` along ``steps`` (variables, in order) from
        the observed set ``start`` ``(D,)``, given one-hot ``labels`` ``(B, L)`` if any.

        Every value is known when scoring, so the direct connections of all steps are
        two products (the inputs at the start, label included, and the earlier steps
        through a strictly lower-triangular map), and each step only updates the first
        layer's pre-activations in place and computes its own variable's outputs.
        """
        if not self.widths.is_uniform:
            return self._score_by_steps(x, start, steps, labels)
        head, dim = self.head, self.dim
        width, params = head.input_width, head.params_per_variable
        batch, length = x.shape[0], len(steps)
        steps = steps.to(x.device)
        encoded = head.encode(x, self.dtype).reshape(batch, dim, width)
        inputs = self.inputs(x, start.expand(batch, dim), labels)
        pre = self.first(inputs)
        values, shown, out_weight, out_bias = self._step_weights()
        out = torch.empty(batch, length, params, dtype=pre.dtype, device=x.device)
        for index, variable in enumerate(steps.tolist()):
            out[:, index] = self._hidden(pre) @ out_weight[variable].t()
            pre.addmm_(encoded[:, variable], values[variable]).add_(shown[variable])
        out += out_bias[steps]
        if self.direct is not None:
            rows = self.direct.weight.reshape(dim, params, -1)[steps]  # (L, P, inputs)
            earlier = torch.ones(length, length, dtype=pre.dtype, device=x.device).tril(-1)
            cross = rows[:, :, : dim * width].reshape(length, params, dim, width)[:, :, steps]
            cross = cross * earlier[:, None, :, None]  # step l reads the steps before it
            out += torch.einsum("bi,lpi->blp", inputs, rows)
            out += torch.einsum("bsw,lpsw->blp", encoded[:, steps], cross)
            shown = rows[:, :, dim * width : dim * width + dim]
            out += (shown[:, :, steps] * earlier[:, None]).sum(2)
        return head._log_prob(out, x[:, steps]).double().sum(1)

    def _score_by_steps(
        self,
        x: torch.Tensor,
        start: torch.Tensor,
        steps: torch.Tensor,
        labels: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """``_score`` for per-variable widths, one step at a time (as ``_complete``).

        Each variable's parameters are put at its own place among all D (the head
        reads variable ``i``'s kind from its position), and the log-probabilities of
        the steps' variables are summed.
        """
        widths, batch = self.widths, x.shape[0]
        inputs = self.inputs(x, start.expand(batch, self.dim), labels)
        pre = self.first(inputs)
        values, shown, out_weight, out_bias = self._step_weights()
        direct = None if self.direct is None else self._by_variable(self.direct.weight)
        encoded = self.head.encode(x, self.dtype)
        params = pre.new_zeros(batch, self.dim, widths.max_outputs)
        starts = widths.input_starts
        for variable in steps.tolist():
            out = self._hidden(pre) @ out_weight[variable].t() + out_bias[variable]
            if direct is not None:
                out = out + inputs @ direct[variable].t()
            params[:, variable, : widths.outputs[variable]] = out
            own = encoded[:, starts[variable] : starts[variable + 1]]
            inputs[:, starts[variable] : starts[variable + 1]] = own
            inputs[:, widths.num_inputs + variable] = 1.0
            pre.addmm_(own, values[variable]).add_(shown[variable])
        per_variable = self.head._log_prob(params, x)
        return per_variable[:, steps.to(x.device)].double().sum(1)

    def _check_count(self, count: int) -> int:
        """``count`` orderings, if they fit: each is ``D`` longs (and a draw's floats)."""
        count = check_positive_int(count, "count")
        check_allocation(count * self.dim * 16, f"{count:,} orderings of {self.dim} variables")
        return count

    def draw_orderings(self, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``count`` orderings ``(count, D)`` of the config's distribution, from ``generator``.

        Example:
            >>> model = OrderlessModel(OrderlessConfig("bernoulli", dim=5, hidden_sizes=(4,)))
            >>> model.draw_orderings(3, torch.Generator().manual_seed(0)).shape
            torch.Size([3, 5])
        """
        count = self._check_count(count)
        if self.config.orderings == "uniform":  # the same law, drawn in one call
            return torch.rand(count, self.dim, generator=generator).argsort(1)
        source = self.config.ordering_source()
        return torch.stack([source.draw_ordering(generator) for _ in range(count)])

    def orderings(self, count: int | None = None, seed: int | None = None) -> torch.Tensor:
        """The query mixture's seeded orderings ``(K, D)``: by default the model's own
        (``config.num_orderings`` of them, seed ``config.ordering_seed``).

        Example:
            >>> model = OrderlessModel(OrderlessConfig("bernoulli", dim=5, hidden_sizes=(4,)))
            >>> torch.equal(model.orderings(2, seed=1), model.orderings(2, seed=1))
            True
        """
        count = self._check_count(self.config.num_orderings if count is None else count)
        source = self.config.ordering_source(seed)
        return torch.stack([source.draw_ordering() for _ in range(count)])

    def _mixture(self, orderings: torch.Tensor | None) -> torch.Tensor:
        """The given orderings, checked, or the model's own."""
        return self.orderings() if orderings is None else _check_orderings(orderings, self.dim)

    def _check(self, x: torch.Tensor, device: torch.device | None = None) -> torch.Tensor:
        """``x`` checked to be ``(B, D)`` values in the support, in the head's
        ``value_dtype`` on ``device`` (the model's by default)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor of values, got {type(x).__name__}")
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (B, D) with D={self.dim}, got {tuple(x.shape)}")
        self.head.check_values(x)
        device = self.device if device is None else device
        return x.to(device=device, dtype=self.head.value_dtype)

    def _part(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        orderings: torch.Tensor | None,
        labels: torch.Tensor | None,
        *,
        missing: bool,
    ) -> torch.Tensor:
        """``(K, B)`` log-probabilities, under each ordering with the observed variables
        moved first, of the missing values given the observed ones (``missing``) or of
        the observed values (given the one-hot ``labels`` of a conditional model)."""
        orderings = self._mixture(orderings)
        result = torch.zeros(len(orderings), x.shape[0], dtype=torch.float64, device=x.device)
        nothing = torch.zeros(self.dim, dtype=torch.bool, device=x.device)
        with torch.no_grad():
            for pattern, rows in group_by_pattern(observed):
                shown = pattern.cpu()
                for k, ordering in enumerate(orderings):
                    if missing:
                        steps, start = ordering[~shown[ordering]], pattern
                    else:
                        steps, start = ordering[shown[ordering]], nothing
                    given = None if labels is None else labels[rows]
                    result[k, rows] = self._score(x[rows], start, steps, given)
        return result

    # -- queries ---------------------------------------------------------------------------
    def log_prob(
        self,
        x: torch.Tensor,
        orderings: torch.Tensor | None = None,
        *,
        connectivities: Sequence[torch.Tensor] | torch.Tensor | None = None,
        context: torch.Tensor | None = None,
        validate: bool | None = None,
    ) -> torch.Tensor:
        r"""$\log \frac1K \sum_k p_{\pi_k}(x)$ per example, exactly.

        Args:
            x: ``(B, D)`` values in the support.
            orderings: ``(K, D)`` orderings of the mixture (the model's own by default).
            context: A conditional model's labels: ``(B,)`` integers (one per example)
                or ``()`` (one for all), in ``0..num_labels-1``; ``None`` otherwise.

        Returns:
            ``(B,)`` float64 log-probabilities in nats.

        Raises:
            TypeError: On a context of the wrong type or dtype (``encode_context``).
            ValueError: On values outside the support, bad orderings, or a context that
                is missing, unexpected, of the wrong shape or out of range.
        """
        orderings = self._members(orderings, connectivities)
        x = self._check(x)
        return self._log_prob(x, orderings, self.encode_context(context, x.shape[:1]))

    def _log_prob(
        self, x: torch.Tensor, orderings: torch.Tensor | None, labels: torch.Tensor | None
    ) -> torch.Tensor:
        """``log_prob`` of checked values and encoded labels."""
        nothing = torch.zeros(self.dim, dtype=torch.bool, device=x.device)
        with torch.no_grad():
            per = torch.stack(
                [self._score(x, nothing, order, labels) for order in self._mixture(orderings)]
            )
        return log_mean_exp(per)

    def conditional_log_prob(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        orderings: torch.Tensor | None = None,
        *,
        connectivities: Sequence[torch.Tensor] | torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""$\log \frac1K \sum_k p_k(x_\text{missing} \mid x_\text{observed})$ per example.

        Args:
            x: ``(B, D)`` values in the support, missing ones included (scored).
            observed: ``(B, D)`` or ``(D,)`` bool; every example must miss a variable.
            orderings: ``(K, D)`` base orderings (the model's own by default); each
                moves the observed variables first.
            context: A conditional model's labels: ``(B,)`` integers (one per example)
                or ``()`` (one for all), in ``0..num_labels-1``; ``None`` otherwise.

        Returns:
            ``(B,)`` float64 log-probabilities in nats.
        """
        orderings = self._members(orderings, connectivities)
        x = self._check(x)
        observed = check_observed(x, observed, self.dim, need_missing=True)
        labels = self.encode_context(context, x.shape[:1])
        return log_mean_exp(self._part(x, observed, orderings, labels, missing=True))

    def marginal_log_prob(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        orderings: torch.Tensor | None = None,
        *,
        connectivities: Sequence[torch.Tensor] | torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        r"""$\log \frac1K \sum_k p_k(x_\text{observed})$ per example (missing values ignored).

        Args:
            x: ``(B, D)`` values; the missing ones are not read.
            observed: ``(B, D)`` or ``(D,)`` bool; every example must observe a variable.
            orderings: ``(K, D)`` base orderings (the model's own by default).
            context: A conditional model's labels: ``(B,)`` integers (one per example)
                or ``()`` (one for all), in ``0..num_labels-1``; ``None`` otherwise.

        Returns:
            ``(B,)`` float64 log-probabilities in nats.
        """
        orderings = self._members(orderings, connectivities)
        observed = check_observed(x, observed, self.dim, need_observed=True)
        x = self._check(x.masked_fill(~observed, self.head.placeholder))
        labels = self.encode_context(context, x.shape[:1])
        return log_mean_exp(self._part(x, observed, orderings, labels, missing=False))

    def complete(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        orderings: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        connectivities: Sequence[torch.Tensor] | torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Exact samples of the conditional mixture: each example draws one of the
        orderings uniformly, then its missing values in that ordering.

        Args:
            x: ``(B, D)`` values; only the observed ones are read.
            observed: ``(B, D)`` or ``(D,)`` bool; every example must miss a variable.
            orderings: ``(K, D)`` base orderings (the model's own by default).
            generator: The source of the draws (on the CPU).
            context: A conditional model's labels: ``(B,)`` integers (one per example)
                or ``()`` (one for all), in ``0..num_labels-1``; ``None`` otherwise.

        Returns:
            ``(B, D)`` values (``value_dtype``): the observed values kept, the missing ones drawn.
        """
        orderings = self._mixture(self._members(orderings, connectivities))
        observed = check_observed(x, observed, self.dim, need_missing=True)
        x = self._check(x.masked_fill(~observed, self.head.placeholder)).clone()
        labels = self.encode_context(context, x.shape[:1])
        return self._complete_rows(x, observed, orderings, generator, labels)

    def _complete_rows(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        orderings: torch.Tensor,
        generator: torch.Generator | None,
        labels: torch.Tensor | None,
    ) -> torch.Tensor:
        """``complete`` of checked values (a copy, drawn into in place), a checked
        ``(B, D)`` pattern and encoded labels."""
        pick = torch.randint(0, len(orderings), (x.shape[0],), generator=generator)
        keys = torch.cat([observed.cpu(), pick[:, None]], dim=1)
        groups, inverse = torch.unique(keys, dim=0, return_inverse=True)
        with torch.no_grad():
            for g, key in enumerate(groups):
                rows = (inverse == g).nonzero().squeeze(1).to(x.device)
                pattern, ordering = key[:-1].bool(), orderings[int(key[-1])]
                unseen = ordering[~pattern[ordering]]
                given = None if labels is None else labels[rows]
                x[rows] = self._complete(x[rows], pattern.to(x.device), unseen, generator, given)
        return x

    def sample(
        self,
        sample_shape: int | Sequence[int] = (),
        orderings: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        *,
        connectivities: Sequence[torch.Tensor] | torch.Tensor | None = None,
        context: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Exact samples ``(*sample_shape, D)`` of the mixture of ``log_prob``: each draws
        one of the orderings uniformly, then every variable in that ordering (a
        completion with nothing observed).

        Args:
            sample_shape: The samples' batch shape.
            orderings: ``(K, D)`` orderings of the mixture (the model's own by default).
            generator: The source of the draws (on the CPU).
            connectivities: Another name of ``orderings``.
            context: A conditional model's labels: of shape ``sample_shape`` (one per
                sample) or ``()`` (one for all).

        Example:
            >>> model = OrderlessModel(OrderlessConfig("bernoulli", dim=5, hidden_sizes=(4,)))
            >>> model.sample(3, generator=torch.Generator().manual_seed(0)).shape
            torch.Size([3, 5])
        """
        shape = check_sample_shape(sample_shape)
        orderings = self._mixture(self._members(orderings, connectivities))
        count = math.prod(shape)
        self.check_sample_size(count)
        labels = self.encode_context(context, shape)
        blank = self.head.blank(count, self.device)
        if count == 0:
            return blank.reshape(*shape, self.dim)
        nothing = torch.zeros(count, self.dim, dtype=torch.bool, device=self.device)
        samples = self._complete_rows(blank, nothing, orderings, generator, labels)
        return samples.reshape(*shape, self.dim)

    def _members(
        self,
        orderings: torch.Tensor | None,
        connectivities: Sequence[torch.Tensor] | torch.Tensor | None,
    ) -> torch.Tensor | None:
        """The orderings of a query, given by either name (``connectivities`` is the name
        every family's queries share)."""
        if connectivities is None:
            return orderings
        if orderings is not None:
            raise ValueError("give orderings or connectivities (the same thing here), not both")
        if isinstance(connectivities, torch.Tensor):
            return connectivities
        return torch.stack([torch.as_tensor(o) for o in connectivities])

    def check_sample_size(self, num_samples: int) -> None:
        """Refuse to draw (or complete) ``num_samples`` rows at once if they cannot fit:
        each holds its values, the network's inputs and hidden units and its outputs.

        Raises:
            ResourceError: If they would need more than the machine's memory allows.
        """
        inputs = self.first.in_features
        row = 16 * self.dim + 4 * (inputs + sum(self.config.hidden_sizes) + self.out.out_features)
        check_allocation(2 * num_samples * row, f"{num_samples:,} samples of {self.dim} variables")

    @property
    def num_values(self) -> int:
        """Values per variable K (the head's)."""
        return self.head.num_values

    @property
    def num_masks(self) -> int:
        """The orderings of the model's own query mixture (``config.num_orderings``)."""
        return self.config.num_orderings

    def query_mixture(
        self, num_masks: int | None = None, draw: int | None = None, seed: int = 0
    ) -> torch.Tensor:
        """The orderings a query mixes: the first ``num_masks`` of the model's own, or
        ``draw`` orderings drawn at inference from the training distribution, seeded.

        Raises:
            ValueError: If both are given, or ``num_masks`` is out of range.
        """
        if draw is not None:
            if num_masks is not None:
                raise ValueError("give num_masks or draw_orderings, not both")
            return self.orderings(check_positive_int(draw, "draw_orderings"), seed)
        own = self.orderings()
        count = len(own) if num_masks is None else num_masks
        if not isinstance(count, int) or not 1 <= count <= len(own):
            raise ValueError(f"num_masks must be in 1..{len(own)} for this model, got {count!r}")
        return own[:count]


def _check_orderings(orderings: torch.Tensor, dim: int) -> torch.Tensor:
    if not isinstance(orderings, torch.Tensor):
        raise TypeError(f"orderings must be a (K, D) tensor, got {type(orderings).__name__}")
    if orderings.ndim == 1:
        orderings = orderings[None]
    if orderings.ndim != 2 or orderings.shape[1] != dim or orderings.shape[0] == 0:
        raise ValueError(
            f"orderings must have shape (K, {dim}) with K >= 1, got {tuple(orderings.shape)}"
        )
    orderings = orderings.cpu().long()
    if not torch.equal(orderings.sort(1).values, torch.arange(dim).expand_as(orderings)):
        raise ValueError(f"each ordering must be a permutation of 0..{dim - 1}")
    return orderings


FAMILIES.register("orderless", OrderlessModel)
