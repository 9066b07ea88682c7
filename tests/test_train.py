"""fit(): batch order, schedules, resume bit-identical, atomic checkpoints, non-finite guard."""

import dataclasses
import math

import pytest
import torch

from mrvae.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mrvae.config import ModelConfig, TrainConfig
from mrvae.data import load_data
from mrvae.models.registry import build_model
from mrvae.training.loop import FitFiles, fit
from mrvae.training.schedule import batch_indices, kl_weight, learning_rate_factor
from mrvae.training.trainer import NonFiniteError

TINY = ModelConfig(latent_dim=3, hidden=(16,))


def make_model(data, kind="gate", seed=0):
    torch.manual_seed(seed)
    return build_model(TINY, data.info, kind)


def test_batch_indices_cover_each_epoch_once_and_are_reproducible():
    per_epoch = [batch_indices(100, 10, step, seed=3) for step in range(10)]
    assert sorted(torch.cat(per_epoch).tolist()) == list(range(100))
    assert torch.equal(batch_indices(100, 10, 4, seed=3), per_epoch[4])
    assert not torch.equal(batch_indices(100, 10, 10, seed=3), per_epoch[0])  # next epoch reshuffles
    shards = [batch_indices(100, 10, 0, seed=3, rank=r, world_size=2) for r in range(2)]
    assert set(shards[0].tolist()).isdisjoint(shards[1].tolist())
    with pytest.raises(ValueError, match="fewer than one global batch"):
        batch_indices(5, 10, 0, seed=0)


def test_learning_rate_warmup_then_cosine_and_kl_ramp():
    assert learning_rate_factor(0, 10, 110) == pytest.approx(0.1)
    assert learning_rate_factor(9, 10, 110) == pytest.approx(1.0)
    assert learning_rate_factor(60, 10, 110) == pytest.approx(0.5)
    assert learning_rate_factor(110, 10, 110) == pytest.approx(0.0, abs=1e-12)
    config = TrainConfig(steps=100, kl_warmup=0.3)
    assert kl_weight(0, config) == pytest.approx(1 / 30)
    assert kl_weight(29, config) == pytest.approx(1.0)
    assert kl_weight(5, TrainConfig(steps=100)) == 1.0


def test_training_lowers_the_loss_and_writes_metrics(tmp_path):
    data = load_data("synthetic")
    model = make_model(data)
    config = TrainConfig(steps=150, batch_size=64, lr=3e-3, warmup_steps=10, log_every=50)
    result = fit(model, data, config, FitFiles(metrics=tmp_path / "m.jsonl"))
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    assert len(lines) == 3
    import json

    first, last = json.loads(lines[0]), json.loads(lines[-1])
    assert last["step"] == 150 and last["loss"] < first["loss"]
    assert result.step == 150 and result.wall_time_s > 0




def test_resume_is_bit_identical(tmp_path):
    data = load_data("digits")
    config = TrainConfig(steps=40, batch_size=32, lr=3e-3, warmup_steps=5, checkpoint_every=15, seed=11,
                         log_every=1)
    straight = fit(make_model(data), data, config, FitFiles(tmp_path / "a.pt", tag="t")).model

    # An interrupted run: it dies at step 33, after its checkpoint at step 30; a new model resumes it.
    ckpt = tmp_path / "b.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(make_model(data), data, config, FitFiles(ckpt, tag="t"), log=_interrupt_after(33))
    assert load_checkpoint(ckpt)["step"] == 30
    torch.manual_seed(12345)  # the global RNG is restored from the checkpoint, whatever it is now
    resumed = fit(make_model(data, seed=99), data, config, FitFiles(ckpt, tag="t", resume=True)).model
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items()):
        assert torch.equal(a, b), name


def _interrupt_after(step: int):
    def log(message: str) -> None:
        if f"step {step}/" in message:
            raise KeyboardInterrupt
    return log


def test_resume_with_a_checkpoint_of_another_tag_is_refused(tmp_path):
    data = load_data("synthetic")
    config = TrainConfig(steps=3, batch_size=32)
    fit(make_model(data), data, config, FitFiles(tmp_path / "c.pt", tag="mrvae"))
    with pytest.raises(CheckpointError, match="belongs to 'mrvae'"):
        fit(make_model(data), data, config, FitFiles(tmp_path / "c.pt", tag="yoto", resume=True))


def test_crash_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "c.pt"
    save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    original = torch.save

    def exploding_save(obj, handle, *args, **kwargs):
        handle.write(b"partial bytes")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", exploding_save)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint({"step": 2, "w": torch.zeros(3)}, path)
    monkeypatch.setattr(torch, "save", original)
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temporary file left behind


def test_corrupt_missing_and_foreign_checkpoints_are_named(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match=r"bad\.pt is corrupt"):
        load_checkpoint(bad)
    other = tmp_path / "other.pt"
    torch.save({"format_version": 99}, other)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(other)


def test_non_finite_loss_stops_with_step_and_term(tmp_path):
    data = load_data("synthetic")
    model = make_model(data)
    with torch.no_grad():
        model.output_layer.bias.fill_(math.nan)
    with pytest.raises(NonFiniteError, match=r"non-finite distortion at step 0 \(batch β in \["):
        fit(model, data, TrainConfig(steps=5, batch_size=32))


def test_beta_vae_runs_keep_the_warmup_steps_of_the_multi_rate_run():
    from mrvae.config import BaselineConfig, Method, RunConfig
    from mrvae.runs.methods import method_train_config

    config = RunConfig(train=TrainConfig(steps=1800, warmup_steps=400), baseline=BaselineConfig(steps=600))
    baseline = method_train_config(config, Method.BETA_VAE, 0.5)
    assert (baseline.steps, baseline.warmup_steps, baseline.beta_low, baseline.beta_high) == (600, 400, 0.5, 0.5)
    assert method_train_config(config, Method.MRVAE).warmup_steps == 400
    short = RunConfig(train=TrainConfig(steps=1800, warmup_steps=400), baseline=BaselineConfig(steps=300))
    assert method_train_config(short, Method.BETA_VAE, 0.5).warmup_steps == 300  # never longer than the run


def test_a_cpu_run_leaves_cuda_alone_even_where_cuda_is_available(tmp_path, monkeypatch):
    from mrvae.training.checkpoint import rng_state, set_rng_state

    def touched(*args, **kwargs):
        raise AssertionError("a CPU run touched CUDA's RNG")

    # as on a GPU machine: CUDA is there, but a CPU run must neither save nor restore its RNG state
    # (that would create a CUDA context, and fail in a process forked after CUDA work)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for name in ("get_rng_state", "get_rng_state_all", "set_rng_state", "set_rng_state_all"):
        monkeypatch.setattr(torch.cuda, name, touched)
    data = load_data("digits")
    config = TrainConfig(steps=6, batch_size=16, warmup_steps=2, checkpoint_every=3, device="cpu")
    fit(make_model(data), data, config, FitFiles(tmp_path / "c.pt", tag="t"))
    state = load_checkpoint(tmp_path / "c.pt")
    assert set(state["rng"]) == {"torch", "train_generator"} and state["rng"]["train_generator"].dtype == torch.uint8
    fit(make_model(data), data, dataclasses.replace(config, steps=9), FitFiles(tmp_path / "c.pt", tag="t", resume=True))
    assert load_checkpoint(tmp_path / "c.pt")["step"] == 9
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    saved = rng_state("cpu")
    torch.rand(3)
    set_rng_state({"torch": saved["torch"].clone()})
    assert torch.equal(torch.rand(3), expected)
