"""The class-conditional orderless model, p(x | y): every ordering's joint and every
conditional normalised given each label, the first variable of every ordering reads the
label, samples follow the likelihood, bad labels are refused, and runs train with labels."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import every_value, frequencies_match
from typer.testing import CliRunner

import densitykit as dk
from densitykit.checkpoint import load_checkpoint, save_checkpoint
from densitykit.cli import app
from densitykit.errors import DensitykitError
from densitykit.family import DataFacts
from densitykit.orderless import OrderlessConfig, OrderlessModel
from densitykit.scoring import score
from densitykit.train import TrainConfig, evaluate, fit

# Tiny models of every head with parameters per variable: (head, D, K, head options).
TINY = [
    ("bernoulli", 4, 2, {}),
    ("categorical", 3, 3, {"one_hot": True}),
    ("categorical", 3, 3, {"one_hot": False}),
    ("logistic-mixture", 3, 3, {"num_components": 2, "one_hot": False}),
    ("logistic-mixture", 3, 3, {"num_components": 2, "one_hot": True}),
]
TINY_IDS = [f"{h}-{'onehot' if o.get('one_hot') else 'scalar'}" for h, _, _, o in TINY]
LABELS = 3


def tiny(
    head: str = "categorical",
    dim: int = 3,
    num_values: int = 3,
    options: dict | None = None,
    *,
    hidden_sizes: tuple[int, ...] = (7, 5),
    direct: bool = True,
    num_orderings: int = 3,
    num_labels: int = LABELS,
) -> OrderlessModel:
    """A float64 label model with large random weights: peaked conditionals that depend
    on the observed values and on the label."""
    config = OrderlessConfig(
        head,
        dim,
        num_values,
        {"one_hot": True} if options is None else options,
        hidden_sizes=hidden_sizes,
        direct_connections=direct,
        num_orderings=num_orderings,
        ordering_seed=5,
        num_labels=num_labels,
    )
    model = OrderlessModel(config).double()
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for parameter in model.parameters():
            scale = 3.0 / math.sqrt(max(parameter.shape[-1], 1))
            parameter.copy_(torch.randn(parameter.shape, generator=generator).double() * scale)
    return model


def every_pattern(dim: int) -> list[torch.Tensor]:
    return [torch.tensor(p) for p in itertools.product([False, True], repeat=dim)]


def observed_first(ordering: torch.Tensor, pattern: torch.Tensor) -> torch.Tensor:
    return torch.cat([ordering[pattern[ordering]], ordering[~pattern[ordering]]])


# -- exact by enumeration, given each label --------------------------------------------------


@pytest.mark.parametrize(("head", "dim", "num_values", "options"), TINY, ids=TINY_IDS)
@pytest.mark.parametrize("direct", [False, True], ids=["", "direct"])
def test_the_joint_and_every_conditional_sum_to_one_given_each_label(
    head: str, dim: int, num_values: int, options: dict, direct: bool
) -> None:
    model = tiny(head, dim, num_values, options, direct=direct)
    values = every_value(dim, num_values)
    one = torch.tensor(1.0, dtype=torch.float64)
    tables = []
    for label in range(LABELS):
        joint = model.log_prob(values, context=torch.tensor(label))
        torch.testing.assert_close(joint.exp().sum(), one)
        for ordering in model.orderings():  # each ordering's joint alone too
            alone = model.log_prob(values, ordering[None], context=torch.tensor(label))
            torch.testing.assert_close(alone.exp().sum(), one)
        tables.append(joint)
        for pattern in every_pattern(dim):
            if pattern.all() or not pattern.any():
                continue
            conditional = model.conditional_log_prob(
                values, pattern, context=torch.full((len(values),), label)
            ).exp()
            keys = [tuple(row) for row in values[:, pattern].tolist()]
            for key in set(keys):
                rows = torch.tensor([k == key for k in keys])
                torch.testing.assert_close(conditional[rows].sum(), one)
    assert not torch.allclose(tables[0], tables[1], atol=1e-6)
    assert not torch.allclose(tables[1], tables[2], atol=1e-6)


@pytest.mark.parametrize("direct", [False, True], ids=["", "direct"])
@pytest.mark.parametrize("hidden_sizes", [(6,), (7, 5)], ids=["1", "2"])
def test_the_first_variable_of_every_ordering_depends_on_the_label(
    direct: bool, hidden_sizes: tuple[int, ...]
) -> None:
    """Its probability (nothing observed yet) changes with the label, whatever variable
    comes first: through the first layer, and through the direct connections alone."""
    model = tiny("categorical", 3, 3, hidden_sizes=hidden_sizes, direct=direct)
    values = every_value(3, 3)
    for ordering in itertools.permutations(range(3)):
        ordering = torch.tensor(ordering)
        first = torch.zeros(3, dtype=torch.bool)
        first[ordering[0]] = True  # the marginal of the first variable is its first factor
        per_label = [
            model.marginal_log_prob(values, first, ordering[None], context=torch.tensor(label))
            for label in range(LABELS)
        ]
        for a, b in itertools.combinations(per_label, 2):
            assert not torch.allclose(a, b, atol=1e-6), ordering
    # Without the first layer's label columns, only the direct connections carry it.
    with torch.no_grad():
        model.first.weight[:, -LABELS:] = 0
    order = torch.tensor([[2, 0, 1]])
    first = torch.tensor([False, False, True])
    per_label = [
        model.marginal_log_prob(values, first, order, context=torch.tensor(label))
        for label in range(LABELS)
    ]
    assert torch.allclose(per_label[0], per_label[1]) != direct


@pytest.mark.parametrize(("head", "dim", "num_values", "options"), TINY, ids=TINY_IDS)
def test_marginal_plus_conditional_is_the_joint_of_the_observed_first_ordering_given_the_label(
    head: str, dim: int, num_values: int, options: dict
) -> None:
    model = tiny(head, dim, num_values, options)
    values = every_value(dim, num_values)
    base = model.orderings(1, seed=9)
    labels = torch.arange(len(values)) % LABELS  # a label per example
    for pattern in every_pattern(dim):
        if pattern.all() or not pattern.any():
            continue
        moved = observed_first(base[0], pattern)[None]
        both = model.marginal_log_prob(
            values, pattern, base, context=labels
        ) + model.conditional_log_prob(values, pattern, base, context=labels)
        torch.testing.assert_close(both, model.log_prob(values, moved, context=labels))


@pytest.mark.parametrize("direct", [False, True], ids=["", "direct"])
def test_each_step_of_the_chain_is_the_network_given_the_label_and_the_variables_before_it(
    direct: bool,
) -> None:
    """The incremental first-layer update starts from the label's contribution: scoring
    along an ordering equals one full forward pass per factor, given the label."""
    model = tiny("categorical", 3, 3, direct=direct)
    values = every_value(3, 3)
    labels = torch.arange(len(values)) % LABELS
    onehot = model.encode_context(labels, labels.shape)
    for ordering in model.orderings(4, seed=2):
        reference = torch.zeros(len(values), dtype=torch.float64)
        observed = torch.zeros(len(values), 3, dtype=torch.bool)
        for variable in ordering.tolist():
            params = model(values, observed, onehot)
            reference += model.head.log_prob(params, values)[:, variable].detach()
            observed[:, variable] = True
        scored = model.log_prob(values, ordering[None], context=labels)
        torch.testing.assert_close(scored, reference)
    # Training scores the same network: with every variable after the cut, d = 0.
    ordering = model.orderings(1, seed=3)
    draw = (ordering.expand(len(values), 3), torch.zeros(len(values), 1, dtype=torch.long))
    params = model(values, torch.zeros(len(values), 3, dtype=torch.bool), onehot)
    expected = model.head.log_prob(params, values).sum(1)
    torch.testing.assert_close(model.training_log_prob(values, draw, labels), expected)


# -- sampling and completion -----------------------------------------------------------------


@pytest.mark.parametrize(("head", "dim", "num_values", "options"), TINY[:2], ids=TINY_IDS[:2])
def test_sample_frequencies_given_a_label_match_the_likelihood(
    head: str, dim: int, num_values: int, options: dict
) -> None:
    model = tiny(head, dim, num_values, options)
    values = every_value(dim, num_values)
    for label in (0, 2):
        samples = model.sample(
            3000, context=torch.tensor(label), generator=torch.Generator().manual_seed(label)
        )
        expected = model.log_prob(values, context=torch.tensor(label)).exp()
        assert frequencies_match(samples, values, expected)


def test_per_sample_labels_each_follow_their_own_likelihood() -> None:
    model = tiny()
    values = every_value(3, 3)
    labels = torch.tensor([0, 2]).repeat(3000)
    samples = model.sample(len(labels), context=labels, generator=torch.Generator().manual_seed(1))
    for label in (0, 2):
        expected = model.log_prob(values, context=torch.tensor(label)).exp()
        assert frequencies_match(samples[labels == label], values, expected)
    grid = model.sample((2, 3), context=torch.tensor([[0, 1, 2], [2, 1, 0]]))
    assert grid.shape == (2, 3, 3)
    assert model.sample((2, 3), context=torch.tensor(1)).shape == (2, 3, 3)
    assert model.sample(0, context=torch.tensor(1)).shape == (0, 3)
    x = torch.randint(0, 3, (5, 3))
    broadcast = model.log_prob(x, context=torch.tensor(2))
    torch.testing.assert_close(broadcast, model.log_prob(x, context=torch.full((5,), 2)))


def test_completion_frequencies_given_a_label_match_the_conditional() -> None:
    model = tiny()
    pattern = torch.tensor([False, True, False])
    example = torch.tensor([0, 2, 0])
    candidates = every_value(3, 3)
    candidates = candidates[candidates[:, 1] == 2]
    for label in (0, 1):
        completed = model.complete(
            example.expand(4000, 3),
            pattern,
            context=torch.tensor(label),
            generator=torch.Generator().manual_seed(label),
        )
        assert bool((completed[:, 1] == 2).all())
        expected = model.conditional_log_prob(
            candidates, pattern, context=torch.tensor(label)
        ).exp()
        assert frequencies_match(completed, candidates, expected)


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("context", "error", "words"),
    [
        (None, ValueError, "conditional; pass context"),
        (torch.tensor([0, 1]), ValueError, "shape (3,) or ()"),
        (torch.tensor([0.0, 1.0, 2.0]), TypeError, "integer dtype"),
        (torch.tensor([0, 1, 3]), ValueError, "labels must lie in 0..2"),
        (torch.tensor([-1, 1, 2]), ValueError, "labels must lie in 0..2"),
        ([0, 1, 2], TypeError, "got list"),
    ],
    ids=["missing", "shape", "dtype", "too-large", "negative", "not-a-tensor"],
)
@pytest.mark.parametrize("query", ["log_prob", "conditional", "marginal", "complete", "sample"])
def test_a_bad_label_context_says_what_was_expected(
    context: object, error: type, words: str, query: str
) -> None:
    model = OrderlessModel(OrderlessConfig("bernoulli", 4, hidden_sizes=(8,), num_labels=3))
    x, pattern = torch.zeros(3, 4, dtype=torch.long), torch.tensor([True, False, False, False])
    calls = {
        "log_prob": lambda: model.log_prob(x, context=context),
        "conditional": lambda: model.conditional_log_prob(x, pattern, context=context),
        "marginal": lambda: model.marginal_log_prob(x, pattern, context=context),
        "complete": lambda: model.complete(x, pattern, context=context),
        "sample": lambda: model.sample(3, context=context),
    }
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        calls[query]()


def test_a_label_given_to_an_unconditional_model_and_bad_configs_are_refused() -> None:
    plain = OrderlessModel(OrderlessConfig("bernoulli", 4, hidden_sizes=(8,)))
    assert not plain.is_conditional and plain.num_labels == 0
    with pytest.raises(ValueError, match="orderless model is not conditional; give no context"):
        plain.log_prob(torch.zeros(3, 4), context=torch.tensor(1))
    with pytest.raises(ValueError, match="not conditional"):
        plain.sample(2, context=torch.tensor(1))
    with pytest.raises(ValueError, match="at least 2, got 1"):
        OrderlessConfig("bernoulli", 4, num_labels=1)
    with pytest.raises(ValueError, match="num_labels must be"):
        OrderlessConfig("bernoulli", 4, num_labels=-1)
    facts = DataFacts("shapes", dim=4, num_values=2, kind="table", shape=(4,), num_labels=4)
    assert OrderlessModel.complete_config(OrderlessConfig(), facts).num_labels == 4
    with pytest.raises(DensitykitError, match="num_labels=3, but data set 'shapes' has 4"):
        OrderlessModel.complete_config(OrderlessConfig(num_labels=3), facts)
    unlabelled = DataFacts("shapes", dim=4, num_values=2, kind="table", shape=(4,))
    with pytest.raises(DensitykitError, match="pass --condition label"):
        OrderlessModel.complete_config(OrderlessConfig(num_labels=4), unlabelled)
    model = OrderlessModel(OrderlessConfig("bernoulli", 4, hidden_sizes=(8,), num_labels=3))
    with pytest.raises(ValueError, match=r"one-hot labels of shape \(2, 3\)"):
        model(torch.zeros(2, 4), torch.zeros(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="conditional; pass context"):
        model.training_loss(torch.zeros(2, 4))
    with pytest.raises(ValueError, match="conditional"):
        score(model, np.zeros((3, 4), dtype=np.int64))


@pytest.mark.parametrize("direct", [False, True], ids=["", "direct"])
def test_parameter_count_save_and_load_count_and_keep_the_label_weights(
    direct: bool, tmp_path: Path
) -> None:
    config = OrderlessConfig(
        "categorical", 4, 3, hidden_sizes=(8, 5), direct_connections=direct, num_labels=5
    )
    model = OrderlessModel(config)
    assert OrderlessModel.parameter_count(config) == sum(p.numel() for p in model.parameters())
    plain = OrderlessModel(replace_labels(config, 0))
    assert plain.first.in_features == model.first.in_features - 5  # the old layout kept
    save_checkpoint(tmp_path / "c.pt", model)
    loaded = load_checkpoint(tmp_path / "c.pt")
    x, labels = torch.randint(0, 3, (6, 4)), torch.arange(6) % 5
    torch.testing.assert_close(
        loaded.log_prob(x, context=labels), model.log_prob(x, context=labels)
    )
    assert loaded.num_labels == 5 and loaded.config.num_labels == 5


def replace_labels(config: OrderlessConfig, num_labels: int) -> OrderlessConfig:
    return OrderlessConfig.from_dict({**config.to_dict(), "num_labels": num_labels})


# -- training --------------------------------------------------------------------------------


def test_training_learns_what_the_label_says() -> None:
    """Label 0 means all zeros, label 1 all ones: only a model whose every variable (the
    first of every ordering included) sees the label can reach an NLL near 0."""
    labels = torch.arange(400) % 2
    data = labels[:, None].expand(400, 5).clone()
    config = TrainConfig(epochs=40, batch_size=50, lr=1e-2, patience=None, device="cpu")
    torch.manual_seed(0)
    model = OrderlessModel(OrderlessConfig("bernoulli", 5, hidden_sizes=(16,), num_labels=2))
    fit(model, data, data, config, train_context=labels, val_context=labels)
    assert evaluate(model, data, context=labels) < 0.3  # log 2 = 0.69 without the label
    torch.manual_seed(0)
    plain = OrderlessModel(OrderlessConfig("bernoulli", 5, hidden_sizes=(16,)))
    fit(plain, data, data, config)
    assert evaluate(plain, data) > np.log(2) - 0.01
    with pytest.raises(ValueError, match="one context per example"):
        evaluate(model, data)


def test_the_training_context_shards_with_its_rows() -> None:
    model = tiny("bernoulli", 6, 2, {}, hidden_sizes=(8,))
    x, labels = torch.randint(0, 2, (10, 6)), torch.arange(10) % LABELS
    draw = model.training_draw(10, torch.Generator().manual_seed(0))
    whole = model.training_log_prob(x, draw, labels)
    rows = torch.tensor([3, 4, 5])
    part = model.training_log_prob(x[rows], model.shard_draw(draw, rows), labels[rows])
    torch.testing.assert_close(part, whole[rows])
    assert not torch.allclose(whole, model.training_log_prob(x, draw, (labels + 1) % LABELS))


# -- the command line ------------------------------------------------------------------------

BASE = [
    "--data", "shapes", "--data-option", "size=10", "--data-option", "num_samples=300",
    "--family", "orderless", "--hidden-sizes", "32", "--quiet", "--device", "cpu",
]  # fmt: skip


def test_the_command_line_trains_evaluates_samples_and_completes_a_label_model(
    tmp_path: Path,
) -> None:
    runner, run = CliRunner(), tmp_path / "run"
    args = [*BASE, "--epochs", "2", "--condition", "label", "--out", str(run)]
    result = runner.invoke(app, ["fit", *args])
    assert result.exit_code == 0, result.output
    assert "given the label" in result.output
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["condition"] == "label" and config["model"]["num_labels"] == 4
    loaded = dk.load_run(run)
    assert loaded.model.family == "orderless" and loaded.model.num_labels == 4

    result = runner.invoke(app, ["eval", str(run), "--json"])
    evaluated = json.loads(result.output)
    assert evaluated["condition"] == "label"
    expected = evaluate(loaded.model, loaded.dataset.test, context=loaded.dataset.labels("test"))
    assert evaluated["nll_nats"] == pytest.approx(expected)

    out = tmp_path / "circles.npy"
    result = runner.invoke(app, ["sample", str(run), "--label", "1", "-n", "5", "--out", str(out)])
    assert result.exit_code == 0, result.output
    expected = loaded.model.sample(
        5, context=torch.tensor(1), generator=torch.Generator().manual_seed(0)
    )
    assert np.array_equal(np.load(out), expected.numpy())
    result = runner.invoke(app, ["sample", str(run), "-n", "3", "--out", str(tmp_path / "g.png")])
    assert result.exit_code == 0 and (tmp_path / "g.png").is_file()
    for args, words in (
        (["--out", str(tmp_path / "x.npy")], "pass --label"),
        (["--label", "7", "--out", str(tmp_path / "y.png")], "0..3 (0=rectangle"),
    ):
        result = runner.invoke(app, ["sample", str(run), *args])
        assert result.exit_code == 1 and words in result.output, result.output
    result = runner.invoke(app, ["eval", str(run), "--observed", "top-half"])
    assert result.exit_code == 0 and "missing part given the label" in result.output
    result = runner.invoke(app, ["inpaint", str(run), "--out", str(tmp_path / "i.npy")])
    assert result.exit_code == 0, result.output
    completions = np.load(tmp_path / "i.npy")
    assert completions.shape == (8, 6, 100)
    observed = completions[:, 0] >= 0
    assert (completions[:, 1:5][np.broadcast_to(observed[:, None], (8, 4, 100))] >= 0).all()
    np.save(tmp_path / "rows.npy", np.zeros((3, 100), dtype=np.int64))
    result = runner.invoke(app, ["score", str(run), str(tmp_path / "rows.npy")])
    assert result.exit_code == 1 and "conditional" in result.output


def test_a_conditional_orderless_run_resumes_bit_identically(tmp_path: Path) -> None:
    runner = CliRunner()
    whole, split = tmp_path / "whole", tmp_path / "split"
    args = [*BASE, "--condition", "label", "--patience", "0"]
    assert runner.invoke(app, ["fit", *args, "--epochs", "3", "--out", str(whole)]).exit_code == 0
    assert runner.invoke(app, ["fit", *args, "--epochs", "1", "--out", str(split)]).exit_code == 0
    result = runner.invoke(app, ["resume", str(split), "--epochs", "3"])
    assert result.exit_code == 0, result.output
    a = load_checkpoint(whole / "checkpoint.pt").state_dict()
    b = load_checkpoint(split / "checkpoint.pt").state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)
