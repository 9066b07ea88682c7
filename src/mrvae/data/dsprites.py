"""dSprites (Matthey et al. 2017): the published ``dsprites_ndarray_…_64x64.npz``, read without pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..objectives import Likelihood
from .base import DataInfo, DataSplits
from .catalog import CATALOG
from .errors import DataError
from .preprocess import hold_out
from .stored import ByteImageDataset

#: The five varying factors (the npz's six latents less the constant colour), in the npz's order.
DSPRITES_FACTORS = ("shape", "scale", "orientation", "pos_x", "pos_y")
DSPRITES_FACTOR_SIZES = (3, 6, 40, 32, 32)
#: dSprites has no published split: fractions of the 737,280 images held out (seeded) for test and valid.
DSPRITES_TEST_FRACTION = 0.1
DSPRITES_VALID_FRACTION = 0.1
DESCRIPTION = "dSprites 64×64 binary sprites with 5 factors (shape, scale, orientation, x, y); uint8 storage"


def read_dsprites(path: str | Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The dSprites npz -> ``imgs`` (N, 64, 64) uint8 in {0, 1}, ``latents_classes`` (N, 6) int64 and
    ``latents_values`` (N, 6) float64 (columns: colour, shape, scale, orientation, posX, posY).
    Loaded with ``allow_pickle=False``: the npz's pickled ``metadata`` entry is never read."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            imgs, classes, values = npz["imgs"], npz["latents_classes"], npz["latents_values"]
    except Exception as err:  # zip, npy-header and key errors all mean "not the dSprites npz"
        raise DataError(f"{path}: not a readable dSprites npz ({type(err).__name__}: {err})") from err
    if imgs.dtype != np.uint8 or imgs.ndim != 3:
        raise DataError(f"{path}: 'imgs' must be uint8 of shape (N, H, W), got {imgs.dtype} {imgs.shape}")
    n = imgs.shape[0]
    for key, array in (("latents_classes", classes), ("latents_values", values)):
        if array.shape != (n, 6):
            raise DataError(f"{path}: '{key}' must have shape ({n}, 6), got {array.shape}")
    if not np.issubdtype(classes.dtype, np.integer):
        raise DataError(f"{path}: 'latents_classes' must be integers, got {classes.dtype}")
    if imgs.size and imgs.max() > 1:
        raise DataError(f"{path}: 'imgs' must hold 0/1 pixels, found {imgs.max()}")
    return imgs, classes.astype(np.int64), values.astype(np.float64)


def load_dsprites(root: Path, seed: int = 0) -> DataSplits:
    """``root/dsprites/<npz>`` -> splits of (1, 64, 64) float32 {0, 1} images with ``factors`` (N, 5)
    long (class indices of shape, scale, orientation, pos_x, pos_y, as in ``latents_classes[:, 1:]``).

    Test and valid: 10 % each, held out by a permutation drawn from ``seed``. Bernoulli likelihood.
    Memory: the images stay uint8 (about 3 GB for all 737,280), converted per item/batch
    (``ByteImageDataset``); the splits share one copy.
    """
    path = CATALOG["dsprites"].file(CATALOG["dsprites"].locate(root), 0)
    imgs, classes, _ = read_dsprites(path)
    images = torch.from_numpy(imgs).unsqueeze(1)
    factors = torch.from_numpy(classes[:, 1:].copy())
    n = images.shape[0]
    rest, test = hold_out(n, int(round(DSPRITES_TEST_FRACTION * n)), seed)
    keep, valid = hold_out(rest.shape[0], int(round(DSPRITES_VALID_FRACTION * n)), seed + 1)
    train, valid = rest[keep], rest[valid]

    def split(index: torch.Tensor) -> ByteImageDataset:
        return ByteImageDataset(images, index, scale=1.0, factors=factors[index])

    info = DataInfo("dsprites", tuple(images.shape[1:]), Likelihood.BERNOULLI, description=DESCRIPTION)
    return DataSplits(info, split(train), split(test), valid=split(valid),
                      notes={"factor_names": DSPRITES_FACTORS, "factor_sizes": DSPRITES_FACTOR_SIZES})
