"""Evaluation at fixed β on a held-out split: rate, distortion, β-objective, -ELBO, IWAE, active units."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from .beta import BetaRange
from .config import EvalConfig
from .curves import RDCurve
from .data.base import batch_of
from .models.base import VAE
from .objectives import iwae_bound

ACTIVE_UNIT_THRESHOLD = 0.01


def _batches(dataset: Dataset, batch_size: int):
    n = len(dataset)
    for start in range(0, n, batch_size):
        yield batch_of(dataset, torch.arange(start, min(n, start + batch_size)))


def _u_for(model: VAE, beta: float, beta_range: BetaRange, batch: int, device: torch.device) -> torch.Tensor:
    return beta_range.standardise(torch.full((batch, 1), float(beta))).to(device=device, dtype=torch.float32)


@torch.no_grad()
def evaluate_at(model: VAE, dataset: Dataset, beta: float, beta_range: BetaRange,
                config: EvalConfig = EvalConfig()) -> dict[str, float]:
    """Mean over ``dataset`` at one β (same β for every example) -> dict of nats per example:
    rate, distortion (one z sample), beta_objective, neg_elbo (R + D), and active_units."""
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(config.seed)
    totals = {"rate": 0.0, "distortion": 0.0}
    means = []
    count = 0
    for x in _batches(dataset, config.batch_size):
        x = x.to(device)
        out = model(x, _u_for(model, beta, beta_range, x.shape[0], device), generator)
        totals["rate"] += float(out.rate.double().sum())
        totals["distortion"] += float(out.distortion.double().sum())
        means.append(out.mean.double().cpu())
        count += x.shape[0]
    rate, dist = totals["rate"] / count, totals["distortion"] / count
    all_means = torch.cat(means)
    active = int((all_means.var(dim=0, unbiased=True) >= ACTIVE_UNIT_THRESHOLD).sum()) if count > 1 else 0
    return {"rate": rate, "distortion": dist, "beta_objective": dist + beta * rate, "neg_elbo": rate + dist,
            "active_units": float(active)}


@torch.no_grad()
def iwae_nll(model: VAE, dataset: Dataset, beta: float, beta_range: BetaRange, num_samples: int,
             config: EvalConfig = EvalConfig()) -> float:
    """-log p(x) estimated by the IWAE bound with ``num_samples`` samples at β, mean nats per example."""
    model.eval()
    device = next(model.parameters()).device
    generator = torch.Generator(device=device).manual_seed(config.seed + 1)
    total, count = 0.0, 0
    for x in _batches(dataset, max(1, config.batch_size // 4)):
        x = x.to(device)
        bound = iwae_bound(model, x, _u_for(model, beta, beta_range, x.shape[0], device), num_samples,
                           generator=generator)
        total += float(-bound.double().sum())
        count += x.shape[0]
    return total / count


def evaluate_curve(model: VAE, dataset: Dataset, betas: Sequence[float], beta_range: BetaRange,
                   config: EvalConfig = EvalConfig(), name: str = "mrvae", kind: str = "mrvae",
                   run_config: dict[str, Any] | None = None, train_wall_time_s: float = math.nan) -> RDCurve:
    """One model evaluated at each β in ``betas`` (all inside ``beta_range``) -> an ``RDCurve``,
    with the IWAE NLL at ``config.iwae_beta`` (if inside the range and ``iwae_samples > 0``)."""
    started = time.perf_counter()
    outside = [b for b in betas if not beta_range.contains(b)]
    if outside:
        raise ValueError(f"β {outside} outside the model's training range [{beta_range.low}, {beta_range.high}]")
    rows = [evaluate_at(model, dataset, b, beta_range, config) for b in betas]
    results = {key: [row[key] for row in rows] for key in rows[0]}
    iwae = None
    if config.iwae_samples > 0 and beta_range.contains(config.iwae_beta):
        iwae = iwae_nll(model, dataset, config.iwae_beta, beta_range, config.iwae_samples, config)
    summary = {"iwae_nll": iwae, "iwae_beta": config.iwae_beta, "iwae_samples": config.iwae_samples,
               "train_wall_time_s": train_wall_time_s, "eval_wall_time_s": time.perf_counter() - started,
               "num_parameters": sum(p.numel() for p in model.parameters())}
    return RDCurve(name, kind, [float(b) for b in betas], results, summary, run_config or {})
