"""A user's own data as ``DataSplits``: tensors, numpy arrays or torch Datasets, the likelihood inferred or given.

The rules (docs/user_data.md):

- **Examples** are the rows: data of shape (N, *shape) hold N examples of ``shape``. A Dataset's items are a
  tensor (or numpy array), or a tuple whose first element is one (``(x, label)``); labels are not used.
- **Likelihood**, unless given: every value 0 or 1 -> ``bernoulli``; otherwise integer (or bool) data are
  refused (token ids need ``likelihood="categorical"``, intensities need converting to floats); otherwise
  ``gaussian``. A given likelihood is checked: ``bernoulli`` needs values in [0, 1]; ``categorical`` needs
  integer ids in [0, vocab_size) (vocab_size defaults to the largest id + 1; id 0 is padding).
- **σ²** of a Gaussian likelihood, unless given: the mean over data dimensions of the per-dimension
  variance of the training split (scale-free: scaling the data by c leaves the β axis unchanged).
- **Test split**, unless given: ``round(test_fraction · N)`` examples (at least 1) held out: the first of
  ``torch.randperm(N)`` drawn from a generator seeded with ``seed``; the rest train, in that order.
- **Memory**: tensors and arrays are used as they are (float32 / int64 copies where the dtype differs, and
  the split copies its rows). A Dataset is read into one tensor when that takes at most
  ``max_in_memory_bytes`` (float32 or int64 values); a larger one is left where it is and read item by
  item while training (one pass over it first checks the values and infers the likelihood and σ²).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, IterableDataset

from ..objectives import Likelihood
from .base import ArrayDataset, DataInfo, DataSplits

#: What ``user_splits`` accepts for a split.
UserData = Tensor | np.ndarray | Dataset

DEFAULT_TEST_FRACTION = 0.1
#: A Dataset whose values take more bytes than this is read lazily (item by item) instead of into memory.
DEFAULT_IN_MEMORY_BYTES = 1 << 30
#: The name of user data in ``DataInfo`` and run configs.
USER_DATA_NAME = "user"
_CHUNK = 1024  # examples summarised at a time


def user_splits(train: UserData, test: UserData | None = None, *, likelihood: Likelihood | str | None = None,
                sigma2: float | None = None, vocab_size: int | None = None,
                test_fraction: float = DEFAULT_TEST_FRACTION, seed: int = 0,
                max_in_memory_bytes: int = DEFAULT_IN_MEMORY_BYTES) -> DataSplits:
    """``train`` (and ``test``) -> ``DataSplits`` named ``"user"`` with the inferred or given likelihood and σ²
    (see the module docstring for every rule). ValueError / TypeError name the problem: empty data, one
    number per example, shapes that differ, NaN or ±inf values, values the likelihood cannot model."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    train_source = _source(train, "train", max_in_memory_bytes)
    if test is None:
        test_source = train_source
        test_indices, train_indices = _held_out(train_source.count, test_fraction, seed)
        split = f"held out: {len(test_indices)} of {train_source.count} examples, seed {seed}"
    else:
        test_source = _source(test, "test", max_in_memory_bytes)
        if test_source.shape != train_source.shape:
            raise ValueError(f"train examples have shape {train_source.shape} but test examples have "
                             f"{test_source.shape}; both splits need one shape")
        train_indices, test_indices = torch.arange(train_source.count), torch.arange(test_source.count)
        split = "given"
    train_summary, test_summary = _summarise(train_source, train_indices), _summarise(test_source, test_indices)
    _check_finite(train_summary, test_summary, shared=test is None)
    kind, vocab = _likelihood(likelihood, vocab_size, train_source.dtype, train_summary, test_summary)
    sigma2, sigma2_note = _sigma2(kind, sigma2, train_summary)
    dtype = torch.long if kind is Likelihood.CATEGORICAL else torch.float32
    train_set, test_set = train_source.dataset(train_indices, dtype), test_source.dataset(test_indices, dtype)
    stated = f", σ² = {sigma2:.6g} ({sigma2_note})" if kind is Likelihood.GAUSSIAN else ""
    description = (f"user data: {len(train_set)} train / {len(test_set)} test examples of shape "
                   f"{train_source.shape}; {kind.value}{stated}; test split {split}; "
                   f"{_fingerprint(train_set, test_set)}")
    info = DataInfo(USER_DATA_NAME, train_source.shape, kind, sigma2, vocab, description)
    notes = {"split": split, "seed": seed, "sigma2": sigma2_note or None}
    return DataSplits(info, train_set, test_set, notes=notes)


def _held_out(count: int, test_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """(test, train) indices of the seeded held-out split (module docstring)."""
    num_test = max(1, round(test_fraction * count))
    if count - num_test < 1:
        raise ValueError(f"{count} example(s) are too few to hold out a test split (test_fraction "
                         f"{test_fraction:g}); pass more data or a test split")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed))
    return order[:num_test], order[num_test:]


@dataclass(frozen=True, eq=False)
class _Source:
    """One split as given: ``count`` examples of ``shape`` and ``dtype``, held as one ``tensor`` or read
    item by item from the user's ``items`` Dataset."""

    what: str
    count: int
    shape: tuple[int, ...]
    dtype: torch.dtype
    tensor: Tensor | None = None
    items: Dataset | None = None

    def rows(self, indices: Tensor) -> Tensor:
        """(K,) indices -> (K, *shape) examples in the given dtype."""
        if self.tensor is not None:
            return self.tensor.index_select(0, indices)
        rows = torch.empty((len(indices), *self.shape), dtype=self.dtype)
        for row, index in enumerate(indices.tolist()):
            rows[row] = self.item(index)
        return rows

    def item(self, index: int) -> Tensor:
        tensor = _item_tensor(self.items[index], self.what, index, self.shape)
        if tensor.is_floating_point() and not self.dtype.is_floating_point:
            raise ValueError(f"{self.what} item {index} holds {tensor.dtype} values but item 0 holds "
                             f"{self.dtype}; give every item one dtype")
        return tensor

    def dataset(self, indices: Tensor, dtype: torch.dtype) -> Dataset:
        """The examples at ``indices`` as ``dtype``: an ``ArrayDataset`` in memory, else a lazy view."""
        if self.tensor is not None:
            return ArrayDataset(self.rows(indices).to(dtype).contiguous())
        return DatasetItems(self, indices, dtype)


class DatasetItems(Dataset):
    """A lazily read split of a user's Dataset: item ``i`` is the example at ``indices[i]`` of the source
    (its tensor, without the label) as ``dtype``. Nothing is copied; each item is read when asked for."""

    def __init__(self, source: _Source, indices: Tensor, dtype: torch.dtype) -> None:
        self.source, self.indices, self.dtype = source, indices, dtype

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> Tensor:
        return self.source.item(int(self.indices[index])).to(self.dtype)


def _source(data: Any, what: str, max_in_memory_bytes: int) -> _Source:
    """A Tensor, numpy array or Dataset -> ``_Source`` (a Dataset read into memory when it fits the limit)."""
    if isinstance(data, np.ndarray):
        if data.dtype == object or not (np.issubdtype(data.dtype, np.number) or data.dtype == np.bool_):
            raise TypeError(f"{what} is a numpy array of dtype {data.dtype}; expected numbers")
        data = torch.from_numpy(np.ascontiguousarray(data))
    if isinstance(data, Tensor):
        return _tensor_source(data.detach().cpu(), what)
    if isinstance(data, IterableDataset) or not isinstance(data, Dataset) or not hasattr(data, "__len__"):
        raise TypeError(f"{what} must be a torch Tensor, a numpy array or a torch Dataset with a length "
                        f"(map-style), got {type(data).__name__}")
    count = len(data)
    if count == 0:
        raise ValueError(f"{what} is empty: it has no examples")
    first = _item_tensor(data[0], what, 0, None)
    source = _Source(what, count, tuple(first.shape), first.dtype, items=data)
    value_bytes = 8 if not (first.is_floating_point() or first.dtype == torch.bool) else 4
    if count * max(1, first.numel()) * value_bytes <= max_in_memory_bytes:
        return _tensor_source(source.rows(torch.arange(count)), what)
    return source


def _tensor_source(data: Tensor, what: str) -> _Source:
    if data.is_complex():
        raise TypeError(f"{what} holds complex numbers; expected real values")
    if data.dim() < 2:
        raise ValueError(f"{what} has shape {tuple(data.shape)}: expected (N, *shape), N examples of at least "
                         f"one dimension (one number per example: reshape to (N, 1))")
    if data.shape[0] == 0:
        raise ValueError(f"{what} is empty: it has shape {tuple(data.shape)}")
    if data.numel() == 0:
        raise ValueError(f"{what} examples have no values (shape {tuple(data.shape[1:])})")
    return _Source(what, data.shape[0], tuple(data.shape[1:]), data.dtype, tensor=data)


def _item_tensor(item: Any, what: str, index: int, shape: tuple[int, ...] | None) -> Tensor:
    """A Dataset item (a tensor / array, or a tuple starting with one) -> its tensor, checked against ``shape``."""
    if isinstance(item, tuple):  # (x, label, ...); a list is an example's values
        if not item:
            raise TypeError(f"{what} item {index} is an empty tuple; expected (x, ...) or x")
        item = item[0]
    try:
        tensor = torch.as_tensor(item)
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"{what} item {index} is a {type(item).__name__}; expected a tensor, a numpy array "
                        f"or a tuple whose first element is one") from None
    if shape is None:
        if tensor.dim() == 0 or tensor.numel() == 0:
            raise ValueError(f"{what} item 0 has shape {tuple(tensor.shape)}: each example needs at least one "
                             f"value in at least one dimension")
    elif tuple(tensor.shape) != shape:
        raise ValueError(f"{what} item {index} has shape {tuple(tensor.shape)} but item 0 has {shape}; "
                         f"every example needs the same shape")
    return tensor


@dataclass
class _Summary:
    """What one pass over a split finds: examples with NaN or ±inf (how many, the first index), the value
    range, whether all values are 0/1 or whole numbers, and per-dimension sums and sums of squares (float64)
    for the variance, all over the finite examples."""

    what: str
    bad: int
    first_bad: int | None
    count: int
    low: float
    high: float
    binary: bool
    integral: bool
    sums: Tensor
    squares: Tensor


def _chunks(source: _Source, indices: Tensor) -> Iterator[tuple[Tensor, Tensor]]:
    for start in range(0, len(indices), _CHUNK):
        chunk = indices[start:start + _CHUNK]
        yield chunk, source.rows(chunk)


def _summarise(source: _Source, indices: Tensor) -> _Summary:
    """One pass over the examples at ``indices``. Real values are read as the float32 that training sees
    (so float64 data beyond float32's range count as ±inf)."""
    dims = math.prod(source.shape)
    summary = _Summary(source.what, 0, None, len(indices), math.inf, -math.inf, True, True,
                       torch.zeros(dims, dtype=torch.float64), torch.zeros(dims, dtype=torch.float64))
    for chunk, x in _chunks(source, indices):
        values = (x.float() if x.is_floating_point() else x).reshape(len(chunk), -1).double()
        finite = torch.isfinite(values).all(dim=1)
        if not bool(finite.all()):
            summary.bad += int((~finite).sum())
            first = int(chunk[~finite].min())
            summary.first_bad = first if summary.first_bad is None else min(summary.first_bad, first)
            continue
        summary.low, summary.high = min(summary.low, float(values.min())), max(summary.high, float(values.max()))
        summary.binary &= bool(((values == 0) | (values == 1)).all())
        summary.integral &= bool((values == values.round()).all())
        summary.sums += values.sum(dim=0)
        summary.squares += values.square().sum(dim=0)
    return summary


def _check_finite(train: _Summary, test: _Summary, shared: bool) -> None:
    """ValueError naming the split with NaN or ±inf values (``shared``: both summaries cover one input)."""
    groups = [(train, test)] if shared else [(train,), (test,)]
    for group in groups:
        bad = sum(s.bad for s in group)
        if bad:
            first = min(s.first_bad for s in group if s.first_bad is not None)
            raise ValueError(f"{group[0].what} holds NaN or ±inf values in {bad} example(s), the first at index "
                             f"{first}; remove or replace them")


def _likelihood(given: Likelihood | str | None, vocab_size: int | None, dtype: torch.dtype, train: _Summary,
                test: _Summary) -> tuple[Likelihood, int | None]:
    """The likelihood given (checked against the values) or inferred, and the vocabulary size (categorical)."""
    low, high = min(train.low, test.low), max(train.high, test.high)
    values = f"values in [{low:g}, {high:g}]"
    if given is None:
        if train.binary and test.binary:
            kind = Likelihood.BERNOULLI
        elif not dtype.is_floating_point:
            raise ValueError(f"integer data ({dtype}, {values}) need a stated likelihood: "
                             f"likelihood='categorical' for token ids (model arch 'lstm'), or convert them to "
                             f"floats (e.g. x / 255 for 8-bit intensities) for a Gaussian or Bernoulli one")
        else:
            kind = Likelihood.GAUSSIAN
    else:
        kind = Likelihood(given)
    if vocab_size is not None and kind is not Likelihood.CATEGORICAL:
        raise ValueError(f"vocab_size applies to the categorical likelihood only, not {kind.value}")
    if kind is Likelihood.BERNOULLI and not (low >= 0.0 and high <= 1.0):
        raise ValueError(f"the Bernoulli likelihood needs values in [0, 1]; the data have {values}")
    if kind is not Likelihood.CATEGORICAL:
        return kind, None
    if not (train.integral and test.integral) or low < 0:
        raise ValueError(f"the categorical likelihood needs whole-number token ids >= 0; the data have {values}"
                         f"{'' if train.integral and test.integral else ' and fractions'}")
    vocab = int(high) + 1 if vocab_size is None else int(vocab_size)
    if vocab < 2 or high >= vocab:
        raise ValueError(f"vocab_size {vocab} must be >= 2 and above every token id (largest {high:g})")
    return kind, vocab


def _sigma2(kind: Likelihood, given: float | None, train: _Summary) -> tuple[float, str]:
    """σ² of a Gaussian likelihood and how it was chosen ('' for other likelihoods)."""
    if kind is not Likelihood.GAUSSIAN:
        if given is not None:
            raise ValueError(f"sigma2 applies to the Gaussian likelihood only, not {kind.value}")
        return 1.0, ""
    if given is not None:
        if isinstance(given, bool) or not (isinstance(given, (int, float)) and math.isfinite(given) and given > 0):
            raise ValueError(f"sigma2 must be a finite number > 0, got {given!r}")
        return float(given), "given"
    mean = train.sums / train.count
    variance = float((train.squares / train.count - mean.square()).clamp_min(0.0).mean())
    if not variance > 0:
        raise ValueError("the training examples are all the same, so σ² cannot be inferred from their "
                         "variance; pass sigma2")
    return variance, "mean per-dimension variance of the training split"


def _fingerprint(train: Dataset, test: Dataset) -> str:
    """'sha256 …' of the values of both splits held in memory; lazily read splits are not fingerprinted."""
    if not (isinstance(train, ArrayDataset) and isinstance(test, ArrayDataset)):
        return "read lazily (not fingerprinted)"
    digest = hashlib.sha256()
    for split in (train, test):
        digest.update(memoryview(split.data.numpy()).cast("B"))
    return f"sha256 {digest.hexdigest()[:16]}"
