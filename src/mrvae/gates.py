"""Gate functions of PAPER.md Eqn 7, the per-unit gate ``scale·σ(w·u + b)`` of standardised log β, FiLM,
and the fused gate kernel ``GatedProduct`` (one autograd node for gate, product and ReLU)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.autograd.function import FunctionCtx, once_differentiable
from .beta import Choice

#: Floor inside the square root of the ``sqrt`` gate. Where ``1 - exp(x) >= SQRT_GATE_FLOOR`` the gate
#: is exactly ``sqrt(1 - exp(x))``; below it the gate continues linearly to 0, so the gradient is at
#: most ``1/sqrt(SQRT_GATE_FLOOR)`` (= 1000) times ``exp(x)`` instead of blowing up at closure.
SQRT_GATE_FLOOR = 1e-6


class GateFunction(Choice):
    """σ_i of Eqn 7: ``sigmoid`` (the paper's encoder gate) or ``sqrt`` = sqrt(relu(1 - exp(x)))
    (the paper's decoder gate). Both map R into [0, 1]."""

    SIGMOID = "sigmoid"
    SQRT = "sqrt"


class GateInit(Choice):
    """How gate parameters start.

    ``paper``: PyTorch's default init of ``nn.Linear(1, out)``, weight and bias ~ U(-1, 1).
    ``open``:  weight 0 and the bias that makes every gate start at ``open_gate_value(scale)``
    (1 when the scale allows it), independent of β, so training starts as the plain network.
    """

    PAPER = "paper"
    OPEN = "open"


def sqrt_gate(x: Tensor, floor: float = SQRT_GATE_FLOOR) -> Tensor:
    """sqrt(relu(1 - exp(x))) elementwise, in [0, 1], with finite gradients everywhere (see floor)."""
    # min(x, 0) first: for large x (> 88 in float32) expm1 overflows to inf and its backward would
    # give 0·inf = NaN; the gate is 0 with zero gradient for every x >= 0 either way.
    y = torch.relu(-torch.expm1(torch.clamp(x, max=0.0)))
    return y * torch.rsqrt(torch.clamp(y, min=floor))


def gate_function(kind: GateFunction | str, x: Tensor) -> Tensor:
    """Apply the gate function ``kind`` elementwise; values in [0, 1]."""
    kind = GateFunction(kind)
    if kind is GateFunction.SIGMOID:
        return torch.sigmoid(x)
    return sqrt_gate(x)


def open_gate_value(scale: float) -> float:
    """Where an ``open`` gate starts: 1.0 if ``scale > 1``, else 0.95·scale (1 is out of reach)."""
    return 1.0 if scale > 1.0 else 0.95 * scale


def inverse_gate_function(kind: GateFunction | str, value: float) -> float:
    """The pre-activation x with ``gate_function(kind, x) == value`` for value in (0, 1)."""
    if not 0.0 < value < 1.0:
        raise ValueError(f"a gate value to invert must lie in (0, 1), got {value!r}")
    if GateFunction(kind) is GateFunction.SIGMOID:
        return math.log(value / (1.0 - value))
    return math.log1p(-value * value)


class UnitGate(nn.Module):
    """Per-unit gate of u: ``(B, 1) -> (B, out)`` with values in [0, scale].

    Two parameters per unit (``weight``, ``bias``, each shape (out,)): gate = scale·σ(weight·u + bias).
    """

    def __init__(
        self,
        out_features: int,
        function: GateFunction | str = GateFunction.SIGMOID,
        scale: float = 2.0,
        init: GateInit | str = GateInit.PAPER,
    ) -> None:
        super().__init__()
        if out_features < 1:
            raise ValueError(f"a gate needs at least one unit, got out_features={out_features}")
        if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
            raise ValueError(f"gate scale must be a finite number > 0, got {scale!r}")
        self.function = GateFunction(function)
        self.scale = float(scale)
        self.init = GateInit(init)
        self.weight = nn.Parameter(torch.empty(out_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Re-initialise ``weight`` and ``bias`` following ``self.init``."""
        with torch.no_grad():
            if self.init is GateInit.PAPER:
                self.weight.uniform_(-1.0, 1.0)
                self.bias.uniform_(-1.0, 1.0)
            else:
                target = open_gate_value(self.scale) / self.scale
                self.weight.zero_()
                self.bias.fill_(inverse_gate_function(self.function, target))

    def pre_activation(self, u: Tensor) -> Tensor:
        """(B, 1) u -> (B, out) pre-activation ``weight·u + bias``."""
        return u * self.weight + self.bias

    def forward(self, u: Tensor) -> Tensor:
        """(B, 1) u -> (B, out) gate in [0, scale]."""
        if u.dim() != 2 or u.shape[1] != 1:
            # (B,) would broadcast against (out,) into a wrong shape, or silently when B == out
            raise ValueError(f"UnitGate expects u of shape (B, 1), got {tuple(u.shape)}")
        gate = gate_function(self.function, self.pre_activation(u))
        return gate if self.scale == 1.0 else self.scale * gate

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}, function={self.function.value}, scale={self.scale}"


class FilmConditioner(nn.Module):
    """YOTO-style FiLM: a small MLP of u giving per-unit scale and shift, ``(B, 1) -> 2 × (B, out)``.

    The last layer starts at zero, so scale = 1 and shift = 0 exactly at initialisation.
    """

    def __init__(self, out_features: int, hidden: int = 16) -> None:
        super().__init__()
        if out_features < 1 or hidden < 1:
            raise ValueError(f"FiLM needs out_features >= 1 and hidden >= 1, got {out_features}, {hidden}")
        self.hidden = nn.Linear(1, hidden)
        self.out = nn.Linear(hidden, 2 * out_features)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, u: Tensor) -> tuple[Tensor, Tensor]:
        """(B, 1) u -> (scale, shift), each (B, out)."""
        delta, shift = self.out(torch.relu(self.hidden(u))).chunk(2, dim=-1)
        return 1.0 + delta, shift


# ---- The fused gate kernel: ``[relu](y ⊙ scale·σ(weight·u + bias))`` as one autograd node ----
#
# Fused gating multiply: ``[relu](y ⊙ scale·σ(weight·u + bias))`` as one autograd node.
#
# ``UnitGate(u)`` followed by ``y * gate.reshape(...)`` records six autograd nodes per conditioned layer,
# keeps both ``y`` and the gated map alive for backward and allocates two full-size tensors in backward
# (``grad * y`` and ``grad * gate``). On a CPU most of the time this costs is not arithmetic: the larger
# working set makes glibc hand memory back to the OS after each step and fault it in again on the next
# (thousands of minor page faults per step, slowing every op, the convolutions included).
# ``GatedProduct`` computes the same values with
#
# * the multiply written into ``y`` (``inplace``, for a fresh layer output) and an optional ReLU applied
#   in place after it, so the only feature map it keeps is its own output, which the next layer keeps
#   as its input anyway: a gated layer + ReLU then holds as much memory as the plain layer + ReLU;
# * a backward that needs the output, not ``y``: ``d out / d pre = out·σ'(pre)/σ(pre)`` (``1 - σ`` for the
#   sigmoid), so the gate's gradient is Σ_spatial grad·out times that, per example and unit; and
# * the gradient of ``y`` written into the buffer of the ``grad * out`` temporary.
#
# Shapes: ``y`` (B, C) from a Linear or (B, C, *S) from a convolution (units along dim 1); ``u`` (B, 1)
# or (1, 1) (one β shared by the batch); ``weight`` and ``bias`` (C,). The output has ``y``'s shape and
# the dtype ``torch.result_type`` gives for ``y`` and the gate (as the unfused product does; the
# multiply is done out of place when that differs from ``y``'s dtype). Not twice differentiable
# (``once_differentiable``); nothing in the package differentiates a gradient.

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
