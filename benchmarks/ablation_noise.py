"""The noise study (second design of the pretrain -> fine-tune ablation): ``benchmarks/ablation.py
--preset noise``. See docs/benchmarks.md, "Noise study".

Stages, each resumable from the committed results CSV (``benchmarks/results/ablation_noise_<scale>.csv``;
a killed run loses at most the run in progress):

1. ``data``: procedural scenes (train / val / test) and the test renderings, all with the Canon EOS 5D IV
   profile and the ``sensor`` rendering (the simulation of the real LIS RAW test path): the noise-free
   rendering (``clean``) and one noisy set per exposure-ratio range (``--test-ratios``);
2. ``stage1``: a plain model (small caffe-style bottleneck ResNet, :data:`BACKBONE`) trained from scratch
   on the *clean RAW* renderings of the training scenes; its clean-val AP curve goes to the CSV;
3. ``pilot``: the plain row, seed 0, of stage 2, evaluated on every test set; the primary dark test set
   is the first of ``--pilot-candidates`` on which noise costs at least ``--min-noise-cost`` of the
   clean AP; the pilot rows (with the cost) go to the CSV;
4. ``stage2``: every row (:data:`ROWS`) x seed, seed-major, from the stage-1 checkpoint, at the paper's
   learning-rate rule for the batch used, warm-up >= 100 iterations, no gradient clipping; the gradient
   norm of every iteration and the DSL term's own gradient norm (every 10 iterations) go to
   ``<csv stem>_gradnorm.csv``, a diverged run is recorded with status ``diverged``;
5. ``report``: the tables (``benchmarks/ablation_noise_report.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

from ablation_data import PAPER_FINETUNE, add_run_arguments, add_scene_arguments, train_val_test_scenes
from ablation_results import append_rows, read_csv
from ablation_results import sha256_prefix as sha256

REPO = Path(__file__).resolve().parents[1]

#: stage-2 rows: label and the config overrides that make them
ROWS: dict[str, tuple[str, list[str]]] = {
    "plain": ("plain", ["train.dsl=false", "model.awd=false", "model.scb=false"]),
    "awd": ("+AWD", ["train.dsl=false", "model.awd=true", "model.scb=false"]),
    "scb": ("+SCB", ["train.dsl=false", "model.awd=false", "model.scb=true"]),
    "twoview": (
        "two views, DSL weight 0 (control)",
        ["train.dsl=true", "model.dsl.weight=0.0", "model.awd=false", "model.scb=false"],
    ),
    "dsl": ("+DSL", ["train.dsl=true", "model.awd=false", "model.scb=false"]),
    "full": ("AWD + SCB + DSL", ["train.dsl=true", "model.awd=true", "model.scb=true"]),
}
REF = "plain"
#: the backbone of both stages: a caffe-style bottleneck ResNet with one block per stage, base width 32
#: (stage widths 128/256/512/1024 after the 4x bottleneck expansion); ``awd_mode: replace`` on it is the
#: paper's R50 topology (AWD takes over the strided 1x1 downsampling of stages 2-4 and its shortcut)
BACKBONE = [
    "model.depth=50",
    "model.style=caffe",
    "model.stage_blocks=[1, 1, 1, 1]",
    "model.base_channels=32",
    "model.awd_mode=replace",
]
#: classes of the scenes (the six default ones + four that differ by fine texture only)
CLASSES = ("disc", "box", "triangle", "ring", "star", "cross", "tile", "coin", "hexagon", "moon")
CSV_FIELDS = (
    "study", "part", "variant", "seed", "test", "iou", "AP", "AP50", "AP75", "noise_cost", "iterations",
    "batch", "lr", "train_seconds", "total_seconds", "grad_norm_max", "grad_norm_median", "grad_norm_last",
    "dsl_share", "stage1_sha256", "finished", "status", "note",
)  # fmt: skip
GRAD_FIELDS = ("study", "variant", "seed", "iter", "lr", "loss", "grad_norm", "grad_norm_loss_dsl")
PARTS = ("stage1", "pilot", "stage2")
#: CPU and GPU scale: stage-2 images (iterations x batch) differ 10x, everything else is the same study
SCALES = {
    "cpu": {"batch": 2, "iters": 500, "stage1_batch": 2, "stage1_iters": 6000, "synth_device": "workers"},
    "gpu": {"batch": 16, "iters": 625, "stage1_batch": 16, "stage1_iters": 750, "synth_device": "device"},
}


def paper_lr(batch: int) -> float:
    """The original config's rule: lr 0.02 for a total batch of 16, scaled linearly (0.0025 at batch 2)."""
    return 0.02 * batch / 16


def _ratio(text: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in text.split("-"))
    if not 0 < lo <= hi:
        raise argparse.ArgumentTypeError(f"ratio range {text!r}: need LO-HI with 0 < LO <= HI")
    return lo, hi


def ratio_name(r: tuple[float, float]) -> str:
    return f"ratio{r[0]:g}-{r[1]:g}"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="The noise study: see benchmarks/ablation_noise.py")
    p.add_argument("--preset", choices=("noise",), required=True)
    p.add_argument("--scale", choices=tuple(SCALES), default="cpu")
    p.add_argument("--out", type=Path, default=None, help="default runs/ablation_noise_<scale>")
    p.add_argument("--stage", choices=("all", "data", "stage1", "pilot", "stage2", "report"), default="all")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--variants", nargs="+", default=list(ROWS), choices=list(ROWS))
    add_scene_arguments(p, (192, 144), 60, 100)
    p.add_argument("--object-scale", type=float, default=1.0, help="x SceneConfig min/max_scale")
    p.add_argument("--camera", default="CanonEOS5D4", help="noise profile of training and test")
    p.add_argument("--render", default="sensor", help="synth.output of training and test renderings")
    p.add_argument("--train-ratio", type=_ratio, default=(10.0, 100.0), help="stage-2 ratio range LO-HI")
    p.add_argument(
        "--test-ratios", type=_ratio, nargs="+", default=[(10.0, 100.0), (100.0, 300.0), (300.0, 1000.0)]
    )
    p.add_argument("--pilot-candidates", type=_ratio, nargs="+", default=[(100.0, 300.0), (300.0, 1000.0)])
    p.add_argument("--min-noise-cost", type=float, default=0.4, help="pilot: fraction of clean AP lost")
    p.add_argument(
        "--primary",
        default=None,
        help="primary dark test set chosen by hand instead of by the pilot's rule (recorded; smoke runs)",
    )
    p.add_argument("--stage1-iters", type=int, default=None)
    p.add_argument("--stage1-batch", type=int, default=None)
    p.add_argument("--stage1-lr", type=float, default=0.02)
    p.add_argument("--stage1-clip", type=float, default=10.0, help="from-scratch stage 1 only")
    p.add_argument("--stage1-evals", type=int, default=10, help="clean-val evaluations during stage 1")
    p.add_argument("--iters", type=int, default=None, help="stage-2 iterations per run")
    p.add_argument("--batch", type=int, default=None, help="stage-2 batch")
    p.add_argument("--lr", type=float, default=None, help="stage-2 lr (default: paper rule 0.02 x batch/16)")
    p.add_argument("--warmup", type=int, default=100, help="stage-2 warm-up iterations (>= 100)")
    add_run_arguments(p, 3000, REPO / "docs" / "benchmarks.md")
    p.add_argument("--set", dest="extra", nargs="*", default=[], metavar="KEY=VALUE", help="both stages")
    args = p.parse_args(argv)
    scale = SCALES[args.scale]
    for k in ("batch", "iters", "stage1_batch", "stage1_iters"):
        if getattr(args, k) is None:
            setattr(args, k, scale[k])
    if args.lr is None:
        args.lr = paper_lr(args.batch)
    if args.out is None:
        args.out = Path(f"runs/ablation_noise_{args.scale}")
    if args.results is None:
        args.results = REPO / "benchmarks" / "results" / f"ablation_noise_{args.scale}.csv"
    if args.primary is not None and args.primary not in [ratio_name(r) for r in args.test_ratios]:
        p.error(
            f"--primary {args.primary}: not one of the test sets {[ratio_name(r) for r in args.test_ratios]}"
        )
    missing = [c for c in args.pilot_candidates if c not in args.test_ratios]
    if missing:
        p.error(f"--pilot-candidates {missing} are not among --test-ratios")
    return args


def study_name(args) -> str:
    return f"noise_{args.scale}"


def grad_csv(args) -> Path:
    return args.results.with_name(args.results.stem + "_gradnorm.csv")


# ------------------------------------------------------------------------------------------ data
def make_data(args) -> dict[str, Path]:
    """Scenes and the test renderings (the demo's stages); everything is reused when already there."""
    from darkseg.data.scenes import SceneConfig
    from darkseg.demo.stages import make_dark_test_set
    from darkseg.synth import SynthConfig

    d0 = SceneConfig()
    scene_cfg = SceneConfig(
        min_objects=4,
        max_objects=9,
        clutter=args.clutter,
        min_scale=d0.min_scale * args.object_scale,
        max_scale=d0.max_scale * args.object_scale,
    )
    data = args.out / "data"
    paths = train_val_test_scenes(data, args, CLASSES, scene_cfg)
    for k, r in enumerate(args.test_ratios):
        dark = make_dark_test_set(
            paths["test_images"],
            paths["test_ann"],
            data / ratio_name(r),
            SynthConfig(camera=args.camera, output=args.render, ratio_range=r),
            args.data_seed + 10 + k,
            save_clean=k == 0,
            reuse=True,
            progress=False,
        )
        paths[ratio_name(r)] = dark.images
        if dark.clean is not None:
            paths["clean"], paths["ann_png"] = dark.clean, dark.ann_file
    return paths


def test_views(args, paths) -> dict[str, tuple[Path, Path]]:
    names = ["clean", *(ratio_name(r) for r in args.test_ratios)]
    return {n: (paths[n], paths["ann_png"]) for n in names}


# ------------------------------------------------------------------------------------------ configs
def _common(args, paths) -> list[str]:
    w, h = args.size
    return [
        f"data.train.image_dir={paths['train_images']}",
        f"data.train.ann_file={paths['train_ann']}",
        "model.class_names=[" + ", ".join(CLASSES) + "]",
        f"model.min_size={h}",
        f"model.max_size={w}",
        f"data.min_size={h}",
        f"data.max_size={w}",
        *BACKBONE,
        f"synth.camera={args.camera}",
        f"synth.output={args.render}",
        f"train.synth_device={SCALES[args.scale]['synth_device']}",
        "train.amp=false",  # float32 on a GPU too: a GradScaler would skip the steps that diverge
        "train.epochs=null",
        "train.lr_step_unit=iter",
        "train.checkpoint_every_epochs=0",
        "train.keep_epoch_checkpoints=false",
        f"train.device={args.device}",
    ]


def stage1_config(args, paths):
    """Stage 1: the plain model from scratch (live BatchNorm, nothing frozen) on the clean RAW renderings,
    clean-RAW val AP every ``iters / stage1_evals`` iterations; clipping at ``stage1_clip`` (a from-scratch
    run at lr 0.02; stage 2 never clips)."""
    from darkseg.config import load_config

    it = args.stage1_iters
    return load_config(
        "demo",
        _common(args, paths)
        + [
            f"data.val.image_dir={paths['val_images']}",
            f"data.val.ann_file={paths['val_ann']}",
            "data.val_view=clean",
            "train.dsl=false",
            "train.train_view=clean",
            "model.awd=false",
            "model.scb=false",
            "model.frozen_bn=false",
            "model.frozen_stages=-1",
            f"synth.ratio_range=[{args.train_ratio[0]}, {args.train_ratio[1]}]",
            f"train.max_iters={it}",
            f"train.batch_size={args.stage1_batch}",
            f"train.lr={args.stage1_lr}",
            f"train.warmup_iters={max(1, it // 20)}",
            f"train.lr_steps=[{int(it * 0.8)}, {int(it * 0.93)}]",
            f"train.grad_clip={args.stage1_clip}",
            f"train.checkpoint_every={max(1, it // 20)}",
            f"train.eval_every={max(1, it // args.stage1_evals)}",
            "train.eval_at_end=true",
            f"train.log_every={max(1, it // 20)}",
            "train.seed=0",
            *args.extra,
        ],
    )


def stage2_config(args, paths, variant: str, seed: int, init: Path):
    """One stage-2 run: from the stage-1 checkpoint with the paper's fine-tuning settings (new modules at
    PyTorch's default initialisation, lr x2 for AWD/SCB, frozen BN, stem + stage 1 frozen), the paper's
    lr rule for the batch, ``--warmup`` iterations of linear warm-up, lr x0.1 at 75 % and 92 % (the
    paper's epochs 9 and 11 of 12), no gradient clipping, the DSL term's gradient norm logged."""
    from darkseg.config import load_config

    it = args.iters
    return load_config(
        "demo",
        _common(args, paths)
        + [
            "data.val=null",
            f"train.init_from={init}",
            *PAPER_FINETUNE,
            f"synth.ratio_range=[{args.train_ratio[0]}, {args.train_ratio[1]}]",
            "train.train_view=noisy",
            f"train.max_iters={it}",
            f"train.batch_size={args.batch}",
            f"train.lr={args.lr}",
            f"train.warmup_iters={args.warmup}",
            "train.warmup_ratio=0.001",
            f"train.lr_steps=[{int(it * 0.75)}, {int(it * 0.92)}]",
            "train.grad_clip=null",
            "train.checkpoint_every=0",
            "train.eval_at_end=false",
            "train.log_every=10",
            "train.log_grad_parts=[loss_dsl]",
            f"train.seed={seed}",
            *ROWS[variant][1],
            *args.extra,
        ],
    )


# ------------------------------------------------------------------------------------------ records
def _key(r: dict) -> tuple:
    return (r["study"], r["part"], r["variant"], int(r["seed"]), r["test"], r["iou"], int(r["iterations"]))


def _order(r: dict) -> tuple:
    rows = {v: i for i, v in enumerate(ROWS)}
    return (
        r["study"],
        PARTS.index(r["part"]),
        int(r["seed"]),
        rows.get(r["variant"], 99),
        int(r["iterations"]),
        r["test"],
        r["iou"],
    )


def append(csv_path: Path, rows: list[dict]) -> None:
    append_rows(csv_path, rows, CSV_FIELDS, _key, _order)


def _ap100(v: float) -> float:
    return v if math.isnan(v) else round(100 * max(v, 0.0), 2)


def metric_rows(base: dict, metrics: dict) -> list[dict]:
    """``{test: {iou: {AP, AP50, AP75}}}`` -> CSV rows (AP x100), each with ``base``'s columns."""
    return [
        {**base, "test": test, "iou": iou, **{k: _ap100(per[iou][k]) for k in ("AP", "AP50", "AP75")}}
        for test, per in metrics.items()
        for iou in ("segm", "bbox")
    ]


def grad_stats(log_file: Path) -> tuple[list[dict], dict]:
    """The training records of a run's ``log.jsonl`` (``iter``, ``lr``, ``loss``, ``grad_norm``,
    ``grad_norm_loss_dsl``) and their summary: max / median gradient norm, mean of the last 50 and the
    median DSL share ``grad_norm_loss_dsl / grad_norm`` (NaN without DSL measurements)."""
    from darkseg.engine.logger import read_jsonl

    recs = read_jsonl(log_file) if log_file.is_file() else []
    recs = [r for r in recs if "eval" not in r and "grad_norm" in r]
    norms = [float(r["grad_norm"]) for r in recs]
    shares = [
        r["grad_norm_loss_dsl"] / r["grad_norm"]
        for r in recs
        if "grad_norm_loss_dsl" in r and r["grad_norm"] > 0 and math.isfinite(r["grad_norm"])
    ]
    last = norms[-50:]
    summary = {
        "grad_norm_max": round(max(norms), 4) if norms else float("nan"),
        "grad_norm_median": round(statistics.median(norms), 4) if norms else float("nan"),
        "grad_norm_last": round(sum(last) / len(last), 4) if last else float("nan"),
        "dsl_share": round(statistics.median(shares), 6) if shares else float("nan"),
    }
    return recs, summary


def record_grad_trace(args, variant: str, seed: int, recs: list[dict]) -> None:
    rows = [
        {
            "study": study_name(args),
            "variant": variant,
            "seed": seed,
            "iter": int(r["iter"]),
            "lr": r["lr"],
            "loss": r["loss"],
            "grad_norm": r["grad_norm"],
            "grad_norm_loss_dsl": r.get("grad_norm_loss_dsl", ""),
        }
        for r in recs
    ]
    rows_ix = {v: i for i, v in enumerate(ROWS)}
    append_rows(
        grad_csv(args),
        rows,
        GRAD_FIELDS,
        key=lambda r: (r["study"], r["variant"], int(r["seed"]), int(r["iter"])),
        order=lambda r: (r["study"], int(r["seed"]), rows_ix.get(r["variant"], 99), int(r["iter"])),
    )


def done_rows(csv_path: Path, study: str, part: str, variant: str | None = None, seed: int | None = None):
    return [
        r
        for r in read_csv(csv_path)
        if r["study"] == study
        and r["part"] == part
        and (variant is None or r["variant"] == variant)
        and (seed is None or r["seed"] == seed)
    ]


# ------------------------------------------------------------------------------------------ stages
def saved_stage1(args) -> tuple[Path, Path]:
    """The committed stage-1 model and summary of this study (``benchmarks/results/<csv stem>_stage1.pth``
    and ``..._stage1_summary.json``): a new work tree continues the study without retraining stage 1."""
    stem = args.results.stem
    return args.results.with_name(f"{stem}_stage1.pth"), args.results.with_name(f"{stem}_stage1_summary.json")


def _restore_stage1(args, run_dir: Path) -> None:
    """Copy the committed stage-1 model into an empty ``run_dir``; it must be the model the CSV's
    stage-1 rows name (their ``stage1_sha256``)."""
    import shutil

    model, summary = saved_stage1(args)
    if (run_dir / "final.pth").is_file() or not (model.is_file() and summary.is_file()):
        return
    want = {r["stage1_sha256"] for r in done_rows(args.results, study_name(args), "stage1")}
    if want and sha256(model) not in want:
        raise SystemExit(f"{model}: not the stage-1 model the rows of {args.results} come from ({want})")
    run_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, run_dir / "final.pth")
    shutil.copyfile(summary, run_dir / "summary.json")
    print(f"stage 1: restored {model} (sha256 {sha256(model)})", flush=True)


def run_stage1(args, paths) -> Path:
    """Train stage 1 (resumes from ``last.pth``) and record its clean-val curve in the CSV."""
    from darkseg.demo.stages import train_stage

    run_dir = args.out / "stage1"
    final = run_dir / "final.pth"
    summary_file = run_dir / "summary.json"
    _restore_stage1(args, run_dir)
    if not (summary_file.is_file() and final.is_file()):
        resume = (run_dir / "last.pth").is_file()
        train_stage(stage1_config(args, paths), run_dir, resume=resume, progress=False)
    summ = json.loads(summary_file.read_text())
    study = study_name(args)
    if not done_rows(args.results, study, "stage1"):
        hist = {int(k): v for k, v in summ.get("eval_history", {}).items()}
        if summ.get("eval"):
            hist[summ["iterations"]] = summ["eval"]
        base = {
            "study": study,
            "part": "stage1",
            "variant": REF,
            "seed": 0,
            "batch": args.stage1_batch,
            "lr": args.stage1_lr,
            "train_seconds": round(summ["seconds"], 1),
            "stage1_sha256": sha256(final),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "status": "ok",
            "note": f"gradient clipping at {args.stage1_clip:g}",
        }
        rows = []
        for it, metrics in sorted(hist.items()):
            rows += metric_rows({**base, "iterations": it}, {"clean_val": metrics})
        append(args.results, rows)
    return final


def run_one(args, paths, variant: str, seed: int, init: Path) -> list[dict]:
    """One stage-2 run (skipped when its rows are in the CSV): train, evaluate on every test set, record
    the rows (status ``ok`` or ``diverged``) and the gradient-norm trace."""
    from darkseg.demo.stages import evaluate_views, train_stage
    from darkseg.engine.train import TrainingError

    study = study_name(args)
    done = done_rows(args.results, study, "stage2", variant, seed)
    if done:
        return done
    t0 = time.perf_counter()
    run_dir = args.out / "stage2" / variant / f"seed{seed}"
    cfg = stage2_config(args, paths, variant, seed, init)
    views = test_views(args, paths)
    try:
        summary = train_stage(cfg, run_dir, overwrite=True, progress=False)
    except TrainingError as exc:
        if "non-finite" not in str(exc):
            raise
        # a diverged run is a result too: recorded without AP, never dropped
        print(f"{variant} seed {seed}: diverged ({str(exc)[:160]})", flush=True)
        nan = {"AP": float("nan"), "AP50": float("nan"), "AP75": float("nan")}
        metrics = {t: {"segm": nan, "bbox": nan} for t in views}
        recs, gstats = grad_stats(run_dir / "log.jsonl")
        iters, secs = (recs[-1]["iter"] if recs else 0), time.perf_counter() - t0
        status, note = "diverged", str(exc)[:200]
    else:
        evals = evaluate_views(summary["final_model"], views, list(CLASSES), args.device, progress=False)
        metrics = {t: r["metrics"] for t, r in evals.items()}
        recs, gstats = grad_stats(run_dir / "log.jsonl")
        iters, secs, status, note = summary["iterations"], summary["seconds"], "ok", ""
    base = {
        "study": study,
        "part": "stage2",
        "variant": variant,
        "seed": seed,
        "iterations": iters,
        "batch": args.batch,
        "lr": args.lr,
        "train_seconds": round(secs, 1),
        "total_seconds": round(time.perf_counter() - t0, 1),
        **gstats,
        "stage1_sha256": sha256(init),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "status": status,
        "note": note,
    }
    rows = metric_rows(base, metrics)
    record_grad_trace(args, variant, seed, recs)  # first the trace: the CSV rows mark the run finished
    append(args.results, rows)
    return rows


def run_pilot(args, paths, init: Path) -> str | None:
    """The plain row, seed 0 (the same run as stage 2's): noise cost ``1 - AP(dark) / AP(clean)`` (segm)
    of every dark test set into the CSV (part ``pilot``); returns the primary test set (the first
    candidate costing >= ``--min-noise-cost``) or None."""
    study = study_name(args)
    pilot = done_rows(args.results, study, "pilot")
    if not pilot:
        rows = run_one(args, paths, REF, 0, init)
        clean = {r["iou"]: r["AP"] for r in rows if r["test"] == "clean"}
        cands = [ratio_name(c) for c in args.pilot_candidates]
        costs = {
            r["test"]: 1 - r["AP"] / clean["segm"] if clean["segm"] > 0 else float("nan")
            for r in rows
            if r["iou"] == "segm"
        }
        primary = next((t for t in cands if costs.get(t, 0) >= args.min_noise_cost), None)
        tag = "primary"
        if args.primary is not None:
            primary, tag = args.primary, "primary (chosen by --primary)"
        pilot = []
        for r in rows:
            cost = 1 - r["AP"] / clean[r["iou"]] if clean[r["iou"]] > 0 else float("nan")
            note = tag if r["test"] == primary else ("candidate" if r["test"] in cands else "")
            pilot.append({**r, "part": "pilot", "noise_cost": round(cost, 4), "note": note})
        append(args.results, pilot)
    primary = next((r["test"] for r in pilot if r["note"].startswith("primary")), None)
    if primary is None:
        print(
            f"pilot: no candidate test set loses >= {args.min_noise_cost:.0%} of the clean AP: raise the "
            "ratio (--test-ratios/--pilot-candidates) or shrink the objects (--object-scale) and rerun "
            "with a new --out and --results",
            flush=True,
        )
    return primary


def main(argv=None) -> int:
    import torch

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.stage != "report":
        args.out.mkdir(parents=True, exist_ok=True)
        paths = make_data(args)
        if args.stage != "data":
            init = run_stage1(args, paths)
            print(f"stage 1: {init}", flush=True)
        if args.stage in ("all", "pilot", "stage2"):
            primary = run_pilot(args, paths, init)
            print(f"pilot: primary dark test set {primary}", flush=True)
            if primary is None:
                return 2
        if args.stage in ("all", "stage2"):
            runs = [(v, s) for s in args.seeds for v in args.variants]  # seed-major
            for k, (variant, seed) in enumerate(runs, 1):
                t = time.perf_counter()
                rows = run_one(args, paths, variant, seed, init)
                ap = {r["test"]: r["AP"] for r in rows if r["iou"] == "segm"}
                print(
                    f"[{k}/{len(runs)}] {variant:8s} seed {seed}: segm AP "
                    + " ".join(f"{t} {v:.1f}" for t, v in ap.items())
                    + f" ({rows[0]['status']}, {time.perf_counter() - t:.0f} s)",
                    flush=True,
                )
    from ablation_noise_report import report

    text = report(args.results)
    print("\n" + text)
    if args.write_docs:
        from ablation_docs import write_docs
        from ablation_noise_report import DOCS_HEADER

        write_docs(args.docs, text, header=DOCS_HEADER + f" ({args.scale})")
        print(f"wrote the tables into {args.docs}")
    return 0


if __name__ == "__main__":
    import sys

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    sys.exit(main())
