"""COCO instances export for pre-labelling (engine.coco_export, darkseg predict --export-coco)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from darkseg.data.scenes import render_scene
from darkseg.engine.coco_export import CocoInstancesWriter, mask_to_polygons
from darkseg.engine.predictor import Prediction
from darkseg.models import ModelConfig, build_model, save_checkpoint
from darkseg.utils.io import write_image


def _scene_prediction(seed: int) -> tuple[Prediction, np.ndarray]:
    """A Prediction whose masks are the exact instance masks of a rendered scene (shapes with holes,
    occlusions, thin parts)."""
    sc = render_scene(np.random.default_rng(seed), (160, 120))  # (W, H)
    ids = [int(v) for v in np.unique(sc.instance_map) if v > 0]
    masks = np.stack([sc.instance_map == v for v in ids])
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    n = len(ids)
    pred = Prediction(
        boxes=np.array(boxes, np.float32),
        labels=(np.arange(n) % 2 + 1).astype(np.int64),
        scores=np.linspace(0.9, 0.5, n).astype(np.float32),
        masks=masks,
        class_names=["person", "car"],
        image_size=masks.shape[1:],
    )
    return pred, sc.image


def test_rle_round_trip_is_exact_and_polygons_fill_holes(tmp_path):
    rle = CocoInstancesWriter(["person", "car"], "rle")
    poly = CocoInstancesWriter(["person", "car"], "polygon")
    preds = [_scene_prediction(s)[0] for s in range(8)]
    for i, p in enumerate(preds):
        rle.add(p, f"img{i}.png")
        poly.add(p, f"img{i}.png")
    rle.write(tmp_path / "rle.json")
    poly.write(tmp_path / "poly.json")
    for path in ("rle.json", "poly.json"):
        doc = json.loads((tmp_path / path).read_text())
        assert set(doc) >= {"images", "categories", "annotations"}
        assert doc["categories"] == [
            {"id": 1, "name": "person", "supercategory": ""},
            {"id": 2, "name": "car", "supercategory": ""},
        ]
        assert doc["images"][0] == {"id": 1, "file_name": "img0.png", "width": 160, "height": 120}
    g_rle, g_poly = COCO(str(tmp_path / "rle.json")), COCO(str(tmp_path / "poly.json"))
    n_holes = 0
    for i, p in enumerate(preds):
        a_rle = g_rle.loadAnns(g_rle.getAnnIds(imgIds=[i + 1]))
        a_poly = g_poly.loadAnns(g_poly.getAnnIds(imgIds=[i + 1]))
        assert len(a_rle) == len(a_poly) == len(p)
        for k, (ar, ap) in enumerate(zip(a_rle, a_poly)):
            m = p.masks[k]
            assert ar["iscrowd"] == 0 and ar["category_id"] == p.labels[k]
            assert ar["score"] == pytest.approx(float(p.scores[k]))
            assert ar["attributes"]["score"] == ar["score"]
            assert ar["area"] == m.sum()
            x0, y0, x1, y1 = p.boxes[k]
            assert ar["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0])
            np.testing.assert_array_equal(g_rle.annToMask(ar).astype(bool), m)  # RLE: exact
            filled = ndi.binary_fill_holes(m)
            n_holes += int(filled.sum() > m.sum())
            np.testing.assert_array_equal(g_poly.annToMask(ap).astype(bool), filled)  # polygons: holes filled
            assert ap["area"] == pytest.approx(filled.sum())
    assert n_holes > 0  # the scenes include masks with holes (rings, occluded parts)


def test_polygons_of_small_parts():
    m = np.zeros((10, 12), bool)
    m[3, 4] = True  # one pixel
    m[7, 1:6] = True  # a one-pixel line
    m[1:3, 9:11] = True
    polys = mask_to_polygons(m)
    assert len(polys) == 3 and all(len(q) >= 6 and len(q) % 2 == 0 for q in polys)
    back = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polys, 10, 12))).astype(bool)
    np.testing.assert_array_equal(back, m)
    assert mask_to_polygons(np.zeros((4, 4), bool)) == []
    with pytest.raises(ValueError, match="mask_format"):
        CocoInstancesWriter(["a"], "bitmap")


def test_cli_export_coco_matches_predictions(tmp_path, capsys):
    """``darkseg predict --export-coco``: images with file_name/width/height, annotations whose masks are
    the Predictor's (a tiny model that detects, box_score_thresh 0)."""
    from darkseg.cli import main
    from darkseg.engine.predictor import Predictor

    torch.manual_seed(0)
    cfg = ModelConfig.tiny(["person", "car"], min_size=96, max_size=128, box_score_thresh=0.0)
    save_checkpoint(tmp_path / "m.pt", build_model(cfg).eval())
    d = tmp_path / "in"
    d.mkdir()
    for s in range(3):
        write_image(d / f"scene{s}.png", _scene_prediction(s)[1])
    out = tmp_path / "prelabels.json"
    argv = ["predict", "--checkpoint", str(tmp_path / "m.pt"), str(d / "*.png"), "--out", str(tmp_path / "o"),
            "--score-thr", "0.2", "--export-coco", str(out), "--coco-masks", "polygon", "--batch-size", "2",
            "--no-overlay", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "images/s" in capsys.readouterr().out
    gt = COCO(str(out))
    predictor = Predictor(tmp_path / "m.pt", device="cpu", score_thr=0.2)
    total = 0
    for img in gt.loadImgs(gt.getImgIds()):
        ref = predictor.predict(img["file_name"])
        assert (img["height"], img["width"]) == ref.image_size
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[img["id"]]))
        assert [a["category_id"] for a in anns] == ref.labels.tolist()
        for a, m in zip(anns, ref.masks):
            np.testing.assert_array_equal(gt.annToMask(a).astype(bool), ndi.binary_fill_holes(m))
        total += len(anns)
    assert total > 0
