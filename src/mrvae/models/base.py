"""The VAE base class every mrvae model derives from: encode, reparameterise, decode, rate and distortion."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..beta import BetaRange
from ..layers import Conditioning
from ..objectives import Likelihood, beta_objective, distortion, gaussian_rate, iwae_bound


@dataclass
class VAEOutput:
    """One forward pass: decoder ``output`` (logits or mean, shaped like x), ``mean``/``log_var``
    of q(z|x) (B, k), the sample ``z`` (B, k), and the per-example ``rate``/``distortion`` (B,) in nats."""

    output: Tensor
    mean: Tensor
    log_var: Tensor
    z: Tensor
    rate: Tensor
    distortion: Tensor


class VAE(nn.Module):
    """Base class: subclasses implement ``encode(x, u)`` and ``decode(z, u)``.

    ``u`` is standardised log β, shape (B, 1) (see ``mrvae.beta.BetaRange``); a model with
    conditioning ``none`` ignores it. Every model carries the ``beta_range`` [a, b] it is trained
    for (a one-point range for a β-VAE); ``u_of(β)`` is the one conversion from β to u, and
    checkpoints and exports store the range beside the weights.
    """

    def __init__(self, latent_dim: int, likelihood: Likelihood | str, sigma2: float,
                 conditioning: Conditioning | str, beta_range: BetaRange = BetaRange()) -> None:
        super().__init__()
        if not isinstance(beta_range, BetaRange):
            raise TypeError(f"beta_range must be a BetaRange, got {type(beta_range).__name__}")
        self.beta_range = beta_range
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        if not sigma2 > 0:
            raise ValueError(f"sigma2 (the Gaussian decoder variance) must be > 0, got {sigma2!r}")
        self.latent_dim = int(latent_dim)
        self.likelihood = Likelihood(likelihood)
        self.sigma2 = float(sigma2)
        self.conditioning = Conditioning(conditioning)

    def u_of(self, beta: float | Tensor) -> Tensor:
        """β (a float, or a (B,) / (B, 1) tensor, inside ``beta_range``) -> u of shape (1, 1) or (B, 1)
        on the model's device: what the conditioned layers take."""
        reference = next(self.parameters(), None)
        return self.beta_range.u_of(beta, None if reference is None else reference.device)

    def encode(self, x: Tensor, u: Tensor | None) -> tuple[Tensor, Tensor]:
        """(B, ...) data -> (B, k) mean and (B, k) log-variance of q(z|x)."""
        raise NotImplementedError

    def decode(self, z: Tensor, u: Tensor | None) -> Tensor:
        """(B, k) latents -> decoder output shaped like x (Bernoulli logits or Gaussian mean)."""
        raise NotImplementedError

    def distortion(self, output: Tensor, x: Tensor) -> Tensor:
        """(B, ...) decoder output and data -> (B,) -log p(x|z) in nats."""
        return distortion(self.likelihood, output, x, self.sigma2)

    def decode_for(self, z: Tensor, u: Tensor | None, x: Tensor) -> Tensor:
        """(B, k) latents, (B, 1) u and the (B, ...) data they should reconstruct -> decoder output.
        ``decode(z, u)``; models whose decoder reads the data (teacher forcing) override it."""
        return self.decode(z, u)

    def reconstruction_distortion(self, z: Tensor, u: Tensor | None, x: Tensor) -> Tensor:
        """(B, k) latents, (B, 1) u and the (B, ...) data they should reconstruct -> (B,) -log p(x|z) in nats."""
        return self.distortion(self.decode_for(z, u, x), x)

    def mean_output(self, output: Tensor) -> Tensor:
        """Decoder output -> the likelihood's mean (sigmoid of logits for Bernoulli)."""
        return torch.sigmoid(output) if self.likelihood is Likelihood.BERNOULLI else output

    @staticmethod
    def reparameterise(mean: Tensor, log_var: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(B, k) mean, log-variance -> (B, k) sample z = mean + exp(log_var/2)·ε, ε from ``generator``."""
        eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(0.5 * log_var) * eps

    def forward(self, x: Tensor, u: Tensor | None = None, generator: torch.Generator | None = None,
                sample: bool = True) -> VAEOutput:
        """(B, ...) data, (B, 1) u -> ``VAEOutput``; ``sample=False`` decodes the mean instead of z."""
        mean, log_var = self.encode(x, u)
        z = self.reparameterise(mean, log_var, generator) if sample else mean
        output = self.decode_for(z, u, x)
        return VAEOutput(output, mean, log_var, z, gaussian_rate(mean, log_var), self.distortion(output, x))

    def iwae_bound(self, x: Tensor, u: Tensor | None, num_samples: int, chunk_size: int = 64,
                   generator: torch.Generator | None = None) -> Tensor:
        """(B, ...) data -> (B,) importance-weighted lower bound on log p(x) in nats with ``num_samples``
        samples of q(z|x) (``objectives.iwae_bound``); models with several latent groups override it."""
        return iwae_bound(self, x, u, num_samples, chunk_size, generator)

    def objective(self, x: Tensor, beta: Tensor, u: Tensor | None = None,
                  generator: torch.Generator | None = None) -> tuple[Tensor, VAEOutput]:
        """(B, ...) data, (B, 1) β and u -> ((B,) training loss in nats, the forward pass).

        The β-VAE objective D + β·R; models with another multi-rate objective (β-TCVAE) override it.
        ``u`` defaults to ``u_of(beta)``; it differs from that only when the loss's β is scaled (KL
        warm-up). ``fit()`` minimises the batch mean of the returned loss.
        """
        out = self(x, self.u_of(beta) if u is None else u, generator)
        return beta_objective(out.distortion, out.rate, beta), out
