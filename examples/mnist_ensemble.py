"""Binarized MNIST with the Bernoulli head and an order-agnostic ensemble of masks.

One MADE is trained with 8 masks, each its own random ordering of the 784 pixels
and its own hidden connectivity, moving to the next mask at every step
(connectivity-agnostic training, Germain et al. 2015). At test time the
masks form a uniform mixture, whose NLL is printed for 1, 2, 4 and 8 masks.

Where the images come from:

    python examples/mnist_ensemble.py --data-dir ~/data/mnist   # a folder of IDX files
    python examples/mnist_ensemble.py                           # default places, else download
    python examples/mnist_ensemble.py --quick                   # no real data: see below

``--data-dir`` takes a folder holding ``train-images-idx3-ubyte[.gz]`` and
``t10k-images-idx3-ubyte[.gz]`` (or its ``raw/`` or ``MNIST/raw/`` subfolder).
``--quick`` runs in seconds for tests: without ``--data-dir`` it first writes a
small MNIST-layout IDX folder of generated 28x28 shape images and reads it
through the same loader, so it never touches the network.

By default 10,000 training images are used (``--max-train``) and the run takes
about a minute on a laptop CPU. Writes ``samples.png`` and ``data.png`` into
``--out`` (default ``runs/examples/mnist_ensemble/``).
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch

import densitykit as dk
from densitykit import plots
from densitykit.data import load_dataset
from densitykit.data.idx import write_idx
from densitykit.data.mnist import IMAGE_FILES
from densitykit.data.shapes import draw_shapes
from densitykit.masks import ConnectivityWarning
from densitykit.train import TrainConfig, evaluate, fit

OUT = Path("runs/examples/mnist_ensemble")


def write_fake_mnist(folder: Path, num_train: int = 400, num_test: int = 100) -> Path:
    """Write generated 28x28 shape images as MNIST IDX files (grey levels 0 or 255)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, count in (("train", num_train), ("test", num_test)):
        images = draw_shapes(count, 28, rng) * np.uint8(255)
        write_idx(images, folder / f"{IMAGE_FILES[split]}.gz")
    return folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, help="folder with the MNIST IDX files")
    parser.add_argument("--quick", action="store_true", help="tiny settings, for tests")
    parser.add_argument(
        "--out", type=Path, default=OUT, help="output folder (default: %(default)s)"
    )
    parser.add_argument("--max-train", type=int, default=10000, help="training images used")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs")
    parser.add_argument("--num-masks", type=int, default=8, help="masks in the ensemble")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    args.out.mkdir(parents=True, exist_ok=True)

    data_dir, hidden_sizes = args.data_dir, (1000,)
    if args.quick:
        if data_dir is None:
            data_dir = write_fake_mnist(args.out / "fake-mnist")
        args.max_train, args.epochs, hidden_sizes = 300, 1, (64,)
        # 64 units cannot hold 783 degrees; quick mode only checks that the script runs.
        warnings.simplefilter("ignore", ConnectivityWarning)
    # binarize="threshold": a pixel is 1 where its grey level is above 127.5.
    dataset = load_dataset(
        "mnist", data_dir=data_dir, binarize="threshold", max_train=args.max_train
    )
    print(f"{dataset.name}: {len(dataset.train)} training, {len(dataset.test)} test images")

    # One hidden layer of 1,000 units. "even" spreads the hidden degrees over 1..783, so every
    # degree has a unit and no mask loses a dependency (a layer narrower than 783 units would,
    # and densitykit would warn).
    model = dk.create_model(
        "bernoulli",
        dataset.dim,
        hidden_sizes=hidden_sizes,
        masks="multi-ordering",
        num_masks=args.num_masks,
        seed=0,
        mask_options={"spread": "even"},
    )
    # eval_masks=1 keeps the per-epoch validation cheap; the test below uses every mask.
    config = TrainConfig(
        epochs=args.epochs, batch_size=100, lr=1e-3, device="cpu", mask_every=1, eval_masks=1
    )
    result = fit(model, dataset.train, dataset.val, config)
    print(f"trained {len(result.history)} epoch(s) in {result.train_seconds:.1f}s")

    model.eval()
    test = dataset.test[:2000]
    counts = sorted({2**i for i in range(model.num_masks.bit_length())} | {model.num_masks})
    for count in counts:  # the mixture of the first `count` masks (log-mean-exp)
        nll = evaluate(model, test, num_masks=count)
        print(f"test NLL with {count} mask(s): {nll:7.2f} nats per image")

    samples = model.sample(64, generator=torch.Generator().manual_seed(0))
    plots.sample_grid(
        samples, dataset.shape, args.out / "samples.png", columns=8, title="MADE samples"
    )
    plots.sample_grid(
        dataset.test[:64], dataset.shape, args.out / "data.png", columns=8, title="test images"
    )
    print(f"wrote {args.out / 'samples.png'} and {args.out / 'data.png'}")


if __name__ == "__main__":
    main()
