"""Prediction throughput: images/s of ``Predictor`` batches 1 / 4 / 8, float32 vs reduced-precision autocast.

Usage::

    python benchmarks/predict.py                       # 600x400, 8 images, 3 rounds, one thread
    python benchmarks/predict.py --repeats 1 --size 300 200   # quicker
    python benchmarks/predict.py --device cuda         # float32 / float16 / bfloat16 on the GPU

``--device cuda``: the same model and images on the GPU, every ``--dtypes`` (default float32, float16,
bfloat16; on the CPU float32, bfloat16); times are wall-clock with ``torch.cuda.synchronize()`` before
each clock read (process CPU time says nothing about GPU work and is not reported there).

Model: the paper's Mask R-CNN R50-FPN "Ours" (caffe R50 + AWD + SCB, fused; 8 classes, ``min_size`` 400,
``max_size`` 600, so a 600x400 image is used at its own size, padded to 416x608), random weights with
BatchNorm statistics calibrated on the inputs (``benchmarks/model.py``: with identity statistics a random
R50 finds nothing and the heads do no work). Inputs: 8 rendered scenes (``darkseg.data.scenes``) darkened
to 1/8 of their brightness. Each configuration predicts the same 8 images with
``Predictor.predict_tensors`` in chunks of ``batch``; configurations are timed round-robin (one pass of
each per round, median over rounds) so that load drift on a shared machine affects all alike; ratios are
to batch 1 float32 of the same run. Times are process CPU time with one torch thread (``--threads``), so
images/s is per core; wall-clock images/s is reported too.

Accuracy of each reduced precision on this model: detections of the float32 and reduced runs matched
per image (same label, closest box within 8 px) over the ``--match-top`` highest-scoring float32
detections per image (random weights: scores are low and close together, so a score cut would select nothing).

``--accuracy CKPT DIR``: only the bfloat16-vs-float32 comparison, for a trained checkpoint on the images of
a folder: float32 detections scoring >= ``--score`` matched as above, plus bfloat16 detections scoring
>= ``--score`` + 0.05 that have no float32 partner.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

from darkseg.data.scenes import render_scene
from darkseg.engine.predictor import Predictor
from darkseg.models import build_model

sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent))
from model import calibrate_batchnorm, cfg_for  # noqa: E402 - sibling benchmark script


def _images(n: int, size: tuple[int, int]) -> list[torch.Tensor]:
    out = []
    for i in range(n):
        img = render_scene(np.random.default_rng(i), size).image  # size = (W, H)
        x = torch.from_numpy(img).permute(2, 0, 1).float() / 255.0
        out.append(x / 8.0)  # a dark picture
    return out


def _cpu_flags() -> str:
    try:
        txt = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return "lscpu unavailable"
    flags = next((ln.split(":", 1)[1].split() for ln in txt.splitlines() if ln.startswith("Flags")), [])
    name = next((ln.split(":", 1)[1].strip() for ln in txt.splitlines() if ln.startswith("Model name")), "?")
    want = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_fp16") if f in flags]
    return f"{name}; bf16-relevant flags: {', '.join(want) or 'none'}"


def _match_stats(a, b, top: int | None = None, min_score: float | None = None) -> dict[str, float]:
    """Worst box / score difference and mask IoU over the ``top`` best float32 detections (or those
    scoring >= ``min_score``)."""
    worst = {"n": 0, "unmatched": 0, "box": 0.0, "score": 0.0, "iou": 1.0, "ious": []}
    idx = range(min(top, len(a))) if top is not None else np.flatnonzero(a.scores >= min_score)
    for i in idx:
        cand = np.flatnonzero(b.labels == a.labels[i])
        if cand.size == 0:
            worst["unmatched"] += 1
            continue
        j = int(cand[np.abs(b.boxes[cand] - a.boxes[i]).max(1).argmin()])
        d = float(np.abs(b.boxes[j] - a.boxes[i]).max())
        if d > 8:  # no partner nearby
            worst["unmatched"] += 1
            continue
        u = np.logical_or(a.masks[i], b.masks[j]).sum()
        iou = float(np.logical_and(a.masks[i], b.masks[j]).sum() / u) if u else 1.0
        worst["n"] += 1
        worst["box"] = max(worst["box"], d)
        worst["score"] = max(worst["score"], float(abs(a.scores[i] - b.scores[j])))
        worst["iou"] = min(worst["iou"], iou)
        worst["ious"].append(iou)
    return worst


def accuracy(ckpt: str, folder: str, score: float) -> None:
    """bfloat16 vs float32 of a trained checkpoint on the images of ``folder``."""
    from darkseg.engine.predictor import collect_inputs

    files = collect_inputs([folder])
    p32 = Predictor(ckpt, device="cpu", score_thr=0.0)
    p16 = Predictor(ckpt, device="cpu", score_thr=0.0, dtype="bfloat16")
    stats, extra, n32, n16 = [], 0, 0, 0
    for f in files:
        a, b = p32.predict(f), p16.predict(f)
        n32 += int((a.scores >= score).sum())
        n16 += int((b.scores >= score).sum())
        stats.append(_match_stats(a, b, min_score=score))
        extra += _match_stats(b, a, min_score=score + 0.05)["unmatched"]
    ious = [v for s in stats for v in s["ious"]] or [float("nan")]
    print(
        f"{ckpt} on {len(files)} images of {folder}, score >= {score}: float32 {n32} / bfloat16 {n16} "
        f"detections; {sum(s['n'] for s in stats)} matched, {sum(s['unmatched'] for s in stats)} float32 "
        f"detections without a bfloat16 partner, {extra} bfloat16 detections >= {score + 0.05:.2f} without a "
        f"float32 partner; max box difference {max(s['box'] for s in stats):.2f} px, max score difference "
        f"{max(s['score'] for s in stats):.4f}, mask IoU min {min(ious):.3f} / mean {np.mean(ious):.4f}"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs=2, default=(600, 400), metavar=("W", "H"))
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    ap.add_argument("--repeats", type=int, default=3, help="timed rounds")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument(
        "--dtypes", nargs="+", help="default: float32 bfloat16 (CPU), float32 float16 bfloat16 (CUDA)"
    )
    ap.add_argument("--match-top", type=int, default=10)
    ap.add_argument("--accuracy", nargs=2, metavar=("CKPT", "DIR"), help="only bf16 vs fp32 of a checkpoint")
    ap.add_argument("--score", type=float, default=0.5, help="score cut for --accuracy")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    if args.accuracy:
        accuracy(*args.accuracy, args.score)
        return
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"predict.py: --device {args.device} but no CUDA device on this machine")
    cuda = dev.type == "cuda"
    dtypes = args.dtypes or (["float32", "float16", "bfloat16"] if cuda else ["float32", "bfloat16"])
    if dtypes[0] != "float32":
        raise SystemExit("predict.py: --dtypes must start with float32 (the reference)")
    w, h = args.size
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, {args.images} images {w}x{h}")
    print(f"GPU: {torch.cuda.get_device_name(dev)}\n" if cuda else f"CPU: {_cpu_flags()}\n")
    torch.manual_seed(0)
    images = _images(args.images, (w, h))
    model = build_model(cfg_for(True, True, min_size=min(h, w), max_size=max(h, w))).eval()
    calibrate_batchnorm(model, images[:2])
    predictors = {dt: Predictor(copy.deepcopy(model), device=dev, score_thr=0.0, dtype=dt) for dt in dtypes}
    configs = {(dt, b): p for dt, p in predictors.items() for b in args.batches}

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(dev)

    def run(p: Predictor, b: int):
        return [r for s in range(0, len(images), b) for r in p.predict_tensors(images[s : s + b])]

    cpu: dict = {k: [] for k in configs}
    wall: dict = {k: [] for k in configs}
    with torch.inference_mode():
        for (_dt, b), p in configs.items():  # warm-up
            run(p, b) if b == args.batches[0] else p.predict_tensors(images[:b])
        for _ in range(args.repeats):
            for (dt, b), p in configs.items():
                sync()
                t0, w0 = time.process_time(), time.perf_counter()
                run(p, b)
                sync()
                cpu[(dt, b)].append(time.process_time() - t0)
                wall[(dt, b)].append(time.perf_counter() - w0)
            print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    n = len(images)
    base_key = ("float32", args.batches[0])
    timed = wall if cuda else cpu  # the ratio column: wall time on the GPU, CPU time on the CPU
    base = n / statistics.median(timed[base_key])
    print(f"Median of {args.repeats} rounds; ratios to batch {args.batches[0]} float32\n")
    print(f"| dtype | batch | images/s (CPU time) | × batch {args.batches[0]} float32 | images/s (wall) |")
    print("|---|---:|---:|---:|---:|")
    for dt, b in configs:
        ips = n / statistics.median(cpu[(dt, b)])
        wips = n / statistics.median(wall[(dt, b)])
        ratio = (wips if cuda else ips) / base
        print(f"| {dt} | {b} | {'n/a (GPU)' if cuda else f'{ips:.3f}'} | {ratio:.2f} | {wips:.3f} |")
    # accuracy of each reduced precision against float32 (batch 1 predictions of both)
    p32 = predictors["float32"]
    ref = [p32.predict(x) for x in images]
    for dt in dtypes[1:]:
        stats, dets = [], []
        for x, a in zip(images, ref):
            r = predictors[dt].predict(x)
            dets.append((len(a), len(r)))
            stats.append(_match_stats(a, r, args.match_top))
        tot = sum(s["n"] for s in stats)
        print(
            f"\n{dt} vs float32, top {args.match_top} float32 detections per image: {tot} matched, "
            f"{sum(s['unmatched'] for s in stats)} unmatched; max box difference "
            f"{max(s['box'] for s in stats):.2f} px, max score difference "
            f"{max(s['score'] for s in stats):.4f}, min mask IoU {min(s['iou'] for s in stats):.3f}; "
            f"detections per image (float32, {dt}): {dets}"
        )


if __name__ == "__main__":
    main()
