"""What `mrvae data list | check | download` call: text for the terminal, DataError for a user's mistakes."""

from __future__ import annotations

from pathlib import Path

from ..data.check import check_dataset as _check_dataset
from ..data.check import list_datasets as _list_datasets
from ..data.download import download_dataset as _download_dataset


def list_datasets(root: str | Path | None = None) -> str:
    """A table of every registered data set: name, present / missing / built in, description."""
    return _list_datasets(root)


def check_dataset(name: str, root: str | Path | None = None) -> tuple[bool, str]:
    """-> (ready, report): each file the reader needs, present or missing at the exact path expected."""
    return _check_dataset(name, root)


def download_dataset(name: str, root: str | Path | None = None, progress: bool = True) -> str:
    """Download ``name`` from its canonical location with checksums -> a report, one line per file.
    Raises ``DataError`` (a ValueError) for a failed or corrupt download or a set with no download."""
    return "\n".join(_download_dataset(name, root, progress=progress))
