"""The β-VAE sweep: one fixed-β run per baseline β through the same ``fit()``, as one RD curve."""

from __future__ import annotations

import math
import time

from ..config import Method, RunConfig, to_dict
from ..data import DataSplits
from ..evaluation.curves import CurveSummary, RDCurve
from ..evaluation.evaluate import count_parameters, evaluate_at, iwae_nll
from .folder import RunDir
from .methods import LogFn, train_method


def nearest_beta(betas: list[float], target: float) -> float:
    """The β in ``betas`` closest to ``target`` in log space."""
    return min(betas, key=lambda b: abs(math.log(b) - math.log(target)))


def run_sweep(config: RunConfig, data: DataSplits, run: RunDir, resume: bool = False, log: LogFn | None = None,
              progress_bar: bool = False) -> RDCurve:
    """Train a β-VAE (conditioning none) at each β of ``config.baseline.betas`` with the MR-VAE's
    architecture and optimiser and ``baseline.steps_for(train)`` steps, evaluate each at its own β on
    the test split, and return the sweep as one ``beta-vae`` RDCurve. The IWAE NLL is that of the
    model whose β is nearest ``config.eval.iwae_beta``."""
    betas = list(config.baseline.betas)
    iwae_beta = nearest_beta(betas, config.eval.iwae_beta)
    points, iwae, train_time, eval_time = [], None, 0.0, 0.0
    for i, beta in enumerate(betas):
        if log:
            log(f"[{Method.BETA_VAE.value}] {i + 1}/{len(betas)}: β = {beta:.4g}")
        result = train_method(config, data, run, Method.BETA_VAE, beta, resume=resume, log=log,
                              progress_bar=progress_bar)
        train_time += result.wall_time_s
        started = time.perf_counter()
        points.append(evaluate_at(result.model, data.test, beta, config.eval))
        if beta == iwae_beta and config.eval.iwae_samples > 0:
            iwae = iwae_nll(result.model, data.test, beta, config.eval.iwae_samples, config.eval)
        eval_time += time.perf_counter() - started
    summary = CurveSummary(iwae, iwae_beta, config.eval.iwae_samples, train_time, eval_time,
                           count_parameters(result.model), config.baseline.steps_for(config.train))
    return RDCurve.from_points(Method.BETA_VAE, betas, points, summary, to_dict(config))
