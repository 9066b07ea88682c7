"""SVHN cropped digits: ``train_32x32.mat`` and ``test_32x32.mat`` (X of shape (32, 32, 3, N), digit 0 as label 10)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..objectives import Likelihood
from .base import ArrayDataset, DataInfo, DataSplits
from .catalog import CATALOG
from .errors import DataError
from .mat import read_mat
from .preprocess import IMAGE_SIGMA2, hold_out

#: Validation images held out (seeded) from the 73,257 training images.
SVHN_VALID = 5_000
DESCRIPTION = "SVHN cropped digits 32×32 colour images in [0, 1] (extra set unused); Gaussian σ² = 1/2"


def read_svhn(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """An SVHN .mat file -> (N, 3, 32, 32) uint8 images and (N,) int64 digit labels 0..9 (label 10 -> 0)."""
    content = read_mat(path, ("X", "y"))
    images, labels = content["X"], content["y"]
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise DataError(f"{path}: 'X' must be uint8 of shape (32, 32, 3, N), got {images.dtype} {images.shape}")
    labels = labels.reshape(-1)
    if labels.shape[0] != images.shape[3]:
        raise DataError(f"{path}: {labels.shape[0]} labels in 'y' for {images.shape[3]} images in 'X'")
    if labels.size and (labels.min() < 1 or labels.max() > 10 or np.any(labels != np.round(labels))):
        raise DataError(f"{path}: labels in 'y' must be integers 1..10 (10 stands for digit 0)")
    # X[row, column, channel, n] -> (n, channel, row, column)
    return np.ascontiguousarray(images.transpose(3, 2, 0, 1)), labels.astype(np.int64) % 10


def _to_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).float().div_(255.0)


def load_svhn(root: Path, seed: int = 0, valid_size: int = SVHN_VALID) -> DataSplits:
    """``root/svhn/{train,test}_32x32.mat`` -> splits of (3, 32, 32) float32 images in [0, 1].

    Valid: ``valid_size`` training images held out by a permutation drawn from ``seed``. No flips
    (digits are not mirror-symmetric). Gaussian likelihood, σ² = 1/2. Memory: about 1.2 GB as float32.
    """
    files = CATALOG["svhn"]
    folder = files.locate(root)
    images, labels = read_svhn(files.file(folder, 0))
    test_images, test_labels = read_svhn(files.file(folder, 1))
    kept, held = hold_out(images.shape[0], valid_size, seed)
    info = DataInfo("svhn", (3, 32, 32), Likelihood.GAUSSIAN, sigma2=IMAGE_SIGMA2, description=DESCRIPTION)
    labels_t = torch.from_numpy(labels)
    return DataSplits(info, ArrayDataset(_to_float(images[kept.numpy()]), labels_t[kept]),
                      ArrayDataset(_to_float(test_images), torch.from_numpy(test_labels)),
                      valid=ArrayDataset(_to_float(images[held.numpy()]), labels_t[held]))
