"""The β-VAE sweep spread over 2 torchrun ranks (gloo, CPU) through the real CLI: each rank trains its own βs
alone, the β-VAEs and the curve are bit-identical to a one-process sweep, the MR-VAE still trains with DDP,
resume after completion, a rank without a β, and an error on one rank stopping both."""

import json
import os
import textwrap

import pytest
import torch

from cli_process import needs_gloo, run_torchrun_worker
from mrvae.cli import main
from mrvae.evaluation.curves import RDCurve
from mrvae.runs.baselines import sweep_share
from mrvae.training.checkpoint import load_checkpoint
from mrvae.training.distributed import DistInfo, current, run_on_every_rank, single_process

BETAS = [0.1, 0.5, 2.0]
# digits, a tiny MLP, 6 steps per model, one thread per process (torchrun's OMP_NUM_THREADS=1, and here)
ARGS = ["--data", "digits", "--model.hidden", "[16]", "--model.latent_dim", "3", "--train.steps", "6",
        "--train.batch_size", "32", "--train.warmup_steps", "1", "--train.log_every", "2", "--train.device", "cpu",
        "--threads", "1", "--eval.num_betas", "2", "--eval.iwae_samples", "2", "--eval.iwae_beta", "0.5",
        "--methods", "mrvae,beta-vae", "--baseline.betas", json.dumps(BETAS)]

WORKER = textwrap.dedent('''
    import json, os, sys
    from pathlib import Path
    from mrvae.cli import main

    out, rank, args = Path(sys.argv[1]), int(os.environ["RANK"]), json.loads(sys.argv[2])
    codes = {}
    for name, argv in [("run", ["run", *args, "--out", str(out / "run")]),
                       ("resume", ["baseline", *args, "--resume", "true", "--out", str(out / "run")]),
                       ("lonely", ["baseline", *args[:-1], "[0.5]", "--out", str(out / "lonely")]),
                       ("broken", ["baseline", *args, "--resume", "true", "--out", str(out / "broken")])]:
        with open(out / f"{name}{rank}.log", "w") as log:  # the CLI logs to sys.stderr, one file per rank
            sys.stderr = log
            codes[name] = main(argv)
            sys.stderr = sys.__stderr__
    (out / f"codes{rank}.json").write_text(json.dumps(codes))
''')

@pytest.fixture(scope="module")
def spread(tmp_path_factory):
    """One `torchrun --nproc_per_node 2` launch running four CLI commands, and the one-process sweep."""
    out = tmp_path_factory.mktemp("sweep")
    broken = out / "broken" / "checkpoints" / "beta-vae" / "beta=0.5.pt"  # β number 2: rank 1's
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"not a checkpoint")
    run_torchrun_worker(out, WORKER, json.dumps(ARGS))
    threads = torch.get_num_threads()
    try:
        assert main(["baseline", *ARGS, "--out", str(out / "single")]) == 0
    finally:
        torch.set_num_threads(threads)
    codes = [json.loads((out / f"codes{r}.json").read_text()) for r in range(2)]
    return out, codes


def logs(out, name):
    return [(out / f"{name}{r}.log").read_text() for r in range(2)]


def weights(path):
    return load_checkpoint(path)["model"]


@needs_gloo
def test_each_rank_trains_its_own_betas_alone(spread):
    out, codes = spread
    assert codes[0]["run"] == codes[1]["run"] == 0
    rank0, rank1 = logs(out, "run")
    assert "[beta-vae] 1/3: β = 0.1 (rank 0 of 2)" in rank0 and "[beta-vae] 3/3: β = 2 (rank 0 of 2)" in rank0
    assert "[beta-vae] 2/3: β = 0.5 (rank 1 of 2)" in rank1
    assert "[beta-vae@0.5] step 6/6" in rank1 and "beta-vae@0.5" not in rank0
    assert "beta-vae@0.1" not in rank1 and "beta-vae@2]" not in rank1
    for beta in BETAS:  # one-process checkpoints; the MR-VAE's is DDP's
        assert load_checkpoint(out / "run" / "checkpoints" / "beta-vae" / f"beta={beta:.4g}.pt")["world_size"] == 1
    assert load_checkpoint(out / "run" / "checkpoints" / "mrvae.pt")["world_size"] == 2
    # both ranks appended to one metrics file: 3 lines (steps 2, 4, 6) per model
    tags = [json.loads(line)["tag"] for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    assert sorted(tags) == sorted(["mrvae"] * 3 + [f"beta-vae@{b:.4g}" for b in BETAS for _ in range(3)])
    assert (out / "run" / "report.html").is_file()


@needs_gloo
def test_the_spread_sweep_is_bit_identical_to_a_one_process_sweep(spread):
    out, _ = spread
    for beta in BETAS:  # same seed, same batches of train.batch_size, no DDP: tolerance 0
        name = f"beta={beta:.4g}.pt"
        spread_w, single_w = (weights(out / run / "checkpoints" / "beta-vae" / name) for run in ("run", "single"))
        assert spread_w.keys() == single_w.keys()
        assert all(torch.equal(spread_w[k], single_w[k]) for k in spread_w), beta
    spread_curve, single_curve = (RDCurve.load(out / run / "curves" / "beta-vae.json") for run in ("run", "single"))
    assert spread_curve.betas == single_curve.betas == BETAS
    assert spread_curve.results == single_curve.results  # exact: same models, one-process evaluation each
    assert spread_curve.summary["iwae_nll"] == single_curve.summary["iwae_nll"] is not None
    for key in ("iwae_beta", "iwae_samples", "num_parameters", "steps_per_model"):
        assert spread_curve.summary[key] == single_curve.summary[key], key


@needs_gloo
def test_resume_after_completion_trains_nothing_and_gives_the_same_curve(spread):
    out, codes = spread
    assert codes[0]["resume"] == codes[1]["resume"] == 0
    rank0, rank1 = logs(out, "resume")
    assert "resumed from" in rank0 and "beta=0.1.pt at step 6" in rank0 and "beta=0.5.pt at step 6" in rank1
    assert "step 6/6" not in rank0 + rank1  # nothing trained again
    lines = (out / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 12
    first = RDCurve.load(out / "single" / "curves" / "beta-vae.json")
    again = RDCurve.load(out / "run" / "curves" / "beta-vae.json")  # rewritten by the resume
    assert again.results == first.results


@needs_gloo
def test_a_rank_without_a_beta_waits_for_the_others(spread):
    out, codes = spread
    assert codes[0]["lonely"] == codes[1]["lonely"] == 0
    rank0, rank1 = logs(out, "lonely")
    assert "1/1: β = 0.5 (rank 0 of 2)" in rank0 and "β =" not in rank1
    curve = RDCurve.load(out / "lonely" / "curves" / "beta-vae.json")
    assert curve.betas == [0.5]
    # the same β, seed and steps as β number 2 of the three-β sweep: the same model
    lonely, single = (weights(out / run / "checkpoints" / "beta-vae" / "beta=0.5.pt") for run in ("lonely", "single"))
    assert all(torch.equal(lonely[k], single[k]) for k in single)


@needs_gloo
def test_an_error_on_one_rank_stops_every_rank_with_its_message(spread):
    out, codes = spread
    assert codes[0]["broken"] == codes[1]["broken"] == 2
    for log in logs(out, "broken"):
        assert "mrvae: error: checkpoint" in log and "beta=0.5.pt is corrupt or not a mrvae checkpoint" in log
    rank0, _ = logs(out, "broken")
    assert "[beta-vae@2] step 6/6" in rank0  # rank 0 finished its own βs first, then raised rank 1's error


def test_sweep_share_and_the_single_process_fallbacks():
    assert [sweep_share(5, r, 2) for r in range(2)] == [[0, 2, 4], [1, 3]]
    assert [sweep_share(2, r, 3) for r in range(3)] == [[0], [1], []]
    assert sweep_share(4, 0, 1) == [0, 1, 2, 3]
    with single_process() as job:
        assert current() == DistInfo() and job == DistInfo()
    assert run_on_every_rank(lambda: 5) == [5]
    with pytest.raises(KeyError, match="boom"):
        run_on_every_rank(lambda: {}["boom"])


def test_metrics_appends_wait_for_a_rewrite_and_land_in_the_new_file(tmp_path):
    """What keeps two ranks' lines in one metrics.jsonl: an append waits while another process holds the
    file's lock (a resume's rewrite does), then goes to the file that replaced the locked one."""
    import fcntl
    import threading

    from mrvae.training.reporting import MetricsWriter

    path = tmp_path / "metrics.jsonl"
    path.write_text('{"tag": "other", "step": 1}\n')
    writer = MetricsWriter(path, "beta-vae@0.5", torch.device("cpu"), 1)
    writer.add({"loss": torch.tensor(3.0), "rate": torch.tensor(1.0), "distortion": torch.tensor(2.0)})
    with open(path, "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)  # as a rewrite in another process holds it
        thread = threading.Thread(target=writer.write, args=(2, 1e-3, 0.5))
        thread.start()
        thread.join(timeout=0.5)
        assert thread.is_alive() and path.read_text() == '{"tag": "other", "step": 1}\n'  # waiting
        replacement = tmp_path / "rewritten"
        replacement.write_text('{"tag": "other", "step": 1, "rewritten": true}\n')
        os.replace(replacement, path)  # the rewrite lands, then the lock is released
    thread.join(timeout=10)
    assert not thread.is_alive()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0] == {"tag": "other", "step": 1, "rewritten": True}
    assert lines[1]["tag"] == "beta-vae@0.5" and lines[1]["step"] == 2 and lines[1]["loss"] == 3.0
    assert len(lines) == 2
