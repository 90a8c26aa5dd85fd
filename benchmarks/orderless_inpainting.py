"""Inpainting on binarized MNIST: an orderless model against specialists.

    python benchmarks/orderless_inpainting.py 500-scans --data-dir DIR --threads 1
    python benchmarks/orderless_inpainting.py 500-scans --data-dir DIR --specialists RUNS
    python benchmarks/orderless_inpainting.py 500-scans --quick

The question of ``benchmarks/inpainting.py``, asked of another (a): one
``densitykit.orderless.OrderlessModel`` (deep orderless NADE: one network for every
conditional ``p(x_i | x_observed)``, told which pixels are observed), trained over
all orderings with ``densitykit.train.fit``. Its figures, for the three observed patterns of
``inpainting.py`` (``top-half``, ``left-half`` and one fixed ``random:0.5`` set, seed
``--pattern-seed``), are the conditional NLL of the missing pixels of the test images
in nats per image, and its joint test NLL, each with mixtures of 1, 8 and 32 seeded
orderings (``Recipe.mixtures``: 1 and 4 for two hidden layers;
``model.orderings(K, seed=1000003)``; every factor is exact, one network evaluation
per pixel).

(b) and (c) are the natural-order MADE and the specialists of the inpainting recipe
the orderless recipe names (``Recipe.specialists``), the same size of hidden layers:
``--specialists DIR`` reuses the run folders ``natural``, ``left-half-specialist`` and
``random-0.5-specialist`` of an ``inpainting.py`` run of that recipe (checked to be
of its settings), otherwise they are trained into ``<out>/`` (or found there with
``--reuse``). Each is asked in its own ordering, as in ``inpainting.py``.

The orderless model is saved to ``<out>/orderless/model.pt`` with its training history
(``history.json``); ``--reuse`` evaluates a saved one of the same settings instead of
training it again. The figures go to ``--save`` (``<out>.json``); the last line printed
is ``test_nll_nats=<value>``: (a)'s joint test NLL with the largest mixture.

``--quick`` runs every code path in a few seconds on generated 8x8 shape images (no
MNIST files), with tiny models for 2 epochs: its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

import densitykit as dk
from densitykit.checkpoint import write_json
from densitykit.orderless import OrderlessConfig, OrderlessModel
from densitykit.runs import RunConfig, load_run
from densitykit.train import TrainConfig, fit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import inpainting
from _common import EpochProgress, add_recipe_arguments, machine_report, table


@dataclass(frozen=True)
class Recipe:
    """An orderless model's size and training, and the inpainting recipe of its rivals."""

    description: str
    hidden_sizes: tuple[int, ...]
    train: TrainConfig
    specialists: str
    """The ``inpainting.py`` recipe whose (b) and (c) this model is compared with."""
    orderings: str = "uniform"
    """The training orderings (``OrderlessConfig.orderings``)."""
    mixtures: tuple[int, ...] = (1, 8, 32)
    """The numbers of seeded orderings (a) is asked with (each factor of a deeper
    network costs its layers after the first in full)."""


_TRAIN = TrainConfig(
    epochs=100, batch_size=100, lr=1e-3, lr_schedule="cosine", ema_decay=0.999, patience=None
)
RECIPES: dict[str, Recipe] = {
    "500": Recipe(
        "One hidden layer of 500 ReLU units with direct connections, trained over uniform "
        "orderings: Adam 1e-3 annealed to 0 over 100 epochs (cosine), batch 100, a moving "
        "average of the weights (EMA 0.999), validated on 2,000 validation images with one "
        "ordering; against the specialists of 500-told-long (the same width, EMA 0.999).",
        hidden_sizes=(500,),
        train=_TRAIN,
        specialists="500-told-long",
    ),
}
RECIPES["500-scans"] = replace(
    RECIPES["500"],
    description="500 with the training orderings of inpainting.py's 500-told-scans: half "
    "of them one of the image's 8 scan orders, half of those after a random set of pixels.",
    orderings="scans",
)
RECIPES["500-500-scans"] = replace(
    RECIPES["500-scans"],
    description="500-scans with two hidden layers of 500 units, against the specialists "
    "of inpainting.py's 500-500-long (two layers of 500, EMA 0.999).",
    hidden_sizes=(500, 500),
    specialists="500-500-long",
    mixtures=(1, 4),
)
"""The named recipes (see the module notes)."""

QUICK_MIXTURES = (1, 2)
VALIDATION_IMAGES = 2000
SPECIALIST_NAMES = ("natural", "left-half specialist", "random:0.5 specialist")


def orderless_config(recipe: Recipe, shape: tuple[int, int], quick: bool) -> OrderlessConfig:
    hidden = tuple(min(size, inpainting.QUICK_WIDTH) for size in recipe.hidden_sizes)
    options = {} if recipe.orderings == "uniform" else {"image_shape": list(shape)}
    return OrderlessConfig(
        "bernoulli",
        dim=shape[0] * shape[1],
        hidden_sizes=hidden if quick else recipe.hidden_sizes,
        orderings=recipe.orderings,
        ordering_options=options,
    )


def train_orderless(
    recipe: Recipe, config: OrderlessConfig, data: dk.data.Dataset, args: argparse.Namespace
) -> tuple[OrderlessModel, dict[str, Any]]:
    """(a), trained into ``<out>/orderless`` or, with ``--reuse``, loaded from there."""
    folder = args.out / "orderless"
    training = replace(recipe.train, device=args.device, seed=args.seed)
    if args.quick:
        training = replace(training, epochs=inpainting.QUICK_EPOCHS)
    if args.epochs is not None:
        training = replace(training, epochs=args.epochs)
    settings = {"model": config.to_dict(), "train": training.to_dict()}
    if (folder / "history.json").is_file() and not args.overwrite:
        saved = json.loads((folder / "history.json").read_text())
        if not args.reuse or saved["settings"] != json.loads(json.dumps(settings)):
            raise SystemExit(
                f"{folder} holds an orderless model; pass --reuse (same settings) or --overwrite"
            )
        print(f"reusing the orderless model in {folder}", file=sys.stderr, flush=True)
        return dk.load_checkpoint(folder / "model.pt", map_location="cpu"), saved
    torch.manual_seed(args.seed)
    model = OrderlessModel(config)

    result = fit(
        model,
        data.train,
        data.val[:VALIDATION_IMAGES],
        training,
        callbacks=[EpochProgress("orderless")],
    )
    folder.mkdir(parents=True, exist_ok=True)
    model = model.cpu()
    dk.save_checkpoint(folder / "model.pt", model)
    saved = {
        "settings": settings,
        "history": result.history,
        "epochs_run": len(result.history),
        "best_epoch": result.best_epoch,
        "best_val_nll": result.best_val_nll,
        "train_seconds": result.train_seconds,
        "num_params": sum(p.numel() for p in model.parameters()),
    }
    write_json(folder / "history.json", saved)  # atomic: a crash leaves no half file
    return model, saved


def orderless_figures(
    model: OrderlessModel,
    test: torch.Tensor,
    observed: dict[str, torch.Tensor],
    mixtures: tuple[int, ...],
) -> dict[str, Any]:
    """(a)'s joint and conditional test NLL with each mixture of seeded orderings."""
    figures: dict[str, Any] = {}
    for count in mixtures:
        orderings = model.orderings(count, seed=inpainting.INFERENCE_SEED)
        started = time.perf_counter()
        joint = 0.0
        for rows in torch.arange(len(test)).split(2000):
            joint -= float(model.log_prob(test[rows], orderings).sum())
        conditional = {
            pattern: float(
                dk.inpainting.conditional_nll(
                    model, test, seen, connectivities=orderings, batch_size=2000
                ).sum()
            )
            for pattern, seen in observed.items()
        }
        figures[str(count)] = {
            "joint_test_nll_nats": joint / len(test),
            "conditional_nll_nats": {k: v / len(test) for k, v in conditional.items()},
            "seconds": time.perf_counter() - started,
        }
        print(
            f"orderless, {count} orderings: joint {joint / len(test):.2f}, "
            + ", ".join(f"{k} {v / len(test):.2f}" for k, v in conditional.items())
            + f" ({time.perf_counter() - started:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    return figures


def write_pictures(
    model: OrderlessModel,
    test: torch.Tensor,
    shape: tuple[int, int],
    folder: Path,
    count: int,
) -> list[Path]:
    """Completions of the first 6 test images by (a), 5 each, with ``count`` orderings:
    per pattern a picture of rows (observed part, missing in grey; completions;
    original). ``random:0.5`` draws a pattern per image (seed 0), as the CLI does."""
    folder.mkdir(parents=True, exist_ok=True)
    images, samples = test[:6], 5
    orderings = model.orderings(count, seed=inpainting.INFERENCE_SEED)
    paths = []
    for name in inpainting.PATTERNS:
        generator = torch.Generator().manual_seed(0)
        pattern = dk.queries.observed_pattern(name, shape, len(images), generator=generator)
        _, rows = dk.inpainting.complete_images(
            model,
            images,
            pattern,
            samples,
            generator=torch.Generator().manual_seed(0),
            connectivities=orderings,
        )
        path = folder / f"orderless-completions-{name.replace(':', '-').replace('.', '-')}.png"
        paths.append(dk.plots.sample_grid(rows, shape, path, columns=samples + 2))
    return paths


def specialist_figures(
    recipe: Recipe,
    data_config: dk.runs.DataConfig,
    shape: tuple[int, int],
    observed: dict[str, torch.Tensor],
    test: torch.Tensor,
    args: argparse.Namespace,
) -> dict[str, dict[str, Any]]:
    """(b) and (c): reused from ``--specialists`` (or ``--out``), else trained there."""
    rivals = inpainting.RECIPES[recipe.specialists]
    configs = inpainting.model_configs(rivals, shape, observed, args.quick, False)
    folder = args.specialists or args.out
    budget = argparse.Namespace(**{**vars(args), "time_budget": None})
    figures = {}
    for name in SPECIALIST_NAMES:
        run_folder = folder / inpainting.folder_name(name)
        config = RunConfig(
            data_config, configs[name], inpainting.model_training(rivals, configs[name], budget)
        )
        reuse = args.specialists is not None or args.reuse
        earlier = inpainting.reused(name, config, run_folder) if reuse else None
        if args.specialists is not None and earlier is None:
            raise SystemExit(f"{run_folder} holds no completed run of {name}")
        metrics = inpainting.train(name, config, run_folder, args.overwrite, earlier)
        model = load_run(run_folder, device="cpu").model
        figures[name] = {
            "run": str(run_folder),
            "joint_test_nll_nats": metrics["test_nll_nats"],
            "epochs_run": metrics["epochs_run"],
            "best_epoch": metrics["best_epoch"],
            "train_seconds": metrics["train_seconds"],
            "conditional_nll_nats": {
                pattern: inpainting.conditional_nll(model, test, seen)[0]
                for pattern, seen in observed.items()
            },
        }
    return figures


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_arguments(parser, RECIPES, data_dir_required=False, out_help="Folder of the runs.")
    parser.add_argument(
        "--pattern-seed", type=int, default=0, help="Seed of the random:0.5 observed set."
    )
    parser.add_argument(
        "--max-train", type=int, default=None, help="Train on the first N images only."
    )
    parser.add_argument(
        "--specialists",
        type=Path,
        default=None,
        help="The folder of a finished inpainting.py run of the recipe's specialists.",
    )
    parser.add_argument(
        "--only-orderless", action="store_true", help="Train (a) only and stop (no table)."
    )
    parser.add_argument(
        "--pictures",
        type=Path,
        default=None,
        help="Also write pictures of (a)'s completions into this folder.",
    )
    parser.add_argument("--quick", action="store_true", help="A smoke run of a few seconds.")
    parser.add_argument("--overwrite", action="store_true", help="Replace existing runs.")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="Evaluate saved models of the same settings instead of training them again.",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = RECIPES[args.recipe]
    suffix = "-quick" if args.quick else ""
    args.out = args.out or Path("runs") / "orderless-inpainting" / f"{args.recipe}{suffix}"
    save = args.save or args.out.with_name(args.out.name + ".json")
    data_config, shape = inpainting.data_config(args)
    observed = inpainting.observed_sets(shape, args.pattern_seed)
    print(machine_report(), file=sys.stderr)
    print(f"recipe {args.recipe}: {recipe.description}", file=sys.stderr, flush=True)
    load_before = os.getloadavg()
    data = dk.data.load_dataset(data_config.name, **data_config.options)
    model, training = train_orderless(
        recipe, orderless_config(recipe, shape, args.quick), data, args
    )
    if args.only_orderless:
        print(f"trained the orderless model into {args.out}; run again with --reuse for the table")
        return
    model.eval()
    mixtures = QUICK_MIXTURES if args.quick else recipe.mixtures
    figures = orderless_figures(model, data.test, observed, mixtures)
    rivals = specialist_figures(recipe, data_config, shape, observed, data.test, args)
    if args.pictures is not None:
        for path in write_pictures(model, data.test, shape, args.pictures, mixtures[-1]):
            print(f"wrote {path}", file=sys.stderr)

    largest = figures[str(mixtures[-1])]
    rows = []
    for pattern in inpainting.PATTERNS:
        specialist = rivals[inpainting.SPECIALISTS[pattern]]["conditional_nll_nats"][pattern]
        ours = [figures[str(k)]["conditional_nll_nats"][pattern] for k in mixtures]
        rows.append(
            [pattern, int((~observed[pattern]).sum())]
            + [f"{value:.2f}" for value in ours]
            + [f"{specialist:.2f}", f"{ours[-1] - specialist:+.2f}"]
        )
    natural = rivals["natural"]["joint_test_nll_nats"]
    joints = [figures[str(k)]["joint_test_nll_nats"] for k in mixtures]
    rows.append(
        ["joint test NLL", "-"]
        + [f"{value:.2f}" for value in joints]
        + [f"{natural:.2f} (natural)", f"{joints[-1] - natural:+.2f}"]
    )
    print(
        "conditional NLL of the missing pixels and joint NLL, nats per test image; (a) the "
        f"orderless model with K orderings; (c) the specialists of {recipe.specialists}"
    )
    header = ["observed", "missing"] + [f"(a) K={k}" for k in mixtures]
    print(table([*header, "(c) specialist", f"(a) K={mixtures[-1]} - (c)"], rows))
    print(
        f"(a): {training['epochs_run']} epochs (best {training['best_epoch']}), "
        f"{training['train_seconds']:.0f} s training, {training['num_params']:,} weights"
    )
    report = {
        "recipe": args.recipe,
        "description": recipe.description,
        "quick": args.quick,
        "command": " ".join(["python", *sys.argv]),
        "data": data_config.name,
        "pattern_seed": args.pattern_seed,
        "orderless": {key: value for key, value in training.items() if key != "history"}
        | {"mixtures": figures},
        "specialists": rivals,
        "threads": torch.get_num_threads(),
        "load_average_at_start": load_before,
        "load_average_at_end": os.getloadavg(),
        "machine": machine_report(),
    }
    save.parent.mkdir(parents=True, exist_ok=True)
    save.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {save}", file=sys.stderr)
    print(f"test_nll_nats={largest['joint_test_nll_nats']:.4f}")


if __name__ == "__main__":
    main()
