"""SCB / LLPF (docs/models.md) and the K[i] re-parameterisation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from darkseg.models import LLPF, SCBConv, count_scb, fuse_scb

INIT_KERNEL = torch.tensor(
    [
        [0.10566124, 0.11247581, 0.10566124],
        [0.11247581, 0.12745179, 0.11247581],
        [0.10566124, 0.11247581, 0.10566124],
    ]
)


def _random_scb(cin: int, cout: int, stride: int, g: torch.Generator, bias: bool = False) -> SCBConv:
    m = SCBConv(cin, cout, stride=stride, bias=bias)
    with torch.no_grad():
        for p in m.parameters():  # random, at PyTorch-init scale (outputs of order 1)
            p.copy_(torch.randn(p.shape, generator=g) / (cin * 9) ** 0.5)
        m.llpf.weight.copy_(2.0 * torch.randn(m.llpf.weight.shape, generator=g))  # very unequal kernels
    return m


def test_llpf_init_kernel_and_normalisation():
    m = LLPF(5)
    k = m.kernel()
    torch.testing.assert_close(k[:, 0], INIT_KERNEL.expand(5, 3, 3), atol=1e-7, rtol=0)
    with torch.no_grad():
        m.weight.copy_(torch.randn(5, 1, 3, 3) * 5)
    k = m.kernel()
    assert (k > 0).all()
    torch.testing.assert_close(k.sum((1, 2, 3)), torch.ones(5))


def test_llpf_ones_input():
    with torch.no_grad():
        y = LLPF(1)(torch.ones(1, 1, 5, 5))
    assert abs(float(y[0, 0, 2, 2]) - 1.0) < 1e-6
    assert abs(float(y[0, 0, 0, 0]) - 0.458065) < 1e-6


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("cin,cout", [(3, 5), (8, 8), (16, 32), (7, 4)])
def test_fused_equals_two_branch(stride, cin, cout):
    g = torch.Generator().manual_seed(cin * 100 + cout + stride)
    m = _random_scb(cin, cout, stride, g, bias=cin == 7)
    x = torch.randn(2, cin, 11, 9, generator=g)
    with torch.no_grad():
        ref = m(x)
        fused = m.fuse()
        assert type(fused) is nn.Conv2d and fused.stride == (stride, stride)
        out = fused(x)
    assert out.shape == ref.shape == nn.Conv2d(cin, cout, 3, stride, 1)(x).shape
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


def test_repo_rule_k_of_output_channel_is_wrong():
    """The original script's K[o] folding is exact only when all channel kernels are equal (decision D2)."""
    g = torch.Generator().manual_seed(5)
    m = _random_scb(8, 8, 1, g)
    x = torch.randn(1, 8, 9, 9, generator=g)
    with torch.no_grad():
        ref = m(x)
        a = m.learnable_conv1.weight.expand(8, 8, 3, 3)
        wrong = nn.functional.conv2d(x, m.weight + a * m.llpf.kernel(), padding=1)  # broadcasts K[o]
        assert (wrong - ref).abs().max() > 1e-2
        m.llpf.weight.copy_(m.llpf.weight[:1].expand_as(m.llpf.weight))  # all kernels equal
        ref = m(x)
        wrong = nn.functional.conv2d(x, m.weight + a * m.llpf.kernel(), padding=1)
        torch.testing.assert_close(wrong, ref, atol=1e-5, rtol=1e-5)


def test_from_conv_zero_init_and_fuse_in_place():
    conv = nn.Conv2d(4, 6, 3, 2, 1, bias=False)
    m = SCBConv.from_conv(conv, zero_init=True)
    x = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(m(x), conv(x))
    net = nn.Sequential(nn.Sequential(SCBConv(4, 4)), SCBConv(4, 4, stride=2))
    with torch.no_grad():
        ref = net(x)
        assert count_scb(net) == 2 and fuse_scb(net) == 2 and count_scb(net) == 0
        torch.testing.assert_close(net(x), ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="3x3"):
        SCBConv.from_conv(nn.Conv2d(4, 4, 1))
