"""``fit()``: the one training loop for MR-VAE (gate), YOTO-style (film) and β-VAE (none, fixed β)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import __version__
from .checkpoint import CheckpointError, load_checkpoint, load_model_state, rng_state, save_checkpoint, set_rng_state
from .config import Precision, TrainConfig, to_dict
from .data.base import DataSplits, batch_of
from .models.base import VAE
from .runtime import autocast, resolve_device

LogFn = Callable[[str], None]


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


def _check_finite(step: int, loss: Tensor, rate: Tensor, distortion: Tensor, beta: Tensor) -> None:
    if bool(torch.isfinite(loss)):
        return
    bad = [name for name, t in (("rate", rate), ("distortion", distortion)) if not bool(torch.isfinite(t).all())]
    term = " and ".join(bad) or "loss"
    raise NonFiniteError(f"non-finite {term} at step {step} (batch β in [{beta.min().item():.4g}, "
                         f"{beta.max().item():.4g}])")


class _Trainer:
    """Holds the optimisation state of one ``fit`` call; ``state_dict`` is what checkpoints store."""

    def __init__(self, model: VAE, data: DataSplits, config: TrainConfig, device: torch.device) -> None:
        self.model, self.data, self.config, self.device = model, data, config, device
        self.optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: learning_rate_factor(s, config.warmup_steps, config.steps))
        self.scaler = torch.amp.GradScaler(device.type, enabled=config.precision is Precision.FP16_MIXED)
        self.generator = torch.Generator(device=device).manual_seed(config.seed)
        self.beta_range = config.beta_range
        self.step = 0
        self.wall_time_s = 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"step": self.step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "scaler": self.scaler.state_dict(),
                "rng": {**rng_state(), "train_generator": self.generator.get_state()},
                "wall_time_s": self.wall_time_s}

    def load_state_dict(self, state: dict[str, Any], path: Path) -> None:
        load_model_state(self.model, state["model"], path)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.generator.set_state(state["rng"]["train_generator"])
        self.step = int(state["step"])
        self.wall_time_s = float(state.get("wall_time_s", 0.0))

    def train_step(self) -> dict[str, Tensor]:
        config = self.config
        idx = batch_indices(len(self.data.train), config.batch_size, self.step, config.seed)
        x = batch_of(self.data.train, idx).to(self.device)
        if self.data.train_transform is not None:
            x = self.data.train_transform(x, self.generator)
        beta = self.beta_range.sample(x.shape[0], self.generator, config.beta_sampling).to(self.device)
        u = self.beta_range.standardise(beta)
        self.model.train()
        with autocast(self.device, config.precision):
            per_example, out = self.model.objective(x, beta * kl_weight(self.step, config), u, self.generator)
            loss = per_example.float().mean()
        _check_finite(self.step, loss, out.rate, out.distortion, beta)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip or math.inf)
        if not bool(torch.isfinite(grad_norm)) and not self.scaler.is_enabled():
            raise NonFiniteError(f"non-finite gradient at step {self.step} (batch β in "
                                 f"[{beta.min().item():.4g}, {beta.max().item():.4g}])")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.step += 1
        return {"loss": loss.detach(), "rate": out.rate.detach().float().mean(),
                "distortion": out.distortion.detach().float().mean()}


def _append_jsonl(path: Path | None, record: dict[str, Any]) -> None:
    if path is not None:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def fit(model: VAE, data: DataSplits, config: TrainConfig, *, checkpoint_path: str | Path | None = None,
        metrics_path: str | Path | None = None, tag: str = "mrvae", resume: bool = False,
        checkpoint_extra: dict[str, Any] | None = None, log: LogFn | None = None,
        progress_bar: bool = False) -> FitResult:
    """Train ``model`` on ``data.train`` for ``config.steps`` steps, minimising mean(D + β·R).

    β per example (or per batch) is drawn log-uniformly from [beta_low, beta_high] with a generator
    seeded by ``config.seed`` (a fixed β when they are equal). Every ``checkpoint_every`` steps and at
    the end the full state is written atomically to ``checkpoint_path``; with ``resume=True`` an
    existing checkpoint there is loaded and training continues bit-identically. Every ``log_every``
    steps the mean loss / rate / distortion (nats per example) are appended to ``metrics_path`` as a
    JSON line tagged ``tag`` and passed to ``log``; ``progress_bar`` shows a tqdm bar instead.
    """
    device = resolve_device(config.device)
    model.to(device)
    trainer = _Trainer(model, data, config, device)
    checkpoint_path = Path(checkpoint_path) if checkpoint_path is not None else None
    metrics_path = Path(metrics_path) if metrics_path is not None else None
    if resume and checkpoint_path is not None and checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path, map_location=device)
        if state.get("tag") != tag:
            raise CheckpointError(f"checkpoint {checkpoint_path} belongs to {state.get('tag')!r}, not {tag!r}")
        trainer.load_state_dict(state, checkpoint_path)
        if log:
            log(f"[{tag}] resumed from {checkpoint_path} at step {trainer.step}")

    extra = {"package_version": __version__, "tag": tag, "train_config": to_dict(config), **(checkpoint_extra or {})}

    def checkpoint() -> None:
        if checkpoint_path is not None:
            save_checkpoint({**extra, **trainer.state_dict()}, checkpoint_path)

    bar = None
    if progress_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=trainer.step, desc=tag, unit="step", leave=False)
    sums: dict[str, Tensor] = {}
    count = 0
    metrics: dict[str, float] = {}
    while trainer.step < config.steps:
        started = time.perf_counter()
        terms = trainer.train_step()
        trainer.wall_time_s += time.perf_counter() - started
        for key, value in terms.items():
            sums[key] = sums.get(key, 0.0) + value
        count += 1
        if bar is not None:
            bar.update(1)
        if trainer.step % config.log_every == 0 or trainer.step == config.steps:
            metrics = {key: float(value) / count for key, value in sums.items()}
            record = {"tag": tag, "step": trainer.step, **metrics, "lr": trainer.scheduler.get_last_lr()[0],
                      "wall_time_s": round(trainer.wall_time_s, 3)}
            _append_jsonl(metrics_path, record)
            if bar is not None:
                bar.set_postfix(loss=f"{metrics['loss']:.2f}")
            elif log:
                log(f"[{tag}] step {trainer.step}/{config.steps} loss {metrics['loss']:.3f} "
                    f"rate {metrics['rate']:.3f} distortion {metrics['distortion']:.3f} nats")
            sums, count = {}, 0
        if trainer.step % config.checkpoint_every == 0 and trainer.step < config.steps:
            checkpoint()
    if bar is not None:
        bar.close()
    checkpoint()
    model.eval()
    return FitResult(model, trainer.step, trainer.wall_time_s, metrics)
