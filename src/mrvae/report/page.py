"""The fixed parts of the HTML run report: its stylesheet, the β-slider script and the page frame."""

from __future__ import annotations

from html import escape

STYLE = """
:root { color-scheme: light; --fg: #1d2129; --muted: #5b6270; --line: #d9dde4; --alt: #f4f6f9;
        --accent: #1f6fb2; }
* { box-sizing: border-box; }
body { margin: 0; background: #fff; color: var(--fg);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 1.2rem 1.5rem 3rem; }
h1 { font-size: 1.55rem; margin: .2rem 0 .2rem; }
h2 { font-size: 1.25rem; margin: 2.2rem 0 .7rem; padding-bottom: .25rem; border-bottom: 2px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.5rem 0 .5rem; }
p { margin: .4rem 0 .8rem; }
a { color: var(--accent); }
.meta { color: var(--muted); margin: 0 0 .6rem; }
nav { display: flex; flex-wrap: wrap; gap: .3rem 1.1rem; font-size: .92rem; }
.note { color: var(--muted); font-size: .9rem; }
.figures { display: grid; gap: 1rem 1.4rem; grid-template-columns: repeat(auto-fit, minmax(min(100%, 440px), 1fr)); }
figure { margin: 0; }
figure img { display: block; max-width: 100%; height: auto; }
figcaption { color: var(--muted); font-size: .85rem; margin-top: .2rem; }
.scroll { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; font-size: .88rem; margin: .3rem 0 .6rem; }
th, td { padding: .28rem .6rem; border-bottom: 1px solid var(--line); text-align: right; white-space: nowrap; }
thead th { background: var(--alt); text-align: center; vertical-align: bottom; }
tbody th { text-align: right; font-weight: 600; }
td.best { font-weight: 700; }
th.group { border-left: 1px solid var(--line); }
td.first, th.first { border-left: 1px solid var(--line); }
table.pictures td, table.pictures th { text-align: left; vertical-align: middle; }
table.pictures tr.current { background: #fff6d9; }
img.pic { image-rendering: crisp-edges; image-rendering: pixelated; display: block; max-width: 100%; height: auto; }
.viewer { border: 1px solid var(--line); border-radius: 8px; background: var(--alt); padding: .9rem 1rem .4rem; }
.controls { display: flex; flex-wrap: wrap; align-items: center; gap: .5rem 1rem; margin-bottom: .5rem; }
.controls label { font-weight: 700; font-size: 1.1rem; }
.controls input[type=range] { flex: 1 1 240px; max-width: 560px; accent-color: var(--accent); }
#beta-value { font-weight: 700; font-size: 1.15rem; min-width: 7.5em; font-variant-numeric: tabular-nums; }
.hint { color: var(--muted); font-size: .85rem; }
.view-row { display: flex; flex-wrap: wrap; align-items: center; gap: .4rem 1.4rem; padding: .55rem 0;
            border-top: 1px solid var(--line); }
.row-label { flex: 0 0 11rem; font-weight: 700; }
.row-label small { display: block; font-weight: 400; color: var(--muted); }
.view-pics { flex: 1 1 0; min-width: 0; display: flex; flex-wrap: wrap; gap: .4rem 1.4rem; }
.view-pics figure { flex: 0 1 auto; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: .15rem 1rem; margin: .3rem 0 1rem; }
dl.kv dt { color: var(--muted); }
dl.kv dd { margin: 0; }
table.left-heads tbody th { text-align: left; }
.side-by-side { display: flex; flex-wrap: wrap; gap: 0 2.2rem; align-items: flex-start; }
.side-by-side > div { max-width: 100%; }
.config { display: grid; gap: 0 .8rem; grid-template-columns: repeat(auto-fill, minmax(min(100%, 250px), 1fr));
          align-items: start; }
pre { margin: .3rem 0; background: var(--alt); border: 1px solid var(--line); border-radius: 6px; padding: .7rem .9rem;
      overflow-x: auto; font-size: .8rem; line-height: 1.35; }
@media (max-width: 860px) {
  main { padding: .8rem .8rem 2rem; }
  .row-label { flex-basis: 100%; }
  .view-pics { flex-basis: 100%; }
  table.pictures img.pic { width: min(348px, 36vw); }
  th, td { padding: .25rem .4rem; }
}
"""

SCRIPT = """
(function () {
  var slider = document.getElementById("beta-slider");
  if (!slider) { return; }
  var labels = JSON.parse(slider.getAttribute("data-labels"));
  var nearest = JSON.parse(slider.getAttribute("data-nearest"));
  var nearestLabels = JSON.parse(slider.getAttribute("data-nearest-labels"));
  var output = document.getElementById("beta-value");
  function show(i) {
    i = Math.max(0, Math.min(labels.length - 1, i));
    slider.value = String(i);
    output.textContent = "\\u03b2 = " + labels[i];
    document.querySelectorAll("[data-at-beta]").forEach(function (el) {
      el.textContent = "at \\u03b2 = " + labels[i];
    });
    document.querySelectorAll("img[data-series]").forEach(function (img) {
      var j = img.hasAttribute("data-nearest") ? nearest[i] : i;
      var source = document.getElementById("img-" + img.getAttribute("data-series") + "-" + j);
      if (source) { img.src = source.src; img.alt = source.alt; }
    });
    var label = document.getElementById("nearest-beta");
    if (label && nearestLabels.length) {
      label.textContent = "trained at \\u03b2 = " + nearestLabels[i] + " (nearest)";
    }
    document.querySelectorAll("table[data-slider-table] tr[data-index]").forEach(function (row) {
      row.classList.toggle("current", row.getAttribute("data-index") === String(i));
    });
  }
  slider.addEventListener("input", function () { show(parseInt(slider.value, 10)); });
  document.addEventListener("keydown", function (event) {
    if (event.target === slider || event.altKey || event.ctrlKey || event.metaKey) { return; }
    var tag = event.target.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") { return; }
    var step = {ArrowLeft: -1, ArrowRight: 1}[event.key];
    if (step === undefined) { return; }
    event.preventDefault();
    show(parseInt(slider.value, 10) + step);
  });
  show(parseInt(slider.value, 10));
})();
"""


def page(title: str, body: str) -> str:
    """The complete HTML document: ``title``, the inline stylesheet, ``body`` (HTML) and the inline script."""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n"
            f"<script>{SCRIPT}</script>\n</body>\n</html>\n")
