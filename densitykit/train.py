"""The training loop shared by the CLI and the Python API.

[`fit`][densitykit.train.fit] trains with Adam (or another of
[`OPTIMIZERS`][densitykit.optim.OPTIMIZERS], on a learning-rate schedule) on
mini-batches, cycles the masks of a multi-mask model on a schedule, evaluates the
validation NLL of the mask mixture (of the averaged weights, with ``ema_decay``) after
every epoch, stops early with patience or a wall-time budget and restores the best
weights. It prints nothing: progress, metrics logs and checkpoints are
[`Callback`][densitykit.train.Callback]s. The whole loop state lives in a
[`TrainState`][densitykit.train.TrainState] so a run can resume exactly where it
stopped.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from densitykit.checks import (
    check_choice,
    check_int,
    check_optional_int,
    check_positive_int,
    check_seed,
)
from densitykit.devices import PRECISIONS, autocast, check_device_name, resolve_device
from densitykit.distributed import (
    BatchLogProb,
    DistributedContext,
    all_reduce_sum,
    broadcast_from_main,
    check_same_on_all_ranks,
    current,
    fingerprint,
    own_gpu,
    replicate,
    shard,
    sharded_loss,
)
from densitykit.errors import TrainingError
from densitykit.family import DensityModel
from densitykit.optim import (
    LR_SCHEDULES,
    OPTIMIZERS,
    WeightAverage,
    make_optimizer,
    optimizer_state_mismatch,
    scheduled_lr,
)

__all__ = [
    "Callback",
    "TrainConfig",
    "TrainResult",
    "TrainState",
    "evaluate",
    "fit",
]


@dataclass
class TrainConfig:
    """Hyperparameters of a training run (saved in the run folder's ``config.json``).

    Attributes:
        epochs: Maximum number of passes over the training set.
        batch_size: Examples per optimizer step (the global batch across processes).
        lr: Learning rate (the starting one, under a schedule).
        weight_decay: Weight decay (L2 for ``adam`` and ``adagrad``, decoupled for ``adamw``).
        patience: Epochs without validation improvement before stopping; ``None`` never stops.
        seed: Seed of the shuffling (and, through the CLI, of the initial weights).
        device: ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda"`` / ``"cuda:N"``.
        precision: ``"fp32"``, or ``"bf16"`` / ``"fp16"`` autocast on CUDA (likelihoods
            are always computed in float32).
        mask_every: Steps between mask changes of a multi-mask model (cycling through
            the masks); 0 keeps mask 0.
        eval_batch_size: Batch size of evaluation.
        eval_masks: Masks in the evaluation mixture (``None``: all of them).
        grad_clip: Clip the gradient norm to this value, if set.
        optimizer: One of [`OPTIMIZERS`][densitykit.optim.OPTIMIZERS]: ``"adam"``,
            ``"adamw"`` or ``"adagrad"``.
        lr_schedule: One of [`LR_SCHEDULES`][densitykit.optim.LR_SCHEDULES]:
            ``"constant"``, or ``"cosine"`` annealing from ``lr`` towards 0 over
            ``epochs`` (step by step; a run resumed with more epochs stretches it).
        ema_decay: Keep an exponential moving average of the weights with this decay
            (e.g. 0.999; see [`WeightAverage`][densitykit.optim.WeightAverage]); ``None``
            keeps none. With it, the validation NLL, early stopping, the best weights
            restored at the end (hence the saved model and the test NLL) are those of
            the averaged weights; training steps move the live weights, which the
            resumable state keeps beside the average.
        time_budget_minutes: Stop after the first epoch that ends more than this many
            minutes of wall time after the call began (each call to ``fit``, so a
            resumed run gets the budget again); ``None`` has no budget. The stop is
            recorded in the history (``stop_reason``).
        data_init: Start a new run's model at its training data's marginals (see
            [`DensityModel.initialize_from_data`][densitykit.family.DensityModel.initialize_from_data]:
            the Gaussian heads and the MAF); read by the run workflow when it builds the
            model, not by ``fit``, which trains the model it is given.
    """

    epochs: int = 20
    batch_size: int = 100
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int | None = 5
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"
    mask_every: int = 1
    eval_batch_size: int = 1000
    eval_masks: int | None = None
    grad_clip: float | None = None
    optimizer: str = "adam"
    lr_schedule: str = "constant"
    ema_decay: float | None = None
    time_budget_minutes: float | None = None
    data_init: bool = True

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "eval_batch_size"):
            setattr(self, name, check_positive_int(getattr(self, name), name))
        self.seed = check_seed(self.seed)
        self.patience = check_optional_int(self.patience, "patience", minimum=1)
        self.mask_every = check_int(self.mask_every, "mask_every", minimum=0)
        self.eval_masks = check_optional_int(self.eval_masks, "eval_masks", minimum=1)
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be positive or None, got {self.grad_clip!r}")
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        check_choice(self.lr_schedule, "lr_schedule", LR_SCHEDULES)
        if self.ema_decay is not None and not (
            isinstance(self.ema_decay, (int, float)) and 0.0 < self.ema_decay < 1.0
        ):
            raise ValueError(f"ema_decay must be in (0, 1) or None, got {self.ema_decay!r}")
        if not isinstance(self.data_init, bool):
            raise TypeError(f"data_init must be a bool, got {self.data_init!r}")
        if self.time_budget_minutes is not None and not (
            isinstance(self.time_budget_minutes, (int, float)) and self.time_budget_minutes > 0
        ):
            raise ValueError(
                f"time_budget_minutes must be a positive number or None, "
                f"got {self.time_budget_minutes!r}"
            )
        # Only the name: a run trained on CUDA stays readable where there is none.
        check_device_name(self.device)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Rebuild from ``to_dict`` output; unknown keys raise ``ValueError``."""
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown train config keys {unknown}")
        return cls(**data)


@dataclass
class TrainState:
    """Everything the loop needs to continue a run exactly.

    Attributes:
        epoch: Epochs completed.
        step: Optimizer steps taken.
        history: One record per completed epoch (``epoch``, ``train_nll``, ``val_nll``,
            ``lr`` of its last step, ``stop_reason``: ``None`` or why training stopped after
            it, ``"patience"``, ``"time budget"`` or ``"epochs"``, ...).
        best_val_nll: Best validation NLL so far.
        best_epoch: Epoch of the best validation NLL (0 before any).
        best_state: Model weights at the best epoch (the averaged ones with ``ema_decay``).
        epochs_without_improvement: For early stopping.
        stopped_early: Whether patience ran out.
        family_state: What the model's family needs to resume exactly
            ([`training_state`][densitykit.family.DensityModel.training_state]: the
            MADE's active mask; a state that is a buffer is saved with ``model``).
        optimizer: The optimizer's state dict.
        shuffle_rng: State of the shuffling generator.
        draw_rng: State of the generator the model's family draws each step from
            ([`training_draw`][densitykit.family.DensityModel.training_draw]: the
            orderless model's orderings and cuts).
        model: Current (live, not averaged) model weights.
        weight_average: The [`WeightAverage`][densitykit.optim.WeightAverage]'s state
            with ``ema_decay``, else ``None``.
        device_rng: State of the training device's global generator (what dropout
            draws from), restored on resume.
    """

    epoch: int = 0
    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_val_nll: float = math.inf
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    epochs_without_improvement: int = 0
    stopped_early: bool = False
    family_state: dict[str, Any] = field(default_factory=dict)
    optimizer: dict[str, Any] | None = None
    shuffle_rng: torch.Tensor | None = None
    draw_rng: torch.Tensor | None = None
    model: dict[str, torch.Tensor] | None = None
    weight_average: dict[str, Any] | None = None
    device_rng: torch.Tensor | None = None

    def to_dict(self) -> dict[str, Any]:
        """A dict of tensors and plain values, loadable with ``torch.load(weights_only=True)``."""
        return asdict(self)

    def mismatch(self, model: torch.nn.Module, optimizer: str) -> str | None:
        """What of this state cannot continue ``model`` trained with ``optimizer``.

        A state saved by another model (its config edited since) would fail deep in
        ``load_state_dict`` or at the first step; this says what differs, before.

        Returns:
            ``None`` if the weights and the optimizer state fit, else one line.
        """
        expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        for label, weights in (("weights", self.model), ("best weights", self.best_state)):
            if weights is None:
                continue
            if not isinstance(weights, dict):
                return f"its {label} are not a dict of tensors"
            for key in sorted(expected.keys() | weights.keys()):
                saved = weights.get(key)
                shape = tuple(saved.shape) if isinstance(saved, torch.Tensor) else None
                if shape != expected.get(key):
                    held = "no" if saved is None else f"a {shape}"
                    wanted = "none" if key not in expected else f"{expected[key]}"
                    return f"its {label} hold {held} {key!r} where the model has {wanted}"
        if self.optimizer is not None:
            problem = optimizer_state_mismatch(self.optimizer, list(model.parameters()), optimizer)
            if problem is not None:
                return f"its {optimizer} optimizer state does not fit: {problem}"
        return None

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainState:
        """Rebuild from ``to_dict`` output (a state saved before families keeps its
        ``mask_index`` as the MADE family's state)."""
        data = dict(data)
        if "mask_index" in data:
            data.setdefault("family_state", {"mask_index": int(data.pop("mask_index"))})
        unknown = sorted(set(data) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown train state keys {unknown}")
        return cls(**data)


@dataclass
class TrainResult:
    """What [`fit`][densitykit.train.fit] returns.

    Attributes:
        history: One record per epoch.
        best_epoch: Epoch whose weights were restored.
        best_val_nll: Its validation NLL (nats per example).
        train_seconds: Wall time of the training epochs of this call.
        stopped_early: Whether patience ran out.
        state: The final loop state.
    """

    history: list[dict[str, Any]]
    best_epoch: int
    best_val_nll: float
    train_seconds: float
    stopped_early: bool
    state: TrainState

    @classmethod
    def from_state(cls, state: TrainState, train_seconds: float) -> TrainResult:
        """The result of a loop that ended in ``state`` after ``train_seconds``."""
        return cls(
            history=list(state.history),
            best_epoch=state.best_epoch,
            best_val_nll=state.best_val_nll,
            train_seconds=train_seconds,
            stopped_early=state.stopped_early,
            state=state,
        )

    @property
    def stop_reason(self) -> str | None:
        """Why training stopped after the last epoch (``"patience"``, ``"time budget"``,
        ``"epochs"``), from the history; ``None`` before any epoch."""
        return self.history[-1].get("stop_reason") if self.history else None


class Callback:
    """Hooks the loop calls; subclass and override what you need. All default to no-ops."""

    def on_train_begin(self, state: TrainState, num_batches: int) -> None:
        """Before the first epoch of this call (``state.epoch`` may be > 0 on resume)."""

    def on_batch_end(self, state: TrainState, loss: float) -> None:
        """After every optimizer step, with the batch's mean NLL."""

    def on_epoch_end(self, state: TrainState, record: dict[str, Any]) -> None:
        """After an epoch's validation; ``record`` is the new history entry."""

    def on_train_end(self, result: TrainResult) -> None:
        """After training (best weights restored)."""


def _cpu_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


@torch.no_grad()
def evaluate(
    model: DensityModel,
    data: torch.Tensor,
    *,
    batch_size: int = 1000,
    num_masks: int | None = None,
    distributed: bool = False,
    context: torch.Tensor | None = None,
    connectivities: Sequence[Any] | None = None,
    validate: bool = True,
) -> float:
    r"""Mean negative log-likelihood (nats per example) of ``data`` under the model.

    The model's own exact likelihood
    ([`evaluation_log_prob`][densitykit.family.DensityModel.evaluation_log_prob]): for a
    MADE, the mixture of its masks.

    Args:
        model: The model.
        data: ``(N, D)`` values.
        batch_size: Examples per forward pass.
        num_masks: Use the first ``num_masks`` masks in the mixture (all by default).
        distributed: In an initialized process group, evaluate this rank's
            [`shard`][densitykit.distributed.shard] of ``data`` and sum the NLL over
            the ranks (every rank must then call this with the same data); no effect
            in a single process.
        context: A conditional model's context per example (labels ``(N,)`` or
            features ``(N, C)``): the result is then $-\frac1N\sum \log p(x \mid c)$.
        connectivities: Score under the uniform mixture over these connectivities
            instead of the model's masks (log-mean-exp of each one's likelihood), e.g.
            orderings drawn at inference
            ([`draw_orderings`][densitykit.model.AutoregressiveModel.draw_orderings]).
        validate: Check ``data`` against the model's support first (``fit`` checks
            its validation set once and skips this every epoch).

    Raises:
        ValueError: If ``num_masks`` exceeds the model's masks, ``num_masks`` and
            ``connectivities`` are both given, ``connectivities`` is empty, or ``data``
            is empty.
    """
    if data.shape[0] == 0:
        raise ValueError("cannot evaluate on an empty data set")
    if validate:
        model.check_values(data)
    if model.is_conditional and (context is None or len(context) != len(data)):
        raise ValueError(
            f"a conditional model is evaluated with one context per example ({len(data)}), "
            f"got {'none' if context is None else len(context)}"
        )
    ranks = current() if distributed else None
    rows = slice(None) if ranks is None else shard(len(data), ranks.rank, ranks.world_size)
    share, share_context = data[rows], None if context is None else context[rows]
    was_training = model.training
    model.eval()
    nll = torch.zeros((), dtype=torch.float64)
    for start in range(0, share.shape[0], batch_size):
        batch = slice(start, start + batch_size)
        batch_context = None if share_context is None else share_context[batch]
        log_prob = model.evaluation_log_prob(
            share[batch],
            context=batch_context,
            num_masks=num_masks,
            connectivities=connectivities,
        )
        nll -= log_prob.double().sum().cpu()
    model.train(was_training)
    if ranks is not None:
        nll = all_reduce_sum(nll)
    return float(nll) / data.shape[0]


def fit(
    model: DensityModel,
    train: torch.Tensor,
    val: torch.Tensor,
    config: TrainConfig | None = None,
    *,
    callbacks: Sequence[Callback] = (),
    state: TrainState | None = None,
    train_context: torch.Tensor | None = None,
    val_context: torch.Tensor | None = None,
    train_draws: Callable[[int], torch.Tensor] | None = None,
) -> TrainResult:
    r"""Train ``model`` by maximum likelihood.

    Each step draws a mini-batch (a seeded permutation per epoch), computes the
    mean NLL under the active mask, and takes an Adam step; a multi-mask model
    moves to its next mask every ``config.mask_every`` steps (connectivity-agnostic
    training). After each epoch the validation NLL of the full mask mixture
    decides early stopping; the best weights are restored at the end.

    In an initialized process group of several ranks (``torchrun``; see
    [`densitykit.distributed`][densitykit.distributed]) the call is collective: every
    rank calls it with the same data and config, trains a DistributedDataParallel
    replica on its shard of each global batch of ``config.batch_size`` examples,
    evaluates its shard of ``val``, and follows rank 0's early-stopping decision. The
    result is that of one process on the same global batches, up to float rounding.

    Args:
        model: The model (moved to ``config.device``).
        train: ``(N, D)`` training values.
        val: ``(M, D)`` validation values.
        config: Hyperparameters (defaults if omitted).
        callbacks: Progress/logging/checkpoint hooks.
        state: A saved [`TrainState`][densitykit.train.TrainState] to resume from.
        train_context: A conditional model's context per training example (labels
            ``(N,)`` or features ``(N, C)``); the loss is then $-\log p(x \mid c)$.
        val_context: The same for the validation examples ``(M,)`` / ``(M, C)``.
        train_draws: Training examples drawn afresh every epoch (dynamic
            binarization; a data set's ``train_draws``): the epoch's index (0 for the
            first) to its ``(N, D)`` examples, of ``train``'s shape. Each epoch then
            trains on its own draw (``train`` only sets the shape); the draw must
            depend on the index alone, so a resumed run trains on the same examples.

    Returns:
        The [`TrainResult`][densitykit.train.TrainResult].

    Raises:
        TrainingError: If the loss stops being finite (the last good state is the
            one the callbacks last saw).
        ValueError: If ``config.precision`` asks for bf16/fp16 autocast on a device
            other than CUDA, the data are empty or outside the model's support, or a
            conditional model lacks a context per example (or an unconditional one
            is given one).

    Example:
        >>> import torch, densitykit as dk
        >>> data = torch.randint(0, 2, (64, 4))
        >>> model = dk.create_model("bernoulli", 4, hidden_sizes=(8,))
        >>> result = fit(model, data, data[:16], TrainConfig(epochs=2, batch_size=16))
        >>> [round(r["epoch"]) for r in result.history]
        [1, 2]
    """
    config = config or TrainConfig()
    loop = _setup(model, train, val, config, train_context, val_context)
    state = _restore(loop, state)
    for callback in callbacks:
        callback.on_train_begin(state, loop.num_batches)
    started = loop.started = time.perf_counter()
    out_of_time = False
    while state.epoch < config.epochs and not state.stopped_early and not out_of_time:
        epoch_started = time.perf_counter()
        if train_draws is not None:
            loop.train = _epoch_examples(loop, train_draws, state.epoch)
        model.train()
        order = torch.randperm(loop.train.shape[0], generator=loop.shuffle)
        total = 0.0
        for start in range(0, loop.train.shape[0], config.batch_size):
            indices = order[start : start + config.batch_size]
            value = _step(loop, state, indices)
            total += value * indices.shape[0]
            for callback in callbacks:
                callback.on_batch_end(state, value)
        record = _end_epoch(loop, state, float(total) / loop.train.shape[0], epoch_started)
        for callback in callbacks:
            callback.on_epoch_end(state, record)
        out_of_time = record["stop_reason"] == "time budget"

    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    result = TrainResult.from_state(state, time.perf_counter() - started)
    for callback in callbacks:
        callback.on_train_end(result)
    return result


@dataclass
class _Loop:
    """What the loop's steps share once set up (the state that moves lives in TrainState)."""

    model: DensityModel
    train: torch.Tensor
    val: torch.Tensor
    config: TrainConfig
    device: torch.device
    context: DistributedContext | None
    train_context: torch.Tensor | None
    val_context: torch.Tensor | None
    optimizer: torch.optim.Optimizer
    shuffle: torch.Generator
    draws: torch.Generator
    scaler: torch.amp.GradScaler
    average: WeightAverage | None = None
    replica: torch.nn.Module | None = None
    started: float = 0.0

    @property
    def num_batches(self) -> int:
        return math.ceil(self.train.shape[0] / self.config.batch_size)


def _epoch_examples(
    loop: _Loop, train_draws: Callable[[int], torch.Tensor], epoch: int
) -> torch.Tensor:
    """The epoch's own training examples, checked like ``train`` (shape, support)."""
    examples = train_draws(epoch)
    if not isinstance(examples, torch.Tensor) or examples.shape != loop.train.shape:
        got = examples.shape if isinstance(examples, torch.Tensor) else type(examples).__name__
        raise ValueError(
            f"train_draws({epoch}) must give a tensor of the training set's shape "
            f"{tuple(loop.train.shape)}, got {got}"
        )
    loop.model.check_values(examples)
    return examples.cpu()


def _setup(
    model: DensityModel,
    train: torch.Tensor,
    val: torch.Tensor,
    config: TrainConfig,
    train_context: torch.Tensor | None = None,
    val_context: torch.Tensor | None = None,
) -> _Loop:
    """Resolve the device, check the data once, build the optimizer and the generators."""
    device = resolve_device(config.device)
    if config.precision != "fp32" and device.type != "cuda":
        raise ValueError(
            f"precision {config.precision!r} is autocast on CUDA only, but training runs on "
            f"{device}; use precision 'fp32' there"
        )
    context = current()
    if context is not None and device.type == "cuda":
        device = own_gpu(device)
    model.to(device)
    if config.eval_masks is not None and config.eval_masks > model.num_masks:
        raise ValueError(
            f"eval_masks {config.eval_masks} asks for more masks than the model's "
            f"{model.num_masks} (a {model.family or type(model).__name__} model)"
        )
    # Checked once here, kept in their own dtype: each batch is widened as it is scored.
    for data in (train, val):
        model.check_values(data)
    train = train.reshape(-1, model.dim).cpu()
    val = val.reshape(-1, model.dim).cpu()
    if train.shape[0] == 0:
        raise ValueError("the training set is empty")
    if val.shape[0] == 0:
        raise ValueError("the validation set is empty")
    # The contexts are checked once (dtype, shape, range), then indexed per batch.
    for values, given in ((train, train_context), (val, val_context)):
        model.encode_context(given, values.shape[:1])
    return _Loop(
        model=model,
        train=train,
        val=val,
        config=config,
        device=device,
        context=context,
        train_context=None if train_context is None else train_context.cpu(),
        val_context=None if val_context is None else val_context.cpu(),
        optimizer=make_optimizer(
            model.parameters(),
            name=config.optimizer,
            lr=config.lr,
            weight_decay=config.weight_decay,
        ),
        shuffle=torch.Generator().manual_seed(config.seed),
        draws=torch.Generator().manual_seed(config.seed + 1),
        scaler=torch.amp.GradScaler(
            "cuda", enabled=device.type == "cuda" and config.precision == "fp16"
        ),
        average=None if config.ema_decay is None else WeightAverage(model, config.ema_decay),
    )


def _restore(loop: _Loop, state: TrainState | None) -> TrainState:
    """Load a saved state into the model, optimizer and shuffling (a fresh one if ``None``)."""
    model, optimizer = loop.model, loop.optimizer
    state = copy.copy(state) if state is not None else TrainState()
    if state.model is not None:
        model.load_state_dict(state.model)
    if state.optimizer is not None:
        optimizer.load_state_dict(state.optimizer)
        for group in optimizer.param_groups:  # a resumed run may lower the learning rate
            group["lr"] = loop.config.lr
    if state.shuffle_rng is not None:
        loop.shuffle.set_state(state.shuffle_rng)
    if state.draw_rng is not None:
        loop.draws.set_state(state.draw_rng)
    if loop.average is not None and state.weight_average is not None:
        loop.average.load_state_dict(state.weight_average)
    if state.device_rng is not None:
        _set_device_rng(loop.device, state.device_rng)
    model.load_training_state(state.family_state)
    if loop.context is not None:
        check_same_on_all_ranks(
            _replica_facts(
                model,
                loop.train,
                loop.val,
                loop.config,
                state,
                (loop.train_context, loop.val_context),
            )
        )
        loop.replica = replicate(BatchLogProb(model), loop.device)
    return state


def _step(loop: _Loop, state: TrainState, indices: torch.Tensor) -> float:
    """One optimizer step on ``train[indices]`` under the active mask (or, for a model
    that trains over all orderings, a freshly drawn connectivity); returns the batch's
    mean NLL.

    Sets the step's scheduled learning rate, clips the gradient norm to
    ``config.grad_clip`` when set, updates the weight average, and moves a multi-mask
    model to its next mask every ``config.mask_every`` steps.
    """
    model, config, device = loop.model, loop.config, loop.device
    # What the step is decided with (the MADE's mask or a fresh ordering, ...), drawn
    # once for the global batch, from state the family saves and resumes.
    draw = model.training_draw(indices.shape[0], loop.draws)
    if loop.replica is None:
        batch = loop.train[indices].to(device, non_blocking=True)
        context = None if loop.train_context is None else loop.train_context[indices]
        with autocast(device, config.precision):
            loss = -model.training_log_prob(batch, draw, context).mean()
        value = loss.item()
    else:
        loss, value = sharded_loss(
            loop.replica,
            loop.context,
            loop.train,
            indices,
            draw,
            device,
            config.precision,
            loop.train_context,
        )
    if not math.isfinite(value):
        raise TrainingError(_non_finite_message("training loss", value, state, config))
    if config.lr_schedule != "constant":
        lr = scheduled_lr(
            config.lr, config.lr_schedule, state.step, config.epochs * loop.num_batches
        )
        for group in loop.optimizer.param_groups:
            group["lr"] = lr
    loop.optimizer.zero_grad(set_to_none=True)
    loop.scaler.scale(loss).backward()
    if config.grad_clip is not None:
        loop.scaler.unscale_(loop.optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    loop.scaler.step(loop.optimizer)
    loop.scaler.update()
    if loop.average is not None:
        loop.average.update(model)
    state.step += 1
    model.after_step(state.step, config)
    return value


def _non_finite_message(what: str, value: float, state: TrainState, config: TrainConfig) -> str:
    """Why training stopped on a non-finite value, and what the user can do.

    An epoch's state is kept only when its validation NLL is finite, so the last good
    state is the last completed epoch before the one that failed (none at all if the
    first epoch failed)."""
    epoch = state.history[-1]["epoch"] if state.history else 0
    where = f"the {what} became {value} in epoch {epoch + 1}"
    if not state.history:
        return (
            f"{where}, and no epoch ever reached a finite validation NLL, so no model was "
            f"saved; train again with a lower learning rate (e.g. --lr {config.lr / 10:g})"
        )
    return (
        f"{where}; the last good state is from epoch {epoch} (validation NLL "
        f"{state.history[-1]['val_nll']:.4f}). Resume it with a lower learning rate "
        f"(e.g. densitykit resume RUN_DIR --lr {config.lr / 10:g})"
    )


def _end_epoch(
    loop: _Loop, state: TrainState, train_nll: float, epoch_started: float
) -> dict[str, Any]:
    """Validate (the averaged weights, with ``ema_decay``), decide improvement and
    stopping, save the loop state; the record."""
    model, config = loop.model, loop.config
    state.epoch += 1
    with loop.average.applied(model) if loop.average is not None else nullcontext():
        val_nll = evaluate(
            model,
            loop.val,
            batch_size=config.eval_batch_size,
            validate=False,  # checked once, before the first epoch
            num_masks=config.eval_masks,
            distributed=loop.context is not None,
            context=loop.val_context,
        )
        improved = val_nll < state.best_val_nll
        out_of_time = (
            config.time_budget_minutes is not None
            and time.perf_counter() - loop.started > 60.0 * config.time_budget_minutes
        )
        if loop.context is not None:
            # Rank 0 decides improvement (hence early stopping) and the budget; all follow.
            decision = broadcast_from_main(
                torch.tensor([val_nll, improved, out_of_time], dtype=torch.float64)
            )
            val_nll, improved, out_of_time = (
                float(decision[0]),
                bool(decision[1]),
                bool(decision[2]),
            )
        if not math.isfinite(val_nll):
            raise TrainingError(_non_finite_message("validation NLL", val_nll, state, config))
        if improved:
            state.best_val_nll = val_nll
            state.best_epoch = state.epoch
            state.best_state = _cpu_state(model)
    if improved:
        state.epochs_without_improvement = 0
    else:
        state.epochs_without_improvement += 1
        if config.patience is not None and state.epochs_without_improvement >= config.patience:
            state.stopped_early = True
    record = {
        "epoch": state.epoch,
        "step": state.step,
        "train_nll": train_nll,
        "val_nll": val_nll,
        "best_val_nll": state.best_val_nll,
        "improved": improved,
        "lr": loop.optimizer.param_groups[0]["lr"],
        "stop_reason": stop_reason(state, config, out_of_time),
        "seconds": time.perf_counter() - epoch_started,
    }
    state.history.append(record)
    state.family_state = model.training_state()
    state.model = _cpu_state(model)
    state.optimizer = loop.optimizer.state_dict()
    state.shuffle_rng = loop.shuffle.get_state()
    state.draw_rng = loop.draws.get_state()
    state.weight_average = None if loop.average is None else loop.average.state_dict()
    state.device_rng = _device_rng(loop.device)
    return record


def _device_rng(device: torch.device) -> torch.Tensor:
    """The state of ``device``'s global generator."""
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _set_device_rng(device: torch.device, rng: torch.Tensor) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(rng, device)
    else:
        torch.set_rng_state(rng)


def stop_reason(state: TrainState, config: TrainConfig, out_of_time: bool) -> str | None:
    """Why training stops after this epoch, or ``None`` if it goes on (the loops of
    ``fit``)."""
    if state.stopped_early:
        return "patience"
    if state.epoch >= config.epochs:
        return "epochs"
    return "time budget" if out_of_time else None


def _replica_facts(
    model: DensityModel,
    train: torch.Tensor,
    val: torch.Tensor,
    config: TrainConfig,
    state: TrainState,
    contexts: tuple[torch.Tensor | None, ...] = (),
) -> dict[str, Any]:
    """What must be equal on every rank for data-parallel training to mean anything."""
    return {
        "train config": config.to_dict(),
        "model config": model.config.to_dict() if model.config is not None else None,
        "training data": fingerprint(train),
        "validation data": fingerprint(val),
        "contexts": [fingerprint(c) if c is not None else None for c in contexts],
        "masks": fingerprint(*model.buffers()),
        "family state": model.training_state(),
        "loop state": (
            state.epoch,
            state.step,
            state.best_val_nll,
            state.epochs_without_improvement,
            state.stopped_early,
        ),
    }
