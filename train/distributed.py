"""Process-group setup for torchrun, and a no-op stand-in for single-process runs.

torchrun exports RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT to
every worker. Unlike the seed article's snippet (mp.spawn calling a main()
that takes no rank, and init_process_group never told the rank or world
size), the rank and world size are read here and passed explicitly.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """Who this process is in the job, and the device it trains on."""

    rank: int
    local_rank: int
    world_size: int
    device: torch.device

    @property
    def is_distributed(self) -> bool:
        """True when a process group exists (started by torchrun)."""
        return dist.is_available() and dist.is_initialized()

    @property
    def is_main(self) -> bool:
        """Only rank 0 logs and writes files, so outputs are never duplicated or raced."""
        return self.rank == 0

    def sum_over_ranks(self, tensor: torch.Tensor) -> torch.Tensor:
        """Element-wise sum across ranks (a copy); the tensor itself when single-process."""
        if not self.is_distributed:
            return tensor
        total = tensor.detach().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total

    def max_over_ranks(self, value: int) -> int:
        """The largest value any rank holds; the value itself when single-process.

        Used for stop signals: every rank must leave the training loop at the
        same step, or the ones still training would block in DDP's gradient
        all-reduce waiting for peers that have stopped.
        """
        if not self.is_distributed:
            return value
        agreed = torch.tensor([value], device=self.device)
        dist.all_reduce(agreed, op=dist.ReduceOp.MAX)
        return int(agreed.item())

    def gather(self, value: Any) -> list[Any]:
        """Every rank's `value` (picklable), in rank order; [value] when single-process."""
        if not self.is_distributed:
            return [value]
        gathered: list[Any] = [None] * self.world_size
        dist.all_gather_object(gathered, value)
        return gathered

    def barrier(self) -> None:
        """Wait for every rank; lets rank 0 finish writing before peers exit."""
        if not self.is_distributed:
            return
        if self.device.type == "cuda":
            dist.barrier(device_ids=[self.device.index])  # NCCL: say which GPU instead of guessing
        else:
            dist.barrier()

    def close(self) -> None:
        """Tear down the process group if this process created one."""
        if self.is_distributed:
            dist.destroy_process_group()

    def leave(self, status: int) -> None:
        """After a run that ended alike on every rank: meet at a barrier, then exit with `status` without gloo's
        teardown (destroy_process_group, or the same destructor at interpreter exit). In torch 2.0.1 that teardown can
        spin forever once the peers have gone (pytorch/pytorch#75097; measured here: a rank of a two-container job
        spun for minutes after the job's last line). Everything is written and flushed by then. Returns only when
        there is no process group."""
        if not self.is_distributed:
            return
        self.barrier()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def resolve_device(requested: str, local_rank: int) -> torch.device:
    """Map --device to a concrete device; each torchrun worker gets its own GPU."""
    cuda_available = torch.cuda.is_available()
    if requested == "cuda" and not cuda_available:
        raise SystemExit("error: --device cuda requested but torch.cuda.is_available() is False")
    if requested == "cpu" or not cuda_available:
        return torch.device("cpu")
    if local_rank >= torch.cuda.device_count():
        raise SystemExit(
            f"error: LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} CUDA device(s) visible"
        )
    return torch.device("cuda", local_rank)


def launched_by_torchrun() -> bool:
    """torchrun (and torch.distributed.launch) always set these variables."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def init_distributed(requested_device: str, timeout_s: int) -> DistContext:
    """Join the torchrun job if there is one, else describe a single process.

    NCCL for CUDA tensors, gloo for CPU tensors (NCCL cannot reduce CPU
    tensors). The timeout turns a dead or missing peer into an error instead
    of a hang.
    """
    if not launched_by_torchrun():
        return DistContext(rank=0, local_rank=0, world_size=1, device=resolve_device(requested_device, 0))
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ["LOCAL_RANK"])
    device = resolve_device(requested_device, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(
        backend="nccl" if device.type == "cuda" else "gloo",
        rank=rank,
        world_size=world_size,
        timeout=timedelta(seconds=timeout_s),
    )
    return DistContext(rank=rank, local_rank=local_rank, world_size=world_size, device=device)
