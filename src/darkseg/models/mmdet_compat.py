"""MMDetection 2.x numerics for Mask R-CNN (``ModelConfig.compat = "mmdet"``).

The paper's released checkpoints and the COCO models it starts from were trained and evaluated with
MMDetection 2.x. Where torchvision's Mask R-CNN computes differently, a converted checkpoint gives
different detections; this module reproduces MMDetection's test-time computation so that darkseg gives
the same detections as the original code (up to float32 rounding). The differences, each handled here:

* **input**: resize into the (long, short) box with MMDetection's rounding ``int(W0 * s + 0.5)``;
  "nearest" as OpenCV's ``INTER_NEAREST`` (source index ``floor(i * H0 / h)``)
  (:func:`mmdet_resize_image`); normalisation of the 0-255 values, BGR for caffe-style models (the
  ``input_scale`` / ``channel_order`` fields of the model config, applied by ``DarkTransform``).
* **anchors** are not rounded and use fixed strides 4..64 (:class:`MMDetAnchorGenerator`).
* **box decoding** clamps dw/dh to ``+-|log(16/1000)|`` on both sides and multiplies by the stds
  (:func:`delta2bbox`).
* **proposals**: the best ``nms_pre`` anchors *per level*, boxes with width or height <= 0 dropped, NMS
  *per level*, then the best ``max_num`` (:func:`rpn_proposals`).
* **RoI features**: RoIAlign ``aligned=True`` with adaptive sampling and the level rule
  ``floor(log2(sqrt(w h) / 56 + 1e-6))`` (:class:`MMDetRoIAlign`).
* **detections** are decoded in the network's frame, clipped there, divided by the resize factor and only
  then suppressed class by class (in the original image frame); no small-box removal
  (:func:`bbox_postprocess`).
* **masks** are pasted with ``grid_sample`` over each box's neighbourhood (:func:`darkseg.models.paste.
  paste_masks_grid_sample`).

NMS everywhere is ``torchvision.ops.nms`` (IoU without "+1", suppress IoU > threshold), applied to boxes
shifted by ``group * (max coordinate + 1)`` so that groups never suppress each other, exactly as mmcv's
``batched_nms`` (which switches to a loop over groups above 10 000 boxes: :func:`batched_nms`).

Frames: the *network frame* is the resized image (``image_sizes``), the *original frame* the image given
to the model. ``scale_factor = (w / W0, h / H0)`` as float32.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchvision
from torchvision.models.detection._utils import Matcher
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RegionProposalNetwork, concat_box_prediction_layers
from torchvision.models.detection.transform import resize_boxes
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops._utils import convert_boxes_to_roi_format

from darkseg.data import polygons

from .mask_targets import mask_targets, pad_masks, padded_size
from .roi_align import pool_levels

__all__ = [
    "MMDetAnchorGenerator",
    "MMDetRPN",
    "MMDetRoIAlign",
    "MMDetRoIHeads",
    "batched_nms",
    "bbox_postprocess",
    "delta2bbox",
    "mmdet_resize_image",
    "mmdet_resize_shape",
    "mmdet_resize_target",
    "resize_nearest_opencv",
    "rpn_proposals",
    "scale_factor_of",
]

#: |log(16 / 1000)|: MMDetection's clamp of the log-size deltas (both signs)
WH_RATIO_CLIP = abs(math.log(16.0 / 1000.0))
#: boxes above this count are suppressed group by group (mmcv ``batched_nms``'s ``split_thr``)
NMS_SPLIT_THR = 10000
#: on the CPU, more boxes than this are suppressed group by group also below NMS_SPLIT_THR (same result)
NMS_GROUP_MIN = 1000
RCNN_STDS = (0.1, 0.1, 0.2, 0.2)


# ------------------------------------------------------------------------------------------ input
def mmdet_resize_shape(h0: int, w0: int, min_size: int, max_size: int) -> tuple[int, int]:
    """``(h, w)`` of an ``h0 x w0`` image resized keeping its ratio into the box (long, short).

    ``s = min(max_size / long, min_size / short)``, ``w = int(w0 * s + 0.5)``, ``h = int(h0 * s + 0.5)``
    (MMDetection's ``Resize(keep_ratio=True)``).
    """
    s = min(max_size / max(h0, w0), min_size / min(h0, w0))
    return int(h0 * s + 0.5), int(w0 * s + 0.5)


def scale_factor_of(h0: int, w0: int, h: int, w: int, device=None) -> torch.Tensor:
    """``(w / w0, h / h0, w / w0, h / h0)`` as float32: original frame = network frame / scale_factor."""
    sx, sy = w / w0, h / h0
    return torch.tensor([sx, sy, sx, sy], dtype=torch.float32, device=device)


def _nearest_index(n_out: int, n_in: int, device) -> torch.Tensor:
    """OpenCV ``INTER_NEAREST`` source indices: ``min(floor(i * (1 / (n_out / n_in))), n_in - 1)``."""
    inv = 1.0 / (n_out / n_in)
    idx = [min(int(math.floor(i * inv)), n_in - 1) for i in range(n_out)]
    return torch.tensor(idx, dtype=torch.int64, device=device)


def resize_nearest_opencv(x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Nearest resize of ``(..., H0, W0)`` to ``(..., h, w)`` exactly as OpenCV's ``INTER_NEAREST``."""
    h0, w0 = x.shape[-2:]
    if (h, w) == (h0, w0):
        return x
    rows = _nearest_index(h, h0, x.device)
    cols = _nearest_index(w, w0, x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def mmdet_resize_image(image: torch.Tensor, min_size: int, max_size: int, interpolation: str) -> torch.Tensor:
    """Resize ``(C, H0, W0)`` into the ``(max_size, min_size)`` box like MMDetection's test pipeline.

    Size from :func:`mmdet_resize_shape`; "nearest" exactly as OpenCV's ``INTER_NEAREST``; "bilinear"
    with half-pixel centres (OpenCV computes it in 8-bit fixed point, so values can differ from
    MMDetection's by up to half a grey level).
    """
    h0, w0 = image.shape[-2:]
    h, w = mmdet_resize_shape(int(h0), int(w0), min_size, max_size)
    if (h, w) == (h0, w0):
        return image
    if interpolation == "nearest":
        return resize_nearest_opencv(image, h, w)
    return F.interpolate(image[None], size=(h, w), mode="bilinear", align_corners=False)[0]


def mmdet_resize_target(target: dict[str, torch.Tensor], hw0: tuple[int, int], hw: tuple[int, int]) -> dict:
    """Resize a training target with its image: boxes (and polygons) scaled per axis, masks nearest
    (OpenCV rule)."""
    if tuple(hw) == tuple(hw0):
        return target
    if "masks" in target:
        target["masks"] = resize_nearest_opencv(target["masks"], *hw)
    if "polygons" in target:
        target["polygons"] = polygons.scale(target["polygons"], hw[1] / hw0[1], hw[0] / hw0[0])
    target["boxes"] = resize_boxes(target["boxes"], hw0, hw)
    return target


# ------------------------------------------------------------------------------------------ anchors
class MMDetAnchorGenerator(AnchorGenerator):
    """MMDetection's ``AnchorGenerator``: unrounded base anchors, fixed strides.

    Base anchors of a level with stride ``s``: for each ratio ``r`` (h/w) and scale ``k``:
    ``w = s * k / sqrt(r)``, ``h = s * k * sqrt(r)``, centred on ``(offset * s, offset * s)``, float32
    as MMDetection computes them. Anchor ``(y, x, a)`` = base ``a`` shifted by ``(x s, y s)``, flattened
    in ``(y, x, a)`` order (the RPN head's layout).

    ``forward(image_list, feature_maps)`` -> one ``(sum_l H_l W_l A, 4)`` tensor per image (torchvision's
    ``AnchorGenerator`` contract).
    """

    def __init__(
        self,
        strides: tuple[int, ...] = (4, 8, 16, 32, 64),
        ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
        scales: tuple[float, ...] = (8.0,),
        center_offset: float = 0.0,
    ) -> None:
        super().__init__(tuple((8 * s,) for s in strides), (tuple(ratios),) * len(strides))
        self.strides = tuple(int(s) for s in strides)
        self.ratios = tuple(float(r) for r in ratios)
        self.scales = tuple(float(k) for k in scales)
        self.center_offset = float(center_offset)

    def num_anchors_per_location(self) -> list[int]:
        return [len(self.ratios) * len(self.scales)] * len(self.strides)

    def base_anchors(self, level: int) -> torch.Tensor:
        """``(A, 4)`` float32 base anchors of a level (ratio-major, scale-minor)."""
        w = h = float(self.strides[level])
        ratios = torch.tensor(self.ratios, dtype=torch.float32)
        scales = torch.tensor(self.scales, dtype=torch.float32)
        h_ratios = torch.sqrt(ratios)
        w_ratios = 1 / h_ratios
        ws = (w * w_ratios[:, None] * scales[None, :]).view(-1)
        hs = (h * h_ratios[:, None] * scales[None, :]).view(-1)
        xc, yc = self.center_offset * w, self.center_offset * h
        return torch.stack([xc - 0.5 * ws, yc - 0.5 * hs, xc + 0.5 * ws, yc + 0.5 * hs], dim=-1)

    def grid_anchors(self, sizes: list[tuple[int, int]], device) -> list[torch.Tensor]:
        """Anchors of every level, ``(H_l * W_l * A, 4)`` each."""
        out = []
        for lvl, (fh, fw) in enumerate(sizes):
            s = self.strides[lvl]
            base = self.base_anchors(lvl).to(device)
            sx = torch.arange(0, fw, device=device) * s
            sy = torch.arange(0, fh, device=device) * s
            yy, xx = torch.meshgrid(sy, sx, indexing="ij")
            xx, yy = xx.reshape(-1), yy.reshape(-1)
            shifts = torch.stack([xx, yy, xx, yy], dim=-1).to(base.dtype)
            out.append((base[None, :, :] + shifts[:, None, :]).view(-1, 4))
        return out

    def forward(self, image_list: ImageList, feature_maps: list[torch.Tensor]) -> list[torch.Tensor]:
        if len(feature_maps) != len(self.strides):
            raise ValueError(f"{len(feature_maps)} feature levels for {len(self.strides)} anchor strides")
        sizes = [tuple(int(v) for v in f.shape[-2:]) for f in feature_maps]
        dtype, device = feature_maps[0].dtype, feature_maps[0].device
        anchors = torch.cat(self.grid_anchors(sizes, device)).to(dtype)
        return [anchors for _ in range(len(image_list.image_sizes))]


# ------------------------------------------------------------------------------------------ boxes
def delta2bbox(
    rois: torch.Tensor,
    deltas: torch.Tensor,
    stds: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0),
    max_shape: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Decode ``deltas (N, 4k)`` against ``rois (N, 4)`` like MMDetection's ``DeltaXYWHBBoxCoder``.

    ``d = deltas * stds`` (means 0); dw, dh clamped to ``+-|log(16/1000)|``; centre ``p + pw * dx``, size
    ``pw * exp(dw)``; corners ``c -+ size * 0.5``; clipped to ``max_shape = (h, w)`` when given.
    Returns ``(N, 4k)`` xyxy.
    """
    n = deltas.shape[0]
    std = deltas.new_tensor(stds).view(1, -1).repeat(1, deltas.shape[1] // 4)
    d = deltas * std
    dx, dy, dw, dh = d[:, 0::4], d[:, 1::4], d[:, 2::4], d[:, 3::4]
    x1, y1, x2, y2 = rois[:, 0], rois[:, 1], rois[:, 2], rois[:, 3]
    px = ((x1 + x2) * 0.5).unsqueeze(-1).expand_as(dx)
    py = ((y1 + y2) * 0.5).unsqueeze(-1).expand_as(dy)
    pw = (x2 - x1).unsqueeze(-1).expand_as(dw)
    ph = (y2 - y1).unsqueeze(-1).expand_as(dh)
    dx_w, dy_h = pw * dx, ph * dy
    dw = dw.clamp(min=-WH_RATIO_CLIP, max=WH_RATIO_CLIP)
    dh = dh.clamp(min=-WH_RATIO_CLIP, max=WH_RATIO_CLIP)
    gw, gh = pw * dw.exp(), ph * dh.exp()
    gx, gy = px + dx_w, py + dy_h
    boxes = torch.stack([gx - gw * 0.5, gy - gh * 0.5, gx + gw * 0.5, gy + gh * 0.5], dim=-1)
    boxes = boxes.reshape(n, deltas.shape[1])
    if max_shape is not None:
        h, w = max_shape
        boxes[:, 0::2] = boxes[:, 0::2].clamp(min=0, max=w)
        boxes[:, 1::2] = boxes[:, 1::2].clamp(min=0, max=h)
    return boxes


def batched_nms(
    boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor, iou_thr: float
) -> torch.Tensor:
    """Indices kept by NMS within each group, by descending score (mmcv ``batched_nms``).

    Up to :data:`NMS_SPLIT_THR` boxes mmcv runs one NMS on boxes shifted by ``group * (max coordinate +
    1)``; above, one NMS per group on the unshifted boxes. Both are computed here group by group (boxes of
    different groups never suppress each other, and NMS is quadratic in the box count), on the same
    coordinates as mmcv's (shifted below the threshold, so the IoUs round alike) and in the order of one
    descending sort of all scores, so the kept set and its order are those of the single call.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    if boxes.shape[0] < NMS_SPLIT_THR:
        max_coordinate = boxes.max()
        offsets = groups.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
        boxes = boxes + offsets[:, None]
        if boxes.device.type != "cpu" or boxes.shape[0] <= NMS_GROUP_MIN:
            return torchvision.ops.nms(boxes, scores, iou_thr)
    order = scores.sort(descending=True, stable=True)[1]  # the order of torchvision's NMS kernel
    # the processing rank as the score: each group is suppressed in the global sort's order, ties included
    rank = torch.empty(order.shape[0], dtype=torch.float32, device=boxes.device)
    rank[order] = -torch.arange(order.shape[0], dtype=torch.float32, device=boxes.device)
    keep_mask = torch.zeros_like(scores, dtype=torch.bool)
    for g in torch.unique(groups):
        idx = (groups == g).nonzero(as_tuple=False).view(-1)
        keep_mask[idx[torchvision.ops.nms(boxes[idx], rank[idx], iou_thr)]] = True
    return order[keep_mask[order]]


def rpn_proposals(
    scores: list[torch.Tensor],
    deltas: list[torch.Tensor],
    anchors: list[torch.Tensor],
    img_shape: tuple[int, int],
    nms_pre: int,
    iou_thr: float,
    max_num: int,
) -> torch.Tensor:
    """MMDetection's RPN proposals for one image.

    Args:
        scores: per level ``(H W A,)`` objectness probabilities (sigmoid), ``(y, x, a)`` order.
        deltas: per level ``(H W A, 4)``.
        anchors: per level ``(H W A, 4)``.
        img_shape: ``(h, w)`` of the resized, unpadded image (boxes are clipped to it).
        nms_pre: best anchors kept per level before decoding.
        iou_thr: NMS IoU, applied per level.
        max_num: proposals kept in the end.

    Returns:
        ``(n <= max_num, 5)``: ``x1, y1, x2, y2, score``, descending score, network frame.
    """
    sel_s, sel_d, sel_a, lvl = [], [], [], []
    for i, (s, d, a) in enumerate(zip(scores, deltas, anchors)):
        if nms_pre > 0 and s.shape[0] > nms_pre:
            s, order = s.sort(descending=True)
            s, order = s[:nms_pre], order[:nms_pre]
            d, a = d[order], a[order]
        sel_s.append(s)
        sel_d.append(d)
        sel_a.append(a)
        lvl.append(torch.full((s.shape[0],), i, dtype=torch.int64, device=s.device))
    s, d, a, lvl = torch.cat(sel_s), torch.cat(sel_d), torch.cat(sel_a), torch.cat(lvl)
    boxes = delta2bbox(a, d, max_shape=img_shape)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    valid = (w > 0) & (h > 0)
    if not bool(valid.all()):
        boxes, s, lvl = boxes[valid], s[valid], lvl[valid]
    if boxes.numel() == 0:
        return boxes.new_zeros((0, 5))
    keep = batched_nms(boxes, s, lvl, iou_thr)[:max_num]
    return torch.cat([boxes[keep], s[keep, None]], dim=1)


def bbox_postprocess(
    rois: torch.Tensor,
    cls_logits: torch.Tensor,
    deltas: torch.Tensor,
    img_shape: tuple[int, int],
    scale_factor: torch.Tensor,
    score_thr: float,
    iou_thr: float,
    max_num: int,
    background_first: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """MMDetection's box post-processing (``bbox_head.get_bboxes`` + ``multiclass_nms``) for one image.

    Args:
        rois: ``(n, 4)`` proposals, network frame.
        cls_logits: ``(n, K + 1)``; the background column first (darkseg/torchvision layout) or last.
        deltas: ``(n, 4 (K + 1))`` (background slot first) or ``(n, 4 K)``; stds 0.1, 0.1, 0.2, 0.2.
        img_shape: ``(h, w)`` of the resized image (boxes are clipped to it).
        scale_factor: ``(4,)`` float32; boxes are divided by it before NMS (original frame).
        score_thr, iou_thr, max_num: ``score_thr`` < class score; class-wise NMS IoU; detections kept.

    Returns:
        ``boxes (m, 4)`` original frame, ``scores (m,)`` descending, ``labels (m,)`` in ``0..K-1``.
    """
    probs = F.softmax(cls_logits, dim=-1)
    if background_first:
        probs, deltas = probs[:, 1:], deltas[:, 4:]
    else:
        probs = probs[:, :-1]
    n, k = probs.shape
    boxes = delta2bbox(rois, deltas, RCNN_STDS, max_shape=img_shape)
    if n:
        boxes = (boxes.view(n, -1, 4) / scale_factor).view(n, -1)
    boxes = boxes.reshape(-1, 4)
    scores = probs.reshape(-1)
    labels = torch.arange(k, device=probs.device).view(1, -1).expand(n, k).reshape(-1)
    valid = scores > score_thr
    inds = valid.nonzero(as_tuple=False).squeeze(1)
    boxes, scores, labels = boxes[inds], scores[inds], labels[inds]
    if boxes.numel() == 0:
        return boxes.new_zeros((0, 4)), scores.new_zeros((0,)), labels.new_zeros((0,))
    keep = batched_nms(boxes, scores, labels, iou_thr)[:max_num]
    return boxes[keep], scores[keep], labels[keep]


# ------------------------------------------------------------------------------------------ training
class MMDetMatcher(Matcher):
    """torchvision's ``Matcher`` with MMDetection's ``MaxIoUAssigner`` low-quality rule.

    IoU >= ``high``: matched; < ``low``: background; in between: ignored. Then, for each ground truth
    ``i`` in order whose best IoU is >= ``min_pos_iou``, every prediction with exactly that IoU is
    matched to ``i`` (a later ground truth overrides an earlier one), as MMDetection does
    (torchvision's own rule matches such a prediction to *its* best ground truth, with no minimum).
    """

    def __init__(self, high: float, low: float, min_pos_iou: float) -> None:
        super().__init__(high, low, allow_low_quality_matches=True)
        self.min_pos_iou = float(min_pos_iou)

    def set_low_quality_matches_(self, matches, all_matches, match_quality_matrix) -> None:
        highest = match_quality_matrix.max(dim=1).values
        for i in range(match_quality_matrix.shape[0]):
            if highest[i] >= self.min_pos_iou:
                matches[match_quality_matrix[i] == highest[i]] = i


def l1_box_loss(pred: torch.Tensor, target: torch.Tensor, n_samples: int) -> torch.Tensor:
    """MMDetection's ``L1Loss`` on box deltas: ``sum |pred - target| / n_samples``."""
    return F.l1_loss(pred, target, reduction="sum") / max(n_samples, 1)


# ------------------------------------------------------------------------------------------ RPN
class MMDetRPN(RegionProposalNetwork):
    """torchvision's RPN (same head, assignment and losses) with MMDetection's proposal computation.

    Proposals: :func:`rpn_proposals` per image with ``nms_pre = pre_nms_top_n()`` anchors per level and
    ``max_num = post_nms_top_n()``. Training targets are encoded with weights (1, 1, 1, 1), which is
    MMDetection's RPN coder; with ``mmdet_losses`` the box loss is L1 (MMDetection's) instead of
    torchvision's smooth L1 (beta 1/9), both over the sampled anchors.
    """

    mmdet_losses: bool = False

    def compute_loss(self, objectness, pred_bbox_deltas, labels, regression_targets):
        if not self.mmdet_losses:
            return super().compute_loss(objectness, pred_bbox_deltas, labels, regression_targets)
        pos, neg = self.fg_bg_sampler(labels)
        pos = torch.where(torch.cat(pos, dim=0))[0]
        neg = torch.where(torch.cat(neg, dim=0))[0]
        sampled = torch.cat([pos, neg], dim=0)
        labels, targets = torch.cat(labels, dim=0), torch.cat(regression_targets, dim=0)
        box_loss = l1_box_loss(pred_bbox_deltas[pos], targets[pos], sampled.numel())
        obj_loss = F.binary_cross_entropy_with_logits(objectness.flatten()[sampled], labels[sampled])
        return obj_loss, box_loss

    def forward(self, images: ImageList, features: dict[str, torch.Tensor], targets=None):
        feats = list(features.values())
        objectness, deltas = self.head(feats)
        anchors = self.anchor_generator(images, feats)
        per_level = [o.shape[1] * o.shape[2] * o.shape[3] for o in objectness]
        obj_flat, deltas_flat = concat_box_prediction_layers(objectness, deltas)
        n_img = len(anchors)
        obj = obj_flat.detach().view(n_img, -1)
        dlt = deltas_flat.detach().view(n_img, -1, 4)
        boxes: list[torch.Tensor] = []
        for i in range(n_img):
            s = obj[i].sigmoid().split(per_level)
            d = dlt[i].split(per_level)
            a = anchors[i].split(per_level)
            props = rpn_proposals(
                list(s),
                list(d),
                list(a),
                tuple(images.image_sizes[i]),
                self.pre_nms_top_n(),
                self.nms_thresh,
                self.post_nms_top_n(),
            )
            boxes.append(props[:, :4])
        losses: dict[str, torch.Tensor] = {}
        if self.training:
            if targets is None:
                raise ValueError("targets should not be None")
            labels, matched_gt_boxes = self.assign_targets_to_anchors(anchors, targets)
            regression_targets = self.box_coder.encode(matched_gt_boxes, anchors)
            loss_objectness, loss_rpn_box_reg = self.compute_loss(
                obj_flat, deltas_flat, labels, regression_targets
            )
            losses = {"loss_objectness": loss_objectness, "loss_rpn_box_reg": loss_rpn_box_reg}
        return boxes, losses


# ------------------------------------------------------------------------------------------ RoI
class MMDetRoIAlign(MultiScaleRoIAlign):
    """MMDetection's ``SingleRoIExtractor`` with ``RoIAlign(aligned=True, sampling_ratio=0)``.

    Level of a box: ``floor(log2(sqrt(w h) / finest_scale + 1e-6))`` clamped to the levels.
    ``forward(features, boxes, image_shapes)`` with torchvision's ``MultiScaleRoIAlign`` signature:
    ``boxes`` a list of ``(n_i, 4)`` per image -> ``(sum n_i, C, S, S)``.

    ``channels_last``: as :func:`darkseg.models.roi_align.pool_levels`'.
    """

    channels_last: bool = False

    def __init__(
        self,
        featmap_names: list[str],
        output_size: int,
        strides: tuple[int, ...] = (4, 8, 16, 32),
        finest_scale: int = 56,
        sampling_ratio: int = 0,
    ) -> None:
        super().__init__(list(featmap_names), int(output_size), sampling_ratio)
        self.featmap_names = list(featmap_names)
        self.output_size = (int(output_size), int(output_size))
        self.strides = tuple(int(s) for s in strides)
        self.finest_scale = float(finest_scale)
        self.sampling_ratio = int(sampling_ratio)

    def level_of(self, rois: torch.Tensor) -> torch.Tensor:
        """Level index of each ``(n, 5)`` RoI."""
        scale = torch.sqrt((rois[:, 3] - rois[:, 1]) * (rois[:, 4] - rois[:, 2]))
        lvl = torch.floor(torch.log2(scale / self.finest_scale + 1e-6))
        return lvl.clamp(min=0, max=len(self.strides) - 1).long()

    def pool(self, feats: list[torch.Tensor], rois: torch.Tensor) -> torch.Tensor:
        """RoI features of ``rois (n, 5)`` = (batch index, x1, y1, x2, y2) in the network frame."""
        scales = [1.0 / s for s in self.strides[: len(feats)]]
        levels = self.level_of(rois)
        return pool_levels(
            feats, rois, levels, scales, self.output_size, self.sampling_ratio, True, self.channels_last
        )

    def forward(self, features: dict[str, torch.Tensor], boxes: list[torch.Tensor], image_shapes=None):
        feats = [features[k] for k in self.featmap_names]
        rois = convert_boxes_to_roi_format(boxes)
        return self.pool(feats, rois)


class MMDetRoIHeads(RoIHeads):
    """torchvision's RoI heads plus MMDetection's test-time detection and (optionally) training losses.

    :meth:`detect` runs the box head on the proposals, :func:`bbox_postprocess` in the original frame,
    then the mask head on the detections mapped back to the network frame. Mask logits of each
    detection's class are returned at 28x28 (``mask_logits``) for pasting by the caller.

    Training with ``mmdet_losses``: L1 box loss over the sampled RoIs (instead of smooth L1, beta 1/9)
    and MMDetection's binary mask targets (:mod:`darkseg.models.mask_targets`: the bitmap rule on masks
    zero-padded to the image's padded size, or the polygon rule where the target holds polygons) instead
    of torchvision's soft, unaligned ones; sampling (ground truth added as proposals, at most
    ``batch_size_per_image x positive_fraction`` positives) is the same in both.
    """

    mmdet_losses: bool = False
    #: the padding multiple of the model's input (``ModelConfig.size_divisible``): masks are padded to it
    size_divisible: int = 32

    def forward(self, features, proposals, image_shapes, targets=None):
        if not (self.training and self.mmdet_losses):
            return super().forward(features, proposals, image_shapes, targets)
        proposals, matched_idxs, labels, reg_targets = self.select_training_samples(proposals, targets)
        box_feats = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_feats)
        labels_all, targets_all = torch.cat(labels, dim=0), torch.cat(reg_targets, dim=0)
        pos = torch.where(labels_all > 0)[0]
        deltas = box_regression.reshape(box_regression.shape[0], -1, 4)[pos, labels_all[pos]]
        losses = {
            "loss_classifier": F.cross_entropy(class_logits, labels_all),
            "loss_box_reg": l1_box_loss(deltas, targets_all[pos], labels_all.numel()),
        }
        if self.has_mask():
            keep = [torch.where(lab > 0)[0] for lab in labels]
            mask_props = [p[k] for p, k in zip(proposals, keep)]
            pos_idx = [m[k] for m, k in zip(matched_idxs, keep)]
            logits = self.mask_predictor(
                self.mask_head(self.mask_roi_pool(features, mask_props, image_shapes))
            )
            size = logits.shape[-1]
            tgt = [
                mask_targets(
                    pad_masks(t["masks"], padded_size(h, w, self.size_divisible)),
                    p,
                    i,
                    size,
                    t.get("polygons"),
                )
                for t, p, i, (h, w) in zip(targets, mask_props, pos_idx, image_shapes)
            ]
            lab = torch.cat([t["labels"][i] for t, i in zip(targets, pos_idx)], dim=0)
            tgt_all = torch.cat(tgt, dim=0)
            if tgt_all.numel() == 0:
                losses["loss_mask"] = logits.sum() * 0
            else:
                sel = logits[torch.arange(lab.shape[0], device=lab.device), lab]
                losses["loss_mask"] = F.binary_cross_entropy_with_logits(sel, tgt_all)
        return [], losses

    def detect(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        scale_factors: list[torch.Tensor],
    ) -> list[dict[str, torch.Tensor]]:
        box_feats = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        logits, deltas = self.box_predictor(box_feats)
        results = []
        start = 0
        for props, shape, sf in zip(proposals, image_shapes, scale_factors):
            n = props.shape[0]
            b, s, lab = bbox_postprocess(
                props,
                logits[start : start + n],
                deltas[start : start + n],
                tuple(shape),
                sf,
                self.score_thresh,
                self.nms_thresh,
                self.detections_per_img,
            )
            start += n
            results.append({"boxes": b, "scores": s, "labels": lab + 1, "mask_rois": b * sf})
        if self.has_mask():
            mask_feats = self.mask_roi_pool(features, [r["mask_rois"] for r in results], image_shapes)
            logits = self.mask_predictor(self.mask_head(mask_feats))
            start = 0
            for r in results:
                n = r["boxes"].shape[0]
                lg = logits[start : start + n]
                r["mask_logits"] = lg[torch.arange(n, device=lg.device), r["labels"]]
                start += n
        return results
