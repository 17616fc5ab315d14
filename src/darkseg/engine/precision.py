"""Reduced-precision inference: float16 (CUDA) or bfloat16 (CPU, CUDA) autocast on the heavy modules.

Only the convolution / linear work runs under :func:`torch.autocast`: the backbone (trunk + FPN), the RPN
head, the box head and predictor, the mask head and predictor. Their outputs are cast back to float32, so
anchor decoding, box regression, NMS, RoIAlign sampling and mask pasting stay in float32. Reason:
bfloat16 keeps 8 significant bits, so a box coordinate of 600 px decoded in bfloat16 would be rounded to a
multiple of 4 px; float16 (11 bits) would round it to 0.5 px.

``enable_autocast(model, "cpu", torch.bfloat16)`` patches those modules' ``forward`` on the instance
(the state dict and the class are unchanged); ``disable_autocast(model)`` restores them.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

__all__ = ["DTYPES", "AUTOCAST_MODULES", "parse_dtype", "check_dtype", "enable_autocast", "disable_autocast"]

#: ``--dtype`` names
DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}

#: attribute paths (from the detector) of the modules run under autocast
AUTOCAST_MODULES = (
    "backbone",
    "rpn.head",
    "roi_heads.box_head",
    "roi_heads.box_predictor",
    "roi_heads.mask_head",
    "roi_heads.mask_predictor",
)

_MARK = "_darkseg_autocast"


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    """``"float32" | "float16" | "bfloat16"`` (or a torch dtype among those) -> torch dtype."""
    if isinstance(name, torch.dtype):
        if name in DTYPES.values():
            return name
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {name}")
    key = str(name).strip().lower().removeprefix("torch.")
    key = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}.get(key, key)
    if key not in DTYPES:
        raise ValueError(f"dtype must be one of {list(DTYPES)}, got {name!r}")
    return DTYPES[key]


def check_dtype(dtype: torch.dtype, device: torch.device) -> None:
    """Raise ``ValueError`` when ``dtype`` autocast is not available on ``device``.

    float16 is CUDA only (CPU float16 matmuls are emulated and slower than float32); bfloat16 needs a CUDA
    GPU that supports it (compute capability >= 8.0) or any CPU (fast with AVX512-BF16 / AMX, emulated
    otherwise).
    """
    if dtype == torch.float32:
        return
    if device.type == "cuda":
        if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
            raise ValueError(f"dtype bfloat16: the GPU {device} does not support bfloat16; use float16")
        return
    if device.type == "cpu":
        if dtype == torch.float16:
            raise ValueError("dtype float16 needs a CUDA device; on the CPU use bfloat16")
        return
    raise ValueError(f"reduced precision is supported on cpu and cuda devices, not {device.type}")


def _to_float32(x: Any) -> Any:
    """Cast every floating tensor in a (nested) tensor / list / tuple / dict to float32."""
    if isinstance(x, torch.Tensor):
        return x.float() if x.is_floating_point() and x.dtype != torch.float32 else x
    if isinstance(x, dict):
        out = type(x)() if type(x) is not dict else {}
        for k, v in x.items():
            out[k] = _to_float32(v)
        return out
    if isinstance(x, (list, tuple)):
        return type(x)(_to_float32(v) for v in x)
    return x


def _autocast_forward(forward, device_type: str, dtype: torch.dtype, *args, **kwargs):
    with torch.autocast(device_type, dtype=dtype):
        out = forward(*args, **kwargs)
    return _to_float32(out)


def _get(model: torch.nn.Module, path: str) -> torch.nn.Module | None:
    obj: Any = model
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj if isinstance(obj, torch.nn.Module) else None


def disable_autocast(model: torch.nn.Module) -> None:
    """Undo :func:`enable_autocast` (no-op for modules that were not patched)."""
    for path in AUTOCAST_MODULES:
        mod = _get(model, path)
        if mod is not None and getattr(mod, _MARK, False):
            del mod.forward  # back to the class's forward
            delattr(mod, _MARK)


def enable_autocast(model: torch.nn.Module, device_type: str, dtype: torch.dtype) -> list[str]:
    """Run the heavy modules of ``model`` (see :data:`AUTOCAST_MODULES`) under ``torch.autocast``.

    ``dtype`` float32 removes any patch. Returns the attribute paths that were patched.
    """
    disable_autocast(model)
    if dtype == torch.float32:
        return []
    done = []
    for path in AUTOCAST_MODULES:
        mod = _get(model, path)
        if mod is None:
            continue
        mod.forward = functools.partial(_autocast_forward, mod.forward, device_type, dtype)
        setattr(mod, _MARK, True)
        done.append(path)
    return done
