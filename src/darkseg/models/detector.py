"""The detector: torchvision Mask R-CNN on our ResNet(+AWD/SCB)+FPN, with a DSL training step.

``build_model(cfg)`` returns a :class:`DarkMaskRCNN` (a ``torchvision.models.detection.MaskRCNN``):

* eval: ``model(list[Tensor(C, H, W) float in [0, 1]])`` -> list of torchvision prediction dicts
  (``boxes`` ``(N, 4)`` xyxy pixels of the input image, ``labels`` ``(N,)`` in ``1..K``, ``scores``,
  ``masks`` ``(N, 1, H, W)`` float probabilities);
* train: ``model(images, targets)`` -> dict of the five torchvision losses;
* train with DSL: ``model.forward_dsl(clean, noisy, targets)`` -> ``clean_loss_*`` (task losses on the
  clean views), ``loss_*`` (task losses on the noisy views) and ``loss_dsl``; sum all values.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads
from torchvision.models.detection.transform import (
    GeneralizedRCNNTransform,
    _fake_cast_onnx,
    _get_shape_onnx,
    resize_boxes,
)
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from darkseg.errors import DarkSegError

from .config import ModelConfig
from .convnext import ConvNeXtBody
from .dsl import dsl_loss
from .fpn import FPN
from .mask_predictor import MaskPredictor
from .mmdet_compat import (
    MMDetAnchorGenerator,
    MMDetMatcher,
    MMDetRoIAlign,
    MMDetRoIHeads,
    MMDetRPN,
    mmdet_resize_image,
    mmdet_resize_target,
    scale_factor_of,
)
from .paste import paste_masks_box_local, paste_masks_grid_sample
from .resnet import ResNetBody
from .roi_align import PyramidRoIAlign
from .scb import count_scb, fuse_scb

__all__ = ["InputError", "DarkTransform", "DarkBackbone", "DarkMaskRCNN", "build_model", "build_backbone"]


class InputError(DarkSegError, ValueError):
    """Images or targets given to the model are malformed; the message names the entry and the problem."""


class DarkTransform(GeneralizedRCNNTransform):
    """torchvision's detection transform with input checks and a choice of resize interpolation.

    Images: list of ``(C, H, W)`` float tensors, ``C == in_channels``, finite values. Resizing follows
    torchvision's keep-ratio rule ``scale = min(min_size / short, max_size / long)`` but uses
    ``interpolation`` ("nearest": averaging interpolation would denoise low-light inputs, as the paper notes;
    "bilinear": exactly torchvision's). Masks are always resized nearest. Then normalise, pad to
    ``size_divisible``.
    """

    def __init__(
        self,
        min_size: int,
        max_size: int,
        image_mean: list[float],
        image_std: list[float],
        size_divisible: int = 32,
        interpolation: str = "nearest",
        in_channels: int = 3,
        num_classes: int | None = None,
        compat: str = "torchvision",
        input_scale: float = 1.0,
        channel_order: str = "rgb",
    ) -> None:
        super().__init__(min_size, max_size, image_mean, image_std, size_divisible=size_divisible)
        if interpolation not in ("nearest", "bilinear"):
            raise ValueError(f"interpolation must be 'nearest' or 'bilinear', got {interpolation!r}")
        self.interpolation = interpolation
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.compat = compat
        self.input_scale = float(input_scale)
        self.channel_order = channel_order
        #: ``None``: pasted masks are float probabilities; a number: ``bool`` masks thresholded while
        #: pasting (``>`` in torchvision mode, ``>=`` in mmdet mode), which needs 4x less memory.
        self.mask_threshold: float | None = None

    # -------------------------------------------------------------- checks
    def check_images(self, images: list[torch.Tensor], what: str = "images") -> None:
        if not isinstance(images, (list, tuple)) or not images:
            raise InputError(
                f"{what}: expected a non-empty list of (C, H, W) tensors, got {type(images).__name__}"
            )
        for i, img in enumerate(images):
            if not isinstance(img, torch.Tensor):
                raise InputError(f"{what}[{i}]: expected a tensor, got {type(img).__name__}")
            if img.dim() != 3:
                raise InputError(f"{what}[{i}]: expected shape (C, H, W), got {tuple(img.shape)}")
            if img.shape[0] != self.in_channels:
                raise InputError(
                    f"{what}[{i}]: expected {self.in_channels} channels (model in_channels), got shape "
                    f"{tuple(img.shape)}; 3 = RGB / rendered RAW, 4 = packed RAW (R,G1,B,G2)"
                )
            if not img.is_floating_point():
                raise InputError(f"{what}[{i}]: expected a float tensor in [0, 1], got dtype {img.dtype}")
            if img.shape[1] < 2 or img.shape[2] < 2:
                raise InputError(f"{what}[{i}]: image {tuple(img.shape[1:])} is too small (H, W >= 2 needed)")
            if not torch.jit.is_tracing() and not torch.isfinite(img).all():
                raise InputError(f"{what}[{i}]: contains NaN or Inf values")

    def check_targets(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]) -> None:
        if not isinstance(targets, (list, tuple)) or len(targets) != len(images):
            n = len(targets) if isinstance(targets, (list, tuple)) else type(targets).__name__
            raise InputError(f"targets: expected a list of {len(images)} dicts (one per image), got {n}")
        for i, (img, t) in enumerate(zip(images, targets)):
            for key in ("boxes", "labels", "masks"):
                if key not in t:
                    raise InputError(f"targets[{i}]: missing '{key}'")
            boxes, labels, masks = t["boxes"], t["labels"], t["masks"]
            if boxes.dim() != 2 or boxes.shape[1] != 4 or not boxes.is_floating_point():
                raise InputError(
                    f"targets[{i}]['boxes']: expected float (N, 4), got {tuple(boxes.shape)} {boxes.dtype}"
                )
            n = boxes.shape[0]
            if not torch.isfinite(boxes).all():
                raise InputError(f"targets[{i}]['boxes']: contains NaN or Inf")
            if n and (boxes[:, 2:] <= boxes[:, :2]).any():
                j = int(torch.where((boxes[:, 2:] <= boxes[:, :2]).any(1))[0][0])
                raise InputError(
                    f"targets[{i}]['boxes'][{j}] = {boxes[j].tolist()} has non-positive width/height"
                )
            if labels.shape != (n,) or labels.dtype != torch.int64:
                raise InputError(
                    f"targets[{i}]['labels']: expected int64 ({n},), got {tuple(labels.shape)} {labels.dtype}"
                )
            if n and self.num_classes is not None and (labels.min() < 1 or labels.max() >= self.num_classes):
                raise InputError(
                    f"targets[{i}]['labels']: values must be in 1..{self.num_classes - 1}, got "
                    f"min {int(labels.min())} max {int(labels.max())}"
                )
            if masks.shape != (n, img.shape[1], img.shape[2]):
                raise InputError(
                    f"targets[{i}]['masks']: expected shape ({n}, {img.shape[1]}, {img.shape[2]}) "
                    f"(N, H, W of the image), got {tuple(masks.shape)}"
                )
            if "polygons" in t:
                self._check_polygons(t["polygons"], n, f"targets[{i}]['polygons']")

    @staticmethod
    def _check_polygons(polys, n: int, what: str) -> None:
        """``polys``: ``n`` entries, each None or a list of finite 1-D coordinate arrays (>= 3 points)."""
        if not isinstance(polys, (list, tuple)) or len(polys) != n:
            got = len(polys) if isinstance(polys, (list, tuple)) else type(polys).__name__
            raise InputError(f"{what}: expected a list of {n} entries (one per instance), got {got}")
        for j, inst in enumerate(polys):
            if inst is None:
                continue
            if not isinstance(inst, (list, tuple)):
                raise InputError(
                    f"{what}[{j}]: expected None or a list of polygons, got {type(inst).__name__}"
                )
            for k, p in enumerate(inst):
                a = np.asarray(p)
                if a.ndim != 1 or len(a) < 6 or len(a) % 2 or not np.issubdtype(a.dtype, np.number):
                    raise InputError(
                        f"{what}[{j}][{k}]: expected a flat list x0, y0, x1, y1, ... of >= 3 points, got "
                        f"shape {a.shape} {a.dtype}"
                    )
                if not np.isfinite(a).all():
                    raise InputError(f"{what}[{j}][{k}]: contains NaN or Inf")

    def forward(self, images, targets=None):
        self.check_images(images)
        if targets is not None:
            self.check_targets(images, targets)
        return super().forward(images, targets)

    # -------------------------------------------------------------- normalise, resize, paste
    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """``(x[order] * input_scale - mean) / std``; ``order`` flips RGB to BGR for "bgr" models."""
        if self.channel_order == "bgr":
            image = image[[2, 1, 0, *range(3, image.shape[0])]]
        if self.input_scale != 1.0:
            image = image * self.input_scale
        return super().normalize(image)

    def postprocess(self, result, image_shapes, original_image_sizes):
        """Boxes back to the input frame; masks pasted box by box (see :mod:`darkseg.models.paste`)."""
        if self.training or torchvision._is_tracing():
            return super().postprocess(result, image_shapes, original_image_sizes)
        for pred, im_s, o_im_s in zip(result, image_shapes, original_image_sizes):
            pred["boxes"] = resize_boxes(pred["boxes"], im_s, o_im_s)
            if "masks" in pred:
                pred["masks"] = paste_masks_box_local(
                    pred["masks"], pred["boxes"], o_im_s, self.mask_threshold
                )
        return result

    def resize(self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None):
        if self.compat == "mmdet":
            hw0 = tuple(image.shape[-2:])
            image = mmdet_resize_image(image, self.min_size[-1], self.max_size, self.interpolation)
            if target is not None:
                target = mmdet_resize_target(target, hw0, tuple(image.shape[-2:]))
            return image, target
        if self.interpolation == "bilinear":
            return super().resize(image, target)
        h, w = image.shape[-2:]
        size = float(self.min_size[-1])
        if torchvision._is_tracing():  # keep the scale a traced value (ONNX export), as torchvision does
            shape = _get_shape_onnx(image).to(torch.float32)
            scale = _fake_cast_onnx(torch.min(size / shape.min(), float(self.max_size) / shape.max()))
        else:
            scale = min(size / min(h, w), float(self.max_size) / max(h, w))
        image = F.interpolate(image[None], scale_factor=scale, mode="nearest", recompute_scale_factor=True)[0]
        if target is None:
            return image, target
        if "masks" in target:
            m = target["masks"]
            target["masks"] = F.interpolate(
                m[:, None].float(), scale_factor=scale, mode="nearest", recompute_scale_factor=True
            )[:, 0].byte()
        target["boxes"] = resize_boxes(target["boxes"], (h, w), image.shape[-2:])
        return image, target


class DarkBackbone(nn.Module):
    """ResNet trunk + FPN with torchvision's ``BackboneWithFPN`` attribute names (``body``, ``fpn``).

    ``forward(x)`` -> FPN levels ``"0".."3", "pool"`` (``out_channels`` each);
    ``forward_with_features(x)`` -> ``(fpn_levels, trunk_features C2..C5)`` from ONE trunk pass (for DSL).
    """

    def __init__(self, body: ResNetBody | ConvNeXtBody, out_channels: int = 256) -> None:
        super().__init__()
        self.body = body
        self.fpn = FPN(body.out_channels_list, out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward_with_features(self, x: torch.Tensor):
        feats = self.body(x)
        return self.fpn(feats), feats

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        return self.fpn(self.body(x))


def build_backbone(cfg: ModelConfig) -> DarkBackbone:
    """Trunk (ResNet or ConvNeXt) + FPN for a :class:`ModelConfig`."""
    if cfg.backbone == "convnext":
        convnext = ConvNeXtBody(
            depths=cfg.stage_blocks or (3, 3, 9, 3),
            dims=cfg.stage_channels or (96, 192, 384, 768),
            in_channels=cfg.in_channels,
            awd=cfg.awd,
            scb=cfg.scb,
            drop_path_rate=cfg.drop_path_rate,
            frozen_stages=cfg.frozen_stages,
        )
        return DarkBackbone(convnext, cfg.fpn_channels)
    body = ResNetBody(
        depth=cfg.depth,
        style=cfg.style,
        awd=cfg.awd,
        awd_mode=cfg.awd_mode,
        scb_stages=cfg.scb_stage_set(),
        scb_zero_init=cfg.scb_zero_init,
        in_channels=cfg.in_channels,
        frozen_stages=cfg.frozen_stages,
        frozen_bn=cfg.frozen_bn,
        bn_requires_grad=cfg.bn_requires_grad,
        trainable=cfg.trainable_backbone,
        stage_blocks=cfg.stage_blocks,
        base_channels=cfg.base_channels,
    )
    return DarkBackbone(body, cfg.fpn_channels)


#: strides of the FPN levels "0".."3" (C2..C5 of ResNet and ConvNeXt trunks)
FPN_STRIDES = (4, 8, 16, 32)


def _fix_pooler_scales(pooler: nn.Module) -> None:
    """Give a torchvision ``MultiScaleRoIAlign`` its feature scales (1/4 .. 1/32) and level mapper now.

    Left unset, torchvision infers them on the first call, from the first batch's feature-map **height**
    against the largest unpadded image height, rounded to a power of two, and keeps them for every later
    call. A wide first image (60x200 resized to 38x128, padded to 64x128: level 0 is 16 rows for 38 image
    rows) gives scale 1/2 instead of 1/4, and every later prediction pools RoIs from the wrong places.
    """
    from torchvision.ops.poolers import MultiScaleRoIAlign, initLevelMapper

    if not isinstance(pooler, MultiScaleRoIAlign):
        return
    n = len(pooler.featmap_names)
    scales = [1.0 / s for s in FPN_STRIDES[:n]]
    pooler.scales = scales
    lvl_min, lvl_max = 2, 2 + n - 1  # -log2(1/4), -log2 of the coarsest scale
    pooler.map_levels = initLevelMapper(
        lvl_min, lvl_max, canonical_scale=pooler.canonical_scale, canonical_level=pooler.canonical_level
    )


class DarkMaskRCNN(MaskRCNN):
    """torchvision ``MaskRCNN`` with our backbone, input checks, nearest resizing, DSL and SCB folding.

    Attributes: ``config`` (the :class:`ModelConfig`), ``fused`` (True after :meth:`fuse`).
    """

    def __init__(self, cfg: ModelConfig) -> None:
        backbone = build_backbone(cfg)
        c = cfg.fpn_channels
        mean, std = cfg.mean_std()
        mm = cfg.compat == "mmdet"
        feats = ["0", "1", "2", "3"]
        super().__init__(
            backbone,
            num_classes=None,
            min_size=cfg.min_size,
            max_size=cfg.max_size,
            image_mean=mean,
            image_std=std,
            rpn_pre_nms_top_n_train=cfg.rpn_pre_nms_top_n_train,
            rpn_pre_nms_top_n_test=cfg.rpn_pre_nms_top_n_test,
            rpn_post_nms_top_n_train=cfg.rpn_post_nms_top_n_train,
            rpn_post_nms_top_n_test=cfg.rpn_post_nms_top_n_test,
            rpn_batch_size_per_image=cfg.rpn_batch_size_per_image,
            rpn_positive_fraction=cfg.rpn_positive_fraction,
            rpn_nms_thresh=cfg.rpn_nms_thresh,
            rpn_anchor_generator=MMDetAnchorGenerator() if mm else None,
            box_roi_pool=MMDetRoIAlign(feats, 7) if mm else PyramidRoIAlign(feats, 7, 2),
            mask_roi_pool=MMDetRoIAlign(feats, 14) if mm else PyramidRoIAlign(feats, 14, 2),
            box_head=TwoMLPHead(c * 7 * 7, cfg.box_head_dim),
            box_predictor=FastRCNNPredictor(cfg.box_head_dim, cfg.num_classes),
            box_score_thresh=cfg.box_score_thresh,
            box_nms_thresh=cfg.box_nms_thresh,
            box_detections_per_img=cfg.box_detections_per_img,
            box_batch_size_per_image=cfg.box_batch_size_per_image,
            box_positive_fraction=cfg.box_positive_fraction,
            mask_head=MaskRCNNHeads(c, [cfg.mask_head_channels] * 4, 1),
            mask_predictor=MaskPredictor(cfg.mask_head_channels, cfg.mask_head_channels, cfg.num_classes),
        )
        self.transform = DarkTransform(
            cfg.min_size,
            cfg.max_size,
            mean,
            std,
            size_divisible=cfg.size_divisible,
            interpolation=cfg.resize_interpolation,
            in_channels=cfg.in_channels,
            num_classes=cfg.num_classes,
            compat=cfg.compat,
            input_scale=cfg.input_scale,
            channel_order=cfg.channel_order,
        )
        self.roi_heads.mask_roi_pool.channels_last = True  # the mask head's convs: faster on the CPU
        if mm:  # same modules and state, MMDetection's proposal / detection computation
            self.rpn.__class__ = MMDetRPN
            self.roi_heads.__class__ = MMDetRoIHeads
            if cfg.mmdet_training:  # MMDetection's assigners and losses for fine-tuning
                self.rpn.proposal_matcher = MMDetMatcher(0.7, 0.3, 0.3)
                self.roi_heads.proposal_matcher = MMDetMatcher(0.5, 0.5, 0.5)
                self.rpn.mmdet_losses = self.roi_heads.mmdet_losses = True
                self.roi_heads.size_divisible = cfg.size_divisible
        else:
            _fix_pooler_scales(self.roi_heads.box_roi_pool)
            _fix_pooler_scales(self.roi_heads.mask_roi_pool)
        self.config = cfg
        self.fused = False

    # -------------------------------------------------------------- inference
    @property
    def mask_threshold(self) -> float | None:
        """``None``: eval outputs float mask probabilities; a number: ``bool`` masks (see DarkTransform)."""
        return self.transform.mask_threshold

    @mask_threshold.setter
    def mask_threshold(self, value: float | None) -> None:
        self.transform.mask_threshold = None if value is None else float(value)

    def forward(self, images, targets=None):
        """torchvision's forward; in eval with ``compat == "mmdet"``, :meth:`forward_mmdet`."""
        if self.config.compat == "mmdet" and not self.training and not torchvision._is_tracing():
            self.transform.check_images(images)
            return self.forward_mmdet(images)
        return super().forward(images, targets)

    def forward_mmdet(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """MMDetection 2.x test-time inference (``model.eval()`` with ``compat == "mmdet"``).

        Same output contract as torchvision's: per image ``boxes (N, 4)`` in the input image's pixels,
        ``labels (N,)`` in 1..K, ``scores (N,)`` descending, ``masks (N, 1, H, W)`` (float probabilities
        or, with :attr:`mask_threshold` set, ``bool``).
        """
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        image_list, _ = self.transform(images)
        feats = self.backbone(image_list.tensors)
        proposals, _ = self.rpn(image_list, feats)
        dev = image_list.tensors.device
        sfs = [scale_factor_of(h0, w0, h, w, dev) for (h0, w0), (h, w) in zip(sizes, image_list.image_sizes)]
        dets = self.roi_heads.detect(feats, proposals, image_list.image_sizes, sfs)
        out = []
        for d, sf, hw0 in zip(dets, sfs, sizes):
            r = {"boxes": d["boxes"], "labels": d["labels"], "scores": d["scores"]}
            if "mask_logits" in d:
                r["masks"] = paste_masks_grid_sample(
                    d["mask_logits"].sigmoid(), d["mask_rois"] / sf, hw0, self.mask_threshold
                )
            out.append(r)
        return out

    # -------------------------------------------------------------- DSL training step
    def _task_losses(self, images: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]):
        """Task losses and trunk features C2..C5 for one view (one trunk pass)."""
        image_list, tgts = self.transform(images, targets)
        fpn_feats, trunk_feats = self.backbone.forward_with_features(image_list.tensors)
        proposals, rpn_losses = self.rpn(image_list, fpn_feats, tgts)
        _, det_losses = self.roi_heads(fpn_feats, proposals, image_list.image_sizes, tgts)
        losses = {**det_losses, **rpn_losses}
        return losses, list(trunk_feats.values())

    def forward_dsl(
        self,
        clean_images: list[torch.Tensor],
        noisy_images: list[torch.Tensor],
        targets: list[dict[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        """One DSL training forward: task losses on both views plus the feature-consistency term.

        Args:
            clean_images, noisy_images: equal-length lists of ``(C, H, W)`` float images in [0, 1], pair
                ``i`` of identical shape (same geometry).
            targets: one torchvision target dict per pair (shared by both views).

        Returns:
            ``{"clean_loss_*": ..., "loss_*": ..., "loss_dsl": ...}`` scalar tensors; the training loss is
            the sum of all values.
        """
        if not self.training:
            raise RuntimeError("forward_dsl is a training step: call model.train() first")
        self.transform.check_images(clean_images, "clean_images")
        self.transform.check_images(noisy_images, "noisy_images")
        if len(clean_images) != len(noisy_images):
            raise InputError(f"forward_dsl: {len(clean_images)} clean vs {len(noisy_images)} noisy images")
        for i, (a, b) in enumerate(zip(clean_images, noisy_images)):
            if a.shape != b.shape:
                raise InputError(
                    f"forward_dsl: pair {i} shapes differ: clean {tuple(a.shape)} vs noisy "
                    f"{tuple(b.shape)} (the two views must share geometry)"
                )
        clean_losses, clean_feats = self._task_losses(clean_images, targets)
        noisy_losses, noisy_feats = self._task_losses(noisy_images, targets)
        d = self.config.dsl
        out = {f"clean_{k}": v for k, v in clean_losses.items()}
        out.update(noisy_losses)
        out["loss_dsl"] = dsl_loss(noisy_feats, clean_feats, d.weight, d.clamp, d.detach_clean, d.levels)
        return out

    # -------------------------------------------------------------- inference folding
    def fuse(self) -> DarkMaskRCNN:
        """Fold every SCB into its 3x3 conv in place (exact up to float rounding); returns ``self``."""
        fuse_scb(self)
        self.fused = True
        return self

    @property
    def num_scb(self) -> int:
        return count_scb(self)


def build_model(cfg: ModelConfig | dict) -> DarkMaskRCNN:
    """Build the detector (randomly initialised; load weights with the checkpoint helpers)."""
    if isinstance(cfg, dict):
        cfg = ModelConfig.from_dict(cfg)
    if not isinstance(cfg, ModelConfig):
        raise TypeError(f"build_model expects a ModelConfig or dict, got {type(cfg).__name__}")
    return DarkMaskRCNN(cfg)
