"""β-TCVAE decomposition (MWS / stratified estimators against brute force) and the MIG metric."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from sklearn.metrics import mutual_info_score

from mrvae.beta import BetaRange
from mrvae.evaluation.mig import (Discretisation, discrete_entropy, discrete_mutual_information, discretise,
                                   mutual_information_gap)
from mrvae.layers import ModelConditioning
from mrvae.models.tcvae import TCEstimator, TCVAE, pairwise_log_density, tc_decomposition
from mrvae.objectives import gaussian_rate, log_diagonal_normal, log_standard_normal


def posteriors(batch: int, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mean = torch.randn(batch, k, generator=g, dtype=torch.float64)
    log_var = torch.rand(batch, k, generator=g, dtype=torch.float64) * 2 - 1.5
    z = mean + torch.exp(0.5 * log_var) * torch.randn(batch, k, generator=g, dtype=torch.float64)
    return z, mean, log_var


def brute_force(z, mean, log_var, weights):
    """Per-example log q(z_i|x_i), log q̂(z_i), Σ_d log q̂(z_id) with explicit loops over scipy densities."""
    z, mean, std = z.numpy(), mean.numpy(), np.exp(0.5 * log_var.numpy())
    m, k = z.shape
    own, joint, marginal = np.zeros(m), np.zeros(m), np.zeros(m)
    for i in range(m):
        own[i] = sum(norm.logpdf(z[i, d], mean[i, d], std[i, d]) for d in range(k))
        joint[i] = math.log(sum(weights[i][j] * math.prod(norm.pdf(z[i, d], mean[j, d], std[j, d]) for d in range(k))
                                for j in range(m)))
        marginal[i] = sum(math.log(sum(weights[i][j] * norm.pdf(z[i, d], mean[j, d], std[j, d]) for j in range(m)))
                          for d in range(k))
    return own, joint, marginal


def test_pairwise_log_density_matches_scipy():
    z, mean, log_var = posteriors(4, 3, 0)
    got = pairwise_log_density(z, mean, log_var)
    for i, j, d in itertools.product(range(4), range(4), range(3)):
        expected = norm.logpdf(float(z[i, d]), float(mean[j, d]), math.exp(0.5 * float(log_var[j, d])))
        assert abs(float(got[i, j, d]) - expected) < 1e-10


@pytest.mark.parametrize("estimator", list(TCEstimator))
def test_decomposition_against_brute_force(estimator):
    m, n, k = 5, 40, 3
    z, mean, log_var = posteriors(m, k, 1)
    if estimator is TCEstimator.MWS:
        weights = [[1 / (n * m)] * m for _ in range(m)]
    else:
        weights = [[1 / n if i == j else (n - 1) / (n * (m - 1)) for j in range(m)] for i in range(m)]
    own, joint, marginal = brute_force(z, mean, log_var, weights)
    terms = tc_decomposition(z, mean, log_var, n, estimator)
    log_pz = log_standard_normal(z).numpy()
    np.testing.assert_allclose(terms.mutual_information.numpy(), own - joint, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(terms.total_correlation.numpy(), joint - marginal, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(terms.dimensionwise_kl.numpy(), marginal - log_pz, rtol=1e-9, atol=1e-9)


def test_stratified_estimator_is_exact_on_the_whole_data_set_and_unbiased_on_batches():
    n, k = 5, 2
    z, mean, log_var = posteriors(n, k, 2)
    # batch = data set: log q(z_i) is exactly log (1/N) Σ_n q(z_i|x_n)
    exact = torch.logsumexp(pairwise_log_density(z, mean, log_var).sum(2), dim=1) - math.log(n)
    terms = tc_decomposition(z, mean, log_var, n, "mss")
    own = log_diagonal_normal(z, mean, log_var)
    torch.testing.assert_close(own - terms.mutual_information, exact)
    # there MWS's 1/(N·M) weights are 1/N² instead of 1/N: MI is off by +log N, TC by +(k-1)·log N
    mws = tc_decomposition(z, mean, log_var, n, "mws")
    torch.testing.assert_close(mws.mutual_information, terms.mutual_information + math.log(n))
    torch.testing.assert_close(mws.total_correlation, terms.total_correlation + (k - 1) * math.log(n))
    torch.testing.assert_close(mws.dimensionwise_kl, terms.dimensionwise_kl - k * math.log(n))
    # batches of 3 holding example 0: the average of the estimate of q(z_0) over all of them is q(z_0)
    estimates = []
    for others in itertools.combinations(range(1, n), 2):
        idx = torch.tensor((0, *others))
        t = tc_decomposition(z[idx], mean[idx], log_var[idx], n, "mss")
        estimates.append(torch.exp(own[0] - t.mutual_information[0]))
    torch.testing.assert_close(torch.stack(estimates).mean(), torch.exp(exact[0]))


@pytest.mark.parametrize("estimator", list(TCEstimator))
def test_terms_sum_to_the_one_sample_rate_and_average_to_the_kl(estimator):
    z, mean, log_var = posteriors(1000, 4, 3)
    terms = tc_decomposition(z, mean, log_var, 50_000, estimator)
    total = terms.mutual_information + terms.total_correlation + terms.dimensionwise_kl
    torch.testing.assert_close(total, log_diagonal_normal(z, mean, log_var) - log_standard_normal(z))
    kl = gaussian_rate(mean, log_var)
    standard_error = (total - kl).std() / math.sqrt(1000)
    assert abs(float(total.mean() - kl.mean())) < 4 * float(standard_error)


def tiny_tcvae(**kwargs) -> TCVAE:
    return TCVAE(1000, data_shape=(1, 8, 8), latent_dim=4, hidden=(32, 32), **kwargs)


def test_objective_weights_only_the_total_correlation_by_beta():
    torch.manual_seed(0)
    model = tiny_tcvae()
    x = (torch.rand(6, 1, 8, 8) > 0.5).float()
    u = torch.zeros(6, 1)
    ones = torch.ones(6, 1)
    beta = torch.tensor([[0.1], [0.5], [1.0], [2.0], [5.0], [10.0]])
    loss_1, out = model.objective(x, ones, u, torch.Generator().manual_seed(3))
    loss_b, _ = model.objective(x, beta, u, torch.Generator().manual_seed(3))
    terms = model.decomposition(out)
    one_sample_rate = log_diagonal_normal(out.z, out.mean, out.log_var) - log_standard_normal(out.z)
    torch.testing.assert_close(loss_1, out.distortion + one_sample_rate)
    torch.testing.assert_close(loss_b - loss_1, (beta[:, 0] - 1) * terms.total_correlation)
    assert loss_b.shape == (6,)


@pytest.mark.parametrize("kind", ["gate", "none"])
def test_adam_steps_reduce_the_tcvae_loss(kind):
    torch.manual_seed(1)
    model = tiny_tcvae(conditioning=ModelConditioning(kind=kind))
    x = (torch.rand(16, 1, 8, 8) > 0.5).float()
    beta_range = BetaRange(0.1, 10.0)
    beta = beta_range.sample(16, torch.Generator().manual_seed(0))
    u = beta_range.standardise(beta)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)

    def loss() -> torch.Tensor:
        return model.objective(x, beta, u, torch.Generator().manual_seed(1))[0].mean()

    first = loss().item()
    for _ in range(20):
        optimiser.zero_grad()
        loss().backward()
        optimiser.step()
    assert loss().item() < 0.9 * first


def test_tcvae_errors():
    z, mean, log_var = posteriors(4, 2, 0)
    with pytest.raises(ValueError, match="need a batch of at least 2 examples, got 1"):
        tc_decomposition(z[:1], mean[:1], log_var[:1], 10)
    with pytest.raises(ValueError, match="dataset_size must be an int >= the batch size 4, got 3"):
        tc_decomposition(z, mean, log_var, 3)
    with pytest.raises(ValueError, match=r"must share a \(B, k\) shape"):
        tc_decomposition(z, mean[:, :1], log_var, 10)
    with pytest.raises(ValueError, match="is not a valid TCEstimator"):
        tc_decomposition(z, mean, log_var, 10, "sampling")
    with pytest.raises(ValueError, match="dataset_size must be an int >= 2, got 1.5"):
        TCVAE(1.5, data_shape=(4,), hidden=(8,))
    with pytest.raises(ValueError, match=r"β must have shape \(B, 1\), \(B,\) or \(\)"):
        tiny_tcvae().objective(torch.zeros(2, 1, 8, 8), torch.ones(2, 2), torch.zeros(2, 1))


# ---- MIG ----

def factor_grid(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([rng.integers(0, 3, n), rng.integers(0, 5, n), rng.integers(0, 4, n)], axis=1)


def test_mig_is_near_one_for_the_factors_themselves():
    factors = factor_grid(5000, 0)
    result = mutual_information_gap(factors.astype(np.float64) * 0.37 - 1.0, factors)
    np.testing.assert_allclose(result.mutual_information.diagonal(), result.entropies, rtol=1e-12)
    assert result.mig > 0.99
    # permuting the code dimensions and adding an unused one changes nothing
    noise = np.random.default_rng(1).normal(size=(5000, 1))
    permuted = mutual_information_gap(np.concatenate([factors[:, ::-1], noise], axis=1), factors)
    assert permuted.mig > 0.99


def test_mig_is_zero_for_constant_or_duplicated_codes_and_small_for_random_ones():
    factors = factor_grid(5000, 2)
    assert mutual_information_gap(np.ones((5000, 4)), factors).mig == 0.0
    duplicated = np.repeat(factors[:, :1].astype(float), 2, axis=1)
    result = mutual_information_gap(duplicated, factors)
    assert result.per_factor[0] == 0.0 and result.mig == 0.0
    random = mutual_information_gap(np.random.default_rng(3).normal(size=(5000, 6)), factors)
    assert random.mig < 0.02


def test_discrete_information_matches_sklearn_and_entropy():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 6, 800)
    b = (a + rng.integers(0, 3, 800)) % 7
    assert abs(discrete_mutual_information(a, b) - mutual_info_score(a, b)) < 1e-12
    assert abs(discrete_mutual_information(a, a) - discrete_entropy(a)) < 1e-12
    p = np.bincount(a) / 800
    assert abs(discrete_entropy(a) - float(-(p * np.log(p)).sum())) < 1e-12


def test_histogram_bins_match_digitize_and_quantile_bins_hold_equal_mass():
    x = np.random.default_rng(5).normal(size=(1000, 2))
    for column, ids in zip(x.T, discretise(x, 20).T):
        reference = np.digitize(column, np.histogram(column, bins=20)[1][:-1]) - 1  # disentanglement_lib's rule
        np.testing.assert_array_equal(ids, reference)
    counts = np.bincount(discretise(x, 10, Discretisation.QUANTILE)[:, 0])
    np.testing.assert_array_equal(counts, np.full(10, 100))


def test_num_samples_subsamples_reproducibly():
    factors = factor_grid(3000, 6)
    codes = factors + np.random.default_rng(7).normal(scale=0.3, size=factors.shape)
    a = mutual_information_gap(codes, factors, num_samples=1000, generator=torch.Generator().manual_seed(0))
    b = mutual_information_gap(codes, factors, num_samples=1000, generator=torch.Generator().manual_seed(0))
    c = mutual_information_gap(codes, factors, num_samples=1000, generator=torch.Generator().manual_seed(1))
    assert a.mig == b.mig and a.mig != c.mig
    assert mutual_information_gap(codes, factors, num_samples=5000).mig == mutual_information_gap(codes, factors).mig
    assert mutual_information_gap(torch.as_tensor(codes), torch.as_tensor(factors)).mig == \
        mutual_information_gap(codes, factors).mig


def test_mig_errors():
    factors = factor_grid(100, 8)
    codes = np.zeros((100, 3))
    with pytest.raises(ValueError, match=r"factor\(s\) \[1\] take a single value"):
        mutual_information_gap(codes, np.stack([factors[:, 0], np.ones(100)], axis=1))
    with pytest.raises(ValueError, match="at least 2 code dimensions, got 1"):
        mutual_information_gap(codes[:, :1], factors)
    with pytest.raises(ValueError, match="same number of rows, got 99 and 100"):
        mutual_information_gap(codes[:99], factors)
    with pytest.raises(ValueError, match=r"codes must be a non-empty \(N, d\) array, got shape \(100,\)"):
        mutual_information_gap(codes[:, 0], factors)
    with pytest.raises(ValueError, match="num_bins must be an int >= 1, got 0"):
        mutual_information_gap(codes, factors, num_bins=0)
    with pytest.raises(ValueError, match="num_samples must be an int >= 1 or None, got 0"):
        mutual_information_gap(codes, factors, num_samples=0)
    with pytest.raises(ValueError, match="NaN or infinite"):
        discretise(np.full((3, 2), np.nan))
