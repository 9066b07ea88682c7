"""What each ``mrvae`` subcommand does, given its parsed arguments; each returns an exit code."""

from __future__ import annotations

import math
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..config import EvalConfig, Method, RunConfig, from_dict, to_dict
from ..convert.export import export_checkpoint
from ..data import DataSplits
from ..evaluation.curves import RDCurve
from ..evaluation.targeting import beta_for_distortion, beta_for_rate
from ..models.base import VAE
from ..report.build import build_report
from ..report.figures import plot_rd_curves
from ..runs.baselines import run_sweep
from ..runs.comparison import Comparison, compare_methods
from ..runs.folder import RunDir, new_file, open_run_dir
from ..runs.methods import check_run, curve_for, data_info_dict, load_run_data, load_trained, train_method
from ..runs.pictures import write_pictures
from ..training.distributed import init_distributed, is_main_process
from ..training.runtime import resolve_device
from .data_command import check_dataset, download_dataset, list_datasets
from .sample_command import cmd_sample


def log(message: str) -> None:
    """Progress and status lines go to stderr; results go to stdout."""
    print(message, file=sys.stderr, flush=True)


def run_config_from(args: Any) -> RunConfig:
    """The RunConfig part of parsed arguments."""
    values = {key: args[key].as_dict() if hasattr(args[key], "as_dict") else args[key]
              for key in ("data", "model", "train", "eval", "baseline", "methods")}
    return from_dict(RunConfig, values)


def _progress(args: Any) -> bool:
    return sys.stderr.isatty() if args.progress is None else bool(args.progress)


def _out(args: Any, config: RunConfig) -> Path:
    """``--out``, or ``runs/<data set>`` when it is not given."""
    return Path(args.out) if args.out else Path("runs") / config.data.name


def _warn_about(config: RunConfig) -> None:
    """Settings that are valid but probably not what the user meant: one ``warning:`` line each."""
    train = config.train
    if train.warmup_steps >= train.steps:
        log(f"mrvae: warning: train.warmup_steps ({train.warmup_steps}) >= train.steps ({train.steps}): the "
            f"learning rate never finishes its warm-up; lower --train.warmup_steps")


def cmd_run(args: Any) -> int:
    """Train every method of the run, write curves, the comparison table, the plot and the report.

    Everything that can be checked is checked before the folder is made; resuming a finished run
    prints its table and changes nothing. Under torchrun every rank trains and evaluates its shard of
    the MR-VAE / YOTO with DDP and its own βs of the β-VAE sweep alone (``runs.baselines``); rank 0
    alone writes the curves, the table and the report.
    """
    config = run_config_from(args)
    info, _ = init_distributed(config.train.device)  # under torchrun: join the group before rank 0 writes --out
    data = load_run_data(config)
    config = config.for_data(len(data.train), info.world_size)  # train.epochs -> train.steps, as config.yaml records
    check_run(config, data, config.methods, info.world_size)
    _warn_about(config)
    with open_run_dir(_out(args, config), config, args.resume) as run:
        if args.resume and run.is_complete(config.methods):
            if is_main_process():
                print(Comparison.load(run.comparison).format_table())
                print(f"run in {run.root} is already complete: nothing was changed (report: {run.report})")
            return 0
        if is_main_process():
            log(f"mrvae run: data {data.info.name} ({len(data.train)} train / {len(data.test)} test), "
                f"methods {', '.join(m.value for m in config.methods)}, output {run.root}")
        curves, comparison = compare_methods(config, data, run, resume=args.resume, log=log,
                                             progress_bar=_progress(args))
        if is_main_process():
            _write_run_outputs(run, curves, comparison, data, config)
    return 0


def _write_run_outputs(run: RunDir, curves: dict[Method, RDCurve], comparison: Comparison, data: Any,
                       config: RunConfig) -> None:
    comparison.save(run.comparison)
    plot_rd_curves(list(curves.values()), run.plot, title=f"{data.info.name}: {config.model.arch} VAE")
    pictures = write_pictures(run, config, data)
    print(comparison.format_table())
    for method, curve in curves.items():
        if method is not Method.BETA_VAE:
            print(f"{method.value} curve: {curve.shape_verdict()}")
    print(f"curves: {run.root / 'curves'}  plot: {run.plot}  pictures: {pictures.parent}  metrics: {run.metrics}")
    print(f"report: {build_report(run.root)}")


def cmd_train(args: Any) -> int:
    """Train one model (``--method``, ``--beta`` for a β-VAE, for ``train.steps``) and write its checkpoint."""
    config = run_config_from(args)
    method = Method(args.method)
    if method is Method.BETA_VAE and args.beta is None:
        raise ValueError("--method beta-vae needs --beta")
    if method is Method.BETA_VAE and not (math.isfinite(args.beta) and args.beta > 0):
        raise ValueError(f"--beta must be a finite number > 0, got {args.beta:g}")
    if method is not Method.BETA_VAE and args.beta is not None:
        raise ValueError(f"--beta applies to --method beta-vae only; {method.value} trains over "
                         f"[train.beta_low, train.beta_high]")
    info, _ = init_distributed(config.train.device)
    data = load_run_data(config)
    config = config.for_data(len(data.train), info.world_size)
    if method is Method.BETA_VAE:  # one β-VAE trains the steps it is given (not the sweep's share)
        config = replace(config, baseline=replace(config.baseline, betas=(float(args.beta),),
                                                  steps=config.train.steps))
    check_run(config, data, (method,), info.world_size)
    _warn_about(config)
    with open_run_dir(_out(args, config), config, args.resume) as run:
        result = train_method(config, data, run, method, args.beta, resume=args.resume, log=log,
                              progress_bar=_progress(args))
    print(f"trained {method.value} for {result.step} steps in {result.wall_time_s:.1f} s; "
          f"checkpoint: {run.checkpoint(method, args.beta)}")
    return 0


def cmd_baseline(args: Any) -> int:
    """Train the β-VAE sweep and write ``curves/beta-vae.json``."""
    config = run_config_from(args)
    info, _ = init_distributed(config.train.device)
    data = load_run_data(config)
    config = config.for_data(len(data.train), info.world_size)
    check_run(config, data, (Method.BETA_VAE,), info.world_size)
    _warn_about(config)
    with open_run_dir(_out(args, config), config, args.resume) as run:
        curve = run_sweep(config, data, run, resume=args.resume, log=log, progress_bar=_progress(args))
        if is_main_process():
            path = curve.save(run.curve(Method.BETA_VAE))
            print(f"β-VAE sweep of {len(curve.betas)} models written to {path}")
    return 0


def _checkpoint_path(path: str) -> Path:
    p = Path(path)
    return RunDir(p).checkpoint(Method.MRVAE) if p.is_dir() else p


def cmd_curve(args: Any) -> int:
    """Evaluate a trained multi-rate checkpoint on a β grid and write its RD-curve JSON (never over a run's
    own files); with only ``--target_rate`` / ``--target_distortion``, refine from the stored curve instead."""
    path = _checkpoint_path(args.checkpoint)
    trained = load_trained(path, resolve_device(args.device))
    if trained.method is Method.BETA_VAE:
        raise ValueError(f"{path} is a single-β β-VAE; `mrvae curve` evaluates MR-VAE or YOTO checkpoints")
    eval_config = replace(trained.config.eval, num_betas=args.num_betas or trained.config.eval.num_betas)
    if args.iwae_samples is not None:
        eval_config = replace(eval_config, iwae_samples=args.iwae_samples)
    data = load_run_data(trained.config)
    targets_only = (args.target_rate is not None or args.target_distortion is not None) and args.out is None \
        and args.num_betas is None and args.iwae_samples is None
    stored = RunDir(path.parent.parent).curve(trained.method)
    if targets_only:  # nothing is written: bisection, from the stored curve's bracket when there is one
        _print_targets(args, trained.model, data, eval_config, RDCurve.load(stored) if stored.exists() else None)
        return 0
    default = f"{path.parent.parent.name or 'run'}-{trained.method.value}-curve.json"
    out = new_file(args.out or default, args.overwrite)
    curve = curve_for(trained.model, trained.method, trained.config, data, trained.wall_time_s, eval_config)
    curve.save(out)
    for beta, r, d in zip(curve.betas, curve.results["rate"], curve.results["distortion"]):
        print(f"β {beta:>9.4g}  rate {r:>9.3f}  distortion {d:>9.3f} nats")
    print(f"curve written to {out}")
    _print_targets(args, trained.model, data, eval_config, curve if eval_config == trained.config.eval else None)
    return 0


def _print_targets(args: Any, model: VAE, data: DataSplits, eval_config: EvalConfig,
                   curve: RDCurve | None) -> None:
    """The β of ``--target_rate`` / ``--target_distortion`` on the test split, refined from ``curve`` if given."""
    targets = ((args.target_rate, beta_for_rate, "rate"), (args.target_distortion, beta_for_distortion, "distortion"))
    for target, find, name in targets:
        if target is not None:
            found = find(model, data.test, target, config=eval_config, curve=curve)
            print(f"target {name} {target:g} nats: β = {found.beta:.6g} (rate {found.rate:.4f}, "
                  f"distortion {found.distortion:.4f} nats; {found.evaluations} evaluations)")


def _curve_files(inputs: list[str]) -> list[tuple[str, Path]]:
    """(source, file) of every curve: a run folder's curves/*.json, or a curve file (its run folder
    when it sits in one's curves/, else the file itself, is its source)."""
    files: list[tuple[str, Path]] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted((p / "curves").glob("*.json")) if (p / "curves").is_dir() else sorted(p.glob("*.json"))
            if not found:
                raise ValueError(f"no curve JSON files in {p}")
            files += [(p.resolve().name, f) for f in found]
        else:
            files.append((p.resolve().parent.parent.name if p.parent.name == "curves" else p.stem, p))
    return files


def cmd_plot(args: Any) -> int:
    """Plot curve JSON files (or the curves of run folders) into one PNG (never over an existing file); with
    several runs, each curve is named after its run, and each run gets its own colour."""
    out = new_file(args.out, args.overwrite)
    sources = _curve_files(args.inputs)
    curves = [RDCurve.load(f) for _, f in sources]
    if len({source for source, _ in sources}) > 1:
        for (source, _), curve in zip(sources, curves):
            curve.name = source
    plot_rd_curves(curves, out, title=args.title)
    print(f"plot written to {out}")
    return 0


def cmd_export(args: Any) -> int:
    """Fold the gates of a multi-rate checkpoint at ``--beta`` and write safetensors + JSON to a new folder."""
    if args.beta is None or args.out is None:
        raise ValueError("mrvae export needs --beta and --out")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder for model.safetensors and config.json")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise ValueError(f"--out {out} is not empty; pass --overwrite true to replace an export, or choose another "
                         f"folder")
    path = _checkpoint_path(args.checkpoint)
    trained = load_trained(path, resolve_device(args.device))
    if not trained.beta_range.contains(args.beta):
        raise ValueError(f"--beta {args.beta:g} is outside the model's training range "
                         f"[{trained.beta_range.low:g}, {trained.beta_range.high:g}]")
    config = {"run_config": to_dict(trained.config), "method": trained.method.value,
              "data_info": data_info_dict(trained.info), "checkpoint": str(path)}
    paths = export_checkpoint(trained.model, args.beta, out, config)
    print(f"exported {trained.method.value} at β = {args.beta:g}: {paths.weights} and {paths.config}")
    return 0


def cmd_report(args: Any) -> int:
    """Write the self-contained HTML report of a run directory (never over an existing page)."""
    out = new_file(args.out or RunDir(Path(args.run_dir)).report, args.overwrite)
    path = build_report(args.run_dir, out)
    print(f"report written to {path}")
    return 0


def cmd_data(args: Any) -> int:
    """``mrvae data list | check NAME | download NAME``; check exits 1 when files are missing."""
    action = args.action
    sub = args[action]
    if action == "list":
        print(list_datasets(sub.root))
        return 0
    if action == "check":
        ok, report = check_dataset(sub.name, sub.root)
        print(report)
        return 0 if ok else 1
    print(download_dataset(sub.name, sub.root, progress=sys.stderr.isatty()))
    return 0


COMMANDS = {"run": cmd_run, "train": cmd_train, "baseline": cmd_baseline, "curve": cmd_curve, "plot": cmd_plot,
            "export": cmd_export, "data": cmd_data, "report": cmd_report,
            "sample": cmd_sample}
