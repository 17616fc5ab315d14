"""MMDetection's two mask-target rules (bitmap on zero-padded masks, polygon) and polygons in targets."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision
from matplotlib.path import Path as MplPath

from darkseg.data import polygons
from darkseg.data.transforms import RandomHorizontalFlip, drop_empty_boxes, resize_target
from darkseg.models.mask_targets import mask_targets, pad_masks, padded_size, polygon_target


def _edge_distance(px: np.ndarray, py: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Distance of each point to the closed polygon's edges."""
    xs, ys = poly[0::2], poly[1::2]
    ax, ay = xs, ys
    bx, by = np.roll(xs, -1), np.roll(ys, -1)
    dx, dy = bx - ax, by - ay
    t = ((px[:, None] - ax) * dx + (py[:, None] - ay) * dy) / np.maximum(dx * dx + dy * dy, 1e-12)
    t = np.clip(t, 0, 1)
    cx, cy = ax + t * dx, ay + t * dy
    return np.sqrt((px[:, None] - cx) ** 2 + (py[:, None] - cy) ** 2).min(1)


def test_polygon_rule_matches_an_independent_rasterisation():
    """Target pixel (i, j) is 1 iff its centre, mapped back into the image through the RoI box, lies
    inside the polygon (matplotlib's point-in-polygon test). Pixels whose centre lies within 0.25 target
    pixels of an edge are not compared: the COCO rasteriser places edges on a 1/5-pixel grid."""
    rng = np.random.default_rng(0)
    compared = 0
    for _ in range(40):
        n = int(rng.integers(3, 9))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        cx, cy, r = rng.uniform(30, 70), rng.uniform(30, 70), rng.uniform(5, 30)
        poly = np.stack([cx + r * np.cos(ang), cy + r * np.sin(ang)], 1).reshape(-1)
        x1, y1 = rng.uniform(0, 50, 2)
        box = np.array([x1, y1, x1 + rng.uniform(3, 60), y1 + rng.uniform(3, 60)], dtype=np.float32)
        t = polygon_target([poly], box, 28)
        w, h = max(box[2] - box[0], 1.0), max(box[3] - box[1], 1.0)
        sx, sy = 28.0 / w, 28.0 / h
        jj, ii = np.meshgrid(np.arange(28) + 0.5, np.arange(28) + 0.5)
        px, py = box[0] + jj.ravel() / sx, box[1] + ii.ravel() / sy
        inside = MplPath(poly.reshape(-1, 2)).contains_points(np.stack([px, py], 1)).reshape(28, 28)
        # distance in target pixels: scale the polygon into the target frame first
        tpoly = poly.copy()
        tpoly[0::2] = (poly[0::2] - box[0]) * sx
        tpoly[1::2] = (poly[1::2] - box[1]) * sy
        far = _edge_distance(jj.ravel(), ii.ravel(), tpoly).reshape(28, 28) > 0.25
        assert np.array_equal(t[far].astype(bool), inside[far])
        compared += int(far.sum())
    assert compared > 20000


def test_polygon_rule_used_per_instance_bitmap_rule_for_the_rest():
    masks = torch.zeros(2, 64, 64)
    masks[0, 10:30, 10:30] = 1
    masks[1, 5:60, 5:60] = 1
    tri = np.array([10.0, 10.0, 30.0, 10.0, 10.0, 30.0])  # instance 0 as a triangle, not its square bitmap
    boxes = torch.tensor([[10.0, 10.0, 30.0, 30.0], [5.0, 5.0, 60.0, 60.0]])
    matched = torch.tensor([0, 1])
    bitmap = mask_targets(masks, boxes, matched, 28)
    mixed = mask_targets(masks, boxes, matched, 28, [[tri], None])
    assert bitmap[0].mean() == 1.0  # the square fills its box
    assert 0.4 < float(mixed[0].mean()) < 0.6  # the triangle fills half of it
    assert torch.equal(mixed[1], bitmap[1])
    assert torch.equal(mixed[0], torch.from_numpy(polygon_target([tri], boxes[0].numpy(), 28)).float())


def test_bitmap_rule_samples_zero_padding_past_the_image_edge():
    """A mask touching the bottom/right edge: samples past the last row/column read the zero padding (as
    MMDetection's padded BitmapMasks), not a repeat of the edge (what the unpadded h x w bitmap gives)."""
    g = torch.Generator().manual_seed(0)
    h, w = 100, 60
    hp, wp = padded_size(h, w, 32)
    assert (hp, wp) == (128, 64)
    differs = 0
    for _ in range(20):
        m = (torch.rand(1, h, w, generator=g) > 0.5).float()
        y1, x1 = (float(v) for v in torch.randint(40, 90, (2,), generator=g) * torch.tensor([1, 0.5]))
        box = torch.tensor([[x1 + 0.3, y1 + 0.7, float(w), float(h)]])
        got = mask_targets(pad_masks(m, (hp, wp)), box, torch.zeros(1, dtype=torch.int64), 28)
        padded = torch.from_numpy(np.pad(m.numpy(), ((0, 0), (0, hp - h), (0, wp - w))))
        rois = torch.cat([torch.zeros(1, 1), box], 1)
        ref = torchvision.ops.roi_align(padded[:, None], rois, (28, 28), 1.0, 0, aligned=True)[:, 0] >= 0.5
        assert torch.equal(got.bool(), ref)
        unpadded = mask_targets(m, box, torch.zeros(1, dtype=torch.int64), 28)
        differs += int((unpadded != got).sum())
    assert differs > 0  # the cases do exercise the edge


def test_roi_heads_pad_masks_to_the_padded_image_size(monkeypatch):
    from darkseg.models import ModelConfig, build_model, mmdet_compat

    cfg = ModelConfig.tiny(["a", "b"], compat="mmdet", min_size=100, max_size=150)
    model = build_model(cfg).train()
    seen = []
    orig = mmdet_compat.mask_targets

    def spy(masks, *a, **k):
        seen.append(tuple(masks.shape[-2:]))
        return orig(masks, *a, **k)

    monkeypatch.setattr(mmdet_compat, "mask_targets", spy)
    img = torch.rand(3, 100, 130)
    m = torch.zeros(1, 100, 130, dtype=torch.uint8)
    m[0, 60:100, 80:130] = 1
    target = {"boxes": torch.tensor([[80.0, 60.0, 130.0, 100.0]]), "labels": torch.tensor([1]), "masks": m}
    torch.manual_seed(0)
    losses = model([img], [target])
    assert torch.isfinite(losses["loss_mask"]) and seen == [(128, 160)]


def test_polygons_follow_resize_flip_and_filtering():
    poly = np.array([10.0, 20.0, 30.0, 20.0, 30.0, 40.0])
    t = {
        "boxes": torch.tensor([[10.0, 20.0, 30.0, 40.0], [5.0, 5.0, 5.0, 9.0]]),
        "masks": torch.zeros(2, 50, 60, dtype=torch.uint8),
        "polygons": [[poly], None],
    }
    r = resize_target(t, (50, 60), (25, 90))
    assert np.allclose(r["polygons"][0][0], [15.0, 10.0, 45.0, 10.0, 45.0, 20.0]) and r["polygons"][1] is None
    assert np.array_equal(t["polygons"][0][0], poly)  # the input is not changed
    flip = RandomHorizontalFlip(1.0)
    _, f = flip(torch.zeros(3, 50, 60), t)
    assert np.allclose(f["polygons"][0][0], [50.0, 20.0, 30.0, 20.0, 30.0, 40.0])
    kept = drop_empty_boxes(t)  # the second box has no width
    assert len(kept["polygons"]) == 1 and kept["boxes"].shape[0] == 1


def test_coco_targets_carry_polygons():
    from conftest import shared_subdir
    from darkseg.data import LIS_CLASSES, CocoInstances

    root = shared_subdir("tinycoco-seg")
    ann = root / "annotations" / "instances_train2017.json"
    ds = CocoInstances(root / "images" / "train2017", ann, class_names=list(LIS_CLASSES), train=True)
    target = ds.load_target(ds.ids[0])
    n = target["boxes"].shape[0]
    assert len(target["polygons"]) == n and any(p is not None for p in target["polygons"])
    # a polygon instance's polygon rule and its decoded bitmap agree on the bulk of the object
    k = next(i for i, p in enumerate(target["polygons"]) if p is not None)
    box = target["boxes"][k : k + 1]
    bit = mask_targets(target["masks"][k : k + 1].float(), box, torch.zeros(1, dtype=torch.int64), 28)
    one = torch.zeros(1, dtype=torch.int64)
    pol = mask_targets(target["masks"][k : k + 1].float(), box, one, 28, [target["polygons"][k]])
    inter = float((bit * pol).sum())
    union = float(((bit + pol) > 0).sum())
    assert inter / union > 0.8


@pytest.mark.parametrize("bad", [[[np.array([1.0, 2.0, 3.0])]], [[np.array([0.0, 0, 1, 0, 1, np.nan])]], "x"])
def test_model_refuses_malformed_polygons(bad):
    from darkseg.models import ModelConfig, build_model
    from darkseg.models.detector import InputError

    model = build_model(ModelConfig.tiny(["a"], compat="mmdet")).train()
    t = {
        "boxes": torch.tensor([[1.0, 1.0, 20.0, 20.0]]),
        "labels": torch.tensor([1]),
        "masks": torch.zeros(1, 64, 64, dtype=torch.uint8),
        "polygons": bad,
    }
    with pytest.raises(InputError, match="polygons"):
        model([torch.rand(3, 64, 64)], [t])


def test_polygon_helpers_leave_bitmap_instances_alone():
    assert polygons.from_segmentation({"size": [2, 2], "counts": "x"}) is None
    assert polygons.from_segmentation([[1.0, 2.0, 3.0, 4.0]]) is None  # fewer than 3 points
    assert polygons.scale([None], 2.0, 2.0) == [None] and polygons.flip([None], 10.0) == [None]
