"""LIS: real test-500 annotations (category id 0, box `area`), layout, canonical class order."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import shared_subdir
from darkseg.data import COCO_LIS_CLASSES, LIS_CLASSES, ResizeKeepRatio, lis_annotation_file, lis_dataset
from darkseg.data.coco import load_coco, recompute_areas
from darkseg.engine.evaluate import coco_evaluate
from darkseg.utils.io import write_image

# pycocotools 2.0.x decodes masks through a NumPy-2-deprecated __array__ path (not our code)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

ANN = "lis_coco_jpg_test500_annotation_rgb.json"
# LIS file ids (LOD order): 0 bicycle 1 chair 2 diningtable 3 bottle 4 motorbike 5 car 6 tvmonitor 7 bus
EXPECTED_LABEL_TO_CAT = {1: 0, 2: 5, 3: 4, 4: 7, 5: 3, 6: 1, 7: 2, 8: 6}


def _lis_json() -> dict:
    return json.loads((shared_subdir("lis-test500-annotations") / ANN).read_text())


def _lis_root(tmp_path, n_images: int = 3):
    """LIS tree with the first images holding a bicycle (category id 0): filtered json, placeholder PNGs."""
    data = _lis_json()
    with_bicycle = sorted({a["image_id"] for a in data["annotations"] if a["category_id"] == 0})[:n_images]
    keep = set(with_bicycle)
    data["images"] = [im for im in data["images"] if im["id"] in keep]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in keep]
    ann = lis_annotation_file(tmp_path, "test", "RGB_Dark")
    ann.parent.mkdir(parents=True)
    ann.write_text(json.dumps(data))
    folder = tmp_path / "RAW_Dark" / "JPEGImages"
    folder.mkdir(parents=True)
    for im in data["images"]:
        stem = im["file_name"].rsplit(".", 1)[0]
        write_image(folder / f"{stem}.png", np.full((im["height"], im["width"], 3), 7, np.uint8))
    return ann, data


def test_layout_names():
    assert lis_annotation_file("L", "test", "RAW_Dark").as_posix() == "L/annotations/lis_coco_png_test+1.json"
    assert lis_annotation_file("L", "train", "RGB_Dark").name == "lis_coco_JPG_train+1.json"
    assert lis_annotation_file("L", "traintest", "RAW_Normal").name == "lis_coco_png_traintest.json"
    with pytest.raises(ValueError, match="image type"):
        lis_annotation_file("L", "test", "RAW-dark")
    with pytest.raises(FileNotFoundError, match="RAW_Dark"):
        lis_dataset("/nonexistent-lis-root", ann_file="x.json")


def test_lis_dataset_category_zero_and_canonical_order(tmp_path):
    ann, data = _lis_root(tmp_path)
    ds = lis_dataset(tmp_path, ann_file=ann, image_ext=".png")  # JPG json + RAW PNG folder
    assert ds.class_names == list(LIS_CLASSES)
    assert ds.label_to_category_id == EXPECTED_LABEL_TO_CAT
    assert ds.image_dir == tmp_path / "RAW_Dark" / "JPEGImages"  # found without the folder in file_name
    assert len(ds) == 3
    seen_bicycle = False
    for k in range(len(ds)):
        image, t = ds[k]
        assert image.shape == (3, 800, 1200) and torch.allclose(image, torch.full_like(image, 7 / 255))
        anns = ds.coco.imgToAnns[t["image_id"]]
        expected = sorted(ds.category_id_to_label[a["category_id"]] for a in anns)
        assert sorted(t["labels"].tolist()) == expected
        seen_bicycle |= bool((t["labels"] == 1).any())
        assert torch.allclose(t["area"], torch.tensor([float(a["area"]) for a in anns]))
        # the quirk: `area` is the box area w*h
        wh = (t["boxes"][:, 2:] - t["boxes"][:, :2]).prod(1)
        assert torch.allclose(t["area"], wh, rtol=1e-4)
    assert seen_bicycle  # category id 0 is a real class, label 1
    # a model trained on COCO names gets the same label order
    ds_coco = lis_dataset(tmp_path, ann_file=ann, image_ext=".png", class_names=list(COCO_LIS_CLASSES))
    assert ds_coco.label_to_category_id == EXPECTED_LABEL_TO_CAT
    # resize to the paper's test scale: even rows/columns of the 1200x800 picture
    image, t = ds[0]
    small, ts = ResizeKeepRatio(600, 400)(image, t)
    assert small.shape == (3, 400, 600) and torch.equal(ts["masks"], t["masks"][:, ::2, ::2])


def test_recompute_area_uses_mask_area(tmp_path):
    ann, _ = _lis_root(tmp_path, n_images=2)
    ds = lis_dataset(tmp_path, ann_file=ann, image_ext=".png", recompute_area=True)
    _, t = ds[0]
    assert torch.allclose(t["area"], t["masks"].flatten(1).sum(1).float(), rtol=0.02, atol=20)
    wh = (t["boxes"][:, 2:] - t["boxes"][:, :2]).prod(1)
    assert (t["area"] < wh).all()


def test_area_by_size_box_versus_mask():
    """README counts: by stored (box) area 30/380/1674 small/medium/large, by mask area 54/529/1501;
    and what APs means: a detector that finds every object whose *box* is >= 32x32 scores APs = 0 with
    the stored areas but > 0 with mask areas (objects small by mask, not by box, count as small)."""
    data = _lis_json()

    def sizes(coco):
        areas = np.array([a["area"] for a in coco.dataset["annotations"]])
        return [(areas < 32**2).sum(), ((areas >= 32**2) & (areas < 96**2)).sum(), (areas >= 96**2).sum()]

    gt_box = load_coco(data)
    gt_mask = load_coco(data)
    recompute_areas(gt_mask)
    assert sizes(gt_box) == [30, 380, 1674] and sizes(gt_mask) == [54, 529, 1501]
    res = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        for a in data["annotations"]
        if a["bbox"][2] * a["bbox"][3] >= 32**2
    ]
    by_box = coco_evaluate(gt_box, res, "bbox")["bbox"]
    by_mask = coco_evaluate(gt_mask, res, "bbox")["bbox"]
    assert by_box["APs"] < 0.01 and by_mask["APs"] > 0.2  # (a few box-small GT overlap bigger objects)
    assert by_box["AP"] == pytest.approx(by_mask["AP"])  # the all-area numbers do not depend on `area`
