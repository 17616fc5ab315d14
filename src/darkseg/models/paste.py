"""Pasting 28x28 mask predictions into the image, box by box (both numerics modes).

Both functions write each mask only into its box's neighbourhood of one preallocated output, instead of
building a full-size float canvas per detection and stacking them. With ``threshold`` set the output is
``bool`` (1 byte per pixel instead of 4, and no float copy of every mask at full size): for ``N``
detections on an ``H x W`` image the output takes ``N * H * W`` bytes, plus one box-sized float
temporary at a time.

* :func:`paste_masks_box_local` - torchvision's rule (``paste_masks_in_image``: 1-pixel zero border,
  integer box, bilinear resize to the box); identical values. Threshold: ``prob > threshold``.
* :func:`paste_masks_grid_sample` - MMDetection 2.x's rule (``grid_sample`` at pixel centres over
  ``floor(x1) - 1 .. ceil(x2) + 1``). Threshold: ``prob >= threshold``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["paste_masks_box_local", "paste_masks_grid_sample"]


def _output(n: int, h: int, w: int, like: torch.Tensor, threshold: float | None) -> torch.Tensor:
    dtype = torch.bool if threshold is not None else like.dtype
    return torch.zeros((n, 1, h, w), dtype=dtype, device=like.device)


def paste_masks_box_local(
    masks: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int], threshold: float | None = None
) -> torch.Tensor:
    """torchvision's mask pasting, written box-locally.

    Args:
        masks: ``(N, 1, M, M)`` probabilities.
        boxes: ``(N, 4)`` xyxy in the output image's pixels.
        image_size: ``(H, W)`` of the output.
        threshold: ``None`` -> float probabilities; else ``bool`` masks ``prob > threshold``.

    Returns:
        ``(N, 1, H, W)``, equal to ``torchvision``'s ``paste_masks_in_image`` (thresholded if asked).
    """
    n = masks.shape[0]
    h_img, w_img = int(image_size[0]), int(image_size[1])
    out = _output(n, h_img, w_img, masks, threshold)
    if n == 0:
        return out
    m_size = masks.shape[-1]
    scale = float(m_size + 2) / m_size
    padded = F.pad(masks, (1, 1, 1, 1))
    w_half = (boxes[:, 2] - boxes[:, 0]) * 0.5 * scale
    h_half = (boxes[:, 3] - boxes[:, 1]) * 0.5 * scale
    xc = (boxes[:, 2] + boxes[:, 0]) * 0.5
    yc = (boxes[:, 3] + boxes[:, 1]) * 0.5
    exp = torch.stack([xc - w_half, yc - h_half, xc + w_half, yc + h_half], dim=1).to(torch.int64).tolist()
    for i, (x0b, y0b, x1b, y1b) in enumerate(exp):
        bw, bh = max(int(x1b - x0b + 1), 1), max(int(y1b - y0b + 1), 1)
        x0, x1 = max(x0b, 0), min(x1b + 1, w_img)
        y0, y1 = max(y0b, 0), min(y1b + 1, h_img)
        if x1 <= x0 or y1 <= y0:
            continue
        m = F.interpolate(padded[i : i + 1], size=(bh, bw), mode="bilinear", align_corners=False)[0, 0]
        crop = m[y0 - y0b : y1 - y0b, x0 - x0b : x1 - x0b]
        out[i, 0, y0:y1, x0:x1] = crop if threshold is None else crop > threshold
    return out


def paste_masks_grid_sample(
    probs: torch.Tensor, boxes: torch.Tensor, image_size: tuple[int, int], threshold: float | None = None
) -> torch.Tensor:
    """MMDetection 2.x's mask pasting (its CPU path), box by box.

    For each detection, over columns ``max(floor(x1) - 1, 0) .. min(ceil(x2) + 1, W)`` (exclusive) and
    the same rows, pixel centres ``X = col + 0.5`` map to ``gx = (X - x1) / (x2 - x1) * 2 - 1`` and the
    probability map is sampled bilinearly (``grid_sample``, ``align_corners=False``, zero outside);
    every other pixel is 0.

    Args:
        probs: ``(N, M, M)`` mask probabilities (sigmoid of the logits of each detection's class).
        boxes: ``(N, 4)`` xyxy in the output image's pixels (float32).
        image_size: ``(H, W)``.
        threshold: ``None`` -> float probabilities; else ``bool`` masks ``prob >= threshold``.

    Returns:
        ``(N, 1, H, W)``.
    """
    n = probs.shape[0]
    h_img, w_img = int(image_size[0]), int(image_size[1])
    out = _output(n, h_img, w_img, probs, threshold)
    for i in range(n):
        b = boxes[i : i + 1]
        x0 = max(int(math.floor(float(b[0, 0]))) - 1, 0)
        y0 = max(int(math.floor(float(b[0, 1]))) - 1, 0)
        x1 = min(int(math.ceil(float(b[0, 2]))) + 1, w_img)
        y1 = min(int(math.ceil(float(b[0, 3]))) + 1, h_img)
        if x1 <= x0 or y1 <= y0:
            continue
        bx0, by0, bx1, by1 = b[:, 0:1], b[:, 1:2], b[:, 2:3], b[:, 3:4]
        img_y = torch.arange(y0, y1, device=probs.device).to(torch.float32) + 0.5
        img_x = torch.arange(x0, x1, device=probs.device).to(torch.float32) + 0.5
        img_y = (img_y - by0) / (by1 - by0) * 2 - 1
        img_x = (img_x - bx0) / (bx1 - bx0) * 2 - 1
        img_x = torch.where(torch.isinf(img_x), torch.zeros_like(img_x), img_x)
        img_y = torch.where(torch.isinf(img_y), torch.zeros_like(img_y), img_y)
        gx = img_x[:, None, :].expand(1, img_y.shape[1], img_x.shape[1])
        gy = img_y[:, :, None].expand(1, img_y.shape[1], img_x.shape[1])
        grid = torch.stack([gx, gy], dim=3)
        val = F.grid_sample(probs[i : i + 1, None].to(torch.float32), grid, align_corners=False)[0, 0]
        out[i, 0, y0:y1, x0:x1] = val.to(out.dtype) if threshold is None else val >= threshold
    return out
