"""mrvae: Multi-Rate VAEs (Bae et al., ICLR 2023) — train once, get the whole rate-distortion curve."""

from .beta import BetaRange, BetaSampling, baseline_betas
from .config import __version__
from .gates import GateFunction, GateInit, UnitGate
from .layers import (Conditioning, ConditionedConv2d, ConditionedConvTranspose2d, ConditionedEmbedding,
                     ConditionedLinear, ConditionedSequential, ModelConditioning, Role)
from .models import VAE, LinearVAE, MLPVAE
from .objectives import (Likelihood, bernoulli_distortion, beta_objective, gaussian_distortion,
                         gaussian_rate, iwae_bound)
from .runs.load import LoadedVAE, load
from .runs.user_data import MultiRateResult, train_multirate

__all__ = [
    "BetaRange", "BetaSampling", "baseline_betas",
    "GateFunction", "GateInit", "UnitGate",
    "Conditioning", "ModelConditioning", "Role", "ConditionedLinear", "ConditionedConv2d",
    "ConditionedConvTranspose2d", "ConditionedEmbedding", "ConditionedSequential",
    "VAE", "LinearVAE", "MLPVAE",
    "Likelihood", "gaussian_rate", "bernoulli_distortion", "gaussian_distortion", "beta_objective",
    "iwae_bound",
    "load", "LoadedVAE",
    "train_multirate", "MultiRateResult",
    "__version__",
]
