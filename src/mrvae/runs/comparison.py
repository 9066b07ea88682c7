"""Every method of a run trained and compared at the baseline βs: the table ``mrvae run`` prints and saves."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import EvalConfig, Method, RunConfig
from ..data import DataSplits
from ..evaluation.curves import RDCurve
from ..evaluation.evaluate import evaluate_at
from ..models.base import VAE
from ..training.distributed import is_main_process
from .baselines import run_sweep
from .folder import RunDir
from .methods import LogFn, curve_for, method_train_config, train_method

COLUMNS = ("rate", "distortion", "beta_objective")


@dataclass
class Comparison:
    """``rows[method][i]`` holds rate, distortion and β-objective (nats per example) at ``betas[i]``;
    ``wall_time_s[method]`` is training plus evaluation time. Keyed by ``Method`` (its value in JSON)."""

    betas: list[float]
    rows: dict[Method, list[dict[str, float]]] = field(default_factory=dict)
    wall_time_s: dict[Method, float] = field(default_factory=dict)
    steps: dict[Method, int] = field(default_factory=dict)

    def gap_percent(self, method: Method, reference: Method = Method.BETA_VAE) -> list[float]:
        """(β-objective of ``method`` − that of ``reference``) / |reference| × 100 at each β."""
        return [100.0 * (a["beta_objective"] - b["beta_objective"]) / abs(b["beta_objective"])
                for a, b in zip(self.rows[method], self.rows[reference])]

    def to_dict(self) -> dict[str, Any]:
        return {"betas": self.betas, "rows": {m.value: rows for m, rows in self.rows.items()},
                "wall_time_s": {m.value: t for m, t in self.wall_time_s.items()},
                "steps_per_model": {m.value: n for m, n in self.steps.items()},
                "units": "nats per example; wall time in seconds"}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Comparison:
        data = json.loads(Path(path).read_text())
        return cls(data["betas"], {Method(m): rows for m, rows in data["rows"].items()},
                   {Method(m): t for m, t in data["wall_time_s"].items()},
                   {Method(m): int(n) for m, n in data.get("steps_per_model", {}).items()})

    def format_table(self) -> str:
        """A plain-text table: one line per β, rate / distortion / β-objective per method, and the
        gap of each single-run method to the β-VAE trained at that β."""
        methods = list(self.rows)
        head = f"{'beta':>8} " + " ".join(f"{m.value + ' ' + c:>18}" for m in methods for c in ("R", "D", "D+bR"))
        others = [m for m in methods if m is not Method.BETA_VAE] if Method.BETA_VAE in self.rows else []
        head += "".join(f"{'gap ' + m.value:>14}" for m in others)
        lines = [self.budget_line(), head] if self.steps else [head]
        gaps = {m: self.gap_percent(m) for m in others}
        for i, beta in enumerate(self.betas):
            cells = " ".join(f"{self.rows[m][i][c]:>18.3f}" for m in methods for c in COLUMNS)
            lines.append(f"{beta:>8.4g} {cells}" + "".join(f"{gaps[m][i]:>+13.1f}%" for m in others))
        times = ", ".join(f"{m.value} {t:.1f} s" for m, t in self.wall_time_s.items())
        lines.append(f"wall time (train + eval): {times}")
        return "\n".join(lines)


    def budget_line(self) -> str:
        """Each method's training budget, printed above every comparison: steps per model (and models)."""
        parts = [f"{m.value} {n:,} steps" + (f" each ({len(self.betas)} models)" if m is Method.BETA_VAE else "")
                 for m, n in self.steps.items()]
        return "steps per model: " + "; ".join(parts)


def rows_from_model(model: VAE, dataset: Any, betas: list[float], config: EvalConfig) -> list[dict[str, float]]:
    """Evaluate one multi-rate model at each β -> rows of rate, distortion, β-objective."""
    rows = []
    for beta in betas:
        point = evaluate_at(model, dataset, beta, config)
        rows.append({c: point[c] for c in COLUMNS})
    return rows


def rows_from_curve(curve: RDCurve) -> list[dict[str, float]]:
    """A curve's own points -> rows (used for the β-VAE sweep, evaluated at its βs)."""
    return [{c: curve.results[c][i] for c in COLUMNS} for i in range(len(curve.betas))]


def compare_methods(config: RunConfig, data: DataSplits, run: RunDir, resume: bool = False,
                    log: LogFn | None = None, progress_bar: bool = False) -> tuple[dict[Method, RDCurve], Comparison]:
    """Train and evaluate each method of ``config.methods`` in turn -> its curve, and the per-β table
    at the baseline βs. Rank 0 writes each curve to ``run`` as soon as it exists. In a process group
    every rank must call it: multi-rate models train with DDP, the β-VAE sweep is spread (``run_sweep``)."""
    curves: dict[Method, RDCurve] = {}
    comparison = Comparison(list(config.baseline.betas))
    for method in config.methods:
        if method is Method.BETA_VAE:
            curve = run_sweep(config, data, run, resume=resume, log=log, progress_bar=progress_bar)
            comparison.rows[method] = rows_from_curve(curve)
            evaluation_s = curve.summary["eval_wall_time_s"]
        else:
            result = train_method(config, data, run, method, resume=resume, log=log, progress_bar=progress_bar)
            started = time.perf_counter()
            curve = curve_for(result.model, method, config, data, result.wall_time_s)
            comparison.rows[method] = rows_from_model(result.model, data.test, comparison.betas, config.eval)
            evaluation_s = time.perf_counter() - started
        curves[method] = curve
        # training time summed over every segment of a resumed run (kept in the checkpoints), plus this
        # evaluation: resuming does not replace a run's recorded time with the resume's own
        comparison.wall_time_s[method] = round(curve.summary["train_wall_time_s"] + evaluation_s, 2)
        comparison.steps[method] = method_train_config(config, method, config.baseline.betas[0]).steps
        if is_main_process():
            curve.save(run.curve(method))
            if log:
                log(f"[{method.value}] curve written to {run.curve(method)}")
    return curves, comparison
