"""Draw the pictures of the documentation into docs/assets/ by running densitykit.

Every picture is an output of the code, made on the CPU in a few minutes in all:

* ``smiley-density.png`` and ``smiley-learning-curves.png``: the run folder
  pictures of the README's ``densitykit fit`` (the default run, 2-D smiley),
  copied as they are;
* ``head-bernoulli.png``, ``head-categorical.png``, ``head-logistic-mixture.png``
  and ``head-histogram.png``: one picture per head for the Heads page;
* ``real-8gaussians-density.png``: the run folder picture of
  ``densitykit fit --data 8gaussians --hidden-sizes 128,128 --epochs 60 --lr 0.003``
  for the Real-valued and mixed data page, copied as it is.

Usage (from the repository root; one training at a time, one CPU thread):

    python docs/scripts/make_figures.py            # everything
    python docs/scripts/make_figures.py heads      # only the head pictures
    python docs/scripts/make_figures.py real       # only the 2-D real data picture
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch

import densitykit as dk
from densitykit import plots
from densitykit.data import load_dataset
from densitykit.runs import load_run
from densitykit.train import TrainConfig, fit

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DPI = 110


def default_run(folder: Path) -> Path:
    """Run the README's ``densitykit fit`` (every option at its default) into ``folder``."""
    command = [sys.executable, "-m", "densitykit", "fit", "--out", str(folder), "--quiet"]
    subprocess.run(command, check=True)
    return folder


def home(run_dir: Path) -> None:
    """Copy the default run's pictures."""
    shutil.copyfile(run_dir / "density.png", ASSETS / "smiley-density.png")
    shutil.copyfile(run_dir / "learning_curves.png", ASSETS / "smiley-learning-curves.png")


REAL_RUN = ["--data", "8gaussians", "--hidden-sizes", "128,128", "--epochs", "60", "--lr", "0.003"]
"""The 2-D real run the Real-valued and mixed data page shows."""


def real(folder: Path) -> None:
    """Fit the page's 8gaussians run and copy its density picture."""
    command = [sys.executable, "-m", "densitykit", "fit", *REAL_RUN, "--threads", "1"]
    subprocess.run([*command, "--out", str(folder), "--quiet"], check=True)
    shutil.copyfile(folder / "density.png", ASSETS / "real-8gaussians-density.png")


def _train(model: dk.AutoregressiveModel, dataset, **options) -> None:
    config = TrainConfig(device="cpu", seed=0, **options)
    fit(model, dataset.train, dataset.val, config)
    model.eval()


def bernoulli() -> None:
    """A Bernoulli MADE on generated shape images: test images beside samples."""
    dataset = load_dataset("shapes")
    torch.manual_seed(0)
    # 1,000 units with evenly spread degrees: every one of the 399 degrees has units.
    model = dk.create_model(
        "bernoulli", dataset.dim, hidden_sizes=(1000,), mask_options={"spread": "even"}
    )
    _train(model, dataset, epochs=20, batch_size=100, lr=1e-3)
    samples = model.sample(36, generator=torch.Generator().manual_seed(0))
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.8))
    cmap = matplotlib.colormaps["gray_r"].with_extremes(bad="#d0d0d0")
    for ax, images, title in (
        (axes[0], dataset.test[:36], "shapes test images"),
        (axes[1], samples, "Bernoulli MADE samples"),
    ):
        grid = plots.image_grid_array(images, dataset.shape, columns=6)
        ax.imshow(grid, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(title)
        ax.set_axis_off()
    _save(fig, "head-bernoulli.png")


def categorical(run_dir: Path) -> None:
    """Conditionals p(x2 | x1) of the default run's categorical model against the truth."""
    run = load_run(run_dir)
    model, dataset = run.model, run.dataset
    k = dataset.num_values
    truth = dataset.true_probs
    rows = (4, 9, 15)
    fig, axes = plt.subplots(1, len(rows), figsize=(12, 3.6), sharey=True)
    values = torch.arange(k)
    with torch.no_grad():
        for ax, row in zip(axes, rows):
            cells = torch.stack([torch.full((k,), row), values], dim=1)
            joint = model.log_prob(cells).exp()
            ax.bar(values, truth[row] / truth[row].sum(), width=1.0, alpha=0.4, label="true")
            ax.plot(values, joint / joint.sum(), "o-", color="C1", markersize=3, label="model")
            ax.set_title(f"p(x2 | x1 = {row})")
            ax.set_xlabel("x2")
    axes[0].set_ylabel("probability")
    axes[0].legend()
    _save(fig, "head-categorical.png")


def logistic_mixture() -> None:
    """A 4-component discretized logistic mixture on the bimodal 1-D set, with its components."""
    dataset = load_dataset("1d-bimodal")
    torch.manual_seed(0)
    model = dk.create_model("logistic-mixture", 1, dataset.num_values, num_components=4)
    _train(model, dataset, epochs=60, batch_size=200, lr=2e-2, patience=None)
    k = dataset.num_values
    values = torch.arange(k)[:, None]
    head = model.head
    with torch.no_grad():
        params = model.backbone(head.encode(values, model.dtype))
        probs = head.log_prob(params, values)[:, 0].exp()
        # The head's own split of the parameters, with its fixed offsets applied.
        logits, means, log_scales = head._split(params[:, 0])
        weights = torch.softmax(logits[0], dim=-1)
        components = [
            weights[m]
            * dk.heads.discretized_logistic_log_prob(
                values[:, 0], means[:, m], log_scales[:, m], k
            ).exp()
            for m in range(head.num_components)
        ]
    counts = torch.bincount(dataset.train[:, 0], minlength=k).double() / len(dataset.train)
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar(values[:, 0], counts, width=1.0, alpha=0.4, label="training data")
    for m, component in enumerate(components):
        label = "weighted components" if m == 0 else None
        ax.plot(values[:, 0], component, "--", color="grey", linewidth=1, label=label)
    ax.plot(values[:, 0], probs, "-", color="C1", label="mixture (model)")
    ax.plot(values[:, 0], dataset.true_probs, ":", color="k", linewidth=1, label="true")
    ax.set_xlabel("x")
    ax.set_ylabel("probability")
    ax.legend()
    _save(fig, "head-logistic-mixture.png")


def histogram() -> None:
    """The histogram baseline on the bimodal 1-D set: the training frequencies, nearly."""
    dataset = load_dataset("1d-bimodal")
    model = dk.create_model("histogram", 1, dataset.num_values)
    _train(model, dataset, epochs=60, batch_size=200, lr=5e-2, patience=None)
    with torch.no_grad():
        probs = model.log_prob(torch.arange(dataset.num_values)[:, None]).exp()
    plots.histogram_1d(
        dataset.train, probs, ASSETS / "head-histogram.png", true_probs=dataset.true_probs
    )


def _save(fig, name: str) -> None:
    fig.tight_layout()
    fig.savefig(ASSETS / name, dpi=DPI)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    """Draw the pictures asked for (all by default)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("which", nargs="*", help="home, heads and/or real (default: all)")
    args = parser.parse_args(argv)
    args.which = args.which or ["home", "heads", "real"]
    if set(args.which) - {"home", "heads", "real"}:
        parser.error(f"expected home, heads and/or real, got {' '.join(args.which)}")
    torch.set_num_threads(1)
    ASSETS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if "real" in args.which:
            real(Path(tmp) / "8gaussians")
        if not {"home", "heads"} & set(args.which):
            return _listed()
        run_dir = default_run(Path(tmp) / "smiley")
        if "home" in args.which:
            home(run_dir)
        if "heads" in args.which:
            bernoulli()
            categorical(run_dir)
            logistic_mixture()
            histogram()
    return _listed()


def _listed() -> int:
    for path in sorted(ASSETS.glob("*.png")):
        print(f"wrote {path.relative_to(ASSETS.parents[1])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
