"""Architecture registry: a name -> a builder ``(ModelConfig, DataInfo, ModelConditioning) -> VAE``."""

from __future__ import annotations

import math
from collections.abc import Callable

from ..config import ModelConfig
from ..data.base import DataInfo
from ..layers import Conditioning, ModelConditioning
from .base import VAE
from .linear import LinearVAE
from .mlp import MLPVAE

Builder = Callable[[ModelConfig, DataInfo, ModelConditioning], VAE]


def _sigma2(config: ModelConfig, info: DataInfo) -> float:
    return config.sigma2 if config.sigma2 is not None else info.sigma2


def _mlp(config: ModelConfig, info: DataInfo, conditioning: ModelConditioning) -> VAE:
    return MLPVAE(info.shape, config.latent_dim, config.hidden, info.likelihood, _sigma2(config, info), conditioning)


def _linear(config: ModelConfig, info: DataInfo, conditioning: ModelConditioning) -> VAE:
    if len(info.shape) != 1:
        raise ValueError(f"the linear VAE needs flat data (d,), got shape {info.shape}; use arch 'mlp'")
    return LinearVAE(math.prod(info.shape), config.latent_dim, _sigma2(config, info), conditioning)


ARCHITECTURES: dict[str, Builder] = {"mlp": _mlp, "linear": _linear}


def build_model(config: ModelConfig, info: DataInfo, kind: Conditioning | str) -> VAE:
    """Instantiate ``config.arch`` for data ``info`` with conditioning ``kind`` (none | gate | film)."""
    if config.arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {config.arch!r}; choose one of: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[config.arch](config, info, config.conditioning(Conditioning(kind)))
