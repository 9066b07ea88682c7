"""β-TCVAE (Chen et al. 2018) as a multi-rate objective: D + MI + β·TC + dimension-wise KL, per example, in nats.

The KL term of the ELBO splits into index-code mutual information, total correlation and
dimension-wise KL (Chen et al. 2018, Eqn 2). For a batch of M examples from a data set of N, with
``z_i ~ q(z|x_i)`` and ``w_ij`` the estimator's weights, the aggregate posterior is estimated as
``log q(z_i) ≈ log Σ_j w_ij q(z_i|x_j)`` and each marginal as ``log q(z_id) ≈ log Σ_j w_ij q(z_id|x_j)``:

* ``mws`` (minibatch-weighted sampling, Chen et al. §4.1): ``w_ij = 1/(N·M)`` for every pair.
  It is biased (a constant -log N in log q(z) and in each log q(z_d) next to the naive ``1/M``
  weights), so TC carries an offset of (k-1)·log N and MI one of log N; the offsets do not depend
  on the parameters, so gradients are the naive estimator's.
* ``mss`` (stratified, after Chen et al.'s minibatch stratified sampling): ``w_ii = 1/N`` and
  ``w_ij = (N-1)/(N·(M-1))`` for j != i: an unbiased estimate of q(z_i) when the other M-1 batch
  members are drawn without replacement from the other N-1 points; exact when the batch is the data set.

Either way ``MI + TC + dim-wise KL = log q(z_i|x_i) - log p(z_i)``, a one-sample estimate of the rate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import torch
from torch import Tensor

from ..beta import BetaRange
from ..layers import ModelConditioning
from ..objectives import LOG_2PI, Likelihood, log_standard_normal
from .base import VAEOutput
from .mlp import MLPVAE


class TCEstimator(str, Enum):
    """How the aggregate posterior q(z) is estimated from a minibatch (see module docstring)."""

    MWS = "mws"
    MSS = "mss"


@dataclass
class TCDecomposition:
    """Per-example (B,) terms in nats: index-code ``mutual_information``, ``total_correlation`` and
    ``dimensionwise_kl``; their sum is log q(z|x) - log p(z)."""

    mutual_information: Tensor
    total_correlation: Tensor
    dimensionwise_kl: Tensor


def pairwise_log_density(z: Tensor, mean: Tensor, log_var: Tensor) -> Tensor:
    """(B, k) samples and posterior parameters -> (B, B, k) with [i, j, d] = log N(z_id; mean_jd, exp(log_var_jd))."""
    zi, mj, lvj = z.unsqueeze(1), mean.unsqueeze(0), log_var.unsqueeze(0)
    return -0.5 * ((zi - mj).square() * torch.exp(-lvj) + lvj + LOG_2PI)


def log_weights(batch_size: int, dataset_size: int, estimator: TCEstimator | str,
                device: torch.device | None = None, dtype: torch.dtype | None = None) -> Tensor:
    """(M, M) log-weights w_ij of ``estimator`` for a batch of M from a data set of N (module docstring)."""
    estimator = TCEstimator(estimator)
    n, m = dataset_size, batch_size
    if estimator is TCEstimator.MWS:
        return torch.full((m, m), -math.log(n * m), device=device, dtype=dtype)
    off = math.log(n - 1) - math.log(n * (m - 1))
    weights = torch.full((m, m), off, device=device, dtype=dtype)
    weights.fill_diagonal_(-math.log(n))
    return weights


def tc_decomposition(z: Tensor, mean: Tensor, log_var: Tensor, dataset_size: int,
                     estimator: TCEstimator | str = TCEstimator.MWS) -> TCDecomposition:
    """(B, k) samples z_i ~ q(z|x_i) and the batch's posterior parameters -> per-example MI, TC and
    dimension-wise KL (B,) in nats, estimated from the batch for a data set of ``dataset_size`` examples."""
    if z.dim() != 2 or z.shape != mean.shape or z.shape != log_var.shape:
        raise ValueError(f"z, mean and log_var must share a (B, k) shape, got {tuple(z.shape)}, "
                         f"{tuple(mean.shape)}, {tuple(log_var.shape)}")
    batch = z.shape[0]
    if batch < 2:
        raise ValueError(f"the TC estimators need a batch of at least 2 examples, got {batch}")
    if isinstance(dataset_size, bool) or not isinstance(dataset_size, int) or dataset_size < batch:
        raise ValueError(f"dataset_size must be an int >= the batch size {batch}, got {dataset_size!r}")
    logq = pairwise_log_density(z, mean, log_var)  # (B, B, k)
    w = log_weights(batch, dataset_size, estimator, z.device, z.dtype)
    log_qz_x = torch.diagonal(logq.sum(dim=2))
    log_qz = torch.logsumexp(logq.sum(dim=2) + w, dim=1)
    log_prod_marginals = torch.logsumexp(logq + w.unsqueeze(2), dim=1).sum(dim=1)
    return TCDecomposition(log_qz_x - log_qz, log_qz - log_prod_marginals,
                           log_prod_marginals - log_standard_normal(z))


class TCVAE(MLPVAE):
    """β-TCVAE on an MLP VAE (defaults: dSprites 1×64×64 = 4096 -> 1200 -> 1200 -> 10 latents, Bernoulli).

    ``objective`` returns the per-example loss ``D + MI + β·TC + dim-wise KL`` with β per example
    ((B, 1)); the MR-VAE gates see u as in every other model (the paper's β range here is [0.1, 10]).
    ``dataset_size`` is N of the estimator; ``forward`` and ``encode`` / ``decode`` are ``MLPVAE``'s.
    """

    def __init__(self, dataset_size: int, data_shape: Sequence[int] = (1, 64, 64), latent_dim: int = 10,
                 hidden: Sequence[int] = (1200, 1200), likelihood: Likelihood | str = Likelihood.BERNOULLI,
                 sigma2: float = 1.0, conditioning: ModelConditioning = ModelConditioning(),
                 estimator: TCEstimator | str = TCEstimator.MWS, beta_range: BetaRange = BetaRange(0.1, 10.0)) -> None:
        super().__init__(data_shape, latent_dim, hidden, likelihood, sigma2, conditioning, beta_range=beta_range)
        if isinstance(dataset_size, bool) or not isinstance(dataset_size, int) or dataset_size < 2:
            raise ValueError(f"dataset_size must be an int >= 2, got {dataset_size!r}")
        self.dataset_size = dataset_size
        self.estimator = TCEstimator(estimator)

    def decomposition(self, out: VAEOutput) -> TCDecomposition:
        """The MI / TC / dimension-wise KL terms (B,) of a forward pass, in nats."""
        return tc_decomposition(out.z, out.mean, out.log_var, self.dataset_size, self.estimator)

    def objective(self, x: Tensor, beta: Tensor, u: Tensor | None = None,
                  generator: torch.Generator | None = None) -> tuple[Tensor, VAEOutput]:
        """(B, ...) data, (B, 1) β and u -> ((B,) D + MI + β·TC + dim-wise KL in nats, the forward pass)."""
        out = self(x, self.u_of(beta) if u is None else u, generator)
        terms = self.decomposition(out)
        beta_t = torch.as_tensor(beta, dtype=out.rate.dtype, device=out.rate.device)
        if beta_t.dim() == 2 and beta_t.shape[1] == 1:
            beta_t = beta_t[:, 0]
        elif beta_t.dim() > 1:
            raise ValueError(f"β must have shape (B, 1), (B,) or (), got {tuple(beta_t.shape)}")
        return (out.distortion + terms.mutual_information + beta_t * terms.total_correlation
                + terms.dimensionwise_kl), out
