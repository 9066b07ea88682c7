"""Export a model folded at one β as safetensors + JSON, and load it back without pickle."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from ..beta import BetaRange, Choice
from ..config import RunConfig, stored_run_config
from ..data.base import DataInfo
from ..layers import Conditioning
from ..models import TCVAE, VAE
from ..models.registry import build_model
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


#: Inputs of ``models.registry.build_model`` that a library model holds beyond its run config and data
#: info, recorded in an export's ``build_inputs`` so that ``load_exported`` can rebuild it (one entry per class).
BUILD_INPUTS: dict[type[VAE], Callable[[Any], dict[str, Any]]] = {TCVAE: lambda m: {"num_train": m.dataset_size}}


def _build_inputs(model: nn.Module) -> dict[str, Any]:
    for kind, inputs in BUILD_INPUTS.items():
        if isinstance(model, kind):
            return inputs(model)
    return {}


def _atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    write(temporary)
    os.replace(temporary, path)


def export_checkpoint(model: nn.Module, beta: float, out_dir: str | os.PathLike, config: dict) -> ExportPaths:
    """Fold ``model`` at β and write ``out_dir/model.safetensors`` + ``out_dir/config.json``.

    ``config`` (JSON-serialisable) is what ``load_exported``'s ``build`` receives to construct the plain
    model: the constructor arguments of the user's class for converted models. For a library model,
    ``{"run_config": ..., "data_info": ...}`` (what ``mrvae export`` and ``mrvae.load(...).export(β, out_dir)``
    write) lets ``load_exported`` rebuild it with no ``build``; the other inputs it needs (the β-TCVAE's
    training-set size) are recorded as ``build_inputs``. The β range written beside the weights is the one
    the model carries.
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
    from ..config import __version__

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
    if source is ExportSource.LIBRARY:
        meta["build_inputs"] = _build_inputs(folded)
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


def build_library_model(meta: dict) -> VAE:
    """The plain (conditioning ``none``) library model of an export's JSON, built from its recorded
    ``run_config``, ``data_info`` and ``build_inputs``, with the exported β as its one-point β range."""
    config = meta["config"]
    missing = [key for key in ("run_config", "data_info") if not isinstance(config.get(key), dict)]
    if missing:
        raise ValueError(f"this library export's config lacks {' and '.join(missing)} (it was written with a "
                         "config of your own): pass build=... that makes the plain model from that config")
    try:
        run_config = stored_run_config(config["run_config"])
        info = DataInfo(**config["data_info"])
        inputs = meta.get("build_inputs", {})
        beta = float(meta["beta"])
        return build_model(run_config.model, info, Conditioning.NONE, int(inputs.get("num_train", 2)),
                           BetaRange(beta, beta))
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"cannot rebuild the exported {meta.get('model_class', 'model')}: "
                         f"{' '.join(str(error).split())}") from None


def _builder(meta: dict, build: Callable[[dict], nn.Module] | None, out_dir: Path) -> Callable[[], nn.Module]:
    if build is not None:
        return lambda: build(meta["config"])
    if meta["source"] == ExportSource.LIBRARY.value:
        return lambda: build_library_model(meta)
    raise ValueError(f"{out_dir} holds a converted model of your own class {meta.get('model_class', '?')}: pass "
                     "build=lambda config: YourClass(...) that makes the plain model from the recorded config "
                     "(mrvae never imports a class named in a file: that would run code the file chooses)")


def load_exported(out_dir: str | os.PathLike, build: Callable[[dict], nn.Module] | None = None) -> nn.Module:
    """Rebuild an exported model in eval mode: the plain (ungated) model, with the folded weights loaded
    strictly from safetensors (no pickle is ever read).

    Library exports need no ``build``: the architecture is rebuilt from the recorded run config and data
    info, and the returned VAE's ``beta_range`` is the exported β alone. A converted model of your own class
    needs ``build(config)``, which makes it from the ``config`` given at export time. ``build`` may also
    be given for a library export."""
    folder = Path(out_dir)
    meta = read_export_config(folder)
    model = _builder(meta, build, folder)()
    if not isinstance(model, nn.Module):
        raise TypeError(f"build must return an nn.Module, got {type(model).__name__}")
    weights = folder / meta["weights"]
    if weights.suffix != ".safetensors" or weights.parent != folder:
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
    if isinstance(model, VAE):
        model.beta_range = BetaRange(float(meta["beta"]), float(meta["beta"]))
    return model.eval()
