"""Third-party libraries (OpenCV, pycocotools) only get inputs they handle: webcam indices, coordinates
against the image size, and bounded work for COCO evaluation.

Cases that crashed the process (a segmentation fault) before the checks run in a subprocess, so that
the test reports a failure instead of taking pytest down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from darkseg.cli import main
from darkseg.data.coco import load_coco
from darkseg.engine.evaluate import ResultsError, coco_evaluate, validate_results
from darkseg.engine.video import VideoOpenError, VideoSource
from darkseg.models import ModelConfig, build_model, save_checkpoint
from darkseg.utils.coco_checks import AnnotationError, validate_coco

SRC = Path(__file__).resolve().parents[1] / "src"


def _darkseg(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    env.pop("DARKSEG_TRACEBACK", None)
    return subprocess.run([sys.executable, "-m", "darkseg", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)  # fmt: skip


def _one_line(stderr: str, command: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith(f"darkseg {command}")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(["person", "car"], min_size=64, max_size=96, box_detections_per_img=5)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, build_model(cfg).eval())
    return path


# ------------------------------------------------------------------------------------------- webcams


def test_negative_webcam_index_is_refused_before_opencv(ckpt, tmp_path):
    proc = _darkseg("predict", "--checkpoint", str(ckpt), "--webcam", "-1", "--out", str(tmp_path / "o"),
                    "--no-progress")  # fmt: skip
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "argument --webcam: must be a webcam index 0..99, got -1" in _one_line(proc.stderr, "predict")


def test_webcam_index_past_the_backends_is_refused(ckpt, tmp_path, capsys):
    for index in (100, 10**20):
        with pytest.raises(VideoOpenError, match=rf"cam:{index}: a webcam index must be 0\.\.99"):
            VideoSource(index)
    cam = "cam:99999999999999999999"
    rc = main(["predict", "--checkpoint", str(ckpt), cam, "--out", str(tmp_path / "o"), "--no-progress"])
    assert rc == 1
    assert f"{cam}: a webcam index must be 0..99" in capsys.readouterr().err
    info = json.loads((tmp_path / "o" / "images.json").read_text())
    assert info["errors"] == [{"file": cam, "error": f"{cam}: a webcam index must be 0..99"}]


# ------------------------------------------------------------------------- coordinates vs image size


def _gt(polygon, width=64, height=48, n_objects=1) -> dict:
    ann = {"image_id": 1, "category_id": 1, "bbox": [4, 4, 10, 10], "area": 100.0, "iscrowd": 0}
    anns = [{"id": i + 1, **ann, "segmentation": [polygon]} for i in range(n_objects)]
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": width, "height": height}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": anns,
    }


HUGE = [1e30, 1e30, 2e30, 1e30, 2e30, 2e30]


def test_ground_truth_polygon_far_outside_the_image_is_refused_by_evaluate(tmp_path):
    gt = tmp_path / "gt.json"
    gt.write_text(json.dumps(_gt(HUGE)))
    res = tmp_path / "res.json"
    res.write_text(json.dumps([{"image_id": 1, "category_id": 1, "score": 0.9, "bbox": [4, 4, 10, 10]}]))
    proc = _darkseg("evaluate", "--annotations", str(gt), "--results", str(res), "--iou-type", "segm")
    assert proc.returncode in (1, 2), (proc.returncode, proc.stderr[-2000:])
    line = _one_line(proc.stderr, "evaluate")
    assert str(gt) in line and "annotation id 1" in line
    assert "polygon 0 reaches x 1e+30..2e+30, y 1e+30..2e+30, outside the 64x48 image" in line


def test_synth_refuses_a_polygon_outside_the_image(tmp_path):
    from darkseg.synth.offline import load_coco_images

    path = tmp_path / "gt.json"
    path.write_text(json.dumps(_gt(HUGE)))
    with pytest.raises(ValueError, match=r"annotation id 1 .*polygon 0 reaches .* outside the 64x48 image"):
        load_coco_images(path)


def test_polygons_a_little_past_the_border_are_kept():
    """Annotation tools put points a little past the border (LIS: 0.5 % of the side): 1 % is kept."""
    validate_coco(_gt([-0.6, -0.4, 64.6, 0, 64.6, 48.4]), "gt.json")
    with pytest.raises(AnnotationError, match="polygon 0 reaches x -0.7..10"):
        validate_coco(_gt([-0.7, 0, 10, 0, 10, 10]), "gt.json")


def test_result_polygon_outside_the_image_is_refused():
    gt = load_coco(_gt([4, 4, 14, 4, 14, 14]), source="gt.json")
    bad = [{"image_id": 1, "category_id": 1, "score": 0.5, "segmentation": [HUGE]}]
    with pytest.raises(ResultsError, match="entry 0 .*polygon 0 reaches .* outside the 64x48 image"):
        validate_results(bad, gt, "segm", "res.json")


def test_image_larger_than_opencv_reads_is_refused():
    data = _gt([4, 4, 14, 4, 14, 14], width=100_000, height=100_000)
    with pytest.raises(
        AnnotationError, match=r"image id 1: 100000x100000 is larger than the 1073741824 pixels"
    ):
        validate_coco(data, "gt.json")


# ------------------------------------------------------------------------- bounded COCO evaluation


def test_too_many_ground_truth_objects_on_one_image_are_refused():
    from darkseg.engine.evaluate import MAX_OBJECTS_PER_IMAGE

    data = _gt([4, 4, 14, 4, 14, 14], n_objects=MAX_OBJECTS_PER_IMAGE + 1)
    with pytest.raises(
        AnnotationError, match=f"image id 1 has more than {MAX_OBJECTS_PER_IMAGE} ground-truth"
    ):
        coco_evaluate(data, [], "bbox")


def test_only_the_results_cocoeval_reads_reach_pycocotools(monkeypatch):
    """5000 results on one image: pycocotools gets the best 100 per image and category, and every metric
    equals the one computed from those 100 alone (COCOeval reads no others)."""
    from pycocotools.coco import COCO

    from darkseg.engine.evaluate import MAX_DETS

    rng = np.random.default_rng(0)
    boxes = [[float(x), float(y), 12.0, 10.0] for x, y in rng.uniform(0, 50, (30, 2))]
    data = _gt([4, 4, 14, 4, 14, 14], width=64, height=64, n_objects=30)
    for ann, b in zip(data["annotations"], boxes):
        ann["bbox"], ann["area"], ann["segmentation"] = b, 120.0, []
    xy = np.clip(np.array([boxes[i % 30][:2] for i in range(5000)]) + rng.normal(0, 2, (5000, 2)), 0, 50)
    results = [{"image_id": 1, "category_id": 1, "score": round(float(rng.random()), 3),
                "bbox": [float(x), float(y), 12.0, 10.0]} for x, y in xy]  # fmt: skip
    seen: list[int] = []
    load_res = COCO.loadRes
    monkeypatch.setattr(COCO, "loadRes", lambda self, res: seen.append(len(res)) or load_res(self, res))
    full = coco_evaluate(data, results, "bbox")["bbox"]
    assert seen == [MAX_DETS]
    order = sorted(range(len(results)), key=lambda i: -results[i]["score"])[:MAX_DETS]
    top = [results[i] for i in sorted(order)]
    assert coco_evaluate(data, top, "bbox")["bbox"] == full
    assert 0 < full["AP"] < 1


def test_webcam_option_and_sources_share_one_limit():
    import argparse

    from darkseg.cli.argtypes import webcam_index
    from darkseg.engine.video import MAX_WEBCAM_INDEX

    assert webcam_index(str(MAX_WEBCAM_INDEX)) == MAX_WEBCAM_INDEX
    with pytest.raises(argparse.ArgumentTypeError):
        webcam_index(str(MAX_WEBCAM_INDEX + 1))
