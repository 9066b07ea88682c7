"""``train_multirate``: one MR-VAE trained on the user's own data from Python, with its RD curve (docs/user_data.md)."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import DataConfig, EvalConfig, Method, ModelConfig, RunConfig, TrainConfig
from ..data.arrays import UserData, user_splits
from ..data.base import DataSplits
from ..evaluation.curves import RDCurve
from ..models.base import VAE
from ..objectives import Likelihood
from ..training.checkpoint import CheckpointError, load_checkpoint
from ..training.loop import FitFiles, FitResult, fit
from ..training.reporting import summary_writer_class
from .folder import RunDir, open_run_dir
from .methods import check_run, curve_for, data_info_dict, initial_model, train_method

LogFn = Callable[[str], None]
#: The one method ``train_multirate`` trains.
METHOD = Method.MRVAE
#: Where a run folder keeps its TensorBoard events (one subfolder per model tag).
TENSORBOARD_FOLDER = "tensorboard"


@dataclass
class MultiRateResult:
    """What ``train_multirate`` returns: the trained ``model`` (eval mode; ``model.beta_range`` is the range
    it was trained for), its RD ``curve`` on the test split (nats per example at ``eval_config.num_betas``
    βs of that range), the ``fit`` result (steps, training wall time, last metrics), the ``data`` it trained
    and was evaluated on (``data.info``: shape, likelihood, σ²) and the run folder (None without ``out``)."""

    model: VAE
    curve: RDCurve
    fit: FitResult
    data: DataSplits
    run: RunDir | None = None


def train_multirate(data: UserData | DataSplits, test: UserData | None = None, *,
                    model: ModelConfig = ModelConfig(), train_config: TrainConfig = TrainConfig(),
                    eval_config: EvalConfig = EvalConfig(), out: str | Path | None = None, resume: bool = False,
                    tensorboard: bool = False, log: LogFn | None = None) -> MultiRateResult:
    """Train one MR-VAE on ``data`` with ``fit`` (the loop of ``mrvae run``) and evaluate its RD curve on the
    test split.

    ``data``: the training examples as a Tensor, a numpy array or a torch Dataset, with an optional ``test``
    split (else one is held out), read by ``mrvae.data.arrays.user_splits`` with its defaults (likelihood
    and σ² inferred); or the ``DataSplits`` that ``user_splits(...)`` (or your own code) made, which states
    them. ``out``: a run folder as ``mrvae run`` writes it (config.yaml, metrics.jsonl, checkpoints/mrvae.pt,
    curves/mrvae.json; ``tensorboard/mrvae`` with ``tensorboard``), locked while in use and never
    overwritten; ``resume`` continues an interrupted run there (same settings and data). Without ``out``
    nothing is written. ``log`` receives progress lines, the first stating the data, likelihood and σ².
    """
    splits = _splits(data, test)
    config = _run_config(splits, model, train_config, eval_config)
    _check(config, splits, out, tensorboard)
    if log:
        log(f"[{METHOD.value}] {splits.info.description or splits.info.name}")
    if out is None:
        network = initial_model(config.model, splits.info, METHOD, len(splits.train), config.train.beta_range,
                                seed=config.train.seed)
        result = fit(network, splits, config.train, FitFiles(tag=METHOD.value), log=log)
        return MultiRateResult(result.model, curve_for(result.model, METHOD, config, splits, result.wall_time_s),
                               result, splits)
    if resume:
        _check_same_data(RunDir(Path(out)).checkpoint(METHOD), splits)
    with open_run_dir(out, config, resume) as run:
        board = run.root / TENSORBOARD_FOLDER if tensorboard else None
        try:
            result = train_method(config, splits, run, METHOD, resume=resume, log=log, tensorboard=board)
        except BaseException:
            if board is not None and not run.checkpoint(METHOD).exists():
                shutil.rmtree(board, ignore_errors=True)  # the folder goes back to how the failed start found it
            raise
        curve = curve_for(result.model, METHOD, config, splits, result.wall_time_s)
        curve.save(run.curve(METHOD))
        if log:
            log(f"[{METHOD.value}] curve written to {run.curve(METHOD)}")
    return MultiRateResult(result.model, curve, result, splits, run)


def _splits(data: UserData | DataSplits, test: UserData | None) -> DataSplits:
    if not isinstance(data, DataSplits):
        return user_splits(data, test)
    if test is not None:
        raise ValueError("data is already a DataSplits with its own test split; pass test=None")
    return data


def _run_config(data: DataSplits, model: ModelConfig, train: TrainConfig, evaluation: EvalConfig) -> RunConfig:
    """The RunConfig recorded in the run folder and the curve: data named by ``data.info`` (its split seed),
    MR-VAE only, a Gaussian likelihood's σ² written into the model settings (stated wherever β is), and an
    epochs budget turned into steps."""
    if data.info.likelihood is Likelihood.GAUSSIAN and model.sigma2 is None:
        model = dataclasses.replace(model, sigma2=data.info.sigma2)
    data_config = DataConfig(name=data.info.name, seed=int(data.notes.get("seed", 0)))
    config = RunConfig(data=data_config, model=model, train=train, eval=evaluation, methods=(METHOD,))
    return config.for_data(len(data.train))


def _check(config: RunConfig, data: DataSplits, out: str | Path | None, tensorboard: bool) -> None:
    """What can be checked before anything is written: batch size, model, likelihood and architecture,
    TensorBoard (installed, and a run folder to write into)."""
    categorical = data.info.likelihood is Likelihood.CATEGORICAL
    if categorical != (config.model.arch == "lstm"):
        raise ValueError(f"model arch {config.model.arch!r} cannot model {data.info.likelihood.value} data: token "
                         f"ids (categorical) need arch 'lstm', and arch 'lstm' needs token ids")
    check_run(config, data, (METHOD,))
    if tensorboard:
        if out is None:
            raise ValueError("tensorboard=True writes into the run folder: pass out as well")
        summary_writer_class()  # ImportError naming the extra, before any folder is made


def _check_same_data(checkpoint: Path, data: DataSplits) -> None:
    """A resume must see the data its checkpoint was trained on (shape, likelihood, σ², sizes, fingerprint)."""
    if not checkpoint.exists():
        return
    state = load_checkpoint(checkpoint)
    saved = (state.get("data_info"), state.get("num_train"))
    if saved != (data_info_dict(data.info), len(data.train)):
        before = saved[0].get("description") if isinstance(saved[0], dict) else saved[0]
        raise CheckpointError(f"checkpoint {checkpoint} was trained on other data ({before}); this call has "
                              f"{data.info.description}; resume with the same data or choose another out")
