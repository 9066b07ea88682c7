"""Rate, distortion, the β-objective and the IWAE bound: every term is a (B,) tensor in nats per example.

Distortion sums over all data dimensions and rate over all latent dimensions; only the batch is
left for the caller to average (PAPER.md §1: averaging D over pixels silently rescales β).
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
import torch.nn.functional as F
from torch import Tensor
from .beta import Choice

LOG_2PI = math.log(2.0 * math.pi)


class Likelihood(Choice):
    """Decoder likelihood: ``bernoulli`` on logits, ``gaussian`` with a fixed, stated variance σ², or
    ``categorical`` over a vocabulary (text: logits (B, T, V), token ids (B, T), padding id 0 ignored)."""

    BERNOULLI = "bernoulli"
    GAUSSIAN = "gaussian"
    CATEGORICAL = "categorical"


def _flat(t: Tensor) -> Tensor:
    return t.reshape(t.shape[0], -1)


def gaussian_rate(mean: Tensor, log_var: Tensor) -> Tensor:
    """(B, k) mean and log-variance of q(z|x) -> (B,) KL(q ‖ N(0, I)) in nats, always >= 0."""
    if mean.shape != log_var.shape:
        raise ValueError(f"mean and log_var shapes differ: {tuple(mean.shape)} vs {tuple(log_var.shape)}")
    # summed in at least fp32, also under bf16/fp16 autocast
    dtype = torch.promote_types(mean.dtype, torch.float32)
    mean, log_var = mean.to(dtype), log_var.to(dtype)
    # exp(v) - v - 1 written as expm1(v) - v: the naive form rounds to a small negative number in
    # float32 for |v| below about 1e-3; expm1(v) >= v holds after rounding, so the rate stays >= 0.
    kl = 0.5 * (mean.square() + (torch.expm1(log_var) - log_var))
    return _flat(kl).sum(dim=1)


def bernoulli_distortion(logits: Tensor, x: Tensor) -> Tensor:
    """(B, ...) logits and targets in [0, 1] -> (B,) -log p(x|z) in nats, summed over data dims."""
    if logits.shape != x.shape:
        raise ValueError(f"logits and x shapes differ: {tuple(logits.shape)} vs {tuple(x.shape)}")
    nll = F.binary_cross_entropy_with_logits(logits, x.to(logits.dtype), reduction="none")
    return _flat(nll).sum(dim=1)


def gaussian_distortion(x_hat: Tensor, x: Tensor, sigma2: float) -> Tensor:
    """(B, ...) mean and data -> (B,) -log N(x; x_hat, σ²I) in nats: ‖x-x̂‖²/(2σ²) + (d/2)·log(2πσ²)."""
    if x_hat.shape != x.shape:
        raise ValueError(f"x_hat and x shapes differ: {tuple(x_hat.shape)} vs {tuple(x.shape)}")
    if not sigma2 > 0:
        raise ValueError(f"the Gaussian variance σ² must be > 0, got {sigma2!r}")
    dtype = torch.promote_types(x_hat.dtype, torch.float32)
    squared = _flat((x.to(dtype) - x_hat.to(dtype)).square()).sum(dim=1)
    dims = _flat(x).shape[1]
    return squared / (2.0 * sigma2) + 0.5 * dims * (LOG_2PI + math.log(sigma2))


PAD_INDEX = 0


def categorical_distortion(logits: Tensor, tokens: Tensor, pad_index: int = PAD_INDEX) -> Tensor:
    """(B, T, V) logits and (B, T) token ids -> (B,) token cross-entropy in nats, summed over the
    non-padding positions."""
    if logits.shape[:2] != tokens.shape:
        raise ValueError(f"logits (B, T, V) and tokens (B, T) disagree: {tuple(logits.shape)} vs {tuple(tokens.shape)}")
    nll = F.cross_entropy(logits.transpose(1, 2), tokens.long(), ignore_index=pad_index, reduction="none")
    return nll.sum(dim=1)


def distortion(likelihood: Likelihood | str, output: Tensor, x: Tensor, sigma2: float = 1.0) -> Tensor:
    """Dispatch on ``likelihood``: (B, ...) decoder output and data -> (B,) distortion in nats."""
    kind = Likelihood(likelihood)
    if kind is Likelihood.BERNOULLI:
        return bernoulli_distortion(output, x)
    if kind is Likelihood.CATEGORICAL:
        return categorical_distortion(output, x)
    return gaussian_distortion(output, x, sigma2)


def beta_objective(distortion_nats: Tensor, rate_nats: Tensor, beta: Tensor | float) -> Tensor:
    """(B,) D, (B,) R and β of shape (B, 1), (B,) or scalar -> (B,) D + β·R in nats.

    A β with a single element, e.g. (1,) or (1, 1), is the same β for every example.
    """
    if distortion_nats.dim() != 1 or distortion_nats.shape != rate_nats.shape:
        raise ValueError(f"distortion and rate must both have shape (B,), got {tuple(distortion_nats.shape)} "
                         f"and {tuple(rate_nats.shape)}")
    batch = rate_nats.shape[0]
    beta_t = torch.as_tensor(beta, dtype=rate_nats.dtype, device=rate_nats.device)
    if beta_t.dim() == 2 and beta_t.shape[1] == 1:
        beta_t = beta_t[:, 0]
    if beta_t.dim() > 1 or (beta_t.dim() == 1 and beta_t.shape[0] not in (1, batch)):
        raise ValueError(f"β must have shape ({batch}, 1), ({batch},) or (), got {tuple(torch.as_tensor(beta).shape)}")
    return distortion_nats + beta_t * rate_nats


def log_standard_normal(z: Tensor) -> Tensor:
    """(..., k) -> (...) log N(z; 0, I) in nats."""
    return -0.5 * (z.square().sum(dim=-1) + z.shape[-1] * LOG_2PI)


def log_diagonal_normal(z: Tensor, mean: Tensor, log_var: Tensor) -> Tensor:
    """(..., k) z, mean, log-variance -> (...) log N(z; mean, diag(exp(log_var))) in nats."""
    return -0.5 * (((z - mean).square() * torch.exp(-log_var) + log_var).sum(dim=-1) + z.shape[-1] * LOG_2PI)


class EncoderDecoder(Protocol):
    """What the IWAE bound needs of a VAE (``mrvae.models.VAE`` satisfies it)."""

    def encode(self, x: Tensor, u: Tensor | None) -> tuple[Tensor, Tensor]: ...

    def reconstruction_distortion(self, z: Tensor, u: Tensor | None, x: Tensor) -> Tensor: ...


def iwae_bound(
    model: EncoderDecoder,
    x: Tensor,
    u: Tensor | None,
    num_samples: int,
    chunk_size: int = 64,
    generator: torch.Generator | None = None,
) -> Tensor:
    """(B, ...) data -> (B,) importance-weighted bound log p(x) >= log (1/k) Σ_j p(x, z_j)/q(z_j|x), nats.

    The k samples are drawn in chunks of ``chunk_size``; each chunk decodes ``chunk·B`` latents in one
    batched call, and the (k, B) log-weights are reduced with a log-sum-exp. k = 1 gives the ELBO.
    """
    if num_samples < 1 or chunk_size < 1:
        raise ValueError(f"num_samples and chunk_size must be >= 1, got {num_samples}, {chunk_size}")
    batch = x.shape[0]
    mean, log_var = model.encode(x, u)
    std = torch.exp(0.5 * log_var)
    log_weights = []
    done = 0
    while done < num_samples:
        c = min(chunk_size, num_samples - done)
        eps = torch.randn((c,) + tuple(mean.shape), generator=generator, device=mean.device, dtype=mean.dtype)
        z = mean + std * eps  # (c, B, k)
        flat_z = z.reshape(c * batch, -1)
        x_rep = x.unsqueeze(0).expand((c,) + tuple(x.shape)).reshape((c * batch,) + tuple(x.shape[1:]))
        u_rep = None if u is None else (u if u.shape[0] == 1 else u.repeat(c, 1))
        log_px_z = -model.reconstruction_distortion(flat_z, u_rep, x_rep).reshape(c, batch)
        log_weights.append(log_px_z + log_standard_normal(z) - log_diagonal_normal(z, mean, log_var))
        done += c
    stacked = torch.cat(log_weights, dim=0)
    return torch.logsumexp(stacked, dim=0) - math.log(num_samples)
