"""BetaRange: log-uniform sampler moments, standardisation, seeds, per-batch mode, grids and errors."""

import math

import pytest
import torch

from mrvae.beta import SQRT3, BetaRange, BetaSampling, baseline_betas

DRAWS = 200_000


def uniform_moments(lo: float, hi: float) -> tuple[float, float, float]:
    """Mean, variance and the variance of the sample variance's limit (μ4 - σ⁴) of Uniform[lo, hi]."""
    width = hi - lo
    variance = width**2 / 12
    fourth_central = width**4 / 80
    return (lo + hi) / 2, variance, fourth_central - variance**2


def assert_uniform_moments(sample: torch.Tensor, lo: float, hi: float) -> None:
    """Sample mean and variance within 3 standard errors of those of Uniform[lo, hi]."""
    n = sample.numel()
    mean, variance, var_of_var = uniform_moments(lo, hi)
    sample = sample.double().flatten()
    se_mean = math.sqrt(variance / n)
    se_var = math.sqrt(var_of_var / n)
    assert abs(sample.mean().item() - mean) < 3 * se_mean, (sample.mean().item(), mean, se_mean)
    assert abs(sample.var().item() - variance) < 3 * se_var, (sample.var().item(), variance, se_var)


@pytest.mark.parametrize("low, high", [(0.01, 10.0), (0.1, 10.0), (1e-3, 0.5)])
def test_log_beta_is_uniform_on_the_log_range(low, high):
    beta = BetaRange(low, high).sample(DRAWS, torch.Generator().manual_seed(1))
    assert beta.shape == (DRAWS, 1)
    assert float(beta.min()) >= low * (1 - 1e-6) and float(beta.max()) <= high * (1 + 1e-6)
    assert_uniform_moments(torch.log(beta), math.log(low), math.log(high))


def test_beta_itself_is_not_uniform():
    """The moment check can fail: β drawn uniformly (not log-uniformly) is rejected by it."""
    beta = 0.01 + (10 - 0.01) * torch.rand(DRAWS, generator=torch.Generator().manual_seed(1))
    with pytest.raises(AssertionError):
        assert_uniform_moments(torch.log(beta), math.log(0.01), math.log(10.0))


def test_standardised_u_has_mean_0_variance_1_and_lies_in_the_root3_interval():
    beta_range = BetaRange(0.01, 10.0)
    u = beta_range.standardise(beta_range.sample(DRAWS, torch.Generator().manual_seed(2)))
    assert u.shape == (DRAWS, 1)
    assert uniform_moments(-SQRT3, SQRT3)[:2] == pytest.approx((0.0, 1.0))
    assert_uniform_moments(u, -SQRT3, SQRT3)  # mean 0 and variance 1 within 3 standard errors
    tol = 1e-5  # float32 rounding of exp then log at the ends
    assert float(u.min()) >= -SQRT3 - tol and float(u.max()) <= SQRT3 + tol
    assert float(u.min()) < -SQRT3 + 0.01 and float(u.max()) > SQRT3 - 0.01  # the whole interval is used


def test_standardise_maps_the_ends_and_the_log_centre():
    beta_range = BetaRange(0.01, 10.0)
    u = beta_range.standardise(torch.tensor([0.01, math.sqrt(0.1), 10.0], dtype=torch.float64))
    assert u.dtype == torch.get_default_dtype()
    assert u.tolist() == pytest.approx([-SQRT3, 0.0, SQRT3], abs=1e-5)
    assert beta_range.log_center == pytest.approx(0.5 * math.log(0.1))
    assert beta_range.log_half_width == pytest.approx(0.5 * math.log(1000.0))


def test_unstandardise_inverts_standardise():
    beta_range = BetaRange(0.003, 30.0)
    beta = torch.logspace(math.log10(0.003), math.log10(30.0), 101).reshape(101, 1)
    assert torch.allclose(beta_range.unstandardise(beta_range.standardise(beta)), beta, rtol=1e-5)
    u = torch.linspace(-SQRT3, SQRT3, 57)
    assert torch.allclose(beta_range.standardise(beta_range.unstandardise(u)), u, atol=1e-5)


def test_same_seed_same_draws_different_seed_different_draws():
    beta_range = BetaRange()
    first = beta_range.sample(64, torch.Generator().manual_seed(7))
    again = beta_range.sample(64, torch.Generator().manual_seed(7))
    other = beta_range.sample(64, torch.Generator().manual_seed(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)
    generator = torch.Generator().manual_seed(7)
    assert not torch.equal(beta_range.sample(64, generator), beta_range.sample(64, generator))


def test_per_batch_mode_gives_one_value_per_batch():
    beta_range = BetaRange(0.01, 10.0)
    generator = torch.Generator().manual_seed(3)
    batches = [beta_range.sample(8, generator, mode=BetaSampling.PER_BATCH) for _ in range(4000)]
    for beta in batches[:50]:
        assert beta.shape == (8, 1)
        assert torch.equal(beta, beta[:1].expand(8, 1))
    firsts = torch.cat([beta[:1] for beta in batches])
    assert firsts.unique().numel() > 0.99 * firsts.numel()  # a fresh value per batch (float32 ties aside)
    assert_uniform_moments(torch.log(firsts), math.log(0.01), math.log(10.0))
    per_example = beta_range.sample(8, torch.Generator().manual_seed(3), mode="per-example")
    assert per_example.unique().numel() == 8


def test_sample_dtype_and_default_generator():
    beta = BetaRange(0.5, 2.0).sample(5, dtype=torch.float64)
    assert beta.dtype == torch.float64 and beta.shape == (5, 1)
    assert bool(((beta >= 0.5) & (beta <= 2.0)).all())


def test_fixed_range_gives_u_identically_zero():
    fixed = BetaRange(0.5, 0.5)
    assert fixed.is_fixed and not BetaRange(0.5, 0.6).is_fixed
    beta = fixed.sample(16, torch.Generator().manual_seed(0))
    assert torch.equal(beta, torch.full((16, 1), 0.5))
    assert torch.equal(fixed.standardise(beta), torch.zeros(16, 1))
    assert torch.equal(fixed.standardise(torch.tensor([0.1, 3.0])), torch.zeros(2))
    assert torch.equal(fixed.unstandardise(torch.zeros(3, 1)), torch.full((3, 1), 0.5))
    assert torch.equal(fixed.grid(4), torch.full((4,), 0.5, dtype=torch.float64))


@pytest.mark.parametrize("low, high, error, message", [
    (0.0, 1.0, ValueError, r"BetaRange.low must be a finite number > 0, got 0.0"),
    (-1.0, 1.0, ValueError, r"BetaRange.low must be a finite number > 0, got -1.0"),
    (2.0, 1.0, ValueError, r"needs low <= high, got low=2.0 > high=1.0"),
    (float("nan"), 1.0, ValueError, r"BetaRange.low must be a finite number > 0, got nan"),
    (0.1, float("inf"), ValueError, r"BetaRange.high must be a finite number > 0, got inf"),
    (True, 2.0, TypeError, r"BetaRange.low must be a number, got True"),
    (0.1, "10", TypeError, r"BetaRange.high must be a number, got '10'"),
])
def test_invalid_ranges_raise_with_messages(low, high, error, message):
    with pytest.raises(error, match=message):
        BetaRange(low, high)


def test_invalid_arguments_raise_with_messages():
    beta_range = BetaRange()
    with pytest.raises(ValueError, match=r"β must be > 0, got 0.0"):
        beta_range.standardise(torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"β must be > 0, got nan"):
        beta_range.standardise(float("nan"))
    with pytest.raises(ValueError, match=r"batch_size must be >= 1, got 0"):
        beta_range.sample(0)
    with pytest.raises(ValueError, match=r"'per-epoch' is not a valid BetaSampling"):
        beta_range.sample(4, mode="per-epoch")
    with pytest.raises(ValueError, match=r"at least 1 point, got 0"):
        beta_range.grid(0)


def test_grid_is_log_spaced_with_both_endpoints():
    grid = BetaRange(0.01, 10.0).grid(20)
    assert grid.shape == (20,) and grid.dtype == torch.float64
    assert grid[0].item() == pytest.approx(0.01, rel=1e-12)
    assert grid[-1].item() == pytest.approx(10.0, rel=1e-12)
    steps = torch.diff(torch.log(grid))
    assert torch.allclose(steps, torch.full_like(steps, math.log(1000.0) / 19), rtol=1e-10)
    assert BetaRange(0.01, 10.0).grid(1).tolist() == pytest.approx([math.sqrt(0.1)])  # the geometric mean


def test_baseline_betas_are_the_papers_sweep():
    paper = [0.01, 0.0215, 0.0464, 0.1, 0.215, 0.464, 1.0, 2.154, 4.642, 10.0]  # PAPER.md §4
    assert baseline_betas() == pytest.approx(paper, rel=3e-3)  # the paper rounds to 3-4 digits


def test_contains_uses_a_relative_tolerance():
    beta_range = BetaRange(0.01, 10.0)
    assert beta_range.contains(0.01) and beta_range.contains(10.0 * (1 + 1e-12))
    assert not beta_range.contains(0.0099) and not beta_range.contains(10.01)


@pytest.mark.parametrize("low, high", [(1e-40, 1.0), (0.01, 1e300), (1e31, 1e32)])
def test_beta_range_refuses_values_float32_training_cannot_hold(low, high):
    with pytest.raises(ValueError, match=r"is outside \[1e-30, 1e\+30\]: β·R and log β must stay finite"):
        BetaRange(low, high)
