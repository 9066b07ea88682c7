"""A run directory and the steps of ``mrvae run``: train one method, evaluate it, load it back.

Layout of a run directory::

    config.yaml                 the resolved RunConfig
    metrics.jsonl               training metrics of every method, one JSON object per line
    checkpoints/mrvae.pt        one checkpoint per trained model (beta-vae/beta=0.01.pt for the sweep)
    curves/mrvae.json           RD-curve JSON per method (see mrvae.evaluation.curves)
    comparison.json             the per-β table of every method at the baseline βs
    plots/rd_curve.png          the rate-distortion figure
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..beta import BetaRange
from ..training.checkpoint import CheckpointError, load_checkpoint, load_model_state
from ..config import Method, RunConfig, TrainConfig, from_dict, load_yaml, save_yaml, to_dict
from ..evaluation.curves import RDCurve
from ..data import DataInfo, DataSplits, load_data
from ..training.distributed import init_distributed, run_on_main
from ..evaluation.evaluate import evaluate_curve
from ..models.base import VAE
from ..models.registry import build_model
from ..training.loop import FitResult, fit

LogFn = Callable[[str], None]


class RunDirError(ValueError):
    """The output folder cannot be used: not writable, or it already holds another run."""


@dataclass(frozen=True)
class RunDir:
    """Paths inside one run directory (see module docstring)."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    def checkpoint(self, method: Method, beta: float | None = None) -> Path:
        if beta is None:
            return self.root / "checkpoints" / f"{method.value}.pt"
        return self.root / "checkpoints" / method.value / f"beta={beta:.4g}.pt"

    def curve(self, method: Method) -> Path:
        return self.root / "curves" / f"{method.value}.json"

    @property
    def comparison(self) -> Path:
        return self.root / "comparison.json"

    @property
    def plot(self) -> Path:
        return self.root / "plots" / "rd_curve.png"


def check_writable(folder: Path) -> None:
    """Raise ``RunDirError`` unless ``folder`` can be created and written to (checked by a probe file)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".write-probe-{os.getpid()}"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as exc:
        raise RunDirError(f"output folder {folder} is not writable: {exc.strerror or exc}") from exc


def prepare_run_dir(out: str | Path, config: RunConfig, resume: bool) -> RunDir:
    """Create (or, with ``resume``, reopen) a run directory for ``config``; never overwrites a run.

    A non-empty folder without ``resume`` is refused; with ``resume`` its ``config.yaml`` must match.
    Under torchrun this joins the process group; rank 0 alone checks and writes the folder and every
    rank gets its outcome (the same ``RunDirError`` everywhere if it fails).
    """
    init_distributed(config.train.device)
    return run_on_main(lambda: _prepare_run_dir(RunDir(Path(out)), config, resume))


def _prepare_run_dir(run: RunDir, config: RunConfig, resume: bool) -> RunDir:
    if run.root.exists() and not run.root.is_dir():
        raise RunDirError(f"output path {run.root} exists and is not a folder")
    existing = run.root.is_dir() and any(run.root.iterdir())
    if existing and not resume:
        raise RunDirError(f"output folder {run.root} is not empty; pass --resume to continue that run "
                          f"or choose another --out")
    check_writable(run.root)
    if resume and run.config.exists():
        try:
            previous = load_yaml(run.config)
        except (ValueError, TypeError) as exc:
            raise RunDirError(f"{run.config} is not a readable run config: {exc}") from exc
        if to_dict(previous) != to_dict(config):
            raise RunDirError(f"--resume: the settings differ from those in {run.config}; "
                              f"resume with the same settings (or --config {run.config})")
    else:
        save_yaml(config, run.config)
    return run


def method_train_config(config: RunConfig, method: Method, beta: float | None = None) -> TrainConfig:
    """The TrainConfig of ``method``: the run's for MR-VAE / YOTO, a fixed β and the sweep's steps
    (and KL warm-up) for one β-VAE of the baseline sweep."""
    if method is Method.BETA_VAE:
        if beta is None:
            raise ValueError("a β-VAE run needs its β")
        steps = config.baseline.steps_for(config.train)
        # the same learning-rate warm-up (in steps) as the multi-rate run: shortening it in proportion
        # to the shorter run makes the β-VAEs much worse (benchmarks/README.md, "warm-up"), which
        # would flatter the MR-VAE
        warmup = min(config.train.warmup_steps, steps)
        return dataclasses.replace(config.train, beta_low=beta, beta_high=beta, steps=steps,
                                   warmup_steps=warmup, kl_warmup=config.baseline.kl_warmup)
    return config.train


def data_info_dict(info: DataInfo) -> dict[str, Any]:
    return {"name": info.name, "shape": list(info.shape), "likelihood": info.likelihood.value,
            "sigma2": info.sigma2, "vocab_size": info.vocab_size, "description": info.description}


def train_method(config: RunConfig, data: DataSplits, run: RunDir, method: Method, beta: float | None = None,
                 resume: bool = False, log: LogFn | None = None, progress_bar: bool = False) -> FitResult:
    """Build and train one model of ``method`` (at ``beta`` for a β-VAE) through ``fit()``."""
    train = method_train_config(config, method, beta)
    torch.manual_seed(train.seed)
    model = build_model(config.model, data.info, method.conditioning, len(data.train), train.beta_range)
    tag = method.value if beta is None else f"{method.value}@{beta:.4g}"
    extra = {"run_config": to_dict(config), "method": method.value, "beta": beta,
             "data_info": data_info_dict(data.info), "num_train": len(data.train)}
    return fit(model, data, train, checkpoint_path=run.checkpoint(method, beta), metrics_path=run.metrics,
               tag=tag, resume=resume, checkpoint_extra=extra, log=log, progress_bar=progress_bar)


@dataclass
class TrainedModel:
    """A model loaded from a checkpoint, with the run config, method, β range and data info it had."""

    model: VAE
    config: RunConfig
    method: Method
    info: DataInfo
    wall_time_s: float

    @property
    def beta_range(self) -> BetaRange:
        """The β range the model was trained for (the model carries it)."""
        return self.model.beta_range


def load_trained(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """Rebuild a trained model from a checkpoint written by ``train_method`` (strict, weights_only)."""
    state = load_checkpoint(path)
    try:
        config = from_dict(RunConfig, state["run_config"])
        method = Method(state["method"])
        raw = state["data_info"]
        info = DataInfo(raw["name"], tuple(raw["shape"]), raw["likelihood"], raw["sigma2"], raw["vocab_size"],
                        raw.get("description", ""))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"checkpoint {path} lacks the run settings needed to rebuild its model ({exc})") from exc
    beta_range = BetaRange(*state["beta_range"]) if "beta_range" in state else TrainConfig(**state["train_config"]).beta_range
    model = build_model(config.model, info, method.conditioning, int(state.get("num_train", 2)), beta_range)
    load_model_state(model, state["model"], path)
    model.to(device).eval()
    return TrainedModel(model, config, method, info, float(state.get("wall_time_s", 0.0)))


def curve_for(trained: FitResult, config: RunConfig, data: DataSplits, method: Method) -> RDCurve:
    """Evaluate an MR-VAE / YOTO model on the test split at the run's β grid -> RDCurve."""
    grid = trained.model.beta_range.grid(config.eval.num_betas).tolist()
    return evaluate_curve(trained.model, data.test, grid, config.eval, name=method.value,
                          kind=method.value, run_config=to_dict(config), train_wall_time_s=trained.wall_time_s)


def load_run_data(config: RunConfig) -> DataSplits:
    """The run's data set (``config.data``)."""
    return load_data(config.data.name, config.data.root, config.data.seed)
