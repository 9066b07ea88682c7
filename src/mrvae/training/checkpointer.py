"""The checkpoint of one ``fit``: room checked before training, resumed from, written by rank 0 only
while every parameter is finite (so a bad step never replaces the last good state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..config import __version__
from ..config import TrainConfig, to_dict
from .checkpoint import CheckpointError, check_checkpoint_folder, estimate_checkpoint_bytes, load_checkpoint, save_checkpoint
from .distributed import run_on_main
from .reporting import MetricsWriter
from .trainer import NonFiniteError, Trainer

#: Training settings that may differ between a checkpoint and the run that resumes it: they change
#: where files go and how often, or how fast the same steps run (``compile`` rounds differently, no more).
RESUMABLE_CHANGES = frozenset({"steps", "checkpoint_every", "log_every", "device", "compile", "loader_workers"})


def _check_same_settings(path: Path, saved: object, current: dict[str, Any]) -> None:
    """``CheckpointError`` naming each training setting that differs from the checkpoint's."""
    if not isinstance(saved, dict):
        raise CheckpointError(f"checkpoint {path} is malformed (no 'train_config' entry); it cannot be resumed")
    defaults = to_dict(TrainConfig())  # a setting newer than the checkpoint had its default value then
    differ = [f"{key} {saved.get(key, defaults.get(key))!r} -> {value!r}" for key, value in current.items()
              if key not in RESUMABLE_CHANGES and saved.get(key, defaults.get(key)) != value]
    differ += [f"{key} {saved[key]!r} (unknown to this version)" for key in saved if key not in current]
    if differ:
        raise CheckpointError(f"checkpoint {path} was trained with other settings: {'; '.join(differ)}; resume "
                              f"with the checkpoint's settings or start a new run")


class Checkpointer:
    """Checkpoints of one model at ``path`` (none when it is None), tagged ``tag``, with the entries of
    ``extra`` beside the training state. Every method is collective under DDP."""

    def __init__(self, path: Path | None, tag: str, extra: dict[str, Any], model: torch.nn.Module) -> None:
        self.path, self.tag, self.extra = path, tag, extra
        if path is not None:
            needed = estimate_checkpoint_bytes(model)
            run_on_main(lambda: check_checkpoint_folder(path, needed))

    def resume(self, trainer: Trainer, metrics: MetricsWriter | None = None) -> bool:
        """Load the checkpoint into ``trainer`` (and ``metrics``' running sums) if there is one -> whether it
        did. One of another tag, trained with other settings, or missing parts is refused (CheckpointError)."""
        if self.path is None or not run_on_main(self.path.exists):
            return False
        # on the CPU: RNG states must stay CPU tensors; weights and optimiser state are copied or
        # moved to the model's device by their load_state_dict
        state = load_checkpoint(self.path)
        if state.get("tag") != self.tag:
            raise CheckpointError(f"checkpoint {self.path} belongs to {state.get('tag')!r}, not {self.tag!r}")
        _check_same_settings(self.path, state.get("train_config"), to_dict(trainer.config))
        try:
            trainer.load_state_dict(state, self.path)
            if metrics is not None and "metrics_state" in state:
                metrics.load_state_dict(state["metrics_state"])
        except CheckpointError:
            raise
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
            missing = f"no {exc.args[0]!r} entry" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
            raise CheckpointError(f"checkpoint {self.path} is malformed ({missing}); "
                                  f"it cannot be resumed") from None
        return True

    def kept_note(self) -> str:
        """What a failed training leaves: the path of the last good checkpoint, or that there is none."""
        if self.path is not None and run_on_main(self.path.exists):
            return f"the last checkpoint was kept ({self.path})"
        return "no checkpoint had been written yet"

    def save(self, trainer: Trainer, metrics: MetricsWriter | None = None) -> None:
        """Write ``trainer``'s state; ``NonFiniteError`` (and the previous file kept) if a parameter is not finite."""
        if self.path is None:
            return
        params = list(trainer.model.named_parameters())
        finite = torch.stack([torch.isfinite(p).all() for _, p in params]).all() if params else torch.tensor(True)
        bad = [] if bool(finite) else [name for name, p in params if not bool(torch.isfinite(p).all())]
        if bad:
            raise NonFiniteError(f"non-finite parameters after step {trainer.step} ({', '.join(bad[:3])}); "
                                 f"not checkpointed")
        beta_range = trainer.beta_range
        state = {"package_version": __version__, "tag": self.tag, "train_config": to_dict(trainer.config),
                 "beta_range": [beta_range.low, beta_range.high], **self.extra, **trainer.state_dict()}
        if metrics is not None:
            state["metrics_state"] = metrics.state_dict()
        path = self.path
        try:
            run_on_main(lambda: save_checkpoint(state, path))
        except OSError as exc:  # a full disk: name the file (torch's write errors do not)
            if exc.filename is not None:
                raise
            raise OSError(exc.errno, f"{exc.strerror or exc} (writing the checkpoint)", str(path)) from exc
