"""Per-β comparison of methods at the baseline βs: the table ``mrvae run`` prints and saves."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import EvalConfig
from ..evaluation.curves import RDCurve
from ..evaluation.evaluate import evaluate_at
from ..models.base import VAE

COLUMNS = ("rate", "distortion", "beta_objective")


@dataclass
class Comparison:
    """``rows[method][i]`` holds rate, distortion and β-objective (nats per example) at ``betas[i]``;
    ``wall_time_s[method]`` is training plus evaluation time."""

    betas: list[float]
    rows: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    wall_time_s: dict[str, float] = field(default_factory=dict)

    def gap_percent(self, method: str, reference: str = "beta-vae") -> list[float]:
        """(β-objective of ``method`` − that of ``reference``) / |reference| × 100 at each β."""
        return [100.0 * (a["beta_objective"] - b["beta_objective"]) / abs(b["beta_objective"])
                for a, b in zip(self.rows[method], self.rows[reference])]

    def to_dict(self) -> dict[str, Any]:
        return {"betas": self.betas, "rows": self.rows, "wall_time_s": self.wall_time_s,
                "units": "nats per example; wall time in seconds"}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Comparison:
        data = json.loads(Path(path).read_text())
        return cls(data["betas"], data["rows"], data["wall_time_s"])

    def format_table(self) -> str:
        """A plain-text table: one line per β, rate / distortion / β-objective per method, and the
        gap of each single-run method to the β-VAE trained at that β."""
        methods = list(self.rows)
        head = f"{'beta':>8} " + " ".join(f"{m + ' ' + c[:4]:>18}" for m in methods for c in ("R", "D", "D+bR"))
        has_ref = "beta-vae" in self.rows
        others = [m for m in methods if m != "beta-vae"] if has_ref else []
        head += "".join(f"{'gap ' + m:>14}" for m in others)
        lines = [head]
        gaps = {m: self.gap_percent(m) for m in others}
        for i, beta in enumerate(self.betas):
            cells = " ".join(f"{self.rows[m][i][c]:>18.3f}" for m in methods for c in COLUMNS)
            lines.append(f"{beta:>8.4g} {cells}" + "".join(f"{gaps[m][i]:>+13.1f}%" for m in others))
        lines.append("wall time (train + eval): " + ", ".join(f"{m} {t:.1f} s" for m, t in self.wall_time_s.items()))
        return "\n".join(lines)


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
