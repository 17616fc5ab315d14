"""Exact compatibility with the ORIGINAL LIS code (MMDetection 2.15 fork), stage by stage.

The golden fixtures in ``shared/data/lis-reference-model`` hold the original code's seeded random
weights (MMDetection key names), its input and every intermediate. Each stage here is fed the recorded
input of that stage, so one stage's float rounding cannot change a later top-k / NMS decision; then the
whole model runs end to end. Tolerances: dense tensors ``1e-5 * max|ref|``; proposals identical;
boxes 1e-3 px; scores 1e-5; labels identical; pasted masks identical except pixels whose probability is
within 1e-4 of the threshold; DSL term 1e-6; AWD/SCB gradients relative 1e-4.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import shared_subdir
from darkseg.models import ModelConfig, build_model, load_model
from darkseg.models.convert import (
    ConversionError,
    convert_mmdet_checkpoint,
    convert_mmdet_state_dict,
    infer_model_config,
)
from darkseg.models.dsl import dsl_loss
from darkseg.models.mmdet_compat import bbox_postprocess, rpn_proposals

R50_FIXTURES = ["tiny_awd_scb_seed0", "tiny_awd_scb_resize", "tiny_plain_caffe_seed0"]
ALL_FIXTURES = [*R50_FIXTURES, "tiny_convnext_awd_scb_seed0"]


def _fixture(name: str):
    z = np.load(shared_subdir("lis-reference-model") / f"{name}.npz", allow_pickle=False)
    meta = json.loads(str(z["meta_json"]))
    sd = {k[len("state_dict/") :]: torch.from_numpy(z[k]) for k in z.files if k.startswith("state_dict/")}
    return z, meta, sd


def _config_text(meta: dict, img_scale=(224, 160)) -> str:
    """The Python config text MMDetection stores in ``meta['config']`` (the parts inference reads)."""
    facts = meta["facts"]
    bb = facts["model_cfg"]["backbone"]
    norm = facts["img_norm_cfg"]
    return (
        f"model = dict(type='{facts['detector']}', backbone=dict(type='{bb['type']}', "
        f"style='{bb.get('style', 'pytorch')}', frozen_stages={bb.get('frozen_stages', 1)}), "
        f"test_cfg=dict(rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7), "
        "min_bbox_size=0), rcnn=dict(score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), "
        "max_per_img=100, mask_thr_binary=0.5)))\n"
        f"img_norm_cfg = dict(mean={norm['mean']}, std={norm['std']}, to_rgb={norm['to_rgb']})\n"
        "test_pipeline = [dict(type='LoadImageFromFile'), dict(type='MultiScaleFlipAug', "
        f"img_scale={tuple(img_scale)}, flip=False, transforms=[dict(type='Resize', keep_ratio=True, "
        "interpolate_mode='nearest'), dict(type='RandomFlip'), dict(type='Normalize', **img_norm_cfg), "
        "dict(type='Pad', size_divisor=32), dict(type='ImageToTensor', keys=['img']), "
        "dict(type='Collect', keys=['img'])])]\n"
        "data = dict(test=dict(pipeline=test_pipeline))\n"
    )


CLASSES = ("bicycle", "car", "motorcycle", "bus", "bottle", "chair", "dining table", "tv")


def _model(name: str):
    z, meta, sd = _fixture(name)
    cfg = infer_model_config(sd, {"config": _config_text(meta), "CLASSES": CLASSES})
    new, _ = convert_mmdet_state_dict(sd, cfg)
    model = build_model(cfg)
    model.load_state_dict(new, strict=True)
    return z, meta, model.eval()


def _close(stage: str, got, ref, rel: float = 1e-5) -> None:
    got, ref = torch.as_tensor(got).float(), torch.as_tensor(np.asarray(ref)).float()
    assert got.shape == ref.shape, (
        f"first differing stage: {stage}: shape {tuple(got.shape)} vs {tuple(ref.shape)}"
    )
    tol = rel * max(float(ref.abs().max()), 1e-12)
    err = float((got.detach() - ref).abs().max()) if ref.numel() else 0.0
    assert err <= tol, f"first differing stage: {stage}: max |diff| {err:.3g} > {tol:.3g}"


def _rgb(z) -> torch.Tensor:
    raw = z["input/raw_bgr_uint8"]
    return torch.from_numpy(raw[:, :, ::-1].copy()).permute(2, 0, 1).float() / 255.0


def _scale_factor(meta) -> torch.Tensor:
    return torch.tensor(meta["img_meta"]["scale_factor"], dtype=torch.float32)


def _ref_masks(z) -> np.ndarray:
    """Reference masks in detection (score) order (the fixture stores them grouped by class)."""
    shape = z["outputs/result_masks_shape"]
    grouped = np.unpackbits(z["outputs/result_masks_packed"], axis=-1)[..., : shape[2]].astype(bool)
    order = np.argsort(z["outputs/det_labels"], kind="stable")
    out = np.empty_like(grouped)
    out[order] = grouped
    return out


@pytest.mark.parametrize("name", ALL_FIXTURES)
def test_stage_by_stage(name):
    z, meta, model = _model(name)
    h, w = meta["img_meta"]["img_shape"][:2]
    with torch.no_grad():
        image_list, _ = model.transform([_rgb(z)])
        _close("input (resize, normalise, pad)", image_list.tensors, z["input/img"], rel=0)
        assert [tuple(s) for s in image_list.image_sizes] == [(h, w)], "first differing stage: resize shape"
        feats = model.backbone.body(torch.from_numpy(z["input/img"]))
        for i in range(4):
            _close(f"backbone C{i + 2}", feats[str(i)], z[f"outputs/backbone/{i}"])
        fpn = model.backbone.fpn({str(i): torch.from_numpy(z[f"outputs/backbone/{i}"]) for i in range(4)})
        for i, key in enumerate(fpn):
            _close(f"FPN P{i + 2}", fpn[key], z[f"outputs/fpn/{i}"])
        levels = [torch.from_numpy(z[f"outputs/fpn/{i}"]) for i in range(5)]
        obj, deltas = model.rpn.head(levels)
        for i in range(5):
            _close(f"RPN logits P{i + 2}", obj[i], z[f"outputs/rpn_cls/{i}"])
            _close(f"RPN deltas P{i + 2}", deltas[i], z[f"outputs/rpn_reg/{i}"])
        anchors = model.rpn.anchor_generator.grid_anchors([tuple(p.shape[-2:]) for p in levels], "cpu")
        base = torch.tensor(meta["facts"]["anchor"]["base_anchors"], dtype=torch.float32)
        for i in range(5):
            assert torch.equal(model.rpn.anchor_generator.base_anchors(i), base[i]), f"anchors level {i}"
        scores = [
            torch.from_numpy(z[f"outputs/rpn_cls/{i}"])[0].permute(1, 2, 0).reshape(-1).sigmoid()
            for i in range(5)
        ]
        dl = [
            torch.from_numpy(z[f"outputs/rpn_reg/{i}"])[0].permute(1, 2, 0).reshape(-1, 4) for i in range(5)
        ]
        props = rpn_proposals(scores, dl, anchors, (h, w), 1000, 0.7, 1000)
        # float32 sigmoid / exp kernels differ by CPU (ATEN_CPU_CAPABILITY) by an ulp or two
        _close("proposals", props, z["outputs/proposals"], rel=1e-6)

        p_feats = {str(i): levels[i] for i in range(4)}
        rois = torch.from_numpy(z["outputs/proposals"])[:, :4]
        n_feat = z["outputs/bbox_feats"].shape[0]
        _close(
            "box RoIAlign", model.roi_heads.box_roi_pool(p_feats, [rois[:n_feat]]), z["outputs/bbox_feats"]
        )
        logits, reg = model.roi_heads.box_predictor(
            model.roi_heads.box_head(torch.from_numpy(z["outputs/bbox_feats"]))
        )
        _close(
            "box head logits",
            torch.cat([logits[:, 1:], logits[:, :1]], 1),
            z["outputs/bbox_cls_score"][:n_feat],
        )
        _close("box head deltas", reg[:, 4:], z["outputs/bbox_pred"][:n_feat])
        sf = _scale_factor(meta)
        boxes, sc, labels = bbox_postprocess(
            rois,
            torch.from_numpy(z["outputs/bbox_cls_score"]),
            torch.from_numpy(z["outputs/bbox_pred"]),
            (h, w),
            sf,
            0.05,
            0.5,
            100,
            background_first=False,
        )
        assert torch.equal(labels, torch.from_numpy(z["outputs/det_labels"])), "first differing stage: labels"
        assert float((boxes - torch.from_numpy(z["outputs/det_bboxes"][:, :4])).abs().max()) <= 1e-3, (
            "det boxes"
        )
        _close("det scores", sc, z["outputs/det_bboxes"][:, 4])
        _close("mask RoIs", boxes * sf, z["outputs/mask_rois"][:, 1:], rel=1e-6)
        mrois = torch.from_numpy(z["outputs/mask_rois"])[:, 1:]
        _close("mask RoIAlign", model.roi_heads.mask_roi_pool(p_feats, [mrois]), z["outputs/mask_feats"])
        mlog = model.roi_heads.mask_predictor(
            model.roi_heads.mask_head(torch.from_numpy(z["outputs/mask_feats"]))
        )
        lab = torch.from_numpy(z["outputs/det_labels"])
        _close("mask logits", mlog[torch.arange(len(lab)), lab + 1], z["outputs/mask_logits_label"])


def _check_masks(probs: torch.Tensor, ref: np.ndarray) -> None:
    mine = (probs[:, 0] >= 0.5).numpy()
    diff = mine != ref
    near = (probs[:, 0] - 0.5).abs().numpy() < 1e-4
    assert not (diff & ~near).any(), f"pasted masks: {int((diff & ~near).sum())} pixels differ away from 0.5"


def _match(out: dict[str, torch.Tensor], z) -> list[int]:
    """Index into the reference of each detection: same label, box within 1e-3 px, score within 1e-5.

    Detections may swap places only with one whose score is within 1e-5 (a float32 near-tie: e.g.
    0.49612513 vs 0.4961251 in the ConvNeXt fixture).
    """
    ref = torch.from_numpy(z["outputs/det_bboxes"])
    ref_lab = torch.from_numpy(z["outputs/det_labels"])
    assert len(out["scores"]) == len(ref), f"end to end: {len(out['scores'])} detections vs {len(ref)}"
    used: set[int] = set()
    perm = []
    for i in range(len(ref)):
        ok = (
            ((ref[:, 4] - out["scores"][i]).abs() <= 1e-5)
            & (ref_lab == out["labels"][i] - 1)
            & ((ref[:, :4] - out["boxes"][i]).abs().amax(1) <= 1e-3)
        )
        cand = [int(j) for j in torch.where(ok)[0] if int(j) not in used]
        assert cand, f"end to end: detection {i} {out['boxes'][i].tolist()} has no reference counterpart"
        used.add(cand[0])
        perm.append(cand[0])
    return perm


@pytest.mark.parametrize("name", ALL_FIXTURES)
@pytest.mark.parametrize("fused", [False, True])
def test_end_to_end(name, fused):
    z, meta, model = _model(name)
    if fused:
        model.fuse()
    with torch.no_grad():
        out = model([_rgb(z)])[0]
    perm = _match(out, z)
    h0, w0 = meta["img_meta"]["ori_shape"][:2]
    assert out["masks"].shape == (len(perm), 1, h0, w0)
    _check_masks(out["masks"], _ref_masks(z)[perm])
    model.mask_threshold = 0.5  # bool masks pasted directly: identical to thresholding the floats
    with torch.no_grad():
        out_b = model([_rgb(z)])[0]
    assert out_b["masks"].dtype == torch.bool
    assert torch.equal(out_b["masks"], out["masks"] >= 0.5)


def test_dsl_term_and_gradients():
    z, _, model = _model("tiny_awd_scb_seed0")
    clean = [torch.from_numpy(z[f"outputs/backbone/{i}"]) for i in range(4)]
    noisy = [torch.from_numpy(z[f"train/backbone_noisy/{i}"]) for i in range(4)]
    ref = float(z["train/losses/noise_inv_loss"])
    assert abs(float(dsl_loss(noisy, clean, 0.01, 0.1)) - ref) <= 1e-6 * max(abs(ref), 1.0)

    body = model.backbone.body
    for p in body.parameters():
        p.grad = None
    f_clean = list(body(torch.from_numpy(z["input/img"])).values())
    f_noisy = list(body(torch.from_numpy(z["train/noisy_img"])).values())
    for i in range(4):
        _close(f"noisy backbone C{i + 2}", f_noisy[i], z[f"train/backbone_noisy/{i}"])
    loss = dsl_loss(f_noisy, f_clean, 0.01, 0.1)
    loss.backward()
    params = dict(model.named_parameters())
    keys = [k for k in z.files if k.startswith("train/grads_dsl/")]
    assert len(keys) == 21
    for k in keys:
        mm = k[len("train/grads_dsl/") :]
        ours = _darkseg_name(mm)
        g = params[ours].grad
        ref_g = torch.from_numpy(z[k])
        err = float((g - ref_g).abs().max())
        assert err <= 1e-4 * float(ref_g.abs().max()), f"DSL gradient of {mm}: max |diff| {err:.3g}"


def _darkseg_name(mm_key: str) -> str:
    from darkseg.models.convert import _map_key

    return _map_key(mm_key, ModelConfig(awd=True, scb=True))


def _write_mmdet_checkpoint(path, name, img_scale=(224, 160)) -> dict:
    z, meta, sd = _fixture(name)
    torch.save(
        {
            "state_dict": sd,
            "meta": {"config": _config_text(meta, img_scale), "CLASSES": CLASSES, "epoch": 12},
        },
        path,
    )
    return meta


def test_cli_convert_then_predict_reproduces_detections(tmp_path):
    """``darkseg convert`` an MMDetection checkpoint file, ``darkseg predict`` the fixture's photo."""
    import cv2

    z, meta, _ = _fixture("tiny_awd_scb_resize")
    src = tmp_path / "lis_tiny.pth"
    _write_mmdet_checkpoint(src, "tiny_awd_scb_resize")
    dst = tmp_path / "converted.pth"
    run = [sys.executable, "-m", "darkseg"]
    res = subprocess.run([*run, "convert", str(src), "--out", str(dst)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "8 classes" in res.stdout and "(224, 160) nearest" in res.stdout
    photo = tmp_path / "photo.png"  # lossless: the same pixels the original code read
    cv2.imwrite(str(photo), z["input/raw_bgr_uint8"])
    out = tmp_path / "pred"
    res = subprocess.run(
        [
            *run,
            "predict",
            "--checkpoint",
            str(dst),
            str(photo),
            "--out",
            str(out),
            "--score-thr",
            "0.05",
            "--no-progress",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 0, res.stderr
    results = json.loads((out / "results.json").read_text())
    ref = z["outputs/det_bboxes"]
    assert len(results) == len(ref) == 100
    got = np.array([r["bbox"] for r in results], dtype=np.float64)  # xywh, original 640x480 frame
    got[:, 2:] += got[:, :2]
    # results.json rounds boxes to 3 decimals (+-5e-4 px) and scores to 6 (+-5e-7)
    assert np.abs(got - ref[:, :4]).max() <= 1e-3 + 5e-4
    assert np.abs(np.array([r["score"] for r in results]) - ref[:, 4]).max() <= 1e-5 + 5e-7
    names = [CLASSES[k] for k in z["outputs/det_labels"]]
    assert [r["category_id"] - 1 for r in results] == list(z["outputs/det_labels"]), names[:3]


def test_converted_checkpoint_keeps_meta_settings(tmp_path):
    from darkseg.models import load_model

    src = tmp_path / "a.pth"
    _write_mmdet_checkpoint(src, "tiny_plain_caffe_seed0", img_scale=(600, 400))
    report = convert_mmdet_checkpoint(src, tmp_path / "b.pth")
    cfg = report.config
    assert (cfg.max_size, cfg.min_size, cfg.resize_interpolation) == (600, 400, "nearest")
    assert cfg.channel_order == "bgr" and cfg.image_mean == [103.53, 116.28, 123.675]
    assert cfg.style == "caffe" and not cfg.awd and not cfg.scb and cfg.compat == "mmdet"
    assert cfg.class_names == list(CLASSES) and cfg.stage_blocks == [1, 1, 1, 1] and cfg.base_channels == 8
    model, ckpt = load_model(tmp_path / "b.pth")
    assert model.config == cfg and ckpt["converted_from"] == "a.pth"
    # flags override meta
    r2 = convert_mmdet_checkpoint(src, None, class_names=list("abcdefgh"), img_scale=(1333, 800))
    assert r2.config.class_names == list("abcdefgh") and (r2.config.max_size, r2.config.min_size) == (
        1333,
        800,
    )


MANIFESTS = {
    "keys_mask_rcnn_r50_fpn_caffe_AWD_SCB_DSL_SynCOCO2LIS.json": dict(awd=True, scb=True, k=8, arch="resnet"),
    "keys_mask_rcnn_r50_caffe_fpn_mstrain-poly_3x_coco.json": dict(awd=False, scb=False, k=80, arch="resnet"),
    "keys_mask_rcnn_convnext-t_p4_w7_fpn_AWD_SCB_DSL_SynCOCO2LIS.json": dict(
        awd=True, scb=True, k=8, arch="convnext"
    ),
}


@pytest.mark.parametrize("manifest", sorted(MANIFESTS))
def test_full_size_manifest_keys_and_shapes(manifest):
    """The converter's inferred model for a full-size manifest has exactly its keys and shapes."""
    man = json.loads((shared_subdir("lis-reference-model") / manifest).read_text())
    sd = {
        k: torch.empty(v["shape"], dtype=torch.int64 if v["dtype"].endswith("int64") else torch.float32)
        for k, v in man["state_dict"].items()
    }
    cfg = infer_model_config(sd)
    exp = MANIFESTS[manifest]
    assert (cfg.awd, cfg.scb, len(cfg.class_names), cfg.backbone) == (
        exp["awd"],
        exp["scb"],
        exp["k"],
        exp["arch"],
    )
    if cfg.backbone == "resnet":
        assert (cfg.depth, cfg.stage_blocks, cfg.scb_stage_set()) == (
            50,
            None,
            ({2, 3, 4} if cfg.scb else set()),
        )
    else:
        assert (cfg.stage_blocks, cfg.stage_channels) == ([3, 3, 9, 3], [96, 192, 384, 768])
    own = build_model(cfg).state_dict()
    from darkseg.models.convert import _convert_tensor, _map_key

    mapped = {}
    for k, v in sd.items():
        new = _map_key(k, cfg)
        if new in own:
            mapped[new] = tuple(_convert_tensor(k, v).shape)
    assert set(mapped) == set(own), sorted(set(mapped) ^ set(own))[:10]
    assert all(mapped[k] == tuple(own[k].shape) for k in own)
    n_params = sum(v.numel() for k, v in sd.items() if man["state_dict"][k]["kind"] == "parameter")
    assert n_params == man["n_params"]


def test_pointrend_manifest_is_refused_clearly():
    man = json.loads(
        (
            shared_subdir("lis-reference-model") / "keys_pointrend_r50_fpn_caffe_AWD_SCB_DSL_SynCOCO2LIS.json"
        ).read_text()
    )
    sd = {k: torch.zeros(v["shape"]) for k, v in man["state_dict"].items() if "num_batches" not in k}
    with pytest.raises(ConversionError, match="mask head|no darkseg counterpart|missing key"):
        cfg = infer_model_config(sd)
        convert_mmdet_state_dict(sd, cfg)


def test_bad_inputs_write_nothing(tmp_path):
    _, _, sd = _fixture("tiny_plain_caffe_seed0")
    good = tmp_path / "good.pth"
    torch.save({"state_dict": sd, "meta": {}}, good)
    cases = {}
    (tmp_path / "text.pth").write_text("hello")
    cases["text.pth"] = "not a readable torch checkpoint"
    good_bytes = good.read_bytes()
    (tmp_path / "trunc.pth").write_bytes(good_bytes[: len(good_bytes) // 2])
    cases["trunc.pth"] = "not a readable torch checkpoint"
    torch.save(
        {"state_dict": {**sd, "roi_head.point_head.fc.weight": torch.zeros(3)}}, tmp_path / "unknown.pth"
    )
    cases["unknown.pth"] = "no darkseg counterpart.*point_head"
    bad = dict(sd)
    bad["neck.fpn_convs.0.conv.weight"] = torch.zeros(16, 16, 1, 1)
    torch.save({"state_dict": bad}, tmp_path / "shape.pth")
    cases["shape.pth"] = "neck.fpn_convs.0.conv.weight"
    torch.save({"model": {"a": 1}}, tmp_path / "other.pth")
    cases["other.pth"] = "not an MMDetection checkpoint"
    no_rpn = {k: v for k, v in sd.items() if not k.startswith("rpn_head")}
    torch.save({"state_dict": no_rpn}, tmp_path / "arch.pth")
    cases["arch.pth"] = "rpn_head"
    nan = dict(sd)
    nan["rpn_head.rpn_conv.weight"] = torch.full_like(sd["rpn_head.rpn_conv.weight"], float("nan"))
    torch.save({"state_dict": nan}, tmp_path / "nan.pth")
    cases["nan.pth"] = "NaN"
    torch.save({"state_dict": sd, "meta": {"CLASSES": ("a", "b")}}, tmp_path / "classes.pth")
    cases["classes.pth"] = "2 class names"
    for fname, msg in cases.items():
        out = tmp_path / f"out_{fname}"
        with pytest.raises(ConversionError, match=msg) as err:
            convert_mmdet_checkpoint(tmp_path / fname, out)
        assert fname in str(err.value)
        assert not out.exists() and not list(tmp_path.glob(".out_*"))
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "darkseg",
            "convert",
            str(tmp_path / "unknown.pth"),
            "--out",
            str(tmp_path / "o.pth"),
        ],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 1 and "Traceback" not in res.stderr and "unknown.pth" in res.stderr
    assert not (tmp_path / "o.pth").exists()


def test_export_of_converted_model_uses_torchvision_numerics(tmp_path):
    """TorchScript cannot hold MMDetection's Python post-processing: export warns and uses torchvision's."""
    from darkseg.engine.export import compare_exported, export_model

    z, _, model = _model("tiny_awd_scb_resize")
    with pytest.warns(UserWarning, match="torchvision's numerics"):
        path = export_model(model, "torchscript", tmp_path / "m.pt")
    with pytest.warns(UserWarning):
        diffs = compare_exported(model, path, "torchscript", image=_rgb(z))
    assert diffs["labels"] == 0 and diffs["boxes"] < 1e-2 and diffs["scores"] < 1e-4, diffs


def test_mmdet_matcher_low_quality_rule():
    from torchvision.models.detection._utils import Matcher

    from darkseg.models.mmdet_compat import MMDetMatcher

    # rows = ground truths, columns = predictions
    q = torch.tensor([[0.45, 0.40, 0.10, 0.2], [0.45, 0.25, 0.35, 0.6], [0.0, 0.0, 0.28, 0.0]])
    m = MMDetMatcher(0.7, 0.3, 0.3)(q)
    # pred 0: IoU 0.45 -> ignored (-2), then it is GT 0's best (0.45) -> GT 0; GT 1's best is pred 3
    # (0.6); GT 2's best (0.28) is below min_pos_iou 0.3 -> no low-quality match: pred 2 stays ignored
    assert m.tolist() == [0, -2, -2, 1]
    tv = Matcher(0.7, 0.3, allow_low_quality_matches=True)(q)
    assert tv.tolist()[2] == 1  # torchvision matches pred 2 to its own best GT, whatever the IoU


def test_mmdet_training_losses():
    from darkseg.models.mask_targets import mask_targets

    gt = torch.zeros(1, 40, 40)
    gt[0, 10:30, 5:25] = 1
    boxes = torch.tensor([[5.0, 10.0, 25.0, 30.0], [0.0, 0.0, 40.0, 40.0]])
    t = mask_targets(gt, boxes, torch.zeros(2, dtype=torch.int64), 28)
    assert t.shape == (2, 28, 28) and set(t.unique().tolist()) <= {0.0, 1.0}
    assert t[0].mean() == 1.0 and 0.2 < t[1].mean() < 0.3  # the box is the object; a quarter of the image

    for name in ("tiny_awd_scb_seed0", "tiny_convnext_awd_scb_seed0"):
        _, _, model = _model(name)
        assert model.rpn.mmdet_losses and model.roi_heads.mmdet_losses
        model.train()
        g = torch.Generator().manual_seed(0)
        img = torch.rand(3, 160, 224, generator=g)
        masks = torch.zeros(2, 160, 224, dtype=torch.uint8)
        masks[0, 30:100, 30:90] = 1
        masks[1, 60:140, 120:190] = 1
        tgt = {
            "boxes": torch.tensor([[30.0, 30, 90, 100], [120, 60, 190, 140]]),
            "labels": torch.tensor([2, 6]),
        }
        tgt["masks"] = masks
        torch.manual_seed(0)
        out = model.forward_dsl(
            [img], [(img + 0.05 * torch.randn(img.shape, generator=g)).clamp(0, 1)], [tgt]
        )
        assert set(out) >= {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_dsl"}
        total = sum(out.values())
        total.backward()
        assert torch.isfinite(total)
        grads = [p.grad for n, p in model.named_parameters() if "awd" in n or "AdaD" in n or "llpf" in n]
        assert grads and all(gr is not None and torch.isfinite(gr).all() for gr in grads)


def test_init_from_converted_coco_style_checkpoint(tmp_path):
    """The paper's recipe: start AWD+SCB from a converted plain checkpoint of other classes (init_from)."""
    import dataclasses

    from darkseg.engine.train import _init_weights

    src = tmp_path / "coco_style.pth"
    _write_mmdet_checkpoint(src, "tiny_plain_caffe_seed0")
    report = convert_mmdet_checkpoint(src, tmp_path / "plain.pth")
    cfg = dataclasses.replace(report.config, awd=True, scb=True, class_names=["a", "b", "c"])
    torch.manual_seed(0)
    model = build_model(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lines = []
    _init_weights(model, str(tmp_path / "plain.pth"), lines.append)
    after = model.state_dict()
    plain = load_model(tmp_path / "plain.pth")[0].state_dict()
    for k, v in after.items():
        same_shape = k in plain and plain[k].shape == v.shape
        if same_shape:
            assert torch.equal(v, plain[k]), k
        else:  # AWD / SCB modules and the 3-class heads keep their initialisation
            assert torch.equal(v, before[k]), k
    assert any("awd" in k for k in after) and "tensors loaded" in lines[0]
