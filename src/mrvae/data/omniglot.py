"""Omniglot 28×28 as distributed with the IWAE code: ``chardata.mat`` (MATLAB v5, images column-major)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..objectives import Likelihood
from .base import ArrayDataset, DataInfo, DataSplits, dynamic_binarise
from .catalog import CATALOG
from .errors import DataError
from .mat import read_mat
from .preprocess import binarise_for_evaluation, hold_out

#: Validation examples held out from the 24,345 training images, as in the IWAE code (Burda et al. 2016).
OMNIGLOT_VALID = 1_345
DESCRIPTION = "Omniglot 28×28 (IWAE chardata.mat), 24,345 train / 8,070 test, dynamically binarised"


def chardata_images(columns: np.ndarray, source: str = "<array>") -> np.ndarray:
    """(784, N) matrix of chardata.mat -> (N, 28, 28) float32 images, upright.

    Each column is one image stored column-major (MATLAB order): pixel (row r, column c) is entry
    ``c * 28 + r``. As the IWAE code does, reshape each column to 28×28 row-major and transpose.
    """
    if columns.ndim != 2 or columns.shape[0] != 784:
        raise DataError(f"{source}: expected a (784, N) matrix of images, got shape {columns.shape}")
    if not np.issubdtype(columns.dtype, np.number):
        raise DataError(f"{source}: expected numeric pixels, got dtype {columns.dtype}")
    images = columns.T.reshape(-1, 28, 28).transpose(0, 2, 1).astype(np.float32)
    if images.size and (images.min() < 0.0 or images.max() > 1.0):
        raise DataError(f"{source}: pixel values lie in [{images.min()}, {images.max()}], expected [0, 1]")
    return np.ascontiguousarray(images)


def _labels(target: np.ndarray | None, n: int) -> torch.Tensor | None:
    if target is None or target.ndim != 2 or target.shape[1] != n:
        return None
    return torch.from_numpy(target.argmax(axis=0).astype(np.int64))


def _take(labels: torch.Tensor | None, index: torch.Tensor) -> torch.Tensor | None:
    return None if labels is None else labels[index]


def load_omniglot(root: Path, seed: int = 0, valid_size: int = OMNIGLOT_VALID) -> DataSplits:
    """``root/omniglot/chardata.mat`` -> splits of (1, 28, 28) float32 images in [0, 1].

    Train: dynamically binarised per batch; valid: ``valid_size`` held out from train by a permutation
    drawn from ``seed``; valid and test binarised once (fixed). Bernoulli likelihood. Alphabet labels
    (argmax of the one-hot ``target`` / ``testtarget``) ride along when the file has them.
    """
    path = CATALOG["omniglot"].file(CATALOG["omniglot"].locate(root), 0)
    content = read_mat(path, ("data", "testdata"))
    train = torch.from_numpy(chardata_images(content["data"], f"{path} ['data']")).unsqueeze(1)
    test = torch.from_numpy(chardata_images(content["testdata"], f"{path} ['testdata']")).unsqueeze(1)
    try:
        targets = read_mat(path, ("target", "testtarget"))
    except DataError:
        targets = {"target": None, "testtarget": None}
    train_labels = _labels(targets["target"], train.shape[0])
    test_labels = _labels(targets["testtarget"], test.shape[0])
    kept, held = hold_out(train.shape[0], valid_size, seed)
    info = DataInfo("omniglot", (1, 28, 28), Likelihood.BERNOULLI, description=DESCRIPTION)
    return DataSplits(info, ArrayDataset(train[kept], _take(train_labels, kept)),
                      ArrayDataset(binarise_for_evaluation(test, "test"), test_labels),
                      valid=ArrayDataset(binarise_for_evaluation(train[held], "valid"), _take(train_labels, held)),
                      train_transform=dynamic_binarise)
