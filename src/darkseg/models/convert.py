"""Convert MMDetection 2.x Mask R-CNN checkpoints (the LIS release, MMDetection's COCO models).

``convert_mmdet_checkpoint(src, dst)`` reads an MMDetection checkpoint (``{"state_dict": ..., "meta":
{...}}`` or a bare state dict) with a weights-only load, infers the architecture from the weights
alone (ResNet block counts and widths, AWD and SCB presence, FPN / RPN / head widths, number of
classes; ConvNeXt stage depths and widths), reads the class names and test settings from ``meta``
(MMDetection stores the config as Python text there: parsed, never executed, see
:mod:`darkseg.models.mmdet_config`), maps every key to darkseg's names and writes an ordinary darkseg
checkpoint with ``compat = "mmdet"`` (MMDetection's inference numerics). Nothing is written when
anything is wrong.

Key mapping (MMDetection -> darkseg):

* ``backbone.conv1 / bn1 / layerL.j.*`` -> ``backbone.body.*`` (same names); an SCB block's
  ``layerL.j.llpf.weight`` / ``learnable_conv1.weight`` -> ``layerL.j.conv2.llpf.weight`` /
  ``conv2.learnable_conv1.weight``; ``AdaD.i.*`` -> ``backbone.body.awd.layer{i+1}.*``; ConvNeXt
  ``backbone.*`` -> ``backbone.body.*``.
* ``neck.lateral_convs.i.conv`` / ``neck.fpn_convs.i.conv`` -> ``backbone.fpn.inner_blocks.i.0`` /
  ``layer_blocks.i.0``.
* ``rpn_head.rpn_conv / rpn_cls / rpn_reg`` -> ``rpn.head.conv.0.0 / cls_logits / bbox_pred``.
* ``roi_head.bbox_head.shared_fcs.0/1`` -> ``roi_heads.box_head.fc6/fc7``; ``fc_cls`` (background
  last) -> ``box_predictor.cls_score`` (background first: rows ``[K, 0..K-1]``); ``fc_reg`` (``4K``
  rows) -> ``bbox_pred`` with 4 zero rows for the background slot in front.
* ``roi_head.mask_head.convs.i.conv`` -> ``roi_heads.mask_head.i.0``; ``upsample`` ->
  ``mask_predictor.conv5_mask``; ``conv_logits`` (K channels) -> ``mask_fcn_logits`` with a zero
  background channel in front.
* BatchNorm ``num_batches_tracked`` counters are dropped where darkseg's BatchNorm is frozen (it keeps
  none).
"""

from __future__ import annotations

import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from darkseg.errors import ConfigError, DarkSegError, short_repr

from .checkpoint import CheckpointError, save_checkpoint
from .config import ModelConfig, class_name_problem
from .mmdet_config import ConfigTextError, parse_config_text, test_settings

__all__ = [
    "ConversionError",
    "ConversionReport",
    "convert_mmdet_checkpoint",
    "convert_mmdet_state_dict",
    "infer_model_config",
    "read_mmdet_checkpoint",
]

_STANDARD_DEPTHS = {
    ("bottleneck", (3, 4, 6, 3)): 50,
    ("bottleneck", (3, 4, 23, 3)): 101,
    ("basic", (2, 2, 2, 2)): 18,
    ("basic", (3, 4, 6, 3)): 34,
}


class ConversionError(DarkSegError, ValueError):
    """The checkpoint cannot be converted; the message names the file and the key or setting."""


@dataclass
class ConversionReport:
    """What a conversion did: the inferred config, settings taken from ``meta``, dropped keys."""

    config: ModelConfig
    source_keys: int = 0
    converted_keys: int = 0
    dropped: list[str] = field(default_factory=list)
    from_meta: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        c = self.config
        if c.backbone == "convnext":
            arch = f"ConvNeXt blocks {c.stage_blocks} widths {c.stage_channels}"
        else:
            blocks = c.stage_blocks or "standard"
            arch = f"ResNet-{c.depth} ({c.style}, blocks {blocks}, width {c.base_channels})"
        scb = sorted(c.scb_stage_set()) if c.backbone == "resnet" else c.scb
        lines = [
            f"architecture: {arch}, AWD {c.awd}, SCB {scb}, FPN {c.fpn_channels}, box head {c.box_head_dim}, "
            f"mask head {c.mask_head_channels}, {len(c.class_names)} classes",
            f"test input: resize into ({c.max_size}, {c.min_size}) {c.resize_interpolation}, "
            f"{c.channel_order.upper()}, mean {c.image_mean} std {c.image_std} (0-255 units)",
            f"keys: {self.source_keys} read, {self.converted_keys} written, "
            f"{len(self.dropped)} dropped (BatchNorm counters)",
        ]
        if self.from_meta:
            lines.append("from the checkpoint's meta: " + ", ".join(sorted(self.from_meta)))
        lines += self.notes
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ reading
def _numpy_safe_globals() -> list[Any]:
    """numpy scalar / dtype reconstructors: MMDetection's ``meta`` can hold numpy floats (no code runs)."""
    try:
        import numpy as np
        from numpy.core.multiarray import scalar  # noqa: PLC0415 - numpy's pickled-scalar constructor
    except ImportError:  # pragma: no cover - numpy is a dependency
        return []
    dtypes = [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]
    return [scalar, np.dtype, *dtypes]


def read_mmdet_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, meta)`` of an MMDetection checkpoint or bare state dict (weights-only load).

    Raises:
        FileNotFoundError, ConversionError (naming the file).
    """
    from .checkpoint import safe_torch_load

    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.serialization.safe_globals(_numpy_safe_globals()):
            try:
                obj = safe_torch_load(path)
            except CheckpointError as exc:
                raise ConversionError(str(exc)) from None
    if not isinstance(obj, dict):
        raise ConversionError(f"{path}: expected a dict (MMDetection checkpoint), got {type(obj).__name__}")
    if obj.get("format") == "darkseg":
        raise ConversionError(f"{path}: already a darkseg checkpoint; nothing to convert")
    if isinstance(obj.get("state_dict"), dict):
        sd, meta = obj["state_dict"], obj.get("meta")
    elif obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        sd, meta = obj, {}
    else:
        raise ConversionError(
            f"{path}: not an MMDetection checkpoint (no 'state_dict' entry and not a bare state dict)"
        )
    meta = _checked_meta(meta, path)
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise ConversionError(f"{path}: state_dict entry {short_repr(bad[0])} is not a tensor")
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        name = k[len("module.") :] if k.startswith("module.") else k
        if name in out:
            raise ConversionError(
                f"{path}: state_dict holds {name!r} both with and without the 'module.' prefix; "
                "which one is meant is unknown"
            )
        out[name] = v
    return out, meta


def _checked_meta(meta: Any, path: Path) -> dict[str, Any]:
    """``meta`` as a dict (``{}`` when absent); a ``meta`` (or its ``config`` / ``CLASSES``) of another
    type is refused naming it, never ignored."""
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise ConversionError(f"{path}: 'meta' is a {type(meta).__name__}; expected a dict")
    config = meta.get("config")
    if config is not None and not isinstance(config, str):
        raise ConversionError(
            f"{path}: meta['config'] is a {type(config).__name__}; expected the config text"
        )
    classes = meta.get("CLASSES")
    if classes is not None and not isinstance(classes, (list, tuple)):
        raise ConversionError(
            f"{path}: meta['CLASSES'] is a {type(classes).__name__}; expected a list of class names"
        )
    return meta


# ------------------------------------------------------------------------------------------ inference
def _shape(sd: dict[str, torch.Tensor], key: str, where: str) -> tuple[int, ...]:
    if key not in sd:
        raise ConversionError(f"{where}: missing key '{key}' (not an MMDetection Mask R-CNN with FPN?)")
    return tuple(sd[key].shape)


def _count(sd: dict[str, torch.Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    idx = {int(m.group(1)) for k in sd if (m := rx.match(k))}
    if idx and idx != set(range(len(idx))):
        raise ConversionError(f"non-contiguous indices for '{pattern}': {sorted(idx)}")
    return len(idx)


def _infer_resnet(sd: dict[str, torch.Tensor], where: str) -> dict[str, Any]:
    stem = _shape(sd, "backbone.conv1.weight", where)
    blocks = [_count(sd, rf"backbone\.layer{s}\.(\d+)\.") for s in (1, 2, 3, 4)]
    if min(blocks) == 0:
        raise ConversionError(f"{where}: backbone stages with no blocks: {blocks} (not a 4-stage ResNet)")
    kind = "bottleneck" if "backbone.layer1.0.conv3.weight" in sd else "basic"
    depth = _STANDARD_DEPTHS.get((kind, tuple(blocks)))
    out: dict[str, Any] = {
        "backbone": "resnet",
        "in_channels": stem[1],
        "base_channels": stem[0],
        "depth": depth or (50 if kind == "bottleneck" else 18),
        "stage_blocks": None if depth else blocks,
    }
    width = _shape(sd, "backbone.layer1.0.conv1.weight", where)[0]
    if width != stem[0]:
        raise ConversionError(
            f"{where}: backbone.layer1.0.conv1 has {width} channels for a stem of {stem[0]}: grouped or "
            "wide ResNets are not supported"
        )
    awd = [f"backbone.AdaD.{i}.weight_net.0.weight" in sd for i in (1, 2, 3)]
    if any(awd) and not all(awd):
        raise ConversionError(f"{where}: AWD (AdaD) modules present only for some stages: {awd}")
    out["awd"] = all(awd)
    scb_stages = []
    for s, n in zip((1, 2, 3, 4), blocks):
        has = [f"backbone.layer{s}.{j}.llpf.weight" in sd for j in range(n)]
        if any(has) and not all(has):
            raise ConversionError(f"{where}: SCB on only some blocks of layer{s} ({has}) is not supported")
        if all(has):
            scb_stages.append(s)
    out["scb"] = bool(scb_stages)
    out["scb_stages"] = scb_stages or None
    return out


def _infer_convnext(sd: dict[str, torch.Tensor], where: str) -> dict[str, Any]:
    blocks = [_count(sd, rf"backbone\.stages\.{s}\.(\d+)\.") for s in range(4)]
    dims = [_shape(sd, f"backbone.norm{i}.weight", where)[0] for i in range(4)]
    awd = [f"backbone.AdaD.{i}.weight_net.0.weight" in sd for i in (1, 2, 3)]
    if any(awd) and not all(awd):
        raise ConversionError(f"{where}: AWD (AdaD) modules present only for some stages: {awd}")
    scb = [f"backbone.stages.{s}.{j}.llpf.weight" in sd for s in range(4) for j in range(blocks[s])]
    if any(scb) and not all(scb):
        raise ConversionError(f"{where}: SCB on only some ConvNeXt blocks is not supported")
    return {
        "backbone": "convnext",
        "in_channels": _shape(sd, "backbone.downsample_layers.0.0.weight", where)[1],
        "stage_blocks": blocks,
        "stage_channels": dims,
        "awd": all(awd),
        "scb": all(scb),
        "frozen_bn": False,
    }


def _infer_heads(sd: dict[str, torch.Tensor], where: str) -> dict[str, Any]:
    n_lat = _count(sd, r"neck\.lateral_convs\.(\d+)\.")
    n_fpn = _count(sd, r"neck\.fpn_convs\.(\d+)\.")
    if n_lat != 4 or n_fpn != 4:
        raise ConversionError(
            f"{where}: FPN with {n_lat} lateral and {n_fpn} output convs; darkseg supports 4 + 4 (P6 by "
            "max-pooling, MMDetection's default)"
        )
    fpn = _shape(sd, "neck.lateral_convs.0.conv.weight", where)[0]
    anchors = _shape(sd, "rpn_head.rpn_cls.weight", where)[0]
    if anchors != 3:
        raise ConversionError(
            f"{where}: rpn_head.rpn_cls has {anchors} outputs; darkseg supports 3 anchors per location "
            "with sigmoid objectness"
        )
    fc6 = _shape(sd, "roi_head.bbox_head.shared_fcs.0.weight", where)
    if fc6[1] != fpn * 49:
        raise ConversionError(f"{where}: shared_fcs.0 takes {fc6[1]} inputs, expected {fpn} x 7 x 7")
    k = _shape(sd, "roi_head.bbox_head.fc_cls.weight", where)[0] - 1
    reg = _shape(sd, "roi_head.bbox_head.fc_reg.weight", where)[0]
    if reg != 4 * k:
        raise ConversionError(
            f"{where}: roi_head.bbox_head.fc_reg has {reg} outputs for {k} classes; darkseg supports "
            "class-specific regression (4 per class, no background slot)"
        )
    n_conv = _count(sd, r"roi_head\.mask_head\.convs\.(\d+)\.")
    if n_conv != 4:
        raise ConversionError(f"{where}: mask head with {n_conv} convs; darkseg's has 4")
    mask_c = _shape(sd, "roi_head.mask_head.convs.0.conv.weight", where)[0]
    logits = _shape(sd, "roi_head.mask_head.conv_logits.weight", where)[0]
    if logits != k:
        raise ConversionError(f"{where}: conv_logits has {logits} channels for {k} classes")
    return {"fpn_channels": fpn, "box_head_dim": fc6[0], "mask_head_channels": mask_c, "num_classes": k}


def infer_model_config(
    sd: dict[str, torch.Tensor],
    meta: dict[str, Any] | None = None,
    class_names: list[str] | None = None,
    img_scale: tuple[int, int] | None = None,
    where: str = "checkpoint",
    report: ConversionReport | None = None,
) -> ModelConfig:
    """darkseg ``ModelConfig`` (``compat = "mmdet"``) for an MMDetection Mask R-CNN state dict.

    Architecture comes from ``sd`` alone; class names, test resize/normalisation and test thresholds
    from ``meta`` (``CLASSES``, ``config`` text) where present; ``class_names`` / ``img_scale``
    (``(long, short)``) override. Without ``meta``: a ResNet with AWD gets caffe-style BGR input with
    MMDetection's caffe mean, any other ResNet and ConvNeXt ImageNet RGB normalisation, and the resize
    box 1333 x 800 bilinear (MMDetection's defaults; docs/checkpoints.md).
    """
    meta = meta or {}
    if any(k.startswith("backbone.downsample_layers.") for k in sd):
        arch = _infer_convnext(sd, where)
    else:
        arch = _infer_resnet(sd, where)
    heads = _infer_heads(sd, where)
    settings: dict[str, Any] = {}
    text = meta.get("config")
    if isinstance(text, str) and text.strip():
        try:
            settings = test_settings(parse_config_text(text))
        except ConfigTextError as exc:
            raise ConversionError(f"{where}: meta['config']: {exc}") from None
    if report is not None:
        report.from_meta = dict(settings)
    k = heads.pop("num_classes")
    names = _class_names(meta, class_names, k, where)
    if report is not None and class_names is None and isinstance(meta.get("CLASSES"), (list, tuple)):
        report.from_meta["CLASSES"] = len(names)
    convnext = arch["backbone"] == "convnext"
    style = str(settings.get("style", "pytorch"))
    default_rgb = convnext or (style == "pytorch" and not arch.get("awd"))
    mean = settings.get("mean") or ([123.675, 116.28, 103.53] if default_rgb else [103.53, 116.28, 123.675])
    std = settings.get("std") or ([58.395, 57.12, 57.375] if default_rgb else [1.0, 1.0, 1.0])
    to_rgb = settings.get("to_rgb", default_rgb)
    long_short = img_scale or settings.get("img_scale") or (1333, 800)
    fields: dict[str, Any] = dict(
        arch,
        **heads,
        class_names=names,
        compat="mmdet",
        style=style if style in ("pytorch", "caffe") else "pytorch",
        awd_mode="replace",
        frozen_stages=int(settings.get("frozen_stages", 1)) if not convnext else 0,
        bn_requires_grad=bool(settings.get("bn_requires_grad", True)) if not convnext else True,
        min_size=int(min(long_short)),
        max_size=int(max(long_short)),
        resize_interpolation=settings.get("interpolation", "bilinear"),
        image_mean=[float(v) for v in mean],
        image_std=[float(v) for v in std],
        input_scale=255.0,
        channel_order="rgb" if to_rgb else "bgr",
        rpn_pre_nms_top_n_test=int(settings.get("rpn_nms_pre", 1000)),
        rpn_post_nms_top_n_test=int(settings.get("rpn_max_per_img", 1000)),
        rpn_pre_nms_top_n_train=int(settings.get("train_rpn_nms_pre", 2000)),
        rpn_post_nms_top_n_train=int(settings.get("train_rpn_max_per_img", 1000)),
        rpn_nms_thresh=float(settings.get("rpn_iou", 0.7)),
        box_score_thresh=float(settings.get("rcnn_score_thr", 0.05)),
        box_nms_thresh=float(settings.get("rcnn_iou", 0.5)),
        box_detections_per_img=int(settings.get("rcnn_max_per_img", 100)),
        rpn_batch_size_per_image=int(settings.get("rpn_sampler_num", 256)),
        rpn_positive_fraction=float(settings.get("rpn_pos_fraction", 0.5)),
        box_batch_size_per_image=int(settings.get("rcnn_sampler_num", 512)),
        box_positive_fraction=float(settings.get("rcnn_pos_fraction", 0.25)),
    )
    if arch["in_channels"] != 3:
        raise ConversionError(f"{where}: first conv takes {arch['in_channels']} channels; expected 3")
    fields.pop("in_channels")
    try:
        return ModelConfig(**fields)
    except ConfigError as exc:
        raise ConversionError(f"{where}: {exc}") from None


def _class_names(meta: dict[str, Any], given: list[str] | None, k: int, where: str) -> list[str]:
    if given is not None:
        names, source = list(given), "--class-names"
    elif isinstance(meta.get("CLASSES"), (list, tuple)) and meta["CLASSES"]:
        names, source = list(meta["CLASSES"]), "meta['CLASSES']"
    else:
        return [f"class_{i}" for i in range(k)]
    if len(names) != k:
        raise ConversionError(
            f"{where}: {source} lists {len(names)} class names; the weights have {k} classes"
        )
    for i, name in enumerate(names):
        problem = class_name_problem(name)
        if problem:
            raise ConversionError(f"{where}: {source}[{i}]: {problem}")
    return names


# ------------------------------------------------------------------------------------------ mapping
def _map_key(key: str, cfg: ModelConfig) -> str | None:
    """darkseg name of an MMDetection key; raises KeyError when unknown."""
    if key.startswith("backbone."):
        rest = key[len("backbone.") :]
        if cfg.backbone == "convnext":
            return "backbone.body." + rest
        m = re.match(r"AdaD\.(\d)\.(.+)$", rest)
        if m:
            return f"backbone.body.awd.layer{int(m.group(1)) + 1}.{m.group(2)}"
        m = re.match(r"(layer\d\.\d+)\.(llpf\.weight|learnable_conv1\.weight)$", rest)
        if m:
            return f"backbone.body.{m.group(1)}.conv2.{m.group(2)}"
        return "backbone.body." + rest
    rules = [
        (r"neck\.lateral_convs\.(\d)\.conv\.(weight|bias)$", "backbone.fpn.inner_blocks.{0}.0.{1}"),
        (r"neck\.fpn_convs\.(\d)\.conv\.(weight|bias)$", "backbone.fpn.layer_blocks.{0}.0.{1}"),
        (r"rpn_head\.rpn_conv\.(weight|bias)$", "rpn.head.conv.0.0.{0}"),
        (r"rpn_head\.rpn_cls\.(weight|bias)$", "rpn.head.cls_logits.{0}"),
        (r"rpn_head\.rpn_reg\.(weight|bias)$", "rpn.head.bbox_pred.{0}"),
        (r"roi_head\.bbox_head\.shared_fcs\.0\.(weight|bias)$", "roi_heads.box_head.fc6.{0}"),
        (r"roi_head\.bbox_head\.shared_fcs\.1\.(weight|bias)$", "roi_heads.box_head.fc7.{0}"),
        (r"roi_head\.bbox_head\.fc_cls\.(weight|bias)$", "roi_heads.box_predictor.cls_score.{0}"),
        (r"roi_head\.bbox_head\.fc_reg\.(weight|bias)$", "roi_heads.box_predictor.bbox_pred.{0}"),
        (r"roi_head\.mask_head\.convs\.(\d)\.conv\.(weight|bias)$", "roi_heads.mask_head.{0}.0.{1}"),
        (r"roi_head\.mask_head\.upsample\.(weight|bias)$", "roi_heads.mask_predictor.conv5_mask.{0}"),
        (r"roi_head\.mask_head\.conv_logits\.(weight|bias)$", "roi_heads.mask_predictor.mask_fcn_logits.{0}"),
    ]
    for pattern, target in rules:
        m = re.match(pattern, key)
        if m:
            return target.format(*m.groups())
    raise KeyError(key)


def _converted_shape(key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape :func:`_convert_tensor` gives a tensor of ``shape`` (known before anything is copied)."""
    if key.startswith("roi_head.bbox_head.fc_reg.") and shape:
        return (shape[0] + 4, *shape[1:])
    if key.startswith("roi_head.mask_head.conv_logits.") and shape:
        return (shape[0] + 1, *shape[1:])
    return shape


def _convert_tensor(key: str, v: torch.Tensor) -> torch.Tensor:
    """Background-last classifier -> background-first; add the background slot of the regressor/masks."""
    v = v.detach().clone()
    if key.startswith("roi_head.bbox_head.fc_cls."):
        return torch.cat([v[-1:], v[:-1]], dim=0)
    if key.startswith("roi_head.bbox_head.fc_reg."):
        return torch.cat([v.new_zeros((4, *v.shape[1:])), v], dim=0)
    if key.startswith("roi_head.mask_head.conv_logits."):
        return torch.cat([v.new_zeros((1, *v.shape[1:])), v], dim=0)
    return v


def convert_mmdet_state_dict(
    sd: dict[str, torch.Tensor], cfg: ModelConfig, where: str = "checkpoint"
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Map an MMDetection state dict onto the darkseg model of ``cfg``.

    Returns ``(darkseg state dict, dropped keys)``. Raises :class:`ConversionError` naming the key for an
    unknown key, a shape mismatch, or a darkseg parameter the checkpoint does not provide.
    """
    from .detector import build_model

    own = build_model(cfg).state_dict()
    out: dict[str, torch.Tensor] = {}
    dropped: list[str] = []
    unknown: list[str] = []
    for key, v in sd.items():
        try:
            new = _map_key(key, cfg)
        except KeyError:
            unknown.append(key)
            continue
        if new not in own:
            if key.endswith("num_batches_tracked"):  # frozen BatchNorm keeps no counter
                dropped.append(key)
            else:
                unknown.append(key)
            continue
        if _converted_shape(key, tuple(v.shape)) != tuple(own[new].shape):  # checked before any copy
            raise ConversionError(
                f"{where}: '{key}' has shape {tuple(v.shape)}; darkseg's '{new}' needs "
                f"{tuple(own[new].shape)} after conversion"
            )
        t = _convert_tensor(key, v).to(own[new].dtype)
        if not torch.isfinite(t).all():
            raise ConversionError(f"{where}: '{key}' holds NaN or Inf values")
        out[new] = t
    if unknown:
        more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
        raise ConversionError(
            f"{where}: {len(unknown)} key(s) with no darkseg counterpart: {unknown[:5]}{more} (an "
            "architecture darkseg does not build, e.g. PointRend, Cascade or extra FPN convs)"
        )
    for key in own:  # a live BatchNorm's counter absent from the source starts at 0
        if key.endswith("num_batches_tracked") and key not in out:
            out[key] = torch.zeros_like(own[key])
    missing = sorted(set(own) - set(out))
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise ConversionError(f"{where}: the checkpoint lacks {len(missing)} weight(s): {missing[:5]}{more}")
    return out, dropped


def convert_mmdet_checkpoint(
    src: str | os.PathLike,
    dst: str | os.PathLike | None = None,
    class_names: list[str] | None = None,
    img_scale: tuple[int, int] | None = None,
    config_overrides: dict[str, Any] | None = None,
) -> ConversionReport:
    """Convert ``src`` (MMDetection checkpoint) to a darkseg checkpoint at ``dst`` (atomic write).

    Args:
        src: MMDetection 2.x checkpoint or bare state dict.
        dst: output path; ``None`` = only check and report. Refused before any work
            (:class:`darkseg.errors.OutputError`) when it is ``src`` (or a link to it), a folder, or an
            existing file that no ``convert`` run wrote (:mod:`darkseg.utils.outputs`).
        class_names: override ``meta["CLASSES"]`` (must match the number of classes).
        img_scale: test resize box ``(long, short)``, overriding the config text's.
        config_overrides: any other :class:`ModelConfig` fields to set (e.g. ``resize_interpolation``).

    Returns:
        A :class:`ConversionReport`; :meth:`ConversionReport.summary` describes it in a few lines.
    """
    from darkseg.utils.outputs import check_file, claim_file

    from .detector import build_model

    where = str(src)
    if dst is not None:  # never over the source, never over a file no convert run wrote
        check_file(dst, "convert", [src])
    sd, meta = read_mmdet_checkpoint(src)
    report = ConversionReport(config=ModelConfig(), source_keys=len(sd))
    cfg = infer_model_config(sd, meta, class_names, img_scale, where, report)
    if config_overrides:
        try:
            cfg = ModelConfig.from_dict({**cfg.to_dict(), **config_overrides})
        except ConfigError as exc:
            raise ConversionError(f"{where}: {exc}") from None
    new_sd, dropped = convert_mmdet_state_dict(sd, cfg, where)
    report.config, report.converted_keys, report.dropped = cfg, len(new_sd), dropped
    if dst is not None:
        model = build_model(cfg)
        model.load_state_dict(new_sd, strict=True)
        extra = {"converted_from": str(Path(src).name), "mmdet_meta_classes": list(cfg.class_names)}
        claim_file(dst, "convert", [src])
        save_checkpoint(dst, model, extra=extra)
    return report
