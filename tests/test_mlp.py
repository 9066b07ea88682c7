"""MLPVAE: shapes, which layers are gated, conditioning none / film, training steps, reparameterisation."""

import math

import pytest
import torch
from torch import nn

from mrvae.beta import BetaRange
from mrvae.gates import FilmConditioner, GateInit, UnitGate
from mrvae.layers import Conditioning, ConditionedLayer, ModelConditioning
from mrvae.models import MLPVAE
from mrvae.objectives import bernoulli_distortion, gaussian_distortion, gaussian_rate

GATE = ModelConditioning()
NONE = ModelConditioning(kind=Conditioning.NONE)
FILM = ModelConditioning(kind=Conditioning.FILM)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch_for(data_shape: tuple[int, ...], likelihood: str, size: int = 6) -> torch.Tensor:
    if likelihood == "bernoulli":
        return torch.bernoulli(torch.full((size, *data_shape), 0.4), generator=generator(1))
    return torch.rand((size, *data_shape), generator=generator(1))


def u_for(size: int = 6) -> torch.Tensor:
    beta_range = BetaRange()
    return beta_range.standardise(beta_range.sample(size, generator(2)))


@pytest.mark.parametrize("data_shape", [(1, 8, 8), (64,)])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_shapes_and_per_example_terms(data_shape, likelihood):
    torch.manual_seed(0)
    model = MLPVAE(data_shape, latent_dim=5, hidden=(32, 16), likelihood=likelihood, sigma2=0.3)
    x, u = batch_for(data_shape, likelihood), u_for()
    out = model(x, u, generator(3))
    assert out.output.shape == x.shape
    assert out.mean.shape == out.log_var.shape == out.z.shape == (6, 5)
    assert out.rate.shape == out.distortion.shape == (6,)
    assert torch.allclose(out.rate, gaussian_rate(out.mean, out.log_var))
    if likelihood == "bernoulli":
        expected = bernoulli_distortion(out.output, x)
    else:
        expected = gaussian_distortion(out.output, x, 0.3)
    assert torch.allclose(out.distortion, expected)
    assert torch.equal(model.decode(out.z, u), out.output)


@pytest.mark.parametrize("hidden", [(32,), (32, 16), (24, 16, 8)])
def test_gated_layers_are_exactly_the_hidden_layers(hidden):
    model = MLPVAE((1, 8, 8), latent_dim=4, hidden=hidden, conditioning=GATE)
    gates = {name: module for name, module in model.named_modules() if isinstance(module, UnitGate)}
    assert len(gates) == 2 * len(hidden)  # encoder hidden + decoder hidden
    encoder = [g.weight.numel() for name, g in gates.items() if name.startswith("encoder.")]
    decoder = [g.weight.numel() for name, g in gates.items() if name.startswith("decoder.")]
    assert encoder == list(hidden) and decoder == list(hidden)[::-1]
    for head in (model.mean_head, model.log_var_head, model.output_layer):
        assert type(head) is nn.Linear  # the latent heads and the output layer are not conditioned
    conditioned = [m for m in model.modules() if isinstance(m, ConditionedLayer)]
    assert all(layer.gate is not None for layer in conditioned) and len(conditioned) == len(gates)


def test_gate_parameters_are_two_per_hidden_unit():
    hidden = (32, 16)
    gated = MLPVAE((64,), latent_dim=4, hidden=hidden, conditioning=GATE)
    plain = MLPVAE((64,), latent_dim=4, hidden=hidden, conditioning=NONE)
    count = lambda model: sum(p.numel() for p in model.parameters())  # noqa: E731
    assert count(gated) - count(plain) == 2 * 2 * sum(hidden)
    # plain MLP: Linear(64,32), Linear(32,16), two heads Linear(16,4); Linear(4,16), Linear(16,32), Linear(32,64)
    linear = lambda a, b: a * b + b  # noqa: E731
    assert count(plain) == (linear(64, 32) + linear(32, 16) + 2 * linear(16, 4)
                            + linear(4, 16) + linear(16, 32) + linear(32, 64))


def test_conditioning_none_has_no_gate_parameters_and_ignores_u():
    torch.manual_seed(0)
    model = MLPVAE((1, 8, 8), latent_dim=4, hidden=(16,), conditioning=NONE)
    assert not any(isinstance(m, (UnitGate, FilmConditioner)) for m in model.modules())
    assert not any("gate" in name or "film" in name for name, _ in model.named_parameters())
    x = batch_for((1, 8, 8), "bernoulli")
    without = model(x, None, generator(4))
    assert torch.equal(model(x, u_for(), generator(4)).output, without.output)


def test_the_gated_model_depends_on_u():
    torch.manual_seed(0)
    model = MLPVAE((1, 8, 8), latent_dim=4, hidden=(16,), conditioning=GATE)
    x = batch_for((1, 8, 8), "bernoulli")
    low = model(x, torch.full((6, 1), -1.5), sample=False).output
    high = model(x, torch.full((6, 1), 1.5), sample=False).output
    assert not torch.allclose(low, high)
    with pytest.raises(ValueError, match=r"u=None"):
        model(x, None)


def test_film_model_at_initialisation_equals_the_plain_model_exactly():
    torch.manual_seed(0)
    plain = MLPVAE((1, 8, 8), latent_dim=4, hidden=(16, 8), conditioning=NONE)
    film = MLPVAE((1, 8, 8), latent_dim=4, hidden=(16, 8), conditioning=FILM)
    missing, unexpected = film.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(".film." in name for name in missing)
    x = batch_for((1, 8, 8), "bernoulli")
    assert torch.equal(film(x, u_for(), generator(5)).output, plain(x, None, generator(5)).output)


def test_open_sigmoid_gates_with_scale_2_start_as_the_plain_model_exactly():
    """2·sigmoid(0) = 1 exactly, so an 'open' gated model starts as its base network."""
    torch.manual_seed(0)
    plain = MLPVAE((64,), latent_dim=4, hidden=(16, 8), conditioning=NONE)
    gated = MLPVAE((64,), latent_dim=4, hidden=(16, 8), conditioning=ModelConditioning(gate_init=GateInit.OPEN))
    gated.load_state_dict(plain.state_dict(), strict=False)
    x = batch_for((64,), "gaussian")
    assert torch.equal(gated(x, u_for(), sample=False).output, plain(x, None, sample=False).output)


@pytest.mark.parametrize("conditioning", [GATE, NONE])
def test_a_few_adam_steps_reduce_the_beta_objective(conditioning):
    torch.manual_seed(0)
    model = MLPVAE((1, 8, 8), latent_dim=4, hidden=(32, 32), conditioning=conditioning)
    patterns = torch.bernoulli(torch.full((2, 1, 8, 8), 0.5), generator=generator(1))
    x = patterns.repeat(8, 1, 1, 1)  # 16 examples of 2 patterns: learnable well below log 2 per pixel
    beta_range = BetaRange()
    beta = beta_range.sample(16, generator(6))
    u = beta_range.standardise(beta)

    def loss(seed: int) -> torch.Tensor:
        return model.objective(x, beta, u, generator(seed))[0].mean()

    with torch.no_grad():
        before = float(loss(100))
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    for step in range(50):
        optimiser.zero_grad()
        loss(step).backward()
        optimiser.step()
    with torch.no_grad():
        after = float(loss(100))
    assert after < 0.7 * before, (before, after)
    if conditioning.kind is Conditioning.GATE:
        assert any(float(m.weight.grad.abs().sum()) > 0 for m in model.modules() if isinstance(m, UnitGate))


def test_reparameterise_uses_the_generator():
    mean = torch.randn(4, 3, generator=generator(7))
    log_var = torch.randn(4, 3, generator=generator(8))
    first = MLPVAE.reparameterise(mean, log_var, generator(9))
    assert torch.equal(first, MLPVAE.reparameterise(mean, log_var, generator(9)))
    assert not torch.equal(first, MLPVAE.reparameterise(mean, log_var, generator(10)))
    eps = torch.randn(4, 3, generator=generator(9))
    assert torch.allclose(first, mean + torch.exp(0.5 * log_var) * eps)


def test_forward_sampling_is_reproducible_and_sample_false_decodes_the_mean():
    torch.manual_seed(0)
    model = MLPVAE((1, 8, 8), latent_dim=4, hidden=(16,))
    x, u = batch_for((1, 8, 8), "bernoulli"), u_for()
    assert torch.equal(model(x, u, generator(11)).z, model(x, u, generator(11)).z)
    assert not torch.equal(model(x, u, generator(11)).z, model(x, u, generator(12)).z)
    out = model(x, u, sample=False)
    assert torch.equal(out.z, out.mean)


def test_objective_is_distortion_plus_beta_rate():
    torch.manual_seed(0)
    model = MLPVAE((1, 8, 8), latent_dim=4, hidden=(16,))
    x, u = batch_for((1, 8, 8), "bernoulli"), u_for()
    beta = BetaRange().unstandardise(u)
    loss, out = model.objective(x, beta, u, generator(13))
    assert loss.shape == (6,)
    assert torch.allclose(loss, out.distortion + beta[:, 0] * out.rate)


def test_invalid_arguments_raise_with_messages():
    with pytest.raises(ValueError, match=r"hidden must be a non-empty list of sizes >= 1, got \[\]"):
        MLPVAE((64,), hidden=())
    with pytest.raises(ValueError, match=r"hidden must be a non-empty list of sizes >= 1, got \[16, 0\]"):
        MLPVAE((64,), hidden=(16, 0))
    with pytest.raises(ValueError, match=r"latent_dim must be >= 1, got 0"):
        MLPVAE((64,), latent_dim=0)
    with pytest.raises(ValueError, match=r"sigma2 \(the Gaussian decoder variance\) must be > 0, got 0.0"):
        MLPVAE((64,), likelihood="gaussian", sigma2=0.0)
    assert math.prod(MLPVAE((1, 8, 8)).data_shape) == 64
