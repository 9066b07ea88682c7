"""IWAE bound against the exact log-likelihood of a linear VAE: log p(x) = log N(x; c, B Bᵀ + σ² I)."""

from __future__ import annotations

import math

import pytest
import torch

from mrvae import BetaRange, LinearVAE, gaussian_rate, iwae_bound
from mrvae.models.linear import set_optimal_response

SIGMA2 = 0.5
BETA = 1.0
RANGE = BetaRange(0.01, 10.0)


@pytest.fixture(scope="module")
def setup() -> tuple[LinearVAE, torch.Tensor, torch.Tensor]:
    """A float64 linear VAE whose decoder is the optimum at β = 1 and whose encoder is deliberately off
    (means shrunk by 0.6, variances ×e), the data points x (6, 6) and u (1, 1)."""
    gen = torch.Generator().manual_seed(0)
    eigenvalues = torch.tensor([4.0, 2.0, 1.0, 0.3, 0.1, 0.05], dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(6, 6, generator=gen, dtype=torch.float64))
    mean = torch.randn(6, generator=gen, dtype=torch.float64)
    cov = rotation @ torch.diag(eigenvalues) @ rotation.T
    model = LinearVAE(6, 3, SIGMA2, beta_range=RANGE).double()
    set_optimal_response(model, mean, 0.5 * (cov + cov.T), RANGE)
    with torch.no_grad():
        model.encoder_hidden.base.weight.mul_(0.6)
        model.encoder_hidden.base.bias.mul_(0.6)
        model.variance_bias.add_(1.0)
    x = mean + torch.randn(6, 6, generator=gen, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    u = RANGE.standardise(torch.full((1, 1), BETA)).double()
    return model, x, u


def exact_log_likelihood(model: LinearVAE, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(B, d) -> (B,) log N(x; c, B Bᵀ + σ² I) of the model's decoder at u, nats."""
    _, _, _, dec, dec_bias = model.affine_maps(float(u))
    cov = dec @ dec.T + model.sigma2 * torch.eye(x.shape[1], dtype=torch.float64)
    return torch.distributions.MultivariateNormal(dec_bias, covariance_matrix=cov).log_prob(x)


def exact_elbo(model: LinearVAE, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """(B, d) -> (B,) ELBO = E_q[log p(x|z)] - KL(q ‖ N(0, I)), the expectation in closed form, nats."""
    with torch.no_grad():
        mean, log_var = model.encode(x, u)
        _, _, _, dec, dec_bias = model.affine_maps(float(u))
        residual = x - mean @ dec.T - dec_bias
        noise = (dec.square().sum(0) * log_var.exp()).sum(1)
        d = x.shape[1]
        squared = residual.square().sum(1) + noise
        log_px = -squared / (2 * model.sigma2) - 0.5 * d * math.log(2 * math.pi * model.sigma2)
        return log_px - gaussian_rate(mean, log_var)


def repeated_bound(model: LinearVAE, x: torch.Tensor, u: torch.Tensor, k: int, repeats: int,
                   seed: int) -> torch.Tensor:
    """(B, d) -> (B, repeats) independent IWAE_k estimates per point."""
    rep = x.repeat_interleave(repeats, dim=0)
    with torch.no_grad():
        bound = iwae_bound(model, rep, u, k, chunk_size=250, generator=torch.Generator().manual_seed(seed))
    return bound.reshape(x.shape[0], repeats)


def test_encoder_is_imperfect_enough_to_matter(setup) -> None:
    model, x, u = setup
    gap = exact_log_likelihood(model, x, u) - exact_elbo(model, x, u)
    assert bool((gap > 0.5).all()), f"ELBO gaps {gap.tolist()} too small for the test to say anything"


def test_k1_matches_the_elbo_in_expectation(setup) -> None:
    model, x, u = setup
    draws = repeated_bound(model, x, u, 1, 20000, seed=1)
    stderr = draws.std(1) / math.sqrt(draws.shape[1])
    assert torch.all((draws.mean(1) - exact_elbo(model, x, u)).abs() < 4 * stderr)


def test_bound_grows_with_k_and_stays_below_log_likelihood(setup) -> None:
    model, x, u = setup
    log_px = exact_log_likelihood(model, x, u)
    means, stderrs = [], []
    for k in (1, 10, 100):
        draws = repeated_bound(model, x, u, k, 4000, seed=k)
        means.append(draws.mean(1))
        stderrs.append(draws.std(1) / math.sqrt(draws.shape[1]))
        # E[IWAE_k] <= log p(x): the mean may not exceed it by more than its noise.
        assert torch.all(draws.mean(1) <= log_px + 4 * stderrs[-1])
    for lower, higher, s_low, s_high in zip(means, means[1:], stderrs, stderrs[1:]):
        assert torch.all(higher - lower > 4 * torch.sqrt(s_low**2 + s_high**2))


def test_k1000_is_within_a_tenth_of_a_nat_of_log_likelihood(setup) -> None:
    model, x, u = setup
    with torch.no_grad():
        bound = iwae_bound(model, x, u, 1000, generator=torch.Generator().manual_seed(7))
    log_px = exact_log_likelihood(model, x, u)
    assert torch.all((bound - log_px).abs() < 0.1), (bound - log_px).tolist()
