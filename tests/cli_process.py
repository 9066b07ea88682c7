"""Helpers for the tests that run ``python -m mrvae.cli`` as a real process (signals, locks, kills):
the process with its stderr read line by line as it comes, optional injected faults
(``tests/faults/sitecustomize.py``), and comparisons of training state and metrics."""

from __future__ import annotations

import json
import os
import queue
import shlex
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch

FAULTS_DIR = Path(__file__).parent / "faults"

#: A model and run small enough for a test on two cores.
TINY = ["--data", "synthetic", "--model.hidden", "[16]", "--model.latent_dim", "3", "--train.batch_size", "32",
        "--train.warmup_steps", "5", "--train.device", "cpu", "--threads", "1", "--eval.num_betas", "2",
        "--eval.iwae_samples", "2", "--baseline.betas", "[0.1,1]"]


def cli_env(faults: dict[str, Any] | None = None) -> dict[str, str]:
    """The environment of a CLI subprocess: one thread (as in this process) and, with ``faults``, the
    fault-injecting ``sitecustomize`` first on the path."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if faults is not None:
        env["MRVAE_TEST_FAULTS"] = json.dumps(faults)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(FAULTS_DIR), env.get("PYTHONPATH", "")) if p)
    return env


class CliProcess:
    """``python -m mrvae.cli *args`` running in the background; its stdout and stderr are collected by
    threads, and ``wait_for`` blocks until a stderr line matches."""

    def __init__(self, args: list[str], faults: dict[str, Any] | None = None) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "mrvae.cli", *args], env=cli_env(faults),
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.pid = self.process.pid
        self.err_lines: list[str] = []
        self.out_lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._threads = [threading.Thread(target=self._read, args=(self.process.stderr, self.err_lines, True)),
                         threading.Thread(target=self._read, args=(self.process.stdout, self.out_lines, False))]
        for thread in self._threads:
            thread.daemon = True
            thread.start()

    def _read(self, stream, lines: list[str], signal_lines: bool) -> None:
        for line in stream:
            lines.append(line.rstrip("\n"))
            if signal_lines:
                self._queue.put(line.rstrip("\n"))
        if signal_lines:
            self._queue.put(None)

    def wait_for(self, predicate, timeout: float = 90.0) -> str:
        """The first stderr line (from now on) for which ``predicate`` holds; AssertionError if the process
        ends or ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"timed out; stderr so far: {self.err_lines[-5:]}") from None
            if line is None:
                self.process.wait()
                raise AssertionError(f"the process ended ({self.process.returncode}) first; stderr: "
                                     f"{self.err_lines[-5:]}")
            if predicate(line):
                return line

    def finish(self, timeout: float = 120.0) -> int:
        """Wait for the end -> the exit code (all output collected)."""
        code = self.process.wait(timeout=timeout)
        for thread in self._threads:
            thread.join(timeout=10)
        return code

    @property
    def stderr(self) -> str:
        return "\n".join(self.err_lines)


def command_from_line(printed: str) -> list[str]:
    """A printed ``mrvae ...`` command line -> the arguments after ``mrvae``."""
    words = shlex.split(printed)
    assert words[0] == "mrvae", printed
    return words[1:]


def checkpoints_of(out: Path) -> dict[str, Path]:
    return {str(p.relative_to(out)): p for p in sorted((out / "checkpoints").rglob("*.pt"))}


def _differs_between_processes(where: str, key: Any) -> bool:
    """Entries that legitimately differ between two processes training the same run: the wall time, and
    the state of torch's global generator (torch seeds it at random per process; training never draws
    from it, every draw uses the run's seeded generator, ``rng['train_generator']``)."""
    return key == "wall_time_s" or (key == "torch" and "rng" in where)


def assert_same_state(a: Any, b: Any, where: str = "checkpoint") -> None:
    """Two checkpoint states are bit-identical (tensors by ``torch.equal`` with the same dtype), apart from
    what differs between processes (``_differs_between_processes``)."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f"{where} differs"
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), f"{where}: keys {sorted(map(str, a))} vs {sorted(map(str, b))}"
        for key in a:
            if not _differs_between_processes(where, key):
                assert_same_state(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def metric_records(path: Path) -> list[dict[str, Any]]:
    """Every record of a metrics.jsonl (each line must parse)."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def assert_one_record_per_step(path: Path, reference: Path | None = None) -> None:
    """metrics.jsonl holds exactly one record per (tag, step); with ``reference`` (an uninterrupted run's
    file) the same (tag, step) pairs with the same loss, rate, distortion and learning rate, bit for bit."""
    records = metric_records(path)
    counts = Counter((r["tag"], r["step"]) for r in records)
    repeated = {key: n for key, n in counts.items() if n > 1}
    assert not repeated, f"records repeated in {path}: {repeated}"
    if reference is not None:
        expected = {(r["tag"], r["step"]): r for r in metric_records(reference)}
        assert set(counts) == set(expected), f"(tag, step) pairs differ: {set(counts) ^ set(expected)}"
        for record in records:
            want = expected[record["tag"], record["step"]]
            for key in ("loss", "rate", "distortion", "lr"):
                assert record[key] == want[key], (record, want)


def temporaries(out: Path) -> list[Path]:
    """Temporary files of atomic writes left anywhere in a run folder."""
    return sorted(p for p in out.rglob("*") if p.name.endswith(".tmp"))


def run_torchrun_worker(out: Path, worker: str, *args: str, processes: int = 2) -> subprocess.CompletedProcess:
    """Write ``worker`` to ``out``/worker.py and run it under ``torchrun --standalone`` with ``processes`` CPU
    ranks (one thread each) and ``args``; asserts it exited 0 (stderr's tail in the message)."""
    (out / "worker.py").write_text(worker)
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                           str(processes), str(out / "worker.py"), str(out), *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}, cwd=out)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


#: Skip marker for the tests that need torch.distributed's gloo backend.
needs_gloo = __import__("pytest").mark.skipif(
    not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
    reason="this torch build has no torch.distributed gloo backend")
