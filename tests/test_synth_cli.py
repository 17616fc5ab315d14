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
    # a killed writer leaves at most a temporary file of one of its outputs; plant one to check it is
    # cleaned up (mkstemp-style name)
    victim = sorted(p.name for p in (reference_run / "images").iterdir())[-1]
    (out / "images" / f".{victim}.abc_1234.tmp").write_bytes(b"partial")
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
    # the annotation file lists only the images that were written, with only their annotations
    out_ann = json.loads((out / "ann.json").read_text())
    assert sorted(im["file_name"] for im in out_ann["images"]) == written
    kept_ids = {im["id"] for im in coco["images"][2:]}
    assert {a["image_id"] for a in out_ann["annotations"]} <= kept_ids
    assert len(out_ann["annotations"]) == sum(a["image_id"] in kept_ids for a in coco["annotations"])
    assert "2 failed image(s) and their annotations left out" in err


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
    out_ann = json.loads((out / "ann.json").read_text())
    for im, new in zip(coco["images"], out_ann["images"]):
        arr = np.load(out / "images" / str(Path(im["file_name"]).with_suffix(".npy")))
        assert arr.shape == (im["height"] // 2, im["width"] // 2, 4) and arr.dtype == np.float32
        assert (new["height"], new["width"]) == arr.shape[:2]  # the annotations fit the arrays
    ids = {im["id"] for im in coco["images"]}
    src_anns = [a for a in coco["annotations"] if a["image_id"] in ids]
    assert len(out_ann["annotations"]) == len(src_anns) > 0
    for a, b in zip(src_anns, out_ann["annotations"]):
        assert b["bbox"] == [v / 2 for v in a["bbox"]] and b["area"] == pytest.approx(a["area"] / 4)
    assert (
        main(_synth_args(images, small, tmp_path / "p", "--output", "packed")) == 2
    )  # png16 cannot hold 4 channels


def test_half_resolution_annotations_rescale_polygons_rle_boxes_and_areas():
    """Packed output: a mask given as polygon and as RLE lands on the same half-resolution pixels."""
    from pycocotools import mask as mask_utils

    from darkseg.synth.offline import half_resolution_annotations

    h, w = 40, 60
    poly = [10.0, 8.0, 50.0, 8.0, 50.0, 30.0, 10.0, 30.0]  # a 40 x 22 rectangle
    full = mask_utils.decode(mask_utils.frPyObjects([poly], h, w))[:, :, 0]
    rle = mask_utils.encode(np.asfortranarray(full))
    uncompressed = {"size": [h, w], "counts": [int(v) for v in _uncompressed_counts(full)]}
    coco = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": w, "height": h}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 8, 40, 22], "area": 880.0,
             "segmentation": [poly], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [10, 8, 40, 22], "area": 880.0,
             "segmentation": {"size": [h, w], "counts": rle["counts"].decode()}, "iscrowd": 1},
            {"id": 3, "image_id": 1, "category_id": 1, "bbox": [10, 8, 40, 22], "area": 880.0,
             "segmentation": uncompressed, "iscrowd": 1},
        ],
    }  # fmt: skip
    half = half_resolution_annotations(coco)
    assert coco["images"][0]["width"] == w  # the input is left alone
    assert (half["images"][0]["width"], half["images"][0]["height"]) == (30, 20)
    p, r, u = half["annotations"]
    assert p["bbox"] == r["bbox"] == [5.0, 4.0, 20.0, 11.0] and p["area"] == 220.0
    assert p["segmentation"] == [[v / 2 for v in poly]]
    m_poly = mask_utils.decode(mask_utils.frPyObjects(p["segmentation"], 20, 30))[:, :, 0]
    m_rle = mask_utils.decode({"size": r["segmentation"]["size"], "counts": r["segmentation"]["counts"]})
    assert r["segmentation"]["size"] == [20, 30] and r["area"] == float(m_rle.sum()) == u["area"]
    assert (m_rle != m_poly).sum() <= 0.1 * m_poly.sum()  # rasterisation differs only along edges
    json.dumps(half)  # still plain JSON


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed RLE counts (column-major runs, starting with zeros)."""
    flat = mask.flatten(order="F")
    counts, value, run = [], 0, 0
    for v in flat:
        if v != value:
            counts.append(run)
            value, run = v, 0
        run += 1
    counts.append(run)
    return counts


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (Linux /proc)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _large_images(tiny, folder: Path, n: int = 8, size: tuple[int, int] = (1200, 800)) -> Path:
    """``n`` photos upscaled to ``size`` (W, H) and their annotation file (images only), so that the
    job still runs when the first output appears."""
    images, ann = tiny
    src = json.loads(ann.read_text())["images"][:n]
    folder.mkdir()
    entries = []
    for im in src:
        img = cv2.resize(cv2.imread(str(images / im["file_name"])), size, interpolation=cv2.INTER_LINEAR)
        cv2.imwrite(str(folder / im["file_name"]), img, [cv2.IMWRITE_JPEG_QUALITY, 80])
        entries.append({"id": im["id"], "file_name": im["file_name"], "width": size[0], "height": size[1]})
    path = folder / "ann.json"
    path.write_text(json.dumps({"images": entries, "annotations": [], "categories": []}))
    return path


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_exit_when_the_parent_is_killed(tiny, tmp_path):
    """``kill -9`` of a real ``darkseg synth --workers 2`` process: its worker processes (each holding a
    synthesiser and image buffers) used to live on, blocked, indefinitely; now they are gone within a
    few seconds."""
    ann = _large_images(tiny, tmp_path / "big")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "darkseg", *_synth_args(ann.parent, ann, out, "--workers", "2")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    workers: list[int] = []
    try:
        deadline = time.time() + 180
        while time.time() < deadline and proc.poll() is None:
            workers = [k for k in _children(proc.pid) if b"spawn_main" in _cmdline(k)]
            d = out / "images"
            if len(workers) == 2 and d.is_dir() and any(p.suffix == ".png" for p in d.iterdir()):
                break
            time.sleep(0.05)
        assert proc.poll() is None and len(workers) == 2, "the job ended before its workers were seen"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.time() + 3
        while time.time() < deadline and any(_alive(w) for w in workers):
            time.sleep(0.05)
        assert not [w for w in workers if _alive(w)], "worker processes outlived the killed parent"
    finally:
        for w in workers:
            if _alive(w):
                os.kill(w, signal.SIGKILL)
        if proc.poll() is None:
            proc.kill()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# ------------------------------------------------------------------------------ --config / --set
def _parsed(*argv: str):
    import argparse

    from darkseg.cli import synth as synth_cli

    parser = argparse.ArgumentParser()
    synth_cli.add_arguments(parser)
    return synth_cli.synth_config(
        parser.parse_args(["--images", "i", "--annotations", "a", "--out", "o", *argv])
    )


def test_synth_settings_come_from_config_set_and_flags_in_that_order(tmp_path):
    from darkseg.config import ConfigError
    from darkseg.synth import SynthConfig

    assert _parsed() == SynthConfig()  # no --config: the defaults, as before
    cfg = tmp_path / "exp.yaml"
    cfg.write_text("synth:\n  camera: SonyA7S2\n  ratio_range: [20, 40]\n  render_gamma: true\n")
    got = _parsed("--config", str(cfg))  # a file with only a synth section is enough
    assert (got.camera, got.ratio_range, got.render_gamma) == ("SonyA7S2", (20.0, 40.0), True)
    got = _parsed("--config", str(cfg), "--set", "synth.ratio_range=[30, 60]", "--set", "synth.output=binned")
    assert (got.camera, got.ratio_range, got.output) == ("SonyA7S2", (30.0, 60.0), "binned")
    got = _parsed(
        "--config", str(cfg), "--set", "synth.camera=NikonD850", "--camera", "CanonEOS5D4", "--no-8bit"
    )
    assert (got.camera, got.quantize_8bit, got.render_gamma) == ("CanonEOS5D4", False, True)  # flags win
    got = _parsed("--config", str(cfg), "--ratio", "5", "6", "--legacy-swap-rb")
    assert got.ratio_range == (5.0, 6.0) and got.legacy_swap_rb and got.camera == "SonyA7S2"
    assert _parsed("--config", "tiny_coco_cpu") == load_config_synth("tiny_coco_cpu")  # packaged, _base_
    assert _parsed("--set", "synth.per_pixel_quantisation=true").per_pixel_quantisation
    with pytest.raises(ConfigError, match=r"exp\.yaml with --set synth.camera=Nope: synth\.camera: unknown"):
        _parsed("--config", str(cfg), "--set", "synth.camera=Nope")
    with pytest.raises(ConfigError, match=r"--set 'train.lr=1': darkseg synth reads only the synth section"):
        _parsed("--set", "train.lr=1")
    with pytest.raises(ConfigError, match=r"coco2lis_baseline: synth is null"):
        _parsed("--config", "coco2lis_baseline")
    cfg.write_text("synth:\n  cam: SonyA7S2\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml: unknown key 'synth\.cam'"):
        _parsed("--config", str(cfg))


def load_config_synth(name: str):
    from darkseg.config import load_config

    return load_config(name).synth


def test_synth_cli_runs_with_the_config_settings(tmp_path, monkeypatch, capsys):
    """The job gets the resolved settings; a bad config is one error line and exit status 2."""
    import types

    import darkseg.synth.offline as offline

    jobs = []

    def fake_run(job, progress):
        jobs.append(job)
        return types.SimpleNamespace(removed_temporaries=[], written=0, skipped=0, failed=[], ok=True)

    monkeypatch.setattr(offline, "run_synth_folder", fake_run)
    args = _synth_args(tmp_path, tmp_path / "a.json", tmp_path / "out")
    assert main([*args, "--config", "demo", "--set", "synth.output=binned"]) == 0
    assert jobs[0].cfg.ratio_range == (10.0, 50.0) and jobs[0].cfg.output == "binned"  # demo.yaml's ratio
    assert main([*args, "--config", "demo", "--set", "synth.ratio_range=[9, 1]"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "synth.ratio_range" in err and "demo.yaml" in err
