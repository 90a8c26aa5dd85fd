"""MAF sampling speed: each layer inverted incrementally against the D-pass inverse.

Builds a Masked Autoregressive Flow of ``--transforms`` MADE layers over ``--dim``
variables with the hidden layers ``--hidden`` (by default 5 layers, 784
variables, two hidden layers of 1,024 units per MADE; standard normal base, no batch
normalisation) and times, in the same run:

- drawing ``--num-samples`` samples with the incremental sampler (each layer's inverse
  is ``sampling.sample_fast`` with the random numbers given: about one pass of
  arithmetic per layer) and with the D-pass inverse (``sample_reference``: one full
  MADE pass per variable and layer, what nflows, zuko, pyro and sbi do), from the
  same base draws, interleaved run by run, with the ratio of every run and the
  largest difference between the two samples;
- a training step (Adam, batch ``--batch-size``) and scoring a batch;
- where they import, zuko's and nflows' MAF of the same sizes (their training step
  and their own samplers), skipped with a line saying so when absent.

The thread count is set with ``--threads`` (1 by default: the machine is shared) and
printed with the machine. Run ``python benchmarks/maf_sampling.py`` for the headline
figures (about 12 minutes on a shared 2-core CPU, almost all of it in the D-pass
inverses and the other libraries' samplers: ``--reference-max 100`` skips the D-pass
inverses above 100 samples) or ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import time
from collections.abc import Callable

import torch
from _common import machine_report, table

import densitykit as dk


def timed(run: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def step_timer(model: torch.nn.Module, log_prob: Callable[[torch.Tensor], torch.Tensor],
               batch: torch.Tensor) -> Callable[[], float]:  # fmt: skip
    """One Adam training step of ``model`` on ``batch``, timed."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)

    def step() -> float:
        start = time.perf_counter()
        loss = -log_prob(batch).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - start

    return step


def other_libraries(dim: int, transforms: int, hidden: tuple[int, ...]) -> dict[str, dict]:
    """zuko's and nflows' MAF of the same sizes, by name, where they import: a module to
    train, its log-density and its sampler (``n -> samples``)."""
    found: dict[str, dict] = {}
    if importlib.util.find_spec("zuko") is not None:
        import zuko

        flow = zuko.flows.MAF(features=dim, context=0, transforms=transforms,
                              hidden_features=hidden)  # fmt: skip
        found["zuko"] = {
            "module": flow,
            "log_prob": lambda x, f=flow: f().log_prob(x),
            "sample": lambda n, f=flow: f().sample((n,)),
        }
    if importlib.util.find_spec("nflows") is not None and len(set(hidden)) == 1:
        from nflows.flows import MaskedAutoregressiveFlow

        # Plain (not residual) blocks: the first hidden layer, then len(hidden) - 1 blocks.
        flow = MaskedAutoregressiveFlow(
            features=dim, hidden_features=hidden[0], num_layers=transforms,
            num_blocks_per_layer=len(hidden) - 1, use_residual_blocks=False,
        )  # fmt: skip
        found["nflows"] = {
            "module": flow,
            "log_prob": lambda x, f=flow: f.log_prob(x),
            "sample": lambda n, f=flow: f.sample(n),
        }
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=784, help="variables D")
    parser.add_argument("--transforms", type=int, default=5, help="MADE layers K")
    parser.add_argument("--hidden", default="1024,1024", help="each MADE's hidden widths")
    parser.add_argument("--num-samples", type=int, nargs="*", default=[100, 1000],
                        help="sample counts timed (none: the training steps only)")  # fmt: skip
    parser.add_argument("--runs", type=int, default=3, help="runs up to 100 samples")
    parser.add_argument("--large-runs", type=int, default=1, help="runs above 100 samples")
    parser.add_argument("--reference-max", type=int, default=None,
                        help="time the D-pass inverses only up to this many samples")  # fmt: skip
    parser.add_argument("--steps", type=int, default=7, help="timed training steps each")
    parser.add_argument("--batch-size", type=int, default=100, help="training batch")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--no-others", action="store_true", help="skip zuko and nflows")
    parser.add_argument("--others-max", type=int, default=100,
                        help="time zuko's and nflows' samplers up to this many samples (their "
                        "D-pass samplers take minutes per 100 samples)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smoke run of a few seconds")
    args = parser.parse_args()
    if args.quick:
        args.dim, args.transforms, args.hidden = 24, 2, "32,32"
        args.num_samples, args.runs, args.steps = [10, 40], 2, 3
    hidden = tuple(int(size) for size in args.hidden.split(","))
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(machine_report())
    print()

    config = dk.MAFConfig(dim=args.dim, num_transforms=args.transforms, hidden_sizes=hidden)
    model = dk.MAFModel(config).eval()
    batch = torch.randn(args.batch_size, args.dim)
    others = {} if args.no_others else other_libraries(args.dim, args.transforms, hidden)
    layouts = sorted({made.layout for made in model.transforms})
    trained = sum(p.numel() for p in model.parameters())
    print(f"MAF: {args.transforms} MADE layers {args.dim}-{args.hidden}-{2 * args.dim} "
          f"({', '.join(layouts)} layers), {dk.MAFModel.parameter_count(config):,} weights "
          f"({trained:,} stored and trained), standard normal base, "
          f"no batch normalisation; threads: {torch.get_num_threads()}")  # fmt: skip
    for name, other in others.items():
        count = sum(p.numel() for p in other["module"].parameters())
        print(f"{name}: MAF of the same sizes, {count:,} weights")
    for name in ("zuko", "nflows"):
        if name not in others and not args.no_others:
            print(f"{name}: not installed, skipped (pip install {name})")
    print()

    time_training(model, others, batch, args.steps)
    # Warm-ups (the fast sampler caches its index groups per MADE).
    model.sample(2)
    model.sample(2, reference=True)
    print(
        "sampling: incremental = each layer inverted by sampling.sample_fast; D-pass = "
        "sample_reference (one MADE pass per variable and layer), on the same base draws, "
        "timed one after the other in every run; ratio = D-pass / incremental of the run; "
        "zuko and nflows: their own samplers (D passes per layer), one run; rows printed as "
        "they are measured"
    )
    header = ["library", "samples", "runs", "incremental s", "D-pass s", "ratio per run",
              "load (1 min)"]  # fmt: skip
    print(table(header, []), flush=True)
    for num_samples in args.num_samples:
        with_reference = args.reference_max is None or num_samples <= args.reference_max
        fast_times, reference_times, ratios, loads, worst = [], [], [], [], 0.0
        for run in range(args.runs if num_samples <= 100 else args.large_runs):
            loads.append(os.getloadavg()[0])
            z = model.sample_base(num_samples, generator=torch.Generator().manual_seed(run))
            fast_time, fast = timed(lambda z=z: model.inverse(z))
            fast_times.append(fast_time)
            if with_reference:
                reference_time, reference = timed(lambda z=z: model.inverse(z, reference=True))
                reference_times.append(reference_time)
                ratios.append(reference_time / fast_time)
                worst = max(worst, float((fast - reference).abs().max()))
        row = [
            "densitykit", f"{num_samples:>7,}", len(fast_times),
            f"{statistics.median(fast_times):.3f}",
            f"{statistics.median(reference_times):.2f}" if reference_times else "-",
            " ".join(f"{ratio:.0f}x" for ratio in ratios) or "-",
            f"{min(loads):.1f}-{max(loads):.1f}",
        ]  # fmt: skip
        print(table(header, [row]).splitlines()[-1], flush=True)
        if with_reference:
            print(
                f"  {num_samples:,} samples: largest |incremental - D-pass| over every run "
                f"{worst:.1e} (float32)",
                flush=True,
            )
        for name, other in others.items():
            if num_samples > args.others_max:
                continue
            load = os.getloadavg()[0]
            with torch.no_grad():  # nflows' sampler would keep the graph of its D passes
                seconds, _ = timed(lambda n=num_samples, o=other: o["sample"](n))
            row = [
                f"{name:<10}",
                f"{num_samples:>7,}",
                1,
                "-",
                f"{seconds:.2f}",
                "-",
                f"{load:.1f}",
            ]
            print(table(header, [row]).splitlines()[-1], flush=True)


def time_training(
    model: dk.MAFModel, others: dict[str, dict], batch: torch.Tensor, steps: int
) -> None:
    """Print the training-step times of every library (interleaved) and the scoring time."""
    steppers = {"densitykit": step_timer(model.train(), model.log_prob, batch)}
    for name, other in others.items():
        steppers[name] = step_timer(other["module"].train(), other["log_prob"], batch)
    step_times: dict[str, list[float]] = {name: [] for name in steppers}
    for step in steppers.values():
        step()  # warm-up
    for _ in range(steps):
        for name, step in steppers.items():
            step_times[name].append(step())
    model.eval()
    with torch.no_grad():
        score_time = statistics.median(timed(lambda: model.log_prob(batch))[0] for _ in range(5))
    densitykit_step = statistics.median(step_times["densitykit"])
    step_rows = []
    for name, times in step_times.items():
        median = statistics.median(times)
        step_rows.append([name, len(times), f"{median * 1000:.0f}",
                          f"{median / densitykit_step:.2f}x"])  # fmt: skip
    print(f"training step (Adam, batch {len(batch)}), interleaved; relative = its time / "
          f"densitykit's; load (1 min) {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(table(["library", "steps", "median ms/step", "relative"], step_rows))
    print(f"scoring a batch of {len(batch)} (evaluation mode): {score_time * 1000:.0f} ms")
    print(flush=True)


if __name__ == "__main__":
    main()
