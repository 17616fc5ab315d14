"""``darkseg synth`` on real COCO photos (tinycoco-seg): outputs, annotations, resume, bad files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from darkseg.cli import main


def _synth_args(images, ann, out, *extra: str) -> list[str]:
    """``darkseg synth`` arguments for one image folder, annotation file and output folder."""
    return [
        "synth",
        "--images",
        str(images),
        "--annotations",
        str(ann),
        "--out",
        str(out),
        "--no-progress",
        *extra,
    ]


@pytest.fixture(scope="module")
def tiny():
    from conftest import shared_subdir

    root = shared_subdir("tinycoco-seg")
    return root / "images" / "train2017", root / "annotations" / "instances_train2017.json"


@pytest.fixture(scope="module")
def reference_run(tiny, tmp_path_factory):
    images, ann = tiny
    out = tmp_path_factory.mktemp("ref")
    rc = main(_synth_args(images, ann, out, "--seed", "0"))
    assert rc == 0
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_output_count_format_and_annotations(tiny, reference_run):
    images, ann = tiny
    src = json.loads(ann.read_text())
    outs = sorted((reference_run / "images").iterdir())
    assert len(outs) == len(src["images"]) == 32
    out_ann = json.loads((reference_run / ann.name).read_text())
    # annotation identity: everything equal except the file_name suffix of each image
    assert out_ann["annotations"] == src["annotations"]
    assert out_ann["categories"] == src["categories"]
    for a, b in zip(out_ann["images"], src["images"]):
        assert a["file_name"] == str(Path(b["file_name"]).with_suffix(".png"))
        assert {k: v for k, v in a.items() if k != "file_name"} == {
            k: v for k, v in b.items() if k != "file_name"
        }
        img = cv2.imread(str(reference_run / "images" / a["file_name"]), cv2.IMREAD_UNCHANGED)
        assert img.dtype == np.uint16 and img.shape == (b["height"], b["width"], 3)
        # 8-bit pipeline stored in 16 bits: codes are multiples of 257
        assert not np.any(img % 257)


def test_resume_after_kill_gives_identical_files(tiny, reference_run, tmp_path):
    images, ann = tiny
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "darkseg", *_synth_args(images, ann, out, "--seed", "0")]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        d = out / "images"
        if d.is_dir() and sum(1 for p in d.iterdir() if p.suffix == ".png") >= 3:
            break
        time.sleep(0.005)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = sorted(p for p in (out / "images").iterdir() if p.suffix == ".png")
    assert len(finished) >= 3
    for p in finished:  # whatever survived under a final name is a complete, identical file
        assert p.read_bytes() == (reference_run / "images" / p.name).read_bytes()
    # a killed writer leaves at most a temporary file; plant one to check it is cleaned up
    (out / "images" / ".stale.png.abc123.tmp").write_bytes(b"partial")
    rc = main(_synth_args(images, ann, out, "--seed", "0"))
    assert rc == 0
    assert _files(out / "images") == _files(reference_run / "images")
    # resuming with different settings is refused
    rc = main(_synth_args(images, ann, out, "--seed", "1"))
    assert rc == 2


def test_bad_files_are_reported_and_the_rest_continue(tiny, reference_run, tmp_path, capsys):
    images, ann = tiny
    coco = json.loads(ann.read_text())
    coco["images"] = coco["images"][:5]
    kept = {im["id"] for im in coco["images"]}
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in kept]
    names = [im["file_name"] for im in coco["images"]]
    img_dir = tmp_path / "imgs"
    img_dir.mkdir()
    for n in names[2:]:
        shutil.copy(images / n, img_dir / n)
    (img_dir / names[0]).write_bytes(b"this is not a jpeg")  # corrupt
    # names[1] is missing
    small = tmp_path / "ann.json"
    small.write_text(json.dumps(coco))
    out = tmp_path / "out"
    rc = main(_synth_args(img_dir, small, out, "--workers", "2"))
    err = capsys.readouterr().err
    assert rc == 1
    assert names[0] in err and "not a decodable image" in err
    assert names[1] in err and "no such file" in err
    written = sorted(p.name for p in (out / "images").iterdir())
    assert written == sorted(str(Path(n).with_suffix(".png")) for n in names[2:])
    for n in written:  # the process pool gives the same bytes as the single-process reference
        assert (out / "images" / n).read_bytes() == (reference_run / "images" / n).read_bytes()


def test_bad_annotation_files(tiny, tmp_path, capsys):
    images, _ = tiny
    cases = {
        "empty.json": "",
        "broken.json": '{"images": [',
        "noimages.json": '{"annotations": []}',
        "zero.json": '{"images": []}',
    }
    expect = {
        "empty.json": "is empty",
        "broken.json": "malformed JSON",
        "noimages.json": "'images' list",
        "zero.json": "is empty",
    }
    for name, text in cases.items():
        p = tmp_path / name
        p.write_text(text)
        rc = main(_synth_args(images, p, tmp_path / "o"))
        err = capsys.readouterr().err
        assert rc == 2 and name in err and expect[name] in err, err
    rc = main(_synth_args(tmp_path / "nope", tmp_path / "zero.json", tmp_path / "o"))
    assert rc == 2 and "image folder not found" in capsys.readouterr().err


def test_packed_npy_output(tiny, tmp_path):
    images, ann = tiny
    coco = json.loads(ann.read_text())
    coco["images"] = [im for im in coco["images"] if im["height"] % 2 == 0 and im["width"] % 2 == 0][:2]
    kept = {im["id"] for im in coco["images"]}
    coco["annotations"] = [a for a in coco["annotations"] if a["image_id"] in kept]
    small = tmp_path / "ann.json"
    small.write_text(json.dumps(coco))
    out = tmp_path / "o"
    rc = main(_synth_args(images, small, out, "--format", "npy", "--output", "packed"))
    assert rc == 0
    for im in coco["images"]:
        arr = np.load(out / "images" / str(Path(im["file_name"]).with_suffix(".npy")))
        assert arr.shape == (im["height"] // 2, im["width"] // 2, 4) and arr.dtype == np.float32
    assert (
        main(_synth_args(images, small, tmp_path / "p", "--output", "packed")) == 2
    )  # png16 cannot hold 4 channels
