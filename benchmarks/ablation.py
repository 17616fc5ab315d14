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
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

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
    """Scenes and the four test renderings; everything is reused when already there."""
    from darkseg.data.scenes import generate_scenes
    from darkseg.engine.demo import write_low_light_set
    from darkseg.synth import SynthConfig

    data = args.out / "data"
    size = tuple(args.size)
    classes = tuple(base_cfg.model.class_names)
    paths: dict[str, Path] = {}

    def scenes(name: str, n: int, seed: int) -> tuple[Path, Path]:
        d = data / name
        if (d / "annotations.json").is_file():
            return d / "images", d / "annotations.json"
        return generate_scenes(d, n, size, seed, classes)

    paths["train_images"], paths["train_ann"] = scenes("train", args.train_images, args.data_seed)
    paths["srgb_images"], paths["test_ann"] = scenes("test", args.test_images, args.data_seed + 1)
    raw_cfg = SynthConfig(**{**base_cfg.synth.to_dict(), "camera": args.test_camera})
    isp_cfg = SynthConfig(**{**raw_cfg.to_dict(), **{f: True for f in ISP_FIELDS}})
    for key, cfg, clean in (("dark_raw", raw_cfg, "clean_raw"), ("dark_srgb", isp_cfg, None)):
        if not (data / key / "annotations.json").is_file():
            write_low_light_set(
                paths["srgb_images"],
                paths["test_ann"],
                data / key,
                cfg,
                args.data_seed + 2,
                clean_out_dir=None if clean is None else data / clean,
            )
        paths[key] = data / key / "images"
        if clean is not None:
            paths[clean] = data / clean / "images"
    paths["ann_png"] = data / "dark_raw" / "annotations.json"  # .png file names
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
    from darkseg.data.build import build_dataset
    from darkseg.engine.evaluate import evaluate_model
    from darkseg.engine.train import train
    from darkseg.models import load_model
    from darkseg.utils.io import atomic_write_json

    run_dir = args.out / variant / f"seed{seed}"
    result_file = run_dir / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    label, overrides, kind = VARIANTS[variant]
    cfg = load_config("demo", common_overrides(args, paths, seed) + overrides)
    t0 = time.perf_counter()
    # no result.json: a run that never finished (or never started); replace its files, do not append
    summary = train(cfg, run_dir, resume=False, progress=False, overwrite=True)
    model, _ = load_model(summary["final_model"], map_location=args.device)
    tests = (
        {"dark": paths["dark_raw"], "clean": paths["clean_raw"]}
        if kind == "raw"
        else {"dark": paths["dark_srgb"], "clean": paths["srgb_images"]}
    )
    metrics = {}
    for name, img_dir in tests.items():
        ann = paths["ann_png"] if name == "dark" or kind == "raw" else paths["test_ann"]
        ds = build_dataset("coco", img_dir, ann, class_names=list(cfg.model.class_names))
        metrics[name] = evaluate_model(model, ds, device=args.device, progress=False)["metrics"]
    result = {
        "variant": variant,
        "label": label,
        "seed": seed,
        "input": kind,
        "metrics": metrics,
        "train_seconds": summary["seconds"],
        "total_seconds": time.perf_counter() - t0,
        "loss_first": summary["loss_first"],
        "loss_last": summary["loss_last"],
        "iterations": summary["iterations"],
    }
    atomic_write_json(result_file, result, indent=2)
    return result


# ------------------------------------------------------------------------------------------ table
def _mean_std(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, s


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


def write_docs(path: Path, text: str) -> None:
    """Replace the body of the ``### The paper's ablation`` subsection of ``path`` (or, without one, of
    the ``## Ablation`` section), up to the next header; the demo subsection is kept."""
    from darkseg.utils.io import atomic_open

    doc = path.read_text(encoding="utf-8")
    lines = doc.splitlines(keepends=True)
    sub = next((i for i, line in enumerate(lines) if line.startswith("### The paper's ablation")), None)
    start = (
        sub
        if sub is not None
        else next((i for i, line in enumerate(lines) if line.startswith("## Ablation")), None)
    )
    if start is None:
        lines += ["\n", "## Ablation (`benchmarks/ablation.py`)\n"]
        start = len(lines) - 1
    stops = ("## ", "### ") if sub is not None else ("## ",)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(stops)), len(lines))
    new = lines[: start + 1] + ["\n", text.rstrip() + "\n", "\n"] + lines[end:]
    with atomic_open(path, "w") as fh:
        fh.write("".join(new).rstrip() + "\n")


def main(argv=None) -> int:
    from darkseg.config import load_config

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
