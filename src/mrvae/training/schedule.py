"""What training step ``s`` sees: its batch (seeded epochs, sharded over ranks), learning rate and KL weight."""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

from ..config import Schedule, TrainConfig


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
    start = position * global_batch + rank * batch_size
    return epoch_order(num_examples, seed, epoch)[start:start + batch_size]


@functools.lru_cache(maxsize=2)
def epoch_order(num_examples: int, seed: int, epoch: int) -> Tensor:
    """(num_examples,) the seeded permutation of one epoch; drawn once per epoch (cached), not per step."""
    order = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
    order.requires_grad_(False)
    return order


def learning_rate_lambda(config: TrainConfig):
    """The multiplier of ``config.lr`` at step s for ``config.schedule``: warm-up then cosine, or warm-up
    then constant."""
    if config.schedule is Schedule.CONSTANT:
        return lambda s: min(1.0, (s + 1) / config.warmup_steps) if config.warmup_steps > 0 else 1.0
    return lambda s: learning_rate_factor(s, config.warmup_steps, config.steps)


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
