"""Class-conditional against unconditional MADE on binarized MNIST (50k / 10k / 10k).

    python benchmarks/conditional.py --data-dir ~/data/mnist --threads 1
    python benchmarks/conditional.py --data-dir ~/data/mnist --quick

Two ``densitykit`` runs (``densitykit.runs.fit_run``) of the same size and recipe on
the ``binarized-mnist`` data set (the first 50,000 official training images train, the
last 10,000 validate, the official test set tests, every pixel drawn once as
Bernoulli(grey / 255) with seed 0): one models $p(x)$, the other $p(x \\mid y)$ with
the digit label $y$ (``condition="label"``, the label one-hot into every hidden layer
and every output). The recipe: one hidden layer of 500 ReLU units, direct
connections, one mask (natural order), Adam 1e-3, batch 100, early stopping with
patience 10, at most 60 epochs.

Printed and saved (``--save``, default ``<out>/conditional.json``):

- the test NLL of each model, $-\\log p(x)$ and $-\\log p(x \\mid y)$, nats per image;
- the conditional model's own marginal
  $-\\log p(x) = -\\log \\sum_y \\hat p(y)\\, p(x \\mid y)$, with $\\hat p(y)$ the training
  label frequencies, and the difference $-\\log p(x) + \\log p(x \\mid y)$, which is
  the model's estimate of the mutual information between image and label (at most
  $\\log 10 = 2.30$ nats, reached when the label is predictable from the image);
- the test accuracy of the Bayes classifier $\\arg\\max_y \\hat p(y)\\, p(x \\mid y)$;
- a picture of samples, one row per digit (``--picture``).

The last line printed is ``test_nll_nats=<value>``: the conditional model's
$-\\log p(x \\mid y)$. ``--quick`` runs every code path in seconds on 1,000
training images for 2 epochs with 64 hidden units: its figures mean nothing.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from densitykit.model import ModelConfig
from densitykit.runs import DataConfig, RunConfig, fit_run, label_grid, load_run
from densitykit.train import TrainConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import EpochProgress, machine_report, table

MODEL = ModelConfig(hidden_sizes=(500,), masks="natural", num_masks=1, direct_connections=True)
TRAIN = TrainConfig(epochs=60, batch_size=100, lr=1e-3, patience=10)
QUICK_TRAIN, QUICK_VAL, QUICK_WIDTH = 1000, 200, 64


@torch.no_grad()
def label_log_probs(model: Any, images: torch.Tensor, num_labels: int) -> torch.Tensor:
    """``(N, L)``: $\\log p(x_n \\mid y)$ of every test image under every label."""
    columns = []
    for label in range(num_labels):
        rows = [
            model.log_prob(images[start : start + 1000], context=torch.tensor(label)).double()
            for start in range(0, len(images), 1000)
        ]
        columns.append(torch.cat(rows))
    return torch.stack(columns, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, required=True, help="Folder of the IDX files.")
    parser.add_argument("--out", type=Path, default=None, help="Folder of the two runs.")
    parser.add_argument("--save", type=Path, default=None, help="The figures' JSON file.")
    parser.add_argument("--picture", type=Path, default=None, help="The samples' .png picture.")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N].")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads.")
    parser.add_argument("--epochs", type=int, default=None, help="Override the epoch limit.")
    parser.add_argument("--quick", action="store_true", help="A smoke run of a few seconds.")
    parser.add_argument("--overwrite", action="store_true", help="Replace existing runs.")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    out = args.out or Path("runs") / ("conditional-quick" if args.quick else "conditional")
    options: dict[str, Any] = {"data_dir": str(args.data_dir), "seed": 0}
    model, train = MODEL, TRAIN
    if args.quick:
        options |= {"max_train": QUICK_TRAIN, "num_val": QUICK_VAL}
        model = ModelConfig(**{**MODEL.to_dict(), "hidden_sizes": (QUICK_WIDTH,)})
        train = TrainConfig(**{**TRAIN.to_dict(), "epochs": 2})
    if args.epochs is not None:
        train = TrainConfig(**{**train.to_dict(), "epochs": args.epochs})
    train = TrainConfig(**{**train.to_dict(), "device": args.device})
    print(machine_report(), file=sys.stderr, flush=True)

    figures: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "quick": args.quick,
        "date": time.strftime("%Y-%m-%d"),
        "load_1min_before": os.getloadavg()[0],
    }
    for name, condition in (("unconditional", None), ("conditional", "label")):
        config = RunConfig(DataConfig("binarized-mnist", options, condition), model, train)
        metrics = fit_run(
            config, out / name, overwrite=args.overwrite, callbacks=[EpochProgress(name)]
        )
        figures[name] = {
            key: metrics[key]
            for key in (
                "test_nll_nats",
                "val_nll_nats",
                "train_nll_nats",
                "best_epoch",
                "epochs_run",
                "train_seconds",
                "num_params",
            )
        }

    run = load_run(out / "conditional", device=args.device)
    model_c, dataset = run.model, run.dataset
    model_c.eval()
    tic = time.perf_counter()
    per_label = label_log_probs(model_c, dataset.test, model_c.num_labels)
    counts = torch.bincount(dataset.labels("train"), minlength=model_c.num_labels).double()
    log_prior = (counts / counts.sum()).log()
    joint = per_label + log_prior
    marginal = torch.logsumexp(joint, 1)
    truth = dataset.labels("test")
    conditional_nll = -float(per_label.gather(1, truth[:, None]).mean())
    implied_nll = -float(marginal.mean())
    accuracy = float((joint.argmax(1) == truth).double().mean())
    figures["conditional"] |= {
        "implied_marginal_nll_nats": implied_nll,
        "mutual_information_nats": implied_nll - conditional_nll,
        "bayes_classifier_accuracy": accuracy,
        "label_entropy_nats": -float((log_prior.exp() * log_prior).sum()),
        "scoring_seconds": time.perf_counter() - tic,
    }
    picture = args.picture or out / "conditional-samples.png"
    label_grid(model_c, dataset, 10, picture, generator=torch.Generator().manual_seed(0))
    figures["picture"] = str(picture)
    save = args.save or out / "conditional.json"
    save.parent.mkdir(parents=True, exist_ok=True)
    save.write_text(json.dumps(figures, indent=2) + "\n")

    u, c = figures["unconditional"], figures["conditional"]
    print(
        table(
            ["model", "test NLL", "val NLL", "best epoch", "epochs", "train s", "params"],
            [
                [
                    "p(x), unconditional",
                    f"{u['test_nll_nats']:.2f}",
                    f"{u['val_nll_nats']:.2f}",
                    u["best_epoch"],
                    u["epochs_run"],
                    f"{u['train_seconds']:.0f}",
                    f"{u['num_params']:,}",
                ],
                [
                    "p(x | y), conditional",
                    f"{c['test_nll_nats']:.2f}",
                    f"{c['val_nll_nats']:.2f}",
                    c["best_epoch"],
                    c["epochs_run"],
                    f"{c['train_seconds']:.0f}",
                    f"{c['num_params']:,}",
                ],
            ],
        )
    )
    print(
        f"conditional model's own -log p(x) = -log sum_y p(y) p(x | y): {implied_nll:.2f} nats\n"
        f"its mutual information estimate -log p(x) + log p(x | y): "
        f"{implied_nll - conditional_nll:.2f} nats (at most log 10 = {math.log(10):.2f})\n"
        f"Bayes classifier argmax_y p(y) p(x | y), test accuracy: {accuracy:.4f}\n"
        f"-log p(x | y) against the unconditional -log p(x): "
        f"{c['test_nll_nats'] - u['test_nll_nats']:+.2f} nats\n"
        f"samples, one row per digit: {picture}\nfigures: {save}"
    )
    print(f"test_nll_nats={c['test_nll_nats']:.4f}")


if __name__ == "__main__":
    main()
