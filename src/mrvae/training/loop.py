"""``fit()``: the one training loop for MR-VAE (gate), YOTO-style (film) and β-VAE (none, fixed β)."""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from .. import __version__
from .checkpoint import (CheckpointError, check_checkpoint_folder, estimate_checkpoint_bytes, load_checkpoint,
                         load_model_state, rng_state, save_checkpoint, set_rng_state)
from ..beta import BetaRange
from ..config import TrainConfig, to_dict
from ..data.base import DataSplits, batch_of
from .distributed import DistInfo, Reduce, all_reduce, gather_objects, init_distributed, rank_seed, run_on_main
from ..models.base import VAE
from .runtime import autocast, check_precision, grad_scaler

LogFn = Callable[[str], None]
StepHook = Callable[[int, VAE], None]

#: With 16-mixed, this many optimiser steps in a row skipped by the gradient scaler stop training.
MAX_SKIPPED_STEPS = 20


class NonFiniteError(RuntimeError):
    """Training produced a non-finite loss or gradient; the message names the step, term and β range."""


@dataclass
class FitResult:
    """What ``fit`` returns: the trained ``model``, the ``step`` reached, the training wall time in
    seconds (summed over resumed segments), and the last logged metrics."""

    model: VAE
    step: int
    wall_time_s: float
    metrics: dict[str, float] = field(default_factory=dict)


def batch_indices(num_examples: int, batch_size: int, step: int, seed: int, rank: int = 0,
                  world_size: int = 1) -> Tensor:
    """Indices (batch_size,) of the training batch at ``step``: epochs of a seeded permutation.

    A pure function of its arguments, so a resumed run sees exactly the batches it would have seen.
    With ``world_size > 1`` the global batch of ``batch_size·world_size`` is split into per-rank shards.
    """
    global_batch = batch_size * world_size
    if num_examples < global_batch:
        raise ValueError(f"the training split has {num_examples} examples, fewer than one global batch "
                         f"({global_batch}); lower batch_size")
    per_epoch = num_examples // global_batch
    epoch, position = divmod(step, per_epoch)
    order = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    start = position * global_batch + rank * batch_size
    return order[start:start + batch_size]


def learning_rate_factor(step: int, warmup_steps: int, total_steps: int) -> float:
    """Linear warm-up to 1 over ``warmup_steps``, then cosine decay to 0 at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))


def kl_weight(step: int, config: TrainConfig) -> float:
    """KL warm-up: β multiplier ramping linearly 0 -> 1 over the first ``kl_warmup`` of training."""
    if config.kl_warmup <= 0:
        return 1.0
    return min(1.0, (step + 1) / (config.kl_warmup * config.steps))


class _Objective(nn.Module):
    """The VAE's training objective as a ``forward``, so that DDP (which hooks ``forward``) can wrap it."""

    def __init__(self, vae: VAE) -> None:
        super().__init__()
        self.vae = vae

    def forward(self, x: Tensor, beta: Tensor, u: Tensor,
                generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
        per_example, out = self.vae.objective(x, beta, u, generator)
        return per_example, out.rate, out.distortion


class _Trainer:
    """Holds the optimisation state of one ``fit`` call on one rank; ``state_dict`` is what checkpoints store."""

    def __init__(self, model: VAE, data: DataSplits, config: TrainConfig, device: torch.device,
                 info: DistInfo) -> None:
        self.model, self.data, self.config, self.device, self.info = model, data, config, device, info
        objective = _Objective(model)
        if info.is_distributed:
            objective = DistributedDataParallel(objective, device_ids=[device.index] if device.type == "cuda" else None)
        self.objective = objective
        # foreach: one multi-tensor update instead of a Python loop over parameters (the gates add many
        # small tensors); same arithmetic as the default implementation
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, foreach=True)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: learning_rate_factor(s, config.warmup_steps, config.steps))
        self.precision = check_precision(device, config.precision)
        self.scaler = grad_scaler(device, self.precision)
        self.generator = torch.Generator(device=device).manual_seed(rank_seed(config.seed, info.rank))
        self.beta_range = _model_beta_range(model, config)
        self.step = 0
        self.skipped_in_a_row = 0
        self.wall_time_s = 0.0

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

    def _beta_text(self, beta: Tensor) -> str:
        low = all_reduce(beta.detach().float().min(), Reduce.MIN)
        high = all_reduce(beta.detach().float().max(), Reduce.MAX)
        return f"batch β in [{low.item():.4g}, {high.item():.4g}]"

    def _guard_terms(self, loss: Tensor, rate: Tensor, distortion: Tensor, beta: Tensor) -> None:
        """Stop every rank if the loss, mean rate or mean distortion is non-finite on any rank."""
        bad = torch.stack([~torch.isfinite(t) for t in (loss, rate, distortion)]).float()
        bad = all_reduce(bad, Reduce.MAX)
        if not bool(bad.any()):
            return
        names = [name for name, flag in zip(("loss", "rate", "distortion"), bad.tolist()) if flag]
        term = " and ".join(n for n in names if n != "loss") or "loss"
        raise NonFiniteError(f"non-finite {term} at step {self.step} ({self._beta_text(beta)}); "
                             f"the last checkpoint was kept")

    def _guard_gradient(self, grad_norm: Tensor, loss: Tensor, beta: Tensor) -> None:
        """fp32 / bf16: a non-finite gradient stops training. 16-mixed: the scaler skips that step and
        lowers its scale; only ``MAX_SKIPPED_STEPS`` skips in a row stop training."""
        if bool(torch.isfinite(grad_norm)):
            self.skipped_in_a_row = 0
            return
        if not self.scaler.is_enabled():
            raise NonFiniteError(f"non-finite gradient at step {self.step} (loss {loss.item():.4g} is finite; "
                                 f"{self._beta_text(beta)}); the last checkpoint was kept")
        self.skipped_in_a_row += 1
        if self.skipped_in_a_row >= MAX_SKIPPED_STEPS:
            raise NonFiniteError(f"non-finite gradient at step {self.step}: the 16-mixed gradient scaler skipped "
                                 f"{self.skipped_in_a_row} steps in a row (scale now {self.scaler.get_scale():.3g}; "
                                 f"{self._beta_text(beta)}); the last checkpoint was kept")

    def train_step(self) -> dict[str, Tensor]:
        """One optimisation step on this rank's shard of the global batch -> its mean loss, rate, distortion."""
        config, info = self.config, self.info
        idx = batch_indices(len(self.data.train), config.batch_size, self.step, config.seed, info.rank,
                            info.world_size)
        x = batch_of(self.data.train, idx).to(self.device)
        if self.data.train_transform is not None:
            x = self.data.train_transform(x, self.generator)
        beta = self.beta_range.sample(x.shape[0], self.generator, config.beta_sampling).to(self.device)
        u = self.model.u_of(beta)
        self.model.train()
        with autocast(self.device, self.precision):
            per_example, rate, distortion = self.objective(x, beta * kl_weight(self.step, config), u, self.generator)
        loss = per_example.float().mean()
        rate, distortion = rate.detach().float().mean(), distortion.detach().float().mean()
        self._guard_terms(loss.detach(), rate, distortion, beta)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # DDP averages the gradients over ranks here
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip or math.inf)
        self._guard_gradient(grad_norm, loss.detach(), beta)
        self.scaler.step(self.optimizer)  # skipped by the 16-mixed scaler when gradients overflowed
        self.scaler.update()
        with warnings.catch_warnings():  # the schedule follows steps taken, skipped ones included
            warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
            self.scheduler.step()
        self.step += 1
        return {"loss": loss.detach(), "rate": rate, "distortion": distortion}


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


def _check_parameters_finite(model: VAE, step: int) -> None:
    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise NonFiniteError(f"non-finite parameters after step {step} ({', '.join(bad[:3])}); "
                             f"not checkpointed, the last checkpoint was kept")


def _append_jsonl(path: Path | None, record: dict[str, Any]) -> None:
    if path is not None:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def fit(model: VAE, data: DataSplits, config: TrainConfig, *, checkpoint_path: str | Path | None = None,
        metrics_path: str | Path | None = None, tag: str = "mrvae", resume: bool = False,
        checkpoint_extra: dict[str, Any] | None = None, log: LogFn | None = None,
        progress_bar: bool = False, on_step: StepHook | None = None) -> FitResult:
    """Train ``model`` on ``data.train`` for ``config.steps`` steps, minimising mean(D + β·R).

    β per example (or per batch) is drawn log-uniformly from [beta_low, beta_high] with a generator
    seeded by ``config.seed`` (a fixed β when they are equal). Every ``checkpoint_every`` steps and at
    the end the full state is written atomically to ``checkpoint_path``; with ``resume=True`` an
    existing checkpoint there is loaded and training continues bit-identically. Every ``log_every``
    steps the mean loss / rate / distortion (nats per example) are appended to ``metrics_path`` as a
    JSON line tagged ``tag`` and passed to ``log``; ``progress_bar`` shows a tqdm bar instead.
    ``on_step(step, model)`` is called on every rank after each optimiser step.

    Under ``torchrun`` (see ``mrvae.training.distributed``) each of the N ranks trains on its own
    ``batch_size`` examples of a global batch of ``batch_size·N`` with its own random stream
    (``rank_seed``); DDP averages the gradients, so all ranks hold the same weights. Metrics are
    averaged over ranks; rank 0 alone writes checkpoints and metrics and calls ``log``.

    A non-finite loss, rate, distortion or (outside 16-mixed) gradient raises ``NonFiniteError``
    before the optimiser step, so the last checkpoint stays the last good state. Before training,
    the checkpoint folder is checked for write access and free space (``CheckpointError``).
    """
    info, device = init_distributed(config.device)
    model.to(device)
    checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
    if checkpoint_path is not None:
        needed = estimate_checkpoint_bytes(model)
        run_on_main(lambda: check_checkpoint_folder(checkpoint_path, needed))
    trainer = _Trainer(model, data, config, device, info)
    log = log if info.is_main else None
    metrics_path = Path(metrics_path) if metrics_path is not None and info.is_main else None
    if resume and checkpoint_path is not None and run_on_main(checkpoint_path.exists):
        # on the CPU: RNG states must stay CPU tensors; weights and optimiser state are copied or
        # moved to the model's device by their load_state_dict
        state = load_checkpoint(checkpoint_path)
        if state.get("tag") != tag:
            raise CheckpointError(f"checkpoint {checkpoint_path} belongs to {state.get('tag')!r}, not {tag!r}")
        trainer.load_state_dict(state, checkpoint_path)
        if log:
            log(f"[{tag}] resumed from {checkpoint_path} at step {trainer.step}")

    extra = {"package_version": __version__, "tag": tag, "train_config": to_dict(config),
             "beta_range": [trainer.beta_range.low, trainer.beta_range.high], **(checkpoint_extra or {})}

    def checkpoint() -> None:
        if checkpoint_path is not None:
            _check_parameters_finite(model, trainer.step)
            state = {**extra, **trainer.state_dict()}
            run_on_main(lambda: save_checkpoint(state, checkpoint_path))

    bar = None
    if progress_bar and info.is_main:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=trainer.step, desc=tag, unit="step", leave=False)
    keys = ("loss", "rate", "distortion")
    sums = torch.zeros(len(keys), device=device)
    count = 0
    metrics: dict[str, float] = {}
    while trainer.step < config.steps:
        started = time.perf_counter()
        terms = trainer.train_step()
        trainer.wall_time_s += time.perf_counter() - started
        if on_step is not None:
            on_step(trainer.step, model)
        sums += torch.stack([terms[key] for key in keys])
        count += 1
        if bar is not None:
            bar.update(1)
        if trainer.step % config.log_every == 0 or trainer.step == config.steps:
            means = all_reduce(sums / count) / info.world_size
            metrics = dict(zip(keys, means.tolist()))
            record = {"tag": tag, "step": trainer.step, **metrics, "lr": trainer.scheduler.get_last_lr()[0],
                      "wall_time_s": round(trainer.wall_time_s, 3)}
            _append_jsonl(metrics_path, record)
            if bar is not None:
                bar.set_postfix(loss=f"{metrics['loss']:.2f}")
            elif log:
                log(f"[{tag}] step {trainer.step}/{config.steps} loss {metrics['loss']:.3f} "
                    f"rate {metrics['rate']:.3f} distortion {metrics['distortion']:.3f} nats")
            sums.zero_()
            count = 0
        if trainer.step % config.checkpoint_every == 0 and trainer.step < config.steps:
            checkpoint()
    if bar is not None:
        bar.close()
    checkpoint()
    model.eval()
    return FitResult(model, trainer.step, trainer.wall_time_s, metrics)
