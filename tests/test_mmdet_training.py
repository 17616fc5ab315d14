"""darkseg's training step against the ORIGINAL LIS code's, loss for loss and gradient for gradient.

The fixtures ``*_train_all_seed1.npz`` in ``shared/data/lis-reference-model`` (README section 10) hold one
training step of the original code with both samplers taking every candidate, so nothing in the step is
random: the state dict, the input as fed, the ground truth, every loss, the gradient of the total loss for
every trainable parameter, and the intermediate targets.

The step is driven through the public path of ``darkseg train``: the weights are turned into an
MMDetection checkpoint (with the original config's text) and converted by ``convert_mmdet_checkpoint``
(what ``darkseg convert`` runs); the photo and its COCO annotations are written as real files and read by
the training dataset; a :class:`darkseg.engine.train.Trainer` loads the converted checkpoint through
``train.init_from`` and computes the losses of its first batch (``Trainer.batches`` / ``Trainer.losses``);
the sum is back-propagated. The DSL file's noisy view is a stored tensor (Gaussian noise, not the RAW
synthesis), so it is given to ``Trainer.losses`` as the noisy half of a ``(clean, noisy, targets)`` batch.

Tolerances (README 10.7, each follows from float32 rounding; 10.8 shows the original's own float32 step
within 2.6e-6 of its float64 step): losses and the total 1e-5 relative; each gradient 1e-4 of its
tensor's largest magnitude; the trainable set identical; anchor labels, sampled RoI labels and mask
targets identical (a mask-target pixel may differ only where RoIAlign of the ground truth lies within
1e-5 of the 0.5 threshold); boxes 1e-3 px (coordinates up to 224 px through a float32 network); box
targets 1e-4 (deltas divided by the 0.1/0.2 standard deviations of RoIs a few pixels wide). A failure
names the first stage that differs.
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
import torchvision
from pycocotools import mask as mask_utils

from conftest import shared_subdir

FIXTURES = {
    "tiny_awd_scb_dsl_train_all_seed1": {"dsl": True, "bn_requires_grad": True},
    "tiny_plain_caffe_train_all_seed1": {"dsl": False, "bn_requires_grad": False},
}
CLASSES = ("bicycle", "car", "motorcycle", "bus", "bottle", "chair", "dining table", "tv")
COCO_IDS = (2, 3, 4, 6, 44, 62, 67, 72)
LOSS_NAMES = {  # torchvision name -> MMDetection key (arrays summed over the levels)
    "loss_objectness": "loss_rpn_cls",
    "loss_rpn_box_reg": "loss_rpn_bbox",
    "loss_classifier": "loss_cls",
    "loss_box_reg": "loss_bbox",
    "loss_mask": "loss_mask",
}


def _load(name: str):
    z = np.load(shared_subdir("lis-reference-model") / f"{name}.npz", allow_pickle=False)
    return z, json.loads(str(z["meta_json"]))


def _config_text(meta: dict, dsl: bool, bn_requires_grad: bool) -> str:
    """The MMDetection config text stored in a checkpoint's ``meta['config']`` (the parts darkseg reads)."""
    norm = meta["img_meta"]["img_norm_cfg"]
    backbone = "ResNetAdaDSmoothPrior" if dsl else "ResNet"
    return (
        f"model = dict(type='{'MaskRCNNNoiseInv' if dsl else 'MaskRCNN'}', backbone=dict(type='{backbone}', "
        f"style='caffe', frozen_stages=1, norm_cfg=dict(type='BN', requires_grad={bn_requires_grad}), "
        f"norm_eval=True), train_cfg={meta['train_cfg']!r}, test_cfg={meta['test_cfg']!r})\n"
        f"img_norm_cfg = dict(mean={norm['mean']}, std={norm['std']}, to_rgb={norm['to_rgb']})\n"
        "test_pipeline = [dict(type='LoadImageFromFile'), dict(type='MultiScaleFlipAug', "
        "img_scale=(224, 160), flip=False, transforms=[dict(type='Resize', keep_ratio=True, "
        "interpolate_mode='nearest'), dict(type='RandomFlip'), dict(type='Normalize', **img_norm_cfg), "
        "dict(type='Pad', size_divisor=32), dict(type='ImageToTensor', keys=['img']), "
        "dict(type='Collect', keys=['img'])])]\n"
        "data = dict(test=dict(pipeline=test_pipeline))\n"
    )


def _gt_masks(z) -> np.ndarray:
    n, h, w = (int(v) for v in z["train/gt_masks_shape"])
    return np.unpackbits(z["train/gt_masks_packed"], axis=-1)[..., :w].reshape(n, h, w)


def _write_dataset(z, root) -> tuple[str, str]:
    """The photo (PNG, lossless) and a COCO file of its ground truth (boxes, RLE bitmaps) in ``root``."""
    img = z["input/raw_bgr_uint8"]
    h, w = img.shape[:2]
    (root / "images").mkdir()
    assert cv2.imwrite(str(root / "images" / "photo.png"), img)
    masks = _gt_masks(z)[:, :h, :w]
    anns = []
    for k, (box, label, m) in enumerate(zip(z["train/gt_bboxes"], z["train/gt_labels"], masks)):
        x1, y1, x2, y2 = (float(v) for v in box)
        rle = mask_utils.encode(np.asfortranarray(m))
        anns.append(
            {
                "id": k + 1,
                "image_id": 1,
                "category_id": COCO_IDS[int(label)],
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "area": float(m.sum()),
                "iscrowd": 0,
                "segmentation": {"size": [h, w], "counts": rle["counts"].decode()},
            }
        )
    coco = {
        "images": [{"id": 1, "file_name": "photo.png", "width": w, "height": h}],
        "annotations": anns,
        "categories": [{"id": i, "name": c} for i, c in zip(COCO_IDS, CLASSES)],
    }
    (root / "train.json").write_text(json.dumps(coco))
    return str(root / "images"), str(root / "train.json")


class _Recorder:
    """Records the step's intermediates by wrapping the model's methods (no change to what they return)."""

    def __init__(self, model, monkeypatch) -> None:
        from darkseg.models import mmdet_compat

        self.rpn_labels, self.rpn_targets, self.proposals, self.samples, self.masks = [], [], [], [], []
        rpn, roi = model.rpn, model.roi_heads
        assign, encode, rpn_forward = rpn.assign_targets_to_anchors, rpn.box_coder.encode, rpn.forward
        select = roi.select_training_samples
        mask_targets = mmdet_compat.mask_targets

        def assign_w(*a, **k):
            labels, matched = assign(*a, **k)
            self.rpn_labels.append(labels[0].detach().clone())
            return labels, matched

        def encode_w(*a, **k):
            out = encode(*a, **k)
            self.rpn_targets.append(out[0].detach().clone())
            return out

        def rpn_w(*a, **k):
            boxes, losses = rpn_forward(*a, **k)
            self.proposals.append(boxes[0].detach().clone())
            return boxes, losses

        def select_w(*a, **k):
            props, matched, labels, targets = select(*a, **k)
            self.samples.append((props[0].detach().clone(), labels[0].clone(), targets[0].detach().clone()))
            return props, matched, labels, targets

        def masks_w(masks, boxes, matched, size, polygons=None):
            out = mask_targets(masks, boxes, matched, size, polygons)
            self.masks.append((masks.clone(), boxes.detach().clone(), matched.clone(), out.clone()))
            return out

        rpn.assign_targets_to_anchors = assign_w
        rpn.box_coder.encode = encode_w
        rpn.forward = rpn_w
        roi.select_training_samples = select_w
        monkeypatch.setattr(mmdet_compat, "mask_targets", masks_w)


def _match_rows(ref: torch.Tensor, got: torch.Tensor, tol: float) -> torch.Tensor | None:
    """Index into ``got`` of the row closest to each row of ``ref`` (max-abs distance), or None when a
    row has no partner within ``tol`` or two rows share one."""
    if ref.shape != got.shape:
        return None
    d = (ref[:, None, :] - got[None, :, :]).abs().amax(-1)
    best = d.argmin(1)
    if bool((d.gather(1, best[:, None])[:, 0] > tol).any()) or best.unique().numel() != best.numel():
        return None
    return best


def _mmdet_grad(key: str, g: torch.Tensor) -> torch.Tensor:
    """A darkseg gradient in the MMDetection layout (background last / no background slot)."""
    if key.startswith("roi_head.bbox_head.fc_cls."):
        return torch.cat([g[1:], g[:1]], dim=0)
    if key.startswith("roi_head.bbox_head.fc_reg."):
        return g[4:]
    if key.startswith("roi_head.mask_head.conv_logits."):
        return g[1:]
    return g


def _run_step(name: str, tmp_path, monkeypatch):
    """Convert, load through init_from, one forward + backward; returns what the checks need."""
    from darkseg.config import ExperimentConfig
    from darkseg.engine.train import Trainer
    from darkseg.models import read_checkpoint
    from darkseg.models.convert import _map_key, convert_mmdet_checkpoint

    z, meta = _load(name)
    spec = FIXTURES[name]
    sd = {k[len("state_dict/") :]: torch.from_numpy(z[k]) for k in z.files if k.startswith("state_dict/")}
    src = tmp_path / "mmdet.pth"
    text = _config_text(meta, spec["dsl"], spec["bn_requires_grad"])
    torch.save({"state_dict": sd, "meta": {"config": text, "CLASSES": CLASSES}}, src)
    convert_mmdet_checkpoint(src, tmp_path / "converted.pth")
    model_cfg = read_checkpoint(tmp_path / "converted.pth")["model_config"]
    assert model_cfg["bn_requires_grad"] is spec["bn_requires_grad"]
    assert model_cfg["rpn_batch_size_per_image"] == model_cfg["box_batch_size_per_image"] == 10**7
    assert (model_cfg["rpn_positive_fraction"], model_cfg["box_positive_fraction"]) == (0.5, 0.25)
    image_dir, ann_file = _write_dataset(z, tmp_path)
    cfg = ExperimentConfig.from_dict(
        {
            "model": model_cfg,
            "synth": {} if spec["dsl"] else None,
            "data": {"train": {"type": "coco", "image_dir": image_dir, "ann_file": ann_file}, "flip": 0.0},
            "train": {
                "max_iters": 1,
                "epochs": None,
                "batch_size": 1,
                "dsl": spec["dsl"],
                "synth_device": "device",
                "init_from": str(tmp_path / "converted.pth"),
                "device": "cpu",
                "num_workers": 0,
                "eval_every": 0,
            },
        }
    )
    trainer = Trainer(cfg, tmp_path / "run", progress=False)
    model = trainer.model
    rec = _Recorder(model, monkeypatch)
    images, targets = next(trainer.batches())
    inputs = [model.transform([x])[0].tensors for x in images]
    batch = (images, targets)
    if spec["dsl"]:
        # the stored noisy view, back in the [0, 1] RGB units the model normalises
        mean = torch.tensor(meta["img_meta"]["img_norm_cfg"]["mean"]).view(3, 1, 1)
        h, w = images[0].shape[-2:]
        noisy_bgr = (torch.from_numpy(z["input/noisy_img"][0, :, :h, :w]) + mean) / 255.0
        noisy = [noisy_bgr.flip(0)]
        inputs.append(model.transform(noisy)[0].tensors)
        batch = (images, noisy, targets)
    model.zero_grad(set_to_none=True)
    losses = trainer.losses(batch, 0)
    total = sum(losses.values())
    total.backward()
    names = {}
    for key in sd:
        if not key.endswith("num_batches_tracked"):
            names[_map_key(key, trainer.model.config)] = key
    grads = {
        names[n]: _mmdet_grad(names[n], p.grad)
        for n, p in model.named_parameters()
        if p.requires_grad and p.grad is not None
    }
    trainable = {names[n] for n, p in model.named_parameters() if p.requires_grad}
    return z, meta, spec, rec, inputs, losses, total, grads, trainable


def _stages(z, spec, rec, inputs, losses, total, grads, trainable):
    """``(stage, problem or None)`` in the order of the step."""
    passes = ["clean", "noisy"] if spec["dsl"] else ["clean"]
    for i, p in enumerate(passes):
        ref = torch.from_numpy(z["input/noisy_img" if p == "noisy" else "input/img"])
        d = float((inputs[i] - ref).abs().max())
        # the noisy view went through (v + mean) / 255 * 255 - mean: float32 rounding of values <= 400
        yield f"{p} network input", (None if d <= 1e-4 else f"max |diff| {d:.3g}")
    for i, p in enumerate(passes):
        f = f"train/{p}/"
        lab, wgt = torch.from_numpy(z[f + "rpn_labels"]), torch.from_numpy(z[f + "rpn_label_weights"])
        ref = torch.full_like(lab, -1)
        ref[(wgt == 1) & (lab == 0)] = 1
        ref[(wgt == 1) & (lab == 1)] = 0
        got = rec.rpn_labels[i].long().clamp(min=-1)
        n = int((got != ref).sum())
        yield f"{p} RPN anchor labels", (None if n == 0 else f"{n} of {ref.numel()} anchors differ")
        pos = ref == 1
        tgt = torch.from_numpy(z[f + "rpn_bbox_targets"])[pos]
        d = float((rec.rpn_targets[i][pos] - tgt).abs().max()) if pos.any() else 0.0
        yield f"{p} RPN box targets", (None if d <= 1e-4 else f"max |diff| {d:.3g}")
        props = torch.from_numpy(z[f + "proposals"])[:, :4]
        ok = _match_rows(props, rec.proposals[i], 1e-3) is not None
        yield f"{p} proposals", (None if ok else "the proposal sets differ (beyond 1e-3 px)")
        rois = torch.from_numpy(z[f + "rcnn_rois"])[:, 1:]
        ref_lab = torch.from_numpy(z[f + "rcnn_labels"])
        ref_lab = torch.where(ref_lab == len(CLASSES), 0, ref_lab + 1)
        got_rois, got_lab, got_tgt = rec.samples[i]
        idx = _match_rows(rois, got_rois, 1e-3)
        same = idx is not None and torch.equal(got_lab[idx], ref_lab)
        yield (
            f"{p} sampled RoIs and their labels",
            (
                None
                if same
                else f"{got_rois.shape[0]} RoIs ({int((got_lab > 0).sum())} positive) vs {rois.shape[0]} "
                f"({int((ref_lab > 0).sum())} positive)"
            ),
        )
        posr = ref_lab > 0
        d = float((got_tgt[idx][posr] - torch.from_numpy(z[f + "rcnn_bbox_targets"])[posr]).abs().max())
        yield f"{p} box targets", (None if d <= 1e-4 else f"max |diff| {d:.3g}")
        masks, boxes, matched, out = rec.masks[i]
        shape = tuple(int(v) for v in z[f + "mask_targets_shape"])
        ref_t = np.unpackbits(z[f + "mask_targets_packed"], axis=-1)[..., : shape[2]].reshape(shape)
        ref_t = torch.from_numpy(ref_t).float()
        order = _match_rows(rois[posr][: shape[0]], boxes, 1e-3)
        if order is None:
            yield f"{p} mask targets", "the positive RoIs differ"
            continue
        rois_f = torch.cat([matched.float()[:, None], boxes], 1)
        crops = torchvision.ops.roi_align(masks[:, None].float(), rois_f, (28, 28), 1.0, 0, True)
        near = ((crops[:, 0] - 0.5).abs() < 1e-5)[order]
        bad = int(((out[order] != ref_t) & ~near).sum())
        yield f"{p} mask targets", (None if bad == 0 else f"{bad} target pixels differ")
    for key, ref_key in LOSS_NAMES.items():
        for p in passes:
            prefix = "clean_" if (spec["dsl"] and p == "clean") else ""
            ref = float(np.asarray(z[f"train/losses/{prefix}{ref_key}"], dtype=np.float64).sum())
            got = float(losses[prefix + key].detach())
            rel = abs(got - ref) / max(abs(ref), 1e-12)
            yield f"{prefix}{key}", (None if rel <= 1e-5 else f"{got:.8g} vs {ref:.8g} (relative {rel:.2g})")
    if spec["dsl"]:
        ref = float(z["train/losses/noise_inv_loss"])
        rel = abs(float(losses["loss_dsl"]) - ref) / ref
        yield "loss_dsl", (None if rel <= 1e-5 else f"{float(losses['loss_dsl']):.8g} vs {ref:.8g}")
    ref = float(z["train/total_loss"])
    rel = abs(float(total) - ref) / ref
    yield "total loss", (None if rel <= 1e-5 else f"{float(total):.8g} vs {ref:.8g} (relative {rel:.2g})")
    ref_set = {k[len("train/grads_all/") :] for k in z.files if k.startswith("train/grads_all/")}
    only_ours, only_ref = sorted(trainable - ref_set), sorted(ref_set - trainable)
    yield (
        "trainable parameters",
        (None if trainable == ref_set else f"darkseg only: {only_ours[:4]}; original only: {only_ref[:4]}"),
    )
    for key in sorted(ref_set & trainable):
        ref = torch.from_numpy(z[f"train/grads_all/{key}"])
        got = grads.get(key, torch.zeros_like(ref))
        d = float((got - ref).abs().max()) / max(float(ref.abs().max()), 1e-30)
        yield f"gradient of {key}", (None if d <= 1e-4 else f"max |diff| = {d:.3g} of the tensor's max")


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FIXTURES))
def test_training_step_equals_original(name, tmp_path, monkeypatch):
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    z, meta, spec, rec, inputs, losses, total, grads, trainable = _run_step(name, tmp_path, monkeypatch)
    assert set(losses) >= set(LOSS_NAMES)
    for stage, problem in _stages(z, spec, rec, inputs, losses, total, grads, trainable):
        assert problem is None, f"first differing stage: {stage}: {problem}"
