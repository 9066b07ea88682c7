"""Linear VAE: the closed form against direct minimisation, Theorem 1 exactly, and train-once learning."""

from __future__ import annotations

import math

import pytest
import torch

from mrvae import BetaRange, Conditioning, GateFunction, LinearVAE, ModelConditioning
from mrvae.beta import SQRT3
from mrvae.models.linear import (LINEAR_CONDITIONING, LinearInit, linear_vae_terms, optimal_parameters,
                                 optimal_rate_distortion, set_optimal_response, staggered_collapse_points)

LOG_2PI = math.log(2 * math.pi)


def covariance(eigenvalues: list[float], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (d,) mean and (d, d) covariance with the given eigenvalues and a random rotation, float64."""
    gen = torch.Generator().manual_seed(seed)
    d = len(eigenvalues)
    rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    cov = rotation @ torch.diag(torch.tensor(eigenvalues, dtype=torch.float64)) @ rotation.T
    return torch.randn(d, generator=gen, dtype=torch.float64), 0.5 * (cov + cov.T)


# ---------------------------------------------------------------- (d) closed form vs a second computation

def minimise_linear_vae(mean: torch.Tensor, cov: torch.Tensor, k: int, beta: float, sigma2: float,
                        seed: int) -> tuple[float, float, torch.Tensor]:
    """Minimise D + β·R of linear_vae_terms over (A, a, log C, B, c) with L-BFGS from a random start.

    Returns (R, D) at the minimum and the (k,) rate of each latent, nats per example.
    """
    d = mean.numel()
    gen = torch.Generator().manual_seed(seed)
    params = [torch.randn(k, d, generator=gen, dtype=torch.float64) * 0.5, torch.zeros(k, dtype=torch.float64),
              torch.full((k,), -1.0, dtype=torch.float64), torch.randn(d, k, generator=gen, dtype=torch.float64),
              torch.zeros(d, dtype=torch.float64)]
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.LBFGS(params, lr=1.0, max_iter=3000, tolerance_grad=1e-12, tolerance_change=1e-15,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        rate, dist = linear_vae_terms(params[0], params[1], params[2].exp(), params[3], params[4], mean, cov,
                                      sigma2)
        loss = dist + beta * rate
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    with torch.no_grad():
        enc, enc_bias, variance = params[0], params[1], params[2].exp()
        rate, dist = linear_vae_terms(enc, enc_bias, variance, params[3], params[4], mean, cov, sigma2)
        code = enc @ mean + enc_bias
        per_latent = 0.5 * (torch.diagonal(enc @ cov @ enc.T) + code.square() + variance - variance.log() - 1)
    return float(rate), float(dist), per_latent


EIGENVALUES = [5.0, 2.5, 1.2, 0.6, 0.3, 0.1]
# (β, σ²) with γ = βσ² at least 1.4× away from every eigenvalue: the optimum is then well separated.
CASES = [(0.1, 1.0), (0.8, 1.0), (1.7, 1.0), (8.0, 1.0), (0.2, 0.5), (3.0, 0.5), (1.0, 2.0)]


@pytest.mark.parametrize("beta, sigma2", CASES)
def test_direct_minimisation_reproduces_closed_form(beta: float, sigma2: float) -> None:
    mean, cov = covariance(EIGENVALUES, seed=3)
    k = 3
    best_rate, best_dist = optimal_rate_distortion(EIGENVALUES, k, beta, sigma2)
    runs = [minimise_linear_vae(mean, cov, k, beta, sigma2, seed) for seed in (0, 1)]
    rate, dist, per_latent = min(runs, key=lambda r: r[1] + beta * r[0])
    assert rate == pytest.approx(float(best_rate), abs=1e-3)
    assert dist == pytest.approx(float(best_dist), abs=1e-3)
    # The latents the minimiser keeps are exactly those with λ_i > βσ².
    gamma = beta * sigma2
    active_expected = sum(lam > gamma for lam in EIGENVALUES[:k])
    assert int((per_latent > 1e-3).sum()) == active_expected
    # Each active latent carries ½ log(λ_i/γ) nats.
    expected = sorted((0.5 * math.log(lam / gamma) for lam in EIGENVALUES[:k] if lam > gamma), reverse=True)
    got = sorted(per_latent[per_latent > 1e-3].tolist(), reverse=True)
    assert got == pytest.approx(expected, abs=1e-3)


@pytest.mark.parametrize("sigma2", [1.0, 0.3])
def test_envelope_derivative_of_optimal_loss_is_rate(sigma2: float) -> None:
    k = 4
    for beta in [0.02, 0.15, 0.9, 3.3, 7.0]:
        step = 1e-6 * beta
        loss = [float(d + b * r) for b in (beta - step, beta + step)
                for r, d in [optimal_rate_distortion(EIGENVALUES, k, b, sigma2)]]
        rate, _ = optimal_rate_distortion(EIGENVALUES, k, beta, sigma2)
        assert (loss[1] - loss[0]) / (2 * step) == pytest.approx(float(rate), abs=1e-6)


@pytest.mark.parametrize("sigma2", [1.0, 0.5])
def test_latent_collapses_exactly_at_gamma_equal_lambda(sigma2: float) -> None:
    mean, cov = covariance(EIGENVALUES, seed=1)
    k = 4
    for i, lam in enumerate(EIGENVALUES[:k]):
        at = optimal_parameters(mean, cov, k, lam / sigma2, sigma2)
        below = optimal_parameters(mean, cov, k, lam / sigma2 * (1 - 1e-6), sigma2)
        # λ_i is computed by eigh, so allow its rounding (1e-12 relative) in "exactly".
        assert float(at.decoder[:, i].norm()) < 1e-5 and float(at.encoder[i].norm()) < 1e-5
        assert float(at.variance[i]) == pytest.approx(1.0, abs=1e-10)
        assert float(below.decoder[:, i].norm()) > 1e-4 and float(below.variance[i]) < 1.0
        # Every latent after i is collapsed too, every one before it active.
        assert all(float(at.decoder[:, j].norm()) < 1e-5 for j in range(i, k))
        assert all(float(at.decoder[:, j].norm()) > 0.1 for j in range(i))
    rate, _ = optimal_rate_distortion(EIGENVALUES, k, EIGENVALUES[0] / sigma2, sigma2)
    assert float(rate) == 0.0


def test_closed_form_parameters_give_closed_form_terms() -> None:
    mean, cov = covariance(EIGENVALUES, seed=2)
    for beta, sigma2 in CASES:
        opt = optimal_parameters(mean, cov, 3, beta, sigma2)
        rate, dist = linear_vae_terms(opt.encoder, -opt.encoder @ mean, opt.variance, opt.decoder, mean, mean, cov,
                                      sigma2)
        assert float(rate) == pytest.approx(opt.rate, abs=1e-10)
        assert float(dist) == pytest.approx(opt.distortion, abs=1e-10)


def test_optimal_loss_at_beta_one_is_ppca_negative_log_likelihood() -> None:
    k, d = 3, len(EIGENVALUES)
    rate, dist = optimal_rate_distortion(EIGENVALUES, k, 1.0, 1.0)
    # pPCA with σ² = 1: model covariance eigenvalues max(λ_i, 1) for i <= k, 1 beyond.
    model = [max(lam, 1.0) if i < k else 1.0 for i, lam in enumerate(EIGENVALUES)]
    nll = 0.5 * sum(LOG_2PI + math.log(s) + lam / s for lam, s in zip(EIGENVALUES, model))
    assert float(rate + dist) == pytest.approx(nll, abs=1e-12)
    assert d == len(model)


def test_closed_form_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="eigenvalues must be a non-empty list of values >= 0"):
        optimal_rate_distortion([1.0, -0.5], 1, 1.0)
    with pytest.raises(ValueError, match=r"latent_dim must be in \[1, 2\]"):
        optimal_rate_distortion([1.0, 0.5], 3, 1.0)
    with pytest.raises(ValueError, match="sigma2 must be > 0"):
        optimal_rate_distortion([1.0], 1, 1.0, sigma2=0.0)
    with pytest.raises(ValueError, match="β must be > 0"):
        optimal_rate_distortion([1.0], 1, torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError, match=r"square \(d, d\) matrix"):
        optimal_parameters(torch.zeros(3), torch.zeros(3, 2), 1, 1.0)


# ---------------------------------------------------------------- (e) Theorem 1

THEOREM_EIGENVALUES = [3.0, 1.3, 0.4, 0.2, 0.05, 0.01]
THEOREM_SIGMA2 = 0.5  # latents collapse at β = 6, 2.6 and 0.8, inside [0.01, 10]


def theorem_model() -> tuple[LinearVAE, torch.Tensor, torch.Tensor, BetaRange]:
    mean, cov = covariance(THEOREM_EIGENVALUES, seed=4)
    beta_range = BetaRange(0.01, 10.0)
    model = LinearVAE(len(THEOREM_EIGENVALUES), 3, THEOREM_SIGMA2, LINEAR_CONDITIONING, beta_range).double()
    set_optimal_response(model, mean, cov, beta_range)
    return model, mean, cov, beta_range


def test_theorem1_gate_parameters_are_the_papers() -> None:
    model, _, _, beta_range = theorem_model()
    lam = torch.tensor(THEOREM_EIGENVALUES[:3], dtype=torch.float64)
    expected_bias = beta_range.log_center - torch.log(lam / THEOREM_SIGMA2)
    for gate in (model.decoder_hidden.gate, model.encoder_hidden.gate):
        assert torch.allclose(gate.weight, torch.full((3,), beta_range.log_half_width / SQRT3, dtype=torch.float64))
        assert torch.allclose(gate.bias, expected_bias)
        for beta in beta_range.grid(50).tolist():
            u = beta_range.standardise(torch.full((1, 1), beta, dtype=torch.float64))
            want = torch.sqrt(torch.clamp(1 - beta * THEOREM_SIGMA2 / lam, min=0))
            assert torch.allclose(gate(u)[0], want, atol=1e-12)


def test_theorem1_decoder_is_exact_on_a_50_point_grid() -> None:
    model, mean, cov, beta_range = theorem_model()
    for beta in beta_range.grid(50).tolist():
        u = float(beta_range.standardise(beta))
        opt = optimal_parameters(mean, cov, 3, beta, THEOREM_SIGMA2)
        enc, enc_bias, variance, dec, dec_bias = model.affine_maps(u)
        # B(β) = D* (column signs are eigh's, the same in both), and B Bᵀ, which no sign convention touches.
        assert torch.allclose(dec, opt.decoder, atol=1e-5)
        assert torch.allclose(dec @ dec.T, opt.decoder @ opt.decoder.T, atol=1e-5)
        assert torch.allclose(dec_bias, mean, atol=1e-12)
        # Distortion of this decoder with the encoder at E*, C*: D*(β).
        _, dist = linear_vae_terms(opt.encoder, -opt.encoder @ mean, opt.variance, dec, dec_bias, mean, cov,
                                   THEOREM_SIGMA2)
        assert float(dist) == pytest.approx(opt.distortion, abs=1e-5)
        # The model's own encoder is E*(β); its variance is C* on active latents.
        assert torch.allclose(enc, opt.encoder, atol=1e-5)
        assert torch.allclose(enc_bias, -opt.encoder @ mean, atol=1e-5)
        active = opt.decoder.norm(dim=0) > 0
        assert torch.allclose(variance[active], opt.variance[active], rtol=1e-6)  # u is float32
        rate, own_dist = model.expected_terms(u, mean, cov)
        assert own_dist == pytest.approx(opt.distortion, abs=1e-5)
        # A collapsed latent's variance is (γ/λ)^0.01 rather than 1: at most ~1e-3 nats of extra rate.
        assert opt.rate - 1e-5 <= rate <= opt.rate + 1e-3


def test_theorem1_needs_sqrt_gates_of_scale_one() -> None:
    mean, cov = covariance(THEOREM_EIGENVALUES, seed=4)
    beta_range = BetaRange()
    sigmoid = LinearVAE(6, 3, conditioning=ModelConditioning(decoder_gate=GateFunction.SQRT, gate_scale=1.0))
    with pytest.raises(ValueError, match="sqrt gates with scale 1, got sigmoid"):
        set_optimal_response(sigmoid, mean, cov, beta_range)
    scaled = LinearVAE(6, 3, conditioning=ModelConditioning(encoder_gate="sqrt", decoder_gate="sqrt", gate_scale=2.0))
    with pytest.raises(ValueError, match="with scale 2.0"):
        set_optimal_response(scaled, mean, cov, beta_range)
    with pytest.raises(ValueError, match="needs gate conditioning, got none"):
        set_optimal_response(LinearVAE(6, 3, conditioning=ModelConditioning(kind="none")), mean, cov, beta_range)
    with pytest.raises(ValueError, match="low < high"):
        set_optimal_response(LinearVAE(6, 3), mean, cov, BetaRange(1.0, 1.0))
    flat = torch.diag(torch.tensor([1.0, 1.0, 0.0, 0.0, 0.0, 0.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="top-3 covariance eigenvalues > 0"):
        set_optimal_response(LinearVAE(6, 3), mean, flat, beta_range)


# ---------------------------------------------------------------- the model itself

def test_staggered_init_has_the_documented_shape() -> None:
    beta_range = BetaRange(0.01, 10.0)
    model = LinearVAE(8, 4, beta_range=beta_range)
    assert torch.equal(model.encoder_mean.weight, torch.eye(4))
    assert torch.equal(model.decoder_hidden.base.weight, torch.eye(4))
    closing = torch.exp(beta_range.log_center + staggered_collapse_points(4) * beta_range.log_half_width / SQRT3)
    assert closing[0] == pytest.approx(math.sqrt(0.01 * 10.0)) and closing[-1] == pytest.approx(10.0)
    for beta in [0.01, 0.1, 1.0, 5.0]:
        u = beta_range.standardise(torch.full((1, 1), beta))
        want = torch.sqrt(torch.clamp(1 - beta / closing, min=0))
        for gate in (model.encoder_hidden.gate, model.decoder_hidden.gate):
            assert torch.allclose(gate(u)[0], want, atol=2e-3)  # the gate's floor rounds the last 1e-6
        _, log_var = model.encode(torch.zeros(1, 8), u)
        pre = torch.log(beta / closing)  # log-variance log(β/β_j) below β_j, leaky (slope 0.01) above
        assert torch.allclose(log_var[0], torch.minimum(pre, 0.01 * pre), atol=1e-5)


def test_default_init_keeps_pytorch_layers_and_gate_init() -> None:
    torch.manual_seed(0)
    model = LinearVAE(8, 4, init=LinearInit.DEFAULT)
    assert not torch.equal(model.encoder_mean.weight, torch.eye(4))
    assert torch.equal(model.variance_weight, torch.zeros(4))
    gate = model.decoder_hidden.gate
    assert torch.equal(gate.weight, torch.zeros(4))  # GateInit.OPEN of LINEAR_CONDITIONING: flat, open
    assert float(gate(torch.zeros(1, 1)).detach().min()) == pytest.approx(0.95)


def test_unconditioned_model_ignores_u_and_freezes_the_variance_slope() -> None:
    model = LinearVAE(5, 2, conditioning=ModelConditioning(kind=Conditioning.NONE))
    assert not model.variance_weight.requires_grad
    x = torch.randn(3, 5)
    mean_a, log_var_a = model.encode(x, torch.full((3, 1), -1.0))
    mean_b, log_var_b = model.encode(x, None)
    assert torch.equal(mean_a, mean_b) and torch.equal(log_var_a, log_var_b)
    assert model.decode(mean_a, None).shape == (3, 5)


def test_log_variance_is_leaky_above_zero() -> None:
    model = LinearVAE(3, 2, init=LinearInit.DEFAULT)
    with torch.no_grad():
        model.variance_weight.zero_()
        model.variance_bias.copy_(torch.tensor([-2.0, 3.0]))
    _, log_var = model.encode(torch.zeros(1, 3), torch.zeros(1, 1))
    assert log_var[0].tolist() == pytest.approx([-2.0, 0.03])


def test_model_rejects_bad_sizes_and_range() -> None:
    with pytest.raises(ValueError, match="need 1 <= latent_dim <= data_dim, got latent_dim=4, data_dim=3"):
        LinearVAE(3, 4)
    with pytest.raises(TypeError, match="beta_range must be a BetaRange, got tuple"):
        LinearVAE(3, 2, beta_range=(0.01, 10.0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'uniform' is not a valid LinearInit"):
        LinearVAE(3, 2, init="uniform")


# ---------------------------------------------------------------- (f) learning, train once

LEARN_EIGENVALUES = [20.0, 6.0, 2.0, 0.7, 0.3, 0.1, 0.05, 0.02]


def test_trained_once_reaches_optimal_loss_at_every_beta() -> None:
    """One MR-VAE run (2,000 Adam steps, a few seconds) is within 1 % of L*(β) at 10 β in [0.01, 10].

    The 0.7 latent (below E[β] = 1.45) is the one PyTorch's default init leaves dead (docs/linear_vae.md);
    benchmarks/linear_response.py runs this over several seeds.
    """
    seed, steps, lr, batch = 0, 2000, 1e-2, 256
    gen = torch.Generator().manual_seed(seed)
    d, k = len(LEARN_EIGENVALUES), 4
    rotation, _ = torch.linalg.qr(torch.randn(d, d, generator=gen))
    x = (torch.randn(4096, d, generator=gen) * torch.tensor(LEARN_EIGENVALUES).sqrt()) @ rotation.T
    x = x + torch.randn(d, generator=gen)
    mean = x.double().mean(0)
    cov = (x.double() - mean).T @ (x.double() - mean) / x.shape[0]
    beta_range = BetaRange(0.01, 10.0)
    torch.manual_seed(seed)
    model = LinearVAE(d, k, beta_range=beta_range)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    decay_start = 3 * steps // 4
    for step in range(steps):
        if step >= decay_start:
            opt.param_groups[0]["lr"] = lr * (steps - step) / (steps - decay_start)
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
        beta = beta_range.sample(batch, gen)
        loss, _ = model.objective(x[idx], beta, beta_range.standardise(beta), gen)
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
    eigenvalues = torch.linalg.eigvalsh(cov)
    for beta in beta_range.grid(10).tolist():
        rate, dist = model.expected_terms(float(beta_range.standardise(beta)), mean, cov)
        best_rate, best_dist = optimal_rate_distortion(eigenvalues, k, beta)
        best = float(best_dist + beta * best_rate)
        gap = (dist + beta * rate - best) / best
        assert -1e-6 <= gap < 0.01, f"β = {beta:.3g}: L = {dist + beta * rate:.4f}, L* = {best:.4f}"


def test_registry_lays_the_staggered_init_on_the_training_beta_range() -> None:
    from mrvae.config import ModelConfig
    from mrvae.data.base import DataInfo
    from mrvae.models import build_model

    info = DataInfo("flat", (8,), "gaussian", 1.0)
    config = ModelConfig(arch="linear", latent_dim=4, encoder_gate="sqrt", decoder_gate="sqrt", gate_scale=1.0,
                         gate_init="open")  # = LINEAR_CONDITIONING
    narrow = BetaRange(0.1, 1.0)
    torch.manual_seed(0)
    built = build_model(config, info, "gate", beta_range=narrow)
    torch.manual_seed(0)
    direct = LinearVAE(8, 4, beta_range=narrow)
    assert built.state_dict().keys() == direct.state_dict().keys()
    assert all(torch.equal(built.state_dict()[k], direct.state_dict()[k]) for k in direct.state_dict())
    # every latent has closed by the top of the range it was built for (β = 1); built for the default
    # range [0.01, 10], the last one stays open until β = 10
    torch.manual_seed(0)
    default = build_model(config, info, "gate")
    at_one = lambda model, r: model.encoder_hidden.gate(r.standardise(torch.full((1, 1), 1.0)))[0]
    assert at_one(built, narrow).max() < 2e-3 and at_one(default, BetaRange())[-1] > 0.9
