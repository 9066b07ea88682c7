"""Where training runs: device choice (auto: cuda > mps > cpu), autocast and the gradient scaler of a precision."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from ..config import Precision


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
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError(f"device {name!r} was asked for but MPS is not available here")
    return device


def check_precision(device: torch.device, precision: Precision | str) -> Precision:
    """``precision`` as a ``Precision``, refused where ``device`` cannot run it (bf16 on an old GPU)."""
    precision = Precision(precision)
    if (precision is Precision.BF16_MIXED and device.type == "cuda"
            and not torch.cuda.is_bf16_supported(including_emulation=False)):
        raise ValueError(f"precision bf16-mixed needs a GPU with bfloat16 support; {device} has none "
                         f"(use 16-mixed or 32)")
    return precision


@contextlib.contextmanager
def autocast(device: torch.device, precision: Precision | str) -> Iterator[None]:
    """Autocast to bfloat16 (bf16-mixed) or float16 (16-mixed) on ``device``; a no-op for fp32.

    Parameters, optimiser state and gradients stay fp32; matrix products and convolutions run in
    the low precision. Callers reduce the per-example losses in fp32 (``fit`` calls ``.float()``).
    """
    precision = Precision(precision)
    if precision is Precision.FP32:
        yield
        return
    dtype = torch.bfloat16 if precision is Precision.BF16_MIXED else torch.float16
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def grad_scaler(device: torch.device, precision: Precision | str) -> torch.amp.GradScaler:
    """A ``GradScaler`` that is enabled for 16-mixed only (fp16 gradients underflow without scaling;
    bf16 has fp32's exponent range and needs none)."""
    return torch.amp.GradScaler(device.type, enabled=Precision(precision) is Precision.FP16_MIXED)
