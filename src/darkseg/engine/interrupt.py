"""Graceful stop of a long job on SIGINT (Ctrl-C) or SIGTERM (``kill``, batch-system preemption).

The first signal only sets a flag; the training loop checks it between iterations (when model and
optimizer are consistent), writes a checkpoint and stops, so ``--resume`` loses nothing. A second signal
interrupts at once (``KeyboardInterrupt``), as usual. Handlers can only be installed from the main
thread; elsewhere :class:`GracefulStop` is inert and the default behaviour stays.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import torch

from darkseg.engine import distributed as du
from darkseg.errors import DarkSegError

__all__ = ["GracefulStop", "TrainingInterrupted"]


class TrainingInterrupted(DarkSegError, RuntimeError):
    """Raised after a graceful stop: the checkpoint is written; ``iteration`` is where it stopped."""

    def __init__(self, signame: str, iteration: int, checkpoint: str) -> None:
        super().__init__(
            f"stopped by {signame} after iteration {iteration}; checkpoint {checkpoint} "
            "(continue with --resume)"
        )
        self.signame, self.iteration, self.checkpoint = signame, iteration, checkpoint


class GracefulStop:
    """Catch SIGINT/SIGTERM into a flag (``install()``, then ``requested()``; ``restore()`` when done)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, object] = {}

    def install(self) -> GracefulStop:
        """Catch the signals (main thread only; elsewhere a no-op)."""
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def restore(self) -> None:
        """Put the previous handlers back."""
        for s, h in self._old.items():
            signal.signal(s, h)
        self._old.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum

    @property
    def signame(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "none"

    def requested(self, device: torch.device | None = None) -> bool:
        """Whether any process received a stop signal (all processes agree; collective under DDP)."""
        if not du.is_distributed():
            return self.signum is not None
        flag = torch.tensor([0 if self.signum is None else 1], device=device)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if flag.item() and self.signum is None:
            self.signum = int(signal.SIGTERM)  # stopped because another process was signalled
        return bool(flag.item())
