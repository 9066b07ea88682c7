"""``RDCurve``: one method's rate-distortion results over a β list, and its JSON file format (format 1).

```
{"format": 1, "name": str, "kind": "mrvae" | "beta-vae" | "yoto", "betas": [float],
 "results": {"rate": [...], "distortion": [...], "beta_objective": [...], "neg_elbo": [...],
             "active_units": [...]},
 "units": {"rate": "nats per example", ...},
 "summary": {"iwae_nll": float | null, "iwae_beta": float, "iwae_samples": int,
             "train_wall_time_s": float, "eval_wall_time_s": float, "num_parameters": int,
             "steps_per_model": int (a β-VAE sweep only)},
 "config": {...}}
```
Every ``results`` list is aligned with ``betas``. In memory ``kind`` is a ``Method`` and ``summary`` is
written from a ``CurveSummary``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..config import Method

CURVE_FORMAT = 1
RESULT_KEYS = ("rate", "distortion", "beta_objective", "neg_elbo", "active_units")
UNITS = {"rate": "nats per example", "distortion": "nats per example",
         "beta_objective": "nats per example (D + β·R)", "neg_elbo": "nats per example (R + D)",
         "active_units": "count of latents with Var_x(E_q[z]) >= 0.01", "iwae_nll": "nats per example"}


class CurveFormatError(ValueError):
    """An RD-curve file that is not format 1 or misses fields."""


@dataclass(frozen=True)
class CurveSummary:
    """A curve's ``summary``: the IWAE NLL (nats per example) of the model at ``iwae_beta`` (None when not
    estimated), training and evaluation wall time in seconds, the parameters of one model, and, for a
    sweep of single-β models, the training steps of each."""

    iwae_nll: float | None
    iwae_beta: float
    iwae_samples: int
    train_wall_time_s: float
    eval_wall_time_s: float
    num_parameters: int
    steps_per_model: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if not (k == "steps_per_model" and v is None)}


@dataclass
class RDCurve:
    """Per-β results of one method (see module docstring); lists aligned with ``betas``. ``kind`` is the
    ``Method`` (its value in JSON)."""

    name: str
    kind: Method
    betas: list[float]
    results: dict[str, list[float]]
    summary: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        try:
            self.kind = Method(self.kind)
        except ValueError as exc:
            raise CurveFormatError(f"curve kind: {exc}") from None
        for key, values in self.results.items():
            if len(values) != len(self.betas):
                raise CurveFormatError(f"results[{key!r}] has {len(values)} values for {len(self.betas)} betas")

    def to_dict(self) -> dict[str, Any]:
        return {"format": CURVE_FORMAT, "name": self.name, "kind": self.kind.value, "betas": list(self.betas),
                "results": {k: list(v) for k, v in self.results.items()},
                "units": {k: UNITS[k] for k in list(self.results) + ["iwae_nll"] if k in UNITS},
                "summary": dict(self.summary), "config": dict(self.config)}

    @classmethod
    def from_points(cls, kind: Method, betas: Sequence[float], points: Sequence[Mapping[str, float]],
                    summary: CurveSummary, config: dict[str, Any] | None = None, name: str | None = None) -> RDCurve:
        """One point per β (a dict of ``RESULT_KEYS``, as ``evaluate_at`` returns) -> the curve of
        ``kind``, named ``name`` (default: the method's name)."""
        results = {key: [point[key] for point in points] for key in points[0]}
        return cls(name or kind.value, kind, [float(b) for b in betas], results, summary.to_dict(), dict(config or {}))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "curve") -> RDCurve:
        if not isinstance(data, dict) or data.get("format") != CURVE_FORMAT:
            raise CurveFormatError(f"{source}: not an RD-curve file of format {CURVE_FORMAT}")
        missing = [k for k in ("name", "kind", "betas", "results") if k not in data]
        if missing:
            raise CurveFormatError(f"{source}: missing fields {', '.join(missing)}")
        return cls(data["name"], data["kind"], [float(b) for b in data["betas"]],
                   {k: [float(x) if x is not None else math.nan for x in v] for k, v in data["results"].items()},
                   data.get("summary", {}), data.get("config", {}))

    def save(self, path: str | Path) -> Path:
        """Write the curve as JSON (atomically: temporary file then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1, allow_nan=True))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> RDCurve:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise CurveFormatError(f"curve file not found: {path}") from exc
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CurveFormatError(f"{path}: not valid JSON ({exc})") from exc
        return cls.from_dict(data, str(path))

    def monotonicity_problems(self, rel_tol: float = 0.01, abs_tol: float = 0.01) -> list[str]:
        """Where the curve breaks the shape of an RD curve: rate rising or distortion falling with β by
        more than ``rel_tol`` of the previous point and more than ``abs_tol`` nats. Empty when it behaves."""
        problems = []
        order = sorted(range(len(self.betas)), key=lambda i: self.betas[i])
        for key, sign in (("rate", 1.0), ("distortion", -1.0)):
            values = [self.results[key][i] for i in order]
            for i in range(1, len(values)):
                change = sign * (values[i] - values[i - 1])
                if change > max(rel_tol * abs(values[i - 1]), abs_tol):
                    word = "rises" if key == "rate" else "falls"
                    problems.append(f"{key} {word} from {values[i - 1]:.4g} to {values[i]:.4g} between "
                                    f"β = {self.betas[order[i - 1]]:.4g} and {self.betas[order[i]]:.4g}")
        return problems

    def dominated_points(self, abs_tol: float = 0.01) -> list[str]:
        """βs whose point is beaten on both rate and distortion (each lower by more than ``abs_tol`` nats)
        by another β of the same curve: a point no β should be trained for, which a monotonicity check
        can let pass. Empty when no point is dominated."""
        found = []
        points = list(zip(self.betas, self.results["rate"], self.results["distortion"]))
        for beta, rate, dist in points:
            better = [(b, r, d) for b, r, d in points if r < rate - abs_tol and d < dist - abs_tol]
            if better:
                b, r, d = min(better, key=lambda p: abs(math.log(p[0] / beta)))
                found.append(f"β = {beta:.4g} (R {rate:.4g}, D {dist:.4g}) is dominated by β = {b:.4g} "
                             f"(R {r:.4g}, D {d:.4g})")
        return found

    def shape_verdict(self) -> str:
        """One line on the curve's shape: monotone in β within 1 %, and no dominated point."""
        problems = self.monotonicity_problems() + self.dominated_points()
        if not problems:
            return "rate non-increasing and distortion non-decreasing in β (within 1 %), no dominated point"
        return "; ".join(problems[:4]) + (f"; and {len(problems) - 4} more" if len(problems) > 4 else "")

    def value_at(self, key: str, beta: float, rel_tol: float = 1e-6) -> float:
        """The result ``key`` at the listed β equal to ``beta`` (within ``rel_tol``)."""
        for b, v in zip(self.betas, self.results[key]):
            if math.isclose(b, beta, rel_tol=rel_tol):
                return v
        raise KeyError(f"β = {beta} is not among this curve's betas")
