"""The CLI through main([...]) on tiny settings: outputs written, user errors give exit 2 and one line."""

import json
import subprocess
import sys

import pytest
import torch

from mrvae.cli import main
from mrvae.evaluation.curves import RDCurve

TINY = ["--data", "synthetic", "--model.hidden", "[16]", "--model.latent_dim", "3", "--train.steps", "30",
        "--train.batch_size", "32", "--train.warmup_steps", "5", "--baseline.steps", "10",
        "--baseline.betas", "[0.1,1.0]", "--eval.num_betas", "5", "--eval.iwae_samples", "4"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    code = main(["run", *TINY, "--out", str(out)])
    assert code == 0
    return out


def test_run_writes_curves_plot_metrics_and_table(tiny_run, capsys):
    mr = RDCurve.load(tiny_run / "curves" / "mrvae.json")
    bv = RDCurve.load(tiny_run / "curves" / "beta-vae.json")
    assert mr.kind == "mrvae" and len(mr.betas) == 5 and mr.betas[0] == pytest.approx(0.01)
    assert bv.kind == "beta-vae" and bv.betas == [0.1, 1.0]
    assert mr.summary["iwae_nll"] is not None and bv.summary["steps_per_model"] == 10
    assert (tiny_run / "plots" / "rd_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    tags = {json.loads(line)["tag"] for line in (tiny_run / "metrics.jsonl").read_text().splitlines()}
    assert tags == {"mrvae", "beta-vae@0.1", "beta-vae@1"}
    comparison = json.loads((tiny_run / "comparison.json").read_text())
    assert comparison["betas"] == [0.1, 1.0] and set(comparison["rows"]) == {"mrvae", "beta-vae"}
    assert (tiny_run / "config.yaml").exists()
    # the β-VAE rows of the table are the curve's own numbers
    assert comparison["rows"]["beta-vae"][1]["rate"] == pytest.approx(bv.results["rate"][1])


def test_plot_and_curve_commands_on_a_run(tiny_run, tmp_path, capsys):
    assert main(["plot", str(tiny_run), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert main(["curve", str(tiny_run), "--out", str(tmp_path / "c.json"), "--num_betas", "3",
                 "--iwae_samples", "0"]) == 0
    curve = RDCurve.load(tmp_path / "c.json")
    assert len(curve.betas) == 3 and curve.summary["iwae_nll"] is None
    assert "curve written to" in capsys.readouterr().out


def test_existing_output_is_never_overwritten(tiny_run, capsys):
    before = (tiny_run / "curves" / "mrvae.json").read_bytes()
    assert main(["run", *TINY, "--out", str(tiny_run)]) == 2
    err = capsys.readouterr().err
    assert "is not empty; pass --resume" in err and err.count("\n") == 1
    assert (tiny_run / "curves" / "mrvae.json").read_bytes() == before


def test_resume_of_a_finished_run_reuses_its_checkpoints(tiny_run, capsys):
    def snapshot():  # every file but the lock, which holds the pid of the folder's current user
        return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in tiny_run.rglob("*") if p.is_file()
                and p.name != ".lock"}

    files = snapshot()
    assert main(["run", *TINY, "--out", str(tiny_run), "--resume", "true"]) == 0
    out = capsys.readouterr().out
    assert "already complete: nothing was changed" in out and "beta-vae D+bR" in out  # the stored table
    assert snapshot() == files
    assert main(["run", *TINY, "--train.steps", "31", "--out", str(tiny_run), "--resume", "true"]) == 2
    assert "settings differ" in capsys.readouterr().err


@pytest.mark.parametrize("args, message", [
    (["run", "--data", "nope"], "unknown data set 'nope'; choose one of:"),
    (["run", "--train.beta_low", "5", "--train.beta_high", "1"], "low <= high"),
    (["run", "--train.beta_low", "0"], "BetaRange.low must be a finite number > 0"),
    (["train", "--method", "beta-vae"], "--method beta-vae needs --beta"),
    (["curve", "/nonexistent/mrvae.pt"], "checkpoint not found: /nonexistent/mrvae.pt"),
    (["plot", "/nonexistent/c.json"], "curve file not found"),
    (["run", "--train.steps", "-1"], "steps must be >= 1"),
])
def test_user_errors_exit_2_with_one_line(args, message, tmp_path, capsys):
    assert main([*args, "--out", str(tmp_path / "o")] if args[0] in ("run", "train") else args) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("mrvae: error:") and err.count("\n") == 1 and "Traceback" not in err


def test_corrupt_checkpoint_and_unwritable_output(tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["curve", str(bad)]) == 2
    assert "bad.pt is corrupt" in capsys.readouterr().err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["run", *TINY, "--out", str(blocker / "sub")]) == 2
    assert "is not writable" in capsys.readouterr().err
    assert blocker.read_text() == "x"


def test_foreign_architecture_checkpoint_is_refused(tiny_run, tmp_path, capsys):
    state = torch.load(tiny_run / "checkpoints" / "mrvae.pt", weights_only=True)
    state["model"].pop(next(iter(state["model"])))
    torch.save(state, tmp_path / "m.pt")
    assert main(["curve", str(tmp_path / "m.pt")]) == 2
    assert "does not fit this architecture" in capsys.readouterr().err


def test_print_config_and_module_entry_point(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mrvae.cli", "run", "--train.steps", "7", "--print_config"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "steps: 7" in done.stdout and "beta_sampling: per-example" in done.stdout
    (tmp_path / "c.yaml").write_text(done.stdout)
    again = subprocess.run([sys.executable, "-m", "mrvae.cli", "run", "--config", str(tmp_path / "c.yaml"),
                            "--print_config"], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout == done.stdout


def test_monotonicity_check_of_a_curve():
    from mrvae.evaluation.curves import RDCurve

    good = RDCurve("m", "mrvae", [0.1, 1.0, 10.0], {"rate": [5.0, 3.0, 1.0], "distortion": [10.0, 12.0, 15.0]})
    assert good.monotonicity_problems() == []
    bad = RDCurve("m", "mrvae", [0.1, 1.0, 10.0], {"rate": [5.0, 5.2, 1.0], "distortion": [10.0, 9.0, 15.0]})
    problems = bad.monotonicity_problems()
    assert problems == ["rate rises from 5 to 5.2 between β = 0.1 and 1",
                        "distortion falls from 10 to 9 between β = 0.1 and 1"]
    assert RDCurve("m", "mrvae", [0.1, 1.0], {"rate": [5.0, 5.04], "distortion": [1.0, 1.0]}
                   ).monotonicity_problems() == []
    # near zero rate, a rise of 4e-4 nats is noise, not a broken curve
    assert RDCurve("m", "mrvae", [5.0, 10.0], {"rate": [1e-4, 5e-4], "distortion": [27.0, 27.0]}
                   ).monotonicity_problems() == []


@pytest.mark.parametrize("command,line", [("train", "method: mrvae"), ("baseline", "resume: false")])
def test_print_config_of_train_and_baseline_round_trips(command, line, tmp_path, capsys):
    assert main([command, "--train.compile", "true", "--print_config"]) == 0
    printed = capsys.readouterr().out
    assert line in printed and "compile: true" in printed  # the command's own settings, as plain YAML
    (tmp_path / "c.yaml").write_text(printed)
    assert main([command, "--config", str(tmp_path / "c.yaml"), "--print_config"]) == 0
    assert capsys.readouterr().out == printed
