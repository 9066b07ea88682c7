"""Rate-distortion figures from RD-curve files: D against R, and rate(β), distortion(β) panels (PNG).

Matplotlib's backend is not chosen here (the CLI picks Agg); figures are built with the
object-oriented API and closed after saving.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .curves import RDCurve

STYLE = {"mrvae": {"color": "C0", "label": "MR-VAE (one run)"},
         "yoto": {"color": "C2", "label": "YOTO-style FiLM (one run)"},
         "beta-vae": {"color": "C3", "label": "β-VAEs (one run per β)"}}


def plot_rd_curves(curves: Sequence[RDCurve], path: str | Path, title: str = "") -> Path:
    """Draw every curve into one PNG at ``path``: left, distortion against rate (single-run methods
    as lines, β-VAE points labelled by β); middle and right, rate(β) and distortion(β) on a log β axis."""
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("nothing to plot: no curves given")
    fig = Figure(figsize=(15, 4.6), layout="constrained")
    ax_rd, ax_rate, ax_dist = fig.subplots(1, 3)
    for curve in curves:
        style = STYLE.get(curve.kind, {"color": "C7", "label": curve.name})
        label = style["label"] if curve.name == curve.kind else f"{style['label']} [{curve.name}]"
        rate, dist = curve.results["rate"], curve.results["distortion"]
        if curve.kind == "beta-vae":
            ax_rd.scatter(rate, dist, color=style["color"], label=label, zorder=3, marker="s", s=28)
            for b, r, d in zip(curve.betas, rate, dist):
                ax_rd.annotate(f"β={b:.3g}", (r, d), textcoords="offset points", xytext=(4, 4), fontsize=7,
                               color=style["color"])
            kwargs = {"linestyle": "none", "marker": "s"}
        else:
            ax_rd.plot(rate, dist, color=style["color"], label=label, marker="o", markersize=3)
            kwargs = {"marker": "o", "markersize": 3}
        ax_rate.plot(curve.betas, rate, color=style["color"], label=label, **kwargs)
        ax_dist.plot(curve.betas, dist, color=style["color"], label=label, **kwargs)
    ax_rd.set_xlabel("rate R (nats per example)")
    ax_rd.set_ylabel("distortion D (nats per example)")
    ax_rd.set_title("rate-distortion (test split)")
    for ax, name in ((ax_rate, "rate R"), (ax_dist, "distortion D")):
        ax.set_xscale("log")
        ax.set_xlabel("β")
        ax.set_ylabel(f"{name} (nats per example)")
        ax.set_title(f"{name.split()[0]} against β")
    for ax in (ax_rd, ax_rate, ax_dist):
        ax.grid(True, alpha=0.3)
    ax_rd.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    return path
