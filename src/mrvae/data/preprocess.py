"""Shared preprocessing: seeded hold-outs, the fixed evaluation binarisation, σ² of Gaussian image sets."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import fixed_binarise

#: Seeds of the fixed binarisation of the validation and test images of grey-level sets. They do not
#: depend on the run's seed, so every run is evaluated on the same binary images.
VALID_BINARISATION_SEED = 1
TEST_BINARISATION_SEED = 2

#: σ² of the Gaussian likelihood of [0, 1] colour images (CIFAR-10, SVHN, CelebA). The paper's image
#: models use the squared error summed over pixels (PAPER.md §6), which is the Gaussian negative
#: log-likelihood with 1/(2σ²) = 1, i.e. σ² = 1/2, up to the constant (d/2)·log(2πσ²).
IMAGE_SIGMA2 = 0.5


def hold_out(n: int, count: int, seed: int) -> tuple[Tensor, Tensor]:
    """Split indices 0..n-1 by a permutation drawn from ``seed``: -> ((n - count,) kept, (count,) held out).

    Both index tensors are sorted, so the kept examples stay in file order.
    """
    if not 0 <= count <= n:
        raise ValueError(f"cannot hold out {count} of {n} examples; expected 0 <= count <= {n}")
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    held = order[:count].sort().values
    kept = order[count:].sort().values
    return kept, held


def binarise_for_evaluation(images: Tensor, split: str) -> Tensor:
    """(N, ...) intensities in [0, 1] -> one fixed Bernoulli sample; ``split`` is "valid" or "test"."""
    seeds = {"valid": VALID_BINARISATION_SEED, "test": TEST_BINARISATION_SEED}
    if split not in seeds:
        raise ValueError(f"split must be 'valid' or 'test', got {split!r}")
    return fixed_binarise(images, seeds[split])
