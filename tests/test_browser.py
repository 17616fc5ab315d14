"""The web page of ``darkseg serve`` and the report page of ``darkseg predict`` in a real headless browser.

A person's path: the suite starts the server on a free local port, opens the page in Chromium (driven by
Playwright, the system's Chromium from the Debian package ``chromium``), drops a real photo and a real
camera RAW file, and checks the overlay drawn on the canvas and the detections listed; the report page
is opened from disk. Skipped with the reason when Playwright or Chromium is missing (``.ci/run``
installs Chromium). With ``DARKSEG_SCREENSHOT_DIR`` set, :func:`test_screenshots_for_the_docs` saves
both pages' screenshots there (the docs' pictures; see the test for the model and pictures it takes).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import threading
import time
from argparse import Namespace
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from conftest import shared_subdir, tiny_checkpoint

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
)
uvicorn = pytest.importorskip("uvicorn", reason="darkseg[serve] is not installed")
pytest.importorskip("python_multipart", reason="darkseg[serve] is not installed")

from darkseg.cli import main  # noqa: E402
from darkseg.cli.serve import build_app  # noqa: E402
from darkseg.engine.predictor import Predictor  # noqa: E402
from darkseg.engine.report_html import write_prediction_report  # noqa: E402
from darkseg.engine.visualize import color_for  # noqa: E402

KODAK = "RAW_KODAK_DC50.KDC"
PHOTO = "000000444010.jpg"
TIMEOUT_MS = 20_000


def _chromium() -> str | None:
    env = os.environ.get("DARKSEG_CHROMIUM")
    if env:
        return env
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium found (apt-get install chromium, or set DARKSEG_CHROMIUM)")
    with sync_api.sync_playwright() as pw:
        try:
            b = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--disable-gpu"])
        except Exception as exc:  # noqa: BLE001 - a browser that does not start is a missing browser
            pytest.skip(f"Chromium at {exe} does not start: {exc}")
        yield b
        b.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    p = context.new_page()
    p.set_default_timeout(TIMEOUT_MS)
    yield p
    context.close()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", detections=20)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _serving(checkpoint: Path):
    """``darkseg serve``'s application (as the command builds it) on a free port of 127.0.0.1; yields
    its address."""
    port = _free_port()
    args = Namespace(
        checkpoint=checkpoint, host="127.0.0.1", port=port, device="cpu", dtype="float32", mask_thr=0.5,
        max_upload_mb=16.0, max_megapixels=40.0, max_queue=8,
    )  # fmt: skip
    config = uvicorn.Config(
        build_app(args), host="127.0.0.1", port=port, log_level="warning", access_log=False
    )
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "the server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def server(ckpt):
    with _serving(ckpt) as url:
        yield url


def _drop(page, path: Path) -> None:
    """Drop ``path`` on the page's drop zone, as a file dragged from the desktop arrives."""
    page.evaluate(
        """([b64, name]) => {
            const bin = atob(b64), bytes = new Uint8Array(bin.length);
            for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
            const dt = new DataTransfer();
            dt.items.add(new File([bytes], name));
            const how = {dataTransfer: dt, bubbles: true, cancelable: true};
            const zone = document.getElementById('drop');
            zone.dispatchEvent(new DragEvent('dragover', how));
            zone.dispatchEvent(new DragEvent('drop', how));
        }""",
        [base64.b64encode(path.read_bytes()).decode(), path.name],
    )


def _wait_done(page, text: str | None = None) -> None:
    page.wait_for_selector("body[data-state=done]")
    if text is not None:
        page.wait_for_function("t => document.getElementById('status').textContent.includes(t)", arg=text)


def _set_score(page, value: float) -> None:
    page.eval_on_selector(
        "#score",
        "(el, v) => { el.value = v; el.dispatchEvent(new Event('input', {bubbles: true})); }",
        str(value),
    )


def _canvas(page) -> np.ndarray:
    url = page.eval_on_selector("#canvas", "c => c.toDataURL('image/png')")
    buf = np.frombuffer(base64.b64decode(url.split(",", 1)[1]), np.uint8)
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.int16)


def _row_scores(page) -> list[float]:
    return [
        float(s) for s in page.eval_on_selector_all("#dets tbody tr", "rs => rs.map(r => r.dataset.score)")
    ]


def _expected_canvas(preview: np.ndarray, pred, thr: float) -> tuple[np.ndarray, np.ndarray]:
    """The masks blended on the JPEG preview as ``draw_instances`` blends them (alpha 0.45, instance
    ``i`` in colour ``i``), and where the comparison holds (away from box outlines and labels)."""
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(preview[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 90])
    out = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].astype(np.float64)
    h, w = out.shape[:2]
    valid = np.ones((h, w), bool)
    fs = max(10, round(max(w, h) / 45))
    keep = [i for i in range(len(pred)) if pred.scores[i] >= thr]
    for i in sorted(keep, key=lambda i: pred.scores[i]):
        m = pred.masks[i]
        out[m] = np.floor(out[m] * 0.55 + np.array(color_for(i)) * 0.45 + 0.5)
        x0, y0, x1, y1 = (int(round(v)) for v in pred.boxes[i])
        for x in (x0, x1):
            valid[:, max(0, x - 3) : x + 4] &= ~(np.arange(h)[:, None] >= y0 - 3) | ~(
                np.arange(h)[:, None] <= y1 + 3
            )
        for y in (y0, y1):
            valid[max(0, y - 3) : y + 4, max(0, x0 - 3) : x1 + 4] = False
        valid[max(0, y0 - fs - 6) : y0 + fs + 6, max(0, x0 - 3) :] = False  # the label, above or below
    return out, valid


def test_drop_a_photo_see_its_masks_and_download_the_json(page, server, ckpt, tmp_path):
    photo = shared_subdir("tinycoco-seg") / "images" / "val2017" / PHOTO
    pred, preview = Predictor(ckpt, device="cpu", score_thr=0.0).predict_with_preview(photo)
    page.goto(server + "/")
    page.wait_for_function("document.getElementById('model').textContent.includes('2 classes')")
    _drop(page, photo)
    _wait_done(page, PHOTO)
    # the default threshold 0.5 lists what the model found at 0.5
    assert _row_scores(page) == pytest.approx([s for s in pred.scores if s >= 0.5], abs=1e-6)
    thr = round(float(pred.scores[2]), 2)  # a threshold that shows a few instances
    _set_score(page, thr)
    shown = [float(s) for s in pred.scores if s >= thr]
    assert 0 < len(shown) < len(pred)
    assert _row_scores(page) == pytest.approx(shown, abs=1e-6)
    assert f"{len(shown)} of {len(pred)} detection(s) shown" in page.text_content("#status")
    # the overlay on the canvas: the preview with exactly the shown masks in their overlay colours
    canvas = _canvas(page)
    expected, valid = _expected_canvas(preview, pred, thr)
    assert canvas.shape == expected.shape == (480, 640, 3)
    inside = np.zeros(valid.shape, bool)
    for i in range(len(shown)):
        inside |= pred.masks[i]
    close = np.abs(canvas - expected).max(axis=2) <= 3
    assert (valid & inside).sum() > 5000 and close[valid & inside].mean() > 0.97
    assert close[valid & ~inside].mean() > 0.97  # instances below the threshold are not drawn
    # the JSON download holds what is shown
    with page.expect_download() as dl:
        page.click("#download")
    got = json.loads(Path(dl.value.path()).read_text())
    assert got["score_thr"] == thr and [d["score"] for d in got["detections"]] == pytest.approx(
        shown, abs=1e-6
    )
    assert "preview" not in got and got["file"] == PHOTO
    for d, m in zip(got["detections"], pred.masks):
        np.testing.assert_array_equal(mask_utils.decode(d["segmentation"]).astype(bool), m)


def test_camera_raw_file_and_the_exposure_ratio(page, server, ckpt):
    raw = shared_subdir("raw-samples") / KODAK
    page.goto(server + "/")
    page.set_input_files("#file", str(raw))
    _wait_done(page, KODAK)
    status = page.text_content("#status")
    assert "camera raw, 384 x 256 px" in status and "exposure ratio 1;" in status
    ref1 = Predictor(ckpt, device="cpu", score_thr=0.0).predict(raw)
    _set_score(page, 0)
    assert _row_scores(page) == pytest.approx(list(ref1.scores), abs=1e-6)
    # a new ratio is a new prediction of the same file
    page.fill("#ratio", "6")
    _wait_done(page, "exposure ratio 6;")
    ref6 = Predictor(ckpt, device="cpu", score_thr=0.0, ratio=6.0).predict(raw)
    assert _row_scores(page) == pytest.approx(list(ref6.scores), abs=1e-6)
    assert not np.allclose(ref6.scores, ref1.scores, atol=1e-4)
    # and "auto" is the Predictor's automatic ratio
    page.check("#ratio-auto")
    auto = Predictor(ckpt, device="cpu", ratio="auto").predict(raw).ratio
    _wait_done(page, f"exposure ratio {round(auto, 6):g}")
    assert page.is_disabled("#ratio")


def test_a_file_that_is_not_an_image_is_refused_with_a_message(page, server, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a photo")
    page.goto(server + "/")
    page.set_input_files("#file", str(notes))
    page.wait_for_selector("body[data-state=error]")
    assert page.is_visible("#error") and "notes.txt: not an image file" in page.text_content("#error")


def test_prediction_report_opens_from_disk(page, ckpt, tmp_path):
    photo = shared_subdir("tinycoco-seg") / "images" / "val2017" / PHOTO
    raw = shared_subdir("raw-samples") / KODAK
    out = tmp_path / "pred"
    argv = ["predict", "--checkpoint", str(ckpt), str(photo), str(raw), "--out", str(out),
            "--score-thr", "0.3", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    page.goto((out / "index.html").as_uri())
    assert page.locator(".card").count() == 2
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    visible = "rs => rs.filter(r => !r.hidden).length"
    assert page.eval_on_selector_all("tr.det", visible) == len(results)
    # class filter, then a minimum score, as a person would click and type
    page.uncheck("input.cls[value=car]")
    persons = [r for r in results if r["category_id"] == 1]
    assert page.eval_on_selector_all("tr.det", visible) == len(persons)
    page.check("input.cls[value=car]")
    page.fill("#minscore-n", "0.39")
    n = sum(r["score"] >= 0.39 for r in results)
    assert page.eval_on_selector_all("tr.det", visible) == n
    assert page.text_content("#status").startswith(f"{n} detection(s) shown")
    # the overlay link leads to the full overlay
    href = page.get_attribute(".card a", "href")
    assert (out / href).is_file()


def test_report_of_a_thousand_images_stays_responsive(page, tmp_path):
    rng = np.random.default_rng(0)
    images, results = [], []
    seg = mask_utils.encode(np.asfortranarray(np.ones((60, 80, 1), np.uint8)))[0]
    seg = {"size": [60, 80], "counts": seg["counts"].decode()}
    for i in range(1000):
        name = f"img{i:04d}_overlay.png"
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 255, (60, 80, 3), np.uint8))
        images.append({"id": i + 1, "file_name": f"img{i:04d}.png", "height": 60, "width": 80,
                       "kind": "image", "ratio": 1.0, "num_instances": 3, "overlay": name})  # fmt: skip
        results += [{"image_id": i + 1, "category_id": 1 + k % 2, "score": float(rng.random()),
                     "bbox": [1, 2, 3, 4], "segmentation": seg} for k in range(3)]  # fmt: skip
    info = {"images": images, "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]}
    page_file = tmp_path / write_prediction_report(tmp_path, info, results)[0]
    t0 = time.perf_counter()
    page.goto(page_file.as_uri())
    load_s = time.perf_counter() - t0
    ms = page.evaluate(
        """() => { const t = performance.now(), el = document.getElementById('minscore-n');
                   el.value = '0.5'; el.dispatchEvent(new Event('input', {bubbles: true}));
                   return performance.now() - t; }"""
    )
    n = sum(r["score"] >= 0.5 for r in results)
    assert page.eval_on_selector_all("tr.det", "rs => rs.filter(r => !r.hidden).length") == n
    loaded = page.evaluate("[...document.images].filter(i => i.complete && i.naturalWidth > 0).length")
    assert loaded < 200  # lazy: only the pictures near the screen are fetched
    assert ms < 500 and load_s < 10, (ms, load_s)


@pytest.mark.skipif(
    not os.environ.get("DARKSEG_SCREENSHOT_DIR"),
    reason="set DARKSEG_SCREENSHOT_DIR to make the docs' screenshots",
)
def test_screenshots_for_the_docs(page, ckpt, tmp_path):
    """``serve_page.png`` and ``predict_report.png`` in ``$DARKSEG_SCREENSHOT_DIR``: the page after dropping
    the first of ``$DARKSEG_SCREENSHOT_IMAGES`` (``os.pathsep``-separated; default: the test photo and RAW
    file) with ``$DARKSEG_SCREENSHOT_CHECKPOINT`` (default: the tiny test model) at score
    ``$DARKSEG_SCREENSHOT_SCORE``, and the report of ``darkseg predict`` on all of them."""
    folder = Path(os.environ["DARKSEG_SCREENSHOT_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    model = Path(os.environ.get("DARKSEG_SCREENSHOT_CHECKPOINT") or ckpt)
    images = [Path(p) for p in os.environ.get("DARKSEG_SCREENSHOT_IMAGES", "").split(os.pathsep) if p] or [
        shared_subdir("tinycoco-seg") / "images" / "val2017" / PHOTO,
        shared_subdir("raw-samples") / KODAK,
    ]
    thr = float(os.environ.get("DARKSEG_SCREENSHOT_SCORE", "0.39"))
    with _serving(model) as url:
        page.goto(url + "/")
        page.wait_for_function("document.getElementById('model').textContent.includes('classes')")
        _drop(page, images[0])
        _wait_done(page, images[0].name)
        _set_score(page, thr)
        page.screenshot(path=str(folder / "serve_page.png"))
    out = tmp_path / "pred"
    argv = ["predict", "--checkpoint", str(model), *map(str, images), "--out", str(out),
            "--score-thr", str(thr), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    page.goto((out / "index.html").as_uri())
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
    page.screenshot(path=str(folder / "predict_report.png"))
