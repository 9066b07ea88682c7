"""torch.distributed for mrvae: a process group from torchrun's environment, rank-0 work, sums over ranks.

A run started by ``torchrun`` (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT in the
environment) joins one process group: NCCL when training on CUDA, gloo otherwise. Without those
variables everything here is a no-op for a single process, so the same code path serves both.
Collectives (``all_reduce_sum``, ``gather_objects``, ``run_on_main``) must be called by every rank
in the same order.
"""

from __future__ import annotations

import atexit
import os
import pickle
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor

from ..beta import Choice
from .runtime import resolve_device

T = TypeVar("T")

#: Odd 64-bit stride (the golden ratio) separating the seeds of different ranks.
_RANK_SEED_STRIDE = 0x9E3779B97F4A7C15
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
#: How long ``run_on_every_rank`` waits for the slowest rank: its ranks finish their own work (a β-VAE
#: each) at different times, far apart for long trainings. A rank that dies ends the job anyway
#: (torchrun stops the others), so this only bounds a wait, not a failure.
PATIENT_TIMEOUT = timedelta(days=7)

_alone = 0  # > 0 inside single_process(): current() reports one process
_patient_group: Any = None  # the gloo group of run_on_every_rank, made on its first call


class Backend(Choice):
    """The torch.distributed backend: NCCL for CUDA tensors, gloo for CPU tensors."""

    NCCL = "nccl"
    GLOO = "gloo"


class Reduce(Choice):
    """How ``all_reduce`` combines the ranks' tensors."""

    SUM = "sum"
    MAX = "max"
    MIN = "min"

    @property
    def op(self) -> dist.ReduceOp:
        return {Reduce.SUM: dist.ReduceOp.SUM, Reduce.MAX: dist.ReduceOp.MAX, Reduce.MIN: dist.ReduceOp.MIN}[self]


@dataclass(frozen=True)
class DistInfo:
    """This process's place in the job: ``rank`` of ``world_size`` (``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on rank 0, the one rank that writes files and logs."""
        return self.rank == 0

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1


def backend_for(device: torch.device) -> Backend:
    """NCCL for a CUDA device, gloo for everything else (CPU; MPS has no distributed backend)."""
    return Backend.NCCL if device.type == "cuda" else Backend.GLOO


def current() -> DistInfo:
    """The ``DistInfo`` of the initialised process group, or a single process when there is none (or
    inside ``single_process()``)."""
    if _alone:
        return DistInfo()
    return _group_info()


def _group_info() -> DistInfo:
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return DistInfo(dist.get_rank(), dist.get_world_size(), local)


@contextmanager
def single_process() -> Iterator[DistInfo]:
    """``with single_process() as job:`` this rank acts as a one-process run until the block ends:
    ``current()`` is ``DistInfo()``, so ``fit`` trains without DDP on ``train.batch_size`` examples per
    step with rank 0's seed, writes its own files, and the evaluation covers every batch, with no
    collective. ``job`` is the real place in the process group (the group itself is left as it is)."""
    global _alone
    job = _group_info()
    _alone += 1
    try:
        yield job
    finally:
        _alone -= 1


def is_main_process() -> bool:
    """True unless this is a rank other than 0 of an initialised process group."""
    return current().is_main


def init_distributed(device: str = "auto", env: Mapping[str, str] | None = None) -> tuple[DistInfo, torch.device]:
    """Join torchrun's process group if the environment describes one; -> (DistInfo, training device).

    ``env`` defaults to ``os.environ`` (read at call time). With WORLD_SIZE > 1 the group is created
    once (later calls reuse it) with NCCL when ``device`` resolves to CUDA, gloo otherwise; each rank
    then trains on ``cuda:LOCAL_RANK`` (CUDA) or the named / automatic device. Without torchrun's
    variables, or with WORLD_SIZE 1, this is a single process on ``resolve_device(device)``.
    """
    env = os.environ if env is None else env
    resolved = resolve_device(device)
    if dist.is_available() and dist.is_initialized():
        info = current()
    else:
        world = _int_var(env, "WORLD_SIZE", 1)
        if world <= 1:
            return DistInfo(), resolved
        missing = [name for name in _TORCHRUN_VARS if name not in env]
        if missing:
            raise ValueError(f"WORLD_SIZE={world} but {', '.join(missing)} not set: start multi-process "
                             f"training with torchrun (see docs/distributed.md)")
        if not dist.is_available():
            raise ValueError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
        info = DistInfo(_int_var(env, "RANK", 0), world, _int_var(env, "LOCAL_RANK", 0))
        backend = backend_for(resolved)
        if backend is Backend.NCCL:
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend.value, init_method="env://", rank=info.rank, world_size=world)
        atexit.register(_destroy)
    if resolved.type == "cuda" and _group_info().is_distributed:  # a rank alone keeps its own GPU
        resolved = torch.device("cuda", _group_info().local_rank)
    return info, resolved


def _int_var(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


def _destroy() -> None:
    """At exit: the sweep's gloo group, then the default group, destroyed while the interpreter is whole (gloo
    threads left to the interpreter's teardown can abort the process: "terminate called without an active
    exception")."""
    global _patient_group
    group, _patient_group = _patient_group, None
    if dist.is_initialized():
        if group is not None:
            dist.destroy_process_group(group)
        dist.destroy_process_group()


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s training generator: ``seed`` itself on rank 0 (a one-process run is
    unchanged), distinct 64-bit seeds on the other ranks (β, noise and augmentation streams per rank)."""
    return (seed + rank * _RANK_SEED_STRIDE) % 2**64


def _collective_device() -> torch.device:
    """Where collective tensors must live: the current CUDA device for NCCL, the CPU for gloo."""
    if dist.get_backend() == Backend.NCCL.value:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce(tensor: Tensor, reduce: Reduce | str = Reduce.SUM) -> Tensor:
    """``tensor`` combined over ranks (sum, max or min), returned on ``tensor``'s device; the tensor
    itself when there is a single process."""
    reduce = Reduce(reduce)
    if not current().is_distributed:
        return tensor
    work = tensor.detach().to(_collective_device()).clone()
    dist.all_reduce(work, op=reduce.op)
    return work.to(tensor.device)


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` for one process."""
    info = current()
    if not info.is_distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait until every rank gets here (a no-op for one process)."""
    if current().is_distributed:
        if dist.get_backend() == Backend.NCCL.value:
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def run_on_main(fn: Callable[[], T]) -> T:
    """Call ``fn`` on rank 0 only; every rank returns its result or raises the exception it raised.

    This is the barrier around rank-0 writes: the other ranks wait for the outcome, so a failed write
    (an unwritable folder, a full disk) stops all ranks with the same message instead of a hang.
    """
    info = current()
    if not info.is_distributed:
        return fn()
    outcome: list[Any] = [None]
    if info.is_main:
        try:
            outcome[0] = (True, fn())
        except Exception as exc:  # shipped to the other ranks, then re-raised everywhere
            outcome[0] = (False, exc if _picklable(exc) else RuntimeError(f"{type(exc).__name__}: {exc}"))
    dist.broadcast_object_list(outcome, src=0)
    ok, value = outcome[0]
    if not ok:
        raise value
    return value



def _picklable(obj: Any) -> bool:
    try:
        pickle.loads(pickle.dumps(obj))
    except Exception:
        return False
    return True


def run_on_every_rank(fn: Callable[[], T]) -> list[T]:
    """Call ``fn`` on every rank (alone, typically inside ``single_process()``) -> every rank's result, in
    rank order, on every rank; ``[fn()]`` for one process.

    The ranks may finish at very different times: the results are gathered over a gloo group that
    waits up to ``PATIENT_TIMEOUT``. If ``fn`` raised on any rank, every rank raises after the gather:
    its own exception, or else that of the lowest failing rank, so no rank hangs on the others.
    """
    info = current()
    if not info.is_distributed:
        return [fn()]
    group = _patient()
    try:
        outcome = (True, fn())
    except (Exception, KeyboardInterrupt) as exc:  # shipped to the other ranks, re-raised below
        outcome = (False, exc)
    shipped = outcome if outcome[0] or _picklable(outcome[1]) else \
        (False, RuntimeError(f"{type(outcome[1]).__name__}: {outcome[1]}"))
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, shipped, group=group)
    if not outcome[0]:
        raise outcome[1]
    failed = [value for ok, value in gathered if not ok]
    if failed:
        raise failed[0]
    return [value for _, value in gathered]


def _patient() -> Any:
    """The gloo process group of ``run_on_every_rank`` (made once, by every rank: a collective)."""
    global _patient_group
    if _patient_group is None:
        _patient_group = dist.new_group(backend=Backend.GLOO.value, timeout=PATIENT_TIMEOUT)
    return _patient_group
