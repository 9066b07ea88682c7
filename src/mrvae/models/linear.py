"""Linear VAE (Lucas et al. 2019; PAPER.md §5): a two-layer gated form and its closed-form optimum.

Model: ``q(z|x) = N(A x + a, diag C)``, ``p(x|z) = N(B z + c, σ² I)``. In the MR-VAE form the
encoder is ``x -> hidden (k units, gated) -> mean head`` and the decoder ``z -> hidden (k units,
gated) -> output``, so per-latent gates can reproduce the β-dependent optimum (Theorem 1);
C(u) = sigmoid(w·u + b) per latent.

Closed form with data covariance eigenvalues λ_1 >= ... >= λ_d, γ = β·σ², ℓ_i = max(0, λ_i - γ):
``R* = ½ Σ_{i<=k} max(0, log(λ_i/γ))`` and
``D* = [Σ_{i<=k} min(λ_i, γ) + Σ_{j>k} λ_j] / (2σ²) + (d/2)·log(2πσ²)``, nats per example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import Conditioning, ConditionedLinear, ModelConditioning
from ..objectives import LOG_2PI, Likelihood
from .base import VAE


def _sorted_eigenvalues(eigenvalues: Tensor | list[float]) -> Tensor:
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64).flatten()
    if lam.numel() == 0 or bool((lam < 0).any()):
        raise ValueError("eigenvalues must be a non-empty list of values >= 0")
    return torch.sort(lam, descending=True).values


def optimal_rate_distortion(eigenvalues: Tensor | list[float], latent_dim: int, beta: Tensor | float,
                            sigma2: float = 1.0) -> tuple[Tensor, Tensor]:
    """Data-covariance eigenvalues (d,), k, β (any shape) -> (R*, D*) of β's shape, nats per example."""
    lam = _sorted_eigenvalues(eigenvalues)
    d = lam.numel()
    if not 1 <= latent_dim <= d:
        raise ValueError(f"latent_dim must be in [1, {d}] (the data dimension), got {latent_dim}")
    if not sigma2 > 0:
        raise ValueError(f"sigma2 must be > 0, got {sigma2!r}")
    beta_t = torch.as_tensor(beta, dtype=torch.float64)
    if bool((beta_t <= 0).any()):
        raise ValueError("β must be > 0")
    gamma = (beta_t * sigma2).unsqueeze(-1)  # (..., 1)
    top = lam[:latent_dim]
    ratio = torch.where(top > 0, top / gamma, torch.zeros_like(gamma))
    rate = 0.5 * torch.log(torch.clamp(ratio, min=1.0)).sum(-1)
    dist = (torch.minimum(top, gamma).sum(-1) + lam[latent_dim:].sum()) / (2 * sigma2)
    return rate, dist + 0.5 * d * (LOG_2PI + math.log(sigma2))


@dataclass
class LinearOptimum:
    """Optimal linear VAE at one β: decoder ``D`` (d, k), encoder ``E`` (k, d), posterior variances
    ``C`` (k,), data mean ``mu`` (d,), and R*, D* in nats per example."""

    decoder: Tensor
    encoder: Tensor
    variance: Tensor
    mu: Tensor
    rate: float
    distortion: float


def optimal_parameters(data_mean: Tensor, data_cov: Tensor, latent_dim: int, beta: float,
                       sigma2: float = 1.0) -> LinearOptimum:
    """(d,) mean and (d, d) covariance -> the optimum D*, E*, C* of PAPER.md §5 (rotation R = I)."""
    cov = torch.as_tensor(data_cov, dtype=torch.float64)
    lam, vecs = torch.linalg.eigh(cov)
    lam, order = torch.sort(lam.clamp(min=0), descending=True)
    u_k = vecs[:, order][:, :latent_dim]
    gamma = beta * sigma2
    ell = torch.clamp(lam[:latent_dim] - gamma, min=0)
    decoder = u_k * ell.sqrt()
    encoder = (ell.sqrt() / (ell + gamma)).unsqueeze(1) * u_k.T
    variance = gamma / (ell + gamma)
    rate, dist = optimal_rate_distortion(lam, latent_dim, beta, sigma2)
    return LinearOptimum(decoder, encoder, variance, torch.as_tensor(data_mean, dtype=torch.float64),
                         float(rate), float(dist))


def linear_vae_terms(enc_matrix: Tensor, enc_bias: Tensor, variance: Tensor, dec_matrix: Tensor,
                     dec_bias: Tensor, data_mean: Tensor, data_cov: Tensor, sigma2: float) -> tuple[Tensor, Tensor]:
    """Exact expected (rate, distortion) in nats per example of a linear VAE under data N(mean, cov).

    Shapes: A (k, d), a (k,), C (k,), B (d, k), c (d,), mean (d,), cov (d, d). Differentiable.
    """
    d = data_mean.shape[0]
    mean_code = enc_matrix @ data_mean + enc_bias
    code_second_moment = torch.diagonal(enc_matrix @ data_cov @ enc_matrix.T) + mean_code.square()
    rate = 0.5 * (code_second_moment + variance - torch.log(variance) - 1.0).sum()
    residual = torch.eye(d, dtype=data_cov.dtype) - dec_matrix @ enc_matrix
    offset = residual @ data_mean - dec_matrix @ enc_bias - dec_bias
    squared = (torch.trace(residual @ data_cov @ residual.T) + offset.square().sum()
               + (dec_matrix.square() * variance).sum())
    return rate, squared / (2 * sigma2) + 0.5 * d * (LOG_2PI + math.log(sigma2))


class LinearVAE(VAE):
    """Two-layer linear VAE for data of dimension d with k latents (Gaussian likelihood, fixed σ²).

    encode: (B, d) -> (B, k) mean and log-variance; decode: (B, k) -> (B, d) mean.
    """

    def __init__(self, data_dim: int, latent_dim: int, sigma2: float = 1.0,
                 conditioning: ModelConditioning = ModelConditioning()) -> None:
        super().__init__(latent_dim, Likelihood.GAUSSIAN, sigma2, conditioning.kind)
        if not 1 <= latent_dim <= data_dim:
            raise ValueError(f"need 1 <= latent_dim <= data_dim, got {latent_dim}, {data_dim}")
        self.data_dim = data_dim
        self.encoder_hidden = ConditionedLinear(data_dim, latent_dim, conditioning.encoder())
        self.encoder_mean = nn.Linear(latent_dim, latent_dim)
        self.variance_weight = nn.Parameter(torch.zeros(latent_dim))
        self.variance_bias = nn.Parameter(torch.zeros(latent_dim))
        self.decoder_hidden = ConditionedLinear(latent_dim, latent_dim, conditioning.decoder(), bias=False)
        self.decoder_out = nn.Linear(latent_dim, data_dim)
        if self.conditioning is Conditioning.NONE:
            self.variance_weight.requires_grad_(False)

    def encode(self, x: Tensor, u: Tensor | None) -> tuple[Tensor, Tensor]:
        mean = self.encoder_mean(self.encoder_hidden(x, u))
        if self.conditioning is Conditioning.NONE or u is None:
            pre = self.variance_bias.expand_as(mean)
        else:
            pre = u * self.variance_weight + self.variance_bias
        return mean, F.logsigmoid(pre)

    def decode(self, z: Tensor, u: Tensor | None) -> Tensor:
        return self.decoder_out(self.decoder_hidden(z, u))

    def affine_maps(self, u: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """At one u: (A (k, d), a (k,), C (k,), B (d, k), c (d,)) of the model's affine maps, float64."""
        with torch.no_grad():
            return self._affine_maps(u)

    def _affine_maps(self, u: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        u_t = torch.full((1, 1), float(u))
        eye_d = torch.cat([torch.zeros(1, self.data_dim), torch.eye(self.data_dim)])
        means, log_var = self.encode(eye_d, u_t.expand(eye_d.shape[0], 1))
        eye_k = torch.cat([torch.zeros(1, self.latent_dim), torch.eye(self.latent_dim)])
        outs = self.decode(eye_k, u_t.expand(eye_k.shape[0], 1))
        a, c = means[0], outs[0]
        return ((means[1:] - a).T.double(), a.double(), log_var[0].exp().double(),
                (outs[1:] - c).T.double(), c.double())

    def expected_terms(self, u: float, data_mean: Tensor, data_cov: Tensor) -> tuple[float, float]:
        """Exact expected (rate, distortion) at one u for data N(mean (d,), cov (d, d)), nats per example."""
        rate, dist = linear_vae_terms(*self.affine_maps(u), data_mean.double(), data_cov.double(), self.sigma2)
        return float(rate), float(dist)
