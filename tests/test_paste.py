"""Box-local mask pasting equals the reference rules it replaces."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.models.detection.roi_heads import paste_masks_in_image

from darkseg.models.paste import paste_masks_box_local, paste_masks_grid_sample


def _boxes(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 1.1, h * 1.1]) - torch.tensor([w * 0.1, h * 0.1])
    wh = 0.3 + torch.rand(n, 2, generator=g) * torch.tensor([w * 0.5, h * 0.5])
    b = torch.cat([xy, xy + wh], 1)
    b[0] = torch.tensor([-20.0, -10.0, w + 15.0, h + 30.0])  # larger than the image
    b[1] = torch.tensor([w - 0.2, h - 0.3, w + 5.0, h + 4.0])  # a corner sliver
    b[2] = torch.tensor([3.0, 4.0, 3.2, 4.1])  # sub-pixel
    return b


def test_torchvision_rule_identical():
    h, w = 37, 53
    g = torch.Generator().manual_seed(1)
    probs = torch.rand(40, 1, 28, 28, generator=g)
    boxes = _boxes(40, h, w)
    ref = paste_masks_in_image(probs, boxes, (h, w))
    got = paste_masks_box_local(probs, boxes, (h, w))
    assert got.shape == ref.shape == (40, 1, h, w)
    assert torch.equal(got, ref)
    b = paste_masks_box_local(probs, boxes, (h, w), threshold=0.5)
    assert b.dtype == torch.bool and torch.equal(b, ref > 0.5)
    empty = paste_masks_box_local(probs[:0], boxes[:0], (h, w), 0.5)
    assert empty.shape == (0, 1, h, w)


def _grid_sample_full(probs: torch.Tensor, boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """MMDetection's pasting over the whole image (its GPU path): every pixel sampled."""
    x0, y0, x1, y1 = boxes.split(1, dim=1)
    ys = (torch.arange(h, dtype=torch.float32) + 0.5 - y0) / (y1 - y0) * 2 - 1
    xs = (torch.arange(w, dtype=torch.float32) + 0.5 - x0) / (x1 - x0) * 2 - 1
    n = probs.shape[0]
    grid = torch.stack([xs[:, None, :].expand(n, h, w), ys[:, :, None].expand(n, h, w)], dim=3)
    return F.grid_sample(probs[:, None], grid, align_corners=False)


def test_mmdet_rule_matches_full_image_sampling():
    h, w = 41, 60
    g = torch.Generator().manual_seed(2)
    probs = torch.rand(30, 28, 28, generator=g)
    boxes = _boxes(30, h, w, seed=3)
    boxes[2] = torch.tensor([3.0, 4.0, 5.5, 7.0])  # grid_sample needs a non-degenerate box here
    full = _grid_sample_full(probs, boxes, h, w)
    local = paste_masks_grid_sample(probs, boxes, (h, w))
    inside = local != 0
    assert torch.equal(local[inside], full[inside])
    # outside each box's neighbourhood the full-image sampling is below any threshold >= 0.5
    assert bool((full[~inside] < 0.5).all())
    b = paste_masks_grid_sample(probs, boxes, (h, w), threshold=0.5)
    assert b.dtype == torch.bool and torch.equal(b, full >= 0.5)
