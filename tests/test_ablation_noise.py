"""The noise study (``benchmarks/ablation.py --preset noise``) on tiny inputs: data, stage 1, pilot, stage 2
plumbing, recording (diverged runs included), resume, the generated report; and its statistics."""

from __future__ import annotations

import importlib.util
import math
import sys

import pytest

from conftest import REPO, TINY_HEADS

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

TINY = TINY_HEADS


def _load(name: str):
    path = REPO / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # the modules import each other by name
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def mods():
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        names = ("ablation", "ablation_noise", "ablation_noise_report", "ablation_stats")
        yield tuple(_load(n) for n in names)
    finally:
        sys.path.remove(str(REPO / "benchmarks"))


def test_min_resolvable_effect(mods):
    stats = mods[3]
    # n = 5 seeds: t_{0.975,4} = 2.776445, t_{0.8,4} = 0.940965
    assert stats.min_resolvable(2.0, 5) == pytest.approx((2.776445 + 0.940965) * 2.0 / math.sqrt(5), rel=1e-5)
    assert math.isnan(stats.min_resolvable(2.0, 1))


def test_paired_cells_of_the_report(mods):
    report = mods[2]
    assert report._pair_cell({0: 3.0, 1: 4.0}, {0: 1.0}) == "+2.0 (1 seed)"  # one pair: no interval
    assert report._pair_cell({0: 3.0}, {1: 1.0}) == "-"
    half = 12.706205 * math.sqrt(2) / math.sqrt(2)  # differences 2 and 4: sd sqrt(2), t_{0.975,1}
    assert report._pair_cell({0: 3.0, 1: 5.0}, {0: 1.0, 1: 1.0}) == f"+3.0 [{3 - half:+.1f}, {3 + half:+.1f}]"


def _fake_eval(views_seen):
    """evaluate_views stand-in: AP 0.5 on clean, lower the harsher the ratio (noise cost 20/50/80 %)."""
    cost = {"clean": 0.0, "ratio10-100": 0.2, "ratio100-300": 0.5, "ratio300-1000": 0.8}

    def fake(model, views, class_names=None, device="cpu", results_dir=None, progress=True):
        views_seen.append(sorted(views))
        m = {name: {k: 0.5 * (1 - cost[name]) for k in ("AP", "AP50", "AP75")} for name in views}
        return {name: {"metrics": {"segm": dict(m[name]), "bbox": dict(m[name])}} for name in views}

    return fake


def test_noise_preset_tiny(mods, tmp_path, monkeypatch):
    ablation, noise, report, _ = mods
    from darkseg.demo import stages
    from darkseg.engine.train import TrainingError

    seen: list = []
    monkeypatch.setattr(stages, "evaluate_views", _fake_eval(seen))
    real_train = stages.train_stage

    def train_or_diverge(cfg, run_dir, **kw):
        if "scb" in str(run_dir) and cfg.train.seed == 1:
            raise TrainingError("non-finite loss at iteration 3: {'loss': nan} (lr 0.0025)")
        return real_train(cfg, run_dir, **kw)

    monkeypatch.setattr(stages, "train_stage", train_or_diverge)
    csv_path, docs = tmp_path / "noise.csv", tmp_path / "bench.md"
    docs.write_text("# B\n\n## Ablation (`benchmarks/ablation.py`)\n\ntext\n\n## Other\n\nkept\n")
    argv = [
        "--preset", "noise", "--out", str(tmp_path / "run"), "--results", str(csv_path), "--docs", str(docs),
        "--size", "64", "48", "--train-images", "2", "--val-images", "1", "--test-images", "2",
        "--clutter", "1", "--stage1-iters", "2", "--stage1-evals", "1", "--iters", "2", "--warmup", "1",
        "--seeds", "0", "1", "--variants", "plain", "scb", "twoview", "--write-docs", "--set", *TINY,
    ]  # fmt: skip
    assert ablation.main(argv) == 0
    rows = noise.read_csv(csv_path)
    parts = {p: [r for r in rows if r["part"] == p] for p in ("stage1", "pilot", "stage2")}
    assert {(r["iterations"], r["test"]) for r in parts["stage1"]} == {(2, "clean_val")}
    # the pilot: plain seed 0 on clean + three dark sets; 100-300 is the first candidate costing >= 40 %
    pilot = {(r["test"], r["iou"]): r for r in parts["pilot"]}
    assert pilot[("ratio100-300", "segm")]["note"] == "primary"
    assert pilot[("ratio300-1000", "segm")]["note"] == "candidate"
    assert pilot[("ratio10-100", "segm")]["noise_cost"] == pytest.approx(0.2)
    # stage 2: 3 rows x 2 seeds x 4 test sets x 2 IoU types; the diverged run is kept, without AP
    assert len(parts["stage2"]) == 3 * 2 * 4 * 2
    div = [r for r in parts["stage2"] if r["status"] == "diverged"]
    assert {(r["variant"], r["seed"]) for r in div} == {("scb", 1)} and all(math.isnan(r["AP"]) for r in div)
    ok = [r for r in parts["stage2"] if r["status"] == "ok"]
    assert {r["iterations"] for r in ok} == {2} and {r["lr"] for r in ok} == {0.0025}
    assert all(r["grad_norm_max"] > 0 for r in ok)
    assert len({r["stage1_sha256"] for r in parts["stage2"]}) == 1
    # every stage-2 iteration's gradient norm is in the trace; the DSL term's every 10 iterations only
    trace = noise.read_csv(noise.grad_csv(noise.parse_args(argv)))
    assert len([t for t in trace if t["variant"] == "plain"]) == 2 * 2
    # the report, generated from the CSV into the docs
    text = docs.read_text()
    assert report.DOCS_HEADER + " (cpu)" in text and "pending: 6 of 30 runs" in text
    assert "| +SCB | 1 | 1 |" in text and text.rstrip().endswith("kept")
    # resumable: everything is found in the CSV, nothing is trained or evaluated again
    n_eval, mtime = len(seen), csv_path.stat().st_mtime_ns
    assert ablation.main(argv) == 0
    assert len(seen) == n_eval and csv_path.stat().st_mtime_ns == mtime


def test_stage_configs_follow_the_design(mods, tmp_path):
    noise = mods[1]
    args = noise.parse_args(["--preset", "noise", "--out", str(tmp_path)])
    paths = {k: tmp_path / k for k in ("train_images", "train_ann", "val_images", "val_ann")}
    s1 = noise.stage1_config(args, paths)
    assert (s1.model.depth, s1.model.style, s1.model.stage_blocks, s1.model.base_channels) == (
        50,
        "caffe",
        [1, 1, 1, 1],
        32,
    )
    assert s1.train.train_view == "clean" and not s1.train.dsl and s1.data.val_view == "clean"
    assert s1.synth.output == "sensor" and s1.synth.camera == "CanonEOS5D4" and not s1.model.frozen_bn
    init = tmp_path / "s1.pth"
    full = noise.stage2_config(args, paths, "full", 3, init)
    assert full.train.lr == pytest.approx(0.0025) and full.train.batch_size == 2
    assert full.train.grad_clip is None and full.train.warmup_iters >= 100 and full.train.max_iters >= 400
    assert full.model.awd and full.model.awd_mode == "replace" and full.model.scb and full.train.dsl
    assert full.train.log_grad_parts == ["loss_dsl"] and full.train.seed == 3 and full.train.amp is False
    two = noise.stage2_config(args, paths, "twoview", 0, init)
    assert two.train.dsl and two.model.dsl.weight == 0.0 and not two.model.awd
    gpu = noise.parse_args(["--preset", "noise", "--scale", "gpu"])
    assert gpu.batch * gpu.iters == 10 * args.batch * args.iters and gpu.lr == pytest.approx(0.02)
