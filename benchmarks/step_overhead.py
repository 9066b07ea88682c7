"""Training-step time of the gated MLP VAE divided by the same MLP with conditioning ``none``.

One step is what ``fit()`` does per batch: draw per-example β, forward, β-objective, backward and an
Adam step. Batch 128 of (1, 8, 8) Bernoulli data, the default ``MLPVAE``. The two models run
interleaved in one process (their order alternates every repeat) after a warm-up, and the ratio of
the median step times is printed. The paper reports +0.02 % to +2.04 % wall time (Table 1); our goal
is a ratio <= 1.05. What the gates add is elementwise work on every hidden activation (about 5 ops
forward and 8 backward per layer) plus Adam on 2 small tensors per layer; on a CPU with a network this
small that is not small next to the matrix products, so ``--hidden`` and ``--adam`` show how it scales.

    python benchmarks/step_overhead.py --repeats 300 --json step_overhead.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from mrvae import BetaRange, BetaSampling, MLPVAE, ModelConditioning
from mrvae.layers import Conditioning

DATA_SHAPE = (1, 8, 8)
GOAL = 1.05

#: Adam implementations: PyTorch's default for the device, the multi-tensor ``foreach`` one, the fused kernel.
ADAM_OPTIONS = {"default": {}, "foreach": {"foreach": True}, "fused": {"fused": True}}
#: Clocks: wall time, or the CPU time of the calling thread (steadier on a shared machine; use 1 thread).
CLOCKS = {"wall": time.perf_counter, "cpu": time.thread_time}


def make_step(conditioning: Conditioning, batch: torch.Tensor, seed: int, lr: float, adam: str,
              hidden: tuple[int, ...] | None = None,
              sampling: BetaSampling = BetaSampling.PER_EXAMPLE) -> Callable[[], None]:
    """A closure doing one training step (sample β, forward, backward, Adam) of a fresh MLPVAE
    (the default one unless ``hidden`` is given)."""
    torch.manual_seed(seed)
    sizes = {} if hidden is None else {"hidden": hidden}
    model = MLPVAE(DATA_SHAPE, conditioning=ModelConditioning(kind=conditioning), **sizes)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr, **ADAM_OPTIONS[adam])
    beta_range = BetaRange()
    generator = torch.Generator().manual_seed(seed)

    def step() -> None:
        beta = beta_range.sample(batch.shape[0], generator, mode=sampling)
        u = beta_range.standardise(beta)
        optimiser.zero_grad(set_to_none=True)
        loss, _ = model.objective(batch, beta, u, generator)
        loss.mean().backward()
        optimiser.step()

    return step


def timed(step: Callable[[], None], steps: int, clock: Callable[[], float]) -> float:
    """Seconds per step over ``steps`` consecutive steps."""
    start = clock()
    for _ in range(steps):
        step()
    return (clock() - start) / steps


def measure(repeats: int, warmup: int, steps_per_repeat: int, batch_size: int, seed: int,
            adam: str = "default", clock: str = "wall", hidden: tuple[int, ...] | None = None,
            sampling: BetaSampling = BetaSampling.PER_EXAMPLE) -> dict:
    """Interleaved timings of the gated and the plain model; returns medians and the ratio."""
    data_gen = torch.Generator().manual_seed(seed)
    batch = torch.bernoulli(torch.full((batch_size, *DATA_SHAPE), 0.3), generator=data_gen)
    steps = {kind: make_step(kind, batch, seed, 1e-3, adam, hidden, sampling) for kind in (Conditioning.GATE, Conditioning.NONE)}
    for _ in range(warmup):
        for step in steps.values():
            step()
    times: dict[Conditioning, list[float]] = {kind: [] for kind in steps}
    for repeat in range(repeats):
        order = list(steps) if repeat % 2 == 0 else list(steps)[::-1]
        for kind in order:
            times[kind].append(timed(steps[kind], steps_per_repeat, CLOCKS[clock]))
    gate_median = statistics.median(times[Conditioning.GATE])
    none_median = statistics.median(times[Conditioning.NONE])
    paired = [g / n for g, n in zip(times[Conditioning.GATE], times[Conditioning.NONE])]
    return {
        "ratio": gate_median / none_median,
        "median_paired_ratio": statistics.median(paired),
        "gate_step_ms": 1e3 * gate_median,
        "none_step_ms": 1e3 * none_median,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=300, help="timed repeats per model (default 300)")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps per model first (default 30)")
    parser.add_argument("--steps-per-repeat", type=int, default=2, help="steps timed together (default 2)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--adam", choices=tuple(ADAM_OPTIONS), default="default",
                        help="Adam implementation (default: PyTorch's choice, as fit() uses)")
    parser.add_argument("--clock", choices=tuple(CLOCKS), default="wall",
                        help="wall time, or this thread's CPU time (steadier on a busy machine)")
    parser.add_argument("--hidden", type=int, nargs="+", default=None,
                        help="hidden sizes instead of the default MLPVAE's (to see how the overhead scales)")
    parser.add_argument("--sampling", choices=[m.value for m in BetaSampling], default=BetaSampling.PER_EXAMPLE.value,
                        help="one β per example (default, the gates then differ per row) or per batch")
    parser.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.warmup < 0 or args.steps_per_repeat < 1 or args.batch_size < 1 or args.threads < 1:
        parser.error("--repeats, --steps-per-repeat, --batch-size and --threads must be >= 1, --warmup >= 0")
    torch.set_num_threads(args.threads)
    hidden = None if args.hidden is None else tuple(args.hidden)
    if hidden is not None and min(hidden) < 1:
        parser.error(f"--hidden sizes must be >= 1, got {list(hidden)}")
    result = measure(args.repeats, args.warmup, args.steps_per_repeat, args.batch_size, args.seed, args.adam,
                     args.clock, hidden, BetaSampling(args.sampling))
    print(f"gated step {result['gate_step_ms']:.3f} ms, plain step {result['none_step_ms']:.3f} ms "
          f"(medians of {args.repeats} interleaved repeats, {args.clock} clock, "
          f"{args.threads} thread(s), batch {args.batch_size}, Adam {args.adam}, "
          f"hidden {'default' if hidden is None else list(hidden)}, β {args.sampling})")
    verdict = "meets" if result["ratio"] <= GOAL else "misses"
    print(f"step-time ratio gate/none: {result['ratio']:.3f} (median paired ratio {result['median_paired_ratio']:.3f}; "
          f"{verdict} the goal <= {GOAL})")
    if args.json is not None:
        record = {"benchmark": "step_overhead", **result, "goal": GOAL, "goal_met": result["ratio"] <= GOAL,
                  "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                  "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine()}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
