"""The fused gating multiply (gates.GatedProduct) against plain autograd through ``UnitGate``."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

from mrvae.gates import GatedProduct, GatedUnits, gate_slope, gate_values, gated_product
from mrvae.gates import SQRT_GATE_FLOOR, GateFunction, UnitGate, gate_function, sqrt_gate
from mrvae.layers import (Conditioning, ConditionedConv2d, ConditionedLinear, ConditionedSequential,
                          ModelConditioning, _fusable_relus)

SHAPES = [(5, 3), (4, 3, 5, 6)]  # a Linear's (B, C) and a convolution's (B, C, H, W)
CASES = list(itertools.product(SHAPES, (True, False), GateFunction, (1.0, 2.0)))
# (relu, inplace): the variants ConditionedSequential and ConditionedLayer use, and the plain product
VARIANTS = [(False, False), (True, False), (False, True), (True, True)]


def reference(y, u, weight, bias, function, scale, relu=False):
    """The unfused formula: UnitGate's ``scale·σ(u·weight + bias)`` times y, broadcast over dims 2+."""
    gate = gate_function(function, u * weight + bias)
    gate = gate if scale == 1.0 else scale * gate
    out = y * gate.reshape(gate.shape + (1,) * (y.dim() - 2))
    return torch.relu(out) if relu else out


def inputs(shape, per_example, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)
    y = torch.randn(shape, generator=generator, dtype=dtype)
    u = torch.randn((shape[0] if per_example else 1, 1), generator=generator, dtype=dtype)
    weight = torch.empty(shape[1], dtype=dtype).uniform_(-1.0, 1.0, generator=generator)
    bias = torch.empty(shape[1], dtype=dtype).uniform_(-1.0, 1.0, generator=generator)
    return [t.requires_grad_() for t in (y, u, weight, bias)]


@pytest.mark.parametrize("relu,inplace", VARIANTS)
@pytest.mark.parametrize("shape,per_example,function,scale", CASES)
def test_values_and_gradients_match_autograd(shape, per_example, function, scale, relu, inplace):
    tensors = inputs(shape, per_example)
    grad_out = torch.randn(shape, generator=torch.Generator().manual_seed(1))
    y = tensors[0] * 1.0 if inplace else tensors[0]  # a non-leaf, as a layer's output is
    fused = gated_product(y, *tensors[1:], function, scale, relu, inplace)
    assert (fused.data_ptr() == y.data_ptr()) == inplace
    fused_grads = torch.autograd.grad(fused, tensors, grad_out)
    plain = reference(*tensors, function, scale, relu)
    plain_grads = torch.autograd.grad(plain, tensors, grad_out)
    torch.testing.assert_close(fused, plain, rtol=1e-6, atol=1e-6)
    for name, a, b in zip(("y", "u", "weight", "bias"), fused_grads, plain_grads):
        assert a.shape == b.shape, name
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m, n=name: f"grad of {n}: {m}")


@pytest.mark.parametrize("relu,inplace", VARIANTS)
@pytest.mark.parametrize("shape,per_example,function,scale", CASES)
def test_gradcheck_float64(shape, per_example, function, scale, relu, inplace):
    tensors = [t.detach().double().requires_grad_() for t in inputs(shape, per_example, seed=2)]

    def fused(y, *rest):
        return gated_product(y * 1.0 if inplace else y, *rest, function, scale, relu, inplace)

    assert torch.autograd.gradcheck(fused, tensors)


def test_only_requested_gradients_are_computed():
    y, u, weight, bias = inputs((4, 3, 2, 2), True)
    u = u.detach()  # standardised log β never needs a gradient in training
    out = gated_product(y, u, weight, bias, GateFunction.SIGMOID, 2.0)
    grads = torch.autograd.grad(out.sum(), (y, weight))
    assert [g.shape for g in grads] == [y.shape, weight.shape]
    frozen = gated_product(y, u, weight.detach(), bias.detach(), GateFunction.SIGMOID, 2.0)
    (grad_y,) = torch.autograd.grad(frozen.sum(), (y,))
    torch.testing.assert_close(grad_y, reference(torch.ones_like(y), u, weight, bias, GateFunction.SIGMOID, 2.0))


def test_sqrt_slope_matches_autograd_at_kinks_and_floor():
    # 0 (closed with zero slope), large x (clamped), near the floor (linear branch), ordinary values
    floor_x = torch.log1p(-torch.tensor(SQRT_GATE_FLOOR, dtype=torch.float64)).item()
    x = torch.tensor([0.0, 5.0, 100.0, -1e-12, -1e-7, floor_x, 2 * floor_x, -0.3, -3.0, -30.0],
                     dtype=torch.float64, requires_grad=True)
    value = sqrt_gate(x)
    (expected,) = torch.autograd.grad(value.sum(), x)
    torch.testing.assert_close(gate_slope(GateFunction.SQRT, x.detach(), value.detach()), expected)
    s = torch.sigmoid(x.detach())
    torch.testing.assert_close(gate_slope(GateFunction.SIGMOID, x.detach(), s), s * (1 - s))


def test_residual_branch_gradient_is_not_overwritten():
    # grad_y reuses the backward's own temporary; the incoming gradient, shared with the skip path, stays intact
    y, u, weight, bias = inputs((3, 2, 4, 4), True)
    fused = y + gated_product(y, u, weight, bias, GateFunction.SIGMOID, 2.0)
    plain = y + reference(y, u, weight, bias, GateFunction.SIGMOID, 2.0)
    grad_out = torch.randn(fused.shape)
    for a, b in zip(torch.autograd.grad(fused, (y, u, weight, bias), grad_out),
                    torch.autograd.grad(plain, (y, u, weight, bias), grad_out)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_mixed_precision_keeps_the_unfused_dtypes():
    y, u, weight, bias = inputs((4, 3, 2, 2), True)
    y16 = y.detach().to(torch.bfloat16).requires_grad_()
    fused, plain = gated_product(y16, u, weight, bias), reference(y16, u, weight, bias, GateFunction.SIGMOID, 1.0)
    assert fused.dtype == plain.dtype == torch.float32
    (grad_fused,), (grad_plain,) = (torch.autograd.grad(t.sum(), (y16,)) for t in (fused, plain))
    assert grad_fused.dtype == torch.bfloat16
    torch.testing.assert_close(grad_fused, grad_plain)


@pytest.mark.parametrize("function", list(GateFunction))
@pytest.mark.parametrize("make", [lambda spec: ConditionedLinear(6, 4, spec),
                                  lambda spec: ConditionedConv2d(2, 4, 3, padding=1, spec=spec)])
def test_conditioned_layer_uses_the_fused_node_with_unchanged_parameters(function, make):
    torch.manual_seed(0)
    layer = make(ModelConditioning(encoder_gate=function, gate_scale=2.0))
    assert sorted(k for k in layer.state_dict() if k.startswith("gate")) == ["gate.bias", "gate.weight"]
    x = torch.randn((5, 6) if isinstance(layer, ConditionedLinear) else (5, 2, 6, 6))
    u = torch.randn(5, 1)
    out = layer(x, u)
    node = type(out.grad_fn).__name__
    if isinstance(layer, ConditionedConv2d):
        assert "GatedProduct" in node
    else:  # a Linear's (B, out): its own node for the sigmoid gate, plain autograd for the sqrt gate
        assert ("GatedUnits" in node) == (function is GateFunction.SIGMOID), node
    expected = layer.base(x) * _expand(layer.gate(u), out.dim())
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    params = [layer.base.weight, layer.gate.weight, layer.gate.bias]
    for a, b in zip(torch.autograd.grad(out.square().sum(), params),
                    torch.autograd.grad(expected.square().sum(), params)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def _expand(gate, dim):
    return gate.reshape(gate.shape + (1,) * (dim - 2))


def test_unit_gate_module_is_unchanged():
    gate = UnitGate(3, scale=2.0)
    u = torch.tensor([[0.5]])
    torch.testing.assert_close(gate(u), 2.0 * torch.sigmoid(0.5 * gate.weight + gate.bias).unsqueeze(0))
    values = gate_values(u, gate.weight, gate.bias, gate.function, gate.scale)
    out = GatedProduct.apply(torch.ones(1, 3), values.pre, values.gate, values.log_slope, False, False)
    torch.testing.assert_close(out, gate(u))


@pytest.mark.parametrize("shapes,message", [
    (((4, 3), (4,), (3,), (3,)), "u of shape \\(4, 1\\) or \\(1, 1\\), got \\(4,\\)"),
    (((4, 3), (2, 1), (3,), (3,)), "u of shape \\(4, 1\\) or \\(1, 1\\), got \\(2, 1\\)"),
    (((4, 3), (4, 1), (2,), (3,)), "weight and bias \\(C,\\), got y \\(4, 3\\), weight \\(2,\\)"),
    (((4,), (4, 1), (3,), (3,)), "needs y \\(B, C, ...\\)"),
])
def test_gated_product_rejects_bad_shapes(shapes, message):
    with pytest.raises(ValueError, match=message):
        gated_product(*(torch.zeros(s) for s in shapes))


def _sequential(spec, hook=False):
    torch.manual_seed(3)
    net = ConditionedSequential(ConditionedConv2d(2, 4, 3, padding=1, spec=spec), nn.ReLU(),
                                ConditionedConv2d(4, 3, 3, padding=1, spec=spec), nn.ReLU(), nn.Flatten())
    seen = []
    if hook:
        net[1].register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    return net, seen


def _unfused(net, x, u):
    """The same network run layer by layer through UnitGate and nn.ReLU (no fusion)."""
    for layer in net.layers:
        if isinstance(layer, ConditionedConv2d):
            x = layer.base(x) * _expand(layer.gate(u), 4)
        else:
            x = layer(x)
    return x


@pytest.mark.parametrize("function", list(GateFunction))
def test_sequential_fuses_gate_and_relu_with_the_same_values_and_gradients(function):
    net, _ = _sequential(ModelConditioning(encoder_gate=function))
    x, u = torch.randn(5, 2, 6, 6), torch.randn(5, 1)
    out, expected = net(x, u), _unfused(net, x, u)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
    params = list(net.parameters())
    for a, b in zip(torch.autograd.grad(out.square().sum(), params),
                    torch.autograd.grad(expected.square().sum(), params)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_sequential_leaves_hooked_relus_unfused_and_plain_layers_alone():
    net, seen = _sequential(ModelConditioning(), hook=True)
    x, u = torch.randn(5, 2, 6, 6), torch.randn(5, 1)
    out = net(x, u)
    assert seen == [(5, 4, 6, 6)]  # the hooked ReLU ran as a module
    torch.testing.assert_close(out, _unfused(net, x, u), rtol=1e-6, atol=1e-6)
    assert _fusable_relus(net.layers) == {2}  # only the second conv, whose ReLU has no hook
    assert _fusable_relus(_sequential(ModelConditioning())[0].layers) == {0, 2}
    assert _fusable_relus(_sequential(ModelConditioning(Conditioning.NONE))[0].layers) == set()
    assert _fusable_relus(_sequential(ModelConditioning(Conditioning.FILM))[0].layers) == set()


def test_layer_relu_flag_matches_relu_after_for_every_conditioning():
    x, u = torch.randn(5, 2, 6, 6), torch.randn(5, 1)
    for kind in Conditioning:
        torch.manual_seed(4)
        layer = ConditionedConv2d(2, 4, 3, padding=1, spec=ModelConditioning(kind))
        torch.testing.assert_close(layer(x, u, relu=True), torch.relu(layer(x, u)), rtol=1e-6, atol=1e-6)


def test_a_hook_on_the_base_convolution_sees_its_own_output_not_the_gated_one():
    torch.manual_seed(0)
    layer = ConditionedConv2d(2, 3, 3, padding=1, spec=ModelConditioning(kind=Conditioning.GATE))
    seen = []
    layer.base.register_forward_hook(lambda module, inputs, output: seen.append(output))
    x, u = torch.randn(4, 2, 5, 5), torch.randn(4, 1)
    out = layer(x, u)
    raw = layer.base._conv_forward(x, layer.base.weight, layer.base.bias)  # the convolution, no hooks
    assert torch.equal(seen[0], raw)  # not overwritten by the in-place gating
    assert torch.allclose(out, raw * layer.gate(u)[:, :, None, None], atol=1e-6)


UNIT_CASES = list(itertools.product((1.0, 4.0), (1.0, 2.0), (True, False), (True, False), (True, False)))


def units_reference(y, u, weight, bias, scale, input_scale, relu):
    out = y * (scale * torch.sigmoid(bias + (input_scale * u) * weight))
    return torch.relu(out) if relu else out


@pytest.mark.parametrize("scale,input_scale,relu,per_example,inplace", UNIT_CASES)
def test_gated_units_match_autograd_and_gradcheck(scale, input_scale, relu, per_example, inplace):
    y, u, weight, bias = inputs((6, 4), per_example)
    grad_out = torch.randn(6, 4, generator=torch.Generator().manual_seed(5))
    y_in = y * 1.0  # a non-leaf, as a Linear's output is
    fused = GatedUnits.apply(y_in, u, weight, bias, scale, input_scale, relu, inplace)
    assert (fused.data_ptr() == y_in.data_ptr()) == inplace
    plain = units_reference(y, u, weight, bias, scale, input_scale, relu)
    torch.testing.assert_close(fused, plain, rtol=1e-6, atol=1e-6)
    for name, a, b in zip("y u weight bias".split(), torch.autograd.grad(fused, (y, u, weight, bias), grad_out),
                          torch.autograd.grad(plain, (y, u, weight, bias), grad_out)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=lambda m, n=name: f"grad of {n}: {m}")
    doubles = [t.detach().double().requires_grad_() for t in (y, u, weight, bias)]
    assert torch.autograd.gradcheck(
        lambda y, *rest: GatedUnits.apply(y * 1.0, *rest, scale, input_scale, relu, inplace), doubles)


def test_gated_units_refuse_a_second_derivative():
    y, u, weight, bias = inputs((3, 2), True)
    out = GatedUnits.apply(y * 1.0, u.detach(), weight, bias, 2.0, 1.0, True, True)
    with pytest.raises(RuntimeError, match="GatedUnits is not twice differentiable"):
        torch.autograd.grad(out.sum(), y, create_graph=True)
