"""The run folder: its layout (``RunDir``), the writability check, and creating or reopening one.

Layout of a run folder::

    config.yaml                 the resolved RunConfig
    metrics.jsonl               training metrics of every method, one JSON object per line
    checkpoints/mrvae.pt        one checkpoint per trained model (beta-vae/beta=0.01.pt for the sweep)
    curves/mrvae.json           RD-curve JSON per method (see mrvae.evaluation.curves)
    comparison.json             the per-β table of every method at the baseline βs
    plots/rd_curve.png          the rate-distortion figure
    pictures/                   per-β reconstructions and samples (PNG + index.json, runs.pictures)
    report.html                 the report (written last: its presence marks a finished run)
    .lock                       the lock of the process using the folder (runs.lock)
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..config import Method, RunConfig, load_yaml, save_yaml, to_dict
from ..training.distributed import run_on_main
from .lock import LOCK_FILE, RunFolderBusy, RunLock


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

    @property
    def report(self) -> Path:
        return self.root / "report.html"

    def is_complete(self, methods: tuple[Method, ...]) -> bool:
        """Whether ``mrvae run`` finished here: every method's curve, the comparison and the report exist
        (the report is written last)."""
        return all(self.curve(m).exists() for m in methods) and self.comparison.exists() and self.report.exists()


def check_writable(folder: Path) -> None:
    """Raise ``RunDirError`` unless ``folder`` can be created and written to (checked by a probe file)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as exc:
        raise RunDirError(f"output folder {folder} is not writable: {exc.strerror or exc}") from exc


@contextmanager
def open_run_dir(out: str | Path, config: RunConfig, resume: bool) -> Iterator[RunDir]:
    """``with open_run_dir(out, config, resume) as run:`` creates (or, with ``resume``, reopens) the run
    folder and holds its lock (``runs.lock``) until the block ends; it never overwrites a run.

    A non-empty folder without ``resume`` is refused; with ``resume`` its ``config.yaml`` must match.
    If the block fails before any checkpoint exists, what this process made is removed again (the
    folder itself when it created it), so the corrected command can start afresh. In a process group
    (joined beforehand) rank 0 alone checks, locks and writes the folder; every rank gets the outcome.
    """
    run = RunDir(Path(out))
    lock = RunLock(run.root)
    made: list[Path] = []  # filled by _open as it creates things, so a failure half-way is undone too
    try:
        run_on_main(lambda: _open(run, config, resume, lock, made))
        yield run
    except BaseException:
        # only the lock's holder may remove anything: a process refused the lock (``made`` may even name the
        # folder, created by both at once) must not touch a folder another process is using
        run_on_main(lambda: _discard_if_untrained(run, made) if lock.held else None)
        raise
    finally:
        lock.release()


def _open(run: RunDir, config: RunConfig, resume: bool, lock: RunLock, made: list[Path]) -> None:
    """Check, lock and fill the folder, appending to ``made`` what it creates (removed on an early failure)."""
    if run.root.exists() and not run.root.is_dir():
        raise RunDirError(f"output path {run.root} exists and is not a folder")
    if not run.root.exists():
        made.append(run.root)
    check_writable(run.root)
    try:
        lock.acquire()
    except RunFolderBusy as exc:
        raise RunDirError(str(exc)) from None
    existing = [p for p in run.root.iterdir() if p.name != LOCK_FILE]
    if existing and not resume:
        raise RunDirError(f"output folder {run.root} is not empty; pass --resume true to continue that run "
                          f"or choose another --out")
    if not existing and run.root not in made:
        made.append(run.root / "*")  # an empty folder of the user's: whatever appears in it is this run's
    if resume and run.config.exists():
        _check_same_config(run, config)
    else:
        made.append(run.config)
        save_yaml(config, run.config)


def _check_same_config(run: RunDir, config: RunConfig) -> None:
    try:
        if run.config.stat().st_size == 0:
            raise ValueError("the file is empty (written by an interrupted start?)")
        previous = load_yaml(run.config)
    except (ValueError, TypeError, yaml.YAMLError, UnicodeDecodeError) as exc:
        problem = " ".join(str(exc).split())
        raise RunDirError(f"{run.config} is not a readable run config: {problem}; if no checkpoint in "
                          f"{run.root / 'checkpoints'} matters, remove the folder and start again") from None
    if to_dict(previous) != to_dict(config):
        changed = [key for key, value in to_dict(config).items() if to_dict(previous).get(key) != value]
        raise RunDirError(f"--resume: the settings differ from those in {run.config} ({', '.join(changed)}); "
                          f"resume with the same settings (or --config {run.config})")


def _discard_if_untrained(run: RunDir, made: list[Path]) -> None:
    """Remove what ``_open`` made unless training has written a checkpoint since."""
    checkpoints = run.root / "checkpoints"
    if not made or (checkpoints.is_dir() and any(checkpoints.rglob("*.pt"))):
        return
    if made[0] == run.root:
        shutil.rmtree(run.root, ignore_errors=True)
        return
    if run.root / "*" in made:  # the folder was empty: take it back to empty, lock file included (runs.lock)
        for entry in run.root.iterdir():
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink(missing_ok=True)
        return
    for path in made:
        path.unlink(missing_ok=True)
    run.metrics.unlink(missing_ok=True)


def prepare_run_dir(out: str | Path, config: RunConfig, resume: bool) -> RunDir:
    """Create (or reopen) a run folder for ``config`` without holding it (see ``open_run_dir``, which
    commands use); for scripts and benchmarks that own their folders."""
    run = RunDir(Path(out))
    lock = RunLock(run.root)
    try:
        run_on_main(lambda: _open(run, config, resume, lock, []))
    finally:
        lock.release()
    return run


def new_file(path: str | Path, overwrite: bool = False) -> Path:
    """``path`` for a file a command is about to write outside ``mrvae run``: refused (ValueError) if it
    exists, unless ``overwrite``, or if it is a folder; nothing a run wrote is replaced by accident."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise ValueError(f"{path} already exists; pass --overwrite true to replace it, or choose another --out")
    return path
