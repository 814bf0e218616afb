"""The one torchrun helper: plain ``python`` is world size 1, ``torchrun`` gives a process group.

Batch stages shard their work list with :func:`shard` and gather per-rank reports on rank 0;
training wraps its model in DDP. On CPU the backend is gloo, on CUDA nccl.
"""
from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence, TypeVar

import numpy as np
import torch
import torch.distributed as tdist

from common.io import UserError

if TYPE_CHECKING:
    from common.io import RunReport

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(device: str | None = None, local_rank: int = 0) -> torch.device:
    """``None``/'auto' picks CUDA (this rank's GPU) when present, else CPU."""
    if device in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank % torch.cuda.device_count())
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise UserError(f"--device {device}: not a device (use auto, cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():  # else a traceback deep in torch
        raise UserError(f"--device {device}: CUDA is not available here (torch {torch.__version__}, "
                        f"CUDA build: {torch.version.cuda or 'none'}); use --device cpu, or install a CUDA build "
                        "of torch and check nvidia-smi / CUDA_VISIBLE_DEVICES")
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", local_rank % max(torch.cuda.device_count(), 1))
    return dev


def thread_count() -> int:
    """Torch CPU threads for this process: ``$OMP_NUM_THREADS`` when set, else the CPUs this
    process may run on (``os.sched_getaffinity``, which honours taskset, cgroups cpusets and
    container limits) divided among the local torchrun processes (``$LOCAL_WORLD_SIZE``); >= 1."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env:
        first = env.split(",", 1)[0].strip()  # OpenMP also allows a nested list "4,2"
        if not first.isdigit() or int(first) < 1:
            raise UserError(f"OMP_NUM_THREADS={env}: not a positive number of threads")
        return int(first)
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cpus = os.cpu_count() or 1
    local = os.environ.get("LOCAL_WORLD_SIZE", "1").strip()
    local_n = int(local) if local.isdigit() and int(local) > 0 else 1
    return max(1, cpus // local_n)


def configure_threads(explicit: int | None = None) -> int:
    """Set torch's CPU threads to ``explicit`` (a --threads flag; None or 0: :func:`thread_count`)
    and return the number set."""
    if explicit is not None and explicit < 0:
        raise UserError(f"--threads must be >= 0 (0: automatic), got {explicit}")
    n = explicit or thread_count()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    log.debug("torch CPU threads: %d", n)
    return n


def init_dist(device: str | None = None, timeout_s: int = 1800) -> DistInfo:
    """Read the torchrun environment, set torch's CPU threads (:func:`configure_threads`) and
    join the process group (idempotent)."""
    configure_threads()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = pick_device(device, local_rank)
    if world > 1 and not tdist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        tdist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
        log.debug("rank %d/%d joined (%s on %s)", rank, world, backend, dev)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def shard(items: Sequence[T], info: DistInfo) -> list[T]:
    """This rank's share of a work list: every item lands on exactly one rank."""
    return list(items[info.rank :: info.world_size])


def all_reduce_sum(x: Any, info: DistInfo) -> Any:
    """Sum a tensor, numpy array or number over ranks (float64 for numbers and arrays)."""
    if not info.distributed:
        return x
    if isinstance(x, torch.Tensor):
        t = x.detach().clone()
        t = _to_backend(t, info)
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return t.to(x.device)
    arr = np.asarray(x, dtype=np.float64)
    t = _to_backend(torch.from_numpy(arr.copy()), info)
    tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    out = t.cpu().numpy()
    return out if isinstance(x, np.ndarray) else float(out)


def _to_backend(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    # nccl needs CUDA tensors, gloo CPU ones.
    backend = tdist.get_backend()
    return t.to(info.device) if backend == "nccl" else t.cpu()


def gather_objects(obj: Any, info: DistInfo) -> list | None:
    """Pickle-gather one object per rank onto rank 0 (a list in rank order); None elsewhere."""
    if not info.distributed:
        return [obj]
    out: list | None = [None] * info.world_size if info.is_main else None
    tdist.gather_object(obj, out, dst=0)
    return out


def broadcast_object(obj: Any, info: DistInfo) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not info.distributed:
        return obj
    buf = [obj]
    tdist.broadcast_object_list(buf, src=0)
    return buf[0]


def barrier(info: DistInfo) -> None:
    if info.distributed:
        tdist.barrier()


def cleanup(info: DistInfo) -> None:
    if info.distributed and tdist.is_initialized():
        tdist.destroy_process_group()


def finish_report(report: "RunReport", info: DistInfo) -> int:
    """Merge every rank's report into run.json on rank 0; every rank returns the same exit code
    (1 when any item failed on any rank, else 0)."""
    parts = gather_objects(report.to_dict(), info)
    if info.is_main:
        if info.distributed:
            report.done, report.skipped, report.failures = [], [], []
            report.merge(parts)
            report.config["world_size"] = info.world_size
        report.write()
    n_failed = broadcast_object(report.n_failed if info.is_main else None, info)
    return 1 if n_failed else 0
