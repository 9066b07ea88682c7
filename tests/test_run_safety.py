"""Run-folder safety pieces: the per-folder OS lock and the stop-signal recorder."""

import os
from pathlib import Path
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from mrvae.runs.lock import LOCK_FILE, RunFolderBusy, RunLock
from mrvae.training.interrupt import StopSignals, TrainingInterrupted, signal_name

HOLDER = textwrap.dedent("""
    import sys, time
    from mrvae.runs.lock import RunLock
    with RunLock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(60)
""")


def test_a_second_process_is_refused_with_the_holders_pid_and_the_lock_frees_on_kill(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunFolderBusy, match=rf"in use by process {holder.pid} "):
            RunLock(tmp_path).acquire()
    finally:
        holder.kill()
        holder.wait()
    with RunLock(tmp_path) as lock:  # SIGKILL released it: nothing stale is left behind
        assert lock.held
        assert (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
    assert not lock.held


def test_the_lock_is_reentrant_within_one_holder_and_released_on_exceptions(tmp_path):
    lock = RunLock(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        with lock:
            assert lock.acquire() is lock  # a second acquire by the holder is a no-op
            raise RuntimeError("boom")
    assert not lock.held
    RunLock(tmp_path).acquire().release()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_stop_signals_records_the_first_signal_and_restores_the_handlers(signum):
    before = signal.getsignal(signum)
    with StopSignals() as stop:
        assert stop.requested is None
        signal.raise_signal(signum)
        deadline = time.monotonic() + 2
        while stop.requested is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert stop.requested == signum
    assert signal.getsignal(signum) is before


def test_a_second_sigint_is_not_swallowed():
    with pytest.raises(KeyboardInterrupt):
        with StopSignals():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)  # the default handler is back: KeyboardInterrupt
            time.sleep(1)


def test_interrupted_message_and_exit_code():
    stop = TrainingInterrupted(signal.SIGTERM, "mrvae", 37, "runs/x/checkpoints/mrvae.pt")
    assert stop.exit_code == 143 and signal_name(2) == "SIGINT"
    assert str(stop) == ("SIGTERM received: mrvae stopped after step 37; checkpoint written to "
                         "runs/x/checkpoints/mrvae.pt")


def test_a_failed_start_in_an_empty_folder_leaves_it_empty(tmp_path, monkeypatch, capsys):
    from mrvae.cli import main
    from mrvae.training import checkpointer
    from mrvae.training.checkpoint import CheckpointError

    out = tmp_path / "empty"
    out.mkdir()
    # the architecture cannot take 8×8 digits: refused before anything is written
    assert main(["run", "--model.arch", "conv", "--train.steps", "2", "--threads", "1", "--out", str(out)]) == 2
    assert [p.name for p in out.iterdir() if p.name != ".lock"] == []

    # a failure after config.yaml and checkpoints/ exist but before any checkpoint: taken back to empty
    def no_room(path, needed):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        raise CheckpointError(f"not enough free disk space for checkpoints in {Path(path).parent}")

    monkeypatch.setattr(checkpointer, "check_checkpoint_folder", no_room)
    assert main(["train", "--train.steps", "2", "--threads", "1", "--out", str(out)]) == 2
    assert "not enough free disk space" in capsys.readouterr().err
    assert [p.name for p in out.iterdir() if p.name != ".lock"] == []
    monkeypatch.undo()
    assert main(["train", "--train.steps", "2", "--threads", "1", "--out", str(out)]) == 0, capsys.readouterr().err
