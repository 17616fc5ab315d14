"""Throughput of the low-light synthesis pipeline (clean + noisy rendering) at 600x400.

Prints images/second for the NumPy path (on the float32 test image, and on the same image as 8-bit
codes, ``uint8``, as photos are decoded), the torch path one image at a time, and the torch path
batched, with ratios against the NumPy float32 baseline measured in the same run.

    python benchmarks/synth.py                     # CPU, 1 thread
    python benchmarks/synth.py --device cuda       # torch paths on the GPU (NumPy stays on CPU)
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from darkseg.synth import LowLightSynthesizer, SynthConfig
from darkseg.utils.runtime import keep_freed_memory


def test_image(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A photo-like float32 (H, W, 3) image: smooth gradients, blobs and some texture."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.empty((h, w, 3), np.float32)
    for c in range(3):
        f = rng.uniform(0.5, 3.0, 2)
        img[..., c] = 0.5 + 0.35 * np.sin(f[0] * xx / w * np.pi + c) * np.cos(f[1] * yy / h * np.pi)
    img += rng.normal(0, 0.03, img.shape).astype(np.float32)
    return np.clip(img, 0, 1)


def _timeit(fn, n: int, sync, repeat: int) -> tuple[float, float]:
    """Best of ``repeat`` (wall, process CPU) timings of ``n`` calls, after one warm-up call.

    The CPU time of this process is reported too because the machine may be shared: with other
    processes competing for the cores, wall time overstates the cost, CPU time does not.
    """
    fn()
    sync()
    best_wall = best_cpu = float("inf")
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            fn()
        sync()
        best_wall = min(best_wall, time.perf_counter() - t0)
        best_cpu = min(best_cpu, time.process_time() - c0)
    return best_wall, best_cpu


#: Whole-array passes per image of the NumPy path (default config: PGRU, "rgb", 8-bit rounding, float32
#: input; a uint8 input replaces the gather and linearisation, 12 of the 13 "unprocess" passes, by a
#: gather of the 8-bit codes and a table lookup),
#: counted from the code of src/darkseg/synth and raw/bayer.py; one pass reads one array and writes
#: one of the same size. Keys: (stage, array); arrays: "full" = (H, W, 3) float32, "packed32" /
#: "packed64" = (H/2, W/2, 4) float32 / float64. The Poisson sampler's gathers, index arrays and
#: subset walks are counted as whole passes (roughly: it takes one of two paths per pixel).
PASSES = {
    ("unprocess: CFA sites, linearise, colour matrix", "full"): 13,
    ("unprocess: white balance, highlight test, clip", "packed32"): 5,
    ("noise: Poisson shot noise", "packed64"): 34,
    ("noise: scale, read, row, quantisation, clip", "packed64"): 9,
    ("noise: Tukey-lambda uniforms and quantile, casts", "packed32"): 10,
    ("render (clean + noisy): demosaic, 8-bit rounding", "full"): 10,
    ("render (clean + noisy): 8-bit rounding of the planes", "packed32"): 6,
}


def copy_rate(nbytes: int, repeat: int = 5) -> float:
    """Single-thread ``np.copyto`` rate in GB/s (bytes read + bytes written per second), best of
    ``repeat`` copies of an ``nbytes`` float64 array."""
    a = np.ones(nbytes // 8)
    b = np.empty_like(a)
    np.copyto(b, a)
    n = max(1, int(2e8 // nbytes))
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            np.copyto(b, a)
        best = min(best, (time.perf_counter() - t0) / n)
    return 2 * nbytes / best / 1e9


def bandwidth_rows(h: int, w: int, ms_per_image: float) -> list[str]:
    """Markdown lines: bytes moved per image (:data:`PASSES`) against measured copy rates."""
    size = {"full": h * w * 3 * 4, "packed32": h * w * 4, "packed64": h * w * 8}
    total = sum(2 * size[arr] * n for (_, arr), n in PASSES.items())
    dram = copy_rate(256 * 2**20)
    cache = copy_rate(size["packed64"])
    lines = [
        f"\nbytes moved per image (whole-array passes counted from the code, {w}x{h}), numpy path",
        "| stage | array | passes | MB moved |\n|---|---|---:|---:|",
    ]
    for (stage, arr), n in PASSES.items():
        lines.append(f"| {stage} | {arr} | {n} | {2 * size[arr] * n / 1e6:.1f} |")
    lines.append(f"| **total** | | | **{total / 1e6:.0f}** |")
    lines.append(
        "\n| copy (np.copyto, 1 thread) | GB/s | ms to move the total | vs measured "
        f"{ms_per_image:.1f} ms/image |\n|---|---:|---:|---:|"
    )
    for name, rate in (
        ("256 MiB array (memory)", dram),
        (f"{size['packed64'] / 1e6:.1f} MB array (cache)", cache),
    ):
        ms = total / rate / 1e6
        lines.append(f"| {name} | {rate:.1f} | {ms:.1f} | {ms / ms_per_image:.2f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda (torch paths)")
    ap.add_argument("--threads", type=int, default=1, help="torch/OpenCV threads (default 1)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--n", type=int, default=32, help="images per measurement")
    ap.add_argument("--height", type=int, default=400)
    ap.add_argument("--width", type=int, default=600)
    ap.add_argument("--noise-model", default="PGRU")
    ap.add_argument("--output", default="rgb", choices=("rgb", "binned", "packed"), help="synth output")
    ap.add_argument("--repeat", type=int, default=3, help="report the best of this many timings")
    args = ap.parse_args()

    import cv2

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but no CUDA GPU is available")

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    synth = LowLightSynthesizer(SynthConfig(noise_model=args.noise_model, output=args.output))
    img = test_image(args.height, args.width)
    img8 = (img * 255).round().astype(np.uint8)  # the same photo as 8-bit codes
    rng = np.random.default_rng(0)
    rng8 = np.random.default_rng(0)  # its own stream: the float32 rows draw what they drew before
    gen = torch.Generator(device=dev).manual_seed(0)
    x1 = torch.from_numpy(img).permute(2, 0, 1).contiguous().to(dev)
    xb = x1.unsqueeze(0).repeat(args.batch, 1, 1, 1)
    n_batches = max(1, args.n // args.batch)

    rows = []
    # glibc's default allocator first, then keep_freed_memory() (what `darkseg synth` and CPU training
    # use; process-wide, so it is measured second)
    for alloc in ("", ", keep_freed_memory"):
        if alloc and not keep_freed_memory():
            break
        t = _timeit(lambda: synth.numpy(img, rng), args.n, lambda: None, args.repeat)
        rows.append((f"numpy, 1 image/call (CPU){alloc}", args.n / t[0], args.n / t[1]))
        t = _timeit(lambda: synth.numpy(img8, rng8), args.n, lambda: None, args.repeat)
        rows.append((f"numpy, 1 image/call (CPU), uint8 input{alloc}", args.n / t[0], args.n / t[1]))
        t = _timeit(lambda: synth.synth(x1, gen), args.n, sync, args.repeat)
        rows.append((f"torch, 1 image/call ({dev.type}){alloc}", args.n / t[0], args.n / t[1]))
        t = _timeit(lambda: synth.synth(xb, gen), n_batches, sync, args.repeat)
        nb = n_batches * args.batch
        rows.append((f"torch, batch {args.batch} ({dev.type}){alloc}", nb / t[0], nb / t[1]))

    # the shot-noise draw alone, on the packed image at a typical low-light level: NumPy's per-element
    # sampler, darkseg's vectorised one (what the pipeline uses on the CPU) and torch.poisson
    from darkseg.synth.poisson import poisson_numpy, poisson_torch
    from darkseg.synth.unprocess import unprocess_packed

    params = synth.sample_torch(1, gen, dev)
    linear = unprocess_packed(x1.unsqueeze(0), params.unprocess, synth.pattern)
    pois_rows = []
    for k_gain in (0.25, 1.0, 3.0, 12.0):  # the LIS camera's gain range is 0.22-14 DN/e-
        lam = linear * synth.camera.saturation / 55 / k_gain
        lam_np = lam.cpu().numpy()
        pois = [
            ("numpy Generator.poisson (CPU)", lambda a=lam_np: rng.poisson(a), lambda: None),
            ("darkseg poisson_numpy (CPU)", lambda a=lam_np: poisson_numpy(a, rng), lambda: None),
            (f"torch.poisson ({dev.type})", lambda a=lam: torch.poisson(a, generator=gen), sync),
        ]
        if dev.type == "cpu":
            pois.append(("darkseg poisson_torch (cpu)", lambda a=lam: poisson_torch(a, gen), sync))
        times = []
        for name, fn, sy in pois:
            t = _timeit(fn, args.n, sy, args.repeat)
            times.append((name, 1e3 * (t[1] if dev.type == "cpu" or "CPU" in name else t[0]) / args.n))
        pois_rows.append((k_gain, float(lam.mean()), times))

    base = rows[0][1]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"# synthesis {args.noise_model}, {args.width}x{args.height}, clean + noisy {args.output!r} "
        "rendering, "
        f"{args.threads} thread(s), torch {torch.__version__}, {os.cpu_count()} CPUs, load {load:.1f}"
    )
    print("| path | images/s (wall) | vs numpy | images/s (process CPU time) |\n|---|---:|---:|---:|")
    for name, ips, cps in rows:
        cpu = f"{cps:.1f}" if dev.type == "cpu" else "n/a (GPU)"
        print(f"| {name} | {ips:.1f} | {ips / base:.2f}x | {cpu} |")
    print(
        f"\nshot-noise draw alone, packed {tuple(linear.shape[1:])}, ratio 55\n"
        "| K (DN/e-) | mean lambda | sampler | ms per image | vs numpy |\n|---:|---:|---|---:|---:|"
    )
    for k_gain, mean_lam, times in pois_rows:
        for name, ms in times:
            print(f"| {k_gain} | {mean_lam:.1f} | {name} | {ms:.2f} | {times[0][1] / ms:.2f}x |")
    numpy_rows = [r for r in rows if r[0].startswith("numpy") and "uint8" not in r[0]]
    if args.output == "rgb" and args.noise_model == "PGRU" and numpy_rows:
        print("\n".join(bandwidth_rows(args.height, args.width, 1e3 / numpy_rows[-1][2])))


if __name__ == "__main__":
    main()
