"""Rate, distortions, β-objective and IWAE bound against torch.distributions and closed forms (nats)."""

import math
import re

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch.distributions import Bernoulli, Normal, kl_divergence

from mrvae.objectives import (Likelihood, bernoulli_distortion, beta_objective, distortion, gaussian_distortion,
                              gaussian_rate, iwae_bound)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_rate_equals_torch_kl_summed_over_latents():
    mean = 2.0 * torch.randn(6, 9, generator=generator(0), dtype=torch.float64)
    log_var = 3.0 * torch.randn(6, 9, generator=generator(1), dtype=torch.float64)
    expected = kl_divergence(Normal(mean, torch.exp(0.5 * log_var)), Normal(0.0, 1.0)).sum(dim=1)
    rate = gaussian_rate(mean, log_var)
    assert rate.shape == (6,)
    assert torch.allclose(rate, expected, rtol=1e-12, atol=1e-12)


def test_rate_is_zero_exactly_at_the_prior():
    assert torch.equal(gaussian_rate(torch.zeros(3, 4), torch.zeros(3, 4)), torch.zeros(3))


def test_rate_is_non_negative_for_log_variances_near_zero_in_float32():
    """exp(v) - v - 1 rounds below 0 in float32 for |v| < ~1e-3 unless written with expm1."""
    log_var = torch.cat([torch.linspace(-1e-3, 1e-3, 20001), torch.logspace(-9, -3, 500), -torch.logspace(-9, -3, 500)])
    rate = gaussian_rate(torch.zeros(log_var.shape[0], 1), log_var.reshape(-1, 1))
    assert float(rate.min()) >= 0.0
    expected = 0.25 * log_var.double() ** 2  # ½(v²/2) to leading order
    assert torch.allclose(rate.double(), expected, rtol=2e-3, atol=1e-12)


finite_floats = st.floats(-20.0, 20.0, allow_nan=False, width=32)


@settings(max_examples=100, deadline=None)
@given(arrays("float32", (3, 5), elements=finite_floats), arrays("float32", (3, 5), elements=finite_floats))
def test_rate_is_non_negative_property(mean, log_var):
    rate = gaussian_rate(torch.from_numpy(mean), torch.from_numpy(log_var))
    assert bool((rate >= 0).all()), rate
    reference = gaussian_rate(torch.from_numpy(mean).double(), torch.from_numpy(log_var).double())
    assert torch.allclose(rate.double(), reference, rtol=1e-5, atol=1e-6)


def test_bernoulli_distortion_equals_negated_summed_log_prob():
    logits = 4.0 * torch.randn(4, 1, 8, 8, generator=generator(2))
    x = torch.bernoulli(torch.full((4, 1, 8, 8), 0.4), generator=generator(3))
    expected = -Bernoulli(logits=logits).log_prob(x).sum(dim=(1, 2, 3))
    got = bernoulli_distortion(logits, x)
    assert got.shape == (4,)
    assert torch.allclose(got, expected, rtol=1e-5, atol=1e-5)
    assert torch.allclose(distortion(Likelihood.BERNOULLI, logits, x), expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(bernoulli_distortion(logits, x.bool()), got)  # boolean targets are cast


@pytest.mark.parametrize("sigma2", [0.1, 1.0, 2.5])
def test_gaussian_distortion_equals_negated_summed_log_prob(sigma2):
    x_hat = torch.randn(4, 3, 5, 5, generator=generator(4), dtype=torch.float64)
    x = torch.rand(4, 3, 5, 5, generator=generator(5), dtype=torch.float64)
    expected = -Normal(x_hat, math.sqrt(sigma2)).log_prob(x).sum(dim=(1, 2, 3))
    got = gaussian_distortion(x_hat, x, sigma2)
    assert got.shape == (4,)
    assert torch.allclose(got, expected, rtol=1e-12)
    assert torch.allclose(distortion("gaussian", x_hat, x, sigma2), expected, rtol=1e-12)


def test_distortion_is_summed_not_averaged_over_data_dimensions():
    logits = torch.randn(3, 10, generator=generator(6))
    x = torch.bernoulli(torch.full((3, 10), 0.5), generator=generator(7))
    doubled = bernoulli_distortion(torch.cat([logits, logits], 1), torch.cat([x, x], 1))
    assert torch.allclose(doubled, 2 * bernoulli_distortion(logits, x))
    x_hat = torch.randn(3, 10, generator=generator(8))
    doubled = gaussian_distortion(torch.cat([x_hat, x_hat], 1), torch.cat([x, x], 1), 0.5)
    assert torch.allclose(doubled, 2 * gaussian_distortion(x_hat, x, 0.5))


@pytest.mark.parametrize("beta_shape", ["(B, 1)", "(B,)", "float", "0-dim", "(1,)", "(1, 1)"])
def test_beta_objective_is_d_plus_beta_r_for_every_beta_shape(beta_shape):
    dist = torch.tensor([10.0, 20.0, 30.0, 40.0])
    rate = torch.tensor([1.0, 2.0, 3.0, 4.0])
    per_example = torch.tensor([0.5, 1.0, 2.0, 4.0])
    beta = {"(B, 1)": per_example.reshape(4, 1), "(B,)": per_example, "float": 0.25,
            "0-dim": torch.tensor(0.25), "(1,)": torch.tensor([0.25]), "(1, 1)": torch.tensor([[0.25]])}[beta_shape]
    expected = dist + (per_example if beta_shape in ("(B, 1)", "(B,)") else 0.25) * rate
    got = beta_objective(dist, rate, beta)
    assert got.shape == (4,)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("dist_shape, rate_shape, beta_shape, message", [
    ((4,), (4,), (4, 2), r"β must have shape \(4, 1\), \(4,\) or \(\), got \(4, 2\)"),
    ((4,), (4,), (3,), r"β must have shape \(4, 1\), \(4,\) or \(\), got \(3,\)"),
    ((4,), (4,), (3, 1), r"β must have shape \(4, 1\), \(4,\) or \(\), got \(3, 1\)"),
    ((4,), (4,), (4, 1, 1), r"β must have shape \(4, 1\), \(4,\) or \(\), got \(4, 1, 1\)"),
    ((4,), (4, 1), (), r"distortion and rate must both have shape \(B,\), got \(4,\) and \(4, 1\)"),
    ((4,), (3,), (), r"distortion and rate must both have shape \(B,\), got \(4,\) and \(3,\)"),
    ((4, 2), (4, 2), (), r"distortion and rate must both have shape \(B,\), got \(4, 2\) and \(4, 2\)"),
])
def test_beta_objective_shape_errors(dist_shape, rate_shape, beta_shape, message):
    with pytest.raises(ValueError, match=message):
        beta_objective(torch.ones(dist_shape), torch.ones(rate_shape), torch.ones(beta_shape))


def test_other_shape_and_value_errors_have_messages():
    with pytest.raises(ValueError, match=re.escape("mean and log_var shapes differ: (2, 3) vs (2, 4)")):
        gaussian_rate(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=re.escape("logits and x shapes differ: (2, 3) vs (2, 1, 3)")):
        bernoulli_distortion(torch.zeros(2, 3), torch.zeros(2, 1, 3))
    with pytest.raises(ValueError, match=re.escape("x_hat and x shapes differ: (2, 3) vs (3, 2)")):
        gaussian_distortion(torch.zeros(2, 3), torch.zeros(3, 2), 1.0)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"the Gaussian variance σ² must be > 0, got"):
            gaussian_distortion(torch.zeros(2, 3), torch.zeros(2, 3), bad)
    with pytest.raises(ValueError, match=r"'poisson' is not a valid Likelihood"):
        distortion("poisson", torch.zeros(2, 3), torch.zeros(2, 3))


class ExactPosteriorToy:
    """p(z) = N(0, I), p(x|z) = N(z, s² I) in 2-D, and q(z|x) the exact posterior N(x/(1+s²), s²/(1+s²)).

    With q the posterior every importance weight equals p(x), so the IWAE bound is log p(x) for any k,
    with log p(x) = log N(x; 0, (1+s²) I).
    """

    def __init__(self, s2: float, q_scale: float = 1.0) -> None:
        self.s2, self.q_scale = s2, q_scale

    def encode(self, x, u):
        mean = x / (1 + self.s2)
        log_var = torch.full_like(x, math.log(self.q_scale * self.s2 / (1 + self.s2)))
        return mean, log_var

    def reconstruction_distortion(self, z, u, x):
        return gaussian_distortion(z, x, self.s2)  # the decoder mean is z itself


def test_iwae_bound_is_log_px_with_the_exact_posterior():
    toy = ExactPosteriorToy(0.5)
    x = torch.randn(6, 2, generator=generator(9), dtype=torch.float64)
    log_px = Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.5, dtype=torch.float64).sqrt()).log_prob(x).sum(dim=1)
    for k, chunk in ((1, 64), (7, 3)):
        bound = iwae_bound(toy, x, None, k, chunk_size=chunk, generator=generator(10))
        assert bound.shape == (6,)
        assert torch.allclose(bound, log_px, rtol=0, atol=1e-12)


def test_iwae_bound_tightens_with_k_for_a_wrong_posterior():
    toy = ExactPosteriorToy(0.5, q_scale=4.0)  # q four times too wide
    x = torch.randn(32, 2, generator=generator(11), dtype=torch.float64)
    log_px = Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.5, dtype=torch.float64).sqrt()).log_prob(x).sum(dim=1)
    gaps = [float((log_px - iwae_bound(toy, x, None, k, chunk_size=16, generator=generator(12))).mean())
            for k in (1, 8, 256)]
    assert gaps[0] > gaps[1] > gaps[2] > 0
    with pytest.raises(ValueError, match=r"num_samples and chunk_size must be >= 1, got 0, 64"):
        iwae_bound(toy, x, None, 0)
