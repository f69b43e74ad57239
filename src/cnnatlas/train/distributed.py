"""Distributed data parallel through PyTorch's own engine.

``torchrun --nproc-per-node N -m cnnatlas train …`` sets ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; when ``WORLD_SIZE > 1`` we join the
process group (gloo on the CPU, NCCL on CUDA) and wrap the model in
:class:`~torch.nn.parallel.DistributedDataParallel`. Each rank takes a disjoint shard
(``perm[rank::world]``) of one epoch permutation that every rank draws from the same seeded
generator, so the ranks' batches of step ``i`` together are exactly the global batch a single
process would take at step ``i``. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from cnnatlas.errors import InputError


@dataclass(frozen=True)
class DistContext:
    """Where this process sits in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: str | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    if preference not in ("auto", "cpu", "cuda") and not preference.startswith("cuda:"):
        raise InputError(f"--device must be auto, cpu or cuda, got {preference!r}")
    if preference == "auto":
        preference = "cuda" if torch.cuda.is_available() else "cpu"
    if preference.startswith("cuda"):
        if not torch.cuda.is_available():
            raise InputError("--device cuda was asked for but PyTorch sees no CUDA device")
        index = preference[5:] if ":" in preference else str(local_rank)
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise InputError(f"--device {preference}: there is no such CUDA device ({torch.cuda.device_count()} seen)")
        return torch.device(f"cuda:{index}")
    return torch.device("cpu")


def init_distributed(device_preference: str = "auto") -> DistContext:
    """Join the torchrun job described by the environment, or describe a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local_rank)
    if world_size <= 1:
        return DistContext(device=device)
    rank = int(os.environ["RANK"])
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device, backend=backend)


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def any_rank(flag: bool, ctx: DistContext) -> bool:
    """True on every rank when ``flag`` is true on any rank (all ranks stop at the same step)."""
    if not ctx.enabled:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def sum_over_ranks(values: list[float], ctx: DistContext) -> list[float]:
    if not ctx.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank (small, JSON-like objects only)."""
    if not ctx.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shard_indices(permutation: torch.Tensor, ctx: DistContext, per_rank_batch: int, steps: int) -> torch.Tensor:
    """This rank's indices for one epoch: ``perm[rank::world]``, cut to whole batches.

    With ``B = per_rank_batch`` and ``W = world_size``, the ranks' batches of step ``i`` are
    together ``perm[i·B·W : (i+1)·B·W]`` — the single-process global batch of step ``i``.
    """
    return permutation[ctx.rank :: ctx.world_size][: steps * per_rank_batch]
