"""Prediction on videos, webcams, globs and list files (engine.video / sources / stream, darkseg predict)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from darkseg.engine.predictor import Predictor
from darkseg.engine.sources import expand_sources
from darkseg.engine.stream import FrameLoader
from darkseg.engine.video import VideoOpenError, VideoSink, VideoSource, parse_webcam
from darkseg.models import ModelConfig, build_model, save_checkpoint
from darkseg.raw.exposure import GainEMA
from darkseg.utils.io import write_image

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(
        ["person", "car"], awd=True, scb=True, min_size=96, max_size=128, box_score_thresh=0.0,
        box_detections_per_img=10,
    )  # fmt: skip
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, build_model(cfg).eval())
    return path


def _frames(n: int, h: int = 72, w: int = 96, seed: int = 0) -> list[np.ndarray]:
    """Dark RGB frames with a moving brighter block."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        f = (rng.random((h, w, 3)) * 25).astype(np.uint8)
        x = 5 + 3 * i % (w - 40)
        f[20:50, x : x + 30] += np.array([40, 20, 0], np.uint8)  # reddish: checks the channel order
        out.append(f)
    return out


def _write_video(path: Path, frames: list[np.ndarray], fps: float = 12.0, fourcc: str = "MJPG") -> Path:
    h, w = frames[0].shape[:2]
    wr = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert wr.isOpened(), f"cannot write {path} with {fourcc}"
    for f in frames:
        wr.write(np.ascontiguousarray(f[:, :, ::-1]))
    wr.release()
    return path


def _read_all(path: Path) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    assert cap.isOpened(), path
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return frames, fps


def test_video_source_reads_frames_and_reports_early_end(tmp_path):
    frames = _frames(10)
    path = _write_video(tmp_path / "v.avi", frames)
    src = VideoSource(path)
    assert (src.width, src.height, src.frame_count) == (96, 72, 10) and src.fps == pytest.approx(12.0)
    got = list(src)
    assert [i for i, _ in got] == list(range(10)) and not src.problems
    assert got[0][1].shape == (72, 96, 3)
    chan = got[3][1].reshape(-1, 3).mean(0)  # RGB order (JPEG changes single pixels, not channel means)
    np.testing.assert_allclose(chan, frames[3].reshape(-1, 3).mean(0), atol=2)
    assert chan[0] > chan[2] + 5
    # a file cut in the middle: the header still announces 10 frames
    data = path.read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: int(len(data) * 0.6)])
    cut = VideoSource(tmp_path / "cut.avi")
    n = len(list(cut))
    assert 0 < n < 10
    assert len(cut.problems) == 1 and f"ended early at frame {n} of 10" in cut.problems[0]
    with pytest.raises(VideoOpenError, match="notes.txt"):
        (tmp_path / "notes.txt").write_text("not a video")
        VideoSource(tmp_path / "notes.txt")
    with pytest.raises(FileNotFoundError):
        VideoSource(tmp_path / "missing.mp4")


def test_video_source_skips_a_frame_that_does_not_decode(tmp_path):
    """FFmpeg conceals damaged MJPEG data (it returns a frame), so a decoder failure is simulated here
    by a reader whose read of frame 4 fails once."""

    class Flaky(VideoSource):
        calls = 0

        def _read(self):
            Flaky.calls += 1
            frame = super()._read()
            return None if Flaky.calls == 5 else frame

    src = Flaky(_write_video(tmp_path / "v.avi", _frames(8)))
    idx = [i for i, _ in src]
    assert idx == [0, 1, 2, 3, 5, 6, 7]
    assert src.problems == [f"{src.name}: frame(s) 4..4 could not be decoded; skipped"]


def test_webcam_that_does_not_exist_is_a_clear_error(ckpt, tmp_path, capsys):
    from darkseg.cli import main

    assert parse_webcam("cam:3") == 3 and parse_webcam("CAM:0") == 0 and parse_webcam("camera") is None
    with pytest.raises(VideoOpenError, match="cam:57: no camera could be opened at index 57"):
        VideoSource(57)
    rc = main(
        ["predict", "--checkpoint", str(ckpt), "--webcam", "57", "--out", str(tmp_path), "--no-progress"]
    )
    assert rc == 1
    assert "cam:57: no camera" in capsys.readouterr().err
    info = json.loads((tmp_path / "images.json").read_text())
    assert info["errors"][0]["file"] == "cam:57" and info["images"] == []


def test_expand_sources_globs_lists_webcams(tmp_path):
    d = tmp_path / "data"
    (d / "sub").mkdir(parents=True)
    for name in ("a.png", "b.jpg", "sub/c.png"):
        write_image(d / name, np.zeros((8, 8, 3), np.uint8))
    _write_video(d / "clip.avi", _frames(2))
    (d / "notes.txt").write_text("x")
    (tmp_path / "list.txt").write_text("# inputs\ndata/a.png\n\ndata/sub/*.png\ncam:1\ndata/none.png\n")
    srcs, missing = expand_sources([f"@{tmp_path / 'list.txt'}", str(d / "*.jpg"), str(d), str(d / "*.xyz")])
    names = [(s.kind, Path(s.name).name if s.path else s.name) for s in srcs]
    assert names == [
        ("image", "a.png"), ("image", "c.png"), ("webcam", "cam:1"), ("image", "b.jpg"),  # list, glob
        ("image", "a.png"), ("image", "b.jpg"), ("video", "clip.avi"),  # folder: images + videos, sorted
    ]  # fmt: skip
    assert len(missing) == 2 and "none.png" in missing[0] and "no file matches" in missing[1]
    rec, _ = expand_sources([str(d)], recursive=True)
    assert [Path(s.name).name for s in rec] == ["a.png", "b.jpg", "clip.avi", "c.png"]
    assert [Path(s.name).name for s in expand_sources([str(tmp_path / "**" / "*.png")])[0]] == [
        "a.png",
        "c.png",
    ]
    _, bad = expand_sources([f"@{tmp_path / 'nolist.txt'}"])
    assert "cannot read the list file" in bad[0]


def test_gain_ema_smooths_the_preview_gain(ckpt):
    ema = GainEMA(0.9)
    assert ema.update(4.0) == pytest.approx(4.0)
    assert ema.update(4.0) == pytest.approx(4.0)
    assert ema.update(8.0) == pytest.approx(4.0 * 2**0.1)  # log-domain step of 10 %
    with pytest.raises(ValueError):
        GainEMA(1.0)
    # frames whose brightness flickers by +-30 %: the raw preview gain follows, the smoothed one much less
    pred = Predictor(ckpt, device="cpu")
    base = _frames(1)[0].astype(np.float32)
    frames = [np.clip(base * (1.3 if i % 2 else 0.7), 0, 255).astype(np.uint8) for i in range(20)]
    raw = FrameLoader(pred, gain_ema=0.0)
    smooth = FrameLoader(pred, gain_ema=0.9)
    g_raw = [raw(f, "f").meta["preview_gain"] for f in frames]
    g_smooth = [smooth(f, "f").meta["preview_gain"] for f in frames]
    jump_raw = np.abs(np.diff(np.log(g_raw[10:]))).mean()
    jump_smooth = np.abs(np.diff(np.log(g_smooth[10:]))).mean()
    assert jump_raw > 0.5 and jump_smooth < 0.2 * jump_raw


def test_cli_video_batches_and_coco_export(ckpt, tmp_path, capsys):
    from pycocotools.coco import COCO

    from darkseg.cli import main

    vid = _write_video(tmp_path / "night.mp4", _frames(7), fps=15.0, fourcc="mp4v")
    out = tmp_path / "out"
    coco_path = tmp_path / "prelabels.json"
    argv = ["predict", "--checkpoint", str(ckpt), str(vid), "--out", str(out), "--score-thr", "0",
            "--batch-size", "3", "--gain-ema", "0.8", "--export-coco", str(coco_path), "--save-frames",
            "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "frames/s" in stdout and "7 image(s)/frame(s)" in stdout
    frames, fps = _read_all(out / "night_overlay.avi")
    assert len(frames) == 7 and fps == pytest.approx(15.0) and frames[0].shape == (72, 96, 3)
    info = json.loads((out / "images.json").read_text())
    assert [im["frame_index"] for im in info["images"]] == list(range(7))
    assert info["videos"][0]["frames"] == 7 and info["videos"][0]["overlay"] == "night_overlay.avi"
    lines = (out / "night_frames.jsonl").read_text().splitlines()
    assert [json.loads(x)["frame_index"] for x in lines] == list(range(7))
    # the COCO instances file: loads in pycocotools, masks equal the Predictor's on the same frames
    gt = COCO(str(coco_path))
    assert len(gt.getImgIds()) == 7 and [c["name"] for c in gt.loadCats(gt.getCatIds())] == ["person", "car"]
    predictor = Predictor(ckpt, device="cpu", score_thr=0.0)
    for index, frame in VideoSource(vid):
        img = gt.loadImgs([index + 1])[0]
        assert Path(img["file_name"]).is_file() and (img["width"], img["height"]) == (96, 72)
        ref = predictor.predict(frame)
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[img["id"]]))
        assert len(anns) == len(ref) > 0
        for a, m, s in zip(anns, ref.masks, ref.scores):
            assert a["iscrowd"] == 0 and a["score"] == pytest.approx(float(s), abs=1e-6)
            np.testing.assert_array_equal(gt.annToMask(a).astype(bool), m)


def _run_and_signal(ckpt, tmp_path, sig: int, n: int = 400) -> tuple[int, Path]:
    """Start ``darkseg predict`` on an ``n``-frame video in a subprocess, send ``sig`` once 20 frames are
    done and the annotated video has reached the disk; returns (exit status, output folder)."""
    vid = _write_video(tmp_path / "long.avi", _frames(n, seed=1), fps=10.0)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "darkseg", "predict", "--checkpoint", str(ckpt), str(vid), "--out", str(out),
           "--no-progress"]  # fmt: skip
    # SIGINT at its default in the child: a test run started in the background of a non-interactive
    # shell (`pytest &`) ignores SIGINT, and an ignored SIGINT is inherited, so Ctrl-C would never arrive
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    avi, jsonl = out / "long_overlay.avi", out / "long_frames.jsonl"
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = len(jsonl.read_text().splitlines()) if jsonl.exists() else 0
            if done >= 20 and avi.exists() and avi.stat().st_size > 200_000:
                break
            time.sleep(0.05)
        assert proc.poll() is None, f"the run ended before the signal: {proc.stderr.read()!r}"
        proc.send_signal(sig)
        rc = proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return rc, out


def test_killed_run_leaves_a_playable_video(ckpt, tmp_path):
    """SIGKILL mid-video: the partial annotated AVI opens and its frames read back."""
    n = 400
    rc, out = _run_and_signal(ckpt, tmp_path, signal.SIGKILL, n)
    assert rc == -signal.SIGKILL
    frames, fps = _read_all(out / "long_overlay.avi")
    assert not (out / "images.json").exists()  # the run did not finish ...
    done = [json.loads(x) for x in (out / "long_frames.jsonl").read_text().splitlines() if x.endswith("}")]
    assert 20 <= len(done) < n  # ... but the per-frame results written so far are kept
    # and the video holds the frames done, less the few in the writer's buffer (measured: 47 of 48)
    assert len(done) - 10 <= len(frames) <= len(done) and fps == pytest.approx(10.0)
    assert all(f.shape == (72, 96, 3) for f in frames)


def test_ctrl_c_finishes_the_files(ckpt, tmp_path):
    """SIGINT (Ctrl-C) mid-video: video closed with every predicted frame, JSON files written."""
    n = 400
    rc, out = _run_and_signal(ckpt, tmp_path, signal.SIGINT, n)
    assert rc == 1  # reported as a problem
    info = json.loads((out / "images.json").read_text())
    k = len(info["images"])
    assert 20 <= k < n and info["videos"][0]["frames"] == k
    assert "interrupted after" in info["errors"][-1]["error"]
    frames, _ = _read_all(out / "long_overlay.avi")
    assert k - 1 <= len(frames) <= k  # (Ctrl-C may land between a frame's results and its video frame)


def test_video_sink_checks_frames(tmp_path):
    with VideoSink(tmp_path / "s.avi", 5.0, (32, 24)) as sink:
        sink.write(np.zeros((24, 32, 3), np.uint8))
        with pytest.raises(ValueError, match="expected uint8"):
            sink.write(np.zeros((24, 31, 3), np.uint8))
    frames, fps = _read_all(tmp_path / "s.avi")
    assert len(frames) == 1 and fps == pytest.approx(5.0)
