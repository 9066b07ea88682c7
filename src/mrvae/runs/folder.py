"""The run folder: its layout (``RunDir``), the writability check, and creating or reopening one.

Layout of a run folder::

    config.yaml                 the resolved RunConfig
    metrics.jsonl               training metrics of every method, one JSON object per line
    checkpoints/mrvae.pt        one checkpoint per trained model (beta-vae/beta=0.01.pt for the sweep)
    curves/mrvae.json           RD-curve JSON per method (see mrvae.evaluation.curves)
    comparison.json             the per-β table of every method at the baseline βs
    plots/rd_curve.png          the rate-distortion figure
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..config import Method, RunConfig, load_yaml, save_yaml, to_dict
from ..training.distributed import run_on_main


class RunDirError(ValueError):
    """The output folder cannot be used: not writable, or it already holds another run."""


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run folder (see module docstring)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    def checkpoint(self, method: Method, beta: float | None = None) -> Path:
        if beta is None:
            return self.root / "checkpoints" / f"{method.value}.pt"
        return self.root / "checkpoints" / method.value / f"beta={beta:.4g}.pt"

    def curve(self, method: Method) -> Path:
        return self.root / "curves" / f"{method.value}.json"

    @property
    def comparison(self) -> Path:
        return self.root / "comparison.json"

    @property
    def plot(self) -> Path:
        return self.root / "plots" / "rd_curve.png"


def check_writable(folder: Path) -> None:
    """Raise ``RunDirError`` unless ``folder`` can be created and written to (checked by a probe file)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as exc:
        raise RunDirError(f"output folder {folder} is not writable: {exc.strerror or exc}") from exc


def prepare_run_dir(out: str | Path, config: RunConfig, resume: bool) -> RunDir:
    """Create (or, with ``resume``, reopen) a run folder for ``config``; never overwrites a run.

    A non-empty folder without ``resume`` is refused; with ``resume`` its ``config.yaml`` must match.
    In a process group (joined beforehand, see ``mrvae.training.distributed.init_distributed``) rank 0
    alone checks and writes the folder and every rank gets its outcome (the same ``RunDirError``
    everywhere if it fails).
    """
    return run_on_main(lambda: _prepare_run_dir(RunDir(Path(out)), config, resume))


def _prepare_run_dir(run: RunDir, config: RunConfig, resume: bool) -> RunDir:
    if run.root.exists() and not run.root.is_dir():
        raise RunDirError(f"output path {run.root} exists and is not a folder")
    existing = run.root.is_dir() and any(run.root.iterdir())
    if existing and not resume:
        raise RunDirError(f"output folder {run.root} is not empty; pass --resume to continue that run "
                          f"or choose another --out")
    check_writable(run.root)
    if resume and run.config.exists():
        try:
            previous = load_yaml(run.config)
        except (ValueError, TypeError) as exc:
            raise RunDirError(f"{run.config} is not a readable run config: {exc}") from exc
        if to_dict(previous) != to_dict(config):
            raise RunDirError(f"--resume: the settings differ from those in {run.config}; "
                              f"resume with the same settings (or --config {run.config})")
    else:
        save_yaml(config, run.config)
    return run
