"""What data is on disk: a table of every registered data set, and a per-set report of present/missing files."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from .catalog import CATALOG, DatasetFiles
from .registry import DATASETS, data_root


def dataset_status(name: str, root: str | Path | None = None,
                   catalog: Mapping[str, DatasetFiles] | None = None) -> str:
    """One word or phrase: "built in", "present", "present (<fallback folder>)" or "missing"."""
    table = CATALOG if catalog is None else catalog
    if name not in table:
        return "built in"
    files = table[name]
    primary = files.primary(data_root(root))
    if files.complete_in(primary):
        return "present"
    for folder in files.fallbacks:
        if files.complete_in(folder):
            return f"present ({folder})"
    return "missing"


def list_datasets(root: str | Path | None = None, catalog: Mapping[str, DatasetFiles] | None = None) -> str:
    """A text table of every registered data set: name, status under ``data_root(root)``, description."""
    rows = [(name, dataset_status(name, root, catalog), DATASETS[name].description) for name in sorted(DATASETS)]
    widths = [max(len(r[i]) for r in rows + [("name", "status", "")]) for i in range(2)]
    lines = [f"data root: {data_root(root)}", f"{'name':<{widths[0]}}  {'status':<{widths[1]}}  description"]
    lines += [f"{n:<{widths[0]}}  {s:<{widths[1]}}  {d}" for n, s, d in rows]
    return "\n".join(lines)


def check_dataset(name: str, root: str | Path | None = None,
                  catalog: Mapping[str, DatasetFiles] | None = None) -> tuple[bool, str]:
    """-> (every file the reader needs is present, a report listing each required file as present, or
    missing with the exact path expected, and how to get what is missing)."""
    table = CATALOG if catalog is None else catalog
    if name not in DATASETS and name not in table:
        raise ValueError(f"unknown data set {name!r}; choose one of: {', '.join(sorted(DATASETS))}")
    if name not in table:
        return True, f"{name}: built in, needs no files"
    files = table[name]
    primary = files.primary(data_root(root))
    found = next((f for f in (primary, *files.fallbacks) if files.complete_in(f)), None)
    folder = primary if found is None else found
    lines = [f"{name}: looking in {folder}" + ("" if folder == primary else f" (fallback; {primary} lacks the files)")]
    for required in files.required:
        path = required.find(folder)
        if path is not None:
            lines.append(f"  present  {path}")
        else:
            lines.append("  missing  " + " or ".join(str(folder / rel) for rel in required.paths))
    ok = found is not None
    lines.append(f"{name}: ready" if ok else f"{name}: incomplete; {files.how_to_get()}")
    return ok, "\n".join(lines)
