"""Mixed precision: bf16-mixed trains on the CPU, 16-mixed on CUDA (skipped without it), weights stay fp32,
device and precision choices are checked."""

import json

import pytest
import torch

from mrvae.beta import BetaRange
from mrvae.training.checkpoint import load_checkpoint
from mrvae.config import ModelConfig, Precision, TrainConfig
from mrvae.data import load_data
from mrvae.models.registry import build_model
from mrvae.training.runtime import autocast, check_precision, grad_scaler, resolve_device
from mrvae.training.loop import FitFiles, fit

TINY = ModelConfig(latent_dim=4, hidden=(32,))


def model_for(data, seed=0):
    torch.manual_seed(seed)
    return build_model(TINY, data.info, "gate")


def losses(path):
    return [json.loads(line)["loss"] for line in path.read_text().splitlines()]


def test_bf16_mixed_trains_on_cpu_close_to_fp32_with_fp32_weights(tmp_path):
    data = load_data("digits")
    base = dict(steps=60, batch_size=32, warmup_steps=5, log_every=1, checkpoint_every=60, device="cpu")
    fit(model_for(data), data, TrainConfig(**base), FitFiles(metrics=tmp_path / "fp32.jsonl"))
    fit(model_for(data), data, TrainConfig(precision="bf16-mixed", **base),
        FitFiles(tmp_path / "bf16.pt", tmp_path / "bf16.jsonl"))
    fp32, bf16 = losses(tmp_path / "fp32.jsonl"), losses(tmp_path / "bf16.jsonl")
    assert sum(bf16[-10:]) / 10 < 0.9 * bf16[0]  # it learns
    # Same initial weights, batch and noise: the first loss differs only by bf16 rounding (but does differ).
    assert bf16[0] != fp32[0] and bf16[0] == pytest.approx(fp32[0], rel=1e-2)
    assert sum(bf16[-10:]) == pytest.approx(sum(fp32[-10:]), rel=0.05)
    state = load_checkpoint(tmp_path / "bf16.pt")
    assert all(t.dtype == torch.float32 for t in state["model"].values())  # master weights stay fp32
    assert state["train_config"]["precision"] == "bf16-mixed"


def test_autocast_runs_matmuls_in_the_low_precision_only_inside():
    layer = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with autocast(torch.device("cpu"), Precision.BF16_MIXED):
        assert layer(x).dtype == torch.bfloat16
    with autocast(torch.device("cpu"), "32"):
        assert layer(x).dtype == torch.float32
    assert layer(x).dtype == torch.float32
    assert grad_scaler(torch.device("cpu"), "16-mixed").is_enabled()
    assert not grad_scaler(torch.device("cpu"), "bf16-mixed").is_enabled()
    assert check_precision(torch.device("cpu"), "bf16-mixed") is Precision.BF16_MIXED


def test_rate_and_distortion_are_reduced_in_fp32_under_autocast():
    data = load_data("digits")
    model = model_for(data)
    x = data.test.data[:8]
    u = BetaRange().standardise(torch.full((8, 1), 0.5))
    with autocast(torch.device("cpu"), Precision.BF16_MIXED):
        out = model(x, u, torch.Generator().manual_seed(0))
    assert out.rate.dtype == torch.float32 and out.distortion.dtype == torch.float32


def test_device_choice():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else None
    if expected:
        assert resolve_device("auto").type == "cuda"
    elif not (torch.backends.mps.is_available()):
        assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'gpu0'; use auto, cpu, cuda, cuda:N or mps"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="'cuda:1' was asked for but CUDA is not available"):
            resolve_device("cuda:1")
    with pytest.raises(ValueError, match="'half' is not a valid Precision; choose one of: 32, bf16-mixed, 16-mixed"):
        TrainConfig(precision="half")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="16-mixed with a gradient scaler needs CUDA")
def test_fp16_mixed_trains_on_cuda(tmp_path):
    data = load_data("digits")
    config = TrainConfig(steps=80, batch_size=64, warmup_steps=5, log_every=1, device="cuda",
                         precision="16-mixed")
    result = fit(model_for(data), data, config, FitFiles(tmp_path / "c.pt", tmp_path / "m.jsonl"))
    values = losses(tmp_path / "m.jsonl")
    assert all(map(lambda v: v == v and abs(v) != float("inf"), values))
    assert sum(values[-10:]) / 10 < 0.9 * values[0]
    assert next(result.model.parameters()).dtype == torch.float32
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["scaler"]["scale"] > 0 and state["train_config"]["precision"] == "16-mixed"
