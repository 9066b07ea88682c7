"""MATLAB v5 ``.mat`` files read with ``scipy.io.loadmat``; any failure becomes a ``DataError`` naming the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import DataError


def read_mat(path: str | Path, keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """The variables ``keys`` of a MATLAB v5 file -> {key: array}; a missing key is a ``DataError``."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        content = loadmat(path, variable_names=list(keys))
    except Exception as err:  # scipy raises many types for malformed files; all mean "not a valid .mat"
        raise DataError(f"{path}: not a readable MATLAB v5 file ({type(err).__name__}: {err})") from err
    missing = [k for k in keys if k not in content]
    if missing:
        raise DataError(f"{path}: lacks variable(s) {', '.join(missing)}; expected {', '.join(keys)}")
    return {k: np.asarray(content[k]) for k in keys}
