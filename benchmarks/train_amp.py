"""Training step on a GPU: float32 vs AMP (float16 autocast + GradScaler), plain vs DSL step.

Usage::

    python benchmarks/train_amp.py --device cuda                 # batch 2 and 8, 600x400
    python benchmarks/train_amp.py --device cpu --size 96 64 --batches 1 --steps 1   # plumbing only

Model: the paper's Mask R-CNN "Ours" (caffe R50 + AWD + SCB, 8 classes, ``min_size``/``max_size`` = the
image's short/long side), random weights, built and fed as in ``benchmarks/model.py`` (``_train_setup``:
random images, 4 boxes and masks per image, SGD with momentum), frozen BatchNorm statistics calibrated on
the input (``calibrate_batchnorm``: with identity statistics activations reach ~1e4 and overflow float16).
The last column counts timed steps whose loss was not finite. A step is what ``darkseg train`` runs:
forward (``model(noisy, targets)``, or ``model.forward_dsl(clean, noisy, targets)`` for DSL) under
``torch.autocast(float16)`` when AMP is on, ``GradScaler.scale(loss).backward()``, ``unscale_``,
gradient clipping to L2 norm 10 (``train.grad_clip``; random weights diverge without it), ``step``,
``update``. AMP is CUDA only (the training engine never uses it on the CPU), so on the CPU
only the float32 rows are measured.

Times: wall-clock milliseconds per step, median of ``--steps`` timed steps after ``--warmup`` untimed
ones, with ``torch.cuda.synchronize()`` before each clock read. Peak memory: ``max_memory_allocated``
over the timed steps (tensors only, not the caching allocator's reserve), CUDA only. Ratios are to the
float32 step of the same batch and mode.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import _train_setup, calibrate_batchnorm  # noqa: E402 - sibling benchmark script


def _to(x, dev: torch.device):
    """Move a tensor / list / dict of tensors to ``dev``."""
    if isinstance(x, torch.Tensor):
        return x.to(dev)
    if isinstance(x, dict):
        return {k: _to(v, dev) for k, v in x.items()}
    return [_to(v, dev) for v in x]


def measure(
    size: tuple[int, int], batch: int, mode: str, amp: bool, dev: torch.device, warmup: int, steps: int
):
    """Median ms per training step, peak allocated GiB (CUDA; ``nan`` on the CPU) and the number of timed
    steps with a non-finite loss (GradScaler skips their update).

    ``size``: (W, H) pixels; ``mode``: ``"plain"`` or ``"dsl"``; ``amp``: float16 autocast + GradScaler.
    """
    model, opt, clean, noisy, targets = _train_setup(size, batch)
    model.to(dev)
    clean, noisy, targets = _to(clean, dev), _to(noisy, dev), _to(targets, dev)
    calibrate_batchnorm(model, noisy)  # identity statistics: a random R50's activations overflow float16
    model.train()
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    cuda = dev.type == "cuda"

    def step() -> torch.Tensor:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=amp):
            losses = model.forward_dsl(clean, noisy, targets) if mode == "dsl" else model(noisy, targets)
        total = sum(losses.values())
        scaler.scale(total).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)  # random weights diverge without it
        scaler.step(opt)
        scaler.update()
        return total.detach()

    for _ in range(warmup):
        step()
    if cuda:
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    times, bad = [], 0
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = step()
        if cuda:
            torch.cuda.synchronize(dev)
        times.append(time.perf_counter() - t0)
        bad += int(not torch.isfinite(loss))
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if cuda else float("nan")
    return 1e3 * statistics.median(times), peak, bad


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu")
    ap.add_argument("--size", type=int, nargs=2, default=(600, 400), metavar=("W", "H"))
    ap.add_argument("--batches", type=int, nargs="+", default=[2, 8])
    ap.add_argument("--warmup", type=int, default=3, help="untimed steps first (cuDNN autotuning, caches)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps (median reported)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        print(f"train_amp.py: --device {args.device} but no CUDA device on this machine", file=sys.stderr)
        return 2
    if dev.type == "cpu":
        torch.set_flush_denormal(True)  # as the training engine does on the CPU
    precisions = ["float32", "amp"] if dev.type == "cuda" else ["float32"]
    w, h = args.size
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "CPU"
    print(
        f"torch {torch.__version__}, {name}, input {w}x{h}, median of {args.steps} steps after "
        f"{args.warmup} warm-up; TF32 matmul {torch.backends.cuda.matmul.allow_tf32}, "
        f"TF32 cuDNN {torch.backends.cudnn.allow_tf32}, cuDNN benchmark {torch.backends.cudnn.benchmark}\n"
    )
    print(
        "| batch | step | precision | ms/step | × float32 | images/s | peak CUDA memory (GiB) | non-finite |"
    )
    print("|---:|---|---|---:|---:|---:|---:|---:|")
    for b in args.batches:
        for mode in ("plain", "dsl"):
            base = None
            for prec in precisions:
                ms, peak, bad = measure(args.size, b, mode, prec == "amp", dev, args.warmup, args.steps)
                if dev.type == "cuda":
                    torch.cuda.empty_cache()  # the previous configuration's blocks
                base = ms if base is None else base
                mem = f"{peak:.2f}" if peak == peak else "n/a (CPU)"
                cells = [b, mode, prec, f"{ms:.1f}", f"{ms / base:.2f}", f"{1e3 * b / ms:.1f}", mem, bad]
                print("| " + " | ".join(map(str, cells)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
