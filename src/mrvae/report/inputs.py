"""What a report shows, read from one run folder: config.yaml, curves/*.json, comparison.json, pictures/."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..config import RunConfig, load_yaml
from ..evaluation.curves import CurveFormatError, RDCurve
from .figures import ReportFigure, method_order, report_figures
from .images import RunImages, read_images

#: The comparison table's columns (nats per example).
COLUMNS = ("rate", "distortion", "beta_objective")
CONFIG_NAME = "config.yaml"
CURVES_DIR = "curves"
COMPARISON_NAME = "comparison.json"


@dataclass
class ComparisonFile:
    """``comparison.json`` as ``mrvae run`` writes it: ``rows[method][i]`` holds rate, distortion and
    β-objective (nats per example) at ``betas[i]``; ``wall_time_s[method]`` is training plus evaluation."""

    betas: list[float]
    rows: dict[str, list[dict[str, float]]]
    wall_time_s: dict[str, float]

    @classmethod
    def read(cls, path: Path) -> ComparisonFile:
        data = json.loads(path.read_text(encoding="utf-8"))
        betas = [float(b) for b in data["betas"]]
        rows = {str(m): [{c: float(row[c]) for c in COLUMNS} for row in rows] for m, rows in data["rows"].items()}
        for method, method_rows in rows.items():
            if len(method_rows) != len(betas):
                raise ValueError(f"{method} has {len(method_rows)} rows for {len(betas)} βs")
        return cls(betas, rows, {str(m): float(t) for m, t in data["wall_time_s"].items()})

    def gap_percent(self, method: str, reference: str) -> list[float]:
        """(β-objective of ``method`` − that of ``reference``) / |reference| × 100 at each β."""
        return [100.0 * (a["beta_objective"] - b["beta_objective"]) / abs(b["beta_objective"])
                for a, b in zip(self.rows[method], self.rows[reference])]


@dataclass
class ReportInputs:
    """What a report shows, read from one run folder."""

    root: Path
    config: RunConfig
    config_text: str
    curves: list[RDCurve]
    comparison: ComparisonFile | None
    figures: list[ReportFigure]
    images: RunImages
    notes: list[str] = field(default_factory=list)


def read_curves(root: Path, notes: list[str]) -> list[RDCurve]:
    """Every readable ``curves/*.json``, in method order; a note for each file skipped."""
    curves = []
    for path in sorted((root / CURVES_DIR).glob("*.json")):
        try:
            curves.append(RDCurve.load(path))
        except CurveFormatError as exc:
            notes.append(f"{CURVES_DIR}/{path.name} skipped: {exc}")
    return sorted(curves, key=lambda c: (method_order(c.kind), c.name))


def read_inputs(run_dir: str | Path) -> ReportInputs:
    """Read config.yaml, curves/*.json, comparison.json and pictures/ of ``run_dir``."""
    root = Path(run_dir)
    config_path = root / CONFIG_NAME
    if not config_path.is_file():
        raise ValueError(f"{root} is not a run directory: it has no {CONFIG_NAME}")
    config_text = config_path.read_text(encoding="utf-8")
    notes: list[str] = []
    curves = read_curves(root, notes)
    comparison = None
    if (root / COMPARISON_NAME).is_file():
        try:
            comparison = ComparisonFile.read(root / COMPARISON_NAME)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            notes.append(f"{COMPARISON_NAME} skipped: {type(exc).__name__}: {exc}")
    figures = report_figures(curves) if curves else []
    return ReportInputs(root, load_yaml(config_path), config_text, curves, comparison, figures, read_images(root),
                        notes)
