"""DDP through torchrun on CPU (gloo): identical weights on both ranks, one-process equivalence, sharded
evaluation, a NaN on one rank stopping both, the CLI under torchrun; the single-process fallbacks."""

import dataclasses
import hashlib
import json
import textwrap

import pytest
import torch

from cli_process import needs_gloo, run_torchrun_worker
from mrvae.beta import BetaRange
from mrvae.training.checkpoint import CheckpointError, load_checkpoint, load_model_state
from mrvae.config import EvalConfig, ModelConfig, TrainConfig
from mrvae.data import load_data
from mrvae.training.distributed import (Backend, DistInfo, all_reduce, backend_for, gather_objects, init_distributed,
                               rank_seed, run_on_main)
from mrvae.evaluation.evaluate import evaluate_at, iwae_nll
from mrvae.models.registry import build_model
from mrvae.training.loop import FitFiles, fit

TINY = ModelConfig(latent_dim=3, hidden=(16,), sigma2=1.0)  # σ² = 1: losses near 15 nats, so 1e-4 is meaningful
# β fixed (low == high) and the reparameterisation noise switched off (z = mean): the objective is then a
# deterministic function of the batch, so 2 ranks × 16 examples must match 1 process × 32 examples.
FIXED = dict(steps=6, lr=1e-2, warmup_steps=2, beta_low=0.5, beta_high=0.5, log_every=1, checkpoint_every=3,
             device="cpu", seed=5)
EVAL = EvalConfig(batch_size=40, seed=3)  # 128 test examples: 4 batches, 2 per rank, the last one short

WORKER = textwrap.dedent('''
    import json, os, sys, hashlib
    from pathlib import Path
    import torch
    from mrvae.beta import BetaRange
    from mrvae.config import EvalConfig, ModelConfig, TrainConfig
    from mrvae.data import load_data
    from mrvae.evaluation.evaluate import evaluate_at, iwae_nll
    from mrvae.models.registry import build_model
    from mrvae.training.loop import FitFiles, fit
    from mrvae.training.trainer import NonFiniteError

    out, rank = Path(sys.argv[1]), int(os.environ["RANK"])
    report = {"world_size": int(os.environ["WORLD_SIZE"])}
    data = load_data("synthetic")

    def tiny_model():
        torch.manual_seed(0)
        model = build_model(ModelConfig(latent_dim=3, hidden=(16,), sigma2=1.0), data.info, "gate",
                            beta_range=BetaRange(0.5, 0.5))
        model.reparameterise = lambda mean, log_var, generator=None: mean
        return model

    def digest(step, model):
        flat = torch.cat([p.detach().flatten() for p in model.parameters()])
        report.setdefault("hashes", []).append(hashlib.sha256(flat.numpy().tobytes()).hexdigest())

    config = TrainConfig(batch_size=16, **json.loads(sys.argv[2]))
    model = fit(tiny_model(), data, config, FitFiles(out / "ddp.pt", out / "metrics.jsonl"), on_step=digest).model
    eval_config = EvalConfig(**json.loads(sys.argv[3]))
    report["eval"] = evaluate_at(model, data.test, 0.5, eval_config)
    report["iwae"] = iwae_nll(model, data.test, 0.5, 3, eval_config)

    # A NaN rate on rank 1 only, at step 4 (after the checkpoint of step 3): both ranks must stop.
    poisoned = tiny_model()
    original, calls = poisoned.objective, []
    def objective(x, beta, u, generator=None):
        loss, out_ = original(x, beta, u, generator)
        calls.append(1)
        if rank == 1 and len(calls) == 5:
            out_.rate = out_.rate * float("nan")
            loss = loss + out_.rate
        return loss, out_
    poisoned.objective = objective
    try:
        fit(poisoned, data, config, FitFiles(out / "poisoned.pt"))
    except NonFiniteError as exc:
        report["nan_message"] = str(exc)

    from mrvae.cli import main
    report["cli_exit"] = main(["train", "--data", "synthetic", "--model.hidden", "[16]", "--model.latent_dim", "3",
                               "--train.steps", "4", "--train.batch_size", "16", "--train.log_every", "1",
                               "--train.warmup_steps", "1", "--train.device", "cpu", "--out", str(out / "cli")])
    (out / f"rank{rank}.json").write_text(json.dumps(report))
''')


def tiny_model(data):
    torch.manual_seed(0)
    model = build_model(TINY, data.info, "gate", beta_range=BetaRange(0.5, 0.5))
    model.reparameterise = lambda mean, log_var, generator=None: mean
    return model


def digest(model):
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    return hashlib.sha256(flat.numpy().tobytes()).hexdigest()


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One `torchrun --nproc_per_node 2` launch of WORKER on CPU (torchrun's startup is the slow part)."""
    out = tmp_path_factory.mktemp("ddp")
    done = run_torchrun_worker(out, WORKER, json.dumps(FIXED), json.dumps(dataclasses.asdict(EVAL)))
    reports = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    return out, reports, done.stderr


@needs_gloo
def test_both_ranks_hold_identical_weights_after_every_step(ddp_run):
    _, (r0, r1), _ = ddp_run
    assert r0["world_size"] == r1["world_size"] == 2
    assert len(r0["hashes"]) == FIXED["steps"] and r0["hashes"] == r1["hashes"]
    assert len(set(r0["hashes"])) == FIXED["steps"]  # the weights did change at every step


@needs_gloo
def test_ddp_checkpoint_loads_in_one_process_and_matches_a_one_process_run(ddp_run, tmp_path):
    out, (r0, _), _ = ddp_run
    data = load_data("synthetic")
    state = load_checkpoint(out / "ddp.pt")
    assert state["world_size"] == 2 and state["step"] == FIXED["steps"] and len(state["rank_rng"]) == 2
    loaded = build_model(TINY, data.info, "gate")
    load_model_state(loaded, state["model"], out / "ddp.pt")  # plain keys, no DDP "module." prefix
    assert digest(loaded) == r0["hashes"][-1]

    # One process with the whole global batch (32) against two ranks of 16 each.
    single = fit(tiny_model(data), data, TrainConfig(batch_size=32, **FIXED), FitFiles(metrics=tmp_path / "m.jsonl")).model
    ddp_losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    one_losses = [json.loads(line)["loss"] for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert len(ddp_losses) == len(one_losses) == FIXED["steps"]  # rank 0 alone wrote metrics
    assert ddp_losses == pytest.approx(one_losses, abs=1e-4)
    for a, b in zip(single.parameters(), loaded.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@needs_gloo
def test_sharded_evaluation_equals_one_process_evaluation(ddp_run):
    out, (r0, r1), _ = ddp_run
    assert r0["eval"] == r1["eval"] and r0["iwae"] == r1["iwae"]
    data = load_data("synthetic")
    model = tiny_model(data)
    load_model_state(model, load_checkpoint(out / "ddp.pt")["model"], out / "ddp.pt")
    fixed = BetaRange(0.5, 0.5)
    single = evaluate_at(model, data.test, 0.5, EVAL)
    assert single.keys() == r0["eval"].keys()
    for key, value in single.items():
        assert r0["eval"][key] == pytest.approx(value, rel=1e-9), key
    assert r0["iwae"] == pytest.approx(iwae_nll(model, data.test, 0.5, 3, EVAL), rel=1e-9)


@needs_gloo
def test_a_nan_on_one_rank_stops_every_rank(ddp_run):
    out, (r0, r1), _ = ddp_run
    for report in (r0, r1):
        assert report["nan_message"].startswith("non-finite rate at step 4 (batch β in [0.5, 0.5])")
    assert load_checkpoint(out / "poisoned.pt")["step"] == 3  # the last good checkpoint is kept


@needs_gloo
def test_cli_train_under_torchrun(ddp_run):
    out, (r0, r1), _ = ddp_run
    assert r0["cli_exit"] == r1["cli_exit"] == 0
    state = load_checkpoint(out / "cli" / "checkpoints" / "mrvae.pt")
    assert state["world_size"] == 2 and state["step"] == 4
    assert len((out / "cli" / "metrics.jsonl").read_text().splitlines()) == 4
    assert (out / "cli" / "config.yaml").is_file()


def test_single_process_fallbacks():
    info, device = init_distributed("cpu", env={})
    assert info == DistInfo(0, 1, 0) and info.is_main and not info.is_distributed and device.type == "cpu"
    assert init_distributed("cpu", env={"WORLD_SIZE": "1"})[0] == DistInfo()
    with pytest.raises(ValueError, match="RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set: start"):
        init_distributed("cpu", env={"WORLD_SIZE": "2"})
    with pytest.raises(ValueError, match="WORLD_SIZE must be an integer, got 'two'"):
        init_distributed("cpu", env={"WORLD_SIZE": "two"})
    t = torch.tensor([1.0, 2.0])
    assert all_reduce(t) is t and gather_objects({"a": 1}) == [{"a": 1}]
    assert run_on_main(lambda: 7) == 7
    with pytest.raises(KeyError, match="boom"):
        run_on_main(lambda: {}["boom"])
    assert backend_for(torch.device("cpu")) is Backend.GLOO and backend_for(torch.device("cuda", 0)) is Backend.NCCL


def test_resuming_with_another_number_of_processes_is_refused(tmp_path):
    data = load_data("synthetic")
    config = TrainConfig(steps=2, batch_size=32, device="cpu")
    fit(build_model(TINY, data.info, "gate"), data, config, FitFiles(tmp_path / "c.pt"))
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["world_size"] == 1 and len(state["rank_rng"]) == 1
    state["world_size"] = 2
    torch.save(state, tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match=r"c\.pt was written by 2 process\(es\) and this run has 1: resume"):
        fit(build_model(TINY, data.info, "gate"), data, TrainConfig(steps=4, batch_size=32, device="cpu"),
            FitFiles(tmp_path / "c.pt", resume=True))


def test_rank_seeds_give_each_rank_its_own_beta_stream():
    assert rank_seed(7, 0) == 7 and rank_seed(-1, 0) == 2**64 - 1
    seeds = {rank_seed(7, r) for r in range(64)}
    assert len(seeds) == 64 and all(0 <= s < 2**64 for s in seeds)
    betas = [BetaRange(0.01, 10).sample(8, torch.Generator().manual_seed(rank_seed(7, r))) for r in range(2)]
    assert not torch.equal(betas[0], betas[1])
