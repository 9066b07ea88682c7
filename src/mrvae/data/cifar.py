"""CIFAR-10 from its python batches, unpickled by an unpickler that can only rebuild numpy arrays."""

from __future__ import annotations

import codecs
import io
import pickle
from pathlib import Path

import numpy as np
import torch

from ..objectives import Likelihood
from .base import ArrayDataset, DataInfo, DataSplits, random_hflip
from .catalog import CATALOG
from .errors import DataError
from .preprocess import IMAGE_SIGMA2, hold_out

#: Validation images held out (seeded) from the 50,000 training images: the usual 45k/5k split.
CIFAR10_VALID = 5_000
CIFAR10_ROW = 3 * 32 * 32
DESCRIPTION = "CIFAR-10 32×32 colour images in [0, 1], random h-flips; Gaussian σ² = 1/2"

# numpy's array-rebuilding function, whatever module it lives in for this numpy version.
_RECONSTRUCT = np.empty(0).__reduce__()[0]


def _latin1_encode(text: str, encoding: str = "utf-8") -> bytes:
    """What Python 3 pickles of bytes (protocol < 3) call; only the latin-1 form is admitted."""
    if codecs.lookup(encoding).name != "iso8859-1" or not isinstance(text, str):
        raise pickle.UnpicklingError(f"forbidden _codecs.encode call with encoding {encoding!r}")
    return text.encode("latin-1")


#: The only globals a CIFAR batch may reference: what rebuilds a numpy array (module names of numpy
#: 1.x and 2.x) and the latin-1 bytes constructor of protocol-2 pickles written by Python 3.
ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class ArrayUnpickler(pickle.Unpickler):
    """Unpickles plain containers, numbers, strings, bytes and numpy arrays; any other global
    (a class or function a pickle asks for, e.g. ``os.system``) is refused before it is touched."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}") from None


def load_pickle_batch(path: str | Path) -> dict:
    """A CIFAR python batch -> its dict with str keys (``data``, ``labels``, ...)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataError(f"{path}: cannot read ({err.strerror or err})") from err
    try:
        content = ArrayUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except Exception as err:  # a malformed pickle can raise almost anything; all mean "not a batch"
        raise DataError(f"{path}: not a CIFAR python batch ({type(err).__name__}: {err})") from err
    if not isinstance(content, dict):
        raise DataError(f"{path}: expected a pickled dict, got {type(content).__name__}")
    return {(k.decode("latin-1") if isinstance(k, bytes) else str(k)): v for k, v in content.items()}


def read_cifar_batch(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR-10 batch -> (N, 3, 32, 32) uint8 images (rows hold 1,024 R, then G, then B values,
    each 32×32 row-major) and (N,) int64 labels."""
    batch = load_pickle_batch(path)
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR10_ROW:
        shape = getattr(data, "shape", None)
        raise DataError(f"{path}: 'data' must be a uint8 array of shape (N, {CIFAR10_ROW}), got {type(data).__name__} "
                        f"{shape}")
    if not isinstance(labels, (list, np.ndarray)) or len(labels) != data.shape[0]:
        raise DataError(f"{path}: 'labels' must list {data.shape[0]} labels")
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{path}: 'labels' must be integers, got {labels.dtype}")
    return data.reshape(-1, 3, 32, 32), labels.astype(np.int64)


def _to_float(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).float().div_(255.0)


def load_cifar10(root: Path, seed: int = 0, valid_size: int = CIFAR10_VALID) -> DataSplits:
    """``root/cifar10/cifar-10-batches-py/`` -> splits of (3, 32, 32) float32 images in [0, 1].

    Train: data_batch_1..5 less ``valid_size`` held out by a permutation drawn from ``seed``; random
    horizontal flips per training batch. Test: test_batch. Gaussian likelihood, σ² = 1/2 (see
    ``IMAGE_SIGMA2``). Memory: 4 bytes per value, about 0.74 GB for all 60,000 images.
    """
    files = CATALOG["cifar10"]
    folder = files.locate(root)
    parts = [read_cifar_batch(files.file(folder, i)) for i in range(6)]
    images = np.concatenate([p[0] for p in parts[:5]])
    labels = torch.from_numpy(np.concatenate([p[1] for p in parts[:5]]))
    kept, held = hold_out(images.shape[0], valid_size, seed)
    info = DataInfo("cifar10", (3, 32, 32), Likelihood.GAUSSIAN, sigma2=IMAGE_SIGMA2, description=DESCRIPTION)
    return DataSplits(info, ArrayDataset(_to_float(images[kept.numpy()]), labels[kept]),
                      ArrayDataset(_to_float(parts[5][0]), torch.from_numpy(parts[5][1])),
                      valid=ArrayDataset(_to_float(images[held.numpy()]), labels[held]), train_transform=random_hflip)
