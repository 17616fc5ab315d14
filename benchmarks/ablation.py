"""The paper's ablation at small scale, on procedural scenes, on the CPU (long; not part of the tests).

Same data, same budget (iterations x batch), several seeds; every variant starts from the packaged
``demo`` config (ResNet-18 Mask R-CNN trained from scratch) and changes only what the row names:

==  ========================  =====================================================================
1   baseline, clean sRGB      no synthesis, no AWD/SCB/DSL: trained on the sRGB scenes
2   baseline, synthetic dark  low-light synthesis (train on the noisy rendering), no AWD/SCB/DSL
3   +AWD                      (2) + adaptive weighted downsampling
4   +SCB                      (2) + smooth-oriented conv blocks
5   +DSL                      (2) + disturbance suppression learning (clean + noisy views, feature loss)
6   AWD+SCB+DSL               the full method
7   AWD+SCB+DSL, sRGB input   (6) with the synthetic views rendered through a full ISP (WB, CCM,
                              tone, gamma) instead of the LIS "demosaic only" RAW rendering
==  ========================  =====================================================================

Test sets (all from test scenes never seen in training):

* **dark**: synthetic low-light renderings made with a camera profile that is *not* used in training
  (``--test-camera``, default SonyA7S2; training uses the config's CanonEOS5D4), RAW rendering for
  rows 1-6, ISP (sRGB) rendering for row 7;
* **clean**: the noise-free rendering of the same pipeline (the "normal light" counterpart): the clean
  RAW rendering for rows 1-6, the sRGB scene itself for row 7.

Row 1 sees sRGB in training and RAW renderings at test time: that is the paper's baseline situation
(a normal-light model applied to dark data).

Usage::

    python benchmarks/ablation.py --out runs/ablation --seeds 0 1 2 --iters 300
    python benchmarks/ablation.py --out runs/ablation --iters 120 --size 128 96 --train-images 200 \
        --seeds 0 1 --write-docs   # reduced scale; updates "## Ablation" in docs/benchmarks.md

Finished runs are kept in ``OUT/<variant>/seed<k>/result.json``; a rerun with the same ``--out``
skips them, so an interrupted ablation continues where it stopped.

Data, scenes and runs are the demo's stages (:mod:`darkseg.demo.stages`): scene sets under
``OUT/data/<set>/``, each dark test set in ``darkseg synth``'s layout (``OUT/data/<set>/images/``, the
clean renderings in ``clean/``, the annotation file named as the test set's, ``synth_config.json``;
8-bit PNGs). A data folder of the older layout (clean renderings in a separate folder, no
``synth_config.json``) is completed in place: its noisy files are kept (the same bytes) and the clean
renderings are written into ``clean/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(Path(__file__).parent) not in sys.path:  # the sibling modules when loaded by file path (tests)
    sys.path.insert(0, str(Path(__file__).parent))

from ablation_data import PAPER_FINETUNE, add_run_arguments, add_scene_arguments, train_val_test_scenes  # noqa: E402
from ablation_docs import write_docs  # noqa: E402, F401  (re-exported)
from ablation_results import append_rows, read_csv  # noqa: E402
from ablation_results import sha256_prefix as _sha256  # noqa: E402
from ablation_stats import mean_std as _mean_std  # noqa: E402
from ablation_stats import paired_diff, t_quantile  # noqa: E402, F401  (t_quantile: re-exported)

#: variant -> (row label, config overrides, input kind)
VARIANTS: dict[str, tuple[str, list[str], str]] = {
    "baseline_srgb": (
        "(1) baseline, trained on clean sRGB",
        ["synth=null", "train.dsl=false", "model.awd=false", "model.scb=false"],
        "raw",
    ),
    "baseline_synth": (
        "(2) baseline, trained on synthetic low-light",
        ["train.dsl=false", "model.awd=false", "model.scb=false"],
        "raw",
    ),
    "awd": ("(3) + AWD", ["train.dsl=false", "model.awd=true", "model.scb=false"], "raw"),
    "scb": ("(4) + SCB", ["train.dsl=false", "model.awd=false", "model.scb=true"], "raw"),
    "dsl": ("(5) + DSL", ["train.dsl=true", "model.awd=false", "model.scb=false"], "raw"),
    "full": ("(6) AWD + SCB + DSL", ["train.dsl=true", "model.awd=true", "model.scb=true"], "raw"),
    "full_srgb": (
        "(7) AWD + SCB + DSL, sRGB input",
        [
            "train.dsl=true",
            "model.awd=true",
            "model.scb=true",
            "synth.render_wb=true",
            "synth.render_ccm=true",
            "synth.render_brighten=true",
            "synth.render_tone=true",
            "synth.render_gamma=true",
        ],
        "srgb",
    ),
}
ISP_FIELDS = ("render_wb", "render_ccm", "render_brighten", "render_tone", "render_gamma")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("runs/ablation"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--iters", type=int, default=300, help="training iterations per run")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--train-images", type=int, default=400)
    p.add_argument("--test-images", type=int, default=60)
    p.add_argument("--size", type=int, nargs=2, default=(192, 144), metavar=("W", "H"))
    p.add_argument("--test-camera", default="SonyA7S2", help="camera profile of the dark test set")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--data-seed", type=int, default=1000, help="seed of the scenes (same for every run)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument(
        "--write-docs",
        action="store_true",
        help="write the table into the '## Ablation' section of docs/benchmarks.md",
    )
    p.add_argument("--docs", type=Path, default=REPO / "docs" / "benchmarks.md")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------------ data
def make_data(args: argparse.Namespace, base_cfg) -> dict[str, Path]:
    """Scenes and the four test renderings (the demo's stages); everything is reused when already there."""
    from darkseg.demo.stages import make_dark_test_set, make_scene_sets
    from darkseg.synth import SynthConfig

    data = args.out / "data"
    sets = make_scene_sets(
        data,
        {"train": (args.train_images, args.data_seed), "test": (args.test_images, args.data_seed + 1)},
        tuple(args.size),
        base_cfg.model.class_names,
        reuse=True,
    )
    paths: dict[str, Path] = {}
    paths["train_images"], paths["train_ann"] = sets["train"]
    paths["srgb_images"], paths["test_ann"] = sets["test"]
    raw_cfg = SynthConfig(**{**base_cfg.synth.to_dict(), "camera": args.test_camera})
    isp_cfg = SynthConfig(**{**raw_cfg.to_dict(), **{f: True for f in ISP_FIELDS}})
    test = (paths["srgb_images"], paths["test_ann"])
    raw = make_dark_test_set(*test, data / "dark_raw", raw_cfg, args.data_seed + 2, reuse=True)
    isp = make_dark_test_set(
        *test, data / "dark_srgb", isp_cfg, args.data_seed + 2, save_clean=False, reuse=True
    )
    paths["dark_raw"], paths["clean_raw"], paths["dark_srgb"] = raw.images, raw.clean, isp.images
    paths["ann_png"] = raw.ann_file  # .png file names
    return paths


# ------------------------------------------------------------------------------------------ runs
def common_overrides(args: argparse.Namespace, paths: dict[str, Path], seed: int) -> list[str]:
    it = args.iters
    return [
        f"data.train.image_dir={paths['train_images']}",
        f"data.train.ann_file={paths['train_ann']}",
        "data.val=null",
        f"model.min_size={args.size[1]}",
        f"model.max_size={args.size[0]}",
        f"data.min_size={args.size[1]}",
        f"data.max_size={args.size[0]}",
        f"train.max_iters={it}",
        f"train.batch_size={args.batch}",
        f"train.warmup_iters={max(1, it // 10)}",
        f"train.lr_steps=[{int(it * 0.8)}, {int(it * 0.93)}]",
        "train.checkpoint_every=0",
        "train.eval_at_end=false",
        f"train.log_every={max(1, it // 10)}",
        f"train.seed={seed}",
        f"train.device={args.device}",
    ]


def run_one(args: argparse.Namespace, paths: dict[str, Path], variant: str, seed: int) -> dict:
    """Train one variant with one seed and evaluate it on its dark and clean test sets."""
    from darkseg.config import load_config
    from darkseg.demo.stages import evaluate_views, train_stage
    from darkseg.utils.io import atomic_write_json

    run_dir = args.out / variant / f"seed{seed}"
    result_file = run_dir / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    label, overrides, kind = VARIANTS[variant]
    cfg = load_config("demo", common_overrides(args, paths, seed) + overrides)
    t0 = time.perf_counter()
    # no result.json: a run that never finished (or never started); replace its files, do not append
    summary = train_stage(cfg, run_dir, overwrite=True, progress=False)
    views = (
        {"dark": (paths["dark_raw"], paths["ann_png"]), "clean": (paths["clean_raw"], paths["ann_png"])}
        if kind == "raw"
        else {
            "dark": (paths["dark_srgb"], paths["ann_png"]),
            "clean": (paths["srgb_images"], paths["test_ann"]),
        }
    )
    evals = evaluate_views(summary["final_model"], views, cfg.model.class_names, args.device, progress=False)
    result = {
        "variant": variant,
        "label": label,
        "seed": seed,
        "input": kind,
        "metrics": {name: r["metrics"] for name, r in evals.items()},
        "train_seconds": summary["seconds"],
        "total_seconds": time.perf_counter() - t0,
        "loss_first": summary["loss_first"],
        "loss_last": summary["loss_last"],
        "iterations": summary["iterations"],
    }
    atomic_write_json(result_file, result, indent=2)
    return result


# ------------------------------------------------------------------------------------------ table
COLUMNS = (("dark", "segm"), ("dark", "bbox"), ("clean", "segm"), ("clean", "bbox"))


def aggregate(results: list[dict]) -> dict[str, dict]:
    """variant -> {"label", "n", (test, iou): (mean, std) of AP x100}."""
    out: dict[str, dict] = {}
    for variant in VARIANTS:
        rs = [r for r in results if r["variant"] == variant]
        if not rs:
            continue
        row = {
            "label": rs[0]["label"],
            "n": len(rs),
            "seeds": [r["seed"] for r in rs],
            "train_seconds": _mean_std([r["train_seconds"] for r in rs])[0],
        }
        for test, iou in COLUMNS:
            row[(test, iou)] = _mean_std([100 * max(r["metrics"][test][iou]["AP"], 0.0) for r in rs])
        out[variant] = row
    return out


def format_table(agg: dict[str, dict]) -> str:
    head = (
        "| variant | seeds | dark segm AP | dark box AP | clean segm AP | clean box AP | train s/run |\n"
        "|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for row in agg.values():
        cells = [f"{row[c][0]:.1f} ± {row[c][1]:.1f}" for c in COLUMNS]
        lines.append(
            f"| {row['label']} | {row['n']} | " + " | ".join(cells) + f" | {row['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def verdicts(agg: dict[str, dict]) -> list[str]:
    """Plain statements: each piece vs (2) on dark data; the full method vs (2) on dark and clean data.

    A difference counts as an effect only when it exceeds the larger of the two standard deviations
    (a rough bar with so few seeds)."""
    out = []
    ref = agg.get("baseline_synth")
    if ref is None:
        return ["(2) was not run: no comparison."]

    def cmp(v: str, test: str) -> str:
        a, b = agg[v][(test, "segm")], ref[(test, "segm")]
        d, bar = a[0] - b[0], max(a[1], b[1])
        if agg[v]["n"] < 2 or ref["n"] < 2:
            word = "higher" if d > 0 else "lower"
            return f"{d:+.1f} segm AP ({word}; one seed, no spread to judge it against)"
        if abs(d) <= bar:
            return f"{d:+.1f} segm AP: within the seed spread (±{bar:.1f}), no clear effect"
        return f"{d:+.1f} segm AP: {'helps' if d > 0 else 'hurts'} (beyond the seed spread ±{bar:.1f})"

    for v in ("baseline_srgb", "awd", "scb", "dsl", "full"):
        if v in agg:
            out.append(f"* {agg[v]['label']} vs (2) on dark data: {cmp(v, 'dark')}.")
    if "full" in agg:
        out.append(f"* Paper's claim, dark data: (6) vs (2): {cmp('full', 'dark')}.")
        out.append(f"* Paper's claim, clean data: (6) vs (2): {cmp('full', 'clean')}.")
    if "full" in agg and "full_srgb" in agg:
        a, b = agg["full"][("dark", "segm")], agg["full_srgb"][("dark", "segm")]
        out.append(
            f"* RAW input (6) vs sRGB input (7) on their dark test sets: {a[0]:.1f} vs {b[0]:.1f} "
            "segm AP (different test renderings of the same scenes and noise)."
        )
    return out


# ====================================================================== pretrain -> fine-tune preset
#: Fine-tune variants: row label, config overrides (applied to the stage-2 config), whether it trains.
FT_VARIANTS: dict[str, tuple[str, list[str], bool]] = {
    "none": ("(1) none: the clean pretrained model, no fine-tuning", [], False),
    "plain": (
        "(2) plain, fine-tuned on synthetic low-light",
        ["train.dsl=false", "model.awd=false", "model.scb=false"],
        True,
    ),
    "awd": ("(3) + AWD", ["train.dsl=false", "model.awd=true", "model.scb=false"], True),
    "scb": ("(4) + SCB", ["train.dsl=false", "model.awd=false", "model.scb=true"], True),
    "dsl": ("(5) + DSL", ["train.dsl=true", "model.awd=false", "model.scb=false"], True),
    "full": ("(6) AWD + SCB + DSL", ["train.dsl=true", "model.awd=true", "model.scb=true"], True),
    "sensor": (
        "(7) plain, fine-tuned on the `sensor` rendering",
        ["train.dsl=false", "model.awd=false", "model.scb=false", "synth.output=sensor"],
        True,
    ),
}
#: the reference of the paired differences
FT_REF = "plain"
#: the docs subsection whose body ``--write-docs`` replaces
FT_DOCS_HEADER = "### Pretrain → fine-tune: results"
#: classes of the fine-tune preset's scenes (the six default ones + four: two of them differ from
#: ``box`` / ``disc`` only by a fine texture)
FT_CLASSES = (
    "disc", "box", "triangle", "ring", "star", "cross", "tile", "coin", "hexagon", "moon",
)  # fmt: skip
#: the columns of the results table: (test set, IoU type)
FT_COLUMNS = (
    ("dark", "segm"),
    ("dark", "bbox"),
    ("dark_harsh", "segm"),
    ("dark_harsh", "bbox"),
    ("clean", "segm"),
    ("clean", "bbox"),
)
FT_TEST_NAMES = {
    "dark": "dark (ratio {r1})",
    "dark_harsh": "harsh dark (ratio {r2})",
    "clean": "clean",
}
CSV_FIELDS = (
    "study",
    "variant",
    "seed",
    "test",
    "iou",
    "AP",
    "AP50",
    "AP75",
    "iterations",
    "train_seconds",
    "total_seconds",
    "stage1_sha256",
    "finished",
    "status",
)


def ft_parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Pretrain -> fine-tune ablation (the paper's protocol at small scale); see the module "
        "docstring and docs/benchmarks.md"
    )
    p.add_argument("--preset", choices=("finetune",), required=True)
    p.add_argument("--scale", choices=("cpu", "paper"), default="cpu")
    p.add_argument("--out", type=Path, default=Path("runs/ablation_finetune"))
    p.add_argument(
        "--stage",
        choices=("all", "data", "pretrain", "finetune", "report"),
        default="all",
        help="data: scenes + test renderings only (run it once before a torchrun stage-1 launch)",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--variants", nargs="+", default=list(FT_VARIANTS), choices=list(FT_VARIANTS))
    add_scene_arguments(p, (256, 192), 40, 50)
    p.add_argument("--pretrain-iters", type=int, default=1000)
    p.add_argument("--pretrain-batch", type=int, default=2, help="per process (torchrun: x processes)")
    p.add_argument("--pretrain-lr", type=float, default=0.02)
    p.add_argument("--pretrain-evals", type=int, default=7, help="clean-val evaluations during stage 1")
    p.add_argument("--iters", type=int, default=110, help="stage-2 iterations per run")
    p.add_argument("--batch", type=int, default=2, help="stage-2 batch")
    p.add_argument("--lr", type=float, default=0.01, help="stage-2 base lr (paper: 0.01)")
    p.add_argument("--train-camera", default="CanonEOS5D4")
    p.add_argument("--test-camera", default="SonyA7S2", help="camera profile of the dark test sets")
    p.add_argument("--ratio", type=float, nargs=2, default=(10.0, 100.0), help="training ratio range")
    p.add_argument("--harsh-ratio", type=float, nargs=2, default=(100.0, 300.0))
    p.add_argument("--test-output", default="sensor", help="synth.output of the dark test sets")
    add_run_arguments(p, 2000, REPO / "docs" / "benchmarks.md")
    p.add_argument(
        "--tag",
        default="",
        help="names a further study on the same stage-1 model (e.g. longer stage 2): its own CSV and docs "
        "subsection",
    )
    p.add_argument(
        "--set", dest="extra", nargs="*", default=[], metavar="KEY=VALUE", help="overrides for both stages"
    )
    # paper scale (GPU)
    p.add_argument("--config", default=None, help="stage-2 base config (paper: syncoco2lis_awd_scb_dsl)")
    p.add_argument("--pretrained", default=None, help="paper scale: the COCO Mask R-CNN checkpoint (stage 1)")
    p.add_argument("--train-dir", default=None, help="paper scale: COCO-format training images")
    p.add_argument("--train-ann", default=None, help="paper scale: their annotation file")
    p.add_argument("--test-dir", default=None, help="paper scale: COCO-format test scenes (sRGB)")
    p.add_argument("--test-ann", default=None)
    p.add_argument("--epochs", type=int, default=12, help="paper scale: stage-2 epochs")
    args = p.parse_args(argv)
    if args.scale == "paper" and "none" in args.variants:
        # the COCO model predicts 80 classes, the fine-tuned ones the config's: not one evaluation
        print("--scale paper: variant 'none' (the COCO model itself) is not evaluated; skipped")
        args.variants = [v for v in args.variants if v != "none"]
    if args.scale == "paper":
        missing = [
            k
            for k in ("pretrained", "train_dir", "train_ann", "test_dir", "test_ann")
            if not getattr(args, k)
        ]
        if missing:
            p.error("--scale paper needs " + ", ".join("--" + m.replace("_", "-") for m in missing))
    return args


def ft_study_name(args: argparse.Namespace) -> str:
    return f"finetune_{args.scale}" + (f"_{args.tag}" if args.tag else "")


def ft_scene_cfg(args):
    from darkseg.data.scenes import SceneConfig

    return SceneConfig(min_objects=4, max_objects=9, clutter=args.clutter)


def ft_make_data(args: argparse.Namespace) -> dict[str, Path]:
    """Scenes (train / val / test) and the test renderings (the demo's stages); everything is reused when
    already there."""
    from darkseg.demo.stages import make_dark_test_set
    from darkseg.synth import SynthConfig

    data = args.out / "data"
    paths: dict[str, Path] = {}
    if args.scale == "paper":
        paths["train_images"], paths["train_ann"] = Path(args.train_dir), Path(args.train_ann)
        paths["test_images"], paths["test_ann"] = Path(args.test_dir), Path(args.test_ann)
    else:
        paths.update(train_val_test_scenes(data, args, FT_CLASSES, ft_scene_cfg(args)))
    base = {"camera": args.test_camera, "output": args.test_output}
    for key, ratio, seed in (("dark", args.ratio, 2), ("dark_harsh", args.harsh_ratio, 4)):
        dark = make_dark_test_set(
            paths["test_images"],
            paths["test_ann"],
            data / key,
            SynthConfig(**{**base, "ratio_range": tuple(ratio)}),
            args.data_seed + seed,
            save_clean=key == "dark",
            reuse=True,
            progress=False,
        )
        paths[key] = dark.images
        if dark.clean is not None:
            paths["clean"], paths["ann_png"] = dark.clean, dark.ann_file
    return paths


def _size_overrides(args) -> list[str]:
    if args.scale == "paper":
        return []
    w, h = args.size
    return [f"model.min_size={h}", f"model.max_size={w}", f"data.min_size={h}", f"data.max_size={w}"]


def _classes_override() -> str:
    return "model.class_names=[" + ", ".join(FT_CLASSES) + "]"


def ft_pretrain(args: argparse.Namespace, paths: dict[str, Path]) -> Path:
    """Stage 1: a plain Mask R-CNN on the clean sRGB scenes (CPU scale); the paper scale uses the given
    COCO checkpoint. Resumable (``last.pth`` every 50 iterations)."""
    from darkseg.config import load_config
    from darkseg.demo.stages import train_stage

    if args.scale == "paper":
        return Path(args.pretrained)
    run_dir = args.out / "stage1"
    final = run_dir / "final.pth"
    if (run_dir / "summary.json").is_file() and final.is_file():
        return final
    it = args.pretrain_iters
    overrides = [
        f"data.train.image_dir={paths['train_images']}",
        f"data.train.ann_file={paths['train_ann']}",
        f"data.val.image_dir={paths['val_images']}",
        f"data.val.ann_file={paths['val_ann']}",
        _classes_override(),
        *_size_overrides(args),
        "synth=null",
        "train.dsl=false",
        "model.awd=false",
        "model.scb=false",
        f"train.max_iters={it}",
        f"train.batch_size={args.pretrain_batch}",
        f"train.lr={args.pretrain_lr}",
        f"train.warmup_iters={max(1, it // 20)}",
        f"train.lr_steps=[{int(it * 0.75)}, {int(it * 0.92)}]",
        "train.checkpoint_every=50",
        f"train.eval_every={max(1, it // args.pretrain_evals)}",
        "train.eval_at_end=true",
        f"train.log_every={max(1, it // 20)}",
        "train.seed=0",
        f"train.device={args.device}",
        *args.extra,
    ]
    cfg = load_config("demo", overrides)
    train_stage(cfg, run_dir, resume=(run_dir / "last.pth").is_file(), progress=False)
    return final


def ft_stage2_config(args: argparse.Namespace, paths: dict[str, Path], variant: str, seed: int, init: Path):
    """Stage-2 config of one run: from the stage-1 checkpoint, paper initialisation of the new modules
    (PyTorch defaults, ``scb_zero_init: false``), frozen BN and stem + stage 1 (mmdet ``norm_eval``,
    ``frozen_stages: 1``), lr x2 for AWD/SCB."""
    from darkseg.config import load_config

    _, extra, _ = FT_VARIANTS[variant]
    common = [
        f"data.train.image_dir={paths['train_images']}",
        f"data.train.ann_file={paths['train_ann']}",
        "data.val=null",
        f"train.init_from={init}",
        *PAPER_FINETUNE,
        f"synth.camera={args.train_camera}",
        f"synth.ratio_range=[{args.ratio[0]}, {args.ratio[1]}]",
        "train.eval_at_end=false",
        f"train.seed={seed}",
        f"train.device={args.device}",
    ]
    if args.scale == "paper":
        base = args.config or "syncoco2lis_awd_scb_dsl"
        sched = [f"train.epochs={args.epochs}"]
    else:
        base = args.config or "demo"
        it = args.iters
        sched = [
            _classes_override(),
            *_size_overrides(args),
            "train.epochs=null",
            f"train.max_iters={it}",
            f"train.batch_size={args.batch}",
            f"train.lr={args.lr}",
            f"train.warmup_iters={max(1, it // 10)}",
            f"train.lr_steps=[{int(it * 0.75)}, {int(it * 0.92)}]",
            "train.lr_step_unit=iter",
            "train.grad_clip=null",
            "train.checkpoint_every=0",
            f"train.log_every={max(1, it // 5)}",
        ]
    return load_config(base, common + sched + extra + list(args.extra))


def _ap100(v: float) -> float:
    return v if math.isnan(v) else round(100 * max(v, 0.0), 2)


def _metrics_rows(study, variant, seed, metrics, extra) -> list[dict]:
    rows = []
    for test, per in metrics.items():
        for iou in ("segm", "bbox"):
            m = per[iou]
            rows.append(
                {
                    "study": study,
                    "variant": variant,
                    "seed": seed,
                    "test": test,
                    "iou": iou,
                    **{k: _ap100(m[k]) for k in ("AP", "AP50", "AP75")},
                    **extra,
                }
            )
    return rows


def append_csv(path: Path, rows: list[dict]) -> None:
    """Add rows (one run's) to the results CSV; rewritten atomically, sorted, header first."""
    order = {v: i for i, v in enumerate(FT_VARIANTS)}
    append_rows(
        path,
        rows,
        CSV_FIELDS,
        key=lambda r: (r["study"], r["variant"], r["seed"], r["test"], r["iou"]),
        order=lambda r: (r["study"], r["seed"], order.get(r["variant"], 99), r["test"], r["iou"]),
    )


def ft_run_one(args, paths, variant: str, seed: int, init: Path, csv_path: Path) -> list[dict]:
    """Fine-tune one variant with one seed (or, for ``none``, take the stage-1 model) and evaluate it
    on the dark, harsh-dark and clean test sets; the rows go to the results CSV."""
    from darkseg.demo.stages import evaluate_views, train_stage

    study = ft_study_name(args)
    done = [
        r for r in read_csv(csv_path) if r["study"] == study and r["variant"] == variant and r["seed"] == seed
    ]
    if done:
        return done
    t0 = time.perf_counter()

    def record(metrics: dict, iterations: int, train_seconds: float, status: str) -> list[dict]:
        """Append this run's rows (``status`` "ok" or "diverged") to the results CSV and return them."""
        extra = {
            "iterations": iterations,
            "train_seconds": round(train_seconds, 1),
            "total_seconds": round(time.perf_counter() - t0, 1),
            "stage1_sha256": _sha256(init),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "status": status,
        }
        rows = _metrics_rows(study, variant, seed, metrics, extra)
        append_csv(csv_path, rows)
        return rows

    run_dir = args.out / (f"{args.tag}_{variant}" if args.tag else variant) / f"seed{seed}"
    trains = FT_VARIANTS[variant][2]
    if trains:
        from darkseg.engine.train import TrainingError

        cfg = ft_stage2_config(args, paths, variant, seed, init)
        try:
            summary = train_stage(cfg, run_dir, progress=False)
        except TrainingError as exc:
            if "non-finite loss" not in str(exc):
                raise
            # a diverged run is a result too: kept in the CSV without AP, reported as diverged
            print(f"{variant} seed {seed}: diverged ({str(exc)[:120]})", flush=True)
            nan = {"AP": float("nan"), "AP50": float("nan"), "AP75": float("nan")}
            metrics = {t: {"segm": nan, "bbox": nan} for t in ("dark", "dark_harsh", "clean")}
            iters = int(str(exc).split("iteration ")[1].split(":")[0])
            return record(metrics, iters, time.perf_counter() - t0, "diverged")
        model_path, iters, secs = Path(summary["final_model"]), summary["iterations"], summary["seconds"]
        class_names = list(cfg.model.class_names)
    else:
        model_path, iters, secs = init, 0, 0.0
        class_names = list(FT_CLASSES) if args.scale == "cpu" else None  # None: the checkpoint's
    views = {test: (paths[test], paths["ann_png"]) for test in ("dark", "dark_harsh", "clean")}
    evals = evaluate_views(model_path, views, class_names, args.device, progress=False)
    return record({test: r["metrics"] for test, r in evals.items()}, iters, secs, "ok")


# ------------------------------------------------------------------------------ paired statistics
def ft_aggregate(rows: list[dict], study: str) -> dict:
    """{variant: {"label", "seeds", (test, iou): {seed: AP}}}"""
    out: dict[str, dict] = {}
    for v in FT_VARIANTS:
        rs = [r for r in rows if r["study"] == study and r["variant"] == v]
        if not rs:
            continue
        row: dict = {"label": FT_VARIANTS[v][0], "seeds": sorted({r["seed"] for r in rs})}
        row["diverged"] = sorted({r["seed"] for r in rs if r["status"] == "diverged"})
        rs = [r for r in rs if r["status"] != "diverged"]
        row["train_seconds"] = _mean_std([r["train_seconds"] for r in rs])[0] if rs else float("nan")
        row["iterations"] = max((r["iterations"] for r in rs), default=0)
        for test, iou in FT_COLUMNS:
            row[(test, iou)] = {r["seed"]: r["AP"] for r in rs if r["test"] == test and r["iou"] == iou}
        out[v] = row
    return out


def _cell(vals: dict[int, float]) -> str:
    if not vals:
        return "-"
    m, s = _mean_std(list(vals.values()))
    return f"{m:.1f} ± {s:.1f}"


def _dcell(d) -> str:
    if d is None:
        return "-"
    m, half, _, _ = d
    return f"{m:+.1f} [{m - half:+.1f}, {m + half:+.1f}]"


def ft_tables(agg: dict, r1: str, r2: str) -> str:
    names = {t: FT_TEST_NAMES[t].format(r1=r1, r2=r2) for t in FT_TEST_NAMES}
    head = (
        "| variant | seeds | "
        + " | ".join(f"{names[t]} {iou}" for t, iou in FT_COLUMNS)
        + " | iters | train s |"
    )
    lines = [head, "|" + "---|" * (len(FT_COLUMNS) + 4)]
    for row in agg.values():
        cells = [_cell(row[c]) for c in FT_COLUMNS]
        div = f" (diverged: seed {', '.join(map(str, row['diverged']))})" if row["diverged"] else ""
        lines.append(
            f"| {row['label']}{div} | {len(row['seeds']) - len(row['diverged'])} | "
            + " | ".join(cells)
            + f" | {row['iterations']} | {row['train_seconds']:.0f} |"
        )
    out = ["AP x100, mean ± std over seeds:", "", *lines, ""]
    ref = agg.get(FT_REF)
    if ref is None:
        return "\n".join(out + ["(2) was not run: no paired differences."])
    out += [
        "Paired difference to (2) (same seed = same data order and synthetic noise stream), mean and "
        "95 % t-interval over seeds:",
        "",
        "| variant | " + " | ".join(f"{names[t]} {iou}" for t, iou in FT_COLUMNS) + " |",
        "|" + "---|" * (len(FT_COLUMNS) + 1),
    ]
    for v, row in agg.items():
        if v == FT_REF:
            continue
        cells = [_dcell(paired_diff(row[c], ref[c])) for c in FT_COLUMNS]
        out.append(f"| {row['label']} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def ft_verdicts(agg: dict, r1: str, r2: str) -> list[str]:
    """Plain statements from the paired 95 % intervals (segm AP): helps / hurts when the interval
    excludes 0, otherwise within noise."""
    ref = agg.get(FT_REF)
    if ref is None:
        return []
    names = {t: FT_TEST_NAMES[t].format(r1=r1, r2=r2) for t in FT_TEST_NAMES}
    out = []
    for v, row in agg.items():
        if v == FT_REF:
            continue
        if row["diverged"] and len(row["diverged"]) == len(row["seeds"]):
            out.append(f"* {row['label']}: diverged (non-finite loss) at every seed; no AP.")
            continue
        sign = -1.0 if v == "none" else 1.0  # (1) is read as "what fine-tuning (2) adds to it"
        parts = []
        for test in ("dark", "dark_harsh", "clean"):
            d = paired_diff(row[(test, "segm")], ref[(test, "segm")])
            if d is None:
                parts.append(f"{names[test]}: fewer than 2 paired seeds")
                continue
            m, half, _, _ = d
            m *= sign
            word = "helps" if m - half > 0 else "hurts" if m + half < 0 else "within noise"
            parts.append(f"{names[test]} {m:+.1f} ± {half:.1f} ({word})")
        what = (
            "(2) vs (1), i.e. fine-tuning on synthetic low-light" if v == "none" else f"{row['label']} vs (2)"
        )
        out.append(f"* {what}, segm AP (95 % interval half-width): " + "; ".join(parts) + ".")
    return out


def ft_stage1_record(args, csv_path: Path) -> dict | None:
    """Stage 1's clean-val AP curve, kept next to the results CSV (``<csv stem>_stage1.json``, committed)
    so that the report can be regenerated without the run folder."""
    import json as _json

    from darkseg.utils.io import atomic_write_json

    rec_path = csv_path.with_name(csv_path.stem + "_stage1.json")
    s = args.out / "stage1" / "summary.json"
    if args.scale == "cpu" and s.is_file() and (args.out / "stage1" / "final.pth").is_file():
        summ = _json.loads(s.read_text())
        hist = {int(k): v for k, v in summ.get("eval_history", {}).items()}
        if summ.get("eval"):
            hist[summ["iterations"]] = summ["eval"]
        rec = {
            "iterations": summ["iterations"],
            "world_size": summ.get("world_size", 1),
            "batch_per_process": args.pretrain_batch,
            "seconds": summ["seconds"],
            "loss_first": summ["loss_first"],
            "loss_last": summ["loss_last"],
            "sha256": _sha256(args.out / "stage1" / "final.pth"),
            "clean_val": {
                str(k): {iou: round(100 * v[iou]["AP"], 2) for iou in ("segm", "bbox")}
                for k, v in sorted(hist.items())
            },
        }
        atomic_write_json(rec_path, rec, indent=2)
    return _json.loads(rec_path.read_text()) if rec_path.is_file() else None


def ft_stage1_text(rec: dict | None) -> str:
    if rec is None:
        return ""
    curve = ", ".join(f"{k}: {v['segm']:.1f}/{v['bbox']:.1f}" for k, v in rec["clean_val"].items())
    return (
        f"Stage 1 (plain ResNet-18 Mask R-CNN on clean sRGB scenes, {rec['iterations']} iterations x "
        f"batch {rec['batch_per_process']} x {rec['world_size']} process(es), {rec['seconds'] / 60:.0f} "
        f"min, checkpoint {rec['sha256']}): clean-val segm/box AP by iteration: {curve}."
    )


def ft_main(argv=None) -> int:
    args = ft_parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    study = ft_study_name(args)
    csv_path = args.results or REPO / "benchmarks" / "results" / f"ablation_{study}.csv"
    if args.stage == "data":
        ft_make_data(args)
        return 0
    if args.stage != "report":
        paths = ft_make_data(args)
        init = ft_pretrain(args, paths)
        if int(os.environ.get("RANK", "0")) != 0:  # torchrun stage 1: rank 0 reports
            return 0
        print(f"stage 1: {init}", flush=True)
        if args.stage in ("all", "finetune"):
            runs = [(v, s) for s in args.seeds for v in args.variants]
            for k, (variant, seed) in enumerate(runs, 1):
                t = time.perf_counter()
                rows = ft_run_one(args, paths, variant, seed, init, csv_path)
                ap = {(r["test"], r["iou"]): r["AP"] for r in rows}
                print(
                    f"[{k}/{len(runs)}] {variant:7s} seed {seed}: segm AP dark {ap[('dark', 'segm')]:.1f} "
                    f"harsh {ap[('dark_harsh', 'segm')]:.1f} clean {ap[('clean', 'segm')]:.1f} "
                    f"({time.perf_counter() - t:.0f} s)",
                    flush=True,
                )
    text = ft_report(args, csv_path)
    print("\n" + text)
    if args.write_docs:
        write_docs(args.docs, text, header=FT_DOCS_HEADER + (f" ({args.tag})" if args.tag else ""))
        print(f"wrote the tables into {args.docs}")
    return 0


def ft_report(args, csv_path: Path) -> str:
    study = ft_study_name(args)
    rows = read_csv(csv_path)
    agg = ft_aggregate(rows, study)
    r1 = f"{args.ratio[0]:g}-{args.ratio[1]:g}"
    r2 = f"{args.harsh_ratio[0]:g}-{args.harsh_ratio[1]:g}"
    runs = [r for r in rows if r["study"] == study and r["test"] == "dark" and r["iou"] == "segm"]
    cpu_h = sum(r["total_seconds"] for r in runs) / 3600
    scale = (
        f"Results file: `benchmarks/results/{csv_path.name}` ({len(runs)} finished runs, "
        f"{cpu_h:.1f} process-hours of stage-2 training + evaluation)."
    )
    parts = [
        scale,
        "",
        ft_stage1_text(ft_stage1_record(args, csv_path)),
        "",
        ft_tables(agg, r1, r2),
        "",
        *ft_verdicts(agg, r1, r2),
    ]
    return "\n".join(p for p in parts if p is not None)


def main(argv=None) -> int:
    from darkseg.config import load_config

    given = sys.argv[1:] if argv is None else list(argv)
    if "--preset" in given:
        if "noise" in given[given.index("--preset") + 1 : given.index("--preset") + 2]:
            import ablation_noise  # the second design: its own module

            return ablation_noise.main(argv)
        return ft_main(argv)
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    base = load_config("demo")
    t0 = time.perf_counter()
    paths = make_data(args, base)
    results = []
    runs = [(v, s) for s in args.seeds for v in args.variants]  # seed-major: every variant gets seed 0 first
    for k, (variant, seed) in enumerate(runs, 1):
        t = time.perf_counter()
        r = run_one(args, paths, variant, seed)
        results.append(r)
        m = r["metrics"]
        print(
            f"[{k}/{len(runs)}] {variant:15s} seed {seed}: dark segm/box AP "
            f"{100 * m['dark']['segm']['AP']:.1f}/{100 * m['dark']['bbox']['AP']:.1f}  "
            f"clean {100 * m['clean']['segm']['AP']:.1f}/{100 * m['clean']['bbox']['AP']:.1f}  "
            f"({time.perf_counter() - t:.0f} s)",
            flush=True,
        )
    agg = aggregate(results)
    table = format_table(agg)
    notes = verdicts(agg)
    scale = (
        f"Scale: {args.train_images} training / {args.test_images} test scenes of "
        f"{args.size[0]}x{args.size[1]} px, {args.iters} iterations x batch {args.batch} per run, "
        f"seeds {args.seeds}, "
        f"ResNet-18 Mask R-CNN from scratch (packaged `demo` config), training camera "
        f"{base.synth.camera}, dark test camera {args.test_camera}, exposure ratio "
        f"{base.synth.ratio_range[0]:g}-{base.synth.ratio_range[1]:g}; "
        f"{torch.get_num_threads()} torch threads on {args.device}; "
        f"{sum(r['total_seconds'] for r in results) / 60:.0f} min of training + evaluation in all "
        f"(this invocation: {time.perf_counter() - t0:.0f} s wall; finished runs are reused)."
    )
    text = "\n".join([scale, "", table, "", *notes])
    print("\n" + text)
    (args.out / "ablation.md").write_text(text + "\n", encoding="utf-8")
    if args.write_docs:
        write_docs(args.docs, text)
        print(f"wrote the table into {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
