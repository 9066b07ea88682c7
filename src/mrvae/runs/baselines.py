"""The β-VAE sweep: one fixed-β run per baseline β through the same ``fit()``, as one RD curve.

Under torchrun the sweep is spread over the ranks: β number i goes to rank i mod N, which trains and
evaluates it alone (``distributed.single_process``: no DDP, ``train.batch_size`` per step, the run's
seed), so each β-VAE is the one a one-process run trains. The points are then gathered and every rank
builds the curve a one-process sweep builds.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from ..config import Method, RunConfig, to_dict
from ..data import DataSplits
from ..evaluation.curves import CurveSummary, RDCurve
from ..evaluation.evaluate import count_parameters, evaluate_at, iwae_nll
from ..training import distributed
from .folder import RunDir
from .methods import LogFn, train_method


def nearest_beta(betas: list[float], target: float) -> float:
    """The β in ``betas`` closest to ``target`` in log space."""
    return min(betas, key=lambda b: abs(math.log(b) - math.log(target)))


def sweep_share(num_betas: int, rank: int, world_size: int) -> list[int]:
    """The indices of the βs that rank ``rank`` of ``world_size`` trains: i with i mod world_size == rank
    (none when there are fewer βs than ranks)."""
    return list(range(rank, num_betas, world_size))


@dataclass(frozen=True)
class SweepPoint:
    """One trained β-VAE of the sweep: its index in ``baseline.betas``, its test point, its IWAE NLL (None
    unless it is the model nearest ``eval.iwae_beta``), its training and evaluation seconds, and its size."""

    index: int
    point: dict[str, float]
    iwae: float | None
    train_s: float
    eval_s: float
    parameters: int


def run_sweep(config: RunConfig, data: DataSplits, run: RunDir, resume: bool = False, log: LogFn | None = None,
              progress_bar: bool = False) -> RDCurve:
    """Train a β-VAE (conditioning none) at each β of ``config.baseline.betas`` with the MR-VAE's
    architecture and optimiser and ``baseline.steps_for(train)`` steps, evaluate each at its own β on
    the test split, and return the sweep as one ``beta-vae`` RDCurve. The IWAE NLL is that of the
    model whose β is nearest ``config.eval.iwae_beta``.

    In a process group every rank must call it: each trains its share (``sweep_share``) as a
    one-process run, and every rank returns the same curve. An error on any rank is raised on all."""
    betas = list(config.baseline.betas)
    job = distributed.current()

    def train_share() -> list[SweepPoint]:
        with distributed.single_process():
            return [_train_one(config, data, run, index, job, resume, log, progress_bar)
                    for index in sweep_share(len(betas), job.rank, job.world_size)]

    shares = distributed.run_on_every_rank(train_share)
    done = sorted((p for share in shares for p in share), key=lambda p: p.index)
    iwae = next((p.iwae for p in done if p.iwae is not None), None)
    # per-model seconds summed, as in one process (spread over N ranks, the sweep itself takes less)
    summary = CurveSummary(iwae, nearest_beta(betas, config.eval.iwae_beta), config.eval.iwae_samples,
                           sum(p.train_s for p in done), sum(p.eval_s for p in done), done[-1].parameters,
                           config.baseline.steps_for(config.train))
    return RDCurve.from_points(Method.BETA_VAE, betas, [p.point for p in done], summary, to_dict(config))


def _train_one(config: RunConfig, data: DataSplits, run: RunDir, index: int, job: distributed.DistInfo,
               resume: bool, log: LogFn | None, progress_bar: bool) -> SweepPoint:
    """Train (or resume) β-VAE number ``index`` into ``run`` and evaluate it at its β -> its ``SweepPoint``."""
    betas = list(config.baseline.betas)
    beta = betas[index]
    if log:
        where = f" (rank {job.rank} of {job.world_size})" if job.is_distributed else ""
        log(f"[{Method.BETA_VAE.value}] {index + 1}/{len(betas)}: β = {beta:.4g}{where}")
    result = train_method(config, data, run, Method.BETA_VAE, beta, resume=resume, log=log,
                          progress_bar=progress_bar)
    started = time.perf_counter()
    point = evaluate_at(result.model, data.test, beta, config.eval)
    iwae = None
    if beta == nearest_beta(betas, config.eval.iwae_beta) and config.eval.iwae_samples > 0:
        iwae = iwae_nll(result.model, data.test, beta, config.eval.iwae_samples, config.eval)
    return SweepPoint(index, point, iwae, result.wall_time_s, time.perf_counter() - started,
                      count_parameters(result.model))
