"""ResNet backbones with AWD / SCB (docs/models.md)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.resnet import resnet18

from darkseg.models import AWD, FrozenBatchNorm2d, ResNetBody, SCBConv


def _strides(body):
    return {
        n: m.stride for n, m in body.named_modules() if isinstance(m, nn.Conv2d) and n.startswith("layer")
    }


def test_r50_caffe_awd_scb_structure_and_shapes():
    body = ResNetBody(50, "caffe", awd=True, scb_stages=(2, 3, 4)).eval()
    assert all(s == (1, 1) for s in _strides(body).values())
    awds = [m for m in body.modules() if isinstance(m, AWD)]
    assert [a.in_channels for a in awds] == [256, 512, 1024] and all(a.stride == 2 for a in awds)
    assert sum(isinstance(m, SCBConv) for m in body.modules()) == 13
    assert sum(p.numel() for a in awds for p in a.parameters()) == 865536
    scb_extra = sum(
        m.llpf.weight.numel() + m.learnable_conv1.weight.numel()
        for m in body.modules()
        if isinstance(m, SCBConv)
    )
    assert scb_extra == 1277440
    with torch.no_grad():
        out = body(torch.randn(1, 3, 100, 150))
    assert [tuple(v.shape[-2:]) for v in out.values()] == [(25, 38), (13, 19), (7, 10), (4, 5)]
    assert [v.shape[1] for v in out.values()] == [256, 512, 1024, 2048]


def test_r50_styles_place_the_stride():
    caffe, pt = ResNetBody(50, "caffe"), ResNetBody(50, "pytorch")
    for s in (2, 3, 4):
        cb, pb = getattr(caffe, f"layer{s}")[0], getattr(pt, f"layer{s}")[0]
        assert cb.conv1.stride == (2, 2) and cb.conv2.stride == (1, 1)
        assert pb.conv1.stride == (1, 1) and pb.conv2.stride == (2, 2)
        assert cb.downsample[0].stride == pb.downsample[0].stride == (2, 2)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        assert [v.shape for v in caffe(x).values()] == [v.shape for v in pt(x).values()]
    pre = ResNetBody(50, "pytorch", awd=True, awd_mode="prefilter")
    assert [a.stride for a in pre.awd.values()] == [1, 1, 1] and pre.layer2[0].conv2.stride == (2, 2)


def test_awd_wiring_equals_avgpool_then_stride1_resnet():
    """AWD logits zero + SCB A = 0: the AWD model equals avg-pool(reflect) + stride-1 ResNet."""
    torch.manual_seed(0)
    body = ResNetBody(18, awd=True, scb_stages=(2, 3, 4), frozen_bn=True).eval()
    with torch.no_grad():
        for a in body.awd.values():
            a.weight_net[0].weight.zero_()
            a.weight_net[1].bias.zero_()
        for m in body.modules():
            if isinstance(m, SCBConv):
                m.learnable_conv1.weight.zero_()
    ref = resnet18(norm_layer=FrozenBatchNorm2d).eval()
    missing, unexpected = ref.load_state_dict(body.state_dict(), strict=False)
    assert not [k for k in missing if not k.startswith("fc.")]
    for s in (2, 3, 4):
        blk = getattr(ref, f"layer{s}")[0]
        blk.conv1.stride = blk.downsample[0].stride = (1, 1)

    def ref_forward(x):
        x = ref.maxpool(ref.relu(ref.bn1(ref.conv1(x))))
        outs = []
        for s in (1, 2, 3, 4):
            if s > 1:
                x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="reflect"), 3, 2)
            x = getattr(ref, f"layer{s}")(x)
            outs.append(x)
        return outs

    x = torch.randn(2, 3, 96, 64)
    with torch.no_grad():
        for a, b in zip(body(x).values(), ref_forward(x)):
            torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_freezing_and_frozen_bn_statistics():
    body = ResNetBody(18, awd=True, scb_stages=(2, 3, 4), frozen_stages=1, frozen_bn=True)
    frozen = [n for n, p in body.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("conv1", "bn1", "layer1.")) for n in frozen)
    assert all(p.requires_grad for n, p in body.named_parameters() if n.startswith(("layer2", "awd")))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in body.modules())
    awd_bn = body.awd["layer2"].weight_net[1]
    assert isinstance(awd_bn, FrozenBatchNorm2d)
    before = {k: v.clone() for k, v in body.state_dict().items() if "running" in k}
    body.train()
    opt = torch.optim.SGD([p for p in body.parameters() if p.requires_grad], lr=0.1)
    sum(v.mean() for v in body(torch.randn(2, 3, 64, 64)).values()).backward()
    assert awd_bn.weight.grad is not None
    opt.step()
    after = body.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())

    live = ResNetBody(18, frozen_stages=1, frozen_bn=False).train()
    assert not live.bn1.training and not live.layer1[0].bn1.training and live.layer2[0].bn1.training
    none = ResNetBody(18, frozen_stages=-1, trainable=False)
    assert not any(p.requires_grad for p in none.parameters())


@pytest.mark.parametrize("depth,chans", [(18, [64, 128, 256, 512]), (34, [64, 128, 256, 512])])
def test_basic_block_depths_and_four_channel_input(depth, chans):
    body = ResNetBody(depth, awd=True, scb_stages=(2,), in_channels=4).eval()
    assert body.conv1.weight.shape == (64, 4, 7, 7)
    assert isinstance(body.layer2[0].conv1, SCBConv) and isinstance(body.layer2[1].conv2, SCBConv)
    with torch.no_grad():
        out = body(torch.randn(1, 4, 64, 64))
    assert [v.shape[1] for v in out.values()] == chans
    with pytest.raises(ValueError, match="expects"):
        body(torch.randn(1, 3, 64, 64))


def test_r101_awd_scb_builds_and_runs():
    body = ResNetBody(101, "caffe", awd=True, scb_stages=(2, 3, 4)).eval()
    assert sum(isinstance(m, SCBConv) for m in body.modules()) == 4 + 23 + 3
    with torch.no_grad():
        out = body(torch.randn(1, 3, 64, 64))
    assert [tuple(v.shape[1:]) for v in out.values()] == [
        (256, 16, 16),
        (512, 8, 8),
        (1024, 4, 4),
        (2048, 2, 2),
    ]
