"""A job never writes over an input or over a file it did not write (``darkseg.utils.outputs``).

Every case was seen losing data before: ``convert SRC --out SRC``, ``export --out`` its checkpoint,
``predict --export-coco`` an existing photo (also after a shell glob), ``predict D --out D`` over a
user's ``x_overlay.png``, a video over an existing ``<stem>_frames.jsonl``, a fresh ``train`` over an
unrelated ``config.yaml``, ``demo`` deleting user files in ``data/test_dark/``, and ``--overwrite``
deleting user files that merely matched the job's name patterns. Each test checks that every
pre-existing user file is byte-identical afterwards and that a refusal is one line naming the file.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from darkseg.cli import main
from darkseg.utils.io import write_image

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _snapshot(*paths: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in paths}


def _assert_unchanged(snap: dict[Path, bytes]) -> None:
    for p, data in snap.items():
        assert p.is_file() and p.read_bytes() == data, f"{p} was changed"


def _one_line(capsys, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err and all(n in err for n in needles), err
    return err


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    from darkseg.models import ModelConfig, build_model, save_checkpoint

    torch.manual_seed(0)
    cfg = ModelConfig.tiny(["a", "b"], min_size=64, max_size=96, box_detections_per_img=5)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    save_checkpoint(path, build_model(cfg).eval())
    return path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> tuple[Path, Path]:
    """Two procedural scenes: ``(image folder, annotation file)``."""
    from darkseg.data.scenes import generate_scenes

    return generate_scenes(tmp_path_factory.mktemp("scenes"), 2, (64, 48), seed=0, progress=False)


def _photo(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    write_image(path, (rng.random((48, 64, 3)) * 60).astype(np.uint8))
    return path


# ------------------------------------------------------------------------------------------ the rule
def test_check_paths_refuses_outputs_over_inputs(tmp_path):
    from darkseg.errors import OutputError
    from darkseg.utils.outputs import check_paths

    src = _photo(tmp_path / "in" / "a.png")
    (tmp_path / "link.png").symlink_to(src)
    os.link(src, tmp_path / "hard.png")
    for out in (src, tmp_path / "link.png", tmp_path / "hard.png"):  # same path, symlink, hard link
        with pytest.raises(OutputError, match="is the input"):
            check_paths("job", [src], files=[out])
    for folder in (tmp_path / "in", tmp_path, Path("/")):
        with pytest.raises(OutputError, match="contains the input|is the input|root"):
            check_paths("job", [src], folders=[folder])
    with pytest.raises(OutputError, match="is a folder"):
        check_paths("job", [], files=[tmp_path / "in"])
    with pytest.raises(OutputError, match="is a file"):
        check_paths("job", [], folders=[src])
    check_paths("job", [src], files=[tmp_path / "b.png"], folders=[tmp_path / "in" / "sub"])  # fine


def test_record_replaces_and_removes_only_what_the_job_wrote(tmp_path):
    from darkseg.errors import OutputError
    from darkseg.utils.outputs import RECORD_NAME, OutputRecord

    user = {
        tmp_path / n: n.encode() for n in ("results_mine.json", "epoch_9.pth", "tb/events.out.tfevents.me")
    }
    for p, data in user.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    (tmp_path / ".epoch_9.pth.abcd1234.tmp").write_bytes(b"user's hidden file")
    rec = OutputRecord(tmp_path, "train")
    with pytest.raises(OutputError, match=r"epoch_9\.pth: exists and was not written by darkseg train"):
        rec.claim(["last.pth", "epoch_9.pth"])
    assert rec.owned() == set()  # a refused claim records nothing
    rec.claim(["last.pth", "tb/events.out.tfevents.run"])
    (tmp_path / "last.pth").write_bytes(b"ours")
    (tmp_path / "tb/events.out.tfevents.run").write_bytes(b"ours")
    (tmp_path / ".last.pth.abcd1234.tmp").write_bytes(b"killed write")
    assert OutputRecord(tmp_path, "export").owned() == set()  # another job's files are not export's
    with pytest.raises(OutputError, match="written by darkseg train"):
        OutputRecord(tmp_path, "export").claim(["last.pth"])
    assert rec.remove_stale_temporaries() == [tmp_path / ".last.pth.abcd1234.tmp"]
    assert sorted(rec.remove_recorded()) == [tmp_path / "last.pth", tmp_path / "tb/events.out.tfevents.run"]
    _assert_unchanged({**user, tmp_path / ".epoch_9.pth.abcd1234.tmp": b"user's hidden file"})
    assert not (tmp_path / RECORD_NAME).exists()  # nothing recorded any more
    with pytest.raises(OutputError, match="record of the files written"):
        rec.claim([RECORD_NAME])  # an output named like the record would destroy it


def test_concurrent_claims_keep_every_entry(tmp_path):
    """Jobs writing into one folder at once (several ``synth`` runs) never lose each other's entries."""
    from darkseg.utils.outputs import OutputRecord

    def worker(k: int) -> None:
        rec = OutputRecord(tmp_path, "synth")
        for i in range(15):
            rec.claim([f"images/{k}_{i}.png"])

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(OutputRecord(tmp_path, "synth").owned()) == 6 * 15


# ---------------------------------------------------------------------------- convert, export, evaluate
def test_convert_never_replaces_its_source_or_a_foreign_file(tmp_path, capsys, monkeypatch):
    from test_mmdet_compat import _write_mmdet_checkpoint

    src = tmp_path / "lis.pth"
    _write_mmdet_checkpoint(src, "tiny_awd_scb_resize")
    other = tmp_path / "notes.pth"
    other.write_bytes(b"someone else's file")
    snap = _snapshot(src, other)
    assert main(["convert", str(src), "--out", str(src)]) != 0
    _one_line(capsys, str(src), "is the input")
    assert main(["convert", str(src), "--out", str(other)]) != 0
    _one_line(capsys, str(other), "not written by darkseg convert")
    monkeypatch.chdir(tmp_path)
    assert main(["convert", str(src), "--out", "."]) != 0
    _one_line(capsys, "is a folder")
    _assert_unchanged(snap)
    dst = tmp_path / "converted.pth"
    assert main(["convert", str(src), "--out", str(dst)]) == 0
    assert main(["convert", str(src), "--out", str(dst)]) == 0  # its own file: replaced on a re-run
    _assert_unchanged(snap)


def test_export_never_replaces_its_checkpoint_or_a_foreign_file(ckpt, tmp_path, capsys):
    other = tmp_path / "model.ts"
    other.write_bytes(b"a model from elsewhere")
    snap = _snapshot(ckpt, other)
    for out, needle in ((ckpt, "is the input"), (other, "not written by darkseg export")):
        assert main(["export", "--checkpoint", str(ckpt), "--format", "torchscript", "--out", str(out)]) != 0
        _one_line(capsys, str(out), needle)
    _assert_unchanged(snap)


def test_evaluate_json_never_replaces_the_ground_truth(scenes, tmp_path, capsys):
    _, ann = scenes
    gt = tmp_path / "gt.json"
    gt.write_bytes(ann.read_bytes())
    coco = json.loads(gt.read_text())
    results = [
        {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 0.9}
        for a in coco["annotations"]
    ]
    res = tmp_path / "res.json"
    res.write_text(json.dumps(results))
    snap = _snapshot(gt, res)
    argv = ["evaluate", "--annotations", str(gt), "--results", str(res), "--iou-type", "bbox"]
    assert main([*argv, "--json", str(gt)]) != 0
    _one_line(capsys, str(gt), "is the input")
    _assert_unchanged(snap)
    assert main([*argv, "--json", str(tmp_path / "metrics.json")]) == 0


def test_calibrate_never_replaces_an_input_or_a_foreign_file(tmp_path, capsys):
    dng = tmp_path / "a.dng"
    dng.write_bytes(b"DNG bytes")
    other = tmp_path / "MyCam.json"
    other.write_text("{}")
    snap = _snapshot(dng, other)
    assert main(["calibrate", "--dng-profile", str(dng), "--out", str(dng)]) != 0
    _one_line(capsys, str(dng), "is the input")
    assert main(["calibrate", "--dng-profile", str(dng), "--out", str(other)]) != 0
    _one_line(capsys, str(other), "not written by darkseg calibrate")
    _assert_unchanged(snap)


# ------------------------------------------------------------------------------------------- predict
def _predict(ckpt: Path, *argv: str) -> int:
    return main(["predict", "--checkpoint", str(ckpt), "--no-progress", *argv])


def test_predict_export_coco_never_replaces_a_photo(ckpt, tmp_path, capsys):
    """``--export-coco shoot/*.png`` expands to ``--export-coco shoot/a.png shoot/b.png``: a.png was
    replaced by JSON; and an --export-coco that is an input."""
    a, b = _photo(tmp_path / "shoot" / "a.png", 1), _photo(tmp_path / "shoot" / "b.png", 2)
    snap = _snapshot(a, b)
    out = tmp_path / "pred"
    assert _predict(ckpt, "--export-coco", str(a), str(b), "--out", str(out)) != 0
    _one_line(capsys, str(a), "not written by darkseg predict")
    assert _predict(ckpt, str(a), str(b), "--export-coco", str(b), "--out", str(out)) != 0
    _one_line(capsys, str(b), "is the input")
    _assert_unchanged(snap)
    assert not out.exists()  # refused before any work
    labels = tmp_path / "labels.json"
    assert _predict(ckpt, str(a), "--export-coco", str(labels), "--out", str(out)) == 0
    assert _predict(ckpt, str(a), "--export-coco", str(labels), "--out", str(out), "--overwrite") == 0
    _assert_unchanged(snap)


def test_predict_never_writes_among_its_inputs(ckpt, tmp_path, capsys, monkeypatch):
    d = tmp_path / "shoot"
    x = _photo(d / "x.png", 3)
    mine = d / "x_overlay.png"
    mine.write_bytes(b"the user's own overlay")
    snap = _snapshot(x, mine)
    assert _predict(ckpt, str(d), "--out", str(d)) != 0
    _one_line(capsys, str(d), "output folder is the input")
    monkeypatch.chdir(d)
    assert _predict(ckpt, "x.png", "--out", ".") != 0
    _one_line(capsys, "contains the input")
    # the root: refused before the checkpoint is even read (a missing one here)
    assert _predict(tmp_path / "none.pt", str(x), "--out", "/") != 0
    _one_line(capsys, "file-system root")
    _assert_unchanged(snap)
    from darkseg.utils.outputs import RECORD_NAME

    assert not (d / "results.json").exists() and not (d / RECORD_NAME).exists()
    # a user file under a name the run would write is refused by name, also with --overwrite
    out = tmp_path / "pred"
    out.mkdir()
    (out / "x_overlay.png").write_bytes(b"another user file")
    snap.update(_snapshot(out / "x_overlay.png"))
    for extra in ([], ["--overwrite"]):
        assert _predict(ckpt, str(x), "--out", str(out), *extra) != 0
        _one_line(capsys, str(out / "x_overlay.png"), "not written by darkseg predict")
    _assert_unchanged(snap)


def test_predict_video_never_truncates_a_foreign_frames_file(ckpt, tmp_path, capsys):
    import cv2

    video = tmp_path / "clip.avi"
    wr = cv2.VideoWriter(str(video), cv2.CAP_FFMPEG, cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 48))
    assert wr.isOpened()
    for i in range(3):
        wr.write(np.full((48, 64, 3), 20 * i, np.uint8))
    wr.release()
    out = tmp_path / "pred"
    out.mkdir()
    mine = out / "clip_frames.jsonl"
    mine.write_text('{"my": "notes"}\n')
    snap = _snapshot(video, mine)
    assert _predict(ckpt, str(video), "--out", str(out), "--no-overlay") != 0
    _one_line(capsys, str(mine), "not written by darkseg predict")
    _assert_unchanged(snap)
    mine.unlink()
    assert _predict(ckpt, str(video), "--out", str(out), "--save-frames") == 0
    from darkseg.utils.outputs import OutputRecord

    assert {f"frames/clip/{i:06d}.png" for i in range(3)} <= OutputRecord(out, "predict").owned()
    (out / "frames" / "clip" / "notes.txt").write_text("mine")
    assert _predict(ckpt, str(video), "--out", str(out), "--save-frames", "--overwrite") == 0
    assert (out / "frames" / "clip" / "notes.txt").read_text() == "mine"


# ------------------------------------------------------------------------------------------ synth
def test_synth_never_writes_among_its_inputs_or_over_foreign_files(scenes, tmp_path, capsys):
    images, ann = scenes
    d = tmp_path / "photos"
    d.mkdir()
    for p in images.iterdir():
        (d / p.name).write_bytes(p.read_bytes())
    local_ann = d / "annotations.json"
    local_ann.write_bytes(ann.read_bytes())
    snap = _snapshot(*d.iterdir())
    argv = ["synth", "--images", str(d), "--annotations", str(local_ann), "--format", "png8", "--no-progress"]
    assert main([*argv, "--out", str(d)]) != 0
    _one_line(capsys, str(d), "is the input")
    out = tmp_path / "dark"
    first = sorted(p.name for p in images.iterdir())[0]
    (out / "images").mkdir(parents=True)
    (out / "images" / first).write_bytes(b"a user's picture")
    snap.update(_snapshot(out / "images" / first))
    assert main([*argv, "--out", str(out)]) != 0
    _one_line(capsys, str(out / "images" / first), "not written by darkseg synth")
    _assert_unchanged(snap)
    (out / "images" / first).unlink()
    del snap[out / "images" / first]
    assert main([*argv, "--out", str(out)]) == 0
    assert main([*argv, "--out", str(out)]) == 0  # a re-run resumes: its own files are reused
    _assert_unchanged(snap)


# ------------------------------------------------------------------------------------------ train
def _train_argv(scenes, out: Path, *extra: str) -> list[str]:
    from darkseg.demo.job import QUICK_OVERRIDES

    images, ann = scenes
    sets = [
        *QUICK_OVERRIDES,
        "train.max_iters=1",
        "train.keep_epoch_checkpoints=false",
        f"data.train.image_dir={images}",
        f"data.train.ann_file={ann}",
        "data.val=null",
        *extra,
    ]
    return ["train", "demo", "--out", str(out), "--device", "cpu", "--no-progress"] + [
        a for s in sets for a in ("--set", s)
    ]


def test_train_never_replaces_a_foreign_config_and_overwrite_keeps_user_files(scenes, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("my: own config\n")
    snap = _snapshot(run / "config.yaml")
    assert main(_train_argv(scenes, run)) != 0
    _one_line(capsys, str(run / "config.yaml"), "not written by darkseg train")
    _assert_unchanged(snap)
    assert not (run / "last.pth").exists()  # refused before any work
    (run / "config.yaml").unlink()
    assert main(_train_argv(scenes, run)) == 0
    # user files that merely match the names the old --overwrite removed by pattern
    user = {run / n: n.encode() for n in ("results_mine.json", "epoch_99.pth", "tb/events.out.tfevents.me")}
    for p, data in user.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    assert main(_train_argv(scenes, run, "train.max_iters=2") + ["--overwrite"]) == 0
    _assert_unchanged(user)
    assert main(_train_argv(scenes, run, "train.max_iters=3") + ["--resume"]) == 0  # resume still works
    assert json.loads((run / "summary.json").read_text())["iterations"] == 3
    _assert_unchanged(user)


def test_train_never_writes_into_its_config_folder(scenes, tmp_path, capsys):
    from darkseg.config import config_to_yaml, load_config

    folder = tmp_path / "exp"
    folder.mkdir()
    cfg_file = folder / "config.yaml"
    argv = _train_argv(scenes, folder)
    sets = [argv[i + 1] for i, a in enumerate(argv) if a == "--set"]
    cfg_file.write_text(config_to_yaml(load_config("demo", sets)))
    snap = _snapshot(cfg_file)
    assert main(["train", str(cfg_file), "--out", str(folder), "--device", "cpu", "--no-progress"]) != 0
    _one_line(capsys, str(folder), "contains the input")
    _assert_unchanged(snap)


# ------------------------------------------------------------------------------------------- demo
def test_demo_keeps_user_files_in_its_folders(tmp_path, capsys):
    out = tmp_path / "demo"
    dark = out / "data" / "test_dark"
    user = {
        dark / "images" / "mine.png": b"user image",
        dark / "clean" / "mine.png": b"user clean image",
    }
    for p, data in user.items():
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    argv = ["demo", "--quick", "--out", str(out), "--no-progress", "--device", "cpu"]
    (dark / "images" / "000000.png").write_bytes(b"user file under a name the demo writes")
    assert main(argv) != 0
    _one_line(capsys, str(dark / "images" / "000000.png"), "not written by darkseg synth")
    assert not (out / "data" / "train").exists()  # refused before any stage ran
    (dark / "images" / "000000.png").unlink()
    assert main(argv) == 0  # first run, no --overwrite: used to delete images/ and clean/
    _assert_unchanged(user)
    # files that merely match the names the old --overwrite removed by pattern
    more = {
        out / "overlays" / "123.png": b"user overlay",
        out / "train" / "results_mine.json": b"{}",
        out / "eval" / "notes.txt": b"notes",
    }
    for p, data in more.items():
        p.write_bytes(data)
    user.update(more)
    assert main([*argv, "--overwrite"]) == 0
    _assert_unchanged(user)
    assert main([*argv, "--resume"]) == 0
    _assert_unchanged(user)


# ------------------------------------------------------------------------------------- --out /
def test_the_root_is_never_an_output_folder(scenes, tmp_path, capsys):
    """``--out /`` is refused before any work by every job that writes a folder. (Each case also fails
    early for another reason that the refusal must come before: a missing annotation file, a missing
    CUDA device, an unreadable DNG, so that no version of darkseg ever writes into / here.)"""
    argv = _train_argv(scenes, Path("/"), f"data.train.ann_file={tmp_path / 'missing.json'}")
    assert main(argv) != 0
    _one_line(capsys, "file-system root")
    assert main(["demo", "--quick", "--out", "/", "--no-progress", "--device", "cuda:99"]) != 0
    _one_line(capsys, "file-system root")
    dng = tmp_path / "a.dng"
    dng.write_bytes(b"DNG bytes")
    assert (
        main(["calibrate", "--dng-profile", str(dng), "--out", str(tmp_path / "p.json"), "--plots", "/"]) != 0
    )
    _one_line(capsys, "file-system root")
