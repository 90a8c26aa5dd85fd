"""Sampling speed: the fast sampler against the D-pass reference, run by run.

Draws samples from Bernoulli MADEs on 784 binary variables (natural ordering, built
with ``dk.create_model``) with ``sampling.sample_reference`` (one full forward pass
per variable: the baseline) and with ``sampling.sample_fast`` (every unit computed
once), from identically seeded generators, and checks that both give the same
samples. It then times completing ``--completions`` images (100 by default) with the
top half observed, with ``queries.complete_reference`` (one forward pass per missing
variable) and ``queries.complete`` (the fast sampler, started after the observed
prefix), and checks that both give the same completions. Each run times the
reference once and then the fast sampler (median of three calls, index groups cached
as ``model.sample`` has them); the speed-up of every run is printed, so a target
like "at least 80x in every run" can be read off. Runs of more than 1,000 samples
are timed ``--large-runs`` times (the reference takes minutes there).

Run ``python benchmarks/sampling.py`` for the headline figures (about 8 minutes on a
2-core CPU, almost all of it in the reference) or ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable

import torch
from _common import machine_report, median_time, parse_architecture, table

import densitykit as dk
from densitykit import plans, queries, sampling

DEFAULT_ARCHITECTURES = ("784-500-784", "784-512-512-784")


def timed(run) -> tuple[float, torch.Tensor]:
    start = time.perf_counter()
    result = run()
    return time.perf_counter() - start, result


def measure(
    draw_reference: Callable[[torch.Generator], torch.Tensor],
    draw_fast: Callable[[torch.Generator], torch.Tensor],
    runs: int,
    seed: int,
) -> tuple[list[float], list[float], list[float], list[float], bool]:
    """Per run: reference seconds, fast seconds (median of 3 calls), ratio, load; identical."""

    def reference() -> torch.Tensor:
        return draw_reference(torch.Generator().manual_seed(seed))

    def fast() -> torch.Tensor:
        return draw_fast(torch.Generator().manual_seed(seed))

    reference_times, fast_times, ratios, loads, identical = [], [], [], [], True
    for _ in range(runs):
        loads.append(os.getloadavg()[0])
        reference_time, expected = timed(reference)
        fast_calls = [timed(fast) for _ in range(3)]
        fast_time = statistics.median(seconds for seconds, _ in fast_calls)
        identical &= all(torch.equal(expected, samples) for _, samples in fast_calls)
        reference_times.append(reference_time)
        fast_times.append(fast_time)
        ratios.append(reference_time / fast_time)
    return reference_times, fast_times, ratios, loads, identical


def completion_row(
    text: str, parts: tuple, num_completions: int, runs: int, seed: int, checks: list[str]
) -> list[object]:
    """Time completing the bottom half given the top half (the first half of the variables)."""
    dim = parts[0].dim
    side = math.isqrt(dim)
    if side * side == dim:
        observed = queries.observed_pattern("top-half", (side, side))[0]
    else:
        observed = torch.arange(dim) < dim // 2
    x = sampling.sample_fast(*parts, num_completions, generator=torch.Generator().manual_seed(1))
    reference_times, fast_times, ratios, _, identical = measure(
        lambda g: queries.complete_reference(*parts, x, observed, generator=g),
        lambda g: queries.complete(*parts, x, observed, generator=g),
        runs,
        seed,
    )
    checks.append(
        f"{text}, {num_completions:,} completions: fast and reference completions identical "
        f"with the same generator in every run: {identical}"
    )
    return [
        text,
        f"{num_completions:,}",
        runs,
        f"{statistics.median(reference_times):.3f}",
        f"{statistics.median(fast_times):.4f}",
        f"{min(ratios):.0f}x",
        f"{statistics.median(ratios):.0f}x",
        " ".join(f"{ratio:.0f}" for ratio in ratios),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--num-samples", type=int, nargs="+", default=[1, 100, 1000, 10000], help="samples"
    )
    parser.add_argument(
        "--architectures", nargs="+", default=list(DEFAULT_ARCHITECTURES), help="D-H1-...-D"
    )
    parser.add_argument("--runs", type=int, default=5, help="runs per figure up to 1,000 samples")
    parser.add_argument("--large-runs", type=int, default=1, help="runs above 1,000 samples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling generator")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's choice)"
    )
    parser.add_argument(
        "--completions",
        type=int,
        default=100,
        help="images completed (top half observed) per timing run; 0 skips completion",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run of a few seconds")
    args = parser.parse_args()
    if args.quick:
        args.num_samples, args.runs, args.large_runs = [1, 20], 2, 1
        args.completions = min(args.completions, 20)
        args.architectures = ["196-125-196", "196-128-128-196"]

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=dk.masks.ConnectivityWarning)
    print(machine_report())
    print()

    rows, checks, completion_rows = [], [], []
    for text in args.architectures:
        dim, hidden_sizes = parse_architecture(text)
        model = dk.create_model("bernoulli", dim, hidden_sizes=hidden_sizes, masks="natural")
        model.eval()
        parts = model.backbone, model.head

        # Warm-ups: a short reference run and a fast one (which caches the index groups).
        sampling.sample_reference(*parts, 10)
        sampling.sample_fast(*parts, 10)
        plan_time, _ = median_time(lambda p=parts: plans.build_mask_plan(p[0], 0), repeats=5)
        for num_samples in args.num_samples:
            runs = args.runs if num_samples <= 1000 else args.large_runs
            reference_times, fast_times, ratios, loads, identical = measure(
                lambda g, n=num_samples, p=parts: sampling.sample_reference(*p, n, generator=g),
                lambda g, n=num_samples, p=parts: sampling.sample_fast(*p, n, generator=g),
                runs,
                args.seed,
            )
            fast_median = statistics.median(fast_times)
            rows.append(
                [
                    text,
                    f"{num_samples:,}",
                    runs,
                    f"{statistics.median(reference_times):.3f}",
                    f"{fast_median:.4f}",
                    f"{num_samples / fast_median:,.0f}",
                    f"{min(ratios):.0f}x",
                    f"{statistics.median(ratios):.0f}x",
                    " ".join(f"{ratio:.0f}" for ratio in ratios),
                    f"{min(loads):.1f}-{max(loads):.1f}",
                ]
            )
            checks.append(
                f"{text}, {num_samples:,} samples: fast and reference samples identical "
                f"with the same generator in every run: {identical}"
            )
        checks.append(f"{text}: building the index groups of one mask takes {plan_time:.4f} s")
        if args.completions:
            completion_rows.append(
                completion_row(text, parts, args.completions, args.runs, args.seed, checks)
            )

    print(
        "reference: sample_reference (D forward passes); fast: sample_fast, median of 3 calls "
        "per run; speed-up = reference time / fast time of the same run"
    )
    print(
        table(
            ["model", "samples", "runs", "reference s", "fast s", "fast samples/s",
             "min speed-up", "median", "every run", "load (1 min)"],
            rows,
        )
    )  # fmt: skip
    if completion_rows:
        print()
        print(
            f"completion of {args.completions} images with the top half observed: "
            "queries.complete_reference (one forward pass per missing variable) against "
            "queries.complete (the fast sampler after the observed prefix), median of 3 calls"
        )
        print(
            table(
                ["model", "completions", "runs", "reference s", "fast s", "min speed-up",
                 "median", "every run"],
                completion_rows,
            )
        )  # fmt: skip
    print()
    print("\n".join(checks))


if __name__ == "__main__":
    main()
