"""The HTML run report: what each section shows, computed from the run folder's contents, rendered by the
jinja2 template ``report.html`` beside this module (autoescape on).

The page is self-contained (inline stylesheet and slider script, every image a PNG ``data:`` URI) and
a deterministic function of the run folder (no timestamps).
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass
from functools import cache
from importlib import metadata, resources
from typing import TYPE_CHECKING, Any

from ..config import Method
from ..evaluation.curves import RDCurve
from .figures import method_of, method_style, steps_label
from .images import RunImages, Series, data_uri

from .inputs import COLUMNS, ComparisonFile, ReportInputs

if TYPE_CHECKING:
    import jinja2

TEMPLATE = "report.html"
#: The pictures beside the slider are shown this much larger than in the static tables.
VIEWER_SCALE = 1.25
COLUMN_NAMES = {"rate": "R", "distortion": "D", "beta_objective": "D + βR", "neg_elbo": "R + D",
                "active_units": "active units"}
REFERENCE = Method.BETA_VAE.value


def fmt(value: float | None, digits: int = 3, sign: bool = False) -> str:
    """A number as the report prints it: fixed ``digits`` decimals (a leading + with ``sign``), ``n/a``
    for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def beta_label(beta: float) -> str:
    """β as the report labels it (3 significant digits: 0.01, 0.0379, 10)."""
    return f"{beta:.3g}"


def method_name(kind: str) -> str:
    """A method's name in tables and headings (``METHOD_STYLES`` in figures.py)."""
    return method_style(kind).name


@dataclass(frozen=True)
class Cell:
    """One table cell; a cell with a ``table`` carries data-table/-method/-column/-index attributes."""

    text: str
    table: str = ""
    method: str = ""
    column: str = ""
    index: int = 0
    klass: str = ""


@dataclass(frozen=True)
class Row:
    """A table row: its heading (with the β it stands for, if any) and its cells."""

    head: str
    cells: list[Cell]
    beta: float | None = None


def cell(table: str, value: float | None, method: str, column: str, index: int, digits: int = 3,
         klass: str = "") -> Cell:
    return Cell(fmt(value, digits, sign=column == "gap_percent"), table, method, column, index, klass)


def beta_row(beta: float, cells: list[Cell]) -> Row:
    return Row(beta_label(beta), cells, beta)


def comparison_view(comparison: ComparisonFile | None) -> dict[str, Any] | None:
    """The per-β table: R, D, D + βR of every method and the gap of each other method to the β-VAE."""
    if comparison is None or not comparison.rows:
        return None
    methods = list(comparison.rows)
    others = [m for m in methods if m != REFERENCE] if REFERENCE in methods else []
    gaps = {m: comparison.gap_percent(m, REFERENCE) for m in others}
    rows = []
    for i, beta in enumerate(comparison.betas):
        best = min(comparison.rows[m][i]["beta_objective"] for m in methods)
        cells = []
        for m in methods:
            for j, c in enumerate(COLUMNS):
                value = comparison.rows[m][i][c]
                is_best = c == "beta_objective" and len(methods) > 1 and value == best
                klass = " ".join(k for k, on in (("first", j == 0), ("best", is_best)) if on)
                cells.append(cell("comparison", value, m, c, i, klass=klass))
        cells += [cell("comparison", gaps[m][i], m, "gap_percent", i, 2, "first" if k == 0 else "")
                  for k, m in enumerate(others)]
        rows.append(beta_row(beta, cells))
    return {"methods": methods, "others": others, "rows": rows}


def curve_tables(curves: list[RDCurve]) -> list[dict[str, Any]]:
    """Each curve at its own βs: the columns of ``COLUMN_NAMES`` that it has."""
    tables = []
    for curve in curves:
        keys = [k for k in COLUMN_NAMES if k in curve.results]
        rows = [beta_row(beta, [cell("curve", curve.results[k][i], curve.name, k, i, 0 if k == "active_units" else 3)
                                for k in keys])
                for i, beta in enumerate(curve.betas)]
        check = curve.shape_verdict() if method_of(curve.kind) is not Method.BETA_VAE else ""
        tables.append({"name": curve.name, "column_keys": keys, "rows": rows, "check": check,
                       "steps": steps_label(curve)})
    return tables


def run_rows(curves: list[RDCurve], comparison: ComparisonFile | None) -> list[Row]:
    """Per method: train, eval and run wall time (s), parameters, IWAE NLL and its β."""
    wall = comparison.wall_time_s if comparison else {}
    rows = []
    for curve in curves:
        s = curve.summary
        cells = [cell("run", s.get("train_wall_time_s"), curve.name, "train_wall_time_s", 0, 1),
                 cell("run", s.get("eval_wall_time_s"), curve.name, "eval_wall_time_s", 0, 1),
                 cell("run", wall.get(curve.name), curve.name, "run_wall_time_s", 0, 1),
                 Cell(str(s.get("num_parameters", "n/a"))),
                 cell("run", s.get("iwae_nll"), curve.name, "iwae_nll", 0),
                 Cell(str(s.get("iwae_beta", "n/a")))]
        rows.append(Row(method_name(curve.name), cells))
    return rows


def _nearest(betas: list[float], targets: list[float]) -> list[int]:
    return [min(range(len(targets)), key=lambda j: abs(math.log(targets[j]) - math.log(b))) for b in betas]


def viewer_view(images: RunImages) -> dict[str, Any] | None:
    """The slider over the first multi-rate model's βs; one row per model (the β-VAE row shows the
    sweep's model nearest the slider's β, in log β). None when no multi-rate model was drawn."""
    if not images.multi_rate or images.examples is None:
        return None
    betas = images.multi_rate[0].betas
    start = min(range(len(betas)), key=lambda i: abs(math.log(betas[i])))  # the grid β nearest 1
    labels = [beta_label(b) for b in betas]
    rows: list[dict[str, Any]] = [{"series": s, "index": start, "label": labels[start], "nearest": False}
                                  for s in images.multi_rate]
    sweep: Series | None = images.beta_vae
    nearest = _nearest(betas, sweep.betas) if sweep else []
    nearest_labels = [beta_label(sweep.betas[j]) for j in nearest] if sweep else []
    if sweep:
        rows.append({"series": sweep, "index": nearest[start], "label": nearest_labels[start], "nearest": True})
    return {"start": start, "last": len(betas) - 1, "label": labels[start], "rows": rows,
            "labels_json": json.dumps(labels), "nearest_json": json.dumps(nearest),
            "nearest_labels_json": json.dumps(nearest_labels)}


def versions() -> list[tuple[str, str]]:
    """The versions the report was written with (read from package metadata; nothing is imported)."""
    from ..config import __version__

    found = [("mrvae", __version__)]
    for name in ("torch", "python", "numpy", "matplotlib", "jinja2"):
        if name == "python":
            found.append((name, platform.python_version()))
            continue
        try:
            found.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            found.append((name, "not installed"))
    return found


def config_blocks(text: str) -> list[str]:
    """config.yaml split at its top-level keys (laid out side by side by the CSS)."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if not blocks or (line[:1].isalpha() and not line.startswith("- ")):
            blocks.append([])
        blocks[-1].append(line)
    return ["\n".join(b) for b in blocks]


def header(inputs: ReportInputs) -> dict[str, str]:
    c = inputs.config
    hidden = f", hidden {list(c.model.hidden)}" if c.model.arch in ("mlp", "tcvae") else ""
    latent = c.model.latent_dim if c.model.latent_dim is not None else "the architecture's default"
    return {"data": c.data.name, "model": f"{c.model.arch} (latent {latent}{hidden})",
            "betas": f"[{c.train.beta_low:g}, {c.train.beta_high:g}]", "steps": str(c.train.steps),
            "methods": ", ".join(method_name(m.value) for m in c.methods)}


@cache
def environment() -> jinja2.Environment:
    """The jinja2 environment of the report: autoescape on, undefined names are errors."""
    import jinja2

    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(beta_label=beta_label, method_name=method_name)
    return env


def render_report(inputs: ReportInputs) -> str:
    """The report page of ``inputs`` as one HTML string."""
    source = resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8")
    template = environment().from_string(source)
    images = inputs.images
    models = " and ".join(f"one {method_name(s.method)}" for s in images.multi_rate)
    return template.render(
        run_name=inputs.root.resolve().name, header=header(inputs),
        figures=[{"key": f.key, "caption": f.caption, "uri": data_uri(f.png)} for f in inputs.figures],
        column_names=COLUMN_NAMES, columns=COLUMNS, comparison=comparison_view(inputs.comparison),
        curve_tables=curve_tables(inputs.curves), images=images, models=models, viewer=viewer_view(images),
        scale=VIEWER_SCALE, run_rows=run_rows(inputs.curves, inputs.comparison), notes=inputs.notes,
        versions=versions(), config_blocks=config_blocks(inputs.config_text))
