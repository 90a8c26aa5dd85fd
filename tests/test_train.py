"""The training loop on tiny data, through its public seams: fit, evaluate, config, callbacks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import densitykit as dk
from densitykit.train import Callback, TrainConfig, TrainState, evaluate, fit


class Recorder(Callback):
    """Keeps what the loop shows: the active mask and the gradient norm after each step,
    and the model's weights after each epoch."""

    def __init__(self, model: dk.AutoregressiveModel) -> None:
        self.model = model
        self.masks: list[int] = []
        self.grad_norms: list[float] = []
        self.weights: list[dict[str, torch.Tensor]] = []

    def on_batch_end(self, state: TrainState, loss: float) -> None:
        if self.model.backbone is not None:
            self.masks.append(self.model.backbone.mask_index)
        grads = [p.grad.detach().flatten() for p in self.model.parameters() if p.grad is not None]
        self.grad_norms.append(float(torch.cat(grads).norm()))

    def on_epoch_end(self, state: TrainState, record: dict) -> None:
        self.weights.append({k: v.clone() for k, v in self.model.state_dict().items()})


def diverging_histogram() -> tuple[dk.AutoregressiveModel, torch.Tensor, torch.Tensor]:
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
    assert result.state.mask_index == expected[-1]


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
