"""One rank's optimisation state in ``fit`` and one training step, guarded against non-finite numbers."""

from __future__ import annotations

import math
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..beta import BetaRange
from ..config import Optimizer, TrainConfig
from ..data.base import DataSplits
from ..models.base import VAE, NoiseSource
from .batches import training_batches
from .checkpoint import CheckpointError, load_model_state, rng_state, set_rng_state
from .distributed import DistInfo, Reduce, all_reduce, gather_objects, rank_seed
from .runtime import autocast, check_precision, grad_scaler
from .schedule import kl_weight, learning_rate_lambda

#: With 16-mixed, this many optimiser steps in a row skipped by the gradient scaler stop training.
MAX_SKIPPED_STEPS = 20


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss or gradient; the message names the step, term and β range."""


class _Objective(nn.Module):
    """The VAE's training objective as a ``forward``, so that DDP (which hooks ``forward``) can wrap it."""

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: Tensor, beta: Tensor, u: Tensor,
                generator: torch.Generator | NoiseSource) -> tuple[Tensor, Tensor, Tensor]:
        per_example, out = self.vae.objective(x, beta, u, generator)
        return per_example, out.rate, out.distortion


def _model_beta_range(model: VAE, config: TrainConfig) -> BetaRange:
    """The β range training samples from: the model's own, which must be the one ``config`` asks for."""
    own = getattr(model, "beta_range", None)
    if not isinstance(own, BetaRange):
        raise TypeError(f"{type(model).__name__} carries no beta_range; mrvae models and converted models do")
    if own != config.beta_range:
        raise ValueError(f"the model was built for β in [{own.low:g}, {own.high:g}] but the training settings ask "
                         f"for [{config.beta_low:g}, {config.beta_high:g}]; build the model with "
                         f"beta_range=BetaRange({config.beta_low:g}, {config.beta_high:g}) or change the settings")
    return own


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """``config.optimizer`` over every parameter at ``config.lr``. Adam and AdamW are the fused kernels,
    which take a ``found_inf`` flag on the device and skip a step whose loss or gradient is not finite
    without reading it back to the host; Adamax has no fused kernel (foreach: one multi-tensor update)."""
    params, lr, decay = model.parameters(), config.lr, config.weight_decay
    if config.optimizer is Optimizer.ADAMW:
        return torch.optim.AdamW(params, lr=lr, weight_decay=decay, fused=True)
    if config.optimizer is Optimizer.ADAMAX:
        return torch.optim.Adamax(params, lr=lr, weight_decay=decay, foreach=True)
    return torch.optim.Adam(params, lr=lr, weight_decay=decay, fused=True)


class Trainer:
    """The optimisation state of one ``fit`` call on one rank (``state_dict`` is what checkpoints store)
    and its step: ``step`` steps taken, ``wall_time_s`` spent in them (summed over resumed segments)."""

    def __init__(self, model: VAE, data: DataSplits, config: TrainConfig, device: torch.device,
                 info: DistInfo) -> None:
        self.model, self.data, self.config, self.device, self.info = model, data, config, device, info
        objective = _Objective(model)
        if info.is_distributed:
            objective = DistributedDataParallel(objective, device_ids=[device.index] if device.type == "cuda" else None)
        self.objective = objective
        # compiled: the forward and its backward as fused kernels, the noise drawn outside (see _objective_and_noise)
        self.compiled = torch.compile(objective) if config.compile else None
        self.noise_shapes: list | None = None
        self.optimizer = make_optimizer(model, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, learning_rate_lambda(config))
        self.precision = check_precision(device, config.precision)
        self.scaler = grad_scaler(device, self.precision)
        self.generator = torch.Generator(device=device).manual_seed(rank_seed(config.seed, info.rank))
        self.beta_range = _model_beta_range(model, config)
        self.batches = training_batches(data.train, config, device, info)  # fit closes it (loader workers)
        self.step = 0
        self.skipped_in_a_row = 0
        # the first non-finite step since the last check (-1: none), its terms and β range, on the device
        self.bad_step = torch.full((), -1, dtype=torch.long, device=device)
        self.bad_terms = torch.zeros(4, device=device)
        self.bad_betas = torch.zeros(2, device=device)
        self.wall_time_s = 0.0

    @property
    def learning_rate(self) -> float:
        """The learning rate of the next step."""
        return self.scheduler.get_last_lr()[0]

    def state_dict(self) -> dict[str, Any]:
        """Everything a resume needs; collective under DDP (every rank's RNG states are gathered)."""
        rng = {**rng_state(self.device), "train_generator": self.generator.get_state()}
        return {"step": self.step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(), "rng": rng,
                "rank_rng": gather_objects(rng), "world_size": self.info.world_size,
                "wall_time_s": self.wall_time_s}

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.info.world_size:
            raise CheckpointError(f"checkpoint {path} was written by {saved_world} process(es) and this run has "
                                  f"{self.info.world_size}: resume with the same number of processes "
                                  f"(the batch order and per-rank random streams depend on it)")
        load_model_state(self.model, state["model"], path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        rng = state.get("rank_rng", [state["rng"]])[self.info.rank]
        set_rng_state(rng, self.device)
        self.generator.set_state(rng["train_generator"].cpu())
        self.step = int(state["step"])
        self.wall_time_s = float(state.get("wall_time_s", 0.0))

    def _beta_text(self, low: Tensor, high: Tensor) -> str:
        low = all_reduce(low.detach().float(), Reduce.MIN)
        high = all_reduce(high.detach().float(), Reduce.MAX)
        return f"batch β in [{low.item():.4g}, {high.item():.4g}]"

    def _record_non_finite(self, loss: Tensor, rate: Tensor, distortion: Tensor, grad_norm: Tensor,
                           beta: Tensor) -> Tensor:
        """Note on the device (no host read) whether this step's loss, rate, distortion or gradient is
        non-finite, keeping the first such step, its terms and its batch's β range for ``check_finite``
        -> this step's flag, a float32 scalar (1: non-finite)."""
        flags = torch.stack([~torch.isfinite(t.detach().float()) for t in (loss, rate, distortion, grad_norm)])
        first = flags.any() & (self.bad_step < 0)
        self.bad_step = torch.where(first, torch.full_like(self.bad_step, self.step), self.bad_step)
        self.bad_terms = torch.where(first, flags.float(), self.bad_terms)
        span = torch.stack([beta.detach().float().min(), beta.detach().float().max()])
        self.bad_betas = torch.where(first, span, self.bad_betas)
        return flags.any().float()

    def check_finite(self) -> None:
        """Raise ``NonFiniteError`` (on every rank) if a step since the last check had a non-finite loss, rate,
        distortion or (fp32 / bf16) gradient, naming the first such step, the term and the batch's β range.
        One host read; ``fit`` calls it before every metrics line and checkpoint, so no bad state is saved."""
        bad_step = int(all_reduce(self.bad_step.float(), Reduce.MAX).item())
        if bad_step < 0:
            return
        flags = all_reduce(self.bad_terms, Reduce.MAX).tolist()
        names = [name for name, flag in zip(("loss", "rate", "distortion", "gradient"), flags) if flag]
        term = " and ".join(n for n in names if n not in ("loss", "gradient")) or names[0]
        beta_text = self._beta_text(self.bad_betas[0], self.bad_betas[1])
        raise NonFiniteError(f"non-finite {term} at step {bad_step} ({beta_text})")

    def _guard_scaled_gradient(self, grad_norm: Tensor, beta: Tensor) -> None:
        """16-mixed: the scaler skips a step whose gradients overflowed and lowers its scale; only
        ``MAX_SKIPPED_STEPS`` skips in a row stop training (the scaler reads the flag every step anyway)."""
        if bool(torch.isfinite(grad_norm)):
            self.skipped_in_a_row = 0
            return
        self.skipped_in_a_row += 1
        if self.skipped_in_a_row >= MAX_SKIPPED_STEPS:
            beta_text = self._beta_text(beta.min(), beta.max())
            raise NonFiniteError(f"non-finite gradient at step {self.step}: the 16-mixed gradient scaler skipped "
                                 f"{self.skipped_in_a_row} steps in a row (scale now {self.scaler.get_scale():.3g}; "
                                 f"{beta_text})")

    def _objective_and_noise(self) -> tuple[nn.Module, torch.Generator | NoiseSource]:
        """The objective to call and where its noise comes from: eager with the generator; compiled, the first
        step of a ``fit`` runs eagerly and records the shapes of its noise, and every later step runs the
        compiled graph on noise drawn beforehand from the generator in those shapes (the same values)."""
        if self.compiled is None:
            return self.objective, self.generator
        if self.noise_shapes is None:
            return self.objective, NoiseSource(self.generator)
        return self.compiled, NoiseSource.drawn(self.generator, self.noise_shapes)

    def train_step(self) -> dict[str, Tensor]:
        """One optimisation step on this rank's shard of the global batch -> its mean loss, rate, distortion."""
        started = time.perf_counter()
        config = self.config
        x = self.batches.batch(self.step)
        if self.data.train_transform is not None:
            x = self.data.train_transform(x, self.generator)
        beta = self.beta_range.sample(x.shape[0], self.generator, config.beta_sampling, tilt=config.log_beta_tilt or 0.0,
                                      ends=config.log_beta_ends or 0.0).to(self.device)
        u = self.model.u_of(beta, checked=False)  # β drawn here from the model's own range
        self.model.train()
        objective, noise = self._objective_and_noise()
        with autocast(self.device, self.precision):
            per_example, rate, distortion = objective(x, beta * kl_weight(self.step, config), u, noise)
        if isinstance(noise, NoiseSource) and noise.draws is None:
            self.noise_shapes = noise.shapes
        loss = per_example.float().mean()
        rate, distortion = rate.detach().float().mean(), distortion.detach().float().mean()
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # DDP averages the gradients over ranks here
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip or math.inf)
        if self.scaler.is_enabled():
            self._record_non_finite(loss, rate, distortion, torch.zeros_like(grad_norm), beta)
            self._guard_scaled_gradient(grad_norm, beta)
        else:
            bad = self._record_non_finite(loss, rate, distortion, grad_norm, beta)
            if getattr(self.optimizer, "defaults", {}).get("fused"):
                self.optimizer.found_inf = bad  # the fused kernel skips this update on the device if set
        self.scaler.step(self.optimizer)  # skipped by the 16-mixed scaler when gradients overflowed
        self.scaler.update()
        with warnings.catch_warnings():  # the schedule follows steps taken, skipped ones included
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
            self.scheduler.step()
        self.step += 1
        self.wall_time_s += time.perf_counter() - started
        return {"loss": loss.detach(), "rate": rate, "distortion": distortion}
