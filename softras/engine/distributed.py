"""Ranks: one process per device under ``torchrun``, or a single process (the default).

Under ``torchrun`` the environment gives ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; the
process group uses gloo on the CPU and nccl on CUDA, and each process takes the GPU of its
local rank. A plain run has rank 0 of 1 and costs nothing: every helper here is then a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Ranks:
    """Where this process stands: ``rank`` of ``world_size``, ``local_rank`` on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def ranks_from_env() -> Ranks:
    """The ranks ``torchrun`` put in the environment (rank 0 of 1 without it)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as err:
        raise ValueError(f"WORLD_SIZE/RANK/LOCAL_RANK: expected integers in the environment ({err})") from None
    return Ranks(rank, world, local)


def resolve_device(device: str, ranks: Ranks) -> torch.device:
    """'auto' (CUDA when available, else CPU), 'cpu' or 'cuda[:k]'; under torchrun, CUDA
    means the GPU of this process's local rank."""
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:<index>', got {device!r}")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device: {device!r} was asked for, but torch sees no CUDA device")
        if device == "cuda":
            index = ranks.local_rank if ranks.distributed else torch.cuda.current_device()
        else:
            try:
                index = int(device.split(":", 1)[1])
            except ValueError:
                raise ValueError(f"device: expected 'cuda:<index>', got {device!r}") from None
        if index >= torch.cuda.device_count():
            raise ValueError(f"device: {device!r} (index {index}) but torch sees {torch.cuda.device_count()} GPU(s)")
        torch.cuda.set_device(index)
        return torch.device("cuda", index)
    return torch.device("cpu")


def init_process_group(ranks: Ranks, device: torch.device) -> None:
    """Joins the process group of a torchrun launch (gloo on CPU, nccl on CUDA); no-op alone."""
    if not ranks.distributed or dist.is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    kwargs: dict[str, Any] = {"backend": backend}
    if device.type == "cuda":
        kwargs["device_id"] = device
    dist.init_process_group(**kwargs)


def destroy_process_group() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    if not active():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def max_difference_between_ranks(t: torch.Tensor) -> float:
    """The largest absolute difference of ``t`` between any rank and rank 0 (0.0 alone);
    every rank must call it. A check that data-parallel ranks stayed in step."""
    values = gather_objects(t.detach().cpu())
    return max(float((v - values[0]).abs().max()) if v.numel() else 0.0 for v in values)


def any_rank(flag: bool, device: torch.device | None = None) -> bool:
    """True on every rank when ``flag`` is true on any rank (all ranks must call it)."""
    if not active():
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device or torch.device("cpu"))
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def all_reduce_sum_(tensors: list[torch.Tensor]) -> None:
    """Sums each tensor over the ranks, in place (a no-op in a single process)."""
    if not active():
        return
    for t in tensors:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)


def barrier() -> None:
    if active():
        dist.barrier()


def shard(n: int, rank: int, world_size: int) -> range:
    """Indices ``0..n-1`` of this rank's share: contiguous, without padding or duplicates."""
    per, extra = divmod(n, world_size)
    begin = rank * per + min(rank, extra)
    return range(begin, begin + per + (1 if rank < extra else 0))
