"""darkseg checkpoints and torchvision state-dict loading."""

from __future__ import annotations

import copy

import pytest
import torch
from torchvision.models.detection import MaskRCNN, maskrcnn_resnet50_fpn
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.resnet import resnet50
from torchvision.ops.misc import FrozenBatchNorm2d

from darkseg.models import (
    CheckpointError,
    ModelConfig,
    build_model,
    load_model,
    load_torchvision_state_dict,
    save_checkpoint,
)

SMALL = dict(
    depth=18,
    class_names=["person", "car"],
    min_size=96,
    max_size=128,
    fpn_channels=16,
    box_head_dim=32,
    mask_head_channels=8,
    rpn_pre_nms_top_n_test=50,
    rpn_post_nms_top_n_test=20,
    box_detections_per_img=5,
    normalization="imagenet",
)


def _predict(model, imgs):
    with torch.no_grad():
        return model.eval()(imgs)


def _assert_same_predictions(a, b, atol=0.0):
    for pa, pb in zip(a, b):
        assert pa.keys() == pb.keys()
        for k in pa:
            torch.testing.assert_close(pa[k], pb[k], atol=atol, rtol=0 if atol == 0 else 1e-5)


@pytest.mark.parametrize("fused", [False, True])
def test_roundtrip(tmp_path, fused):
    torch.manual_seed(0)
    m = build_model(ModelConfig(**SMALL, awd=True, scb=True))
    if fused:
        m.fuse()
    imgs = [torch.rand(3, 90, 120, generator=torch.Generator().manual_seed(1))]
    ref = _predict(m, imgs)
    path = tmp_path / "ckpt.pth"
    save_checkpoint(path, m, extra={"epoch": 3, "note": "x"})
    m2, ckpt = load_model(path)
    assert ckpt["format"] == "darkseg" and ckpt["format_version"] == 1 and ckpt["epoch"] == 3
    assert ckpt["fused"] is fused and m2.fused is fused and m2.config == m.config
    assert m2.num_scb == (0 if fused else m.num_scb)
    _assert_same_predictions(ref, _predict(m2, imgs))
    assert not list(tmp_path.glob(".*tmp"))  # atomic write left no temporary file
    with pytest.raises(ValueError, match="reserved"):
        save_checkpoint(tmp_path / "b.pth", m, extra={"state_dict": 1})


def test_bad_checkpoint_files(tmp_path):
    torch.manual_seed(0)
    m = build_model(ModelConfig(**SMALL))
    good = tmp_path / "good.pth"
    save_checkpoint(good, m)
    ckpt = torch.load(good, weights_only=True)
    newer = tmp_path / "newer.pth"
    torch.save({**ckpt, "format_version": 2}, newer)
    plain = tmp_path / "plain_state_dict.pth"
    torch.save(m.state_dict(), plain)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    mism = tmp_path / "mismatch.pth"
    torch.save({**ckpt, "model_config": {**ckpt["model_config"], "awd": True}}, mism)
    for path, msg in [
        (newer, "format_version 2"),
        (plain, "not a darkseg checkpoint"),
        (junk, "not a readable torch checkpoint"),
        (mism, "do not match"),
    ]:
        with pytest.raises(CheckpointError, match=msg) as err:
            load_model(path)
        assert path.name in str(err.value)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        load_model(tmp_path / "missing.pth")


def _tv_like_config(**kw) -> ModelConfig:
    # torchvision's own settings: pytorch style, ImageNet normalisation, bilinear resize, 91 classes
    base = dict(
        depth=50,
        style="pytorch",
        class_names=[f"c{i}" for i in range(1, 91)],
        min_size=128,
        max_size=160,
        normalization="imagenet",
        resize_interpolation="bilinear",
        frozen_stages=-1,
        rpn_pre_nms_top_n_test=100,
        rpn_post_nms_top_n_test=50,
    )
    return ModelConfig(**{**base, **kw})


def _randomize_bn_stats(model, g):
    with torch.no_grad():  # realistic (non-identity) BN statistics
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.1 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))


def test_torchvision_state_dict_gives_identical_outputs():
    g = torch.Generator().manual_seed(1)
    imgs = [torch.rand(3, 100, 140, generator=g)]
    kw = dict(min_size=128, max_size=160, rpn_pre_nms_top_n_test=100, rpn_post_nms_top_n_test=50)
    # (a) exactly how torchvision builds maskrcnn_resnet50_fpn with pretrained weights (frozen BN):
    #     bit-identical outputs
    torch.manual_seed(0)
    body = resnet50(norm_layer=FrozenBatchNorm2d)
    tv = MaskRCNN(_resnet_fpn_extractor(body, 5), num_classes=91, **kw).eval()
    _randomize_bn_stats(tv, g)
    ours = build_model(_tv_like_config())
    rep = load_torchvision_state_dict(ours, tv.state_dict())
    assert not rep.missing and not rep.unexpected and not rep.shape_mismatch, rep.summary()
    with torch.no_grad():
        x = ours.transform.eval()(imgs)[0].tensors
        for a, b in zip(ours.backbone(x).values(), tv.backbone(x).values()):
            torch.testing.assert_close(a, b, atol=0, rtol=0)
    _assert_same_predictions(_predict(tv, imgs), _predict(ours, imgs))
    # (b) the public builder without weights (live BatchNorm2d in eval mode): equal up to float rounding
    torch.manual_seed(0)
    tv = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91, **kw).eval()
    _randomize_bn_stats(tv, g)
    rep = load_torchvision_state_dict(ours, tv.state_dict())
    assert not rep.missing and not rep.unexpected and not rep.shape_mismatch, rep.summary()
    with torch.no_grad():
        for a, b in zip(ours.backbone(x).values(), tv.backbone(x).values()):
            assert (a - b).abs().max() <= 1e-5 * b.abs().max()
        pt, po = _predict(tv, imgs)[0], _predict(ours, imgs)[0]
        # the bound: how far torchvision's own float32 predictions lie from its float64 ones (the heads
        # amplify the backbone's rounding differences; how much depends on the CPU's kernels)
        p64 = _predict(copy.deepcopy(tv).double(), [imgs[0].double()])[0]
    assert len(pt["scores"]) == len(po["scores"]) == len(p64["scores"])
    score_err = float((pt["scores"].double() - p64["scores"]).abs().max())
    box_err = float((pt["boxes"].double() - p64["boxes"]).abs().max())
    assert (pt["scores"] - po["scores"]).abs().max() <= max(4 * score_err, 1e-6)
    assert (pt["boxes"] - po["boxes"]).abs().max() <= max(4 * box_err, 1e-4)

    sd = tv.state_dict()
    awd_scb = build_model(_tv_like_config(awd=True, scb=True, frozen_bn=True))
    rep = load_torchvision_state_dict(awd_scb, sd)
    assert rep.missing and all(".awd." in k or ".llpf." in k or ".learnable_conv1." in k for k in rep.missing)
    assert "backbone.body.layer2.0.conv2.weight" in rep.loaded and not rep.shape_mismatch
    assert "newly initialised" in rep.summary()
    four = build_model(_tv_like_config(in_channels=4, class_names=["person", "car"]))
    rep = load_torchvision_state_dict(four, sd)
    assert rep.adapted == ["backbone.body.conv1.weight"]
    assert {k for k, _, _ in rep.shape_mismatch} == {
        "roi_heads.box_predictor.cls_score.weight",
        "roi_heads.box_predictor.cls_score.bias",
        "roi_heads.box_predictor.bbox_pred.weight",
        "roi_heads.box_predictor.bbox_pred.bias",
        "roi_heads.mask_predictor.mask_fcn_logits.weight",
        "roi_heads.mask_predictor.mask_fcn_logits.bias",
    }
    w = sd["backbone.body.conv1.weight"]
    torch.testing.assert_close(four.backbone.body.conv1.weight[:, 1], w[:, 1] / 2)
    with pytest.raises(ValueError, match="no key"):
        load_torchvision_state_dict(four, {"foo": torch.zeros(1)})


class _Payload:
    """Unpickling this object calls ``open(marker, "w")``: it would create the marker file."""

    def __init__(self, marker) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_payload_never_runs(tmp_path):
    """A valid darkseg checkpoint with one extra malicious entry is refused; the payload never runs."""
    from darkseg.engine.predictor import Predictor

    torch.manual_seed(0)
    m = build_model(ModelConfig(**SMALL))
    good = tmp_path / "good.pth"
    save_checkpoint(good, m)
    ckpt = torch.load(good, weights_only=True)
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pth"
    torch.save({**ckpt, "extra": _Payload(marker)}, evil)
    # the payload is real: a full unpickle would create the marker (checked on a copy, then removed)
    torch.load(evil, weights_only=False)
    assert marker.exists()
    marker.unlink()
    for load in (load_model, lambda p: Predictor(p, device="cpu")):
        with pytest.raises(CheckpointError, match="refused") as err:
            load(evil)
        assert evil.name in str(err.value)
        assert not marker.exists()
    # training: init_from and resume
    from darkseg.engine.checkpointing import load_training_checkpoint
    from darkseg.engine.train import _init_weights
    from darkseg.models import UnsafeCheckpointError

    with pytest.raises(UnsafeCheckpointError):
        _init_weights(m, str(evil), print)
    with pytest.raises(UnsafeCheckpointError):
        load_training_checkpoint(evil, m)
    with pytest.raises(UnsafeCheckpointError):
        load_torchvision_state_dict(m, evil)
    assert not marker.exists()
    # a bare pickle payload (no darkseg structure at all) as well
    bare = tmp_path / "bare.pth"
    torch.save(_Payload(marker), bare)
    with pytest.raises(CheckpointError):
        load_model(bare)
    assert not marker.exists()
    # the good file still loads with weights_only=True through every reader
    load_model(good)
