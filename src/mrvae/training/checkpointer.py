"""The checkpoint of one ``fit``: room checked before training, resumed from, written by rank 0 only
while every parameter is finite (so a bad step never replaces the last good state)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from .. import __version__
from ..config import to_dict
from .checkpoint import CheckpointError, check_checkpoint_folder, estimate_checkpoint_bytes, load_checkpoint, save_checkpoint
from .distributed import run_on_main
from .trainer import NonFiniteError, Trainer


class Checkpointer:
    """Checkpoints of one model at ``path`` (none when it is None), tagged ``tag``, with the entries of
    ``extra`` beside the training state. Every method is collective under DDP."""

    def __init__(self, path: Path | None, tag: str, extra: dict[str, Any], model: torch.nn.Module) -> None:
        self.path, self.tag, self.extra = path, tag, extra
        if path is not None:
            needed = estimate_checkpoint_bytes(model)
            run_on_main(lambda: check_checkpoint_folder(path, needed))

    def resume(self, trainer: Trainer) -> bool:
        """Load the checkpoint into ``trainer`` if there is one -> whether it did; one of another tag is refused."""
        if self.path is None or not run_on_main(self.path.exists):
            return False
        # on the CPU: RNG states must stay CPU tensors; weights and optimiser state are copied or
        # moved to the model's device by their load_state_dict
        state = load_checkpoint(self.path)
        if state.get("tag") != self.tag:
            raise CheckpointError(f"checkpoint {self.path} belongs to {state.get('tag')!r}, not {self.tag!r}")
        trainer.load_state_dict(state, self.path)
        return True

    def save(self, trainer: Trainer) -> None:
        """Write ``trainer``'s state; ``NonFiniteError`` (and the previous file kept) if a parameter is not finite."""
        if self.path is None:
            return
        bad = [name for name, p in trainer.model.named_parameters() if not bool(torch.isfinite(p).all())]
        if bad:
            raise NonFiniteError(f"non-finite parameters after step {trainer.step} ({', '.join(bad[:3])}); "
                                 f"not checkpointed, the last checkpoint was kept")
        beta_range = trainer.beta_range
        state = {"package_version": __version__, "tag": self.tag, "train_config": to_dict(trainer.config),
                 "beta_range": [beta_range.low, beta_range.high], **self.extra, **trainer.state_dict()}
        path = self.path
        run_on_main(lambda: save_checkpoint(state, path))
