"""Training-step time with ``--train.precision bf16-mixed`` divided by the fp32 step time.

Both run through ``fit`` in one process on the same device, interleaved: short runs of ``--steps``
steps alternate fp32 / bf16 (order flipped every repeat) and each step is timed through the
``on_step`` hook (the first step of a run, which builds the optimiser state, is left out). The ratio
of the median step times is printed. bf16 autocast pays off on hardware with bf16 matrix units
(recent GPUs, CPUs with AMX / AVX-512 BF16); on other CPUs the casts usually make it slower.

    python benchmarks/precision_step_time.py --repeats 10 --device cpu
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time

import torch

from mrvae.config import ModelConfig, Precision, TrainConfig
from mrvae.data import load_data
from mrvae.models.registry import build_model
from mrvae.training.loop import fit


def step_times(precision: Precision, data, args: argparse.Namespace) -> list[float]:
    """Seconds per step of one short ``fit`` run at ``precision`` (steps 2.. of the run)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(hidden=tuple(args.hidden)), data.info, "gate")
    stamps: list[float] = []
    config = TrainConfig(steps=args.steps + 1, batch_size=args.batch_size, warmup_steps=1, log_every=10**6,
                         checkpoint_every=10**6, device=args.device, precision=precision)

    def stamp(step: int, _model) -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())

    fit(model, data, config, on_step=stamp)
    return [b - a for a, b in zip(stamps, stamps[1:])]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="interleaved runs per precision (default 10)")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per run (default 30)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--hidden", type=int, nargs="+", default=[512, 512], help="MLP hidden sizes (default 512 512)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, ... (default cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    args = parser.parse_args(argv)
    if min(args.repeats, args.steps, args.batch_size, args.threads, *args.hidden) < 1:
        parser.error("--repeats, --steps, --batch-size, --threads and --hidden must be >= 1")
    torch.set_num_threads(args.threads)
    data = load_data("digits")
    kinds = (Precision.FP32, Precision.BF16_MIXED)
    times: dict[Precision, list[float]] = {kind: [] for kind in kinds}
    step_times(Precision.FP32, data, args)  # warm-up: imports, allocator
    for repeat in range(args.repeats):
        for kind in (kinds if repeat % 2 == 0 else kinds[::-1]):
            times[kind] += step_times(kind, data, args)
    fp32, bf16 = (statistics.median(times[kind]) for kind in kinds)
    print(f"fp32 step {1e3 * fp32:.2f} ms, bf16-mixed step {1e3 * bf16:.2f} ms (medians of "
          f"{args.repeats}×{args.steps} interleaved steps; {args.device}, {args.threads} thread(s), batch "
          f"{args.batch_size}, hidden {args.hidden}; {platform.machine()} {platform.processor() or ''})".rstrip())
    print(f"step-time ratio bf16-mixed / fp32: {bf16 / fp32:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
