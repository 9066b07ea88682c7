"""``make_multirate``: turn a user's VAE into an MR-VAE by wrapping its chosen layers in ``ScopedLayer``s.

Each chosen ``nn.Linear`` / ``nn.Conv*d`` / ``nn.ConvTranspose*d`` is replaced by a ``ScopedLayer``: a
``ConditionedLayer`` holding the original layer as ``base`` plus a per-unit gate (or FiLM) that reads u
from the model's ``BetaScope``. When a chosen layer is followed by a BatchNorm in the same parent, the
gate goes after the BatchNorm (a gate before it would be normalised away in training).
"""

from __future__ import annotations

import copy

from torch import nn

from ..beta import BetaRange
from ..layers import BetaConditioned, Conditioning, ModelConditioning, Role
from .scope import BetaScope, MultiRateModel, ScopedLayer
from .select import Selector, aliases, following_batchnorm, select


def _replace(model: nn.Module, target: nn.Module, replacement: nn.Module) -> None:
    """Register ``replacement`` wherever ``target`` is registered below the root of ``model``."""
    for _, module in list(model.named_modules(remove_duplicate=False)):
        for child_name, child in list(module._modules.items()):  # named_children() hides aliases
            if child is target:
                setattr(module, child_name, replacement)


def _check(model: nn.Module, beta_range: BetaRange, spec: ModelConditioning, decoder: Selector | None) -> None:
    """The errors a caller can make: not a module, a range or a conditioning; a model that already takes u;
    different encoder and decoder gates with no ``decoder`` layers named."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"make_multirate needs an nn.Module, got {type(model).__name__}")
    if not isinstance(beta_range, BetaRange):
        raise TypeError(f"beta_range must be a BetaRange, got {beta_range!r}")
    if not isinstance(spec, ModelConditioning):
        raise TypeError(f"spec must be a ModelConditioning, got {spec!r}")
    if any(isinstance(m, BetaConditioned) for m in model.modules()):
        raise TypeError(f"{type(model).__name__} already contains mrvae conditioned layers; use it as it is "
                        "(its forward takes u) instead of converting it")
    if spec.kind is Conditioning.GATE and spec.encoder_gate is not spec.decoder_gate and decoder is None:
        raise ValueError(f"spec has encoder_gate={spec.encoder_gate.value} and decoder_gate="
                         f"{spec.decoder_gate.value}: pass decoder=... naming the decoder's layers")


def make_multirate(model: nn.Module, beta_range: BetaRange = BetaRange(), *, exclude: Selector,
                   spec: ModelConditioning = ModelConditioning(), decoder: Selector | None = None,
                   gate_batchnorm: bool = True, inplace: bool = False) -> MultiRateModel:
    """Turn a user's VAE into an MR-VAE: every Linear / Conv / ConvTranspose layer not in ``exclude``
    gets per-unit conditioning (``spec``); the original weights are kept.

    ``exclude`` is required (pass ``()`` to gate every layer); ``paper_exclude`` gives the paper's rule
    (latent heads and output layer ungated). The layers ``decoder`` names take the decoder's gate function,
    every other layer the encoder's; it is required when the two differ. ``gate_batchnorm`` moves a gate
    behind a BatchNorm registered right after its layer. The user's module is deep-copied unless ``inplace``.
    """
    _check(model, beta_range, spec, decoder)
    target = model if inplace else copy.deepcopy(model)
    layers = aliases(target)
    excluded = select(exclude, layers, "exclude")
    in_decoder = select(decoder, layers, "decoder") if decoder is not None else set()
    scope = BetaScope()
    if spec.kind is Conditioning.NONE:
        return MultiRateModel(target, beta_range, scope)
    wrapped: set[int] = set()
    for key, (layer, names) in layers.items():
        if key in excluded:
            continue
        gated_name, gated = names[0], layer
        follower = following_batchnorm(target, names[0], layer) if gate_batchnorm else None
        if follower is not None:
            gated_name, gated = follower
        if id(gated) in wrapped:
            continue
        wrapped.add(id(gated))
        role = Role.DECODER if key in in_decoder else Role.ENCODER
        _replace(target, gated, ScopedLayer(gated, spec, role, scope, gated_name))
    return MultiRateModel(target, beta_range, scope)
