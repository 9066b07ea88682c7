"""``--train.compile``: the training forward under torch.compile gives the losses of the eager step (issue 17)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from mrvae.config import ModelConfig, TrainConfig
from mrvae.data import load_data
from mrvae.models import build_model
from mrvae.training.loop import FitFiles, fit

pytestmark = pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                                reason="TorchInductor needs a C++ compiler on the CPU")


def _losses(tmp_path, name: str, compile: bool) -> tuple[list[float], dict[str, torch.Tensor]]:
    data = load_data("digits")
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden=(32, 32), latent_dim=4), data.info, "gate")
    config = TrainConfig(steps=30, batch_size=32, warmup_steps=5, log_every=10, checkpoint_every=1000,
                         compile=compile)
    fit(model, data, config, FitFiles(tmp_path / f"{name}.pt", tmp_path / f"{name}.jsonl", "mrvae"))
    lines = [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
    return [line["loss"] for line in lines if "loss" in line], model.state_dict()


def test_compiled_training_matches_eager(tmp_path):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    eager, eager_state = _losses(tmp_path, "eager", compile=False)
    assert counters["frames"]["ok"] == 0
    compiled, compiled_state = _losses(tmp_path, "compiled", compile=True)
    # one graph for the whole forward: the noise is drawn outside it (models.base.NoiseSource), no graph break
    assert counters["stats"]["unique_graphs"] == 1 and not counters["graph_break"]
    assert len(eager) == len(compiled) == 3
    # the same noise (drawn from the same generator in the same shapes); fused kernels round differently
    assert compiled[0] == eager[0] or compiled[0] == pytest.approx(eager[0], rel=1e-6)
    assert compiled == pytest.approx(eager, rel=1e-5)
    for key, value in eager_state.items():
        torch.testing.assert_close(compiled_state[key], value, rtol=1e-3, atol=1e-4, msg=key)


def test_compile_setting_is_checked():
    with pytest.raises(ValueError, match="compile must be true or false, got 'yes'"):
        TrainConfig(compile="yes")


def test_noise_source_replays_the_generator_draws_of_an_eager_step():
    from mrvae.models.base import NoiseSource, VAE

    mean, log_var = torch.zeros(4, 3), torch.zeros(4, 3)
    recording = NoiseSource(torch.Generator().manual_seed(7))
    first = [VAE.reparameterise(mean, log_var, recording), VAE.reparameterise(mean[:2], log_var[:2], recording)]
    assert recording.shapes == [((4, 3), mean.device, mean.dtype), ((2, 3), mean.device, mean.dtype)]
    replay = NoiseSource.drawn(torch.Generator().manual_seed(7), recording.shapes)
    again = [VAE.reparameterise(mean, log_var, replay), VAE.reparameterise(mean[:2], log_var[:2], replay)]
    for a, b in zip(first, again):
        assert torch.equal(a, b)  # the very values a generator-drawing step gets
    with pytest.raises(RuntimeError, match=r"pre-drawn noise of shape \(4, 3\) where the model asks for \(5, 3\)"):
        VAE.reparameterise(torch.zeros(5, 3), torch.zeros(5, 3), NoiseSource.drawn(None, recording.shapes[:1]))
