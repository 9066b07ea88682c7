"""configs/paper/*.yaml: one file per experiment of the paper, each a valid RunConfig with its budget in epochs
stated in the header comment and as ``train.epochs``."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from mrvae.config import BaselineConfig, DataConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig, from_dict
from mrvae.data import DATASETS
from mrvae.models import ARCHITECTURES

FOLDER = Path(__file__).resolve().parents[1] / "configs" / "paper"
EXPERIMENTS = {"linear_mnist", "lstm_yahoo", "tcvae_dsprites",
               *(f"{arch}_{data}" for arch in ("conv", "resnet") for data in ("mnist", "omniglot", "cifar10", "svhn",
                                                                             "celeba")),
               *(f"hierarchical_{data}" for data in ("mnist", "omniglot", "celeba"))}
SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig, "eval": EvalConfig,
            "baseline": BaselineConfig}
#: Keys the configs use before the settings exist (issues 13 and 18); dropped here only while the
#: dataclass lacks them, so each is checked as soon as it is added.
PENDING = {"train": {"epochs", "optimizer"}, "model": {"latent_groups", "norm"}, "baseline": {"lr"}}
PENDING_ARCHITECTURES = {"hierarchical"}


def test_one_file_per_experiment():
    assert {p.stem for p in FOLDER.glob("*.yaml")} == EXPERIMENTS


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_config_is_a_valid_run_config_with_its_budget_in_epochs(name):
    text = (FOLDER / f"{name}.yaml").read_text(encoding="utf-8")
    values = yaml.safe_load(text)
    header = "\n".join(line for line in text.splitlines() if line.startswith("#"))
    assert text.startswith("# ") and "Paper leaves open" in header and f"configs/paper/{name}.yaml" in header
    epochs = values["train"]["epochs"]
    assert isinstance(epochs, int) and epochs >= 1
    assert re.search(rf"\b{epochs} epochs \(train\.epochs: {epochs} = {epochs} × \d+ steps\)", header)
    assert values.pop("out") == f"runs/paper/{name}"
    for section, keys in PENDING.items():
        known = {f.name for f in dataclasses.fields(SECTIONS[section])}
        for key in keys - known:
            values.get(section, {}).pop(key, None)
    config = from_dict(RunConfig, values)
    assert config.data.name in DATASETS
    assert config.model.arch in ARCHITECTURES or config.model.arch in PENDING_ARCHITECTURES
    assert config.train.beta_range.contains(1.0) and all(config.train.beta_range.contains(b)
                                                          for b in config.baseline.betas)
