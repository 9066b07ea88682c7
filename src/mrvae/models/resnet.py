"""ResNet VAE (pythae benchmark net, PAPER.md §6) for 28×28, 32×32 and 64×64 images, from conditioned layers."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ..beta import BetaRange
from ..layers import BetaConditioned, ConditionedConv2d, ConditionedSequential, ModelConditioning, Role
from ..objectives import Likelihood
from .image import ImageVAE, decoder_sides, output_layer, upsample_layer


class ResidualBlock(BetaConditioned):
    """``x + Conv3(ReLU(Conv3(x)))`` (both 3×3, stride 1, padding 1, both conditioned).

    (B, C, H, W) and (B, 1) u -> (B, C, H, W); the inner conv has ``hidden_channels`` outputs; ``role``
    (encoder or decoder) picks the gate function of ``conditioning``.
    """

    def __init__(self, channels: int, hidden_channels: int, conditioning: ModelConditioning, role: Role | str) -> None:
        super().__init__()
        self.inner = ConditionedConv2d(channels, hidden_channels, 3, 1, 1, spec=conditioning, role=role)
        self.outer = ConditionedConv2d(hidden_channels, channels, 3, 1, 1, spec=conditioning, role=role)

    def forward(self, x: Tensor, u: Tensor | None = None) -> Tensor:
        return x + self.outer(self.inner(x, u, relu=True), u)


class ResNetVAE(ImageVAE):
    """ResNet VAE. Encoder: Conv 64 (k4 s2 p1), Conv 128 (k4 s2 p1), [64×64 only: Conv 128 (k4 s2 p1)],
    Conv 128 (k3 s2 p1), each + ReLU, two residual blocks, ReLU -> Linear heads from 128·4·4.
    Decoder: Linear(z -> 128·4·4), ReLU, ConvT 128 (4 -> 7 for 28×28, else 4 -> 8), ReLU, two residual
    blocks, ReLU, [64×64 only: ConvT 128, ReLU], ConvT 64, ReLU, ConvT -> C.

    Inputs (B, C, S, S), S in {28, 32, 64}; ``decode`` returns the same shape (Bernoulli logits or
    Gaussian mean with variance ``sigma2``). Conditioned (gated for MR-VAE): every hidden Conv and
    ConvT, both convs of each residual block included. Plain: the heads, the decoder's first Linear and
    its output ConvT (PAPER.md §2). Residual blocks have ``32·width`` inner channels (pythae's bottleneck).
    ``width`` multiplies every channel count; ``latent_dim=None`` / ``likelihood=None`` take the paper's
    defaults for the shape (see ``mrvae.models.image``).
    """

    residual_channels = 32

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), latent_dim: int | None = None,
                 width: float = 1.0, likelihood: Likelihood | str | None = None, sigma2: float = 1.0,
                 conditioning: ModelConditioning = ModelConditioning(), beta_range: BetaRange = BetaRange()) -> None:
        super().__init__(input_shape, latent_dim, width, likelihood, sigma2, conditioning, beta_range)
        channels, size = self.input_shape[0], self.input_shape[1]
        c64, c128, res = self.scaled(64, 128, self.residual_channels)

        def conv(fan_in: int, fan_out: int, kernel: int) -> ConditionedConv2d:
            return ConditionedConv2d(fan_in, fan_out, kernel, 2, 1, spec=conditioning, role=Role.ENCODER)

        def blocks(width: int, role: Role) -> list[nn.Module]:
            return [ResidualBlock(width, res, conditioning, role), ResidualBlock(width, res, conditioning, role),
                    nn.ReLU()]

        convs = [conv(channels, c64, 4), conv(c64, c128, 4)] + ([conv(c128, c128, 4)] if size == 64 else [])
        convs.append(conv(c128, c128, 3))  # 7 -> 4 or 8 -> 4
        layers: list[nn.Module] = []
        for layer in convs:
            layers += [layer, nn.ReLU()]
        self.encoder = ConditionedSequential(*layers, *blocks(c128, Role.ENCODER), nn.Flatten())
        self.add_heads(c128 * 16, c128)

        ups = [c128, c128, c64] if size == 64 else [c128, c64]
        sides = decoder_sides(size, len(ups))
        layers = [upsample_layer(c128, ups[0], sides[0], conditioning), nn.ReLU(), *blocks(ups[0], Role.DECODER)]
        for fan_in, fan_out, side_out in zip(ups[:-1], ups[1:], sides[1:]):
            layers += [upsample_layer(fan_in, fan_out, side_out, conditioning), nn.ReLU()]
        self.decoder = ConditionedSequential(*layers)
        self.output_layer = output_layer(ups[-1], channels)
