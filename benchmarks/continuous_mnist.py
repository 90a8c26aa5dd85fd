"""The MAF paper's MNIST figure for real-valued MADEs, and the same models in nflows and zuko.

    python benchmarks/continuous_mnist.py made-mog --data-dir ~/data/mnist --threads 1
    python benchmarks/continuous_mnist.py made-gaussian --data-dir ~/data/mnist --threads 1
    python benchmarks/continuous_mnist.py maf-5 --data-dir ~/data/mnist --threads 1
    python benchmarks/continuous_mnist.py maf-mog-5 --data-dir ~/data/mnist --threads 1
    python benchmarks/continuous_mnist.py peers --data-dir ~/data/mnist --threads 1 --epochs 2
    python benchmarks/continuous_mnist.py maf-peers --data-dir ~/data/mnist --threads 1 \
        --epochs 2 --sample-sizes 100 1000
    python benchmarks/continuous_mnist.py made-mog --data-dir ~/data/mnist --quick

Papamakarios, Pavlakou and Murray (2017), "Masked Autoregressive Flow for Density
Estimation", report the mean test log-density of grey-level MNIST in logit space (the
``mnist-logit`` data set: pixels dequantized with uniform noise, ``(p + u) / 256``, mapped
by ``logit(1e-6 + (1 - 2e-6) x)``; 50,000 / 10,000 / 10,000 images), with +- 2 standard
errors. Their MADE MoG (two hidden layers of 1,024 ReLU units, 10 components per pixel)
reaches -1038.5.

Each recipe is one ``densitykit`` run (``densitykit.runs.fit_run``) trained as the paper's
code trained it (github.com/gpapamak/maf, ``experiments.py``): Adam with learning rate
1e-3 for the MADEs, L2 weight decay 1e-6, batch 100, early stopping on the validation
log-likelihood with patience 30 epochs; natural pixel order, hidden degrees spread evenly
(the code's ``mode='sequential'``), no direct connections. ``--time-budget`` stops the
training after the epoch that passes that many minutes. The run folder goes to ``--out``
(``runs/continuous-mnist/<recipe>``), the figures to ``--save`` (``<out>.json``). The last
line printed is ``test_log_density_nats=<value>``, the paper's figure.

``maf-5`` and ``maf-mog-5`` are the paper's MAF (5) and MAF MoG (5): five affine MADE
layers of 1,024-1,024 ReLU units, the ordering reversed between them, batch
normalisation between the layers, on a standard normal or a MADE MoG base (10
components), trained as the paper's code trains flows: Adam at 1e-4 (see
``FLOW_TRAIN``).

``peers`` trains, on the same data and machine, densitykit's MADE MoG beside nflows'
``MixtureOfGaussiansMADE`` and densitykit's Gaussian MADE beside zuko's ``MAF`` with one
transform (a Gaussian MADE too), all of hidden layers 1,024-1,024, with one loop for the
four (Adam 1e-3, batch 100, the same batches), the steps of the four models interleaved
batch by batch so that each model's median step time is measured under the same load; then
the test log-likelihood after ``--epochs`` epochs and the time to draw 100 samples
(alternating repetitions). nflows' ``MixtureOfGaussiansMADE.sample`` without a context
fails (it reads ``context.shape``); the script reports the error and times the same loop
(784 full forward passes, one per pixel) written out with ``num_samples`` rows.
``maf-peers`` does the same for densitykit's MAF (5) beside zuko's ``MAF`` and nflows'
``MaskedAutoregressiveFlow`` of the same sizes (no batch normalisation, which zuko has
not), and times ``--sample-sizes`` samples (one draw each above 100). In both modes the
test log-density is printed after every epoch, and densitykit's models start at the
training data's marginals as ``densitykit fit`` starts them (``initialize_from_data``;
``--no-data-init`` starts them at their fixed start); nflows and zuko have no such
start. The peers come from the optional ``peers`` extra (``pip install densitykit[peers]``:
zuko and nflows); without them the peers are skipped with a note.

``--quick`` runs every code path in seconds on a few hundred images, with hidden layers
of 64 units and one epoch: its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

import densitykit as dk
from densitykit.data import load_dataset
from densitykit.data.mnist_logit import bits_per_pixel, pixel_log_density
from densitykit.maf import MAFConfig
from densitykit.model import ModelConfig
from densitykit.runs import DataConfig, RunConfig, load_run
from densitykit.train import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import add_recipe_arguments, fit_recipe_run, machine_report, table

PAPER_SOURCE = (
    "Papamakarios, Pavlakou and Murray (2017), Masked Autoregressive Flow for Density "
    "Estimation, NeurIPS, Table 2 (unconditional MNIST)"
)
PAPER_ROWS: dict[str, str | None] = {
    "Gaussian": None,
    "MADE": None,
    "MADE MoG": "-1038.5",
    "Real NVP (5)": None,
    "Real NVP (10)": None,
    "MAF (5)": None,
    "MAF (10)": None,
    "MAF MoG (5)": None,
}
"""The paper's MNIST rows as far as found in a citable source (``None``: not found; the
page docs/real-data-benchmarks.md says where the one found comes from)."""
REIMPLEMENTATION_SOURCE = (
    "github.com/kamenbliznashki/normalizing_flows, README (a PyTorch reimplementation of "
    "the paper's models, each trained for 50 epochs; not the paper's figures)"
)
REIMPLEMENTATION_ROWS: dict[str, str | None] = {
    "MADE": "-1393.67",
    "MADE MoG": "-1023.13",
    "Real NVP (5)": "-1279.76",
    "MAF (5)": "-1272.70",
    "MAF MoG (5)": "-1080.46",
}
"""That reimplementation's unconditional MNIST rows, for scale beside the paper's."""

HIDDEN = (1024, 1024)
MADE_MODEL = ModelConfig(
    hidden_sizes=HIDDEN,
    masks="natural",
    num_masks=1,
    direct_connections=False,
    mask_options={"spread": "even"},
)
PAPER_TRAIN = TrainConfig(epochs=1000, batch_size=100, lr=1e-3, weight_decay=1e-6, patience=30)
FLOW_TRAIN = replace(PAPER_TRAIN, lr=1e-4)
"""The paper's code trains its flows with Adam at 1e-4 (``a_flow``) and its MADEs at 1e-3.
At 1e-3 both flows overfit within their first 8 to 12 epochs; at 1e-4, MAF (5) reached a
better test figure in 50 minutes (-1292.2) than at 1e-3 in 85 (-1301.5)."""
MAF_MODEL = MAFConfig(num_transforms=5, hidden_sizes=HIDDEN, batch_norm=True)


@dataclass(frozen=True)
class Recipe:
    """One named run: its description, model and training."""

    description: str
    model: ModelConfig | MAFConfig
    train: TrainConfig
    family: str = "made"


RECIPES: dict[str, Recipe] = {
    "made-gaussian": Recipe(
        "The MAF paper's MADE: one Gaussian per pixel (the gaussian head), two hidden "
        "layers of 1,024 ReLU units, natural order, even (sequential) hidden degrees; "
        "Adam 1e-3, weight decay 1e-6, batch 100, patience 30 (the paper's code).",
        replace(MADE_MODEL, head="gaussian"),
        PAPER_TRAIN,
    ),
    "made-mog": Recipe(
        "The MAF paper's MADE MoG: a mixture of 10 Gaussians per pixel (the "
        "gaussian-mixture head), two hidden layers of 1,024 ReLU units, natural order, "
        "even (sequential) hidden degrees; Adam 1e-3, weight decay 1e-6, batch 100, "
        "patience 30 (the paper's code).",
        replace(MADE_MODEL, head="gaussian-mixture", head_options={"num_components": 10}),
        PAPER_TRAIN,
    ),
    "maf-5": Recipe(
        "The MAF paper's MAF (5): five affine Gaussian MADEs of two hidden layers of "
        "1,024 ReLU units, the ordering reversed between them, batch normalisation "
        "between the layers, a standard normal base; Adam 1e-4, weight decay 1e-6, "
        "batch 100, patience 30 (the paper's code for flows).",
        MAF_MODEL,
        FLOW_TRAIN,
        "maf",
    ),
    "maf-mog-5": Recipe(
        "The MAF paper's MAF MoG (5): the MAF (5) above on a MADE MoG base (10 "
        "Gaussians per pixel, two hidden layers of 1,024); Adam 1e-4, weight decay "
        "1e-6, batch 100, patience 30 (the paper's code for flows).",
        replace(MAF_MODEL, base="mog", num_components=10),
        FLOW_TRAIN,
        "maf",
    ),
}
"""The named recipes; each one ``densitykit`` run."""

QUICK_TRAIN, QUICK_VAL, QUICK_WIDTH, QUICK_TEST = 300, 100, 64, 200


def data_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``mnist-logit`` options of the command line (``--quick``: a few hundred images)."""
    options: dict[str, Any] = {"data_dir": str(args.data_dir), "seed": args.data_seed}
    if args.quick:
        options |= {"max_train": QUICK_TRAIN, "num_val": QUICK_VAL}
    if args.num_val is not None:
        options["num_val"] = args.num_val
    if args.max_train is not None:
        options["max_train"] = args.max_train
    return options


def run_config(recipe: Recipe, args: argparse.Namespace) -> RunConfig:
    """The recipe's run configuration for the command-line options."""
    model, train = recipe.model, replace(recipe.train, device=args.device, seed=args.seed)
    if args.quick:
        model = replace(model, hidden_sizes=(QUICK_WIDTH,) * len(model.hidden_sizes))
        train = replace(train, epochs=1)
    if args.epochs is not None:
        train = replace(train, epochs=args.epochs)
    if args.time_budget is not None and not args.quick:
        train = replace(train, time_budget_minutes=args.time_budget)
    if args.lr is not None:
        train = replace(train, lr=args.lr)
    if args.no_data_init:
        train = replace(train, data_init=False)
    return RunConfig(
        DataConfig("mnist-logit", data_options(args)), model, train, family=recipe.family
    )


@torch.no_grad()
def test_log_densities(
    log_prob: Callable[[torch.Tensor], torch.Tensor], test: torch.Tensor, batch: int = 500
) -> torch.Tensor:
    """``(N,)`` float64 log-densities of the test examples, in batches."""
    return torch.cat([log_prob(test[i : i + batch]).double() for i in range(0, len(test), batch)])


def summary(log_densities: torch.Tensor, test: torch.Tensor) -> dict[str, float]:
    """The paper's figure (mean and 2 standard errors in logit space) and bits per pixel."""
    count, dim = test.shape

    def mean_and_two_se(values: torch.Tensor) -> tuple[float, float]:
        # The paper's code: values.std() (numpy, ddof 0) / sqrt(N), times 2.
        return float(values.mean()), float(2 * values.std(unbiased=False) / math.sqrt(count))

    logit_mean, logit_two_se = mean_and_two_se(log_densities)
    pixel = pixel_log_density(log_densities, test)
    pixel_mean, pixel_two_se = mean_and_two_se(pixel)
    return {
        "test_log_density_nats": logit_mean,
        "test_log_density_two_se": logit_two_se,
        "test_pixel_log_density_nats": pixel_mean,
        "test_bits_per_pixel": float(bits_per_pixel(pixel_mean, dim)),
        "test_bits_per_pixel_two_se": pixel_two_se / (dim * math.log(2.0)),
    }


def paper_table() -> str:
    rows = [
        [name, value or "not found", REIMPLEMENTATION_ROWS.get(name) or "-"]
        for name, value in PAPER_ROWS.items()
    ]
    header = ["model", "paper (nats)", "reimplementation (nats)"]
    return f"paper: {PAPER_SOURCE}\nreimplementation: {REIMPLEMENTATION_SOURCE}\n" + table(
        header, rows
    )


# -- one recipe: a densitykit run ------------------------------------------------------------
def run_recipe(args: argparse.Namespace) -> None:
    recipe = RECIPES[args.recipe]
    out = args.out or Path("runs") / "continuous-mnist" / (args.recipe + "-quick" * args.quick)
    save = args.save or out.with_name(out.name + ".json")
    config = run_config(recipe, args)
    metrics, run_seconds, load_before = fit_recipe_run(
        config, out, name=args.recipe, description=recipe.description, overwrite=args.overwrite
    )

    run = load_run(out, device=args.device)
    run.model.eval()
    tic = time.perf_counter()
    test = run.dataset.test
    if args.quick:
        test = test[:QUICK_TEST]
    device = next(run.model.parameters()).device
    densities = test_log_densities(lambda x: run.model.log_prob(x.to(device)).cpu(), test)
    eval_seconds = time.perf_counter() - tic
    figures = {
        "recipe": args.recipe,
        "quick": args.quick,
        "command": " ".join(["python", *sys.argv]),
        **summary(densities, test),
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
        "sizes": {split: len(data) for split, data in run.dataset.splits().items()},
        "config": config.to_dict(),
        "threads": torch.get_num_threads(),
        "load_average_at_start": load_before,
        "load_average_at_end": os.getloadavg(),
        "machine": machine_report(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    save.parent.mkdir(parents=True, exist_ok=True)
    save.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    print(paper_table())
    print(
        f"densitykit {args.recipe}: test log-density {figures['test_log_density_nats']:.1f} "
        f"+- {figures['test_log_density_two_se']:.1f} nats (logit space, the paper's figure); "
        f"{figures['test_bits_per_pixel']:.3f} +- {figures['test_bits_per_pixel_two_se']:.3f} "
        f"bits per pixel (pixel space [0, 256)); {metrics['epochs_run']} epochs "
        f"(best {metrics['best_epoch']}, {metrics['stop_reason']}), "
        f"{metrics['train_seconds'] / 60:.1f} min of training, "
        f"{torch.get_num_threads()} thread(s)"
    )
    print(f"test_log_density_nats={figures['test_log_density_nats']:.4f}")


# -- peers: nflows and zuko beside densitykit ------------------------------------------------
@dataclass
class Contender:
    """One model of the peers comparison: how to score a batch and draw samples."""

    name: str
    module: torch.nn.Module
    log_prob: Callable[[torch.Tensor], torch.Tensor]
    sample: Callable[[int], torch.Tensor]
    note: str = ""
    optimizer: torch.optim.Optimizer | None = None
    step_seconds: list[float] | None = None


def peers_available() -> tuple[Any, Any, str]:
    """The modules ``(nflows_made, zuko)``, or ``None`` for each missing one, and a note."""
    missing, modules = [], []
    for name in ("nflows.nn.nde.made", "zuko"):
        try:
            modules.append(__import__(name, fromlist=["_"]))
        except ImportError:
            modules.append(None)
            missing.append(name.split(".")[0])
    note = (
        f"skipped {', '.join(missing)}: not installed (pip install densitykit[peers], or "
        "pip install zuko nflows)"
        if missing
        else ""
    )
    return modules[0], modules[1], note


def nflows_sample_loop(made: torch.nn.Module, num_samples: int) -> torch.Tensor:
    """nflows' ``MixtureOfGaussiansMADE.sample`` loop with ``num_samples`` rows, no context.

    The same steps as nflows' own method (one full forward pass per feature, the
    component and the value drawn from that feature's outputs), which fails without a
    context because it sizes its buffer by ``context.shape[0]``.
    """
    features, components = made.features, made.num_mixture_components
    samples = torch.zeros(num_samples, features)
    with torch.no_grad():
        for feature in range(features):
            outputs = made(samples).reshape(num_samples, features, components, 3)
            logits = torch.log_softmax(outputs[:, feature, :, 0], dim=-1)
            means = outputs[:, feature, :, 1]
            stds = F.softplus(outputs[:, feature, :, 2]) + made.epsilon
            chosen = torch.distributions.Categorical(logits=logits).sample().reshape(-1, 1)
            mean, std = means.gather(1, chosen).reshape(-1), stds.gather(1, chosen).reshape(-1)
            samples[:, feature] = mean + torch.randn(num_samples) * std
    return samples


def made_contenders(
    dim: int, hidden: tuple[int, ...], seed: int, start: torch.Tensor | None
) -> tuple[list[Contender], str, list[tuple[str, str]]]:
    """densitykit's two MADEs and, where installed, nflows' MoG MADE and zuko's MAF of
    one transform; the note on what is missing; the (ours, peer) pairs to compare.
    densitykit's models start at the marginals of ``start`` (the training values) as
    ``densitykit fit`` starts them, or at their fixed start if ``None``."""
    nflows_made, zuko, note = peers_available()
    found: list[Contender] = []

    def densitykit_made(head: str, **options: Any) -> Contender:
        torch.manual_seed(seed)
        model = dk.create_model(
            head, dim, hidden_sizes=hidden, mask_options={"spread": "even"}, **options
        )
        if start is not None:
            model.initialize_from_data(start)
        generator = torch.Generator().manual_seed(seed)
        return Contender(
            f"densitykit {head}",
            model,
            model.log_prob,
            lambda n: model.sample(n, generator=generator),
            f"{type(model.backbone.layers[0]).__name__} layers",
        )

    found.append(densitykit_made("gaussian-mixture", num_components=10))
    if nflows_made is not None:
        torch.manual_seed(seed)
        made = nflows_made.MixtureOfGaussiansMADE(
            dim, hidden[0], num_blocks=len(hidden) - 1, num_mixture_components=10,
            use_residual_blocks=False,
        )  # fmt: skip
        try:
            made.sample(1)
            sample_note = "its own sample"
        except Exception as error:
            sample_note = (
                f"sample(100) fails without a context ({type(error).__name__}: {error}); "
                "timed: the same loop with 100 rows"
            )
        found.append(
            Contender(
                "nflows MixtureOfGaussiansMADE",
                made,
                made.log_prob,
                lambda n, made=made: nflows_sample_loop(made, n),
                "feedforward blocks (no activation after its first layer); " + sample_note,
            )
        )
    found.append(densitykit_made("gaussian"))
    if zuko is not None:
        torch.manual_seed(seed)
        flow = zuko.flows.MAF(dim, transforms=1, hidden_features=list(hidden))
        found.append(
            Contender(
                "zuko MAF (1 transform)",
                flow,
                lambda x, flow=flow: flow().log_prob(x),
                lambda n, flow=flow: flow().sample((n,)),
                "affine MADE transform of a standard normal",
            )
        )
    pairs = [
        ("densitykit gaussian-mixture", "nflows MixtureOfGaussiansMADE"),
        ("densitykit gaussian", "zuko MAF (1 transform)"),
    ]
    return found, note, pairs


def flow_contenders(
    dim: int, hidden: tuple[int, ...], seed: int, start: torch.Tensor | None, transforms: int = 5
) -> tuple[list[Contender], str, list[tuple[str, str]]]:
    """densitykit's MAF and, where installed, zuko's ``MAF`` and nflows'
    ``MaskedAutoregressiveFlow`` of the same sizes: ``transforms`` affine MADE layers
    of the hidden layers ``hidden``, the ordering reversed between them, a standard
    normal base, no batch normalisation (zuko has none). densitykit's first layer starts
    by standardising the marginals of ``start``, as ``densitykit fit`` starts it, or at
    its fixed start if ``None``."""
    nflows_made, zuko, note = peers_available()
    torch.manual_seed(seed)
    model = dk.MAFModel(dk.MAFConfig(dim=dim, num_transforms=transforms, hidden_sizes=hidden))
    if start is not None:
        model.initialize_from_data(start)
    generator = torch.Generator().manual_seed(seed)
    ours = f"densitykit MAF ({transforms})"
    found = [
        Contender(
            ours,
            model,
            model.log_prob,
            lambda n: model.sample(n, generator=generator),
            "each layer inverted by the incremental sampler",
        )
    ]
    if zuko is not None:
        torch.manual_seed(seed)
        flow = zuko.flows.MAF(dim, transforms=transforms, hidden_features=list(hidden))
        found.append(
            Contender(
                f"zuko MAF ({transforms})",
                flow,
                lambda x, flow=flow: flow().log_prob(x),
                lambda n, flow=flow: flow().sample((n,)),
                "its own sampler (one MADE pass per variable and layer)",
            )
        )
    if nflows_made is not None:
        from nflows.flows import MaskedAutoregressiveFlow

        torch.manual_seed(seed)
        # Plain (not residual) blocks: the first hidden layer, then len(hidden) - 1 blocks.
        nflow = MaskedAutoregressiveFlow(
            features=dim, hidden_features=hidden[0], num_layers=transforms,
            num_blocks_per_layer=len(hidden) - 1, use_residual_blocks=False,
        )  # fmt: skip
        found.append(
            Contender(
                f"nflows MaskedAutoregressiveFlow ({transforms})",
                nflow,
                nflow.log_prob,
                nflow.sample,
                "feedforward blocks (no activation after its first layer); its own sampler",
            )
        )
    pairs = [(ours, contender.name) for contender in found[1:]]
    return found, note, pairs


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def run_peers(args: argparse.Namespace) -> None:
    print(machine_report(), file=sys.stderr, flush=True)
    dataset = load_dataset("mnist-logit", **data_options(args))
    hidden = (QUICK_WIDTH,) * len(HIDDEN) if args.quick else HIDDEN
    epochs = args.epochs or (1 if args.quick else 2)
    start = None if args.no_data_init else dataset.train
    if args.recipe == "maf-peers":
        found, note, pairs = flow_contenders(dataset.dim, hidden, args.seed, start)
    else:
        found, note, pairs = made_contenders(dataset.dim, hidden, args.seed, start)
    if note:
        print(f"note: {note}")
    for contender in found:
        contender.optimizer = torch.optim.Adam(contender.module.parameters(), lr=1e-3)
        contender.step_seconds = []

    def step(contender: Contender, batch: torch.Tensor) -> None:
        contender.module.train()
        contender.optimizer.zero_grad(set_to_none=True)
        loss = -contender.log_prob(batch).mean()
        loss.backward()
        contender.optimizer.step()

    # One loop for all: the same batches, each batch stepped by every model in turn
    # (the order rotated), so their step times are interleaved under the same load.
    train, test = dataset.train, dataset.test
    if args.quick:
        test = test[:QUICK_TEST]
    generator = torch.Generator().manual_seed(args.seed)
    started = time.perf_counter()
    curves: dict[str, list[float]] = {c.name: [] for c in found}
    densities: dict[str, torch.Tensor] = {}
    for epoch in range(epochs):
        order = torch.randperm(len(train), generator=generator)
        for index, start in enumerate(range(0, len(train), 100)):
            batch = train[order[start : start + 100]]
            rotation = index % len(found)
            for contender in found[rotation:] + found[:rotation]:
                contender.step_seconds.append(timed(lambda c=contender, b=batch: step(c, b)))
        # The test log-density after every epoch: the curves compare at equal epochs.
        for contender in found:
            contender.module.eval()
            densities[contender.name] = test_log_densities(contender.log_prob, test)
            curves[contender.name].append(float(densities[contender.name].mean()))
        print(
            f"epoch {epoch + 1}/{epochs} done ({time.perf_counter() - started:.0f} s, "
            f"load {os.getloadavg()[0]:.2f}); test log-density "
            + ", ".join(f"{name} {curve[-1]:.1f}" for name, curve in curves.items()),
            file=sys.stderr,
            flush=True,
        )

    results: dict[str, dict[str, Any]] = {}
    for contender in found:
        results[contender.name] = {
            **summary(densities[contender.name], test),
            "test_log_density_by_epoch": curves[contender.name],
            "step_ms_median": 1e3 * statistics.median(contender.step_seconds),
            "steps_timed": len(contender.step_seconds),
            "note": contender.note,
        }
        print(f"{contender.name}: tested", file=sys.stderr, flush=True)

    # Samples, alternating: densitykit, peer, densitykit, peer, ... (one draw of each
    # model above 100 samples: the peers' D-pass samplers take minutes).
    sizes = [10] if args.quick else args.sample_sizes
    sample_seconds: dict[str, dict[int, list[float]]] = {c.name: {} for c in found}
    for contender in found:
        with torch.no_grad():  # nflows' MAF sampler keeps every pass's masked weights
            contender.sample(2)  # warm-up (plans, caches)
    for size in sizes:
        repeats = 1 if args.quick or size > 100 else args.sample_repeats
        for _ in range(repeats):
            for contender in found:
                with torch.no_grad():  # nflows' sampler would keep the graph of its passes
                    seconds = timed(lambda c=contender, n=size: c.sample(n))
                sample_seconds[contender.name].setdefault(size, []).append(seconds)
                print(f"{contender.name}: {size} samples in {seconds:.2f} s", file=sys.stderr)
    for name, by_size in sample_seconds.items():
        for size, seconds in by_size.items():
            results[name][f"sample_{size}_seconds_median"] = statistics.median(seconds)
            results[name][f"sample_{size}_repeats"] = len(seconds)

    rows = []
    for name, figures in results.items():
        rows.append(
            [
                name,
                f"{figures['step_ms_median']:.1f}",
                f"{figures['test_log_density_nats']:.1f} "
                f"+- {figures['test_log_density_two_se']:.1f}",
                f"{figures['test_bits_per_pixel']:.3f}",
                *(f"{figures[f'sample_{size}_seconds_median']:.3f}" for size in sizes),
            ]
        )
    print(
        f"\n{epochs} epochs of {len(train):,} images, batch 100, Adam 1e-3, hidden "
        f"{'-'.join(map(str, hidden))}, {torch.get_num_threads()} thread(s); test "
        f"{len(test):,} images; densitykit's models started "
        + ("at their fixed start" if args.no_data_init else "at the data's marginals")
    )
    header = ["model", "step ms (median)", "test log-density", "bits/pixel"]
    header += [f"{size} samples s" for size in sizes]
    print(table(header, rows))
    ratios = {}
    for ours, peer in pairs:
        if ours in results and peer in results:
            ratios[f"{ours} vs {peer}"] = figures = {
                "step_speedup": results[peer]["step_ms_median"] / results[ours]["step_ms_median"],
                **{
                    f"sample_{size}_speedup": results[peer][f"sample_{size}_seconds_median"]
                    / results[ours][f"sample_{size}_seconds_median"]
                    for size in sizes
                },
                "test_log_density_difference": results[ours]["test_log_density_nats"]
                - results[peer]["test_log_density_nats"],
            }
            speedups = ", ".join(
                f"{size} samples {figures[f'sample_{size}_speedup']:.0f}x faster" for size in sizes
            )
            print(
                f"{ours} vs {peer}: training step {figures['step_speedup']:.2f}x faster, "
                f"{speedups}, test log-density "
                f"{figures['test_log_density_difference']:+.1f} nats"
            )
    for name, figures in results.items():
        print(f"{name}: {figures['note']}")
    save = (
        args.save
        or Path("runs") / "continuous-mnist" / f"{args.recipe}{'-quick' * args.quick}.json"
    )
    save.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "command": " ".join(["python", *sys.argv]),
        "quick": args.quick,
        "epochs": epochs,
        "hidden_sizes": list(hidden),
        "threads": torch.get_num_threads(),
        "densitykit_data_init": not args.no_data_init,
        "results": results,
        "ratios": ratios,
        "note": note,
        "sizes": {"train": len(train), "test": len(test)},
        "machine": machine_report(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    save.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"peers_done={len(results)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_recipe_arguments(parser, [*RECIPES, "peers", "maf-peers"])
    parser.add_argument(
        "--time-budget", type=float, default=None, help="Stop after the epoch past N minutes."
    )
    parser.add_argument(
        "--sample-repeats", type=int, default=3, help="peers: timed draws of 100 samples each."
    )
    parser.add_argument(
        "--sample-sizes",
        type=int,
        nargs="+",
        default=[100],
        help="peers: the numbers of samples timed (above 100: one draw each).",
    )
    parser.add_argument("--num-val", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument(
        "--max-train", type=int, default=None, help="Train on the first N training images only."
    )
    parser.add_argument(
        "--lr", type=float, default=None, help="A learning rate other than the recipe's."
    )
    parser.add_argument(
        "--no-data-init",
        action="store_true",
        help="Start densitykit's models at their fixed start, not the data's marginals "
        "(recipes: TrainConfig.data_init=False; peers: no initialize_from_data).",
    )
    parser.add_argument("--quick", action="store_true", help="A smoke run of a few seconds.")
    parser.add_argument("--overwrite", action="store_true", help="Replace an existing run.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.recipe in ("peers", "maf-peers"):
        run_peers(args)
    else:
        run_recipe(args)


if __name__ == "__main__":
    main()
