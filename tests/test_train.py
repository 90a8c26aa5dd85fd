"""The training loop on tiny data, through its public seams: fit, evaluate, config, callbacks."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

import densitykit as dk
from densitykit.train import Callback, TrainConfig, TrainState, evaluate, fit


class Recorder(Callback):
    """Keeps what the loop shows: the active mask and the gradient norm after each step,
    and the model's weights after each epoch."""

    def __init__(self, model: dk.DensityModel) -> None:
        self.model = model
        self.masks: list[int] = []
        self.grad_norms: list[float] = []
        self.weights: list[dict[str, torch.Tensor]] = []

    def on_batch_end(self, state: TrainState, loss: float) -> None:
        if self.model.family == "made":  # a histogram has no masks
            self.masks.append(self.model.backbone.mask_index)
        grads = [p.grad.detach().flatten() for p in self.model.parameters() if p.grad is not None]
        self.grad_norms.append(float(torch.cat(grads).norm()))

    def on_epoch_end(self, state: TrainState, record: dict) -> None:
        self.weights.append({k: v.clone() for k, v in self.model.state_dict().items()})


def diverging_histogram() -> tuple[dk.HistogramModel, torch.Tensor, torch.Tensor]:
    """A histogram trained on ones and validated on zeros: the validation NLL gets worse
    after every step, so only epoch 1 improves on the starting point (infinity)."""
    model = dk.create_model("histogram", 1, 2)
    train = torch.ones(8, 1, dtype=torch.long)
    val = torch.zeros(4, 1, dtype=torch.long)
    return model, train, val


def test_patience_stops_early_and_the_best_weights_come_back() -> None:
    model, train, val = diverging_histogram()
    recorder = Recorder(model)
    config = TrainConfig(epochs=10, batch_size=4, lr=0.1, patience=2, device="cpu")
    result = fit(model, train, val, config, callbacks=[recorder])
    assert [r["improved"] for r in result.history] == [True, False, False]
    assert result.stopped_early and result.state.stopped_early
    assert result.best_epoch == 1 and len(recorder.weights) == 3
    val_nlls = [r["val_nll"] for r in result.history]
    assert val_nlls == sorted(val_nlls) and result.best_val_nll == val_nlls[0]
    for name, value in model.state_dict().items():  # epoch 1's weights, not the last ones
        assert torch.equal(value, recorder.weights[0][name])
        assert not torch.equal(value, recorder.weights[-1][name])
    assert evaluate(model, val) == pytest.approx(result.best_val_nll)


def test_without_patience_every_epoch_runs() -> None:
    model, train, val = diverging_histogram()
    config = TrainConfig(epochs=4, batch_size=4, lr=0.1, patience=None, device="cpu")
    result = fit(model, train, val, config)
    assert len(result.history) == 4 and not result.stopped_early
    assert result.best_epoch == 1 and result.state.epochs_without_improvement == 3
    assert [r["step"] for r in result.history] == [2, 4, 6, 8]


@pytest.mark.parametrize(("mask_every", "expected"), [(2, [0, 1, 1, 2, 2, 0, 0, 1]), (0, [0] * 8)])
def test_masks_cycle_every_mask_every_steps(mask_every: int, expected: list[int]) -> None:
    model = dk.create_model("bernoulli", 3, hidden_sizes=(6,), masks="random", num_masks=3)
    data = torch.randint(0, 2, (8, 3), generator=torch.Generator().manual_seed(0))
    recorder = Recorder(model)
    config = TrainConfig(epochs=2, batch_size=2, mask_every=mask_every, patience=None, device="cpu")
    result = fit(model, data, data, config, callbacks=[recorder])
    # The active mask after each of the 8 steps: the next one after every second step.
    assert recorder.masks == [(step // 2) % 3 if mask_every else 0 for step in range(1, 9)]
    assert recorder.masks == expected
    assert result.state.family_state["mask_index"] == expected[-1]


def test_grad_clip_bounds_the_gradient_norm_of_every_step() -> None:
    def norms(grad_clip: float | None) -> list[float]:
        torch.manual_seed(0)
        model = dk.create_model("categorical", 2, 3, hidden_sizes=(8,))
        data = torch.randint(0, 3, (16, 2), generator=torch.Generator().manual_seed(1))
        recorder = Recorder(model)
        config = TrainConfig(epochs=1, batch_size=4, grad_clip=grad_clip, device="cpu")
        fit(model, data, data, config, callbacks=[recorder])
        return recorder.grad_norms

    free, clipped = norms(None), norms(1e-3)
    assert len(free) == len(clipped) == 4
    assert min(free) > 1e-2  # clipping has something to do
    assert clipped == pytest.approx([1e-3] * 4, rel=1e-4)  # rescaled to exactly the bound
    with pytest.raises(ValueError, match="grad_clip must be positive"):
        TrainConfig(grad_clip=0.0)


def test_evaluation_mixes_the_first_k_masks_by_log_mean_exp() -> None:
    torch.manual_seed(0)
    model = dk.create_model(
        "categorical", 2, 3, hidden_sizes=(8,), masks="multi-ordering", num_masks=4
    ).double()
    data = torch.tensor([[0, 1], [2, 2], [1, 0]])
    per_mask = np.array(
        [[float(model.log_prob(x, mask=k).detach()) for x in data] for k in range(4)]
    )  # (masks, examples), one model at a time
    for k in (1, 2, 4):
        mixture = np.log(np.exp(per_mask[:k]).mean(axis=0))  # log (1/k) sum_j p_j(x)
        assert evaluate(model, data, num_masks=k) == pytest.approx(-mixture.mean(), rel=1e-12)
    with pytest.raises(ValueError, match="num_masks must be in 1..4"):
        evaluate(model, data, num_masks=5)


def test_fit_validates_with_eval_masks() -> None:
    torch.manual_seed(0)
    model = dk.create_model("bernoulli", 3, hidden_sizes=(6,), masks="random", num_masks=3)
    data = torch.randint(0, 2, (12, 3), generator=torch.Generator().manual_seed(0))
    config = TrainConfig(epochs=1, batch_size=4, eval_masks=2, patience=None, device="cpu")
    result = fit(model, data, data, config)
    assert result.history[0]["val_nll"] == pytest.approx(evaluate(model, data, num_masks=2))
    assert result.history[0]["val_nll"] != pytest.approx(evaluate(model, data))


def test_fit_takes_uint8_data_and_integer_like_options() -> None:
    model = dk.create_model("bernoulli", 3, hidden_sizes=(4,))
    data = torch.randint(0, 2, (10, 3), dtype=torch.uint8)
    config = TrainConfig(epochs=np.int64(1), batch_size=np.int32(5), device="cpu")
    assert type(config.epochs) is int and config.to_dict()["batch_size"] == 5
    result = fit(model, data, data, config)
    assert math.isfinite(result.best_val_nll)
    with pytest.raises(ValueError, match=r"support 0..1"):
        fit(model, data + 1, data, config)


# -- the levers: optimizer, schedule, weight averaging, time budget --------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"optimizer": "sgd"}, "optimizer must be one of 'adam', 'adamw', 'adagrad', got 'sgd'"),
        ({"lr_schedule": "step"}, "lr_schedule must be one of 'constant', 'cosine', got 'step'"),
        ({"ema_decay": 1.0}, r"ema_decay must be in \(0, 1\) or None, got 1.0"),
        ({"ema_decay": 0}, r"ema_decay must be in \(0, 1\) or None, got 0"),
        ({"time_budget_minutes": 0}, "time_budget_minutes must be a positive number"),
        ({"time_budget_minutes": "5"}, "time_budget_minutes must be a positive number"),
    ],
)
def test_lever_settings_are_checked(options: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**options)


def test_a_config_saved_before_the_levers_loads_with_their_defaults() -> None:
    old = TrainConfig().to_dict()
    for key in ("optimizer", "lr_schedule", "ema_decay", "time_budget_minutes"):
        del old[key]
    config = TrainConfig.from_dict(old)
    assert (config.optimizer, config.lr_schedule) == ("adam", "constant")
    assert config.ema_decay is None and config.time_budget_minutes is None
    state = TrainState().to_dict()
    del state["weight_average"]
    assert TrainState.from_dict(state).weight_average is None


def tiny_run(
    epochs: int = 3, state: TrainState | None = None, seed: int = 0, callbacks=(), **options
) -> tuple[dk.AutoregressiveModel, dk.train.TrainResult]:
    torch.manual_seed(seed)
    model = dk.create_model("bernoulli", 4, hidden_sizes=(8,))
    data = torch.randint(0, 2, (48, 4), generator=torch.Generator().manual_seed(1))
    config = TrainConfig(epochs=epochs, batch_size=16, patience=None, device="cpu", **options)
    return model, fit(model, data, data[:16], config, state=state, callbacks=callbacks)


def test_the_optimizer_option_picks_the_optimizer() -> None:
    adam_model, adam = tiny_run(epochs=1)
    adagrad_model, adagrad = tiny_run(epochs=1, optimizer="adagrad", lr=0.01)
    assert "exp_avg" in adam.state.optimizer["state"][0]
    assert "sum" in adagrad.state.optimizer["state"][0]  # AdaGrad's sum of squared gradients
    weights = adam_model.state_dict()
    assert any(not torch.equal(v, weights[k]) for k, v in adagrad_model.state_dict().items())


def test_the_cosine_schedule_sets_every_steps_rate() -> None:
    class Rates(Callback):
        def __init__(self) -> None:
            self.rates: list[float] = []

        def on_batch_end(self, state: TrainState, loss: float) -> None:
            self.rates.append(optimizer_of[0].param_groups[0]["lr"])

    optimizer_of: list = []
    original = dk.train.make_optimizer

    def keep(*args, **kwargs):
        optimizer_of.append(original(*args, **kwargs))
        return optimizer_of[0]

    rates = Rates()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dk.train, "make_optimizer", keep)
        _, result = tiny_run(epochs=2, lr=0.1, lr_schedule="cosine", callbacks=[rates])
    total = 2 * 3  # 2 epochs of 3 batches
    assert rates.rates == pytest.approx(
        [0.1 * 0.5 * (1 + math.cos(math.pi * t / total)) for t in range(total)]
    )
    assert [r["lr"] for r in result.history] == pytest.approx([rates.rates[2], rates.rates[5]])
    _, constant = tiny_run(epochs=2, lr=0.1)
    assert [r["lr"] for r in constant.history] == [0.1, 0.1]


def test_with_ema_the_best_weights_are_the_hand_computed_average() -> None:
    class Weights(Callback):
        def __init__(self) -> None:
            self.seen: list[dict[str, torch.Tensor]] = []

        def on_batch_end(self, state: TrainState, loss: float) -> None:
            self.seen.append({k: v.detach().clone() for k, v in model_of[0].named_parameters()})

    model_of: list = []
    weights = Weights()
    original = dk.train.WeightAverage

    def keep(model, decay):
        model_of.append(model)
        return original(model, decay)

    decay = 0.5
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(dk.train, "WeightAverage", keep)
        model, result = tiny_run(epochs=1, ema_decay=decay, callbacks=[weights])
    assert len(weights.seen) == 3 and result.best_epoch == 1
    live = copy.deepcopy(model)
    live.load_state_dict(result.state.model)
    live_parameters = dict(live.named_parameters())
    for name, value in model.named_parameters():  # the restored (best) weights
        expected = sum(
            (1 - decay) * decay ** (3 - i) * w[name] for i, w in enumerate(weights.seen, 1)
        ) / (1 - decay**3)
        assert torch.allclose(value, expected, atol=1e-6), name
        assert torch.equal(live_parameters[name], weights.seen[-1][name])  # live ones kept
    data = torch.randint(0, 2, (48, 4), generator=torch.Generator().manual_seed(1))
    assert result.best_val_nll == pytest.approx(evaluate(model, data[:16]))


class Snapshot(Callback):
    """Keeps a copy of the loop state after epoch ``epoch``, as the run folder would."""

    def __init__(self, epoch: int) -> None:
        self.epoch, self.state = epoch, None

    def on_epoch_end(self, state: TrainState, record: dict) -> None:
        if state.epoch == self.epoch:
            self.state = TrainState.from_dict(copy.deepcopy(state.to_dict()))


@pytest.mark.parametrize(
    "options",
    [
        {"ema_decay": 0.9},
        {"optimizer": "adagrad", "lr": 0.01, "lr_schedule": "cosine"},
        {"optimizer": "adamw", "weight_decay": 0.1, "lr_schedule": "cosine", "ema_decay": 0.99},
    ],
)
def test_a_run_with_the_levers_resumes_bit_identically(options: dict) -> None:
    snapshot = Snapshot(epoch=1)
    straight_model, straight = tiny_run(callbacks=[snapshot], **options)
    assert snapshot.state is not None
    if "ema_decay" in options:
        assert snapshot.state.weight_average["steps"] == 3
    resumed_model, resumed = tiny_run(state=snapshot.state, seed=123, **options)
    for key, value in straight_model.state_dict().items():
        assert torch.equal(value, resumed_model.state_dict()[key]), key
    timing = ("seconds",)
    assert [{k: v for k, v in r.items() if k not in timing} for r in resumed.history] == [
        {k: v for k, v in r.items() if k not in timing} for r in straight.history
    ]


def test_the_history_says_why_training_stopped() -> None:
    _, budget = tiny_run(epochs=5, time_budget_minutes=1e-9)
    assert len(budget.history) == 1 and budget.stop_reason == "time budget"
    assert budget.history[0]["stop_reason"] == "time budget" and not budget.stopped_early
    _, full = tiny_run(epochs=2)
    assert [r["stop_reason"] for r in full.history] == [None, "epochs"]
    model, train, val = diverging_histogram()
    config = TrainConfig(epochs=10, batch_size=4, lr=0.1, patience=2, device="cpu")
    assert fit(model, train, val, config).stop_reason == "patience"


def test_dropout_acts_in_training_only_and_resumes_bit_identically() -> None:
    torch.manual_seed(0)
    model = dk.create_model("bernoulli", 4, hidden_sizes=(32,), dropout=0.5)
    x = torch.randint(0, 2, (8, 4), generator=torch.Generator().manual_seed(2))
    model.train()
    assert not torch.equal(model.log_prob(x), model.log_prob(x))  # a fresh draw each call
    model.eval()
    assert torch.equal(model.log_prob(x), model.log_prob(x))
    full = dk.create_model("bernoulli", 4, hidden_sizes=(32,))
    full.load_state_dict(model.state_dict())
    full.eval()
    assert torch.equal(model.log_prob(x), full.log_prob(x))  # eval mode keeps every unit
    samples = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(samples, full.sample(5, generator=torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="dropout"):
        dk.create_model("bernoulli", 4, hidden_sizes=(8,), dropout=1.0)

    def run(state: TrainState | None = None, callbacks=()) -> dk.AutoregressiveModel:
        torch.manual_seed(0)
        net = dk.create_model("bernoulli", 4, hidden_sizes=(16,), dropout=0.3)
        data = torch.randint(0, 2, (48, 4), generator=torch.Generator().manual_seed(1))
        config = TrainConfig(epochs=3, batch_size=16, patience=None, device="cpu")
        torch.manual_seed(99 if state is not None else 0)  # the state must bring the draws
        fit(net, data, data[:16], config, state=state, callbacks=callbacks)
        return net

    snapshot = Snapshot(epoch=1)
    straight = run(callbacks=[snapshot])
    resumed = run(state=copy.deepcopy(snapshot.state))
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    snapshot.state.device_rng = None  # without the saved draws, the run goes elsewhere
    elsewhere = run(state=snapshot.state).state_dict()
    assert any(not torch.equal(v, elsewhere[k]) for k, v in straight.state_dict().items())


class Draws:
    """Training examples drawn afresh per epoch, as a function of the epoch alone."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    def __call__(self, epoch: int) -> torch.Tensor:
        self.asked.append(epoch)
        return torch.randint(0, 2, (48, 4), generator=torch.Generator().manual_seed(100 + epoch))


def test_each_epoch_trains_on_its_own_draw_and_a_resumed_run_on_the_same_ones() -> None:
    def run(state: TrainState | None = None, callbacks=(), draws=None) -> dk.AutoregressiveModel:
        torch.manual_seed(0)
        net = dk.create_model("bernoulli", 4, hidden_sizes=(16,))
        data = torch.randint(0, 2, (48, 4), generator=torch.Generator().manual_seed(1))
        config = TrainConfig(epochs=3, batch_size=16, patience=None, device="cpu")
        fit(net, data, data[:16], config, state=state, callbacks=callbacks, train_draws=draws)
        return net

    draws, snapshot = Draws(), Snapshot(epoch=1)
    straight = run(callbacks=[snapshot], draws=draws)
    assert draws.asked == [0, 1, 2]
    again = Draws()
    resumed = run(state=copy.deepcopy(snapshot.state), draws=again)
    assert again.asked == [1, 2]
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    fixed = run().state_dict()  # the fixed training set gives another model
    assert any(not torch.equal(v, fixed[k]) for k, v in straight.state_dict().items())


def test_an_epoch_draw_of_the_wrong_shape_or_values_is_refused() -> None:
    model = dk.create_model("bernoulli", 4, hidden_sizes=(8,))
    data = torch.randint(0, 2, (48, 4), generator=torch.Generator().manual_seed(1))
    config = TrainConfig(epochs=1, batch_size=16, device="cpu")
    with pytest.raises(ValueError, match=r"train_draws\(0\) must give .* \(48, 4\), got"):
        fit(model, data, data[:16], config, train_draws=lambda epoch: data[:10])
    with pytest.raises(ValueError):
        fit(model, data, data[:16], config, train_draws=lambda epoch: data + 2)
