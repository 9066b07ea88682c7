"""Larochelle's statically binarised MNIST: ``binarized_mnist_{train,valid,test}.amat`` text files (50k/10k/10k)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..objectives import Likelihood
from .base import ArrayDataset, DataInfo, DataSplits
from .catalog import CATALOG
from .errors import DataError

AMAT_WIDTH = 784
DESCRIPTION = "statically binarised MNIST (Larochelle's .amat files), 28×28, 50k/10k/10k"


def parse_amat(raw: bytes, source: str = "<bytes>", width: int = AMAT_WIDTH) -> np.ndarray:
    """.amat text (one example per line, ``width`` whitespace-separated 0/1 values) -> (N, width) uint8.

    Trailing blank lines are ignored; anything else that is not exactly ``width`` values of 0 or 1 per
    line raises ``DataError`` naming the line.
    """
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as err:
        raise DataError(f"{source}: not ASCII text (byte 0x{raw[err.start]:02x} at offset {err.start})") from err
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise DataError(f"{source}: no rows")
    out = np.empty((len(lines), width), dtype=np.uint8)
    for number, line in enumerate(lines, start=1):
        tokens = line.split()
        if len(tokens) != width:
            raise DataError(f"{source}: line {number} has {len(tokens)} values, expected {width}")
        joined = "".join(tokens)
        if len(joined) != width or joined.strip("01"):
            bad = next(t for t in tokens if t not in ("0", "1"))
            raise DataError(f"{source}: line {number} holds {bad[:20]!r}, expected only 0 or 1")
        out[number - 1] = np.frombuffer(joined.encode("ascii"), dtype=np.uint8) - ord("0")
    return out


def read_amat(path: str | Path, width: int = AMAT_WIDTH) -> np.ndarray:
    """A .amat file -> (N, width) uint8 array of 0/1."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from err
    return parse_amat(raw, str(path), width)


def load_binarized_mnist(root: Path, seed: int = 0) -> DataSplits:
    """``root/binarized-mnist/binarized_mnist_{train,valid,test}.amat`` -> splits of (1, 28, 28)
    float32 images in {0, 1}: the published fixed binarisation, no per-batch transform; Bernoulli.
    ``seed`` is unused (the splits are published)."""
    files = CATALOG["binarized-mnist"]
    folder = files.locate(root)
    splits = [torch.from_numpy(read_amat(files.file(folder, i))).float().view(-1, 1, 28, 28) for i in range(3)]
    info = DataInfo("binarized-mnist", (1, 28, 28), Likelihood.BERNOULLI, description=DESCRIPTION)
    return DataSplits(info, ArrayDataset(splits[0]), ArrayDataset(splits[2]), valid=ArrayDataset(splits[1]))
