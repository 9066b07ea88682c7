"""Tests for mrvae.convert.fold and .export: gates folded at one β, safetensors + JSON export, pickle-free reload."""

from __future__ import annotations

import json
import pickle
import struct

import pytest
import torch
from torch import nn

from mrvae.beta import BetaRange
from mrvae.convert import (CONFIG_FILE, WEIGHTS_FILE, ConvertedVAE, export_checkpoint, fold, fold_affine_into,
                           load_exported, make_multirate, read_export_config)
from mrvae.gates import FilmConditioner, GateFunction, UnitGate
from mrvae.layers import Conditioning, ConditionedLayer, ModelConditioning
from mrvae.models import LinearVAE, MLPVAE

RANGE = BetaRange(0.01, 10.0)
TOL = 1e-5
PAPER_GATES = ModelConditioning(encoder_gate=GateFunction.SIGMOID, decoder_gate=GateFunction.SQRT, gate_scale=1.0)
FILM = ModelConditioning(kind=Conditioning.FILM, film_hidden=4)


class UserNet(nn.Module):
    """A user's VAE-like net with Linear, Conv2d, grouped ConvTranspose2d and optional BatchNorms."""

    def __init__(self, latent: int = 3, norm: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, stride=2, padding=1)               # 6 -> 3
        self.conv_bn = nn.BatchNorm2d(4) if norm else nn.Identity()
        self.fc = nn.Linear(36, 10)
        self.fc_bn = nn.BatchNorm1d(10) if norm else nn.Identity()
        self.mu = nn.Linear(10, latent)
        self.up = nn.Linear(latent, 36)
        self.deconv = nn.ConvTranspose2d(4, 6, 3, stride=1, padding=1, groups=2)  # 3 -> 3
        self.out = nn.ConvTranspose2d(6, 1, 2, stride=2)                 # 3 -> 6

    def forward(self, x):
        h = torch.relu(self.conv_bn(self.conv(x))).flatten(1)
        mu = self.mu(torch.relu(self.fc_bn(self.fc(h))))
        h = torch.relu(self.up(mu)).reshape(-1, 4, 3, 3)
        return self.out(torch.relu(self.deconv(h))), mu


def _perturb(model: nn.Module, scale: float = 0.3) -> None:
    """Move every parameter and BatchNorm statistic off its initial value (FiLM starts at identity)."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(scale * torch.randn_like(p))
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)


def _converted(spec, norm: bool = False):
    torch.manual_seed(0)
    user = UserNet(norm=norm)
    mr = make_multirate(user, RANGE, exclude=["mu", "out"], spec=spec, decoder=["up", "deconv"])
    _perturb(mr)
    return mr.eval()


def _max_diff(a, b) -> float:
    return max(float((x - y).detach().abs().max()) for x, y in zip(a, b))


def _no_mrvae_modules(model: nn.Module) -> bool:
    return all(not type(m).__module__.startswith("mrvae") for m in model.modules())


@pytest.mark.parametrize("spec", [PAPER_GATES, FILM], ids=["gate", "film"])
def test_folded_converted_model_equals_the_mr_vae_for_linear_conv_and_transposed_conv(spec):
    mr = _converted(spec)
    x = torch.rand(5, 1, 6, 6)
    for beta in (0.01, 0.5, 10.0):
        folded = fold(mr, beta)
        assert type(folded) is UserNet and _no_mrvae_modules(folded)
        with mr.beta(beta):
            want = mr(x)
        assert _max_diff(folded(x), want) <= TOL
    assert _max_diff(fold(mr, 0.01)(x), fold(mr, 10.0)(x)) > 1e-3  # a different β gives another net
    assert len(mr.gated_layers) == 4  # the MR-VAE itself keeps its gates


@pytest.mark.parametrize("spec", [PAPER_GATES, FILM], ids=["gate", "film"])
def test_folding_through_eval_mode_batchnorm(spec):
    mr = _converted(spec, norm=True)
    assert mr.gated_layers == ("conv_bn", "fc_bn", "up", "deconv")  # gates sit behind the BatchNorms
    x = torch.rand(5, 1, 6, 6)
    folded = fold(mr, 0.3)
    assert _no_mrvae_modules(folded)
    with mr.beta(0.3):
        want = mr(x)
        u = mr.current_u
    assert _max_diff(folded(x), want) <= TOL
    assert torch.equal(folded.conv_bn.running_var, mr.model.conv_bn.base.running_var)
    if spec is PAPER_GATES:
        gate = mr.model.conv_bn.gate(u)[0]
        assert torch.allclose(folded.conv_bn.weight, gate * mr.model.conv_bn.base.weight)


def test_folded_library_models_equal_the_mr_vae_and_load_into_the_plain_architecture():
    torch.manual_seed(1)
    x = torch.bernoulli(torch.full((4, 1, 4, 4), 0.3))
    for conditioning in (PAPER_GATES, FILM):
        model = MLPVAE((1, 4, 4), 3, (8, 8), conditioning=conditioning).eval()
        _perturb(model)
        for beta in (0.02, 1.0, 7.0):
            u = RANGE.standardise(torch.full((4, 1), beta))
            folded = fold(model, beta)
            want, got = model(x, u, sample=False), folded(x, None, sample=False)
            assert _max_diff((got.output, got.mean, got.log_var), (want.output, want.mean, want.log_var)) <= TOL
        assert not any(isinstance(m, (UnitGate, FilmConditioner)) for m in folded.modules())
        assert all(m.conditioning is Conditioning.NONE for m in folded.modules() if isinstance(m, ConditionedLayer))
        plain = MLPVAE((1, 4, 4), 3, (8, 8), conditioning=ModelConditioning(kind=Conditioning.NONE))
        plain.load_state_dict(folded.state_dict())  # strict: the keys (with `.base`) are the plain model's
        assert torch.equal(plain(x, None, sample=False).output, got.output)


def test_folded_lstm_folds_its_conditioned_embeddings_and_projections():
    from mrvae.models import LSTMVAE

    torch.manual_seed(4)
    model = LSTMVAE(12, 3, 6, 8, beta_range=RANGE, conditioning=PAPER_GATES).eval()
    _perturb(model)
    tokens = torch.tensor([[2, 5, 7, 3, 0], [2, 9, 4, 11, 3]])
    z, u = torch.randn(2, 3), RANGE.u_of(0.3)
    folded = fold(model, 0.3)
    assert not any(isinstance(m, UnitGate) for m in folded.modules())
    assert _max_diff(folded.encode(tokens, None), model.encode(tokens, u)) <= TOL
    assert _max_diff((folded.decode(z, None, tokens),), (model.decode(z, u, tokens),)) <= TOL
    plain = LSTMVAE(12, 3, 6, 8, conditioning=ModelConditioning(kind=Conditioning.NONE))
    plain.load_state_dict(folded.state_dict())
    with pytest.raises(ValueError, match="cannot fold the FiLM shift into encoder_embedding.base"):
        fold(_perturbed(LSTMVAE(12, 3, 6, 8, beta_range=RANGE, conditioning=FILM)), 0.3)


def _perturbed(model: nn.Module) -> nn.Module:
    _perturb(model)
    return model


def test_folded_linear_vae_includes_its_beta_dependent_variance():
    torch.manual_seed(2)
    model = LinearVAE(5, 3, conditioning=PAPER_GATES)
    _perturb(model)
    x = torch.randn(6, 5)
    u = RANGE.standardise(torch.full((6, 1), 3.0))
    folded = fold(model, 3.0)
    assert _max_diff(folded.encode(x, None), model.encode(x, u)) <= TOL
    assert _max_diff((folded.decode(x[:, :3], None),), (model.decode(x[:, :3], u),)) <= TOL
    assert float(model.variance_weight.detach().abs().sum()) > 0  # the source model is untouched


def test_folding_a_batchnorm_inside_a_library_layer_base():
    torch.manual_seed(3)
    layer = ConditionedLayer(nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4)), 4, ModelConditioning())
    _perturb(layer)
    layer.eval()
    x, u = torch.randn(3, 2, 5, 5), RANGE.standardise(torch.full((1, 1), 0.7))
    layer.beta_range = RANGE  # any module that carries its β range can be folded
    folded = fold(layer, 0.7)
    assert folded.gate is None and (folded(x) - layer(x, u)).abs().max() <= TOL


def test_fold_errors():
    with pytest.raises(ValueError, match="FiLM shift .* without a bias cannot hold it"):
        fold_affine_into(nn.Linear(2, 3, bias=False), torch.ones(3), torch.ones(3), "fc")
    with pytest.raises(ValueError, match="affine=False"):
        fold_affine_into(nn.BatchNorm1d(3, affine=False), torch.ones(3), None, "bn")
    with pytest.raises(TypeError, match="cannot fold a gate into fc\\[-1\\] of type ReLU"):
        fold_affine_into(nn.Sequential(nn.Linear(2, 3), nn.ReLU()), torch.ones(3), None, "fc")
    library = MLPVAE((4,), 2, (8,))
    with pytest.raises(ValueError, match="a Linear carries no beta_range"):
        fold(nn.Linear(2, 2), 0.5)
    with pytest.raises(ValueError, match=r"β = 20.0 lies outside the training range \[0.01, 10.0\]"):
        fold(library, 20.0)
    with pytest.raises(ValueError, match="finite number > 0, got -1.0"):
        fold(library, -1.0)


def _user_loss(output, x):
    return ((output[0] - x) ** 2).flatten(1).sum(1), 0.5 * output[1].square().sum(1)


def test_export_round_trip_of_a_converted_model_is_exact(tmp_path):
    mr = _converted(PAPER_GATES)
    vae = ConvertedVAE(mr, _user_loss)
    paths = export_checkpoint(vae, 0.5, tmp_path, {"latent": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE])
    meta = read_export_config(tmp_path)
    assert meta["source"] == "converted" and meta["beta"] == 0.5 and meta["config"] == {"latent": 3}
    assert meta["model_class"].endswith("UserNet") and meta["beta_range"] == {"low": 0.01, "high": 10.0}
    assert meta["u"] == pytest.approx(float(RANGE.standardise(0.5)))
    loaded = load_exported(paths.weights.parent, lambda config: UserNet(**config))
    folded = fold(mr, 0.5)
    assert not loaded.training and _no_mrvae_modules(loaded)
    reference = folded.state_dict()
    assert loaded.state_dict().keys() == reference.keys()
    assert all(torch.equal(v, reference[k]) for k, v in loaded.state_dict().items())
    x = torch.rand(3, 1, 6, 6)
    with mr.beta(0.5):
        assert _max_diff(loaded(x), mr(x)) <= TOL


def test_export_round_trip_of_a_library_model_is_exact(tmp_path):
    torch.manual_seed(4)
    config = {"data_shape": [1, 4, 4], "latent_dim": 3, "hidden": [8]}
    model = MLPVAE(**config, conditioning=PAPER_GATES)
    _perturb(model)
    export_checkpoint(model, 2.0, tmp_path / "export", config)
    assert read_export_config(tmp_path / "export")["source"] == "library"
    loaded = load_exported(tmp_path / "export",
                           lambda c: MLPVAE(**c, conditioning=ModelConditioning(kind=Conditioning.NONE)))
    reference = fold(model, 2.0).state_dict()
    assert all(torch.equal(v, reference[k]) for k, v in loaded.state_dict().items())
    x = torch.rand(2, 1, 4, 4)
    want = model(x, RANGE.standardise(torch.full((2, 1), 2.0)), sample=False).output
    assert (loaded(x, None, sample=False).output - want).abs().max() <= TOL
    with pytest.raises(ValueError, match=r"plain, ungated model\): missing \[.*gate"):
        load_exported(tmp_path / "export", lambda c: MLPVAE(**c, conditioning=PAPER_GATES))


def test_loading_reads_only_safetensors_and_json_never_pickle(tmp_path, monkeypatch):
    mr = _converted(PAPER_GATES)
    export_checkpoint(mr, 0.1, tmp_path, {})
    raw = (tmp_path / WEIGHTS_FILE).read_bytes()
    header_size = struct.unpack("<Q", raw[:8])[0]
    assert json.loads(raw[8:8 + header_size])["__metadata__"] == {"format": "pt"}  # safetensors, not a zip

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle was used")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    loaded = load_exported(tmp_path, lambda config: UserNet())
    assert torch.equal(loaded.conv.weight, fold(mr, 0.1).conv.weight)


def test_export_and_load_errors(tmp_path):
    mr = _converted(PAPER_GATES)
    with pytest.raises(TypeError, match="JSON-serialisable"):
        export_checkpoint(mr, 0.5, tmp_path, {"hidden": {8, 16}})
    with pytest.raises(TypeError, match="config must be a dict"):
        export_checkpoint(mr, 0.5, tmp_path, [1])
    with pytest.raises(ValueError, match="no export at .*config.json is missing"):
        load_exported(tmp_path / "nothing", lambda c: UserNet())
    export_checkpoint(mr, 0.5, tmp_path, {})
    with pytest.raises(ValueError, match=r"do not fit the built UserNet .*missing \['conv.base.bias', .*unexpected \['conv.bias'"):
        load_exported(tmp_path, lambda c: make_multirate(UserNet(), exclude=[]).model)
    with pytest.raises(TypeError, match="build must return an nn.Module"):
        load_exported(tmp_path, lambda c: "model")
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**meta, "format": 99}))
    with pytest.raises(ValueError, match="export format 99; this mrvae reads format 1"):
        load_exported(tmp_path, lambda c: UserNet())


def test_per_unit_fold_of_a_grouped_transposed_convolution_scales_output_channels():
    torch.manual_seed(5)
    layer = nn.ConvTranspose2d(4, 6, 3, groups=2)
    scale, shift = torch.rand(6) + 0.5, torch.randn(6)
    x = torch.randn(2, 4, 3, 3)
    want = layer(x) * scale.reshape(1, 6, 1, 1) + shift.reshape(1, 6, 1, 1)
    fold_affine_into(layer, scale, shift)
    assert (layer(x) - want).abs().max() <= TOL
