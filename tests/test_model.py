"""The composed model: the documented snippet, mixtures, bad input, plug-ins, devices."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import densitykit as dk
from densitykit.errors import ResourceError
from densitykit.heads.base import Head, inverse_cdf, uniform


def test_issue_snippet_runs_as_written() -> None:
    model = dk.create_model(
        head="logistic-mixture",
        dim=2,
        num_values=64,
        hidden_sizes=(128, 128),
        masks="multi-ordering",
        num_masks=8,
        seed=0,
        num_components=4,
    )
    x = torch.randint(0, 64, (32, 2))
    lp = model.log_prob(x)
    assert lp.shape == (32,) and bool(torch.isfinite(lp).all())
    xs = model.sample(1000, generator=torch.Generator().manual_seed(0))
    assert xs.shape == (1000, 2)
    again = model.sample(1000, generator=torch.Generator().manual_seed(0))
    assert torch.equal(xs, again)
    assert model.num_masks == 8
    assert dk.create_model(head="bernoulli", dim=4).num_values == 2
    assert set(dk.heads.names()) >= {"bernoulli", "categorical", "logistic-mixture", "histogram"}
    assert set(dk.masks.names()) >= {"natural", "random", "multi-ordering", "ordering"}


def test_mixture_log_prob_is_log_mean_exp_not_averaged_logits() -> None:
    torch.manual_seed(0)
    model = dk.create_model(
        "categorical", 3, 3, hidden_sizes=(10,), masks="multi-ordering", num_masks=4, seed=0
    ).double()
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(4)
    x = torch.tensor(list(itertools.product(range(3), repeat=3)))
    per_mask = model.log_prob_per_mask(x)
    assert per_mask.shape == (4, 27)
    expected = torch.logsumexp(per_mask, 0) - math.log(4)
    assert torch.allclose(model.log_prob(x), expected)
    for k in range(4):
        assert torch.allclose(model.log_prob(x, mask=k), per_mask[k])
    # Averaging the logits over masks would not sum to one; the mixture does.
    assert abs(float(model.log_prob(x).exp().sum()) - 1) < 1e-12
    logits = []
    for k in range(4):
        model.backbone.set_mask(k)
        logits.append(model.backbone(model.head.encode(x, torch.float64)))
    averaged = model.head.log_prob(torch.stack(logits).mean(0), x).sum(-1)
    assert abs(float(averaged.exp().sum()) - 1) > 1e-3


def test_mask_selection_and_cycling() -> None:
    model = dk.create_model("bernoulli", 5, hidden_sizes=(8,), masks="multi-ordering", num_masks=3)
    backbone = model.backbone
    assert backbone.mask_index == 0
    assert [backbone.next_mask() for _ in range(4)] == [1, 2, 0, 1]
    backbone.set_mask(2)
    x = torch.randint(0, 2, (4, 5))
    model.log_prob(x)  # evaluating the mixture leaves the active mask alone
    assert backbone.mask_index == 2
    with pytest.raises(ValueError, match="0..2"):
        backbone.set_mask(3)
    with pytest.raises(ValueError, match="0..2"):
        model.log_prob(x, mask=5)


def test_zero_hidden_layers_and_direct_connections() -> None:
    model = dk.create_model("categorical", 4, 3, hidden_sizes=(), direct_connections=True)
    assert len(model.backbone.layers) == 1 and model.backbone.direct is None
    x = torch.tensor(list(itertools.product(range(3), repeat=4)))
    assert abs(float(model.double().log_prob(x).exp().sum()) - 1) < 1e-12
    deep = dk.create_model("bernoulli", 4, hidden_sizes=(5, 5), direct_connections=True)
    assert deep.backbone.direct is not None


def test_hand_composed_model_matches_create_model() -> None:
    conns = dk.masks.create("random", dim=3, hidden_sizes=[7], seed=4)
    head = dk.heads.create("logistic-mixture", dim=3, num_values=10, num_components=2)
    backbone = dk.MADE(
        conns,
        params_per_variable=head.params_per_variable,
        input_width=head.input_width,
        activation="tanh",
    )
    model = dk.AutoregressiveModel(backbone, head)
    built = dk.create_model(
        "logistic-mixture",
        3,
        10,
        hidden_sizes=(7,),
        masks="random",
        seed=4,
        activation="tanh",
        num_components=2,
    )
    built.load_state_dict(model.state_dict())
    x = torch.randint(0, 10, (6, 3))
    assert torch.equal(model.log_prob(x), built.log_prob(x))
    with pytest.raises(ValueError, match="does not fit the head"):
        dk.AutoregressiveModel(backbone, dk.heads.create("bernoulli", dim=3))


def test_config_round_trip() -> None:
    model = dk.create_model(
        "categorical",
        3,
        4,
        hidden_sizes=(9,),
        masks="ordering",
        mask_options={"ordering": [2, 1, 0]},
    )
    config = dk.ModelConfig.from_dict(model.config.to_dict())
    rebuilt = dk.build_model(config)
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randint(0, 4, (5, 3))
    assert torch.equal(model.log_prob(x), rebuilt.log_prob(x))
    assert rebuilt.backbone.connectivity(0).ordering.tolist() == [2, 1, 0]
    with pytest.raises(ValueError, match="unknown model config keys"):
        dk.ModelConfig.from_dict({**model.config.to_dict(), "colour": 1})


# -- bad input ---------------------------------------------------------------------------
BERNOULLI = dk.create_model("bernoulli", 3, hidden_sizes=(4,))
CATEGORICAL = dk.create_model("categorical", 3, 4, hidden_sizes=(4,))


@pytest.mark.parametrize(
    ("model", "x", "error", "match"),
    [
        (BERNOULLI, torch.tensor([[0, 2, 1]]), ValueError, r"support 0..1.*got values in 0..2"),
        (CATEGORICAL, torch.tensor([[0, 4, 1]]), ValueError, r"support 0..3"),
        (CATEGORICAL, torch.tensor([[0, -1, 1]]), ValueError, r"support 0..3.*-1..1"),
        (CATEGORICAL, torch.zeros(2, 4, dtype=torch.long), ValueError, r"D=3.*\(2, 4\)"),
        (CATEGORICAL, torch.tensor(1), ValueError, r"shape \(..., D\)"),
        (CATEGORICAL, torch.tensor([[0.0, float("nan"), 1.0]]), ValueError, "NaN"),
        (CATEGORICAL, torch.tensor([[0.0, float("inf"), 1.0]]), ValueError, "NaN or infinite"),
        (CATEGORICAL, torch.tensor([[0.0, 0.5, 1.0]]), ValueError, "non-integer"),
        (CATEGORICAL, torch.zeros(1, 3, dtype=torch.complex64), TypeError, "complex64"),
        (CATEGORICAL, [[0, 1, 2]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_input_raises_documented_errors(model, x, error, match) -> None:
    with pytest.raises(error, match=match):
        model.log_prob(x)


def test_integral_floats_and_small_ints_are_accepted() -> None:
    x = torch.tensor([[0, 3, 1]])
    reference = CATEGORICAL.log_prob(x)
    for dtype in (torch.float32, torch.float64, torch.uint8, torch.int32, torch.int16):
        assert torch.equal(CATEGORICAL.log_prob(x.to(dtype)), reference)


@pytest.mark.parametrize(
    ("bad", "error"),
    [
        (-1, ValueError),
        ((2, -1), ValueError),
        (2.0, TypeError),
        (True, TypeError),
        ("3", TypeError),
    ],
)
def test_bad_sample_shapes(bad, error) -> None:
    with pytest.raises(error, match="sample_shape"):
        CATEGORICAL.sample(bad)


@pytest.mark.parametrize(
    ("sample_shape", "expected"),
    [
        (3, (3, 3)),
        (np.int64(3), (3, 3)),
        ((), (3,)),
        ((2, 4), (2, 4, 3)),
        (torch.Size([0]), (0, 3)),
    ],
)
def test_sample_takes_a_shape_as_torch_does(sample_shape, expected) -> None:
    samples = CATEGORICAL.sample(sample_shape, generator=torch.Generator().manual_seed(0))
    assert samples.shape == expected and samples.dtype == torch.long
    flat = CATEGORICAL.sample(math.prod(expected[:-1]), generator=torch.Generator().manual_seed(0))
    assert torch.equal(samples.reshape(-1, 3), flat)  # the same draws, shaped


def test_sample_naive_refuses_negative_counts_and_bad_masks() -> None:
    with pytest.raises(ValueError, match="num_samples must be a non-negative integer, got -1"):
        CATEGORICAL.sample_naive(-1)
    with pytest.raises(ValueError, match="mask must be an integer in 0..0, got 1"):
        CATEGORICAL.sample_naive(2, mask=1)
    assert CATEGORICAL.sample_naive(np.int64(2)).shape == (2, 3)


def test_validate_args_switches_the_input_checks_off() -> None:
    model = dk.create_model("categorical", 3, 4, hidden_sizes=(4,))
    x = torch.tensor([[0, 3, 1], [2, 2, 0]])
    bad = torch.tensor([[0, 4, 1]])
    with pytest.raises(ValueError, match="support"):
        model.log_prob(bad)
    assert torch.equal(model.log_prob(x, validate=False), model.log_prob(x))
    model.validate_args = False
    model.log_prob(bad.clamp(max=3))  # no scan of the values, same results on good ones
    assert torch.equal(model.log_prob(x), model.log_prob(x, validate=True))
    with pytest.raises(ValueError, match="support"):
        model.log_prob(bad, validate=True)  # a call can still ask for the checks
    unchecked = dk.AutoregressiveModel(model.backbone, model.head, validate_args=False)
    assert not unchecked.validate_args and torch.equal(unchecked.log_prob(x), model.log_prob(x))


def test_large_batches_are_scored_in_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    model = dk.create_model("bernoulli", 3, hidden_sizes=(4,), masks="random", num_masks=2)
    x = torch.randint(
        0, 2, (2, 5, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    whole = model.log_prob(x)
    per_mask = model.log_prob_per_mask(x)
    rows_per_pass: list[int] = []
    model.backbone.register_forward_pre_hook(
        lambda module, inputs: rows_per_pass.append(inputs[0].shape[0])
    )
    monkeypatch.setattr(dk.model, "CHUNK_ROWS", 4)
    assert torch.equal(model.log_prob(x), whole) and whole.shape == (2, 5)
    assert rows_per_pass == [4, 4, 4, 4, 2, 2]  # two masks per chunk, never above CHUNK_ROWS
    assert torch.equal(model.log_prob_per_mask(x), per_mask) and per_mask.shape == (2, 2, 5)


def test_create_model_errors() -> None:
    with pytest.raises(ValueError, match="num_values is required for head='categorical'"):
        dk.create_model("categorical", 3)
    with pytest.raises(ValueError, match="bernoulli head models 2 values"):
        dk.create_model("bernoulli", 3, 3)
    with pytest.raises(dk.UnknownNameError, match="registered heads"):
        dk.create_model("poisson", 3, 3)
    with pytest.raises(dk.UnknownNameError, match="registered activations"):
        dk.create_model("bernoulli", 3, activation="swish")
    with pytest.raises(ValueError, match="num_components"):
        dk.create_model("logistic-mixture", 3, 8, num_components=0)


@given(
    shape=st.lists(st.integers(0, 4), min_size=0, max_size=3),
    dtype=st.sampled_from(
        [
            torch.int64,
            torch.int32,
            torch.uint8,
            torch.float32,
            torch.float64,
            torch.bool,
            torch.complex64,
        ]
    ),
    fill=st.sampled_from([0.0, 1.0, 3.0, 4.0, -1.0, 0.5, float("nan"), float("inf")]),
)
def test_random_inputs_give_values_or_documented_errors(shape, dtype, fill) -> None:
    try:
        x = torch.full(shape, fill).to(dtype)
    except (RuntimeError, ValueError, OverflowError):
        return
    good = x.ndim >= 1 and x.shape[-1] == 3 and not x.is_complex()
    if good and x.numel():
        values = x.double()
        good = bool(((values == values.round()) & (values >= 0) & (values <= 3)).all())
    if not good:
        with pytest.raises((ValueError, TypeError)):
            CATEGORICAL.log_prob(x)
        return
    out = CATEGORICAL.log_prob(x)  # a known-good input must be scored
    assert out.shape == tuple(shape[:-1]) and bool(torch.isfinite(out).all())


def test_random_inputs_known_good_case() -> None:
    out = CATEGORICAL.log_prob(torch.full((2, 3), 3.0).to(torch.uint8))
    assert out.shape == (2,) and bool(torch.isfinite(out).all())


# The positive halves of the fuzz tests in test_reliability.py, which accept any
# documented error: arguments known to be good must succeed.
@given(
    values=st.lists(st.lists(st.integers(0, 3), min_size=3, max_size=3), max_size=4),
    dtype=st.sampled_from([torch.int64, torch.int8, torch.uint8, torch.float16, torch.float64]),
)
def test_log_prob_scores_every_good_batch(values, dtype) -> None:
    x = torch.tensor(values, dtype=dtype).reshape(len(values), 3)
    out = CATEGORICAL.log_prob(x)
    assert out.shape == (len(values),)
    assert bool(torch.isfinite(out).all()) and bool((out <= 0).all())


@given(
    num_samples=st.one_of(st.integers(0, 5), st.integers(0, 5).map(np.int64)),
    mask=st.one_of(st.none(), st.just(0)),
)
def test_sample_succeeds_on_every_good_argument(num_samples, mask) -> None:
    samples = CATEGORICAL.sample(num_samples, mask=mask, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (num_samples, 3)
    assert samples.numel() == 0 or 0 <= int(samples.min()) <= int(samples.max()) <= 3


# -- plug-ins ----------------------------------------------------------------------------
class GeometricHead(Head):
    """Truncated geometric over 0..K-1 with one logit per variable (a user plug-in)."""

    def __init__(self, dim: int, num_values: int) -> None:
        super().__init__(dim, num_values)
        self.params_per_variable = 1
        self.input_width = 1

    def encode(self, x, dtype):
        return x.to(dtype)

    def _log_probs(self, params):
        log_q = torch.nn.functional.logsigmoid(params)  # log of the continuation probability
        k = torch.arange(self.num_values, device=params.device, dtype=params.dtype)
        return torch.log_softmax(k * log_q, dim=-1)

    def _log_prob(self, params, x):
        return self._log_probs(params).gather(-1, x[..., None]).squeeze(-1)

    def sample(self, params, variable, generator=None):
        probs = self._log_probs(params).exp()
        u = uniform((params.shape[0],), generator, device=params.device, dtype=params.dtype)
        return inverse_cdf(probs, u)


def test_user_head_and_mask_builder_work_like_built_ins() -> None:
    dk.heads.register("test-geometric", GeometricHead)

    @dk.masks.register("test-reversed")
    def reversed_order(dim, hidden_sizes=(), *, num_masks=1, seed=0):
        """Variables in reverse index order."""
        return dk.masks.explicit_ordering(
            dim, hidden_sizes, ordering=list(range(dim))[::-1], num_masks=num_masks, seed=seed
        )

    try:
        model = dk.create_model("test-geometric", 3, 5, hidden_sizes=(6,), masks="test-reversed")
        assert model.backbone.connectivity().ordering.tolist() == [2, 1, 0]
        x = torch.tensor(list(itertools.product(range(5), repeat=3)))
        assert abs(float(model.double().log_prob(x).exp().sum()) - 1) < 1e-12
        assert model.sample(4).shape == (4, 3)
        rebuilt = dk.build_model(dk.ModelConfig.from_dict(model.config.to_dict()))
        assert rebuilt.backbone.connectivity().ordering.tolist() == [2, 1, 0]
    finally:
        dk.heads.HEADS.unregister("test-geometric")
        dk.masks.MASKS.unregister("test-reversed")


# -- dtype and device --------------------------------------------------------------------
def test_model_follows_dtype() -> None:
    model = dk.create_model("logistic-mixture", 2, 8, hidden_sizes=(6,), num_components=2)
    x = torch.randint(0, 8, (5, 2))
    assert model.double().log_prob(x).dtype == torch.float64
    assert model.sample(3).device == model.device


def test_half_precision_parameters_score_in_float32() -> None:
    model = dk.create_model("categorical", 2, 3, hidden_sizes=(6,)).to(torch.bfloat16)
    out = model.log_prob(torch.randint(0, 3, (4, 2)))
    assert out.dtype == torch.float32


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_model_with_cpu_generator() -> None:
    model = dk.create_model(
        "bernoulli", 4, hidden_sizes=(8,), num_masks=2, masks="multi-ordering"
    ).cuda()
    x = torch.randint(0, 2, (3, 4))
    assert model.log_prob(x).device.type == "cuda"
    samples = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert samples.device.type == "cuda"


def test_the_package_namespace_reaches_the_whole_workflow() -> None:
    for name in ("data", "train", "runs", "checkpoint", "sampling", "heads", "masks"):
        assert getattr(dk, name).__name__ == f"densitykit.{name}"
    assert dk.load_dataset is dk.data.load_dataset
    assert dk.fit is dk.train.fit and dk.evaluate is dk.train.evaluate
    assert dk.TrainConfig is dk.train.TrainConfig and dk.RunConfig is dk.runs.RunConfig
    assert dk.load_run is dk.runs.load_run and dk.fit_run is dk.runs.fit_run
    assert dk.save_checkpoint is dk.checkpoint.save_checkpoint
    assert dk.load_checkpoint is dk.checkpoint.load_checkpoint
    assert set(dk.__all__) <= set(dir(dk))


# -- training over all orderings --------------------------------------------------------------


REGIONS = {"orderings": "regions", "image_shape": [2, 3]}
SCANS = {"orderings": "scans", "image_shape": [2, 3]}


def any_order_model(seed: int = 0, mask_options: dict | None = None) -> dk.AutoregressiveModel:
    torch.manual_seed(seed)
    return dk.create_model(
        "bernoulli",
        6,
        hidden_sizes=(12,),
        masks="any-order",
        num_masks=3,
        seed=4,
        mask_options=mask_options,
    )


def test_an_any_order_model_draws_fresh_connectivities_from_a_saved_state() -> None:
    model = any_order_model()
    assert model.num_masks == 3  # the evaluation mixture
    assert "connectivity_source_state" in model.state_dict()
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    draws = [model.draw_connectivity() for _ in range(5)]
    assert len({tuple(c.ordering.tolist()) for c in draws}) > 1
    assert not torch.equal(saved["connectivity_source_state"], model.connectivity_source_state)
    model.load_state_dict(saved)  # the same draws again
    for conn in draws:
        assert torch.equal(model.draw_connectivity().input_degrees, conn.input_degrees)


def test_fixed_stacks_keep_their_state_dict_and_have_no_source() -> None:
    model = dk.create_model("bernoulli", 6, hidden_sizes=(12,), masks="multi-ordering")
    assert model.connectivity_source is None
    assert not any("connectivity_source" in key for key in model.state_dict())
    with pytest.raises(ValueError, match="fixed stack of masks"):
        model.draw_connectivity()


@pytest.mark.parametrize(
    "mask_options", [None, REGIONS, SCANS], ids=["uniform", "regions", "scans"]
)
def test_any_order_training_resumes_bit_identically(mask_options: dict | None) -> None:
    data = torch.randint(0, 2, (96, 6), generator=torch.Generator().manual_seed(1))
    config = dk.TrainConfig(epochs=2, batch_size=16, patience=None, device="cpu")
    straight = any_order_model(mask_options=mask_options)
    before = straight.connectivity_source_state.clone()
    dk.fit(straight, data, data[:32], config)
    assert not torch.equal(before, straight.connectivity_source_state)  # it drew orderings

    first = any_order_model(mask_options=mask_options)
    half = dk.fit(first, data, data[:32], dk.TrainConfig(**{**config.to_dict(), "epochs": 1}))
    state = dk.train.TrainState.from_dict(half.state.to_dict())
    # Other initial weights: all must come from the state.
    resumed = any_order_model(seed=123, mask_options=mask_options)
    dk.fit(resumed, data, data[:32], config, state=state)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key


def test_an_any_order_checkpoint_keeps_its_source_state(tmp_path) -> None:
    model = any_order_model()
    model.draw_connectivity()
    dk.save_checkpoint(tmp_path / "model.pt", model)
    loaded = dk.load_checkpoint(tmp_path / "model.pt")
    assert torch.equal(loaded.connectivity_source_state, model.connectivity_source_state)
    assert torch.equal(
        loaded.draw_connectivity().input_degrees, model.draw_connectivity().input_degrees
    )


@pytest.mark.parametrize(
    "options",
    [
        {"head": "bernoulli", "dim": 3, "hidden_sizes": (10**12,)},
        {"head": "bernoulli", "dim": 10**9, "hidden_sizes": (16,)},
        {"head": "categorical", "dim": 3, "num_values": 10**9},
        {"head": "logistic-mixture", "dim": 3, "num_values": 256, "num_components": 10**9},
        {"head": "histogram", "dim": 3, "num_values": 10**11},
        {"head": "bernoulli", "dim": 3, "masks": "multi-ordering", "num_masks": 10**9},
    ],
)
def test_absurd_model_sizes_are_refused_with_the_size_before_allocating(options) -> None:
    with pytest.raises(ResourceError, match=r"a model of [\d,]+ weights.* would need"):
        dk.create_model(**options)
    options = {"num_values": 2, **options}
    head_options = (
        {"num_components": options.pop("num_components")} if "num_components" in options else {}
    )
    if options["head"] == "histogram":  # a family of its own: its config, its build
        config = dk.HistogramConfig(options["dim"], options["num_values"])
        with pytest.raises(ResourceError, match="would need"):
            dk.HistogramModel.from_config(config)
        return
    config = dk.ModelConfig(**options, head_options=head_options)
    with pytest.raises(ResourceError, match="would need"):
        dk.build_model(config)


def test_sampling_and_scoring_arguments_raise_only_documented_errors() -> None:
    model = dk.create_model("bernoulli", 4, hidden_sizes=(8,))
    with pytest.raises(TypeError, match="generator must be a torch.Generator or None, got int"):
        model.sample(2, generator=3)
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        model.sample_naive(2, generator=3)
    for draw in (model.sample, model.sample_naive):
        with pytest.raises(ResourceError, match=r"1,000,000,000,000 samples of 4 variables"):
            draw(10**12)
    with pytest.raises(ResourceError, match="samples of 4 variables would need"):
        model.complete(torch.zeros(1, 4, dtype=torch.long).expand(10**11, 4), torch.zeros(4) > 0)
    with pytest.raises(ValueError, match="mask_indices must name at least one mask"):
        model.log_prob_per_mask(torch.zeros(3, 4, dtype=torch.long), mask_indices=[])


def test_seeds_outside_what_torch_takes_are_refused_with_the_range() -> None:
    any_order = dk.create_model("bernoulli", 4, hidden_sizes=(8,), masks="any-order", num_masks=2)
    calls = [
        lambda seed: dk.create_model("bernoulli", 4, seed=seed),
        lambda seed: dk.train.TrainConfig(seed=seed),
        lambda seed: any_order.draw_orderings(2, seed=seed),
    ]
    for call in calls:
        for seed in (-1, 2**63, 2**70):
            with pytest.raises(
                ValueError, match=r"seed must be an integer in 0\.\.9223372036854775807"
            ):
                call(seed)
    with pytest.raises(ResourceError, match="1,000,000,000 orderings drawn at inference"):
        any_order.draw_orderings(10**9)
