"""Rate–distortion figures from RD curves (matplotlib, PNG): the run's plot and the report's four panels.

Both draw with the same functions: one style table per method (``METHOD_STYLES``) and one rule for the
β labels of β-VAE points (``label_groups``: points that sit on top of each other share one label).
Matplotlib's backend is not chosen here (the CLI picks Agg); figures are built with the object-oriented
API (``matplotlib.figure.Figure`` renders with Agg on ``savefig``) and PNG metadata is dropped, so the
bytes depend only on the curves and the matplotlib version.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config import Method
from ..evaluation.curves import RDCurve

DPI = 110
REPORT_FIGSIZE = (5.6, 3.9)
PLOT_FIGSIZE = (15, 4.6)
NATS = "(nats per example)"


@dataclass(frozen=True)
class MethodStyle:
    """How a method is named in tables and headings (``name``), in figure legends (``legend``), and its
    matplotlib ``colour``."""

    name: str
    legend: str
    colour: str


#: The one table of method names and colours; its order is the order of methods on the page.
METHOD_STYLES: dict[Method, MethodStyle] = {
    Method.MRVAE: MethodStyle("MR-VAE", "MR-VAE (one run)", "C0"),
    Method.YOTO: MethodStyle("YOTO (FiLM)", "YOTO-style FiLM (one run)", "C2"),
    Method.BETA_VAE: MethodStyle("β-VAE", "β-VAEs (one run per β)", "C3"),
}
OTHER_COLOUR = "C7"


def method_of(kind: str) -> Method | None:
    """The Method named ``kind`` (a curve's kind, a comparison key), or None for another name."""
    try:
        return Method(kind)
    except ValueError:
        return None


def method_style(kind: str) -> MethodStyle:
    """The style of ``kind``; a name that is not a Method is shown as itself, in grey."""
    method = method_of(kind)
    return METHOD_STYLES[method] if method is not None else MethodStyle(kind, kind, OTHER_COLOUR)


def method_order(kind: str) -> int:
    """Sort key: the position of ``kind`` in ``METHOD_STYLES``, other names last."""
    method = method_of(kind)
    return list(METHOD_STYLES).index(method) if method is not None else len(METHOD_STYLES)


def curve_label(curve: RDCurve) -> str:
    """The legend label of a curve: its method's label (with the steps each of its models trained, where
    the curve records them), plus its name (e.g. the run's) when that differs from the kind."""
    label = method_style(curve.kind).legend
    steps = steps_label(curve)
    label = f"{label}, {steps}" if steps else label
    return label if curve.name == curve.kind else f"{label} [{curve.name}]"


def steps_label(curve: RDCurve) -> str:
    """"1,800 steps" (one multi-rate model) or "1,800 steps each" (a β-VAE sweep); "" when unknown."""
    steps = curve.summary.get("steps_per_model") or (curve.config.get("train") or {}).get("steps")
    if not isinstance(steps, int):
        return ""
    return f"{steps:,} steps each" if method_of(curve.kind) is Method.BETA_VAE else f"{steps:,} steps"


def label_groups(betas: Sequence[float], rate: Sequence[float], dist: Sequence[float], x_span: float,
                 y_span: float, tolerance: float = 0.03) -> list[tuple[str, float, float]]:
    """β labels of the β-VAE points, one per cluster: points within ``tolerance`` of the axis spans of
    each other (in both R and D) share one label "β=a, b" at the first point, so labels never overprint."""
    groups: list[list[int]] = []
    for i in range(len(betas)):
        for group in groups:
            j = group[0]
            if abs(rate[i] - rate[j]) <= tolerance * x_span and abs(dist[i] - dist[j]) <= tolerance * y_span:
                group.append(i)
                break
        else:
            groups.append([i])
    return [("β=" + ", ".join(f"{betas[i]:.3g}" for i in group), rate[group[0]], dist[group[0]]) for group in groups]


def _span(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return 1.0
    return (max(finite) - min(finite)) or 1.0


def curve_colour(curve: RDCurve, curves: Sequence[RDCurve]) -> str:
    """A curve's colour: its method's, or, when the curves come from several runs (curves of one method
    with different names), its run's own colour, so that two runs never share one."""
    names = list(dict.fromkeys(c.name for c in curves))
    runs = [c for c in curves if c.name != c.kind]
    if not runs or len({(c.kind, c.name) for c in curves}) == len({c.kind for c in curves}):
        return method_style(curve.kind).colour
    return f"C{names.index(curve.name) % 10}"


def _line(ax, curve: RDCurve, xs: Sequence[float], ys: Sequence[float], colour: str) -> None:
    """One curve: a β-VAE sweep as unjoined squares, a single-run method as a line with dots."""
    if method_of(curve.kind) is Method.BETA_VAE:
        ax.plot(xs, ys, color=colour, label=curve_label(curve), linestyle="none", marker="s", markersize=6,
                zorder=3)
    else:
        ax.plot(xs, ys, color=colour, label=curve_label(curve), marker="o", markersize=3, linewidth=1.6)


def draw_rd(ax, curves: Sequence[RDCurve]) -> None:
    """Distortion against rate on ``ax``; the β-VAE points carry β labels merged by ``label_groups``."""
    x_span = _span([v for c in curves for v in c.results["rate"]])
    y_span = _span([v for c in curves for v in c.results["distortion"]])
    for curve in curves:
        rate, dist = curve.results["rate"], curve.results["distortion"]
        colour = curve_colour(curve, curves)
        _line(ax, curve, rate, dist, colour)
        if method_of(curve.kind) is Method.BETA_VAE:
            for text, r, d in label_groups(curve.betas, rate, dist, x_span, y_span):
                ax.annotate(text, (r, d), textcoords="offset points", xytext=(4, 4), fontsize=7, color=colour)
    ax.margins(x=0.12, y=0.08)  # room for the β labels
    ax.set_xlabel(f"rate R {NATS}")
    ax.set_ylabel(f"distortion D {NATS}")


def draw_against_beta(ax, curves: Sequence[RDCurve], key: str, ylabel: str) -> None:
    """``results[key]`` of every curve against β on a log axis."""
    for curve in curves:
        _line(ax, curve, curve.betas, curve.results[key], curve_colour(curve, curves))
    ax.set_xscale("log")
    ax.set_xlabel("β")
    ax.set_ylabel(ylabel)
    if key == "active_units":
        ax.yaxis.get_major_locator().set_params(integer=True)
        finite = [v for c in curves for v in c.results[key] if math.isfinite(v)]
        ax.set_ylim(-0.5, max(finite, default=1.0) + 1.5)


def _finish(ax, title: str) -> None:
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)


def plot_rd_curves(curves: Sequence[RDCurve], path: str | Path, title: str = "") -> Path:
    """Draw every curve into one PNG at ``path``: left, distortion against rate (single-run methods
    as lines, β-VAE points labelled by β); middle and right, rate(β) and distortion(β) on a log β axis."""
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("nothing to plot: no curves given")
    fig = Figure(figsize=PLOT_FIGSIZE, layout="constrained")
    ax_rd, ax_rate, ax_dist = fig.subplots(1, 3)
    draw_rd(ax_rd, curves)
    _finish(ax_rd, "rate-distortion (test split)")
    draw_against_beta(ax_rate, curves, "rate", f"rate R {NATS}")
    _finish(ax_rate, "rate against β")
    draw_against_beta(ax_dist, curves, "distortion", f"distortion D {NATS}")
    _finish(ax_dist, "distortion against β")
    ax_rd.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, metadata={"Software": None})
    return path


@dataclass(frozen=True)
class ReportFigure:
    """One rendered figure: an HTML ``key``, a ``caption`` and the ``png`` bytes."""

    key: str
    caption: str
    png: bytes


#: The report's panels: key, y key (x is β, except for "rd"), y label, title, caption.
REPORT_PANELS = (
    ("rd", "distortion", "", "Distortion against rate",
     "Rate–distortion curves on the test split; β-VAE points are labelled by their β."),
    ("rate", "rate", f"rate R {NATS}", "Rate against β", "Rate R(β) on the test split."),
    ("distortion", "distortion", f"distortion D {NATS}", "Distortion against β", "Distortion D(β) on the test split."),
    ("active_units", "active_units", "active units", "Active units against β",
     "Latent units with Var_x(E_q[z]) ≥ 0.01 at each β."),
)


def report_figures(curves: Sequence[RDCurve]) -> list[ReportFigure]:
    """Four PNG figures of ``curves`` (all methods in each): distortion against rate, rate against β,
    distortion against β and active units against β (log β axes; nats per example)."""
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("report_figures needs at least one RD curve")
    figures = []
    for key, y_key, ylabel, title, caption in REPORT_PANELS:
        usable = [c for c in curves if y_key in c.results and (key != "rd" or "rate" in c.results)]
        if not usable:
            continue
        fig = Figure(figsize=REPORT_FIGSIZE, layout="constrained")
        ax = fig.subplots()
        if key == "rd":
            draw_rd(ax, usable)
        else:
            draw_against_beta(ax, usable, y_key, ylabel)
        _finish(ax, title)
        ax.legend(fontsize=8, loc="best")
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
        figures.append(ReportFigure(key, caption, buffer.getvalue()))
    return figures
