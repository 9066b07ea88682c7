"""SIGINT / SIGTERM to a real `python -m mrvae.cli train | run` process: one line naming the model, the
step and the resume command, exit 128 + signal, a checkpoint and no temporary file; the printed command
then ends bit-identical to an uninterrupted run. And two processes on one run folder: the second is
refused naming the first's pid, the first finishes untouched."""

import json
import re
import signal
from pathlib import Path

import pytest

from cli_process import (TINY, CliProcess, assert_one_record_per_step, assert_same_state, checkpoints_of,
                         command_from_line, temporaries)
from mrvae.cli import main
from mrvae.training.checkpoint import load_checkpoint

STEPS = 30
SLOW = {"step_sleep": 0.05}  # 1.5 s of training: the signal lands while it runs

COMMANDS = {name: [name, *TINY, "--train.steps", str(STEPS), "--train.log_every", "1",
                   "--train.checkpoint_every", "7"] for name in ("train", "run")}

FIRST_METRICS_LINE = re.compile(r"^\[mrvae\] step 1/\d+ loss ")
STOPPED = re.compile(r"^mrvae: (SIGINT|SIGTERM) received: mrvae stopped after step (\d+); checkpoint written to "
                     r"(\S+); resume with: (mrvae .*)$")


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """Uninterrupted runs of each command, in this process (one thread, as in the subprocesses)."""
    root = tmp_path_factory.mktemp("straight")
    outs = {}
    for name, args in COMMANDS.items():
        outs[name] = root / name
        assert main([*args, "--out", str(outs[name])]) == 0
    return outs


@pytest.mark.parametrize("command,signum", [("train", signal.SIGINT), ("run", signal.SIGTERM)])
def test_a_stop_signal_checkpoints_prints_one_line_and_the_printed_command_resumes_bit_identically(
        tmp_path, straight, command, signum, capsys):
    out = tmp_path / "run"
    child = CliProcess([*COMMANDS[command], "--out", str(out)], faults=SLOW)
    child.wait_for(FIRST_METRICS_LINE.match)
    child.process.send_signal(signum)
    code = child.finish()

    assert code == 128 + signum, child.stderr
    assert "Traceback" not in child.stderr
    errors = [line for line in child.err_lines if not line.startswith("[")]  # "[tag] ..." are progress lines
    if command == "run":
        errors = [line for line in errors if not line.startswith("mrvae run: data ")]
    assert len(errors) == 1, child.err_lines
    match = STOPPED.match(errors[0])
    assert match, errors[0]
    name, step, checkpoint, resume = match.groups()
    assert name == signal.Signals(signum).name and child.err_lines[-1] == errors[0]
    assert Path(checkpoint) == out / "checkpoints" / "mrvae.pt"
    assert 1 <= int(step) < STEPS and load_checkpoint(checkpoint)["step"] == int(step)
    assert not temporaries(out)
    assert child.out_lines == []  # nothing was reported as finished

    capsys.readouterr()
    assert main(command_from_line(resume)) == 0  # the printed command, run here (torch is imported already)
    assert f"resumed from {checkpoint} at step {step}" in capsys.readouterr().err
    expected = checkpoints_of(straight[command])
    assert checkpoints_of(out).keys() == expected.keys()
    for name, path in expected.items():
        assert_same_state(load_checkpoint(out / name), load_checkpoint(path), name)
    assert_one_record_per_step(out / "metrics.jsonl", straight[command] / "metrics.jsonl")
    if command == "run":  # the curves are the same numbers too
        for curve in ("mrvae", "beta-vae"):
            got = json.loads((out / "curves" / f"{curve}.json").read_text())
            want = json.loads((straight[command] / "curves" / f"{curve}.json").read_text())
            assert got["results"] == want["results"] and got["betas"] == want["betas"]
    assert not temporaries(out)


def test_a_second_process_on_the_folder_is_refused_naming_the_first_and_the_first_finishes(
        tmp_path, straight, capsys):
    out = tmp_path / "run"
    first = CliProcess([*COMMANDS["train"], "--out", str(out)], faults={"step_sleep": 0.1})  # 3 s of training
    first.wait_for(FIRST_METRICS_LINE.match)
    lock_text = (out / ".lock").read_text()
    capsys.readouterr()
    for resume in ("false", "true"):  # the second process is this one
        assert main([*COMMANDS["train"], "--out", str(out), "--resume", resume]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
        assert err.startswith(f"mrvae: error: run folder {out} is in use by process {first.pid} "), err
        assert first.process.poll() is None  # the second one's failure did not disturb the first
        assert (out / ".lock").read_text() == lock_text  # nor the holder's pid
    assert first.finish() == 0, first.stderr
    assert first.out_lines[-1].startswith(f"trained mrvae for {STEPS} steps")
    assert_one_record_per_step(out / "metrics.jsonl", straight["train"] / "metrics.jsonl")
    assert_same_state(load_checkpoint(out / "checkpoints" / "mrvae.pt"),
                      load_checkpoint(straight["train"] / "checkpoints" / "mrvae.pt"))
    assert sorted(p.name for p in out.iterdir()) == [".lock", "checkpoints", "config.yaml", "metrics.jsonl"]


def test_ctrl_c_outside_a_training_step_is_one_line_too_and_the_run_resumes(tmp_path, straight, monkeypatch, capsys):
    """Ctrl-C during the evaluation (no step to finish: KeyboardInterrupt) and a second Ctrl-C during a step."""
    from mrvae.runs import comparison
    from mrvae.training import trainer as trainer_module

    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        def interrupted(*args, **kwargs):
            raise KeyboardInterrupt

        patch.setattr(comparison, "curve_for", interrupted)
        assert main([*COMMANDS["run"], "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.endswith("\n") and err.count("\nmrvae: ") == 1, err
    line = err.splitlines()[-1]
    assert line.startswith("mrvae: SIGINT received: run stopped; resume with: mrvae run "), line
    kept = (out / "checkpoints" / "mrvae.pt").read_bytes()
    assert main(command_from_line(line.split("resume with: ", 1)[1])) == 0
    assert (out / "checkpoints" / "mrvae.pt").read_bytes() == kept  # finished training is not redone
    assert_one_record_per_step(out / "metrics.jsonl", straight["run"] / "metrics.jsonl")

    original = trainer_module.Trainer.train_step

    def pressed_twice(self):
        terms = original(self)
        if self.step == 3:
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)  # the second one does not wait for the step to end
        return terms

    with monkeypatch.context() as patch:
        patch.setattr(trainer_module.Trainer, "train_step", pressed_twice)
        assert main([*COMMANDS["train"], "--out", str(tmp_path / "twice")]) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.splitlines()[-1].startswith("mrvae: SIGINT received: train stopped")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
