"""Distributed data parallel from torchrun's environment: NCCL on GPUs, gloo on CPU.

``torchrun --nproc-per-node N -m aufer train RECIPE`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
:func:`setup` reads them (a plain ``aufer train`` is world size 1 and touches no process group). Only rank 0
writes files; metrics are reduced from summable counts (:func:`reduce_sum`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

from aufer.models.contract import unwrap  # the engine's DDP helpers; it lives with the model contract (methods use it)

__all__ = ["DistInfo", "setup", "teardown", "is_active", "reduce_sum", "gather_objects", "barrier", "unwrap", "broadcast_object"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process runs: ``rank`` of ``world_size`` processes, ``local_rank`` on its node, ``device``."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _pick_device(device: str | None, local_rank: int) -> torch.device:
    if device in (None, "", "auto"):
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda: this machine has no CUDA GPU that PyTorch can use")
        if dev.index is None:
            dev = torch.device(f"cuda:{local_rank}")
    return dev


def setup(device: str | None = None) -> DistInfo:
    """Join the process group torchrun describes (if any) and choose the device (CUDA when available unless
    ``device`` says otherwise; under torchrun, GPU ``LOCAL_RANK``).

    Raises:
        RuntimeError: ``device`` asks for CUDA on a machine without it.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    dev = _pick_device(device, local)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(backend, rank=rank, world_size=world)
    return DistInfo(rank, world, local, dev)


def teardown(info: DistInfo) -> None:
    """Leave the process group (no-op at world size 1)."""
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def is_active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def reduce_sum(values: np.ndarray) -> np.ndarray:
    """Element-wise sum of an array over all processes (identity at world size 1); float64/int64 kept."""
    arr = np.asarray(values)
    if not is_active():
        return arr
    t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    out = t.numpy()
    return out.astype(arr.dtype) if np.issubdtype(arr.dtype, np.integer) else out


def gather_objects(obj) -> list:
    """Every process's ``obj`` (picklable), in rank order (``[obj]`` at world size 1)."""
    if not is_active():
        return [obj]
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj, src: int = 0):
    """``obj`` of process ``src`` on every process."""
    if not is_active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def barrier() -> None:
    """Wait for every process (no-op at world size 1)."""
    if is_active():
        dist.barrier()

