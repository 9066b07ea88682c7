"""Training-step time of the gated model divided by the same network with conditioning ``none``, for every
architecture, through the step ``fit()`` takes (``Trainer.train_step``: batch, β draw, forward, β-objective,
backward, gradient bookkeeping, fused Adam, schedule).

The models of one run are timed interleaved in one process: after a warm-up, every repeat times each
case once (``--steps-per-repeat`` steps), in an order that rotates from repeat to repeat, and the ratio
of the median step times gate / none is printed per architecture, for the wall clock and for the
calling thread's CPU time (steadier on a shared machine; use one thread), with images per second.
``--variants compiled compiled-none`` adds the two models with the step's forward under
``torch.compile``, as ``--train.compile true`` runs it (compile time is spent in the warm-up and reported);
``autograd`` a gated model whose gates run in plain autograd instead of the fused nodes (``gates.GatedUnits``
for Linear layers, ``gates.GatedProduct`` for feature maps); ``constant`` one whose layers multiply their
output by a fixed tensor instead of gates (no gate computed, no gate gradient): the floor any gate pays.

Acceptance goals (issue 17): ≤ 1.03 for ResNet (width 1) and ConvVAE, ≤ 1.10 for the default MLP; every
architecture (mlp, linear, conv, resnet, hierarchical, tcvae, lstm) can be timed, with its images
(examples) per second.

    python benchmarks/gate_overhead.py --archs mlp --repeats 200
    python benchmarks/gate_overhead.py --archs resnet conv --width 1 --batch-size 64 --repeats 20
    python benchmarks/gate_overhead.py --archs mlp --variants compiled compiled-none --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mrvae.config import DataConfig, ModelConfig, RunConfig, TrainConfig
from mrvae.data.base import ArrayDataset, DataInfo, DataSplits
from mrvae.layers import ConditionedLayer, Conditioning
from mrvae.models.registry import build_model
from mrvae.training.distributed import DistInfo
from mrvae.training.trainer import Trainer

#: Gate / none goals of issue 17 (none for the other architectures: their ratio and images/s are reported).
GOALS = {"mlp": 1.10, "conv": 1.03, "resnet": 1.03}
#: Each architecture's data: the default digits' shape for the MLP and the linear VAE (flattened, Gaussian),
#: binary 28×28 images for the image models, 64×64 for the β-TCVAE (dsprites), 20-token sentences for the LSTM.
DATA = {"mlp": ((1, 8, 8), "bernoulli"), "linear": ((64,), "gaussian"), "conv": ((1, 28, 28), "bernoulli"),
        "resnet": ((1, 28, 28), "bernoulli"), "hierarchical": ((1, 28, 28), "bernoulli"),
        "tcvae": ((1, 64, 64), "bernoulli"), "lstm": ((20,), "categorical")}
VOCABULARY = 200
VARIANTS = ("compiled", "compiled-none", "autograd", "constant")


@dataclass
class Case:
    """One timed trainer: architecture, variant (gate, none, compiled, compiled-none) and its timings."""

    arch: str
    variant: str
    trainer: Trainer
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    warmup_s: float = 0.0

    def step(self) -> None:
        if self.variant not in ("autograd", "constant"):
            self.trainer.train_step()
            return
        name = "fused_gate_kind" if self.variant == "autograd" else "forward"
        original = getattr(ConditionedLayer, name)
        setattr(ConditionedLayer, name, _no_fused_node if self.variant == "autograd" else _constant_gate)
        try:
            self.trainer.train_step()
        finally:
            setattr(ConditionedLayer, name, original)


def _no_fused_node(layer: ConditionedLayer, y: torch.Tensor) -> None:
    """Diagnostic ``autograd``: every gate in plain autograd (``y * gate``), no fused node."""
    return None


_CONSTANTS: dict[tuple, torch.Tensor] = {}


def _constant_gate(layer: ConditionedLayer, x: torch.Tensor, u: torch.Tensor | None = None,
                   relu: bool = False) -> torch.Tensor:
    """Diagnostic ``constant``: the layer's output times a fixed tensor of its shape, no gate computed and no
    gate gradient: what the product with the gates costs by itself."""
    y = layer.base(x)
    key = (id(layer), tuple(y.shape))
    if key not in _CONSTANTS:
        _CONSTANTS[key] = torch.rand(y.shape, generator=torch.Generator().manual_seed(len(_CONSTANTS))).add_(0.5)
    return torch.relu(y) * _CONSTANTS[key] if relu else y * _CONSTANTS[key]


def make_case(arch: str, variant: str, width: float, batch_size: int, seed: int,
              device: torch.device = torch.device("cpu")) -> Case:
    """A Trainer over random binary data of the architecture's shape, ``gate`` or ``none`` per ``variant``."""
    shape, likelihood = DATA[arch]
    generator = torch.Generator().manual_seed(seed)
    size = (max(4 * batch_size, 512), *shape)
    if likelihood == "categorical":
        data = torch.randint(1, VOCABULARY, size, generator=generator)
    elif likelihood == "gaussian":
        data = torch.randn(size, generator=generator)
    else:
        data = torch.bernoulli(torch.full(size, 0.3), generator=generator)
    info = DataInfo("benchmark", shape, likelihood, vocab_size=VOCABULARY if likelihood == "categorical" else None)
    splits = DataSplits(info, ArrayDataset(data), ArrayDataset(data[:batch_size]))
    compiled = variant.startswith("compiled")
    train = TrainConfig(steps=10**6, batch_size=batch_size, warmup_steps=10, compile=compiled)
    config = RunConfig(data=DataConfig(name="digits"), model=ModelConfig(arch=arch, width=width), train=train)
    kind = Conditioning.NONE if variant in ("none", "compiled-none") else Conditioning.GATE
    torch.manual_seed(seed)
    model = build_model(config.model, info, kind, len(data), config.train.beta_range).to(device)
    return Case(arch, variant, Trainer(model, splits, config.train, device, DistInfo()))


def measure(cases: list[Case], repeats: int, warmup: int, steps_per_repeat: int) -> None:
    """Warm each case up (compilation included), then ``repeats`` rounds timing every case once, rotating."""
    for case in cases:
        started = time.perf_counter()
        for _ in range(warmup):
            case.step()
        case.warmup_s = time.perf_counter() - started
    for repeat in range(repeats):
        shift = repeat % len(cases)
        for case in cases[shift:] + cases[:shift]:
            wall, cpu = time.perf_counter(), time.thread_time()
            for _ in range(steps_per_repeat):
                case.step()
            if case.trainer.device.type == "cuda":  # the steps' kernels are queued: wait for them
                torch.cuda.synchronize(case.trainer.device)
            case.wall.append((time.perf_counter() - wall) / steps_per_repeat)
            case.cpu.append((time.thread_time() - cpu) / steps_per_repeat)


def summarise(cases: list[Case], batch_size: int) -> dict[str, dict]:
    """Per architecture: median ms per step of every variant and each one's ratio to ``none`` (and of
    ``compiled`` to ``compiled-none``), for wall and thread-CPU time."""
    out: dict[str, dict] = {}
    for arch in dict.fromkeys(case.arch for case in cases):
        mine = {case.variant: case for case in cases if case.arch == arch}
        row: dict = {"goal": GOALS.get(arch), "warmup_s": {v: round(c.warmup_s, 2) for v, c in mine.items()}}
        for clock in ("wall", "cpu"):
            medians = {v: 1e3 * statistics.median(getattr(c, clock)) for v, c in mine.items()}
            row[f"{clock}_ms"] = medians
            row[f"{clock}_ratio"] = medians["gate"] / medians["none"]
            row[f"{clock}_images_per_s"] = {v: 1e3 * batch_size / ms for v, ms in medians.items()}
            for variant in ("autograd", "constant"):
                if variant in medians:
                    row[f"{clock}_ratio_{variant}"] = medians[variant] / medians["none"]
            if "compiled" in medians:
                reference = "compiled-none" if "compiled-none" in medians else "none"
                row[f"{clock}_ratio_compiled"] = medians["compiled"] / medians[reference]
        out[arch] = row
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", choices=tuple(DATA), default=["mlp"])
    parser.add_argument("--variants", nargs="*", choices=VARIANTS, default=[], help="diagnostic cases besides gate and none")
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier of conv / resnet (default 1)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps per case first (default 20)")
    parser.add_argument("--steps-per-repeat", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]; on a GPU read the wall ratio")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if min(args.repeats, args.batch_size, args.threads, args.steps_per_repeat) < 1 or args.warmup < 1:
        parser.error("--repeats, --batch-size, --threads, --steps-per-repeat and --warmup must be >= 1")
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: CUDA is not available here")
    variants = ["gate", "none", *args.variants]
    cases = [make_case(arch, variant, args.width, args.batch_size, args.seed, device)
             for arch in args.archs for variant in variants]
    started = time.perf_counter()
    measure(cases, args.repeats, args.warmup, args.steps_per_repeat)
    summary = summarise(cases, args.batch_size)
    print(f"Trainer.train_step, batch {args.batch_size}, width {args.width}, {device}, {args.threads} thread(s), medians of "
          f"{args.repeats} interleaved repeats ({time.perf_counter() - started:.0f} s), torch {torch.__version__}")
    for arch, row in summary.items():
        times = ", ".join(f"{v} {ms:.2f}" for v, ms in row["cpu_ms"].items())
        rates = ", ".join(f"{v} {rate:.0f}" for v, rate in row["wall_images_per_s"].items())
        goal = row["goal"]
        verdict = "no goal" if goal is None else \
            f"{'meets' if min(row['wall_ratio'], row['cpu_ratio']) <= goal else 'misses'} the goal <= {goal}"
        print(f"{arch:>12}: CPU ms per step: {times}; images/s (wall): {rates}")
        print(f"              gate / none: CPU {row['cpu_ratio']:.3f}, wall {row['wall_ratio']:.3f} ({verdict})")
        for variant in ("autograd", "constant"):
            if f"cpu_ratio_{variant}" in row:
                print(f"              {variant} gate / none: CPU {row[f'cpu_ratio_{variant}']:.3f}, "
                      f"wall {row[f'wall_ratio_{variant}']:.3f}")
        if "cpu_ratio_compiled" in row:
            print(f"              compiled gate / compiled none: CPU {row['cpu_ratio_compiled']:.3f}, "
                  f"wall {row['wall_ratio_compiled']:.3f}")
        if any(v.startswith("compiled") for v in row["warmup_s"]):
            print(f"              warm-up seconds ({args.warmup} steps, compilation included): {row['warmup_s']}")
    if args.json is not None:
        record = {"benchmark": "gate_overhead", "summary": summary, "settings": vars(args) | {"json": str(args.json)},
                  "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine()}
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
