"""The pictures of a run report, read from the run folder's ``pictures/`` (PNG files and ``index.json``,
written by ``mrvae run``; format in ``mrvae.runs.pictures``) and embedded as ``data:`` URIs.

Nothing is drawn here: a run folder without pictures (or with an unreadable index) gives a report
with a note in their place.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..config import Method
from .figures import method_of

PICTURES_DIR = "pictures"
INDEX_NAME = "index.json"
INDEX_FORMAT = 1
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def data_uri(png: bytes) -> str:
    """PNG bytes -> a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


@dataclass(frozen=True)
class Picture:
    """One PNG as a ``data:`` URI, with its size in pixels."""

    uri: str
    width: int
    height: int


@dataclass
class Series:
    """One method's pictures: ``reconstructions[i]`` and ``samples[i]`` at ``betas[i]`` (for the β-VAE
    sweep, each model at its own β)."""

    method: str
    betas: list[float]
    reconstructions: list[Picture]
    samples: list[Picture]


@dataclass
class RunImages:
    """The pictures of a run: the test ``examples`` strip, the multi-rate models at the grid βs, the
    β-VAE sweep, and ``notes`` on anything not drawn. ``examples`` is None when nothing was drawn."""

    num_examples: int = 0
    seed: int = 0
    examples: Picture | None = None
    multi_rate: list[Series] = field(default_factory=list)
    beta_vae: Series | None = None
    notes: list[str] = field(default_factory=list)


def _picture(folder: Path, entry: dict[str, Any]) -> Picture:
    """An index entry ``{"file", "width", "height"}`` -> the Picture of that PNG file below ``folder``."""
    name = PurePosixPath(entry["file"])
    if name.is_absolute() or ".." in name.parts:
        raise ValueError(f"picture path {entry['file']!r} leaves {PICTURES_DIR}/")
    png = (folder / name).read_bytes()
    if png[:8] != PNG_SIGNATURE:
        raise ValueError(f"{PICTURES_DIR}/{name} is not a PNG file")
    return Picture(data_uri(png), int(entry["width"]), int(entry["height"]))


def _series(folder: Path, entry: dict[str, Any]) -> Series:
    betas = [float(b) for b in entry["betas"]]
    series = Series(str(entry["method"]), betas, [_picture(folder, p) for p in entry["reconstructions"]],
                    [_picture(folder, p) for p in entry["samples"]])
    if not len(betas) == len(series.reconstructions) == len(series.samples):
        raise ValueError(f"the {series.method} series lists {len(betas)} βs but "
                         f"{len(series.reconstructions)} reconstructions and {len(series.samples)} samples")
    return series


def _parse(folder: Path, index: dict[str, Any]) -> RunImages:
    if index.get("format") != INDEX_FORMAT:
        raise ValueError(f"format {index.get('format')!r}, expected {INDEX_FORMAT}")
    images = RunImages(int(index["num_examples"]), int(index["seed"]), notes=[str(n) for n in index["notes"]])
    if index["examples"] is not None:
        images.examples = _picture(folder, index["examples"])
    for entry in index["series"]:
        series = _series(folder, entry)
        if method_of(series.method) is Method.BETA_VAE:
            images.beta_vae = series
        else:
            images.multi_rate.append(series)
    return images


def read_images(root: str | Path) -> RunImages:
    """The pictures of the run folder ``root``, from ``pictures/index.json`` and the files it names."""
    folder = Path(root) / PICTURES_DIR
    index_path = folder / INDEX_NAME
    if not index_path.is_file():
        return RunImages(notes=[f"This run folder has no {PICTURES_DIR}/{INDEX_NAME}, so no pictures are shown: "
                                "they are drawn by `mrvae run` (run folders written before they were added "
                                "lack them)."])
    try:
        return _parse(folder, json.loads(index_path.read_text(encoding="utf-8")))
    except (OSError, KeyError, TypeError, ValueError, AttributeError) as exc:
        return RunImages(notes=[f"{PICTURES_DIR}/{INDEX_NAME} could not be read, so no pictures are shown: "
                                f"{type(exc).__name__}: {exc}"])
