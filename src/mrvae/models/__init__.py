"""Reference VAE architectures, each written once from conditioned layers (none | gate | film)."""

from .base import VAE, VAEOutput
from .linear import (LinearOptimum, LinearVAE, linear_vae_terms, optimal_parameters,
                     optimal_rate_distortion)
from .mlp import MLPVAE

__all__ = ["VAE", "VAEOutput", "LinearVAE", "LinearOptimum", "linear_vae_terms", "optimal_parameters",
           "optimal_rate_distortion", "MLPVAE"]
