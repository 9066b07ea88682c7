"""CNN and ResNet VAEs: shapes and parameter counts against docs/architectures.md, gate placement, training."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from mrvae.beta import BetaRange
from mrvae.gates import GateFunction
from mrvae.layers import Conditioning, ConditionedLayer, ModelConditioning
from mrvae.models.base import VAE
from mrvae.models.conv import ConvVAE
from mrvae.models.resnet import ResidualBlock, ResNetVAE
from mrvae.objectives import Likelihood, bernoulli_distortion, gaussian_distortion

DOC = Path(__file__).resolve().parents[1] / "docs" / "architectures.md"
MODELS = {"ConvVAE": ConvVAE, "ResNetVAE": ResNetVAE}
SHAPES = [(1, 28, 28), (3, 32, 32), (3, 64, 64)]
SMALL = 1 / 16


def doc_rows(marker: str) -> list[list[str]]:
    """The body rows of the markdown table between ``<!-- marker:start -->`` and ``<!-- marker:end -->``."""
    text = DOC.read_text(encoding="utf-8")
    body = text.split(f"<!-- {marker}:start -->")[1].split(f"<!-- {marker}:end -->")[0]
    lines = [line.strip() for line in body.strip().splitlines()][2:]  # skip header and rule
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def feature_maps(model: VAE) -> str:
    """One forward pass at batch 1 -> "C×H×W → ..." over the input, the encoder's conditioned layers and
    residual blocks, the latent, the projection, the decoder's conditioned layers and blocks, the output."""
    shapes = ["×".join(map(str, model.input_shape))]
    traced = ([m for m in model.encoder if isinstance(m, (ConditionedLayer, ResidualBlock))]
              + [model.mean_head, model.projection]
              + [m for m in model.decoder if isinstance(m, (ConditionedLayer, ResidualBlock))] + [model.output_layer])
    hooks = [m.register_forward_hook(lambda _m, _i, o: shapes.append("×".join(map(str, o.shape[1:]))))
             for m in traced]
    with torch.no_grad():
        u = torch.zeros(1, 1)
        mean, _ = model.encode(torch.zeros((1,) + model.input_shape), u)
        out = model.decode(mean, u)
    for hook in hooks:
        hook.remove()
    assert tuple(out.shape[1:]) == model.input_shape
    return " → ".join(shapes)


def test_docs_table_matches_the_code():
    rows = doc_rows("architecture-table")
    assert len(rows) == 6
    seen = set()
    for name, shape_s, latent, likelihood, maps, n_none, n_gate, overhead, n_film, film_overhead in rows:
        shape = tuple(int(s) for s in shape_s.split("×"))
        seen.add((name, shape))
        with torch.device("meta"):
            models = {kind: MODELS[name](shape, conditioning=ModelConditioning(kind=kind)) for kind in Conditioning}
        plain, gated, film = (models[k] for k in Conditioning)
        assert plain.latent_dim == int(latent)
        assert plain.likelihood.value == likelihood
        assert feature_maps(gated.to_empty(device="cpu")) == maps  # uninitialised weights: shapes only
        counts = [count(m) for m in (plain, gated, film)]
        assert counts == [int(s.replace(",", "")) for s in (n_none, n_gate, n_film)]
        assert overhead == f"+{100 * (counts[1] - counts[0]) / counts[0]:.3f} %"
        assert film_overhead == f"+{100 * (counts[2] - counts[0]) / counts[0]:.2f} %"
        # MR-VAE overhead stays within the range of the paper's Table 1 (+0.02 % .. +2.04 %), give or take.
        assert 0.01 < 100 * (counts[1] - counts[0]) / counts[0] < 2.04
    assert seen == {(name, shape) for name in MODELS for shape in SHAPES}


@pytest.mark.parametrize("name", MODELS)
def test_gates_sit_on_every_hidden_conv_and_nowhere_else(name):
    spec = ModelConditioning(kind="gate", encoder_gate="sigmoid", decoder_gate="sqrt")
    for shape in SHAPES:
        model = MODELS[name](shape, width=SMALL, conditioning=spec)
        conditioned = [m for m in model.modules() if isinstance(m, ConditionedLayer)]
        wrapped = {id(m.base) for m in conditioned}
        convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
        assert [m for m in convs if id(m) not in wrapped] == [model.output_layer]
        assert not any(isinstance(m, ConditionedLayer) for m in model.projection.modules())
        assert isinstance(model.mean_head, nn.Linear) and isinstance(model.log_var_head, nn.Linear)
        assert {m.gate.function for m in model.encoder.modules() if isinstance(m, ConditionedLayer)} == {
            GateFunction.SIGMOID}
        assert {m.gate.function for m in model.decoder.modules() if isinstance(m, ConditionedLayer)} == {
            GateFunction.SQRT}
        channels = sum(m.base.out_channels for m in conditioned)
        gate_params = sum(p.numel() for n, p in model.named_parameters() if ".gate." in n)
        assert gate_params == 2 * channels
        plain = MODELS[name](shape, width=SMALL, conditioning=ModelConditioning(kind="none"))
        assert count(model) - count(plain) == 2 * channels
        if name == "ResNetVAE":  # both convs of the 4 residual blocks are gated
            blocks = [m for m in model.modules() if isinstance(m, ResidualBlock)]
            assert len(blocks) == 4 and all(b.inner.gate is not None and b.outer.gate is not None for b in blocks)


@pytest.mark.parametrize("name", MODELS)
def test_none_has_no_gates_and_film_starts_as_none(name):
    torch.manual_seed(0)
    shape = (3, 32, 32)
    plain = MODELS[name](shape, width=SMALL, latent_dim=8, conditioning=ModelConditioning(kind="none"))
    film = MODELS[name](shape, width=SMALL, latent_dim=8, conditioning=ModelConditioning(kind="film"))
    assert not any(".gate." in n or ".film." in n for n, _ in plain.named_parameters())
    shared = {k: v for k, v in film.state_dict().items() if k in plain.state_dict()}
    assert set(shared) == set(plain.state_dict())
    plain.load_state_dict(shared)
    x = torch.rand(3, *shape)
    u = torch.tensor([[-1.5], [0.0], [1.7]])
    mean_p, log_var_p = plain.encode(x, None)
    mean_f, log_var_f = film.encode(x, u)
    torch.testing.assert_close(mean_f, mean_p)
    torch.testing.assert_close(log_var_f, log_var_p)
    torch.testing.assert_close(film.decode(mean_p, u), plain.decode(mean_p, None))


@pytest.mark.parametrize("name", MODELS)
def test_gated_output_depends_on_beta_and_plain_does_not(name):
    torch.manual_seed(1)
    x = torch.rand(2, 1, 28, 28)
    low, high = torch.full((2, 1), -1.7), torch.full((2, 1), 1.7)
    gated = MODELS[name](width=SMALL)
    plain = MODELS[name](width=SMALL, conditioning=ModelConditioning(kind="none"))
    assert not torch.allclose(gated.encode(x, low)[0], gated.encode(x, high)[0])
    z = torch.randn(2, gated.latent_dim)
    assert not torch.allclose(gated.decode(z, low), gated.decode(z, high))
    torch.testing.assert_close(plain.encode(x, low)[0], plain.encode(x, high)[0])


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("shape", SHAPES)
def test_forward_shapes_and_likelihoods(name, shape):
    torch.manual_seed(2)
    model = MODELS[name](shape, width=SMALL, latent_dim=6, sigma2=0.5)
    x = torch.rand(2, *shape).round() if shape[1] == 28 else torch.rand(2, *shape)
    out = model(x, torch.zeros(2, 1), torch.Generator().manual_seed(0))
    assert out.output.shape == x.shape and out.mean.shape == (2, 6) and out.z.shape == (2, 6)
    if shape[1] == 28:
        assert model.likelihood is Likelihood.BERNOULLI
        torch.testing.assert_close(out.distortion, bernoulli_distortion(out.output, x))
    else:
        assert model.likelihood is Likelihood.GAUSSIAN
        manual = ((x - out.output) ** 2).flatten(1).sum(1) / (2 * 0.5) + 0.5 * x[0].numel() * torch.log(
            torch.tensor(2 * torch.pi * 0.5))
        torch.testing.assert_close(out.distortion, manual)
        torch.testing.assert_close(out.distortion, gaussian_distortion(out.output, x, 0.5))


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("kind", ["gate", "film", "none"])
def test_adam_steps_reduce_the_loss(name, kind):
    torch.manual_seed(3)
    model = MODELS[name]((1, 28, 28), width=SMALL, latent_dim=4, conditioning=ModelConditioning(kind=kind))
    x = (torch.rand(8, 1, 28, 28) > 0.7).float()
    beta_range = BetaRange()
    beta = beta_range.sample(8, torch.Generator().manual_seed(0))
    u = beta_range.standardise(beta)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss() -> torch.Tensor:
        return model.objective(x, beta, u, torch.Generator().manual_seed(1))[0].mean()

    first = loss().item()
    for _ in range(15):
        optimiser.zero_grad()
        loss().backward()
        optimiser.step()
    assert loss().item() < 0.95 * first


def test_width_scales_channels_only():
    half = ConvVAE((3, 64, 64), width=0.5)
    assert [m.base.out_channels for m in half.encoder if isinstance(m, ConditionedLayer)] == [64, 128, 256, 512]
    assert half.mean_head.in_features == 512 * 4 * 4
    tiny = ResNetVAE((1, 28, 28), width=0.01)  # every count rounds up to at least 1 channel
    assert all(m.base.out_channels == 1 for m in tiny.encoder if isinstance(m, ConditionedLayer))
    assert tiny(torch.rand(1, 1, 28, 28), torch.zeros(1, 1)).output.shape == (1, 1, 28, 28)


@pytest.mark.parametrize("name", MODELS)
def test_errors(name):
    cls = MODELS[name]
    with pytest.raises(ValueError, match=r"input_shape must be \(C, S, S\).*got \(1, 28, 27\)"):
        cls((1, 28, 27))
    with pytest.raises(ValueError, match=r"S in \(28, 32, 64\), got \(3, 48, 48\)"):
        cls((3, 48, 48))
    with pytest.raises(ValueError, match="width must be a finite number > 0, got 0"):
        cls(width=0)
    with pytest.raises(ValueError, match="latent_dim must be >= 1, got 0"):
        cls(latent_dim=0, width=SMALL)
    model = cls(width=SMALL)
    with pytest.raises(ValueError, match=r"expects input of shape \(B, 1, 28, 28\), got \(2, 3, 32, 32\)"):
        model.encode(torch.zeros(2, 3, 32, 32), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="conditioned on β but got u=None"):
        model.encode(torch.zeros(2, 1, 28, 28), None)
