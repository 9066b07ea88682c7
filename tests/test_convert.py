"""Tests for mrvae.convert (scope, select, make, vae): a user's VAE made multi-rate, the scoped β context, the
training adapter."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mrvae.beta import BetaRange
from mrvae.gates import GateFunction, GateInit
from mrvae.convert import (BetaNotSetError, ConvertedVAE, MultiRateModel, ScopedLayer, beta_context, execution_order,
                           gateable_layers, last_layer, make_multirate, paper_exclude)
from mrvae.layers import (Conditioning, ConditionedConv2d, ConditionedConvTranspose2d, ConditionedLinear,
                          ModelConditioning, Role)
from mrvae.models import MLPVAE
from mrvae.objectives import bernoulli_distortion, gaussian_rate

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "convert_tutorial_vae.py"
RANGE = BetaRange(0.01, 10.0)


class UserConvVAE(nn.Module):
    """A VAE written with no knowledge of mrvae: conv encoder, transposed-conv decoder, (1, 8, 8) data."""

    def __init__(self, latent: int = 3) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, stride=2, padding=1)      # 8 -> 4
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2, padding=1)      # 4 -> 2
        self.fc_mu = nn.Linear(24, latent)
        self.fc_logvar = nn.Linear(24, latent)
        self.fc_dec = nn.Linear(latent, 24)
        self.deconv1 = nn.ConvTranspose2d(6, 4, 4, stride=2, padding=1)  # 2 -> 4
        self.deconv2 = nn.ConvTranspose2d(4, 1, 4, stride=2, padding=1)  # 4 -> 8

    def encode(self, x):
        h = F.relu(self.conv2(F.relu(self.conv1(x)))).flatten(1)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z):
        h = F.relu(self.fc_dec(z)).reshape(-1, 6, 2, 2)
        return self.deconv2(F.relu(self.deconv1(h)))

    def forward(self, x):
        mu, log_var = self.encode(x)
        return self.decode(mu), mu, log_var


class HandBuilt(nn.Module):
    """The same network written with mrvae's conditioned layers, taking u explicitly."""

    def __init__(self, spec: ModelConditioning, latent: int = 3) -> None:
        super().__init__()
        self.conv1 = ConditionedConv2d(1, 4, 3, stride=2, padding=1, spec=spec, role=Role.ENCODER)
        self.conv2 = ConditionedConv2d(4, 6, 3, stride=2, padding=1, spec=spec, role=Role.ENCODER)
        self.fc_mu = nn.Linear(24, latent)
        self.fc_logvar = nn.Linear(24, latent)
        self.fc_dec = ConditionedLinear(latent, 24, spec, Role.DECODER)
        self.deconv1 = ConditionedConvTranspose2d(6, 4, 4, stride=2, padding=1, spec=spec, role=Role.DECODER)
        self.deconv2 = nn.ConvTranspose2d(4, 1, 4, stride=2, padding=1)

    def forward(self, x, u):
        h = F.relu(self.conv2(F.relu(self.conv1(x, u)), u)).flatten(1)
        mu, log_var = self.fc_mu(h), self.fc_logvar(h)
        h = F.relu(self.fc_dec(mu, u)).reshape(-1, 6, 2, 2)
        return self.deconv2(F.relu(self.deconv1(h, u))), mu, log_var


def _convert(spec, **kwargs) -> tuple[UserConvVAE, MultiRateModel]:
    torch.manual_seed(0)
    user = UserConvVAE()
    mr = make_multirate(user, RANGE, exclude=paper_exclude(user, ["fc_mu", "fc_logvar"]), spec=spec,
                        decoder=["fc_dec", "deconv*"], **kwargs)
    return user, mr


PAPER_GATES = ModelConditioning(encoder_gate=GateFunction.SIGMOID, decoder_gate=GateFunction.SQRT, gate_scale=1.0)
FILM = ModelConditioning(Conditioning.FILM, film_hidden=4)


@pytest.mark.parametrize("spec", [PAPER_GATES, ModelConditioning(), FILM], ids=["paper", "default", "film"])
def test_converted_model_equals_hand_built_gated_model_at_every_beta(spec):
    user, mr = _convert(spec)
    assert mr.gated_layers == ("conv1", "conv2", "fc_dec", "deconv1")
    if spec.kind is Conditioning.GATE:
        assert mr.model.fc_dec.gate.function is spec.decoder_gate and mr.model.conv1.gate.function is spec.encoder_gate
        assert mr.model.fc_dec.role is Role.DECODER and mr.model.conv1.role is Role.ENCODER
    else:
        with torch.no_grad():  # FiLM starts at identity: make it β-dependent
            for p in mr.parameters():
                p.add_(0.3 * torch.randn_like(p))
    hand = HandBuilt(spec)
    hand.load_state_dict(mr.model.state_dict())  # same keys: layer.base.*, layer.gate.* / layer.film.*
    x = torch.rand(5, 1, 8, 8)
    betas = [0.01, 0.3, 1.0, 10.0, torch.logspace(-2, 1, 5), torch.logspace(-2, 1, 5).unsqueeze(1)]
    outputs = []
    for beta in betas:
        u = RANGE.standardise(torch.as_tensor(beta).reshape(-1, 1))
        with mr.beta(beta):
            got = mr(x)
        want = hand(x, u)
        for g, w in zip(got, want):
            assert torch.equal(g, w)
        outputs.append(got[0])
    assert (outputs[0] - outputs[3]).abs().max() > 1e-3  # β really changes the output


def test_original_weights_are_kept_and_the_user_module_is_not_mutated():
    torch.manual_seed(1)
    user = UserConvVAE()
    before = {k: v.clone() for k, v in user.state_dict().items()}
    names = [n for n, _ in user.named_modules()]
    mr = make_multirate(user, RANGE, exclude=["fc_mu", "fc_logvar", "deconv2"])
    optimiser = torch.optim.SGD(mr.parameters(), lr=0.1)
    with mr.beta(0.5):
        mr(torch.rand(2, 1, 8, 8))[0].sum().backward()
    optimiser.step()
    assert [n for n, _ in user.named_modules()] == names
    assert all(torch.equal(v, before[k]) for k, v in user.state_dict().items())
    assert not any(isinstance(m, ScopedLayer) for m in user.modules())
    assert mr.model.conv1.weight is mr.model.conv1.base.weight  # attribute reads reach the original layer
    assert not torch.equal(mr.model.conv1.base.weight, before["conv1.weight"])  # the copy trained


def test_inplace_converts_the_users_module_itself():
    torch.manual_seed(1)
    user = UserConvVAE()
    weight = user.conv1.weight
    mr = make_multirate(user, RANGE, exclude=(), inplace=True)
    assert mr.model is user and isinstance(user.conv1, ScopedLayer) and user.conv1.base.weight is weight
    assert len(mr.gated_layers) == 7


def test_a_gate_outside_the_beta_context_raises():
    _, mr = _convert(ModelConditioning())
    with pytest.raises(BetaNotSetError, match=r"layer 'conv1' is conditioned on β but ran outside a β context"):
        mr(torch.rand(2, 1, 8, 8))


def test_context_restores_state_after_exceptions_and_nesting():
    _, mr = _convert(ModelConditioning())
    assert mr.current_u is None
    with beta_context(mr, 0.1):
        outer = mr.current_u.clone()
        with pytest.raises(KeyError):
            with mr.beta(torch.full((3,), 5.0)):
                assert mr.current_u.shape == (3, 1)
                assert torch.allclose(mr.current_u, RANGE.standardise(torch.full((3, 1), 5.0)))
                raise KeyError("boom")
        assert torch.equal(mr.current_u, outer)
        with mr.beta(2.0):
            pass
        assert torch.equal(mr.current_u, outer)
    assert mr.current_u is None
    with pytest.raises(BetaNotSetError):
        mr(torch.rand(1, 1, 8, 8))


def test_beta_values_are_validated():
    _, mr = _convert(ModelConditioning())
    with pytest.raises(ValueError, match="β must be > 0"):
        with mr.beta(0.0):
            pass
    with pytest.raises(ValueError, match=r"shape \(B,\) or \(B, 1\), got shape \(2, 2\)"):
        with mr.beta(torch.ones(2, 2)):
            pass
    with pytest.raises(TypeError, match="β must be a float"):
        with mr.beta("0.5"):
            pass
    with pytest.raises(ValueError, match="expects u of shape"):  # per-example β for another batch size
        with mr.beta(torch.ones(3)):
            mr(torch.rand(2, 1, 8, 8))
    assert mr.current_u is None
    with pytest.raises(TypeError, match="make_multirate"):
        beta_context(nn.Linear(1, 1), 0.5)


def test_open_gates_start_as_the_original_network_at_every_beta():
    torch.manual_seed(2)
    user = UserConvVAE()
    mr = make_multirate(user, RANGE, exclude=["fc_mu", "fc_logvar", "deconv2"],
                        spec=ModelConditioning(gate_init=GateInit.OPEN))
    x = torch.rand(3, 1, 8, 8)
    for beta in (0.01, 1.0, 10.0):
        with mr.beta(beta):
            assert torch.allclose(mr(x)[0], user(x)[0], atol=1e-6, rtol=0)


def test_selection_by_name_glob_prefix_and_rule_and_its_errors():
    class Nested(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 8))
            self.head = nn.Linear(8, 2)
            self.decoder = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 4))

        def forward(self, x):
            return self.decoder(self.head(self.encoder(x)))

    model = Nested()
    assert gateable_layers(model) == ["encoder.0", "encoder.2", "head", "decoder.0", "decoder.2"]
    assert make_multirate(model, exclude="encoder").gated_layers == ("head", "decoder.0", "decoder.2")
    assert make_multirate(model, exclude=["head", "*.2"]).gated_layers == ("encoder.0", "decoder.0")
    rule = lambda name, m: m.out_features < 8  # noqa: E731
    assert make_multirate(model, exclude=rule).gated_layers == ("encoder.0", "encoder.2", "decoder.0")
    assert make_multirate(model, exclude=(), spec=ModelConditioning(Conditioning.NONE)).gated_layers == ()
    with pytest.raises(ValueError, match=r"exclude entry 'encodr' matches no .*'decoder.0'"):
        make_multirate(model, exclude=["encodr"])
    with pytest.raises(TypeError, match="names, globs or rules"):
        make_multirate(model, exclude=[3])
    with pytest.raises(ValueError, match="pass decoder=... naming the decoder's layers"):
        make_multirate(model, exclude=(), spec=PAPER_GATES)
    with pytest.raises(TypeError, match="spec must be a ModelConditioning, got 'gate'"):
        make_multirate(model, exclude=(), spec="gate")
    with pytest.raises(ValueError, match=r"decoder entry 'decodr' matches no"):
        make_multirate(model, exclude=(), spec=PAPER_GATES, decoder="decodr")
    with pytest.raises(TypeError, match="already contains mrvae conditioned layers"):
        make_multirate(MLPVAE((4,), 2, (8,)), exclude=())


def test_last_layer_and_paper_exclude():
    class OutOfOrder(nn.Module):  # the output layer is registered first
        def __init__(self):
            super().__init__()
            self.out = nn.Linear(8, 4)
            self.mu = nn.Linear(8, 2)
            self.hidden = nn.Linear(4, 8)
            self.up = nn.Linear(2, 8)

        def forward(self, x):
            return self.out(torch.relu(self.up(self.mu(torch.relu(self.hidden(x))))))

    model = OutOfOrder().train()
    assert last_layer(model) == "up"  # registration order is all it has without an input
    assert execution_order(model, (torch.rand(2, 4),)) == ["hidden", "mu", "up", "out"]
    assert model.training  # restored
    assert paper_exclude(model, ["mu"], example_args=(torch.rand(2, 4),)) == ["mu", "out"]
    assert paper_exclude(model, ["mu"], output_layer="out") == ["mu", "out"]
    with pytest.raises(ValueError, match=r"latent head 'fc21' is not a Linear/Conv/ConvTranspose layer"):
        paper_exclude(model, ["fc21"])
    with pytest.raises(TypeError, match="list of layer names"):
        paper_exclude(model, "mu")


def test_gate_goes_behind_a_following_batchnorm():
    class WithNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 3, 3, padding=1)
            self.bn = nn.BatchNorm2d(3)
            self.out = nn.Conv2d(3, 1, 1)

        def forward(self, x):
            return self.out(torch.relu(self.bn(self.conv(x))))

    torch.manual_seed(3)
    model = WithNorm()
    mr = make_multirate(model, RANGE, exclude=["out"])
    assert mr.gated_layers == ("bn",)
    assert make_multirate(model, RANGE, exclude=["out"], gate_batchnorm=False).gated_layers == ("conv",)
    x = torch.randn(4, 1, 5, 5)
    with mr.beta(0.2):  # training mode: batch statistics; the gate must act after normalisation
        got = mr(x)
        gate = mr.model.bn.gate(mr.current_u).reshape(1, 3, 1, 1)
    reference = WithNorm()
    reference.load_state_dict(model.state_dict())
    want = reference.out(torch.relu(gate * reference.bn(reference.conv(x))))
    assert torch.allclose(got, want, atol=1e-6)


def test_a_layer_shared_under_two_names_gets_one_gate():
    class Shared(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = self.a
            self.c = nn.Linear(3, 1)

        def forward(self, x):
            return self.c(self.b(torch.relu(self.a(x))))

    mr = make_multirate(Shared(), exclude=["c"])
    assert mr.model.a is mr.model.b and isinstance(mr.model.a, ScopedLayer)
    assert sum(isinstance(m, ScopedLayer) for m in mr.modules()) == 1


def _loss_terms(output, x):
    logits, mu, log_var = output
    return bernoulli_distortion(logits, x), gaussian_rate(mu, log_var)


def test_converted_vae_objective_is_d_plus_beta_r_and_trains_the_gates():
    _, mr = _convert(ModelConditioning())
    vae = ConvertedVAE(mr, _loss_terms)
    x = torch.bernoulli(torch.full((4, 1, 8, 8), 0.4))
    beta = RANGE.sample(4, torch.Generator().manual_seed(0))
    loss, out = vae.objective(x, beta, RANGE.standardise(beta))
    with mr.beta(beta):
        logits, mu, log_var = mr(x)
    want = bernoulli_distortion(logits, x) + beta[:, 0] * gaussian_rate(mu, log_var)
    assert loss.shape == (4,) and torch.allclose(loss, want)
    assert torch.allclose(out.rate, gaussian_rate(mu, log_var)) and out.output[0].shape == x.shape
    loss.mean().backward()
    assert mr.model.conv1.gate.weight.grad.abs().sum() > 0
    assert mr.current_u is None
    warm = 0.25 * beta  # KL warm-up: the loss sees a scaled β, the gates the sampled one
    loss_w, _ = vae.objective(x, warm, RANGE.standardise(beta))
    assert torch.allclose(loss_w, bernoulli_distortion(logits, x) + warm[:, 0] * gaussian_rate(mu, log_var))
    with pytest.raises(ValueError, match=r"u must be a floating tensor of shape \(B, 1\) or \(1, 1\), got \(4,\)"):
        vae.objective(x, beta, RANGE.standardise(beta)[:, 0])
    bad = ConvertedVAE(mr, lambda output, x: (output[0].sum(), output[1].sum()))
    with pytest.raises(ValueError, match=r"shape \(4,\) in nats per example; distortion has shape \(\)"):
        bad.objective(x, beta)
    with pytest.raises(TypeError, match="result of make_multirate"):
        ConvertedVAE(UserConvVAE(), _loss_terms)


def test_tutorial_example_trains_with_tiny_settings():
    namespace = runpy.run_path(str(EXAMPLE), run_name="example")
    first, last = namespace["main"](["--steps", "30", "--batch", "32", "--examples", "64", "--hidden", "32"])
    assert last < first
