"""What the image VAEs share: supported shapes, the paper's latent sizes and likelihoods, the ``width``
multiplier of channel counts, decoder layer helpers, and the ``ImageVAE`` base (shape checks, encode/decode).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from ..beta import BetaRange
from ..layers import ConditionedConvTranspose2d, ModelConditioning, Role
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
                   conditioning: ModelConditioning) -> ConditionedConvTranspose2d:
    """A decoder's transposed conv growing the side to ``size_out``: k3 s2 p1 for 4 -> 7, else k4 s2 p1 (S -> 2S)."""
    kernel = 3 if size_out == 7 else 4
    return ConditionedConvTranspose2d(in_channels, out_channels, kernel, 2, 1, spec=conditioning, role=Role.DECODER)


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
    """Shared construction and encode/decode of the image VAEs: ``encoder`` (conditioned) -> ``mean_head`` /
    ``log_var_head``; ``projection`` (z -> 4×4 map) -> ``decoder`` (conditioned) -> ``output_layer``.

    Inputs (B, C, S, S), S in ``SUPPORTED_SIZES``; ``latent_dim=None`` takes ``PAPER_LATENT_DIMS``,
    ``likelihood=None`` takes ``default_likelihood``; ``width`` multiplies every channel count.
    """

    def __init__(self, input_shape: Sequence[int], latent_dim: int | None, width: float,
                 likelihood: Likelihood | str | None, sigma2: float, conditioning: ModelConditioning,
                 beta_range: BetaRange) -> None:
        shape = check_image_shape(input_shape)
        super().__init__(default_latent_dim(shape) if latent_dim is None else latent_dim,
                         default_likelihood(shape) if likelihood is None else likelihood, sigma2, conditioning.kind,
                         beta_range)
        self.input_shape = shape
        self.width = check_width(width)

    def scaled(self, *channels: int) -> list[int]:
        """Channel counts times ``width``, rounded, at least 1."""
        return [scaled(c, self.width) for c in channels]

    def add_heads(self, features: int, channels: int) -> None:
        """The plain layers between the conditioned stacks: ``mean_head`` / ``log_var_head`` from the
        encoder's ``features``, and ``projection``: Linear(z -> channels·4·4), unflatten, ReLU."""
        self.mean_head = nn.Linear(features, self.latent_dim)
        self.log_var_head = nn.Linear(features, self.latent_dim)
        self.projection = nn.Sequential(nn.Linear(self.latent_dim, channels * 16), nn.Unflatten(1, (channels, 4, 4)),
                                        nn.ReLU())

    def encode(self, x: Tensor, u: Tensor | None) -> tuple[Tensor, Tensor]:
        """(B, C, S, S) -> (B, k) mean and log-variance of q(z|x)."""
        check_input(x, self.input_shape, type(self).__name__)
        h = self.encoder(x, u)
        return self.mean_head(h), self.log_var_head(h)

    def decode(self, z: Tensor, u: Tensor | None) -> Tensor:
        """(B, k) -> (B, C, S, S) logits (Bernoulli) or mean (Gaussian)."""
        return self.output_layer(self.decoder(self.projection(z), u))
