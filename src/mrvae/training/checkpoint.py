"""Checkpoints: atomic writes (temporary file + rename), strict ``weights_only`` loads, resume state."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch

FORMAT_VERSION = 1

#: Room for what a checkpoint holds besides tensors sized like the parameters (config, RNG states).
_OVERHEAD_BYTES = 1 << 20


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, corrupt, or from another format version or architecture."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` (tensors and plain containers) to ``path`` atomically.

    The bytes go to a temporary file in the same folder, are flushed and fsync'ed, then renamed over
    ``path``: a crash at any moment leaves either the previous checkpoint or the new one, never a torn file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format_version": FORMAT_VERSION, **state}
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer killed mid-write
        stale.unlink(missing_ok=True)
    return path


def estimate_checkpoint_bytes(model: torch.nn.Module) -> int:
    """Bytes a training checkpoint of ``model`` takes, about: 3× the parameter bytes (weights and
    Adam's two moments) plus the buffers and 1 MiB for settings and RNG states."""
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return 3 * params + buffers + _OVERHEAD_BYTES


def check_checkpoint_folder(path: str | Path, checkpoint_bytes: int) -> None:
    """Raise ``CheckpointError`` unless checkpoints of ``checkpoint_bytes`` can be written at ``path``:
    its folder must be writable (checked with a probe file) and hold two checkpoints, less the size of
    one already at ``path`` (an atomic replace keeps the old and the new file at once)."""
    path = Path(path)
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise CheckpointError(f"checkpoint folder {folder} is not writable: {exc.strerror or exc}") from exc
    existing = path.stat().st_size if path.is_file() else 0
    needed = 2 * checkpoint_bytes - existing
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise CheckpointError(f"not enough free disk space for checkpoints in {folder}: {_mib(free)} free, "
                              f"about {_mib(needed)} needed (two copies of a {_mib(checkpoint_bytes)} checkpoint "
                              f"during an atomic replace)")


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``; errors name the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(f"checkpoint {path} is corrupt or not a mrvae checkpoint ({type(exc).__name__})") from exc
    if not isinstance(state, dict) or "format_version" not in state:
        raise CheckpointError(f"checkpoint {path} is not a mrvae checkpoint (no format_version)")
    if state["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {state['format_version']}, "
                              f"this mrvae reads version {FORMAT_VERSION}")
    return state


def load_model_state(model: torch.nn.Module, state_dict: dict[str, Any], path: str | Path) -> None:
    """Load weights strictly; a different architecture raises ``CheckpointError`` naming the mismatch."""
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"checkpoint {path} is malformed (its 'model' entry is a {type(state_dict).__name__}, "
                              f"not a state dict)")
    try:
        model.load_state_dict(state_dict, strict=True)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()
        detail = "; ".join(line.strip() for line in first[:3])
        raise CheckpointError(f"checkpoint {path} does not fit this architecture: {detail}") from exc


def rng_state(device: torch.device | str = "cpu") -> dict[str, Any]:
    """The global RNG states a run on ``device`` uses, as CPU tensors: torch's CPU generator, and the
    CUDA generator of ``device`` when it is a GPU (a CPU run leaves CUDA alone: no context is created,
    and a forked process can still resume it)."""
    device = torch.device(device)
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | str = "cpu") -> None:
    """Restore what ``rng_state(device)`` returned. The states may have been loaded onto any device:
    torch takes them as CPU byte tensors only."""
    device = torch.device(device)
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and device.type == "cuda":
        cuda = state["cuda"]
        if isinstance(cuda, (list, tuple)):  # written by 0.1.0 runs: every visible GPU's state
            index = device.index if device.index is not None else torch.cuda.current_device()
            cuda = cuda[index] if len(cuda) > index else None
        if cuda is not None:
            torch.cuda.set_rng_state(cuda.cpu(), device)
