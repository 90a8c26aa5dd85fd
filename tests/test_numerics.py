"""Numeric helpers: the fast log-sigmoid agrees with torch's, in values and derivatives."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from densitykit.numerics import bernoulli_log_prob, log_sigmoid

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
def test_values_are_within_a_rounding_of_one(dtype: torch.dtype) -> None:
    """Absolute error within about one rounding of 1 in the dtype (a relative error of
    p itself), and no worse than torch's own kernel by more than half of that."""
    t = torch.cat([torch.linspace(-100, 100, 20001), torch.tensor(EXTREMES)]).to(dtype)
    exact = F.logsigmoid(t.double())
    actual = log_sigmoid(t)
    assert actual.dtype == dtype
    assert bool(torch.isfinite(actual).all())
    eps = torch.finfo(dtype).eps if dtype != torch.float32 else 2 * torch.finfo(dtype).eps
    error = (actual.double() - exact).abs() / exact.abs().clamp(min=1.0)
    assert float(error.max()) <= eps
    torch_error = (F.logsigmoid(t).double() - exact).abs() / exact.abs().clamp(min=1.0)
    assert float(error.max()) <= float(torch_error.max()) + eps / 2
    # Far in the tails: exactly t below, 0 or a tiny negative value above.
    far = torch.tensor([-1e4], dtype=dtype)
    assert torch.equal(log_sigmoid(far), far)
    assert -1e-6 <= log_sigmoid(torch.tensor([30.0], dtype=dtype)).item() <= 0.0


def test_float64_is_torchs() -> None:
    t = torch.linspace(-800, 800, 1601, dtype=torch.float64)
    assert torch.equal(log_sigmoid(t), F.logsigmoid(t))


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16])
def test_bernoulli_log_prob_is_the_signed_log_sigmoid(dtype: torch.dtype) -> None:
    logits = (torch.linspace(-40, 40, 801) + 0.3).to(dtype).requires_grad_(True)
    x = torch.arange(801) % 2
    signed = logits.detach().clone().requires_grad_(True)
    expected = log_sigmoid(signed * (x.to(dtype) * 2 - 1))
    actual = bernoulli_log_prob(logits, x)
    assert torch.equal(actual, expected)
    weights = torch.linspace(-1, 1, 801).to(dtype)
    (grad,) = torch.autograd.grad((actual * weights).sum(), logits)
    (want,) = torch.autograd.grad((expected * weights).sum(), signed)
    tolerance = 1e-6 if dtype != torch.bfloat16 else 1e-2
    torch.testing.assert_close(grad, want, rtol=tolerance, atol=tolerance)
    torch.testing.assert_close(  # the derivative is x - sigmoid(l)
        grad.double(),
        (weights * (x - torch.sigmoid(logits.detach()))).double(),
        rtol=0,
        atol=tolerance,
    )
