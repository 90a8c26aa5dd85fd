"""Training and likelihood throughput of densitykit against a plain masked MLP.

(a) Training: examples/s of forward + backward + Adam step on binary data (batch 100,
Bernoulli head, loss = mean NLL from ``model.log_prob(x, mask=0, validate=False)``, as
in ``densitykit fit``, whose data are checked once before training) against a
hand-written masked MLP of the same sizes (``nn.Linear`` weights times fixed masks,
BCE-with-logits). The headline is like for like: both sides step with
``torch.optim.Adam``'s defaults. densitykit runs its automatic choice of products
(see ``densitykit.made.MADE``: dense in training, degree-grouped for likelihoods on
the CPU at these sizes) and, for comparison, ``products="dense"`` and
``products="grouped"``; a second pair of rows steps both sides with the
optimizer ``densitykit fit`` uses (``densitykit.optim.make_optimizer``: fused Adam
where PyTorch has it). GFLOP/s count the useful arithmetic only (2 x the unmasked
weights x batch, x3 for forward + backward), against the rate of ``torch.mm`` on the
dense shapes in the same run.

(b) Likelihood evaluation: examples/s without gradients (batch 1000) for one mask
(automatic and dense products) and for a 32-mask (multi-ordering) ensemble, against
the plain MLP's forward pass.

All contenders of a table are timed in alternation (median of ``--repeats``). Run
``python benchmarks/throughput.py`` for the headline figures (about two minutes on a
2-core CPU) or ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
import warnings
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from _common import machine_report, parse_architecture, table
from torch import nn

import densitykit as dk
from densitykit.optim import make_optimizer

DEFAULT_ARCHITECTURES = ("784-500-784", "784-512-512-784")


class PlainMaskedMLP(nn.Module):
    """MADE written out by hand: ``nn.Linear`` layers whose weights are multiplied by masks."""

    def __init__(self, dim: int, hidden_sizes: Sequence[int], seed: int = 0) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        degrees = [torch.arange(1, dim + 1)]  # natural ordering
        for size in hidden_sizes:
            low = int(degrees[-1].min())
            degrees.append(torch.randint(low, max(dim - 1, 1) + 1, (size,), generator=generator))
        sizes = [dim, *hidden_sizes, dim]
        self.linears = nn.ModuleList(nn.Linear(a, b) for a, b in itertools.pairwise(sizes))
        out_degrees = [*degrees[1:], torch.arange(1, dim + 1)]
        for index, (below, above) in enumerate(zip(degrees, out_degrees)):
            last = index == len(sizes) - 2
            mask = above[:, None] > below[None, :] if last else above[:, None] >= below[None, :]
            self.register_buffer(f"mask_{index}", mask.float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for index, linear in enumerate(self.linears):
            h = F.linear(h, linear.weight * getattr(self, f"mask_{index}"), linear.bias)
            if index < len(self.linears) - 1:
                h = F.relu(h)
        return h


def interleaved(
    contenders: dict[str, Callable[[], None]], *, repeats: int, warmup: int
) -> dict[str, float]:
    """Median seconds per call of each contender, timed in alternation (fair under drift).

    The order reverses every round, so no contender always runs right after the same
    other one (whose cache and allocator state it would inherit).
    """
    for run in contenders.values():
        for _ in range(warmup):
            run()
    times: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for round_ in range(repeats):
        for name in names if round_ % 2 == 0 else names[::-1]:
            run = contenders[name]
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def dense_flops(dim: int, hidden_sizes: Sequence[int]) -> int:
    """2 x multiply-accumulates of one example's forward pass through the dense layers."""
    sizes = [dim, *hidden_sizes, dim]
    return 2 * sum(a * b for a, b in itertools.pairwise(sizes))


def useful_flops(masks: Sequence[torch.Tensor]) -> int:
    """2 x the unmasked weights: one example's useful forward arithmetic."""
    return 2 * sum(int(mask.count_nonzero()) for mask in masks)


def model_masks(model: dk.AutoregressiveModel) -> list[torch.Tensor]:
    backbone = model.backbone
    layers = [*backbone.layers, *([backbone.direct] if backbone.direct is not None else [])]
    return [layer.mask for layer in layers]


def plain_masks(plain: PlainMaskedMLP) -> list[torch.Tensor]:
    return [getattr(plain, f"mask_{index}") for index in range(len(plain.linears))]


def matmul_runner(
    dim: int, hidden_sizes: Sequence[int], batch: int, *, backward: bool, steps: int
) -> Callable[[], None]:
    """``steps`` times the plain ``torch.mm`` calls of one step (no masks, no bias)."""
    shapes = []
    for a, b in itertools.pairwise([dim, *hidden_sizes, dim]):
        weight = torch.randn(b, a)
        shapes.append((torch.randn(batch, a), weight.t()))  # forward: (B, a) @ (a, b)
        if backward:
            shapes.append((torch.randn(batch, b), weight))  # grad of input: (B, b) @ (b, a)
            shapes.append((torch.randn(b, batch), torch.randn(batch, a)))  # grad of weight
    outputs = [torch.empty(left.shape[0], right.shape[1]) for left, right in shapes]

    def run() -> None:
        for _ in range(steps):
            for (left, right), out in zip(shapes, outputs):
                torch.mm(left, right, out=out)

    return run


def path(
    dim: int, hidden_sizes: Sequence[int], num_masks: int, batch: int, *, grad: bool = False
) -> str:
    """Which products ``products="auto"`` picks for such a model with dense layers and
    batch (with or without grad)."""
    model = dk.create_model(
        "bernoulli",
        dim,
        hidden_sizes=hidden_sizes,
        masks="multi-ordering",
        num_masks=num_masks,
        layout="dense",
    )
    with torch.set_grad_enabled(grad):
        return "grouped" if model.backbone._grouped_pays(torch.zeros(batch, dim)) else "dense"


def binary_batches(dim: int, batch: int, count: int, seed: int) -> list[torch.Tensor]:
    """Binary data with per-pixel frequencies, as long values 0/1."""
    generator = torch.Generator().manual_seed(seed)
    probs = torch.rand(dim, generator=generator)
    return [(torch.rand(batch, dim, generator=generator) < probs).long() for _ in range(count)]


def training(args: argparse.Namespace) -> list[list[str]]:
    return [row for text in args.architectures for row in training_rows(text, args)]


def training_rows(text: str, args: argparse.Namespace) -> list[list[str]]:
    dim, hidden_sizes = parse_architecture(text)
    batches = binary_batches(dim, args.batch_size, 8, args.seed)
    float_batches = [x.float() for x in batches]

    def library(
        layout: str, products: str, fused: bool
    ) -> tuple[dk.AutoregressiveModel, Callable[[], None]]:
        torch.manual_seed(args.seed)
        model = dk.create_model(
            "bernoulli", dim, hidden_sizes=hidden_sizes, masks="natural", layout=layout
        )
        model.backbone.products = products
        optimizer = (
            make_optimizer(model.parameters(), lr=1e-3)
            if fused
            else torch.optim.Adam(model.parameters(), lr=1e-3)
        )

        def steps() -> None:
            for step in range(args.steps):
                x = batches[step % len(batches)]
                optimizer.zero_grad(set_to_none=True)
                loss = -model.log_prob(x, mask=0, validate=False).mean()
                loss.backward()
                optimizer.step()

        return model, steps

    def plain(fused: bool) -> tuple[PlainMaskedMLP, Callable[[], None]]:
        net = PlainMaskedMLP(dim, hidden_sizes, seed=args.seed)
        optimizer = (
            make_optimizer(net.parameters(), lr=1e-3)
            if fused
            else torch.optim.Adam(net.parameters(), lr=1e-3)
        )

        def steps() -> None:
            for step in range(args.steps):
                x = float_batches[step % len(float_batches)]
                optimizer.zero_grad(set_to_none=True)
                logits = net(x)
                loss = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / x.shape[0]
                loss.backward()
                optimizer.step()

        return net, steps

    fused = (
        "fused"
        if make_optimizer([nn.Parameter(torch.zeros(1))]).defaults.get("fused")
        else "default"
    )
    # name: ((module, runner), label, the row it is compared with)
    contenders = {
        "plain": (plain(False), "plain masked MLP, torch Adam defaults (baseline)", "plain"),
        "library": (
            library("auto", "auto", False),
            "densitykit, automatic (packed), torch Adam defaults",
            "plain",
        ),
        "dense": (
            library("dense", "auto", False),
            "densitykit, dense layout and products, torch Adam defaults",
            "plain",
        ),
        "grouped": (
            library("dense", "grouped", False),
            "densitykit, dense layout, grouped products, torch Adam defaults",
            "plain",
        ),
        "fused plain": (plain(True), f"plain masked MLP, {fused} Adam", "fused plain"),
        "fused library": (
            library("auto", "auto", True),
            f"densitykit, automatic, {fused} Adam (as densitykit fit)",
            "fused plain",
        ),
    }
    runners = {name: entry[0][1] for name, entry in contenders.items()}
    runners["mm"] = matmul_runner(
        dim, hidden_sizes, args.batch_size, backward=True, steps=args.steps
    )
    seconds = interleaved(runners, repeats=args.repeats, warmup=1)
    mm = seconds["mm"] / args.steps
    mm_rate = 3 * dense_flops(dim, hidden_sizes) * args.batch_size / mm
    rows = []
    for name, ((module, _), label, reference) in contenders.items():
        masks = plain_masks(module) if isinstance(module, PlainMaskedMLP) else model_masks(module)
        flops = 3 * useful_flops(masks) * args.batch_size  # per step
        per_step = seconds[name] / args.steps
        rows.append(
            [
                text,
                label,
                f"{per_step * 1e3:.2f}",
                f"{args.batch_size / per_step:,.0f}",
                f"{seconds[reference] / seconds[name]:.2f}",
                f"{flops / per_step / 1e9:.1f}",
                f"{flops / per_step / mm_rate:.0%}",
            ]
        )
    rows.append(
        [text, "torch.mm of the dense shapes (no masks)", f"{mm * 1e3:.2f}", "", "",
         f"{mm_rate / 1e9:.1f}", "100%"]
    )  # fmt: skip
    return rows


def evaluation(args: argparse.Namespace) -> list[list[str]]:
    return [row for text in args.architectures for row in evaluation_rows(text, args)]


def evaluation_rows(text: str, args: argparse.Namespace) -> list[list[str]]:
    dim, hidden_sizes = parse_architecture(text)
    torch.manual_seed(args.seed)
    model = dk.create_model("bernoulli", dim, hidden_sizes=hidden_sizes, masks="natural")
    grouped = dk.create_model(
        "bernoulli", dim, hidden_sizes=hidden_sizes, masks="natural", layout="dense"
    )
    dense = dk.create_model(
        "bernoulli", dim, hidden_sizes=hidden_sizes, masks="natural", layout="dense"
    )
    dense.backbone.products = "dense"
    ensemble = dk.create_model(
        "bernoulli",
        dim,
        hidden_sizes=hidden_sizes,
        masks="multi-ordering",
        num_masks=args.num_masks,
    )
    plain = PlainMaskedMLP(dim, hidden_sizes, seed=args.seed)
    x = binary_batches(dim, args.eval_batch_size, 1, args.seed)[0]
    x_float = x.float()
    ensemble_calls = max(1, args.eval_steps // args.num_masks)

    def plain_forward() -> None:
        for _ in range(args.eval_steps):
            logits = plain(x_float)
            -F.binary_cross_entropy_with_logits(logits, x_float, reduction="none").sum(-1)

    def library_forward(library: dk.AutoregressiveModel) -> Callable[[], None]:
        def run() -> None:
            for _ in range(args.eval_steps):
                library.log_prob(x, mask=0)

        return run

    def ensemble_forward() -> None:
        for _ in range(ensemble_calls):
            ensemble.log_prob(x)

    with torch.no_grad():
        seconds = interleaved(
            {
                "plain": plain_forward,
                "library": library_forward(model),
                "grouped": library_forward(grouped),
                "dense": library_forward(dense),
                "ensemble": ensemble_forward,
                "mm": matmul_runner(
                    dim, hidden_sizes, args.eval_batch_size, backward=False, steps=args.eval_steps
                ),
            },
            repeats=args.repeats,
            warmup=1,
        )
    mm = seconds["mm"] / args.eval_steps
    mm_rate = dense_flops(dim, hidden_sizes) * args.eval_batch_size / mm
    per_batch = {
        "plain": seconds["plain"] / args.eval_steps,
        "library": seconds["library"] / args.eval_steps,
        "grouped": seconds["grouped"] / args.eval_steps,
        "dense": seconds["dense"] / args.eval_steps,
        "ensemble": seconds["ensemble"] / ensemble_calls,
    }
    ensemble_flops = sum(
        useful_flops(mask_list)
        for mask_list in (
            [layer.mask_stack[k] for layer in ensemble.backbone.layers]
            for k in range(args.num_masks)
        )
    )
    rows = []
    for name, label, forwards, flops in [
        ("plain", "plain masked MLP forward (baseline)", 1, useful_flops(plain_masks(plain))),
        ("library", f"densitykit log_prob, one mask, automatic ({model.backbone.layout})", 1,
         useful_flops(model_masks(model))),
        ("grouped", f"densitykit log_prob, one mask, dense layout, automatic "
         f"({path(dim, hidden_sizes, 1, args.eval_batch_size)})", 1,
         useful_flops(model_masks(grouped))),
        ("dense", "densitykit log_prob, one mask, dense layout and products", 1,
         useful_flops(model_masks(dense))),
        ("ensemble", f"densitykit log_prob, {args.num_masks}-mask ensemble, automatic "
         f"({path(dim, hidden_sizes, args.num_masks, args.eval_batch_size)})", args.num_masks,
         ensemble_flops),
    ]:  # fmt: skip
        ratio = per_batch["plain"] / per_batch[name]
        rows.append(
            [
                text,
                label,
                f"{per_batch[name] * 1e3:.1f}",
                f"{args.eval_batch_size / per_batch[name]:,.0f}",
                f"{ratio:.3f}",
                f"{forwards * ratio:.2f}",
                f"{flops * args.eval_batch_size / per_batch[name] / 1e9:.1f}",
                f"{flops * args.eval_batch_size / per_batch[name] / mm_rate:.0%}",
            ]
        )
    rows.append(
        [text, "torch.mm of the dense shapes (no masks)", f"{mm * 1e3:.1f}", "", "", "",
         f"{mm_rate / 1e9:.1f}", "100%"]
    )  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--architectures", nargs="+", default=list(DEFAULT_ARCHITECTURES), help="D-H1-...-D"
    )
    parser.add_argument("--batch-size", type=int, default=100, help="training batch")
    parser.add_argument("--steps", type=int, default=20, help="training steps per timing")
    parser.add_argument("--eval-batch-size", type=int, default=1000, help="evaluation batch")
    parser.add_argument("--eval-steps", type=int, default=32, help="single-mask batches per timing")
    parser.add_argument("--num-masks", type=int, default=32, help="masks of the ensemble")
    parser.add_argument("--repeats", type=int, default=7, help="timings per figure (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's choice)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run of a few seconds")
    args = parser.parse_args()
    if args.quick:
        args.architectures = ["196-125-196", "196-128-128-196"]
        args.steps, args.eval_steps, args.num_masks, args.repeats = 3, 4, 4, 2

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=dk.masks.ConnectivityWarning)
    print(machine_report())
    print()
    print(
        f"(a) training: forward + backward + Adam, batch {args.batch_size}, binary data; "
        f"median of {args.repeats} timings of {args.steps} steps"
    )
    print(
        table(
            ["model", "implementation", "ms/step", "examples/s", "vs plain, same Adam",
             "useful GFLOP/s", "of mm rate"],
            training(args),
        )
    )  # fmt: skip
    print()
    print(
        f"(b) likelihood evaluation without gradients, batch {args.eval_batch_size}; "
        f"median of {args.repeats} timings"
    )
    print(
        table(
            ["model", "implementation", "ms/batch", "examples/s", "vs plain",
             "mask-passes vs plain", "useful GFLOP/s", "of mm rate"],
            evaluation(args),
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
