"""Where training runs: device choice (auto: cuda > mps > cpu) and autocast settings for a precision."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from .config import Precision


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> cuda if available, else mps, else cpu; otherwise the named device, checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available here")
    return device


@contextlib.contextmanager
def autocast(device: torch.device, precision: Precision) -> Iterator[None]:
    """Autocast for bf16-mixed / 16-mixed on ``device``; a no-op for fp32."""
    precision = Precision(precision)
    if precision is Precision.FP32:
        yield
        return
    dtype = torch.bfloat16 if precision is Precision.BF16_MIXED else torch.float16
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
