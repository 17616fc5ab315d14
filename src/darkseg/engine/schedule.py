"""Learning-rate schedule of the paper (mmcv ``StepLrUpdaterHook`` with linear warm-up, as the paper trains).

``lr(it) = base_lr * gamma**k(it) * w(it)`` where

* ``k(it)`` = number of steps already reached: with ``unit="epoch"`` the steps are 0-based epoch
  numbers and ``k`` counts ``s <= it // iters_per_epoch`` (``lr_steps=[9, 11]``: x0.1 from the first
  iteration of the 10th and of the 12th epoch); with ``unit="iter"`` it counts ``s <= it``;
* ``w(it) = 1 - (1 - it / warmup_iters) * (1 - warmup_ratio)`` for ``it < warmup_iters`` (mmcv's
  linear warm-up, applied on top of the step-decayed lr), else 1.

``it`` is the 0-based index of the iteration about to run. Each parameter group's lr is
``lr(it) * lr_mult`` of the group.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["StepWarmupSchedule", "set_lr"]


@dataclass(frozen=True)
class StepWarmupSchedule:
    """Step decay with linear warm-up; see the module docstring."""

    base_lr: float
    lr_steps: Sequence[int] = (9, 11)
    gamma: float = 0.1
    unit: str = "epoch"
    iters_per_epoch: int = 1
    warmup_iters: int = 500
    warmup_ratio: float = 0.001

    def __post_init__(self) -> None:
        if self.unit not in ("epoch", "iter"):
            raise ValueError(f"unit must be 'epoch' or 'iter', got {self.unit!r}")
        if self.iters_per_epoch < 1:
            raise ValueError(f"iters_per_epoch must be >= 1, got {self.iters_per_epoch}")

    def decay_count(self, iteration: int) -> int:
        """How many decay steps apply at ``iteration``."""
        progress = iteration // self.iters_per_epoch if self.unit == "epoch" else iteration
        return sum(1 for s in self.lr_steps if progress >= s)

    def warmup_factor(self, iteration: int) -> float:
        """mmcv linear warm-up factor in ``[warmup_ratio, 1]``."""
        if self.warmup_iters <= 0 or iteration >= self.warmup_iters:
            return 1.0
        return 1.0 - (1.0 - iteration / self.warmup_iters) * (1.0 - self.warmup_ratio)

    def factor(self, iteration: int) -> float:
        """``lr(iteration) / base_lr``."""
        if iteration < 0:
            raise ValueError(f"iteration must be >= 0, got {iteration}")
        return self.gamma ** self.decay_count(iteration) * self.warmup_factor(iteration)

    def lr(self, iteration: int) -> float:
        """Learning rate (of a multiplier-1 group) for the 0-based ``iteration``."""
        return self.base_lr * self.factor(iteration)


def set_lr(optimizer: torch.optim.Optimizer, schedule: StepWarmupSchedule, iteration: int) -> float:
    """Set every group's lr to ``schedule.lr(iteration) * group["lr_mult"]`` (mult 1 if absent)."""
    lr = schedule.lr(iteration)
    for g in optimizer.param_groups:
        g["lr"] = lr * float(g.get("lr_mult", 1.0))
    return lr
