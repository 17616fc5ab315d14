"""Mask R-CNN mask targets as MMDetection 2.x builds them (``compat: mmdet`` training).

The target of a positive RoI is a ``size x size`` (28 x 28) 0/1 map of its assigned ground-truth instance
over the RoI box (network frame). MMDetection has two rules, chosen by the form of the ground truth:

* **bitmap rule** (masks stored as bitmaps, e.g. COCO RLE, or polygons decoded when loading): the
  instance's bitmap, **zero-padded** to the image's padded size (MMDetection's ``Pad`` pads the masks with
  the image, to a multiple of the size divisor), is sampled by RoIAlign (``aligned=True``, adaptive
  sampling ratio, average) over the box and thresholded at ``>= 0.5``. Padding matters where an object
  touches the bottom or right image edge: without it, samples past the last row would repeat that row.
* **polygon rule** (COCO polygons kept as polygons, the LIS training configs' ``poly2mask=False``): each
  polygon of the instance is shifted to the box corner and scaled by ``size / max(w, 1)`` and
  ``size / max(h, 1)`` (``w``, ``h`` the box size, scales in float32 as MMDetection's NumPy code computes
  them, coordinates in float64), then the instance's polygons are rasterised together at ``size x size``
  by the COCO rasteriser (``pycocotools``).

In both rules the RoI boxes are first clipped to ``[0, padded width] x [0, padded height]``. A target
dict carries polygons in ``target["polygons"]``: one entry per instance, a list of float64 ``(2k,)``
arrays ``x0, y0, x1, y1, ...`` in the target's pixel frame, or ``None`` where the instance is a bitmap;
the data transforms scale and flip them with the image (:mod:`darkseg.data.transforms`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from pycocotools import mask as mask_utils

__all__ = ["pad_masks", "padded_size", "mask_targets", "polygon_target"]

Polygons = Sequence[np.ndarray]


def padded_size(h: int, w: int, divisor: int) -> tuple[int, int]:
    """``(H, W)`` of an ``h x w`` image padded up to multiples of ``divisor`` (MMDetection's ``Pad``)."""
    return int(-(-h // divisor) * divisor), int(-(-w // divisor) * divisor)


def pad_masks(masks: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Zero-pad ``(N, h, w)`` masks at the bottom and right to ``(N, H, W)`` (unchanged if equal)."""
    h, w = masks.shape[-2:]
    if (h, w) == tuple(hw):
        return masks
    return F.pad(masks, (0, hw[1] - w, 0, hw[0] - h))


def polygon_target(polygons: Polygons, box: np.ndarray, size: int) -> np.ndarray:
    """``(size, size)`` uint8 target of one instance's polygons over ``box`` (float32 ``x1 y1 x2 y2``)."""
    box = np.asarray(box, dtype=np.float32)
    x1, y1, x2, y2 = box
    w = np.maximum(x2 - x1, np.float32(1.0))
    h = np.maximum(y2 - y1, np.float32(1.0))
    w_scale = np.float32(size) / max(w, np.float32(0.1))
    h_scale = np.float32(size) / max(h, np.float32(0.1))
    scaled = []
    for p in polygons:
        q = np.array(p, dtype=np.float64)
        q[0::2] = q[0::2] - x1
        q[1::2] = q[1::2] - y1
        q[0::2] = q[0::2] * w_scale
        q[1::2] = q[1::2] * h_scale
        scaled.append(q.tolist())
    if not scaled:
        return np.zeros((size, size), dtype=np.uint8)
    rle = mask_utils.merge(mask_utils.frPyObjects(scaled, size, size))
    return mask_utils.decode(rle).astype(np.uint8)


def mask_targets(
    masks: torch.Tensor,
    boxes: torch.Tensor,
    matched_idxs: torch.Tensor,
    size: int,
    polygons: Sequence[Polygons | None] | None = None,
) -> torch.Tensor:
    """``(n, size, size)`` 0/1 targets (dtype of ``boxes``) of ``n`` positive RoIs of one image.

    Args:
        masks: ``(N, H, W)`` ground-truth bitmaps, already zero-padded to the image's padded size.
        boxes: ``(n, 4)`` RoI boxes ``x1 y1 x2 y2`` in the network frame.
        matched_idxs: ``(n,)`` ground-truth index of each RoI.
        size: output side (28).
        polygons: per ground-truth instance its polygons (polygon rule) or ``None`` (bitmap rule); no
            list = bitmap rule for all.
    """
    hp, wp = masks.shape[-2:]
    clipped = boxes.detach().clone()
    clipped[:, 0::2] = clipped[:, 0::2].clamp(0, wp)
    clipped[:, 1::2] = clipped[:, 1::2].clamp(0, hp)
    rois = torch.cat([matched_idxs.to(clipped)[:, None], clipped], dim=1)
    crops = torchvision.ops.roi_align(masks[:, None].to(rois), rois, (size, size), 1.0, 0, aligned=True)
    out = (crops[:, 0] >= 0.5).to(boxes.dtype)
    if polygons is not None and boxes.shape[0]:
        box_np = clipped.to(torch.float32).cpu().numpy()
        for i, g in enumerate(matched_idxs.tolist()):
            if polygons[g] is not None:
                out[i] = torch.from_numpy(polygon_target(polygons[g], box_np[i], size)).to(out)
    return out
