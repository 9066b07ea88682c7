"""CelebA aligned faces: ``img_align_celeba/`` JPEGs and ``list_eval_partition.txt``, centre-cropped to 148 and
resized to 64×64 lazily, one image per item (Pillow)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..objectives import Likelihood
from .base import DataInfo, DataSplits, random_hflip
from .catalog import CATALOG
from .errors import DataError
from .preprocess import IMAGE_SIGMA2

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

CROP = 148
SIZE = 64
PARTITIONS = {0: "train", 1: "valid", 2: "test"}
DESCRIPTION = "CelebA aligned faces, centre crop 148 then 64×64 in [0, 1], random h-flips; Gaussian σ² = 1/2"


def crop_and_resize(image: PILImage, crop: int = CROP, size: int = SIZE) -> Tensor:
    """A PIL image -> (3, size, size) float32 in [0, 1]: RGB, centre crop ``crop``×``crop`` (offsets
    ``(W - crop) // 2`` and ``(H - crop) // 2``: 15 and 35 for CelebA's 178×218), then a bilinear
    (antialiased) resize to ``size``×``size``."""
    from PIL import Image

    width, height = image.size
    if width < crop or height < crop:
        raise ValueError(f"image of size {width}×{height} is smaller than the {crop}×{crop} crop")
    left, top = (width - crop) // 2, (height - crop) // 2
    image = image.convert("RGB").crop((left, top, left + crop, top + crop))
    image = image.resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1).float().div_(255.0)


class CelebAImages(Dataset):
    """Lazily loaded CelebA images: item i is ``folder / names[i]`` cropped and resized, (3, 64, 64)
    float32 in [0, 1]; a file that cannot be decoded raises ``DataError`` naming it."""

    def __init__(self, folder: Path, names: list[str], crop: int = CROP, size: int = SIZE) -> None:
        self.folder = Path(folder)
        self.names = list(names)
        self.crop = crop
        self.size = size

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> Tensor:
        from PIL import Image, UnidentifiedImageError

        path = self.folder / self.names[i]
        try:
            with Image.open(path) as image:
                return crop_and_resize(image, self.crop, self.size)
        except (OSError, UnidentifiedImageError, ValueError) as err:
            raise DataError(f"{path}: cannot decode image ({err})") from err


def read_partition(path: Path) -> dict[str, list[str]]:
    """``list_eval_partition.txt`` (lines "000001.jpg 0"; 0 train, 1 valid, 2 test) -> split -> file names."""
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err})") from err
    splits: dict[str, list[str]] = {name: [] for name in PARTITIONS.values()}
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2 or fields[1] not in ("0", "1", "2") or "/" in fields[0] or fields[0].startswith("."):
            raise DataError(f"{path}: line {number} is {line.strip()[:40]!r}, expected '<file>.jpg <0|1|2>'")
        splits[PARTITIONS[int(fields[1])]].append(fields[0])
    if not splits["train"]:
        raise DataError(f"{path}: lists no training images (partition 0)")
    return splits


def load_celeba(root: Path, seed: int = 0) -> DataSplits:
    """``root/celeba/`` -> lazily loaded train / valid / test splits of the published partition
    (162,770 / 19,867 / 19,962), (3, 64, 64) float32 in [0, 1]; random horizontal flips per training
    batch; Gaussian likelihood, σ² = 1/2. Every listed image must be present. ``seed`` is unused."""
    files = CATALOG["celeba"]
    folder = files.locate(root)
    images, partition = files.file(folder, 0), files.file(folder, 1)
    splits = read_partition(partition)
    present = {entry.name for entry in images.iterdir()}
    for names in splits.values():
        for name in names:
            if name not in present:
                raise DataError(f"{images / name}: missing (listed in {partition.name})")
    info = DataInfo("celeba", (3, SIZE, SIZE), Likelihood.GAUSSIAN, sigma2=IMAGE_SIGMA2, description=DESCRIPTION)
    valid = CelebAImages(images, splits["valid"]) if splits["valid"] else None
    return DataSplits(info, CelebAImages(images, splits["train"]), CelebAImages(images, splits["test"]),
                      valid=valid, train_transform=random_hflip)
