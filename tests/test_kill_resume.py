"""SIGKILL at any moment, checkpoint writes included, never loses or tears a checkpoint, and
`mrvae train --resume true` then ends bit-identical to a run that was never interrupted."""

import contextlib
import io
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mrvae.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mrvae.cli import main

STEPS = 60
ARGS = ["train", "--data", "synthetic", "--model.hidden", "[16]", "--model.latent_dim", "3", "--train.steps",
        str(STEPS), "--train.batch_size", "32", "--train.warmup_steps", "5", "--train.checkpoint_every", "2",
        "--train.log_every", "10", "--train.device", "cpu", "--train.seed", "4"]


def checkpoint_of(out: Path) -> Path:
    return out / "checkpoints" / "mrvae.pt"


def temporaries(out: Path) -> list[Path]:
    folder = out / "checkpoints"
    return sorted(folder.glob(".mrvae.pt.*.tmp")) if folder.is_dir() else []


def inode(path: Path) -> int | None:
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def wait_for(condition, process, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        ended = process.poll() is not None if hasattr(process, "poll") else not process.is_alive()
        if ended:
            raise AssertionError("the training process ended before it could be killed")
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the training process")
        time.sleep(0.0005)


def _slow_torch_save(obj, handle, *args, **kwargs):
    """torch.save that writes half the bytes, stalls, then writes the rest: a kill in the stall tears
    the temporary file, which must never become the checkpoint."""
    buffer = io.BytesIO()
    _original_save(obj, buffer, *args, **kwargs)
    data = buffer.getvalue()
    handle.write(data[: len(data) // 2])
    handle.flush()
    time.sleep(2.0)  # the test kills the process in here
    handle.write(data[len(data) // 2:])


_original_save = torch.save


def _train_child(out: str, slow_writes: bool) -> None:
    """A forked `mrvae train --resume true` (the parent has already imported torch: no start-up cost)."""
    if slow_writes:
        torch.save = _slow_torch_save
    os._exit(main([*ARGS, "--out", out, "--resume", "true"]))


def start_child(out: Path, slow_writes: bool, env: dict[str, str]):
    """Start `mrvae train --resume true` on ``out``: forked from this process (fast: torch is already
    imported), or, once this process has run CUDA work (autograd's GPU worker threads do not survive
    a fork), in a fresh interpreter."""
    if not torch.cuda.is_initialized():
        child = multiprocessing.get_context("fork").Process(target=_train_child, args=(str(out), slow_writes))
        child.start()
        return child
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_kill_resume as t; "
            f"t._train_child(sys.argv[1], sys.argv[2] == 'slow')")
    return subprocess.Popen([sys.executable, "-c", code, str(out), "slow" if slow_writes else "fast"], env=env,
                            stdout=subprocess.DEVNULL)


def kill_and_reap(child) -> int | None:
    """SIGKILL ``child`` (a forked Process or a Popen) unless it already ended; -> its exit code."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(child.pid, signal.SIGKILL)
    if hasattr(child, "poll"):
        return child.wait(timeout=60)
    child.join(timeout=60)
    return child.exitcode


def assert_checkpoint_intact(out: Path, previous_step: int) -> int:
    """The checkpoint, if any, loads and did not go back in time; -> its step."""
    if not checkpoint_of(out).exists():
        assert previous_step == 0
        return 0
    step = load_checkpoint(checkpoint_of(out))["step"]
    assert previous_step <= step < STEPS
    return step


@pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(), reason="needs os.fork (POSIX)")
def test_sigkill_at_random_moments_then_resume_is_bit_identical(tmp_path, capsys):
    out = tmp_path / "killed"
    # 1. A real `python -m mrvae train` process, killed with SIGKILL right after its first checkpoint.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same single thread as this test process
    process = subprocess.Popen([sys.executable, "-m", "mrvae.cli", *ARGS, "--out", str(out)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(checkpoint_of(out).exists, process)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL, process.stderr.read().decode()[-2000:]
    step = assert_checkpoint_intact(out, 0)
    assert step >= 2
    # The uninterrupted reference run, here (it also imports what the first optimiser imports, so the
    # forked children below start fast).
    assert main([*ARGS, "--out", str(tmp_path / "straight")]) == 0

    # 2. Resumed and killed again, five times: twice in the middle of a (slowed-down) checkpoint write,
    #    three times at a random moment after the resumed run has written a checkpoint.
    rng = random.Random(1234)
    for cycle in range(5):
        slow = cycle < 2
        before, before_inode = set(temporaries(out)), inode(checkpoint_of(out))
        child = start_child(out, slow, env)
        try:
            if slow:  # kill once half the bytes of a new temporary file are on disk
                wait_for(lambda: any(size(t) > 0 for t in set(temporaries(out)) - before), child)
            else:
                wait_for(lambda: inode(checkpoint_of(out)) != before_inode, child)
                time.sleep(rng.uniform(0.0, 0.02))
        finally:
            code = kill_and_reap(child)
        assert code == -signal.SIGKILL, f"cycle {cycle}: the child ended by itself ({code})"
        if slow:  # the kill tore a temporary file; the checkpoint itself is the previous one
            torn = set(temporaries(out)) - before
            assert len(torn) == 1
            with pytest.raises(CheckpointError, match="is corrupt"):
                load_checkpoint(torn.pop())
            assert inode(checkpoint_of(out)) == before_inode
        step = assert_checkpoint_intact(out, step)

    # 3. `--resume true` finishes the run; it matches an uninterrupted run bit for bit.
    assert main([*ARGS, "--out", str(out), "--resume", "true"]) == 0
    assert not temporaries(out)  # stale temporaries are cleaned up by the next successful write
    resumed = load_checkpoint(checkpoint_of(out))
    straight = load_checkpoint(checkpoint_of(tmp_path / "straight"))
    assert resumed["step"] == straight["step"] == STEPS
    assert resumed["model"].keys() == straight["model"].keys()
    for name, tensor in straight["model"].items():
        assert torch.equal(resumed["model"][name], tensor), name
    for a, b in zip(resumed["optimizer"]["state"].values(), straight["optimizer"]["state"].values()):
        assert torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_a_torn_checkpoint_file_is_named_not_loaded(tmp_path, damage):
    good = tmp_path / "good.pt"
    save_checkpoint({"step": 3, "w": torch.ones(1000)}, good)
    data = good.read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    with pytest.raises(CheckpointError, match=r"checkpoint .*bad\.pt is corrupt or not a mrvae checkpoint"):
        load_checkpoint(bad)


def test_a_full_disk_is_refused_before_training_starts(tmp_path, monkeypatch, capsys):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 50_000, 50_000))
    out = tmp_path / "full"
    assert main([*ARGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mrvae: error: not enough free disk space for checkpoints in {out / 'checkpoints'}: "
                          "0.0 MiB free, about 2.") and err.count("\n") == 1
    assert not (out / "metrics.jsonl").exists() and not checkpoint_of(out).exists()  # no step was taken
