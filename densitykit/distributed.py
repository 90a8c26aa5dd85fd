r"""Data-parallel training with PyTorch's own engine: torchrun and DistributedDataParallel.

Launched by ``torchrun``, every process runs the same ``densitykit fit``;
[`session`][densitykit.distributed.session] joins the process group that torchrun
describes in the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``), with ``nccl`` when training on CUDA and ``gloo`` on CPU.

The training loop ([`fit`][densitykit.train.fit]) then keeps the single-process
meaning of every hyperparameter: ``batch_size`` is the *global* batch (each of $W$
processes computes about $B / W$ examples per step), so the learning rate and the
number of steps per epoch stay what they are in one process. Every rank draws the
same seeded permutation each epoch; at each step it takes its contiguous
[`shard`][densitykit.distributed.shard] of the global batch of $B$ examples and
weights its loss so that DistributedDataParallel's gradient average is the
global-batch mean:

$$\frac{1}{W}\sum_{r=1}^{W} \nabla \Big(\frac{W}{B} \sum_{i \in \text{shard}_r} -\log p(x_i)\Big)
= \nabla \frac{1}{B} \sum_{i=1}^{B} -\log p(x_i),$$

which holds for unequal shards (and empty ones) too. Outside a multi-process launch
nothing here does anything.
"""

from __future__ import annotations

import gc
import hashlib
import inspect
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from densitykit.checks import check_int
from densitykit.devices import autocast, resolve_device
from densitykit.errors import DensitykitError
from densitykit.family import DensityModel

__all__ = [
    "BatchLogProb",
    "DistributedContext",
    "all_reduce_sum",
    "backend_for",
    "broadcast_from_main",
    "check_same_on_all_ranks",
    "current",
    "fingerprint",
    "is_main",
    "launch_environment",
    "local_main_first",
    "on_main",
    "own_gpu",
    "replicate",
    "session",
    "shard",
    "sharded_loss",
]

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in a running process group.

    Attributes:
        rank: Global rank, ``0..world_size-1``; rank 0 writes the run folder.
        world_size: Number of processes.
        local_rank: Rank on this machine (the CUDA device index under torchrun).
        backend: ``"nccl"`` or ``"gloo"``.
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0."""
        return self.rank == 0


def launch_environment(
    environ: Mapping[str, str] | None = None,
) -> tuple[int, int, int] | None:
    """``(rank, world_size, local_rank)`` set by torchrun, or ``None`` for a single process.

    A launch with ``WORLD_SIZE=1`` (``torchrun --nproc_per_node 1``) counts as a
    single process.

    Args:
        environ: The environment (``os.environ`` by default).

    Raises:
        DensitykitError: If the variables are malformed or inconsistent.

    Example:
        >>> launch_environment({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"})
        (1, 2, 1)
        >>> launch_environment({}) is None
        True
    """
    environ = os.environ if environ is None else environ
    if "WORLD_SIZE" not in environ:
        return None
    values = {}
    for name, default in (("WORLD_SIZE", None), ("RANK", None), ("LOCAL_RANK", "0")):
        text = environ.get(name, default)
        if text is None:
            raise DensitykitError(
                f"WORLD_SIZE={environ['WORLD_SIZE']} is set but {name} is not; launch with "
                "torchrun (which sets RANK, LOCAL_RANK and WORLD_SIZE)"
            )
        try:
            values[name] = int(text)
        except ValueError:
            raise DensitykitError(f"{name} must be an integer, got {text!r}") from None
    world_size, rank, local_rank = values["WORLD_SIZE"], values["RANK"], values["LOCAL_RANK"]
    if world_size < 1 or not 0 <= rank < world_size or local_rank < 0:
        raise DensitykitError(
            f"need 0 <= RANK < WORLD_SIZE and LOCAL_RANK >= 0, got RANK={rank}, "
            f"WORLD_SIZE={world_size}, LOCAL_RANK={local_rank}"
        )
    return None if world_size == 1 else (rank, world_size, local_rank)


def backend_for(device: torch.device) -> str:
    """``"nccl"`` for CUDA devices, ``"gloo"`` otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def current() -> DistributedContext | None:
    """The initialized process group as a context; ``None`` without one or with one process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() < 2:
        return None
    return DistributedContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        backend=str(dist.get_backend()),
    )


def is_main() -> bool:
    """Whether this process writes and reports: rank 0, or the only process."""
    context = current()
    return context is None or context.is_main


@contextmanager
def session(device: str | torch.device = "auto") -> Iterator[DistributedContext | None]:
    """Join the process group torchrun set up for the duration of the block.

    Chooses ``nccl`` when ``device`` resolves to CUDA (and selects ``cuda:LOCAL_RANK``
    as this process's device) and ``gloo`` otherwise, and destroys the group on the
    way out. Yields ``None`` and does nothing in a single process; a group that is
    already initialized is used as it is and left alone.

    Args:
        device: The training device (``"auto"``, ``"cpu"``, ``"cuda"``); it picks the backend.

    Example:
        >>> with session("cpu") as context:  # not launched by torchrun here
        ...     context is None
        True
    """
    if dist.is_available() and dist.is_initialized():
        yield current()
        return
    launch = launch_environment()
    if launch is None:
        yield None
        return
    if not dist.is_available():
        raise DensitykitError("this PyTorch build has no torch.distributed support")
    _, _, local_rank = launch
    resolved = resolve_device(device)
    if resolved.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise DensitykitError(
                f"LOCAL_RANK={local_rank} but this machine has {torch.cuda.device_count()} "
                "CUDA device(s); start at most that many processes per node"
            )
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend_for(resolved))
    try:
        yield current()
        # Every rank leaves together: rank 0 writes the run's files after the last
        # collective, and a group torn down by a rank that finished first can abort
        # the other's gloo threads at exit ("terminate called without an active
        # exception"). On an error there is no barrier, which could wait forever.
        dist.barrier()
    finally:
        # DistributedDataParallel replicas hold the group; free any that a reference
        # cycle keeps alive before the group goes, not at interpreter exit after it.
        gc.collect()
        dist.destroy_process_group()


def shard(length: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous share of ``length`` items split over ``world_size`` ranks.

    Shares differ in size by at most one (the first ``length % world_size`` ranks take
    one extra item), cover ``0..length-1`` exactly once in rank order, and may be empty
    when ``length < world_size``.

    Raises:
        ValueError: On a negative ``length``, ``world_size < 1`` or a rank out of range.

    Example:
        >>> [shard(5, rank, 2) for rank in range(2)]
        [slice(0, 3, None), slice(3, 5, None)]
        >>> shard(1, 1, 2)
        slice(1, 1, None)
    """
    length = check_int(length, "length")
    rank = check_int(rank, "rank")
    world_size = check_int(world_size, "world_size")
    if length < 0 or world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(
            f"need length >= 0 and 0 <= rank < world_size, got length={length}, "
            f"rank={rank}, world_size={world_size}"
        )
    base, extra = divmod(length, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (rank < extra))


def _collective_device() -> torch.device:
    # NCCL moves CUDA tensors only; gloo works on CPU tensors.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over all ranks (a new tensor on ``tensor``'s device).

    Without a process group this returns ``tensor`` itself.
    """
    if current() is None:
        return tensor
    total = tensor.detach().to(_collective_device(), copy=True)
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    return total.to(tensor.device)


def broadcast_from_main(tensor: torch.Tensor) -> torch.Tensor:
    """Rank 0's value of ``tensor`` on every rank (a new tensor on ``tensor``'s device)."""
    if current() is None:
        return tensor
    value = tensor.detach().to(_collective_device(), copy=True)
    dist.broadcast(value, src=0)
    return value.to(tensor.device)


def on_main(function: Callable[[], T]) -> T:
    """Run ``function`` on rank 0 only and hand its result, or its exception, to every rank.

    Used for writes (a run folder) whose failure must stop every rank, not only rank 0.
    """
    context = current()
    if context is None:
        return function()
    outcome: list[Any] = [None]
    failure: Exception | None = None
    if context.is_main:
        try:
            outcome[0] = ("ok", function())
        except Exception as error:
            failure = error
            # The message travels, not the exception: any exception can be described.
            outcome[0] = ("error", str(error).strip() or type(error).__name__)
    dist.broadcast_object_list(outcome, src=0)
    kind, value = outcome[0]
    if failure is not None:
        raise failure
    if kind == "error":
        raise DensitykitError(f"rank 0 failed: {value}")
    return value


@contextmanager
def local_main_first() -> Iterator[None]:
    """Let local rank 0 run the block before the other ranks of its machine.

    For work that fills a machine-wide cache (a data set download): the first
    process does it, the others then find it done. Does nothing in a single process.
    """
    context = current()
    if context is None:
        yield
        return
    if context.local_rank != 0:
        dist.barrier()
    yield
    if context.local_rank == 0:
        dist.barrier()


def fingerprint(*tensors: torch.Tensor) -> str:
    """A SHA-256 digest of tensors' shapes, dtypes and values (to compare across ranks)."""
    digest = hashlib.sha256()
    for tensor in tensors:
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_same_on_all_ranks(facts: Mapping[str, Any]) -> None:
    """Check that every rank holds equal ``facts`` (config, data digests, mask index, ...).

    Raises:
        DensitykitError: Naming the first fact that differs and its value on each rank.
    """
    context = current()
    if context is None:
        return
    # Dicts (configs) are flattened one level so that a message names the field that differs.
    flat: dict[str, Any] = {}
    for name, value in facts.items():
        if isinstance(value, Mapping):
            flat.update({f"{name} {key}": inner for key, inner in value.items()})
        else:
            flat[name] = value
    gathered: list[Any] = [None] * context.world_size
    dist.all_gather_object(gathered, flat)
    for name in dict.fromkeys(key for ranked in gathered for key in ranked):
        values = [ranked.get(name) for ranked in gathered]
        if any(value != values[0] for value in values[1:]):
            shown = ", ".join(f"rank {rank}: {value!r}" for rank, value in enumerate(values))
            raise DensitykitError(
                f"the ranks disagree on {name} ({shown}); every process must run the same "
                "command on the same data"
            )


def replicate(module: nn.Module, device: torch.device) -> nn.Module:
    """Wrap ``module`` (already on ``device``) in DistributedDataParallel.

    Rank 0's parameters are broadcast to every rank. Buffers are not re-broadcast at
    every step: in densitykit they are the masks and degrees, which every rank builds
    from the same seed (checked once by the training loop).
    """
    device_ids = None
    if device.type == "cuda":
        device_ids = [device.index if device.index is not None else torch.cuda.current_device()]
    # PyTorch renamed the option (``broadcast_buffers`` warns from 2.14 on).
    if "forward_sync_buffers" in inspect.signature(nn.parallel.DistributedDataParallel).parameters:
        buffers = {"forward_sync_buffers": False}
    else:  # pragma: no cover - older PyTorch
        buffers = {"broadcast_buffers": False}
    return nn.parallel.DistributedDataParallel(module, device_ids=device_ids, **buffers)


class BatchLogProb(torch.nn.Module):
    """What DistributedDataParallel wraps: a family's training log-likelihoods.

    Its forward is ``model.training_log_prob(batch, draw, context)`` on values the
    training loop checked once, before the first step.
    """

    def __init__(self, model: DensityModel) -> None:
        super().__init__()
        self.model = model

    def forward(
        self, batch: torch.Tensor, draw: Any, context: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.model.training_log_prob(batch, draw, context)


def sharded_loss(
    replica: torch.nn.Module,
    context: DistributedContext,
    train: torch.Tensor,
    indices: torch.Tensor,
    draw: Any,
    device: torch.device,
    precision: str,
    train_context: torch.Tensor | None = None,
) -> tuple[torch.Tensor, float]:
    """This rank's loss on its shard of ``train[indices]``, and that global batch's mean NLL.

    ``draw`` is the step's draw for the whole global batch (every rank draws the same,
    from the same seeded state); each rank keeps its rows of it
    ([`shard_draw`][densitykit.family.DensityModel.shard_draw]). ``train_context`` holds
    a conditional model's context per training example.
    """
    size = indices.shape[0]
    positions = torch.arange(size)[shard(size, context.rank, context.world_size)]
    rows = indices[positions]
    batch = train[rows]
    features = None if train_context is None else train_context[rows]
    model = replica.module.model if hasattr(replica, "module") else replica.model
    local_draw = model.shard_draw(draw, positions)
    with autocast(device, precision):
        nll = -replica(batch.to(device, non_blocking=True), local_draw, features).sum()
    # DDP averages the ranks' gradients; weighting each shard's summed NLL by
    # world_size / size makes that average the gradient of the global-batch mean,
    # however unequal (or empty) the shards are.
    loss = nll * (context.world_size / size)
    value = float(all_reduce_sum(nll.detach().double())) / size
    return loss, value


def own_gpu(device: torch.device) -> torch.device:
    """Each process of a distributed run trains on its own GPU, ``cuda:LOCAL_RANK``."""
    own = torch.cuda.current_device()
    if device.index is not None and device.index != own:
        raise ValueError(
            f"device {device} was asked for, but each process of a distributed run trains on "
            f"its own GPU (cuda:LOCAL_RANK, here cuda:{own}); pass --device cuda or auto"
        )
    return torch.device("cuda", own)
