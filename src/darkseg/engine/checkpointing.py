"""Training checkpoints: model + optimiser + AMP scaler + position, written atomically.

A training checkpoint is a darkseg model checkpoint (``darkseg.models.save_checkpoint``, so
``darkseg.models.load_model`` / ``darkseg evaluate`` / ``predict`` read it directly) whose extra entries
hold the training state::

    "optimizer": optimizer.state_dict(), "scaler": GradScaler.state_dict() | None,
    "iteration": number of iterations done (the next one to run), "epoch", "epoch_batch": position in
    that epoch, "iters_per_epoch", "config": ExperimentConfig.to_dict(), "rng": CPU/CUDA torch RNG
    states (informative; training re-seeds the global RNGs from (seed, iteration, rank) every iteration,
    which is what makes resuming exact), "world_size", "log_lines"

Files in the output folder: ``last.pth`` (replaced at every checkpoint), ``epoch_<E>.pth`` after each
finished epoch (E 1-based) when ``keep_epoch_checkpoints``, and ``final.pth`` (model only, no
optimiser state) at the end of training.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "save_training_checkpoint",
    "load_training_checkpoint",
    "rng_states",
    "LAST",
    "copy_checkpoint",
]

LAST = "last.pth"


def rng_states() -> dict[str, Any]:
    """Current global torch RNG states (CPU, CUDA); tensors only, so ``weights_only`` loading works."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def save_training_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: Any,
    state: dict[str, Any],
) -> Path:
    """Write ``model`` + optimiser/scaler state + ``state`` (iteration, epoch, config, ...) atomically."""
    from darkseg.models import save_checkpoint

    extra = dict(state)
    extra["optimizer"] = optimizer.state_dict()
    extra["scaler"] = scaler.state_dict() if scaler is not None and scaler.is_enabled() else None
    extra["rng"] = rng_states()
    save_checkpoint(path, model, extra=extra)
    return Path(path)


def copy_checkpoint(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Atomic copy of a checkpoint file (a hard link when the filesystem allows it)."""
    from darkseg.utils.io import atomic_open

    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f".{dst.name}.link.tmp")
    try:
        if tmp.exists():
            tmp.unlink()
        os.link(src, tmp)
        os.replace(tmp, dst)
        return
    except OSError:
        if tmp.exists():
            tmp.unlink()
    with open(src, "rb") as fin, atomic_open(dst, "wb") as fout:
        while chunk := fin.read(1 << 24):
            fout.write(chunk)


def load_training_checkpoint(
    path: str | os.PathLike,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scaler: Any = None,
    map_location: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Restore model weights (strict), optimiser and scaler from ``path``; returns the checkpoint dict.

    Raises:
        darkseg.models.CheckpointError: not a darkseg checkpoint, or weights that do not fit ``model``.
        ValueError: the checkpoint holds no training state (e.g. ``final.pth``) but an optimiser is given.
    """
    from darkseg.models import CheckpointError, read_checkpoint

    ckpt = read_checkpoint(path, map_location=map_location)
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the configured model: {exc}") from exc
    if optimizer is not None:
        if "optimizer" not in ckpt or "iteration" not in ckpt:
            raise ValueError(f"{path}: no training state in this checkpoint (model-only file); cannot resume")
        optimizer.load_state_dict(ckpt["optimizer"])
    if scaler is not None and ckpt.get("scaler") is not None and scaler.is_enabled():
        scaler.load_state_dict(ckpt["scaler"])
    return ckpt
