"""TensorBoard scalars of ``fit`` (FitFiles.tensorboard): the values of metrics.jsonl, one run per tag, resumes
that purge what they write again, and a clear error without the package."""

from __future__ import annotations

import json
import sys

import pytest
import torch

from mrvae.beta import BetaRange
from mrvae.config import EvalConfig, ModelConfig, TrainConfig
from mrvae.data.embedded import load_synthetic_splits
from mrvae.models.registry import build_model
from mrvae.runs.user_data import train_multirate
from mrvae.training.loop import FitFiles, fit
from mrvae.training.reporting import TENSORBOARD_INSTALL

SCALARS = ("loss", "rate", "distortion", "lr")
DATA = load_synthetic_splits(seed=0, num_train=96, num_test=32, dim=8, rank=2)


def _config(**changes) -> TrainConfig:
    settings = dict(steps=8, batch_size=16, warmup_steps=2, log_every=2, checkpoint_every=4, seed=3)
    return TrainConfig(**{**settings, **changes})


def _model() -> torch.nn.Module:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return build_model(ModelConfig(hidden=(16,), latent_dim=3), DATA.info, "gate", len(DATA.train),
                           BetaRange(0.01, 10.0))


def _events(folder) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(folder))
    accumulator.Reload()
    return {name: [(e.step, e.value) for e in accumulator.Scalars(name)] for name in accumulator.Tags()["scalars"]}


def _lines(path, tag) -> list[dict]:
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["tag"] == tag]


def _assert_same(events: dict, lines: list[dict]) -> None:
    assert sorted(events) == sorted(SCALARS)
    for name in SCALARS:
        assert [step for step, _ in events[name]] == [line["step"] for line in lines], name
        # event files hold float32; metrics.jsonl the float64 means
        assert [value for _, value in events[name]] == pytest.approx([line[name] for line in lines], rel=1e-6), name


def test_fit_writes_the_metrics_lines_as_tensorboard_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    files = FitFiles(metrics=tmp_path / "metrics.jsonl", tag="mrvae", tensorboard=tmp_path / "tb")
    fit(_model(), DATA, _config(), files)
    lines = _lines(tmp_path / "metrics.jsonl", "mrvae")
    assert [line["step"] for line in lines] == [2, 4, 6, 8]
    assert [p.name for p in (tmp_path / "tb").iterdir()] == ["mrvae"]
    _assert_same(_events(tmp_path / "tb" / "mrvae"), lines)


def test_a_resume_hides_the_events_written_after_the_checkpoint(tmp_path):
    """Killed at step 7 (checkpoint at 4, events and lines at 2, 4, 6): the resumed run writes 6 and 8 again;
    TensorBoard shows each step once, with the values of the final metrics.jsonl, which equal an
    uninterrupted run's."""
    pytest.importorskip("tensorboard")

    def crash(step, model):
        if step == 7:
            raise RuntimeError("killed")

    files = FitFiles(tmp_path / "run.pt", tmp_path / "metrics.jsonl", "mrvae", tensorboard=tmp_path / "tb")
    with pytest.raises(RuntimeError, match="killed"):
        fit(_model(), DATA, _config(), files, on_step=crash)
    assert [step for step, _ in _events(tmp_path / "tb" / "mrvae")["loss"]] == [2, 4, 6]
    fit(_model(), DATA, _config(), FitFiles(tmp_path / "run.pt", tmp_path / "metrics.jsonl", "mrvae", resume=True,
                                           tensorboard=tmp_path / "tb"))
    lines = _lines(tmp_path / "metrics.jsonl", "mrvae")
    _assert_same(_events(tmp_path / "tb" / "mrvae"), lines)
    whole = tmp_path / "whole"
    fit(_model(), DATA, _config(), FitFiles(metrics=whole / "metrics.jsonl", tag="mrvae", tensorboard=whole / "tb"))
    assert _events(tmp_path / "tb" / "mrvae") == _events(whole / "tb" / "mrvae")


def test_each_tag_is_its_own_run_and_a_fresh_fit_replaces_only_its_own(tmp_path):
    pytest.importorskip("tensorboard")
    board = tmp_path / "tb"
    fit(_model(), DATA, _config(steps=4), FitFiles(tag="mrvae", tensorboard=board))
    fit(_model(), DATA, _config(steps=4, lr=1e-3), FitFiles(tag="beta-vae@0.1", tensorboard=board))
    first = _events(board / "mrvae")
    assert sorted(p.name for p in board.iterdir()) == ["beta-vae@0.1", "mrvae"]
    assert first["loss"] != _events(board / "beta-vae@0.1")["loss"]
    # a fresh (not resumed) fit of the same tag replaces that tag's curve and leaves the other alone
    fit(_model(), DATA, _config(steps=4, lr=1e-2), FitFiles(tag="mrvae", tensorboard=board))
    again = _events(board / "mrvae")
    assert [s for s, _ in again["loss"]] == [2, 4] and again["lr"] != first["lr"]
    assert [s for s, _ in _events(board / "beta-vae@0.1")["loss"]] == [2, 4]


@pytest.fixture
def without_tensorboard(monkeypatch):
    """The interpreter as if the tensorboard package were not installed."""
    prefixes = ("tensorboard.", "torch.utils.tensorboard")
    for name in [n for n in sys.modules if n == "tensorboard" or n.startswith(prefixes)]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)


def test_without_the_package_asking_for_tensorboard_fails_first_and_names_the_extra(tmp_path, without_tensorboard):
    assert TENSORBOARD_INSTALL == "pip install 'mrvae[tensorboard]'"
    files = FitFiles(tmp_path / "run.pt", tmp_path / "metrics.jsonl", "mrvae", tensorboard=tmp_path / "tb")
    with pytest.raises(ImportError, match=r"tensorboard package: pip install 'mrvae\[tensorboard\]'"):
        fit(_model(), DATA, _config(), files)
    assert list(tmp_path.iterdir()) == []
    out = tmp_path / "run"
    with pytest.raises(ImportError, match=r"mrvae\[tensorboard\]"):
        train_multirate(DATA, model=ModelConfig(hidden=(16,), latent_dim=3), train_config=_config(),
                        eval_config=EvalConfig(num_betas=2, iwae_samples=0), out=out, tensorboard=True)
    assert not out.exists()
    # not asking for it needs no package
    result = fit(_model(), DATA, _config(steps=2), FitFiles(metrics=tmp_path / "metrics.jsonl"))
    assert result.step == 2 and sys.modules["tensorboard"] is None


def test_train_multirate_writes_tensorboard_into_its_run_folder(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    train_multirate(DATA, model=ModelConfig(hidden=(16,), latent_dim=3), train_config=_config(),
                    eval_config=EvalConfig(num_betas=2, iwae_samples=0), out=out, tensorboard=True)
    _assert_same(_events(out / "tensorboard" / "mrvae"), _lines(out / "metrics.jsonl", "mrvae"))
    with pytest.raises(ValueError, match="pass out"):
        train_multirate(DATA, train_config=_config(), tensorboard=True)


def test_a_failed_start_in_an_existing_folder_leaves_no_tensorboard_events_behind(tmp_path):
    pytest.importorskip("tensorboard")
    out = tmp_path / "run"
    out.mkdir()

    def fail_at_the_first_metrics_line(line: str) -> None:
        if "step 2/" in line:
            raise RuntimeError("stopped before the first checkpoint")

    settings = dict(model=ModelConfig(hidden=(16,), latent_dim=3), train_config=_config(checkpoint_every=100),
                    eval_config=EvalConfig(num_betas=2, iwae_samples=0), out=out, tensorboard=True)
    with pytest.raises(RuntimeError, match="before the first checkpoint"):
        train_multirate(DATA, log=fail_at_the_first_metrics_line, **settings)
    # config.yaml and metrics.jsonl are removed by open_run_dir; the events by train_multirate
    assert not (out / "tensorboard").exists() and not (out / "metrics.jsonl").exists()
