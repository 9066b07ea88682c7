"""One MR-VAE against ten β-VAEs on binarised Fashion-MNIST with a CPU-sized ResNet, equal steps per model.

The comparison of the paper's Table 2 (lowest test −ELBO over the rate-distortion curve) and Fig. 1
(wall time) at CPU scale. Everything goes through the library: ``methods.train_method`` trains the
MR-VAE (β log-uniform in [0.01, 10], one β per example), ``baselines.run_sweep`` trains one β-VAE
(conditioning ``none``) at each β of logspace(−2, 1, 10) with the same net, optimiser and number of
steps, and ``evaluate_at`` / ``evaluate_curve`` measure rate, distortion (one z sample) and active
units on a fixed-binarised test subset. Printed: the per-β table (R, D, β-objective of each method
and the MR-VAE's gap to the β-VAE trained at that β), active units per β, the lowest −ELBO = R + D
of each method over its curve, and each method's wall time. Writes ``fashion_quality.json``,
``fashion_quality.png`` (RD curves) and the two RD-curve JSON files into ``--out``.

Default budget (about 11 minutes of CPU time with one thread; 27 minutes of wall time on a 2-core
machine shared with other jobs): ResNet width 0.25 (104k parameters), batch 64, 1,000 steps per model
(11 models), 10,000 training images (dynamically binarised), 2,000 test images, 20-point MR-VAE curve.
``--mr-steps`` gives the MR-VAE a different number of steps (e.g. 3,000: the cost of three β-VAEs).

    python benchmarks/fashion_quality.py --out benchmarks/results
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

from mrvae.runs.baselines import run_sweep
from mrvae.beta import baseline_betas
from mrvae.runs.comparison import COLUMNS, Comparison, rows_from_curve
from mrvae.config import (BaselineConfig, DataConfig, EvalConfig, Method, ModelConfig, RunConfig, TrainConfig,
                          to_dict)
from mrvae.evaluation.curves import RDCurve
from mrvae.data import load_data
from mrvae.data.base import ArrayDataset, DataSplits
from mrvae.data.errors import DataError
from mrvae.evaluation.evaluate import evaluate_at
from mrvae.runs.folder import RunDir, prepare_run_dir
from mrvae.runs.methods import curve_for, train_method
from mrvae.report.figures import plot_rd_curves

PAPER_TABLE2 = {"MNIST ResNet": (89.63, 87.89), "MNIST CNN": (96.35, 93.51),
                "Omniglot ResNet": (111.07, 107.78), "Omniglot CNN": (114.73, 110.98)}


def subset(dataset: ArrayDataset, count: int, seed: int) -> ArrayDataset:
    """A seeded random subset of ``count`` examples (all of them if ``count`` >= the size), labels kept."""
    if count >= len(dataset):
        return dataset
    keep = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed))[:count].sort().values
    labels = dataset.labels[keep] if dataset.labels is not None else None
    return ArrayDataset(dataset.data[keep], labels)


def load_subsets(name: str, root: str | None, num_train: int, num_test: int, seed: int) -> DataSplits:
    """The data set's splits with seeded train / test subsets (the training transform kept)."""
    data = load_data(name, root, seed)
    return DataSplits(data.info, subset(data.train, num_train, seed), subset(data.test, num_test, seed + 1),
                      train_transform=data.train_transform, notes=data.notes)


def run_config(args: argparse.Namespace) -> RunConfig:
    """The RunConfig shared by both methods: ``--steps`` per β-VAE, ``--mr-steps`` (default the same:
    equal steps per model) for the MR-VAE; the same learning-rate warm-up for all (``--warmup``, default
    a tenth of ``--steps``)."""
    mr_steps = args.mr_steps or args.steps
    return RunConfig(
        data=DataConfig(args.data, args.root, args.seed),
        model=ModelConfig(arch=args.arch, latent_dim=32, width=args.width),
        train=TrainConfig(steps=mr_steps, batch_size=args.batch_size, lr=args.lr,
                          warmup_steps=args.warmup if args.warmup is not None else max(1, args.steps // 10),
                          seed=args.seed, log_every=max(1, mr_steps // 4), checkpoint_every=mr_steps,
                          device=args.device),
        eval=EvalConfig(num_betas=args.num_betas, iwae_samples=0, batch_size=500, seed=args.seed),
        baseline=BaselineConfig(betas=tuple(baseline_betas()), steps=args.steps),
        methods=(Method.MRVAE, Method.BETA_VAE))


class SettingsError(ValueError):
    """A saved sweep given to ``--reuse-sweep`` was made with other settings."""


def reused_sweep(path: Path, config: RunConfig) -> RDCurve:
    """The β-VAE curve saved by an earlier run, if its settings equal ``config``'s apart from the
    MR-VAE's step count; else ``SettingsError`` naming the settings that differ."""
    curve = RDCurve.load(path)
    mine, theirs = to_dict(config), curve.config
    keys = [("data", None), ("model", None), ("baseline", None), ("eval", None)]
    keys += [("train", k) for k in mine["train"] if k not in ("steps", "log_every", "checkpoint_every")]
    differ = [f"{a}.{b}" if b else a for a, b in keys
              if (theirs.get(a, {}).get(b) if b else theirs.get(a)) != (mine[a][b] if b else mine[a])]
    if curve.kind is not Method.BETA_VAE or differ:
        raise SettingsError(f"{path}: not a β-VAE sweep with these settings (differ: {', '.join(differ) or 'kind'})")
    return curve


def lowest_neg_elbo(curve: RDCurve) -> tuple[float, float]:
    """(lowest R + D over the curve, the β where it is reached), nats per example."""
    values = curve.results["neg_elbo"]
    i = min(range(len(values)), key=values.__getitem__)
    return values[i], curve.betas[i]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(args: argparse.Namespace, run_root: Path) -> dict:
    """Train and evaluate both methods; print the tables; return the record written to JSON."""
    config = run_config(args)
    reused = reused_sweep(args.reuse_sweep, config) if args.reuse_sweep is not None else None
    run_dir: RunDir = prepare_run_dir(run_root, config, resume=False)
    data = load_subsets(args.data, args.root, args.num_train, args.num_test, args.seed)
    log(f"{args.data}: {len(data.train)} train / {len(data.test)} test, {args.arch} width {args.width}, "
        f"{config.train.steps} MR-VAE steps, {config.baseline.steps} per β-VAE, batch {args.batch_size}")
    betas = list(config.baseline.betas)
    comparison = Comparison(betas)

    started, cpu = time.perf_counter(), time.process_time()
    fitted = train_method(config, data, run_dir, Method.MRVAE, log=log)
    mr_curve = curve_for(fitted.model, Method.MRVAE, config, data, fitted.wall_time_s)
    mr_points = [evaluate_at(fitted.model, data.test, b, config.eval) for b in betas]
    comparison.rows[Method.MRVAE] = [{c: p[c] for c in COLUMNS} for p in mr_points]
    comparison.wall_time_s[Method.MRVAE] = time.perf_counter() - started
    mr_train, mr_cpu = fitted.wall_time_s, time.process_time() - cpu

    started, cpu = time.perf_counter(), time.process_time()
    if reused is None:
        sweep = run_sweep(config, data, run_dir, log=log)
        comparison.wall_time_s[Method.BETA_VAE] = time.perf_counter() - started
        sweep_cpu = time.process_time() - cpu
    else:
        sweep = reused
        comparison.wall_time_s[Method.BETA_VAE] = sweep.summary["train_wall_time_s"] + sweep.summary["eval_wall_time_s"]
        sweep_cpu = math.nan
    comparison.rows[Method.BETA_VAE] = rows_from_curve(sweep)
    sweep_train = sweep.summary["train_wall_time_s"]

    mr_curve.save(args.out / "fashion_quality_mrvae.json")
    sweep.save(args.out / "fashion_quality_beta_vae.json")
    plot_rd_curves([mr_curve, sweep], args.out / "fashion_quality.png",
                   title=f"{args.data} (test subset {len(data.test)}): {args.arch} width {args.width}, "
                         f"{config.train.steps} MR-VAE steps, {config.baseline.steps} per β-VAE")

    print(comparison.format_table())
    gaps = comparison.gap_percent(Method.MRVAE)
    print("active units (of 32) per β:  " + "  ".join(
        f"β={b:.3g}: MR {int(p['active_units'])} / β-VAE {int(a)}"
        for b, p, a in zip(betas, mr_points, sweep.results["active_units"])))
    mr_best, mr_beta = lowest_neg_elbo(mr_curve)
    sweep_best, sweep_beta = lowest_neg_elbo(sweep)
    print(f"lowest test −ELBO (R + D) over the curve: β-VAEs {sweep_best:.2f} nats (β = {sweep_beta:.3g}) -> "
          f"MR-VAE {mr_best:.2f} nats (β = {mr_beta:.3g}, {len(mr_curve.betas)}-point grid); "
          f"difference {mr_best - sweep_best:+.2f} nats")
    print("paper Table 2 (β-VAE -> MR-VAE, nats): " + "; ".join(
        f"{k} {a} -> {b}" for k, a, b in ((k, *v) for k, v in PAPER_TABLE2.items())))
    print(f"training wall time: MR-VAE {mr_train:.0f} s (one run), β-VAEs {sweep_train:.0f} s "
          f"({len(betas)} runs, {sweep_train / mr_train:.1f}× the MR-VAE); with evaluation: MR-VAE "
          f"{comparison.wall_time_s[Method.MRVAE]:.0f} s, β-VAEs {comparison.wall_time_s[Method.BETA_VAE]:.0f} s")
    print(f"CPU time (train + eval): MR-VAE {mr_cpu:.0f} s, " + (
        f"β-VAEs {sweep_cpu:.0f} s ({sweep_cpu / mr_cpu:.1f}×)" if math.isfinite(sweep_cpu)
        else f"β-VAEs not measured (sweep reused from {args.reuse_sweep})"))
    return {"benchmark": "fashion_quality", "comparison": comparison.to_dict(), "gap_percent": gaps,
            "active_units": {"mrvae": [p["active_units"] for p in mr_points],
                             "beta-vae": sweep.results["active_units"]},
            "neg_elbo_at_betas": {"mrvae": [p["neg_elbo"] for p in mr_points],
                                  "beta-vae": sweep.results["neg_elbo"]},
            "lowest_neg_elbo": {"mrvae": {"value": mr_best, "beta": mr_beta},
                                "beta-vae": {"value": sweep_best, "beta": sweep_beta}},
            "train_wall_time_s": {"mrvae": mr_train, "beta-vae": sweep_train},
            "cpu_time_s": {"mrvae": mr_cpu, "beta-vae": sweep_cpu},
            "steps_per_model": {"mrvae": config.train.steps, "beta-vae": config.baseline.steps},
            "num_parameters": {"mrvae": mr_curve.summary["num_parameters"],
                               "beta-vae": sweep.summary["num_parameters"]},
            "num_train": len(data.train), "num_test": len(data.test)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="fashion-mnist", help="a 28×28 binary data set (default fashion-mnist)")
    parser.add_argument("--root", default=None, help="data root (default: $MRVAE_DATA or ~/.cache/mrvae)")
    parser.add_argument("--arch", choices=("resnet", "conv"), default="resnet")
    parser.add_argument("--width", type=float, default=0.25, help="channel multiplier (default 0.25)")
    parser.add_argument("--steps", type=int, default=1000, help="training steps of every model (default 1000)")
    parser.add_argument("--mr-steps", type=int, default=None, help="MR-VAE steps if not --steps (default: equal)")
    parser.add_argument("--reuse-sweep", type=Path, default=None,
                        help="fashion_quality_beta_vae.json of an earlier run with the same settings: skip the sweep")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=None,
                        help="learning-rate warm-up steps of every model (default: a tenth of --steps)")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, ... (TrainConfig.device)")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--num-train", type=int, default=10_000, help="training subset (default 10,000)")
    parser.add_argument("--num-test", type=int, default=2_000, help="test subset (default 2,000)")
    parser.add_argument("--num-betas", type=int, default=20, help="points on the MR-VAE curve (default 20)")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (default 2)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for JSON and PNG")
    args = parser.parse_args(argv)
    if args.mr_steps is not None and args.mr_steps < 1:
        parser.error("--mr-steps must be >= 1")
    if min(args.steps, args.batch_size, args.num_train, args.num_test, args.num_betas, args.threads) < 1:
        parser.error("--steps, --batch-size, --num-train, --num-test, --num-betas and --threads must be >= 1")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        with tempfile.TemporaryDirectory(prefix="fashion_quality_") as tmp:
            record = run(args, Path(tmp) / "run")
    except DataError as err:
        print(f"fashion_quality: data not available: {err}", file=sys.stderr)
        return 2
    except SettingsError as err:
        print(f"fashion_quality: {err}", file=sys.stderr)
        return 2
    record["total_wall_time_s"] = time.perf_counter() - started
    record["total_cpu_time_s"] = time.process_time() - cpu_started
    record["settings"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    record.update(torch=torch.__version__, python=platform.python_version(), machine=platform.machine())
    (args.out / "fashion_quality.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"total wall time {record['total_wall_time_s']:.0f} s (CPU time {record['total_cpu_time_s']:.0f} s); "
          f"wrote {args.out / 'fashion_quality.json'} and {args.out / 'fashion_quality.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
