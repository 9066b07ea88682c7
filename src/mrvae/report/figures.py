"""The figures of a run report, rendered with matplotlib to PNG in memory: D(R), R(β), D(β), active units(β).

The matplotlib backend is not chosen here: figures are built with the object-oriented API
(``matplotlib.figure.Figure`` renders with Agg on ``savefig``), and PNG metadata is dropped so the
bytes depend only on the curves and the matplotlib version.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass

from ..evaluation.curves import RDCurve
from .plotting import STYLE

FIGSIZE = (5.6, 3.9)
DPI = 110


@dataclass(frozen=True)
class ReportFigure:
    """One rendered figure: an HTML ``key``, a ``caption`` and the ``png`` bytes."""

    key: str
    caption: str
    png: bytes


def curve_label(curve: RDCurve) -> str:
    """The legend label of a curve: its method's label, plus its name when that differs from the kind."""
    label = STYLE.get(curve.kind, {"label": curve.name})["label"]
    return label if curve.name == curve.kind else f"{label} [{curve.name}]"


def _render(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


def _panel(curves: Sequence[RDCurve], key: str, x_key: str, y_key: str, xlabel: str, ylabel: str,
           title: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=FIGSIZE, layout="constrained")
    ax = fig.subplots()
    for curve in curves:
        colour = STYLE.get(curve.kind, {"color": "C7"})["color"]
        xs = curve.betas if x_key == "beta" else curve.results[x_key]
        ys = curve.results[y_key]
        if curve.kind == "beta-vae":
            ax.plot(xs, ys, color=colour, label=curve_label(curve), linestyle="none", marker="s", markersize=6,
                    zorder=3)
            if key == "rd":
                for i, (b, x, y) in enumerate(zip(curve.betas, xs, ys)):  # alternate sides: fewer overlaps
                    ax.annotate(f"β={b:.3g}", (x, y), textcoords="offset points", xytext=(5, 4 if i % 2 else -10),
                                fontsize=7, color=colour)
        else:
            ax.plot(xs, ys, color=colour, label=curve_label(curve), marker="o", markersize=3, linewidth=1.6)
    if x_key == "beta":
        ax.set_xscale("log")
    else:
        ax.margins(x=0.12, y=0.08)  # room for the β labels of the β-VAE points
    if y_key == "active_units":
        ax.yaxis.get_major_locator().set_params(integer=True)
        finite = [v for c in curves for v in c.results[y_key] if math.isfinite(v)]
        ax.set_ylim(-0.5, max(finite, default=1.0) + 1.5)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return fig


def report_figures(curves: Sequence[RDCurve]) -> list[ReportFigure]:
    """Four PNG figures of ``curves`` (all methods in each): distortion against rate, rate against β,
    distortion against β and active units against β (log β axes; nats per example)."""
    if not curves:
        raise ValueError("report_figures needs at least one RD curve")
    nats = "(nats per example)"
    specs = [("rd", "rate", "distortion", f"rate R {nats}", f"distortion D {nats}", "Distortion against rate",
              "Rate–distortion curves on the test split; β-VAE points are labelled by their β."),
             ("rate", "beta", "rate", "β", f"rate R {nats}", "Rate against β", "Rate R(β) on the test split."),
             ("distortion", "beta", "distortion", "β", f"distortion D {nats}", "Distortion against β",
              "Distortion D(β) on the test split."),
             ("active_units", "beta", "active_units", "β", "active units", "Active units against β",
              "Latent units with Var_x(E_q[z]) ≥ 0.01 at each β.")]
    figures = []
    for key, x_key, y_key, xlabel, ylabel, title, caption in specs:
        usable = [c for c in curves if y_key in c.results and (x_key == "beta" or x_key in c.results)]
        if usable:
            figures.append(ReportFigure(key, caption, _render(_panel(usable, key, x_key, y_key, xlabel, ylabel,
                                                                     title))))
    return figures
