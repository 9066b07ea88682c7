"""Linear VAE (Lucas et al. 2019; PAPER.md §5): a two-layer gated form, its closed-form optimum and Theorem 1.

Model: ``q(z|x) = N(A x + a, diag C)``, ``p(x|z) = N(B z + c, σ² I)``. In the MR-VAE form the
encoder is ``x -> hidden (k units, gated) -> mean head`` and the decoder ``z -> hidden (k units,
gated) -> output``, so per-unit gates can reproduce the β-dependent optimum (Theorem 1). The
posterior log-variance of latent j is ``min(x_j, 0.01·x_j)`` with ``x_j = w_j·u + b_j``: exactly
``log min(1, βσ²/λ_j)`` is representable on active latents, and a collapsed latent keeps a gradient.

Closed form with data covariance eigenvalues λ_1 >= ... >= λ_d, γ = β·σ², ℓ_i = max(0, λ_i - γ):
``R* = ½ Σ_{i<=k} max(0, log(λ_i/γ))`` and
``D* = [Σ_{i<=k} min(λ_i, γ) + Σ_{j>k} λ_j] / (2σ²) + (d/2)·log(2πσ²)``, nats per example.
The default initialisation and why it matters are described in docs/linear_vae.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor, nn

from ..beta import SQRT3, BetaRange
from ..gates import GateFunction, GateInit, UnitGate
from ..layers import Conditioning, ConditionedLinear, ModelConditioning, Role
from ..objectives import LOG_2PI, Likelihood
from .base import VAE

#: Slope of the log-variance where its pre-activation is positive (a collapsed latent, C ≈ 1).
LOG_VARIANCE_LEAK = 0.01

#: The staggered init multiplies PyTorch's default init of the input and output layers by this factor.
STAGGERED_BASE_SCALE = 0.3

#: LinearVAE's default conditioning: the paper's sqrt gate in encoder and decoder, scale 1, which
#: represents the optimum exactly (Theorem 1). Gate init is overridden by ``LinearInit.STAGGERED``.
LINEAR_CONDITIONING = ModelConditioning(encoder_gate=GateFunction.SQRT, decoder_gate=GateFunction.SQRT,
                                        gate_scale=1.0, gate_init=GateInit.OPEN)


class LinearInit(str, Enum):
    """How a ``LinearVAE`` starts.

    ``staggered`` (default): the square layers (mean head, decoder hidden) start as the identity, so
    hidden unit j belongs to latent j; unit j's gates and latent j's variance start at the Theorem 1
    shape of a latent that collapses at β_j, ``gate = sqrt(max(0, 1 - β/β_j))`` and
    ``C = min(1, β/β_j)``, with β_1 ... β_k log-spaced from the centre of the β range to its top;
    the input and output layers start at 0.3 × PyTorch's default, so modes are picked up one at a time.
    Sigmoid gates get ``scale·σ(-log(β/β_j))`` instead. Without gates, or for a fixed β range, only the
    base layers are changed and C starts at 1.
    ``default``: PyTorch's initialisation of every layer, gates as the conditioning says, C = 1.
    """

    STAGGERED = "staggered"
    DEFAULT = "default"


def _sorted_eigenvalues(eigenvalues: Tensor | list[float]) -> Tensor:
    lam = torch.as_tensor(eigenvalues, dtype=torch.float64).flatten()
    if lam.numel() == 0 or bool((lam < 0).any()):
        raise ValueError(f"eigenvalues must be a non-empty list of values >= 0, got {lam.tolist()}")
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
        raise ValueError(f"β must be > 0, got {beta_t.min().item()!r}")
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


def _principal(data_cov: Tensor, latent_dim: int) -> tuple[Tensor, Tensor]:
    """(d, d) covariance -> all eigenvalues (d,) descending (clamped at 0) and the top-k eigenvectors (d, k)."""
    cov = torch.as_tensor(data_cov, dtype=torch.float64)
    if cov.dim() != 2 or cov.shape[0] != cov.shape[1]:
        raise ValueError(f"data_cov must be a square (d, d) matrix, got shape {tuple(cov.shape)}")
    if not 1 <= latent_dim <= cov.shape[0]:
        raise ValueError(f"latent_dim must be in [1, {cov.shape[0]}] (the data dimension), got {latent_dim}")
    lam, vecs = torch.linalg.eigh(0.5 * (cov + cov.T))
    lam, order = torch.sort(lam.clamp(min=0), descending=True)
    return lam, vecs[:, order][:, :latent_dim]


def optimal_parameters(data_mean: Tensor, data_cov: Tensor, latent_dim: int, beta: float,
                       sigma2: float = 1.0) -> LinearOptimum:
    """(d,) mean and (d, d) covariance -> the optimum D*, E*, C* of PAPER.md §5 (rotation R = I)."""
    lam, u_k = _principal(data_cov, latent_dim)
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


def staggered_collapse_points(latent_dim: int) -> Tensor:
    """k -> (k,) u at which the staggered init closes latent j: √3·j/(k-1), from the range's centre
    (u = 0) to its top (u = √3); √3 for k = 1."""
    if latent_dim == 1:
        return torch.full((1,), SQRT3)
    return SQRT3 * torch.arange(latent_dim, dtype=torch.float32) / (latent_dim - 1)


class LinearVAE(VAE):
    """Two-layer linear VAE for data of dimension d with k latents (Gaussian likelihood, fixed σ²).

    encode: (B, d) -> (B, k) mean and log-variance; decode: (B, k) -> (B, d) mean. ``beta_range`` is
    the training range; it is only read to place the staggered initialisation (see ``LinearInit``).
    """

    def __init__(self, data_dim: int, latent_dim: int, sigma2: float = 1.0,
                 conditioning: ModelConditioning = LINEAR_CONDITIONING,
                 beta_range: BetaRange = BetaRange(), init: LinearInit | str = LinearInit.STAGGERED) -> None:
        super().__init__(latent_dim, Likelihood.GAUSSIAN, sigma2, conditioning.kind, beta_range)
        if not 1 <= latent_dim <= data_dim:
            raise ValueError(f"need 1 <= latent_dim <= data_dim, got latent_dim={latent_dim}, data_dim={data_dim}")
        self.data_dim = data_dim
        self.encoder_hidden = ConditionedLinear(data_dim, latent_dim, conditioning, Role.ENCODER)
        self.encoder_mean = nn.Linear(latent_dim, latent_dim)
        self.variance_weight = nn.Parameter(torch.zeros(latent_dim))
        self.variance_bias = nn.Parameter(torch.zeros(latent_dim))
        self.decoder_hidden = ConditionedLinear(latent_dim, latent_dim, conditioning, Role.DECODER, bias=False)
        self.decoder_out = nn.Linear(latent_dim, data_dim)
        if LinearInit(init) is LinearInit.STAGGERED:
            self._stagger(beta_range)
        if self.conditioning is Conditioning.NONE:
            self.variance_weight.requires_grad_(False)

    def _stagger(self, beta_range: BetaRange) -> None:
        """Apply ``LinearInit.STAGGERED`` (see there); a fixed range keeps the gates as built and C = 1."""
        with torch.no_grad():
            nn.init.eye_(self.encoder_mean.weight)
            self.encoder_mean.bias.zero_()
            nn.init.eye_(self.decoder_hidden.base.weight)
            self.encoder_hidden.base.weight.mul_(STAGGERED_BASE_SCALE)
            self.encoder_hidden.base.bias.mul_(STAGGERED_BASE_SCALE)
            self.decoder_out.weight.mul_(STAGGERED_BASE_SCALE)
            if self.conditioning is Conditioning.NONE or beta_range.is_fixed:
                return
            slope = beta_range.log_half_width / SQRT3  # pre-activation slope 1 in log β
            closing = staggered_collapse_points(self.latent_dim)
            self.variance_weight.fill_(slope)
            self.variance_bias.copy_(-slope * closing)
            for gate in (self.encoder_hidden.gate, self.decoder_hidden.gate):
                if gate is not None:
                    _stagger_gate(gate, slope, closing)

    def encode(self, x: Tensor, u: Tensor | None) -> tuple[Tensor, Tensor]:
        """(B, d) data and (B, 1) u -> (B, k) mean and (B, k) log-variance ``min(x, 0.01·x)``."""
        mean = self.encoder_mean(self.encoder_hidden(x, u))
        if self.conditioning is Conditioning.NONE or u is None:
            pre = self.variance_bias.expand_as(mean)
        else:
            pre = (u * self.variance_weight + self.variance_bias).expand_as(mean)
        return mean, torch.minimum(pre, LOG_VARIANCE_LEAK * pre)

    def decode(self, z: Tensor, u: Tensor | None) -> Tensor:
        """(B, k) latents and (B, 1) u -> (B, d) decoder mean."""
        return self.decoder_out(self.decoder_hidden(z, u))

    def affine_maps(self, u: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """At one u: (A (k, d), a (k,), C (k,), B (d, k), c (d,)) of the model's affine maps, float64."""
        with torch.no_grad():
            return self._affine_maps(u)

    def _affine_maps(self, u: float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        dtype = self.decoder_out.weight.dtype
        u_t = torch.full((1, 1), float(u), dtype=dtype)
        eye_d = torch.cat([torch.zeros(1, self.data_dim, dtype=dtype), torch.eye(self.data_dim, dtype=dtype)])
        means, log_var = self.encode(eye_d, u_t.expand(eye_d.shape[0], 1))
        eye_k = torch.cat([torch.zeros(1, self.latent_dim, dtype=dtype), torch.eye(self.latent_dim, dtype=dtype)])
        outs = self.decode(eye_k, u_t.expand(eye_k.shape[0], 1))
        a, c = means[0], outs[0]
        return ((means[1:] - a).T.double(), a.double(), log_var[0].exp().double(),
                (outs[1:] - c).T.double(), c.double())

    def expected_terms(self, u: float, data_mean: Tensor, data_cov: Tensor) -> tuple[float, float]:
        """Exact expected (rate, distortion) at one u for data N(mean (d,), cov (d, d)), nats per example."""
        rate, dist = linear_vae_terms(*self.affine_maps(u), data_mean.double(), data_cov.double(), self.sigma2)
        return float(rate), float(dist)


def _stagger_gate(gate: UnitGate, slope: float, closing: Tensor) -> None:
    """sqrt gate: ``sqrt(max(0, 1 - β/β_j))``; sigmoid gate: ``scale·σ(-log(β/β_j))``, halving at β_j."""
    sign = 1.0 if gate.function is GateFunction.SQRT else -1.0
    gate.weight.fill_(sign * slope)
    gate.bias.copy_(-sign * slope * closing)


def set_optimal_response(model: LinearVAE, data_mean: Tensor, data_cov: Tensor, beta_range: BetaRange) -> None:
    """Theorem 1, in place: load the exact β-response of the optimum into ``model``.

    Needs gate conditioning with sqrt gates of scale 1 in encoder and decoder. For latent i with
    eigenvalue λ_i both gates get weight h/√3 and bias ``m - log(λ_i/σ²)`` (u units; m, h are the
    range's ``log_center``, ``log_half_width``), so each equals ``sqrt(max(0, 1 - βσ²/λ_i))``; the base
    layers hold ``U_k/√λ`` (encoder) and ``U_k √λ`` (decoder). Then B(β) = D*(β), A(β) = E*(β) and,
    on active latents, C(β) = C*(β) exactly; a collapsed latent's variance is ``(β σ²/λ_i)^0.01``.
    """
    if model.conditioning is not Conditioning.GATE:
        raise ValueError(f"Theorem 1 needs gate conditioning, got {model.conditioning.value}")
    gates = (model.encoder_hidden.gate, model.decoder_hidden.gate)
    for gate in gates:
        assert gate is not None
        if gate.function is not GateFunction.SQRT or gate.scale != 1.0:
            raise ValueError(f"Theorem 1 needs sqrt gates with scale 1, got {gate.function.value} "
                             f"with scale {gate.scale}")
    if beta_range.is_fixed:
        raise ValueError(f"Theorem 1 needs a β range with low < high, got {beta_range}")
    k = model.latent_dim
    lam_all, u_k = _principal(data_cov, k)
    lam = lam_all[:k]
    if bool((lam <= 0).any()):
        raise ValueError(f"Theorem 1 needs the top-{k} covariance eigenvalues > 0, got {lam.tolist()}")
    mean = torch.as_tensor(data_mean, dtype=torch.float64)
    slope = beta_range.log_half_width / SQRT3
    bias = beta_range.log_center - torch.log(lam / model.sigma2)
    enc_rows = u_k.T / lam.sqrt().unsqueeze(1)  # (k, d)
    with torch.no_grad():
        model.encoder_hidden.base.weight.copy_(enc_rows)
        model.encoder_hidden.base.bias.copy_(-(enc_rows @ mean))
        nn.init.eye_(model.encoder_mean.weight)
        model.encoder_mean.bias.zero_()
        nn.init.eye_(model.decoder_hidden.base.weight)
        model.decoder_out.weight.copy_(u_k * lam.sqrt())
        model.decoder_out.bias.copy_(mean)
        for gate in gates:
            gate.weight.fill_(slope)
            gate.bias.copy_(bias)
        model.variance_weight.fill_(slope)
        model.variance_bias.copy_(bias)
