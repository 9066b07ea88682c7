"""Rate-distortion figures from RD-curve files: D against R, and rate(β), distortion(β) panels (PNG).

Matplotlib's backend is not chosen here (the CLI picks Agg); figures are built with the
object-oriented API and closed after saving.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..evaluation.curves import RDCurve

STYLE = {"mrvae": {"color": "C0", "label": "MR-VAE (one run)"},
         "yoto": {"color": "C2", "label": "YOTO-style FiLM (one run)"},
         "beta-vae": {"color": "C3", "label": "β-VAEs (one run per β)"}}


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


def plot_rd_curves(curves: Sequence[RDCurve], path: str | Path, title: str = "") -> Path:
    """Draw every curve into one PNG at ``path``: left, distortion against rate (single-run methods
    as lines, β-VAE points labelled by β); middle and right, rate(β) and distortion(β) on a log β axis."""
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("nothing to plot: no curves given")
    fig = Figure(figsize=(15, 4.6), layout="constrained")
    ax_rd, ax_rate, ax_dist = fig.subplots(1, 3)
    all_rates = [v for c in curves for v in c.results["rate"]]
    all_dists = [v for c in curves for v in c.results["distortion"]]
    x_span = (max(all_rates) - min(all_rates)) or 1.0
    y_span = (max(all_dists) - min(all_dists)) or 1.0
    for curve in curves:
        style = STYLE.get(curve.kind, {"color": "C7", "label": curve.name})
        label = style["label"] if curve.name == curve.kind else f"{style['label']} [{curve.name}]"
        rate, dist = curve.results["rate"], curve.results["distortion"]
        if curve.kind == "beta-vae":
            ax_rd.scatter(rate, dist, color=style["color"], label=label, zorder=3, marker="s", s=28)
            for text, r, d in label_groups(curve.betas, rate, dist, x_span, y_span):
                ax_rd.annotate(text, (r, d), textcoords="offset points", xytext=(4, 4), fontsize=7,
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
