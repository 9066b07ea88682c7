"""The data-set registry: names -> loaders, and the one data-root resolver (argument > MRVAE_DATA > cache)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .base import DataSplits
from .embedded import load_digits_splits, load_synthetic_splits

DATA_ENV_VAR = "MRVAE_DATA"


@dataclass(frozen=True)
class DatasetEntry:
    """A registered data set: ``load(root, seed) -> DataSplits`` and a one-line description."""

    load: Callable[[Path, int], DataSplits]
    description: str
    needs_files: bool = True


DATASETS: dict[str, DatasetEntry] = {
    "digits": DatasetEntry(lambda root, seed: load_digits_splits(seed), load_digits_splits.__doc__.split("\n")[0],
                           needs_files=False),
    "synthetic": DatasetEntry(lambda root, seed: load_synthetic_splits(seed),
                              "small synthetic Gaussian data (tests, examples)", needs_files=False),
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
