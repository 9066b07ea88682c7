"""The hierarchical (NVAE-style) MR-VAE against four β-VAEs at equal steps per model, at CPU size.

PAPER.md §6: the paper makes NVAE multi-rate and compares it with 4 β-VAEs. Here one ``mrvae run`` (the
CLI, so the loop, evaluation and table are the library's own) trains a small hierarchical VAE
(``--width`` 0.5 = 8 channels, 2 scales of 2 groups of 4 latent channels) as an MR-VAE (β log-uniform
in [0.01, 10], one β per example) and as β-VAEs at β = 0.01, 0.1, 1, 10, every model for the same
number of steps, on binarised Fashion-MNIST (28×28) or the embedded digits (8×8). Printed: per β the
rate, distortion and D + βR of each method and the MR-VAE's gap to the β-VAE trained at that β; each
method's step budget; the lowest −ELBO = R + D over each method's curve (nats and bits/dim); wall
times. Writes ``hierarchical.json`` (and the run's curves) into ``--out``.

    python benchmarks/hierarchical.py --data fashion-mnist --steps 300 --out benchmarks/results

Needs the architecture registered as ``hierarchical`` with the settings ``model.latent_groups`` and
``model.norm`` (issue 18). Runs with one thread (``--threads 1``).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

BETAS = [0.01, 0.1, 1.0, 10.0]
DIMS = {"fashion-mnist": 784, "mnist": 784, "binarized-mnist": 784, "omniglot": 784, "digits": 64}


def run_command(args: argparse.Namespace, run: Path) -> list[str]:
    """The ``mrvae run`` command line of the comparison."""
    warmup = max(1, args.steps // 5)
    return [sys.executable, "-m", "mrvae.cli", "run", "--data", args.data, "--model.arch", "hierarchical",
            "--model.width", str(args.width), "--model.latent_dim", str(args.latent_channels),
            "--model.latent_groups", json.dumps(args.groups), "--model.norm", args.norm,
            "--train.steps", str(args.steps), "--train.batch_size", str(args.batch_size),
            "--train.lr", str(args.lr), "--train.warmup_steps", str(warmup), "--train.seed", str(args.seed),
            "--train.log_every", str(max(1, args.steps // 4)), "--baseline.betas", json.dumps(BETAS),
            "--baseline.steps", str(args.steps), "--eval.num_betas", str(args.num_betas),
            "--eval.iwae_samples", str(args.iwae_samples), "--eval.batch_size", "256",
            "--methods", '["mrvae","beta-vae"]', "--threads", "1", "--progress", "false", "--out", str(run)]


def lowest_neg_elbo(curve: dict) -> float:
    """Min over a curve's points of R + D (nats per example)."""
    results = curve["results"]
    values = results.get("neg_elbo") or [r + d for r, d in zip(results["rate"], results["distortion"])]
    return float(min(values))


def summarise(run: Path, args: argparse.Namespace, wall_s: float) -> dict:
    """The run folder's comparison and curves -> the benchmark's JSON record."""
    comparison = json.loads((run / "comparison.json").read_text())
    curves = {m: json.loads((run / "curves" / f"{m}.json").read_text()) for m in ("mrvae", "beta-vae")}
    config = yaml.safe_load((run / "config.yaml").read_text())
    rows = comparison["rows"]
    gaps = [100.0 * (a["beta_objective"] - b["beta_objective"]) / abs(b["beta_objective"])
            for a, b in zip(rows["mrvae"], rows["beta-vae"])]
    dims = DIMS.get(args.data)
    lowest = {m: lowest_neg_elbo(c) for m, c in curves.items()}
    return {
        "benchmark": "hierarchical", "data": args.data, "betas": comparison["betas"], "rows": rows,
        "gap_percent": gaps,
        "steps": {"mrvae": config["train"]["steps"], "beta-vae each": config["baseline"]["steps"],
                  "beta-vae total": config["baseline"]["steps"] * len(BETAS)},
        "lowest_neg_elbo_nats": lowest,
        "lowest_neg_elbo_bits_per_dim": {m: v / (dims * math.log(2.0)) for m, v in lowest.items()} if dims else None,
        "iwae_nll": {m: c.get("summary", {}).get("iwae_nll") for m, c in curves.items()},
        "num_parameters": {m: c.get("summary", {}).get("num_parameters") for m, c in curves.items()},
        "wall_time_s": comparison.get("wall_time_s"), "total_wall_time_s": round(wall_s, 1),
        "config": config, "torch": torch.__version__, "machine": platform.platform(),
    }


def print_record(record: dict) -> None:
    rows, steps = record["rows"], record["steps"]
    print(f"hierarchical MR-VAE vs {len(record['betas'])} β-VAEs on {record['data']}, nats per example")
    names = ("MR R", "MR D", "MR D+bR", "bVAE R", "bVAE D", "bVAE D+bR")
    print(f"{'beta':>7} " + " ".join(f"{n:>9}" for n in names) + f" {'gap':>8}")
    for beta, a, b, gap in zip(record["betas"], rows["mrvae"], rows["beta-vae"], record["gap_percent"]):
        print(f"{beta:>7.3g} {a['rate']:>9.2f} {a['distortion']:>9.2f} {a['beta_objective']:>9.2f} "
              f"{b['rate']:>9.2f} {b['distortion']:>9.2f} {b['beta_objective']:>9.2f} {gap:>+7.1f}%")
    print(f"steps: MR-VAE {steps['mrvae']}; each β-VAE {steps['beta-vae each']} "
          f"(sweep {steps['beta-vae total']})")
    for method, value in record["lowest_neg_elbo_nats"].items():
        bpd = record["lowest_neg_elbo_bits_per_dim"]
        extra = f" = {bpd[method]:.4f} bits/dim" if bpd else ""
        print(f"lowest -ELBO over the curve, {method}: {value:.2f} nats{extra}; IWAE NLL {record['iwae_nll'][method]}")
    print(f"parameters: {record['num_parameters']}; wall time (train + eval) {record['wall_time_s']}; "
          f"total {record['total_wall_time_s']} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default="fashion-mnist", choices=sorted(DIMS))
    parser.add_argument("--steps", type=int, default=300, help="steps per model (MR-VAE and each β-VAE)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--width", type=float, default=0.5, help="0.5 = 8 channels at full resolution")
    parser.add_argument("--groups", type=int, nargs="+", default=[2, 2], help="groups per scale, top first")
    parser.add_argument("--latent-channels", type=int, default=4)
    parser.add_argument("--norm", default="batch", choices=["batch", "none"])
    parser.add_argument("--num-betas", type=int, default=8)
    parser.add_argument("--iwae-samples", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        started = time.perf_counter()
        subprocess.run(run_command(args, run), check=True)
        record = summarise(run, args, time.perf_counter() - started)
        args.out.mkdir(parents=True, exist_ok=True)
        suffix = "" if (args.data, args.norm) == ("fashion-mnist", "batch") else f"_{args.data}_{args.norm}"
        for method in ("mrvae", "beta-vae"):
            shutil.copy(run / "curves" / f"{method}.json", args.out / f"hierarchical{suffix}_{method}.json")
    (args.out / f"hierarchical{suffix}.json").write_text(json.dumps(record, indent=1))
    print_record(record)


if __name__ == "__main__":
    main()
