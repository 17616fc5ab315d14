"""One image rule for every job: the stored pixels, EXIF orientation ignored (real EXIF-tagged JPEGs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from darkseg.cli import main
from darkseg.data import AnnotationError, CocoInstances
from darkseg.engine.predictor import Predictor
from darkseg.models import ModelConfig, build_model, save_checkpoint
from darkseg.utils.io import exif_orientation, read_image

H, W = 24, 40  # stored size: landscape; orientation 6 would show it as 40 x 24 portrait


def _pattern() -> np.ndarray:
    """An asymmetric uint8 RGB picture (H, W, 3): any rotation or flip changes it."""
    img = np.zeros((H, W, 3), np.uint8)
    img[:8, :12] = (250, 40, 40)  # red block top-left
    img[16:, 28:] = (40, 40, 250)  # blue block bottom-right
    img[:, 20:22, 1] = 200
    return img


def _save_jpeg(path: Path, orientation: int | None) -> Path:
    """Write the pattern as a JPEG, with an EXIF Orientation tag when ``orientation`` is given."""
    kwargs = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    Image.fromarray(_pattern()).save(path, quality=95, **kwargs)
    return path


@pytest.fixture
def jpegs(tmp_path) -> dict[int | None, Path]:
    """The same stored pixels three times: no EXIF, orientation 3 (upside down), 6 (rotated 90)."""
    return {o: _save_jpeg(tmp_path / f"o{o}.jpg", o) for o in (None, 3, 6)}


def test_read_image_gives_stored_pixels_whatever_the_exif_orientation(jpegs):
    plain = read_image(jpegs[None])
    assert plain.shape == (H, W, 3)
    for o in (3, 6):
        assert exif_orientation(jpegs[o]) == o
        assert np.array_equal(read_image(jpegs[o]), plain), f"orientation {o} applied (8-bit read)"
        assert np.array_equal(read_image(jpegs[o], unchanged=True), plain), f"orientation {o} (unchanged)"
    assert exif_orientation(jpegs[None]) == 1


def _coco(tmp_path: Path, names: list[str]) -> Path:
    """A COCO file whose sizes are the STORED sizes (W x H) with one box in the red block per image."""
    data = {
        "images": [{"id": i + 1, "file_name": n, "width": W, "height": H} for i, n in enumerate(names)],
        "annotations": [
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": 1,
                "bbox": [0, 0, 12, 8],
                "area": 96.0,
                "iscrowd": 0,
                "segmentation": [[0, 0, 12, 0, 12, 8, 0, 8]],
            }
            for i in range(len(names))
        ],  # fmt: skip
        "categories": [{"id": 1, "name": "block"}],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path


def test_dataset_reads_rotated_jpegs_at_the_annotated_stored_size(tmp_path, jpegs):
    ann = _coco(tmp_path, [jpegs[3].name, jpegs[6].name])
    ds = CocoInstances(tmp_path, ann)
    expected = torch.from_numpy(read_image(jpegs[None])).permute(2, 0, 1).float() / 255
    for k in range(2):
        image, target = ds[k]  # orientation 6 used to fail: "image is 24x40 but ann.json says 40x24"
        assert image.shape == (3, H, W)
        assert torch.equal(image, expected)  # the stored pixels of the untagged file
        assert image[0, :8, :12].mean() > 0.9  # the annotated red block is where the box says
        assert target["masks"][0, :8, :12].all()


def test_synth_writes_rotated_jpegs_exactly_like_the_untagged_file(tmp_path, jpegs):
    def run(folder_name: str, tagged: bool) -> dict[str, bytes]:
        images = tmp_path / folder_name
        images.mkdir()
        for o in (3, 6):  # same file names and ids in both runs, so the same seeds
            _save_jpeg(images / f"p{o}.jpg", o if tagged else None)
        ann = _coco(images, ["p3.jpg", "p6.jpg"])
        out = tmp_path / f"out_{folder_name}"
        args = ["synth", "--images", str(images), "--annotations", str(ann), "--out", str(out)]
        assert main([*args, "--no-progress"]) == 0
        return {p.name: p.read_bytes() for p in sorted((out / "images").iterdir())}

    tagged, plain = run("tagged", True), run("plain", False)
    assert sorted(tagged) == ["p3.png", "p6.png"]
    assert tagged == plain  # orientation 3 used to come out upside down, 6 rotated to 40 x 24
    assert read_image(tmp_path / "out_tagged" / "images" / "p6.png").shape == (H, W, 3)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(["block"], min_size=32, max_size=64, box_score_thresh=0.0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, build_model(cfg).eval())
    return path


def test_predict_uses_stored_pixels_and_reports_the_orientation(tmp_path, jpegs, tiny_checkpoint):
    predictor = Predictor(tiny_checkpoint, device="cpu", score_thr=0.0)
    plain = predictor.predict(jpegs[None])
    for o in (3, 6):
        pred = predictor.predict(jpegs[o])
        assert pred.image_size == (H, W)
        assert np.array_equal(pred.boxes, plain.boxes) and np.array_equal(pred.masks, plain.masks)
        assert predictor.load(jpegs[o], preview=False).meta["exif_orientation"] == o
    out = tmp_path / "pred"
    args = [str(jpegs[None]), str(jpegs[6]), "--checkpoint", str(tiny_checkpoint), "--out", str(out)]
    assert main(["predict", *args, "--device", "cpu", "--no-progress", "--no-overlay"]) == 0
    listed = json.loads((out / "images.json").read_text())["images"]
    images = {Path(im["file_name"]).name: im for im in listed}
    assert (images["o6.jpg"]["height"], images["o6.jpg"]["width"]) == (H, W)
    assert images["o6.jpg"]["exif_orientation"] == 6 and "exif_orientation" not in images["oNone.jpg"]


def test_annotations_made_on_the_rotated_view_are_named_before_any_image_is_decoded(tmp_path, jpegs):
    """A file that gives an orientation-6 photo its displayed size (40 x 24 instead of the stored 24 x 40)."""
    ann = _coco(tmp_path, [jpegs[6].name])
    data = json.loads(ann.read_text())
    data["images"][0].update(width=H, height=W)
    data["annotations"][0].update(bbox=[0, 0, 8, 12], segmentation=[[0, 0, 8, 0, 8, 12, 0, 12]])
    ann.write_text(json.dumps(data))
    ds = CocoInstances(tmp_path, ann)
    message = r"o6\.jpg: image is 40x24 but .*ann\.json says 24x40 \(image id 1\); its EXIF orientation 6"
    with pytest.raises(AnnotationError, match=message):
        ds.check_files()  # file headers only: found when training / evaluation starts
    with pytest.raises(AnnotationError, match=message):
        ds[0]
