"""Run-folder safety pieces: the per-folder OS lock and the stop-signal recorder."""

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

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



def test_a_lock_file_removed_between_open_and_lock_is_not_trusted(tmp_path, monkeypatch):
    """A failed start removes the lock file it made. A process that opened that file just before and locks it
    just after holds a lock on a file no one else will open: it must lock the file now at the path instead."""
    import fcntl

    original, removed = fcntl.flock, []

    def flock(fd, operation):
        if not removed and operation & fcntl.LOCK_EX:
            removed.append(True)
            os.unlink(tmp_path / LOCK_FILE)  # the previous holder cleans up between our open and our lock
        return original(fd, operation)

    monkeypatch.setattr(fcntl, "flock", flock)
    with RunLock(tmp_path) as lock:
        assert removed and os.fstat(lock._fd).st_ino == os.stat(tmp_path / LOCK_FILE).st_ino
        with pytest.raises(RunFolderBusy):  # a second holder of the same folder is refused
            RunLock(tmp_path).acquire()

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


# --- results are never overwritten; a finished run is never rewritten ----------------------------------

from mrvae.cli import main  # noqa: E402

TINY = ["--data", "synthetic", "--model.hidden", "[16]", "--model.latent_dim", "3", "--train.batch_size", "32",
        "--train.warmup_steps", "2", "--train.log_every", "3", "--train.checkpoint_every", "4", "--train.device",
        "cpu", "--threads", "1", "--eval.num_betas", "2", "--eval.iwae_samples", "2", "--baseline.betas", "[0.1,1]"]
RUN = ["run", *TINY, "--train.steps", "9", "--baseline.steps", "3"]
TRAIN = ["train", *TINY, "--train.steps", "9"]


def snapshot(folder: Path, skip: tuple[str, ...] = ()) -> dict[str, tuple[bytes, int, int]]:
    """Every file under ``folder``: its bytes, inode and modification time (a rewrite with equal bytes shows)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.name not in skip:
            stat = path.stat()
            files[str(path.relative_to(folder))] = (path.read_bytes(), stat.st_ino, stat.st_mtime_ns)
    return files


def one_line(capsys) -> str:
    """The one line a command printed on stderr besides progress ("[tag] ..." and `mrvae run`'s first line)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith(("[", "mrvae run: data "))]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory):
    """Two finished tiny `mrvae run` folders (A and B) and a finished `mrvae train` folder; tests that
    write into them copy them first."""
    root = tmp_path_factory.mktemp("finished")
    for name, args in (("A", RUN), ("B", [*RUN, "--train.seed", "1"]), ("T", TRAIN)):
        assert main([*args, "--out", str(root / name)]) == 0
    return SimpleNamespace(a=root / "A", b=root / "B", t=root / "T")


@pytest.fixture
def cwd(tmp_path, monkeypatch):
    """An empty current folder (where commands write their default outputs)."""
    folder = tmp_path / "cwd"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def test_curve_with_only_a_target_writes_nothing(finished_runs, cwd, capsys):
    before_a, before_t = snapshot(finished_runs.a), snapshot(finished_runs.t)
    rates = json.loads((finished_runs.a / "curves" / "mrvae.json").read_text())["results"]["rate"]
    target = sum(rates) / 2
    capsys.readouterr()
    for run in (finished_runs.a, finished_runs.t):  # with a stored curve to refine from, and without one
        assert main(["curve", str(run), "--target_rate", f"{target:.6g}"]) == 0
        assert re.search(rf"^target rate {target:.6g} nats: β = ", capsys.readouterr().out, re.M)
    assert snapshot(finished_runs.a) == before_a and snapshot(finished_runs.t) == before_t
    assert list(cwd.iterdir()) == []


def test_curve_writes_a_new_file_never_over_a_run_file_or_an_existing_one(finished_runs, cwd, capsys):
    before = snapshot(finished_runs.a)
    assert main(["curve", str(finished_runs.a)]) == 0
    written = cwd / "A-mrvae-curve.json"
    assert [p.name for p in cwd.iterdir()] == [written.name]
    first = written.read_bytes()
    capsys.readouterr()
    for out in ([], ["--out", str(finished_runs.a / "curves" / "mrvae.json")]):
        assert main(["curve", str(finished_runs.a), *out]) == 2
        assert "--overwrite" in one_line(capsys)
    assert written.read_bytes() == first and snapshot(finished_runs.a) == before
    assert main(["curve", str(finished_runs.a), "--overwrite", "true"]) == 0
    assert snapshot(finished_runs.a) == before


def test_plot_of_two_runs_curves_touches_neither_run(finished_runs, cwd, capsys):
    before = snapshot(finished_runs.a), snapshot(finished_runs.b)
    inputs = [str(finished_runs.a / "curves" / "mrvae.json"), str(finished_runs.b / "curves" / "beta-vae.json")]
    assert main(["plot", *inputs]) == 0
    assert [p.name for p in cwd.iterdir()] == ["rd_curve.png"]
    png = (cwd / "rd_curve.png").read_bytes()
    capsys.readouterr()
    assert main(["plot", *inputs]) == 2 and "--overwrite" in one_line(capsys)
    assert (cwd / "rd_curve.png").read_bytes() == png
    assert (snapshot(finished_runs.a), snapshot(finished_runs.b)) == before


def test_export_refuses_a_folder_that_is_not_empty(finished_runs, tmp_path, capsys):
    out = tmp_path / "export"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(["export", str(finished_runs.a), "--beta", "1", "--out", str(out)]) == 2
    assert "--overwrite" in one_line(capsys)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert main(["export", str(finished_runs.a), "--beta", "1", "--out", str(out), "--overwrite", "true"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "model.safetensors").exists()


def test_report_refuses_to_overwrite_the_page_without_overwrite(finished_runs, tmp_path, capsys):
    run = tmp_path / "A"
    shutil.copytree(finished_runs.a, run)
    page = (run / "report.html").read_bytes()
    capsys.readouterr()
    assert main(["report", str(run)]) == 2
    assert "--overwrite" in one_line(capsys)
    assert (run / "report.html").read_bytes() == page
    assert main(["report", str(run), "--overwrite", "true"]) == 0


@pytest.mark.parametrize("command", ["run", "train"])
def test_resuming_a_finished_run_changes_nothing_on_disk(command, finished_runs, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(finished_runs.a if command == "run" else finished_runs.t, run, copy_function=shutil.copy2)
    before = snapshot(run, skip=(LOCK_FILE,))
    capsys.readouterr()
    assert main([*(RUN if command == "run" else TRAIN), "--out", str(run), "--resume", "true"]) == 0
    assert snapshot(run, skip=(LOCK_FILE,)) == before
    assert (run / LOCK_FILE).read_text().strip() == str(os.getpid())
    if command == "run":
        out = capsys.readouterr().out
        assert "already complete: nothing was changed" in out
        recorded = json.loads((run / "comparison.json").read_text())["wall_time_s"]
        assert f"wall time (train + eval): mrvae {recorded['mrvae']:.1f} s" in out


def test_a_resumed_interrupted_run_records_wall_times_summed_over_its_segments(finished_runs, tmp_path, monkeypatch,
                                                                               capsys):
    """Each step takes exactly 1 s on a fake clock: an interrupted and resumed run has trained 9 + 3 s (the
    sweep: 3 steps per β-VAE), not the last segment's share."""
    from mrvae.training import trainer as trainer_module

    clock = iter(range(10**6))
    monkeypatch.setattr(trainer_module, "time", SimpleNamespace(perf_counter=lambda: float(next(clock))))
    original = trainer_module.Trainer.train_step

    def interrupted_at_step_5(self):
        terms = original(self)
        if self.step == 5 and self.config.beta_low != self.config.beta_high:
            signal.raise_signal(signal.SIGTERM)  # what a scheduler's pre-emption sends
        return terms

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(trainer_module.Trainer, "train_step", interrupted_at_step_5)
        assert main([*RUN, "--out", str(out)]) == 143
    assert "SIGTERM received: mrvae stopped after step 5" in one_line(capsys)
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])["wall_time_s"] == 3.0
    assert main([*RUN, "--out", str(out), "--resume", "true"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["wall_time_s"] for r in records if r["tag"] == "mrvae"] == [3.0, 6.0, 9.0]
    # the metrics line of step 6 averages steps 4-6 across the interruption: the same as the straight run's
    straight = [json.loads(line) for line in (finished_runs.a / "metrics.jsonl").read_text().splitlines()]
    assert [(r["tag"], r["step"], r["loss"], r["rate"], r["distortion"]) for r in records] == \
        [(r["tag"], r["step"], r["loss"], r["rate"], r["distortion"]) for r in straight]
    curves = {m: json.loads((out / "curves" / f"{m}.json").read_text()) for m in ("mrvae", "beta-vae")}
    assert curves["mrvae"]["summary"]["train_wall_time_s"] == 9.0
    assert curves["beta-vae"]["summary"]["train_wall_time_s"] == 2 * 3.0
    recorded = json.loads((out / "comparison.json").read_text())["wall_time_s"]
    for method, curve in curves.items():  # training (all segments) plus this evaluation
        assert curve["summary"]["train_wall_time_s"] <= recorded[method] < curve["summary"]["train_wall_time_s"] + 5
