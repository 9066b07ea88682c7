"""CNN VAE (pythae benchmark net, PAPER.md §6) for 28×28, 32×32 and 64×64 images, from conditioned layers.

See docs/architectures.md for every layer's kernel, stride, padding and output shape; the helpers the
image models share (shapes, the paper's latent sizes and likelihoods, ``width``) live in ``models.image``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..beta import BetaRange
from ..layers import ConditionedConv2d, ConditionedSequential, ModelConditioning, Role
from ..objectives import Likelihood
from .image import PAPER_LATENT_DIMS, ImageVAE, decoder_sides, output_layer, upsample_layer

__all__ = ["ConvVAE", "PAPER_LATENT_DIMS"]


class ConvVAE(ImageVAE):
    """CNN VAE: encoder Conv 128, 256, 512, 1024 (k4 s2 p1, ReLU) -> Linear heads; decoder
    Linear(z -> 1024·4·4), ReLU, ConvT 512, 256 (+128 for 64×64), ReLU, ConvT -> C.

    Inputs (B, C, S, S), S in {28, 32, 64}; ``decode`` returns the same shape (Bernoulli logits or
    Gaussian mean with variance ``sigma2``). Conditioned (gated for MR-VAE): every hidden Conv and
    ConvT. Plain: the mean / log-variance heads, the decoder's first Linear and its output ConvT
    (PAPER.md §2). ``width`` multiplies every channel count (1.0 is the paper's net).
    ``latent_dim=None`` takes ``PAPER_LATENT_DIMS``; ``likelihood=None`` takes ``default_likelihood``.
    """

    encoder_channels = (128, 256, 512, 1024)

    def __init__(self, input_shape: Sequence[int] = (1, 28, 28), latent_dim: int | None = None,
                 width: float = 1.0, likelihood: Likelihood | str | None = None, sigma2: float = 1.0,
                 conditioning: ModelConditioning = ModelConditioning(), beta_range: BetaRange = BetaRange()) -> None:
        super().__init__(input_shape, latent_dim, width, likelihood, sigma2, conditioning, beta_range)
        channels, size = self.input_shape[0], self.input_shape[1]
        enc = self.scaled(*self.encoder_channels)
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip([channels, *enc[:-1]], enc):
            layers += [ConditionedConv2d(fan_in, fan_out, 4, 2, 1, spec=conditioning, role=Role.ENCODER), nn.ReLU()]
        self.encoder = ConditionedSequential(*layers, nn.Flatten())
        side = size // 16  # four k4 s2 p1 convs: 28 -> 1, 32 -> 2, 64 -> 4
        self.add_heads(enc[-1] * side * side, enc[-1])

        dec = self.scaled(*((512, 256, 128) if size == 64 else (512, 256)))
        layers = []
        for fan_in, fan_out, side_out in zip([enc[-1], *dec[:-1]], dec, decoder_sides(size, len(dec))):
            layers += [upsample_layer(fan_in, fan_out, side_out, conditioning), nn.ReLU()]
        self.decoder = ConditionedSequential(*layers)
        self.output_layer = output_layer(dec[-1], channels)
