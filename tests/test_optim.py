"""Optimizers, learning-rate schedules and weight averaging (densitykit.optim), alone."""

from __future__ import annotations

import pytest
import torch

from densitykit.optim import (
    LR_SCHEDULES,
    OPTIMIZERS,
    WeightAverage,
    make_optimizer,
    scheduled_lr,
)

EXPECTED_TYPES = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "adagrad": torch.optim.Adagrad,
}


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_is_built_with_its_rate_and_decay(name: str) -> None:
    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = make_optimizer([weight], name=name, lr=0.5, weight_decay=0.1)
    assert type(optimizer) is EXPECTED_TYPES[name]
    assert optimizer.defaults["lr"] == 0.5 and optimizer.defaults["weight_decay"] == 0.1
    weight.sum().backward()
    optimizer.step()
    assert bool((weight < 1).all())  # a step downhill


def test_adagrad_takes_the_papers_first_step() -> None:
    """AdaGrad's first step is lr * g / sqrt(g^2) = lr * sign(g), whatever the gradient."""
    weight = torch.nn.Parameter(torch.zeros(2))
    optimizer = make_optimizer([weight], name="adagrad", lr=0.01)
    (weight * torch.tensor([3.0, -0.5])).sum().backward()
    optimizer.step()
    assert weight.detach().tolist() == pytest.approx([-0.01, 0.01], rel=1e-6)


def test_unknown_names_list_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"one of 'adam', 'adamw', 'adagrad', got 'sgd'"):
        make_optimizer([torch.nn.Parameter(torch.zeros(1))], name="sgd")
    with pytest.raises(ValueError, match=r"one of 'constant', 'cosine', got 'linear'"):
        scheduled_lr(1.0, "linear", 0, 10)


def test_cosine_falls_from_the_rate_to_zero_and_constant_stays() -> None:
    rates = [scheduled_lr(0.1, "cosine", step, 100) for step in range(101)]
    assert rates[0] == 0.1 and rates[50] == pytest.approx(0.05) and rates[100] == 0.0
    assert rates == sorted(rates, reverse=True)
    assert scheduled_lr(0.1, "cosine", 150, 100) == 0.0  # past the end: stays at the floor
    assert {scheduled_lr(0.1, "constant", step, 100) for step in range(101)} == {0.1}
    assert LR_SCHEDULES == ("constant", "cosine")


def test_weight_average_is_the_bias_corrected_exponential_average() -> None:
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    decay = 0.9
    average = WeightAverage(model, decay)
    seen: list[dict[str, torch.Tensor]] = []
    for _ in range(3):
        with torch.no_grad():
            for param in model.parameters():
                param.add_(torch.randn_like(param))
        seen.append({k: v.detach().clone() for k, v in model.named_parameters()})
        average.update(model)
    steps = len(seen)
    for name, value in average.averaged().items():
        # sum_i (1 - d) d^(t - i) w_i / (1 - d^t), by hand
        expected = sum((1 - decay) * decay ** (steps - i) * w[name] for i, w in enumerate(seen, 1))
        assert torch.allclose(value, expected / (1 - decay**steps), atol=1e-6)
    live = {k: v.detach().clone() for k, v in model.named_parameters()}
    with average.applied(model):
        for name, param in model.named_parameters():
            assert torch.equal(param, average.averaged()[name])
    for name, param in model.named_parameters():
        assert torch.equal(param, live[name])  # exactly the live weights again


def test_weight_average_saves_and_refuses_a_mismatch() -> None:
    model = torch.nn.Linear(2, 1)
    average = WeightAverage(model, 0.99)
    average.update(model)
    again = WeightAverage(torch.nn.Linear(2, 1), 0.99)
    again.load_state_dict(average.state_dict())
    assert again.steps == 1
    assert all(torch.equal(again.averaged()[k], v) for k, v in average.averaged().items())
    with pytest.raises(ValueError, match="does not match"):
        WeightAverage(model, 0.9).load_state_dict(average.state_dict())
    with pytest.raises(ValueError, match=r"decay must be a number in \(0, 1\), got 1.0"):
        WeightAverage(model, 1.0)
    with pytest.raises(ValueError, match="no weights averaged yet"):
        WeightAverage(model, 0.5).averaged()
