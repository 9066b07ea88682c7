"""Layers conditioned on standardised log β: Linear / Conv2d / ConvTranspose2d / Embedding with ``none | gate | film``.

Each conditioned layer wraps an ordinary ``base`` layer and takes ``(x, u)`` in ``forward``, with
``u`` of shape (B, 1) (or (1, 1), broadcast over the batch). For ``gate`` it returns
``gate(u) ⊙ base(x)`` with one gate per output unit or channel, so the weight row and the bias of
each unit are scaled together (PAPER.md Eqn 8-9); for ``film`` it returns ``scale(u)·base(x) + shift(u)``;
for ``none`` it returns ``base(x)`` and ignores ``u``. What a layer gets is one ``ModelConditioning``
(the whole model's settings) and its ``Role`` (encoder or decoder), which picks the gate function.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn
from torch.nn.modules.module import _global_forward_hooks, _global_forward_pre_hooks

from .beta import Choice
from .gates import FilmConditioner, GatedProduct, GatedUnits, GateFunction, GateInit, UnitGate, gate_values


class Conditioning(Choice):
    """How a layer depends on β: ``none`` (β-VAE), ``gate`` (MR-VAE) or ``film`` (YOTO-style)."""

    NONE = "none"
    GATE = "gate"
    FILM = "film"


class Norm(Choice):
    """Normalisation inside the cells: ``batch`` (NVAE's BatchNorm) or ``none``.

    BatchNorm pools its statistics over the batch, whose examples carry different β when β is drawn
    per example (PAPER.md §2): its running statistics, used in evaluation, are averaged over the β
    range, and in training a gate that is the same for the whole batch (β per batch) is normalised
    away by the next BatchNorm. ``none`` keeps every gate's effect intact.
    """

    BATCH = "batch"
    NONE = "none"


class Role(Choice):
    """Where a conditioned layer sits; it picks the gate function of ``ModelConditioning``."""

    ENCODER = "encoder"
    DECODER = "decoder"


@dataclass(frozen=True)
class ModelConditioning:
    """A model's conditioning: one kind for the whole network, the encoder's and the decoder's gate
    function, and the gate scale / init or FiLM width shared by every conditioned layer. Each layer
    takes it with its ``Role``; ``gate_function(role)`` is the one difference between the two roles.

    A gate computes ``gate_scale·σ(w·(gate_input_scale·u) + b)``. These class defaults (2·sigmoid,
    input u as is: the recipe before issue 14) are what a model built directly gets; ``ModelConfig``
    gives ``mlp`` and ``resnet`` the recipe measured at equal compute (``config.ARCH_RECIPES``: gate
    scale 4, input scale 2; docs/results.md §6). ``encoder_gate="sigmoid", decoder_gate="sqrt",
    gate_scale=1`` is the paper's Eqn 7 (configs/paper_eqn7.yaml).
    """

    kind: Conditioning = Conditioning.GATE
    encoder_gate: GateFunction = GateFunction.SIGMOID
    decoder_gate: GateFunction = GateFunction.SIGMOID
    gate_scale: float = 2.0
    gate_init: GateInit = GateInit.PAPER
    film_hidden: int = 16
    gate_input_scale: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", Conditioning(self.kind))
        object.__setattr__(self, "encoder_gate", GateFunction(self.encoder_gate))
        object.__setattr__(self, "decoder_gate", GateFunction(self.decoder_gate))
        object.__setattr__(self, "gate_init", GateInit(self.gate_init))
        for name in ("gate_scale", "gate_input_scale"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name.replace('_', ' ')} must be > 0, got {value!r}")
            object.__setattr__(self, name, float(value))
        if isinstance(self.film_hidden, bool) or not isinstance(self.film_hidden, int) or self.film_hidden < 1:
            raise ValueError(f"film_hidden must be >= 1, got {self.film_hidden!r}")

    def gate_function(self, role: Role | str) -> GateFunction:
        """The gate function of the layers in ``role`` (encoder or decoder)."""
        return self.encoder_gate if Role(role) is Role.ENCODER else self.decoder_gate

    def unconditioned(self) -> ModelConditioning:
        """The same settings with ``kind = none`` (what a folded layer carries)."""
        return replace(self, kind=Conditioning.NONE)


#: The conditioning of a plain (β-VAE) layer or model.
PLAIN = ModelConditioning(Conditioning.NONE)


class BetaConditioned(nn.Module):
    """Marker base: modules whose ``forward`` is ``(x, u)`` rather than ``(x)``."""


def check_u(u: Tensor | None, batch_size: int, where: str) -> Tensor:
    """Validate u for a batch of ``batch_size``: must be (B, 1) or (1, 1)."""
    if u is None:
        raise ValueError(f"{where} is conditioned on β but got u=None; pass u of shape (B, 1)")
    if u.dim() != 2 or u.shape[1] != 1 or u.shape[0] not in (1, batch_size):
        raise ValueError(f"{where} expects u of shape ({batch_size}, 1) or (1, 1), got {tuple(u.shape)}")
    return u


def unit_axis(base: nn.Module) -> int:
    """The axis of ``base``'s output that holds its units: -1 for Linear and Embedding ((B, ..., out)),
    1 for convolutions and BatchNorm ((B, C, ...)); an nn.Sequential's is its last layer's."""
    while isinstance(base, nn.Sequential) and len(base) > 0:
        base = base[-1]
    return -1 if isinstance(base, (nn.Linear, nn.Embedding)) else 1


class ConditionedLayer(BetaConditioned):
    """A ``base`` layer whose per-unit (per-channel) output is conditioned on u, see module docstring.

    ``spec`` is the model's ``ModelConditioning``; ``role`` (encoder or decoder) picks its gate function.
    """

    def __init__(self, base: nn.Module, out_features: int, spec: ModelConditioning = ModelConditioning(),
                 role: Role | str = Role.ENCODER) -> None:
        super().__init__()
        if not isinstance(spec, ModelConditioning):
            raise TypeError(f"spec must be a ModelConditioning, got {spec!r}")
        self.base = base
        self.spec = spec
        self.role = Role(role)
        self.unit_dim = unit_axis(base)
        self.gate: UnitGate | None = None
        self.film: FilmConditioner | None = None
        if spec.kind is Conditioning.GATE:
            self.gate = UnitGate(out_features, spec.gate_function(self.role), spec.gate_scale, spec.gate_init)
        elif spec.kind is Conditioning.FILM:
            self.film = FilmConditioner(out_features, spec.film_hidden)

    @property
    def conditioning(self) -> Conditioning:
        return self.spec.kind

    def per_unit(self, values: Tensor, y: Tensor) -> Tensor:
        """(B or 1, out) per-unit values -> a view that broadcasts against ``y`` along its unit axis."""
        shape = [1] * y.dim()
        shape[0], shape[self.unit_dim] = values.shape
        return values.reshape(shape)

    def gate_input(self, u: Tensor) -> Tensor:
        """What this layer's gate sees of u: ``gate_input_scale·u`` (FiLM sees u itself)."""
        scale = self.spec.gate_input_scale
        return u * scale if self.gate is not None and scale != 1.0 else u

    def fused_gate_kind(self, y: Tensor) -> type[torch.autograd.Function] | None:
        """The fused node that applies this layer's ``UnitGate`` to its output ``y``: ``GatedUnits`` for a
        Linear's (B, C) with the sigmoid gate, ``GatedProduct`` for a (B, C, *S) feature map; ``None`` (plain
        autograd) for anything else, a stand-in gate module, or inside ``torch.compile``, which fuses the
        plain ops itself."""
        if type(self.gate) is not UnitGate or torch.compiler.is_compiling():
            return None
        if y.dim() == 2:
            return GatedUnits if self.gate.function is GateFunction.SIGMOID else None
        return GatedProduct if y.dim() > 2 and self.unit_dim == 1 else None

    def forward(self, x: Tensor, u: Tensor | None = None, relu: bool = False) -> Tensor:
        """(B, in, ...) input and (B, 1) u -> (B, out, ...) output ((B, ..., out) for Linear and Embedding);
        ``relu`` applies a ReLU after the conditioning (fused into the gate's autograd node for feature
        maps, so no extra map is kept for backward)."""
        y = self.base(x)
        if self.spec.kind is Conditioning.NONE:
            return torch.relu(y) if relu else y
        u = check_u(u, y.shape[0], type(self).__name__)
        fused = self.fused_gate_kind(y)
        if fused is not None:
            # one autograd node for gate ⊙ y (and the ReLU), written into y, a fresh tensor of base's, unless
            # a hook on base may hold on to it
            gate, inplace = self.gate, not _has_hooks(self.base)
            assert isinstance(gate, UnitGate)
            if fused is GatedUnits:
                return GatedUnits.apply(y, u, gate.weight, gate.bias, gate.scale, self.spec.gate_input_scale, relu,
                                        inplace)
            values = gate_values(u, gate.weight, gate.bias, gate.function, gate.scale, self.spec.gate_input_scale)
            return GatedProduct.apply(y, values.pre, values.gate, values.log_slope, relu, inplace)
        u = self.gate_input(u)
        if self.gate is not None:  # also a stand-in module (e.g. a benchmark's diagnostic): plain autograd
            y = y * self.per_unit(self.gate(u), y)
        else:
            assert self.film is not None
            scale, shift = self.film(u)
            y = y * self.per_unit(scale, y) + self.per_unit(shift, y)
        return torch.relu(y) if relu else y


class ConditionedLinear(ConditionedLayer):
    """``nn.Linear(in, out)`` conditioned per output unit: (B, ..., in), (B, 1) -> (B, ..., out)."""

    def __init__(self, in_features: int, out_features: int, spec: ModelConditioning = ModelConditioning(),
                 role: Role | str = Role.ENCODER, bias: bool = True) -> None:
        super().__init__(nn.Linear(in_features, out_features, bias=bias), out_features, spec, role)


class ConditionedConv2d(ConditionedLayer):
    """``nn.Conv2d`` conditioned per output channel: (B, C, H, W), (B, 1) -> (B, C', H', W')."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 spec: ModelConditioning = ModelConditioning(), role: Role | str = Role.ENCODER,
                 bias: bool = True) -> None:
        base = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        super().__init__(base, out_channels, spec, role)


class ConditionedConvTranspose2d(ConditionedLayer):
    """``nn.ConvTranspose2d`` conditioned per output channel: (B, C, H, W), (B, 1) -> (B, C', H', W')."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, output_padding: int = 0, spec: ModelConditioning = ModelConditioning(),
                 role: Role | str = Role.ENCODER, bias: bool = True) -> None:
        base = nn.ConvTranspose2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                  output_padding=output_padding, bias=bias)
        super().__init__(base, out_channels, spec, role)


class ConditionedEmbedding(ConditionedLayer):
    """``nn.Embedding`` conditioned per embedding unit: (B, T) long ids, (B, 1) u -> (B, T, E); one gate
    (or FiLM scale and shift) per unit, shared by every position."""

    def __init__(self, num_embeddings: int, embedding_dim: int, pad_index: int | None = None,
                 spec: ModelConditioning = ModelConditioning(), role: Role | str = Role.ENCODER) -> None:
        super().__init__(nn.Embedding(num_embeddings, embedding_dim, padding_idx=pad_index), embedding_dim, spec,
                         role)


class ConditionedSequential(BetaConditioned):
    """Like ``nn.Sequential``, passing u to every ``BetaConditioned`` child: (x, u) -> y."""

    def __init__(self, *layers: nn.Module) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(self, x: Tensor, u: Tensor | None = None) -> Tensor:
        fuse = _fusable_relus(self.layers)
        skip = False
        for index, layer in enumerate(self.layers):
            if skip:  # this ReLU ran inside the conditioned layer before it
                skip = False
                continue
            if index in fuse:
                x, skip = layer(x, u, relu=True), True
            else:
                x = layer(x, u) if isinstance(layer, BetaConditioned) else layer(x)
        return x

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, index: int) -> nn.Module:
        return self.layers[index]


def _has_hooks(module: nn.Module) -> bool:
    return bool(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
                or module._backward_pre_hooks or _global_forward_hooks or _global_forward_pre_hooks)


def _fusable_relus(layers: nn.ModuleList) -> set[int]:
    """Indices of gated ``ConditionedLayer``s followed by an ``nn.ReLU``: these run the ReLU inside
    their gate node (same values; the gated feature map is the one tensor kept for backward). Layers
    or ReLUs carrying hooks are left alone, so every hook still sees its module run."""
    found = set()
    for index in range(len(layers) - 1):
        layer, after = layers[index], layers[index + 1]
        if (type(after) is nn.ReLU and isinstance(layer, ConditionedLayer) and type(layer.gate) is UnitGate
                and type(layer).forward is ConditionedLayer.forward
                and not _has_hooks(after) and not _has_hooks(layer)):
            found.add(index)
    return found
