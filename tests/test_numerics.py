"""Numeric helpers: the fast log-sigmoid equals torch's, in values and derivatives."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from densitykit.numerics import log_sigmoid

EXTREMES = [
    -1e4,
    -200.0,
    -88.0,
    -30.0,
    -17.0,
    -1e-3,
    -1e-30,
    0.0,
    1e-30,
    1e-3,
    17.0,
    30.0,
    88.0,
    200.0,
    1e4,
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64])
def test_values_are_the_float64_values_rounded(dtype: torch.dtype) -> None:
    t = torch.cat([torch.linspace(-60, 60, 4001), torch.tensor(EXTREMES)]).to(dtype)
    expected = F.logsigmoid(t.double()).to(dtype)
    actual = log_sigmoid(t)
    assert actual.dtype == dtype
    assert torch.equal(actual, expected)
    # As accurate as torch's own kernel in that dtype, or more.
    exact = F.logsigmoid(t.double())
    assert (actual.double() - exact).abs().max() <= (F.logsigmoid(t).double() - exact).abs().max()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(-150, 150, width=32), min_size=1, max_size=40))
def test_gradient_is_sigmoid_of_minus_t(values: list[float]) -> None:
    t = torch.tensor(values, dtype=torch.float32, requires_grad=True)
    weights = torch.linspace(-1, 1, len(values))
    (grad,) = torch.autograd.grad((log_sigmoid(t) * weights).sum(), t)
    reference = t.detach().clone().requires_grad_(True)
    (expected,) = torch.autograd.grad((F.logsigmoid(reference) * weights).sum(), reference)
    torch.testing.assert_close(grad, expected, rtol=1e-6, atol=1e-7)


def test_second_derivative() -> None:
    t = torch.linspace(-20, 20, 41, requires_grad=True)
    (first,) = torch.autograd.grad(log_sigmoid(t).sum(), t, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), t)
    expected = -torch.sigmoid(t) * torch.sigmoid(-t)
    torch.testing.assert_close(second, expected.detach())


def test_float64_gradcheck_and_other_devices() -> None:
    t = torch.linspace(-30, 30, 13, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(log_sigmoid, (t,))
    meta = torch.empty(3, 4, device="meta")  # not the CPU: torch's kernel, shapes kept
    assert log_sigmoid(meta).shape == (3, 4)
