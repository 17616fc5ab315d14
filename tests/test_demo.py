"""``darkseg demo --quick`` end to end, and the demo's pieces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from darkseg.cli import main
from darkseg.demo import DemoSettings, run_demo
from darkseg.demo.report import plot_loss_curve
from darkseg.utils.io import read_image

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    rc = main(["demo", "--quick", "--out", str(out), "--no-progress", "--seed", "1"])
    return rc, out


def test_quick_demo_writes_a_valid_report(quick_run):
    rc, out = quick_run
    assert rc == 0
    summary = json.loads((out / "metrics.json").read_text())
    for view in ("dark", "clean"):
        for iou_type in ("bbox", "segm"):
            m = summary["metrics"][view][iou_type]
            assert set(m) == set(METRICS)
            assert all(isinstance(v, float) and (v == -1.0 or 0.0 <= v <= 1.0) for v in m.values())
    assert summary["headline"]["segm_AP_dark"] == summary["metrics"]["dark"]["segm"]["AP"]
    assert summary["train"]["iterations"] == 4
    pictures = [out / "loss_curve.png", *[out / p for p in summary["overlays"]]]
    assert len(summary["overlays"]) == 2
    for p in pictures:
        img = read_image(p)
        assert img.ndim == 3 and img.shape[0] > 32 and img.shape[1] > 32 and img.std() > 0
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    assert "segm AP" in md and "loss_curve.png" in md and summary["overlays"][0] in md
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "<table>" in page and summary["overlays"][1] in page
    # an overlay is three panels side by side: dark input, prediction, ground truth
    ov = read_image(out / summary["overlays"][0])
    assert ov.shape[1] == 3 * 96 + 2 * 4


def test_quick_demo_data_layout(quick_run):
    _, out = quick_run
    test = json.loads((out / "data" / "test" / "annotations.json").read_text())
    dark = json.loads((out / "data" / "test_dark" / "annotations.json").read_text())
    assert dark["annotations"] == test["annotations"]
    assert [i["id"] for i in dark["images"]] == [i["id"] for i in test["images"]]
    assert json.loads((out / "data" / "test_dark" / "synth_config.json").read_text())["format"] == "png8"
    srgb = read_image(out / "data" / "test" / "images" / test["images"][0]["file_name"])
    noisy = read_image(out / "data" / "test_dark" / "images" / dark["images"][0]["file_name"])
    clean = read_image(out / "data" / "test_dark" / "clean" / dark["images"][0]["file_name"])
    assert srgb.shape == noisy.shape == clean.shape
    # the low-light renderings are darker than the sRGB scene, and the noisy one differs from the clean one
    assert noisy.mean() < srgb.mean() and clean.mean() < srgb.mean()
    assert np.abs(noisy.astype(int) - clean.astype(int)).mean() > 1.0
    log = (out / "train" / "log.jsonl").read_text().splitlines()
    assert len(log) == 4 and "loss_dsl" in json.loads(log[0])


def test_dark_test_set_png8_is_seeded(tmp_path):
    """The demo's dark test set is ``darkseg synth``'s folder job with 8-bit PNGs: same seed, same bytes;
    another seed, other noise; packed (4-channel) output cannot be a PNG."""
    from darkseg.data.scenes import generate_scenes
    from darkseg.synth import SynthConfig
    from darkseg.synth.offline import SynthJob, run_synth_folder

    d, ann = generate_scenes(tmp_path / "s", 2, (48, 32), seed=0, progress=False)
    cfg = SynthConfig(ratio_range=(20, 20))

    def job(name: str, seed: int, synth: SynthConfig = cfg) -> Path:
        run_synth_folder(
            SynthJob(d, ann, tmp_path / name, synth, seed=seed, fmt="png8", save_clean=True), progress=False
        )
        return tmp_path / name

    a, b, c = job("a", 5), job("b", 5), job("c", 6)
    for sub in ("images", "clean"):
        assert (a / sub / "000000.png").read_bytes() == (b / sub / "000000.png").read_bytes()
    assert (a / "images" / "000000.png").read_bytes() != (c / "images" / "000000.png").read_bytes()
    noisy, clean = read_image(a / "images" / "000000.png"), read_image(a / "clean" / "000000.png")
    assert noisy.dtype == np.uint8 and noisy.shape == clean.shape == (32, 48, 3)
    assert (
        json.loads((a / "annotations.json").read_text())["annotations"]
        == json.loads(ann.read_text())["annotations"]
    )
    with pytest.raises(ValueError, match="packed 4-channel output cannot be stored as an RGB PNG"):
        job("p", 0, SynthConfig(output="packed"))


def test_synth_cli_png8_holds_the_8bit_renderings(tmp_path):
    """``darkseg synth --format png8`` stores round(255 x): the 16-bit file of the same job / 257."""
    import cv2

    from darkseg.data.scenes import generate_scenes

    d, ann = generate_scenes(tmp_path / "s", 1, (48, 32), seed=0, progress=False)
    argv = ["synth", "--images", str(d), "--annotations", str(ann), "--no-progress", "--seed", "3"]
    assert main([*argv, "--out", str(tmp_path / "p8"), "--format", "png8"]) == 0
    assert main([*argv, "--out", str(tmp_path / "p16")]) == 0
    p8 = read_image(tmp_path / "p8" / "images" / "000000.png")
    p16 = cv2.imread(str(tmp_path / "p16" / "images" / "000000.png"), cv2.IMREAD_UNCHANGED)[:, :, ::-1]
    assert p8.dtype == np.uint8 and p16.dtype == np.uint16
    np.testing.assert_array_equal(p8.astype(np.uint16) * 257, p16)


def test_dark_test_set_stage_rewrites_or_reuses(tmp_path):
    """make_dark_test_set writes the set afresh (new scenes under the same file names never meet old
    renderings) unless ``reuse`` keeps a finished one."""
    from darkseg.data.scenes import generate_scenes
    from darkseg.demo.stages import make_dark_test_set
    from darkseg.synth import SynthConfig

    cfg = SynthConfig(ratio_range=(20, 20))
    d, ann = generate_scenes(tmp_path / "s", 2, (48, 32), seed=0, progress=False)
    dark = make_dark_test_set(d, ann, tmp_path / "dark", cfg, seed=1, progress=False)
    assert (dark.images, dark.clean, dark.ann_file) == (
        tmp_path / "dark" / "images",
        tmp_path / "dark" / "clean",
        tmp_path / "dark" / "annotations.json",
    )
    first = (dark.images / "000000.png").read_bytes()
    generate_scenes(tmp_path / "s", 2, (64, 48), seed=0, progress=False)  # same names, other scenes
    assert make_dark_test_set(d, ann, tmp_path / "dark", cfg, seed=1, reuse=True, progress=False) == dark
    assert (dark.images / "000000.png").read_bytes() == first
    make_dark_test_set(d, ann, tmp_path / "dark", cfg, seed=1, progress=False)
    assert (
        read_image(dark.images / "000000.png").shape
        == read_image(dark.clean / "000000.png").shape
        == (48, 64, 3)
    )
    plain = make_dark_test_set(d, ann, tmp_path / "plain", cfg, seed=1, save_clean=False, progress=False)
    assert plain.clean is None and not (tmp_path / "plain" / "clean").exists()


def test_loss_curve_needs_records(tmp_path):
    recs = [
        {"iter": i, "loss": 3.0 / i, "loss_mask": 1.0 / i, "clean_loss_mask": 0.9 / i, "loss_dsl": 0.01}
        for i in range(1, 30)
    ]
    plot_loss_curve(recs, tmp_path / "c.png")
    assert read_image(tmp_path / "c.png").shape[2] == 3
    with pytest.raises(ValueError, match="no training records"):
        plot_loss_curve([], tmp_path / "d.png")


def test_class_mismatch_is_reported(tmp_path):
    s = DemoSettings.quick()
    s.classes = ("disc", "box")
    with pytest.raises(ValueError, match="class_names"):
        run_demo(tmp_path, s, progress=False)


def test_rerun_into_a_demo_folder_needs_resume_or_overwrite(tmp_path, capsys):
    """A second demo into the same folder used to append a second run to train/log.jsonl (and draw
    both in the loss curve); now it is refused in one line, and --overwrite starts clean logs."""
    from darkseg.engine.logger import read_jsonl

    out = tmp_path / "demo"
    argv = ["demo", "--quick", "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out) in err and "--resume" in err and "--overwrite" in err
    assert main([*argv, "--overwrite"]) == 0
    iters = [r["iter"] for r in read_jsonl(out / "train" / "log.jsonl") if "eval" not in r]
    assert iters == [1, 2, 3, 4] and (out / "notes.txt").read_text() == "mine"
    # --resume continues the finished run: no new iterations, the report is written again
    assert main([*argv, "--resume"]) == 0
    assert [r["iter"] for r in read_jsonl(out / "train" / "log.jsonl") if "eval" not in r] == [1, 2, 3, 4]


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_demo_on_cuda_without_a_gpu_fails_at_once_in_one_line(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path / "d"), "--device", "cuda", "--no-progress"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "no CUDA device" in err and "--device cpu" in err
    assert not (tmp_path / "d").exists()  # refused before any data were generated
