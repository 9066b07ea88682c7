"""Conditioned Linear / Conv2d / ConvTranspose2d: shapes, gates against manual products, FiLM, errors."""

import re

import pytest
import torch
from torch import nn

from mrvae.beta import SQRT3
from mrvae.gates import GateFunction, GateInit, UnitGate, open_gate_value
from mrvae.layers import (PLAIN, Conditioning, ConditionedConv2d, ConditionedConvTranspose2d, ConditionedLinear,
                          ConditionedSequential, ConditioningSpec, ModelConditioning)

B = 5


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def spread_u(batch: int = B) -> torch.Tensor:
    return torch.linspace(-SQRT3, SQRT3, batch).reshape(batch, 1)


def make_layer(kind: str, spec: ConditioningSpec, seed: int = 0) -> nn.Module:
    """One conditioned layer per kind with the same base weights for the same seed."""
    torch.manual_seed(seed)
    if kind == "linear":
        return ConditionedLinear(6, 4, spec)
    if kind == "conv":
        return ConditionedConv2d(3, 4, 3, stride=2, padding=1, spec=spec)
    return ConditionedConvTranspose2d(3, 4, 4, stride=2, padding=1, output_padding=1, spec=spec)


def make_input(kind: str) -> torch.Tensor:
    shape = (B, 6) if kind == "linear" else (B, 3, 7, 7)
    return torch.randn(shape, generator=generator(1))


EXPECTED_SHAPES = {"linear": (B, 4), "conv": (B, 4, 4, 4), "convT": (B, 4, 15, 15)}
KINDS = list(EXPECTED_SHAPES)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("function", list(GateFunction))
def test_gate_output_shape_and_per_unit_broadcast(kind, function):
    layer = make_layer(kind, ConditioningSpec(Conditioning.GATE, function, scale=2.0))
    x, u = make_input(kind), spread_u()
    out = layer(x, u)
    assert out.shape == EXPECTED_SHAPES[kind]
    gate = layer.gate(u)
    assert gate.shape == (B, 4)
    base = layer.base(x)
    manual = gate * base if kind == "linear" else gate[:, :, None, None] * base
    assert torch.equal(out, manual)
    assert not torch.allclose(out, base)  # the gate does change the output


@pytest.mark.parametrize("kind", KINDS)
def test_u_of_shape_1_1_broadcasts_over_the_batch(kind):
    layer = make_layer(kind, ConditioningSpec())
    x = make_input(kind)
    u = torch.full((1, 1), 0.3)
    assert torch.allclose(layer(x, u), layer(x, u.expand(B, 1)), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_the_gate_parameters(kind):
    layer = make_layer(kind, ConditioningSpec(Conditioning.GATE, GateFunction.SQRT, scale=1.0))
    with torch.no_grad():  # keep every unit open (x < 0) somewhere in the batch
        layer.gate.bias.fill_(-0.5)
    x, u = make_input(kind), spread_u()
    (layer(x, u) ** 2).sum().backward()
    for param in (layer.gate.weight, layer.gate.bias, layer.base.weight, layer.base.bias):
        assert param.grad is not None and bool((param.grad != 0).all())
    # second computation: gradients of the same loss written out by hand
    gate = UnitGate(4, GateFunction.SQRT, scale=1.0)
    gate.load_state_dict(layer.gate.state_dict())
    base = layer.base(x).detach()
    manual = gate(u) if kind == "linear" else gate(u)[:, :, None, None]
    ((manual * base) ** 2).sum().backward()
    assert torch.allclose(layer.gate.weight.grad, gate.weight.grad, rtol=1e-5)
    assert torch.allclose(layer.gate.bias.grad, gate.bias.grad, rtol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_film_at_initialisation_equals_none_exactly(kind):
    plain = make_layer(kind, PLAIN, seed=3)
    film = make_layer(kind, ConditioningSpec(Conditioning.FILM, film_hidden=8), seed=3)
    assert torch.equal(plain.base.weight, film.base.weight)
    x = make_input(kind)
    assert torch.equal(film(x, spread_u()), plain(x, None))
    assert film.film is not None and film.gate is None


@pytest.mark.parametrize("kind", KINDS)
def test_film_applies_scale_and_shift_per_unit(kind):
    layer = make_layer(kind, ConditioningSpec(Conditioning.FILM))
    with torch.no_grad():
        layer.film.out.weight.normal_(generator=generator(4))
        layer.film.out.bias.normal_(generator=generator(5))
    x, u = make_input(kind), spread_u()
    scale, shift = layer.film(u)
    if kind != "linear":
        scale, shift = scale[:, :, None, None], shift[:, :, None, None]
    assert torch.allclose(layer(x, u), scale * layer.base(x) + shift, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_open_init_layer_is_the_open_value_times_the_base(kind, scale):
    layer = make_layer(kind, ConditioningSpec(Conditioning.GATE, GateFunction.SQRT, scale, GateInit.OPEN))
    x = make_input(kind)
    assert torch.allclose(layer(x, spread_u()), open_gate_value(scale) * layer.base(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", KINDS)
def test_none_ignores_u_and_has_no_conditioning_parameters(kind):
    layer = make_layer(kind, PLAIN)
    x = make_input(kind)
    assert torch.equal(layer(x), layer.base(x))
    assert torch.equal(layer(x, spread_u()), layer.base(x))
    assert layer.gate is None and layer.film is None
    assert {name.split(".")[0] for name, _ in layer.named_parameters()} == {"base"}
    assert layer.conditioning is Conditioning.NONE


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("conditioning", [Conditioning.GATE, Conditioning.FILM])
def test_conditioned_layer_without_u_raises(kind, conditioning):
    layer = make_layer(kind, ConditioningSpec(conditioning))
    name = type(layer).__name__
    with pytest.raises(ValueError, match=rf"{name} is conditioned on β but got u=None; pass u of shape \(B, 1\)"):
        layer(make_input(kind))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad_shape", [(B,), (B, 2), (B + 1, 1), (B, 1, 1)])
def test_conditioned_layer_with_a_wrong_u_shape_raises(kind, bad_shape):
    layer = make_layer(kind, ConditioningSpec())
    message = rf"{type(layer).__name__} expects u of shape \({B}, 1\) or \(1, 1\), got {re.escape(str(bad_shape))}"
    with pytest.raises(ValueError, match=message):
        layer(make_input(kind), torch.zeros(bad_shape))


def test_conditioned_sequential_passes_u_only_to_conditioned_children():
    torch.manual_seed(0)
    first, second = ConditionedLinear(6, 8), ConditionedLinear(8, 3, ConditioningSpec(gate=GateFunction.SQRT))
    stack = ConditionedSequential(first, nn.ReLU(), second)
    assert len(stack) == 3 and stack[1].__class__ is nn.ReLU
    x, u = make_input("linear"), spread_u()
    assert torch.equal(stack(x, u), second(torch.relu(first(x, u)), u))
    with pytest.raises(ValueError, match=r"u=None"):
        stack(x)


def test_conditioning_spec_parses_and_validates():
    spec = ConditioningSpec("gate", "sqrt", 1.5, "open", 4)
    assert (spec.kind, spec.gate, spec.init) == (Conditioning.GATE, GateFunction.SQRT, GateInit.OPEN)
    plain = spec.unconditioned()
    assert plain.kind is Conditioning.NONE and (plain.gate, plain.scale, plain.init) == (spec.gate, 1.5, spec.init)
    with pytest.raises(ValueError, match=r"gate scale must be > 0, got 0.0"):
        ConditioningSpec(scale=0.0)
    with pytest.raises(ValueError, match=r"gate scale must be > 0, got nan"):
        ConditioningSpec(scale=float("nan"))
    with pytest.raises(ValueError, match=r"film_hidden must be >= 1, got 0"):
        ConditioningSpec(film_hidden=0)
    with pytest.raises(ValueError, match=r"'gated' is not a valid Conditioning; choose one of: none, gate, film"):
        ConditioningSpec("gated")


def test_model_conditioning_gives_encoder_and_decoder_specs():
    default = ModelConditioning()
    assert default.encoder() == ConditioningSpec(Conditioning.GATE, GateFunction.SIGMOID, 2.0, GateInit.PAPER, 16)
    paper = ModelConditioning(encoder_gate="sigmoid", decoder_gate="sqrt", gate_scale=1.0)
    assert paper.encoder().gate is GateFunction.SIGMOID and paper.decoder().gate is GateFunction.SQRT
    assert paper.decoder().scale == 1.0
    with pytest.raises(ValueError, match=r"gate scale must be > 0, got -1.0"):
        ModelConditioning(gate_scale=-1.0)
