"""Load torchvision Mask R-CNN state dicts into our models (nothing is downloaded).

torchvision's ``maskrcnn_resnet50_fpn`` keys (``backbone.body.*``, ``backbone.fpn.*``, ``rpn.*``,
``roi_heads.*``) are the same names our pytorch-style model uses; AWD (``backbone.body.awd.*``) and SCB
branch parameters (``*.conv2.llpf.weight``, ``*.conv2.learnable_conv1.weight``) are new and keep their
initialisation, an SCB conv's main kernel (``*.conv2.weight``) loads from the plain conv. Class-specific
predictor layers with a different class count are skipped. A 3-channel stem loads into a 4-channel
(packed RAW R,G1,B,G2) stem as ``[W_R, W_G/2, W_B, W_G/2]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
from torch import nn

__all__ = ["LoadReport", "load_torchvision_state_dict"]


@dataclass
class LoadReport:
    """What a state-dict load did. ``loaded``/``adapted`` were copied, ``missing`` kept their init."""

    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    shape_mismatch: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"loaded {len(self.loaded)}, adapted {len(self.adapted)}, newly initialised {len(self.missing)}, "
            f"unused {len(self.unexpected)}, shape mismatch {len(self.shape_mismatch)}"
        ]
        if self.adapted:
            lines.append("adapted: " + ", ".join(self.adapted))
        if self.missing:
            lines.append("newly initialised: " + ", ".join(self.missing))
        if self.unexpected:
            lines.append("unused: " + ", ".join(self.unexpected))
        for k, src, dst in self.shape_mismatch:
            lines.append(f"shape mismatch (kept init): {k} checkpoint {src} vs model {dst}")
        return "\n".join(lines)


def load_torchvision_state_dict(
    model: nn.Module, state_dict: dict[str, torch.Tensor] | str | os.PathLike
) -> LoadReport:
    """Copy matching tensors of a torchvision Mask R-CNN state dict (or a file holding one) into ``model``.

    Matching is by name and shape; ``num_batches_tracked`` buffers are ignored. Returns a
    :class:`LoadReport`. Raises ``ValueError`` when nothing matches (not a torchvision detector dict).
    """
    if isinstance(state_dict, (str, os.PathLike)):
        path = str(state_dict)
        from .checkpoint import safe_torch_load

        obj = safe_torch_load(path)  # weights-only: CheckpointError (a ValueError) names the file
        if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
            obj = obj["model"]
        if not isinstance(obj, dict):
            raise ValueError(f"{path}: expected a state dict, got {type(obj).__name__}")
        state_dict = obj
        from .checkpoint import check_finite_weights

        check_finite_weights(state_dict, path)
    own = model.state_dict()
    report = LoadReport()
    new_sd: dict[str, torch.Tensor] = {}
    in_ch = getattr(getattr(model, "config", None), "in_channels", None)
    for k, v in state_dict.items():
        if k.endswith("num_batches_tracked"):
            continue
        if k not in own:
            report.unexpected.append(k)
            continue
        dst = own[k]
        if v.shape == dst.shape:
            new_sd[k] = v
            report.loaded.append(k)
        elif (
            k.endswith("body.conv1.weight")
            and in_ch == 4
            and v.dim() == 4
            and v.shape[1] == 3
            and v.shape[0] == dst.shape[0]
            and v.shape[2:] == dst.shape[2:]
        ):
            new_sd[k] = torch.stack([v[:, 0], v[:, 1] / 2, v[:, 2], v[:, 1] / 2], dim=1)
            report.adapted.append(k)
        else:
            report.shape_mismatch.append((k, tuple(v.shape), tuple(dst.shape)))
    if not report.loaded:
        raise ValueError(
            "load_torchvision_state_dict: no key of the state dict matches the model "
            f"(first keys: {list(state_dict)[:3]})"
        )
    done = set(new_sd)
    report.missing = [k for k in own if k not in done and not k.endswith("num_batches_tracked")]
    model.load_state_dict(new_sd, strict=False)
    return report
