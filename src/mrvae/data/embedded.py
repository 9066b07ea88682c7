"""Data that needs no download: scikit-learn's bundled handwritten ``digits`` and a ``synthetic`` set."""

from __future__ import annotations

import math

import torch

from ..objectives import Likelihood
from .base import ArrayDataset, DataInfo, DataSplits, dynamic_binarise, fixed_binarise

DIGITS_TEST_FRACTION = 0.2


def load_digits_splits(seed: int = 0, test_fraction: float = DIGITS_TEST_FRACTION) -> DataSplits:
    """The 1,797 real 8×8 digits of ``sklearn.datasets.load_digits``: (1, 8, 8) images in [0, 1]
    (intensities 0..16 divided by 16), a seeded train/test split, dynamic binarisation for training
    and a fixed seeded binarisation of the test split; Bernoulli likelihood."""
    from sklearn.datasets import load_digits

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction!r}")
    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    labels = torch.as_tensor(bunch.target, dtype=torch.long)
    order = torch.randperm(images.shape[0], generator=torch.Generator().manual_seed(seed))
    n_test = int(round(test_fraction * images.shape[0]))
    test_idx, train_idx = order[:n_test], order[n_test:]
    test_images = fixed_binarise(images[test_idx], seed + 1)
    info = DataInfo("digits", (1, 8, 8), Likelihood.BERNOULLI,
                    description="scikit-learn load_digits: 1,797 real 8×8 handwritten digits, binarised")
    return DataSplits(info, ArrayDataset(images[train_idx], labels[train_idx]),
                      ArrayDataset(test_images, labels[test_idx]), train_transform=dynamic_binarise)


def load_synthetic_splits(seed: int = 0, num_train: int = 512, num_test: int = 128, dim: int = 16,
                          rank: int = 4, noise: float = 0.1) -> DataSplits:
    """Gaussian data (dim,) from a rank-``rank`` linear map plus noise of std ``noise``; Gaussian
    likelihood with σ² = noise². Small and fast: meant for tests and examples."""
    if min(num_train, num_test, dim, rank) < 1 or rank > dim or not noise > 0:
        raise ValueError("synthetic data needs num_train, num_test, dim, rank >= 1, rank <= dim and noise > 0")
    gen = torch.Generator().manual_seed(seed)
    mixing = torch.randn(dim, rank, generator=gen) / math.sqrt(rank)

    def draw(n: int) -> torch.Tensor:
        return torch.randn(n, rank, generator=gen) @ mixing.T + noise * torch.randn(n, dim, generator=gen)

    info = DataInfo("synthetic", (dim,), Likelihood.GAUSSIAN, sigma2=noise * noise,
                    description=f"rank-{rank} Gaussian data in {dim} dimensions, noise std {noise}")
    return DataSplits(info, ArrayDataset(draw(num_train)), ArrayDataset(draw(num_test)))
