"""The settings of a run: frozen dataclasses that validate themselves (the config is the constructor)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from ..beta import BetaRange, BetaSampling, baseline_betas
from ..gates import GateFunction, GateInit
from ..layers import Conditioning, ModelConditioning, Norm
from .choices import Method, Optimizer, Precision, Schedule
from .recipes import arch_recipe


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


@dataclass(frozen=True)
class DataConfig:
    """The data set a run trains and evaluates on.

    Attributes:
        name: The data set, a name in mrvae.data.DATASETS (mrvae data list shows them).
        root: The data root; null takes $MRVAE_DATA, else ~/.cache/mrvae.
        seed: The seed of the data split and of the test set's binarisation.
    """

    name: str = "digits"
    root: str | None = None
    seed: int = 0


#: The ``ModelConditioning`` settings a ``ModelConfig`` holds (flat, so the flags read ``--model.gate_scale``);
#: its ``kind`` comes from the training method.
GATE_SETTINGS = ("encoder_gate", "decoder_gate", "gate_scale", "gate_init", "film_hidden", "gate_input_scale")

@dataclass(frozen=True)
class ModelConfig:
    """The architecture, its sizes and its conditioning on β.

    The gate settings (``GATE_SETTINGS``) are those of ``ModelConditioning``, which checks them;
    ``conditioning(kind)`` gives the one a model takes.

    Attributes:
        arch: The architecture, a name in mrvae.models.ARCHITECTURES: mlp, linear, conv, resnet, lstm, tcvae or hierarchical.
        latent_dim: The latent size; null takes the architecture's default (mlp 16, lstm 32, tcvae 10, the paper's per image size for conv and resnet, latent channels per group for hierarchical).
        hidden: The hidden layer sizes of mlp and tcvae.
        width: Multiplies the channel counts of conv, resnet and hierarchical (1 is the paper's network).
        embedding_dim: The token embedding size of lstm.
        lstm_hidden: The LSTM state size of lstm.
        encoder_gate: The encoder's gate function: sigmoid, or sqrt (the paper's decoder gate).
        decoder_gate: The decoder's gate function: sigmoid, or sqrt (the paper's Eqn 7 uses sqrt here).
        gate_scale: Every gate's range is [0, gate_scale]; null takes the architecture's recipe (mlp, resnet 4; others 2), the paper's Eqn 7 uses 1.
        gate_init: How gate parameters start: paper (PyTorch's default init) or open (every gate starts near 1 whatever β).
        film_hidden: The hidden size of the FiLM conditioner of the yoto method.
        gate_input_scale: A gate computes σ(w·s·u + b) with this s; null takes the architecture's recipe (mlp, resnet 2; others 1).
        sigma2: The Gaussian decoder variance; null keeps the data set's (only β·σ² matters).
        latent_groups: hierarchical: latent groups per scale, top scale first (its length is the number of scales).
        norm: hierarchical: the cells' normalisation, batch (NVAE's) or none.
    """

    arch: str = "mlp"
    latent_dim: int | None = None
    hidden: tuple[int, ...] = (256, 256)
    width: float = 1.0
    embedding_dim: int = 256
    lstm_hidden: int = 256
    encoder_gate: GateFunction = ModelConditioning.encoder_gate
    decoder_gate: GateFunction = ModelConditioning.decoder_gate
    gate_scale: float | None = None
    gate_init: GateInit = ModelConditioning.gate_init
    film_hidden: int = ModelConditioning.film_hidden
    gate_input_scale: float | None = None
    sigma2: float | None = None
    latent_groups: tuple[int, ...] = (2, 2)
    norm: Norm = Norm.BATCH

    def __post_init__(self) -> None:
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        object.__setattr__(self, "latent_groups", tuple(int(g) for g in self.latent_groups))
        object.__setattr__(self, "norm", Norm(self.norm))
        if not self.latent_groups or min(self.latent_groups) < 1:
            raise ValueError(f"latent_groups needs one count >= 1 per latent scale, got {list(self.latent_groups)}")
        checked = self.conditioning(Conditioning.GATE)  # coerces and validates the gate settings
        for name in GATE_SETTINGS:  # a null recipe setting stays null here: RunConfig fills it per architecture
            if getattr(self, name) is not None:
                object.__setattr__(self, name, getattr(checked, name))
        if self.latent_dim is not None and self.latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1 (or null for the architecture's default), got {self.latent_dim}")
        for name in ("embedding_dim", "lstm_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be >= 1, got {list(self.hidden)}")
        _positive("width", self.width)
        if self.sigma2 is not None:
            _positive("sigma2", self.sigma2)

    def conditioning(self, kind: Conditioning | str) -> ModelConditioning:
        """The ``ModelConditioning`` of kind ``kind`` (none | gate | film) with these gate settings (null
        ones from the architecture's recipe, ``arch_recipe``)."""
        recipe = arch_recipe(self.arch)
        values = {name: getattr(self, name) for name in GATE_SETTINGS}
        values = {name: recipe[name] if value is None else value for name, value in values.items()}
        return ModelConditioning(Conditioning(kind), **values)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, the training budget and the β distribution.

    The learning rate warms up linearly over ``warmup_steps``, then decays by a cosine to 0
    (``warmup-cosine``) or stays (``constant``). ``for_data`` turns an ``epochs`` budget into steps:
    epochs · ⌊N / global batch⌋.

    Attributes:
        steps: Optimiser steps per model (ignored when epochs is set).
        epochs: A budget in passes over the training split instead of steps; null uses steps.
        batch_size: Examples per step (per process under torchrun).
        lr: The peak learning rate.
        warmup_steps: Steps of linear learning-rate warm-up.
        beta_low: The low end a of the β range [a, b].
        beta_high: The high end b of the β range [a, b].
        beta_sampling: How training draws β, log-uniform in [a, b]: per-example (the authors' experiments) or per-batch (the paper's Alg. 1).
        log_beta_tilt: Draw log β with density ∝ exp(-tilt·t), t in [0, 1] from a to b (more low β for tilt > 0); null takes the architecture's recipe in a run (mlp, resnet 1), 0 elsewhere.
        log_beta_ends: Then move mass to both ends of [a, b] (0 none, 1 the arcsine density); null as log_beta_tilt.
        kl_warmup: The fraction of steps over which β ramps linearly from 0 (0 is off).
        seed: The seed of the initialisation, the batch order and the β stream.
        checkpoint_every: Steps between checkpoints (a stop signal also writes one).
        log_every: Steps between metrics lines.
        grad_clip: Clip the gradient norm to this value; null does not clip.
        device: Where training runs: auto (cuda, else mps, else cpu), cpu, cuda, cuda:N or mps.
        precision: 32, bf16-mixed or 16-mixed (with a gradient scaler).
        optimizer: adam, adamw or adamax, over every parameter (base weights and gates alike).
        weight_decay: Weight decay of the optimiser (decoupled for adamw).
        schedule: warmup-cosine or constant (after the warm-up).
        compile: Run the training forward through torch.compile (TorchInductor, which needs a C++ compiler on a CPU); the same losses as eager up to float rounding, after a one-off compilation of tens of seconds (docs/results.md §12).
        loader_workers: Worker processes that read a lazily loaded training split (CelebA, dsprites-like, a user's Dataset too large for memory) ahead of the training step; 0 reads it in the training process, null takes min(4, cores per training process - 1). In-memory splits ignore it: they move to the device once.
    """

    steps: int = 1800
    epochs: int | None = None
    batch_size: int = 128
    lr: float = 3e-3
    warmup_steps: int = 400
    beta_low: float = 0.01
    beta_high: float = 10.0
    beta_sampling: BetaSampling = BetaSampling.PER_EXAMPLE
    log_beta_tilt: float | None = None
    log_beta_ends: float | None = None
    kl_warmup: float = 0.0
    seed: int = 0
    checkpoint_every: int = 1000
    log_every: int = 200
    grad_clip: float | None = None
    device: str = "auto"
    precision: Precision = Precision.FP32
    optimizer: Optimizer = Optimizer.ADAM
    weight_decay: float = 0.0
    schedule: Schedule = Schedule.WARMUP_COSINE
    compile: bool = False
    loader_workers: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be true or false, got {self.compile!r}")
        object.__setattr__(self, "beta_sampling", BetaSampling(self.beta_sampling))
        object.__setattr__(self, "precision", Precision(self.precision))
        object.__setattr__(self, "optimizer", Optimizer(self.optimizer))
        object.__setattr__(self, "schedule", Schedule(self.schedule))
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be >= 1 (or null for a budget in steps), got {self.epochs}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.log_beta_tilt is not None and not math.isfinite(self.log_beta_tilt):
            raise ValueError(f"log_beta_tilt must be a finite number, got {self.log_beta_tilt!r}")
        if self.log_beta_ends is not None and not 0.0 <= self.log_beta_ends <= 1.0:
            raise ValueError(f"log_beta_ends must lie in [0, 1], got {self.log_beta_ends!r}")
        for name in ("steps", "batch_size", "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.loader_workers is not None and self.loader_workers < 0:
            raise ValueError(f"loader_workers must be >= 0 (or null: automatic), got {self.loader_workers}")
        _positive("lr", self.lr)
        if not 0.0 <= self.kl_warmup < 1.0:
            raise ValueError(f"kl_warmup is a fraction of training in [0, 1), got {self.kl_warmup!r}")
        if self.grad_clip is not None:
            _positive("grad_clip", self.grad_clip)
        self.beta_range  # validates the range

    @property
    def beta_range(self) -> BetaRange:
        return BetaRange(self.beta_low, self.beta_high)

    def for_data(self, num_train: int, world_size: int = 1) -> TrainConfig:
        """These settings with an ``epochs`` budget turned into ``steps`` for a training split of
        ``num_train`` examples (one step is one global batch of ``batch_size · world_size``)."""
        if self.epochs is None:
            return self
        per_epoch = max(1, num_train // (self.batch_size * world_size))  # as the batch order counts epochs
        return dataclasses.replace(self, steps=self.epochs * per_epoch, epochs=None)


@dataclass(frozen=True)
class EvalConfig:
    """How a trained model is evaluated on the test split.

    Attributes:
        num_betas: How many log-spaced βs over the training range the RD curve has.
        iwae_samples: Importance samples of the IWAE estimate of -log p(x) (0 skips it).
        iwae_beta: The β at which the IWAE estimate is taken.
        batch_size: Examples per evaluation batch.
        seed: The seed of the evaluation's latent samples.
    """

    num_betas: int = 20
    iwae_samples: int = 100
    iwae_beta: float = 1.0
    batch_size: int = 512
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_betas < 1 or self.batch_size < 1 or self.iwae_samples < 0:
            raise ValueError("num_betas and batch_size must be >= 1 and iwae_samples >= 0")
        _positive("iwae_beta", self.iwae_beta)


@dataclass(frozen=True)
class BaselineConfig:
    """The β-VAE sweep the multi-rate model is compared with.

    Every training setting not named here is the multi-rate run's, learning-rate warm-up steps included
    (capped at ``steps``).

    Attributes:
        betas: One β-VAE is trained at each of these βs.
        steps: Steps of each β-VAE; null gives each the multi-rate model's steps (equal steps per model).
        kl_warmup: The fraction of each β-VAE's steps over which β ramps linearly from 0 (0 is off).
        lr: The β-VAEs' learning rate; null uses train.lr.
    """

    betas: tuple[float, ...] = tuple(baseline_betas())
    steps: int | None = None
    kl_warmup: float = 0.0
    lr: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if not self.betas:
            raise ValueError("the baseline sweep needs at least one β")
        for b in self.betas:
            _positive("baseline β", b)
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"baseline steps must be >= 1, got {self.steps}")
        if not 0.0 <= self.kl_warmup < 1.0:
            raise ValueError(f"kl_warmup is a fraction of training in [0, 1), got {self.kl_warmup!r}")
        if self.lr is not None:
            _positive("baseline lr", self.lr)

    def steps_for(self, train: TrainConfig) -> int:
        """Steps of each β-VAE: ``steps``, or (null) the multi-rate model's: equal steps per model."""
        return self.steps if self.steps is not None else train.steps


@dataclass(frozen=True)
class RunConfig:
    """Everything one mrvae run needs; saved as config.yaml in the run folder.

    Attributes:
        data: The data set.
        model: The architecture and its conditioning.
        train: Optimisation and the training budget.
        eval: Evaluation on the test split.
        baseline: The β-VAE sweep.
        methods: The methods to train and compare: mrvae, beta-vae and yoto.
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    baseline: BaselineConfig = field(default_factory=BaselineConfig)
    methods: tuple[Method, ...] = (Method.MRVAE, Method.BETA_VAE)

    def __post_init__(self) -> None:
        methods = tuple(Method(m) for m in self.methods)
        if not methods or len(set(methods)) != len(methods):
            raise ValueError(f"methods must be a non-empty list without repeats, got {[m.value for m in methods]}")
        object.__setattr__(self, "methods", methods)
        recipe = arch_recipe(self.model.arch)  # null recipe settings take the architecture's (config.yaml shows them)
        model = {name: recipe[name] for name in ("gate_scale", "gate_input_scale") if getattr(self.model, name) is None}
        train = {name: recipe[name] for name in ("log_beta_tilt", "log_beta_ends") if getattr(self.train, name) is None}
        if model:
            object.__setattr__(self, "model", dataclasses.replace(self.model, **model))
        if train:
            object.__setattr__(self, "train", dataclasses.replace(self.train, **train))

    def for_data(self, num_train: int, world_size: int = 1) -> RunConfig:
        """These settings with a ``train.epochs`` budget turned into steps for ``num_train`` training examples
        (see ``TrainConfig.for_data``); what a run folder's ``config.yaml`` records."""
        return dataclasses.replace(self, train=self.train.for_data(num_train, world_size))
