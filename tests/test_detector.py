"""DarkMaskRCNN: eval/train/DSL forward, folding, transform, input errors, parameter groups."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection.transform import GeneralizedRCNNTransform

from darkseg.models import (
    DarkMaskRCNN,
    InputError,
    ModelConfig,
    ModelConfigError,
    build_model,
    param_groups,
)

SMALL = dict(
    depth=18,
    class_names=["person", "car", "dog"],
    min_size=128,
    max_size=192,
    fpn_channels=32,
    box_head_dim=64,
    mask_head_channels=16,
    rpn_pre_nms_top_n_train=200,
    rpn_post_nms_top_n_train=100,
    rpn_pre_nms_top_n_test=100,
    rpn_post_nms_top_n_test=50,
    box_batch_size_per_image=64,
    rpn_batch_size_per_image=64,
    box_detections_per_img=10,
    normalization="imagenet",
    frozen_bn=True,
)


def small_model(**kw) -> DarkMaskRCNN:
    torch.manual_seed(0)
    return build_model(ModelConfig(**{**SMALL, **kw}))


def sample(g: torch.Generator, c: int = 3, sizes=((120, 170), (131, 97))):
    imgs, tgts = [], []
    for h, w in sizes:
        imgs.append(torch.rand(c, h, w, generator=g))
        masks = torch.zeros(2, h, w, dtype=torch.uint8)
        masks[0, 10:50, 20:60] = 1
        masks[1, 60:100, 30:90] = 1
        tgts.append(
            {
                "boxes": torch.tensor([[20.0, 10, 60, 50], [30, 60, 90, 100]]),
                "labels": torch.tensor([1, 3]),
                "masks": masks,
            }
        )
    return imgs, tgts


def test_eval_predictions_format():
    m = small_model(awd=True, scb=True).eval()
    imgs, _ = sample(torch.Generator().manual_seed(0))
    with torch.no_grad():
        preds = m(imgs)
    for img, p in zip(imgs, preds):
        n = p["boxes"].shape[0]
        assert p["labels"].shape == p["scores"].shape == (n,)
        assert p["masks"].shape == (n, 1, *img.shape[1:]) and p["masks"].dtype == torch.float32
        if n:
            assert p["labels"].min() >= 1 and p["labels"].max() <= 3
            assert (p["boxes"][:, 2] <= img.shape[2] + 1e-3).all()


def test_train_and_dsl_losses_and_gradients():
    m = small_model(awd=True, scb=True).train()
    g = torch.Generator().manual_seed(1)
    imgs, tgts = sample(g)
    noisy = [(i + 0.1 * torch.randn(i.shape, generator=g)).clamp(0, 1) for i in imgs]
    plain = m(imgs, tgts)
    assert set(plain) == {
        "loss_classifier",
        "loss_box_reg",
        "loss_mask",
        "loss_objectness",
        "loss_rpn_box_reg",
    }
    out = m.forward_dsl(imgs, noisy, tgts)
    assert set(out) == set(plain) | {f"clean_{k}" for k in plain} | {"loss_dsl"}
    assert 0 < out["loss_dsl"].item() <= 0.004
    assert all(torch.isfinite(v) for v in out.values())
    sum(out.values()).backward()
    assert m.backbone.body.awd["layer2"].weight_net[0].weight.grad.abs().sum() > 0
    assert m.backbone.body.layer3[0].conv2.llpf.weight.grad.abs().sum() > 0
    m.zero_grad()
    same = m.forward_dsl(imgs, imgs, tgts)
    assert same["loss_dsl"].item() == 0.0
    with pytest.raises(RuntimeError, match="train"):
        m.eval().forward_dsl(imgs, noisy, tgts)


def test_fuse_matches_unfused():
    m = small_model(scb=True, awd=True).eval()
    with torch.no_grad():  # make the SCB branches matter
        for name, p in m.named_parameters():
            if "llpf" in name:
                p.copy_(torch.randn(p.shape))
    x = torch.rand(1, 3, 128, 160, generator=torch.Generator().manual_seed(2))
    imgs = [x[0]]
    with torch.no_grad():
        feats = m.backbone.body(x)
        preds = m(imgs)
        assert m.num_scb == 12
        assert m.fuse() is m and m.num_scb == 0 and m.fused
        feats2 = m.backbone.body(x)
        preds2 = m(imgs)
    for a, b in zip(feats.values(), feats2.values()):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(preds[0]["scores"], preds2[0]["scores"], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(preds[0]["boxes"], preds2[0]["boxes"], atol=1e-2, rtol=1e-4)


def test_nearest_resize_and_bilinear_matches_torchvision():
    m = small_model()
    t = m.transform.eval()
    img = torch.rand(3, 50, 70, generator=torch.Generator().manual_seed(3))
    out, _ = t.resize(img)
    assert out.shape[-2:] == (128, 179)
    assert torch.isin(out.unique(), img.unique()).all()  # nearest: no new values
    mb = small_model(resize_interpolation="bilinear")
    tv = GeneralizedRCNNTransform(128, 192, mb.transform.image_mean, mb.transform.image_std).eval()
    a, b = mb.transform.eval()([img])[0].tensors, tv([img])[0].tensors
    torch.testing.assert_close(a, b, atol=0, rtol=0)
    assert a.shape[-2] % 32 == 0 and a.shape[-1] % 32 == 0


def test_four_channel_model():
    m = small_model(in_channels=4, awd=True).eval()
    assert m.transform.image_mean == [0.485, 0.456, 0.406, 0.456]
    imgs, tgts = sample(torch.Generator().manual_seed(4), c=4, sizes=((64, 96),))
    with torch.no_grad():
        assert m(imgs)[0]["masks"].shape[-2:] == (64, 96)
    with pytest.raises(InputError, match="expected 4 channels"):
        m([torch.rand(3, 64, 96)])


def test_bad_inputs_raise_clear_errors():
    m = small_model().eval()
    g = torch.Generator().manual_seed(5)
    imgs, tgts = sample(g)
    bad_nan = imgs[0].clone()
    bad_nan[0, 3, 3] = float("nan")
    cases = [
        ([torch.rand(4, 64, 64)], "expected 3 channels"),
        ([bad_nan], r"images\[0\]: contains NaN"),
        ([torch.rand(64, 64)], "expected shape"),
        ([(torch.rand(3, 64, 64) * 255).to(torch.uint8)], "float tensor"),
        ([torch.rand(3, 1, 64)], "too small"),
        (torch.rand(3, 64, 64), "list"),
    ]
    for images, msg in cases:
        with pytest.raises(InputError, match=msg):
            m(images)
    m.train()
    t_bad = [dict(t) for t in tgts]
    t_bad[1]["labels"] = torch.tensor([1, 4])
    with pytest.raises(InputError, match=r"targets\[1\]\['labels'\]: values must be in 1..3"):
        m(imgs, t_bad)
    t_bad = [dict(t) for t in tgts]
    t_bad[0]["masks"] = t_bad[0]["masks"][:, :100]
    with pytest.raises(InputError, match="masks"):
        m(imgs, t_bad)
    t_bad = [dict(t) for t in tgts]
    t_bad[0]["boxes"] = torch.tensor([[20.0, 10, 10, 50], [30, 60, 90, 100]])
    with pytest.raises(InputError, match="non-positive"):
        m(imgs, t_bad)
    with pytest.raises(InputError, match="shapes differ"):
        m.forward_dsl(imgs, [imgs[1], imgs[0]], tgts)
    # sizes that are not multiples of 32 are padded, never cropped: predictions cover the full input
    m.eval()
    with torch.no_grad():
        p = m([torch.rand(3, 101, 77, generator=g)])
    assert p[0]["masks"].shape[-2:] == (101, 77)


def test_config_validation_and_roundtrip():
    cfg = ModelConfig(**SMALL, awd=True, scb=True)
    assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.num_classes == 4 and cfg.scb_stage_set() == {2, 3, 4}
    for bad in [
        dict(size_divisible=48),
        dict(in_channels=2),
        dict(depth=42),
        dict(style="tf"),
        dict(pretrained=True),
        dict(image_mean=[0.5] * 3),
        dict(class_names=[]),
        dict(min_size=(400, 500)),
        dict(dsl={"clamp": 0}),
    ]:
        with pytest.raises(ModelConfigError):
            ModelConfig(**{**SMALL, **bad})
    with pytest.raises(ModelConfigError, match="unknown key"):
        ModelConfig.from_dict({"depht": 50})
    caffe = ModelConfig(normalization="caffe")
    mean, std = caffe.mean_std()
    assert abs(mean[0] * 255 - 123.675) < 1e-9 and abs(std[0] * 255 - 1) < 1e-12


def test_param_groups_paper_names_and_longest_key_rule():
    m = small_model(awd=True, scb=True)
    groups = param_groups(m, lr=0.01, weight_decay=1e-4)
    lr_of = {n: g["lr"] for g in groups for n in g["param_names"]}
    assert lr_of["backbone.body.layer2.0.conv1.llpf.weight"] == pytest.approx(0.02)
    assert lr_of["backbone.body.layer3.1.conv2.learnable_conv1.weight"] == pytest.approx(0.02)
    assert lr_of["backbone.body.awd.layer2.weight_net.0.weight"] == pytest.approx(0.02)
    assert lr_of["backbone.body.awd.layer2.channel_net.1.weight"] == pytest.approx(0.02)
    assert lr_of["backbone.body.layer2.0.conv2.weight"] == pytest.approx(0.01)
    assert not any(n.startswith(("backbone.body.conv1", "backbone.body.layer1.")) for n in lr_of)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert set(lr_of) == trainable and all(g["weight_decay"] == 1e-4 for g in groups)
    lr_of = {
        n: g["lr"]
        for g in param_groups(m, 1e-4, 0.05, {"backbone": 0.1, "llpf": 10.0})
        for n in g["param_names"]
    }
    assert lr_of["backbone.body.layer2.0.conv1.llpf.weight"] == pytest.approx(1e-5)
    assert lr_of["roi_heads.box_head.fc6.weight"] == pytest.approx(1e-4)
    torch.optim.SGD(groups, lr=0.01, momentum=0.9)


def test_tiny_preset_trains_from_scratch_with_sane_losses():
    cfg = ModelConfig.tiny(["a", "b", "c"], min_size=128, max_size=192, scb=True, awd=True)
    assert cfg.depth == 18 and cfg.normalization == "imagenet" and not cfg.frozen_bn
    torch.manual_seed(0)
    m = build_model(cfg).train()
    imgs, tgts = sample(torch.Generator().manual_seed(6))
    losses = m.forward_dsl(imgs, imgs, tgts)
    assert all(0 <= v.item() < 10 for v in losses.values())
