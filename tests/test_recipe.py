"""Issue 14's recipe: the log-β density (tilt, ends), the gate input scale, and the per-architecture defaults."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from mrvae.beta import BetaRange
from mrvae.cli import main
from mrvae.config import ARCH_RECIPES, PREVIOUS_RECIPE, ModelConfig, RunConfig, TrainConfig
from mrvae.convert import fold
from mrvae.layers import ConditionedLinear, ModelConditioning
from mrvae.models import MLPVAE


def positions(tilt: float, ends: float, n: int = 200_000) -> torch.Tensor:
    """t = (log β − log a)/(log b − log a) in [0, 1] of n draws."""
    beta_range = BetaRange(0.01, 10.0)
    beta = beta_range.sample(n, torch.Generator().manual_seed(0), tilt=tilt, ends=ends, dtype=torch.float64)
    return (beta.log() - math.log(0.01)) / (math.log(10.0) - math.log(0.01))


def test_tilt_draws_log_beta_from_a_truncated_exponential():
    t = positions(tilt=1.0, ends=0.0)
    # density e^{-t} / (1 - e^{-1}) on [0, 1]: mean (1 - 2/e) / (1 - 1/e), median -log(1 - (1 - 1/e)/2)
    assert float(t.mean()) == pytest.approx((1 - 2 / math.e) / (1 - 1 / math.e), abs=3e-3)
    assert float(t.median()) == pytest.approx(-math.log(1 - (1 - 1 / math.e) / 2), abs=3e-3)
    assert 0.0 <= float(t.min()) and float(t.max()) <= 1.0


def test_ends_moves_mass_to_both_ends_and_plain_sampling_is_unchanged():
    t = positions(tilt=0.0, ends=1.0)  # the arcsine density: P(t < 0.1) = (2/π)·asin(√0.1)
    assert float((t < 0.1).double().mean()) == pytest.approx(2 / math.pi * math.asin(math.sqrt(0.1)), abs=3e-3)
    assert float(t.mean()) == pytest.approx(0.5, abs=3e-3)
    plain, same = BetaRange().sample(64, torch.Generator().manual_seed(3)), BetaRange().sample(
        64, torch.Generator().manual_seed(3), tilt=0.0, ends=0.0)
    assert torch.equal(plain, same)


def test_gate_input_scale_multiplies_u_for_gates_only_and_folds_exactly():
    torch.manual_seed(0)
    layer = ConditionedLinear(3, 4, ModelConditioning(gate_input_scale=2.0))
    x, u = torch.randn(5, 3), torch.full((5, 1), 0.7)
    expected = layer.base(x) * layer.gate(2.0 * u)
    assert torch.allclose(layer(x, u), expected, atol=1e-6)
    film = ConditionedLinear(3, 4, ModelConditioning("film", gate_input_scale=2.0))
    assert torch.equal(film.gate_input(u), u)
    model = MLPVAE((6,), 2, (8,), conditioning=ModelConditioning(gate_scale=4.0, gate_input_scale=2.0)).eval()
    folded = fold(model, 0.3)
    x = torch.rand(4, 6)
    want = model(x, model.u_of(0.3), sample=False).output
    assert torch.allclose(folded(x, None, sample=False).output, want, atol=1e-5)
    with pytest.raises(ValueError, match="gate input scale must be > 0, got 0"):
        ModelConditioning(gate_input_scale=0)


def test_runs_take_the_architectures_recipe_and_keep_what_is_set():
    mlp = RunConfig()
    assert (mlp.model.gate_scale, mlp.model.gate_input_scale) == (4.0, 2.0) == (
        ARCH_RECIPES["mlp"]["gate_scale"], ARCH_RECIPES["mlp"]["gate_input_scale"])
    assert (mlp.train.log_beta_tilt, mlp.train.log_beta_ends) == (1.0, 1.0)
    conv = RunConfig(model=ModelConfig(arch="conv"))
    assert conv.model.gate_scale == PREVIOUS_RECIPE["gate_scale"] and conv.train.log_beta_tilt == 0.0
    pinned = RunConfig(model=ModelConfig(gate_scale=1.0), train=TrainConfig(log_beta_ends=0.0))
    assert pinned.model.gate_scale == 1.0 and pinned.train.log_beta_ends == 0.0 and pinned.train.log_beta_tilt == 1.0
    assert RunConfig().baseline.steps_for(RunConfig().train) == RunConfig().train.steps  # equal steps per model


def test_print_config_shows_the_recipe_and_the_paper_config_is_one_flag_away(capsys):
    assert main(["run", "--model.arch", "resnet", "--print_config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["gate_scale"] == 4.0 and printed["train"]["log_beta_tilt"] == 1.0
    paper_eqn7 = Path(__file__).resolve().parents[1] / "configs" / "paper_eqn7.yaml"
    assert main(["run", "--config", str(paper_eqn7), "--print_config"]) == 0
    paper = yaml.safe_load(capsys.readouterr().out)
    assert (paper["model"]["decoder_gate"], paper["model"]["gate_scale"], paper["train"]["log_beta_ends"]) == (
        "sqrt", 1.0, 0.0)


def test_settings_written_by_mrvae_0_1_keep_their_meaning():
    from mrvae.config import stored_run_config, to_dict

    old = to_dict(RunConfig())
    del old["model"]["gate_input_scale"], old["train"]["log_beta_tilt"], old["train"]["log_beta_ends"]
    old["model"]["gate_scale"], old["baseline"]["steps"] = 2.0, None  # what a 0.1 config.yaml held
    config = stored_run_config(old)
    assert (config.model.gate_scale, config.model.gate_input_scale) == (2.0, 1.0)
    assert (config.train.log_beta_tilt, config.train.log_beta_ends) == (0.0, 0.0)
    assert config.baseline.steps_for(config.train) == config.train.steps // 3  # 0.1's sweep share
    assert stored_run_config(to_dict(RunConfig())) == RunConfig()  # 0.2's own files read back unchanged
