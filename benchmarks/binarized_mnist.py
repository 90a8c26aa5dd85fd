"""Test NLL of named MADE recipes on the binarized MNIST benchmark (50k / 10k / 10k).

    python benchmarks/binarized_mnist.py paper-1hl --data-dir ~/data/mnist
    python benchmarks/binarized_mnist.py cpu-best --data-dir ~/data/mnist --threads 1
    python benchmarks/binarized_mnist.py large --data-dir ~/data/mnist --device cuda
    python benchmarks/binarized_mnist.py large --data-dir ~/data/mnist --quick
    python benchmarks/binarized_mnist.py levers --data-dir ~/data/mnist --ema-decay 0.999

Each recipe is one ``densitykit`` run (``densitykit.runs.fit_run``) on the
``binarized-mnist`` data set built from the official IDX files in ``--data-dir``: the
first 50,000 training images train, the last 10,000 validate (early stopping), the
official 10,000 test images test, every pixel drawn once as Bernoulli(grey / 255) with
seed 0. The run folder goes to ``--out`` (``runs/binarized-mnist/<recipe>``); the
figures (test NLL, epochs, best epoch, training and evaluation wall time, parameter
count, masks in the evaluation mixture, machine and load) to ``--save`` (``<out>.json``).
The last line printed is ``test_nll_nats=<value>``, in nats per image.

The ``levers`` recipe is the baseline the training levers are measured against; the
flags ``--optimizer``, ``--lr``, ``--lr-schedule``, ``--weight-decay``, ``--ema-decay``
and ``--dropout`` change one setting of any recipe (``TrainConfig`` and ``ModelConfig``
fields, so the same run is ``densitykit fit`` with the same options), and name the
default run folder after what they changed (``runs/binarized-mnist/levers-ema-decay-0.999``).

``--quick`` runs every code path in seconds, on 1,000 training images and the last
1,000 training-file images for validation, for 2 epochs, with at most 2 masks and
hidden layers of at most 500 units: its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from densitykit.model import ModelConfig
from densitykit.runs import DataConfig, RunConfig, load_run
from densitykit.train import TrainConfig, evaluate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_recipe_arguments, fit_recipe_run, machine_report


@dataclass(frozen=True)
class Recipe:
    """One named benchmark run: its model and its training (with any wall-time budget)."""

    description: str
    model: ModelConfig
    train: TrainConfig
    data_options: dict[str, Any] = field(default_factory=dict)


RECIPES: dict[str, Recipe] = {
    "paper-1hl": Recipe(
        "The first point of the MADE paper's Figure 2: one hidden layer of 500 ReLU units, "
        "one mask with one fixed random pixel ordering (seed 0), no direct connections; "
        "Adam 1e-3 with L2 weight decay 1e-4 (as pytorch-made, which reproduces 94.5), "
        "batch 100, early stopping with patience 30 (the paper's).",
        ModelConfig(hidden_sizes=(500,), masks="random", num_masks=1, direct_connections=False),
        TrainConfig(epochs=300, batch_size=100, lr=1e-3, weight_decay=1e-4, patience=30),
    ),
    "cpu-best": Recipe(
        "The best model found to train within 60 minutes on a 2-core CPU: one hidden layer "
        "of 4,000 ReLU units with direct connections and dropout 0.1, one mask (natural "
        "order), Adam 1e-3 with L2 weight decay 1e-4, batch 100, an exponential moving "
        "average of the weights (decay 0.999) validated, kept and tested, early stopping "
        "with patience 5, training stopped after the epoch that passes 55 minutes.",
        ModelConfig(
            hidden_sizes=(4000,),
            masks="natural",
            num_masks=1,
            direct_connections=True,
            dropout=0.1,
        ),
        TrainConfig(
            epochs=300,
            batch_size=100,
            lr=1e-3,
            weight_decay=1e-4,
            patience=5,
            ema_decay=0.999,
            time_budget_minutes=55.0,
        ),
    ),
    "large": Recipe(
        "For one GPU: the MADE paper's MNIST architecture, two hidden layers of 8,000 ReLU "
        "units with direct connections, 32 connectivities of the natural order cycled "
        "every step and mixed at test, Adam 1e-3 with L2 weight decay 1e-4, batch 100, "
        "early stopping on the 32-mask validation NLL with patience 30.",
        ModelConfig(
            hidden_sizes=(8000, 8000), masks="natural", num_masks=32, direct_connections=True
        ),
        TrainConfig(epochs=1000, batch_size=100, lr=1e-3, weight_decay=1e-4, patience=30),
    ),
    "wide-resample": Recipe(
        "The binarized-mnist-resample preset: one hidden layer of 16,000 ReLU units with "
        "direct connections and dropout 0.2, trained with dynamic binarization (each epoch "
        "a fresh Bernoulli(grey / 255) draw of the 50,000 training images; validation and "
        "test stay the benchmark's fixed draw), one mask (natural order), Adam 1e-3 with "
        "L2 weight decay 1e-4, batch 100, the weight average (decay 0.999), patience 6, "
        "stopped after the epoch that passes 105 minutes.",
        ModelConfig(
            hidden_sizes=(16000,),
            masks="natural",
            num_masks=1,
            direct_connections=True,
            dropout=0.2,
        ),
        TrainConfig(
            epochs=300,
            batch_size=100,
            lr=1e-3,
            weight_decay=1e-4,
            patience=6,
            ema_decay=0.999,
            time_budget_minutes=105.0,
        ),
        data_options={"resample": True},
    ),
    "levers": Recipe(
        "The baseline the training levers are measured against, one at a time: one hidden "
        "layer of 500 ReLU units with direct connections, one mask (natural order), Adam "
        "1e-3, batch 100, patience 15, at most 40 epochs (a cap that keeps a run within "
        "about 8 minutes on a 2-core CPU).",
        ModelConfig(hidden_sizes=(500,), masks="natural", num_masks=1, direct_connections=True),
        TrainConfig(epochs=40, batch_size=100, lr=1e-3, patience=15),
    ),
}
"""The named recipes; each one command (see the module notes)."""

QUICK_TRAIN, QUICK_VAL, QUICK_WIDTH, QUICK_MASKS = 1000, 1000, 500, 2

LEVERS: dict[str, tuple[type, str]] = {
    "optimizer": (str, "Override the optimizer (adam, adamw, adagrad)."),
    "lr": (float, "Override the learning rate."),
    "lr_schedule": (str, "Override the learning-rate schedule (constant, cosine)."),
    "weight_decay": (float, "Override the weight decay."),
    "ema_decay": (float, "Average the weights with this decay (e.g. 0.999)."),
    "dropout": (float, "Override the dropout probability of the hidden units."),
}
"""The settings a command-line flag changes (``--lr-schedule cosine``), so that each row
of the levers table is one command: ``dropout`` is the model's, the others training's."""


def run_config(recipe: Recipe, args: argparse.Namespace) -> RunConfig:
    """The recipe's run configuration for the command-line options."""
    options: dict[str, Any] = {
        "data_dir": str(args.data_dir),
        "seed": args.data_seed,
        **recipe.data_options,
    }
    model, train = recipe.model, replace(recipe.train, device=args.device, seed=args.seed)
    if args.quick:
        options |= {"max_train": QUICK_TRAIN, "num_val": QUICK_VAL}
        model = replace(
            model,
            hidden_sizes=tuple(min(size, QUICK_WIDTH) for size in model.hidden_sizes),
            num_masks=min(model.num_masks or 1, QUICK_MASKS),
        )
        train = replace(train, epochs=2)
    if args.num_val is not None:
        options["num_val"] = args.num_val
    levers = {key: getattr(args, key) for key in LEVERS if getattr(args, key) is not None}
    if "dropout" in levers:
        model = replace(model, dropout=levers.pop("dropout"))
    if args.epochs is not None:
        levers["epochs"] = args.epochs
    if args.time_budget is not None:
        levers["time_budget_minutes"] = args.time_budget
    if args.quick:
        levers["time_budget_minutes"] = None
    train = replace(train, **levers)
    return RunConfig(DataConfig("binarized-mnist", options), model, train)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_arguments(parser, RECIPES)
    parser.add_argument(
        "--time-budget", type=float, default=None, help="Override the wall-time budget (minutes)."
    )
    for key, (kind, text) in LEVERS.items():
        parser.add_argument("--" + key.replace("_", "-"), type=kind, default=None, help=text)
    parser.add_argument("--num-val", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--eval-masks",
        default="",
        help="Comma-separated mask counts to evaluate the test mixture with as well.",
    )
    parser.add_argument("--quick", action="store_true", help="A smoke run of a few seconds.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing run.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    recipe = RECIPES[args.recipe]
    suffix = "".join(
        f"-{key.replace('_', '-')}-{getattr(args, key)}"
        for key in LEVERS
        if getattr(args, key) is not None
    ) + ("-quick" if args.quick else "")
    out = args.out or Path("runs") / "binarized-mnist" / f"{args.recipe}{suffix}"
    save = args.save or out.with_name(out.name + ".json")
    config = run_config(recipe, args)
    metrics, run_seconds, load_before = fit_recipe_run(
        config, out, name=args.recipe, description=recipe.description, overwrite=args.overwrite
    )

    run = load_run(out, device=args.device)
    num_masks = run.model.num_masks
    timings: dict[int, tuple[float, float]] = {}
    counts = {num_masks, *(int(k) for k in args.eval_masks.split(",") if k)}
    for count in sorted(k for k in counts if 1 <= k <= num_masks):
        tic = time.perf_counter()
        nll = evaluate(run.model, run.dataset.test, num_masks=count)
        timings[count] = (nll, time.perf_counter() - tic)
    test_nll, eval_seconds = timings[num_masks]
    figures = {
        "recipe": args.recipe,
        "quick": args.quick,
        "command": " ".join(["python", *sys.argv]),
        "test_nll_nats": test_nll,
        "val_nll_nats": metrics["val_nll_nats"],
        "train_nll_nats_at_best_epoch": metrics["train_nll_nats"],
        "epochs_run": metrics["epochs_run"],
        "best_epoch": metrics["best_epoch"],
        "stopped_early": metrics["stopped_early"],
        "stop_reason": metrics["stop_reason"],
        "time_budget_minutes": config.train.time_budget_minutes,
        "train_seconds": metrics["train_seconds"],
        "eval_seconds": eval_seconds,
        "run_seconds_including_data_and_pictures": run_seconds,
        "num_params": metrics["num_params"],
        "eval_masks": num_masks,
        "test_nll_nats_by_eval_masks": {str(k): v[0] for k, v in timings.items()},
        "eval_seconds_by_eval_masks": {str(k): v[1] for k, v in timings.items()},
        "sizes": {split: len(data) for split, data in run.dataset.splits().items()},
        "config": config.to_dict(),
        "threads": torch.get_num_threads(),
        "load_average_at_start": load_before,
        "load_average_at_end": os.getloadavg(),
        "machine": machine_report(),
    }
    save.parent.mkdir(parents=True, exist_ok=True)
    save.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(
        json.dumps({k: v for k, v in figures.items() if k not in ("config", "machine")}),
        file=sys.stderr,
    )
    print(f"test_nll_nats={test_nll:.4f}")


if __name__ == "__main__":
    main()
