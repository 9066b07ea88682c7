"""The non-finite guard: a NaN rate, distortion or gradient stops training naming the step, the term and
the batch's β range (exit 3 from the CLI); the last good checkpoint survives; 16-mixed skips are allowed
up to MAX_SKIPPED_STEPS in a row."""

import re

import pytest
import torch

from mrvae.beta import BetaRange
from mrvae.training.checkpoint import load_checkpoint
from mrvae.cli import main
from mrvae.config import ModelConfig, TrainConfig
from mrvae.data import load_data
from mrvae.models.base import VAE
from mrvae.models.registry import build_model
from mrvae.training.loop import FitFiles, fit
from mrvae.training.trainer import MAX_SKIPPED_STEPS, NonFiniteError

TINY = ModelConfig(latent_dim=3, hidden=(16,))
CLI = ["train", "--data", "synthetic", "--model.hidden", "[16]", "--model.latent_dim", "3", "--train.steps", "12",
       "--train.batch_size", "32", "--train.warmup_steps", "2", "--train.checkpoint_every", "2",
       "--train.log_every", "4", "--train.device", "cpu"]


class _NanGradient(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss whose gradient is poisoned."""

    @staticmethod
    def forward(ctx, t):
        return t.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def poison(monkeypatch, at_call: int, term: str) -> None:
    """From the ``at_call``-th objective evaluation on (0-based = the step), make ``term`` non-finite."""
    original = VAE.objective
    calls = []

    def objective(self, x, beta, u, generator=None):
        loss, out = original(self, x, beta, u, generator)
        calls.append(1)
        if len(calls) - 1 >= at_call:
            if term == "gradient":
                out.rate = _NanGradient.apply(out.rate)
            else:
                setattr(out, term, getattr(out, term) * float("nan"))
            loss = out.distortion + beta[:, 0] * out.rate
        return loss, out

    monkeypatch.setattr(VAE, "objective", objective)


def model_for(data, beta_range=BetaRange()):
    torch.manual_seed(0)
    return build_model(TINY, data.info, "gate", beta_range=beta_range)


def parse_beta_range(message: str) -> tuple[float, float]:
    low, high = re.search(r"batch β in \[([0-9.e+-]+), ([0-9.e+-]+)\]", message).groups()
    return float(low), float(high)


@pytest.mark.parametrize("term", ["rate", "distortion", "gradient"])
def test_guard_names_step_term_and_beta_range_and_keeps_the_checkpoint(term, tmp_path, monkeypatch):
    data = load_data("synthetic")
    snapshots = {}
    config = TrainConfig(steps=10, batch_size=32, warmup_steps=2, checkpoint_every=3, beta_low=0.1, beta_high=5.0)
    poison(monkeypatch, 4, term)
    model = model_for(data, config.beta_range)
    with pytest.raises(NonFiniteError, match=rf"^non-finite {term} at step 4 \(") as caught:
        fit(model, data, config, FitFiles(tmp_path / "c.pt"),
            on_step=lambda step, m: snapshots.__setitem__(step, [p.detach().clone() for p in m.parameters()]))
    low, high = parse_beta_range(str(caught.value))
    assert 0.1 <= low < high <= 5.0  # the range of that batch's per-example β draws
    assert "the last checkpoint was kept" in str(caught.value)
    state = load_checkpoint(tmp_path / "c.pt")
    # non-finite values are checked on the device and read back at the next metrics line or checkpoint
    # (step 6 here), never per step (issue 17); the checkpoint of step 6 is then not written
    assert state["step"] == 3 and sorted(snapshots) == [1, 2, 3, 4, 5, 6]
    for saved, expected in zip(state["model"].values(), snapshots[3]):
        assert torch.equal(saved, expected.cpu())  # checkpoints load on the CPU; training may be on a GPU
    for p, expected in zip(model.parameters(), snapshots[4]):  # the poisoned steps (5, 6) changed nothing:
        assert torch.equal(p, expected) and bool(torch.isfinite(p).all())  # the fused optimiser skipped them


def test_cli_exits_3_with_one_line_and_resume_continues_from_the_last_good_checkpoint(tmp_path, monkeypatch,
                                                                                      capsys):
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        poison(patch, 5, "distortion")
        assert main([*CLI, "--out", str(out)]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("mrvae: training stopped: non-finite distortion at step 5 (batch β in [")
    assert "Traceback" not in "\n".join(err)
    assert load_checkpoint(out / "checkpoints" / "mrvae.pt")["step"] == 4
    assert main([*CLI, "--out", str(out), "--resume", "true"]) == 0  # the cause is gone: it carries on
    assert "resumed from" in capsys.readouterr().err
    assert load_checkpoint(out / "checkpoints" / "mrvae.pt")["step"] == 12


def test_non_finite_parameters_are_never_checkpointed(tmp_path):
    data = load_data("synthetic")

    def corrupt(step, model):
        if step == 4:
            with torch.no_grad():
                next(model.parameters())[0, 0] = float("inf")

    with pytest.raises(NonFiniteError, match=r"non-finite parameters after step 4 \(.*not checkpointed"):
        fit(model_for(data), data, TrainConfig(steps=10, batch_size=32, checkpoint_every=2),
            FitFiles(tmp_path / "c.pt"), on_step=corrupt)
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["step"] == 2 and all(bool(torch.isfinite(t).all()) for t in state["model"].values())


def test_fp16_scaler_skips_a_few_overflowing_steps_but_stops_when_they_persist(tmp_path, monkeypatch):
    data = load_data("synthetic")
    config = TrainConfig(steps=MAX_SKIPPED_STEPS + 5, batch_size=32, warmup_steps=1, precision="16-mixed",
                         device="cpu", checkpoint_every=1000)
    # Three poisoned steps then clean ones: skipped (weights untouched, scale halved), not fatal. (With
    # losses near 1000 nats the first clean steps overflow fp16 too, until the scale has dropped enough.)
    original = VAE.objective
    calls = []

    def transient(self, x, beta, u, generator=None):
        calls.append(1)
        loss, out = original(self, x, beta, u, generator)
        if len(calls) <= 3:
            out.rate = _NanGradient.apply(out.rate)
            loss = out.distortion + beta[:, 0] * out.rate
        return loss, out

    model = model_for(data)
    initial = [p.detach().clone() for p in model.parameters()]
    seen = {}
    with monkeypatch.context() as patch:
        patch.setattr(VAE, "objective", transient)
        fit(model, data, config, FitFiles(tmp_path / "ok.pt"),
            on_step=lambda step, m: seen.setdefault(step, [p.detach().clone() for p in m.parameters()]))
    for step in (1, 2, 3):
        assert all(torch.equal(a, b) for a, b in zip(seen[step], initial)), step
    assert not torch.equal(seen[config.steps][0], initial[0])
    assert load_checkpoint(tmp_path / "ok.pt")["scaler"]["scale"] <= 2.0**16 / 2**3

    # Overflow at every step: the scaler's skips run out after MAX_SKIPPED_STEPS in a row.
    poison(monkeypatch, 0, "gradient")
    with pytest.raises(NonFiniteError, match=rf"non-finite gradient at step {MAX_SKIPPED_STEPS - 1}: the 16-mixed "
                                             rf"gradient scaler skipped {MAX_SKIPPED_STEPS} steps in a row"):
        fit(model_for(data), data, config)
