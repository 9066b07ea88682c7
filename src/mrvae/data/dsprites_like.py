"""dsprites-like: procedurally drawn 64×64 binary sprites on dSprites' factor grid, rendered on demand.

Not dSprites: the same grid (3 shapes × 6 scales × 40 orientations × 32 × 32 positions = 737,280
images) drawn by our own rasteriser, so pixels differ from the published set. For β-TCVAE / MIG offline.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..objectives import Likelihood
from .base import DataInfo, DataSplits

SHAPES = ("square", "ellipse", "heart")
FACTOR_NAMES = ("shape", "scale", "orientation", "pos_x", "pos_y")
FACTOR_SIZES = (3, 6, 40, 32, 32)
NUM_IMAGES = math.prod(FACTOR_SIZES)
IMAGE_SIZE = 64
#: Factor values, as in dSprites: scale 0.5..1, orientation 0..2π (both ends), positions 0..1.
SCALES = torch.linspace(0.5, 1.0, 6, dtype=torch.float64)
ORIENTATIONS = torch.linspace(0.0, 2.0 * math.pi, 40, dtype=torch.float64)
POSITIONS = torch.linspace(0.0, 1.0, 32, dtype=torch.float64)
#: Pixels per shape unit at scale 1, and the distance of the extreme centres from the border: a
#: shape reaches at most 1.15 units from its centre, so every sprite lies fully inside the image.
UNIT_PIXELS = 10.0
MARGIN = 13.0
DEFAULT_SIZES = {"train": 20_000, "valid": 2_000, "test": 10_000}
DESCRIPTION = "dsprites-like: procedural sprites on dSprites' 737,280-image factor grid (not dSprites), on demand"

_STRIDES = tuple(math.prod(FACTOR_SIZES[i + 1:]) for i in range(len(FACTOR_SIZES)))


def classes_from_index(index: Tensor) -> Tensor:
    """(N,) grid indices in [0, 737280) -> (N, 5) long factor classes (shape, scale, orientation,
    pos_x, pos_y); the last factor varies fastest, as in dSprites' ``latents_classes``."""
    index = torch.as_tensor(index, dtype=torch.long)
    if index.numel() and (index.min() < 0 or index.max() >= NUM_IMAGES):
        raise ValueError(f"grid indices must lie in [0, {NUM_IMAGES}), got [{index.min()}, {index.max()}]")
    return torch.stack([(index // stride) % size for stride, size in zip(_STRIDES, FACTOR_SIZES)], dim=1)


def index_from_classes(classes: Tensor) -> Tensor:
    """(N, 5) factor classes -> (N,) grid indices; the inverse of ``classes_from_index``."""
    classes = _check_classes(classes)
    return (classes * torch.tensor(_STRIDES)).sum(dim=1)


def factor_values(classes: Tensor) -> Tensor:
    """(N, 5) classes -> (N, 5) float64 values: shape 1..3, scale, orientation (radians), pos_x, pos_y."""
    classes = _check_classes(classes)
    return torch.stack([classes[:, 0].double() + 1.0, SCALES[classes[:, 1]], ORIENTATIONS[classes[:, 2]],
                        POSITIONS[classes[:, 3]], POSITIONS[classes[:, 4]]], dim=1)


def _check_classes(classes: Tensor) -> Tensor:
    classes = torch.as_tensor(classes, dtype=torch.long)
    if classes.dim() != 2 or classes.shape[1] != len(FACTOR_SIZES):
        raise ValueError(f"factor classes must have shape (N, 5), got {tuple(classes.shape)}")
    sizes = torch.tensor(FACTOR_SIZES)
    if classes.numel() and ((classes < 0).any() or (classes >= sizes).any()):
        raise ValueError(f"factor classes must lie in [0, {FACTOR_SIZES}) per column")
    return classes


def render(classes: Tensor, chunk: int = 2048) -> Tensor:
    """(N, 5) factor classes -> (N, 1, 64, 64) float32 images in {0, 1}.

    A pixel is on when its centre lies inside the shape: the square |u|, |v| <= 0.8; the ellipse
    u² + (2v)² <= 1 (semi-axes 1 and 1/2, long axis along x at orientation 0); the heart
    (x² + y² − 1)³ <= x² y³ with x = 1.1·u, y = 0.1 − 1.1·v (upright at orientation 0). (u, v) are
    the pixel's offsets from the sprite centre, rotated by −orientation and divided by
    ``UNIT_PIXELS`` × scale; the centre runs from ``MARGIN`` to 64 − ``MARGIN`` pixels along x and y.
    """
    classes = _check_classes(classes)
    out = torch.zeros(classes.shape[0], 1, IMAGE_SIZE, IMAGE_SIZE)
    for start in range(0, classes.shape[0], chunk):
        c = classes[start:start + chunk]
        block = out[start:start + chunk, 0]
        for shape in range(len(SHAPES)):
            rows = (c[:, 0] == shape).nonzero().view(-1)
            if rows.numel():
                block[rows] = _inside(shape, *_local_coordinates(c[rows])).float()
    return out


# Per-factor lookup tables in float32, computed once in float64, so that any batching of the same
# factors gives bit-identical pixels (no vectorised cos/sin in the loop).
_COS = ORIENTATIONS.cos().float()
_SIN = ORIENTATIONS.sin().float()
_CENTRES = (MARGIN + (IMAGE_SIZE - 2.0 * MARGIN) * POSITIONS).float()
_SIZES = (UNIT_PIXELS * SCALES).float()
_PIXELS = torch.arange(IMAGE_SIZE, dtype=torch.float32) + 0.5


def _local_coordinates(c: Tensor) -> tuple[Tensor, Tensor]:
    """(K, 5) classes -> (K, 64, 64) shape coordinates (u, v) of every pixel centre."""
    cos, sin = _COS[c[:, 2]].view(-1, 1, 1), _SIN[c[:, 2]].view(-1, 1, 1)
    size = _SIZES[c[:, 1]].view(-1, 1, 1)
    dx = (_PIXELS.view(1, 1, -1) - _CENTRES[c[:, 3]].view(-1, 1, 1)) / size
    dy = (_PIXELS.view(1, -1, 1) - _CENTRES[c[:, 4]].view(-1, 1, 1)) / size
    return cos * dx + sin * dy, cos * dy - sin * dx


def _inside(shape: int, u: Tensor, v: Tensor) -> Tensor:
    """Shape index and (K, 64, 64) coordinates -> (K, 64, 64) bool: the pixel centre lies inside."""
    if shape == 0:
        return torch.maximum(u.abs(), v.abs()) <= 0.8
    if shape == 1:
        return u.square() + (2.0 * v).square() <= 1.0
    x, y = 1.1 * u, 0.1 - 1.1 * v
    x2 = x.square()
    return (x2 + y.square() - 1.0).pow(3) <= x2 * y.pow(3)


class DSpritesLikeImages(Dataset):
    """The dsprites-like images of the given factor ``classes`` (N, 5), rendered when first asked for:
    items are (1, 64, 64) float32 in {0, 1}; ``factors`` is ``classes``.

    Rendered images are kept as uint8 (4 KiB each; the buffer's pages are only touched as images are
    drawn), so later epochs cost an index and a conversion. ``cache=False`` renders every time.
    """

    def __init__(self, classes: Tensor, cache: bool = True) -> None:
        self.factors = _check_classes(classes)
        self.labels = None
        n = self.factors.shape[0]
        self._images = torch.zeros(n, 1, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8) if cache else None
        self._ready = torch.zeros(n, dtype=torch.bool) if cache else None

    def __len__(self) -> int:
        return self.factors.shape[0]

    def __getitem__(self, i: int) -> Tensor:
        if self._ready is not None and self._ready[i]:
            return self._images[i].float()
        return self.batch(torch.tensor([i]))[0]

    def batch(self, indices: Tensor) -> Tensor:
        """(K,) positions -> (K, 1, 64, 64) images; those not drawn yet are rendered in one call."""
        indices = torch.as_tensor(indices, dtype=torch.long).view(-1) % max(len(self), 1)
        if self._images is None:
            return render(self.factors[indices])
        todo = indices[~self._ready[indices]].unique()
        if todo.numel():
            self._images[todo] = render(self.factors[todo]).to(torch.uint8)
            self._ready[todo] = True
        return self._images.index_select(0, indices).float()

    def __getitems__(self, indices: list[int]) -> list[Tensor]:
        """Batched fetch used by ``torch.utils.data.DataLoader``."""
        return list(self.batch(torch.as_tensor(indices, dtype=torch.long)).unbind(0))


def load_dsprites_like(root: Path | None = None, seed: int = 0, num_train: int = DEFAULT_SIZES["train"],
                       num_valid: int = DEFAULT_SIZES["valid"], num_test: int = DEFAULT_SIZES["test"]) -> DataSplits:
    """Disjoint random subsets of the 737,280-image grid, drawn from ``seed`` (train, valid, test
    sizes as given), rendered on demand, with ``factors`` (N, 5). Bernoulli likelihood; ``root`` unused."""
    sizes = (num_train, num_valid, num_test)
    if min(sizes) < 0 or sum(sizes) > NUM_IMAGES or num_train == 0 or num_test == 0:
        raise ValueError(f"need num_train, num_test >= 1, num_valid >= 0 and a total <= {NUM_IMAGES}, got {sizes}")
    order = torch.randperm(NUM_IMAGES, generator=torch.Generator().manual_seed(seed))
    train, valid = order[:num_train], order[num_train:num_train + num_valid]
    test = order[num_train + num_valid:sum(sizes)]
    info = DataInfo("dsprites-like", (1, IMAGE_SIZE, IMAGE_SIZE), Likelihood.BERNOULLI, description=DESCRIPTION)
    return DataSplits(info, DSpritesLikeImages(classes_from_index(train)), DSpritesLikeImages(classes_from_index(test)),
                      valid=DSpritesLikeImages(classes_from_index(valid)) if num_valid else None,
                      notes={"factor_names": FACTOR_NAMES, "factor_sizes": FACTOR_SIZES, "grid_index": {
                          "train": train, "valid": valid, "test": test}})
