"""IDX files (gzipped or not) and the MNIST family read from them: MNIST, Fashion-MNIST, KMNIST."""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..objectives import Likelihood
from .base import ArrayDataset, DataInfo, DataSplits, dynamic_binarise
from .catalog import CATALOG
from .errors import DataError
from .preprocess import binarise_for_evaluation, hold_out

#: IDX type code -> big-endian element type (LeCun's format description).
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8"),
}
GZIP_MAGIC = b"\x1f\x8b"

#: Validation examples held out (seeded) from the 60,000 training images: the usual 50k/10k/10k.
MNIST_FAMILY_VALID = 10_000

DESCRIPTIONS = {
    "mnist": "MNIST handwritten digits (IDX), 28×28, dynamically binarised",
    "fashion-mnist": "Fashion-MNIST clothing images (IDX), 28×28, dynamically binarised",
    "kmnist": "Kuzushiji-MNIST cursive Japanese characters (IDX), 28×28, dynamically binarised",
}


def parse_idx(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """IDX bytes -> the array they hold, native byte order; any malformation raises ``DataError``.

    Header: two zero bytes, a type code, the number of dimensions k, then k big-endian uint32 sizes;
    the data follows, big-endian, and must fill the file exactly.
    """
    if len(raw) < 4:
        raise DataError(f"{source}: truncated IDX header ({len(raw)} bytes, expected at least 4)")
    magic = int.from_bytes(raw[:4], "big")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise DataError(f"{source}: wrong IDX magic number 0x{magic:08x} (expected 0x0000TTKK with type "
                        f"TT in {sorted(hex(t) for t in IDX_TYPES)})")
    dtype, ndim = IDX_TYPES[raw[2]], raw[3]
    if ndim == 0:
        raise DataError(f"{source}: IDX header declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{source}: truncated IDX header ({len(raw)} bytes, expected {header})")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "trailing bytes"
        raise DataError(f"{source}: {problem}: IDX shape {shape} needs {expected} bytes, the file has {len(raw)}")
    data = np.frombuffer(raw, dtype=dtype, count=math.prod(shape), offset=header)
    return data.reshape(shape).astype(dtype.newbyteorder("="))


def decompress_if_gzip(raw: bytes, source: str) -> bytes:
    """Bytes -> the same bytes, or their gunzipped content when they start with the gzip magic."""
    if not raw.startswith(GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{source}: corrupt or truncated gzip data ({err})") from err


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file, gzipped or not (detected from its content), -> its array."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from err
    return parse_idx(decompress_if_gzip(raw, str(path)), str(path))


@dataclass(frozen=True)
class IdxImages:
    """Raw MNIST-family arrays: uint8 images (N, H, W) and integer labels (N,), train and test."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def _images_and_labels(image_path: Path, label_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(f"{image_path}: expected uint8 images of shape (N, H, W), got {images.dtype} {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{label_path}: expected labels of shape (N,), got {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise DataError(f"{label_path}: {labels.shape[0]} labels for {images.shape[0]} images in {image_path.name}")
    return images, labels


def read_idx_folder(name: str, folder: Path) -> IdxImages:
    """The four IDX files of MNIST-family set ``name`` in ``folder`` (names as published) -> arrays."""
    files = CATALOG[name]
    train = _images_and_labels(files.file(folder, 0), files.file(folder, 1))
    test = _images_and_labels(files.file(folder, 2), files.file(folder, 3))
    if train[0].shape[1:] != test[0].shape[1:]:
        raise DataError(f"{files.file(folder, 2)}: test images are {test[0].shape[1:]}, train {train[0].shape[1:]}")
    return IdxImages(*train, *test)


def load_mnist_family(name: str, root: Path, seed: int = 0, folder: Path | None = None,
                      valid_size: int = MNIST_FAMILY_VALID) -> DataSplits:
    """MNIST, Fashion-MNIST or KMNIST from ``root/<name>/`` (or ``folder``; Fashion-MNIST falls back to
    Debian's /usr/share/datasets/fashion-mnist) -> splits of (1, 28, 28) float32 images in [0, 1].

    Train: grey levels / 255, dynamically binarised per batch. Valid: ``valid_size`` images held out
    from the 60,000 by a permutation drawn from ``seed``. Valid and test: one fixed binarisation.
    Bernoulli likelihood; labels ride along.
    """
    if name not in DESCRIPTIONS:
        raise ValueError(f"unknown MNIST-family set {name!r}; choose one of: {', '.join(DESCRIPTIONS)}")
    raw = read_idx_folder(name, folder if folder is not None else CATALOG[name].locate(root))
    images = torch.from_numpy(raw.train_images).unsqueeze(1).float().div_(255.0)
    labels = torch.from_numpy(raw.train_labels.astype(np.int64))
    kept, held = hold_out(images.shape[0], valid_size, seed)
    test_images = torch.from_numpy(raw.test_images).unsqueeze(1).float().div_(255.0)
    info = DataInfo(name, tuple(images.shape[1:]), Likelihood.BERNOULLI, description=DESCRIPTIONS[name])
    valid = None
    if valid_size:
        valid = ArrayDataset(binarise_for_evaluation(images[held], "valid"), labels[held])
    return DataSplits(info, ArrayDataset(images[kept], labels[kept]),
                      ArrayDataset(binarise_for_evaluation(test_images, "test"),
                                   torch.from_numpy(raw.test_labels.astype(np.int64))),
                      valid=valid, train_transform=dynamic_binarise)


#: The Gaussian decoder variance of ``mnist-continuous`` (grey levels in [0, 1]); only β·σ² matters.
CONTINUOUS_MNIST_SIGMA2 = 1.0
CONTINUOUS_MNIST_DESCRIPTION = ("MNIST grey levels in [0, 1], flattened to (784,), Gaussian likelihood with "
                                f"σ² = {CONTINUOUS_MNIST_SIGMA2:g} (the linear VAE's data, PAPER.md §5)")


def load_mnist_continuous(root: Path, seed: int = 0, folder: Path | None = None,
                          valid_size: int = MNIST_FAMILY_VALID) -> DataSplits:
    """MNIST's files (as ``load_mnist_family("mnist", ...)``) as flat (784,) grey levels in [0, 1], not
    binarised, with a Gaussian likelihood of variance ``CONTINUOUS_MNIST_SIGMA2``: the data of the linear VAE."""
    raw = read_idx_folder("mnist", folder if folder is not None else CATALOG["mnist"].locate(root))

    def flat(images: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(images).reshape(images.shape[0], -1).float().div_(255.0)

    images, test_images = flat(raw.train_images), flat(raw.test_images)
    labels = torch.from_numpy(raw.train_labels.astype(np.int64))
    kept, held = hold_out(images.shape[0], valid_size, seed)
    info = DataInfo("mnist-continuous", (images.shape[1],), Likelihood.GAUSSIAN, sigma2=CONTINUOUS_MNIST_SIGMA2,
                    description=CONTINUOUS_MNIST_DESCRIPTION)
    valid = ArrayDataset(images[held], labels[held]) if valid_size else None
    return DataSplits(info, ArrayDataset(images[kept], labels[kept]),
                      ArrayDataset(test_images, torch.from_numpy(raw.test_labels.astype(np.int64))), valid=valid)
