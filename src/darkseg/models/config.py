"""Model configuration dataclasses (YAML-friendly: plain types, ``from_dict`` / ``to_dict``).

Like every settings dataclass (:class:`darkseg.utils.typed_config.Settings`) they check their own values
when constructed and raise :class:`darkseg.errors.ConfigError` naming the key; ``from_dict`` is the one
settings loader (:func:`darkseg.utils.typed_config.load_dataclass`). ``ModelConfigError`` is another
name of ``ConfigError``, kept for older imports.
"""

from __future__ import annotations

import dataclasses
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from darkseg.errors import ConfigError, short_repr
from darkseg.utils.typed_config import Settings, load_value

__all__ = [
    "ModelConfig",
    "DSLConfig",
    "ModelConfigError",
    "NORMALIZATION_PRESETS",
    "MAX_CLASS_NAME_CHARS",
    "MAX_IMAGE_SIDE",
    "class_name_problem",
]


ModelConfigError = ConfigError  # the one settings error; the old name keeps older imports working


# Per-channel (mean, std) for inputs in [0, 1], RGB order. "caffe" is the detectron2/mmdet caffe
# normalisation (mean subtraction on the 0-255 scale, std 1) expressed for [0, 1] inputs.
NORMALIZATION_PRESETS: dict[str, tuple[list[float], list[float]]] = {
    "caffe": ([123.675 / 255.0, 116.28 / 255.0, 103.53 / 255.0], [1.0 / 255.0] * 3),
    "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
    "none": ([0.0, 0.0, 0.0], [1.0, 1.0, 1.0]),
}


#: Longest class name accepted (characters).
MAX_CLASS_NAME_CHARS = 128
#: Largest ``min_size`` / ``max_size`` (pixels): a bigger resize box only exhausts memory.
MAX_IMAGE_SIDE = 8192
_CONTROL_CATEGORIES = {"Cc", "Cs", "Zl", "Zp"}


def class_name_problem(name: Any) -> str | None:
    """What is wrong with a class name, or None: names must be strings of 1..``MAX_CLASS_NAME_CHARS``
    characters, not only whitespace, without control characters (they end up in result files, plots
    and terminal output)."""
    if not isinstance(name, str):
        return f"class names must be strings, got {short_repr(name)} ({type(name).__name__})"
    if not name.strip():
        return f"class name {short_repr(name)} is empty or only whitespace"
    if len(name) > MAX_CLASS_NAME_CHARS:
        return f"class name of {len(name)} characters (limit {MAX_CLASS_NAME_CHARS}): {short_repr(name)}"
    bad = next((c for c in name if unicodedata.category(c) in _CONTROL_CATEGORIES), None)
    if bad is not None:
        return f"class name {short_repr(name)} holds the control character U+{ord(bad):04X}"
    return None


@dataclass
class DSLConfig(Settings):
    """Disturbance suppression loss settings (docs/models.md, "DSL").

    ``weight`` per level, element-wise squared error clamped at ``clamp``, summed over ``levels``
    (indices into C2..C5, 0-based). ``detach_clean=True`` stops the gradient into the clean branch
    (the paper does not: default False).
    """

    weight: float = 0.01
    clamp: float = 0.1
    detach_clean: bool = False
    levels: tuple[int, ...] = (0, 1, 2, 3)

    def __post_init__(self) -> None:
        self.levels = tuple(int(v) for v in self.levels)
        super().__post_init__()

    def validate(self) -> None:
        if self.weight < 0:
            raise self.invalid("weight", "must be >= 0")
        if not self.clamp > 0:
            raise self.invalid("clamp", "must be > 0")
        if (
            not self.levels
            or any(v < 0 or v > 3 for v in self.levels)
            or len(set(self.levels)) != len(self.levels)
        ):
            raise self.invalid("levels", "must be distinct indices in 0..3")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["levels"] = list(self.levels)
        return d


@dataclass
class ModelConfig(Settings):
    """Everything needed to rebuild a :class:`~darkseg.models.detector.DarkMaskRCNN`.

    Backbone: ``depth`` 18/34/50/101, ``style`` "pytorch" (stride on the 3x3 conv) or "caffe" (stride on
    the first 1x1 conv of bottlenecks), ``awd`` (adaptive weighted downsampling before stages 2-4),
    ``awd_mode`` "replace" (stride-2 AWD, all stage convs stride 1: the paper's R50 topology) or
    "prefilter" (stride-1 AWD in front of the usual strided convs: the paper's Mask2Former variant),
    ``scb`` (smooth-oriented conv block on every 3x3 conv of ``scb_stages``; None = the paper's rule,
    stages with index >= ``frozen_stages``), ``scb_zero_init`` (zero-init the SCB 1x1 branch; the paper
    uses PyTorch's default init).

    Input: ``in_channels`` 3 (RGB / rendered RAW) or 4 (packed RAW R,G1,B,G2); ``min_size``/``max_size``
    keep-ratio box (torchvision semantics); ``resize_interpolation`` "nearest" (paper) or "bilinear"
    (torchvision); ``normalization`` preset or explicit ``image_mean``/``image_std`` (for [0,1] inputs).

    BatchNorm: ``frozen_bn`` (fixed running statistics, MMDetection's ``norm_eval=True``),
    ``bn_requires_grad`` (whether the affine weight and bias of the ResNet's own BatchNorm layers train,
    MMDetection's ``norm_cfg.requires_grad``: True in the paper's LIS configs, False in MMDetection's
    stock caffe COCO configs; AWD's BatchNorm always trains, as in the original).

    Heads: torchvision defaults, shrinkable for small CPU models. Training samplers:
    ``rpn_batch_size_per_image`` / ``rpn_positive_fraction`` (MMDetection: 256 / 0.5) and
    ``box_batch_size_per_image`` / ``box_positive_fraction`` (512 / 0.25): at most ``batch x fraction``
    positives, the rest negatives, drawn at random when there are more candidates than that.

    Architecture beyond the standard ResNets (what converted MMDetection checkpoints need):
    ``backbone`` "resnet" or "convnext"; ``stage_blocks`` blocks per stage (ResNet: default from
    ``depth``; ConvNeXt: default ``[3, 3, 9, 3]``, ConvNeXt-T); ``base_channels`` ResNet stem width (64);
    ``stage_channels`` ConvNeXt widths (default ``[96, 192, 384, 768]``); ``drop_path_rate`` ConvNeXt
    stochastic depth (training only). For ConvNeXt, ``frozen_stages`` has MMClassification's meaning
    (``k`` freezes stages ``0..k-1``; 0 and -1 freeze nothing), ``awd`` puts stride-1 AWD before
    stages 2-4 and ``scb`` adds the smoothing branch to every block (not foldable: see
    ``darkseg.models.convnext``).

    ``compat``: "torchvision" (default: torchvision's Mask R-CNN behaviour) or "mmdet" (MMDetection 2.x
    inference numerics, so that converted checkpoints give the same detections as the original code:
    see ``darkseg.models.mmdet_compat`` and docs/checkpoints.md). ``input_scale``: the network sees
    ``x * input_scale`` (x in [0, 1]) before ``(x - image_mean) / image_std``; MMDetection models use 255
    with mean/std in 0-255 units. ``channel_order``: "rgb" or "bgr" (the network's first conv expects
    this order; inputs are always given as RGB and flipped by the transform). ``rpn_nms_thresh``: RPN
    NMS IoU. ``mmdet_training`` (mmdet mode only): fine-tune with MMDetection's assigners and losses
    (L1 box losses, low-quality matches only at IoU >= 0.3 / 0.5 in RPN / RoI stage, binary mask
    targets); False keeps torchvision's.
    """

    depth: int = 50
    style: str = "caffe"
    awd: bool = False
    awd_mode: str = "replace"
    scb: bool = False
    scb_stages: list[int] | None = None
    scb_zero_init: bool = False
    class_names: list[str] = field(default_factory=lambda: ["object"])
    in_channels: int = 3
    min_size: int = 400
    max_size: int = 600
    resize_interpolation: str = "nearest"
    normalization: str = "caffe"
    image_mean: list[float] | None = None
    image_std: list[float] | None = None
    size_divisible: int = 32
    frozen_stages: int = 1
    frozen_bn: bool = True
    bn_requires_grad: bool = True
    trainable_backbone: bool = True
    pretrained: bool = False
    # heads
    fpn_channels: int = 256
    box_head_dim: int = 1024
    mask_head_channels: int = 256
    rpn_pre_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_test: int = 1000
    rpn_batch_size_per_image: int = 256
    box_batch_size_per_image: int = 512
    rpn_positive_fraction: float = 0.5
    box_positive_fraction: float = 0.25
    box_detections_per_img: int = 100
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    rpn_nms_thresh: float = 0.7
    dsl: DSLConfig = field(default_factory=DSLConfig)
    # architecture beyond the standard ResNets; numerics mode
    backbone: str = "resnet"
    stage_blocks: list[int] | None = None
    base_channels: int = 64
    stage_channels: list[int] | None = None
    drop_path_rate: float = 0.0
    compat: str = "torchvision"
    input_scale: float = 1.0
    channel_order: str = "rgb"
    mmdet_training: bool = True

    def __post_init__(self) -> None:
        """Values given in code: ``dsl`` as a dict, sequences as lists; then :meth:`validate`."""
        if isinstance(self.dsl, dict):
            self.dsl = load_value(self.dsl, DSLConfig, "dsl", type(self).__name__)
        if not isinstance(self.class_names, str):  # refused by validate: list("person") = six classes
            self.class_names = list(self.class_names)  # non-strings are refused by validate, not converted
        if self.scb_stages is not None:
            self.scb_stages = [int(s) for s in self.scb_stages]
        for name in ("stage_blocks", "stage_channels"):
            if getattr(self, name) is not None:
                setattr(self, name, [int(v) for v in getattr(self, name)])
        super().__post_init__()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        if isinstance(self.class_names, str):
            raise ConfigError(
                f"expected a list of names, got the string {short_repr(self.class_names)}; "
                f"write [{short_repr(self.class_names)}]",
                "class_names",
            )
        if self.backbone not in ("resnet", "convnext"):
            raise self.invalid("backbone", "must be 'resnet' or 'convnext'")
        if self.compat not in ("torchvision", "mmdet"):
            raise self.invalid("compat", "must be 'torchvision' or 'mmdet'")
        if self.channel_order not in ("rgb", "bgr"):
            raise self.invalid("channel_order", "must be 'rgb' or 'bgr'")
        if not self.input_scale > 0:
            raise self.invalid("input_scale", "must be > 0")
        if self.stage_blocks is not None and (len(self.stage_blocks) != 4 or min(self.stage_blocks) < 1):
            raise self.invalid("stage_blocks", "needs 4 positive block counts")
        if self.stage_channels is not None and (
            len(self.stage_channels) != 4 or min(self.stage_channels) < 1
        ):
            raise self.invalid("stage_channels", "needs 4 positive widths")
        if self.base_channels < 1:
            raise self.invalid("base_channels", "must be positive")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise self.invalid("drop_path_rate", "must be in [0, 1)")
        if not 0.0 < self.rpn_nms_thresh <= 1.0:
            raise self.invalid("rpn_nms_thresh", "must be in (0, 1]")
        if self.depth not in (18, 34, 50, 101):
            raise self.invalid("depth", "must be one of 18, 34, 50, 101")
        if self.style not in ("pytorch", "caffe"):
            raise self.invalid("style", "must be 'pytorch' or 'caffe'")
        if self.awd_mode not in ("replace", "prefilter"):
            raise self.invalid("awd_mode", "must be 'replace' or 'prefilter'")
        if self.scb_stages is not None and any(s not in (1, 2, 3, 4) for s in self.scb_stages):
            raise self.invalid("scb_stages", "stage numbers must be in 1..4")
        if not self.class_names:
            raise self.invalid("class_names", "needs at least one class")
        for i, name in enumerate(self.class_names):
            problem = class_name_problem(name)
            if problem:
                raise ConfigError(problem, f"class_names[{i}]")
        if len(set(self.class_names)) != len(self.class_names):
            raise self.invalid("class_names", "names must be unique")
        if self.in_channels not in (3, 4):
            raise self.invalid("in_channels", "must be 3 (RGB / rendered RAW) or 4 (packed RAW)")
        if not isinstance(self.min_size, int) or self.min_size <= 0:
            raise self.invalid(
                "min_size", "must be a positive int (multi-scale training belongs to the data pipeline)"
            )
        if not isinstance(self.max_size, int) or self.max_size < self.min_size:
            raise self.invalid("max_size", "must be an int >= min_size")
        if self.max_size > MAX_IMAGE_SIDE:
            raise self.invalid("max_size", f"must be <= {MAX_IMAGE_SIDE} pixels")
        if self.resize_interpolation not in ("nearest", "bilinear"):
            raise self.invalid("resize_interpolation", "must be 'nearest' or 'bilinear'")
        if self.size_divisible <= 0 or self.size_divisible % 32:
            raise self.invalid(
                "size_divisible", "must be a positive multiple of 32 (the backbone's total stride)"
            )
        if not -1 <= self.frozen_stages <= 4:
            raise self.invalid("frozen_stages", "must be in -1..4")
        if self.pretrained:
            raise self.invalid(
                "pretrained",
                "must be False: darkseg never downloads weights; use load_torchvision_state_dict",
            )
        if (self.image_mean is None) != (self.image_std is None):
            raise ConfigError("image_mean and image_std must be given together")
        if self.input_scale != 1.0 and self.image_mean is None:
            raise self.invalid(
                "input_scale", "needs image_mean/image_std in the scaled units (presets are for [0, 1])"
            )
        if self.image_mean is not None:
            if len(self.image_mean) != self.in_channels or len(self.image_std) != self.in_channels:
                raise ConfigError(
                    f"image_mean and image_std need {self.in_channels} values (in_channels), got "
                    f"{len(self.image_mean)}/{len(self.image_std)}"
                )
            if any(s <= 0 for s in self.image_std):
                raise self.invalid("image_std", "values must be > 0")
        elif self.normalization not in NORMALIZATION_PRESETS:
            raise self.invalid(
                "normalization",
                f"must be one of {sorted(NORMALIZATION_PRESETS)} or give image_mean/image_std",
            )
        for name in ("rpn_positive_fraction", "box_positive_fraction"):
            if not 0.0 < float(getattr(self, name)) <= 1.0:
                raise self.invalid(name, "must be a fraction in (0, 1]")
        if not self.bn_requires_grad and self.backbone != "resnet":
            raise self.invalid(
                "bn_requires_grad", "False applies to ResNet backbones only (ConvNeXt has no BatchNorm)"
            )
        if not 0.0 <= self.box_score_thresh <= 1.0:
            raise self.invalid("box_score_thresh", "must be a score in [0, 1]")
        if not 0.0 < self.box_nms_thresh <= 1.0:
            raise self.invalid("box_nms_thresh", "must be an IoU in (0, 1]")
        for name in (
            "fpn_channels",
            "box_head_dim",
            "mask_head_channels",
            "rpn_pre_nms_top_n_train",
            "rpn_pre_nms_top_n_test",
            "rpn_post_nms_top_n_train",
            "rpn_post_nms_top_n_test",
            "rpn_batch_size_per_image",
            "box_batch_size_per_image",
            "box_detections_per_img",
        ):
            if int(getattr(self, name)) <= 0:
                raise self.invalid(name, "must be > 0")

    # ------------------------------------------------------------------ derived values
    @property
    def num_classes(self) -> int:
        """Number of classes including background (label 0)."""
        return len(self.class_names) + 1

    def mean_std(self) -> tuple[list[float], list[float]]:
        """Per-channel normalisation of ``x * input_scale``, ``in_channels`` entries each.

        A preset with 4 channels (packed RAW R,G1,B,G2) uses the R, G, B, G values of the preset.
        """
        if self.image_mean is not None:
            return [float(v) for v in self.image_mean], [float(v) for v in self.image_std]
        mean, std = NORMALIZATION_PRESETS[self.normalization]
        if self.in_channels == 4:
            return [mean[0], mean[1], mean[2], mean[1]], [std[0], std[1], std[2], std[1]]
        return list(mean), list(std)

    def scb_stage_set(self) -> set[int]:
        """Stage numbers (1..4) whose 3x3 convs get SCB (empty when ``scb`` is off)."""
        if not self.scb:
            return set()
        if self.scb_stages is not None:
            return set(self.scb_stages)
        return {s for s in (1, 2, 3, 4) if s - 1 >= self.frozen_stages}

    @classmethod
    def tiny(cls, class_names: list[str] | None = None, **overrides: Any) -> ModelConfig:
        """A small R18 model for CPU demos / tests trained FROM SCRATCH (no pretrained weights).

        ImageNet normalisation (caffe's 0-255 scale with identity BN statistics makes randomly initialised
        activations explode), live BatchNorm, nothing frozen, 32-channel FPN, small heads, few proposals.
        Any field can be overridden.
        """
        base: dict[str, Any] = dict(
            depth=18,
            style="pytorch",
            class_names=class_names if isinstance(class_names, str) else list(class_names or ["object"]),
            normalization="imagenet",
            frozen_stages=-1,
            frozen_bn=False,
            fpn_channels=32,
            box_head_dim=128,
            mask_head_channels=32,
            rpn_pre_nms_top_n_train=300,
            rpn_post_nms_top_n_train=150,
            rpn_pre_nms_top_n_test=200,
            rpn_post_nms_top_n_test=100,
            rpn_batch_size_per_image=128,
            box_batch_size_per_image=128,
            box_detections_per_img=50,
        )
        base.update(overrides)
        return cls(**base)

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["dsl"] = self.dsl.to_dict()
        d["class_names"] = list(self.class_names)
        for k in ("scb_stages", "image_mean", "image_std", "stage_blocks", "stage_channels"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d
