"""COCO evaluation: published fixture numbers, results writing, bad input, the evaluate CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from conftest import shared_subdir
from darkseg.engine.evaluate import (
    METRIC_NAMES,
    ResultsError,
    coco_evaluate,
    coco_evaluate_full,
    predictions_to_results,
)
from darkseg.utils.io import write_image

# pycocotools 2.0.x decodes masks through a NumPy-2-deprecated __array__ path (not our code)
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _fixture():
    d = shared_subdir("coco-eval-fce-shapes")
    expected = json.loads((d / "expected_stats_pycocotools.json").read_text())
    return d, expected


def test_reproduces_published_segm_scores():
    d, expected = _fixture()
    got = coco_evaluate(d / "gt_dataset.json", d / "dt_dataset_segm_rle_nobbox.json", "segm")
    assert list(got) == ["segm"] and list(got["segm"]) == list(METRIC_NAMES)
    published = expected["faster_coco_eval_published"]
    for name, key in zip(METRIC_NAMES, published):
        assert got["segm"][name] == pytest.approx(published[key], abs=1e-4), name


def test_loadres_rules_edge_case_and_per_class():
    """Detections with polygon + bbox: pycocotools takes their area from the bbox (APm 0.7921)."""
    d, expected = _fixture()
    full = coco_evaluate_full(d / "gt_dataset.json", d / "dt_dataset.json", ("bbox", "segm"))
    for t, key in (("bbox", "bbox_dt_as_is"), ("segm", "segm_dt_as_is")):
        for name in METRIC_NAMES:
            assert full[t]["metrics"][name] == pytest.approx(expected[key]["stats"][name], abs=1e-4)
        for cat, ap in expected[key]["per_category_AP"].items():
            assert full[t]["per_class"][int(cat)] == pytest.approx(ap, abs=1e-4)
    assert full["segm"]["metrics"]["APm"] != pytest.approx(
        expected["segm_from_merged_rle"]["stats"]["APm"], abs=1e-3
    )


def _gt_dict(ann_id0: int = 0):
    """One 40x60 image with two square objects; category ids 0 and 1, annotation ids from ann_id0."""
    anns = []
    for k, (x, y, cat) in enumerate(((5, 5, 0), (30, 10, 1))):
        poly = [x, y, x + 20, y, x + 20, y + 20, x, y + 20]
        anns.append(
            {"id": ann_id0 + k, "image_id": 3, "category_id": cat, "bbox": [x, y, 20, 20], "area": 400.0,
             "iscrowd": 0, "segmentation": [poly]}
        )  # fmt: skip
    return {
        "images": [{"id": 3, "file_name": "x.png", "width": 60, "height": 40}],
        "annotations": anns,
        "categories": [{"id": 0, "name": "bicycle"}, {"id": 1, "name": "chair"}],
    }


def test_perfect_results_score_one_even_with_annotation_id_zero():
    gt = _gt_dict(ann_id0=0)  # pycocotools would count a match with GT id 0 as a miss
    res = [
        {"image_id": 3, "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9,
         "segmentation": a["segmentation"]}
        for a in gt["annotations"]
    ]  # fmt: skip
    got = coco_evaluate(gt, res, ("bbox", "segm"))
    for t in ("bbox", "segm"):
        assert got[t]["AP"] == pytest.approx(1.0) and got[t]["AR100"] == pytest.approx(1.0)
    assert coco_evaluate(gt, [], "bbox")["bbox"]["AP"] == 0.0


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"image_id": 99, "category_id": 0, "bbox": [0, 0, 1, 1], "score": 1.0}, "entry 1: image_id 99"),
        ({"image_id": 3, "category_id": 7, "bbox": [0, 0, 1, 1], "score": 1.0}, "entry 1: category_id 7"),
        ({"image_id": 3, "category_id": 0, "bbox": [0, 0, 1], "score": 1.0}, r"bbox must be \[x, y, w, h\]"),
        ({"image_id": 3, "category_id": 0, "bbox": [0, 0, 1, 1]}, "entry 1 has no 'score'"),
    ],
)
def test_bad_results_entries_named(tmp_path, entry, message):
    good = {"image_id": 3, "category_id": 1, "bbox": [30, 10, 20, 20], "score": 0.5}
    path = tmp_path / "res.json"
    path.write_text(json.dumps([good, entry]))
    with pytest.raises(ResultsError, match=message) as info:
        coco_evaluate(_gt_dict(1), path, "bbox")
    assert "res.json" in str(info.value)


def test_bad_results_files_named(tmp_path):
    path = tmp_path / "res.json"
    path.write_text("[{")
    with pytest.raises(ResultsError, match=r"res\.json: malformed JSON"):
        coco_evaluate(_gt_dict(1), path, "bbox")
    path.write_text('{"a": 1}')
    with pytest.raises(ResultsError, match="must be a JSON list"):
        coco_evaluate(_gt_dict(1), path, "bbox")
    path.write_text(json.dumps([{"image_id": 3, "category_id": 0, "bbox": [5, 5, 20, 20], "score": 1}]))
    with pytest.raises(ResultsError, match="no 'segmentation' for segm"):
        coco_evaluate(_gt_dict(1), path, "segm")
    with pytest.raises(FileNotFoundError, match="nope.json"):
        coco_evaluate(_gt_dict(1), tmp_path / "nope.json", "bbox")


def test_predictions_to_results_roundtrip():
    """Model-style predictions (xyxy, (N,1,H,W) probabilities, labels 1..K) evaluate to AP 1."""
    gt = _gt_dict(1)
    masks = torch.zeros(2, 1, 40, 60)
    masks[0, 0, 5:25, 5:25] = 0.9
    masks[1, 0, 10:30, 30:50] = 0.8
    masks[1, 0, 0:2, 0:2] = 0.3  # below the 0.5 threshold
    pred = {
        "boxes": torch.tensor([[5.0, 5.0, 25.0, 25.0], [30.0, 10.0, 50.0, 30.0]]),
        "scores": torch.tensor([0.9, 0.8]),
        "labels": torch.tensor([1, 2]),
        "masks": masks,
    }
    res = predictions_to_results([pred], [3], {1: 0, 2: 1})
    assert [r["category_id"] for r in res] == [0, 1]
    assert res[1]["bbox"] == [30.0, 10.0, 20.0, 20.0]
    decoded = mask_utils.decode(res[1]["segmentation"])
    assert decoded.sum() == 400 and decoded[10:30, 30:50].all()
    json.dumps(res)  # JSON-ready (RLE counts are str)
    got = coco_evaluate(gt, res, ("bbox", "segm"))
    assert got["bbox"]["AP"] == pytest.approx(1.0) and got["segm"]["AP"] == pytest.approx(1.0)
    # predictions made on a half-size image map back to the annotation size
    half = {k: v for k, v in pred.items()}
    half["boxes"] = pred["boxes"] / 2
    half["masks"] = masks[:, :, ::2, ::2]
    res2 = predictions_to_results(
        [half], [3], {1: 0, 2: 1}, image_sizes=[(20, 30)], original_sizes=[(40, 60)]
    )
    assert res2[0]["bbox"] == res[0]["bbox"]
    m_half, m_full = (mask_utils.decode(r[0]["segmentation"]).astype(bool) for r in (res2, res))
    assert m_half.shape == (40, 60) and (m_half & m_full).sum() / (m_half | m_full).sum() > 0.8
    with pytest.raises(ResultsError, match="label 2 has no category id"):
        predictions_to_results([pred], [3], {1: 0})


def _tiny_coco_set(tmp_path, n: int = 3, extra_categories: tuple[str, ...] = ()):
    """n 64x96 images with one 'car' and one 'bottle' each (category ids 3 and 44, COCO names)."""
    images, anns = [], []
    g = np.random.default_rng(0)
    for i in range(n):
        name = f"im{i}.png"
        write_image(tmp_path / "img" / name, g.integers(0, 255, (64, 96, 3), dtype=np.uint8))
        images.append({"id": 100 + i, "file_name": name, "width": 96, "height": 64})
        for k, (cat, box) in enumerate(((3, [10, 10, 30, 20]), (44, [50, 20, 20, 30]))):
            x, y, w, h = box
            anns.append(
                {"id": 1 + 2 * i + k, "image_id": 100 + i, "category_id": cat, "bbox": box, "area": w * h,
                 "iscrowd": 0, "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]]}
            )  # fmt: skip
    data = {
        "images": images,
        "annotations": anns,
        "categories": [{"id": 3, "name": "car"}, {"id": 44, "name": "bottle"}, {"id": 1, "name": "person"}]
        + [{"id": 200 + k, "name": name} for k, name in enumerate(extra_categories)],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


@pytest.fixture
def one_thread():
    """The test machine is shared: one intra-op thread avoids oversubscription (5x faster here)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _small_model(class_names):
    models = pytest.importorskip("darkseg.models")
    cfg = models.ModelConfig(
        depth=18, class_names=list(class_names), min_size=64, max_size=96, fpn_channels=16,
        box_head_dim=32, mask_head_channels=8, rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20,
        box_detections_per_img=10, box_score_thresh=0.0, normalization="imagenet",
    )  # fmt: skip
    torch.manual_seed(0)
    return models.build_model(cfg)


def test_evaluate_model_writes_results_and_per_class_table(tmp_path, one_thread):
    from darkseg.data import CocoInstances
    from darkseg.engine.evaluate import evaluate_model

    ann = _tiny_coco_set(tmp_path)
    model = _small_model(["bottle", "car"])
    ds = CocoInstances(tmp_path / "img", ann, class_names=model.config.class_names)
    out = evaluate_model(model, ds, "cpu", batch_size=2, results_file=tmp_path / "res.json", progress=False)
    assert set(out["metrics"]) == {"bbox", "segm"} and out["num_images"] == 3
    assert list(out["per_class"]["segm"]) == ["bottle", "car"]  # restricted to the model's classes
    res = json.loads((tmp_path / "res.json").read_text())
    assert len(res) == out["num_detections"] > 0
    assert {r["category_id"] for r in res} <= {3, 44} and {r["image_id"] for r in res} <= {100, 101, 102}
    assert all(mask_utils.decode(r["segmentation"]).shape == (64, 96) for r in res)
    # the written file evaluates to the same numbers
    again = coco_evaluate(ds.coco, tmp_path / "res.json", ("bbox", "segm"), cat_ids=[3, 44])
    assert again == out["metrics"]
    model.train()
    evaluate_model(model, ds, "cpu", progress=False, max_images=1, iou_types=("bbox",))
    assert model.training  # mode restored


def test_cli_results_and_checkpoint_modes(tmp_path, capsys, one_thread):
    from darkseg.cli import main

    d, expected = _fixture()
    out_json = tmp_path / "m.json"
    rc = main(["evaluate", "--annotations", str(d / "gt_dataset.json"), "--iou-type", "segm",
               "--results", str(d / "dt_dataset_segm_rle_nobbox.json"), "--json", str(out_json)])  # fmt: skip
    assert rc == 0
    got = json.loads(out_json.read_text())
    assert got["metrics"]["segm"]["APm"] == pytest.approx(
        expected["segm_from_merged_rle"]["stats"]["APm"], abs=1e-4
    )
    gt = json.loads((d / "gt_dataset.json").read_text())
    assert got["ground_truth"] == {
        "images": len(gt["images"]),
        "instances": len(gt["annotations"]),
        "crowd": sum(a.get("iscrowd", 0) for a in gt["annotations"]),
    }
    out = capsys.readouterr().out
    assert "cloud" in out and f"ground truth: {len(gt['images'])} images" in out

    models = pytest.importorskip("darkseg.models")
    ann = _tiny_coco_set(tmp_path)
    ckpt = tmp_path / "m.pth"
    models.save_checkpoint(ckpt, _small_model(["car", "bottle"]))
    res = tmp_path / "res.json"
    args = ["evaluate", "--checkpoint", str(ckpt), "--annotations", str(ann),
            "--images", str(tmp_path / "img"), "--device", "cpu", "--results-out", str(res),
            "--json", str(out_json), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    got = json.loads(out_json.read_text())
    assert list(got["per_class"]["bbox"]) == ["car", "bottle"] and res.is_file()
    (tmp_path / "img" / "im1.png").unlink()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "im1.png (image id 101)" in err
    assert main(["evaluate", "--annotations", str(ann)]) == 2


def test_cli_config_mode_uses_val_section(tmp_path, capsys, one_thread):
    pytest.importorskip("darkseg.config")
    models = pytest.importorskip("darkseg.models")
    from darkseg.cli import main
    from darkseg.data import COCO_LIS_CLASSES, LIS_CLASSES

    others = tuple(n for n in COCO_LIS_CLASSES if n not in ("car", "bottle"))
    ann = _tiny_coco_set(tmp_path, n=2, extra_categories=others)
    ckpt = tmp_path / "m.pth"
    models.save_checkpoint(ckpt, _small_model(LIS_CLASSES))
    out_json = tmp_path / "m.json"
    base = ["evaluate", "--checkpoint", str(ckpt), "--config", "tiny_coco_cpu", "--device", "cpu",
            "--no-progress", "--json", str(out_json), "--set", f"data.val.image_dir={tmp_path / 'img'}",
            "--set", f"data.val.ann_file={ann}"]  # fmt: skip
    assert main(base) == 0, capsys.readouterr().err
    got = json.loads(out_json.read_text())
    assert got["num_images"] == 2 and list(got["per_class"]["segm"]) == list(LIS_CLASSES)
    assert got["annotations"] == str(ann)
    # a checkpoint whose classes differ from the config's is refused with both lists named
    models.save_checkpoint(ckpt, _small_model(["car", "bottle"]))
    assert main(base) == 2
    assert "differ from the checkpoint" in capsys.readouterr().err


def test_ground_truth_as_results_scores_one_with_crowd_regions():
    """tinycoco-seg val: every non-crowd object 'detected' exactly; its crowd region must be ignored."""
    d = shared_subdir("tinycoco-seg")
    gt = json.loads((d / "annotations" / "instances_val2017.json").read_text())
    assert any(a["iscrowd"] for a in gt["annotations"])
    res = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0,
         "segmentation": a["segmentation"]}
        for a in gt["annotations"] if not a["iscrowd"]
    ]  # fmt: skip
    got = coco_evaluate(gt, res, ("bbox", "segm"))
    for t in ("bbox", "segm"):
        assert got[t]["AP"] == pytest.approx(1.0) and got[t]["AR100"] == pytest.approx(1.0)


def test_evaluation_leaves_the_callers_index_untouched():
    from darkseg.data.coco import load_coco

    gt = load_coco(_gt_dict(0))
    before = json.dumps(gt.dataset, sort_keys=True)
    res = [{"image_id": 3, "category_id": 0, "bbox": [5, 5, 20, 20], "score": 0.5,
            "segmentation": [[5, 5, 25, 5, 25, 25, 5, 25]]}]  # fmt: skip
    got = coco_evaluate(gt, res, ("bbox", "segm"))
    assert got["segm"]["AP50"] == pytest.approx(0.5)  # one of the two classes found exactly
    assert json.dumps(gt.dataset, sort_keys=True) == before  # no RLE/ignore rewrites, ids unchanged
