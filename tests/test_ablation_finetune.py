"""Smoke test of ``benchmarks/ablation.py --preset finetune`` at a tiny size (seconds), and its statistics."""

from __future__ import annotations

import importlib.util
import json
import math
import shutil

import pytest

from conftest import REPO, TINY_HEADS

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

TINY = TINY_HEADS


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("ablation", REPO / "benchmarks" / "ablation.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_paired_difference_and_t_interval(ablation):
    a = {0: 12.0, 1: 14.0, 2: 13.0}
    b = {0: 10.0, 1: 11.0, 2: 11.0, 3: 50.0}  # seed 3 has no partner: ignored
    m, half, sd, n = ablation.paired_diff(a, b)
    assert (m, n) == (pytest.approx(7 / 3), 3)
    assert sd == pytest.approx(math.sqrt(((2 - 7 / 3) ** 2 + (3 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2) / 2))
    assert half == pytest.approx(4.302653 * sd / math.sqrt(3), rel=1e-5)
    assert ablation.paired_diff({0: 1.0}, {0: 2.0}) is None


def test_finetune_preset_tiny(ablation, tmp_path):
    out, csv_path, docs = tmp_path / "run", tmp_path / "results.csv", tmp_path / "bench.md"
    docs.write_text("# B\n\n## Ablation (`benchmarks/ablation.py`)\n\ntext\n\n## Other\n\nkept\n")
    argv = [
        "--preset", "finetune", "--out", str(out), "--results", str(csv_path), "--docs", str(docs),
        "--size", "96", "64", "--train-images", "4", "--val-images", "2", "--test-images", "2",
        "--clutter", "3", "--pretrain-iters", "2", "--pretrain-evals", "1", "--iters", "1",
        "--seeds", "0", "1", "--variants", "none", "plain", "full", "sensor", "--write-docs",
        "--set", *TINY,
    ]  # fmt: skip
    assert ablation.main(argv) == 0
    rows = ablation.read_csv(csv_path)
    # 4 variants x 2 seeds x 3 test sets x 2 IoU types, one stage-1 model for all
    assert len(rows) == 4 * 2 * 3 * 2
    assert {r["variant"] for r in rows} == {"none", "plain", "full", "sensor"}
    assert len({r["stage1_sha256"] for r in rows}) == 1
    assert {r["iterations"] for r in rows if r["variant"] != "none"} == {1}
    # the stage-2 runs start from the stage-1 checkpoint with the paper's settings for new modules
    cfg = ablation.ft_stage2_config(
        ablation.ft_parse_args(argv), ablation.ft_make_data(ablation.ft_parse_args(argv)), "full", 0, out
    )
    assert cfg.model.awd and cfg.model.scb and cfg.train.dsl and not cfg.model.scb_zero_init
    assert cfg.train.lr_mult == {"awd": 2.0, "scb": 2.0} and cfg.model.frozen_bn
    assert cfg.synth.camera == "CanonEOS5D4" and cfg.synth.output == "rgb"
    rec = json.loads((tmp_path / "results_stage1.json").read_text())
    assert rec["iterations"] == 2 and set(rec["clean_val"]) == {"2"}
    text = docs.read_text()
    assert ablation.FT_DOCS_HEADER in text and "Paired difference to (2)" in text
    assert text.rstrip().endswith("kept")
    # resumable: a second call finds every run in the CSV and trains nothing
    mtime = csv_path.stat().st_mtime_ns
    assert ablation.main(argv) == 0
    assert csv_path.stat().st_mtime_ns == mtime


def test_data_helpers_are_the_demo_stages(ablation, tmp_path, monkeypatch):
    """make_data / ft_make_data render scenes and dark test sets through darkseg.demo.stages (the dark
    sets in ``darkseg synth``'s layout); a second call reuses them, and a data folder of the older
    layout (no synth_config.json, no clean/) is completed in place with the same noisy files."""
    from darkseg.config import load_config
    from darkseg.demo import stages

    calls: list[str] = []
    for name in ("make_scene_sets", "make_dark_test_set"):
        real = getattr(stages, name)
        monkeypatch.setattr(
            stages, name, lambda *a, _f=real, **k: (calls.append(_f.__name__), _f(*a, **k))[1]
        )
    out = tmp_path / "a"
    common = ["--out", str(out), "--size", "64", "48", "--train-images", "2", "--test-images", "2"]
    paths = ablation.make_data(ablation.parse_args(common), load_config("demo"))
    assert calls == ["make_scene_sets", "make_dark_test_set", "make_dark_test_set"]
    data = out / "data"
    assert (
        paths["dark_raw"] == data / "dark_raw" / "images"
        and paths["clean_raw"] == data / "dark_raw" / "clean"
    )
    assert paths["ann_png"] == data / "dark_raw" / "annotations.json"
    assert sorted(p.name for p in paths["clean_raw"].iterdir()) == ["000000.png", "000001.png"]
    assert not (data / "dark_srgb" / "clean").exists() and len(list(paths["dark_srgb"].iterdir())) == 2
    noisy = {p.name: p.read_bytes() for p in paths["dark_raw"].iterdir()}
    stamp = (paths["ann_png"].stat().st_mtime_ns, (data / "train" / "annotations.json").stat().st_mtime_ns)
    assert ablation.make_data(ablation.parse_args(common), load_config("demo")) == paths
    assert (
        paths["ann_png"].stat().st_mtime_ns,
        (data / "train" / "annotations.json").stat().st_mtime_ns,
    ) == stamp
    shutil.rmtree(paths["clean_raw"])
    (data / "dark_raw" / "synth_config.json").unlink()
    assert ablation.make_data(ablation.parse_args(common), load_config("demo")) == paths
    assert {p.name: p.read_bytes() for p in paths["dark_raw"].iterdir()} == noisy and paths[
        "clean_raw"
    ].is_dir()

    calls.clear()
    ft = ["--preset", "finetune", "--val-images", "1", "--clutter", "1", *common[:2], *common[2:]]
    ft[ft.index(str(out))] = str(tmp_path / "ft")
    paths = ablation.ft_make_data(ablation.ft_parse_args(ft))
    data = tmp_path / "ft" / "data"
    assert calls == ["make_scene_sets", "make_dark_test_set", "make_dark_test_set"]
    assert {k: v.relative_to(data).as_posix() for k, v in paths.items()} == {
        "train_images": "train/images",
        "train_ann": "train/annotations.json",
        "val_images": "val/images",
        "val_ann": "val/annotations.json",
        "test_images": "test/images",
        "test_ann": "test/annotations.json",
        "dark": "dark/images",
        "clean": "dark/clean",
        "ann_png": "dark/annotations.json",
        "dark_harsh": "dark_harsh/images",
    }
    assert not (data / "dark_harsh" / "clean").exists()
