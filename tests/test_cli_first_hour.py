"""The CLI a new user meets (issue 16): version, help that reads well, strict flags, warnings, defaults that
follow the architecture and the data, the steps asked for, and one colour per run in `mrvae plot`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from matplotlib.image import imread

import mrvae
from mrvae.cli import main
from mrvae.config import ModelConfig
from mrvae.data import load_data
from mrvae.data.base import DataInfo
from mrvae.models import build_model
from mrvae.objectives import Likelihood
from mrvae.report.figures import curve_colour
from mrvae.evaluation.curves import RDCurve
from mrvae.training.checkpoint import load_checkpoint
from mrvae.training.runtime import auto_threads

TINY = ["--train.steps", "8", "--train.batch_size", "32", "--train.warmup_steps", "2", "--baseline.steps", "4",
        "--baseline.betas", "[0.1,1]", "--eval.num_betas", "2", "--eval.iwae_samples", "2", "--threads", "1"]


def run_cli(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mrvae.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd, env={**os.environ, "COLUMNS": "120"})


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"mrvae {mrvae.__version__}"


def test_help_shows_choices_and_defaults_as_typed_and_whole_sentences():
    text = run_cli(["run", "--help"]).stdout
    assert "--model.gate_init {paper,open}" in text and "--train.optimizer {adam,adamw,adamax}" in text
    assert "{PAPER" not in text and "MRVAE," not in text and "<Method" not in text
    assert re.search(r"default: \['mrvae',\s+'beta-vae'\]", text)
    assert re.search(r"--data\.name NAME\s+The data set, a name in mrvae\.data\.DATASETS", text)
    assert "CONFIG-file" not in text
    # the group titles are whole sentences, not a docstring cut at its first line break
    for title in re.findall(r"^(\S[^\n]*):\n  --", text, flags=re.M):
        assert not title.rstrip().endswith(("the", "with", "and", "a", "of")), title


def test_flags_are_never_prefix_matched(tmp_path, capsys):
    assert main(["run", "--train.step", "100", "--out", str(tmp_path / "o")]) == 2
    assert "train.step" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_warmup_longer_than_training_warns(tmp_path, capsys):
    assert main(["train", *TINY, "--train.warmup_steps", "20", "--out", str(tmp_path / "w")]) == 0
    err = capsys.readouterr().err
    assert "warning: train.warmup_steps (20) >= train.steps (8)" in err


def test_latent_size_defaults_to_the_architectures():
    digits = load_data("digits").info
    image28 = DataInfo("x", (1, 28, 28), Likelihood.BERNOULLI)
    assert ModelConfig().latent_dim is None
    assert build_model(ModelConfig(), digits, "gate").latent_dim == 16
    assert build_model(ModelConfig(arch="conv", width=0.05), image28, "gate").latent_dim == 32  # the paper's
    assert build_model(ModelConfig(arch="resnet", width=0.1), image28, "gate").latent_dim == 32
    assert build_model(ModelConfig(arch="linear"), load_data("synthetic").info, "gate").latent_dim == 16  # ≤ d
    assert build_model(ModelConfig(arch="conv", latent_dim=5, width=0.05), image28, "gate").latent_dim == 5


def test_out_defaults_to_a_folder_named_after_the_data_set(tmp_path):
    done = run_cli(["train", *TINY, "--data", "synthetic"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "runs" / "synthetic" / "checkpoints" / "mrvae.pt").exists()


def test_train_trains_the_steps_it_is_given(tmp_path):
    assert main(["train", *TINY, "--train.steps", "40", "--method", "beta-vae", "--beta", "0.5",
                 "--out", str(tmp_path / "b")]) == 0
    state = load_checkpoint(tmp_path / "b" / "checkpoints" / "beta-vae" / "beta=0.5.pt")
    assert state["step"] == 40


def test_baseline_betas_must_lie_in_the_multi_rate_range(tmp_path, capsys):
    assert main(["run", *TINY, "--baseline.betas", "[0.1,100]", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "baseline βs ['100'] lie outside the multi-rate range [0.01, 10]" in err
    assert not (tmp_path / "r").exists()


def test_threads_auto_and_bad_values(tmp_path, capsys):
    assert auto_threads("mlp", cores=8, load=0.0) == 1
    assert auto_threads("resnet", cores=2, load=2.0) == 1  # a busy machine: one thread
    assert auto_threads("resnet", cores=8, load=1.0) == 7
    assert main(["train", *TINY[:-2], "--threads", "zero", "--out", str(tmp_path / "t")]) == 2
    assert "--threads must be a whole number >= 1 or auto, got 'zero'" in capsys.readouterr().err
    assert main(["train", *TINY[:-2], "--out", str(tmp_path / "t")]) == 0  # auto by default
    assert torch.get_num_threads() == 1


def test_curve_and_export_take_device_and_threads(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["run", *TINY, "--out", str(run)]) == 0
    printed = capsys.readouterr().out
    check = [line for line in printed.splitlines() if line.startswith("mrvae curve: ")]
    assert len(check) == 1 and ("no dominated point" in check[0] or "is dominated by" in check[0])
    assert "Curve check: " in (run / "report.html").read_text()  # the report carries the same check
    assert main(["curve", str(run), "--device", "cpu", "--threads", "1", "--num_betas", "2", "--iwae_samples",
                 "0", "--out", str(tmp_path / "c.json")]) == 0
    assert main(["export", str(run), "--beta", "0.5", "--device", "cpu", "--threads", "1",
                 "--out", str(tmp_path / "e")]) == 0
    assert main(["curve", str(run), "--device", "tpu", "--out", str(tmp_path / "d.json")]) == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err


def test_plot_of_two_runs_gives_each_run_its_colour_and_name(tmp_path, capsys):
    runs = [tmp_path / "first", tmp_path / "second"]
    for seed, run in enumerate(runs):
        assert main(["run", *TINY, "--train.seed", str(seed), "--out", str(run)]) == 0
    assert main(["plot", *map(str, runs), "--out", str(tmp_path / "both.png")]) == 0
    assert imread(tmp_path / "both.png").shape[2] in (3, 4)
    curves = [RDCurve.load(r / "curves" / "mrvae.json") for r in runs]
    for curve, run in zip(curves, runs):
        curve.name = run.name
    assert curve_colour(curves[0], curves) != curve_colour(curves[1], curves)
    single = RDCurve.load(runs[0] / "curves" / "mrvae.json")
    assert curve_colour(single, [single]) == "C0"  # one run: the method's colour
