"""Architecture registry: a name -> a builder that takes, by name, only the inputs its model uses."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable

from ..beta import BetaRange
from ..config import ModelConfig
from ..data.base import DataInfo
from ..layers import Conditioning, ModelConditioning
from .base import VAE
from .conv import ConvVAE
from .hierarchical import HierarchicalVAE, Hierarchy
from .linear import LinearVAE
from .lstm import LSTMVAE
from .mlp import MLPVAE
from .resnet import ResNetVAE
from .tcvae import TCVAE

#: A builder's parameters are named from these inputs of ``build_model``: ``config`` (ModelConfig),
#: ``info`` (DataInfo), ``conditioning`` (ModelConditioning), ``beta_range`` (BetaRange) and
#: ``num_train`` (int, the training-set size).
Builder = Callable[..., VAE]


#: The latent size each architecture takes when ``ModelConfig.latent_dim`` is None. ``conv`` and ``resnet``
#: take the paper's per image side (28: 32, 32: 256, 64: 64; ``mrvae.models.image``); ``linear`` takes
#: 32 or the data dimension if smaller; ``hierarchical`` counts latent channels per group.
LATENT_DEFAULTS = {"mlp": 16, "linear": 32, "lstm": 32, "tcvae": 10, "hierarchical": 4}


def _sigma2(config: ModelConfig, info: DataInfo) -> float:
    return config.sigma2 if config.sigma2 is not None else info.sigma2


def _latent(config: ModelConfig) -> int | None:
    return config.latent_dim if config.latent_dim is not None else LATENT_DEFAULTS.get(config.arch)


def _mlp(config: ModelConfig, info: DataInfo, conditioning: ModelConditioning, beta_range: BetaRange) -> VAE:
    return MLPVAE(info.shape, _latent(config), config.hidden, info.likelihood, _sigma2(config, info), conditioning,
                  beta_range=beta_range)


def _linear(config: ModelConfig, info: DataInfo, conditioning: ModelConditioning, beta_range: BetaRange) -> VAE:
    if len(info.shape) != 1:
        raise ValueError(f"the linear VAE needs flat data (d,), got shape {info.shape}; use arch 'mlp'")
    latent = config.latent_dim if config.latent_dim is not None else min(_latent(config), math.prod(info.shape))
    return LinearVAE(math.prod(info.shape), latent, _sigma2(config, info), conditioning, beta_range)


def _conv(config: ModelConfig, info: DataInfo, conditioning: ModelConditioning, beta_range: BetaRange) -> VAE:
    return ConvVAE(info.shape, config.latent_dim, config.width, info.likelihood, _sigma2(config, info), conditioning,
                   beta_range)


def _resnet(config: ModelConfig, info: DataInfo, conditioning: ModelConditioning, beta_range: BetaRange) -> VAE:
    return ResNetVAE(info.shape, config.latent_dim, config.width, info.likelihood, _sigma2(config, info),
                     conditioning, beta_range)


def _lstm(config: ModelConfig, info: DataInfo, conditioning: ModelConditioning, beta_range: BetaRange) -> VAE:
    if info.vocab_size is None:
        raise ValueError(f"arch 'lstm' needs a text data set (with a vocabulary); {info.name!r} has none")
    return LSTMVAE(info.vocab_size, _latent(config), config.embedding_dim, config.lstm_hidden,
                   conditioning=conditioning, beta_range=beta_range)


def _tcvae(config: ModelConfig, info: DataInfo, conditioning: ModelConditioning, beta_range: BetaRange,
           num_train: int) -> VAE:
    return TCVAE(num_train, info.shape, _latent(config), config.hidden, info.likelihood, _sigma2(config, info),
                 conditioning, beta_range=beta_range)


def _hierarchical(config: ModelConfig, info: DataInfo, conditioning: ModelConditioning, beta_range: BetaRange) -> VAE:
    if len(info.shape) != 3:
        raise ValueError(f"arch 'hierarchical' needs images (C, S, S), got shape {info.shape}")
    hierarchy = Hierarchy(channels=max(1, round(16 * config.width)), groups=config.latent_groups,
                          latent_channels=_latent(config), norm=config.norm)
    return HierarchicalVAE(info.shape, hierarchy, info.likelihood, _sigma2(config, info), conditioning, beta_range)


ARCHITECTURES: dict[str, Builder] = {"mlp": _mlp, "linear": _linear, "conv": _conv, "resnet": _resnet,
                                     "lstm": _lstm, "tcvae": _tcvae, "hierarchical": _hierarchical}


def build_model(config: ModelConfig, info: DataInfo, kind: Conditioning | str, num_train: int = 2,
                beta_range: BetaRange = BetaRange()) -> VAE:
    """Instantiate ``config.arch`` for data ``info`` with conditioning ``kind`` (none | gate | film) and
    the gate settings of ``config``; ``num_train`` is the training-set size (used by the β-TCVAE estimator)
    and ``beta_range`` the β range the model will be trained over (the linear VAE's staggered
    initialisation is laid out on it). Each builder receives only the inputs it names."""
    if config.arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {config.arch!r}; choose one of: {', '.join(sorted(ARCHITECTURES))}")
    inputs = {"config": config, "info": info, "conditioning": config.conditioning(kind), "beta_range": beta_range,
              "num_train": num_train}
    builder = ARCHITECTURES[config.arch]
    return builder(**{name: inputs[name] for name in inspect.signature(builder).parameters})
