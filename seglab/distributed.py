"""Training on several processes (torchrun): who we are, and sums and agreements across
processes. Outside torchrun every helper here is a no-op for a world of one."""
from __future__ import annotations

import os

import torch


def dist_env() -> tuple[int, int, int]:
    """(rank, local_rank, world_size) from torchrun's environment, (0, 0, 1) otherwise."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("LOCAL_RANK", 0)),
            int(os.environ.get("WORLD_SIZE", 1)))


def init_distributed(device: torch.device) -> bool:
    """Join torchrun's process group; True when this call created it (and so must end it)."""
    import torch.distributed as dist
    if dist.is_initialized():
        return False
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return True


def finish_distributed(own_group: bool) -> None:
    """Wait for every process; end the group if this process created it."""
    import torch.distributed as dist
    dist.barrier()
    if own_group:  # left to exit, gloo's threads can abort a process ("terminate called ...")
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, world: int) -> torch.Tensor:
    """Sum ``t`` over all processes, in place (unchanged for a world of one)."""
    if world > 1:
        import torch.distributed as dist
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def agreed_min(value: int, world: int, device: torch.device) -> int:
    """The smallest ``value`` of all processes, so that all of them take the same decision."""
    if world == 1:
        return value
    import torch.distributed as dist
    agreed = torch.tensor([value], dtype=torch.long, device=device)
    dist.all_reduce(agreed, op=dist.ReduceOp.MIN)
    return int(agreed.item())


def agreed_cpu_precision(amp_dtype: str | None, world: int) -> str | None:
    """bf16 on every process or on none: each process times bf16 for itself
    (hardware.cpu_bf16_pays_off), and processes sharing the cores can disagree."""
    votes = all_reduce_sum(torch.tensor([1.0 if amp_dtype else 0.0]), world)
    return amp_dtype if int(votes.item()) == world else None


def shard(dataset, rank: int, world: int):
    """This process's share of ``dataset``: every ``world``-th item from ``rank`` on."""
    if world == 1:
        return dataset
    return torch.utils.data.Subset(dataset, list(range(rank, len(dataset), world)))
