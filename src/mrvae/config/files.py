"""Settings as plain dicts and YAML files (atomic writes; an empty file is an error, not the defaults)."""

from __future__ import annotations

import dataclasses
import os
from enum import Enum
from pathlib import Path
from typing import Any

import yaml

from .settings import BaselineConfig, DataConfig, EvalConfig, ModelConfig, RunConfig, TrainConfig


def to_dict(config: Any) -> dict[str, Any]:
    """A config dataclass -> plain dict (enums as their values, tuples as lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, Enum):
            return value.value
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(config))


def from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Plain dict -> config dataclass ``cls`` (nested dataclasses built recursively); unknown keys are errors."""
    if not isinstance(values, dict):
        raise ValueError(f"{cls.__name__} expects a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys: {', '.join(unknown)}; expected some of: {', '.join(fields)}")
    kwargs = {}
    for name, value in values.items():
        sub = _NESTED.get((cls, name))
        kwargs[name] = from_dict(sub, value) if sub is not None else value
    return cls(**kwargs)


_NESTED = {(RunConfig, "data"): DataConfig, (RunConfig, "model"): ModelConfig, (RunConfig, "train"): TrainConfig,
           (RunConfig, "eval"): EvalConfig, (RunConfig, "baseline"): BaselineConfig}


def stored_run_config(values: dict[str, Any]) -> RunConfig:
    """A ``RunConfig`` from a stored mapping (config.yaml, a checkpoint's run_config). A mapping written by
    mrvae 0.1 (its model settings have no ``gate_input_scale``) meant the 0.1 recipe: gate input u as is,
    log β uniform, and each β-VAE a third of the multi-rate steps when ``baseline.steps`` is null. It is
    read with those meanings, so an old run resumes and rebuilds exactly; anything else as ``from_dict``."""
    if not isinstance(values, dict):
        raise ValueError(f"RunConfig expects a mapping, got {type(values).__name__}")
    model, train = values.get("model"), values.get("train")
    if isinstance(model, dict) and model and "gate_input_scale" not in model:
        values = {**values, "model": {**model, "gate_input_scale": 1.0}}
        if isinstance(train, dict):
            values["train"] = {"log_beta_tilt": 0.0, "log_beta_ends": 0.0, **train}
        baseline = values.get("baseline")
        if isinstance(baseline, dict) and baseline.get("steps") is None and isinstance(train, dict):
            values["baseline"] = {**baseline, "steps": max(1, int(train.get("steps", 1800)) // 3)}
    return from_dict(RunConfig, values)


def save_yaml(config: RunConfig, path: Path) -> None:
    """Write ``config`` as YAML to ``path`` atomically: a temporary file in the same folder, flushed and
    fsync'ed, then renamed over ``path`` (a kill leaves the old file or the new one, never a torn one)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8") as handle:
            handle.write(yaml.safe_dump(to_dict(config), sort_keys=False))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as exc:  # a full disk: name the file (write errors do not)
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    finally:
        temporary.unlink(missing_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a writer killed mid-write
        stale.unlink(missing_ok=True)


def load_yaml(path: Path) -> RunConfig:
    """Read a ``RunConfig`` from a YAML file written by ``save_yaml``; an empty or non-mapping file is an
    error (ValueError), never the default settings."""
    values = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    if not isinstance(values, dict) or not values:
        raise ValueError(f"{path} holds no settings (found {type(values).__name__}); expected a YAML mapping "
                         f"written by mrvae")
    return stored_run_config(values)
