"""The CPU fast paths compute the same values as the torchvision / mmcv operators they replace.

* ``models/roi_align.py``: RoIAlign as a weighted gather over channel vectors, against
  ``torchvision.ops.roi_align`` (values and feature gradients).
* ``models/mask_predictor.py``: the 2x2 transposed conv + 1x1 conv as matrix products, against
  torchvision's ``MaskRCNNPredictor`` with the same state.
* ``mmdet_compat.batched_nms``: NMS group by group in the global score order, against mmcv's single
  NMS over offset boxes (the kept indices and their order must be identical, ties included).
* ``models/awd.window_logits``: AWD's logit convolution as a batched matrix product when a gradient is
  needed, against ``F.conv2d`` (values and gradients; in float64 the sums of nine products differ by a
  few ulp, 1e-12 of the scale).
* ``models/fpn.FPN`` and ``models/resnet.stem_pool``: a broadcast addition instead of nearest
  upsampling + addition, a channels-last max pool: the same float operations, so bit-identical.

Tolerances: float32 sums of a few hundred products of O(1) values in a different order differ by a few
ulp of the largest partial sum; 1e-5 of the output's scale bounds that with margin.
"""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor

from darkseg.models.awd import window_logits
from darkseg.models.fpn import FPN, upsample_add
from darkseg.models.mask_predictor import MaskPredictor
from darkseg.models.mmdet_compat import batched_nms
from darkseg.models.resnet import stem_pool
from darkseg.models.roi_align import PyramidRoIAlign, roi_align


def _rois(n: int, h: int, w: int, stride: int, batch: int, g: torch.Generator) -> torch.Tensor:
    """Boxes of 0..150 px, some reaching past every border, some degenerate (zero size)."""
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w * stride * 1.2, h * stride * 1.2]) - 20
    wh = torch.rand(n, 2, generator=g) * 150
    wh[: n // 10] = 0.0
    idx = torch.randint(0, batch, (n, 1), generator=g).float()
    return torch.cat([idx, xy, xy + wh], 1)


@pytest.mark.parametrize(
    "size, sampling_ratio, aligned, dtype",
    [
        (7, 0, True, torch.float32),  # MMDetection's box RoIs
        (14, 0, True, torch.float32),  # MMDetection's mask RoIs
        (7, 2, False, torch.float32),  # torchvision's poolers
        ((5, 3), 1, False, torch.float64),
    ],
)
def test_roi_align_equals_torchvision(size, sampling_ratio, aligned, dtype):
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 16, 26, 38, generator=g, dtype=dtype)
    rois = _rois(300, 26, 38, 8, 2, g).to(dtype)
    ref = torchvision.ops.roi_align(feats, rois, size, 1 / 8, sampling_ratio, aligned)
    out = roi_align(feats, rois, size, 1 / 8, sampling_ratio, aligned)
    assert out.shape == ref.shape
    tol = (1e-5 if dtype == torch.float32 else 1e-12) * ref.abs().max()
    torch.testing.assert_close(out, ref, rtol=0, atol=float(tol))
    # channels-last features (no copy) give the same values
    out_cl = roi_align(
        feats.contiguous(memory_format=torch.channels_last), rois, size, 1 / 8, sampling_ratio, aligned
    )
    torch.testing.assert_close(out_cl, ref, rtol=0, atol=float(tol))


def test_roi_align_gradients_equal_torchvision():
    g = torch.Generator().manual_seed(1)
    feats = torch.randn(1, 8, 20, 24, generator=g)
    rois = _rois(60, 20, 24, 4, 1, g)
    w = torch.randn(60, 8, 7, 7, generator=g)
    grads = []
    for fn in (torchvision.ops.roi_align, roi_align):
        f = feats.clone().requires_grad_(True)
        (fn(f, rois, 7, 0.25, 0, True) * w).sum().backward()
        grads.append(f.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=0, atol=float(1e-5 * grads[0].abs().max()))


def test_roi_align_empty_and_shifted_rois():
    feats = torch.randn(1, 4, 10, 10)
    assert roi_align(feats, torch.zeros(0, 5), 7, 1.0, 0, True).shape == (0, 4, 7, 7)
    far = torch.tensor([[0.0, 50.0, 50.0, 60.0, 60.0]])  # wholly outside: every point adds 0
    assert roi_align(feats, far, 7, 1.0, 2, False).abs().max() == 0
    # a one-pixel shift of the RoI changes the result: the positions are really used
    a = roi_align(feats, torch.tensor([[0.0, 1.0, 1.0, 6.0, 6.0]]), 3, 1.0, 2, True)
    b = roi_align(feats, torch.tensor([[0.0, 2.0, 1.0, 7.0, 6.0]]), 3, 1.0, 2, True)
    assert (a - b).abs().max() > 1e-3


def test_pyramid_roi_align_equals_multiscale_roi_align():
    from torchvision.ops import MultiScaleRoIAlign

    from darkseg.models.detector import _fix_pooler_scales

    g = torch.Generator().manual_seed(2)
    names = ["0", "1", "2", "3"]
    feats = {k: torch.randn(2, 8, 64 >> i, 96 >> i, generator=g) for i, k in enumerate(names)}
    boxes = [_rois(40, 64, 96, 4, 1, g)[:, 1:].clamp(min=0) for _ in range(2)]
    for b in boxes:
        b[:, 2:] = torch.maximum(b[:, 2:], b[:, :2] + 1)
    shapes = [(256, 384), (256, 384)]
    ref_pool, our_pool = MultiScaleRoIAlign(names, 7, 2), PyramidRoIAlign(names, 7, 2)
    _fix_pooler_scales(ref_pool)
    _fix_pooler_scales(our_pool)
    ref = ref_pool(feats, boxes, shapes)
    out = our_pool(feats, boxes, shapes)
    torch.testing.assert_close(out, ref, rtol=0, atol=float(1e-5 * ref.abs().max()))


def test_mask_predictor_equals_torchvision():
    torch.manual_seed(3)
    ref = MaskRCNNPredictor(32, 24, 5)
    ours = MaskPredictor(32, 24, 5)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(6, 32, 14, 14)
    outs, grads = [], []
    for m in (ref, ours):
        xi = x.clone().requires_grad_(True)
        y = m(xi)
        (y * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
        outs.append(y.detach())
        grads.append((xi.grad, m.conv5_mask.weight.grad, m.mask_fcn_logits.weight.grad))
    assert outs[1].shape == outs[0].shape == (6, 5, 28, 28)
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=float(1e-5 * outs[0].abs().max()))
    for a, b in zip(grads[0], grads[1]):
        torch.testing.assert_close(b, a, rtol=0, atol=float(1e-5 * a.abs().max()))


@pytest.mark.parametrize("batch,groups,h,w,stride", [(1, 24, 20, 30, 2), (2, 8, 17, 9, 2), (1, 6, 9, 9, 1)])
def test_window_logits_equal_grouped_conv(batch, groups, h, w, stride):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(batch, groups, h, w, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(groups * 9, 1, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(groups * 9, generator=g, dtype=torch.float64, requires_grad=True)
    args = ((stride, stride), (1, 1), 1, groups)
    ref = torch.nn.functional.conv2d(x, weight, bias, *args)
    out = window_logits(x, weight, bias, *args)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12 * float(ref.abs().max()))
    upstream = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    for a, b in zip(
        torch.autograd.grad(ref, (x, weight, bias), upstream),
        torch.autograd.grad(out, (x, weight, bias), upstream),
    ):
        torch.testing.assert_close(b, a, rtol=0, atol=1e-12 * float(a.abs().max()))
    with torch.no_grad():  # no gradient: the convolution itself
        assert torch.equal(
            window_logits(x, weight, bias, *args), torch.nn.functional.conv2d(x, weight, bias, *args)
        )


def test_fpn_and_stem_pool_bit_identical_to_torchvision():
    g = torch.Generator().manual_seed(5)
    ref = torchvision.ops.FeaturePyramidNetwork([8, 16, 32], 12)
    ours = FPN([8, 16, 32], 12)
    ours.load_state_dict(ref.state_dict())
    feats = {str(i): torch.randn(2, c, 40 >> i, 24 >> i, generator=g) for i, c in enumerate([8, 16, 32])}
    with torch.no_grad():
        a, b = ref(feats), ours(feats)
        assert list(a) == list(b)
        assert all(torch.equal(a[k], b[k]) for k in a)
        lateral, top = torch.randn(1, 3, 10, 7, generator=g), torch.randn(1, 3, 5, 4, generator=g)  # not 2x
        want = lateral + torch.nn.functional.interpolate(top, size=(10, 7), mode="nearest")
        assert torch.equal(upsample_add(lateral, top), want)
        pool = torch.nn.MaxPool2d(3, 2, 1)
        x = torch.randn(2, 5, 33, 18, generator=g)
        y = stem_pool(pool, x)
        assert y.is_contiguous() and torch.equal(y, pool(x))


def _mmcv_single_nms(boxes, scores, groups, thr):
    """mmcv's ``batched_nms`` below its split threshold: one NMS over class-offset boxes."""
    off = groups.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
    return torchvision.ops.nms(boxes + off[:, None], scores, thr)


@pytest.mark.parametrize("n", [900, 3000, 9000])
def test_batched_nms_group_by_group_equals_single_call(n):
    g = torch.Generator().manual_seed(n)
    k = 8
    m = n // k
    xy = torch.rand(m, 2, generator=g) * 500
    wh = 10 + torch.rand(m, 2, generator=g) * 150
    base = torch.cat([xy, xy + wh], 1)
    boxes = (base[:, None, :] + torch.randn(m, k, 4, generator=g) * 3).reshape(-1, 4)
    scores = (torch.rand(m * k, generator=g) * 40).round() / 40  # many exact ties
    labels = torch.arange(k).repeat(m)
    ref = _mmcv_single_nms(boxes, scores, labels, 0.5)
    out = batched_nms(boxes, scores, labels, 0.5)
    assert 0 < ref.numel() < boxes.shape[0]
    assert torch.equal(out, ref)
