"""ResNet VAE (pythae benchmark net, PAPER.md §6) for 28×28, 32×32 and 64×64 images, from conditioned layers."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..beta import BetaRange
from ..layers import (BetaConditioned, ConditionedConv2d, ConditionedSequential, ConditioningSpec,
                      ModelConditioning)
from ..objectives import Likelihood
from .conv import (ImageVAE, check_image_shape, check_width, decoder_sides, default_latent_dim,
                   default_likelihood, output_layer, scaled, upsample_layer)


class ResidualBlock(BetaConditioned):
    """``x + Conv3(ReLU(Conv3(x)))`` (both 3×3, stride 1, padding 1, both conditioned).

    (B, C, H, W) and (B, 1) u -> (B, C, H, W); the inner conv has ``hidden_channels`` outputs.
    """

    def __init__(self, channels: int, hidden_channels: int, spec: ConditioningSpec) -> None:
        super().__init__()
        self.inner = ConditionedConv2d(channels, hidden_channels, 3, 1, 1, spec=spec)
        self.outer = ConditionedConv2d(hidden_channels, channels, 3, 1, 1, spec=spec)

    def forward(self, x: Tensor, u: Tensor | None = None) -> Tensor:
        return x + self.outer(torch.relu(self.inner(x, u)), u)


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
    defaults for the shape (see ``mrvae.models.conv``).
    """

    residual_channels = 32

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), latent_dim: int | None = None,
                 width: float = 1.0, likelihood: Likelihood | str | None = None, sigma2: float = 1.0,
                 conditioning: ModelConditioning = ModelConditioning(), beta_range: BetaRange = BetaRange()) -> None:
        shape = check_image_shape(input_shape)
        super().__init__(default_latent_dim(shape) if latent_dim is None else latent_dim,
                         default_likelihood(shape) if likelihood is None else likelihood, sigma2, conditioning.kind,
                         beta_range)
        self.input_shape = shape
        self.width = check_width(width)
        channels, size = shape[0], shape[1]
        c64, c128, res = (scaled(c, self.width) for c in (64, 128, self.residual_channels))
        enc_spec, dec_spec = conditioning.encoder(), conditioning.decoder()

        convs = [ConditionedConv2d(channels, c64, 4, 2, 1, spec=enc_spec),
                 ConditionedConv2d(c64, c128, 4, 2, 1, spec=enc_spec)]
        if size == 64:
            convs.append(ConditionedConv2d(c128, c128, 4, 2, 1, spec=enc_spec))
        convs.append(ConditionedConv2d(c128, c128, 3, 2, 1, spec=enc_spec))  # 7 -> 4 or 8 -> 4
        layers: list[nn.Module] = []
        for conv in convs:
            layers += [conv, nn.ReLU()]
        layers += [ResidualBlock(c128, res, enc_spec), ResidualBlock(c128, res, enc_spec), nn.ReLU(), nn.Flatten()]
        self.encoder = ConditionedSequential(*layers)
        self.mean_head = nn.Linear(c128 * 16, self.latent_dim)
        self.log_var_head = nn.Linear(c128 * 16, self.latent_dim)

        self.projection = nn.Sequential(nn.Linear(self.latent_dim, c128 * 16), nn.Unflatten(1, (c128, 4, 4)), nn.ReLU())
        ups = [c128, c128, c64] if size == 64 else [c128, c64]
        sides = decoder_sides(size, len(ups))
        layers = [upsample_layer(c128, ups[0], sides[0], dec_spec), nn.ReLU(),
                  ResidualBlock(ups[0], res, dec_spec), ResidualBlock(ups[0], res, dec_spec), nn.ReLU()]
        for fan_in, fan_out, side_out in zip(ups[:-1], ups[1:], sides[1:]):
            layers += [upsample_layer(fan_in, fan_out, side_out, dec_spec), nn.ReLU()]
        self.decoder = ConditionedSequential(*layers)
        self.output_layer = output_layer(ups[-1], channels)
