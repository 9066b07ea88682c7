"""What a ``fit`` reports on rank 0: running means of its terms as JSON lines (and, when asked, as
TensorBoard scalars), and its progress."""

from __future__ import annotations

import fcntl
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

import torch
from torch import Tensor

from .distributed import all_reduce

LogFn = Callable[[str], None]

#: The terms a training step returns and a metrics line records, in nats per example.
TERMS = ("loss", "rate", "distortion")
#: What TensorBoard logging asks for when the package is missing.
TENSORBOARD_INSTALL = "pip install 'mrvae[tensorboard]'"


class MetricsWriter:
    """Sums the per-step ``TERMS`` and, at each ``write``, averages them over the steps since the last
    write and over ranks (collective), and appends one JSON line tagged ``tag`` to ``path`` (if any)."""

    def __init__(self, path: Path | None, tag: str, device: torch.device, world_size: int,
                 board: TensorBoardScalars | None = None) -> None:
        self.path, self.tag, self.world_size, self.board = path, tag, world_size, board
        self.sums = torch.zeros(len(TERMS), device=device)
        self.count = 0
        self.last: dict[str, float] = {}

    def add(self, terms: dict[str, Tensor]) -> None:
        self.sums += torch.stack([terms[key] for key in TERMS])
        self.count += 1

    def state_dict(self) -> dict[str, object]:
        """The running sums since the last write (so a resumed run writes the same lines)."""
        return {"sums": self.sums.detach().cpu().clone(), "count": self.count}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.sums.copy_(state["sums"])
        self.count = int(state["count"])

    def truncate_after(self, step: int) -> None:
        """Drop this tag's lines for steps after ``step`` (all of them for step 0): what a resumed run
        writes again. The file is rewritten atomically; other tags' lines are kept in order."""
        if self.path is None or not self.path.exists():
            return
        with _appending(self.path):  # no line of another process's fit is lost in the rewrite
            self._drop_after(step)

    def _drop_after(self, step: int) -> None:
        kept = []
        text = self.path.read_text(encoding="utf-8")
        lines = text.splitlines()
        for line in lines:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill mid-write
            if not (isinstance(record, dict) and record.get("tag") == self.tag and record.get("step", 0) > step):
                kept.append(line)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        if len(kept) == len(lines) and (not text or text.endswith("\n")):
            temporary.unlink(missing_ok=True)  # left by a kill mid-rewrite, if any
            return  # nothing to drop: the file is left as it is (a resumed finished run rewrites nothing)
        temporary.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        os.replace(temporary, self.path)

    def write(self, step: int, lr: float, wall_time_s: float) -> dict[str, float]:
        """-> the means written (also kept as ``last``); the sums start again from zero."""
        means = all_reduce(self.sums / self.count) / self.world_size
        self.last = dict(zip(TERMS, means.tolist()))
        if self.path is not None:
            record = {"tag": self.tag, "step": step, **self.last, "lr": lr, "wall_time_s": round(wall_time_s, 3)}
            try:
                with _appending(self.path) as handle:
                    handle.write(json.dumps(record) + "\n")
            except OSError as exc:  # a full disk: name the file (write errors do not)
                if exc.filename is not None:
                    raise
                raise OSError(exc.errno, exc.strerror or str(exc), str(self.path)) from exc
        if self.board is not None:
            self.board.add(step, {**self.last, "lr": lr})
        self.sums.zero_()
        self.count = 0
        return self.last


@contextmanager
def _appending(path: Path) -> Iterator[TextIO]:
    """``path`` open for appending, under an exclusive ``flock`` for the block: the ranks of a spread β-VAE
    sweep (``runs.baselines``) append to one metrics file and may rewrite it on resume, so appends and
    rewrites take turns. A rewrite replaces the file: a waiter that then holds the lock of the old file
    opens and locks the new one instead."""
    while True:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)  # the lock's own descriptor
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd is closed
        except OSError:  # a file system without locks: appends as before, unguarded
            break
        try:
            current = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            break
        os.close(fd)
    try:
        with open(path, "a", encoding="utf-8") as handle:
            yield handle
    finally:
        os.close(fd)


class TensorBoardScalars:
    """The scalars of one ``fit`` (``loss``, ``rate``, ``distortion`` in nats per example, and ``lr``) as
    TensorBoard events in ``folder / tag``: one TensorBoard run per tag, so the models of a run folder
    sit side by side. ``folder`` None: nothing is written and the package is not needed.

    Constructing it checks that ``tensorboard`` is installed (ImportError naming the extra otherwise);
    ``start(step)`` opens the writer for a fit that starts after ``step``: events of earlier segments
    past ``step`` (written before a kill, after the last checkpoint) are purged from view, as
    ``MetricsWriter.truncate_after`` drops their lines. A fresh fit (step 0) hides every earlier event.
    """

    def __init__(self, folder: Path | None, tag: str) -> None:
        self.folder = Path(folder) / _folder_name(tag) if folder is not None else None
        self.writer = None
        if self.folder is not None:
            self._writer_class = summary_writer_class()

    def start(self, step: int) -> None:
        if self.folder is None:
            return
        _wait_for_a_later_file_name(self.folder)
        self.writer = self._writer_class(log_dir=str(self.folder), purge_step=step + 1)

    def add(self, step: int, scalars: dict[str, float]) -> None:
        if self.writer is not None:
            for name, value in scalars.items():
                self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        """Flush and close the event file (a no-op when nothing is open)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def summary_writer_class() -> type:
    """``torch.utils.tensorboard.SummaryWriter``; ImportError with the install command if the package is missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ImportError(f"TensorBoard logging needs the tensorboard package: {TENSORBOARD_INSTALL}") from None
    return SummaryWriter


def _folder_name(tag: str) -> str:
    """``tag`` as one folder name (``beta-vae@0.01`` stays as it is; separators become ``_``)."""
    name = re.sub(r"[^A-Za-z0-9._@=+-]", "_", tag)
    return name if name.strip(".") else "_"


def _wait_for_a_later_file_name(folder: Path) -> None:
    """TensorBoard reads a run's event files in name order, and names start with the creation second: wait,
    if needed, until a new file's name sorts after every existing one (only a restart within the same
    second as the last writer ever waits, for under a second), so a purge is read after what it purges."""
    seconds = [int(p.name.split(".")[3]) for p in folder.glob("events.out.tfevents.*")
               if len(p.name.split(".")) > 3 and p.name.split(".")[3].isdigit()]
    give_up = time.monotonic() + 2.0  # a file stamped in the future (clock change) is not waited for
    while seconds and int(time.time()) <= max(seconds) and time.monotonic() < give_up:
        time.sleep(0.05)


class Progress:
    """A tqdm bar when ``bar`` is set, else a ``log`` line per reported step; nothing when neither is."""

    def __init__(self, tag: str, total: int, log: LogFn | None, bar: bool) -> None:
        self.tag, self.total, self.log, self.want_bar = tag, total, log, bar
        self.bar = None

    def note(self, message: str) -> None:
        if self.log:
            self.log(f"[{self.tag}] {message}")

    def start(self, step: int) -> None:
        if self.want_bar:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=self.total, initial=step, desc=self.tag, unit="step", leave=False)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def show(self, step: int, metrics: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{metrics['loss']:.2f}")
        else:
            self.note(f"step {step}/{self.total} loss {metrics['loss']:.3f} rate {metrics['rate']:.3f} "
                      f"distortion {metrics['distortion']:.3f} nats")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
