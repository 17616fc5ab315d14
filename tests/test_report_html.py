"""The browsable report of ``darkseg predict`` (``index.html``): content, files, safety, re-runs.

The page is also opened in a real browser by ``tests/test_browser.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from conftest import shared_subdir, tiny_checkpoint
from darkseg.cli import main
from darkseg.engine.report_html import THUMB_SIZE, write_prediction_report
from darkseg.utils.io import read_image, write_image

KODAK = "RAW_KODAK_DC50.KDC"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


def _dark(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = (rng.random((h, w, 3)) * 30).astype(np.uint8)
    img[h // 4 : h // 2, w // 4 : w // 2] += 30
    return img


def _rows(page: str) -> list[tuple[str, float]]:
    """(class, score) of every detection row of the page."""
    found = re.findall(r"<tr class='det' data-cls='([^']*)' data-score='([^']*)'", page)
    return [(c, float(s)) for c, s in found]


def test_predict_writes_a_report_of_every_image(ckpt, tmp_path, capsys):
    big = tmp_path / "in" / "big.png"
    write_image(big, _dark(400, 500, 0))
    small = tmp_path / "in" / "small.png"
    write_image(small, _dark(90, 120, 1))
    raw = shared_subdir("raw-samples") / KODAK
    out = tmp_path / "out"
    argv = ["predict", "--checkpoint", str(ckpt), str(big), str(small), str(raw), str(tmp_path / "gone.png"),
            "--out", str(out), "--score-thr", "0.0", "--ratio", "2.5", "--no-progress"]  # fmt: skip
    assert main(argv) == 1  # the missing file is an error, the others are done
    assert f"report: {out / 'index.html'}" in capsys.readouterr().out
    page = (out / "index.html").read_text(encoding="utf-8")
    info = json.loads((out / "images.json").read_text())
    results = json.loads((out / "results.json").read_text())
    # every detection is a row, with its class and score; the names of the classes are the filters
    rows = _rows(page)
    names = {c["id"]: c["name"] for c in info["categories"]}
    assert len(rows) == len(results) > 0
    assert [c for c, _ in rows] == [names[r["category_id"]] for r in results]  # same order as results.json
    np.testing.assert_allclose([s for _, s in rows], [r["score"] for r in results], atol=1e-6)
    assert "value='person' checked" in page and "value='car' checked" in page and "id='minscore'" in page
    # mask areas of the RLE masks, in each image's table, in order
    for r in results[:5]:
        assert f"<td>{int(mask_utils.area(r['segmentation']))}</td>" in page
    # links to the JSON files and to each overlay; the error is listed
    assert "href='results.json'" in page and "href='images.json'" in page and "gone.png" in page
    for im in info["images"]:
        assert f"href='{im['overlay']}'" in page and f"ratio {im['ratio']:g}" in page
    # the exposure ratio used is in every row
    assert {im["ratio"] for im in info["images"]} == {2.5}
    assert page.count("<td>2.5</td></tr>") == len(results)
    # a thumbnail for the big overlay only (lazy, sized), written next to it and recorded as ours
    thumb = out / "big_overlay_thumb.jpg"
    assert max(read_image(thumb).shape[:2]) == THUMB_SIZE and not (out / "small_overlay_thumb.jpg").exists()
    assert "src='big_overlay_thumb.jpg' loading='lazy'" in page
    assert "src='small_overlay.png' loading='lazy'" in page
    assert info["report_files"][0] == "index.html" and "big_overlay_thumb.jpg" in info["report_files"]
    # no network: no external script, style or picture
    assert not re.search(r"(src|href)='(https?:)?//", page)


def test_report_never_writes_over_a_user_file_and_overwrite_replaces_it(ckpt, tmp_path):
    img = tmp_path / "photo.png"
    write_image(img, _dark(64, 80, 2))
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").write_text("my own page")
    argv = ["predict", "--checkpoint", str(ckpt), str(img), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    assert (out / "index.html").read_text() == "my own page"  # the user's file is left alone
    info = json.loads((out / "images.json").read_text())
    assert info["report_files"] == ["index_2.html"] and (out / "index_2.html").is_file()
    record = json.loads((out / ".darkseg-outputs.json").read_text())
    assert record["files"].get("index_2.html") == "predict" and "index.html" not in record["files"]
    # --overwrite removes the previous report with the prediction, then writes it afresh
    (out / "index_2.html").write_text("stale")
    assert main([*argv, "--overwrite"]) == 0
    assert "darkseg predictions" in (out / "index_2.html").read_text()
    assert (out / "index.html").read_text() == "my own page" and not (out / "index_3.html").exists()


def test_video_timeline_and_key_frames(ckpt, tmp_path):
    vid = tmp_path / "night.avi"
    wr = cv2.VideoWriter(str(vid), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (96, 72))
    for i in range(9):
        wr.write(_dark(72, 96, 10 + i))
    wr.release()
    out = tmp_path / "out"
    argv = ["predict", "--checkpoint", str(ckpt), str(vid), "--out", str(out), "--score-thr", "0.3",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    page = (out / "index.html").read_text()
    info = json.loads((out / "images.json").read_text())
    counts = [im["num_instances"] for im in info["images"]]
    # the timeline has one point per frame, its height following the counts
    pts = re.search(r"<polyline[^>]*points='([^']*)'", page).group(1).split()
    ys = [float(p.split(",")[1]) for p in pts]
    assert len(pts) == 9
    assert np.array_equal(np.argsort(ys, kind="stable"), np.argsort(-np.array(counts), kind="stable"))
    # key frames: the first, the last and the one with the most detections, cut from the annotated video
    keys = [int(k) for k in re.findall(r"night_key(\d{6})\.jpg", " ".join(info["report_files"]))]
    assert {0, 8, int(np.argmax(counts))} <= set(keys) and len(keys) <= 4
    cap = cv2.VideoCapture(str(out / "night_overlay.avi"))
    frames = [cap.read()[1][:, :, ::-1] for _ in range(9)]
    for k in keys:
        key = read_image(out / f"night_key{k:06d}.jpg").astype(float)
        assert key.shape == frames[k].shape  # a JPEG of that frame: nearer to it than to any other
        others = [np.abs(key - f).mean() for j, f in enumerate(frames) if j != k]
        assert np.abs(key - frames[k]).mean() < min(others)


def test_report_of_a_thousand_images_is_small_and_lazy(tmp_path):
    """1000 images: no thumbnails to make for small overlays, one lazily loaded picture per image."""
    write_image(tmp_path / "a_overlay.png", np.zeros((60, 80, 3), np.uint8))
    rle = mask_utils.encode(np.asfortranarray(np.ones((60, 80, 1), np.uint8)))[0]
    seg = {"size": [60, 80], "counts": rle["counts"].decode()}
    images = [{"id": i + 1, "file_name": f"img{i}.png", "height": 60, "width": 80, "kind": "image",
               "ratio": 1.0, "num_instances": 3, "overlay": "a_overlay.png"}
              for i in range(1000)]  # fmt: skip
    results = [{"image_id": i + 1, "category_id": 1 + k % 2, "score": 0.9 - 0.1 * k, "bbox": [1, 2, 3, 4],
                "segmentation": seg} for i in range(1000) for k in range(3)]  # fmt: skip
    info = {"images": images, "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]}
    files = write_prediction_report(tmp_path, info, results)
    page = (tmp_path / files[0]).read_text()
    assert files == ["index.html"] and page.count("loading='lazy'") == 1000 and len(_rows(page)) == 3000
    assert len(page) < 2_000_000 and page.count("<td>4800</td>") == 3000


def test_report_escapes_names(tmp_path):
    info = {"images": [{"id": 1, "file_name": "<script>alert(1)</script>.png", "height": 4, "width": 4}],
            "categories": [{"id": 1, "name": "a'b<c>"}]}  # fmt: skip
    res = [{"image_id": 1, "category_id": 1, "score": 0.5, "bbox": [0, 0, 1, 1]}]
    page = (tmp_path / write_prediction_report(tmp_path, info, res)[0]).read_text()
    assert "<script>alert" not in page and "a'b<c>" not in page and "&lt;script&gt;" in page
    assert Path(tmp_path / "index.html").is_file()
