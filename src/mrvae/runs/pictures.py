"""The pictures of a run, drawn by ``mrvae run`` from its checkpoints: test examples, reconstructions and
decoded prior samples at each β, written as PNG files with a JSON index into ``RUN/pictures/``.

Layout (beside ``curves/``)::

    pictures/index.json             what was drawn (format below); written last
    pictures/examples.png           the fixed test examples, one row of tiles
    pictures/mrvae/recon-0.png      MR-VAE reconstructions at betas[0] (the posterior mean decoded)
    pictures/mrvae/sample-0.png     MR-VAE decoded prior samples at betas[0]
    pictures/yoto/...               the same for YOTO
    pictures/beta-vae/recon-0.png   the sweep's first β-VAE at its own β (betas[0] of its series)

``index.json``: ``{"format": 1, "display": "tiles"|"heatmap"|"none", "num_examples", "seed", "notes": [...],
"examples": PICTURE | null, "series": [{"method", "betas": [...], "reconstructions": [PICTURE...],
"samples": [PICTURE...]}]}`` with ``PICTURE = {"file": path relative to pictures/, "width", "height"}``.

Everything is a pure function of the checkpoints, the data and ``seed`` (the run's ``eval.seed``): the
examples are ``randperm(len(test), seed)[:n]``, the prior samples ``z ~ N(0, I)`` come from
``torch.Generator().manual_seed(seed + 1)``, every model runs on the CPU, and the PNGs are written by a
small encoder here (zlib, no metadata), so the same inputs give the same bytes. Each file is written to
a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..beta import Choice
from ..config import Method, RunConfig
from ..data.base import DataInfo, DataSplits, batch_of
from ..models.base import VAE
from ..training.checkpoint import CheckpointError
from .folder import RunDir
from .methods import load_trained

PICTURES_DIR = "pictures"
INDEX_NAME = "index.json"
INDEX_FORMAT = 1
#: Test examples (and prior samples) drawn by ``mrvae run``.
NUM_EXAMPLES = 8
#: Smallest tile side in pixels (8×8 digits are upscaled ×5 by pixel repetition).
MIN_TILE_PX = 40
#: Transparent gap between tiles, in pixels (the page background shows through).
GAP_PX = 4
#: PNG colour type of an (H, W, channels) array: grey, grey + alpha, RGB, RGBA.
COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}


class Display(Choice):
    """How a data set's examples are drawn: image tiles, a heatmap of flat vectors, or not at all."""

    TILES = "tiles"
    HEATMAP = "heatmap"
    NONE = "none"


def display_for(info: DataInfo) -> tuple[Display, str]:
    """The display of ``info``'s examples and, when they are not drawn as tiles, a note saying why."""
    if info.vocab_size is not None:
        return Display.NONE, (f"{info.name} is text (token sequences over a vocabulary of {info.vocab_size}): "
                              "no pictures are drawn; see the curves and the table.")
    if len(info.shape) == 3 and info.shape[0] in (1, 3):
        return Display.TILES, ""
    if len(info.shape) == 1:
        return Display.HEATMAP, (f"{info.name} examples are flat vectors of {info.shape[0]} values: each row of a "
                                 "heatmap is one example (columns are dimensions; blue negative, red positive, "
                                 "one colour scale shared by every picture).")
    return Display.NONE, f"{info.name} examples have shape {tuple(info.shape)}: no pictures are drawn."


def encode_png(pixels: np.ndarray) -> bytes:
    """(H, W) grey or (H, W, C) uint8 array, C = 2 (grey, alpha), 3 (RGB) or 4 (RGBA) -> PNG bytes
    (8 bit, no metadata, deterministic)."""
    channels = 1 if pixels.ndim == 2 else (pixels.shape[2] if pixels.ndim == 3 else 0)
    if pixels.dtype != np.uint8 or channels not in COLOUR_TYPES:
        raise ValueError(f"encode_png needs a (H, W) or (H, W, 2|3|4) uint8 array, got {pixels.dtype} {pixels.shape}")
    height, width = pixels.shape[:2]
    rows = np.ascontiguousarray(pixels).reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, COLOUR_TYPES[channels], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def tile_strip(batch: Tensor, low: float, high: float) -> np.ndarray:
    """(N, C, H, W) images, C in {1, 3}, values mapped from [low, high] to [0, 255] -> one row of tiles,
    (H', W', C + 1) uint8 with an alpha channel (opaque tiles, transparent ``GAP_PX`` gaps), each tile
    upscaled by pixel repetition to at least ``MIN_TILE_PX``."""
    if batch.ndim != 4 or batch.shape[1] not in (1, 3):
        raise ValueError(f"tile_strip needs (N, C, H, W) images with C 1 or 3, got shape {tuple(batch.shape)}")
    n, channels, height, width = batch.shape
    scale = max(1, math.ceil(MIN_TILE_PX / max(height, width)))
    values = ((batch.detach().double().cpu().numpy() - low) / (high - low)).clip(0.0, 1.0)
    tiles = np.rint(values * 255).astype(np.uint8).transpose(0, 2, 3, 1)  # (N, H, W, C)
    tiles = tiles.repeat(scale, axis=1).repeat(scale, axis=2)
    th, tw = height * scale, width * scale
    canvas = np.zeros((th, n * tw + (n - 1) * GAP_PX, channels + 1), dtype=np.uint8)
    for i in range(n):
        left = i * (tw + GAP_PX)
        canvas[:, left:left + tw, :channels] = tiles[i]
        canvas[:, left:left + tw, channels] = 255
    return canvas


def heatmap(batch: Tensor, vmax: float) -> np.ndarray:
    """(N, d) vectors -> (H', W', 3) uint8 heatmap, one row per example, diverging colours on [-vmax, vmax]."""
    from matplotlib import colormaps

    if batch.ndim != 2:
        raise ValueError(f"heatmap needs (N, d) vectors, got shape {tuple(batch.shape)}")
    n, d = batch.shape
    cell_w = max(2, math.ceil(160 / d))
    values = (batch.detach().double().cpu().numpy() / (2 * vmax) + 0.5).clip(0.0, 1.0)
    rgb = np.rint(colormaps["RdBu_r"](values)[..., :3] * 255).astype(np.uint8)
    return rgb.repeat(12, axis=0).repeat(cell_w, axis=1)


@dataclass
class Painter:
    """Turns (N, *shape) batches of one data set into uint8 pixel arrays, all on one shared value scale."""

    display: Display
    low: float
    high: float

    @classmethod
    def for_examples(cls, display: Display, examples: Tensor) -> Painter:
        """The scale of ``examples`` (N, *shape): [min(0, x.min), max(1, x.max)] for tiles (identity for
        data in [0, 1]); ±max|x| for heatmaps."""
        if display is Display.TILES:
            return cls(display, min(0.0, float(examples.min())), max(1.0, float(examples.max())))
        vmax = max(float(examples.abs().max()), 1e-6)
        return cls(display, -vmax, vmax)

    def __call__(self, batch: Tensor) -> np.ndarray:
        if self.display is Display.TILES:
            return tile_strip(batch, self.low, self.high)
        return heatmap(batch.reshape(batch.shape[0], -1), self.high)


def write_atomic(path: Path, content: bytes) -> Path:
    """Write ``content`` to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)
    return path


@dataclass(frozen=True)
class PictureWriter:
    """Writes PNG files below ``folder`` and describes each as the index records it."""

    folder: Path

    def png(self, name: str, pixels: np.ndarray) -> dict[str, Any]:
        write_atomic(self.folder / name, encode_png(pixels))
        return {"file": name, "width": int(pixels.shape[1]), "height": int(pixels.shape[0])}


@torch.no_grad()
def decode_at(model: VAE, x: Tensor, z: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """(N, *shape) data and (N, k) prior samples at one β -> (reconstructions decoded from the posterior
    mean, decoded samples), both (N, *shape) likelihood means; u comes from ``model.u_of``."""
    model.eval()
    u = model.u_of(torch.full((x.shape[0],), float(beta)))
    mean, _ = model.encode(x, u)
    return model.mean_output(model.decode(mean, u)), model.mean_output(model.decode(z, u))


def prior_samples(latent_dim: int, num: int, seed: int) -> Tensor:
    """(num, latent_dim) draws of z ~ N(0, I) from ``torch.Generator().manual_seed(seed + 1)``."""
    return torch.randn(num, latent_dim, generator=torch.Generator().manual_seed(seed + 1))


def _series(writer: PictureWriter, method: Method, models: Iterator[tuple[VAE, float]], x: Tensor,
            paint: Painter, seed: int) -> dict[str, Any]:
    """Draw each (model, β) pair of ``models`` into ``method``'s folder -> the series' index entry."""
    series: dict[str, Any] = {"method": method.value, "betas": [], "reconstructions": [], "samples": []}
    for i, (model, beta) in enumerate(models):
        recon, sample = decode_at(model, x, prior_samples(model.latent_dim, x.shape[0], seed), beta)
        series["betas"].append(float(beta))
        series["reconstructions"].append(writer.png(f"{method.value}/recon-{i}.png", paint(recon)))
        series["samples"].append(writer.png(f"{method.value}/sample-{i}.png", paint(sample)))
    return series


def _load(run: RunDir, path: Path, notes: list[str]) -> VAE | None:
    """The model of the checkpoint at ``path``, or None with a note saying why it is not drawn."""
    name = path.relative_to(run.root).as_posix()
    if not path.exists():
        notes.append(f"{name}: no checkpoint, not drawn")
        return None
    try:
        return load_trained(path).model
    except (CheckpointError, ValueError) as exc:
        notes.append(f"{name}: not drawn ({exc})")
        return None


def _draw(run: RunDir, config: RunConfig, x: Tensor, paint: Painter, seed: int,
          index: dict[str, Any]) -> None:
    """Every multi-rate model (MR-VAE, YOTO) at each β of the evaluation grid, and each β-VAE of the
    sweep at its own β, into ``index["series"]``."""
    writer = PictureWriter(run.root / PICTURES_DIR)
    index["examples"] = writer.png("examples.png", paint(x))
    for method in (m for m in (Method.MRVAE, Method.YOTO) if m in config.methods):
        model = _load(run, run.checkpoint(method), index["notes"])
        if model is not None:
            grid = [float(b) for b in model.beta_range.grid(config.eval.num_betas)]
            index["series"].append(_series(writer, method, ((model, b) for b in grid), x, paint, seed))
    if Method.BETA_VAE in config.methods:
        loaded = ((_load(run, run.checkpoint(Method.BETA_VAE, b), index["notes"]), b) for b in config.baseline.betas)
        sweep = _series(writer, Method.BETA_VAE, ((m, b) for m, b in loaded if m is not None), x, paint, seed)
        if sweep["betas"]:
            index["series"].append(sweep)


def write_pictures(run: RunDir, config: RunConfig, data: DataSplits, num_examples: int = NUM_EXAMPLES,
                   seed: int | None = None) -> Path:
    """Draw the pictures of the run in ``run`` from its checkpoints into ``run/pictures/`` (module
    docstring): ``num_examples`` test examples chosen with ``seed`` (default: the run's ``eval.seed``).
    Returns the path of ``index.json``, which is written last."""
    if num_examples < 1:
        raise ValueError(f"num_examples must be >= 1, got {num_examples}")
    seed = config.eval.seed if seed is None else int(seed)
    display, note = display_for(data.info)
    count = min(num_examples, len(data.test))
    index: dict[str, Any] = {"format": INDEX_FORMAT, "display": display.value, "num_examples": count, "seed": seed,
                             "notes": [note] if note else [], "examples": None, "series": []}
    if display is not Display.NONE:
        order = torch.randperm(len(data.test), generator=torch.Generator().manual_seed(seed))[:count]
        x = batch_of(data.test, order).to(torch.float32)
        _draw(run, config, x, Painter.for_examples(display, x), seed, index)
    text = json.dumps(index, indent=1, ensure_ascii=False) + "\n"
    return write_atomic(run.root / PICTURES_DIR / INDEX_NAME, text.encode("utf-8"))
