"""The NVAE-style cells of ``mrvae.models.hierarchical``: residual, down- and up-sampling cells
(normalisation–Swish–conv, squeeze-and-excitation), each conv a conditioned layer (none | gate | film)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import (Norm, BetaConditioned, ConditionedConv2d, ConditionedConvTranspose2d, ConditionedLinear,
                      ModelConditioning, Role)

#: The residual branch is added as ``skip + RESIDUAL_SCALE · branch`` (NVAE's 0.1): a deep stack of cells
#: starts close to the identity, whatever the normalisation.
RESIDUAL_SCALE = 0.1


def normalisation(kind: Norm, channels: int) -> nn.Module:
    """A (B, C, H, W) -> same-shape normalisation layer of ``kind`` (identity for ``none``)."""
    return nn.BatchNorm2d(channels, momentum=0.05) if kind is Norm.BATCH else nn.Identity()


class SqueezeExcite(BetaConditioned):
    """Squeeze-and-excitation: x ⊙ sigmoid(Linear(ReLU(Linear(mean_{H,W} x)))), (B, C, H, W) -> same.

    The hidden Linear (C -> max(C/16, 4)) is conditioned; the excitation Linear, whose output is a
    sigmoid's logit like a distribution head's, is plain.
    """

    def __init__(self, channels: int, spec: ModelConditioning, role: Role) -> None:
        super().__init__()
        hidden = max(channels // 16, 4)
        self.squeeze = ConditionedLinear(channels, hidden, spec=spec, role=role)
        self.excite = nn.Linear(hidden, channels)

    def forward(self, x: Tensor, u: Tensor | None = None) -> Tensor:
        weights = torch.sigmoid(self.excite(torch.relu(self.squeeze(x.mean(dim=(2, 3)), u))))
        return x * weights[:, :, None, None]


class ResidualCell(BetaConditioned):
    """``x + 0.1·SE(conv3(swish(norm(conv3(swish(norm(x)))))))``: (B, C, H, W), (B, 1) u -> (B, C, H, W).

    Both 3×3 convs are conditioned (``spec``, with the gate function of ``role``); ``norm`` picks the
    normalisation (see ``Norm``).
    """

    def __init__(self, channels: int, spec: ModelConditioning, role: Role, norm: Norm) -> None:
        super().__init__()
        self.norm1 = normalisation(norm, channels)
        self.conv1 = ConditionedConv2d(channels, channels, 3, 1, 1, spec=spec, role=role)
        self.norm2 = normalisation(norm, channels)
        self.conv2 = ConditionedConv2d(channels, channels, 3, 1, 1, spec=spec, role=role)
        self.se = SqueezeExcite(channels, spec, role)

    def branch(self, x: Tensor, u: Tensor | None) -> Tensor:
        """The residual branch: (B, C, H, W) -> (B, C, H, W)."""
        h = self.conv1(F.silu(self.norm1(x)), u)
        return self.se(self.conv2(F.silu(self.norm2(h)), u), u)

    def forward(self, x: Tensor, u: Tensor | None = None) -> Tensor:
        return x + RESIDUAL_SCALE * self.branch(x, u)


class ResampleCell(BetaConditioned):
    """A cell that changes the side: ``skip(resample(x)) + 0.1·branch(x)`` with branch =
    norm–Swish–``conv1`` (the resampling conv)–norm–Swish–conv3–SE; subclasses give ``skip``, ``conv1``
    and the skip's resampling. (B, Cin, H, W) -> (B, Cout, H', W')."""

    def __init__(self, in_channels: int, out_channels: int, spec: ModelConditioning, role: Role, norm: Norm,
                 skip: nn.Module, conv1: nn.Module) -> None:
        super().__init__()
        self.skip = skip
        self.norm1 = normalisation(norm, in_channels)
        self.conv1 = conv1
        self.norm2 = normalisation(norm, out_channels)
        self.conv2 = ConditionedConv2d(out_channels, out_channels, 3, 1, 1, spec=spec, role=role)
        self.se = SqueezeExcite(out_channels, spec, role)

    def resample(self, x: Tensor) -> Tensor:
        """What the skip path sees: ``x`` itself (its 1×1 conv resamples) unless a subclass says otherwise."""
        return x

    def forward(self, x: Tensor, u: Tensor | None = None) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)), u)
        branch = self.se(self.conv2(F.silu(self.norm2(h)), u), u)
        return self.skip(self.resample(x), u) + RESIDUAL_SCALE * branch


class DownCell(ResampleCell):
    """Halves the side, ``in_channels -> out_channels``: skip = conditioned 1×1 conv of stride 2;
    conv1 = conv3 of stride 2. (B, Cin, H, W) -> (B, Cout, H/2, W/2)."""

    def __init__(self, in_channels: int, out_channels: int, spec: ModelConditioning, role: Role,
                 norm: Norm) -> None:
        skip = ConditionedConv2d(in_channels, out_channels, 1, 2, 0, spec=spec, role=role)
        conv1 = ConditionedConv2d(in_channels, out_channels, 3, 2, 1, spec=spec, role=role)
        super().__init__(in_channels, out_channels, spec, role, norm, skip, conv1)


class UpCell(ResampleCell):
    """Doubles the side, ``in_channels -> out_channels``: skip = nearest upsampling then a conditioned
    1×1 conv; conv1 = ConvT (k4 s2 p1). (B, Cin, H, W) -> (B, Cout, 2H, 2W)."""

    def __init__(self, in_channels: int, out_channels: int, spec: ModelConditioning, role: Role,
                 norm: Norm) -> None:
        skip = ConditionedConv2d(in_channels, out_channels, 1, 1, 0, spec=spec, role=role)
        conv1 = ConditionedConvTranspose2d(in_channels, out_channels, 4, 2, 1, spec=spec, role=role)
        super().__init__(in_channels, out_channels, spec, role, norm, skip, conv1)

    def resample(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")
