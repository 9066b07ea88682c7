"""The named choices of the settings: the training methods, the optimiser, the precision, the schedule."""

from __future__ import annotations

from ..beta import Choice
from ..layers import Conditioning


class Method(Choice):
    """A training method: MR-VAE (gates, β range), β-VAE (no conditioning, one β per run),
    YOTO-style (FiLM, β range)."""

    MRVAE = "mrvae"
    BETA_VAE = "beta-vae"
    YOTO = "yoto"

    @property
    def conditioning(self) -> Conditioning:
        return {Method.MRVAE: Conditioning.GATE, Method.BETA_VAE: Conditioning.NONE,
                Method.YOTO: Conditioning.FILM}[self]


class Optimizer(Choice):
    """The optimiser of every parameter (base weights and gates alike, PAPER.md §3)."""

    ADAM = "adam"
    ADAMW = "adamw"
    ADAMAX = "adamax"


class Precision(Choice):
    """Numeric precision of training: full fp32, or autocast bf16 / fp16 (with a gradient scaler)."""

    FP32 = "32"
    BF16_MIXED = "bf16-mixed"
    FP16_MIXED = "16-mixed"


class Schedule(Choice):
    """The learning-rate schedule: linear warm-up then cosine decay to 0, or warm-up then constant."""

    WARMUP_COSINE = "warmup-cosine"
    CONSTANT = "constant"
