"""DataLoader helpers: batch collation and seeded workers."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

from darkseg.data.transforms import reseed_transforms
from darkseg.utils.threads import single_thread_worker

__all__ = ["collate_fn", "seed_worker", "build_loader"]


def collate_fn(batch: list[tuple]) -> tuple[list, ...]:
    """``[(image, target), ...] -> ([images], [targets])`` (any tuple length, e.g. clean/noisy/target).

    Images keep their own sizes; the model batches (and pads to /32) them itself.
    """
    if not batch:
        return ([], [])
    return tuple(list(field) for field in zip(*batch))


def seed_worker(worker_id: int) -> None:
    """``worker_init_fn``: one torch/OpenCV thread per worker process (the workers run side by side with
    the training process); re-seed the dataset's random transforms, NumPy and ``random`` per worker.

    The seed is the worker's torch seed (``base_seed + worker_id``, where ``base_seed`` comes from the
    DataLoader's ``generator``), so a seeded DataLoader gives the same samples on every run with the same
    ``num_workers``.
    """
    info = torch.utils.data.get_worker_info()
    if info is not None:
        single_thread_worker()
    seed = int(info.seed if info is not None else torch.initial_seed()) % 2**63
    np.random.seed(seed % 2**32)
    random.seed(seed)
    if info is not None:
        transforms = getattr(_base_dataset(info.dataset), "transforms", None)
        if transforms is not None:
            reseed_transforms(transforms, seed % 2**62)


def _base_dataset(ds: Any) -> Any:
    while hasattr(ds, "dataset") and not hasattr(ds, "transforms"):
        ds = ds.dataset  # torch Subset / wrappers
    return ds


def build_loader(
    dataset: torch.utils.data.Dataset,
    batch_size: int = 1,
    shuffle: bool = False,
    num_workers: int = 0,
    seed: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:
    """A DataLoader with :func:`collate_fn`, :func:`seed_worker` and a seeded shuffle generator."""
    generator = torch.Generator().manual_seed(seed)
    if num_workers == 0:
        transforms = getattr(_base_dataset(dataset), "transforms", None)
        if transforms is not None:
            reseed_transforms(transforms, seed)
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=num_workers,
        collate_fn=collate_fn,
        worker_init_fn=seed_worker,
        generator=generator,
        drop_last=drop_last,
        pin_memory=pin_memory,
        persistent_workers=False,
    )
