"""Gate functions of PAPER.md Eqn 7 and the per-unit gate ``scale·σ(w·u + b)`` of standardised log β."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from .choices import Choice

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
