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
import os
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import torch
from torch import nn

from densitykit.checkpoint import load_object, save_object
from densitykit.checks import check_positive_int, check_seed
from densitykit.devices import resolve_device
from densitykit.errors import CheckpointError, TrainingError
from densitykit.heads import HEADS, default_num_values
from densitykit.masks import ConnectivitySampler
from densitykit.memory import check_allocation
from densitykit.numerics import log_mean_exp
from densitykit.optim import WeightAverage, make_optimizer, scheduled_lr
from densitykit.queries import check_observed, group_by_pattern
from densitykit.train import Callback, TrainConfig, TrainResult, TrainState, stop_reason

__all__ = [
    "OrderlessConfig",
    "OrderlessModel",
    "fit_orderless",
    "load_orderless",
    "save_orderless",
]

FORMAT = "densitykit-orderless"


@dataclass(frozen=True)
class OrderlessConfig:
    """Everything that builds an [`OrderlessModel`][densitykit.orderless.OrderlessModel]
    (saved beside its weights).

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
    """

    head: str
    dim: int
    num_values: int | None = None
    head_options: dict[str, Any] = field(default_factory=dict)
    hidden_sizes: tuple[int, ...] = (500,)
    direct_connections: bool = True
    num_orderings: int = 1
    ordering_seed: int = 0
    orderings: str = "uniform"
    ordering_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.head, str):
            raise TypeError(f"head must be a registered head name, got {type(self.head).__name__}")
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
            self.num_orderings * self.dim * 16,
            f"num_orderings={self.num_orderings:,} orderings of {self.dim} variables",
        )
        check_seed(self.ordering_seed, "ordering_seed")
        options = dict(self.ordering_options)
        if "image_shape" in options and not isinstance(options["image_shape"], str):
            options["image_shape"] = [int(size) for size in options["image_shape"]]
        object.__setattr__(self, "ordering_options", options)
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


class OrderlessModel(nn.Module):
    r"""A density over ``D`` variables that answers every conditional with one network.

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

    def __init__(self, config: OrderlessConfig) -> None:
        super().__init__()
        if not isinstance(config, OrderlessConfig):
            raise TypeError(f"config must be an OrderlessConfig, got {type(config).__name__}")
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
        dim, width, params = head.dim, head.input_width, head.params_per_variable
        inputs = dim * width + dim  # the masked values, then the observed indicator
        sizes = config.hidden_sizes
        self.first = nn.Linear(inputs, sizes[0])
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        self.out = nn.Linear(sizes[-1], dim * params)
        self.direct = (
            nn.Linear(inputs, dim * params, bias=False) if config.direct_connections else None
        )

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
    def dtype(self) -> torch.dtype:
        """The parameters' dtype."""
        return self.out.weight.dtype

    # -- the network -----------------------------------------------------------------------
    def inputs(self, x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """The network's input ``(B, D * input_width + D)``: the encoded values with the
        missing ones zeroed, then the observed indicator (``observed`` ``(B, D)`` bool)."""
        width = self.head.input_width
        encoded = self.head.encode(x, self.dtype)
        shown = observed.to(self.dtype)
        return torch.cat([encoded * shown.repeat_interleave(width, dim=1), shown], dim=1)

    def _hidden(self, pre: torch.Tensor) -> torch.Tensor:
        h = torch.relu(pre)
        for layer in self.hidden:
            h = torch.relu(layer(h))
        return h

    def forward(self, x: torch.Tensor, observed: torch.Tensor) -> torch.Tensor:
        """The parameters ``(B, D, P)`` of every variable given the observed ones.

        The missing values of ``x`` ``(B, D)`` (in the support) do not change the
        result; an observed variable's own parameters are computed too but mean nothing.
        """
        inputs = self.inputs(x, observed)
        out = self.out(self._hidden(self.first(inputs)))
        if self.direct is not None:
            out = out + self.direct(inputs)
        return out.reshape(x.shape[0], self.dim, self.head.params_per_variable)

    # -- training --------------------------------------------------------------------------
    def training_loss(
        self, x: torch.Tensor, generator: torch.Generator | None = None
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

        Returns:
            A scalar in nats per example.
        """
        batch, dim = x.shape
        cut = torch.randint(0, dim, (batch, 1), generator=generator)
        orderings = self.draw_orderings(batch, generator)
        ranks = torch.empty_like(orderings).scatter_(
            1, orderings, torch.arange(dim).expand(batch, dim)
        )
        observed = (ranks < cut).to(x.device)
        params = self(x, observed)
        nll = -self.head._log_prob(params, x).masked_fill(observed, 0).sum(1)
        weight = (dim / (dim - cut)).to(device=x.device, dtype=nll.dtype)[:, 0]
        return (nll * weight).mean()

    # -- exact chains ----------------------------------------------------------------------
    def _complete(
        self,
        x: torch.Tensor,
        start: torch.Tensor,
        steps: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw ``steps`` (variables, in order) into ``x`` ``(B, D)`` in place, from the
        observed set ``start`` ``(D,)``; returns ``x``.

        Revealing a variable adds its first-layer columns to the pre-activations, and
        only the next variable's parameters are computed.
        """
        head, dim, width = self.head, self.dim, self.head.input_width
        inputs = self.inputs(x, start.expand(x.shape[0], dim))
        pre = self.first(inputs)
        values, shown, out_weight, out_bias = self._step_weights()
        params = self.head.params_per_variable
        direct = None if self.direct is None else self.direct.weight.reshape(dim, params, -1)
        for variable in steps.tolist():
            out = self._hidden(pre) @ out_weight[variable].t() + out_bias[variable]
            if direct is not None:
                out = out + inputs @ direct[variable].t()
            x[:, variable] = head.sample(out, variable, generator)
            encoded = head.encode(x[:, variable : variable + 1], self.dtype)
            inputs[:, variable * width : (variable + 1) * width] = encoded
            inputs[:, dim * width + variable] = 1.0
            pre.addmm_(encoded, values[variable]).add_(shown[variable])
        return x

    def _step_weights(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per variable: its first-layer value columns ``(D, W, H)`` and observed
        column ``(D, H)``, its output rows ``(D, P, H_last)`` and biases ``(D, P)``."""
        dim, width = self.dim, self.head.input_width
        params = self.head.params_per_variable
        weight = self.first.weight
        values = weight[:, : dim * width].reshape(-1, dim, width).permute(1, 2, 0)
        return (
            values,
            weight[:, dim * width :].t(),
            self.out.weight.reshape(dim, params, -1),
            self.out.bias.reshape(dim, params),
        )

    def _score(self, x: torch.Tensor, start: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """``(B,)`` log-probabilities of ``x`` along ``steps`` (variables, in order) from
        the observed set ``start`` ``(D,)``.

        Every value is known when scoring, so the direct connections of all steps are
        two products (the inputs observed at the start, and the earlier steps through a
        strictly lower-triangular map), and each step only updates the first layer's
        pre-activations in place and computes its own variable's outputs.
        """
        head, dim = self.head, self.dim
        width, params = head.input_width, head.params_per_variable
        batch, length = x.shape[0], len(steps)
        steps = steps.to(x.device)
        encoded = head.encode(x, self.dtype).reshape(batch, dim, width)
        inputs = self.inputs(x, start.expand(batch, dim))
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
            out += (rows[:, :, dim * width :][:, :, steps] * earlier[:, None]).sum(2)
        return head._log_prob(out, x[:, steps]).double().sum(1)

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
        self.head.check_support(x)
        device = self.device if device is None else device
        return x.to(device=device, dtype=self.head.value_dtype)

    def _part(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        orderings: torch.Tensor | None,
        *,
        missing: bool,
    ) -> torch.Tensor:
        """``(K, B)`` log-probabilities, under each ordering with the observed variables
        moved first, of the missing values given the observed ones (``missing``) or of
        the observed values."""
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
                    result[k, rows] = self._score(x[rows], start, steps)
        return result

    # -- queries ---------------------------------------------------------------------------
    def log_prob(self, x: torch.Tensor, orderings: torch.Tensor | None = None) -> torch.Tensor:
        r"""$\log \frac1K \sum_k p_{\pi_k}(x)$ per example, exactly.

        Args:
            x: ``(B, D)`` values in the support.
            orderings: ``(K, D)`` orderings of the mixture (the model's own by default).

        Returns:
            ``(B,)`` float64 log-probabilities in nats.
        """
        x = self._check(x)
        nothing = torch.zeros(self.dim, dtype=torch.bool, device=x.device)
        with torch.no_grad():
            per = torch.stack(
                [self._score(x, nothing, order) for order in self._mixture(orderings)]
            )
        return log_mean_exp(per)

    def conditional_log_prob(
        self, x: torch.Tensor, observed: torch.Tensor, orderings: torch.Tensor | None = None
    ) -> torch.Tensor:
        r"""$\log \frac1K \sum_k p_k(x_\text{missing} \mid x_\text{observed})$ per example.

        Args:
            x: ``(B, D)`` values in the support, missing ones included (scored).
            observed: ``(B, D)`` or ``(D,)`` bool; every example must miss a variable.
            orderings: ``(K, D)`` base orderings (the model's own by default); each
                moves the observed variables first.

        Returns:
            ``(B,)`` float64 log-probabilities in nats.
        """
        x = self._check(x)
        observed = check_observed(x, observed, self.dim, need_missing=True)
        return log_mean_exp(self._part(x, observed, orderings, missing=True))

    def marginal_log_prob(
        self, x: torch.Tensor, observed: torch.Tensor, orderings: torch.Tensor | None = None
    ) -> torch.Tensor:
        r"""$\log \frac1K \sum_k p_k(x_\text{observed})$ per example (missing values ignored).

        Args:
            x: ``(B, D)`` values; the missing ones are not read.
            observed: ``(B, D)`` or ``(D,)`` bool; every example must observe a variable.
            orderings: ``(K, D)`` base orderings (the model's own by default).

        Returns:
            ``(B,)`` float64 log-probabilities in nats.
        """
        observed = check_observed(x, observed, self.dim, need_observed=True)
        x = self._check(x.masked_fill(~observed, self.head.placeholder))
        return log_mean_exp(self._part(x, observed, orderings, missing=False))

    def complete(
        self,
        x: torch.Tensor,
        observed: torch.Tensor,
        orderings: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Exact samples of the conditional mixture: each example draws one of the
        orderings uniformly, then its missing values in that ordering.

        Args:
            x: ``(B, D)`` values; only the observed ones are read.
            observed: ``(B, D)`` or ``(D,)`` bool; every example must miss a variable.
            orderings: ``(K, D)`` base orderings (the model's own by default).
            generator: The source of the draws (on the CPU).

        Returns:
            ``(B, D)`` values (``value_dtype``): the observed values kept, the missing ones drawn.
        """
        observed = check_observed(x, observed, self.dim, need_missing=True)
        x = self._check(x.masked_fill(~observed, self.head.placeholder)).clone()
        orderings = self._mixture(orderings)
        pick = torch.randint(0, len(orderings), (x.shape[0],), generator=generator)
        keys = torch.cat([observed.cpu(), pick[:, None]], dim=1)
        groups, inverse = torch.unique(keys, dim=0, return_inverse=True)
        with torch.no_grad():
            for g, key in enumerate(groups):
                rows = (inverse == g).nonzero().squeeze(1).to(x.device)
                pattern, ordering = key[:-1].bool(), orderings[int(key[-1])]
                unseen = ordering[~pattern[ordering]]
                x[rows] = self._complete(x[rows], pattern.to(x.device), unseen, generator)
        return x

    def sample(
        self,
        num_samples: int,
        orderings: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Exact samples ``(num_samples, D)`` of the mixture of ``log_prob``: each draws
        one of the orderings uniformly, then every variable in that ordering (a
        completion with nothing observed).

        Example:
            >>> model = OrderlessModel(OrderlessConfig("bernoulli", dim=5, hidden_sizes=(4,)))
            >>> model.sample(3, generator=torch.Generator().manual_seed(0)).shape
            torch.Size([3, 5])
        """
        num_samples = check_positive_int(num_samples, "num_samples")
        blank = self.head.blank(num_samples, self.device)
        nothing = torch.zeros(self.dim, dtype=torch.bool, device=self.device)
        return self.complete(blank, nothing, orderings, generator)


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


def fit_orderless(
    model: OrderlessModel,
    train: torch.Tensor,
    val: torch.Tensor,
    config: TrainConfig | None = None,
    *,
    val_examples: int | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train an orderless model on its
    [`training_loss`][densitykit.orderless.OrderlessModel.training_loss].

    The loop of [`densitykit.train.fit`][densitykit.train.fit] for this model: a
    seeded shuffle per epoch, ``config``'s optimizer, learning-rate schedule, weight
    average, gradient clipping, early stopping and time budget. The validation NLL
    is exact: the joint NLL of the model's own orderings
    (``model.config.num_orderings``). The orderings and cuts of training come from a
    generator seeded with ``config.seed + 1``. Runs are not resumable.

    Args:
        model: The model (moved to ``config.device``).
        train: ``(N, D)`` training values.
        val: ``(M, D)`` validation values.
        config: Hyperparameters (``eval_masks``, ``mask_every``, ``precision``
            other than fp32 do not apply and are refused if set).
        val_examples: Validate on the first this many of ``val`` only (all by default).
        callbacks: Hooks called as [`fit`][densitykit.train.fit] calls them
            (progress, logging).

    Returns:
        The [`TrainResult`][densitykit.train.TrainResult] (the best weights restored).

    Raises:
        ValueError: On empty data, values outside the support, or settings that
            do not apply.
        TrainingError: If the loss stops being finite.

    Example:
        >>> data = torch.randint(0, 2, (64, 4))
        >>> model = OrderlessModel(OrderlessConfig("bernoulli", dim=4, hidden_sizes=(8,)))
        >>> result = fit_orderless(model, data, data[:16], TrainConfig(epochs=2, batch_size=16))
        >>> [record["epoch"] for record in result.history]
        [1, 2]
    """
    config = config or TrainConfig()
    if config.precision != "fp32" or config.eval_masks is not None:
        raise ValueError(
            "an orderless model trains in fp32 and validates with its own orderings; got "
            f"precision={config.precision!r}, eval_masks={config.eval_masks!r}"
        )
    device = resolve_device(config.device)
    model.to(device)
    cpu = torch.device("cpu")  # batches move to the device one at a time
    train, val = model._check(train, cpu), model._check(val, cpu)
    if len(train) == 0 or len(val) == 0:
        raise ValueError("the training and validation sets must not be empty")
    if val_examples is not None:
        val = val[: check_positive_int(val_examples, "val_examples")]
    optimizer = make_optimizer(
        model.parameters(), name=config.optimizer, lr=config.lr, weight_decay=config.weight_decay
    )
    average = None if config.ema_decay is None else WeightAverage(model, config.ema_decay)
    shuffle = torch.Generator().manual_seed(config.seed)
    draws = torch.Generator().manual_seed(config.seed + 1)
    state = TrainState()
    batches = math.ceil(len(train) / config.batch_size)
    for callback in callbacks:
        callback.on_train_begin(state, batches)
    started = time.perf_counter()
    while state.epoch < config.epochs and not state.stopped_early:
        epoch_started, total = time.perf_counter(), 0.0
        model.train()
        for indices in torch.randperm(len(train), generator=shuffle).split(config.batch_size):
            lr = scheduled_lr(config.lr, config.lr_schedule, state.step, config.epochs * batches)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = model.training_loss(train[indices].to(device), draws)
            value = loss.item()
            if not math.isfinite(value):
                raise TrainingError(
                    f"the training loss became {value} at epoch {state.epoch + 1}, step "
                    f"{state.step + 1}; lower the learning rate"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            if average is not None:
                average.update(model)
            state.step += 1
            total += value * len(indices)
            for callback in callbacks:
                callback.on_batch_end(state, value)
        state.epoch += 1
        model.eval()
        with average.applied(model) if average is not None else nullcontext():
            val_nll = sum(
                float(-model.log_prob(val[rows].to(device)).sum())
                for rows in torch.arange(len(val)).split(config.eval_batch_size)
            ) / len(val)
            if not math.isfinite(val_nll):
                raise TrainingError(
                    f"the validation NLL became {val_nll} in epoch {state.epoch}; lower the "
                    "learning rate (a model with a non-finite validation NLL is never kept)"
                )
            improved = val_nll < state.best_val_nll
            if improved:
                state.best_val_nll, state.best_epoch = val_nll, state.epoch
                state.best_state = {
                    k: v.detach().cpu().clone() for k, v in model.state_dict().items()
                }
        state.epochs_without_improvement = 0 if improved else state.epochs_without_improvement + 1
        if config.patience is not None and state.epochs_without_improvement >= config.patience:
            state.stopped_early = True
        out_of_time = (
            config.time_budget_minutes is not None
            and time.perf_counter() - started > 60.0 * config.time_budget_minutes
        )
        record = {
            "epoch": state.epoch,
            "step": state.step,
            "train_nll": total / len(train),
            "val_nll": val_nll,
            "best_val_nll": state.best_val_nll,
            "improved": improved,
            "lr": lr,
            "stop_reason": stop_reason(state, config, out_of_time),
            "seconds": time.perf_counter() - epoch_started,
        }
        state.history.append(record)
        for callback in callbacks:
            callback.on_epoch_end(state, record)
        if out_of_time:
            break
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    result = TrainResult.from_state(state, time.perf_counter() - started)
    for callback in callbacks:
        callback.on_train_end(result)
    return result


def save_orderless(path: str | os.PathLike, model: OrderlessModel) -> None:
    """Save a model's config and weights to ``path`` (atomically; a file of tensors and
    plain data, loaded without running code).

    Example:
        >>> import os, tempfile
        >>> model = OrderlessModel(OrderlessConfig("bernoulli", dim=3, hidden_sizes=(4,)))
        >>> path = os.path.join(tempfile.mkdtemp(), "orderless.pt")
        >>> save_orderless(path, model)
        >>> load_orderless(path).config == model.config
        True
    """
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_object(path, {"format": FORMAT, "config": model.config.to_dict(), "state_dict": state})


def load_orderless(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> OrderlessModel:
    """Load a model written by [`save_orderless`][densitykit.orderless.save_orderless].

    Raises:
        CheckpointError: If the file is missing, unsafe, corrupted, not an orderless
            model, or its weights do not fit its config.
    """
    data = load_object(path, map_location)
    if data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an orderless model (format {data.get('format')!r})")
    try:
        config = OrderlessConfig.from_dict(data["config"])
        _check_shapes(path, config, data["state_dict"])
        model = OrderlessModel(config)
        model.load_state_dict(data["state_dict"])
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        detail = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: cannot rebuild the orderless model ({detail})") from None
    return model.to(map_location)


def _check_shapes(path: str | os.PathLike, config: OrderlessConfig, state: Any) -> None:
    """Refuse a file whose config asks for other weights than it holds, before building.

    The config's model is built on the meta device (shapes, no memory), so a small
    file cannot make the loader allocate a large model.
    """
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: the state_dict is not a dict of tensors")
    with torch.device("meta"):
        expected = {k: v.shape for k, v in OrderlessModel(config).state_dict().items()}
    stored = {k: v.shape for k, v in state.items()}
    if stored != expected:
        wanted = sum(math.prod(shape) for shape in expected.values())
        held = sum(math.prod(shape) for shape in stored.values())
        held_text = f"{held:,}" if held != wanted else "tensors of other names or shapes"
        raise CheckpointError(
            f"{path}: its config describes a model of {wanted:,} weights, but the file holds "
            f"{held_text}; the config or the weights were changed"
        )
