"""darkseg checkpoint format (versioned) and loading.

A checkpoint is a ``torch.save`` d dict::

    {"format": "darkseg", "format_version": 1, "darkseg_version": str,
     "model_config": ModelConfig.to_dict(), "fused": bool, "state_dict": {...}, **extra}

``load_model`` rebuilds the model from ``model_config`` (folding SCB first when it was saved fused)
and loads the weights strictly.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from darkseg.errors import DarkSegError

from .config import ModelConfig
from .detector import DarkMaskRCNN, build_model

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "CheckpointError",
    "UnsafeCheckpointError",
    "save_checkpoint",
    "load_model",
    "read_checkpoint",
    "safe_torch_load",
    "check_finite_weights",
]

CHECKPOINT_FORMAT = "darkseg"
CHECKPOINT_VERSION = 1
_RESERVED = {"format", "format_version", "darkseg_version", "model_config", "fused", "state_dict"}


class CheckpointError(DarkSegError, ValueError):
    """A file is not a (readable, supported) darkseg checkpoint; the message names the file."""


class UnsafeCheckpointError(CheckpointError):
    """A file holds pickled Python objects that a weights-only load refuses (they could run code)."""


def save_checkpoint(
    path: str | os.PathLike, model: DarkMaskRCNN, extra: dict[str, Any] | None = None
) -> None:
    """Write ``model`` (config + weights) and ``extra`` entries to ``path`` atomically."""
    from darkseg import __version__
    from darkseg.utils.io import atomic_torch_save

    cfg = getattr(model, "config", None)
    if not isinstance(cfg, ModelConfig):
        raise TypeError(
            "save_checkpoint needs a model built by darkseg.models.build_model (no .config found)"
        )
    extra = dict(extra or {})
    clash = sorted(_RESERVED & set(extra))
    if clash:
        raise ValueError(f"save_checkpoint: extra uses reserved key(s) {clash}")
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_VERSION,
        "darkseg_version": __version__,
        "model_config": cfg.to_dict(),
        "fused": bool(getattr(model, "fused", False)),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    }
    atomic_torch_save(ckpt, path)


def safe_torch_load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load`` with ``weights_only=True`` and nothing else: a pickle never runs code here.

    There is deliberately no fallback to full unpickling: a checkpoint that needs it (one holding
    arbitrary Python objects) is refused. Everything darkseg writes holds only tensors, numbers,
    strings, lists, tuples and dicts, which this reader accepts.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        CheckpointError: unreadable, truncated, or holding objects that are not allowed; names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        i = msg.find("Unsupported global:")
        if i < 0:  # not a forbidden object: the bytes are not a pickle / torch file at all
            raise CheckpointError(
                f"{path}: not a readable torch checkpoint (corrupt or not a torch file)"
            ) from None
        detail = msg[i:].splitlines()[0].split(" was not")[0]
        raise UnsafeCheckpointError(
            f"{path}: refused: the file holds Python objects that a safe (weights-only) load does not "
            f"allow ({detail}); darkseg never unpickles arbitrary objects because that can run code"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any other failure means the file is not a readable checkpoint
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {exc})"
        ) from exc


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a darkseg checkpoint dict (no model is built)."""
    path = Path(path)
    ckpt = safe_torch_load(path, map_location)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(
            f"{path}: not a darkseg checkpoint (no 'format': 'darkseg' entry); for torchvision weights use "
            "darkseg.models.load_torchvision_state_dict"
        )
    ver = ckpt.get("format_version")
    if not isinstance(ver, int) or ver < 1 or ver > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: unsupported darkseg checkpoint format_version {ver!r} (this darkseg reads up to "
            f"{CHECKPOINT_VERSION}; upgrade darkseg)"
        )
    for key in ("model_config", "state_dict"):
        if not isinstance(ckpt.get(key), dict):
            raise CheckpointError(f"{path}: darkseg checkpoint lacks a '{key}' dict")
    check_finite_weights(ckpt["state_dict"], path)
    return ckpt


def check_finite_weights(state_dict: dict[str, Any], source: str | os.PathLike) -> None:
    """Refuse weights holding NaN or infinity (a diverged run's checkpoint predicts nothing, silently).

    Raises:
        CheckpointError: naming ``source``, the first tensor (in state-dict order) with a non-finite
            value, how many of its values are bad, and how many tensors are affected in all.
    """
    bad = [
        (k, v)
        for k, v in state_dict.items()
        if torch.is_tensor(v) and v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if bad:
        name, first = bad[0]
        n_bad = int((~torch.isfinite(first)).sum())
        raise CheckpointError(
            f"{source}: refused: non-finite weights (NaN/inf) in tensor {name!r} ({n_bad} of "
            f"{first.numel()} values) and {len(bad) - 1} more tensor(s), as a diverged training run "
            "leaves them"
        )


def load_model(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[DarkMaskRCNN, dict[str, Any]]:
    """Rebuild the model stored in a darkseg checkpoint; returns ``(model in eval mode, checkpoint dict)``."""
    ckpt = read_checkpoint(path, map_location)
    try:
        cfg = ModelConfig.from_dict(ckpt["model_config"])
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: invalid model_config: {exc}") from exc
    model = build_model(cfg)
    if ckpt.get("fused", False):
        model.fuse()
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the stored model_config: {exc}") from exc
    model.to(map_location if not isinstance(map_location, dict) else "cpu")
    model.eval()
    return model, ckpt
