"""One self-contained HTML page per run: RD curves, per-β table, pictures across β behind a slider, config, versions.

``build_report(run_dir)`` writes ``run_dir/report.html``: every image is an inline PNG ``data:`` URI,
the stylesheet and the slider script are inline, nothing is fetched from a network or from other
files. The page is a deterministic function of the run directory, ``num_examples`` and ``seed``
(no timestamps), so the same inputs give byte-identical HTML.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from ..runs.comparison import COLUMNS, Comparison
from ..config import RunConfig, load_yaml
from ..evaluation.curves import CurveFormatError, RDCurve
from ..data.base import DataSplits
from ..runs.pipeline import RunDir
from .images import Display, MethodImages, Picture, RunImages, data_uri, run_images
from .page import page
from .figures import ReportFigure, report_figures

REPORT_NAME = "report.html"
#: The pictures beside the slider are shown this much larger than in the static tables.
VIEWER_SCALE = 1.25
METHOD_NAMES = {"mrvae": "MR-VAE", "yoto": "YOTO (FiLM)", "beta-vae": "β-VAE"}
KIND_ORDER = {"mrvae": 0, "yoto": 1, "beta-vae": 2}
COLUMN_NAMES = {"rate": "R", "distortion": "D", "beta_objective": "D + βR", "neg_elbo": "R + D",
                "active_units": "active units"}


def fmt(value: float | None, digits: int = 3, sign: bool = False) -> str:
    """A number as the report prints it: fixed ``digits`` decimals (a leading + with ``sign``), ``n/a``
    for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def beta_label(beta: float) -> str:
    """β as the report labels it (3 significant digits: 0.01, 0.0379, 10)."""
    return f"{beta:.3g}"


def method_name(method: str) -> str:
    return METHOD_NAMES.get(method, method)


@dataclass
class ReportInputs:
    """What a report shows, read from one run directory (plus the pictures computed from its checkpoints)."""

    run: RunDir
    config: RunConfig
    config_text: str
    curves: list[RDCurve]
    comparison: Comparison | None
    figures: list[ReportFigure]
    images: RunImages
    slider_betas: list[float]
    notes: list[str] = field(default_factory=list)


def read_inputs(run_dir: str | Path, num_examples: int = 8, seed: int = 0,
                data: DataSplits | None = None) -> ReportInputs:
    """Read config.yaml, curves/*.json and comparison.json of ``run_dir`` and compute its pictures."""
    run = RunDir(Path(run_dir))
    if not run.config.is_file():
        raise ValueError(f"{run.root} is not a run directory: it has no config.yaml")
    config_text = run.config.read_text(encoding="utf-8")
    config = load_yaml(run.config)
    notes: list[str] = []
    curves = []
    for path in sorted((run.root / "curves").glob("*.json")):
        try:
            curves.append(RDCurve.load(path))
        except CurveFormatError as exc:
            notes.append(f"curves/{path.name} skipped: {exc}")
    curves.sort(key=lambda c: (KIND_ORDER.get(c.kind, 9), c.name))
    comparison = None
    if run.comparison.is_file():
        try:
            comparison = Comparison.load(run.comparison)
        except (KeyError, TypeError, ValueError) as exc:
            notes.append(f"comparison.json skipped: {exc}")
    betas = [float(b) for b in config.train.beta_range.grid(config.eval.num_betas)]
    images = run_images(run.root, config, betas, num_examples, seed, data)
    figures = report_figures(curves) if curves else []
    return ReportInputs(run, config, config_text, curves, comparison, figures, images, betas, notes)


def _header(inputs: ReportInputs) -> str:
    c = inputs.config
    hidden = f", hidden {list(c.model.hidden)}" if c.model.arch in ("mlp", "tcvae") else ""
    methods = ", ".join(method_name(m.value) for m in c.methods)
    return (f"<header><h1>Multi-Rate VAE run report: {escape(inputs.run.root.resolve().name)}</h1>\n"
            f"<p class=\"meta\">data <b>{escape(c.data.name)}</b> · model {escape(c.model.arch)} (latent "
            f"{c.model.latent_dim}{escape(hidden)}) · training β ∈ [{c.train.beta_low:g}, {c.train.beta_high:g}]"
            " · "
            f"{c.train.steps} steps · methods: {escape(methods)}</p>\n"
            "<nav><a href=\"#curves\">RD curves</a><a href=\"#table\">per-β table</a>"
            "<a href=\"#pictures\">pictures across β</a><a href=\"#numbers\">curve numbers</a>"
            "<a href=\"#run\">run, config, versions</a></nav></header>")


def _figures(inputs: ReportInputs) -> str:
    if not inputs.figures:
        return "<p class=\"note\">No RD-curve files in curves/: nothing to plot.</p>"
    items = [f"<figure id=\"fig-{f.key}\"><img src=\"{data_uri(f.png)}\" alt=\"{escape(f.caption)}\">"
             f"<figcaption>{escape(f.caption)}</figcaption></figure>" for f in inputs.figures]
    return "<div class=\"figures\">\n" + "\n".join(items) + "\n</div>"


def _cell(table: str, value: float | None, method: str, column: str, index: int, digits: int = 3,
          extra: str = "") -> str:
    klass = f" class=\"{extra}\"" if extra else ""
    return (f"<td{klass} data-table=\"{table}\" data-method=\"{escape(method)}\" data-column=\"{column}\""
            f" data-index=\"{index}\">"
            f"{fmt(value, digits, sign=column == 'gap_percent')}</td>")


def _comparison_table(comparison: Comparison | None) -> str:
    if comparison is None or not comparison.rows:
        return "<p class=\"note\">This run has no comparison.json (it is written by <code>mrvae run</code>).</p>"
    methods = list(comparison.rows)
    others = [m for m in methods if m != "beta-vae"] if "beta-vae" in methods else []
    gaps = {m: comparison.gap_percent(m) for m in others}
    head1 = "<tr><th rowspan=\"2\">β</th>" + "".join(
        f"<th colspan=\"3\" class=\"group\">{escape(method_name(m))}</th>" for m in methods)
    head2 = "<tr>" + "".join(f"<th class=\"{'first' if i == 0 else ''}\">{COLUMN_NAMES[c]}</th>"
                             for _ in methods for i, c in enumerate(COLUMNS))
    if others:
        head1 += f"<th colspan=\"{len(others)}\" class=\"group\">gap of D + βR to the β-VAE (%)</th>"
        head2 += "".join(f"<th class=\"{'first' if i == 0 else ''}\">{escape(method_name(m))}</th>"
                         for i, m in enumerate(others))
    rows = []
    for i, beta in enumerate(comparison.betas):
        best = min(comparison.rows[m][i]["beta_objective"] for m in methods)
        cells = "".join(_cell("comparison", comparison.rows[m][i][c], m, c, i, extra=" ".join(
            k for k, on in (("first", j == 0), ("best", c == "beta_objective" and len(methods) > 1
                                                 and comparison.rows[m][i][c] == best)) if on))
                        for m in methods for j, c in enumerate(COLUMNS))
        cells += "".join(_cell("comparison", gaps[m][i], m, "gap_percent", i, 2, "first" if k == 0 else "")
                         for k, m in enumerate(others))
        rows.append(f"<tr><th scope=\"row\" data-beta=\"{beta!r}\">{beta_label(beta)}</th>{cells}</tr>")
    note = ("<p class=\"note\">Test split, nats per example; D is the distortion −log p(x|z) with one z sample, "
            "R the rate KL(q(z|x) ‖ p(z)). Every method is evaluated at the β-VAE sweep's βs (each β-VAE at its "
            "own β); the lowest D + βR of each row is bold. Gap = (D + βR of the method − that of the β-VAE) / "
            "|D + βR of the β-VAE| × 100.</p>")
    return (f"{note}\n<div class=\"scroll\"><table class=\"numbers\" id=\"comparison-table\">\n<thead>{head1}</tr>\n"
            f"{head2}</tr></thead>\n<tbody>\n" + "\n".join(rows) + "\n</tbody></table></div>")


def _curve_tables(curves: list[RDCurve]) -> str:
    parts = []
    for curve in curves:
        keys = [k for k in COLUMN_NAMES if k in curve.results]
        head = "<tr><th>β</th>" + "".join(f"<th>{COLUMN_NAMES[k]}</th>" for k in keys) + "</tr>"
        rows = []
        for i, beta in enumerate(curve.betas):
            cells = "".join(_cell("curve", curve.results[k][i], curve.name, k, i, 0 if k == "active_units" else 3)
                            for k in keys)
            rows.append(f"<tr><th scope=\"row\" data-beta=\"{beta!r}\">{beta_label(beta)}</th>{cells}</tr>")
        parts.append(f"<div><h3>{escape(method_name(curve.name))} <small class=\"note\">(curves/{escape(curve.name)}"
                     f".json, {len(curve.betas)} βs)</small></h3>\n<div class=\"scroll\"><table class=\"numbers\" "
                     f"data-curve=\"{escape(curve.name)}\"><thead>{head}</thead><tbody>\n" + "\n".join(rows)
                     + "\n</tbody></table></div></div>")
    if not parts:
        return "<p class=\"note\">No RD-curve files in curves/.</p>"
    return ("<p class=\"note\">Each curve at its own βs (test split, nats per example); active units are latents "
            "with Var_x(E_q[z]) ≥ 0.01.</p>\n<div class=\"side-by-side\">" + "\n".join(parts) + "</div>")


def _img(picture: Picture, alt: str, attrs: str = "", scale: float = 1.0) -> str:
    size = f" width=\"{round(picture.width * scale)}\" height=\"{round(picture.height * scale)}\""
    return f"<img class=\"pic\" src=\"{picture.uri}\" alt=\"{escape(alt)}\"{size}{attrs}>"


def _nearest(betas: list[float], targets: list[float]) -> list[int]:
    return [min(range(len(targets)), key=lambda j: abs(math.log(targets[j]) - math.log(b))) for b in betas]


def _viewer(images: RunImages, betas: list[float]) -> str:
    start = min(range(len(betas)), key=lambda i: abs(math.log(betas[i])))  # the grid β nearest 1
    labels = [beta_label(b) for b in betas]
    sweep = images.beta_vae
    nearest = _nearest(betas, sweep.betas) if sweep else []
    nearest_labels = [beta_label(sweep.betas[j]) for j in nearest] if sweep else []
    data = (f" data-labels=\"{escape(json.dumps(labels))}\" data-nearest=\"{escape(json.dumps(nearest))}\""
            f" data-nearest-labels=\"{escape(json.dumps(nearest_labels))}\"")
    rows = [f"<div class=\"view-row\"><div class=\"row-label\">test examples<small>{images.num_examples} fixed "
            f"(seed {images.seed})</small></div><div class=\"view-pics\"><figure>"
            f"{_img(images.examples, 'test examples', scale=VIEWER_SCALE)}"
            "<figcaption>data</figcaption></figure></div></div>"]
    series = [(m, m.method, start, "", f"<small data-at-beta>at β = {labels[start]}</small>")
              for m in images.multi_rate]
    if sweep:
        series.append((sweep, "beta-vae", nearest[start], " data-nearest",
                       f"<small id=\"nearest-beta\">trained at β = {nearest_labels[start]} (nearest)</small>"))
    for m, key, index, nearest_attr, small in series:
        recon_attr = f" data-series=\"{key}-recon\"{nearest_attr}"
        sample_attr = f" data-series=\"{key}-sample\"{nearest_attr}"
        rows.append(f"<div class=\"view-row\"><div class=\"row-label\">{escape(method_name(key))}{small}</div>"
                    "<div class=\"view-pics\"><figure>"
                    f"{_img(m.reconstructions[index], 'reconstructions', recon_attr, VIEWER_SCALE)}"
                    "<figcaption>reconstructions (posterior mean decoded)</figcaption></figure>"
                    f"<figure>{_img(m.samples[index], 'prior samples', sample_attr, VIEWER_SCALE)}"
                    "<figcaption>decoded prior samples z ~ N(0, I)</figcaption></figure></div></div>")
    return (f"<div class=\"viewer\" id=\"viewer\"><div class=\"controls\"><label for=\"beta-slider\">β</label>"
            f"<input type=\"range\" id=\"beta-slider\" min=\"0\" max=\"{len(betas) - 1}\" step=\"1\" value=\"{start}\""
            f"{data} aria-label=\"β grid index\"><output id=\"beta-value\" for=\"beta-slider\">β = {labels[start]}"
            "</output><span class=\"hint\">drag the slider, or press ← / →</span></div>\n" + "\n".join(rows)
            + "\n</div>")


def _picture_table(images: MethodImages, key: str, caption: str) -> str:
    rows = []
    for i, (b, recon, sample) in enumerate(zip(images.betas, images.reconstructions, images.samples)):
        at = f"at β = {beta_label(b)}"
        recon_id, sample_id = f" id=\"img-{key}-recon-{i}\"", f" id=\"img-{key}-sample-{i}\""
        rows.append(f"<tr data-index=\"{i}\"><th scope=\"row\">{beta_label(b)}</th>"
                    f"<td>{_img(recon, f'{key} reconstructions {at}', recon_id)}</td>"
                    f"<td>{_img(sample, f'{key} prior samples {at}', sample_id)}</td></tr>")
    attr = "" if key == "beta-vae" else " data-slider-table"
    return (f"<h3>{escape(caption)}</h3>\n<div class=\"scroll\"><table class=\"pictures\"{attr}><thead><tr><th>β</th>"
            "<th>reconstructions</th><th>decoded prior samples</th></tr></thead><tbody>\n" + "\n".join(rows)
            + "\n</tbody></table></div>")


def _pictures(inputs: ReportInputs) -> str:
    images = inputs.images
    notes = "".join(f"<p class=\"note\">{escape(n)}</p>" for n in images.notes)
    if images.display is Display.NONE or images.examples is None:
        return notes or "<p class=\"note\">No pictures for this run.</p>"
    models = " and ".join(f"one {method_name(m.method)}" for m in images.multi_rate)
    intro = (f"<p class=\"note\">The same {images.num_examples} test examples and the same prior samples z ~ N(0, I) "
             f"(seed {images.seed}) at each β of the evaluation grid"
             + (f", all decoded by {models}" if models else "") + ". Reconstructions decode the posterior mean."
             + (" Beside the slider, the β-VAE row shows the separately trained β-VAE whose β is nearest."
                if images.beta_vae and images.multi_rate else "") + "</p>")
    parts = [intro, notes]
    if images.multi_rate:
        parts.append(_viewer(images, inputs.slider_betas))
    parts.append("<h3>Every β at once</h3>")
    parts += [_picture_table(m, m.method, f"{method_name(m.method)} at each grid β") for m in images.multi_rate]
    if images.beta_vae:
        parts.append(_picture_table(images.beta_vae, "beta-vae", "β-VAEs, each at the β it was trained for"))
    return "\n".join(parts)


def _versions() -> dict[str, str]:
    import matplotlib
    import numpy
    import torch

    from .. import __version__

    return {"mrvae": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "numpy": numpy.__version__, "matplotlib": matplotlib.__version__}


def _run_section(inputs: ReportInputs) -> str:
    wall = inputs.comparison.wall_time_s if inputs.comparison else {}
    rows = []
    for curve in inputs.curves:
        s = curve.summary
        iwae = s.get("iwae_nll")
        rows.append(f"<tr><th scope=\"row\">{escape(method_name(curve.name))}</th>"
                    + _cell("run", s.get("train_wall_time_s"), curve.name, "train_wall_time_s", 0, 1)
                    + _cell("run", s.get("eval_wall_time_s"), curve.name, "eval_wall_time_s", 0, 1)
                    + _cell("run", wall.get(curve.name), curve.name, "run_wall_time_s", 0, 1)
                    + f"<td>{s.get('num_parameters', 'n/a')}</td>"
                    + _cell("run", iwae, curve.name, "iwae_nll", 0)
                    + f"<td>{escape(str(s.get('iwae_beta', 'n/a')))}</td></tr>")
    table = ("<div class=\"scroll\"><table class=\"numbers left-heads\" id=\"wall-time-table\"><thead><tr>"
             "<th>method</th>"
             "<th>train (s)</th><th>eval (s)</th><th>run total (s)</th><th>parameters</th>"
             "<th>IWAE NLL</th><th>at β</th></tr></thead><tbody>\n" + "\n".join(rows)
             + "\n</tbody></table></div>") if rows else ""
    versions = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in _versions().items())
    notes = "".join(f"<p class=\"note\">{escape(n)}</p>" for n in inputs.notes)
    return (f"<h3>Wall time</h3>{table}<p class=\"note\">Training and evaluation times come from each curve's summary "
            "(the β-VAE sums its sweep); run total is the method's wall time in <code>mrvae run</code> "
            f"(comparison.json), training plus evaluation. IWAE NLL in nats per example.</p>{notes}"
            f"<h3>Versions</h3><dl class=\"kv\">{versions}<dt>report</dt><dd>{inputs.images.num_examples} "
            f"examples, seed {inputs.images.seed}</dd></dl>"
            f"<h3>Configuration (config.yaml)</h3><div class=\"config\">{_config_blocks(inputs.config_text)}</div>")


def _config_blocks(text: str) -> str:
    """config.yaml split at its top-level keys into ``<pre>`` blocks (laid out side by side by the CSS)."""
    blocks: list[list[str]] = []
    for line in text.splitlines():
        if not blocks or (line[:1].isalpha() and not line.startswith("- ")):
            blocks.append([])
        blocks[-1].append(line)
    return "".join(f"<pre>{escape(chr(10).join(b))}</pre>" for b in blocks)


def render_report(inputs: ReportInputs) -> str:
    """The report page of ``inputs`` as one HTML string (see module docstring)."""
    body = "\n".join([
        _header(inputs),
        "<section id=\"curves\"><h2>Rate–distortion curves</h2>", _figures(inputs), "</section>",
        "<section id=\"table\"><h2>Per-β comparison</h2>", _comparison_table(inputs.comparison), "</section>",
        "<section id=\"pictures\"><h2>Reconstructions and samples across β</h2>", _pictures(inputs), "</section>",
        "<section id=\"numbers\"><h2>Curve numbers</h2>", _curve_tables(inputs.curves), "</section>",
        "<section id=\"run\"><h2>Run, configuration and versions</h2>", _run_section(inputs), "</section>"])
    return page(f"mrvae report: {inputs.run.root.resolve().name}", body)


def build_report(run_dir: str | Path, out: str | Path | None = None, num_examples: int = 8, seed: int = 0,
                 data: DataSplits | None = None) -> Path:
    """Write the HTML report of the run in ``run_dir`` to ``out`` (default ``run_dir/report.html``).

    ``num_examples`` test examples (and as many prior samples) are drawn with ``seed``; ``data`` may pass
    the run's already loaded data set (otherwise it is loaded from ``config.yaml``). Returns the path.
    """
    html = render_report(read_inputs(run_dir, num_examples, seed, data))
    path = Path(out) if out is not None else Path(run_dir) / REPORT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
