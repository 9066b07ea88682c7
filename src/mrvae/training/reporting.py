"""What a ``fit`` reports on rank 0: running means of its terms as JSON lines, and its progress."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from .distributed import all_reduce

LogFn = Callable[[str], None]

#: The terms a training step returns and a metrics line records, in nats per example.
TERMS = ("loss", "rate", "distortion")


class MetricsWriter:
    """Sums the per-step ``TERMS`` and, at each ``write``, averages them over the steps since the last
    write and over ranks (collective), and appends one JSON line tagged ``tag`` to ``path`` (if any)."""

    def __init__(self, path: Path | None, tag: str, device: torch.device, world_size: int) -> None:
        self.path, self.tag, self.world_size = path, tag, world_size
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
        kept = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line torn by a kill mid-write
            if not (isinstance(record, dict) and record.get("tag") == self.tag and record.get("step", 0) > step):
                kept.append(line)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_text("".join(f"{line}\n" for line in kept), encoding="utf-8")
        os.replace(temporary, self.path)

    def write(self, step: int, lr: float, wall_time_s: float) -> dict[str, float]:
        """-> the means written (also kept as ``last``); the sums start again from zero."""
        means = all_reduce(self.sums / self.count) / self.world_size
        self.last = dict(zip(TERMS, means.tolist()))
        if self.path is not None:
            record = {"tag": self.tag, "step": step, **self.last, "lr": lr, "wall_time_s": round(wall_time_s, 3)}
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(record) + "\n")
        self.sums.zero_()
        self.count = 0
        return self.last


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
