"""Draw the pictures of the documentation into docs/assets/ by running densitykit.

Every picture is an output of the code, made on the CPU in a few minutes in all:

* ``smiley-density.png`` and ``smiley-learning-curves.png``: the run folder
  pictures of the README's ``densitykit fit`` (the default run, 2-D smiley),
  copied as they are;
* ``head-bernoulli.png``, ``head-categorical.png``, ``head-logistic-mixture.png``
  and ``head-histogram.png``: one picture per head for the Heads page;
* ``real-8gaussians-density.png``: the run folder picture of
  ``densitykit fit --data 8gaussians --hidden-sizes 128,128 --epochs 60 --lr 0.003``
  for the Real-valued and mixed data page, copied as it is;
* ``real-flows-vs-mog.png``: a MADE with the ``gaussian-mixture`` head beside a MAF,
  trained alike on three 2-D real sets, their densities in the data's units beside
  the data and the true density.

Usage (from the repository root; one training at a time, one CPU thread):

    python docs/scripts/make_figures.py            # everything
    python docs/scripts/make_figures.py heads      # only the head pictures
    python docs/scripts/make_figures.py real       # only the 2-D real data picture
    python docs/scripts/make_figures.py flows      # only MADE MoG against MAF in 2-D
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
import numpy as np
import torch

import densitykit as dk
from densitykit import plots
from densitykit.data import load_dataset
from densitykit.maf import MAFConfig, MAFModel
from densitykit.runs import PLANE_GRID, load_run, plane_grid, table_log_jacobian
from densitykit.train import TrainConfig, evaluate, fit

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


FLOW_SETS = ("moons", "8gaussians", "checkerboard")
"""The 2-D real sets of the MADE MoG against MAF picture."""
FLOW_SAMPLES = 10_000
FLOW_TRAINING = {"epochs": 60, "batch_size": 100, "lr": 3e-3, "patience": None}
"""The same training of both models on every set (seed 0, one thread)."""


def _flow_models(dim: int) -> dict[str, dk.DensityModel]:
    torch.manual_seed(0)
    mog = dk.create_model("gaussian-mixture", dim, hidden_sizes=(64, 64), num_components=10)
    torch.manual_seed(0)
    maf = MAFModel(MAFConfig(dim=dim, num_transforms=5, hidden_sizes=(64, 64)))
    return {"MADE MoG": mog, "MAF": maf}


def _density(model, dataset, points: np.ndarray) -> np.ndarray:
    """The model's density of ``points`` in the data's units (the Table's Jacobian added)."""
    values = dataset.table.encode(points, where="the grid")
    with torch.no_grad():
        log_density = model.log_prob(values.to(model.dtype)).double()
    density = (log_density + dataset.table.log_jacobian(values)).exp().numpy()
    return density.reshape(PLANE_GRID, PLANE_GRID)


def flows() -> None:
    """A MADE MoG and a MAF trained alike on 2-D real sets: data, true density, both
    models' densities in the data's units, each titled with its test NLL."""
    fig, axes = plt.subplots(len(FLOW_SETS), 4, figsize=(15, 3.7 * len(FLOW_SETS)))
    for row, name in zip(axes, FLOW_SETS):
        dataset = load_dataset(name, num_samples=FLOW_SAMPLES)
        points, extent = plane_grid(dataset)
        train = dataset.table.decode(dataset.train)
        ranges = [[extent[2], extent[3]], [extent[0], extent[1]]]
        counts, _, _ = np.histogram2d(train[:, 1], train[:, 0], bins=100, range=ranges)
        panels = [(f"{name}: training data ({len(train):,} points)", counts)]
        if dataset.true_log_density is not None:
            true_nll = -float(np.mean(dataset.true_log_density(dataset.table.decode(dataset.test))))
            truth = np.exp(dataset.true_log_density(points)).reshape(PLANE_GRID, PLANE_GRID)
            panels.append((f"true density, test NLL {true_nll:.3f}", truth))
            print(f"{name}: true law test NLL {true_nll:.3f} nats")
        else:
            panels.append(("true density", None))
        for label, model in _flow_models(dataset.dim).items():
            _train(model, dataset, **FLOW_TRAINING)
            nll = evaluate(model, dataset.test) - table_log_jacobian(dataset, "test")
            print(f"{name}: {label} test NLL {nll:.3f} nats")
            panels.append((f"{label}, test NLL {nll:.3f}", _density(model, dataset, points)))
        for ax, (title, image) in zip(row, panels):
            if image is None:
                ax.set_axis_off()
                ax.text(0.5, 0.5, "not known in closed form", ha="center", transform=ax.transAxes)
            else:
                ax.imshow(image, cmap="viridis", origin="lower", extent=extent, aspect="auto")
                ax.set_xlabel("x")
                ax.set_ylabel("y")
            ax.set_title(title, fontsize=10)
    fig.suptitle("Densities in the data's units; test NLL in nats per point")
    _save(fig, "real-flows-vs-mog.png")


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
    parser.add_argument("which", nargs="*", help="home, heads, real and/or flows (default: all)")
    args = parser.parse_args(argv)
    args.which = args.which or ["home", "heads", "real", "flows"]
    if set(args.which) - {"home", "heads", "real", "flows"}:
        parser.error(f"expected home, heads, real and/or flows, got {' '.join(args.which)}")
    torch.set_num_threads(1)
    ASSETS.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if "real" in args.which:
            real(Path(tmp) / "8gaussians")
        if "flows" in args.which:
            flows()
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
