"""Mixed tables: a classifier two-sample test of models of rows with every kind of column.

Users judge a synthetic table by whether a classifier can tell its rows from real ones.
This script generates tables whose columns are of every kind (categorical, real, binary,
zero-inflated real) with a known dependence between each and earlier ones:

    shop      categorical, 4 levels   probabilities 0.4, 0.3, 0.2, 0.1
    income    real                    normal, mean -1.5, 0, 1 or 2.5 by shop, sd 0.7
    member    binary                  probability sigmoid(2 income - 0.5)
    spend     zero-inflated real      0 with probability 0.15 (members) or 0.6,
                                      else exp(0.5 income + 0.4 e)
    age       real                    40 + 10 tanh(income) + 5 member + 3 e
    channel   categorical, 3 levels   logits by member and by whether spend > 0
    returned  binary                  probability sigmoid(age / 10 - 4.5 + channel)

(``e`` a standard normal draw), and fits four models to the training rows, each drawing
as many rows as the held-out part has:

- densitykit's MADE through ``MADEEstimator`` with the ``mixed`` head: each column
  modelled as its kind (a categorical or Bernoulli distribution, a mixture of 5
  Gaussians, a spike at 0 beside a mixture of 5 Gaussians);
- the same MADE over the whole row as real numbers (``kinds="real"``): its discrete
  columns dequantized (uniform noise in ``[0, 1)`` added) and rounded back down when
  sampling;
- the product of the columns' marginals (each column resampled on its own from the
  training rows): what a model that ignores every dependence gets;
- zuko's masked autoregressive flow (``zuko.flows.MAF``) on the same dequantized table,
  trained by the same loop settings; skipped with a note when zuko is not installed
  (``pip install densitykit[peers]``);

plus fresh rows from the generator itself, the floor of the test at this size.

The test: held-out real rows (label 1) and the model's rows (label 0), a
``HistGradientBoostingClassifier`` and its stratified k-fold cross-validated accuracy
(0.5: the classifier cannot tell them apart; 1.0: it always can). Each model's line
gives the mean and standard deviation over folds and seeds (the table is regenerated
for every seed).

Run ``python benchmarks/mixed_tables.py`` for the figures (about 10 minutes on 2 shared cores) or
``--quick`` for a smoke run of a few seconds.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from _common import machine_report, table

from densitykit.estimator import MADEEstimator

COLUMNS: tuple[tuple[str, str], ...] = (
    ("shop", "categorical:4"),
    ("income", "real"),
    ("member", "binary"),
    ("spend", "spike:0"),
    ("age", "real"),
    ("channel", "categorical:3"),
    ("returned", "binary"),
)
"""Each column's name and kind (a real column with a point mass at V is ``spike:V``)."""


def levels(kind: str) -> int:
    """The number of values of a discrete kind; 0 for a real one."""
    if kind == "binary":
        return 2
    if kind.startswith("categorical:"):
        return int(kind.split(":", 1)[1])
    return 0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def make_table(num_rows: int, rng: np.random.Generator) -> np.ndarray:
    """``(num_rows, 7)`` float64 rows of ``COLUMNS``: codes as whole numbers."""
    shop = rng.choice(4, size=num_rows, p=[0.4, 0.3, 0.2, 0.1])
    income = np.array([-1.5, 0.0, 1.0, 2.5])[shop] + 0.7 * rng.normal(size=num_rows)
    member = rng.random(num_rows) < _sigmoid(2.0 * income - 0.5)
    zero = rng.random(num_rows) < np.where(member, 0.15, 0.6)
    spend = np.where(zero, 0.0, np.exp(0.5 * income + 0.4 * rng.normal(size=num_rows)))
    age = 40.0 + 10.0 * np.tanh(income) + 5.0 * member + 3.0 * rng.normal(size=num_rows)
    logits = np.stack([np.zeros(num_rows), 1.5 * member - 0.5, np.where(zero, -1.0, 1.0)], axis=1)
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    channel = (rng.random(num_rows)[:, None] > probs.cumsum(axis=1)).sum(axis=1).clip(0, 2)
    returned = rng.random(num_rows) < _sigmoid(age / 10.0 - 4.5 + channel)
    columns = [shop, income, member, spend, age, channel, returned]
    return np.column_stack(columns).astype(np.float64)


def dequantize(rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniform noise in ``[0, 1)`` added to every discrete column (a density over reals)."""
    noisy = rows.copy()
    for d, (_, kind) in enumerate(COLUMNS):
        if levels(kind):
            noisy[:, d] += rng.random(len(rows))
    return noisy


def requantize(rows: np.ndarray) -> np.ndarray:
    """Discrete columns rounded down and clipped back into their codes ``0..K-1``."""
    codes = rows.copy()
    for d, (_, kind) in enumerate(COLUMNS):
        if levels(kind):
            codes[:, d] = np.floor(codes[:, d]).clip(0, levels(kind) - 1)
    return codes


@dataclass
class Settings:
    """What every trained model gets: the same network size and training loop."""

    hidden_sizes: tuple[int, ...]
    epochs: int
    patience: int
    batch_size: int = 100
    lr: float = 1e-3


Model = Callable[[np.ndarray, int, int, Settings], np.ndarray]
"""``(training rows, rows to draw, seed, settings) -> drawn rows``."""


def table_kinds() -> list[str]:
    """The columns' kinds as ``MADEEstimator(kinds=...)`` takes them."""
    return [kind.replace("spike:", "spike=").split(":")[0] for _, kind in COLUMNS]


def made_mixed(train: np.ndarray, num_rows: int, seed: int, settings: Settings) -> np.ndarray:
    """densitykit's MADE with the ``mixed`` head: every column as its own kind."""
    estimator = MADEEstimator(
        settings.hidden_sizes,
        kinds=table_kinds(),
        epochs=settings.epochs,
        patience=settings.patience,
        batch_size=settings.batch_size,
        lr=settings.lr,
        random_state=seed,
    )
    return estimator.fit(train).sample(num_rows, random_state=seed)


def made_all_real(train: np.ndarray, num_rows: int, seed: int, settings: Settings) -> np.ndarray:
    """densitykit's MADE (``gaussian-mixture``) on the dequantized table, rounded back."""
    estimator = MADEEstimator(
        settings.hidden_sizes,
        kinds="real",
        epochs=settings.epochs,
        patience=settings.patience,
        batch_size=settings.batch_size,
        lr=settings.lr,
        random_state=seed,
    )
    estimator.fit(dequantize(train, np.random.default_rng(seed)))
    return requantize(estimator.sample(num_rows, random_state=seed))


def marginals(train: np.ndarray, num_rows: int, seed: int, settings: Settings) -> np.ndarray:
    """Each column resampled on its own: the product of the empirical marginals."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(train), size=(num_rows, train.shape[1]))
    return np.take_along_axis(train, picks, axis=0)


def zuko_maf(train: np.ndarray, num_rows: int, seed: int, settings: Settings) -> np.ndarray:
    """zuko's MAF (3 transforms) on the dequantized, standardised table, rounded back."""
    import zuko

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    data = dequantize(train, rng)
    loc, scale = data.mean(axis=0), data.std(axis=0)
    values = torch.from_numpy(((data - loc) / scale).astype(np.float32))
    order = torch.from_numpy(rng.permutation(len(values)))
    held = max(1, len(values) // 10)
    val, fit_rows = values[order[:held]], values[order[held:]]
    flow = zuko.flows.MAF(train.shape[1], transforms=3, hidden_features=settings.hidden_sizes)
    optimizer = torch.optim.Adam(flow.parameters(), lr=settings.lr)
    best, best_state, waited = float("inf"), None, 0
    for _ in range(settings.epochs):
        for batch in fit_rows[torch.randperm(len(fit_rows))].split(settings.batch_size):
            loss = -flow().log_prob(batch).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        with torch.no_grad():
            val_nll = -float(flow().log_prob(val).mean())
        if val_nll < best:
            best, waited = val_nll, 0
            best_state = {k: v.clone() for k, v in flow.state_dict().items()}
        else:
            waited += 1
            if waited >= settings.patience:
                break
    if best_state is not None:
        flow.load_state_dict(best_state)
    with torch.no_grad():
        drawn = flow().sample((num_rows,)).double().numpy()
    return requantize(drawn * scale + loc)


def generator_rows(train: np.ndarray, num_rows: int, seed: int, settings: Settings) -> np.ndarray:
    """Fresh rows from the generator itself: the test's floor at this size."""
    return make_table(num_rows, np.random.default_rng([seed, 1]))


def two_sample_accuracies(
    real: np.ndarray, drawn: np.ndarray, *, folds: int, seed: int, max_iter: int
) -> list[float]:
    """Cross-validated accuracy of a gradient-boosted classifier telling ``real`` from
    ``drawn``: one figure per fold."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    features = np.concatenate([real, drawn])
    labels = np.concatenate([np.ones(len(real)), np.zeros(len(drawn))])
    classifier = HistGradientBoostingClassifier(
        max_iter=max_iter,
        categorical_features=[kind.startswith("categorical:") for _, kind in COLUMNS],
        random_state=seed,
    )
    splits = StratifiedKFold(folds, shuffle=True, random_state=seed)
    return [float(a) for a in cross_val_score(classifier, features, labels, cv=splits)]


def zuko_available() -> str:
    """An empty string, or the note of why the zuko row is skipped."""
    try:
        import zuko  # noqa: F401
    except ImportError:
        return "zuko MAF skipped: zuko is not installed (pip install densitykit[peers])"
    return ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="A smoke run of a few seconds.")
    parser.add_argument("--rows", type=int, default=5000, help="Training rows per seed.")
    parser.add_argument("--test-rows", type=int, default=2000, help="Held-out real rows.")
    parser.add_argument("--seeds", type=int, default=3, help="Tables (and fits) per model.")
    parser.add_argument("--folds", type=int, default=5, help="Cross-validation folds.")
    parser.add_argument("--epochs", type=int, default=200, help="Epoch limit of both flows.")
    parser.add_argument("--patience", type=int, default=15, help="Early-stopping patience.")
    parser.add_argument("--hidden", default="128-128", help="Hidden sizes, e.g. 128-128.")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads.")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.test_rows, args.seeds, args.folds, args.epochs = 300, 100, 1, 2, 2
        args.hidden = "16"
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    settings = Settings(
        hidden_sizes=tuple(int(size) for size in args.hidden.split("-")),
        epochs=args.epochs,
        patience=args.patience,
    )
    max_iter = 20 if args.quick else 100
    print(machine_report())
    print(f"date:           {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"command:        python {' '.join(sys.argv)}")
    note = zuko_available()
    models: list[tuple[str, Model]] = [
        ("densitykit MADE, mixed head", made_mixed),
        ("densitykit MADE, all columns real (dequantized)", made_all_real),
        ("product of the marginals", marginals),
    ]
    if not note:
        models.append(("zuko MAF, 3 transforms (dequantized)", zuko_maf))
    models.append(("fresh rows from the generator", generator_rows))

    # One untimed tiny fit each first: torch's optimizer imports its compiler on first use.
    warm = make_table(50, np.random.default_rng(99))
    for _, model in models:
        model(warm, 10, 0, Settings(hidden_sizes=(4,), epochs=1, patience=1))

    accuracies: dict[str, list[float]] = {name: [] for name, _ in models}
    seconds: dict[str, list[float]] = {name: [] for name, _ in models}
    for seed in range(args.seeds):
        rows = make_table(args.rows + args.test_rows, np.random.default_rng(seed))
        train, held_out = rows[: args.rows], rows[args.rows :]
        for name, model in models:
            start = time.perf_counter()
            drawn = model(train, len(held_out), seed, settings)
            seconds[name].append(time.perf_counter() - start)
            accuracies[name] += two_sample_accuracies(
                held_out, drawn, folds=args.folds, seed=seed, max_iter=max_iter
            )
            print(f"seed {seed}: {name}: accuracy {statistics.mean(accuracies[name]):.3f}")

    header = ["model", "accuracy (0.5 is perfect)", "folds x seeds", "fit + sample (s)"]
    lines = []
    for name, _ in models:
        values = accuracies[name]
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        lines.append(
            [
                name,
                f"{statistics.mean(values):.3f} ± {spread:.3f}",
                f"{args.folds} x {args.seeds}",
                f"{statistics.mean(seconds[name]):.1f}",
            ]
        )
    print()
    print(
        f"{args.rows:,} training rows, {args.test_rows:,} held-out rows against as many "
        f"drawn; hidden {args.hidden}, at most {args.epochs} epochs"
    )
    print(table(header, lines))
    if note:
        print(note)


if __name__ == "__main__":
    main()
