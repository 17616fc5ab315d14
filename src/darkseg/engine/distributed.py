"""Multi-process training helpers (``torchrun`` / DistributedDataParallel).

Launch: ``torchrun --nproc_per_node=N -m darkseg train CONFIG`` (or ``--nnodes``/``--rdzv_*`` for several
machines). :func:`init_distributed` reads torchrun's environment (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and starts a process group with NCCL on CUDA and gloo
on CPU. Without those variables everything runs as a single process (world size 1) and every helper
here is a no-op.

Sampling: :class:`ShardedBatchSampler` yields the batches of one process as lists of
``(epoch, index)`` keys. The order of an epoch is a pure function of ``(seed, epoch)``: one permutation
of the dataset (a ``torch.Generator`` seeded with ``seed`` and ``epoch``), padded by wrapping around to a
multiple of ``batch_size * world_size``; global batch ``b`` holds the slice
``[b*B*W, (b+1)*B*W)`` and process ``r`` takes positions ``r, r+W, ...`` of it. Starting at any
``(epoch, batch)`` position therefore gives exactly the batches a straight run would have seen there.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from darkseg.utils.runtime import mix_seed  # re-exported: the samplers' and the trainer's seeds

__all__ = [
    "DistInfo",
    "init_distributed",
    "cleanup_distributed",
    "is_distributed",
    "get_rank",
    "get_world_size",
    "barrier",
    "reduce_loss_dict",
    "ShardedBatchSampler",
    "mix_seed",
]


@dataclass(frozen=True)
class DistInfo:
    """Process layout: global ``rank``, ``world_size``, ``local_rank`` and the process's device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Initialise the default process group from torchrun's environment variables (if present).

    ``device`` ``"auto"`` picks ``cuda:LOCAL_RANK`` when CUDA is available, else CPU. The backend is
    NCCL for CUDA devices and gloo for CPU. Already-initialised groups are reused.

    Raises:
        darkseg.errors.DeviceError: ``device`` names a CUDA device this machine does not have.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    from darkseg.utils.runtime import resolve_device

    use_cuda = resolve_device(device).type == "cuda"  # DeviceError for cuda without a GPU
    if use_cuda:
        idx = (
            int(device.split(":", 1)[1])
            if ":" in device
            else (local_rank if world > 1 else torch.cuda.current_device())
        )
        dev = torch.device("cuda", idx)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        for var in ("MASTER_ADDR", "MASTER_PORT"):
            if var not in os.environ:
                raise RuntimeError(f"WORLD_SIZE={world} but {var} is not set; launch with torchrun")
        backend = "nccl" if dev.type == "cuda" else "gloo"
        kwargs = {"device_id": dev} if dev.type == "cuda" else {}
        dist.init_process_group(backend=backend, rank=rank, world_size=world, **kwargs)
    return DistInfo(rank=rank, world_size=world, local_rank=local_rank, device=dev)


def cleanup_distributed() -> None:
    """Destroy the default process group if one is active."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def barrier() -> None:
    """Synchronise all processes (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def reduce_loss_dict(losses: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Mean of each (detached, scalar) loss over all processes, as Python floats (for logging).

    Every process must pass the same keys (sorted here, so the order does not matter).
    """
    keys = sorted(losses)
    if not keys:
        return {}
    vals = torch.stack([losses[k].detach().float().reshape(()) for k in keys])
    if is_distributed():
        dist.all_reduce(vals, op=dist.ReduceOp.SUM)
        vals = vals / get_world_size()
    return {k: float(v) for k, v in zip(keys, vals.cpu().tolist())}


class ShardedBatchSampler:
    """Endless per-process batches of ``(epoch, index)`` keys, resumable at any position.

    Args:
        dataset_len: number of samples ``N``.
        batch_size: samples per process per iteration ``B``.
        world_size, rank: process layout ``W``, ``r``.
        seed: shuffle seed; epoch ``e`` uses the permutation of ``torch.Generator(seed ⊕ e)``.
        shuffle: False keeps dataset order (then wrap-around padding only).
        start_epoch, start_batch: where to begin (a resumed run passes the saved position).

    ``iters_per_epoch = ceil(N / (B * W))``. Iteration stops only when the consumer stops.
    """

    def __init__(
        self,
        dataset_len: int,
        batch_size: int,
        world_size: int = 1,
        rank: int = 0,
        seed: int = 0,
        shuffle: bool = True,
        start_epoch: int = 0,
        start_batch: int = 0,
    ) -> None:
        if dataset_len < 1:
            raise ValueError("ShardedBatchSampler: the dataset is empty")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.n, self.batch_size, self.world_size, self.rank = dataset_len, batch_size, world_size, rank
        self.seed, self.shuffle = seed, shuffle
        self.start_epoch, self.start_batch = start_epoch, start_batch
        self.iters_per_epoch = math.ceil(dataset_len / (batch_size * world_size))

    def epoch_order(self, epoch: int) -> list[int]:
        """The padded global order of ``epoch`` (length ``iters_per_epoch * B * W``)."""
        if self.shuffle:
            g = torch.Generator().manual_seed(mix_seed(self.seed, epoch, 0x5A3D))
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = self.iters_per_epoch * self.batch_size * self.world_size
        while len(order) < total:
            order += order[: total - len(order)]
        return order

    def batch(self, epoch: int, batch_idx: int, order: list[int] | None = None) -> list[tuple[int, int]]:
        """This process's keys for global batch ``batch_idx`` of ``epoch``."""
        order = self.epoch_order(epoch) if order is None else order
        span = self.batch_size * self.world_size
        chunk = order[batch_idx * span : (batch_idx + 1) * span]
        return [(epoch, i) for i in chunk[self.rank :: self.world_size]]

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, b = self.start_epoch, self.start_batch
        while True:
            order = self.epoch_order(epoch)
            while b < self.iters_per_epoch:
                yield self.batch(epoch, b, order)
                b += 1
            epoch, b = epoch + 1, 0
