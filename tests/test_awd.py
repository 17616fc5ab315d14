"""AWD (docs/models.md) against an explicit loop reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from darkseg.models import AWD


def _randomize(m: AWD, g: torch.Generator) -> AWD:
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g))
    return m.eval()


def _reference(m: AWD, x: torch.Tensor) -> torch.Tensor:
    """Loop implementation of AWD's softmax-weighted reflect-padded window (groups = C)."""
    b, c, h, w = x.shape
    s = m.stride
    z = m.weight_net(x)
    oh, ow = z.shape[-2:]
    t = m.channel_net(x).view(b, c) if m.channel_net is not None else torch.ones(b, c)
    xp = F.pad(x, (1, 1, 1, 1), mode="reflect")
    y = torch.zeros(b, c, oh, ow)
    for bi in range(b):
        for ci in range(c):
            for i in range(oh):
                for j in range(ow):
                    logits = z[bi, 9 * ci : 9 * ci + 9, i, j] * t[bi, ci]
                    wts = torch.softmax(logits, 0)
                    win = xp[bi, ci, s * i : s * i + 3, s * j : s * j + 3].reshape(9)
                    y[bi, ci, i, j] = (wts * win).sum()
    return y


@pytest.mark.parametrize(
    "shape,stride,out",
    [
        ((2, 8, 13, 11), 2, (2, 8, 7, 6)),
        ((2, 8, 12, 10), 2, (2, 8, 6, 5)),
        ((2, 8, 12, 10), 1, (2, 8, 12, 10)),
    ],
)
def test_shapes(shape, stride, out):
    assert AWD(shape[1], stride=stride)(torch.randn(shape)).shape == out


@pytest.mark.parametrize("stride", [1, 2])
def test_matches_loop_reference(stride):
    g = torch.Generator().manual_seed(0)
    m = _randomize(AWD(4, stride=stride), g)
    x = torch.randn(2, 4, 7, 6, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(m(x), _reference(m, x), atol=1e-5, rtol=1e-5)


def test_zero_logits_is_reflect_average_pool():
    m = AWD(8, stride=2).eval()
    with torch.no_grad():
        m.weight_net[0].weight.zero_()
        m.weight_net[1].bias.zero_()
    x = torch.randn(2, 8, 13, 11, generator=torch.Generator().manual_seed(1))
    ref = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, 2)
    with torch.no_grad():
        torch.testing.assert_close(m(x), ref, atol=2e-6, rtol=0)


def test_constant_input_and_convexity():
    g = torch.Generator().manual_seed(2)
    m = _randomize(AWD(6, stride=2), g)
    with torch.no_grad():
        const = m(torch.full((1, 6, 9, 9), 0.37))
        torch.testing.assert_close(const, torch.full_like(const, 0.37), atol=1e-6, rtol=0)
        x = torch.randn(2, 6, 9, 8, generator=g)
        y = m(x)
        win = F.unfold(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, stride=2).view(2, 6, 9, *y.shape[-2:])
        assert (y >= win.min(2).values - 1e-6).all() and (y <= win.max(2).values + 1e-6).all()
        w = m.sampling_weights(x)
        assert (w >= 0).all()
        torch.testing.assert_close(w.sum(3), torch.ones_like(w.sum(3)))


def test_channel_independence_without_channel_net():
    m = AWD(4, stride=2, use_channel=False).eval()
    x = torch.randn(1, 4, 6, 6, requires_grad=True)
    m(x)[:, 1].sum().backward()
    assert x.grad[:, [0, 2, 3]].abs().max() == 0
    assert x.grad[:, 1].abs().max() > 0


def test_parameter_count():
    assert sum(p.numel() for p in AWD(256).parameters()) == 58112
    assert sum(p.numel() for p in AWD(512).parameters()) == 181760


def test_grouped_form_and_errors():
    m = AWD(8, stride=2, groups=2)
    assert m(torch.randn(1, 8, 10, 10)).shape == (1, 8, 5, 5)
    with pytest.raises(ValueError, match="multiple of groups"):
        AWD(6, groups=4)
    with pytest.raises(ValueError, match="expects"):
        AWD(8)(torch.randn(1, 3, 10, 10))
    with pytest.raises(ValueError, match="too small"):
        AWD(8)(torch.randn(1, 8, 1, 10))


@pytest.mark.parametrize("mode", ["train_bn", "frozen_bn", "frozen_bn_no_channel"])
def test_all_forward_paths_and_gradients_match_the_reference(mode):
    """Live BN (training), frozen BN with the channel factor folded into per-image weights, and frozen BN
    without the channel MLP: outputs and input gradients equal the loop reference (batch 3)."""
    from darkseg.models.resnet import FrozenBatchNorm2d

    g = torch.Generator().manual_seed(1)
    norm = None if mode == "train_bn" else FrozenBatchNorm2d
    m = _randomize(AWD(5, stride=2, norm_layer=norm, use_channel=mode != "frozen_bn_no_channel"), g)
    if mode == "train_bn":
        m.train()
    else:
        with torch.no_grad():
            m.weight_net[1].running_var.uniform_(0.5, 2.0, generator=g)
            m.weight_net[1].running_mean.normal_(generator=g)
    x = torch.randn(3, 5, 9, 8, generator=g)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = m(xa), _reference(m, xb)
    torch.testing.assert_close(ya, yb, atol=1e-5, rtol=1e-5)
    wgt = torch.randn(ya.shape, generator=g)
    (ya * wgt).sum().backward()
    (yb * wgt).sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # inference path too
        torch.testing.assert_close(m(x), yb.detach(), atol=1e-5, rtol=1e-5)
