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
import re
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
    "check_tensor_storage",
    "MAX_ALIASING",
]

CHECKPOINT_FORMAT = "darkseg"
CHECKPOINT_VERSION = 1
_RESERVED = {"format", "format_version", "darkseg_version", "model_config", "fused", "state_dict"}
#: The tensors of a file together may claim at most this many times the bytes it stores (plus 16 MiB):
#: shared weights and views are fine, thousands of aliases of one big tensor are not.
MAX_ALIASING = 4
_ALIAS_SLACK = 16 << 20
#: torch's wording for a global that a weights-only load refuses (two forms, torch >= 2.6).
_FORBIDDEN = re.compile(r"unsupported (?:global: )?GLOBAL (\S+?)(?: |\.?$)", re.IGNORECASE | re.MULTILINE)


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
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _FORBIDDEN.search(str(exc))
        if found is None and "Unsupported operand" in str(exc):  # an opcode the safe loader refuses
            raise CheckpointError(
                f"{path}: not a readable torch checkpoint (corrupt, or a pickle using instructions that a "
                "safe weights-only load refuses)"
            ) from None
        if found is None:  # not a forbidden object: the bytes are not a pickle / torch file at all
            raise CheckpointError(
                f"{path}: not a readable torch checkpoint (corrupt or not a torch file)"
            ) from None
        raise UnsafeCheckpointError(
            f"{path}: refused: the file holds forbidden Python objects (GLOBAL {found.group(1)[:80]}) that "
            "a safe (weights-only) load does not allow; darkseg never unpickles arbitrary objects because "
            "that can run code"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any other failure means the file is not a readable checkpoint
        raise CheckpointError(
            f"{path}: not a readable torch checkpoint ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None
    check_tensor_storage(obj, path)
    return obj


def _tensor_problem(t: torch.Tensor) -> str | None:
    """Why tensor ``t`` claims more values than its storage holds, or None (nothing is copied)."""
    if t.layout != torch.strided:
        return f"has the {t.layout} layout (only dense tensors are read)"
    if any(st == 0 and sz > 1 for sz, st in zip(t.shape, t.stride())):
        return f"is an expanded (stride-0) view of shape {tuple(t.shape)}"
    if any(st < 0 for st in t.stride()):
        return "has a negative stride"
    stored = t.untyped_storage().nbytes() // max(t.element_size(), 1)
    if t.numel() == 0:
        return None
    extent = t.storage_offset() + sum((sz - 1) * st for sz, st in zip(t.shape, t.stride())) + 1
    if extent > stored or t.numel() > stored:
        return f"claims {t.numel()} values of shape {tuple(t.shape)} from a storage of {stored}"
    return None


def check_tensor_storage(obj: Any, source: str | os.PathLike) -> None:
    """Refuse tensors in a loaded file that claim more data than the file holds, before anything reads
    or copies them: expanded (stride-0) or overlapping views, views past their storage, and, all
    together, more than :data:`MAX_ALIASING` times the stored bytes (plus 16 MiB).

    ``obj`` is walked without recursion (dicts, lists, tuples). Raises :class:`CheckpointError` naming
    ``source`` and the entry.
    """
    stack: list[tuple[Any, str]] = [(obj, "")]
    seen: set[int] = set()
    storages: dict[tuple[int, int], int] = {}
    claimed = 0
    while stack:
        x, where = stack.pop()
        if isinstance(x, (dict, list, tuple)):
            if id(x) in seen:
                continue
            seen.add(id(x))
            items = x.items() if isinstance(x, dict) else enumerate(x)
            stack.extend((v, f"{where}[{str(k)[:80]!r}]") for k, v in items)
        elif isinstance(x, torch.Tensor):
            problem = _tensor_problem(x)
            if problem:
                raise CheckpointError(f"{source}: refused: tensor {where or '(top level)'} {problem}")
            st = x.untyped_storage()
            storages[(st.data_ptr(), st.nbytes())] = st.nbytes()
            claimed += x.numel() * x.element_size()
    stored = sum(storages.values())
    if claimed > MAX_ALIASING * stored + _ALIAS_SLACK:
        raise CheckpointError(
            f"{source}: refused: its tensors claim {claimed} bytes from {stored} stored bytes (views of "
            f"the same data more than {MAX_ALIASING} times over)"
        )


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
