"""Export a model folded at one β as safetensors + JSON, and load it back without pickle."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..beta import Choice
from .fold import fold, resolve
from .scope import MultiRateModel, ScopedLayer
from .vae import ConvertedVAE

EXPORT_FORMAT = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class ExportPaths:
    """The two files of an export: folded weights (safetensors) and the JSON config."""

    weights: Path
    config: Path


class ExportSource(Choice):
    """What was folded: a library model (rebuilt with conditioning ``none``) or a converted user model."""

    LIBRARY = "library"
    CONVERTED = "converted"


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    write(temporary)
    os.replace(temporary, path)


def export_checkpoint(model: nn.Module, beta: float, out_dir: str | os.PathLike, config: dict) -> ExportPaths:
    """Fold ``model`` at β and write ``out_dir/model.safetensors`` + ``out_dir/config.json``.

    ``config`` (JSON-serialisable) is what ``load_exported``'s ``build`` receives to construct the plain
    model: the model config for library models, the constructor arguments of the user's class for
    converted ones. The β range written beside the weights is the one the model carries.
    """
    if not isinstance(config, dict):
        raise TypeError(f"config must be a dict (JSON object), got {type(config).__name__}")
    try:
        config_text = json.dumps(config)
    except (TypeError, ValueError) as error:
        raise TypeError(f"config must be JSON-serialisable: {error}") from error
    inner, resolved, u = resolve(model, beta)
    folded = fold(model, beta)
    state: dict[str, Tensor] = {}
    for key, value in folded.state_dict().items():
        if not isinstance(value, Tensor):
            raise TypeError(f"state entry {key!r} is a {type(value).__name__}, not a tensor; cannot export it")
        state[key] = value.detach().to("cpu").contiguous().clone()
    from .. import __version__

    converted = isinstance(model, (MultiRateModel, ConvertedVAE)) or any(isinstance(m, ScopedLayer)
                                                                         for m in inner.modules())
    source = ExportSource.CONVERTED if converted else ExportSource.LIBRARY
    meta = {
        "format": EXPORT_FORMAT,
        "source": source.value,
        "model_class": f"{type(folded).__module__}.{type(folded).__qualname__}",
        "beta": float(beta),
        "u": float(u.reshape(())),
        "beta_range": {"low": resolved.low, "high": resolved.high},
        "weights": WEIGHTS_FILE,
        "mrvae_version": __version__,
        "config": json.loads(config_text),
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = ExportPaths(out / WEIGHTS_FILE, out / CONFIG_FILE)
    _atomic_write(paths.weights, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    _atomic_write(paths.config, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    return paths


def read_export_config(out_dir: str | os.PathLike) -> dict:
    """The JSON written by ``export_checkpoint`` (β, u, β range, source, model class, ``config``)."""
    path = Path(out_dir) / CONFIG_FILE
    if not path.is_file():
        raise ValueError(f"no export at {Path(out_dir)}: {CONFIG_FILE} is missing")
    meta = json.loads(path.read_text())
    if not isinstance(meta, dict) or meta.get("format") != EXPORT_FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise ValueError(f"{path} has export format {found!r}; this mrvae reads format {EXPORT_FORMAT}")
    for key in ("beta", "beta_range", "config", "weights", "source"):
        if key not in meta:
            raise ValueError(f"{path} lacks the key {key!r}")
    return meta


def load_exported(out_dir: str | os.PathLike, build: Callable[[dict], nn.Module]) -> nn.Module:
    """Rebuild an exported model: ``build(config)`` makes the plain (ungated) model, the folded weights
    are loaded strictly from safetensors (no pickle is ever read), and the model is put in eval mode."""
    meta = read_export_config(out_dir)
    model = build(meta["config"])
    if not isinstance(model, nn.Module):
        raise TypeError(f"build must return an nn.Module, got {type(model).__name__}")
    weights = Path(out_dir) / meta["weights"]
    if weights.suffix != ".safetensors" or weights.parent != Path(out_dir):
        raise ValueError(f"export weights must be a .safetensors file in {out_dir}, got {meta['weights']!r}")
    state = load_file(str(weights))
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise ValueError(f"the exported weights do not fit the built {type(model).__name__} (build must make the "
                         f"plain, ungated model): missing {missing[:5]}, unexpected {unexpected[:5]}")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise ValueError(f"the exported weights do not fit the built {type(model).__name__}: {error}") from error
    return model.eval()
