"""Training batches (issue 17, item 4): in-memory splits stay in place / move to the device once, lazy splits
come through a DataLoader with workers, and either way batch s is exactly batch_of(batch_indices(s))."""

from __future__ import annotations

import multiprocessing

import pytest
import torch
from torch import Tensor
from torch.utils.data import Dataset

from mrvae.config import ModelConfig, TrainConfig
from mrvae.config.files import from_dict
from mrvae.data import load_data
from mrvae.data.base import ArrayDataset, DataSplits, batch_of
from mrvae.models import build_model
from mrvae.training import trainer as trainer_module
from mrvae.training.batches import (ArrayBatches, LoaderBatches, StepBatchSampler, auto_workers,
                                    training_batches)
from mrvae.training.distributed import DistInfo
from mrvae.training.loop import FitFiles, fit
from mrvae.training.schedule import batch_indices

CPU = torch.device("cpu")


class IndexImages(Dataset):
    """A lazy data set: item i is built from i when asked for, (1, 3, 4) float32."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Tensor:
        return torch.sin(torch.arange(12, dtype=torch.float32) * (i + 1) * 0.37).view(1, 3, 4)


class RowsOf(Dataset):
    """A lazy view of an (N, ...) tensor, item by item; ``fail_at`` raises on that row."""

    def __init__(self, data: Tensor, fail_at: int | None = None) -> None:
        self.data, self.fail_at = data, fail_at

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, i: int) -> Tensor:
        if i == self.fail_at:
            raise ValueError(f"row {i} is unreadable")
        return self.data[i].clone()


def lazy_digits(fail_at: int | None = None) -> DataSplits:
    data = load_data("digits")
    return DataSplits(data.info, RowsOf(data.train.data, fail_at), data.test, train_transform=data.train_transform)


def steps_of(n: int, batch_size: int, rank: int = 0, world_size: int = 1) -> StepBatchSampler:
    return StepBatchSampler(n, batch_size, seed=5, rank=rank, world_size=world_size)


def no_workers_left() -> bool:
    return not multiprocessing.active_children()


@pytest.mark.parametrize("workers", [0, 2])
def test_loader_batches_are_batch_of_the_step_indices_across_epochs(workers):
    dataset = IndexImages(50)  # 6 batches of 8 per epoch: steps 0..14 cross two epoch boundaries
    for rank in (0, 1):
        source = LoaderBatches(dataset, steps_of(50, 8, rank, 2), CPU, workers)
        for step in range(15):
            expected = batch_of(dataset, batch_indices(50, 8, step, 5, rank, 2))
            assert torch.equal(source.batch(step), expected), (rank, step)
        source.close()
    assert no_workers_left()


def test_a_loader_started_at_step_k_gives_the_uninterrupted_batches():
    dataset = IndexImages(40)
    whole = LoaderBatches(dataset, steps_of(40, 6), CPU, workers=2)
    uninterrupted = [whole.batch(step) for step in range(14)]
    resumed = LoaderBatches(dataset, steps_of(40, 6), CPU, workers=2)
    assert all(torch.equal(resumed.batch(step), uninterrupted[step]) for step in range(5, 14))
    assert torch.equal(resumed.batch(2), uninterrupted[2])  # asked for another step: reopens there
    assert torch.equal(resumed.batch(3), uninterrupted[3])
    whole.close()
    resumed.close()
    assert no_workers_left()
    assert torch.equal(resumed.batch(7), uninterrupted[7])  # a closed source reopens when asked again
    resumed.close()


def test_in_memory_batches_use_the_tensor_in_place_on_the_cpu_and_the_host_path_agrees():
    dataset = ArrayDataset(torch.randn(30, 2, 3))
    source = training_batches(dataset, TrainConfig(batch_size=4, seed=5), CPU, DistInfo())
    assert isinstance(source, ArrayBatches) and source.resident
    assert source.data.data_ptr() == dataset.data.data_ptr()  # no copy
    on_host = ArrayBatches(dataset, steps_of(30, 4), CPU, resident=False)  # the path of a split too large
    assert not on_host.resident and not on_host.pin
    for step in range(12):
        expected = dataset.data[batch_indices(30, 4, step, 5)]
        assert torch.equal(source.batch(step), expected) and torch.equal(on_host.batch(step), expected)


def test_the_source_follows_the_data_set_and_the_setting():
    config = TrainConfig(batch_size=4, loader_workers=3)
    source = training_batches(IndexImages(20), config, CPU, DistInfo())
    assert isinstance(source, LoaderBatches) and source.workers == 3
    automatic = training_batches(IndexImages(20), TrainConfig(batch_size=4), CPU, DistInfo())
    assert automatic.workers == auto_workers()
    assert [auto_workers(1, cores) for cores in (1, 2, 3, 16)] == [0, 1, 2, 4]
    assert auto_workers(world_size=4, cores=8) == 1
    with pytest.raises(ValueError, match="fewer than one global batch"):
        training_batches(IndexImages(3), config, CPU, DistInfo())
    with pytest.raises(ValueError, match="loader_workers must be >= 0"):
        TrainConfig(loader_workers=-1)
    assert from_dict(TrainConfig, {"steps": 5}).loader_workers is None  # an older file without the field


def _fit_digits(data: DataSplits, tmp_path, name: str, resume: bool = False, **settings) -> dict[str, Tensor]:
    torch.manual_seed(0)
    model = build_model(ModelConfig(latent_dim=3, hidden=(16,)), data.info, "gate")
    config = TrainConfig(steps=30, batch_size=128, warmup_steps=5, log_every=10, checkpoint_every=10, **settings)
    fit(model, data, config, FitFiles(tmp_path / f"{name}.pt", tmp_path / f"{name}.jsonl", name, resume=resume))
    return model.state_dict()


def _same(a: dict[str, Tensor], b: dict[str, Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fit_on_a_lazy_set_with_workers_is_bit_identical_to_in_memory_training(tmp_path):
    # 1438 examples, 11 batches of 128 per epoch: 30 steps cross two epochs; the transform binarises
    no_workers = _fit_digits(lazy_digits(), tmp_path, "w0", loader_workers=0)
    two_workers = _fit_digits(lazy_digits(), tmp_path, "w2", loader_workers=2)
    assert no_workers_left()
    in_memory = _fit_digits(load_data("digits"), tmp_path, "memory")
    assert _same(two_workers, no_workers) and _same(two_workers, in_memory)


class _PlainBatches:
    """The batches of fit before batches.py: batch_of on the host, then copied to the device."""

    def __init__(self, dataset: Dataset, config: TrainConfig, device: torch.device, info: DistInfo) -> None:
        self.dataset, self.config, self.device = dataset, config, device

    def batch(self, step: int) -> Tensor:
        idx = batch_indices(len(self.dataset), self.config.batch_size, step, self.config.seed)
        return batch_of(self.dataset, idx).to(self.device)

    def close(self) -> None:
        pass


def test_in_memory_training_is_bit_identical_to_plain_batch_of(tmp_path, monkeypatch):
    new = _fit_digits(load_data("digits"), tmp_path, "new")
    monkeypatch.setattr(trainer_module, "training_batches", _PlainBatches)
    old = _fit_digits(load_data("digits"), tmp_path, "old")
    assert _same(new, old)


def test_a_lazy_fit_resumed_with_workers_matches_the_uninterrupted_one(tmp_path):
    whole = _fit_digits(lazy_digits(), tmp_path, "whole", loader_workers=2)

    def stop_at_13(step: int, model) -> None:
        if step == 13:
            raise KeyboardInterrupt

    torch.manual_seed(0)
    data = lazy_digits()
    model = build_model(ModelConfig(latent_dim=3, hidden=(16,)), data.info, "gate")
    config = TrainConfig(steps=30, batch_size=128, warmup_steps=5, log_every=10, checkpoint_every=10,
                         loader_workers=2)
    files = FitFiles(tmp_path / "part.pt", tmp_path / "part.jsonl", "part", resume=True)
    with pytest.raises(KeyboardInterrupt):
        fit(model, data, config, files, on_step=stop_at_13)
    assert no_workers_left()  # ended on the exception too
    resumed = _fit_digits(lazy_digits(), tmp_path, "part", resume=True, loader_workers=2)  # from step 10
    assert _same(resumed, whole)


def test_a_failing_item_stops_fit_with_its_error_and_no_workers_left(tmp_path):
    with pytest.raises(ValueError, match="row 7 is unreadable"):
        _fit_digits(lazy_digits(fail_at=7), tmp_path, "bad", loader_workers=2)
    assert no_workers_left()
