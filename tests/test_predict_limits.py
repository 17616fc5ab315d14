"""Limits of prediction and of every checkpoint write: zero-frame videos, batches bounded by memory,
``--export-coco`` checked before any prediction, a full disk during ``torch.save`` / ``torch.jit.save``
as one line, and ``Predictor.predict`` given something that is not an input.
"""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from darkseg.cli import main
from darkseg.engine.predictor import InputFormatError, Predictor
from darkseg.models import ModelConfig, build_model, save_checkpoint
from darkseg.utils.io import write_image


def _tiny():
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(["person", "car"], min_size=64, max_size=96, box_score_thresh=0.0,
                           box_detections_per_img=5)  # fmt: skip
    return build_model(cfg).eval()


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, _tiny())
    return path


def _video(path: Path, n: int, h: int = 48, w: int = 64) -> Path:
    wr = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
    assert wr.isOpened()
    rng = np.random.default_rng(0)
    for _ in range(n):
        wr.write((rng.random((h, w, 3)) * 60).astype(np.uint8))
    wr.release()
    return path


def _predict(ckpt: Path, *args: str) -> int:
    return main(["predict", "--checkpoint", str(ckpt), "--no-progress", *args])


# ------------------------------------------------------------------------------------ zero frames


def test_zero_frame_video_is_an_error_not_a_silent_success(ckpt, tmp_path, capsys):
    video = _video(tmp_path / "empty.avi", 0)
    out = tmp_path / "o"
    assert _predict(ckpt, str(video), "--out", str(out)) == 1
    err = capsys.readouterr().err
    assert f"{video}: no frame could be read" in err and "Traceback" not in err
    info = json.loads((out / "images.json").read_text())
    assert info["videos"][0]["frames"] == 0
    assert any("no frame could be read" in e["error"] for e in info["errors"])


@pytest.mark.parametrize("value", ["0", "-5"])
def test_max_frames_below_one_is_an_argument_error(ckpt, tmp_path, capsys, value):
    """--max-frames 0 or -5 would read no frame and end as a zero-frame video."""
    with pytest.raises(SystemExit) as exc:
        _predict(ckpt, str(tmp_path / "v.avi"), "--out", str(tmp_path / "o"), "--max-frames", value)
    assert exc.value.code == 2
    assert f"argument --max-frames: must be an integer >= 1, got {value}" in capsys.readouterr().err


# ---------------------------------------------------------------------------- batches by memory


def _calls(model):
    calls: list[int] = []
    handle = model.register_forward_pre_hook(lambda mod, args: calls.append(len(args[0])))
    return calls, handle


def test_batches_are_cut_by_the_memory_budget(tmp_path):
    probe = Predictor(_tiny(), device="cpu", score_thr=0.0)
    per_input = probe.input_memory(60, 80)
    assert per_input > 0 and probe.max_batch(60, 80) >= 1
    pred = Predictor(_tiny(), device="cpu", score_thr=0.0, batch_memory=2 * per_input)
    assert pred.max_batch(60, 80) == 2
    g = torch.Generator().manual_seed(0)
    xs = [torch.rand(3, 60, 80, generator=g) for _ in range(5)]
    calls, h = _calls(pred.model)
    batched = pred.predict_batch(xs)
    h.remove()
    assert calls == [2, 2, 1]  # one grid, but at most 2 inputs per call
    singles = [pred.predict(x) for x in xs]
    for a, b in zip(singles, batched):
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    d = tmp_path / "imgs"
    for i in range(5):
        write_image(d / f"{i}.png", (xs[i].permute(1, 2, 0).numpy() * 255).astype(np.uint8))
    calls, h = _calls(pred.model)
    res = pred.predict_many([d], progress=False, preview=False, batch_size=100)
    h.remove()
    assert [r.ok for r in res] == [True] * 5 and calls == [2, 2, 1]


def test_batch_memory_must_be_positive():
    with pytest.raises(ValueError, match="batch_memory must be a number of bytes >= 1"):
        Predictor(_tiny(), device="cpu", batch_memory=0)


def test_cli_caps_a_huge_video_batch_and_says_so(ckpt, tmp_path, capsys):
    video = _video(tmp_path / "v.avi", 6)
    out = tmp_path / "o"
    rc = _predict(ckpt, str(video), "--out", str(out), "--batch-size", "1000", "--batch-memory", "0.0001")
    assert rc == 0
    err = capsys.readouterr().err
    assert f"{video}: --batch-size 1000 capped to 1 for 64x48 frames" in err
    assert json.loads((out / "images.json").read_text())["videos"][0]["frames"] == 6


# --------------------------------------------------------------------------- --export-coco path


def _export_case(tmp_path: Path, kind: str) -> Path:
    if kind == "folder":
        (tmp_path / "a_folder").mkdir()
        return tmp_path / "a_folder"
    if kind == "parent is a file":
        (tmp_path / "notes.txt").write_text("a user's file")
        return tmp_path / "notes.txt" / "labels.json"
    return Path("/proc/darkseg_labels.json")  # no file can be created there, not even by root


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("folder", "is a folder, not a file"),
        ("parent is a file", "notes.txt is not a folder"),
        ("unwritable folder", "cannot create a file in /proc"),
    ],
)
def test_bad_export_coco_path_is_refused_before_any_prediction(ckpt, tmp_path, capsys, kind, says):
    if kind == "unwritable folder" and not Path("/proc").is_dir():
        pytest.skip("needs /proc")
    target = _export_case(tmp_path, kind)
    img = tmp_path / "photo.png"
    write_image(img, np.full((48, 64, 3), 30, np.uint8))
    out = tmp_path / "o"
    assert _predict(ckpt, str(img), "--out", str(out), "--export-coco", str(target)) == 2
    err = capsys.readouterr().err
    assert f"darkseg predict: --export-coco {target}" in err and says in err and "Traceback" not in err
    assert not out.exists()  # nothing was predicted


def test_export_coco_checked_first_but_a_folder_still_to_be_made_is_fine(ckpt, tmp_path, capsys):
    img = tmp_path / "photo.png"
    write_image(img, np.full((48, 64, 3), 30, np.uint8))
    (tmp_path / "taken").mkdir()
    assert (
        _predict(ckpt, str(img), "--out", str(tmp_path / "o"), "--export-coco", str(tmp_path / "taken")) == 2
    )
    assert "is a folder, not a file" in capsys.readouterr().err and not (tmp_path / "o").exists()
    target = tmp_path / "o" / "labels" / "pre.json"  # missing folders under a writable one are made
    assert _predict(ckpt, str(img), "--out", str(tmp_path / "o"), "--export-coco", str(target)) == 0
    assert json.loads(target.read_text())["images"][0]["file_name"] == str(img)


# ------------------------------------------------------------------------------- a full disk


class _FullDisk:
    """A file whose writes fail with ENOSPC once ``room`` bytes are written (a disk filling up)."""

    def __init__(self, fh, room: int) -> None:
        self._fh, self.room = fh, room

    def write(self, data) -> int:
        n = len(data.encode()) if isinstance(data, str) else len(memoryview(data).cast("B"))
        if n > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= n
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def _fill_disk(monkeypatch) -> None:
    """Files opened from descriptors (the atomic writers' temporaries) get 4 KiB of room."""
    real = os.fdopen
    monkeypatch.setattr(os, "fdopen", lambda fd, mode="r", *a, **k: _FullDisk(real(fd, mode, *a, **k), 4096))


@pytest.fixture
def full_disk(monkeypatch):
    _fill_disk(monkeypatch)


def _no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".tmp")]


def test_full_disk_during_a_checkpoint_save_is_the_oserror(tmp_path, full_disk):
    from darkseg.utils.io import atomic_torch_save

    target = tmp_path / "epoch_1.pth"
    target.write_bytes(b"the previous checkpoint")
    with pytest.raises(OSError) as exc:
        atomic_torch_save({"w": torch.zeros(100_000)}, target)
    assert exc.value.errno == errno.ENOSPC and exc.value.filename == str(target)
    assert target.read_bytes() == b"the previous checkpoint" and _no_temporaries(tmp_path)
    with pytest.raises(OSError, match="No space left on device"):  # the training / convert writer
        save_checkpoint(tmp_path / "final.pth", _tiny())
    assert _no_temporaries(tmp_path)


def test_full_disk_during_export_is_one_line(ckpt, tmp_path, capsys, full_disk):
    out = tmp_path / "model.pt"
    rc = main(["export", "--checkpoint", str(ckpt), "--format", "torchscript", "--out", str(out)])
    assert rc == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"darkseg export: [Errno 28] No space left on device: '{out}'"]
    assert not out.exists() and _no_temporaries(tmp_path)


def test_full_disk_during_convert_is_one_line(tmp_path, capsys, monkeypatch):
    from test_mmdet_compat import _write_mmdet_checkpoint

    src = tmp_path / "lis.pth"
    _write_mmdet_checkpoint(src, "tiny_plain_caffe_seed0")
    _fill_disk(monkeypatch)
    out = tmp_path / "converted.pth"
    assert main(["convert", str(src), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"darkseg convert: [Errno 28] No space left on device: '{out}'"
    assert "Traceback" not in "\n".join(err) and not out.exists() and _no_temporaries(tmp_path)


# ------------------------------------------------------------------------- Predictor.predict(x)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        (["a.png", "b.png"], "got list; for several inputs use predict_batch or predict_many"),
        (None, "got NoneType"),
        (3.5, "got float"),
    ],
)
def test_predict_of_something_that_is_no_input_names_what_is_accepted(value, says):
    pred = Predictor(_tiny(), device="cpu")
    with pytest.raises(
        InputFormatError, match="a file path .*, a NumPy \\(H, W, C\\) array or a torch"
    ) as exc:
        pred.predict(value)
    assert says in str(exc.value)
