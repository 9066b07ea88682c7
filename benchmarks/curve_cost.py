"""Cost of the whole RD curve: one MR-VAE run + its 20-β curve, divided by the 10-run β-VAE sweep +
its evaluation, measured side by side in one process on the embedded digits, at equal steps per model
(every β-VAE trains the MR-VAE's steps, the default of `mrvae run`).

    python benchmarks/curve_cost.py                 # the defaults of `mrvae run`: 1,800 steps per model
    python benchmarks/curve_cost.py --steps 900     # quicker

Prints both wall times and their ratio (goal <= 0.12 at equal steps, issue 17; the paper's Fig. 1 ratio
is 0.13), the same for the process's CPU time, which other jobs on a shared machine disturb less than the
wall clock, and each method's steps per model.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from mrvae.runs.baselines import run_sweep
from mrvae.config import Method, RunConfig
from mrvae.runs.folder import prepare_run_dir
from mrvae.runs.methods import curve_for, load_run_data, train_method


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=RunConfig().train.steps, help="MR-VAE steps")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = RunConfig()
    config = dataclasses.replace(base, train=dataclasses.replace(base.train, steps=args.steps),
                                 methods=(Method.MRVAE, Method.BETA_VAE))
    data = load_run_data(config)
    with tempfile.TemporaryDirectory() as tmp:
        run = prepare_run_dir(Path(tmp) / "run", config, resume=False)
        started, cpu = time.perf_counter(), time.process_time()
        result = train_method(config, data, run, Method.MRVAE)
        curve_for(result.model, Method.MRVAE, config, data, result.wall_time_s)
        mrvae_s, mrvae_cpu = time.perf_counter() - started, time.process_time() - cpu
        started, cpu = time.perf_counter(), time.process_time()
        run_sweep(config, data, run)
        sweep_s, sweep_cpu = time.perf_counter() - started, time.process_time() - cpu
    figures = {"mrvae_run_and_curve_s": mrvae_s, "beta_vae_sweep_and_eval_s": sweep_s, "ratio": mrvae_s / sweep_s,
               "mrvae_cpu_s": mrvae_cpu, "sweep_cpu_s": sweep_cpu, "cpu_ratio": mrvae_cpu / sweep_cpu,
               "mrvae_steps": config.train.steps, "beta_vae_steps_each": config.baseline.steps_for(config.train),
               "num_beta_vaes": len(config.baseline.betas)}
    print(f"MR-VAE run + 20-β curve: {mrvae_s:.1f} s; 10 β-VAEs + evaluation: {sweep_s:.1f} s")
    print(f"budget: MR-VAE {figures['mrvae_steps']} steps; {figures['num_beta_vaes']} β-VAEs × "
          f"{figures['beta_vae_steps_each']} steps each")
    print(f"ratio (MR-VAE / sweep): {figures['ratio']:.3f}   (goal <= 0.12 at equal steps; paper 0.13)")
    print(f"CPU time: {mrvae_cpu:.1f} s vs {sweep_cpu:.1f} s, ratio {figures['cpu_ratio']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
