"""Fold the β-conditioning at one β into plain layers: ``fold(model, β)`` is an ordinary network.

A gate g (one per output unit) multiplies the unit's weight row (out-channel) and bias, so at a fixed β
``g ⊙ (W a + b) = (g·W) a + g·b``; FiLM's ``s ⊙ (W a + b) + t`` folds the same way with t added to the
bias. When the gated module is a BatchNorm (a gate placed behind it), the gate scales the BatchNorm's
affine weight and bias instead, which is exact in train and eval mode and keeps the running statistics.
Folding keeps every parameter name, so the folded state dict loads into the plain architecture: the
user's own class for converted models, the same class with conditioning ``none`` for the library's.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..beta import BetaRange
from ..gates import FilmConditioner, UnitGate
from ..layers import Conditioning, ConditionedLayer
from ..models import VAE, LinearVAE
from .scope import MultiRateModel, ScopedLayer
from .vae import ConvertedVAE


def _fold_linear_vae(model: LinearVAE, u: Tensor) -> None:
    """LinearVAE's log-variance ``min(x, 0.01·x)`` with ``x = w·u + b``: at fixed u, ``w·u`` folds into ``b``."""
    with torch.no_grad():
        model.variance_bias.add_(u.reshape(()).to(model.variance_weight) * model.variance_weight)
        model.variance_weight.zero_()
    model.variance_weight.requires_grad_(False)


#: β-dependence of library models outside their ConditionedLayers, folded at u (one entry per class).
EXTRA_FOLDS: dict[type[VAE], Callable[[Any, Tensor], None]] = {LinearVAE: _fold_linear_vae}


def is_foldable(module: nn.Module) -> bool:
    """Whether ``module`` is a ``ConditionedLayer`` (``scale(u) ⊙ base(x) + shift(u)``) whose conditioning
    is not ``none``."""
    return isinstance(module, ConditionedLayer) and module.spec.kind is not Conditioning.NONE


def unit_affine(layer: ConditionedLayer, u: Tensor) -> tuple[Tensor, Tensor | None]:
    """A conditioned layer at one u ((1, 1)) -> its per-unit (scale, shift), each
    (out,); shift is ``None`` for gates. The layer's output is ``scale ⊙ base(x) + shift``."""
    with torch.no_grad():
        if layer.gate is not None:
            return layer.gate(layer.gate_input(u.to(layer.gate.weight)))[0], None
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


def resolve(model: nn.Module, beta: float) -> tuple[nn.Module, BetaRange, Tensor]:
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
    inner, _, u = resolve(model, beta)
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
