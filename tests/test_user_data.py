"""The user's own data: ``user_splits`` (inference, held-out split, checks, lazy Datasets) and ``train_multirate``
(run folder, curve, resume), and the snippets of docs/user_data.md."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset, IterableDataset, TensorDataset

import mrvae
from mrvae.beta import BetaRange
from mrvae.config import EvalConfig, ModelConfig, TrainConfig
from mrvae.data.arrays import DatasetItems, user_splits
from mrvae.data.base import ArrayDataset, batch_of
from mrvae.evaluation.curves import RDCurve
from mrvae.evaluation.evaluate import evaluate_at
from mrvae.objectives import Likelihood
from mrvae.runs.folder import RunDirError
from mrvae.runs.methods import load_trained
from mrvae.runs.user_data import train_multirate
from mrvae.training.checkpoint import CheckpointError
from mrvae.training.interrupt import TrainingInterrupted

DOC = Path(__file__).resolve().parents[1] / "docs" / "user_data.md"
MODEL = ModelConfig(hidden=(16,), latent_dim=3)
EVAL = EvalConfig(num_betas=3, iwae_samples=2, batch_size=16)


def _train(**changes) -> TrainConfig:
    return TrainConfig(**{**dict(steps=8, batch_size=16, warmup_steps=2, log_every=2, seed=1), **changes})


def _gaussian(n: int = 120, dim: int = 6, seed: int = 0) -> torch.Tensor:
    """Correlated real data whose dimensions have different scales (float64)."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, 2, generator=g, dtype=torch.float64) @ torch.randn(2, dim, generator=g, dtype=torch.float64)
            + 0.1 * torch.randn(n, dim, generator=g, dtype=torch.float64)) * torch.arange(1, dim + 1)


def _held_out_order(n: int, seed: int) -> torch.Tensor:
    """The documented rule: a permutation from a generator seeded with ``seed``; test = its first examples."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))


# --- likelihood and σ² --------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda b: b.float(), lambda b: b, lambda b: b.numpy().astype(np.uint8),
                                  lambda b: b.double().numpy()])
def test_values_all_zero_or_one_give_a_bernoulli_likelihood(make):
    bits = torch.rand(40, 1, 3, 3, generator=torch.Generator().manual_seed(0)) < 0.4
    data = user_splits(make(bits), test_fraction=0.25)
    assert data.info.likelihood is Likelihood.BERNOULLI and data.info.shape == (1, 3, 3)
    order = _held_out_order(40, 0)
    assert data.train.data.dtype == torch.float32
    assert torch.equal(data.train.data, bits[order[10:]].float())
    assert torch.equal(data.test.data, bits[order[:10]].float())
    assert "σ²" not in data.info.description


def test_real_values_give_a_gaussian_with_the_mean_per_dimension_variance_of_the_training_split():
    x = _gaussian()
    data = user_splits(x.numpy(), seed=4)
    train_rows = x.numpy()[_held_out_order(120, 4)[12:].numpy()].astype(np.float32)  # the values training sees
    expected = float(np.mean(np.var(train_rows.astype(np.float64), axis=0)))  # population variance per dimension
    assert data.info.likelihood is Likelihood.GAUSSIAN
    assert data.info.sigma2 == pytest.approx(expected, rel=1e-12)
    assert f"σ² = {expected:.6g} (mean per-dimension variance of the training split)" in data.info.description
    assert data.train.data.dtype == torch.float32
    # scale-free: data scaled by 3 get 9 × σ²
    assert user_splits(3 * x, seed=4).info.sigma2 == pytest.approx(9 * expected, rel=1e-6)
    # float64 and float32 data give the same splits (training sees float32)
    assert user_splits(x.float(), seed=4).info == data.info


def test_a_given_sigma2_is_used_and_stated():
    data = user_splits(_gaussian(), sigma2=0.25)
    assert data.info.sigma2 == 0.25 and "σ² = 0.25 (given)" in data.info.description


def test_integer_data_need_a_stated_likelihood():
    pixels = np.random.default_rng(0).integers(0, 256, size=(30, 4), dtype=np.uint8)
    pixels[0, 0], pixels[1, 1] = 0, 255
    with pytest.raises(ValueError, match=r"integer data \(torch.uint8, values in \[0, 255\]\).*"
                                         r"likelihood='categorical'.*x / 255"):
        user_splits(pixels)
    assert user_splits(pixels / 255.0).info.likelihood is Likelihood.GAUSSIAN
    assert user_splits(pixels / 255.0, likelihood="bernoulli").info.likelihood is Likelihood.BERNOULLI


def test_token_ids_with_a_categorical_likelihood():
    tokens = torch.randint(0, 8, (30, 5), generator=torch.Generator().manual_seed(0))
    tokens[0, 0] = 7
    data = user_splits(tokens, likelihood="categorical")
    assert data.info.likelihood is Likelihood.CATEGORICAL and data.info.vocab_size == 8
    assert data.train.data.dtype == torch.long
    assert user_splits(tokens, likelihood="categorical", vocab_size=12).info.vocab_size == 12
    assert user_splits(tokens.double(), likelihood="categorical").info.vocab_size == 8  # whole-number floats
    with pytest.raises(ValueError, match=r"vocab_size 5 must be >= 2 and above every token id \(largest 7\)"):
        user_splits(tokens, likelihood="categorical", vocab_size=5)
    with pytest.raises(ValueError, match="whole-number token ids >= 0.*and fractions"):
        user_splits(tokens + 0.5, likelihood="categorical")
    with pytest.raises(ValueError, match="whole-number token ids >= 0; the data have values in \\[-1"):
        user_splits(tokens - 1, likelihood="categorical")


def test_a_stated_likelihood_is_checked_against_the_values():
    with pytest.raises(ValueError, match=r"Bernoulli likelihood needs values in \[0, 1\]; the data have values in"):
        user_splits(_gaussian(), likelihood="bernoulli")
    with pytest.raises(ValueError, match="sigma2 applies to the Gaussian likelihood only, not bernoulli"):
        user_splits(torch.ones(10, 2), sigma2=0.5)
    with pytest.raises(ValueError, match="vocab_size applies to the categorical likelihood only, not gaussian"):
        user_splits(_gaussian(), vocab_size=10)
    with pytest.raises(ValueError, match="sigma2 must be a finite number > 0"):
        user_splits(_gaussian(), sigma2=0.0)
    with pytest.raises(ValueError, match="'poisson' is not a valid Likelihood|poisson"):
        user_splits(_gaussian(), likelihood="poisson")
    with pytest.raises(ValueError, match="all the same.*pass sigma2"):
        user_splits(torch.full((10, 3), 0.5))


# --- inputs, splits, memory ---------------------------------------------------------------------------------

class _Items(Dataset):
    """A map-style Dataset of numpy items (``(x, label)`` tuples with ``pairs``), counting its reads."""

    def __init__(self, x: torch.Tensor, pairs: bool = False) -> None:
        self.x, self.pairs, self.reads = x.numpy(), pairs, 0

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int):
        self.reads += 1
        return (self.x[index], index % 3) if self.pairs else self.x[index]


def test_tensors_arrays_and_datasets_give_the_same_splits():
    x = _gaussian(50)
    reference = user_splits(x, seed=2)
    for given in (x.numpy(), x.float(), TensorDataset(x, torch.arange(50)), _Items(x), _Items(x, pairs=True)):
        data = user_splits(given, seed=2)
        assert isinstance(data.train, ArrayDataset) and data.info == reference.info
        assert torch.equal(data.train.data, reference.train.data) and torch.equal(data.test.data, reference.test.data)


def test_the_held_out_split_follows_its_seed():
    x = torch.arange(50, dtype=torch.float32)[:, None].repeat(1, 2)  # row i holds i: the rows name themselves
    data = user_splits(x, test_fraction=0.2, seed=7)
    order = _held_out_order(50, 7)
    assert len(data.train) == 40 and len(data.test) == 10
    assert data.test.data[:, 0].long().tolist() == order[:10].tolist()
    assert data.train.data[:, 0].long().tolist() == order[10:].tolist()
    assert data.notes["split"] == "held out: 10 of 50 examples, seed 7"
    again, other = user_splits(x, test_fraction=0.2, seed=7), user_splits(x, test_fraction=0.2, seed=8)
    assert torch.equal(again.test.data, data.test.data) and not torch.equal(other.test.data, data.test.data)
    assert len(user_splits(x[:3]).test) == 1  # round(0.3) = 0: at least one test example
    given = user_splits(x[:40], x[40:])
    assert torch.equal(given.train.data, x[:40]) and torch.equal(given.test.data, x[40:])
    assert given.notes["split"] == "given"


def test_a_dataset_above_the_memory_limit_is_read_lazily_with_the_same_values():
    x = _gaussian(60)
    items = _Items(x, pairs=True)
    lazy = user_splits(items, seed=5, max_in_memory_bytes=60 * 6 * 4 - 1)
    eager = user_splits(x, seed=5)
    assert isinstance(lazy.train, DatasetItems) and isinstance(lazy.test, DatasetItems)
    assert items.reads == 60 + 1  # item 0 for its shape, then one pass to check the values
    assert lazy.info.likelihood is Likelihood.GAUSSIAN and lazy.info.sigma2 == pytest.approx(eager.info.sigma2)
    assert "read lazily (not fingerprinted)" in lazy.info.description
    assert torch.equal(batch_of(lazy.train, torch.arange(len(lazy.train))), eager.train.data)
    assert torch.equal(batch_of(lazy.test, torch.arange(len(lazy.test))), eager.test.data)
    reads = items.reads
    # loader_workers=0: the training batches are read here, not in worker processes (which read ahead)
    result = train_multirate(lazy, model=MODEL, train_config=_train(steps=2, loader_workers=0), eval_config=EVAL)
    assert result.fit.step == 2 and items.reads == reads + 2 * 16 + 3 * len(lazy.test) + len(lazy.test)


def _empty_dataset():
    return TensorDataset(torch.empty(0, 3))


class _Ragged(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        return torch.zeros(3 if index < 2 else 4)


class _Lists(Dataset):
    """Items as plain lists of numbers (an example's values), or empty tuples with ``empty``."""

    def __init__(self, empty: bool = False) -> None:
        self.empty = empty

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int):
        return () if self.empty else [float(index), 1.0, -float(index)]


def test_list_items_are_an_examples_values_and_tuple_items_carry_a_label():
    assert torch.equal(user_splits(_Lists(), torch.zeros(1, 3)).train.data[:, 0], torch.arange(6.0))
    with pytest.raises(TypeError, match="train item 0 is an empty tuple"):
        user_splits(_Lists(empty=True))


class _Stream(IterableDataset):
    def __iter__(self):
        return iter([torch.zeros(3)])


@pytest.mark.parametrize(("train", "test", "error", "message"), [
    (torch.empty(0, 4), None, ValueError, r"train is empty: it has shape \(0, 4\)"),
    (_empty_dataset(), None, ValueError, "train is empty: it has no examples"),
    (torch.zeros(5), None, ValueError, r"train has shape \(5,\).*reshape to \(N, 1\)"),
    (torch.zeros(5, 0), None, ValueError, r"train examples have no values"),
    (torch.zeros(10, 4), torch.zeros(10, 5), ValueError,
     r"train examples have shape \(4,\) but test examples have \(5,\)"),
    (torch.tensor([[0.5, float("nan")], [0.1, 0.2], [float("nan"), 1.0]]), None, ValueError,
     r"train holds NaN or ±inf values in 2 example\(s\), the first at index 0"),
    (torch.rand(8, 2), torch.tensor([[0.5, float("inf")]]), ValueError, "test holds NaN or ±inf values in 1 example"),
    ([[0.0, 1.0]], None, TypeError, "train must be a torch Tensor, a numpy array or a torch Dataset.*got list"),
    (_Stream(), None, TypeError, r"map-style\), got _Stream"),
    (_Ragged(), None, ValueError, r"train item 2 has shape \(4,\) but item 0 has \(3,\)"),
    (np.array([["a"], ["b"]], dtype=object), None, TypeError, "numpy array of dtype object"),
    (torch.ones(4, 2, dtype=torch.complex64), None, TypeError, "complex"),
    (torch.ones(1, 2), None, ValueError, r"1 example\(s\) are too few to hold out a test split"),
])
def test_bad_data_are_refused_with_the_problem_named(train, test, error, message):
    with pytest.raises(error, match=message):
        user_splits(train, test)


def test_a_bad_test_fraction_is_refused():
    for fraction in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="test_fraction must lie in"):
            user_splits(_gaussian(), test_fraction=fraction)


# --- train_multirate ----------------------------------------------------------------------------------------

def test_train_multirate_writes_a_run_whose_curve_equals_evaluate_at_on_the_rebuilt_test_split(tmp_path):
    x = _gaussian(100)
    lines: list[str] = []
    train = _train(beta_low=0.05, beta_high=5.0, optimizer="adamw", weight_decay=0.01, schedule="constant")
    result = train_multirate(x.numpy(), model=MODEL, train_config=train, eval_config=EVAL, out=tmp_path / "run",
                             log=lines.append)
    run = tmp_path / "run"
    assert sorted(str(p.relative_to(run)) for p in run.rglob("*") if p.is_file() and p.name != ".lock") == \
        ["checkpoints/mrvae.pt", "config.yaml", "curves/mrvae.json", "metrics.jsonl"]
    assert result.model.beta_range == BetaRange(0.05, 5.0) and result.fit.step == 8 and result.run.root == run
    assert lines[0].startswith("[mrvae] user data: 90 train / 10 test examples of shape (6,); gaussian, σ² = ")
    assert [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [2, 4, 6, 8]
    saved = RDCurve.load(run / "curves" / "mrvae.json")
    assert saved.results == result.curve.results and saved.betas == result.curve.betas
    assert saved.config["model"]["sigma2"] == result.data.info.sigma2 and saved.config["data"]["name"] == "user"
    # a second way: the model rebuilt from its checkpoint, on the test rows picked by the documented rule
    trained = load_trained(run / "checkpoints" / "mrvae.pt")
    assert trained.info == result.data.info and trained.model.beta_range == BetaRange(0.05, 5.0)
    test_rows = x[_held_out_order(100, 0)[:10]].float()
    assert list(saved.betas) == pytest.approx(np.geomspace(0.05, 5.0, 3).tolist())
    for i, beta in enumerate(saved.betas):
        point = evaluate_at(trained.model, ArrayDataset(test_rows), beta, EVAL)
        for key in ("rate", "distortion", "beta_objective", "active_units"):
            assert saved.results[key][i] == pytest.approx(point[key], rel=1e-6, abs=1e-9), (key, beta)


def _interrupt_at_first_log_line(line: str) -> None:
    if re.search(r"step \d+/", line):
        os.kill(os.getpid(), signal.SIGINT)


def test_an_interrupted_run_resumes_to_the_model_and_metrics_of_an_uninterrupted_one(tmp_path):
    x = (torch.rand(80, 12, generator=torch.Generator().manual_seed(3)) < 0.3).float()
    settings = dict(model=MODEL, train_config=_train(checkpoint_every=100), eval_config=EVAL)
    with pytest.raises(TrainingInterrupted, match="mrvae stopped after step 2"):
        train_multirate(x, out=tmp_path / "a", log=_interrupt_at_first_log_line, **settings)
    assert (tmp_path / "a" / "checkpoints" / "mrvae.pt").exists() and not (tmp_path / "a" / "curves").exists()
    with pytest.raises(RunDirError, match="not empty"):
        train_multirate(x, out=tmp_path / "a", **settings)
    resumed = train_multirate(x, out=tmp_path / "a", resume=True, **settings)
    whole = train_multirate(x, out=tmp_path / "b", **settings)
    assert resumed.fit.step == whole.fit.step == 8
    for (name, a), (_, b) in zip(resumed.model.state_dict().items(), whole.model.state_dict().items()):
        assert torch.equal(a, b), name

    def metrics(run):
        return [{k: v for k, v in json.loads(line).items() if k != "wall_time_s"}
                for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    assert resumed.curve.results == whole.curve.results


def test_a_resume_refuses_other_data_and_a_finished_run_resumes_without_training(tmp_path):
    x = _gaussian(60)
    settings = dict(model=MODEL, train_config=_train(), eval_config=EVAL, out=tmp_path / "run")
    first = train_multirate(x, **settings)
    again = train_multirate(x, resume=True, **settings)
    assert again.fit.step == 8 and again.curve.results == first.curve.results
    with pytest.raises(CheckpointError, match="was trained on other data"):
        train_multirate(x + 1.0, resume=True, **settings)  # same σ², shape and sizes: the fingerprint differs
    with pytest.raises(CheckpointError, match="was trained on other data"):
        train_multirate(x[:50], resume=True, **settings)


def test_without_out_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = train_multirate(_gaussian(40), model=MODEL, train_config=_train(epochs=2), eval_config=EVAL)
    assert list(tmp_path.iterdir()) == [] and result.run is None
    assert result.fit.step == 2 * (36 // 16)  # an epochs budget: ⌊N / batch⌋ steps per epoch
    assert len(result.curve.betas) == 3 and result.curve.summary["iwae_nll"] > 0


def test_train_multirate_checks_before_writing_anything(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ValueError, match=r"batch_size 64 .* larger than the training split of user \(36 examples\)"):
        train_multirate(_gaussian(40), model=MODEL, train_config=_train(batch_size=64), out=out)
    tokens = torch.randint(4, 9, (40, 5), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="model arch 'mlp' cannot model categorical data.*need arch 'lstm'"):
        train_multirate(user_splits(tokens, likelihood="categorical"), model=MODEL, train_config=_train(), out=out)
    with pytest.raises(ValueError, match="model arch 'lstm' cannot model gaussian data"):
        train_multirate(_gaussian(40), model=ModelConfig(arch="lstm"), train_config=_train(), out=out)
    with pytest.raises(ValueError, match="already a DataSplits.*test=None"):
        train_multirate(user_splits(_gaussian(40)), _gaussian(10), train_config=_train(), out=out)
    with pytest.raises(ValueError, match="NaN"):
        train_multirate(torch.full((40, 2), float("nan")), train_config=_train(), out=out)
    assert not out.exists()


def test_the_entry_point_is_exported():
    assert mrvae.train_multirate is train_multirate and {"train_multirate", "MultiRateResult"} <= set(mrvae.__all__)


def test_the_docs_snippets_run(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 5
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for index, block in enumerate(blocks):
        exec(compile(block, f"{DOC.name} snippet {index + 1}", "exec"), namespace)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("gaussian sigma2=") and out[0].endswith(" 360 40")
    assert len([line for line in out if line.startswith("beta=")]) == 4
    assert out[5:8] == ["bernoulli (1, 8, 8) 240 60", "bernoulli", out[7]] and "σ² = 0.05 (given)" in out[7]
    assert out[8:11] == ["True", "DatasetItems 360", "150 True"] and out[-1].startswith("20 [")
    assert (tmp_path / "runs" / "my-data" / "curves" / "mrvae.json").exists()
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        assert "pip install 'mrvae[tensorboard]'" in out[-2] and not (tmp_path / "runs" / "my-data-tb").exists()
    else:
        assert (tmp_path / "runs" / "my-data-tb" / "tensorboard" / "mrvae").is_dir()
