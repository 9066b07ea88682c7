"""MLP VAE built from conditioned layers: every hidden layer gated, latent heads and output layer not."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from ..beta import BetaRange
from ..layers import ConditionedLinear, ConditionedSequential, ModelConditioning, Role
from ..objectives import Likelihood
from .base import VAE


def _hidden_stack(sizes: Sequence[int], conditioning: ModelConditioning, role: Role,
                  activation: type[nn.Module]) -> ConditionedSequential:
    """Conditioned Linear layers through ``sizes`` (first = input), each followed by ``activation``."""
    layers: list[nn.Module] = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [ConditionedLinear(fan_in, fan_out, conditioning, role), activation()]
    return ConditionedSequential(*layers)


class MLPVAE(VAE):
    """MLP encoder ``x -> hidden... -> (mean, log_var)`` and decoder ``z -> hidden... -> output``.

    ``data_shape`` is the shape of one example, e.g. (1, 8, 8) or (64,); inputs are (B, *data_shape)
    and are flattened. Gated (conditioned) layers: every Linear whose output is a hidden activation,
    in the encoder and in the decoder (the decoder's ``z -> hidden`` layer included: in an MLP it is
    an ordinary hidden layer, unlike the conv models' reshape-to-feature-map projection). Not gated:
    the encoder's mean and log-variance heads and the decoder's output layer (PAPER.md §2).
    """

    def __init__(self, data_shape: Sequence[int], latent_dim: int = 16, hidden: Sequence[int] = (256, 256),
                 likelihood: Likelihood | str = Likelihood.BERNOULLI, sigma2: float = 1.0,
                 conditioning: ModelConditioning = ModelConditioning(),
                 activation: type[nn.Module] = nn.ReLU, beta_range: BetaRange = BetaRange()) -> None:
        super().__init__(latent_dim, likelihood, sigma2, conditioning.kind, beta_range)
        if not hidden or any(h < 1 for h in hidden):
            raise ValueError(f"hidden must be a non-empty list of sizes >= 1, got {list(hidden)!r}")
        self.data_shape = tuple(int(s) for s in data_shape)
        data_dim = math.prod(self.data_shape)
        self.encoder = _hidden_stack([data_dim, *hidden], conditioning, Role.ENCODER, activation)
        self.mean_head = nn.Linear(hidden[-1], latent_dim)
        self.log_var_head = nn.Linear(hidden[-1], latent_dim)
        reversed_hidden = list(hidden)[::-1]
        self.decoder = _hidden_stack([latent_dim, *reversed_hidden], conditioning, Role.DECODER, activation)
        self.output_layer = nn.Linear(reversed_hidden[-1], data_dim)

    def encode(self, x: Tensor, u: Tensor | None) -> tuple[Tensor, Tensor]:
        """(B, *data_shape) -> (B, k) mean and log-variance."""
        h = self.encoder(x.reshape(x.shape[0], -1), u)
        return self.mean_head(h), self.log_var_head(h)

    def decode(self, z: Tensor, u: Tensor | None) -> Tensor:
        """(B, k) -> (B, *data_shape) logits (Bernoulli) or mean (Gaussian)."""
        out = self.output_layer(self.decoder(z, u))
        return out.reshape((z.shape[0],) + self.data_shape)
