"""One method of a run: its training settings, training it into the run folder, loading it back, its curve."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..beta import BetaRange
from ..config import EvalConfig, Method, ModelConfig, RunConfig, TrainConfig, stored_run_config, to_dict
from ..data import DataInfo, DataSplits, load_data
from ..evaluation.curves import RDCurve
from ..evaluation.evaluate import evaluate_curve
from ..models.base import VAE
from ..models.registry import build_model
from ..training.checkpoint import CheckpointError, load_checkpoint, load_model_state
from ..training.loop import FitFiles, FitResult, fit
from .folder import RunDir

LogFn = Callable[[str], None]


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
                                   warmup_steps=warmup, kl_warmup=config.baseline.kl_warmup,
                                   lr=config.baseline.lr or config.train.lr)
    return config.train


def load_run_data(config: RunConfig) -> DataSplits:
    """The run's data set (``config.data``)."""
    return load_data(config.data.name, config.data.root, config.data.seed)


def data_info_dict(info: DataInfo) -> dict[str, Any]:
    """``info`` as the plain dict that checkpoints and exports store."""
    return {"name": info.name, "shape": list(info.shape), "likelihood": info.likelihood.value,
            "sigma2": info.sigma2, "vocab_size": info.vocab_size, "description": info.description}


def _data_info_from_dict(raw: dict[str, Any]) -> DataInfo:
    return DataInfo(raw["name"], tuple(raw["shape"]), raw["likelihood"], raw["sigma2"], raw["vocab_size"],
                    raw.get("description", ""))


def initial_model(config: ModelConfig, info: DataInfo, method: Method, num_train: int, beta_range: BetaRange,
                  seed: int) -> VAE:
    """The untrained model of ``method``, its weights drawn from a generator seeded with ``seed`` alone (the
    same seed gives the same weights). torch's global generator, which module initialisers draw from, is
    seeded inside a fork and left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(config, info, method.conditioning, num_train, beta_range)


def check_run(config: RunConfig, data: DataSplits, methods: tuple[Method, ...], world_size: int = 1) -> None:
    """Everything about a run that can be checked before its folder is made: each method's model builds
    for this data, a global batch fits in the training split, and the baseline βs lie in the multi-rate
    range (a comparison outside it would measure extrapolation). Raises ValueError naming the problem."""
    global_batch = config.train.batch_size * world_size
    if global_batch > len(data.train):
        raise ValueError(f"train.batch_size {config.train.batch_size} (× {world_size} processes) is larger than the "
                         f"training split of {data.info.name} ({len(data.train)} examples); lower it")
    for method in methods:
        train = method_train_config(config, method, config.baseline.betas[0] if method is Method.BETA_VAE else None)
        with torch.random.fork_rng(devices=[]):
            build_model(config.model, data.info, method.conditioning, len(data.train), train.beta_range)
    multi_rate = [m for m in methods if m is not Method.BETA_VAE]
    if multi_rate and Method.BETA_VAE in methods:
        outside = [b for b in config.baseline.betas if not config.train.beta_range.contains(b)]
        if outside:
            raise ValueError(f"baseline βs {[f'{b:g}' for b in outside]} lie outside the multi-rate range "
                             f"[{config.train.beta_low:g}, {config.train.beta_high:g}]; widen train.beta_low / "
                             f"train.beta_high or drop them")


def train_method(config: RunConfig, data: DataSplits, run: RunDir, method: Method, beta: float | None = None,
                 resume: bool = False, log: LogFn | None = None, progress_bar: bool = False,
                 tensorboard: Path | None = None) -> FitResult:
    """Build and train one model of ``method`` (at ``beta`` for a β-VAE) through ``fit()``; its checkpoint
    and metrics go to ``run`` (and to the ``tensorboard`` folder when given: ``FitFiles.tensorboard``)."""
    train = method_train_config(config, method, beta)
    model = initial_model(config.model, data.info, method, len(data.train), train.beta_range, seed=train.seed)
    tag = method.value if beta is None else f"{method.value}@{beta:.4g}"
    extra = {"run_config": to_dict(config), "method": method.value, "beta": beta,
             "data_info": data_info_dict(data.info), "num_train": len(data.train)}
    files = FitFiles(run.checkpoint(method, beta), run.metrics, tag, resume, extra, tensorboard)
    return fit(model, data, train, files, log=log, progress_bar=progress_bar)


@dataclass
class TrainedModel:
    """A model loaded from a checkpoint, with the run config, method and data info it had."""

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
        config = stored_run_config(state["run_config"])
        method = Method(state["method"])
        info = _data_info_from_dict(state["data_info"])
        beta_range = BetaRange(*state["beta_range"]) if "beta_range" in state \
            else TrainConfig(**state["train_config"]).beta_range
        model = build_model(config.model, info, method.conditioning, int(state.get("num_train", 2)), beta_range)
        weights = state["model"]
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        what = f"no {exc.args[0]!r} entry" if isinstance(exc, KeyError) else " ".join(str(exc).split())
        raise CheckpointError(f"checkpoint {path} cannot rebuild its model ({what})") from None
    load_model_state(model, weights, path)
    bad = [name for name, p in model.named_parameters() if not bool(torch.isfinite(p).all())]
    if bad:
        raise CheckpointError(f"checkpoint {path} holds non-finite weights ({', '.join(bad[:3])}); refusing to use it")
    model.to(device).eval()
    return TrainedModel(model, config, method, info, float(state.get("wall_time_s", 0.0)))


def curve_for(model: VAE, method: Method, config: RunConfig, data: DataSplits, train_wall_time_s: float,
              eval_config: EvalConfig | None = None) -> RDCurve:
    """A trained MR-VAE / YOTO model on the test split at ``num_betas`` βs of its range -> its RDCurve
    (``eval_config`` overrides the run's evaluation settings; the curve records the run's config)."""
    eval_config = eval_config or config.eval
    grid = model.beta_range.grid(eval_config.num_betas).tolist()
    return evaluate_curve(model, data.test, grid, method, eval_config, run_config=to_dict(config),
                          train_wall_time_s=train_wall_time_s)
