"""The pictures of a run report: fixed test examples, reconstructions and decoded prior samples at each β, as PNG.

Everything is computed from the checkpoints at report time and is a pure function of the
checkpoints, the data and ``seed``: the examples are ``randperm(len(test), seed)[:n]``, the prior
samples ``z ~ N(0, I)`` come from ``torch.Generator().manual_seed(seed + 1)``. PNGs are written
by a small encoder here (zlib, no metadata), so the same inputs give the same bytes.
"""

from __future__ import annotations

import base64
import math
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..beta import BetaRange
from ..training.checkpoint import CheckpointError
from ..beta import Choice
from ..config import Method, RunConfig
from ..data.base import DataInfo, DataSplits, batch_of
from ..models.base import VAE
from ..runs.pipeline import load_trained

#: Smallest displayed tile side in pixels (8×8 digits are upscaled ×5 by pixel repetition).
MIN_TILE_PX = 40
#: Transparent gap between tiles, in displayed pixels (the page background shows through).
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
    colour_type = COLOUR_TYPES[channels]
    rows = np.ascontiguousarray(pixels).reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")


def data_uri(png: bytes) -> str:
    """PNG bytes -> a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


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


@dataclass(frozen=True)
class Picture:
    """One PNG as a ``data:`` URI, with its size in pixels."""

    uri: str
    width: int
    height: int

    @classmethod
    def of(cls, pixels: np.ndarray) -> Picture:
        return cls(data_uri(encode_png(pixels)), int(pixels.shape[1]), int(pixels.shape[0]))


@dataclass
class Painter:
    """Turns (N, *shape) batches of one data set into ``Picture``s, all on one shared value scale."""

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

    def __call__(self, batch: Tensor) -> Picture:
        if self.display is Display.TILES:
            return Picture.of(tile_strip(batch, self.low, self.high))
        return Picture.of(heatmap(batch.reshape(batch.shape[0], -1), self.high))


@dataclass
class MethodImages:
    """One model's pictures: ``reconstructions[i]`` and ``samples[i]`` at ``betas[i]``."""

    method: str
    betas: list[float]
    reconstructions: list[Picture]
    samples: list[Picture]


@dataclass
class RunImages:
    """The pictures of a run report: the test ``examples`` strip, the multi-rate models at the slider βs,
    the β-VAE sweep (each model at its own β), and ``notes`` on anything not drawn."""

    display: Display
    num_examples: int
    seed: int
    examples: Picture | None = None
    multi_rate: list[MethodImages] = field(default_factory=list)
    beta_vae: MethodImages | None = None
    notes: list[str] = field(default_factory=list)


@torch.no_grad()
def decode_at(model: VAE, x: Tensor, z: Tensor, beta: float, beta_range: BetaRange) -> tuple[Tensor, Tensor]:
    """(N, *shape) data and (N, k) prior samples at one β -> (reconstructions decoded from the posterior
    mean, decoded samples), both (N, *shape) likelihood means."""
    model.eval()
    u = beta_range.standardise(torch.full((x.shape[0], 1), float(beta))).to(torch.float32)
    mean, _ = model.encode(x, u)
    return model.mean_output(model.decode(mean, u)), model.mean_output(model.decode(z, u))


def _prior_samples(latent_dim: int, num: int, seed: int) -> Tensor:
    return torch.randn(num, latent_dim, generator=torch.Generator().manual_seed(seed + 1))


def _series(name: str, model: VAE, x: Tensor, betas: list[float], beta_range: BetaRange, paint: Painter,
            seed: int) -> MethodImages:
    z = _prior_samples(model.latent_dim, x.shape[0], seed)
    images = MethodImages(name, list(betas), [], [])
    for beta in betas:
        recon, sample = decode_at(model, x, z, beta, beta_range)
        images.reconstructions.append(paint(recon))
        images.samples.append(paint(sample))
    return images


def _load(path: Path, notes: list[str]):
    try:
        return load_trained(path)
    except (CheckpointError, ValueError) as exc:
        notes.append(f"{path.name}: not drawn ({exc})")
        return None


def run_images(root: Path, config: RunConfig, betas: list[float], num_examples: int = 8, seed: int = 0,
               data: DataSplits | None = None) -> RunImages:
    """Pictures of the run in ``root``: ``num_examples`` fixed test examples, every multi-rate model
    (MR-VAE, YOTO) at each of ``betas``, and each β-VAE checkpoint of the sweep at its own β."""
    from ..runs.pipeline import RunDir, load_run_data

    if num_examples < 1:
        raise ValueError(f"num_examples must be >= 1, got {num_examples}")
    run = RunDir(Path(root))
    if data is None:
        try:
            data = load_run_data(config)
        except (ValueError, OSError) as exc:
            return RunImages(Display.NONE, num_examples, seed, notes=[f"the data set could not be loaded, so no "
                                                                      f"pictures are drawn: {exc}"])
    display, note = display_for(data.info)
    images = RunImages(display, num_examples, seed, notes=[note] if note else [])
    if display is Display.NONE:
        return images
    count = min(num_examples, len(data.test))
    order = torch.randperm(len(data.test), generator=torch.Generator().manual_seed(seed))[:count]
    x = batch_of(data.test, order).to(torch.float32)
    paint = Painter.for_examples(display, x)
    images.examples = paint(x)
    for method in (m for m in (Method.MRVAE, Method.YOTO) if m in config.methods):
        path = run.checkpoint(method)
        trained = _load(path, images.notes) if path.exists() else None
        if trained is not None:
            images.multi_rate.append(_series(method.value, trained.model, x, betas, trained.beta_range, paint, seed))
        elif not path.exists():
            images.notes.append(f"{method.value}: no checkpoint at checkpoints/{path.name}, not drawn")
    if Method.BETA_VAE in config.methods:
        sweep = MethodImages(Method.BETA_VAE.value, [], [], [])
        for beta in config.baseline.betas:
            path = run.checkpoint(Method.BETA_VAE, beta)
            trained = _load(path, images.notes) if path.exists() else None
            if trained is None:
                continue
            one = _series(Method.BETA_VAE.value, trained.model, x, [beta], trained.beta_range, paint, seed)
            sweep.betas.append(beta)
            sweep.reconstructions += one.reconstructions
            sweep.samples += one.samples
        images.beta_vae = sweep if sweep.betas else None
    return images
