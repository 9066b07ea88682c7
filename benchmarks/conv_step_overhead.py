"""Training-step time of the gated ConvVAE / ResNetVAE divided by the same net with conditioning ``none``.

One step is what ``fit()`` does per batch: draw per-example β, forward, β-objective, backward and an
Adam step (multi-tensor ``foreach``; ``fit()`` uses the fused kernel since issue 17, and
``gate_overhead.py`` times ``fit()``'s own step), on a batch of 64 binary (1, 28, 28)
images. Both architectures run at a channel ``--width`` (default 0.25) so the step fits a CPU. The
four models (ConvVAE gate / none, ResNetVAE gate / none) run interleaved in one process: after a
warm-up, every repeat times each model once, in an order that rotates from repeat to repeat. Wall
time and the calling thread's CPU time are recorded for the same steps, and the CPU time is also
split into forward + backward and the Adam update; the ratio of medians gate / none is printed per
architecture (goal <= 1.03; the paper reports +4.2 % wall time for its ResNet MR-VAE on Omniglot,
Fig. 1). ``--fixed-gate-case`` adds a diagnostic gated model whose gates get no gradient (what
multiplying the feature maps costs on its own). With ``--profile`` (or whenever a ratio is above the
goal) ``torch.profiler`` runs of both conditionings list the op calls the gates add (matched by op
and input shapes) and their self CPU time.

    python benchmarks/conv_step_overhead.py --repeats 200 --profile --out benchmarks/results
    python benchmarks/conv_step_overhead.py --archs resnet --width 1 --repeats 60 --fixed-gate-case --tag _resnet_w1
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from mrvae import BetaRange, ModelConditioning
from mrvae.layers import ConditionedLayer, Conditioning
from mrvae.models.base import VAE
from mrvae.models.conv import ConvVAE
from mrvae.models.resnet import ResNetVAE

GOAL = 1.03
INPUT_SHAPE = (1, 28, 28)
ARCHITECTURES: dict[str, type[VAE]] = {"conv": ConvVAE, "resnet": ResNetVAE}
KINDS = (Conditioning.GATE, Conditioning.NONE)


@dataclass
class Case:
    """One timed model: its architecture, conditioning, the two halves of a training step (forward +
    backward, Adam update) and per-repeat seconds per step: wall and thread CPU time of the whole step,
    and CPU time of each half."""

    arch: str
    kind: Conditioning
    fixed_gates: bool
    forward_backward: Callable[[], None]
    update: Callable[[], None]
    model: VAE
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    cpu_forward_backward: list[float] = field(default_factory=list)
    cpu_update: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.arch}/{self.kind.value}" + ("-fixed" if self.fixed_gates else "")

    def step(self) -> None:
        self.forward_backward()
        self.update()


class DetachedGate(nn.Module):
    """Diagnostic stand-in for a layer's ``UnitGate``: the same values, but no gradient flows to them."""

    def __init__(self, gate: nn.Module) -> None:
        super().__init__()
        self.inner = gate

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.inner(u)


def make_case(arch: str, kind: Conditioning, batch: torch.Tensor, width: float, seed: int,
              fixed_gates: bool = False, device: torch.device = torch.device("cpu")) -> Case:
    """A fresh model of ``arch`` with conditioning ``kind`` and a closure doing one training step.

    ``fixed_gates`` (diagnostic, with ``gate``): gates are computed but receive no gradient, so the step
    pays for multiplying the feature maps by the gates but not for the gates' own backward and update.
    """
    torch.manual_seed(seed)
    model = ARCHITECTURES[arch](INPUT_SHAPE, width=width, conditioning=ModelConditioning(kind=kind))
    if fixed_gates:
        for layer in model.modules():
            if isinstance(layer, ConditionedLayer) and layer.gate is not None:
                layer.gate = DetachedGate(layer.gate)
    model.to(device).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, foreach=True)  # fit() now uses fused=True: gate_overhead.py times that step
    beta_range = BetaRange()
    generator = torch.Generator(device=device).manual_seed(seed)

    def forward_backward() -> None:
        beta = beta_range.sample(batch.shape[0], generator)
        u = beta_range.standardise(beta)
        optimiser.zero_grad(set_to_none=True)
        loss, _ = model.objective(batch, beta, u, generator)
        loss.mean().backward()

    def update() -> None:
        optimiser.step()
        if device.type == "cuda":  # the step's kernels are queued: wait for them, so the clocks see them
            torch.cuda.synchronize(device)

    return Case(arch, kind, fixed_gates, forward_backward, update, model)


def time_case(case: Case, steps: int) -> None:
    """Run ``steps`` consecutive steps of ``case``, appending seconds per step (wall and thread CPU of the
    step, thread CPU of its forward + backward and of its Adam update)."""
    wall0, cpu0, cpu_fb, cpu_up = time.perf_counter(), time.thread_time(), 0.0, 0.0
    for _ in range(steps):
        t0 = time.thread_time()
        case.forward_backward()
        t1 = time.thread_time()
        case.update()
        cpu_fb, cpu_up = cpu_fb + t1 - t0, cpu_up + time.thread_time() - t1
    case.wall.append((time.perf_counter() - wall0) / steps)
    case.cpu.append((time.thread_time() - cpu0) / steps)
    case.cpu_forward_backward.append(cpu_fb / steps)
    case.cpu_update.append(cpu_up / steps)


def measure(cases: list[Case], repeats: int, warmup: int, steps_per_repeat: int) -> None:
    """Warm every case up, then ``repeats`` rounds timing each case once, the order rotating by one each round."""
    for _ in range(warmup):
        for case in cases:
            case.step()
    for repeat in range(repeats):
        shift = repeat % len(cases)
        order = cases[shift:] + cases[:shift]
        if (repeat // len(cases)) % 2:
            order = order[::-1]
        for case in order:
            time_case(case, steps_per_repeat)


def summarise(cases: list[Case]) -> dict[str, dict[str, float]]:
    """Per architecture: median step times (ms) of gate and none, their ratio, and the median paired
    ratio, for the wall clock, the thread CPU clock, and the CPU time of each half of the step."""
    by_name = {case.name: case for case in cases}
    out = {}
    for arch in sorted({case.arch for case in cases}):
        gate, none = by_name[f"{arch}/gate"], by_name[f"{arch}/none"]
        row = {"gate_params": sum(p.numel() for p in gate.model.parameters()),
               "none_params": sum(p.numel() for p in none.model.parameters()),
               "gate_tensors": len(list(gate.model.parameters())),
               "none_tensors": len(list(none.model.parameters()))}
        for clock in ("wall", "cpu", "cpu_forward_backward", "cpu_update"):
            g, n = getattr(gate, clock), getattr(none, clock)
            row[f"{clock}_gate_ms"] = 1e3 * statistics.median(g)
            row[f"{clock}_none_ms"] = 1e3 * statistics.median(n)
            row[f"{clock}_ratio"] = statistics.median(g) / statistics.median(n)
            row[f"{clock}_paired_ratio"] = statistics.median(a / b for a, b in zip(g, n))
        fixed = by_name.get(f"{arch}/gate-fixed")
        if fixed is not None:
            row["cpu_fixed_gate_ms"] = 1e3 * statistics.median(fixed.cpu)
            row["cpu_fixed_gate_ratio"] = statistics.median(fixed.cpu) / statistics.median(none.cpu)
        out[arch] = row
    return out


def profile_case(case: Case, steps: int) -> dict[tuple[str, str], tuple[float, float]]:
    """``torch.profiler`` over ``steps`` steps of ``case`` -> {(op, input shapes): (calls per step,
    self CPU µs per step)}."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(steps):
            case.step()
    return {(e.key, str(e.input_shapes)): (e.count / steps, e.self_cpu_time_total / steps)
            for e in prof.key_averages(group_by_input_shape=True)}


def profile_difference(cases: list[Case], steps: int, top: int) -> dict[str, dict]:
    """Per architecture: the calls the gates add. An (op, input shapes) pair called more often per step
    with ``gate`` than with ``none`` is charged its mean self CPU time per call times the extra calls;
    pairs called equally often do the same work in both. Largest first, grouped over shapes by op too."""
    by_name = {case.name: case for case in cases}
    result = {}
    for arch in sorted({case.arch for case in cases}):
        gate = profile_case(by_name[f"{arch}/gate"], steps)
        none = profile_case(by_name[f"{arch}/none"], steps)
        added: dict[tuple[str, str], dict[str, float]] = {}
        for key, (calls, us) in gate.items():
            more = calls - none.get(key, (0.0, 0.0))[0]
            if more > 0:
                added[key] = {"extra_calls": more, "extra_us": us * more / calls}
        by_op: dict[str, dict[str, float]] = {}
        for (op, _), cost in added.items():
            entry = by_op.setdefault(op, {"extra_calls": 0.0, "extra_us": 0.0})
            entry["extra_calls"] += cost["extra_calls"]
            entry["extra_us"] += cost["extra_us"]
        ranked = sorted(added.items(), key=lambda kv: -kv[1]["extra_us"])[:top]
        result[arch] = {"gate_total_us": sum(us for _, us in gate.values()),
                        "none_total_us": sum(us for _, us in none.values()),
                        "added_us": sum(v["extra_us"] for v in added.values()),
                        "added_calls": sum(v["extra_calls"] for v in added.values()),
                        "none_calls": sum(calls for calls, _ in none.values()),
                        "added_by_op": dict(sorted(by_op.items(), key=lambda kv: -kv[1]["extra_us"])[:top]),
                        "added_by_call": [{"op": op, "shapes": shapes, **cost} for (op, shapes), cost in ranked]}
    return result


def plot(cases: list[Case], path: Path) -> None:
    """Box plot of the per-repeat wall time of every case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.boxplot([[1e3 * t for t in case.wall] for case in cases], showfliers=False)
    ax.set_xticks(range(1, len(cases) + 1), [case.name for case in cases])
    ax.set_ylabel("ms per training step (wall)")
    ax.set_title("gate vs none, interleaved repeats")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=200, help="timed rounds (default 200)")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps per model first (default 10)")
    parser.add_argument("--steps-per-repeat", type=int, default=1, help="steps timed together (default 1)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--width", type=float, default=0.25, help="channel multiplier (default 0.25)")
    parser.add_argument("--archs", nargs="+", choices=tuple(ARCHITECTURES), default=list(ARCHITECTURES),
                        help="architectures to time (default both)")
    parser.add_argument("--tag", default="", help="suffix of the output file names (e.g. _w1)")
    parser.add_argument("--fixed-gate-case", action="store_true",
                        help="also time a diagnostic model whose gates get no gradient (what the multiply costs)")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--device", default="cpu",
                        help="cpu (default) or cuda[:N]; on a GPU only the wall-clock ratio is meaningful")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", action="store_true", help="always print the profiler comparison")
    parser.add_argument("--profile-steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for JSON and PNG")
    args = parser.parse_args(argv)
    if min(args.repeats, args.steps_per_repeat, args.batch_size, args.threads, args.profile_steps) < 1 \
            or args.warmup < 0 or not args.width > 0:
        parser.error("--repeats, --steps-per-repeat, --batch-size, --threads, --profile-steps must be >= 1, "
                     "--warmup >= 0, --width > 0")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here")
    batch = torch.bernoulli(torch.full((args.batch_size, *INPUT_SHAPE), 0.3),
                            generator=torch.Generator().manual_seed(args.seed)).to(device)
    cases = [make_case(arch, kind, batch, args.width, args.seed, device=device) for arch in args.archs
             for kind in KINDS]
    if args.fixed_gate_case:
        cases += [make_case(arch, Conditioning.GATE, batch, args.width, args.seed, True, device)
                  for arch in args.archs]
    started = time.perf_counter()
    measure(cases, args.repeats, args.warmup, args.steps_per_repeat)
    summary = summarise(cases)
    print(f"batch {args.batch_size} of {INPUT_SHAPE}, width {args.width}, {args.device}, {args.threads} thread(s), "
          f"medians of {args.repeats} interleaved repeats ({time.perf_counter() - started:.0f} s)")
    for arch, row in summary.items():
        extra = 100.0 * (row["gate_params"] / row["none_params"] - 1.0)
        print(f"{arch:>7}: gate {row['wall_gate_ms']:.2f} ms, none {row['wall_none_ms']:.2f} ms, "
              f"wall ratio {row['wall_ratio']:.3f} (paired {row['wall_paired_ratio']:.3f}), "
              f"CPU ratio {row['cpu_ratio']:.3f} (paired {row['cpu_paired_ratio']:.3f}); goal <= {GOAL}")
        print(f"         CPU ms: forward+backward {row['cpu_forward_backward_gate_ms']:.2f} vs "
              f"{row['cpu_forward_backward_none_ms']:.2f} (ratio {row['cpu_forward_backward_ratio']:.3f}), "
              f"Adam {row['cpu_update_gate_ms']:.2f} vs {row['cpu_update_none_ms']:.2f} "
              f"(ratio {row['cpu_update_ratio']:.3f}); params {row['none_params']:,} -> {row['gate_params']:,} "
              f"(+{extra:.2f} %) in {row['none_tensors']} -> {row['gate_tensors']} tensors")
        if "cpu_fixed_gate_ratio" in row:
            print(f"         gates held fixed (feature maps multiplied, no gate gradient or update): CPU "
                  f"{row['cpu_fixed_gate_ms']:.2f} ms, ratio {row['cpu_fixed_gate_ratio']:.3f} to none")
    over = [arch for arch, row in summary.items() if min(row["wall_ratio"], row["cpu_ratio"]) > GOAL]
    profiled = None
    if args.profile or over:
        profiled = profile_difference(cases, args.profile_steps, 8)
        for arch, row in profiled.items():
            print(f"{arch}: profiled self CPU per step: gate {row['gate_total_us'] / 1e3:.2f} ms, none "
                  f"{row['none_total_us'] / 1e3:.2f} ms; the gates add {row['added_calls']:.0f} op calls to "
                  f"{row['none_calls']:.0f}, costing {row['added_us'] / 1e3:.2f} ms "
                  f"({100 * row['added_us'] / row['none_total_us']:.1f} % of none). By op:")
            for op, cost in row["added_by_op"].items():
                print(f"    {op:<60} {cost['extra_calls']:>5.0f} calls {cost['extra_us']:>9.1f} µs")
            print("  largest single (op, input shapes):")
            for cost in row["added_by_call"][:5]:
                print(f"    {cost['op']} {cost['shapes'][:70]:<70} {cost['extra_calls']:>4.0f} calls "
                      f"{cost['extra_us']:>8.1f} µs")
    record = {"benchmark": "conv_step_overhead", "goal": GOAL, "summary": summary, "profile": profiled,
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine()}
    stem = args.out / f"conv_step_overhead{args.tag}"
    stem.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    plot(cases, stem.with_suffix(".png"))
    print(f"wrote {stem.with_suffix('.json')} and {stem.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
