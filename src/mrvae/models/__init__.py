"""Reference VAE architectures, each written once from conditioned layers (none | gate | film)."""

from .base import VAE, VAEOutput
from .conv import ConvVAE
from .hierarchical import HierarchicalVAE, Hierarchy, bits_per_dim
from .image import PAPER_LATENT_DIMS, ImageVAE
from .linear import (LINEAR_CONDITIONING, LinearInit, LinearOptimum, LinearVAE, linear_vae_terms,
                     optimal_parameters, optimal_rate_distortion, set_optimal_response)
from .lstm import LSTMVAE
from .mlp import MLPVAE
from .registry import ARCHITECTURES, build_model
from .resnet import ResidualBlock, ResNetVAE
from .tcvae import TCVAE, TCDecomposition, TCEstimator, tc_decomposition

__all__ = ["VAE", "VAEOutput", "LinearVAE", "LinearInit", "LINEAR_CONDITIONING", "LinearOptimum",
           "linear_vae_terms", "optimal_parameters", "optimal_rate_distortion", "set_optimal_response", "MLPVAE",
           "ImageVAE", "ConvVAE", "PAPER_LATENT_DIMS", "ResNetVAE", "ResidualBlock", "LSTMVAE",
           "TCVAE", "TCEstimator", "TCDecomposition", "tc_decomposition", "HierarchicalVAE", "Hierarchy",
           "bits_per_dim",
           "ARCHITECTURES", "build_model"]
