"""Evaluation at fixed β on a held-out split: rate, distortion, β-objective, -ELBO, IWAE, active units."""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..training import distributed
from ..config import EvalConfig, Method
from .curves import CurveSummary, RDCurve
from ..data.base import batch_of
from ..models.base import VAE

ACTIVE_UNIT_THRESHOLD = 0.01


def _my_batches(dataset: Dataset, batch_size: int) -> Iterator[tuple[int, Tensor]]:
    """(index, batch) of this rank's share of the fixed batches: batch i goes to rank i mod N."""
    info = distributed.current()
    n = len(dataset)
    for index, start in enumerate(range(0, n, batch_size)):
        if index % info.world_size == info.rank:
            yield index, batch_of(dataset, torch.arange(start, min(n, start + batch_size)))


def _batch_generator(device: torch.device, seed: int, index: int) -> torch.Generator:
    """The noise of batch ``index`` depends on (seed, index) only, so sharded and one-process
    evaluations draw the same samples for every example."""
    return torch.Generator(device=device).manual_seed((seed * 1_000_003 + index) % 2**64)


@torch.no_grad()
def evaluate_at(model: VAE, dataset: Dataset, beta: float, config: EvalConfig = EvalConfig()) -> dict[str, float]:
    """Mean over ``dataset`` at one β (same β for every example) -> dict of nats per example:
    rate, distortion (one z sample), beta_objective, neg_elbo (R + D), and active_units (latents whose
    posterior mean varies across examples with variance >= ``ACTIVE_UNIT_THRESHOLD``).

    In a process group (torchrun) every rank must call it: each evaluates its share of the batches,
    and the float64 sums (rate, distortion, count, and the per-latent sums and sums of squares of the
    posterior means) are all-reduced, so every rank returns the numbers of a one-process evaluation.
    """
    model.eval()
    device = next(model.parameters()).device
    k = model.latent_dim
    # [rate sum, distortion sum, count, Σ mean (k), Σ mean² (k)], float64 on the CPU
    sums = torch.zeros(3 + 2 * k, dtype=torch.float64)
    u = model.u_of(float(beta))
    for index, x in _my_batches(dataset, config.batch_size):
        x = x.to(device)
        out = model(x, u, _batch_generator(device, config.seed, index))
        means = out.mean.detach().cpu().double()
        sums[0] += out.rate.detach().cpu().double().sum()
        sums[1] += out.distortion.detach().cpu().double().sum()
        sums[2] += x.shape[0]
        sums[3:3 + k] += means.sum(dim=0)
        sums[3 + k:] += means.square().sum(dim=0)
    sums = distributed.all_reduce(sums)
    count = float(sums[2])
    if count == 0:
        raise ValueError("cannot evaluate on an empty data set")
    rate, dist = float(sums[0]) / count, float(sums[1]) / count
    active = 0
    if count > 1:
        total, squares = sums[3:3 + k], sums[3 + k:]
        variance = (squares - total.square() / count) / (count - 1)  # unbiased variance of the means
        active = int((variance >= ACTIVE_UNIT_THRESHOLD).sum())
    return {"rate": rate, "distortion": dist, "beta_objective": dist + beta * rate, "neg_elbo": rate + dist,
            "active_units": float(active)}


@torch.no_grad()
def iwae_nll(model: VAE, dataset: Dataset, beta: float, num_samples: int,
             config: EvalConfig = EvalConfig()) -> float:
    """-log p(x) estimated by the IWAE bound with ``num_samples`` samples at β, mean nats per example.

    Sharded over the ranks of a process group like ``evaluate_at`` (every rank must call it)."""
    model.eval()
    device = next(model.parameters()).device
    sums = torch.zeros(2, dtype=torch.float64)  # [Σ -bound, count]
    for index, x in _my_batches(dataset, max(1, config.batch_size // 4)):
        x = x.to(device)
        bound = model.iwae_bound(x, model.u_of(float(beta)), num_samples,
                           generator=_batch_generator(device, config.seed + 1, index))
        sums[0] -= bound.detach().cpu().double().sum()
        sums[1] += x.shape[0]
    sums = distributed.all_reduce(sums)
    if float(sums[1]) == 0:
        raise ValueError("cannot evaluate on an empty data set")
    return float(sums[0]) / float(sums[1])


def evaluate_curve(model: VAE, dataset: Dataset, betas: Sequence[float], method: Method,
                   config: EvalConfig = EvalConfig(), *, run_config: dict[str, Any] | None = None,
                   train_wall_time_s: float = math.nan) -> RDCurve:
    """One multi-rate model of ``method`` evaluated at each β in ``betas`` (all inside its ``beta_range``)
    -> an ``RDCurve``, with the IWAE NLL at ``config.iwae_beta`` (if inside the range and ``iwae_samples > 0``)."""
    started = time.perf_counter()
    beta_range = model.beta_range
    outside = [b for b in betas if not beta_range.contains(b)]
    if outside:
        raise ValueError(f"β {outside} outside the model's training range [{beta_range.low}, {beta_range.high}]")
    points = [evaluate_at(model, dataset, b, config) for b in betas]
    iwae = None
    if config.iwae_samples > 0 and beta_range.contains(config.iwae_beta):
        iwae = iwae_nll(model, dataset, config.iwae_beta, config.iwae_samples, config)
    summary = CurveSummary(iwae, config.iwae_beta, config.iwae_samples, train_wall_time_s,
                           time.perf_counter() - started, count_parameters(model))
    return RDCurve.from_points(method, betas, points, summary, run_config)


def count_parameters(model: VAE) -> int:
    """The number of scalar parameters of ``model``."""
    return sum(p.numel() for p in model.parameters())
