"""Architecture registry: a name -> a builder ``(ModelConfig, DataInfo, ModelConditioning, num_train,
BetaRange) -> VAE``."""

from __future__ import annotations

import math
from collections.abc import Callable

from ..beta import BetaRange
from ..config import ModelConfig
from ..data.base import DataInfo
from ..layers import Conditioning, ModelConditioning
from .base import VAE
from .conv import ConvVAE
from .linear import LinearVAE
from .lstm import LSTMVAE
from .mlp import MLPVAE
from .resnet import ResNetVAE
from .tcvae import TCVAE

Builder = Callable[[ModelConfig, DataInfo, ModelConditioning, int, BetaRange], VAE]


def _sigma2(config: ModelConfig, info: DataInfo) -> float:
    return config.sigma2 if config.sigma2 is not None else info.sigma2


def _mlp(config: ModelConfig, info: DataInfo, conditioning: ModelConditioning, num_train: int,
         beta_range: BetaRange) -> VAE:
    return MLPVAE(info.shape, config.latent_dim, config.hidden, info.likelihood, _sigma2(config, info), conditioning,
                  beta_range=beta_range)


def _linear(config: ModelConfig, info: DataInfo, conditioning: ModelConditioning, num_train: int,
            beta_range: BetaRange) -> VAE:
    if len(info.shape) != 1:
        raise ValueError(f"the linear VAE needs flat data (d,), got shape {info.shape}; use arch 'mlp'")
    return LinearVAE(math.prod(info.shape), config.latent_dim, _sigma2(config, info), conditioning, beta_range)


def _conv(config: ModelConfig, info: DataInfo, conditioning: ModelConditioning, num_train: int,
          beta_range: BetaRange) -> VAE:
    return ConvVAE(info.shape, config.latent_dim, config.width, info.likelihood, _sigma2(config, info), conditioning,
                   beta_range)


def _resnet(config: ModelConfig, info: DataInfo, conditioning: ModelConditioning, num_train: int,
            beta_range: BetaRange) -> VAE:
    return ResNetVAE(info.shape, config.latent_dim, config.width, info.likelihood, _sigma2(config, info),
                     conditioning, beta_range)


def _lstm(config: ModelConfig, info: DataInfo, conditioning: ModelConditioning, num_train: int,
          beta_range: BetaRange) -> VAE:
    if info.vocab_size is None:
        raise ValueError(f"arch 'lstm' needs a text data set (with a vocabulary); {info.name!r} has none")
    from ..data.text import BOS_INDEX, EOS_INDEX, PAD_INDEX

    size = max(1, round(256 * config.width))
    return LSTMVAE(info.vocab_size, config.latent_dim, size, size, PAD_INDEX, BOS_INDEX, EOS_INDEX, conditioning,
                   beta_range)


def _tcvae(config: ModelConfig, info: DataInfo, conditioning: ModelConditioning, num_train: int,
           beta_range: BetaRange) -> VAE:
    return TCVAE(num_train, info.shape, config.latent_dim, config.hidden, info.likelihood, _sigma2(config, info),
                 conditioning, beta_range=beta_range)


ARCHITECTURES: dict[str, Builder] = {"mlp": _mlp, "linear": _linear, "conv": _conv, "resnet": _resnet,
                                     "lstm": _lstm, "tcvae": _tcvae}


def build_model(config: ModelConfig, info: DataInfo, kind: Conditioning | str, num_train: int = 2,
                beta_range: BetaRange = BetaRange()) -> VAE:
    """Instantiate ``config.arch`` for data ``info`` with conditioning ``kind`` (none | gate | film);
    ``num_train`` is the training-set size (used by the β-TCVAE estimator) and ``beta_range`` the β
    range the model will be trained over (the linear VAE's staggered initialisation is laid out on it)."""
    if config.arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {config.arch!r}; choose one of: {', '.join(sorted(ARCHITECTURES))}")
    return ARCHITECTURES[config.arch](config, info, config.conditioning(Conditioning(kind)), num_train, beta_range)
