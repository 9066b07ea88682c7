"""Training batch ``s`` on the training device: the rows ``batch_indices(..., s, rank, world_size)`` of the
training split, from a tensor held on the device or through a ``DataLoader`` with worker processes.

Either way the batch of step ``s`` is a pure function of (seed, s, rank, world_size), so a resumed run sees
exactly the batches an uninterrupted one would. ``training_batches`` picks the path: an in-memory
``ArrayDataset`` moves to the device once (``ArrayBatches``); any other data set (decoded lazily, one item at
a time) is read by ``config.loader_workers`` worker processes ahead of the training step (``LoaderBatches``).
Per-batch random transforms are not applied here: they stay in the training process with its generator.
"""

from __future__ import annotations

import itertools
import os
import signal
from collections.abc import Iterator
from typing import Protocol

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from ..config import TrainConfig
from ..data.base import ArrayDataset, batch_of
from .distributed import DistInfo
from .schedule import batch_indices

#: An in-memory training split moves to the device once when it takes at most this fraction of the
#: device's free memory (the rest is left to the model, its activations and the optimiser); a larger one
#: is copied batch by batch from pinned host memory.
DEVICE_DATA_FRACTION = 0.25
#: Batches each loader worker prepares ahead of the training step (``DataLoader(prefetch_factor=...)``).
PREFETCH_BATCHES = 2
#: The most loader workers the automatic choice (``loader_workers: null``) starts per training process.
MAX_AUTO_WORKERS = 4


class BatchSource(Protocol):
    """What ``Trainer.train_step`` asks for: ``batch(step)``, a (batch_size, *shape) tensor on the training
    device, and ``close()``, which ends any worker processes (the source reopens if asked again)."""

    def batch(self, step: int) -> Tensor: ...

    def close(self) -> None: ...


def auto_workers(world_size: int = 1, cores: int | None = None) -> int:
    """The ``loader_workers: null`` choice: one core per training process is left to it, and the rest of its
    share of this machine's cores (``cores`` defaults to those this process may run on) read data, at most
    ``MAX_AUTO_WORKERS``: min(4, cores / world_size − 1), 0 (read in the training process) on one core."""
    cores = len(os.sched_getaffinity(0)) if cores is None else cores
    return max(0, min(MAX_AUTO_WORKERS, cores // max(1, world_size) - 1))


def fits_on_device(num_bytes: int, device: torch.device) -> bool:
    """Whether ``num_bytes`` of training data should live on ``device``: always on the CPU (nothing moves),
    on CUDA when it is at most ``DEVICE_DATA_FRACTION`` of the free memory, on MPS of the recommended
    working set not yet allocated."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return num_bytes <= DEVICE_DATA_FRACTION * free
    if device.type == "mps":
        room = torch.mps.recommended_max_memory() - torch.mps.current_allocated_memory()
        return num_bytes <= DEVICE_DATA_FRACTION * room
    return True


def training_batches(dataset: Dataset, config: TrainConfig, device: torch.device, info: DistInfo) -> BatchSource:
    """The batch source of ``fit`` for the training split ``dataset``: ``ArrayBatches`` for an in-memory
    ``ArrayDataset``, else ``LoaderBatches`` with ``config.loader_workers`` workers (null: ``auto_workers``)."""
    steps = StepBatchSampler(len(dataset), config.batch_size, config.seed, info.rank, info.world_size)
    if isinstance(dataset, ArrayDataset):
        return ArrayBatches(dataset, steps, device)
    workers = auto_workers(info.world_size) if config.loader_workers is None else config.loader_workers
    return LoaderBatches(dataset, steps, device, workers)


class StepBatchSampler(Sampler[list[int]]):
    """The index batches of steps ``start``, ``start + 1``, ... without end: step s gives the batch_size
    positions ``batch_indices(num_examples, batch_size, s, seed, rank, world_size)`` as a list. Set
    ``start`` before iterating to begin at another step."""

    def __init__(self, num_examples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 start: int = 0) -> None:
        batch_indices(num_examples, batch_size, 0, seed, rank, world_size)  # refuses a split smaller than a batch
        self.num_examples, self.batch_size, self.seed = num_examples, batch_size, seed
        self.rank, self.world_size, self.start = rank, world_size, start

    def indices(self, step: int) -> Tensor:
        """(batch_size,) int64 positions of the batch of ``step`` (a view of the epoch's permutation)."""
        return batch_indices(self.num_examples, self.batch_size, step, self.seed, self.rank, self.world_size)

    def __iter__(self) -> Iterator[list[int]]:
        for step in itertools.count(self.start):
            yield self.indices(step).tolist()


class ArrayBatches:
    """Batches of an in-memory ``ArrayDataset`` (N, *shape): the tensor moves to the device once when it
    fits (``fits_on_device``; on the CPU it is used in place, no copy) and each batch is an ``index_select``
    there, the (batch_size,) index moved per step without waiting for it. A split too large for the device
    stays on the host: its rows are gathered there, pinned and copied without blocking (CUDA).
    ``resident`` forces the choice (None: True when the data is on the device already or ``fits_on_device``;
    False needs the data on the host)."""

    def __init__(self, dataset: ArrayDataset, steps: StepBatchSampler, device: torch.device,
                 resident: bool | None = None) -> None:
        data = dataset.data
        self.steps, self.device = steps, device
        if resident is None:
            resident = data.device == device or fits_on_device(data.nbytes, device)
        self.resident = resident
        self.data = data.to(device) if self.resident else data
        self.pin = not self.resident and device.type == "cuda"

    def batch(self, step: int) -> Tensor:
        """(batch_size, *shape) rows of step ``step`` on the device (the dataset's dtype)."""
        index = self.steps.indices(step)
        if self.resident:
            return self.data.index_select(0, index.to(self.device, non_blocking=True))
        rows = self.data.index_select(0, index)
        if self.pin:
            rows = rows.pin_memory()
        return rows.to(self.device, non_blocking=self.pin)

    def close(self) -> None:
        """Nothing to end: no worker processes."""


class _BatchesOf(Dataset):
    """A data set whose item ``indices`` (a list of K positions) is the whole batch ``batch_of(dataset,
    indices)`` (K, *shape): a loader worker builds one step's batch as the training process would."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __getitem__(self, indices: list[int]) -> Tensor:
        return batch_of(self.dataset, torch.tensor(indices, dtype=torch.long))


def _ignore_interrupts(worker_id: int) -> None:
    """Loader workers ignore SIGINT (a Ctrl-C reaches the whole process group): the training process
    finishes its step, checkpoints and then ends them (they also end when it dies). SIGTERM keeps its
    default: it is how multiprocessing and the loader end a worker that does not stop when asked."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LoaderBatches:
    """Batches of a lazily read data set through a ``DataLoader``: ``workers`` processes (0: the training
    process itself) each build whole batches (``batch_of``) of the steps a ``StepBatchSampler`` hands out,
    ``PREFETCH_BATCHES`` each ahead, into pinned memory when training on CUDA; workers persist.

    The loader opens at the first ``batch(step)`` (after any ``Trainer.load_state_dict``, so a resumed run
    starts at its checkpoint's step) and reopens from ``step`` whenever it is asked for a step other than
    the next one. ``close()`` ends the workers (``fit`` calls it on every exit, exceptions included).
    """

    def __init__(self, dataset: Dataset, steps: StepBatchSampler, device: torch.device, workers: int) -> None:
        if workers < 0:
            raise ValueError(f"loader_workers must be >= 0 (or null for automatic), got {workers}")
        self.dataset, self.steps, self.device, self.workers = dataset, steps, device, workers
        self.pin = device.type == "cuda"
        self._loader: DataLoader | None = None
        self._iterator: Iterator[Tensor] | None = None
        self._next_step = -1

    def _open(self, step: int) -> None:
        """Start handing out batches from ``step``: the loader (and its workers) made once, iterated anew."""
        if self._loader is None:
            many = self.workers > 0
            self._loader = DataLoader(
                _BatchesOf(self.dataset), batch_size=None, sampler=self.steps, num_workers=self.workers,
                pin_memory=self.pin, prefetch_factor=PREFETCH_BATCHES if many else None,
                persistent_workers=many, worker_init_fn=_ignore_interrupts if many else None,
                generator=torch.Generator().manual_seed(self.steps.seed))  # leaves the global RNG alone
        self.steps.start = step
        self._iterator = iter(self._loader)
        self._next_step = step

    def batch(self, step: int) -> Tensor:
        """(batch_size, *shape) batch of step ``step`` on the device, as ``batch_of`` builds it."""
        if self._iterator is None or step != self._next_step:
            self._open(step)
        rows = next(self._iterator)
        self._next_step = step + 1
        return rows.to(self.device, non_blocking=self.pin)

    def close(self) -> None:
        """End the worker processes (and the pinning thread) now; a later ``batch`` starts new ones."""
        iterator, self._iterator, self._loader = self._iterator, None, None
        shutdown = getattr(iterator, "_shutdown_workers", None)  # what the iterator's __del__ calls
        if shutdown is not None:
            shutdown()
