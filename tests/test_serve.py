"""``darkseg serve``'s HTTP API with Starlette's test client: answers, limits, errors, one inference at a
time, no file system. The web page itself is driven in a browser by ``tests/test_browser.py``."""

from __future__ import annotations

import asyncio
import base64
import mimetypes
import os
import sys
import threading
import time
from argparse import Namespace

import cv2
import numpy as np
import pytest

from conftest import shared_subdir, tiny_checkpoint

pytest.importorskip("starlette", reason="darkseg[serve] is not installed")
pytest.importorskip("python_multipart", reason="darkseg[serve] is not installed")
pytest.importorskip("httpx2", reason="Starlette's test client needs httpx2")

from starlette.testclient import TestClient  # noqa: E402

from darkseg.cli.serve import build_app, is_loopback  # noqa: E402
from darkseg.engine.predictor import Predictor  # noqa: E402
from darkseg.serve.app import create_app  # noqa: E402
from darkseg.serve.limits import RequestError, ServeLimits  # noqa: E402
from darkseg.serve.service import PredictionService, PredictOptions, safe_name  # noqa: E402
from darkseg.serve.upload import read_form  # noqa: E402

KODAK = "RAW_KODAK_DC50.KDC"
PHOTO = "000000444010.jpg"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt")


@pytest.fixture(scope="module")
def predictor(ckpt):
    return Predictor(ckpt, device="cpu", score_thr=0.0)


@pytest.fixture(scope="module")
def service(predictor):
    return PredictionService(
        predictor, ServeLimits(max_upload_bytes=1_000_000, max_pixels=400_000), "tiny.pt"
    )


@pytest.fixture(scope="module")
def client(service):
    with TestClient(create_app(service)) as c:
        yield c


def _photo() -> bytes:
    return (shared_subdir("tinycoco-seg") / "images" / "val2017" / PHOTO).read_bytes()


def _png(img: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[:, :, ::-1]))
    assert ok
    return buf.tobytes()


def _post(client, name: str, data: bytes, **fields):
    return client.post("/predict", files={"file": (name, data)}, data={k: str(v) for k, v in fields.items()})


def _same_detections(answer: dict, reference, score_thr: float) -> None:
    """The answer's detections are the reference prediction's above ``score_thr``, mask for mask."""
    from pycocotools import mask as mask_utils

    keep = reference.scores >= score_thr
    dets = answer["detections"]
    assert len(dets) == int(keep.sum()) > 0
    np.testing.assert_allclose([d["score"] for d in dets], reference.scores[keep], atol=1e-6)
    assert [d["class"] for d in dets] == [n for n, k in zip(reference.label_names, keep) if k]
    for d, m in zip(dets, reference.masks[keep]):
        got = mask_utils.decode(d["segmentation"]).astype(bool)
        np.testing.assert_array_equal(got, m)
        assert d["area"] == int(m.sum())


def test_health_model_and_page(client):
    assert client.get("/health").json()["status"] == "ok"
    m = client.get("/model").json()
    assert m["classes"] == ["person", "car"] and m["numerics"] == "torchvision" and m["in_channels"] == 3
    assert m["input_size"]["min_size"] == 96 and m["input_size"]["max_size"] == 128
    assert m["limits"] == {"max_upload_bytes": 1_000_000, "max_pixels": 400_000, "max_queue": 32}
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert "[[230, 25, 75], [60, 180, 75]" in page.text  # the overlay palette of draw_instances
    assert client.get("/static/../../etc/passwd").status_code == 404  # no route serves files


def test_photo_gives_the_predictors_detections(client, predictor):
    r = _post(client, PHOTO, _photo(), score_thr=0.38)
    assert r.status_code == 200, r.text
    a = r.json()
    assert (a["file"], a["kind"], a["width"], a["height"], a["ratio"]) == (PHOTO, "image", 640, 480, 1.0)
    _same_detections(a, predictor.predict(shared_subdir("tinycoco-seg") / "images" / "val2017" / PHOTO), 0.38)
    assert all(d["score"] >= 0.38 for d in a["detections"]) and "preview" not in a
    assert set(a["timings"]) == {"decode_s", "wait_s", "inference_s", "encode_s", "upload_s", "total_s"}


def test_camera_raw_with_ratio_and_preview(client, ckpt):
    raw = shared_subdir("raw-samples") / KODAK
    r = _post(client, KODAK, raw.read_bytes(), ratio=3, score_thr=0, preview=1)
    assert r.status_code == 200, r.text
    a = r.json()
    ref, pv = Predictor(ckpt, device="cpu", score_thr=0.0, ratio=3.0).predict_with_preview(raw)
    assert a["kind"] == "camera_raw" and (a["height"], a["width"]) == ref.image_size == (256, 384)
    assert a["ratio"] == 3.0
    _same_detections(a, ref, 0.0)
    head, b64 = a["preview"].split(",", 1)
    assert head == "data:image/jpeg;base64"
    jpg = cv2.imdecode(np.frombuffer(base64.b64decode(b64), np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    assert jpg.shape == pv.shape and np.abs(jpg.astype(int) - pv).mean() < 3  # JPEG of the same preview
    # "auto" is the Predictor's own choice for the file
    a2 = _post(client, KODAK, raw.read_bytes(), ratio="auto").json()
    assert a2["ratio"] == pytest.approx(
        Predictor(ckpt, device="cpu", ratio="auto").predict(raw).ratio, rel=1e-5
    )


def test_linear_changes_only_the_preview(client):
    img = (np.random.default_rng(0).random((60, 80, 3)) * 40).astype(np.uint8)
    a = _post(client, "lis.png", _png(img), linear=1, preview=1, score_thr=0).json()
    b = _post(client, "lis.png", _png(img), linear=0, preview=1, score_thr=0).json()
    assert a["linear"] and not b["linear"] and a["detections"] == b["detections"]
    assert a["preview"] != b["preview"]


@pytest.mark.parametrize(
    ("fields", "status", "words"),
    [
        ({"ratio": "abc"}, 422, "ratio must be a number > 0 or 'auto'"),
        ({"ratio": "-1"}, 422, "ratio"),
        ({"score_thr": "1.5"}, 422, "score_thr must be a number in [0, 1]"),
        ({"linear": "maybe"}, 422, "linear must be true or false"),
        ({"colour": "red"}, 422, "unknown form field(s) ['colour']"),
    ],
)
def test_bad_settings_are_named(client, fields, status, words):
    r = _post(client, "a.png", _png(np.zeros((8, 8, 3), np.uint8)), **fields)
    assert r.status_code == status and words in r.json()["error"]


def test_files_that_are_not_images_are_refused(client):
    r = _post(client, "notes.txt", b"hello, not a picture")
    assert (
        r.status_code == 415 and "not an image file" in r.json()["error"] and "notes.txt" in r.json()["error"]
    )
    r = _post(client, "fake.png", b"\x89PNG\r\n\x1a\n broken")
    assert r.status_code == 415
    r = _post(client, "x.dng", b"not a raw file at all")
    assert r.status_code == 422 and "not a camera RAW file LibRaw can decode" in r.json()["error"]
    r = _post(client, "empty.jpg", b"")
    assert r.status_code == 422 and "empty" in r.json()["error"]
    r = client.post("/predict", data={"ratio": "2"})
    assert r.status_code in (415, 422) and "file" in r.json()["error"]
    r = client.post("/predict", content=b"raw bytes", headers={"content-type": "image/png"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]


def test_upload_and_image_size_limits_name_the_limit(client):
    big = np.random.default_rng(1).integers(0, 255, (700, 700, 3), np.uint8)  # ~1.4 MB as PNG
    r = _post(client, "big.png", _png(big))
    assert (
        r.status_code == 413
        and "limit of 0.953674 MiB" in r.json()["error"]
        and "--max-upload-mb" in r.json()["error"]
    )
    wide = np.zeros((500, 1000, 3), np.uint8)  # compresses to a few kB, 500 000 pixels > 400 000
    r = _post(client, "wide.png", _png(wide))
    assert r.status_code == 422
    assert "1000 x 500 pixels is over the limit of 400000 pixels (--max-megapixels)" in r.json()["error"]


def test_upload_limit_while_streaming_without_content_length():
    """A body with no Content-Length is cut off as soon as it passes the limit, not read whole."""
    sent = []

    async def body():
        for _ in range(100):
            sent.append(1)
            yield (
                b"--xx\r\nContent-Disposition: form-data; name=file; filename=a.png\r\n\r\n" + b"\0" * 50_000
            )

    async def go():
        return await read_form("multipart/form-data; boundary=xx", None, body(), 100_000)

    with pytest.raises(RequestError, match="limit of") as info:
        asyncio.run(go())
    assert info.value.status == 413 and len(sent) < 10


def test_four_channel_model_refuses_photos(tmp_path):
    p4 = Predictor(tiny_checkpoint(tmp_path / "t4.pt", in_channels=4), device="cpu", score_thr=0.0)
    with TestClient(create_app(PredictionService(p4))) as c:
        r = _post(c, "photo.png", _png(np.zeros((40, 40, 3), np.uint8)))
        assert r.status_code == 422 and "packed RAW" in r.json()["error"]
        assert c.get("/model").json()["inputs"].startswith("camera RAW files")


_OPENED: list[str] | None = None  # paths opened while a test listens (the audit hook stays for good)


def _listen(event: str, args: tuple) -> None:
    if event == "open" and _OPENED is not None and isinstance(args[0], (str, bytes, os.PathLike)):
        path = os.fsdecode(args[0])
        if not path.endswith((".py", ".pyc", ".so")):  # lazy imports are not request data
            _OPENED.append(path)


def test_no_request_touches_the_file_system(client, predictor, tmp_path, monkeypatch):
    """The upload's name is only a suffix and a label: no file is opened while a photo and a camera RAW
    file named like paths are served, and files of those names in the working folder are not read."""
    global _OPENED
    photo, raw = _photo(), (shared_subdir("raw-samples") / KODAK).read_bytes()
    assert safe_name("../../etc/passwd.png") == "passwd.png" and safe_name("C:\\x\\..\\y.jpg") == "y.jpg"
    # decoys where a server that used the name as a path would look
    decoy = np.full((30, 50, 3), 200, np.uint8)
    (tmp_path / "photo.jpg").write_bytes(_png(decoy))
    (tmp_path / "cam.KDC").write_bytes(
        (shared_subdir("raw-samples") / "colorchart_Canon550D_MagicLantern.dng").read_bytes()
    )
    monkeypatch.chdir(tmp_path)
    mimetypes.init()  # the test client reads /etc/mime.types once, to label its upload
    sys.addaudithook(_listen)
    _OPENED = []
    try:
        r1 = _post(client, "../../../tmp/evil/../photo.jpg", photo, score_thr=0.38)
        r2 = _post(client, "/etc/shadow/../cam.KDC", raw)
        opened = list(_OPENED)
    finally:
        _OPENED = None
    assert opened == []
    assert r1.status_code == 200 and r1.json()["file"] == "photo.jpg", r1.text
    assert (r1.json()["height"], r1.json()["width"]) == (480, 640)  # the upload, not the decoy
    assert r2.status_code == 200 and r2.json()["kind"] == "camera_raw", r2.text
    assert (r2.json()["height"], r2.json()["width"]) == (256, 384)  # the Kodak upload, not the Canon decoy


def test_one_inference_at_a_time_and_answers_never_mixed(predictor):
    """Eight requests from eight threads: the model never runs twice at once, each answer is its own
    image's prediction."""
    service = PredictionService(predictor)
    active, peak, lock = [0], [0], threading.Lock()
    real = predictor.predict_loaded

    def watched(loaded):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        try:
            return real(loaded)
        finally:
            with lock:
                active[0] -= 1

    images = [(np.random.default_rng(s).random((48 + 8 * s, 64, 3)) * 60).astype(np.uint8) for s in range(8)]
    answers: list = [None] * 8
    service.predictor.predict_loaded = watched
    try:
        threads = [
            threading.Thread(target=lambda i=i: answers.__setitem__(
                i, service.predict(f"{i}.png", _png(images[i]), PredictOptions(score_thr=0.0))))
            for i in range(8)
        ]  # fmt: skip
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        del service.predictor.predict_loaded  # back to the class's method
    assert peak[0] == 1 and service.served == 8
    for i, a in enumerate(answers):
        assert a["file"] == f"{i}.png" and a["height"] == 48 + 8 * i
        _same_detections(a, predictor.predict(images[i]), 0.0)


def test_busy_server_answers_503(predictor):
    service = PredictionService(predictor, ServeLimits(max_queue=1))
    gate, entered = threading.Event(), threading.Event()
    real = predictor.predict_loaded

    def slow(loaded):
        entered.set()
        gate.wait(10)
        return real(loaded)

    service.predictor.predict_loaded = slow
    try:
        with TestClient(create_app(service)) as c:
            img = _png(np.zeros((32, 32, 3), np.uint8))
            first = threading.Thread(target=lambda: _post(c, "a.png", img))
            first.start()
            assert entered.wait(10)
            r = _post(c, "b.png", img)
            gate.set()
            first.join(10)
    finally:
        del service.predictor.predict_loaded
    assert r.status_code == 503 and "--max-queue" in r.json()["error"] and r.headers["retry-after"] == "1"


def test_cli_app_answers_only_loopback_hosts(ckpt):
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")
    args = Namespace(
        checkpoint=ckpt, host="127.0.0.1", port=0, device="cpu", dtype="float32", mask_thr=0.5,
        max_upload_mb=1.0, max_megapixels=0.5, max_queue=4,
    )  # fmt: skip
    with TestClient(build_app(args), base_url="http://127.0.0.1:8000") as c:
        assert c.get("/health").status_code == 200
        assert c.get("/health", headers={"host": "evil.example:8000"}).status_code == 400  # DNS rebinding
        assert c.get("/model").json()["limits"] == {
            "max_upload_bytes": 2**20,
            "max_pixels": 500_000,
            "max_queue": 4,
        }
    with TestClient(build_app(Namespace(**{**vars(args), "host": "0.0.0.0"}))) as c:
        assert c.get("/health", headers={"host": "my-laptop.lan"}).status_code == 200


def test_a_failing_model_call_is_a_json_500_and_the_server_goes_on(client, service):
    def broken(loaded):
        raise RuntimeError("out of memory (simulated)")

    img = _png(np.zeros((32, 32, 3), np.uint8))
    service.predictor.predict_loaded = broken
    try:
        r = _post(client, "a.png", img)
    finally:
        del service.predictor.predict_loaded
    assert r.status_code == 500
    assert r.json()["error"] == "internal error: RuntimeError: out of memory (simulated)"
    assert _post(client, "a.png", img).status_code == 200 and client.get("/health").json()["in_progress"] == 0
