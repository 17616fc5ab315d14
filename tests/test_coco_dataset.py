"""CocoInstances on real COCO photos (tinycoco-seg) and on small hand-written files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from conftest import shared_subdir
from darkseg.data import COCO_LIS_CLASSES, LIS_CLASSES, CocoInstances
from darkseg.data.coco import AnnotationError, match_categories
from darkseg.utils.io import write_image

# pycocotools 2.0.x decodes masks through a NumPy-2-deprecated __array__ path (not our code)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

COCO_IDS = {
    "bicycle": 2,
    "car": 3,
    "motorcycle": 4,
    "bus": 6,
    "bottle": 44,
    "chair": 62,
    "dining table": 67,
    "tv": 72,
}


def _tiny(split: str = "train2017"):
    root = shared_subdir("tinycoco-seg")
    return root / "images" / split, root / "annotations" / f"instances_{split}.json"


def test_tinycoco_remapped_to_lis_classes_by_name():
    image_dir, ann = _tiny()
    raw = json.loads(ann.read_text())
    ds = CocoInstances(image_dir, ann, class_names=list(LIS_CLASSES), train=True)
    # LIS names matched to COCO names through aliases, in the canonical order
    assert ds.category_ids == [COCO_IDS[n] for n in COCO_LIS_CLASSES]
    assert ds.label_to_category_id[3] == 4 and ds.label_to_category_id[8] == 72
    wanted = set(ds.category_ids)
    expected_ids = {
        a["image_id"] for a in raw["annotations"] if a["category_id"] in wanted and not a["iscrowd"]
    }
    assert set(ds.ids) == expected_ids and 0 < len(ds) < len(raw["images"])
    n_kept = 0
    for k in range(len(ds)):
        image, t = ds[k]
        info = ds.coco.imgs[t["image_id"]]
        assert image.dtype == torch.float32 and image.shape == (3, info["height"], info["width"])
        assert image.min() >= 0.0 and image.max() <= 1.0
        assert t["masks"].shape[1:] == image.shape[1:] and t["masks"].dtype == torch.uint8
        assert t["boxes"].dtype == torch.float32 and t["labels"].dtype == torch.int64
        assert len(t["labels"]) >= 1 and t["labels"].min() >= 1 and t["labels"].max() <= 8
        anns = [
            a for a in ds.coco.imgToAnns[t["image_id"]] if a["category_id"] in wanted and not a["iscrowd"]
        ]
        assert sorted(t["labels"].tolist()) == sorted(ds.category_id_to_label[a["category_id"]] for a in anns)
        n_kept += len(t["labels"])
        # masks lie (almost) inside their boxes
        for box, m in zip(t["boxes"], t["masks"]):
            ys, xs = torch.nonzero(m, as_tuple=True)
            assert xs.min() >= box[0] - 1 and xs.max() <= box[2] + 1
    assert n_kept > 5
    # same photos with COCO names: same labels
    ds2 = CocoInstances(image_dir, ann, class_names=list(COCO_LIS_CLASSES), train=True)
    assert ds2.category_ids == ds.category_ids and ds2.ids == ds.ids


def test_tinycoco_all_categories_and_crowd_excluded():
    image_dir, ann = _tiny("val2017")
    ds = CocoInstances(image_dir, ann)  # class_names None: every category in id order
    assert ds.category_ids == sorted(ds.category_ids) and len(ds.class_names) == 80
    assert len(ds) == 6  # eval mode keeps every image
    crowd = [a for a in ds.coco.dataset["annotations"] if a["iscrowd"]]
    assert len(crowd) == 1
    k = ds.ids.index(crowd[0]["image_id"])
    _, t = ds[k]
    n_noncrowd = sum(1 for a in ds.coco.imgToAnns[crowd[0]["image_id"]] if not a["iscrowd"])
    assert len(t["labels"]) == n_noncrowd and t["iscrowd"].sum() == 0


def _write_tiny_set(tmp_path, with_crowd=True):
    """Two 40x60 images: polygon, uncompressed RLE, crowd, degenerate box; one image with only crowd."""
    for name in ("a.png", "b.png"):
        write_image(tmp_path / name, np.full((40, 60, 3), 128, np.uint8))
    m = np.zeros((40, 60), np.uint8)
    m[5:15, 10:20] = 1
    rle_c = mask_utils.encode(np.asfortranarray(m))
    anns = [
        {"id": 1, "image_id": 10, "category_id": 5, "bbox": [2, 2, 6, 4], "area": 24.0, "iscrowd": 0,
         "segmentation": [[2, 2, 8, 2, 8, 6, 2, 6]]},
        {"id": 2, "image_id": 10, "category_id": 0, "bbox": [10, 5, 10, 10], "area": 999.0, "iscrowd": 0,
         "segmentation": {"size": [40, 60], "counts": rle_c["counts"].decode()}},
        {"id": 3, "image_id": 10, "category_id": 5, "bbox": [0, 0, 0.5, 3], "area": 1.5, "iscrowd": 0,
         "segmentation": [[0, 0, 0.5, 0, 0.5, 3]]},
        {"id": 4, "image_id": 11, "category_id": 0, "bbox": [0, 0, 10, 10], "area": 100.0, "iscrowd": 1,
         "segmentation": {"size": [40, 60], "counts": [0, 400, 2000]}},
    ]  # fmt: skip
    edge = {"id": 5, "image_id": 10, "category_id": 5, "bbox": [59.5, 0, 0.5, 5], "area": 2.5, "iscrowd": 0,
            "segmentation": [[59.5, 0, 60, 0, 60, 5]]}  # fmt: skip
    data = {
        "images": [
            {"id": 10, "file_name": "a.png", "width": 60, "height": 40},
            {"id": 11, "file_name": "b.png", "width": 60, "height": 40},
        ],
        "annotations": (anns if with_crowd else anns[:3]) + [edge],
        "categories": [{"id": 5, "name": "Dining_Table"}, {"id": 0, "name": "motorbike"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path, m


def test_small_file_rle_polygon_crowd_degenerate_and_category_zero(tmp_path):
    path, m = _write_tiny_set(tmp_path)
    ds = CocoInstances(tmp_path, path, class_names=["motorcycle", "dining table"], train=True)
    assert ds.category_ids == [0, 5]  # id 0 is a real class
    assert ds.ids == [10]  # image 11 has only a crowd region
    image, t = ds[0]
    assert torch.allclose(image, torch.full((3, 40, 60), 128 / 255))
    assert t["labels"].tolist() == [2, 1]  # the two degenerate boxes (w < 1) dropped
    assert torch.equal(t["masks"][1], torch.from_numpy(m))
    assert t["boxes"][1].tolist() == [10, 5, 20, 15]
    assert t["area"].tolist() == [24.0, 999.0]
    ds_eval = CocoInstances(tmp_path, path, class_names=["motorcycle", "dining table"])
    assert ds_eval.ids == [10, 11] and len(ds_eval[1][1]["labels"]) == 0
    assert ds_eval[1][1]["masks"].shape == (0, 40, 60)
    ds_area = CocoInstances(tmp_path, path, class_names=["motorbike", "diningtable"], recompute_area=True)
    assert ds_area[0][1]["area"][1] == 100.0  # mask area instead of the stored 999
    assert ds_area.coco.anns[2]["area"] == 100.0


def test_missing_image_and_size_mismatch_named(tmp_path):
    path, _ = _write_tiny_set(tmp_path)
    (tmp_path / "a.png").unlink()
    ds = CocoInstances(tmp_path, path, class_names=["motorbike"])
    with pytest.raises(FileNotFoundError, match=r"a\.png.*image id 10"):
        ds[0]
    with pytest.raises(FileNotFoundError, match=r"a\.png \(image id 10\)"):
        ds.check_files()
    write_image(tmp_path / "a.png", np.zeros((41, 60, 3), np.uint8))
    with pytest.raises(AnnotationError, match=r"a\.png: image is 60x41 but .* says 60x40"):
        ds[0]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty"),
        ("{not json", "malformed JSON"),
        ("[]", "not a COCO annotation file"),
        ('{"images": [], "annotations": [], "categories": [{"id": 1, "name": "a"}]}', "no images"),
        ('{"images": [{"id": 1, "file_name": "x", "width": 2, "height": 2}], "annotations": '
         '[{"id": 1, "image_id": 2, "category_id": 1, "bbox": [0, 0, 1, 1]}], '
         '"categories": [{"id": 1, "name": "a"}]}', "unknown image_id 2"),
    ],
)  # fmt: skip
def test_malformed_annotation_files_named(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        CocoInstances(tmp_path, path)
    assert "bad.json" in str(info.value)


def test_unknown_class_name_rejected(tmp_path):
    path, _ = _write_tiny_set(tmp_path)
    with pytest.raises(AnnotationError, match=r"ann\.json: no category matches class 'giraffe'"):
        CocoInstances(tmp_path, path, class_names=["giraffe"])
    cats = [{"id": 1, "name": "tv"}, {"id": 2, "name": "tvmonitor"}]
    with pytest.raises(AnnotationError, match="several categories"):
        match_categories(["tvmonitor"], cats)
    assert match_categories(["sofa"], [{"id": 9, "name": "couch"}]) == [9]
    assert match_categories(["gadget"], [{"id": 9, "name": "widget"}], aliases={"gadget": ["widget"]}) == [9]


def test_intensity_ratio_gain_and_auto(tmp_path):
    """``intensity_ratio``: a gain, or ``"auto"`` (per image, to the training inputs' mean)."""
    from darkseg.config import ConfigError, DatasetConfig
    from darkseg.data import build_dataset
    from darkseg.utils.io import write_image

    img = np.full((20, 30, 3), 10, np.uint8)  # mean 10/255
    write_image(tmp_path / "a.png", img)
    ann = {
        "images": [{"id": 1, "file_name": "a.png", "width": 30, "height": 20}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 8], "area": 80.0, "iscrowd": 0,
             "segmentation": [[2, 2, 12, 2, 12, 10, 2, 10]]}
        ],
        "categories": [{"id": 1, "name": "thing"}],
    }  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps(ann))
    plain = build_dataset("coco", tmp_path, tmp_path / "a.json")[0][0]
    gained = build_dataset("coco", tmp_path, tmp_path / "a.json", intensity_ratio=4)[0][0]
    auto = build_dataset("coco", tmp_path, tmp_path / "a.json", intensity_ratio="auto")[0][0]
    torch.testing.assert_close(gained, plain * 4)
    assert float(auto.mean()) == pytest.approx(0.135, rel=1e-5)
    with pytest.raises(ValueError, match="auto"):
        build_dataset("coco", tmp_path, tmp_path / "a.json", intensity_ratio="bright")
    with pytest.raises(ConfigError, match="DatasetConfig: intensity_ratio: ratio must be a number > 0"):
        DatasetConfig(image_dir="x", ann_file="y", intensity_ratio=-1)
