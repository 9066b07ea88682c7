"""Rate / distortion targeting on a trained model, `mrvae curve --target_rate`, `mrvae export`, YOTO runs."""

import copy
import json

import pytest
import torch

from mrvae.beta import BetaRange
from mrvae.cli import main
from mrvae.config import ModelConfig, TrainConfig
from mrvae.evaluation.curves import RDCurve
from mrvae.data import load_data
from mrvae.evaluation.evaluate import evaluate_at
from mrvae.models.registry import build_model
from mrvae.evaluation.targeting import TargetError, beta_for_distortion, beta_for_rate
from mrvae.training.loop import fit

TINY = ["--data", "digits", "--model.hidden", "[32]", "--model.latent_dim", "4", "--train.steps", "200",
        "--train.batch_size", "64", "--train.warmup_steps", "10", "--baseline.steps", "20",
        "--baseline.betas", "[0.1,1.0]", "--eval.num_betas", "4", "--eval.iwae_samples", "0"]


@pytest.fixture(scope="module")
def trained():
    data = load_data("digits")
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden=(32,), latent_dim=4), data.info, "gate")
    fit(model, data, TrainConfig(steps=300, batch_size=64, warmup_steps=10))
    return model, data


def test_beta_for_rate_and_distortion_hit_their_targets(trained):
    model, data = trained
    rates = [evaluate_at(model, data.test, b)["rate"] for b in (0.05, 2.0)]
    target = 0.5 * (rates[0] + rates[1])
    found = beta_for_rate(model, data.test, target)
    measured = evaluate_at(model, data.test, found.beta)["rate"]
    assert abs(measured - target) <= 0.01 * target
    assert found.rate == pytest.approx(measured)
    dists = [evaluate_at(model, data.test, b)["distortion"] for b in (0.05, 2.0)]
    goal = 0.5 * (dists[0] + dists[1])
    got = beta_for_distortion(model, data.test, goal)
    assert abs(evaluate_at(model, data.test, got.beta)["distortion"] - goal) <= 0.01 * goal


def test_unreachable_targets_state_the_reachable_range(trained):
    model, data = trained
    with pytest.raises(TargetError, match=r"target rate 1e\+06 nats is outside the reachable range \[[0-9.]+, "
                                          r"[0-9.]+\] nats for β in \[0.01, 10\]"):
        beta_for_rate(model, data.test, 1e6)
    single = copy.deepcopy(model)
    single.beta_range = BetaRange(1.0, 1.0)
    with pytest.raises(TargetError, match="single β"):
        beta_for_rate(single, data.test, 1.0)


@pytest.fixture(scope="module")
def yoto_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "three"
    assert main(["run", *TINY, "--methods", "mrvae,beta-vae,yoto", "--out", str(out)]) == 0
    return out


def test_run_with_three_methods_writes_three_curves_and_one_table(yoto_run):
    kinds = {RDCurve.load(p).kind for p in (yoto_run / "curves").glob("*.json")}
    assert kinds == {"mrvae", "beta-vae", "yoto"}
    table = json.loads((yoto_run / "comparison.json").read_text())
    assert set(table["rows"]) == {"mrvae", "beta-vae", "yoto"}
    assert set(table["wall_time_s"]) == {"mrvae", "beta-vae", "yoto"}


def test_curve_target_rate_cli(yoto_run, tmp_path, capsys):
    curve = RDCurve.load(yoto_run / "curves" / "mrvae.json")
    target = 0.5 * (curve.results["rate"][1] + curve.results["rate"][2])
    assert main(["curve", str(yoto_run), "--out", str(tmp_path / "c.json"), "--num_betas", "3",
                 "--target_rate", f"{target}"]) == 0
    line = [l for l in capsys.readouterr().out.splitlines() if l.startswith("target rate")][0]
    assert f"target rate {target:g} nats: β = " in line
    assert main(["curve", str(yoto_run), "--target_rate", "1e9"]) == 2  # from the stored curve: nothing written
    assert "outside the reachable range" in capsys.readouterr().err


def test_export_cli_folds_the_gates_at_beta(yoto_run, tmp_path, capsys):
    from mrvae.convert.export import load_exported
    from mrvae.runs.methods import load_trained

    out = tmp_path / "exported"
    assert main(["export", str(yoto_run), "--beta", "0.5", "--out", str(out)]) == 0
    assert (out / "model.safetensors").exists() and (out / "config.json").exists()
    trained = load_trained(yoto_run / "checkpoints" / "mrvae.pt")
    plain = load_exported(out, lambda config: build_model(trained.config.model, trained.info, "none"))
    x = load_data("digits").test.data[:16]
    u = trained.beta_range.standardise(torch.full((16, 1), 0.5))
    with torch.no_grad():
        expected = trained.model.decode(trained.model.encode(x, u)[0], u)
        got = plain.decode(plain.encode(x, None)[0], None)
    assert torch.allclose(expected, got, atol=1e-5)
    assert main(["export", str(yoto_run), "--beta", "50", "--out", str(tmp_path / "x")]) == 2
    assert "outside the model's training range" in capsys.readouterr().err
