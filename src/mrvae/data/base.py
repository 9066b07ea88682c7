"""What a data set is to mrvae: ``DataInfo`` (shape, likelihood), in-memory ``ArrayDataset`` and ``DataSplits``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..objectives import Likelihood

#: A per-batch training transform: (B, ...) batch and the training generator -> (B, ...) batch.
BatchTransform = Callable[[Tensor, torch.Generator], Tensor]


@dataclass(frozen=True)
class DataInfo:
    """One example's ``shape`` (e.g. (1, 8, 8)), the decoder ``likelihood`` it calls for, the Gaussian
    variance ``sigma2`` where that applies, and (for text) the vocabulary size."""

    name: str
    shape: tuple[int, ...]
    likelihood: Likelihood
    sigma2: float = 1.0
    vocab_size: int | None = None
    description: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "likelihood", Likelihood(self.likelihood))
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    @property
    def dims(self) -> int:
        """Number of data dimensions per example (pixels × channels, or tokens)."""
        n = 1
        for s in self.shape:
            n *= s
        return n


class ArrayDataset(Dataset):
    """A data set held as one tensor ``data`` of shape (N, *shape); items are ``data[i]``.

    Optional ``labels`` (N,) and ``factors`` (N, f) ride along for metrics (classes, MIG).
    """

    def __init__(self, data: Tensor, labels: Tensor | None = None, factors: Tensor | None = None) -> None:
        for name, extra in (("labels", labels), ("factors", factors)):
            if extra is not None and extra.shape[0] != data.shape[0]:
                raise ValueError(f"{name} has {extra.shape[0]} rows but data has {data.shape[0]}")
        self.data = data
        self.labels = labels
        self.factors = factors

    def __len__(self) -> int:
        return self.data.shape[0]

    def __getitem__(self, index: int) -> Tensor:
        return self.data[index]


@dataclass
class DataSplits:
    """Train / test (/ valid) splits of one data set, its ``info``, and the per-batch training
    transform (dynamic binarisation, random flips), applied by ``fit()`` to every training batch."""

    info: DataInfo
    train: Dataset
    test: Dataset
    valid: Dataset | None = None
    train_transform: BatchTransform | None = None
    notes: dict = field(default_factory=dict)


def dynamic_binarise(batch: Tensor, generator: torch.Generator) -> Tensor:
    """(B, ...) intensities in [0, 1] -> a fresh Bernoulli sample of the same shape (float)."""
    return torch.bernoulli(batch, generator=generator)


def fixed_binarise(data: Tensor, seed: int) -> Tensor:
    """(N, ...) intensities in [0, 1] -> one Bernoulli sample drawn from ``seed`` (the same every time)."""
    return torch.bernoulli(data, generator=torch.Generator().manual_seed(seed))


def random_hflip(batch: Tensor, generator: torch.Generator) -> Tensor:
    """(B, C, H, W) -> each image flipped left-right with probability 1/2."""
    flip = torch.rand(batch.shape[0], generator=generator, device=generator.device) < 0.5
    flip = flip.to(batch.device).view(-1, *([1] * (batch.dim() - 1)))
    return torch.where(flip, batch.flip(-1), batch)


def batch_of(dataset: Dataset, indices: Tensor) -> Tensor:
    """Stack the items at ``indices`` (K,) into a (K, ...) batch: ``index_select`` for ``ArrayDataset``,
    the data set's own ``batch(indices)`` where it has one, else item by item."""
    if isinstance(dataset, ArrayDataset):
        return dataset.data.index_select(0, indices)
    if hasattr(dataset, "batch"):
        return dataset.batch(indices)
    return torch.stack([torch.as_tensor(dataset[int(i)]) for i in indices])
