"""MIG against β: one multi-rate β-TCVAE (β in [0.1, 10]) against β-TCVAEs trained separately at a few β.

Data: dsprites-like (procedural 64×64 sprites on dSprites' factor grid, with its five factor classes
per image). Model: ``TCVAE`` (an MLP VAE, default hidden 256-256, 10 latents, Bernoulli, minibatch-
weighted sampling) trained through ``methods.train_method``: the MR-β-TCVAE draws one β per example
log-uniformly in [0.1, 10] (the paper's β-TCVAE range); each β-TCVAE has conditioning ``none`` and a
fixed β; every model gets the same number of steps. MIG (``mrvae.evaluation.mig``, 20 equal-width
bins, posterior means, all five factors) is measured on a test subset at each β, along with rate and
distortion. The paper reports the MR-VAE's MIG roughly flat (≈ 0.35–0.45) over β ∈ [0.1, 10] on dSprites
with a 4096-1200-1200 MLP. Writes ``tcvae_mig.json`` and ``tcvae_mig.png`` into ``--out``.

Default budget (about 11 minutes of CPU time with one thread, 13–15 minutes of wall time on a shared
2-core machine): 20,000 training images, batch 128, 1,500 steps per model (6 models), 5,000 test
images, β-TCVAEs at logspace(−1, 1, 5). This is far from the paper's training length: expect low MIG.

    python benchmarks/tcvae_mig.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import Dataset

from mrvae.beta import BetaRange
from mrvae.config import BaselineConfig, DataConfig, EvalConfig, Method, ModelConfig, RunConfig, TrainConfig
from mrvae.data.base import batch_of
from mrvae.data.dsprites_like import FACTOR_NAMES, load_dsprites_like
from mrvae.evaluation.mig import mutual_information_gap
from mrvae.evaluation.evaluate import evaluate_at
from mrvae.models.base import VAE
from mrvae.runs.folder import prepare_run_dir
from mrvae.runs.methods import train_method

BETA_LOW, BETA_HIGH = 0.1, 10.0


@torch.no_grad()
def posterior_means(model: VAE, dataset: Dataset, beta: float, beta_range: BetaRange,
                    batch_size: int = 500) -> torch.Tensor:
    """(N, k) means of q(z|x) for every example of ``dataset`` at β (u from ``beta_range``)."""
    model.eval()
    means = []
    for start in range(0, len(dataset), batch_size):
        x = batch_of(dataset, torch.arange(start, min(len(dataset), start + batch_size)))
        u = beta_range.standardise(torch.full((x.shape[0], 1), float(beta)))
        means.append(model.encode(x, u)[0])
    return torch.cat(means)


def measure(model: VAE, dataset: Dataset, beta: float, beta_range: BetaRange, config: EvalConfig) -> dict:
    """MIG (with per-factor gaps), rate, distortion and active units of ``model`` at β on ``dataset``."""
    codes = posterior_means(model, dataset, beta, beta_range)
    mig = mutual_information_gap(codes, dataset.factors)
    point = evaluate_at(model, dataset, beta, config)
    return {"mig": mig.mig, "per_factor": dict(zip(FACTOR_NAMES, mig.per_factor.tolist())),
            "rate": point["rate"], "distortion": point["distortion"], "active_units": point["active_units"]}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace, run_root: Path) -> dict:
    """Train the MR-β-TCVAE and the β-TCVAEs, measure MIG per β, print the table; return the record."""
    config = RunConfig(
        data=DataConfig("dsprites-like", None, args.seed),
        model=ModelConfig(arch="tcvae", latent_dim=10, hidden=tuple(args.hidden)),
        train=TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                          warmup_steps=max(1, args.steps // 20), beta_low=BETA_LOW, beta_high=BETA_HIGH,
                          seed=args.seed, log_every=max(1, args.steps // 4), checkpoint_every=args.steps,
                          device="cpu"),
        eval=EvalConfig(num_betas=len(args.betas), iwae_samples=0, batch_size=500, seed=args.seed),
        baseline=BaselineConfig(betas=tuple(args.betas), steps=args.steps),
        methods=(Method.MRVAE, Method.BETA_VAE))
    run_dir = prepare_run_dir(run_root, config, resume=False)
    data = load_dsprites_like(None, args.seed, num_train=args.num_train, num_valid=0, num_test=args.num_test)
    log(f"dsprites-like: {len(data.train)} train / {len(data.test)} test; TCVAE hidden {list(args.hidden)}, "
        f"{args.steps} steps per model, batch {args.batch_size}")
    mr_range = config.train.beta_range

    started, cpu = time.perf_counter(), time.process_time()
    fitted = train_method(config, data, run_dir, Method.MRVAE, log=log)
    mr_rows = [measure(fitted.model, data.test, b, mr_range, config.eval) for b in args.betas]
    dense = [float(b) for b in mr_range.grid(args.num_dense)]
    mr_dense = [measure(fitted.model, data.test, b, mr_range, config.eval)["mig"] for b in dense]
    mr_time, mr_cpu = time.perf_counter() - started, time.process_time() - cpu
    mr_train = fitted.wall_time_s

    started, cpu = time.perf_counter(), time.process_time()
    sweep_rows, sweep_train = [], 0.0
    for beta in args.betas:
        result = train_method(config, data, run_dir, Method.BETA_VAE, beta, log=log)
        sweep_train += result.wall_time_s
        sweep_rows.append(measure(result.model, data.test, beta, BetaRange(beta, beta), config.eval))
    sweep_time, sweep_cpu = time.perf_counter() - started, time.process_time() - cpu

    print(f"{'beta':>7} {'MIG MR':>8} {'MIG β-TC':>9} {'diff':>7}   {'MR R':>7} {'MR D':>8} {'β-TC R':>7} "
          f"{'β-TC D':>8}   {'AU MR':>5} {'AU β-TC':>7}")
    for beta, mr, bt in zip(args.betas, mr_rows, sweep_rows):
        print(f"{beta:>7.3g} {mr['mig']:>8.3f} {bt['mig']:>9.3f} {mr['mig'] - bt['mig']:>+7.3f}   "
              f"{mr['rate']:>7.2f} {mr['distortion']:>8.2f} {bt['rate']:>7.2f} {bt['distortion']:>8.2f}   "
              f"{int(mr['active_units']):>5} {int(bt['active_units']):>7}")
    print("MR-β-TCVAE MIG on a dense grid: " + ", ".join(f"{b:.3g}: {m:.3f}" for b, m in zip(dense, mr_dense)))
    mean_mr = sum(r["mig"] for r in mr_rows) / len(mr_rows)
    mean_bt = sum(r["mig"] for r in sweep_rows) / len(sweep_rows)
    print(f"mean MIG over the {len(args.betas)} βs: MR {mean_mr:.3f}, β-TCVAEs {mean_bt:.3f}; best β-TCVAE "
          f"{max(r['mig'] for r in sweep_rows):.3f}")
    print(f"training wall time: MR-β-TCVAE {mr_train:.0f} s (one run), β-TCVAEs {sweep_train:.0f} s "
          f"({len(args.betas)} runs); with evaluation: {mr_time:.0f} s and {sweep_time:.0f} s; CPU time with "
          f"evaluation: {mr_cpu:.0f} s and {sweep_cpu:.0f} s")
    plot(args.betas, mr_rows, sweep_rows, dense, mr_dense, args.out / "tcvae_mig.png")
    return {"benchmark": "tcvae_mig", "betas": list(args.betas), "mrvae": mr_rows, "beta_tcvae": sweep_rows,
            "mrvae_dense": {"betas": dense, "mig": mr_dense},
            "train_wall_time_s": {"mrvae": mr_train, "beta_tcvae": sweep_train},
            "wall_time_s": {"mrvae": mr_time, "beta_tcvae": sweep_time},
            "cpu_time_s": {"mrvae": mr_cpu, "beta_tcvae": sweep_cpu}}


def plot(betas: list[float], mr_rows: list[dict], sweep_rows: list[dict], dense: list[float],
         mr_dense: list[float], path: Path) -> None:
    """MIG against β: the MR-β-TCVAE's dense curve and points, the β-TCVAEs' points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    ax.plot(dense, mr_dense, color="C0", marker="o", markersize=3, label="MR-β-TCVAE (one run)")
    ax.plot(betas, [r["mig"] for r in sweep_rows], color="C3", marker="s", linestyle="none",
            label="β-TCVAE (one run per β)")
    ax.set_xscale("log")
    ax.set_xlabel("β (total-correlation weight)")
    ax.set_ylabel("MIG")
    ax.set_title("dsprites-like: MIG against β")
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--betas", type=float, nargs="+",
                        default=[float(b) for b in torch.logspace(-1, 1, 5, dtype=torch.float64)],
                        help="βs of the separately trained β-TCVAEs (default logspace(-1, 1, 5))")
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--steps", type=int, default=1500, help="training steps of every model (default 1500)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--num-train", type=int, default=20_000)
    parser.add_argument("--num-test", type=int, default=5_000)
    parser.add_argument("--num-dense", type=int, default=11, help="βs of the MR-β-TCVAE's dense MIG curve")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for JSON and PNG")
    args = parser.parse_args(argv)
    if min(args.steps, args.batch_size, args.num_test, args.num_dense, args.threads) < 1 or args.num_train < 2:
        parser.error("--steps, --batch-size, --num-test, --num-dense, --threads must be >= 1, --num-train >= 2")
    bad = [b for b in args.betas if not (BETA_LOW <= b * (1 + 1e-9) and b <= BETA_HIGH * (1 + 1e-9))]
    if bad or not all(math.isfinite(b) for b in args.betas):
        parser.error(f"--betas must lie in [{BETA_LOW}, {BETA_HIGH}] (the MR-β-TCVAE's range), got {bad}")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="tcvae_mig_") as tmp:
        record = run(args, Path(tmp) / "run")
    record["total_wall_time_s"] = time.perf_counter() - started
    record["total_cpu_time_s"] = time.process_time() - cpu_started
    record["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    record.update(torch=torch.__version__, python=platform.python_version(), machine=platform.machine())
    (args.out / "tcvae_mig.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"total wall time {record['total_wall_time_s']:.0f} s (CPU time {record['total_cpu_time_s']:.0f} s); "
          f"wrote {args.out / 'tcvae_mig.json'} and {args.out / 'tcvae_mig.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
