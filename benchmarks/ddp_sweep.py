"""Wall time of the `mrvae run` β-VAE sweep on 1 process and spread over 2 (torchrun --standalone, CPU).

Each launch is ``torchrun --standalone --nproc_per_node P -m mrvae.cli run --methods beta-vae`` on the
embedded digits with the default model and βs, ``--steps`` steps per β-VAE, ``--train.device cpu``, one
thread per process (``OMP_NUM_THREADS=1``, ``--threads 1``). With 2 processes rank r trains βs r, r + 2,
... alone (docs/distributed.md, "The β-VAE sweep under torchrun"). Launches alternate 1, 2, 2, 1, ...;
printed per process count are the medians of the sweep's wall time (from its first log line to
``curve written``) and of the whole command's, then their ratios 1 process / 2 processes, and whether
the two sweeps' curves are identical (they should be: each β-VAE is the one-process model).

    python benchmarks/ddp_sweep.py --repeats 1 --steps 400
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def command(processes: int, out: Path, args: argparse.Namespace) -> list[str]:
    """The torchrun command line of one launch writing its run folder to ``out``."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
            "-m", "mrvae.cli", "run", "--data", "digits", "--methods", "beta-vae", "--train.device", "cpu",
            "--threads", "1", "--train.steps", str(args.steps), "--train.warmup_steps", str(args.warmup),
            "--progress", "false", "--out", str(out)]


def launch(processes: int, args: argparse.Namespace) -> dict:
    """One timed launch -> wall time of the command and of the sweep (stderr lines timed as they come),
    and the curve's results."""
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "run"
        started = time.perf_counter()
        process = subprocess.Popen(command(processes, out, args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        sweep_start = sweep_end = None
        tail: list[str] = []
        for line in process.stderr:
            now = time.perf_counter()
            tail = (tail + [line])[-40:]
            if sweep_start is None and line.startswith("[beta-vae] ") and "β =" in line:  # any rank's first β
                sweep_start = now
            if line.startswith("[beta-vae] curve written"):
                sweep_end = now
        if process.wait() != 0 or sweep_start is None or sweep_end is None:
            raise SystemExit(f"torchrun with {processes} process(es) failed:\n{''.join(tail)}")
        total = time.perf_counter() - started
        results = json.loads((out / "curves" / "beta-vae.json").read_text())["results"]
    return {"command_s": total, "sweep_s": sweep_end - sweep_start, "results": results}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1, help="launches per process count (default 1)")
    parser.add_argument("--steps", type=int, default=400, help="training steps per β-VAE (default 400)")
    parser.add_argument("--warmup", type=int, default=100, help="learning-rate warm-up steps (default 100)")
    parser.add_argument("--json", type=str, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if min(args.repeats, args.steps) < 1 or not 0 <= args.warmup < args.steps:
        parser.error("--repeats and --steps must be >= 1, and 0 <= --warmup < --steps")
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for repeat in range(args.repeats):
        for processes in ((1, 2) if repeat % 2 == 0 else (2, 1)):
            runs[processes].append(launch(processes, args))
    figures = {p: {key: statistics.median(r[key] for r in reports) for key in ("sweep_s", "command_s")}
               for p, reports in runs.items()}
    print(f"{'processes':>9} {'sweep s':>9} {'command s':>10}")
    for processes, values in figures.items():
        print(f"{processes:>9} {values['sweep_s']:>9.1f} {values['command_s']:>10.1f}")
    sweep_ratio = figures[1]["sweep_s"] / figures[2]["sweep_s"]
    command_ratio = figures[1]["command_s"] / figures[2]["command_s"]
    identical = all(r["results"] == runs[1][0]["results"] for reports in runs.values() for r in reports)
    print(f"speed-up 1 process / 2 processes: sweep {sweep_ratio:.2f}, whole command {command_ratio:.2f} "
          f"(medians of {args.repeats} launch(es) each; {os.cpu_count()} CPUs, 1 thread per process; "
          f"{args.steps} steps per β-VAE)")
    print(f"curves of the 1- and 2-process sweeps identical: {'yes' if identical else 'NO'}")
    if args.json:
        Path(args.json).write_text(json.dumps({"steps": args.steps, "repeats": args.repeats, "figures": figures,
                                               "sweep_ratio": sweep_ratio, "command_ratio": command_ratio,
                                               "identical_curves": identical}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
