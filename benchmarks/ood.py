"""Out-of-distribution detection by likelihood: score an in-distribution test set and an
out-of-distribution one with one run's model, and report the AUROC of the NLL.

    densitykit fit --data mnist --data-dir DIR --hidden-sizes 500 --direct --epochs 8 \\
        --patience 0 --out runs/mnist-ood
    python benchmarks/ood.py --run runs/mnist-ood --data-dir DIR \\
        --picture docs/assets/ood-mnist-fashion.png

The NLL is the detector's score (higher: more likely out of distribution); the AUROC is
the probability that a random out-of-distribution example gets a higher NLL than a random
in-distribution one (0.5: no better than chance; below 0.5: the model prefers the
out-of-distribution data). Both sets are binarized as the model's run was.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from densitykit.scoring import score_data


def auroc(negatives: np.ndarray, positives: np.ndarray) -> float:
    """P(positive score > negative score) + 0.5 P(tie), by ranks (Mann-Whitney U).

    Example:
        >>> auroc(np.array([0.0, 1.0]), np.array([2.0, 3.0]))
        1.0
    """
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([negatives, positives]))
    positive_ranks = ranks[len(negatives) :].sum()
    n_pos, n_neg = len(positives), len(negatives)
    return float((positive_ranks - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def histogram(in_nll: np.ndarray, out_nll: np.ndarray, names: tuple[str, str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, ax = plt.subplots(figsize=(7, 3.8))
    # Log-spaced bins: the two sets' NLLs differ by orders of magnitude.
    low, high = min(in_nll.min(), out_nll.min()), max(in_nll.max(), out_nll.max())
    bins = np.geomspace(low, high, 80)
    ax.hist(in_nll, bins=bins, alpha=0.6, label=f"{names[0]} test (in)")
    ax.hist(out_nll, bins=bins, alpha=0.6, label=f"{names[1]} test (out)")
    ax.set_xscale("log")
    ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # no crowded labels
    ax.set_xlabel("NLL (nats per image, log scale)")
    ax.set_ylabel("images per bin")
    ax.set_title(f"NLL under a MADE trained on {names[0]}")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="Run folder of the model.")
    parser.add_argument("--in-data", default="mnist")
    parser.add_argument("--out-data", default="fashion-mnist")
    parser.add_argument("--data-dir", default=None, help="Folder of the in-distribution files.")
    parser.add_argument("--out-data-dir", default=None, help="Folder of the other set's files.")
    parser.add_argument("--picture", type=Path, default=None, help="Histogram .png to write.")
    args = parser.parse_args()
    in_options = {"data_dir": args.data_dir} if args.data_dir else {}
    out_options = {"data_dir": args.out_data_dir} if args.out_data_dir else {}
    inside = score_data(args.run, args.in_data, data_options=in_options)
    outside = score_data(args.run, args.out_data, data_options=out_options)
    in_nll, out_nll = -inside.log_prob, -outside.log_prob
    print(f"{args.in_data} test: {inside.summary()}", file=sys.stderr)
    print(f"{args.out_data} test: {outside.summary()}", file=sys.stderr)
    score = auroc(in_nll, out_nll)
    share = float((out_nll < np.median(in_nll)).mean())
    print("| set | examples | mean NLL (nats) | median NLL | bits/dim |")
    print("|---|---|---|---|---|")
    for name, scores, nll in ((args.in_data, inside, in_nll), (args.out_data, outside, out_nll)):
        print(
            f"| {name} test | {len(nll):,} | {nll.mean():.2f} | {np.median(nll):.2f} | "
            f"{scores.nll_bits_per_dim.mean():.4f} |"
        )
    print(f"\nAUROC of the NLL ({args.out_data} as positive): {score:.4f}")
    print(f"{args.out_data} examples below the median {args.in_data} NLL: {share:.1%}")
    if args.picture:
        histogram(in_nll, out_nll, (args.in_data, args.out_data), args.picture)
        print(f"wrote {args.picture}", file=sys.stderr)


if __name__ == "__main__":
    main()
