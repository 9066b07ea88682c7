"""The data-set registry: names -> loaders, and the one data-root resolver (argument > MRVAE_DATA > cache)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .amat import DESCRIPTION as BINARIZED_MNIST_DESCRIPTION
from .amat import load_binarized_mnist
from .base import DataSplits
from .celeba import DESCRIPTION as CELEBA_DESCRIPTION
from .celeba import load_celeba
from .cifar import DESCRIPTION as CIFAR10_DESCRIPTION
from .cifar import load_cifar10
from .dsprites import DESCRIPTION as DSPRITES_DESCRIPTION
from .dsprites import load_dsprites
from .dsprites_like import DESCRIPTION as DSPRITES_LIKE_DESCRIPTION
from .dsprites_like import load_dsprites_like
from .embedded import load_digits_splits, load_synthetic_splits
from .idx import DESCRIPTIONS as MNIST_FAMILY_DESCRIPTIONS
from .idx import CONTINUOUS_MNIST_DESCRIPTION, load_mnist_continuous, load_mnist_family
from .omniglot import DESCRIPTION as OMNIGLOT_DESCRIPTION
from .omniglot import load_omniglot
from .svhn import DESCRIPTION as SVHN_DESCRIPTION
from .svhn import load_svhn
from .text import DESCRIPTION as TEXT_DESCRIPTION
from .text import load_text

DATA_ENV_VAR = "MRVAE_DATA"


@dataclass(frozen=True)
class DatasetEntry:
    """A registered data set: ``load(root, seed) -> DataSplits`` and a one-line description."""

    load: Callable[[Path, int], DataSplits]
    description: str
    needs_files: bool = True


DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry(lambda root, seed: load_digits_splits(seed),
                           "scikit-learn's bundled handwritten digits: 1,797 real 8×8 images, binarised",
                           needs_files=False),
    "synthetic": DatasetEntry(lambda root, seed: load_synthetic_splits(seed),
                              "small synthetic Gaussian data (tests, examples)", needs_files=False),
    **{name: DatasetEntry(lambda root, seed, name=name: load_mnist_family(name, root, seed), description)
       for name, description in MNIST_FAMILY_DESCRIPTIONS.items()},
    "mnist-continuous": DatasetEntry(lambda root, seed: load_mnist_continuous(root, seed),
                                     CONTINUOUS_MNIST_DESCRIPTION),
    "binarized-mnist": DatasetEntry(lambda root, seed: load_binarized_mnist(root, seed), BINARIZED_MNIST_DESCRIPTION),
    "omniglot": DatasetEntry(lambda root, seed: load_omniglot(root, seed), OMNIGLOT_DESCRIPTION),
    "cifar10": DatasetEntry(lambda root, seed: load_cifar10(root, seed), CIFAR10_DESCRIPTION),
    "svhn": DatasetEntry(lambda root, seed: load_svhn(root, seed), SVHN_DESCRIPTION),
    "celeba": DatasetEntry(lambda root, seed: load_celeba(root, seed), CELEBA_DESCRIPTION),
    "dsprites": DatasetEntry(lambda root, seed: load_dsprites(root, seed), DSPRITES_DESCRIPTION),
    "dsprites-like": DatasetEntry(lambda root, seed: load_dsprites_like(root, seed), DSPRITES_LIKE_DESCRIPTION,
                                  needs_files=False),
    "text": DatasetEntry(lambda root, seed: load_text(root, seed), TEXT_DESCRIPTION),
}


def data_root(root: str | Path | None = None) -> Path:
    """Where data files live: ``root`` if given, else $MRVAE_DATA, else ~/.cache/mrvae."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "mrvae"


def register_dataset(name: str, entry: DatasetEntry) -> None:
    """Add a data set under ``name`` (an existing name is an error)."""
    if name in DATASETS:
        raise ValueError(f"a data set named {name!r} is already registered")
    DATASETS[name] = entry


def load_data(name: str, root: str | Path | None = None, seed: int = 0) -> DataSplits:
    """Load the registered data set ``name`` from ``data_root(root)``; unknown names list the choices."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; choose one of: {', '.join(sorted(DATASETS))}")
    return DATASETS[name].load(data_root(root), seed)
