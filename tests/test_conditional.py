"""Conditional MADE, p(x | c): the context reaches every output, the autoregressive zeros
stay, every conditional is normalised, samples follow it, and the run folder records it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import strategies
import torch
from helpers import every_value, frequencies_match
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import ModelSpec, model_specs
from typer.testing import CliRunner

import densitykit as dk
from densitykit.checkpoint import load_checkpoint, save_checkpoint
from densitykit.cli import app
from densitykit.data import load_dataset
from densitykit.data.idx import write_idx
from densitykit.errors import DataError
from densitykit.masks import ConnectivitySampler, observed_first
from densitykit.sampling import sample_fast, sample_reference
from densitykit.scoring import score
from densitykit.train import TrainConfig, evaluate, fit

# Tiny models of every head with a backbone: (head, D, K, head options).
TINY = [
    ("bernoulli", 4, 2, {}),
    ("categorical", 3, 3, {"one_hot": True}),
    ("categorical", 3, 3, {"one_hot": False}),
    ("logistic-mixture", 3, 4, {"num_components": 2, "one_hot": False}),
    ("logistic-mixture", 3, 3, {"num_components": 2, "one_hot": True}),
]
TINY_IDS = [f"{h}-{'onehot' if o.get('one_hot') else 'scalar'}" for h, _, _, o in TINY]
# A label model and a model of real features: (options, contexts to try).
CONTEXTS = {
    "labels": ({"num_labels": 3}, [torch.tensor(0), torch.tensor(1), torch.tensor(2)]),
    "features": (
        {"context_size": 2},
        [torch.tensor([0.0, 0.0]), torch.tensor([1.5, -0.5]), torch.tensor([-2.0, 3.0])],
    ),
}


def tiny(
    head: str,
    dim: int,
    num_values: int,
    options: dict,
    context: dict,
    *,
    masks: str = "multi-ordering",
    hidden_sizes: tuple[int, ...] = (7, 5),
) -> dk.AutoregressiveModel:
    """A float64 conditional model with peaked conditionals that depend on the context."""
    model = dk.create_model(
        head,
        dim,
        num_values,
        hidden_sizes=hidden_sizes,
        masks=masks,
        num_masks=2,
        seed=5,
        direct_connections=True,
        **context,
        **options,
    ).double()
    strategies.sharpen(model, 3.0, seed=9)
    return model


def as_context(model: dk.AutoregressiveModel, context: torch.Tensor) -> torch.Tensor:
    return context.double() if context.is_floating_point() else context


# -- the structure ---------------------------------------------------------------------------


@st.composite
def conditional_specs(draw: st.DrawFn) -> tuple[ModelSpec, dict]:
    spec = draw(model_specs(max_dim=8, max_layers=2))
    if draw(st.booleans()):
        context = {"num_labels": draw(st.integers(2, 4))}
    else:
        context = {"context_size": draw(st.integers(1, 3))}
    return spec, context


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(case=conditional_specs(), data=st.data())
def test_the_context_reaches_every_output_and_the_ordering_still_holds(
    case: tuple[ModelSpec, dict], data: st.DataObject
) -> None:
    """For every mask and for orderings drawn at inference: d params / d context is nonzero
    for every parameter of every variable (the first of the ordering included, with or
    without hidden layers), and d params / d x keeps the autoregressive zeros."""
    spec, context = case
    model = spec.build(**context).double()
    backbone = model.backbone
    width = backbone.dim * backbone.input_width
    drawn = ConnectivitySampler(spec.dim, backbone.hidden_sizes, seed=data.draw(st.integers(0, 99)))
    orderings = [*backbone.connectivities(), drawn.draw()]
    seed = data.draw(st.integers(0, 2**31 - 1), label="point seed")
    generator = torch.Generator().manual_seed(seed)
    for conn in orderings:
        for _ in range(2):  # two random points: a ReLU can hide a path at one of them
            x = torch.randn(1, width, dtype=torch.float64, generator=generator)
            c = torch.randn(1, backbone.context_size, dtype=torch.float64, generator=generator)
            jac_x, jac_c = torch.autograd.functional.jacobian(
                lambda inputs, features, conn=conn: backbone(
                    inputs, connectivity=conn, context=features
                ),
                (x, c),
            )
            by_context = jac_c[0, :, :, 0, :]  # (D, P, C)
            assert bool((by_context.abs().sum(-1) > 0).all()), "an output ignores the context"
            degrees = conn.input_degrees
            allowed = degrees[:, None] > degrees.repeat_interleave(backbone.input_width)[None, :]
            by_input = jac_x[0, :, :, 0, :]  # (D, P, D*W)
            forbidden = ~allowed[:, None, :].expand_as(by_input)
            assert torch.count_nonzero(by_input[forbidden]) == 0


@pytest.mark.parametrize("hidden_sizes", [(), (6,)], ids=["no-hidden", "one-hidden"])
def test_the_first_variable_of_every_ordering_depends_on_the_label(
    hidden_sizes: tuple[int, ...],
) -> None:
    """The known bug of public conditional MADEs: the first variable ignores the context.
    Here its probability changes with the label, whatever variable comes first."""
    for first in range(3):
        ordering = [first, *(v for v in range(3) if v != first)]
        model = dk.create_model(
            "bernoulli",
            3,
            hidden_sizes=hidden_sizes,
            masks="ordering",
            mask_options={"ordering": ordering},
            num_labels=2,
        ).double()
        strategies.sharpen(model, 3.0, seed=first)
        x = torch.zeros(1, 3, dtype=torch.long)
        params = [
            model.backbone(
                model.head.encode(x, torch.float64),
                context=model.encode_context(torch.tensor([label]), (1,)),
            )[0, first]
            for label in (0, 1)
        ]
        assert not torch.equal(params[0], params[1])


# -- normalisation, sampling and queries by enumeration -------------------------------------


@pytest.mark.parametrize("kind", sorted(CONTEXTS))
@pytest.mark.parametrize(("head", "dim", "num_values", "options"), TINY, ids=TINY_IDS)
def test_every_conditional_sums_to_one_and_depends_on_the_context(
    head: str, dim: int, num_values: int, options: dict, kind: str
) -> None:
    context, contexts = CONTEXTS[kind]
    model = tiny(head, dim, num_values, options, context)
    values = every_value(dim, num_values)
    totals, tables = [], []
    for c in contexts:
        log_prob = model.log_prob(values, context=as_context(model, c)).detach()
        totals.append(log_prob.exp().sum())
        tables.append(log_prob)
        for mask in range(model.num_masks):  # each mask's model alone is normalised too
            alone = model.log_prob(values, mask, context=as_context(model, c)).detach()
            torch.testing.assert_close(alone.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(torch.stack(totals), torch.ones(len(contexts), dtype=torch.float64))
    assert not torch.allclose(tables[0], tables[1], atol=1e-6)


@pytest.mark.parametrize("kind", sorted(CONTEXTS))
@pytest.mark.parametrize(("head", "dim", "num_values", "options"), TINY, ids=TINY_IDS)
def test_fast_samples_equal_the_reference_sampler_given_a_context(
    head: str, dim: int, num_values: int, options: dict, kind: str
) -> None:
    context, contexts = CONTEXTS[kind]
    model = tiny(head, dim, num_values, options, context)
    per_sample = torch.stack([contexts[i % len(contexts)] for i in range(50)])
    features = model.encode_context(as_context(model, per_sample), (50,))
    for mask in range(model.num_masks):
        fast = sample_fast(
            model.backbone,
            model.head,
            50,
            mask=mask,
            context=features,
            generator=torch.Generator().manual_seed(mask),
        )
        reference = sample_reference(
            model.backbone,
            model.head,
            50,
            mask=mask,
            context=features,
            generator=torch.Generator().manual_seed(mask),
        )
        assert torch.equal(fast, reference)


@pytest.mark.parametrize(("head", "dim", "num_values", "options"), TINY, ids=TINY_IDS)
def test_sample_frequencies_given_a_label_match_the_likelihood(
    head: str, dim: int, num_values: int, options: dict
) -> None:
    model = tiny(head, dim, num_values, options, {"num_labels": 3})
    values = every_value(dim, num_values)
    num_samples = 3000
    for label in (0, 2):
        samples = model.sample(
            num_samples, context=torch.tensor(label), generator=torch.Generator().manual_seed(label)
        )
        expected = model.log_prob(values, context=torch.tensor(label)).exp().detach()
        assert frequencies_match(samples, values, expected)


def test_one_context_per_sample_or_one_for_all() -> None:
    model = tiny("bernoulli", 4, 2, {}, {"num_labels": 3}, masks="natural")
    labels = torch.tensor([0, 1, 2, 1])
    one_each = model.sample(4, context=labels, generator=torch.Generator().manual_seed(0))
    assert one_each.shape == (4, 4)
    same = model.sample((2, 3), context=torch.tensor(1), generator=torch.Generator().manual_seed(0))
    assert same.shape == (2, 3, 4)
    grid = model.sample((2, 2), context=labels.reshape(2, 2))
    assert grid.shape == (2, 2, 4)
    x = torch.randint(0, 2, (5, 4))
    broadcast = model.log_prob(x, context=torch.tensor(2))
    each = model.log_prob(x, context=torch.full((5,), 2))
    torch.testing.assert_close(broadcast, each)
    # Naive and fast sampling agree through the model too.
    naive = model.sample_naive(4, context=labels, generator=torch.Generator().manual_seed(3))
    fast = model.sample(4, context=labels, mask=0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(naive, fast)


@pytest.mark.parametrize("kind", sorted(CONTEXTS))
def test_queries_take_a_context_and_stay_exact(kind: str) -> None:
    context, contexts = CONTEXTS[kind]
    model = tiny("categorical", 3, 3, {"one_hot": True}, context, masks="any-order")
    values = every_value(3, 3)
    pattern = torch.tensor([False, True, False])
    c = as_context(model, contexts[1])
    base = model.backbone.connectivities()[:1]
    conditional = model.conditional_log_prob(values, pattern, context=c, connectivities=base)
    marginal = model.marginal_log_prob(values, pattern, context=c, connectivities=base)
    joint = model.log_prob(values, connectivity=observed_first(base[0], pattern), context=c)
    torch.testing.assert_close((marginal + conditional).detach(), joint.detach())
    for observed_value in range(3):
        rows = values[:, 1] == observed_value
        total = conditional[rows].exp().sum()
        torch.testing.assert_close(total.detach(), torch.tensor(1.0, dtype=torch.float64))
    other = model.conditional_log_prob(values, pattern, context=as_context(model, contexts[2]))
    assert not torch.allclose(conditional, other)
    example = torch.tensor([[0, 2, 0]]).expand(200, 3)
    completed = model.complete(example, pattern, context=c, generator=torch.Generator())
    assert bool((completed[:, 1] == 2).all())


@pytest.mark.parametrize("kind", sorted(CONTEXTS))
@pytest.mark.parametrize(("head", "dim", "num_values", "options"), TINY, ids=TINY_IDS)
def test_fast_completion_equals_the_reference_given_a_context(
    head: str, dim: int, num_values: int, options: dict, kind: str
) -> None:
    context, contexts = CONTEXTS[kind]
    model = tiny(head, dim, num_values, options, context, masks="any-order")
    # Per example its own pattern (none observed and all but one included) and context.
    patterns = every_value(dim, 2).bool().repeat(5, 1)
    size = patterns.shape[0]
    per_example = torch.stack([contexts[i % len(contexts)] for i in range(size)])
    features = model.encode_context(as_context(model, per_example), (size,))
    x = torch.randint(0, num_values, patterns.shape, generator=torch.Generator().manual_seed(1))
    parts = model.backbone, model.head
    fast = dk.queries.complete(
        *parts, x, patterns, context=features, generator=torch.Generator().manual_seed(4)
    )
    reference = dk.queries.complete_reference(
        *parts, x, patterns, context=features, generator=torch.Generator().manual_seed(4)
    )
    assert torch.equal(fast, reference)
    assert torch.equal(fast[patterns], x[patterns])
    with pytest.raises(TypeError, match="needs a floating-point context"):
        dk.sampling.complete_fast(*parts, model.backbone.connectivity(), x, 1)


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
def test_a_bad_label_context_says_what_was_expected(
    context: object, error: type, words: str
) -> None:
    model = dk.create_model("bernoulli", 4, hidden_sizes=(8,), num_labels=3)
    with pytest.raises(error, match=words.replace("(", r"\(").replace(")", r"\)")):
        model.log_prob(torch.zeros(3, 4), context=context)


def test_bad_feature_contexts_and_configurations_are_refused() -> None:
    model = dk.create_model("bernoulli", 4, hidden_sizes=(8,), context_size=2)
    with pytest.raises(ValueError, match=r"\(3, 2\) or \(2,\)"):
        model.log_prob(torch.zeros(3, 4), context=torch.zeros(3, 3))
    with pytest.raises(TypeError, match="floating dtype"):
        model.log_prob(torch.zeros(3, 4), context=torch.zeros(3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="NaN or infinite"):
        model.log_prob(torch.zeros(3, 4), context=torch.full((3, 2), float("nan")))
    with pytest.raises(ValueError, match="num_samples, C"):
        sample_fast(model.backbone, model.head, 3, context=torch.zeros(2, 2))
    plain = dk.create_model("bernoulli", 4, hidden_sizes=(8,))
    with pytest.raises(ValueError, match="not conditional"):
        plain.log_prob(torch.zeros(3, 4), context=torch.tensor(1))
    with pytest.raises(ValueError, match="context_size=0"):
        plain.backbone(torch.zeros(3, 4), context=torch.zeros(3, 2))
    with pytest.raises(ValueError, match="not both"):
        dk.create_model("bernoulli", 4, num_labels=2, context_size=2)
    with pytest.raises(ValueError, match="at least 2"):
        dk.create_model("bernoulli", 4, num_labels=1)
    with pytest.raises(ValueError, match="cannot be conditioned"):
        dk.create_model("histogram", 4, 3, num_labels=2)


def stored_weights(model: dk.AutoregressiveModel) -> int:
    """The weights a checkpoint holds (a packed model trains fewer: its masked ones)."""
    return sum(v.numel() for v in model.state_dict().values() if v.is_floating_point())


def test_an_unconditional_model_keeps_its_weights_and_checkpoint_layout(tmp_path: Path) -> None:
    plain = dk.create_model("bernoulli", 4, hidden_sizes=(8,), direct_connections=True)
    assert not any("context" in key for key in plain.state_dict())
    assert dk.model.parameter_count(plain.config) == stored_weights(plain)
    model = dk.create_model("categorical", 4, 3, hidden_sizes=(8,), num_labels=5)
    assert dk.model.parameter_count(model.config) == stored_weights(model)
    save_checkpoint(tmp_path / "c.pt", model)
    loaded = load_checkpoint(tmp_path / "c.pt")
    x, labels = torch.randint(0, 3, (6, 4)), torch.arange(6) % 5
    torch.testing.assert_close(
        loaded.log_prob(x, context=labels), model.log_prob(x, context=labels)
    )
    assert loaded.num_labels == 5 and loaded.config.num_labels == 5


# -- training ---------------------------------------------------------------------------------


def test_training_learns_what_the_label_says() -> None:
    """Label 0 means all zeros, label 1 all ones: only a model whose every variable (the
    first included) sees the label can reach an NLL near 0; without it, log 2 at best."""
    labels = torch.arange(400) % 2
    data = labels[:, None].expand(400, 5).clone()
    config = TrainConfig(epochs=40, batch_size=50, lr=1e-2, patience=None, device="cpu")
    torch.manual_seed(0)
    model = dk.create_model("bernoulli", 5, hidden_sizes=(16,), num_labels=2)
    fit(model, data, data, config, train_context=labels, val_context=labels)
    conditional = evaluate(model, data, context=labels)
    assert conditional < 0.3  # far below log 2 = 0.69, the best without the label
    torch.manual_seed(0)
    plain = dk.create_model("bernoulli", 5, hidden_sizes=(16,))
    fit(plain, data, data, config)
    assert evaluate(plain, data) > np.log(2) - 0.01
    with pytest.raises(ValueError, match="one context per example"):
        evaluate(model, data)


def test_any_order_training_takes_a_context() -> None:
    labels = torch.arange(200) % 2
    data = labels[:, None].expand(200, 4).clone()
    torch.manual_seed(0)
    model = dk.create_model("bernoulli", 4, hidden_sizes=(16,), masks="any-order", num_labels=2)
    config = TrainConfig(epochs=100, batch_size=50, lr=1e-2, patience=None, device="cpu")
    fit(model, data, data, config, train_context=labels, val_context=labels)
    assert evaluate(model, data, context=labels) < 0.4  # log 2 = 0.69 without the label


# -- data with labels ------------------------------------------------------------------------


def write_labelled_mnist(folder: Path, *, labels: bool = True) -> Path:
    """Images all black (even label) or all white (odd label), with their label files."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, count in (("train", 300), ("t10k", 50)):
        digits = rng.integers(0, 10, size=count).astype(np.uint8)
        images = np.where(digits[:, None, None] % 2 == 1, 255, 0).astype(np.uint8)
        write_idx(
            np.broadcast_to(images, (count, 28, 28)).copy(), folder / f"{name}-images-idx3-ubyte"
        )
        if labels:
            write_idx(digits, folder / f"{name}-labels-idx1-ubyte")
    return folder


@pytest.mark.parametrize("name", ["mnist", "binarized-mnist", "fashion-mnist"])
def test_image_sets_read_their_labels_and_the_labels_follow_the_split(
    name: str, tmp_path: Path
) -> None:
    folder = write_labelled_mnist(tmp_path / "m")
    options = {"num_val": 60} if name == "binarized-mnist" else {"val_fraction": 0.2}
    dataset = load_dataset(name, data_dir=folder, **options)
    assert dataset.num_labels == 10 and len(dataset.label_names) == 10
    for split, images in dataset.splits().items():
        labels = dataset.labels(split)
        assert labels.shape == (len(images),) and labels.dtype == torch.long
        assert torch.equal(images[:, 0], labels % 2)  # each label sits with its image


def test_a_data_set_without_labels_says_so(tmp_path: Path) -> None:
    dataset = load_dataset("mnist", data_dir=write_labelled_mnist(tmp_path / "m", labels=False))
    assert dataset.num_labels == 0
    with pytest.raises(DataError, match="has no labels"):
        dataset.labels("train")
    result = CliRunner().invoke(
        app, ["fit", "--data", "2d-smiley", "--condition", "label", "--out", str(tmp_path / "r")]
    )
    assert result.exit_code == 1 and "no labels" in result.output
    assert not (tmp_path / "r").exists()


def test_shapes_are_labelled_by_their_kind() -> None:
    from densitykit.data.shapes import SAMPLE_STREAM, _draw, draw_shapes
    from densitykit.data.splits import generator

    dataset = load_dataset("shapes", size=12, num_samples=400)
    assert dataset.label_names == ("rectangle", "circle", "triangle", "line")
    images, kinds = _draw(400, 12, generator(0, SAMPLE_STREAM))
    assert np.array_equal(images, draw_shapes(400, 12, generator(0, SAMPLE_STREAM)))
    # The test split is the last 20 % in order: its labels are those images' kinds.
    assert torch.equal(dataset.test, torch.from_numpy(images[320:].reshape(80, -1)).long())
    assert torch.equal(dataset.labels("test"), torch.from_numpy(kinds[320:]))
    assert set(dataset.labels("train").tolist()) == {0, 1, 2, 3}


# -- the command line ------------------------------------------------------------------------

BASE = [
    "--data", "shapes", "--data-option", "size=10", "--data-option", "num_samples=300",
    "--hidden-sizes", "32", "--quiet", "--device", "cpu",
]  # fmt: skip
SHAPES = [*BASE, "--epochs", "2"]


def test_the_command_line_trains_evaluates_and_samples_a_label_model(tmp_path: Path) -> None:
    runner, run = CliRunner(), tmp_path / "run"
    result = runner.invoke(app, ["fit", *SHAPES, "--condition", "label", "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "given the label" in result.output
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["condition"] == "label" and config["model"]["num_labels"] == 4
    assert json.loads((run / "metrics.json").read_text())["condition"] == "label"
    loaded = dk.load_run(run)
    assert loaded.model.num_labels == 4

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


def test_a_label_on_an_unconditional_run_is_refused(tmp_path: Path) -> None:
    runner, run = CliRunner(), tmp_path / "run"
    assert runner.invoke(app, ["fit", *SHAPES, "--out", str(run)]).exit_code == 0
    result = runner.invoke(
        app, ["sample", str(run), "--label", "1", "--out", str(tmp_path / "a.png")]
    )
    assert result.exit_code == 1 and "not class-conditional" in result.output


def test_a_conditional_run_resumes_bit_identically(tmp_path: Path) -> None:
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


def test_scoring_files_refuses_a_conditional_model() -> None:
    model = dk.create_model("bernoulli", 4, hidden_sizes=(8,), num_labels=2)
    with pytest.raises(ValueError, match="conditional"):
        score(model, np.zeros((3, 4), dtype=np.int64))
