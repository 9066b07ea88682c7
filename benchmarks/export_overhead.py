"""Inference step time of a model folded at one β, divided by the never-gated model of the same architecture.

Two architectures: a user's CNN VAE written with no knowledge of mrvae (28×28, Conv 16-32 / ConvT 32-16,
converted with ``make_multirate``) and the library's default ``MLPVAE`` on (1, 8, 8). For each, three
models run interleaved in one process (their order rotates every repeat) after a warm-up: the MR-VAE
(gates live), the same MR-VAE folded at β = 0.5 by ``mrvae.convert.fold``, and the plain model (the
user's class / conditioning ``none``). One step is a forward pass of a batch under ``torch.no_grad``.
The folded / plain ratio should be ≈ 1 (folding leaves no extra work); gated / plain is for reference.

    python benchmarks/export_overhead.py --repeats 100 --json export_overhead.json
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
from torch import nn

from mrvae import BetaRange, MLPVAE, ModelConditioning
from mrvae.convert import fold, make_multirate, paper_exclude
from mrvae.layers import Conditioning

BETA = 0.5


class UserCNNVAE(nn.Module):
    """A tutorial-style conv VAE: (B, 1, 28, 28) -> (logits, mean, log-variance)."""

    def __init__(self, latent: int = 16) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 4, 2, 1)   # 28 -> 14
        self.conv2 = nn.Conv2d(16, 32, 4, 2, 1)  # 14 -> 7
        self.fc_mu = nn.Linear(32 * 7 * 7, latent)
        self.fc_logvar = nn.Linear(32 * 7 * 7, latent)
        self.fc_dec = nn.Linear(latent, 32 * 7 * 7)
        self.deconv1 = nn.ConvTranspose2d(32, 16, 4, 2, 1)  # 7 -> 14
        self.deconv2 = nn.ConvTranspose2d(16, 1, 4, 2, 1)   # 14 -> 28

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = torch.relu(self.conv2(torch.relu(self.conv1(x)))).flatten(1)
        mu, log_var = self.fc_mu(h), self.fc_logvar(h)
        h = torch.relu(self.fc_dec(mu)).reshape(-1, 32, 7, 7)
        return self.deconv2(torch.relu(self.deconv1(h))), mu, log_var


def cnn_steps(batch_size: int) -> dict[str, Callable[[], object]]:
    """Forward closures of the converted CNN: gated (in a β context), folded, and the user's plain model."""
    torch.manual_seed(0)
    plain = UserCNNVAE().eval()
    exclude = paper_exclude(plain, ["fc_mu", "fc_logvar"]) + ["fc_dec"]  # conv models: z -> map ungated too
    mr = make_multirate(plain, BetaRange(), exclude=exclude).eval()
    folded = fold(mr, BETA).eval()
    x = torch.rand(batch_size, 1, 28, 28)

    def gated() -> object:
        with mr.beta(BETA):
            return mr(x)

    return {"gated": gated, "folded": lambda: folded(x), "plain": lambda: plain(x)}


def mlp_steps(batch_size: int) -> dict[str, Callable[[], object]]:
    """Forward closures of the library MLPVAE: gated (with u), folded, and conditioning ``none``."""
    torch.manual_seed(0)
    gated = MLPVAE((1, 8, 8)).eval()
    folded = fold(gated, BETA).eval()
    plain = MLPVAE((1, 8, 8), conditioning=ModelConditioning(kind=Conditioning.NONE)).eval()
    x = torch.rand(batch_size, 1, 8, 8)
    u = gated.u_of(torch.full((batch_size,), BETA))
    return {"gated": lambda: gated(x, u, sample=False), "folded": lambda: folded(x, None, sample=False),
            "plain": lambda: plain(x, None, sample=False)}


def timed(step: Callable[[], object], steps: int) -> float:
    """Seconds per step over ``steps`` consecutive steps."""
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def measure(steps: dict[str, Callable[[], object]], repeats: int, warmup: int, steps_per_repeat: int) -> dict:
    """Interleaved timings (order rotated every repeat); medians in ms and the ratios to ``plain``."""
    names = list(steps)
    times: dict[str, list[float]] = {name: [] for name in names}
    with torch.no_grad():
        for _ in range(warmup):
            for step in steps.values():
                step()
        for repeat in range(repeats):
            shift = repeat % len(names)
            for name in names[shift:] + names[:shift]:
                times[name].append(timed(steps[name], steps_per_repeat))
    medians = {name: statistics.median(values) for name, values in times.items()}
    paired = {name: statistics.median(a / b for a, b in zip(times[name], times["plain"])) for name in names}
    return {
        "folded_over_plain": medians["folded"] / medians["plain"],
        "gated_over_plain": medians["gated"] / medians["plain"],
        "median_paired_folded_over_plain": paired["folded"],
        "median_paired_gated_over_plain": paired["gated"],
        "step_ms": {name: 1e3 * value for name, value in medians.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--steps-per-repeat", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = {
        "benchmark": "export_overhead", "beta": BETA, "batch_size": args.batch_size, "repeats": args.repeats,
        "threads": args.threads, "torch": torch.__version__, "python": platform.python_version(),
        "machine": platform.machine(),
    }
    for name, build in (("user_cnn", cnn_steps), ("library_mlp", mlp_steps)):
        result = measure(build(args.batch_size), args.repeats, args.warmup, args.steps_per_repeat)
        results[name] = result
        ms = result["step_ms"]
        print(f"{name:12s} folded/plain {result['folded_over_plain']:.3f} "
              f"(paired {result['median_paired_folded_over_plain']:.3f})   "
              f"gated/plain {result['gated_over_plain']:.3f}   "
              f"step ms: plain {ms['plain']:.3f}, folded {ms['folded']:.3f}, gated {ms['gated']:.3f}")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
