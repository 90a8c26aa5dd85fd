"""Sampling speed: the fast sampler against the D-pass reference, side by side.

Draws ``--num-samples`` samples from Bernoulli MADEs on 784 binary variables (natural
ordering, built with ``dk.create_model``), once with ``sampling.sample_reference`` (one
full forward pass per variable: the baseline) and once with ``sampling.sample_fast``
(every unit computed once), from identically seeded generators, and checks that both
give the same samples.

Run ``python benchmarks/sampling.py`` for the headline figures (about 2 minutes on
a 2-core CPU, almost all of it in the baseline) or ``--quick`` for a smoke run.
"""

from __future__ import annotations

import argparse
import warnings

import torch
from _common import machine_report, median_time, parse_architecture, table

import densitykit as dk
from densitykit import sampling

DEFAULT_ARCHITECTURES = ("784-500-784", "784-512-512-784")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-samples", type=int, default=1000, help="samples per run")
    parser.add_argument(
        "--architectures",
        nargs="+",
        default=list(DEFAULT_ARCHITECTURES),
        help="models as D-H1-...-D",
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per sampler (median)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling generator")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's choice)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run of a few seconds")
    args = parser.parse_args()
    if args.quick:
        args.num_samples, args.repeats = 20, 1
        args.architectures = ["196-125-196", "196-128-128-196"]

    if args.threads is not None:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=dk.masks.ConnectivityWarning)
    print(machine_report())
    print(f"samples per run: {args.num_samples}; median of {args.repeats} timed runs each\n")

    rows, checks = [], []
    for text in args.architectures:
        dim, hidden_sizes = parse_architecture(text)
        model = dk.create_model("bernoulli", dim, hidden_sizes=hidden_sizes, masks="natural")
        model.eval()
        results = {}

        def naive(model=model, results=results):
            generator = torch.Generator().manual_seed(args.seed)
            results["naive"] = sampling.sample_reference(
                model.backbone, model.head, args.num_samples, generator=generator
            )

        def fast(model=model, results=results):
            generator = torch.Generator().manual_seed(args.seed)
            results["fast"] = sampling.sample_fast(
                model.backbone, model.head, args.num_samples, generator=generator
            )

        def fast_cold(model=model, results=results):
            sampling._PLANS.clear()  # rebuild the per-mask index groups inside the timing
            generator = torch.Generator().manual_seed(args.seed)
            results["cold"] = sampling.sample_fast(
                model.backbone, model.head, args.num_samples, generator=generator
            )

        def plan(model=model):
            sampling._build_plan(model.backbone, 0)

        # The baseline's warm-up is a short run: a full one takes a minute.
        sampling.sample_reference(
            model.backbone,
            model.head,
            min(args.num_samples, 10),
            generator=torch.Generator().manual_seed(1),
        )
        naive_time, _ = median_time(naive, repeats=args.repeats, warmup=0)
        fast_time, _ = median_time(fast, repeats=max(args.repeats, 5), warmup=2)
        cold_time, _ = median_time(fast_cold, repeats=max(args.repeats, 5), warmup=1)
        plan_time, _ = median_time(plan, repeats=max(args.repeats, 5), warmup=1)

        for name, seconds in [
            ("naive: D forward passes (baseline)", naive_time),
            ("fast: sample_fast, cached index groups", fast_time),
            ("fast, index groups rebuilt in the call", cold_time),
        ]:
            rows.append(
                [
                    text,
                    name,
                    f"{seconds:.3f}",
                    f"{args.num_samples / seconds:,.0f}",
                    f"{naive_time / seconds:.1f}x",
                ]
            )
        rows.append([text, "(building the index groups alone)", f"{plan_time:.3f}", "", ""])
        differing = int((results["naive"] != results["fast"]).sum())
        checks.append(
            f"{text}: fast and naive samples identical with the same generator: "
            f"{torch.equal(results['naive'], results['fast'])} "
            f"({differing} of {results['naive'].numel()} values differ; "
            f"cold-cache run identical too: {torch.equal(results['fast'], results['cold'])})"
        )

    print(table(["model", "sampler", "seconds", "samples/s", "speed-up"], rows))
    print()
    print("\n".join(checks))


if __name__ == "__main__":
    main()
