"""The fast sampler draws exactly what the D-pass reference sampler draws."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import strategies
import torch
from helpers import head_num_values, head_options, head_values, is_real_head
from hypothesis import given
from hypothesis import strategies as st
from strategies import ModelSpec, model_specs

import densitykit as dk
from densitykit import plans, sampling
from densitykit.heads import BernoulliHead
from densitykit.masks import Connectivity, ConnectivitySampler
from densitykit.sampling import (
    complete_fast,
    complete_reference,
    encodes_per_variable,
    sample_fast,
    sample_reference,
)

# Heads that take their parameters from a backbone (the histogram is a family of its own),
# the heads over real values included.
BACKBONE_HEADS = [
    name
    for name in dk.heads.names()
    if dk.heads.create(
        name, dim=2, num_values=head_num_values(name), **head_options(name, 2)
    ).params_per_variable
    > 0
]


def build(
    head: str,
    *,
    dim: int = 7,
    hidden_sizes: tuple[int, ...] = (9, 4),
    num_masks: int = 3,
    direct: bool = False,
    **options,
) -> dk.AutoregressiveModel:
    """A float64 model with peaked conditionals (large random parameters)."""
    model = dk.create_model(
        head,
        dim,
        options.pop("num_values", head_num_values(head)),
        hidden_sizes=hidden_sizes,
        masks="multi-ordering",
        **{**head_options(head, dim), **options.pop("head_options", {})},
        num_masks=num_masks,
        seed=7,
        direct_connections=direct,
        **options,
    ).double()
    # Real values are fed back as they are: moderate weights keep the draws moderate.
    randomize(model, 0.7 if is_real_head(head) else 4.0)
    return model


def randomize(model: dk.AutoregressiveModel, scale: float = 4.0) -> None:
    """Parameters large enough that conditionals are peaked and depend on the past."""
    strategies.sharpen(model, scale, seed=3)


def assert_fast_equals_naive(model: dk.AutoregressiveModel, num_samples: int = 200) -> None:
    for mask in range(model.num_masks):
        parts = model.backbone, model.head
        fast = sample_fast(*parts, num_samples, mask=mask, generator=seeded(mask))
        naive = sample_reference(*parts, num_samples, mask=mask, generator=seeded(mask))
        assert fast.dtype == model.head.value_dtype and fast.shape == (num_samples, model.dim)
        assert torch.equal(fast, naive), f"mask {mask}: {int((fast != naive).sum())} values differ"
        assert bool(torch.isfinite(fast.double()).all())


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(1000 + seed)


@pytest.mark.parametrize("head", BACKBONE_HEADS)
@pytest.mark.parametrize(
    "hidden_sizes",
    [(), (12,), (3, 20), (16, 2, 9)],
    ids=["no-hidden", "one-layer", "narrow-then-wide", "three-layers-narrow"],
)
@pytest.mark.parametrize("direct", [False, True], ids=["", "direct"])
def test_fast_equals_naive_for_every_head(
    head: str, hidden_sizes: tuple[int, ...], direct: bool
) -> None:
    assert_fast_equals_naive(build(head, hidden_sizes=hidden_sizes, direct=direct))


@pytest.mark.parametrize("block_steps", [1, 2, 3])
@pytest.mark.parametrize("head", BACKBONE_HEADS)
@pytest.mark.parametrize("hidden_sizes", [(), (12,), (3, 20), (16, 2, 9)])
@pytest.mark.parametrize("direct", [False, True], ids=["", "direct"])
def test_blocks_of_steps_split_every_sum_exactly(
    block_steps: int,
    head: str,
    hidden_sizes: tuple[int, ...],
    direct: bool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Seven variables in blocks of 1, 2 or 3 steps: every split of a unit's sum into a
    # block's share and the rest, including blocks cut short by the last variable.
    monkeypatch.setattr(plans, "BLOCK_STEPS", block_steps)
    assert_fast_equals_naive(build(head, hidden_sizes=hidden_sizes, direct=direct))


@given(spec=model_specs())
def test_fast_equals_naive_on_random_models(spec: ModelSpec) -> None:
    model = spec.build().double()
    randomize(model)
    assert_fast_equals_naive(model, num_samples=64)


@pytest.mark.parametrize(
    ("head", "options"),
    [
        ("categorical", {"num_values": 12}),  # one-hot inputs, P = 12 > the row-by-row limit
        ("categorical", {"num_values": 4, "one_hot": False}),
        ("logistic-mixture", {"num_values": 9, "num_components": 4, "one_hot": True}),
    ],
)
@pytest.mark.parametrize("direct", [False, True], ids=["", "direct"])
def test_one_hot_inputs_and_many_parameters(head: str, options: dict, direct: bool) -> None:
    assert_fast_equals_naive(build(head, direct=direct, **options))


@pytest.mark.parametrize("head", BACKBONE_HEADS)
def test_wide_layers_with_many_units_per_degree(head: str) -> None:
    assert_fast_equals_naive(build(head, dim=3, hidden_sizes=(40, 30), direct=True))


@pytest.mark.parametrize("head", BACKBONE_HEADS)
@pytest.mark.parametrize("hidden_sizes", [(), (5,), (4, 3)])
def test_single_variable(head: str, hidden_sizes: tuple[int, ...]) -> None:
    # With D = 1 every hidden unit has degree 1 and is never needed.
    assert_fast_equals_naive(build(head, dim=1, hidden_sizes=hidden_sizes, direct=True))


@pytest.mark.parametrize("head", BACKBONE_HEADS)
def test_mixture_sampling_matches_the_reference_mixture(head: str) -> None:
    model = build(head, num_masks=4, direct=True)
    num_samples = 300
    generator = seeded(0)
    if model.num_masks > 1:
        choice = torch.randint(model.num_masks, (num_samples,), generator=generator)
    else:
        choice = torch.zeros(num_samples, dtype=torch.long)
    expected = model.head.blank(num_samples)
    for mask in range(model.num_masks):
        rows = (choice == mask).nonzero().squeeze(-1)
        if rows.numel():
            expected[rows] = model.sample_naive(rows.numel(), mask=mask, generator=generator)
    assert torch.equal(model.sample(num_samples, generator=seeded(0)), expected)


@pytest.mark.parametrize("head", BACKBONE_HEADS)
def test_model_sample_takes_the_fast_path(head: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = build(head, num_masks=2)
    expected = {
        mask: model.sample_naive(50, mask=mask, generator=seeded(mask)) for mask in range(2)
    }

    def refuse(*args, **kwargs):
        raise AssertionError("model.sample fell back to the D-pass sampler")

    monkeypatch.setattr(model, "sample_naive", refuse)
    monkeypatch.setattr(sampling, "_sample_reference", refuse)
    for mask in range(2):
        assert torch.equal(model.sample(50, mask=mask, generator=seeded(mask)), expected[mask])
    assert model.sample(20, generator=seeded(0)).shape == (20, model.dim)


class IndexedBernoulli(BernoulliHead):
    """Encodes variable i as x_i * (i + 1): valid, but not the same for every column."""

    def encode(self, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return x.to(dtype) * torch.arange(1, x.shape[-1] + 1, dtype=dtype)


def test_heads_whose_encoding_depends_on_the_index_are_re_encoded() -> None:
    reference = build("bernoulli", direct=True)
    head = IndexedBernoulli(dim=reference.dim)
    model = dk.AutoregressiveModel(reference.backbone, head)
    assert not encodes_per_variable(head, torch.float64)
    assert_fast_equals_naive(model)


@pytest.mark.parametrize("head", dk.heads.names())
def test_built_in_heads_encode_per_variable(head: str) -> None:
    for options in ({}, {"one_hot": True}, {"one_hot": False}):
        try:
            instance = dk.heads.create(
                head, dim=4, num_values=head_num_values(head), **head_options(head, 4), **options
            )
        except TypeError:
            continue  # the head has no one_hot option
        assert encodes_per_variable(instance)


def test_plans_follow_new_masks() -> None:
    model = build("categorical", direct=True)
    assert_fast_equals_naive(model)  # caches the plans
    other = build("categorical", direct=True)
    other.load_state_dict(
        dk.create_model(
            "categorical",
            7,
            5,
            hidden_sizes=(9, 4),
            masks="multi-ordering",
            num_masks=3,
            seed=99,
            direct_connections=True,
        )
        .double()
        .state_dict()
    )
    model.load_state_dict(other.state_dict())  # new degrees, new masks
    randomize(model)
    assert_fast_equals_naive(model)


def test_masks_that_break_the_degrees_fall_back_to_the_reference() -> None:
    model = build("categorical", hidden_sizes=(6,), num_masks=1)
    layer = model.backbone.layers[0]
    layer.set_masks(torch.ones_like(layer.mask_stack))  # every input reaches every unit
    assert_fast_equals_naive(model)


def test_plans_follow_masks_edited_in_place() -> None:
    # One-hot inputs: a variable not drawn yet (0 in the reference) feeds a nonzero input.
    model = build("categorical", hidden_sizes=(6,), num_masks=1, direct=True)
    assert_fast_equals_naive(model)  # caches the plan
    model.backbone.direct.mask_stack.fill_(True)  # the same tensor, now breaking the ordering
    assert_fast_equals_naive(model)


def test_thread_count_is_restored() -> None:
    model = build("bernoulli", hidden_sizes=(6,))
    threads = torch.get_num_threads()
    sample_fast(model.backbone, model.head, 5)
    assert torch.get_num_threads() == threads


def test_no_samples() -> None:
    model = build("categorical")
    assert sample_fast(model.backbone, model.head, 0).shape == (0, model.dim)
    assert model.sample(0).shape == (0, model.dim)


def test_half_precision_samples_lie_in_the_support() -> None:
    model = dk.create_model("categorical", 5, 3, hidden_sizes=(8,)).to(torch.bfloat16)
    samples = sample_fast(model.backbone, model.head, 30, generator=seeded(0))
    assert samples.shape == (30, 5)
    assert int(samples.min()) >= 0 and int(samples.max()) <= 2


@pytest.mark.parametrize("sampler", [sample_fast, sample_reference])
@pytest.mark.parametrize(
    ("arguments", "error", "match"),
    [
        (("model", 3), TypeError, "MADE backbone"),
        (("head", 3), TypeError, "Head"),
        (("histogram", 3), ValueError, "takes no parameters from a backbone"),
        ((None, -1), ValueError, "num_samples"),
        ((None, 2.0), TypeError, "num_samples"),  # wrong type: TypeError, as torch
        ((None, 3, {"mask": 3}), ValueError, "mask"),
        ((None, 3, {"mask": True}), TypeError, "mask"),
        ((None, 3, {"generator": 0}), TypeError, "generator"),
    ],
)
def test_bad_arguments(sampler, arguments: tuple, error: type, match: str) -> None:
    model = build("bernoulli")
    target, num_samples, *rest = arguments
    options = rest[0] if rest else {}
    parts = {
        None: (model.backbone, model.head),
        "model": (model, model.head),  # the composite is not a backbone
        "head": (model.backbone, object()),
        "histogram": (model.backbone, dk.heads.create("histogram", dim=7, num_values=5)),
    }[target]
    with pytest.raises(error, match=match):
        sampler(*parts, num_samples, **options)


def test_model_methods_delegate_to_the_samplers() -> None:
    model = build("categorical", direct=True)
    for mask in range(model.num_masks):
        reference = sample_reference(model.backbone, model.head, 40, mask=mask, generator=seeded(0))
        assert torch.equal(model.sample_naive(40, mask=mask, generator=seeded(0)), reference)
        assert torch.equal(model.sample(40, mask=mask, generator=seeded(0)), reference)


def test_sampling_does_not_import_the_model() -> None:
    tree = ast.parse(Path(sampling.__file__).read_text(encoding="utf-8"))
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}  # fmt: skip
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "densitykit.model" not in imported


# -- completion: the fast sampler under any connectivity, after a given prefix --------------


def completion_connectivities(model: dk.AutoregressiveModel, seed: int = 5) -> list[Connectivity]:
    """One of the model's own connectivities and one drawn at inference time."""
    drawn = ConnectivitySampler(model.dim, model.backbone.hidden_sizes, seed=seed).draw()
    return [model.backbone.connectivity(1 % model.num_masks), drawn]


def given_values(model: dk.AutoregressiveModel, num_samples: int, seed: int) -> torch.Tensor:
    """Values from the model itself, so the given prefix is a likely one."""
    return sample_reference(model.backbone, model.head, num_samples, generator=seeded(seed))


def assert_completion_equals_reference(
    model: dk.AutoregressiveModel, num_given: list[int] | None = None, num_samples: int = 100
) -> None:
    parts = model.backbone, model.head
    given = range(model.dim + 1) if num_given is None else num_given
    for index, conn in enumerate(completion_connectivities(model)):
        x = given_values(model, num_samples, index)
        for count in given:
            fast = complete_fast(*parts, conn, x, count, generator=seeded(count))
            slow = complete_reference(*parts, conn, x, count, generator=seeded(count))
            kept = conn.ordering[:count]
            assert fast.dtype == model.head.value_dtype and fast.shape == x.shape
            assert torch.equal(fast[:, kept], x[:, kept])
            assert torch.equal(fast, slow), (
                f"connectivity {index}, {count} given: {int((fast != slow).sum())} values differ"
            )


@pytest.mark.parametrize("head", BACKBONE_HEADS)
@pytest.mark.parametrize(
    "hidden_sizes", [(), (12,), (3, 20)], ids=["no-hidden", "one-layer", "two-layers"]
)
@pytest.mark.parametrize("direct", [False, True], ids=["", "direct"])
def test_fast_completion_equals_the_reference_for_every_head(
    head: str, hidden_sizes: tuple[int, ...], direct: bool
) -> None:
    # Every prefix length, none given and all but one (and all) included.
    assert_completion_equals_reference(build(head, hidden_sizes=hidden_sizes, direct=direct))


@pytest.mark.parametrize("block_steps", [1, 2, 3])
@pytest.mark.parametrize("head", BACKBONE_HEADS)
def test_fast_completion_splits_every_sum_exactly_in_blocks(
    block_steps: int, head: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Blocks now start at the first step drawn: every prefix against every block length.
    monkeypatch.setattr(plans, "BLOCK_STEPS", block_steps)
    assert_completion_equals_reference(build(head, hidden_sizes=(16, 2, 9), direct=True))


@pytest.mark.parametrize(
    ("head", "options"),
    [
        ("categorical", {"num_values": 12}),  # one-hot inputs, P = 12 > the row-by-row limit
        ("logistic-mixture", {"num_values": 9, "num_components": 4, "one_hot": True}),
    ],
)
@pytest.mark.parametrize("direct", [False, True], ids=["", "direct"])
def test_fast_completion_with_one_hot_inputs(head: str, options: dict, direct: bool) -> None:
    assert_completion_equals_reference(build(head, direct=direct, **options), [0, 1, 3, 6])


@pytest.mark.parametrize("hidden_sizes", [(), (12,), (3, 20)])
def test_fast_completion_with_the_mask_as_input(hidden_sizes: tuple[int, ...]) -> None:
    model = build("categorical", hidden_sizes=hidden_sizes, direct=True, mask_input=True)
    assert_completion_equals_reference(model, [0, 1, 4, 6])
    assert_fast_equals_naive(model)


def test_fast_completion_with_wide_layers_and_a_re_encoding_head() -> None:
    assert_completion_equals_reference(build("categorical", dim=3, hidden_sizes=(40, 30)))
    reference = build("bernoulli", direct=True)
    model = dk.AutoregressiveModel(reference.backbone, IndexedBernoulli(dim=reference.dim))
    assert_completion_equals_reference(model, [0, 2, 6])


@given(spec=model_specs(), data=st.data())
def test_fast_completion_equals_the_reference_on_random_models(
    spec: ModelSpec, data: st.DataObject
) -> None:
    model = spec.build().double()
    randomize(model)
    count = data.draw(st.integers(0, spec.dim), label="num_given")
    assert_completion_equals_reference(model, [count], num_samples=32)


@pytest.mark.parametrize("completer", [complete_fast, complete_reference])
@pytest.mark.parametrize(
    ("case", "error", "match"),
    [
        ("histogram", ValueError, "takes no parameters from a backbone"),
        ("not-a-connectivity", TypeError, "Connectivity"),
        ("wrong-size", ValueError, "hidden sizes"),
        ("float-values", TypeError, "integer tensor"),
        ("wrong-shape", ValueError, r"shape \(N, D\)"),
        ("too-many-given", ValueError, "num_given"),
        ("bad-generator", TypeError, "generator"),
    ],
)
def test_bad_completion_arguments(completer, case: str, error: type, match: str) -> None:
    model = build("bernoulli")
    backbone, head, conn = model.backbone, model.head, model.backbone.connectivity()
    x, count, generator = torch.zeros(2, 7, dtype=torch.long), 3, None
    if case == "histogram":
        backbone, head = None, dk.heads.create("histogram", dim=7, num_values=2)
    elif case == "not-a-connectivity":
        conn = conn.ordering
    elif case == "wrong-size":
        conn = ConnectivitySampler(7, (4,), seed=0).draw()
    elif case == "float-values":
        x = x.double()
    elif case == "wrong-shape":
        x = x[:, :3]
    elif case == "too-many-given":
        count = 8
    else:
        generator = 0
    with pytest.raises(error, match=match):
        completer(backbone, head, conn, x, count, generator=generator)


@pytest.mark.parametrize("draw_steps", [1, 2, 3, 32])
@pytest.mark.parametrize("head", BACKBONE_HEADS)
def test_uniforms_drawn_for_many_steps_at_once_give_the_same_samples(
    draw_steps: int, head: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Blocks of 1, 2, 3 or all steps' uniforms, including a block cut short at the end.
    monkeypatch.setattr(sampling, "_DRAW_STEPS", draw_steps)
    assert_fast_equals_naive(build(head, direct=True), num_samples=37)


@pytest.mark.parametrize("head", BACKBONE_HEADS)
def test_global_generator_gives_the_reference_samples(head: str) -> None:
    model = build(head, dim=40, hidden_sizes=(30,), num_masks=1)
    parts = model.backbone, model.head
    torch.manual_seed(5)
    fast = sample_fast(*parts, 23)
    after_fast = torch.rand(3)
    torch.manual_seed(5)
    naive = sample_reference(*parts, 23)
    assert torch.equal(fast, naive)
    assert torch.equal(torch.rand(3), after_fast)  # the same draws were taken


@pytest.mark.parametrize("head", BACKBONE_HEADS)
def test_sample_is_sample_from_uniforms(head: str) -> None:
    """The promise ``uniforms_per_sample`` makes, which the fast sampler relies on."""
    model = build(head)
    x = model.head.blank(11)
    params = model.backbone(model.head.encode(x, torch.float64))
    k = model.head.uniforms_per_sample
    assert k > 0
    for variable in range(7):
        drawn = model.head.sample(params[:, variable], variable, seeded(variable))
        u = dk.heads.base.uniform(
            (k, 11), seeded(variable), device=params.device, dtype=torch.float64
        )
        from_uniforms = model.head.sample_variable_from_uniforms(params[:, variable], u, variable)
        assert torch.equal(from_uniforms, drawn)


def test_a_head_that_draws_its_own_numbers_is_asked_per_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class OwnDraws(BernoulliHead):
        uniforms_per_sample = 0  # no promise: the sampler must call sample at every step

        def sample(self, params, variable, generator=None):
            calls.append(variable)
            u = dk.heads.base.uniform(
                (1, params.shape[0]), generator, device=params.device, dtype=params.dtype
            )
            return self.sample_from_uniforms(params, u)

    calls: list[int] = []
    model = build("bernoulli", num_masks=1)
    head = OwnDraws(dim=7)
    fast = sample_fast(model.backbone, head, 9, generator=seeded(0))
    assert sorted(calls) == list(range(7))
    histogram = dk.heads.create("histogram", dim=2, num_values=3)  # draws its own: no promise
    assert histogram.uniforms_per_sample == 0
    with pytest.raises(NotImplementedError, match="uniforms_per_sample=0"):
        histogram.sample_from_uniforms(torch.zeros(2, 0), torch.zeros(1, 2))
    with pytest.raises(NotImplementedError, match="declares no uniforms"):
        head.sample_by_uniforms(torch.zeros(2, 1), None)
    assert torch.equal(fast, sample_reference(model.backbone, head, 9, generator=seeded(0)))


@pytest.mark.parametrize("head", BACKBONE_HEADS)
def test_encode_into_writes_what_encode_gives(head: str) -> None:
    model = build(head)
    widths = model.head.variable_widths
    if not widths.is_uniform:  # each variable its own width: encode_variable_into
        values = head_values(head, (13, model.dim), model.num_values)
        encoded = model.head.encode(values, torch.float64)
        for variable in range(model.dim):
            out = torch.zeros(widths.inputs[variable], 13, dtype=torch.float64)
            model.head.encode_variable_into(values[:, variable], out, variable)
            begin, end = widths.input_starts[variable], widths.input_starts[variable + 1]
            assert torch.equal(out, encoded[:, begin:end].t())
        return
    values = head_values(head, (13,), model.num_values)
    out = torch.zeros(model.head.input_width, 13, dtype=torch.float64)
    model.head.encode_into(values, out)
    expected = model.head.encode(values[:, None], torch.float64).t()
    assert torch.equal(out, expected)
