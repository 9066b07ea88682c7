"""Every configs/paper/*.yaml through the CLI: accepted by `mrvae run --config F --print_config`, and run end to end,
shrunk to a few steps, on stand-in data of the same shape and likelihood as the paper's data set."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from mrvae.cli import main
from mrvae.data import DATASETS, ArrayDataset, DataInfo, DataSplits, DatasetEntry
from mrvae.data.preprocess import IMAGE_SIGMA2
from mrvae.data.text import BOS_INDEX, EOS_INDEX, PAD_INDEX
from mrvae.objectives import Likelihood

FOLDER = Path(__file__).resolve().parents[1] / "configs" / "paper"
CONFIGS = sorted(FOLDER.glob("*.yaml"))

#: The shape, likelihood and σ² of each data set the configs name (what its loader gives).
STAND_INS = {
    "binarized-mnist": ((1, 28, 28), Likelihood.BERNOULLI, 1.0),
    "omniglot": ((1, 28, 28), Likelihood.BERNOULLI, 1.0),
    "dsprites": ((1, 64, 64), Likelihood.BERNOULLI, 1.0),
    "cifar10": ((3, 32, 32), Likelihood.GAUSSIAN, IMAGE_SIGMA2),
    "svhn": ((3, 32, 32), Likelihood.GAUSSIAN, IMAGE_SIGMA2),
    "celeba": ((3, 64, 64), Likelihood.GAUSSIAN, IMAGE_SIGMA2),
    "mnist-continuous": ((784,), Likelihood.GAUSSIAN, 1.0),
    "text": ((12,), Likelihood.CATEGORICAL, 1.0),
}
#: Settings that shrink any paper experiment to seconds; the architecture and everything else stay.
SHRINK = ["--train.epochs", "null", "--train.steps", "2", "--train.batch_size", "4", "--train.warmup_steps", "1",
          "--baseline.steps", "1", "--baseline.betas", "[1.0]", "--eval.num_betas", "2", "--eval.iwae_samples", "2",
          "--eval.batch_size", "8", "--threads", "1"]
SHRINK_MODEL = {"conv": ["--model.width", "0.05"], "resnet": ["--model.width", "0.1"],
                "hierarchical": ["--model.width", "0.25", "--model.latent_groups", "[1, 1]", "--model.latent_dim", "2"],
                "lstm": ["--model.embedding_dim", "8", "--model.lstm_hidden", "8"],
                "tcvae": ["--model.hidden", "[16, 16]"], "linear": []}


def stand_in(name: str) -> DataSplits:
    """Random data with the shape, likelihood and σ² of data set ``name``: 24 training and 8 test examples."""
    shape, likelihood, sigma2 = STAND_INS[name]
    gen = torch.Generator().manual_seed(0)
    if likelihood is Likelihood.CATEGORICAL:
        def draw(n):
            tokens = torch.randint(4, 20, (n,) + shape, generator=gen)
            tokens[:, 0], tokens[:, 6], tokens[:, 7:] = BOS_INDEX, EOS_INDEX, PAD_INDEX
            return tokens
        info = DataInfo(f"{name}-stand-in", shape, likelihood, vocab_size=20)
    else:
        def draw(n):
            values = torch.rand((n,) + shape, generator=gen)
            return torch.bernoulli(values, generator=gen) if likelihood is Likelihood.BERNOULLI else values
        info = DataInfo(f"{name}-stand-in", shape, likelihood, sigma2=sigma2)
    return DataSplits(info, ArrayDataset(draw(24)), ArrayDataset(draw(8)))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_print_config_accepts_the_file(path, capsys):
    assert main(["run", "--config", str(path), "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    written = yaml.safe_load(path.read_text())
    assert printed["model"]["arch"] == written["model"]["arch"] and printed["train"]["epochs"] == written["train"]["epochs"]
    assert printed["data"]["name"] == written["data"]["name"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_the_experiment_runs_shrunk_on_stand_in_data(path, tmp_path, monkeypatch, capsys):
    written = yaml.safe_load(path.read_text())
    name, arch = written["data"]["name"], written["model"]["arch"]
    monkeypatch.setitem(DATASETS, f"{name}-stand-in", DatasetEntry(lambda root, seed: stand_in(name), "stand-in",
                                                                   needs_files=False))
    out = tmp_path / "run"
    code = main(["run", "--config", str(path), "--data.name", f"{name}-stand-in", *SHRINK, *SHRINK_MODEL[arch],
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    curve = json.loads((out / "curves" / "mrvae.json").read_text())
    assert curve["kind"] == "mrvae" and len(curve["betas"]) == 2
    assert all(value == value for value in curve["results"]["beta_objective"])  # finite numbers, no NaN
    assert (out / "report.html").exists()
