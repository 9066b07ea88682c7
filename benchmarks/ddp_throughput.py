"""Training throughput of 2-process DDP (torchrun, gloo on CPU) divided by that of 1 process.

Each process trains the default MLP VAE on the embedded digits with ``--batch-size`` examples per
step (``train.batch_size`` is per rank, so 2 processes take a global batch twice as large) and one
thread. Launches alternate 1, 2, 2, 1, ... processes; each worker times its steps after a warm-up
through ``fit``'s ``on_step`` hook, rank 0 reports examples per second of the whole job, and the
ratio of the medians is printed. Two processes on two idle cores should approach 2; on a busy
machine, or with a network this small, communication and contention pull it towards 1. The point
here is the mechanism (sharding, gradient all-reduce, rank-0 writes) working end to end.

    python benchmarks/ddp_throughput.py --repeats 2 --steps 150
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


def worker(args: argparse.Namespace) -> None:
    """One torchrun rank: train, time the steps after the warm-up, rank 0 writes the throughput."""
    import torch

    from mrvae.config import ModelConfig, TrainConfig
    from mrvae.data import load_data
    from mrvae.training.distributed import current
    from mrvae.models.registry import build_model
    from mrvae.training.loop import fit

    torch.set_num_threads(1)
    data = load_data("digits")
    torch.manual_seed(0)
    model = build_model(ModelConfig(), data.info, "gate")
    stamps: list[float] = []
    config = TrainConfig(steps=args.warmup + args.steps, batch_size=args.batch_size, warmup_steps=10,
                         log_every=10**6, checkpoint_every=10**6, device="cpu")
    fit(model, data, config, on_step=lambda step, m: stamps.append(time.perf_counter()))
    info = current()
    seconds = stamps[-1] - stamps[args.warmup - 1]
    if info.is_main:
        examples = args.steps * args.batch_size * info.world_size
        Path(args.result).write_text(json.dumps({"world_size": info.world_size, "examples_per_s": examples / seconds,
                                                 "step_ms": 1e3 * seconds / args.steps}))


def launch(processes: int, args: argparse.Namespace) -> dict:
    """Run the worker under ``torchrun --standalone --nproc_per_node processes``; -> rank 0's report."""
    with tempfile.TemporaryDirectory() as folder:
        result = Path(folder) / "result.json"
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
                   __file__, "--worker", "--result", str(result), "--steps", str(args.steps), "--warmup",
                   str(args.warmup), "--batch-size", str(args.batch_size)]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        if done.returncode != 0:
            raise SystemExit(f"torchrun with {processes} process(es) failed:\n{done.stderr[-3000:]}")
        return json.loads(result.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2, help="launches per process count (default 2)")
    parser.add_argument("--steps", type=int, default=150, help="timed steps per launch (default 150)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps first (default 20)")
    parser.add_argument("--batch-size", type=int, default=128, help="examples per step per process (default 128)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if min(args.repeats, args.steps, args.warmup, args.batch_size) < 1:
        parser.error("--repeats, --steps, --warmup and --batch-size must be >= 1")
    if args.worker:
        worker(args)
        return 0
    runs: dict[int, list[dict]] = {1: [], 2: []}
    for repeat in range(args.repeats):
        for processes in ((1, 2) if repeat % 2 == 0 else (2, 1)):
            report = launch(processes, args)
            runs[processes].append(report)
            print(f"{processes} process(es): {report['examples_per_s']:.0f} examples/s "
                  f"({report['step_ms']:.2f} ms per step)", flush=True)
    one = statistics.median(r["examples_per_s"] for r in runs[1])
    two = statistics.median(r["examples_per_s"] for r in runs[2])
    print(f"DDP throughput ratio 2 processes / 1 process: {two / one:.2f} "
          f"(medians of {args.repeats} launches each; {os.cpu_count()} CPUs, 1 thread per process, "
          f"batch {args.batch_size} per process)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
