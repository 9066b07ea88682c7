"""Gate functions and UnitGate: ranges, the floored sqrt gate against float64, finite gradients, inits."""

import math

import pytest
import torch

from mrvae.beta import SQRT3, BetaRange
from mrvae.gates import (SQRT_GATE_FLOOR, FilmConditioner, GateFunction, GateInit, UnitGate, gate_function,
                         inverse_gate_function, open_gate_value, sqrt_gate)

#: Pre-activations from far negative to far positive, dense near 0 where 1 - exp(x) -> 0.
NEAR_ZERO = torch.cat([-torch.logspace(-12, 0, 400), torch.logspace(-12, 0, 400)])
PRE_ACTIVATIONS = torch.cat([torch.linspace(-60.0, 60.0, 4001), NEAR_ZERO, torch.tensor(
    [-1e4, -100.0, -88.0, 0.0, 88.0, 89.0, 100.0, 1e4, -float("inf"), float("inf")])])


def reference_sqrt_gate(x: torch.Tensor) -> torch.Tensor:
    """float64 sqrt(relu(1 - exp(x))), the gate of PAPER.md Eqn 7 without a floor."""
    return torch.sqrt(torch.relu(1.0 - torch.exp(x.double())))


@pytest.mark.parametrize("kind", list(GateFunction))
def test_gate_functions_lie_in_0_1(kind):
    values = gate_function(kind, PRE_ACTIVATIONS)
    assert values.shape == PRE_ACTIVATIONS.shape
    assert bool(torch.isfinite(values).all())
    assert float(values.min()) >= 0.0 and float(values.max()) <= 1.0
    assert float(values.min()) < 1e-6 and float(values.max()) > 1 - 1e-6  # the whole range is reached


@pytest.mark.parametrize("kind", list(GateFunction))
@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0])
def test_unit_gate_lies_in_0_scale_with_shape_b_out(kind, scale):
    gate = UnitGate(200, kind, scale=scale)
    with torch.no_grad():
        gate.weight.copy_(torch.linspace(-40.0, 40.0, 200))
        gate.bias.copy_(torch.linspace(30.0, -30.0, 200))
    u = torch.linspace(-SQRT3, SQRT3, 33).reshape(33, 1)
    values = gate(u).detach()
    assert values.shape == (33, 200)
    assert float(values.min()) >= 0.0 and float(values.max()) <= scale
    assert float(values.max()) > 0.99 * scale and float(values.min()) < 0.01 * scale
    assert gate(u[:1]).shape == (1, 200)


def test_sigmoid_gate_is_scale_times_sigmoid():
    gate = UnitGate(7, "sigmoid", scale=2.0)
    u = torch.randn(5, 1, generator=torch.Generator().manual_seed(0))
    expected = 2.0 * torch.sigmoid(u * gate.weight.detach() + gate.bias.detach())
    assert torch.allclose(gate(u), expected, rtol=1e-6, atol=0)


def test_sqrt_gate_matches_float64_reference_above_the_floor():
    x = torch.cat([torch.linspace(-30.0, 0.0, 20001), -torch.logspace(-7, 1, 2000)])
    reference = reference_sqrt_gate(x)
    above = (1.0 - torch.exp(x.double())) >= SQRT_GATE_FLOOR
    assert int(above.sum()) > 20000 and int((~above).sum()) > 50
    got = sqrt_gate(x).double()
    # float32 rounding of x itself moves 1 - exp(x) by up to |x|·2^-24 relative to the float64 value
    assert torch.allclose(got[above], reference[above], rtol=2e-4, atol=1e-6)
    assert bool((got[~above] >= 0).all()) and float(got[~above].max()) <= math.sqrt(SQRT_GATE_FLOOR) * 1.001
    assert torch.equal(sqrt_gate(torch.tensor([0.0, 1e-3, 5.0, 100.0])), torch.zeros(4))


def test_sqrt_gate_gradient_is_finite_and_bounded_everywhere():
    x = PRE_ACTIVATIONS.clone().requires_grad_()
    sqrt_gate(x).sum().backward()
    assert bool(torch.isfinite(x.grad).all()), x.detach()[~torch.isfinite(x.grad)]
    assert float(x.grad.abs().max()) <= 1.0 / math.sqrt(SQRT_GATE_FLOOR) * 1.001
    assert bool((x.grad <= 0).all())  # the gate closes as x grows
    assert bool((x.grad[x.detach() >= 0] == 0).all())


def test_sqrt_gate_gradient_matches_the_analytic_derivative_above_the_floor():
    x64 = torch.linspace(-12.0, -1e-3, 5001, dtype=torch.float64)
    x = x64.float().requires_grad_()
    sqrt_gate(x).sum().backward()
    e = torch.exp(x.detach().double())
    analytic = -e / (2.0 * torch.sqrt(1.0 - e))
    assert torch.allclose(x.grad.double(), analytic, rtol=2e-3, atol=1e-6)


def test_sqrt_unit_gate_parameter_gradients_are_finite_over_the_beta_range():
    """u over the standardised image of [a, b]; gates whose pre-activation crosses 0 inside it."""
    beta_range = BetaRange(0.01, 10.0)
    u = beta_range.standardise(beta_range.grid(2001)).reshape(-1, 1)
    crossings = torch.linspace(-SQRT3, SQRT3, 64)
    gate = UnitGate(128, "sqrt", scale=1.0)
    with torch.no_grad():  # zero pre-activation at u = crossing, with slopes of both signs and sizes
        slopes = torch.cat([torch.logspace(-3, 1, 64), -torch.logspace(-3, 1, 64)])
        gate.weight.copy_(slopes)
        gate.bias.copy_(-slopes * crossings.repeat(2))
    pre = gate.pre_activation(u).detach()
    assert float(pre.abs().min()) < 1e-6  # pre-activations reach 0, where 1 - exp(x) -> 0
    values = gate(u)
    values.sum().backward()
    assert bool(torch.isfinite(gate.weight.grad).all()) and bool(torch.isfinite(gate.bias.grad).all())
    # per-unit bound: |∂gate/∂x| <= 1/√floor for every example, so |∂/∂bias| <= B/√floor
    assert float(gate.bias.grad.abs().max()) <= u.shape[0] / math.sqrt(SQRT_GATE_FLOOR)
    # every unit open somewhere inside the range learns; the two closed over all of it (crossing at an end) not
    interior = torch.ones(128, dtype=torch.bool)
    interior[[0, 127]] = False
    assert bool((gate.bias.grad[interior] != 0).all()) and torch.equal(gate.bias.grad[~interior], torch.zeros(2))


def test_sqrt_gate_gradient_is_finite_at_a_saturated_pre_activation():
    """A pre-activation beyond float32's exp range (a bug once: expm1 overflowed and gave NaN)."""
    gate = UnitGate(3, "sqrt")
    with torch.no_grad():
        gate.weight.fill_(100.0)
        gate.bias.fill_(0.0)
    gate(torch.full((2, 1), SQRT3)).sum().backward()
    assert torch.equal(gate.weight.grad, torch.zeros(3)) and torch.equal(gate.bias.grad, torch.zeros(3))


@pytest.mark.parametrize("kind", list(GateFunction))
@pytest.mark.parametrize("scale", [0.5, 1.0, 2.0, 3.0])
def test_open_init_starts_every_gate_at_the_open_value_for_every_u(kind, scale):
    gate = UnitGate(16, kind, scale=scale, init=GateInit.OPEN)
    u = torch.linspace(-SQRT3, SQRT3, 41).reshape(41, 1)
    expected = open_gate_value(scale)
    assert expected == (1.0 if scale > 1 else 0.95 * scale)
    assert torch.allclose(gate(u), torch.full((41, 16), expected), rtol=1e-6, atol=0)
    assert torch.equal(gate.weight.detach(), torch.zeros(16))


def test_paper_init_is_uniform_minus_1_1():
    torch.manual_seed(0)
    gate = UnitGate(4096, init="paper")
    for param in (gate.weight.detach(), gate.bias.detach()):
        assert float(param.min()) >= -1.0 and float(param.max()) <= 1.0
        # U(-1, 1): mean 0 (SE √(1/3n)) and variance 1/3 (SE √((1/5 - 1/9)/n))
        assert abs(float(param.mean())) < 3 * math.sqrt(1 / 3 / 4096)
        assert abs(float(param.var()) - 1 / 3) < 3 * math.sqrt((1 / 5 - 1 / 9) / 4096)


@pytest.mark.parametrize("kind", list(GateFunction))
def test_inverse_gate_function_round_trips(kind):
    for value in (1e-3, 0.05, 0.5, 0.9, 0.999):
        x = inverse_gate_function(kind, value)
        assert float(gate_function(kind, torch.tensor(x, dtype=torch.float64))) == pytest.approx(value, rel=1e-9)
    for bad in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError, match=r"must lie in \(0, 1\), got"):
            inverse_gate_function(kind, bad)


def test_gate_errors_have_messages():
    with pytest.raises(ValueError, match=r"at least one unit, got out_features=0"):
        UnitGate(0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match=r"gate scale must be a finite number > 0"):
            UnitGate(4, scale=bad)
    with pytest.raises(ValueError, match=r"'tanh' is not a valid GateFunction"):
        UnitGate(4, "tanh")
    with pytest.raises(ValueError, match=r"'zeros' is not a valid GateInit"):
        UnitGate(4, init="zeros")
    with pytest.raises(ValueError, match=r"UnitGate expects u of shape \(B, 1\), got \(4,\)"):
        UnitGate(4)(torch.zeros(4))  # (B,) with B == out would otherwise broadcast silently
    with pytest.raises(ValueError, match=r"UnitGate expects u of shape \(B, 1\), got \(3, 2\)"):
        UnitGate(4)(torch.zeros(3, 2))


def test_film_starts_at_identity_and_learns():
    film = FilmConditioner(6, hidden=4)
    u = torch.linspace(-SQRT3, SQRT3, 9).reshape(9, 1)
    scale, shift = film(u)
    assert torch.equal(scale, torch.ones(9, 6)) and torch.equal(shift, torch.zeros(9, 6))
    (scale.sum() + shift.sum()).backward()
    assert float(film.out.bias.grad.abs().sum()) > 0
    with pytest.raises(ValueError, match=r"FiLM needs out_features >= 1 and hidden >= 1, got 0, 4"):
        FilmConditioner(0, hidden=4)
