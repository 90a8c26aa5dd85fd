"""Queries with some variables observed: exact by enumeration, Jacobian zeros, completions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import strategies
import torch
from helpers import every_value, frequencies_match
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import ModelSpec, model_specs

import densitykit as dk
from densitykit.masks import Connectivity, ConnectivitySampler, observed_first

# Tiny models of every head: (head, D, K, head options).
TINY = [
    ("bernoulli", 4, 2, {}),
    ("categorical", 3, 3, {"one_hot": True}),
    ("categorical", 3, 3, {"one_hot": False}),
    ("logistic-mixture", 3, 3, {"num_components": 2, "one_hot": False}),
    ("logistic-mixture", 3, 3, {"num_components": 2, "one_hot": True}),
    ("histogram", 3, 3, {}),
]
TINY_IDS = [f"{h}-{'onehot' if o.get('one_hot') else 'scalar'}" for h, _, _, o in TINY]
# The MADEs among them (the histogram is a family of its own, with no MADE to complete with).
MADE_TINY = [spec for spec in TINY if spec[0] != "histogram"]
MADE_TINY_IDS = [name for spec, name in zip(TINY, TINY_IDS, strict=True) if spec in MADE_TINY]


def tiny(
    head: str,
    dim: int,
    num_values: int,
    options: dict,
    *,
    direct: bool = True,
    hidden_sizes: tuple[int, ...] = (7, 5),
) -> dk.AutoregressiveModel:
    """A float64 any-order model with peaked conditionals that depend on the past."""
    model = dk.create_model(
        head,
        dim,
        num_values,
        hidden_sizes=hidden_sizes,
        masks="any-order",
        num_masks=2,
        seed=11,
        direct_connections=direct,
        **options,
    ).double()
    strategies.sharpen(model, 3.0, seed=4)
    return model


def every_pattern(dim: int) -> list[torch.Tensor]:
    return [torch.tensor(p) for p in itertools.product([False, True], repeat=dim)]


def code(values: torch.Tensor, pattern: torch.Tensor, num_values: int) -> torch.Tensor:
    """An integer naming the values of the variables in ``pattern``, per row."""
    weights = num_values ** torch.arange(values.shape[1])
    return (values * weights * pattern).sum(1)


def sums_by(codes: torch.Tensor, log_probs: torch.Tensor) -> torch.Tensor:
    totals = torch.zeros(int(codes.max()) + 1, dtype=torch.float64)
    totals.index_add_(0, codes, log_probs.exp())
    return totals[codes.unique()]


def query_orderings(model: dk.AutoregressiveModel) -> list[list[Connectivity] | None]:
    """The model's own masks, one of them alone, and two drawn at inference time."""
    if model.family == "histogram":  # independent variables: no orderings to mix
        return [None]
    own = model.backbone.connectivities()
    drawn = ConnectivitySampler(model.dim, model.backbone.hidden_sizes, seed=21)
    return [None, own[:1], [drawn.draw(), drawn.draw()]]


@pytest.mark.parametrize(("head", "dim", "num_values", "options"), TINY, ids=TINY_IDS)
def test_conditional_and_marginal_sum_to_one_for_every_pattern(
    head: str, dim: int, num_values: int, options: dict
) -> None:
    model = tiny(head, dim, num_values, options)
    values = every_value(dim, num_values)
    for connectivities in query_orderings(model):
        for pattern in every_pattern(dim):
            if not bool(pattern.all()):
                conditional = model.conditional_log_prob(
                    values, pattern, connectivities=connectivities
                ).detach()
                # For every observed x_o, the missing values' probabilities sum to 1.
                totals = sums_by(code(values, pattern, num_values), conditional)
                torch.testing.assert_close(totals, torch.ones_like(totals), rtol=0, atol=1e-10)
            if bool(pattern.any()):
                marginal = model.marginal_log_prob(
                    values, pattern, connectivities=connectivities
                ).detach()
                # The marginal does not read the missing values ...
                codes = code(values, pattern, num_values)
                for value in codes.unique():
                    same = marginal[codes == value]
                    torch.testing.assert_close(same, same[:1].expand_as(same), rtol=0, atol=1e-12)
                # ... and sums to 1 over the observed values.
                unique = (values * ~pattern).sum(1) == 0
                total = marginal[unique].exp().sum()
                torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-10)


@pytest.mark.parametrize(("head", "dim", "num_values", "options"), TINY, ids=TINY_IDS)
def test_marginal_plus_conditional_is_the_joint_of_the_same_ordering(
    head: str, dim: int, num_values: int, options: dict
) -> None:
    model = tiny(head, dim, num_values, options)
    values = every_value(dim, num_values)
    bases = model.backbone.connectivities() if model.family == "made" else [None]
    for base in bases:
        given = None if base is None else [base]
        for pattern in every_pattern(dim):
            if bool(pattern.all()) or not bool(pattern.any()):
                continue
            marginal = model.marginal_log_prob(values, pattern, connectivities=given)
            conditional = model.conditional_log_prob(values, pattern, connectivities=given)
            if base is None:
                joint = model.log_prob(values)
            else:
                joint = model.log_prob(values, connectivity=observed_first(base, pattern))
            torch.testing.assert_close(
                (marginal + conditional).detach(), joint.detach(), rtol=0, atol=1e-12
            )


def test_several_orderings_mix_the_conditionals_by_log_mean_exp() -> None:
    model = tiny("categorical", 3, 3, {"one_hot": True})
    values = every_value(3, 3)
    pattern = torch.tensor([False, True, False])
    bases = model.backbone.connectivities()
    each = torch.stack(
        [model.conditional_log_prob(values, pattern, connectivities=[b]) for b in bases]
    )
    mixed = model.conditional_log_prob(values, pattern)
    torch.testing.assert_close(mixed, dk.numerics.log_mean_exp(each), rtol=0, atol=1e-12)


def test_a_natural_model_with_an_observed_prefix_answers_in_its_own_ordering() -> None:
    model = dk.create_model("categorical", 4, 3, hidden_sizes=(9,), seed=2).double()
    strategies.sharpen(model, 3.0, seed=1)
    values = every_value(4, 3)
    prefix = torch.tensor([True, True, False, False])
    marginal = model.marginal_log_prob(values, prefix)
    conditional = model.conditional_log_prob(values, prefix)
    torch.testing.assert_close(marginal + conditional, model.log_prob(values), rtol=0, atol=1e-12)


def test_each_example_may_have_its_own_pattern() -> None:
    model = tiny("bernoulli", 4, 2, {})
    values = every_value(4, 2)
    patterns = torch.stack([every_pattern(4)[i % 15 + 1] for i in range(values.shape[0])])
    together = model.marginal_log_prob(values, patterns)
    apart = torch.stack([model.marginal_log_prob(v[None], p)[0] for v, p in zip(values, patterns)])
    torch.testing.assert_close(together, apart, rtol=0, atol=1e-12)


# -- completion -----------------------------------------------------------------------------


@pytest.mark.parametrize(("head", "dim", "num_values", "options"), TINY, ids=TINY_IDS)
def test_completion_frequencies_match_the_conditional(
    head: str, dim: int, num_values: int, options: dict
) -> None:
    model = tiny(head, dim, num_values, options)
    pattern = torch.zeros(dim, dtype=torch.bool)
    pattern[1] = True
    example = torch.full((dim,), num_values - 1)
    num_samples = 4000
    completed = model.complete(
        example.expand(num_samples, dim),
        pattern,
        generator=torch.Generator().manual_seed(0),
    )
    assert completed.dtype == torch.long and completed.shape == (num_samples, dim)
    assert bool((completed[:, pattern] == example[pattern]).all())
    # Every completion of the example, and its probability under the conditional.
    candidates = every_value(dim, num_values)
    candidates = candidates[(candidates[:, pattern] == example[pattern]).all(1)]
    expected = model.conditional_log_prob(candidates, pattern).exp().detach()
    torch.testing.assert_close(expected.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert frequencies_match(completed, candidates, expected)


def test_completion_is_seeded_keeps_the_observed_values_and_ignores_the_missing_ones() -> None:
    model = tiny("categorical", 3, 3, {"one_hot": True})
    x = torch.tensor([[2, 0, 1], [1, 1, 1], [0, 2, 2]])
    observed = torch.tensor([[True, False, False], [False, False, False], [True, True, True]])
    first = model.complete(x, observed, generator=torch.Generator().manual_seed(5))
    scrambled = torch.where(observed, x, torch.tensor(7))  # out of support, never read
    again = model.complete(scrambled, observed, generator=torch.Generator().manual_seed(5))
    assert torch.equal(first, again)
    assert bool((first[observed] == x[observed]).all())
    assert bool(((first >= 0) & (first < 3)).all())


@pytest.mark.parametrize(("head", "dim", "num_values", "options"), MADE_TINY, ids=MADE_TINY_IDS)
@pytest.mark.parametrize("hidden_sizes", [(), (6,), (7, 5)], ids=["0", "1", "2"])
@pytest.mark.parametrize("direct", [False, True], ids=["", "direct"])
@pytest.mark.parametrize("mask_input", [False, True], ids=["", "mask-input"])
def test_fast_completion_equals_the_reference_completion(
    head: str,
    dim: int,
    num_values: int,
    options: dict,
    hidden_sizes: tuple[int, ...],
    direct: bool,
    mask_input: bool,
) -> None:
    options = {**options, "mask_input": True} if mask_input else options
    model = tiny(head, dim, num_values, options, direct=direct, hidden_sizes=hidden_sizes)
    # Per example its own pattern, each several times: every pattern of D variables,
    # nothing observed, all but one and all of them included.
    patterns = torch.stack(every_pattern(dim)).repeat(6, 1)
    x = torch.randint(0, num_values, patterns.shape, generator=torch.Generator().manual_seed(2))
    parts = model.backbone, model.head
    for bases in query_orderings(model):
        fast = dk.queries.complete(
            *parts, x, patterns, bases, generator=torch.Generator().manual_seed(9)
        )
        slow = dk.queries.complete_reference(
            *parts, x, patterns, bases, generator=torch.Generator().manual_seed(9)
        )
        assert torch.equal(fast, slow)
        assert torch.equal(fast[patterns], x[patterns])


def test_model_completion_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    model = tiny("categorical", 3, 3, {"one_hot": True})
    x = torch.tensor([[2, 0, 1], [1, 1, 1]])
    observed = torch.tensor([[True, False, False], [False, True, False]])
    expected = dk.queries.complete_reference(
        model.backbone, model.head, x, observed, generator=torch.Generator().manual_seed(3)
    )

    def refuse(*args, **kwargs):
        raise AssertionError("model.complete fell back to the reference completion")

    monkeypatch.setattr(dk.sampling, "complete_reference", refuse)
    got = model.complete(x, observed, generator=torch.Generator().manual_seed(3))
    assert torch.equal(got, expected)


# -- the autoregressive property under orderings drawn at inference time -----------------------


def allowed_inputs(conn: Connectivity, input_width: int) -> torch.Tensor:
    degrees = conn.input_degrees
    return degrees[:, None] > degrees.repeat_interleave(input_width)[None, :]


@settings(max_examples=30)
@pytest.mark.slow
@given(spec=model_specs(max_dim=8), data=st.data())
def test_jacobian_respects_every_ordering_a_query_uses(
    spec: ModelSpec, data: st.DataObject
) -> None:
    model = spec.build().double()
    backbone, head = model.backbone, model.head
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    pattern = torch.tensor(
        data.draw(st.lists(st.booleans(), min_size=spec.dim, max_size=spec.dim), label="observed")
    )
    drawn = ConnectivitySampler(spec.dim, backbone.hidden_sizes, seed=seed).draw()
    bases = [*backbone.connectivities(), drawn]
    generator = torch.Generator().manual_seed(seed)
    for conn in [observed_first(base, pattern) for base in bases] + [drawn]:
        allowed = allowed_inputs(conn, backbone.input_width)
        for _ in range(3):  # several points: ReLU can hide an edge at one of them
            point = torch.randn(1, spec.dim * backbone.input_width, generator=generator).double()
            jac = torch.autograd.functional.jacobian(
                lambda inputs, c=conn: backbone(inputs, connectivity=c), point
            )[0, :, :, 0, :]  # (D, P, D*W)
            assert torch.count_nonzero(jac.abs().amax(1)[~allowed]) == 0
        # End to end: each variable's log-probability under the query's ordering.
        x = torch.randint(0, spec.num_values, (1, spec.dim), generator=generator)
        encoded = head.encode(x, torch.float64).requires_grad_(True)
        per_variable = head.log_prob(backbone(encoded, connectivity=conn), x)[0]
        for variable in range(spec.dim):
            (grad,) = torch.autograd.grad(per_variable[variable], encoded, retain_graph=True)
            assert torch.count_nonzero(grad[0][~allowed[variable]]) == 0


@settings(max_examples=20)
@given(spec=model_specs(max_dim=8), data=st.data())
def test_forward_with_a_built_connectivity_equals_the_built_mask(
    spec: ModelSpec, data: st.DataObject
) -> None:
    model = spec.build().double()
    backbone = model.backbone
    seed = data.draw(st.integers(0, 2**31 - 1), label="seed")
    x = torch.randn(
        4, spec.dim * backbone.input_width, generator=torch.Generator().manual_seed(seed)
    ).double()
    for mask in range(backbone.num_masks):
        backbone.set_mask(mask)
        torch.testing.assert_close(
            backbone(x, connectivity=backbone.connectivity(mask)), backbone(x), rtol=0, atol=1e-12
        )
    assert backbone.mask_index == backbone.num_masks - 1  # nothing else moved


def test_queries_store_nothing_in_the_backbone() -> None:
    model = tiny("bernoulli", 4, 2, {})
    keys = {k: v.clone() for k, v in model.state_dict().items()}
    values = every_value(4, 2)
    for pattern in every_pattern(4)[1:-1]:
        model.conditional_log_prob(values, pattern)
        model.complete(values, pattern)
    assert model.backbone.num_masks == 2
    assert keys.keys() == model.state_dict().keys()
    assert all(torch.equal(keys[k], v) for k, v in model.state_dict().items())


# -- bad queries ------------------------------------------------------------------------------


X = torch.tensor([[1, 0, 1, 1], [0, 0, 1, 0]])
ALL = torch.ones(2, 4, dtype=torch.bool)
FIRST_ALL_SECOND_NONE = torch.tensor([[True] * 4, [False] * 4])
# name: (method, x, observed, error, message)
BAD_QUERIES = {
    "int-pattern": (
        "conditional",
        X,
        torch.ones(2, 4, dtype=torch.long),
        TypeError,
        "observed must have dtype torch.bool, got torch.int64",
    ),
    "short-pattern": (
        "marginal",
        X,
        torch.tensor([True, False, True]),
        ValueError,
        r"observed must have the shape of x \(2, 4\) or \(4,\), got \(3,\)",
    ),
    "list-pattern": (
        "complete",
        X,
        [[True, False, True, True]] * 2,
        TypeError,
        "observed must be a torch.Tensor of bool, got list",
    ),
    "nothing-missing": (
        "conditional",
        X,
        FIRST_ALL_SECOND_NONE,
        ValueError,
        "at least one missing variable; example 0 has none",
    ),
    "nothing-observed": (
        "marginal",
        X,
        FIRST_ALL_SECOND_NONE,
        ValueError,
        "at least one observed variable; example 1 has none",
    ),
    "scored-value-out-of-support": (
        "conditional",
        X + torch.tensor([[0, 0, 0, 2], [0, 0, 0, 0]]),
        ~ALL[:, :4] | torch.tensor([True, False, False, False]),
        ValueError,
        r"support 0\.\.1",
    ),
    "observed-value-out-of-support": (
        "marginal",
        X * 3,
        ALL,
        ValueError,
        r"support 0\.\.1",
    ),
    "one-dimensional-x": (
        "conditional",
        X[0],
        torch.tensor([True, False, False, False]),
        ValueError,
        r"x must have shape \(B, D\) with D=4, got \(4,\)",
    ),
    "list-x": (
        "complete",
        X.tolist(),
        ALL,
        TypeError,
        "x must be a torch.Tensor of integer values, got list",
    ),
}


@pytest.mark.parametrize("case", list(BAD_QUERIES))
def test_bad_queries_raise_errors_naming_what_was_expected(case: str) -> None:
    model = tiny("bernoulli", 4, 2, {})
    call, x, observed, error, message = BAD_QUERIES[case]
    method = {
        "conditional": model.conditional_log_prob,
        "marginal": model.marginal_log_prob,
        "complete": model.complete,
    }[call]
    with pytest.raises(error, match=message):
        method(x, observed)


def test_missing_values_out_of_the_support_are_not_read_by_the_marginal() -> None:
    model = tiny("bernoulli", 4, 2, {})
    observed = torch.tensor([True, True, False, False])
    clean = model.marginal_log_prob(X, observed)
    torch.testing.assert_close(model.marginal_log_prob(X + 5 * ~observed, observed), clean)


def test_a_connectivity_of_the_wrong_size_or_type_is_refused() -> None:
    model = tiny("bernoulli", 4, 2, {})
    x = torch.zeros(2, 4, dtype=torch.long)
    wrong = ConnectivitySampler(4, (3,), seed=0).draw()
    with pytest.raises(ValueError, match=r"hidden sizes \(7, 5\), got D=4 and \(3,\)"):
        model.log_prob(x, connectivity=wrong)
    with pytest.raises(TypeError, match="Connectivity, got list"):
        model.backbone(x.double(), connectivity=[0, 1, 2, 3])
    with pytest.raises(ValueError, match="not both"):
        model.log_prob(x, 0, connectivity=model.backbone.connectivity(0))
    with pytest.raises(TypeError, match="Connectivity objects, got int"):
        model.conditional_log_prob(x, torch.tensor([True, False, False, False]), connectivities=[3])


# -- named patterns ---------------------------------------------------------------------------


def test_named_halves_observe_their_half_of_an_image() -> None:
    for name, rows, cols in [
        ("top-half", slice(0, 2), slice(None)),
        ("bottom-half", slice(3, 5), slice(None)),
        ("left-half", slice(None), slice(0, 3)),
        ("right-half", slice(None), slice(4, 7)),
    ]:
        pattern = dk.queries.observed_pattern(name, (5, 7), 3)
        expected = torch.zeros(5, 7, dtype=torch.bool)
        expected[rows, cols] = True
        assert pattern.dtype == torch.bool and pattern.shape == (3, 35)
        assert bool((pattern == expected.flatten()).all()), name


def test_a_random_pattern_is_seeded_per_example_and_refuses_bad_names() -> None:
    first = dk.queries.observed_pattern(
        "random:0.3", (10,), 4, generator=torch.Generator().manual_seed(2)
    )
    again = dk.queries.observed_pattern(
        "random:0.3", (10,), 4, generator=torch.Generator().manual_seed(2)
    )
    assert torch.equal(first, again) and not torch.equal(first[0], first[1])
    with pytest.raises(
        ValueError, match=r"random:F needs a fraction F in \(0, 1\), got 'random:1.5'"
    ):
        dk.queries.observed_pattern("random:1.5", (10,))
    with pytest.raises(ValueError, match="must be one of top-half"):
        dk.queries.observed_pattern("middle", (4, 4))
    with pytest.raises(ValueError, match=r"needs image data \(height, width\), got shape \(16,\)"):
        dk.queries.observed_pattern("top-half", (16,))


def test_the_kept_masks_follow_the_connectivity_and_the_dtype() -> None:
    model = dk.create_model("categorical", 4, 3, hidden_sizes=(6,), masks="any-order", num_masks=2)
    backbone = model.backbone
    connectivities = backbone.connectivities()
    x = torch.randn(2, 12)
    for index in (0, 1, 0, 0):  # alternating and repeated: no stale masks
        backbone.set_mask(index)
        torch.testing.assert_close(
            backbone(x, connectivity=connectivities[index]), backbone(x), rtol=0, atol=0
        )
    model.double()
    assert backbone(x.double(), connectivity=connectivities[0]).dtype == torch.float64


# -- the command line ------------------------------------------------------------------------


def test_the_command_line_inpaints_and_scores_an_observed_pattern(tmp_path) -> None:
    from typer.testing import CliRunner

    from densitykit.cli import app

    runner = CliRunner()
    run = tmp_path / "run"
    fit = ["fit", "--data", "shapes", "--max-train", "200", "--epochs", "1", "--hidden-sizes"]
    fit += ["16", "--masks", "any-order", "--num-masks", "2", "--device", "cpu", "--quiet"]
    result = runner.invoke(app, [*fit, "--out", str(run)])
    assert result.exit_code == 0, result.output
    grid = tmp_path / "grid.png"
    result = runner.invoke(
        app,
        [
            "inpaint",
            str(run),
            "--observed",
            "top-half",
            "-n",
            "2",
            "--num-images",
            "3",
            "--out",
            str(grid),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "wrote 6 completions of 3 images" in result.output and grid.is_file()
    result = runner.invoke(app, ["eval", str(run), "--observed", "random:0.5"])
    assert result.exit_code == 0, result.output
    assert "test conditional NLL of the missing part (random:0.5" in result.output
    assert "with 2 ordering(s)" in result.output
    other = tmp_path / "other.png"
    result = runner.invoke(app, ["inpaint", str(run), "--observed", "middle", "--out", str(other)])
    assert result.exit_code == 1 and "must be one of top-half" in result.output
    # The picture exists: replaced only when asked.
    before = grid.read_bytes()
    again = runner.invoke(app, ["inpaint", str(run), "--out", str(grid)])
    assert again.exit_code == 1 and "already exists" in again.output
    assert grid.read_bytes() == before


def test_the_command_line_gives_the_numbers_of_a_query(tmp_path) -> None:
    """``eval --observed`` honours ``--num-masks`` and ``--json``; ``inpaint`` writes the
    picture's rows as a ``.npy`` array and prints each image's conditional NLL as JSON."""
    import json

    from typer.testing import CliRunner

    from densitykit.cli import app
    from densitykit.runs import load_run

    runner = CliRunner()
    run = tmp_path / "run"
    fit = ["fit", "--data", "shapes", "--max-train", "200", "--epochs", "1", "--hidden-sizes"]
    fit += ["16", "--masks", "any-order", "--num-masks", "3", "--device", "cpu", "--quiet"]
    assert runner.invoke(app, [*fit, "--out", str(run)]).exit_code == 0
    loaded = load_run(run)
    model, test, shape = loaded.model, loaded.dataset.test, tuple(loaded.dataset.shape)
    dim, half = test.shape[1], test.shape[1] // 2
    observed = dk.queries.observed_pattern("top-half", shape, test.shape[0])
    for masks in (1, 3):
        result = runner.invoke(
            app,
            ["eval", str(run), "--observed", "top-half", "--num-masks", str(masks), "--json"],
        )
        assert result.exit_code == 0, result.output
        figures = json.loads(result.output)
        connectivities = [model.backbone.connectivity(k) for k in range(masks)]
        with torch.no_grad():
            expected = -model.conditional_log_prob(test, observed, connectivities=connectivities)
        assert figures["num_masks"] == masks and figures["missing_variables_mean"] == half
        assert figures["conditional_nll_nats"] == pytest.approx(float(expected.mean()))
        assert figures["nats_per_missing_variable"] == pytest.approx(float(expected.mean()) / half)
    text = runner.invoke(app, ["eval", str(run), "--observed", "top-half", "--num-masks", "1"])
    assert "nats per missing variable, with 1 ordering(s)" in text.output
    bad = runner.invoke(app, ["eval", str(run), "--observed", "top-half", "--num-masks", "4"])
    assert bad.exit_code == 1 and "num_masks must be in 1..3 for this run, got 4" in bad.output

    array_path = tmp_path / "completions.npy"
    common = ["--observed", "left-half", "-n", "2", "--num-images", "3", "--seed", "5"]
    result = runner.invoke(app, ["inpaint", str(run), *common, "--out", str(array_path), "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    rows = np.load(array_path)
    assert rows.shape == (3, 4, dim) and rows.dtype == np.int64
    seen = dk.queries.observed_pattern("left-half", shape, 3)
    originals = test[:3].numpy()
    for image in range(3):
        observed_row, completions, original = rows[image, 0], rows[image, 1:3], rows[image, 3]
        known = seen[image].numpy()
        assert np.array_equal(original, originals[image])
        assert np.array_equal(observed_row[known], original[known])
        assert (observed_row[~known] == -1).all()
        assert (completions[:, known] == original[known]).all()  # the observed part is kept
        assert set(np.unique(completions).tolist()) <= {0, 1}
    with torch.no_grad():
        expected = -model.conditional_log_prob(test[:3], seen)
    assert figures["conditional_nll_nats"] == pytest.approx(expected.tolist())
    assert figures["missing_variables"] == [half] * 3 and figures["out"] == str(array_path)
    picture = tmp_path / "grid.png"
    assert runner.invoke(app, ["inpaint", str(run), *common, "--out", str(picture)]).exit_code == 0
    again = runner.invoke(app, ["inpaint", str(run), *common, "--out", str(array_path)])
    assert again.exit_code == 1 and "already exists" in again.output
    other = runner.invoke(app, ["inpaint", str(run), "--out", str(tmp_path / "grid.txt")])
    assert other.exit_code == 1 and "must end in .png or .npy" in other.output


def test_an_observed_pattern_can_be_a_picture(tmp_path) -> None:
    """Light pixels of a PNG of the images' size are observed, the same for every image."""
    from PIL import Image
    from typer.testing import CliRunner

    from densitykit.cli import app

    runner = CliRunner()
    run = tmp_path / "run"
    fit = ["fit", "--data", "shapes", "--data-option", "size=12", "--max-train", "100"]
    fit += ["--epochs", "1", "--hidden-sizes", "16", "--masks", "any-order", "--num-masks", "2"]
    result = runner.invoke(app, [*fit, "--device", "cpu", "--quiet", "--out", str(run)])
    assert result.exit_code == 0, result.output
    left = np.zeros((12, 12), dtype=np.uint8)
    left[:, :6] = 255  # the left half observed
    Image.fromarray(left).save(tmp_path / "left.png")
    by_picture = runner.invoke(app, ["eval", str(run), "--observed", str(tmp_path / "left.png")])
    by_name = runner.invoke(app, ["eval", str(run), "--observed", "left-half"])
    assert by_picture.exit_code == 0 and by_name.exit_code == 0, by_picture.output
    figure = lambda output: output.split("NLL of the missing part")[1].split(" nats")[0]  # noqa: E731
    assert figure(by_picture.output).split(")")[-1] == figure(by_name.output).split(")")[-1]
    grid = tmp_path / "grid.png"
    result = runner.invoke(
        app,
        ["inpaint", str(run), "--observed", str(tmp_path / "left.png"), "-n", "1",
         "--num-images", "2", "--out", str(grid)],
    )  # fmt: skip
    assert result.exit_code == 0 and grid.is_file(), result.output
    Image.fromarray(left[:10]).save(tmp_path / "small.png")
    Image.fromarray(np.full((12, 12), 255, dtype=np.uint8)).save(tmp_path / "all.png")
    for name, message in (("small.png", "10 x 12 pixels"), ("all.png", "dark (missing)")):
        bad = runner.invoke(app, ["eval", str(run), "--observed", str(tmp_path / name)])
        assert bad.exit_code == 1 and message in bad.output, bad.output


# -- the mask as an input ---------------------------------------------------------------------


@pytest.mark.parametrize(("head", "dim", "num_values", "options"), TINY[:5], ids=TINY_IDS[:5])
@pytest.mark.parametrize("hidden_sizes", [(), (7,), (7, 5)], ids=["0", "1", "2"])
def test_the_mask_as_input_keeps_every_ordering_exact(
    head: str, dim: int, num_values: int, options: dict, hidden_sizes: tuple[int, ...]
) -> None:
    """With ``mask_input`` each ordering's model still sums to 1, its outputs ignore the
    variables the ordering forbids, and the fast sampler equals the reference."""
    model = dk.create_model(
        head, dim, num_values, hidden_sizes=hidden_sizes, masks="any-order", num_masks=2,
        seed=3, direct_connections=True, mask_input=True, **options,
    ).double()  # fmt: skip
    strategies.sharpen(model, 3.0, seed=2)
    backbone, values = model.backbone, every_value(dim, num_values)
    drawn = ConnectivitySampler(dim, backbone.hidden_sizes, seed=8)
    orderings = [drawn.draw(), drawn.draw()]
    tables = []
    for conn in orderings:
        log_prob = model.log_prob(values, connectivity=conn).detach()
        torch.testing.assert_close(log_prob.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
        tables.append(log_prob)
        points = torch.randn(2, dim * backbone.input_width, dtype=torch.float64)
        jac = torch.autograd.functional.jacobian(
            lambda inputs, conn=conn: backbone(inputs, connectivity=conn), points
        )[0, :, :, 0, :]
        degrees = conn.input_degrees
        allowed = degrees[:, None] > degrees.repeat_interleave(backbone.input_width)[None, :]
        assert torch.count_nonzero(jac[~allowed[:, None, :].expand_as(jac)]) == 0
    for mask in range(model.num_masks):
        fast = model.sample(30, mask=mask, generator=torch.Generator().manual_seed(mask))
        naive = model.sample_naive(30, mask=mask, generator=torch.Generator().manual_seed(mask))
        assert torch.equal(fast, naive)
    # The terms depend on the ordering (that is their point) ...
    terms = [
        backbone.mask_input_terms(
            conn.input_degrees, conn.hidden_degrees[0] if hidden_sizes else None
        )[0]
        for conn in orderings
    ]
    assert not torch.allclose(terms[0], terms[1])
    # ... and a backbone without them has no such weights.
    plain = dk.create_model(head, dim, num_values, hidden_sizes=hidden_sizes, **options)
    assert not any("mask_input" in key for key in plain.state_dict())
    assert dk.model.parameter_count(model.config) == sum(p.numel() for p in model.parameters())


def test_orderings_drawn_at_inference_are_seeded_and_leave_the_model_as_it_was() -> None:
    """``draw_orderings`` gives seeded connectivities the model was not built with, from
    the training source's distribution, without advancing that source; ``evaluate``
    mixes them by log-mean-exp exactly as it mixes the model's own."""
    from densitykit.train import evaluate

    torch.manual_seed(0)
    model = dk.create_model("bernoulli", 7, hidden_sizes=(20,), masks="any-order", num_masks=3)
    state = model.connectivity_source_state.clone()
    first, again = model.draw_orderings(5, seed=4), model.draw_orderings(5, seed=4)
    other = model.draw_orderings(5, seed=5)
    assert torch.equal(model.connectivity_source_state, state)  # training draws unchanged
    for a, b in zip(first, again, strict=True):
        assert torch.equal(a.input_degrees, b.input_degrees)
        for da, db in zip(a.hidden_degrees, b.hidden_degrees, strict=True):
            assert torch.equal(da, db)
    assert any(not torch.equal(a.ordering, b.ordering) for a, b in zip(first, other, strict=True))
    assert all(c.hidden_sizes == (20,) for c in first)
    x = torch.randint(0, 2, (40, 7))
    own = model.backbone.connectivities()
    with torch.no_grad():
        assert evaluate(model, x, connectivities=own[:2]) == pytest.approx(
            evaluate(model, x, num_masks=2), abs=1e-9
        )
        each = torch.stack([model.log_prob(x, connectivity=c) for c in first])
        expected = -(torch.logsumexp(each, 0) - math.log(5)).mean()
        assert evaluate(model, x, connectivities=first, batch_size=7) == pytest.approx(
            float(expected), rel=1e-6
        )  # float32 likelihoods, summed per batch in float64
    with pytest.raises(ValueError, match="not both"):
        evaluate(model, x, num_masks=1, connectivities=first)
    with pytest.raises(ValueError, match="at least one connectivity"):
        evaluate(model, x, connectivities=[])
    with pytest.raises(ValueError, match="count must be a positive integer"):
        model.draw_orderings(0)
    fixed = dk.create_model("bernoulli", 7, hidden_sizes=(20,), masks="random", num_masks=2)
    with pytest.raises(ValueError, match="fixed stack of 2 mask"):
        fixed.draw_orderings(4)


def test_the_command_line_asks_orderings_drawn_at_inference(tmp_path) -> None:
    """``--draw-orderings N --ordering-seed S`` on ``eval`` (joint and ``--observed``) and
    ``inpaint`` give the figures of the model's ``draw_orderings(N, seed=S)`` mixture."""
    import json

    from typer.testing import CliRunner

    from densitykit.cli import app
    from densitykit.runs import load_run
    from densitykit.train import evaluate

    runner = CliRunner()
    run, fixed = tmp_path / "run", tmp_path / "fixed"
    fit = ["fit", "--data", "shapes", "--max-train", "200", "--epochs", "1", "--hidden-sizes"]
    fit += ["16", "--num-masks", "2", "--device", "cpu", "--quiet"]
    assert runner.invoke(app, [*fit, "--masks", "any-order", "--out", str(run)]).exit_code == 0
    assert runner.invoke(app, [*fit, "--masks", "random", "--out", str(fixed)]).exit_code == 0
    loaded = load_run(run)
    model, test, shape = loaded.model, loaded.dataset.test, tuple(loaded.dataset.shape)
    drawn = model.draw_orderings(4, seed=2)
    observed = dk.queries.observed_pattern("top-half", shape, test.shape[0])
    with torch.no_grad():
        joint = evaluate(model, test, connectivities=drawn)
        rest = -model.conditional_log_prob(test, observed, connectivities=drawn)
    asked = ["--draw-orderings", "4", "--ordering-seed", "2"]
    result = runner.invoke(app, ["eval", str(run), *asked, "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["nll_nats"] == pytest.approx(joint, rel=1e-12)
    assert figures["num_masks"] == 4 and figures["drawn_orderings_seed"] == 2
    result = runner.invoke(app, ["eval", str(run), "--observed", "top-half", *asked, "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["conditional_nll_nats"] == pytest.approx(float(rest.mean()), rel=1e-12)
    assert figures["num_masks"] == 4 and figures["drawn_orderings_seed"] == 2
    text = runner.invoke(app, ["eval", str(run), "--observed", "top-half", *asked]).output
    assert "with 4 ordering(s) drawn at inference (seed 2)" in text
    text = runner.invoke(app, ["eval", str(run), *asked]).output
    assert "with 4 mask(s) drawn at inference (seed 2)" in text

    out = tmp_path / "c.npy"
    common = ["--observed", "top-half", "-n", "2", "--num-images", "3", "--out", str(out)]
    result = runner.invoke(app, ["inpaint", str(run), *common, *asked, "--json"])
    assert result.exit_code == 0, result.output
    figures = json.loads(result.output)
    assert figures["num_masks"] == 4 and figures["drawn_orderings_seed"] == 2
    assert figures["conditional_nll_nats"] == pytest.approx(rest[:3].tolist(), rel=1e-12)

    both = runner.invoke(app, ["eval", str(run), *asked, "--num-masks", "1"])
    assert both.exit_code == 1 and "not both" in both.output
    for command in (["eval", str(fixed), *asked], ["inpaint", str(fixed), *asked, "--out",
                    str(tmp_path / "f.png")]):  # fmt: skip
        refused = runner.invoke(app, command)
        assert refused.exit_code == 1 and "trained over all orderings" in refused.output


@pytest.mark.parametrize(
    "image_orderings",
    [
        {"orderings": "regions", "image_shape": "3x4", "region_share": 1.0},
        {"orderings": "scans", "image_shape": "3x4", "scan_share": 1.0},
    ],
    ids=["regions", "scans"],
)
def test_orderings_drawn_on_images_keep_the_model_exact(image_orderings: dict) -> None:
    """A model trained on region-first or scan orderings: each drawn ordering (and the
    query's observed-first one) gives outputs that depend on earlier variables only."""
    model = dk.create_model(
        "bernoulli",
        12,
        hidden_sizes=(9, 7),
        masks="any-order",
        num_masks=2,
        direct_connections=True,
        mask_input=True,
        mask_options=image_orderings,
    ).double()
    backbone = model.backbone
    pattern = dk.queries.observed_pattern("left-half", (3, 4), 1)[0]
    drawn = model.draw_orderings(6, seed=1)
    generator = torch.Generator().manual_seed(0)
    for conn in [*drawn, *(observed_first(c, pattern) for c in drawn)]:
        allowed = allowed_inputs(conn, backbone.input_width)
        point = torch.rand(1, 12, generator=generator).double()
        jac = torch.autograd.functional.jacobian(
            lambda inputs, c=conn: backbone(inputs, connectivity=c), point
        )[0, :, :, 0, :]
        assert torch.count_nonzero(jac.abs().amax(1)[~allowed]) == 0
        assert torch.count_nonzero(jac.abs().amax(1)[allowed]) > 0
    x = torch.randint(0, 2, (5, 12), generator=generator)
    joint = torch.stack([model.log_prob(x, connectivity=c) for c in drawn])
    split = model.marginal_log_prob(x, pattern, connectivities=drawn[:1]) + (
        model.conditional_log_prob(x, pattern, connectivities=drawn[:1])
    )
    moved = model.log_prob(x, connectivity=observed_first(drawn[0], pattern))
    assert torch.allclose(split, moved.double(), atol=1e-9)
    assert joint.shape == (6, 5)


@pytest.mark.parametrize("orderings", ["regions", "scans"])
def test_the_command_line_trains_on_orderings_of_the_data_images(tmp_path, orderings) -> None:
    """``--mask-option orderings=regions`` (or ``scans``) takes the image shape from the
    data; a data set of no image shape is refused with the option to give."""
    import json

    from typer.testing import CliRunner

    from densitykit.cli import app
    from densitykit.runs import load_run
    from densitykit.train import evaluate

    runner = CliRunner()
    run = tmp_path / "run"
    fit = ["fit", "--epochs", "1", "--hidden-sizes", "16", "--masks", "any-order"]
    fit += ["--num-masks", "2", "--device", "cpu", "--quiet"]
    fit += ["--mask-option", f"orderings={orderings}"]
    result = runner.invoke(app, [*fit, "--data", "shapes", "--max-train", "200", "--out", str(run)])
    assert result.exit_code == 0, result.output
    loaded = load_run(run)
    shape = list(loaded.dataset.shape)
    saved = json.loads((run / "config.json").read_text())["model"]["mask_options"]
    assert saved == {"orderings": orderings, "image_shape": shape}
    source = loaded.model.connectivity_source
    assert (source.orderings, list(source.image_shape)) == (orderings, shape)
    drawn = loaded.model.draw_orderings(3, seed=4)
    with torch.no_grad():
        joint = evaluate(loaded.model, loaded.dataset.test, connectivities=drawn)
    asked = ["eval", str(run), "--draw-orderings", "3", "--ordering-seed", "4", "--json"]
    result = runner.invoke(app, asked)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["nll_nats"] == pytest.approx(joint, rel=1e-12)

    flat = runner.invoke(app, [*fit, "--data", "1d-bimodal", "--out", str(tmp_path / "flat")])
    assert flat.exit_code != 0
    assert f"orderings={orderings!r} needs image_shape" in flat.output
