"""RoIAlign on the CPU as one weighted gather over channel vectors (same values as torchvision's).

torchvision's CPU ``roi_align`` loops channel by channel: for every RoI, channel, bin and sampling point
it reads four scalars from one ``H x W`` plane, so each RoI walks the whole ``C x H x W`` map with
scalar arithmetic. The rule itself does not depend on the channel: every output bin is a fixed weighted
sum of feature vectors at a few pixels. :func:`roi_align` builds those (pixel, weight) lists for all
RoIs at once and lets ``F.embedding_bag`` (mode ``sum``, per-sample weights) gather whole ``C``-channel
rows of the ``(B H W, C)`` feature matrix: the same arithmetic, vectorised over channels.

The sampling rule is torchvision's (and mmcv's, which it equals): the RoI scaled by ``spatial_scale``
and shifted by half a pixel when ``aligned``; without ``aligned`` its size is at least 1; a bin holds
``sampling_ratio`` x ``sampling_ratio`` points, or ``ceil(roi_h / out_h)`` x ``ceil(roi_w / out_w)``
when ``sampling_ratio <= 0``; a point more than one pixel outside the map adds 0, others are clamped to
the map and interpolated bilinearly; the bin is the mean over its points. Positions are computed in the
feature dtype with torchvision's operation order; only the summation order differs, so results agree
to float rounding (tests: ``tests/test_fast_paths.py``). Gradients flow to the features through
``embedding_bag`` (none to the boxes, as in torchvision).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchvision
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops._utils import convert_boxes_to_roi_format


def _sample_points(
    rois: torch.Tensor,
    height: int,
    width: int,
    out_h: int,
    out_w: int,
    spatial_scale: float,
    sampling_ratio: int,
    aligned: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gather lists of the bins of ``rois (R, 5)``: ``(flat pixel index (4T,), weight (4T,), offsets)``.

    ``T`` is the number of sampling points over all bins; each point adds four (pixel, weight) entries;
    ``offsets (R out_h out_w,)`` are the first entry of each bin, in (RoI, row, column) order.
    """
    dev, dt = rois.device, rois.dtype
    n = rois.shape[0]
    offset = 0.5 if aligned else 0.0
    x1 = rois[:, 1] * spatial_scale - offset
    y1 = rois[:, 2] * spatial_scale - offset
    roi_w = rois[:, 3] * spatial_scale - offset - x1
    roi_h = rois[:, 4] * spatial_scale - offset - y1
    if not aligned:
        roi_w, roi_h = roi_w.clamp(min=1.0), roi_h.clamp(min=1.0)
    bin_h, bin_w = roi_h / out_h, roi_w / out_w
    if sampling_ratio > 0:
        grid_h = torch.full((n,), sampling_ratio, dtype=torch.int64, device=dev)
        grid_w = grid_h
    else:
        grid_h = torch.ceil(roi_h / out_h).long()
        grid_w = torch.ceil(roi_w / out_w).long()
    per_bin = grid_h * grid_w
    count = per_bin.clamp(min=1).to(dt)
    npts = per_bin * (out_h * out_w)
    roi = torch.repeat_interleave(torch.arange(n, device=dev), npts)
    start = torch.cumsum(npts, 0) - npts
    j = torch.arange(roi.shape[0], device=dev) - start[roi]
    pb = per_bin[roi]
    bin_idx, s = torch.div(j, pb, rounding_mode="floor"), torch.remainder(j, pb)
    gw = grid_w[roi]
    iy, ix = torch.div(s, gw, rounding_mode="floor"), torch.remainder(s, gw)
    ph, pw = torch.div(bin_idx, out_w, rounding_mode="floor"), torch.remainder(bin_idx, out_w)
    # y = y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h   (torchvision's order of operations)
    y = y1[roi] + ph.to(dt) * bin_h[roi] + (iy.to(dt) + 0.5) * bin_h[roi] / grid_h[roi].to(dt)
    x = x1[roi] + pw.to(dt) * bin_w[roi] + (ix.to(dt) + 0.5) * bin_w[roi] / gw.to(dt)
    inside = (y >= -1.0) & (y <= height) & (x >= -1.0) & (x <= width)
    y, x = y.clamp(min=0), x.clamp(min=0)
    y_low, x_low = y.long(), x.long()
    top, right = y_low >= height - 1, x_low >= width - 1
    y_low = torch.where(top, height - 1, y_low)
    x_low = torch.where(right, width - 1, x_low)
    y = torch.where(top, y_low.to(dt), y)
    x = torch.where(right, x_low.to(dt), x)
    y_high = torch.where(top, y_low, y_low + 1)
    x_high = torch.where(right, x_low, x_low + 1)
    ly, lx = y - y_low.to(dt), x - x_low.to(dt)
    hy, hx = 1.0 - ly, 1.0 - lx
    scale = inside.to(dt) / count[roi]
    base = rois[:, 0].long()[roi] * (height * width)
    index = torch.stack(
        [
            base + y_low * width + x_low,
            base + y_low * width + x_high,
            base + y_high * width + x_low,
            base + y_high * width + x_high,
        ],
        dim=1,
    ).reshape(-1)
    weight = torch.stack([hy * hx, hy * lx, ly * hx, ly * lx], dim=1).mul_(scale[:, None]).reshape(-1)
    bins_per_roi = out_h * out_w
    offsets = 4 * (
        start.repeat_interleave(bins_per_roi)
        + (per_bin.repeat_interleave(bins_per_roi) * torch.arange(bins_per_roi, device=dev).repeat(n))
    )
    return index, weight, offsets


def roi_align(
    features: torch.Tensor,
    rois: torch.Tensor,
    output_size: int | tuple[int, int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
) -> torch.Tensor:
    """``torchvision.ops.roi_align`` with a ``(K, 5)`` RoI tensor; vectorised over channels on the CPU.

    Args:
        features: ``(B, C, H, W)`` float feature map (any memory format; channels-last avoids a copy).
        rois: ``(K, 5)`` rows ``(batch index, x1, y1, x2, y2)`` in input pixels.
        output_size: ``S`` or ``(out_h, out_w)``.
        spatial_scale: feature pixels per input pixel (``1 / stride``).
        sampling_ratio: points per bin side; ``<= 0``: adaptive (``ceil`` of the bin size).
        aligned: shift the RoI by half a pixel (MMDetection's and Detectron2's ``aligned=True``).

    Returns:
        ``(K, C, out_h, out_w)``. Other devices and dtypes than float32/float64 on the CPU, and tracing
        for export, use torchvision's kernel.
    """
    out_h, out_w = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if (
        features.device.type != "cpu"
        or features.dtype not in (torch.float32, torch.float64)
        or torchvision._is_tracing()  # export: torchvision's operator
    ):
        return torchvision.ops.roi_align(
            features, rois, (out_h, out_w), spatial_scale, sampling_ratio, aligned
        )
    b, c, h, w = features.shape
    k = rois.shape[0]
    if k == 0 or h == 0 or w == 0:
        return features.new_zeros((k, c, out_h, out_w))
    rois = rois.to(features.dtype)
    index, weight, offsets = _sample_points(
        rois.detach(), h, w, out_h, out_w, float(spatial_scale), int(sampling_ratio), aligned
    )
    table = features.permute(0, 2, 3, 1).reshape(b * h * w, c).contiguous()  # rows: one pixel's C values
    out = F.embedding_bag(index, table, offsets, mode="sum", per_sample_weights=weight)
    return out.view(k, out_h, out_w, c).permute(0, 3, 1, 2)


def pool_levels(
    feats: list[torch.Tensor],
    rois: torch.Tensor,
    levels: torch.Tensor,
    scales: list[float],
    output_size: tuple[int, int],
    sampling_ratio: int,
    aligned: bool,
    channels_last: bool = False,
) -> torch.Tensor:
    """RoI features from a feature pyramid: each RoI pooled by :func:`roi_align` from its level.

    Args:
        feats: per level ``(B, C, H_l, W_l)``.
        rois: ``(K, 5)`` rows ``(batch index, x1, y1, x2, y2)`` in input pixels.
        levels: ``(K,)`` level index of each RoI.
        scales: per level feature pixels per input pixel.
        output_size, sampling_ratio, aligned: as :func:`roi_align`.
        channels_last: return the features in channels-last memory order (the mask head's 3x3 convs run
            about 15 % faster on it on the CPU; the values are the same).

    Returns:
        ``(K, C, out_h, out_w)``, in the dtype of the first level.
    """
    out = feats[0].new_zeros((rois.shape[0], feats[0].shape[1], *output_size))
    if channels_last:
        out = out.contiguous(memory_format=torch.channels_last)
    for level, (f, scale) in enumerate(zip(feats, scales)):
        idx = torch.where(levels == level)[0]
        if idx.numel():
            pooled = roi_align(f, rois[idx].to(f.dtype), output_size, scale, sampling_ratio, aligned)
            out[idx] = pooled.to(out.dtype)
    return out


class PyramidRoIAlign(MultiScaleRoIAlign):
    """torchvision's ``MultiScaleRoIAlign`` (same level mapping and scales) pooling with :func:`roi_align`.

    ``forward(features, boxes, image_shapes)``: ``boxes`` a list of ``(n_i, 4)`` per image ->
    ``(sum n_i, C, S, S)``. The scales and level mapper must be set before the first call
    (``detector._fix_pooler_scales``); while tracing for export torchvision's own forward runs.
    ``channels_last``: as :func:`pool_levels`'.
    """

    channels_last: bool = False

    def forward(self, x: dict[str, torch.Tensor], boxes: list[torch.Tensor], image_shapes) -> torch.Tensor:
        if torchvision._is_tracing() or self.scales is None or self.map_levels is None:
            return super().forward(x, boxes, image_shapes)
        feats = [x[k] for k in self.featmap_names]
        rois = convert_boxes_to_roi_format(boxes)
        if len(feats) == 1:  # torchvision pools a single level without mapping the boxes
            levels = torch.zeros(rois.shape[0], dtype=torch.int64, device=rois.device)
        else:
            levels = self.map_levels(boxes)
        return pool_levels(
            feats, rois, levels, self.scales, self.output_size, self.sampling_ratio, False, self.channels_last
        )
