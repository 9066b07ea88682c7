"""SIGKILL at any moment, checkpoint writes included, never loses or tears a checkpoint, and
`mrvae train --resume true` then ends bit-identical to a run that was never interrupted."""

import contextlib
import io
import json
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


# --- Fault injection: SIGKILL a real `python -m mrvae.cli train` at random moments ---------------------

FAULT_STEPS = 40
FAULT_ARGS = ["train", "--data", "synthetic", "--model.hidden", "[16]", "--model.latent_dim", "3", "--train.steps",
              str(FAULT_STEPS), "--train.batch_size", "32", "--train.warmup_steps", "5", "--train.checkpoint_every",
              "3", "--train.log_every", "1", "--train.device", "cpu", "--train.seed", "7", "--threads", "1"]
STEP_SLEEP = 0.02  # each step of a child sleeps this long first, so a kill after a step line lands mid-training
PAUSE_S = 1.0  # an os.replace onto a paused name waits this long: the kill lands inside the atomic write


def _kill_plan(rng: random.Random, kills: int) -> list[str]:
    """What each child is killed in: the config.yaml write (the first, fresh start: the only one that writes
    it), a checkpoint write, the metrics.jsonl rewrite of a resume, and otherwise a random moment, either
    a random time after the start (imports, parsing, data, lock) or a random point within a random step.
    The second kill is within a step, so that metrics.jsonl exists for a resume to rewrite from then on."""
    rest = ["mrvae.pt", "metrics.jsonl"]
    rest += [rng.choice(["start", "step", "step", "step", "mrvae.pt"]) for _ in range(kills - 2 - len(rest))]
    return ["config.yaml", "step", *rng.sample(rest, len(rest))]


@pytest.mark.slow
def test_fault_injection_sigkill_at_random_moments_and_in_atomic_writes_then_resume_is_bit_identical(tmp_path):
    from cli_process import CliProcess, assert_one_record_per_step, assert_same_state, temporaries
    from mrvae.config import load_yaml

    straight, out = tmp_path / "straight", tmp_path / "killed"
    assert main([*FAULT_ARGS, "--out", str(straight)]) == 0
    reference = {(r["tag"], r["step"]): r["loss"] for r in map(json.loads, (straight / "metrics.jsonl").open())}
    rng = random.Random(15)
    plan = _kill_plan(rng, 12)
    step, kills = 0, []
    for cycle, moment in enumerate(plan):
        faults = {"step_sleep": STEP_SLEEP, "pause_s": PAUSE_S,
                  "pause_at": [moment] if moment.endswith((".yaml", ".pt", ".jsonl")) else []}
        resume = [] if cycle == 0 else ["--resume", "true"]
        before = inode(checkpoint_of(out))
        child = CliProcess([*FAULT_ARGS, "--out", str(out), *resume], faults=faults)
        try:
            if moment == "start":
                time.sleep(rng.uniform(0.2, 2.5))
            elif moment == "step":  # a random point inside a random step not far past the checkpoint
                target = step + 1 + rng.randrange(3)
                child.wait_for(lambda line: line.startswith(f"[mrvae] step {target}/"))
                time.sleep(rng.uniform(0.0, STEP_SLEEP))
            else:
                child.wait_for(lambda line: line == f"FAULT-PAUSE {moment}")
                time.sleep(rng.uniform(0.0, PAUSE_S / 2))
        finally:
            code = kill_and_reap(child.process)
        assert code == -signal.SIGKILL, f"cycle {cycle} ({moment}): the child ended by itself: {child.stderr[-800:]}"
        kills.append(moment)
        # What a kill may leave: never a torn or empty config.yaml, never a lost or torn checkpoint.
        if moment == "config.yaml":
            assert not (out / "config.yaml").exists() and len(list(out.glob(".config.yaml.*.tmp"))) == 1
        if (out / "config.yaml").exists():
            assert (out / "config.yaml").read_bytes() == (straight / "config.yaml").read_bytes()
            load_yaml(out / "config.yaml")
        if moment == "mrvae.pt":  # the new checkpoint was complete but not renamed: the old one stands
            assert inode(checkpoint_of(out)) == before and len(temporaries(out / "checkpoints")) >= 1
        step = assert_checkpoint_intact(out, step) if checkpoint_of(out).exists() else step
        # Every complete metrics line so far is the uninterrupted run's line of that step (a kill may tear the last).
        if (out / "metrics.jsonl").exists():
            lines = (out / "metrics.jsonl").read_text().splitlines()
            for line in lines[:-1]:
                record = json.loads(line)
                assert record["loss"] == reference[record["tag"], record["step"]], (cycle, moment, record)

    assert main([*FAULT_ARGS, "--out", str(out), "--resume", "true"]) == 0
    assert_same_state(load_checkpoint(checkpoint_of(out)), load_checkpoint(checkpoint_of(straight)))
    assert_one_record_per_step(out / "metrics.jsonl", straight / "metrics.jsonl")
    assert not temporaries(out), temporaries(out)
    assert sorted(p.name for p in out.rglob("*")) == sorted(p.name for p in straight.rglob("*"))
    assert len(kills) >= 10 and {"config.yaml", "mrvae.pt", "metrics.jsonl", "step"} <= set(kills)
    print(f"fault injection: {len(kills)} kills ({', '.join(kills)}), resumed bit-identically")
