"""CNN VAE (pythae benchmark net, PAPER.md §6) for 28×28, 32×32 and 64×64 images, from conditioned layers.

Shared helpers for the image models live here too: the supported input shapes, the paper's default
latent sizes and likelihoods per shape, and the ``width`` multiplier of channel counts.
See docs/architectures.md for every layer's kernel, stride, padding and output shape.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from ..beta import BetaRange
from ..layers import (ConditionedConv2d, ConditionedConvTranspose2d, ConditionedSequential, ConditioningSpec,
                      ModelConditioning)
from ..objectives import Likelihood
from .base import VAE

#: Image side lengths the reference image models support (square inputs, any channel count).
SUPPORTED_SIZES = (28, 32, 64)

#: The paper's latent sizes by image side (PAPER.md §6): 28×28 MNIST/Omniglot 32, 32×32 CIFAR-10 256
#: (SVHN uses 32: pass ``latent_dim=32``), 64×64 CelebA 64.
PAPER_LATENT_DIMS = {28: 32, 32: 256, 64: 64}


def check_image_shape(input_shape: Sequence[int]) -> tuple[int, int, int]:
    """Validate a (C, H, W) image shape with H = W in ``SUPPORTED_SIZES``; returns it as ints."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or shape[0] < 1 or shape[1] != shape[2] or shape[1] not in SUPPORTED_SIZES:
        raise ValueError(f"input_shape must be (C, S, S) with C >= 1 and S in {SUPPORTED_SIZES}, "
                         f"got {tuple(input_shape)!r}")
    return shape  # type: ignore[return-value]


def default_latent_dim(input_shape: Sequence[int]) -> int:
    """The paper's latent size for an image shape (see ``PAPER_LATENT_DIMS``)."""
    return PAPER_LATENT_DIMS[check_image_shape(input_shape)[1]]


def default_likelihood(input_shape: Sequence[int]) -> Likelihood:
    """Bernoulli logits for 28×28 (binarised MNIST, Omniglot), Gaussian otherwise (CIFAR-10, SVHN, CelebA)."""
    return Likelihood.BERNOULLI if check_image_shape(input_shape)[1] == 28 else Likelihood.GAUSSIAN


def scaled(channels: int, width: float) -> int:
    """A channel count times the ``width`` multiplier, rounded, at least 1."""
    return max(1, int(round(channels * width)))


def check_width(width: float) -> float:
    """Validate the channel multiplier: a finite number > 0."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
        raise ValueError(f"width must be a finite number > 0, got {width!r}")
    return float(width)


def check_input(x: Tensor, input_shape: tuple[int, int, int], where: str) -> None:
    """Raise ValueError unless ``x`` is (B, *input_shape)."""
    if x.dim() != 4 or tuple(x.shape[1:]) != input_shape:
        raise ValueError(f"{where} expects input of shape (B, {', '.join(map(str, input_shape))}), "
                         f"got {tuple(x.shape)}")


def upsample_layer(in_channels: int, out_channels: int, size_out: int,
                   spec: ConditioningSpec) -> ConditionedConvTranspose2d:
    """Transposed conv growing the side to ``size_out``: k3 s2 p1 for 4 -> 7, else k4 s2 p1 (S -> 2S)."""
    if size_out == 7:
        return ConditionedConvTranspose2d(in_channels, out_channels, 3, 2, 1, spec=spec)
    return ConditionedConvTranspose2d(in_channels, out_channels, 4, 2, 1, spec=spec)


def output_layer(in_channels: int, out_channels: int) -> nn.ConvTranspose2d:
    """The decoder's last layer (never conditioned): k4 s2 p1, doubling the side."""
    return nn.ConvTranspose2d(in_channels, out_channels, 4, 2, 1)


def decoder_sides(size: int, steps: int) -> list[int]:
    """Sides of the decoder's feature maps after the 4×4 projection, ``steps`` doublings, ending at ``size``.

    For 28 the first step is 4 -> 7, then doublings (7, 14, 28); otherwise 4 -> 8 -> ... -> size.
    """
    if size == 28:
        return [7 * 2 ** i for i in range(steps)]
    return [8 * 2 ** i for i in range(steps)]


class ImageVAE(VAE):
    """Shared encode/decode of the image VAEs: ``encoder`` (conditioned) -> ``mean_head`` /
    ``log_var_head``; ``projection`` (z -> 4×4 map) -> ``decoder`` (conditioned) -> ``output_layer``."""

    def encode(self, x: Tensor, u: Tensor | None) -> tuple[Tensor, Tensor]:
        """(B, C, S, S) -> (B, k) mean and log-variance of q(z|x)."""
        check_input(x, self.input_shape, type(self).__name__)
        h = self.encoder(x, u)
        return self.mean_head(h), self.log_var_head(h)

    def decode(self, z: Tensor, u: Tensor | None) -> Tensor:
        """(B, k) -> (B, C, S, S) logits (Bernoulli) or mean (Gaussian)."""
        return self.output_layer(self.decoder(self.projection(z), u))


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
        shape = check_image_shape(input_shape)
        super().__init__(default_latent_dim(shape) if latent_dim is None else latent_dim,
                         default_likelihood(shape) if likelihood is None else likelihood, sigma2, conditioning.kind,
                         beta_range)
        self.input_shape = shape
        self.width = check_width(width)
        channels, size = shape[0], shape[1]
        enc = [scaled(c, self.width) for c in self.encoder_channels]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip([channels, *enc[:-1]], enc):
            layers += [ConditionedConv2d(fan_in, fan_out, 4, 2, 1, spec=conditioning.encoder()), nn.ReLU()]
        self.encoder = ConditionedSequential(*layers, nn.Flatten())
        side = size // 16  # four k4 s2 p1 convs: 28 -> 1, 32 -> 2, 64 -> 4
        features = enc[-1] * side * side
        self.mean_head = nn.Linear(features, self.latent_dim)
        self.log_var_head = nn.Linear(features, self.latent_dim)

        dec = [scaled(c, self.width) for c in ((512, 256, 128) if size == 64 else (512, 256))]
        self.projection = nn.Sequential(nn.Linear(self.latent_dim, enc[-1] * 16), nn.Unflatten(1, (enc[-1], 4, 4)),
                                        nn.ReLU())
        layers = []
        for fan_in, fan_out, side_out in zip([enc[-1], *dec[:-1]], dec, decoder_sides(size, len(dec))):
            layers += [upsample_layer(fan_in, fan_out, side_out, conditioning.decoder()), nn.ReLU()]
        self.decoder = ConditionedSequential(*layers)
        self.output_layer = output_layer(dec[-1], channels)
