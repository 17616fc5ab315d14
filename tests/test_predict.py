"""Prediction on files and arrays (darkseg.Predictor, darkseg predict), overlays, bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import darkseg
from conftest import shared_subdir
from darkseg.engine.predictor import InputFormatError, Prediction, Predictor, collect_inputs
from darkseg.engine.visualize import brighten, draw_instances
from darkseg.models import CheckpointError, ModelConfig, build_model, save_checkpoint
from darkseg.raw import frame_to_input, read_camera_raw, render
from darkseg.utils.io import read_image, write_image

KODAK = "RAW_KODAK_DC50.KDC"
SCANNER = "Nikon_COOLSCAN_IV_ED_scanner.nef"


def _tiny(in_channels: int = 3):
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(
        ["person", "car"], awd=True, scb=True, in_channels=in_channels, min_size=96, max_size=128,
        box_score_thresh=0.0, box_detections_per_img=20,
    )  # fmt: skip
    return build_model(cfg).eval()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, _tiny(3))
    return path


@pytest.fixture(scope="module")
def ckpt4(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt4") / "tiny4.pt"
    save_checkpoint(path, _tiny(4))
    return path


@pytest.fixture(scope="module")
def predictor(ckpt):
    return Predictor(ckpt, device="cpu", score_thr=0.0)


def _dark_image(h=90, w=120, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = (rng.random((h, w, 3)) * 30).astype(np.uint8)
    img[20:60, 30:90] += 25  # a slightly brighter object
    return img


def _check_prediction(pred: Prediction, size):
    n = len(pred)
    assert pred.boxes.shape == (n, 4) and pred.boxes.dtype == np.float32
    assert pred.labels.shape == (n,) and pred.labels.dtype == np.int64
    assert pred.masks.shape == (n, *size) and pred.masks.dtype == bool
    assert pred.image_size == size and pred.class_names == ["person", "car"]
    if n:
        assert pred.labels.min() >= 1 and pred.labels.max() <= 2
        assert np.all(np.diff(pred.scores) <= 1e-6)
        assert pred.boxes[:, [0, 2]].max() <= size[1] and pred.boxes[:, [1, 3]].max() <= size[0]


def test_predict_png_matches_direct_model_call(predictor, tmp_path):
    img = _dark_image()
    write_image(tmp_path / "dark.png", img)
    pred = predictor.predict(tmp_path / "dark.png")
    _check_prediction(pred, (90, 120))
    assert len(pred) > 0 and pred.kind == "image"
    with torch.no_grad():
        ref = predictor.model([torch.from_numpy(img).permute(2, 0, 1).float() / 255])[0]
    np.testing.assert_allclose(pred.boxes, ref["boxes"].numpy(), atol=1e-4)
    np.testing.assert_array_equal(pred.masks, ref["masks"][:, 0].numpy() > 0.5)
    # the same image given as an array, and the 16-bit PNG of it, give the same result
    np.testing.assert_allclose(predictor.predict(img).boxes, pred.boxes, atol=1e-4)
    write_image(tmp_path / "dark16.png", img.astype(np.uint16) * 257)
    assert read_image(tmp_path / "dark16.png", unchanged=True).dtype == np.uint16
    np.testing.assert_allclose(predictor.predict(tmp_path / "dark16.png").boxes, pred.boxes, atol=1e-3)
    # score threshold
    hi = Predictor(predictor.model, device="cpu", score_thr=float(np.median(pred.scores)))
    assert 0 < len(hi.predict(img)) < len(pred)


def test_lazy_api_export():
    assert darkseg.Predictor is Predictor


def test_camera_raw_3ch_is_lis_binning_at_half_resolution(predictor):
    path = shared_subdir("raw-samples") / KODAK
    pred, preview = predictor.predict_with_preview(path)
    _check_prediction(pred, (256, 384))
    assert pred.kind == "camera_raw" and preview.shape == (256, 384, 3)  # overlay on the model's grid
    x = frame_to_input(read_camera_raw(path), "rgb")
    with torch.no_grad():
        ref = predictor.model([x])[0]
    np.testing.assert_allclose(pred.boxes, ref["boxes"].numpy(), atol=1e-4)
    np.testing.assert_array_equal(preview, render(read_camera_raw(path), half=True))


def test_camera_raw_4ch_gets_packed_planes(ckpt4, tmp_path):
    p4 = Predictor(ckpt4, device="cpu", score_thr=0.0, ratio=2.0)
    path = shared_subdir("raw-samples") / KODAK
    pred = p4.predict(path)
    _check_prediction(pred, (256, 384))
    x = frame_to_input(read_camera_raw(path), "packed", ratio=2.0)
    with torch.no_grad():
        ref = p4.model([x])[0]
    np.testing.assert_allclose(pred.scores, ref["scores"].numpy(), atol=1e-5)
    write_image(tmp_path / "photo.png", _dark_image())
    with pytest.raises(InputFormatError, match="packed RAW"):
        p4.predict(tmp_path / "photo.png")


def test_bad_inputs_have_clear_errors(predictor, tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(InputFormatError, match="broken.png"):
        predictor.predict(tmp_path / "broken.png")
    (tmp_path / "notes.xyz").write_text("hello")
    with pytest.raises(InputFormatError, match="unsupported or unreadable"):
        predictor.predict(tmp_path / "notes.xyz")
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        predictor.predict(tmp_path / "missing.jpg")
    with pytest.raises(InputFormatError, match="not a Bayer mosaic"):
        predictor.predict(shared_subdir("raw-samples") / SCANNER)
    with pytest.raises(InputFormatError, match="expected"):
        predictor.predict(np.zeros((10, 10, 4), np.float32))


def test_foreign_and_newer_checkpoints(ckpt, tmp_path):
    torch.save({"model": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a darkseg checkpoint"):
        Predictor(tmp_path / "other.pt", device="cpu")
    ck = torch.load(ckpt, weights_only=True)
    ck["format_version"] = 99
    torch.save(ck, tmp_path / "newer.pt")
    with pytest.raises(CheckpointError, match="format_version"):
        Predictor(tmp_path / "newer.pt", device="cpu")


def test_predict_many_keeps_going(predictor, tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    write_image(d / "a.png", _dark_image(seed=1))
    write_image(d / "b.jpg", _dark_image(seed=2))
    (d / "c.png").write_bytes(b"garbage")
    (d / "readme.txt").write_text("not an image")  # ignored: folders contribute known suffixes only
    assert [p.name for p in collect_inputs([d])] == ["a.png", "b.jpg", "c.png"]
    res = predictor.predict_many([d], progress=False)
    assert [r.ok for r in res] == [True, True, False]
    assert "c.png" in res[2].error and res[0].preview.shape == (90, 120, 3)


def test_draw_instances_and_brighten():
    img = np.full((60, 80, 3), 10, np.uint8)
    mask = np.zeros((1, 60, 80), bool)
    mask[0, 10:40, 20:60] = True
    pred = Prediction(
        boxes=np.array([[20, 10, 60, 40]], np.float32),
        labels=np.array([2]),
        scores=np.array([0.9], np.float32),
        masks=mask,
        class_names=["person", "car"],
        image_size=(60, 80),
    )
    out = draw_instances(img, pred)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert np.abs(out[20:30, 30:50].astype(int) - 10).sum() > 0  # inside the mask: tinted
    assert np.array_equal(out[50:, :10], img[50:, :10])  # far from the instance: untouched
    assert np.array_equal(img, np.full((60, 80, 3), 10, np.uint8))  # input not modified
    with pytest.raises(ValueError, match="uint8"):
        draw_instances(img.astype(np.float32), pred)
    dark = _dark_image()
    b = brighten(dark)
    assert b.dtype == np.uint8 and np.median(b) > np.median(dark) + 40
    lin = brighten(dark, linear=True)  # linear data (LIS RAW PNGs): same median target, other tone curve
    assert abs(float(np.median(lin)) - float(np.median(b))) < 12 and not np.array_equal(lin, b)
    bright = np.full((8, 8, 3), 200, np.uint8)
    assert np.array_equal(brighten(bright), bright)  # never darkens a well-exposed image


def test_cli_writes_overlays_and_coco_json(ckpt, tmp_path, capsys):
    from pycocotools.coco import COCO

    from darkseg.cli import main

    d = tmp_path / "in"
    d.mkdir()
    write_image(d / "night.png", _dark_image(seed=3))
    (d / "bad.jpg").write_bytes(b"nope")
    raw = shared_subdir("raw-samples") / KODAK
    out = tmp_path / "out"
    rc = main(["predict", "--checkpoint", str(ckpt), str(d), str(raw), "--out", str(out), "--score-thr", "0",
               "--no-progress"])  # fmt: skip
    assert rc == 1  # one input failed, the others were written
    info = json.loads((out / "images.json").read_text())
    assert [im["file_name"].split("/")[-1] for im in info["images"]] == ["night.png", KODAK]
    assert len(info["errors"]) == 1 and "bad.jpg" in info["errors"][0]["error"]
    assert read_image(out / "night_overlay.png").shape == (90, 120, 3)
    assert read_image(out / "RAW_KODAK_DC50_overlay.png").shape == (256, 384, 3)
    # results load into pycocotools against the image list
    gt = COCO()
    gt.dataset = {"images": info["images"], "categories": info["categories"], "annotations": []}
    gt.createIndex()
    results = json.loads((out / "results.json").read_text())
    assert results and {r["image_id"] for r in results} <= {1, 2}
    dt = gt.loadRes(results)
    m = dt.annToMask(dt.loadAnns(dt.getAnnIds(imgIds=[2]))[0])
    assert m.shape == (256, 384)
    assert "bad.jpg" in capsys.readouterr().err
    assert (
        main(["predict", "--checkpoint", str(tmp_path / "none.pt"), str(d), "--out", str(out), "--overwrite"])
        == 2
    )
    assert "none.pt" in capsys.readouterr().err
    if not torch.cuda.is_available():
        argv = [
            "predict",
            "--checkpoint",
            str(ckpt),
            str(d),
            "--device",
            "cuda",
            "--out",
            str(tmp_path / "o2"),
        ]
        assert main(argv) == 2
        assert "no CUDA device" in capsys.readouterr().err


def test_ratio_auto_per_input(ckpt, tmp_path):
    """``ratio="auto"``: estimated per linear input (camera RAW, packed arrays), 1 for sRGB; reported."""
    from darkseg.cli import main
    from darkseg.raw.exposure import estimate_ratio

    raw = shared_subdir("raw-samples") / KODAK
    auto = Predictor(ckpt, device="cpu", score_thr=0.0, ratio="auto")
    inp = auto.load(raw, preview=False)
    expected = estimate_ratio(read_camera_raw(raw))
    assert inp.meta["ratio"] == pytest.approx(expected)
    np.testing.assert_allclose(
        inp.tensor.numpy(), frame_to_input(read_camera_raw(raw), "rgb", expected).numpy(), atol=1e-6
    )
    assert auto.predict(raw).ratio == pytest.approx(expected)
    assert auto.predict(_dark_image()).ratio == 1.0  # sRGB array: not linear data
    # a dark linear 16-bit PNG (LIS RAW PNG style): brightened to the training mean, 0.135
    dark = (np.random.default_rng(0).random((60, 80, 3)) * 0.01 * 65535).astype(np.uint16)
    write_image(tmp_path / "dark_raw.png", dark)
    lin = Predictor(ckpt, device="cpu", ratio="auto", linear_images=True)
    level = dark.astype(np.float64).mean() / 65535
    assert lin.predict(tmp_path / "dark_raw.png").ratio == pytest.approx(0.135 / level, rel=1e-4)
    assert 20 < 0.135 / level < 30
    with pytest.raises(ValueError, match="auto"):
        Predictor(ckpt, device="cpu", ratio="bright")
    out = tmp_path / "out"
    argv = [
        "predict",
        "--checkpoint",
        str(ckpt),
        str(raw),
        "--out",
        str(out),
        "--ratio",
        "auto",
        "--no-progress",
    ]
    assert main(argv) == 0
    info = json.loads((out / "images.json").read_text())
    assert info["images"][0]["ratio"] == pytest.approx(expected, rel=1e-3)


def test_cli_reports_missing_inputs_on_stderr(ckpt, tmp_path, capsys):
    """A missing INPUT is reported on stderr like every other failure (and in images.json)."""
    from darkseg.cli import main

    write_image(tmp_path / "night.png", _dark_image(seed=4))
    gone = tmp_path / "gone.jpg"
    out = tmp_path / "out"
    argv = ["predict", "--checkpoint", str(ckpt), str(tmp_path / "night.png"), str(gone), "--out", str(out),
            "--no-progress", "--no-overlay"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert f"{gone}: no such file or folder" in err
    assert json.loads((out / "images.json").read_text())["errors"][0]["file"] == str(gone)


def test_cli_refuses_a_previous_prediction_unless_overwrite(ckpt, tmp_path, capsys):
    """Rerunning into a folder with a previous prediction is refused (exit 2, one line naming the
    folder and --overwrite); --overwrite removes that run's overlays and JSON files, nothing else."""
    from darkseg.cli import main
    from darkseg.utils.outputs import RECORD_NAME

    d = tmp_path / "in"
    d.mkdir()
    for name in ("a.png", "b.png"):
        write_image(d / name, _dark_image(seed=len(name)))
    out = tmp_path / "out"
    base = ["predict", "--checkpoint", str(ckpt), "--out", str(out), "--no-progress", "--score-thr", "0"]
    assert main([*base, str(d)]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        RECORD_NAME,  # the record of the files the run wrote
        "a_overlay.png",
        "b_overlay.png",
        "images.json",
        "index.html",
        "results.json",
    ]
    (out / "mine_overlay.png").write_bytes(b"user file")
    capsys.readouterr()
    assert main([*base, str(d / "a.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out) in err and "--overwrite" in err
    assert (out / "b_overlay.png").is_file()
    assert main([*base, str(d / "a.png"), "--overwrite"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        RECORD_NAME, "a_overlay.png", "images.json", "index.html", "mine_overlay.png", "results.json"
    ]  # fmt: skip
