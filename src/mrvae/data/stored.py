"""Image sets kept as uint8 in memory and converted to float32 per item or per batch (1/4 the memory)."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import Dataset


class ByteImageDataset(Dataset):
    """Items ``images[index[i]] / scale`` as float32 (C, H, W); ``images`` is a shared uint8 tensor
    (M, C, H, W) and ``index`` (N,) picks this split's rows, so several splits share one copy.

    ``factors`` (N, f) and ``labels`` (N,) ride along like ``ArrayDataset``'s; ``batch(indices)``
    converts a whole (K,) index batch at once.
    """

    def __init__(self, images: Tensor, index: Tensor | None = None, scale: float = 255.0,
                 factors: Tensor | None = None, labels: Tensor | None = None) -> None:
        if images.dtype != torch.uint8:
            raise TypeError(f"images must be a uint8 tensor, got {images.dtype}")
        self.images = images
        self.index = torch.arange(images.shape[0]) if index is None else index.long()
        for name, extra in (("labels", labels), ("factors", factors)):
            if extra is not None and extra.shape[0] != self.index.shape[0]:
                raise ValueError(f"{name} has {extra.shape[0]} rows but the split has {self.index.shape[0]}")
        self.scale = float(scale)
        self.factors = factors
        self.labels = labels

    def __len__(self) -> int:
        return self.index.shape[0]

    def __getitem__(self, i: int) -> Tensor:
        return self.images[self.index[i]].float().div_(self.scale)

    def batch(self, indices: Tensor) -> Tensor:
        """(K,) positions in this split -> (K, C, H, W) float32 batch."""
        rows = self.index.index_select(0, torch.as_tensor(indices, dtype=torch.long).view(-1))
        return self.images.index_select(0, rows).float().div_(self.scale)

    def __getitems__(self, indices: list[int]) -> list[Tensor]:
        """Batched fetch used by ``torch.utils.data.DataLoader``."""
        return list(self.batch(torch.as_tensor(indices, dtype=torch.long)).unbind(0))
