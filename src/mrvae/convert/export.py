"""Fold the β-conditioning at one β into plain layers; export as safetensors + JSON and reload without pickle.

A gate g (one per output unit) multiplies the unit's weight row (out-channel) and bias, so at a fixed β
``g ⊙ (W a + b) = (g·W) a + g·b``; FiLM's ``s ⊙ (W a + b) + t`` folds the same way with t added to the
bias. When the gated module is a BatchNorm (a gate placed behind it), the gate scales the BatchNorm's
affine weight and bias instead, which is exact in train and eval mode and keeps the running statistics.
Folding keeps every parameter name, so the folded state dict loads into the plain architecture: the
user's own class for converted models, the same class with conditioning ``none`` for the library's.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..beta import BetaRange
from .multirate import ConvertedVAE, MultiRateModel, ScopedLayer
from ..gates import FilmConditioner, UnitGate
from ..layers import BetaConditioned, Conditioning, ConditionedLayer
from ..models import VAE, LinearVAE

EXPORT_FORMAT = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class ExportSource(str, Enum):
    """What was folded: a library model (rebuilt with conditioning ``none``) or a converted user model."""

    LIBRARY = "library"
    CONVERTED = "converted"


@dataclass(frozen=True)
class ExportPaths:
    """The two files of an export: folded weights (safetensors) and the JSON config."""

    weights: Path
    config: Path


def _fold_linear_vae(model: LinearVAE, u: Tensor) -> None:
    """LinearVAE's log-variance ``min(x, 0.01·x)`` with ``x = w·u + b``: at fixed u, ``w·u`` folds into ``b``."""
    with torch.no_grad():
        model.variance_bias.add_(u.reshape(()).to(model.variance_weight) * model.variance_weight)
        model.variance_weight.zero_()
    model.variance_weight.requires_grad_(False)


#: β-dependence of library models outside their ConditionedLayers, folded at u (one entry per class).
EXTRA_FOLDS: dict[type[VAE], Callable[[Any, Tensor], None]] = {LinearVAE: _fold_linear_vae}


def is_foldable(module: nn.Module) -> bool:
    """Whether ``module`` is a conditioned layer of the form ``scale(u) ⊙ base(x) + shift(u)``: a
    ``ConditionedLayer``, or any ``BetaConditioned`` module with ``base``, ``spec``, ``gate``, ``film``
    (e.g. the LSTM model's conditioned embedding) whose conditioning is not ``none``."""
    shaped = isinstance(module, ConditionedLayer) or (
        isinstance(module, BetaConditioned) and all(hasattr(module, a) for a in ("base", "spec", "gate", "film")))
    return shaped and module.spec.kind is not Conditioning.NONE


def unit_affine(layer: nn.Module, u: Tensor) -> tuple[Tensor, Tensor | None]:
    """A conditioned layer (see ``is_foldable``) at one u ((1, 1)) -> its per-unit (scale, shift), each
    (out,); shift is ``None`` for gates. The layer's output is ``scale ⊙ base(x) + shift``."""
    with torch.no_grad():
        if layer.gate is not None:
            return layer.gate(u.to(layer.gate.weight))[0], None
        if layer.film is not None:
            scale, shift = layer.film(u.to(layer.film.out.weight))
            return scale[0], shift[0]
    raise ValueError(f"{type(layer).__name__} has conditioning {layer.spec.kind.value}: nothing to fold")


def fold_affine_into(module: nn.Module, scale: Tensor, shift: Tensor | None, where: str = "layer") -> None:
    """In place: make ``module(x)`` return ``scale ⊙ module(x) + shift`` per output unit / channel.

    ``module`` is a Linear, a Conv*d (weight dim 0 is the out-channel), a ConvTranspose*d (weight is
    (in, out/groups, ...): the out-channel axis is dim 1 within each group), an affine BatchNorm, an
    Embedding (weight (num, out): scale only), or an nn.Sequential ending in one of these. ``scale``
    and ``shift`` are (out,).
    """
    if isinstance(module, nn.Sequential) and len(module) > 0:
        fold_affine_into(module[-1], scale, shift, f"{where}[-1]")
        return
    with torch.no_grad():
        if isinstance(module, _BatchNorm):
            if not module.affine:
                raise ValueError(f"cannot fold a gate into {where}: {type(module).__name__} has affine=False "
                                 "(no weight and bias to hold it); build it with affine=True")
            weight = module.weight
            weight.mul_(scale.to(weight))
        elif isinstance(module, nn.Linear) or (isinstance(module, nn.modules.conv._ConvNd)
                                               and not module.transposed):
            weight = module.weight
            weight.mul_(scale.to(weight).reshape((-1,) + (1,) * (weight.dim() - 1)))
        elif isinstance(module, nn.Embedding):
            weight = module.weight
            weight.mul_(scale.to(weight).reshape(1, -1))
        elif isinstance(module, nn.modules.conv._ConvNd):
            weight = module.weight
            groups, kernel = module.groups, weight.shape[2:]
            grouped = weight.reshape(groups, weight.shape[0] // groups, weight.shape[1], *kernel)
            factor = scale.to(weight).reshape(groups, 1, weight.shape[1], *(1,) * len(kernel))
            weight.copy_((grouped * factor).reshape(weight.shape))
        else:
            raise TypeError(f"cannot fold a gate into {where} of type {type(module).__name__}; expected Linear, "
                            "Conv*d, ConvTranspose*d, an affine BatchNorm, Embedding, or an nn.Sequential ending in one")
        bias = getattr(module, "bias", None)
        if bias is not None:
            bias.mul_(scale.to(bias))
            if shift is not None:
                bias.add_(shift.to(bias))
        elif shift is not None and bool((shift != 0).any()):
            raise ValueError(f"cannot fold the FiLM shift into {where}: a {type(module).__name__} without a bias "
                             "cannot hold it (use gate conditioning, or a layer with bias=True)")


def _unwrap(model: nn.Module) -> tuple[nn.Module, BetaRange]:
    """(the module to fold, the β range it carries): library VAEs and converted models carry theirs."""
    if isinstance(model, ConvertedVAE):
        model = model.multirate
    if isinstance(model, MultiRateModel):
        return model.model, model.beta_range
    if not isinstance(model, nn.Module):
        raise TypeError(f"fold needs an nn.Module, got {type(model).__name__}")
    own = getattr(model, "beta_range", None)
    if not isinstance(own, BetaRange):
        raise ValueError(f"a {type(model).__name__} carries no beta_range: fold a mrvae model (VAE), a "
                         "make_multirate(...) model or a ConvertedVAE, whose β range travels with it")
    return model, own


def _resolve(model: nn.Module, beta: float) -> tuple[nn.Module, BetaRange, Tensor]:
    inner, resolved = _unwrap(model)
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta <= 0:
        raise ValueError(f"β to fold at must be a finite number > 0, got {beta!r}")
    if not resolved.contains(float(beta)):
        raise ValueError(f"β = {beta!r} lies outside the training range [{resolved.low}, {resolved.high}]")
    return inner, resolved, resolved.u_of(float(beta))


def fold(model: nn.Module, beta: float) -> nn.Module:
    """The model at a fixed β as an ordinary network (a deep copy; ``model`` is untouched).

    Converted models (``MultiRateModel`` / ``ConvertedVAE``) give the user's own class with plain
    layers and no mrvae module. Library models give the same class with every conditioned layer turned
    to conditioning ``none``: its state dict has exactly the keys of the architecture built with
    conditioning ``none``, and it keeps the β range it was trained for. Both take the β range the
    model carries.
    """
    inner, _, u = _resolve(model, beta)
    folded = copy.deepcopy(inner)
    for name, module in list(folded.named_modules()):
        if is_foldable(module):
            scale, shift = unit_affine(module, u)
            fold_affine_into(module.base, scale, shift, f"{name or 'model'}.base")
            module.spec = module.spec.unconditioned()
            module.gate = None
            module.film = None
        if isinstance(module, VAE) and module.conditioning is not Conditioning.NONE:
            for kind, extra in EXTRA_FOLDS.items():
                if isinstance(module, kind):
                    extra(module, u)
            module.conditioning = Conditioning.NONE
    if isinstance(folded, ScopedLayer):
        folded = folded.base
    for parent in list(folded.modules()):
        for child_name, child in list(parent._modules.items()):  # named_children() hides aliases
            if isinstance(child, ScopedLayer):
                setattr(parent, child_name, child.base)
    for name, module in folded.named_modules():
        if isinstance(module, (UnitGate, FilmConditioner)):
            raise ValueError(f"cannot fold {name!r}: a {type(module).__name__} used outside a ConditionedLayer")
    return folded


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
    inner, resolved, u = _resolve(model, beta)
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
