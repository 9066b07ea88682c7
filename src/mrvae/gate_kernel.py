"""Fused gating multiply: ``[relu](y ⊙ scale·σ(weight·u + bias))`` as one autograd node.

``UnitGate(u)`` followed by ``y * gate.reshape(...)`` records six autograd nodes per conditioned layer,
keeps both ``y`` and the gated map alive for backward and allocates two full-size tensors in backward
(``grad * y`` and ``grad * gate``). On a CPU most of the time this costs is not arithmetic: the larger
working set makes glibc hand memory back to the OS after each step and fault it in again on the next
(thousands of minor page faults per step, slowing every op, the convolutions included).
``GatedProduct`` computes the same values with

* the multiply written into ``y`` (``inplace``, for a fresh layer output) and an optional ReLU applied
  in place after it, so the only feature map it keeps is its own output, which the next layer keeps
  as its input anyway: a gated layer + ReLU then holds as much memory as the plain layer + ReLU;
* a backward that needs the output, not ``y``: ``d out / d pre = out·σ'(pre)/σ(pre)`` (``1 - σ`` for the
  sigmoid), so the gate's gradient is Σ_spatial grad·out times that, per example and unit; and
* the gradient of ``y`` written into the buffer of the ``grad * out`` temporary.

Shapes: ``y`` (B, C) from a Linear or (B, C, *S) from a convolution (units along dim 1); ``u`` (B, 1)
or (1, 1) (one β shared by the batch); ``weight`` and ``bias`` (C,). The output has ``y``'s shape and
the dtype ``torch.result_type`` gives for ``y`` and the gate (as the unfused product does; the
multiply is done out of place when that differs from ``y``'s dtype). Not twice differentiable
(``once_differentiable``); nothing in the package differentiates a gradient.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from torch.autograd.function import FunctionCtx, once_differentiable

from .gates import SQRT_GATE_FLOOR, GateFunction, gate_function


def gate_slope(function: GateFunction, pre: Tensor, value: Tensor) -> Tensor:
    """dσ/dx of the gate function at the pre-activation ``pre``, given ``value = σ(pre)``; same shape.

    ``sigmoid``: value·(1 - value). ``sqrt`` (see ``gates.sqrt_gate``): with e = expm1(min(x, 0)) and
    y = relu(-e), the gate is y·rsqrt(max(y, floor)), whose slope is -(e + 1)·(r - ½·y·r³ [y >= floor])
    with r = rsqrt(max(y, floor)) where y > 0, and 0 elsewhere: the derivative autograd takes of
    ``sqrt_gate``, subgradient choices at the kinks included.
    """
    if function is GateFunction.SIGMOID:
        return value * (1.0 - value)
    e = torch.expm1(torch.clamp(pre, max=0.0))
    y = torch.relu(-e)
    r = torch.rsqrt(torch.clamp(y, min=SQRT_GATE_FLOOR))
    dvalue_dy = torch.where(y >= SQRT_GATE_FLOOR, r - 0.5 * y * r * r * r, r)
    return torch.where(y > 0, -(e + 1.0) * dvalue_dy, torch.zeros_like(y))


def gate_log_slope(function: GateFunction, pre: Tensor, value: Tensor) -> Tensor:
    """σ'(pre) / σ(pre) where σ(pre) > 0, else 0: the gated output's derivative in ``pre`` per unit of output.

    With ``out = y·scale·σ(pre)``, ``d out / d pre = out·σ'/σ``, so the backward needs the (saved)
    output rather than ``y``; where σ = 0 both ``out`` and the true derivative ``y·scale·σ'`` vanish
    (σ' = 0 there for both gate functions). ``sigmoid``: 1 - σ, no division.
    """
    if function is GateFunction.SIGMOID:
        return 1.0 - value
    positive = value > 0
    return torch.where(positive, gate_slope(function, pre, value) / torch.where(positive, value, 1.0), 0.0)


class GatedProduct(torch.autograd.Function):
    """``[relu](y ⊙ scale·σ(weight·u + bias))`` with units along dim 1; see the module docstring."""

    @staticmethod
    def forward(ctx: FunctionCtx, y: Tensor, u: Tensor, weight: Tensor, bias: Tensor,
                function: GateFunction, scale: float, relu: bool, inplace: bool) -> Tensor:
        pre = u * weight + bias  # (B or 1, C); not addcmul, whose fused rounding UnitGate.forward lacks
        value = gate_function(function, pre)
        gate = value if scale == 1.0 else value * scale
        gate_view = gate.view(gate.shape + (1,) * (y.dim() - 2))
        if inplace and y._base is None and not (y.is_leaf and y.requires_grad) \
                and torch.result_type(y, gate) == y.dtype:
            out = y.mul_(gate_view)
            ctx.mark_dirty(y)
        else:
            out = y * gate_view
        if relu:
            out.relu_()
        ctx.save_for_backward(out, u, weight, pre, value, gate)
        ctx.function, ctx.relu = function, relu  # type: ignore[attr-defined]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        out, u, weight, pre, value, gate = ctx.saved_tensors
        need_y, need_u, need_weight, need_bias = ctx.needs_input_grad[:4]
        grad_y = grad_u = grad_weight = grad_bias = None
        gate_view = gate.view(gate.shape + (1,) * (out.dim() - 2))
        product = None
        if need_u or need_weight or need_bias:
            # Σ grad·out over the spatial dims; with the ReLU, grad·[out > 0]·out is the same product
            product = grad * out  # (B, C, *S)
            dgate = product.sum(tuple(range(2, out.dim()))) if out.dim() > 2 else product  # (B, C)
            if gate.shape[0] != dgate.shape[0]:  # one gate row shared by the batch
                dgate = dgate.sum(0, keepdim=True)
            dpre = dgate * gate_log_slope(ctx.function, pre, value)
            if need_weight:
                grad_weight = (dpre * u).sum(0)
            if need_bias:
                grad_bias = dpre.sum(0)
            if need_u:
                grad_u = (dpre * weight).sum(1, keepdim=True)
        if need_y:
            # the (B, C) gradients above no longer need product, so grad_y may overwrite it
            dtype = torch.result_type(grad, gate_view)
            reusable = product is not None and product.shape == grad.shape and product.dtype == dtype == grad.dtype
            if ctx.relu:
                grad_y = (torch.ops.aten.threshold_backward.grad_input(grad, out, 0, grad_input=product)
                          if reusable else torch.ops.aten.threshold_backward(grad, out, 0))
                grad_y = grad_y.mul_(gate_view) if grad_y.dtype == dtype else grad_y * gate_view
            else:
                grad_y = torch.mul(grad, gate_view, out=product) if reusable else grad * gate_view
        return grad_y, grad_u, grad_weight, grad_bias, None, None, None, None


def gated_product(y: Tensor, u: Tensor, weight: Tensor, bias: Tensor,
                  function: GateFunction = GateFunction.SIGMOID, scale: float = 1.0, relu: bool = False,
                  inplace: bool = False) -> Tensor:
    """``y * (scale·σ(weight·u + bias))``, then ReLU if ``relu``, broadcast over dims 2+: y (B, C, ...),
    u (B, 1) or (1, 1), weight and bias (C,) -> y's shape; one autograd node (module docstring).

    ``inplace``: write the result into ``y`` (when y is not a view and keeps its dtype), for a ``y``
    nothing else holds, such as a layer's fresh output; the caller's ``y`` is then the result.
    """
    if y.dim() < 2 or weight.shape != (y.shape[1],) or bias.shape != weight.shape:
        raise ValueError(f"gated_product needs y (B, C, ...) with weight and bias (C,), got y {tuple(y.shape)}, "
                         f"weight {tuple(weight.shape)}, bias {tuple(bias.shape)}")
    if u.dim() != 2 or u.shape[1] != 1 or u.shape[0] not in (1, y.shape[0]):
        raise ValueError(f"gated_product expects u of shape ({y.shape[0]}, 1) or (1, 1), got {tuple(u.shape)}")
    return GatedProduct.apply(y, u, weight, bias, GateFunction(function), float(scale), bool(relu), bool(inplace))
