"""Conditioned Linear / Conv2d / ConvTranspose2d / Embedding: shapes, gates against manual products, FiLM,
the one conditioning dataclass and its roles, errors."""

import re

import pytest
import torch
from torch import nn

from mrvae.beta import SQRT3
from mrvae.gates import GateFunction, GateInit, UnitGate, open_gate_value
from mrvae.config import ModelConfig
from mrvae.layers import (PLAIN, Conditioning, ConditionedConv2d, ConditionedConvTranspose2d, ConditionedEmbedding,
                          ConditionedLayer, ConditionedLinear, ConditionedSequential, ModelConditioning, Role)

B = 5


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def spread_u(batch: int = B) -> torch.Tensor:
    return torch.linspace(-SQRT3, SQRT3, batch).reshape(batch, 1)


def make_layer(kind: str, spec: ModelConditioning, seed: int = 0) -> nn.Module:
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
    layer = make_layer(kind, ModelConditioning(Conditioning.GATE, function, gate_scale=2.0))
    x, u = make_input(kind), spread_u()
    out = layer(x, u)
    assert out.shape == EXPECTED_SHAPES[kind]
    gate = layer.gate(u)
    assert gate.shape == (B, 4)
    base = layer.base(x)
    manual = gate * base if kind == "linear" else gate[:, :, None, None] * base
    # the layer makes its pre-activation with one addcmul, which may round the last bit differently
    torch.testing.assert_close(out, manual, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(out, base)  # the gate does change the output


@pytest.mark.parametrize("kind", KINDS)
def test_u_of_shape_1_1_broadcasts_over_the_batch(kind):
    layer = make_layer(kind, ModelConditioning())
    x = make_input(kind)
    u = torch.full((1, 1), 0.3)
    assert torch.allclose(layer(x, u), layer(x, u.expand(B, 1)), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("kind", KINDS)
def test_gradients_reach_the_gate_parameters(kind):
    layer = make_layer(kind, ModelConditioning(Conditioning.GATE, GateFunction.SQRT, gate_scale=1.0))
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
    film = make_layer(kind, ModelConditioning(Conditioning.FILM, film_hidden=8), seed=3)
    assert torch.equal(plain.base.weight, film.base.weight)
    x = make_input(kind)
    assert torch.equal(film(x, spread_u()), plain(x, None))
    assert film.film is not None and film.gate is None


@pytest.mark.parametrize("kind", KINDS)
def test_film_applies_scale_and_shift_per_unit(kind):
    layer = make_layer(kind, ModelConditioning(Conditioning.FILM))
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
    layer = make_layer(kind, ModelConditioning(Conditioning.GATE, GateFunction.SQRT, gate_scale=scale, gate_init=GateInit.OPEN))
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
    layer = make_layer(kind, ModelConditioning(conditioning))
    name = type(layer).__name__
    with pytest.raises(ValueError, match=rf"{name} is conditioned on β but got u=None; pass u of shape \(B, 1\)"):
        layer(make_input(kind))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad_shape", [(B,), (B, 2), (B + 1, 1), (B, 1, 1)])
def test_conditioned_layer_with_a_wrong_u_shape_raises(kind, bad_shape):
    layer = make_layer(kind, ModelConditioning())
    message = rf"{type(layer).__name__} expects u of shape \({B}, 1\) or \(1, 1\), got {re.escape(str(bad_shape))}"
    with pytest.raises(ValueError, match=message):
        layer(make_input(kind), torch.zeros(bad_shape))


def test_conditioned_sequential_passes_u_only_to_conditioned_children():
    torch.manual_seed(0)
    first, second = ConditionedLinear(6, 8), ConditionedLinear(8, 3, ModelConditioning(encoder_gate=GateFunction.SQRT))
    stack = ConditionedSequential(first, nn.ReLU(), second)
    assert len(stack) == 3 and stack[1].__class__ is nn.ReLU
    x, u = make_input("linear"), spread_u()
    assert torch.equal(stack(x, u), second(torch.relu(first(x, u)), u))
    with pytest.raises(ValueError, match=r"u=None"):
        stack(x)


def test_model_conditioning_parses_and_validates():
    spec = ModelConditioning("gate", "sqrt", "sigmoid", 1.5, "open", 4)
    assert (spec.kind, spec.encoder_gate, spec.gate_init) == (Conditioning.GATE, GateFunction.SQRT, GateInit.OPEN)
    plain = spec.unconditioned()
    assert plain.kind is Conditioning.NONE
    assert (plain.encoder_gate, plain.gate_scale, plain.gate_init) == (spec.encoder_gate, 1.5, spec.gate_init)
    with pytest.raises(ValueError, match=r"gate scale must be > 0, got 0.0"):
        ModelConditioning(gate_scale=0.0)
    with pytest.raises(ValueError, match=r"gate scale must be > 0, got nan"):
        ModelConditioning(gate_scale=float("nan"))
    with pytest.raises(ValueError, match=r"gate scale must be > 0, got inf"):
        ModelConditioning(gate_scale=float("inf"))
    with pytest.raises(ValueError, match=r"film_hidden must be >= 1, got 0"):
        ModelConditioning(film_hidden=0)
    with pytest.raises(ValueError, match=r"'gated' is not a valid Conditioning; choose one of: none, gate, film"):
        ModelConditioning("gated")
    with pytest.raises(ValueError, match=r"'middle' is not a valid Role; choose one of: encoder, decoder"):
        spec.gate_function("middle")
    with pytest.raises(TypeError, match=r"spec must be a ModelConditioning, got 'gate'"):
        ConditionedLinear(2, 3, "gate")


def test_model_conditioning_gives_each_role_its_gate_function():
    default = ModelConditioning()
    assert default == ModelConditioning(Conditioning.GATE, GateFunction.SIGMOID, GateFunction.SIGMOID, 2.0,
                                        GateInit.PAPER, 16)
    paper = ModelConditioning(encoder_gate="sigmoid", decoder_gate="sqrt", gate_scale=1.0)
    assert paper.gate_function(Role.ENCODER) is GateFunction.SIGMOID
    assert paper.gate_function("decoder") is GateFunction.SQRT
    encoder, decoder = ConditionedLinear(3, 2, paper), ConditionedLinear(3, 2, paper, Role.DECODER)
    assert (encoder.gate.function, decoder.gate.function) == (GateFunction.SIGMOID, GateFunction.SQRT)
    assert decoder.gate.scale == 1.0 and decoder.role is Role.DECODER
    with pytest.raises(ValueError, match=r"gate scale must be > 0, got -1.0"):
        ModelConditioning(gate_scale=-1.0)


def test_model_config_builds_its_conditioning_and_checks_the_gate_settings_with_it():
    config = ModelConfig(encoder_gate="sqrt", decoder_gate="SQRT", gate_scale=1, gate_init="open", film_hidden=8)
    assert config.encoder_gate is GateFunction.SQRT and config.gate_init is GateInit.OPEN
    assert config.gate_scale == 1.0 and isinstance(config.gate_scale, float)
    # the gate input scale left null takes the mlp recipe (2, issue 14)
    assert config.conditioning("film") == ModelConditioning(Conditioning.FILM, "sqrt", "sqrt", 1.0, "open", 8, 2.0)
    with pytest.raises(ValueError, match=r"gate scale must be > 0, got 0"):
        ModelConfig(gate_scale=0)
    with pytest.raises(ValueError, match=r"film_hidden must be >= 1, got 0"):
        ModelConfig(film_hidden=0)
    with pytest.raises(ValueError, match=r"'tanh' is not a valid GateFunction"):
        ModelConfig(decoder_gate="tanh")


@pytest.mark.parametrize("conditioning", list(Conditioning))
def test_linear_on_a_sequence_and_embedding_condition_the_last_axis(conditioning):
    """(B, T, E) outputs: one gate / FiLM pair per unit of the last axis, shared by every position."""
    torch.manual_seed(5)
    spec = ModelConditioning(conditioning)
    linear, embedding = ConditionedLinear(6, 4, spec), ConditionedEmbedding(9, 4, 0, spec)
    if conditioning is Conditioning.FILM:
        for layer in (linear, embedding):
            with torch.no_grad():
                layer.film.out.weight.normal_(generator=generator(6))
    u = spread_u(3)
    for layer, x in ((linear, torch.randn(3, 7, 6)), (embedding, torch.randint(9, (3, 7)))):
        assert isinstance(layer, ConditionedLayer) and layer.unit_dim == -1
        out, base = layer(x, u), layer.base(x)
        assert out.shape == (3, 7, 4)
        if conditioning is Conditioning.GATE:
            expected = base * layer.gate(u)[:, None, :]
        elif conditioning is Conditioning.FILM:
            scale, shift = layer.film(u)
            expected = base * scale[:, None, :] + shift[:, None, :]
        else:
            expected = base
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
        for t in range(7):  # each position is the 2-D layer at that position
            step = layer(x[:, t], u)
            torch.testing.assert_close(out[:, t], step, rtol=1e-6, atol=1e-6)
