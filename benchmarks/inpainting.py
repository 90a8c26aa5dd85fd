"""Inpainting on binarized MNIST: one model over all orderings against specialists.

    python benchmarks/inpainting.py 500-direct --data-dir DIR --threads 2
    python benchmarks/inpainting.py 500-direct --data-dir DIR --epochs 1 --max-train 2000
    python benchmarks/inpainting.py 500-direct --quick
    python benchmarks/inpainting.py 500-500-cosine --data-dir DIR --mask-input \
        --only any-order-mask-input

Reports, for three observed patterns of the test images, the conditional NLL of the
missing pixels in nats per image, ``-log p(x_missing | x_observed)`` (see
``densitykit.queries.conditional_log_prob``):

* ``top-half``: the bottom half given the top half;
* ``left-half``: the right half given the left half;
* ``random:0.5``: a random half of the pixels given the other half. The observed set
  is drawn once (seed ``--pattern-seed``) and is the same for every test image: the
  specialist below fits that one set only.

of three kinds of model, all of the recipe's size:

(a) ``any-order``: one model trained over all orderings (a fresh one per step),
    queried with its evaluation mixture of ``num_masks`` seeded orderings;
(b) ``natural``: one natural-order (raster) model. Bottom-given-top is its own
    ordering; its figures for the other two patterns (observed pixels moved first)
    are marked "not its ordering";
(c) per pattern a specialist trained on that pattern's ordering, observed pixels
    first: for ``top-half`` that is the natural ordering, i.e. (b); for
    ``left-half`` the column-major ordering (the left half's columns come first);
    for ``random:0.5`` the fixed observed set first, then the rest (each group in
    raster order).

With ``--mask-input`` it also trains (a') the model of (a) with the mask as an input
(``mask_input=True``: the first hidden layer and the outputs are told which variables
they see under the ordering in use), and reports it beside (a). It also reports the
joint test NLL of (a) and (b) (and of every other model). Each model is one ``densitykit``
run (``densitykit.runs.fit_run``) on the ``binarized-mnist`` data set built from the
IDX files in ``--data-dir`` (50,000 / 10,000 / 10,000 images, early stopping on the
validation NLL); the run folders go under ``--out``
(``runs/inpainting/<recipe>/<model>``), the figures, each with its epochs and wall
time, to ``--save`` (``<out>.json``). The last line printed is
``test_nll_nats=<value>``: the joint test NLL of (a), in nats per image.

The recipe ``500-500-cosine`` validates its any-order models with 4 of their 32
orderings (validation runs every epoch); their joint test NLL in the table is computed
again with all 32, the mixture the conditional figures use.

In the recipes ``2000-told-cosine``, ``500-told-cosine`` and ``500-told-long`` (a)
itself has the mask as an input, so they have no (a'). They also ask (a) with 256
seeded orderings drawn at inference (``model.draw_orderings``), which it was never
built with, and report those figures beside its own mixture's. ``500-told-long`` trains
(a) with settings of its own (``Recipe.any_order_train``): an any-order model
underfits where the specialists overfit. ``500-told-regions`` and
``500-told-long-regions`` are ``500-told-cosine`` and ``500-told-long`` with (a) trained
on region-first orderings (``Recipe.orderings``, the masks option
``orderings="regions"``), half of them by default, a quarter in
``500-told-quarter-regions`` and all of them in ``500-told-all-regions``
(``Recipe.region_share``). ``500-told-scans``, ``500-told-long-scans`` and
``2000-told-scans`` are ``500-told-cosine``, ``500-told-long`` and ``2000-told-cosine``
with (a) trained on scan orderings (``orderings="scans"``: half of them one of the
image's 8 scan orders, often after a random set of pixels), and
``500-told-more-scans`` with three quarters of them (``Recipe.scan_share``). In every
one of these, every other model is the same, so their saved runs can be reused.

``--reuse`` checks every saved run before it evaluates any. A run saved under another
``--time-budget`` counts as the same settings when neither budget would have stopped
it.

``--only MODEL`` (repeatable) trains only the named models, so that separate processes
can train them side by side; a final run with ``--reuse`` and without ``--only``
evaluates the finished runs, trains any that are missing, and prints the table.

``--quick`` runs every code path in a few seconds on generated 8x8 shape images
(no MNIST files), with a tiny model for 2 epochs: its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

import densitykit as dk
from densitykit.model import ModelConfig
from densitykit.runs import DataConfig, RunConfig, fit_run, load_run, read_run_config
from densitykit.train import TrainConfig, evaluate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import EpochProgress, add_recipe_arguments, machine_report, table


@dataclass(frozen=True)
class Recipe:
    """The size and training shared by every model of one benchmark run."""

    description: str
    hidden_sizes: tuple[int, ...]
    direct_connections: bool
    num_masks: int
    train: TrainConfig
    mask_input: bool = False
    """Whether (a) itself is told its mask (``mask_input``); ``--mask-input`` then adds
    nothing."""
    validation_orderings: int | None = None
    """Orderings of the any-order models' validation mixture (``eval_masks``; ``None``:
    all ``num_masks``). Their joint test NLL is then computed again with all of them."""
    any_order_train: TrainConfig | None = None
    """The any-order models' own training, when it differs from ``train`` (``None``:
    the same as every other model)."""
    inference_orderings: int | None = None
    """If set, the any-order models are also queried with this many seeded orderings
    drawn at inference (never built into the model): joint and conditional NLL of
    that larger mixture."""
    orderings: str = "uniform"
    """The any-order models' ordering distribution (``dk.masks.ORDERINGS``):
    ``"regions"`` puts a random image region first in half of the training orderings
    (``dk.masks.region_first_ordering``), and the drawn orderings follow it."""
    region_share: float = 0.5
    """With ``orderings="regions"``, the share of region-first training orderings."""
    scan_share: float = 0.5
    """With ``orderings="scans"``, the share of scan training orderings
    (``dk.masks.scan_first_ordering``)."""


RECIPES: dict[str, Recipe] = {
    "500-direct": Recipe(
        "The issue's scale: one hidden layer of 500 ReLU units with direct connections; "
        "the any-order model mixes 8 seeded orderings at test; Adam 1e-3 with L2 weight "
        "decay 1e-4, batch 100, at most 200 epochs, early stopping with patience 10.",
        hidden_sizes=(500,),
        direct_connections=True,
        num_masks=8,
        train=TrainConfig(epochs=200, batch_size=100, lr=1e-3, weight_decay=1e-4, patience=10),
    ),
}
RECIPES["2000-direct"] = replace(
    RECIPES["500-direct"],
    description="Wider: one hidden layer of 2,000 ReLU units with direct connections, "
    "otherwise as 500-direct (width is part of what an any-order model needs).",
    hidden_sizes=(2000,),
)
RECIPES["500-500-cosine"] = Recipe(
    "Deeper and annealed: two hidden layers of 500 ReLU units with direct connections; "
    "the any-order model mixes 32 seeded orderings at test (4 in validation); Adam 1e-3 "
    "with L2 weight decay 1e-4, the learning rate annealed to 0 over 200 epochs (cosine), "
    "batch 100, early stopping with patience 10.",
    hidden_sizes=(500, 500),
    direct_connections=True,
    num_masks=32,
    train=TrainConfig(
        epochs=200,
        batch_size=100,
        lr=1e-3,
        weight_decay=1e-4,
        patience=10,
        lr_schedule="cosine",
    ),
    validation_orderings=4,
)
RECIPES["2000-told-cosine"] = replace(
    RECIPES["500-500-cosine"],
    description="Wide and told its mask: one hidden layer of 2,000 ReLU units with direct "
    "connections, (a) with the mask as an input; 32 evaluation orderings (4 in "
    "validation); Adam 1e-3 with L2 weight decay 1e-4, the learning rate annealed to 0 "
    "over 120 epochs (cosine), batch 100, early stopping with patience 30 (an any-order "
    "model's validation NLL improves by hundredths of a nat per epoch); (a) is also "
    "asked with 256 orderings drawn at inference.",
    hidden_sizes=(2000,),
    mask_input=True,
    train=replace(RECIPES["500-500-cosine"].train, epochs=120, patience=30),
    inference_orderings=256,
)
RECIPES["500-told-cosine"] = replace(
    RECIPES["2000-told-cosine"],
    description="2000-told-cosine at the issue's width: one hidden layer of 500 ReLU units, "
    "otherwise the same.",
    hidden_sizes=(500,),
)
_AVERAGED = replace(RECIPES["500-told-cosine"].train, ema_decay=0.999)
RECIPES["500-told-long"] = replace(
    RECIPES["500-told-cosine"],
    description="500-told-cosine with a moving average of the weights (EMA 0.999) for "
    "every model, and (a) trained for 400 epochs (cosine) without weight decay: it "
    "underfits (its training NLL stays above its validation NLL), while the "
    "specialists overfit and keep L2 1e-4 over 120 epochs.",
    train=_AVERAGED,
    any_order_train=replace(_AVERAGED, epochs=400, weight_decay=0.0),
)
RECIPES["500-told-regions"] = replace(
    RECIPES["500-told-cosine"],
    description="500-told-cosine with (a) trained on orderings of which half put a random "
    "image region first (a half-plane at a random angle, a box or the outside of a box; "
    "masks option orderings='regions'): the prefixes include contiguous observed parts, "
    "which uniform orderings almost never make.",
    orderings="regions",
)
RECIPES["500-told-all-regions"] = replace(
    RECIPES["500-told-regions"],
    description="500-told-regions with every training ordering of (a) region-first "
    "(region_share 1): where the trade of region-first orderings goes.",
    region_share=1.0,
)
RECIPES["500-told-quarter-regions"] = replace(
    RECIPES["500-told-regions"],
    description="500-told-regions with a quarter of the training orderings of (a) "
    "region-first (region_share 0.25).",
    region_share=0.25,
)
RECIPES["500-told-long-regions"] = replace(
    RECIPES["500-told-long"],
    description="500-told-long with (a) trained on the orderings of 500-told-regions.",
    orderings="regions",
)
RECIPES["500-told-scans"] = replace(
    RECIPES["500-told-cosine"],
    description="500-told-cosine with (a) trained on orderings of which half are scan "
    "orders of the image (row by row or column by column, either way on each axis), half "
    "of those after a random set of pixels (a region, or pixels at a random rate; masks "
    "option orderings='scans'): each missing pixel is then predicted from the observed "
    "ones and the missing ones before it in reading order, as a specialist does.",
    orderings="scans",
)
RECIPES["500-told-more-scans"] = replace(
    RECIPES["500-told-scans"],
    description="500-told-scans with three quarters of the training orderings of (a) scan "
    "orders (scan_share 0.75).",
    scan_share=0.75,
)
RECIPES["2000-told-scans"] = replace(
    RECIPES["2000-told-cosine"],
    description="2000-told-cosine with (a) trained on the orderings of 500-told-scans.",
    orderings="scans",
)
RECIPES["500-told-long-scans"] = replace(
    RECIPES["500-told-long"],
    description="500-told-long with (a) trained on the orderings of 500-told-scans.",
    orderings="scans",
)
RECIPES["500-500-long"] = replace(
    RECIPES["500-told-long"],
    description="500-told-long with two hidden layers of 500 units for every model (the "
    "rivals of orderless_inpainting.py's 500-500-scans).",
    hidden_sizes=(500, 500),
)
"""The named recipes (see the module notes)."""

PATTERNS = ("top-half", "left-half", "random:0.5")
INFERENCE_SEED = 1_000_003  # the orderings drawn at inference, apart from every model's own
QUICK_SIZE, QUICK_IMAGES, QUICK_WIDTH, QUICK_MASKS, QUICK_EPOCHS = 8, 400, 32, 2, 2
QUICK_VALIDATION_ORDERINGS = 1  # fewer than QUICK_MASKS: the joint NLL is computed again
QUICK_INFERENCE_ORDERINGS = 3


def observed_sets(shape: tuple[int, int], seed: int) -> dict[str, torch.Tensor]:
    """The observed pixels ``(D,)`` of each pattern; ``random:0.5`` drawn once with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return {
        name: dk.queries.observed_pattern(name, shape, 1, generator=generator)[0]
        for name in PATTERNS
    }


def observed_first_ordering(observed: torch.Tensor) -> list[int]:
    """The observed pixels first, then the missing ones, each group in raster order."""
    return torch.cat([observed.nonzero()[:, 0], (~observed).nonzero()[:, 0]]).tolist()


def column_major(shape: tuple[int, int]) -> list[int]:
    """Pixels column by column, each top to bottom: the left half's columns come first."""
    height, width = shape
    return [row * width + col for col in range(width) for row in range(height)]


def model_configs(
    recipe: Recipe,
    shape: tuple[int, int],
    observed: dict[str, torch.Tensor],
    quick: bool,
    mask_input: bool,
) -> dict[str, ModelConfig]:
    """The models to train: (a), (b), the specialists of left-half and random:0.5, and
    with ``mask_input`` (a') (a with the mask as an input)."""
    hidden = recipe.hidden_sizes
    num_masks = recipe.num_masks
    if quick:
        hidden = tuple(min(size, QUICK_WIDTH) for size in hidden)
        num_masks = min(num_masks, QUICK_MASKS)
    base = ModelConfig(
        hidden_sizes=hidden, direct_connections=recipe.direct_connections, num_masks=1
    )
    any_order = replace(base, masks="any-order", num_masks=num_masks, mask_input=recipe.mask_input)
    if recipe.orderings != "uniform":
        options = {"orderings": recipe.orderings, "image_shape": list(shape)}
        if recipe.region_share != Recipe.region_share:
            options["region_share"] = recipe.region_share
        if recipe.scan_share != Recipe.scan_share:
            options["scan_share"] = recipe.scan_share
        any_order = replace(any_order, mask_options=options)
    told = mask_input and not recipe.mask_input
    extra = {MASK_INPUT: replace(any_order, mask_input=True)} if told else {}
    return {
        "any-order": any_order,
        **extra,
        "natural": replace(base, masks="natural"),
        "left-half specialist": replace(
            base, masks="ordering", mask_options={"ordering": column_major(shape)}
        ),
        "random:0.5 specialist": replace(
            base,
            masks="ordering",
            mask_options={"ordering": observed_first_ordering(observed["random:0.5"])},
        ),
    }


# (a') of the module notes: (a) told which variables each unit sees (--mask-input).
MASK_INPUT = "any-order + mask input"
# The model that answers each pattern in its own ordering: (c) of the module notes.
SPECIALISTS = {
    "top-half": "natural",
    "left-half": "left-half specialist",
    "random:0.5": "random:0.5 specialist",
}


def folder_name(name: str) -> str:
    """A model's run folder under ``--out`` and its name for ``--only``, e.g.
    ``any-order-mask-input``."""
    return re.sub(r"[^a-z0-9.]+", "-", name)


def model_training(recipe: Recipe, model: ModelConfig, args: argparse.Namespace) -> TrainConfig:
    """A model's training: the recipe's (the any-order one for an any-order model) with
    the command's device, seed, time budget and epochs, and the recipe's validation
    orderings for a model of several."""
    training = recipe.train
    if model.masks == "any-order" and recipe.any_order_train is not None:
        training = recipe.any_order_train
    training = replace(
        training, device=args.device, seed=args.seed, time_budget_minutes=args.time_budget
    )
    if args.quick:
        training = replace(training, epochs=QUICK_EPOCHS)
    if args.epochs is not None:
        training = replace(training, epochs=args.epochs)
    orderings = recipe.validation_orderings
    if orderings is None or (model.num_masks or 1) == 1:
        return training
    if args.quick:
        orderings = QUICK_VALIDATION_ORDERINGS
    return replace(training, eval_masks=min(orderings, model.num_masks))


def data_config(args: argparse.Namespace) -> tuple[DataConfig, tuple[int, int]]:
    """The data set of every run and its image shape."""
    if args.quick:
        options = {"size": QUICK_SIZE, "num_samples": QUICK_IMAGES, "seed": args.data_seed}
        return DataConfig("shapes", options), (QUICK_SIZE, QUICK_SIZE)
    if args.data_dir is None:
        raise SystemExit("--data-dir DIR (a folder of the MNIST IDX files) is needed")
    options: dict[str, Any] = {"data_dir": str(args.data_dir), "seed": args.data_seed}
    if args.max_train is not None:
        options["max_train"] = args.max_train
    return DataConfig("binarized-mnist", options), (28, 28)


def conditional_nll(
    model: dk.AutoregressiveModel,
    data: torch.Tensor,
    observed: torch.Tensor,
    connectivities: list[dk.masks.Connectivity] | None = None,
) -> tuple[float, float]:
    """Mean ``-log p(x_missing | x_observed)`` in nats per image, and the seconds it took;
    with ``connectivities`` (else the model's own mixture)."""
    started = time.perf_counter()
    nll = dk.inpainting.conditional_nll(model, data, observed, connectivities=connectivities)
    return float(nll.sum()) / data.shape[0], time.perf_counter() - started


def inference_figures(
    model: dk.AutoregressiveModel,
    test: torch.Tensor,
    observed: dict[str, torch.Tensor],
    num_orderings: int,
) -> dict[str, Any]:
    """An any-order model asked with ``num_orderings`` seeded orderings it was never
    built with (``model.draw_orderings``, seed ``INFERENCE_SEED``)."""
    drawn = model.draw_orderings(num_orderings, seed=INFERENCE_SEED)
    started = time.perf_counter()
    figures: dict[str, Any] = {
        "orderings": num_orderings,
        "seed": INFERENCE_SEED,
        "joint_test_nll_nats": evaluate(model, test, connectivities=drawn),
        "conditional_nll_nats": {
            pattern: conditional_nll(model, test, seen, drawn)[0]
            for pattern, seen in observed.items()
        },
    }
    figures["seconds"] = time.perf_counter() - started
    return figures


def own_ordering_puts_observed_first(model: dk.AutoregressiveModel, observed: torch.Tensor) -> bool:
    """Whether the query's observed-first ordering is the model's own ordering."""
    own = model.backbone.connectivity(0)
    moved = dk.masks.observed_first(own, observed)
    return torch.equal(moved.ordering, own.ordering)


def _stop_figures(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` with what stopped the run (the library's ``stop_reason``) as two flags."""
    metrics["stopped_by_time_budget"] = metrics["stop_reason"] == "time budget"
    metrics["stopped_early"] = metrics["stop_reason"] == "patience"
    return metrics


def _without_budget(train: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in train.items() if key != "time_budget_minutes"}


def _same_under_budget(metrics: dict[str, Any], budget_minutes: float | None) -> bool:
    """Whether a saved run would have trained the same under ``budget_minutes``: its
    own budget did not stop it, and it trained for less than the new one."""
    if metrics["stopped_by_time_budget"]:
        return False
    return budget_minutes is None or metrics["train_seconds"] < 60 * budget_minutes


def reused(name: str, config: RunConfig, out: Path) -> dict[str, Any] | None:
    """The metrics of a completed run of ``config`` in ``out`` (``--reuse``), else ``None``.

    A folder that holds a completed run of other settings is refused: it is not
    silently mixed into the table. A different time budget is no other setting when
    neither budget would have stopped the run (``_same_under_budget``).
    """
    if not (out / "metrics.json").is_file():
        return None
    saved = read_run_config(out).to_dict()
    wanted = config.to_dict()
    # A run records what it resolved: the layout "auto" chose is not a difference.
    given_model = {
        k: v
        for k, v in wanted["model"].items()
        if v is not None and not (k == "layout" and v == "auto")
    }
    metrics = _stop_figures(json.loads((out / "metrics.json").read_text()))
    if (
        saved["data"] != wanted["data"]
        or _without_budget(saved["train"]) != _without_budget(wanted["train"])
        or not _same_under_budget(metrics, wanted["train"]["time_budget_minutes"])
        or any(saved["model"].get(k) != v for k, v in given_model.items())
    ):
        raise SystemExit(f"{out} holds a run of other settings than {name}'s; pass --overwrite")
    metrics["run_seconds"] = None  # not known for a reused run
    metrics["reused"] = True
    return metrics


def train(
    name: str, config: RunConfig, out: Path, overwrite: bool, earlier: dict[str, Any] | None
) -> dict[str, Any]:
    """Train one model (its time budget is ``config.train.time_budget_minutes``) into
    ``out``, unless ``earlier`` holds the metrics of a reused run; its metrics, with wall
    time."""
    if earlier is not None:
        print(f"reusing {name} from {out}", file=sys.stderr, flush=True)
        return earlier
    print(f"training {name} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    metrics = fit_run(config, out, overwrite=overwrite, callbacks=[EpochProgress(name)])
    metrics = _stop_figures(metrics)
    metrics["run_seconds"] = time.perf_counter() - started
    print(
        f"  {name}: {metrics['epochs_run']} epochs (best {metrics['best_epoch']}), "
        f"test NLL {metrics['test_nll_nats']:.3f}, {metrics['train_seconds']:.0f} s training",
        file=sys.stderr,
        flush=True,
    )
    return metrics


def model_figures(
    name: str,
    metrics: dict[str, Any],
    model: dk.AutoregressiveModel,
    test: torch.Tensor,
    observed: dict[str, torch.Tensor],
    inference_orderings: int | None = None,
) -> dict[str, Any]:
    """One model's figures: training, joint NLL and the conditional NLL of every pattern
    (and for an any-order model, those of ``inference_orderings`` drawn at inference)."""
    figures: dict[str, Any] = {
        key: metrics[key]
        for key in (
            "epochs_run",
            "best_epoch",
            "stopped_early",
            "stopped_by_time_budget",
            "train_seconds",
            "run_seconds",
            "num_params",
        )
    }
    figures["joint_test_nll_nats"] = metrics["test_nll_nats"]
    figures["eval_orderings"] = model.num_masks
    if metrics["eval_masks"] != model.num_masks:
        # The run validated and tested with fewer orderings: the joint test NLL again,
        # with the whole evaluation mixture the conditionals below use.
        figures["joint_test_nll_validation_mixture_nats"] = metrics["test_nll_nats"]
        figures["validation_orderings"] = metrics["eval_masks"]
        with torch.no_grad():
            figures["joint_test_nll_nats"] = evaluate(model, test)
    figures["own_ordering_puts_observed_first"] = {
        pattern: own_ordering_puts_observed_first(model, observed[pattern])
        for pattern, specialist in SPECIALISTS.items()
        if specialist == name
    }
    figures["conditional_nll_nats"], figures["conditional_eval_seconds"] = {}, {}
    for pattern, seen in observed.items():
        nll, seconds = conditional_nll(model, test, seen)
        figures["conditional_nll_nats"][pattern] = nll
        figures["conditional_eval_seconds"][pattern] = seconds
    if inference_orderings is not None and model.connectivity_source is not None:
        figures["inference"] = inference_figures(model, test, observed, inference_orderings)
    return figures


def pattern_results(
    models: dict[str, dict[str, Any]], observed: dict[str, torch.Tensor]
) -> dict[str, dict[str, Any]]:
    """Per pattern, the conditional NLL of (a), (b) and (c), and (a) - (c)."""
    results = {}
    for pattern in PATTERNS:
        any_order = models["any-order"]["conditional_nll_nats"][pattern]
        specialist = models[SPECIALISTS[pattern]]["conditional_nll_nats"][pattern]
        results[pattern] = {
            "missing_pixels": int((~observed[pattern]).sum()),
            "any_order_nats": any_order,
            "natural_nats": models["natural"]["conditional_nll_nats"][pattern],
            "natural_is_its_ordering": SPECIALISTS[pattern] == "natural",
            "specialist": SPECIALISTS[pattern],
            "specialist_nats": specialist,
            "any_order_minus_specialist_nats": any_order - specialist,
        }
        if "inference" in models["any-order"]:
            drawn = models["any-order"]["inference"]["conditional_nll_nats"][pattern]
            results[pattern]["any_order_inference_nats"] = drawn
            results[pattern]["any_order_inference_minus_specialist_nats"] = drawn - specialist
        if MASK_INPUT in models:
            told = models[MASK_INPUT]["conditional_nll_nats"][pattern]
            results[pattern]["any_order_mask_input_nats"] = told
            results[pattern]["any_order_mask_input_minus_specialist_nats"] = told - specialist
    return results


def stopped(figures: dict[str, Any]) -> str:
    if figures["stopped_by_time_budget"]:
        return "time budget"
    return "early stopping" if figures["stopped_early"] else "epoch limit"


def print_tables(
    results: dict[str, dict[str, Any]], models: dict[str, dict[str, Any]], pattern_seed: int
) -> None:
    print(
        "conditional NLL of the missing pixels, nats per image (test set); "
        f"random:0.5 is one observed set (seed {pattern_seed}), the specialist's own"
    )
    told = MASK_INPUT in models
    inference = models["any-order"].get("inference")
    rows = [
        [
            pattern,
            result["missing_pixels"],
            f"{result['any_order_nats']:.2f}",
            f"{result['natural_nats']:.2f}"
            + ("" if result["natural_is_its_ordering"] else " (not its ordering)"),
            f"{result['specialist_nats']:.2f}",
            f"{result['any_order_minus_specialist_nats']:+.2f}",
        ]
        + (
            [
                f"{result['any_order_inference_nats']:.2f}",
                f"{result['any_order_inference_minus_specialist_nats']:+.2f}",
            ]
            if inference
            else []
        )
        + (
            [
                f"{result['any_order_mask_input_nats']:.2f}",
                f"{result['any_order_mask_input_minus_specialist_nats']:+.2f}",
            ]
            if told
            else []
        )
        for pattern, result in results.items()
    ]
    first = "(a) any-order" + (", mask input" if models["any-order"]["mask_input"] else "")
    drawn = f"(a), {inference['orderings']} drawn orderings" if inference else ""
    header = ["observed", "missing", first, "(b) natural", "(c) specialist", "(a) - (c)"]
    header += [drawn, "(a) drawn - (c)"] if inference else []
    header += ["(a') mask input", "(a') - (c)"] if told else []
    print(table(header, rows))
    print()
    if inference:
        print(
            f"(a) asked with {inference['orderings']} seeded orderings drawn at inference "
            f"(seed {inference['seed']}): joint test NLL "
            f"{inference['joint_test_nll_nats']:.2f} ({inference['seconds']:.0f} s)"
        )
        print()
    rows = [
        [
            name,
            f"{figures['joint_test_nll_nats']:.2f}",
            figures["epochs_run"],
            figures["best_epoch"],
            stopped(figures),
            f"{figures['train_seconds']:.0f}",
            figures["eval_orderings"],
        ]
        for name, figures in models.items()
    ]
    print(
        table(
            ["model", "joint test NLL", "epochs", "best epoch", "stopped by", "train s",
             "eval orderings"],
            rows,
        )
    )  # fmt: skip
    for name, figures in models.items():
        for pattern, same in figures["own_ordering_puts_observed_first"].items():
            print(f"{name}: its own ordering puts the {pattern} pixels first: {same}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_arguments(
        parser, RECIPES, data_dir_required=False, out_help="Folder of the run folders."
    )
    parser.add_argument(
        "--pattern-seed", type=int, default=0, help="Seed of the random:0.5 observed set."
    )
    parser.add_argument(
        "--max-train", type=int, default=None, help="Train on the first N images only."
    )
    parser.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="Stop each model's training after the epoch that passes this many minutes.",
    )
    parser.add_argument(
        "--mask-input",
        action="store_true",
        help="Also train (a') the any-order model with the mask as an input.",
    )
    parser.add_argument(
        "--only",
        action="append",
        metavar="MODEL",
        help="Train only this model (repeatable; its folder name under --out, e.g. "
        "any-order-mask-input), to spread the models over processes; a later run with "
        "--reuse and without --only prints the table.",
    )
    parser.add_argument("--quick", action="store_true", help="A smoke run of a few seconds.")
    parser.add_argument("--overwrite", action="store_true", help="Replace existing runs.")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="Evaluate a completed run of the same settings found in a model's folder "
        "instead of training it again (a run of other settings is refused).",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    recipe = RECIPES[args.recipe]
    suffix = "-quick" if args.quick else ""
    out = args.out or Path("runs") / "inpainting" / f"{args.recipe}{suffix}"
    save = args.save or out.with_name(out.name + ".json")
    data, shape = data_config(args)
    observed = observed_sets(shape, args.pattern_seed)
    print(machine_report(), file=sys.stderr)
    print(f"recipe {args.recipe}: {recipe.description}", file=sys.stderr, flush=True)
    load_before = os.getloadavg()

    configs = model_configs(recipe, shape, observed, args.quick, args.mask_input)
    only = set(args.only or ())
    unknown = only - {folder_name(name) for name in configs}
    if unknown:
        raise SystemExit(
            f"--only names models of this command: {sorted(map(folder_name, configs))}, "
            f"got {sorted(unknown)}"
        )
    inference = recipe.inference_orderings
    if args.quick and inference is not None:
        inference = min(inference, QUICK_INFERENCE_ORDERINGS)
    models: dict[str, dict[str, Any]] = {}
    trainings: dict[str, TrainConfig] = {}
    runs = {
        name: (
            out / folder_name(name),
            RunConfig(data, model_config, model_training(recipe, model_config, args)),
        )
        for name, model_config in configs.items()
        if not only or folder_name(name) in only
    }
    # Every saved run is checked before any is evaluated or trained.
    earlier = {
        name: reused(name, config, folder) if args.reuse and not args.overwrite else None
        for name, (folder, config) in runs.items()
    }
    for name, (folder, config) in runs.items():
        model_config = config.model
        trainings[name] = config.train
        metrics = train(name, config, folder, args.overwrite, earlier[name])
        if only:
            continue
        run = load_run(folder, device=args.device)  # the best weights and test images
        model, test = run.model, run.dataset.test
        models[name] = {
            "run": str(folder),
            "masks": model_config.masks,
            "mask_input": model_config.mask_input,
        }
        models[name] |= model_figures(name, metrics, model, test, observed, inference)
    if only:
        print(f"trained {sorted(only)} into {out}; add --reuse without --only for the table")
        return
    results = pattern_results(models, observed)
    print_tables(results, models, args.pattern_seed)

    report = {
        "recipe": args.recipe,
        "description": recipe.description,
        "quick": args.quick,
        "command": " ".join(["python", *sys.argv]),
        "data": data.name,
        "pattern_seed": args.pattern_seed,
        "patterns": results,
        "models": models,
        "train": {
            name: {
                key: getattr(config, key)
                for key in ("epochs", "patience", "lr", "weight_decay", "lr_schedule", "ema_decay")
            }
            for name, config in trainings.items()
        },
        "time_budget_minutes_per_model": args.time_budget,
        "threads": torch.get_num_threads(),
        "load_average_at_start": load_before,
        "load_average_at_end": os.getloadavg(),
        "machine": machine_report(),
    }
    save.parent.mkdir(parents=True, exist_ok=True)
    save.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"wrote {save}", file=sys.stderr)
    print(f"test_nll_nats={models['any-order']['joint_test_nll_nats']:.4f}")


if __name__ == "__main__":
    main()
