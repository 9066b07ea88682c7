"""Where training runs: device choice (auto: cuda > mps > cpu), autocast and the gradient scaler of a precision."""

from __future__ import annotations

import contextlib
import os
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


#: Architectures whose steps are large enough for several CPU threads to pay off (measured in
#: benchmarks/threads.py); the others are small MLP / LSTM steps dominated by per-op overhead.
MULTI_THREAD_ARCHS = frozenset({"conv", "resnet", "hierarchical"})


def auto_threads(arch: str | None, cores: int | None = None, load: float | None = None) -> int:
    """The ``--threads auto`` choice: one thread for the small models, and on a busy machine whatever the
    model (threads of a busy machine wait for each other: issue 16 measured 10× slower steps); for the
    convolutional models on a quiet machine, the idle cores. ``cores`` and ``load`` (the 1-minute load
    average) default to this machine's."""
    cores = len(os.sched_getaffinity(0)) if cores is None else cores
    load = os.getloadavg()[0] if load is None else load
    idle = int(cores - load + 0.5)
    if arch not in MULTI_THREAD_ARCHS or idle < 2:
        return 1
    return min(cores, idle)
