"""Gate functions of PAPER.md Eqn 7, the per-unit gate ``scale·σ(w·u + b)`` of standardised log β, FiLM,
``gate_values`` (gates of many units in one pass) and the fused kernel ``GatedProduct`` (one autograd node
for a layer's product with its gates and the ReLU)."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

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
        """(B, 1) u -> (B, out) pre-activation ``weight·u + bias`` (``gate_values`` computes it with one
        ``addcmul``, which may round the last bit differently)."""
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


# ---- The fused gate kernel: ``[relu](y ⊙ gate)`` as one autograd node, gates computed beforehand ----
#
# ``UnitGate(u)`` followed by ``y * gate.reshape(...)`` records six autograd nodes per conditioned layer,
# keeps both ``y`` and the gated map alive for backward and allocates two full-size tensors in backward
# (``grad * y`` and ``grad * gate``). On a CPU most of the time this costs is not arithmetic: the larger
# working set makes glibc hand memory back to the OS after each step and fault it in again on the next
# (thousands of minor page faults per step, slowing every op, the convolutions included).
#
# The work is split in two. ``gate_values`` computes a layer's pre-activation ``pre = bias + u·weight``
# (B or 1, C) in autograd (one ``addcmul``), and, outside autograd, ``gate = scale·σ(pre)`` and the
# log-slope ``σ'(pre)/σ(pre)``. ``GatedProduct`` then does the
# per-layer part as one node, with
#
# * the multiply written into ``y`` (``inplace``, for a fresh layer output) and an optional ReLU applied
#   in place after it, so the only feature map it keeps is its own output, which the next layer keeps
#   as its input anyway: a gated layer + ReLU then holds as much memory as the plain layer + ReLU;
# * a backward that needs the output, not ``y``: ``d out / d pre = out·σ'(pre)/σ(pre)`` (``1 - σ`` for the
#   sigmoid), so the gradient of ``pre`` is Σ_spatial grad·out times the log-slope, per example and unit
#   (one ``einsum`` reduction, no map-sized temporary), and autograd takes it on to ``weight``, ``bias``
#   (and ``u``) through the one ``addcmul``.
#
# Shapes: ``y`` (B, C) from a Linear or (B, C, *S) from a convolution (units along dim 1); ``pre``,
# ``gate`` and ``log_slope`` (B, C) or (1, C) (one β shared by the batch). The output has ``y``'s shape
# and the dtype ``torch.result_type`` gives for ``y`` and the gate (as the unfused product does; the
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


class GateValues(NamedTuple):
    """A layer's gates at u: ``pre`` = bias + u·weight (in autograd), ``gate`` = scale·σ(pre)
    and ``log_slope`` = σ'(pre)/σ(pre) (both outside autograd); each (B or 1, C)."""

    pre: Tensor
    gate: Tensor
    log_slope: Tensor


def gate_values(u: Tensor, weight: Tensor, bias: Tensor, function: GateFunction, scale: float,
                input_scale: float = 1.0) -> GateValues:
    """(B or 1, 1) u and (C,) ``weight``, ``bias`` -> the ``GateValues`` of
    ``scale·σ(bias + (input_scale·u)·weight)``."""
    pre = torch.addcmul(bias, u, weight, value=input_scale)  # (B or 1, C)
    with torch.no_grad():
        value = gate_function(function, pre)
        gate = value if scale == 1.0 else value * scale
        log_slope = gate_log_slope(function, pre, value)
    return GateValues(pre, gate, log_slope)


def _gated_output(ctx: FunctionCtx, y: Tensor, gate: Tensor, relu: bool, inplace: bool) -> Tensor:
    """``[relu](y ⊙ gate)`` (gate broadcasting against y), written into ``y`` when ``inplace`` allows it: y is
    not a view or a leaf that needs a gradient, and keeps its dtype (then marked dirty on ``ctx``)."""
    if inplace and y._base is None and not (y.is_leaf and y.requires_grad) and torch.result_type(y, gate) == y.dtype:
        out = y.mul_(gate)
        ctx.mark_dirty(y)
    else:
        out = y * gate
    return out.relu_() if relu else out


class GatedProduct(torch.autograd.Function):
    """``[relu](y ⊙ gate)`` with units along dim 1 and gradients to ``y`` and ``pre``; see the comment above."""

    @staticmethod
    def forward(ctx: FunctionCtx, y: Tensor, pre: Tensor, gate: Tensor, log_slope: Tensor, relu: bool,
                inplace: bool) -> Tensor:
        out = _gated_output(ctx, y, gate.view(gate.shape + (1,) * (y.dim() - 2)), relu, inplace)
        ctx.save_for_backward(out, gate, log_slope)
        ctx.relu = relu  # type: ignore[attr-defined]
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        out, gate, log_slope = ctx.saved_tensors
        need_y, need_pre = ctx.needs_input_grad[:2]
        grad_y = grad_pre = None
        gate_view = gate.view(gate.shape + (1,) * (out.dim() - 2))
        product = None
        if need_pre:
            # Σ grad·out over the spatial dims (with the ReLU, grad·[out > 0]·out is the same product): one
            # reduction reading both maps for a feature map, the elementwise product for a (B, C) output
            if out.dim() > 2:
                dgate = torch.einsum("bc...,bc...->bc", grad, out)  # (B, C)
            else:
                dgate = product = grad * out
            if gate.shape[0] != dgate.shape[0]:  # one gate row shared by the batch
                dgate = dgate.sum(0, keepdim=True)
            grad_pre = dgate * log_slope
        if need_y:
            # grad_pre no longer needs product, so grad_y may overwrite it
            dtype = torch.result_type(grad, gate_view)
            reusable = product is not None and product.shape == grad.shape and product.dtype == dtype == grad.dtype
            if ctx.relu:
                grad_y = (torch.ops.aten.threshold_backward.grad_input(grad, out, 0, grad_input=product)
                          if reusable else torch.ops.aten.threshold_backward(grad, out, 0))
                grad_y = grad_y.mul_(gate_view) if grad_y.dtype == dtype else grad_y * gate_view
            else:
                grad_y = torch.mul(grad, gate_view, out=product) if reusable else grad * gate_view
        return grad_y, grad_pre, None, None, None, None


def gated_product(y: Tensor, u: Tensor, weight: Tensor, bias: Tensor,
                  function: GateFunction = GateFunction.SIGMOID, scale: float = 1.0, relu: bool = False,
                  inplace: bool = False) -> Tensor:
    """``y * (scale·σ(weight·u + bias))``, then ReLU if ``relu``, broadcast over dims 2+: y (B, C, ...),
    u (B, 1) or (1, 1), weight and bias (C,) -> y's shape (``gate_values`` then ``GatedProduct``).

    ``inplace``: write the result into ``y`` (when y is not a view and keeps its dtype), for a ``y``
    nothing else holds, such as a layer's fresh output; the caller's ``y`` is then the result.
    """
    if y.dim() < 2 or weight.shape != (y.shape[1],) or bias.shape != weight.shape:
        raise ValueError(f"gated_product needs y (B, C, ...) with weight and bias (C,), got y {tuple(y.shape)}, "
                         f"weight {tuple(weight.shape)}, bias {tuple(bias.shape)}")
    if u.dim() != 2 or u.shape[1] != 1 or u.shape[0] not in (1, y.shape[0]):
        raise ValueError(f"gated_product expects u of shape ({y.shape[0]}, 1) or (1, 1), got {tuple(u.shape)}")
    values = gate_values(u, weight, bias, GateFunction(function), float(scale))
    return GatedProduct.apply(y, values.pre, values.gate, values.log_slope, bool(relu), bool(inplace))


#: The ReLU's backward as a resolved op overload (looked up once, not per call).
_THRESHOLD_BACKWARD = torch.ops.aten.threshold_backward.default


class GatedUnits(torch.autograd.Function):
    """``[relu](y ⊙ scale·sigmoid(bias + (input_scale·u)·weight))`` for a Linear's (B, C) output ``y``, one node.

    Against the same formula in autograd (five nodes and about thirteen (B, C) temporaries per step) it
    keeps three: the gates, written in place of their pre-activation, the gradient of ``y``, and the
    product ``grad·out``, which becomes the pre-activation's gradient in place (σ'/σ = 1 - gate/scale);
    the gate parameters' gradients are one matrix-vector product and one sum. With ``inplace`` the
    product is written into ``y`` (a Linear's fresh output) unless it is a view, a leaf or of another
    dtype. ``u`` (B, 1) or (1, 1); ``weight``, ``bias`` (C,). The sigmoid gate only (the sqrt gate's slope
    takes a dozen ops: plain autograd is as quick there); not twice differentiable.
    """

    @staticmethod
    def forward(ctx: FunctionCtx, y: Tensor, u: Tensor, weight: Tensor, bias: Tensor, scale: float,
                input_scale: float, relu: bool, inplace: bool) -> Tensor:
        pre = torch.addcmul(bias, u, weight, value=input_scale)  # (B or 1, C)
        gate = torch.sigmoid(pre, out=pre)
        if scale != 1.0:
            gate.mul_(scale)
        out = _gated_output(ctx, y, gate, relu, inplace)
        ctx.save_for_backward(out, gate, u, weight)
        ctx.scale, ctx.input_scale, ctx.relu = scale, input_scale, relu  # type: ignore[attr-defined]
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        # no ``once_differentiable`` wrapper (its cost is a tenth of this node's Python time): a backward run to
        # build a graph (create_graph=True) is refused here instead
        if torch.is_grad_enabled():
            raise RuntimeError("GatedUnits is not twice differentiable: a gated Linear's gradient has no graph")
        out, gate, u, weight = ctx.saved_tensors
        need_y, need_u, need_weight, need_bias, *_ = ctx.needs_input_grad
        grad_y = grad_u = grad_weight = grad_bias = None
        if need_y:
            grad_y = _THRESHOLD_BACKWARD(grad, out, 0) if ctx.relu else grad.clone()
            grad_y = grad_y.mul_(gate) if grad_y.dtype == gate.dtype else grad_y * gate
        if need_u or need_weight or need_bias:
            dpre = grad * out  # d out / d pre = out·σ'/σ = out·(1 - σ) (the ReLU's mask is in out already)
            dpre.addcmul_(dpre, gate, value=-1.0 / ctx.scale)
            if dpre.shape[0] != u.shape[0]:  # one gate row shared by the batch
                dpre = dpre.sum(0, keepdim=True)
            if need_weight:
                grad_weight = torch.mv(dpre.t(), u[:, 0] if u.dtype == dpre.dtype else u[:, 0].to(dpre.dtype))
                grad_weight.mul_(ctx.input_scale)
            if need_bias:
                grad_bias = dpre.sum(0)
            if need_u:
                grad_u = torch.mv(dpre, weight.to(dpre.dtype)).mul_(ctx.input_scale).unsqueeze(1)
        return grad_y, grad_u, grad_weight, grad_bias, None, None, None, None
