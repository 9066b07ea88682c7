"""``fit()``: the one training loop for MR-VAE (gate), YOTO-style (film) and β-VAE (none, fixed β)."""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..config import TrainConfig
from ..data.base import DataSplits
from ..models.base import VAE
from .checkpointer import Checkpointer
from .distributed import DistInfo, Reduce, all_reduce, init_distributed
from .interrupt import StopSignals, TrainingInterrupted
from .reporting import LogFn, MetricsWriter, Progress, TensorBoardScalars
from .trainer import NonFiniteError, Trainer

StepHook = Callable[[int, VAE], None]


@dataclass(frozen=True)
class FitFiles:
    """What one ``fit`` reads and writes: its ``checkpoint`` (resumed from when ``resume`` is set and
    the file exists), the ``metrics`` JSON-lines file it appends to, the ``tag`` naming both, and
    ``extra`` entries stored in the checkpoint beside the training state; ``tensorboard``: a folder that
    gets the metrics as TensorBoard scalars in ``tensorboard/<tag>`` (needs ``mrvae[tensorboard]``).
    None: no such file."""

    checkpoint: str | Path | None = None
    metrics: str | Path | None = None
    tag: str = "fit"
    resume: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    tensorboard: str | Path | None = None


@dataclass
class FitResult:
    """What ``fit`` returns: the trained ``model``, the ``step`` reached, the training wall time in
    seconds (summed over resumed segments), and the last logged metrics."""

    model: VAE
    step: int
    wall_time_s: float
    metrics: dict[str, float] = field(default_factory=dict)


def _path(path: str | Path | None) -> Path | None:
    return Path(path) if path is not None else None


def fit(model: VAE, data: DataSplits, config: TrainConfig, files: FitFiles = FitFiles(), *,
        log: LogFn | None = None, progress_bar: bool = False, on_step: StepHook | None = None) -> FitResult:
    """Train ``model`` on ``data.train`` for ``config.steps`` steps, minimising mean(D + β·R).

    β per example (or per batch) is drawn log-uniformly from the model's ``beta_range`` (which must be
    ``config``'s) with a generator seeded by ``config.seed``. Every ``checkpoint_every`` steps and at the
    end the full state is written atomically to ``files.checkpoint``; ``files.resume`` continues from it
    bit-identically. Every ``log_every`` steps the mean loss / rate / distortion (nats per example) go to
    ``files.metrics`` as a JSON line and to ``log`` (or a tqdm bar with ``progress_bar``).
    ``on_step(step, model)`` is called on every rank after each optimiser step.

    Under ``torchrun`` (``mrvae.training.distributed``) each of N ranks trains on its own ``batch_size``
    examples of a global batch with its own random stream; DDP averages the gradients. Metrics are
    averaged over ranks; rank 0 alone writes files and logs. A non-finite loss, rate, distortion or
    (outside 16-mixed) gradient raises ``NonFiniteError`` before the optimiser step, and non-finite
    weights are never checkpointed. The checkpoint folder's access and free space are checked first.
    """
    info, device = init_distributed(config.device)
    config = config.for_data(len(data.train), info.world_size)  # an epochs budget becomes steps
    board = TensorBoardScalars(_path(files.tensorboard) if info.is_main else None, files.tag)
    model.to(device)
    checkpointer = Checkpointer(_path(files.checkpoint), files.tag, files.extra, model)
    trainer = Trainer(model, data, config, device, info)
    progress = Progress(files.tag, config.steps, log if info.is_main else None, progress_bar and info.is_main)
    metrics = MetricsWriter(_path(files.metrics) if info.is_main else None, files.tag, device, info.world_size, board)
    if files.resume:
        resumed = checkpointer.resume(trainer, metrics)
        progress.note(f"resumed from {files.checkpoint} at step {trainer.step}" if resumed
                      else f"no checkpoint to resume at {files.checkpoint}: training starts at step 0")
        metrics.truncate_after(trainer.step)
    board.start(trainer.step)
    if config.compile and trainer.step < config.steps:
        progress.note("train.compile: the second step compiles the training forward (once; seconds to a minute)")
    try:
        _train(trainer, checkpointer, metrics, progress, on_step)
    except NonFiniteError as exc:
        raise NonFiniteError(f"{exc}; {checkpointer.kept_note()}") from None
    finally:
        board.close()
        trainer.batches.close()  # ends the data loader's worker processes
    model.eval()
    return FitResult(model, trainer.step, trainer.wall_time_s, metrics.last)


def _train(trainer: Trainer, checkpointer: Checkpointer, metrics: MetricsWriter, progress: Progress,
           on_step: StepHook | None) -> None:
    """The loop of ``fit``: steps, metrics lines, periodic and final checkpoints; a stop signal (SIGINT,
    SIGTERM) ends it after the current step with a checkpoint and ``TrainingInterrupted``."""
    config = trainer.config
    started = trainer.step
    progress.start(trainer.step)
    with StopSignals() as stop:
        while trainer.step < config.steps:
            terms = trainer.train_step()
            if on_step is not None:
                on_step(trainer.step, trainer.model)
            metrics.add(terms)
            progress.advance()
            if trainer.step % config.log_every == 0 or trainer.step == config.steps:
                trainer.check_finite()
                progress.show(trainer.step, metrics.write(trainer.step, trainer.learning_rate, trainer.wall_time_s))
            if _stop_requested(stop, trainer.info):
                progress.close()
                trainer.check_finite()
                checkpointer.save(trainer, metrics)
                path = str(checkpointer.path) if checkpointer.path is not None else None
                raise TrainingInterrupted(stop.requested or signal.SIGTERM, checkpointer.tag, trainer.step, path)
            if trainer.step % config.checkpoint_every == 0 and trainer.step < config.steps:
                trainer.check_finite()
                checkpointer.save(trainer, metrics)
    progress.close()
    if trainer.step > started:  # a resumed finished run rewrites nothing
        trainer.check_finite()
        checkpointer.save(trainer, metrics)


def _stop_requested(stop: StopSignals, info: DistInfo) -> bool:
    """Whether a stop signal arrived here (or, under DDP, on any rank: every rank must stop at the same step)."""
    if not info.is_distributed:
        return stop.requested is not None
    flag = torch.tensor([0.0 if stop.requested is None else float(stop.requested)])
    stop.requested = int(all_reduce(flag, Reduce.MAX).item()) or None
    return stop.requested is not None
