"""SIGINT / SIGTERM during training: finish the step, checkpoint, stop with one line instead of a traceback.

``StopSignals`` is a context manager that, in the main thread, replaces the handlers of SIGINT (Ctrl-C)
and SIGTERM (what schedulers send on pre-emption) with one that only records the signal. The training
loop polls ``requested`` after each optimiser step; when set, it writes a checkpoint atomically and
raises ``TrainingInterrupted``, which the CLI turns into one line and exit code 128 + signal number
(130 for SIGINT, 143 for SIGTERM). A second signal while the first is being handled restores the
previous handlers and re-raises it, so a user who presses Ctrl-C twice still gets out at once. The
previous handlers are restored on exit, exceptions included.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

#: The signals training turns into a checkpoint and a clean stop.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Training stopped on a signal after writing a checkpoint at ``step`` (``checkpoint`` is its path,
    or None when the run has no checkpoint file)."""

    def __init__(self, signum: int, tag: str, step: int, checkpoint: str | None) -> None:
        self.signum, self.tag, self.step, self.checkpoint = signum, tag, step, checkpoint
        where = f"checkpoint written to {checkpoint}" if checkpoint else "no checkpoint file (none was asked for)"
        super().__init__(f"{signal_name(signum)} received: {tag} stopped after step {step}; {where}")

    @property
    def exit_code(self) -> int:
        """The shell's convention for a process ended by a signal: 128 + its number."""
        return 128 + self.signum


def signal_name(signum: int) -> str:
    """``SIGINT`` for 2, ``SIGTERM`` for 15, ...; the number for an unknown signal."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class StopSignals:
    """``with StopSignals() as stop: ... if stop.requested: ...``; see the module docstring.

    Outside the main thread (where Python cannot install handlers) it installs nothing and
    ``requested`` stays None.
    """

    def __init__(self) -> None:
        self.requested: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in STOP_SIGNALS:
                self._previous[signum] = signal.signal(signum, self._record)
        return self

    def _record(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:  # a second signal: give up waiting for the step to end
            self._restore()
            signal.raise_signal(signum)
            return
        self.requested = signum

    def _restore(self) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def __exit__(self, *exc: object) -> None:
        self._restore()
