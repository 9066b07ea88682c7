"""One self-contained HTML page per run, read from the run folder only: RD curves, per-β table, pictures
across β behind a slider, config, versions.

``build_report(run_dir)`` reads ``config.yaml``, ``curves/*.json``, ``comparison.json`` and the
``pictures/`` written by ``mrvae run``, and writes ``run_dir/report.html`` (see ``page.py`` for the
page). Nothing is trained, loaded from a checkpoint or decoded here: the same run folder gives
byte-identical HTML (with the same library versions).
"""

from __future__ import annotations

import os
from pathlib import Path

from .inputs import read_inputs
from .page import render_report

REPORT_NAME = "report.html"


def build_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the HTML report of the run folder ``run_dir`` to ``out`` (default ``run_dir/report.html``),
    through a temporary file renamed into place. Returns the path."""
    html = render_report(read_inputs(run_dir))
    path = Path(out) if out is not None else Path(run_dir) / REPORT_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, path)
    return path
