"""Compose a MADE model from its parts, fit the 2-D smiley, sample and plot.

The parts are the ones ``densitykit.create_model`` composes by name, here put
together by hand: a mask builder gives the connectivity, a head says what
distribution each variable has, the MADE backbone maps values to the head's
parameters, and ``AutoregressiveModel`` ties them together.

    python examples/compose_model.py                 # under a minute on a laptop CPU
    python examples/compose_model.py --quick         # a few seconds, smaller everything
    python examples/compose_model.py --out pictures  # another output folder

Writes ``smiley.png`` (training data, model density, model samples) and
``learning_curves.png`` into the output folder (``runs/examples/compose_model/`` by
default), and prints the test NLL of each
mask alone and of their mixture.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

import densitykit as dk
from densitykit import plots
from densitykit.data import load_dataset
from densitykit.train import TrainConfig, evaluate, fit

OUT = Path("runs/examples/compose_model")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings, for tests")
    parser.add_argument(
        "--out", type=Path, default=OUT, help="output folder (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    if args.quick:
        dataset = load_dataset("2d-smiley", grid_size=16, num_samples=2000)
        hidden_sizes, epochs = (32,), 2
    else:
        dataset = load_dataset("2d-smiley")  # 25 x 25 grid, 20,000 points
        hidden_sizes, epochs = (256, 256), 20
    dim, num_values = dataset.dim, dataset.num_values  # D = 2 variables (row, col), K values

    # 1. Connectivity: one mask per ordering of the D = 2 variables, (row, col) and
    #    (col, row). (With D = 2 every hidden unit has degree 1, so masks differ only by
    #    their ordering; with more variables each mask also draws its own hidden degrees.)
    connectivities = dk.masks.create(
        "ordering", dim=dim, hidden_sizes=hidden_sizes, ordering=[0, 1], seed=0
    ) + dk.masks.create("ordering", dim=dim, hidden_sizes=hidden_sizes, ordering=[1, 0], seed=0)
    # 2. Head: a softmax over the K values of each variable, fed back one-hot.
    head = dk.heads.create("categorical", dim=dim, num_values=num_values)
    # 3. Backbone: sized by the head (K outputs and K one-hot inputs per variable).
    backbone = dk.MADE(
        connectivities,
        params_per_variable=head.params_per_variable,
        input_width=head.input_width,
    )
    # 4. The model: log_prob is the log-mean-exp over the 2 masks; sample draws a mask first.
    model = dk.AutoregressiveModel(backbone, head)
    # (dk.create_model composes the same parts by name and also records a ModelConfig,
    #  which save_checkpoint needs; a model assembled by hand has none.)

    config = TrainConfig(epochs=epochs, batch_size=100, lr=1e-3, device="cpu", mask_every=1)
    result = fit(model, dataset.train, dataset.val, config)
    print(f"trained {len(result.history)} epoch(s) in {result.train_seconds:.1f}s")

    model.eval()
    with torch.no_grad():
        per_mask = model.log_prob_per_mask(dataset.test)  # (num_masks, N)
        for mask, log_prob in enumerate(per_mask):
            order = model.backbone.connectivity(mask).ordering.tolist()
            label = f"mask {mask} (ordering {order})"
            print(f"{label:<28} test NLL {-log_prob.mean():.4f} nats")
        label = f"mixture of {model.num_masks} masks"
        print(f"{label:<28} test NLL {evaluate(model, dataset.test):.4f} nats")
        print(f"{'true entropy':<28}          {dataset.true_entropy_nats:.4f} nats")

        grid = torch.cartesian_prod(torch.arange(num_values), torch.arange(num_values))
        probs = model.log_prob(grid).exp().reshape(num_values, num_values)
        samples = model.sample(len(dataset.train), generator=torch.Generator().manual_seed(0))

    args.out.mkdir(parents=True, exist_ok=True)
    picture = plots.density_2d(
        dataset.train, probs, samples, args.out / "smiley.png", title="MADE, one mask per ordering"
    )
    curves = plots.learning_curves(
        result.history, args.out / "learning_curves.png", true_entropy=dataset.true_entropy_nats
    )
    print(f"wrote {picture} and {curves}")


if __name__ == "__main__":
    main()
