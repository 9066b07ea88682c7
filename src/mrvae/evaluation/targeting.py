"""Find the β that gives a target rate (or distortion): bisection on log β along the model's own curve."""

from __future__ import annotations

import math
from dataclasses import dataclass
from torch.utils.data import Dataset

from ..beta import Choice
from ..config import EvalConfig
from .curves import RDCurve
from .evaluate import evaluate_at
from ..models.base import VAE


class TargetError(ValueError):
    """The target lies outside what the model reaches over its β range; the message states that range."""


class Quantity(Choice):
    """What to target: the rate or the distortion."""

    RATE = "rate"
    DISTORTION = "distortion"


@dataclass(frozen=True)
class TargetResult:
    """The β found, the quantity measured there (nats per example) and the number of evaluations."""

    beta: float
    rate: float
    distortion: float
    evaluations: int


Point = dict[str, float]


def _bracket_from_curve(curve: RDCurve, target: float, quantity: Quantity) -> tuple[float, Point, float, Point]:
    """The two neighbouring βs of a stored curve whose values enclose ``target`` (no model evaluation)."""
    order = sorted(range(len(curve.betas)), key=lambda i: curve.betas[i])
    points = [(curve.betas[i], {k: curve.results[k][i] for k in ("rate", "distortion")}) for i in order]
    for (b0, p0), (b1, p1) in zip(points, points[1:]):
        if min(p0[quantity.value], p1[quantity.value]) <= target <= max(p0[quantity.value], p1[quantity.value]):
            return b0, p0, b1, p1
    values = [p[quantity.value] for _, p in points]
    raise TargetError(f"target {quantity.value} {target:g} nats is outside the reachable range "
                      f"[{min(values):.4g}, {max(values):.4g}] nats of the curve over β in "
                      f"[{points[0][0]:g}, {points[-1][0]:g}]")


def _find_beta(model: VAE, data: Dataset, target: float, quantity: Quantity, rel_tol: float, max_iter: int,
               config: EvalConfig, curve: RDCurve | None) -> TargetResult:
    beta_range = model.beta_range
    if beta_range.is_fixed:
        raise TargetError("this model was trained for a single β; targeting needs a multi-rate model")
    evaluations = 0

    def at(beta: float) -> Point:
        nonlocal evaluations
        evaluations += 1
        return evaluate_at(model, data, beta, config)

    if curve is not None:
        b_lo, low, b_hi, high = _bracket_from_curve(curve, target, quantity)
    else:
        b_lo, low, b_hi, high = beta_range.low, at(beta_range.low), beta_range.high, at(beta_range.high)
    # rate falls and distortion rises with β: orient so that f(β) increases
    sign = -1.0 if quantity is Quantity.RATE else 1.0
    f_low, f_high = sign * low[quantity.value], sign * high[quantity.value]
    reach = sorted((low[quantity.value], high[quantity.value]))
    if not (min(f_low, f_high) <= sign * target <= max(f_low, f_high)):
        raise TargetError(f"target {quantity.value} {target:g} nats is outside the reachable range "
                          f"[{reach[0]:.4g}, {reach[1]:.4g}] nats for β in [{beta_range.low:g}, {beta_range.high:g}]")
    lo, hi = math.log(b_lo), math.log(b_hi)
    best = (b_lo, low) if abs(low[quantity.value] - target) < abs(high[quantity.value] - target) else (b_hi, high)
    for _ in range(max_iter):
        if abs(best[1][quantity.value] - target) <= rel_tol * abs(target):
            break
        mid = 0.5 * (lo + hi)
        point = at(math.exp(mid))
        if abs(point[quantity.value] - target) < abs(best[1][quantity.value] - target):
            best = (math.exp(mid), point)
        if sign * point[quantity.value] < sign * target:
            lo = mid
        else:
            hi = mid
    beta, point = best
    return TargetResult(beta, point["rate"], point["distortion"], evaluations)


def beta_for_rate(model: VAE, data: Dataset, target_nats: float, rel_tol: float = 1e-3, max_iter: int = 40,
                  config: EvalConfig = EvalConfig(), curve: RDCurve | None = None) -> TargetResult:
    """The β in the model's ``beta_range`` at which the model's mean rate on ``data`` is ``target_nats``
    (nats per example), by bisection on log β; raises ``TargetError`` stating the reachable range.
    With ``curve`` (the model's stored RD curve on ``data``), the search starts from the two curve
    points that enclose the target and evaluates the model only between them."""
    return _find_beta(model, data, target_nats, Quantity.RATE, rel_tol, max_iter, config, curve)


def beta_for_distortion(model: VAE, data: Dataset, target_nats: float, rel_tol: float = 1e-3, max_iter: int = 40,
                        config: EvalConfig = EvalConfig(), curve: RDCurve | None = None) -> TargetResult:
    """The β at which the mean distortion on ``data`` is ``target_nats``; as ``beta_for_rate``."""
    return _find_beta(model, data, target_nats, Quantity.DISTORTION, rel_tol, max_iter, config, curve)
