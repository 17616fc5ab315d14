"""Annotation and results files: repeated ids and invalid numbers are refused by every reader, up front,
with one line naming the file, the entry and the problem."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from darkseg.cli import main
from darkseg.data import AnnotationError, CocoInstances, build_dataset, load_coco
from darkseg.engine.evaluate import ResultsError, coco_evaluate, predictions_to_results
from darkseg.synth.offline import load_coco_images
from darkseg.utils.coco_checks import rle_string_counts
from darkseg.utils.io import write_image

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

W, H = 60, 40


def _square(ann_id: int, image_id: int, x: int, y: int, cat: int = 1) -> dict:
    poly = [x, y, x + 20, y, x + 20, y + 20, x, y + 20]
    return {"id": ann_id, "image_id": image_id, "category_id": cat, "bbox": [x, y, 20, 20], "area": 400.0,
            "iscrowd": 0, "segmentation": [poly]}  # fmt: skip


def _gt() -> dict:
    """Two 60x40 photos, a.png (id 1, one object) and b.png (id 2, one object)."""
    return {
        "images": [
            {"id": 1, "file_name": "a.png", "width": W, "height": H},
            {"id": 2, "file_name": "b.png", "width": W, "height": H},
        ],
        "annotations": [_square(10, 1, 5, 5), _square(11, 2, 30, 10)],
        "categories": [{"id": 1, "name": "car"}],
    }


def _write(tmp_path, data: dict, name: str = "gt.json"):
    """Write the annotation file (NaN written as JSON's NaN) and two distinct 60x40 photos."""
    write_image(tmp_path / "a.png", np.full((H, W, 3), 60, np.uint8))
    write_image(tmp_path / "b.png", np.full((H, W, 3), 200, np.uint8))
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _readers(tmp_path, path):
    """Every way darkseg reads an annotation file: training / evaluation datasets (COCO and LIS types),
    the evaluation index, and darkseg synth."""
    return {
        "train dataset": lambda: CocoInstances(tmp_path, path, train=True),
        "eval dataset": lambda: CocoInstances(tmp_path, path),
        "lis dataset": lambda: build_dataset("lis", tmp_path, path, class_names=["car"]),
        "evaluate ground truth": lambda: load_coco(path),
        "synth": lambda: load_coco_images(path),
    }


def _assert_refused_by_every_reader(tmp_path, path, message: str) -> None:
    for reader, build in _readers(tmp_path, path).items():
        with pytest.raises(ValueError, match=message) as info:
            build()
        assert str(path) in str(info.value), reader
        assert "\n" not in str(info.value), reader


def test_repeated_image_id_refused_by_every_reader(tmp_path):
    data = _gt()
    data["images"][1]["id"] = 1  # b.png claims a.png's id: a.png would be loaded twice, b.png never
    path = _write(tmp_path, data)
    _assert_refused_by_every_reader(
        tmp_path, path, r"image id 1 appears twice \(images\[0\] and images\[1\]\)"
    )


def test_repeated_annotation_id_refused_by_every_reader(tmp_path):
    data = _gt()
    data["annotations"][1]["id"] = 10
    path = _write(tmp_path, data)
    _assert_refused_by_every_reader(tmp_path, path, r"annotation id 10 appears twice")


def test_repeated_category_id_refused(tmp_path):
    data = _gt()
    data["categories"].append({"id": 1, "name": "bus"})
    path = _write(tmp_path, data)
    with pytest.raises(AnnotationError, match="category id 1 appears twice"):
        load_coco(path)


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _object_mask(h: int = H, w: int = W) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[5:25, 5:25] = 1
    return m


GOOD_RLE = _rle(_object_mask())
#: (change to annotation id 10 of image 1, expected message)
BAD_GROUND_TRUTH = {
    "nan box": ({"bbox": [5, math.nan, 20, 20]}, r"bbox \[5, nan, 20, 20\] has a value that is not a finite"),
    "negative width": ({"bbox": [25, 5, -20, 20]}, "negative width or height"),
    "negative x": ({"bbox": [-30, 5, 20, 20]}, r"lies outside the 60x40 image"),
    "box past the image": ({"bbox": [50, 5, 20, 20]}, r"lies outside the 60x40 image"),
    "string box": ({"bbox": ["5", 5, 20, 20]}, "not a finite number"),
    "polygon of 2 points": ({"segmentation": [[5, 5, 25, 5]]}, "polygon 0 has 4 coordinates"),
    "polygon of 1 point": ({"segmentation": [[5, 5]]}, "polygon 0 has 2 coordinates"),
    "odd polygon": ({"segmentation": [[5, 5, 25, 5, 25, 25, 5]]}, "polygon 0 has 7 coordinates"),
    "nan polygon": ({"segmentation": [[5, 5, 25, 5, math.nan, 25]]}, "not a finite number"),
    "rle of another size": ({"segmentation": _rle(_object_mask(30, 60))}, r"RLE size \[30, 60\] is not"),
    "garbage rle counts": ({"segmentation": {"size": [H, W], "counts": "garbage!"}}, "RLE counts"),
    "short rle counts": ({"segmentation": {"size": [H, W], "counts": [0, 400, 100]}}, "cover 500 pixels"),
    "negative rle run": ({"segmentation": {"size": [H, W], "counts": [2500, -100]}}, "negative run"),
    "nan area": ({"area": math.nan}, "area nan is not a finite number"),
    "negative area": ({"area": -4.0}, "area -4.0"),
    "iscrowd 2": ({"iscrowd": 2}, "iscrowd must be 0 or 1"),
}


@pytest.mark.parametrize("case", sorted(BAD_GROUND_TRUTH))
def test_invalid_ground_truth_numbers_refused_by_every_reader(tmp_path, case):
    change, message = BAD_GROUND_TRUTH[case]
    data = _gt()
    data["annotations"][0].update(change)
    path = _write(tmp_path, data)
    _assert_refused_by_every_reader(tmp_path, path, r"annotation id 10 \(image id 1\): .*" + message)


def test_valid_rle_and_edge_tolerance_accepted(tmp_path):
    data = _gt()
    data["annotations"][0]["segmentation"] = GOOD_RLE
    data["annotations"][1]["bbox"] = [30, 10, 30.5, 20]  # half a pixel past the border: annotation tools
    path = _write(tmp_path, data)
    for build in _readers(tmp_path, path).values():
        build()


def test_evaluate_cli_prints_one_line_for_a_two_point_polygon(tmp_path, capsys):
    """pycocotools read [[x0, y0, x1, y1]] as a box and [[x, y]] raised a traceback in evaluate."""
    data = _gt()
    data["annotations"][0]["segmentation"] = [[5, 5]]
    gt = _write(tmp_path, data)
    res = tmp_path / "res.json"
    res.write_text(json.dumps([_result()]))
    rc = main(["evaluate", "--annotations", str(gt), "--results", str(res), "--iou-type", "segm"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert str(gt) in err and "annotation id 10 (image id 1): polygon 0 has 2 coordinates" in err


def test_broken_polygon_found_when_the_dataset_is_built(tmp_path):
    """A broken polygon on the 7th of 14 images used to surface only when that image was first sampled."""
    data = _gt()
    data["images"] = [{"id": i, "file_name": "a.png", "width": W, "height": H} for i in range(1, 15)]
    data["annotations"] = [_square(100 + i, i, 5, 5) for i in range(1, 15)]
    data["annotations"][6]["segmentation"] = [[5, 5, 25, 5]]
    path = _write(tmp_path, data)
    with pytest.raises(AnnotationError, match=r"annotation id 107 \(image id 7\): polygon 0 has 4"):
        CocoInstances(tmp_path, path, train=True)


def test_nan_training_box_does_not_become_a_box_to_the_image_edge(tmp_path):
    data = _gt()
    data["annotations"][0]["bbox"] = [5, 5, math.nan, 20]
    path = _write(tmp_path, data)
    with pytest.raises(AnnotationError, match=r"gt\.json: annotation id 10 \(image id 1\): bbox"):
        CocoInstances(tmp_path, path, train=True)


def _result(**change) -> dict:
    r = {"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [5, 5, 20, 20], "segmentation": GOOD_RLE}
    r.update(change)
    return r


BAD_RESULTS = {
    "nan box": (_result(bbox=[5, 5, math.nan, 20]), "not a finite number"),
    "negative box": (_result(bbox=[25, 25, -20, -20]), "negative width or height"),
    "box outside the image": (_result(bbox=[-40, 5, 20, 20]), "lies outside the 60x40 image"),
    "rle of another size": (_result(segmentation=_rle(_object_mask(40, 61))), r"RLE size \[40, 61\]"),
    "garbage rle counts": (
        _result(segmentation={"size": [H, W], "counts": "zzzz"}),
        "RLE counts are corrupt",
    ),
    "rle counts too short": (
        _result(segmentation={"size": [H, W], "counts": GOOD_RLE["counts"][:-2]}),
        "RLE counts",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_RESULTS))
def test_invalid_results_refused_naming_the_entry(tmp_path, case, capsys):
    entry, message = BAD_RESULTS[case]
    gt = _write(tmp_path, _gt())
    res = tmp_path / "res.json"
    res.write_text(json.dumps([_result(), entry]))
    with pytest.raises(ResultsError, match=r"res\.json: entry 1 \(image id 1\): .*" + message):
        coco_evaluate(load_coco(gt), res, ("bbox", "segm"))
    rc = main(["evaluate", "--annotations", str(gt), "--results", str(res)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "entry 1" in err


def test_segm_evaluation_needs_ground_truth_masks(tmp_path):
    data = _gt()
    del data["annotations"][1]["segmentation"]
    gt = _write(tmp_path, data)
    assert coco_evaluate(gt, [_result()], "bbox")["bbox"]["AP"] >= 0  # bbox is fine without masks
    message = r"gt\.json: annotation id 11 \(image id 2\) has no segmentation"
    with pytest.raises(AnnotationError, match=message):
        coco_evaluate(load_coco(gt), [_result()], "segm")
    del data["annotations"][0]["area"]  # COCOeval reads it: used to be a KeyError traceback
    gt = _write(tmp_path, data)
    with pytest.raises(AnnotationError, match=r"gt\.json: annotation id 10 \(image id 1\) has no 'area'"):
        coco_evaluate(load_coco(gt), [_result()], "bbox")


def test_rle_string_counts_match_pycocotools():
    g = np.random.default_rng(0)
    for h, w in ((40, 60), (1, 1), (300, 7), (64, 64)):
        m = (g.random((h, w)) < g.random()).astype(np.uint8)
        m[: h // 2, : w // 3] = 1  # long runs: multi-character numbers and differences to run i - 2
        counts = rle_string_counts(_rle(m)["counts"])
        assert counts.min() >= 0 and counts.sum() == h * w
        flat = np.repeat(np.arange(len(counts)) % 2, counts).astype(np.uint8)
        assert np.array_equal(flat.reshape(w, h).T, m)  # column-major runs of 0s, then 1s, ...


def test_mask_threshold_range_checked():
    pred = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0)}
    pred = {k: __import__("torch").from_numpy(v) for k, v in pred.items()}
    for bad in (1.0, 1.5, 0.0, -0.1, math.nan):
        with pytest.raises(ValueError, match="mask threshold"):
            predictions_to_results([pred], [1], {1: 1}, mask_threshold=bad)
    assert predictions_to_results([copy.deepcopy(pred)], [1], {1: 1}, mask_threshold=0.5) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["predict", "x.png", "--checkpoint", "c.pt", "--mask-thr", "1.5"],
            "--mask-thr: must be in (0, 1), got 1.5",
        ),
        (
            ["predict", "x.png", "--checkpoint", "c.pt", "--mask-thr", "0"],
            "--mask-thr: must be in (0, 1), got 0.0",
        ),
        (
            ["predict", "x.png", "--checkpoint", "c.pt", "--score-thr", "nan"],
            "--score-thr: 'nan' is not a finite",
        ),
        (
            ["predict", "x.png", "--checkpoint", "c.pt", "--ratio", "-2"],
            "--ratio: ratio must be a number > 0 or 'auto', got '-2'",
        ),
        (["evaluate", "--checkpoint", "c.pt", "--batch-size", "0"], "--batch-size: must be an integer >= 1"),
        (["evaluate", "--checkpoint", "c.pt", "--max-images", "-1"], "--max-images: must be an integer >= 1"),
        (["evaluate", "--checkpoint", "c.pt", "--workers", "-1"], "--workers: must be an integer >= 0"),
        (
            ["synth", "--images", "i", "--annotations", "a", "--out", "o", "--ratio", "0", "10"],
            "--ratio: must be > 0",
        ),
        (
            ["synth", "--images", "i", "--annotations", "a", "--out", "o", "--workers", "0"],
            "--workers: must be an",
        ),
        (
            ["export", "--checkpoint", "c.pt", "--out", "m.pt", "--example-size", "0", "10"],
            "--example-size: must",
        ),
        (["demo", "--train-images", "0"], "--train-images: must be an integer >= 1"),
    ],
)
def test_numeric_flags_are_range_checked_before_any_work(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and message in err[-1], err


def _tiny_training_config(tmp_path, train_ann, val_ann):
    from darkseg.config import load_config

    data = [
        f"data.train.image_dir={tmp_path}",
        f"data.train.ann_file={train_ann}",
        "data.val.type=coco",
        f"data.val.image_dir={tmp_path}",
        f"data.val.ann_file={val_ann}",
        "model.class_names=[car]",
    ]
    run = ["train.max_iters=1", "train.epochs=null", "train.device=cpu", "train.num_workers=0"]
    return load_config("tiny_coco_cpu", data + run)  # fmt: skip


def test_training_checks_the_val_file_and_all_image_files_before_the_first_iteration(tmp_path):
    """A broken val file used to surface at the first evaluation, a missing image when first sampled."""
    from darkseg.engine.train import train

    good = _write(tmp_path, _gt())
    bad = _gt()
    bad["images"][1]["id"] = 1
    bad_val = _write(tmp_path, bad, "val.json")
    with pytest.raises(AnnotationError, match=r"val\.json: image id 1 appears twice"):
        train(_tiny_training_config(tmp_path, good, bad_val), tmp_path / "run1", progress=False)
    assert not (tmp_path / "run1" / "last.pth").exists()
    no_mask = _gt()
    del no_mask["annotations"][1]["segmentation"]  # COCOeval segm would fail on it after the whole run
    no_mask_val = _write(tmp_path, no_mask, "val_no_mask.json")
    with pytest.raises(
        AnnotationError, match=r"val_no_mask\.json: annotation id 11 \(image id 2\) has no segm"
    ):
        train(_tiny_training_config(tmp_path, good, no_mask_val), tmp_path / "run1b", progress=False)
    assert not (tmp_path / "run1b" / "last.pth").exists()
    write_image(tmp_path / "b.png", np.zeros((H + 1, W, 3), np.uint8))
    with pytest.raises(
        AnnotationError, match=r"b\.png: image is 60x41 but .*gt\.json says 60x40 \(image id 2\)"
    ):
        train(_tiny_training_config(tmp_path, good, good), tmp_path / "run2", progress=False)
    (tmp_path / "b.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"b\.png \(image id 2\)"):
        train(_tiny_training_config(tmp_path, good, good), tmp_path / "run3", progress=False)
    assert not any((tmp_path / run / "last.pth").exists() for run in ("run2", "run3"))


def test_repeated_json_keys_refused_in_annotation_results_and_camera_files(tmp_path):
    """json keeps the last of two equal keys silently; a hand-edited entry then loses a value unseen."""
    text = json.dumps(_gt()).replace(
        '"bbox": [5, 5, 20, 20]', '"bbox": [5, 5, 20, 20], "bbox": [0, 0, 1, 1]', 1
    )
    path = tmp_path / "gt.json"
    _write(tmp_path, _gt())
    path.write_text(text)
    _assert_refused_by_every_reader(tmp_path, path, r"duplicate key 'bbox' in the object with id 10")
    res = tmp_path / "res.json"
    res.write_text('[{"image_id": 1, "category_id": 1, "score": 0.9, "score": 0.1, "bbox": [5, 5, 20, 20]}]')
    gt = _write(tmp_path, _gt(), "gt_ok.json")
    with pytest.raises(ResultsError, match=r"res\.json: duplicate key 'score'"):
        coco_evaluate(gt, res, "bbox")
    from importlib import resources

    from darkseg.config import ConfigError, load_config

    profile = (resources.files("darkseg") / "synth" / "cameras" / "CanonEOS5D4.json").read_text()
    cam = tmp_path / "cam.json"
    cam.write_text(profile.replace('"Kmin":', '"Kmax": 1.0, "Kmin":', 1))
    with pytest.raises(ConfigError, match=r"synth\.camera: .*cam\.json: duplicate key 'Kmax'"):
        load_config("tiny_coco_cpu", [f"synth.camera={cam}"])
    data = json.loads(profile)
    data["profiles"]["Profile-1"]["g_scale"]["slope"] = math.nan  # json writes NaN; noise would be NaN
    cam.write_text(json.dumps(data))
    message = r"cam\.json: profiles\.Profile-1\.g_scale\.slope is not a finite number"
    with pytest.raises(ConfigError, match=r"synth\.camera: .*" + message):
        load_config("tiny_coco_cpu", [f"synth.camera={cam}"])


def test_predict_refuses_non_finite_pixels(tmp_path):
    """A float TIFF or array with NaN used to pass clip() and reach the network."""
    import cv2
    import torch

    from darkseg.engine.predictor import InputFormatError, load_input

    img = np.full((H, W, 3), 0.25, np.float32)
    img[3, 4, 1] = np.nan
    path = tmp_path / "nan.tif"
    assert cv2.imwrite(str(path), img)
    with pytest.raises(InputFormatError, match=r"nan\.tif: 1 pixel values are NaN or infinite"):
        load_input(path)
    with pytest.raises(InputFormatError, match=r"<array>: 1 pixel values"):
        load_input(img)
    with pytest.raises(InputFormatError, match=r"<tensor>: 1 pixel values"):
        load_input(torch.from_numpy(img).permute(2, 0, 1))
    packed = np.full((H, W, 4), np.inf, np.float32)
    with pytest.raises(InputFormatError, match="NaN or infinite"):
        load_input(packed, in_channels=4)


def test_list_valued_ids_are_errors_not_tracebacks(tmp_path):
    data = _gt()
    data["annotations"][0]["image_id"] = [1]
    path = _write(tmp_path, data)
    message = r"annotations\[0\] \(id 10\) has image_id \[1\] / category_id 1; both must be numbers"
    _assert_refused_by_every_reader(tmp_path, path, message)
    res = tmp_path / "res.json"
    res.write_text(json.dumps([_result(image_id=[1])]))
    with pytest.raises(ResultsError, match=r"res\.json: entry 0: image_id and category_id must be numbers"):
        coco_evaluate(_write(tmp_path, _gt(), "ok.json"), res, "bbox")


@pytest.mark.parametrize("kind", ["absolute", "dotdot"])
def test_synth_refuses_file_names_that_leave_the_folders(tmp_path, kind, capsys):
    """darkseg synth writes OUT/images/<file_name>: an absolute name made it overwrite the source photo
    itself (input and output were the same path), '..' wrote outside OUT."""
    images = tmp_path / "photos" / "set"
    images.mkdir(parents=True)
    _write(images, _gt())
    original = (images / "a.png").read_bytes()
    name = str(images / "a.png") if kind == "absolute" else "../../../a.png"
    (tmp_path / "a.png").write_bytes(original)  # what '..' reaches from photos/set
    data = _gt()
    data["images"][0]["file_name"] = name
    ann = _write(tmp_path, data, "ann.json")
    out = tmp_path / "work" / "out"
    rc = main(
        ["synth", "--images", str(images), "--annotations", str(ann), "--out", str(out), "--no-progress"]
    )
    err = capsys.readouterr().err
    from darkseg.errors import short_repr

    # the echoed name is cut to a short prefix and suffix when long (a temporary folder's path is)
    assert rc == 2 and f"file_name {short_repr(name)} must be a relative path" in err and "image id 1" in err
    assert (images / "a.png").read_bytes() == original and (tmp_path / "a.png").read_bytes() == original
    assert not out.exists()


def test_a_string_for_class_names_is_refused_by_the_python_api(tmp_path):
    """The API twin of ``--set model.class_names=person``: a string is not iterated into letters."""
    from darkseg.models import ModelConfig, ModelConfigError

    message = r"ModelConfig: class_names: expected a list of names, got the string 'person'"
    for build in (lambda: ModelConfig(class_names="person"), lambda: ModelConfig.tiny("person")):
        with pytest.raises(ModelConfigError, match=message):
            build()
    assert ModelConfig.tiny(["person"]).class_names == ["person"]
    assert ModelConfig.tiny().class_names == ["object"]
    path = _write(tmp_path, _gt())
    with pytest.raises(AnnotationError, match=r"gt\.json: class_names must be a list of names, .*\['car'\]"):
        CocoInstances(tmp_path, path, class_names="car")
    assert CocoInstances(tmp_path, path, class_names=["car"]).class_names == ["car"]


def test_image_ext_and_synth_ratio_order_are_checked_with_the_setting_named(tmp_path, capsys):
    from darkseg.config import ConfigError, load_config

    path = _write(tmp_path, _gt())
    with pytest.raises(ValueError, match=r"image_ext must be a file suffix such as '\.png', got 'png'"):
        CocoInstances(tmp_path, path, image_ext="png")  # Path.with_suffix failed later, naming nothing
    with pytest.raises(ConfigError, match=r"data\.train\.image_ext: a file suffix such as '\.png'"):
        load_config("tiny_coco_cpu", ["data.train.image_ext=png"])
    rc = main(["synth", "--images", str(tmp_path), "--annotations", str(path), "--out", str(tmp_path / "o"),
               "--ratio", "100", "10"])  # fmt: skip
    assert rc == 2 and "--ratio LO HI needs LO <= HI, got 100 10" in capsys.readouterr().err


def test_evaluate_model_checks_the_ground_truth_before_running_the_model(tmp_path):
    from darkseg.engine.evaluate import evaluate_model

    data = _gt()
    del data["annotations"][0]["segmentation"]
    ds = CocoInstances(tmp_path, _write(tmp_path, data))

    class MustNotRun(__import__("torch").nn.Module):
        def forward(self, images):
            raise AssertionError("the model ran before the ground truth was checked")

    with pytest.raises(AnnotationError, match=r"annotation id 10 \(image id 1\) has no segmentation"):
        evaluate_model(MustNotRun(), ds, progress=False)
