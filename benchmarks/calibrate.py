"""Time of ``darkseg calibrate`` for a full shoot: 9 ISOs x (15 dark + 6 levels x 2 flat) frames of 24 MP.

Two measurements, one thread:

1. **Reading**: a 24 MP (6000x4000) 16-bit Bayer mosaic is written once as PNG and as TIFF, then read back
   with the calibration reader (decode, pack, central crop, clip check) ``--read-repeat`` times; the
   median seconds per file.
2. **Analysis**: the whole shoot, frames drawn with darkseg's noise model at the crop size the reader
   keeps (``--crop`` packed pixels per side), through ``calibrate_frameset`` (gain, darks, fits) in
   memory; and the same for the check/grouping step.

Total = files x read time + analysis. Prints both as a table (wall and process CPU time).

    python benchmarks/calibrate.py                      # the full size
    python benchmarks/calibrate.py --isos 3 --darks 5   # a quick, smaller run
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from darkseg.raw.bayer import pack_bayer  # noqa: E402
from darkseg.synth.calibrate import simulate_raw_frame  # noqa: E402
from darkseg.synth.calibrate_frames import CalFrame, FrameSet, calibrate_frameset, read_frame  # noqa: E402

BLACK, WHITE = 512.0, 16383.0


def _clock():
    return time.perf_counter(), time.process_time()


def _since(t):
    return time.perf_counter() - t[0], time.process_time() - t[1]


def _frame(packed_u16: np.ndarray, path: str, kind: str, iso: float, shape) -> CalFrame:
    return CalFrame(path, kind, packed_u16, np.full(4, BLACK), WHITE, "RGGB", iso, None, shape, 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--isos", type=int, default=9)
    ap.add_argument("--darks", type=int, default=15)
    ap.add_argument("--levels", type=int, default=6)
    ap.add_argument("--per-level", type=int, default=2)
    ap.add_argument("--width", type=int, default=6000)
    ap.add_argument("--height", type=int, default=4000)
    ap.add_argument("--crop", type=int, default=512, help="packed crop per side, as darkseg calibrate --crop")
    ap.add_argument("--read-repeat", type=int, default=3)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    size = (args.height, args.width)
    n_files = args.isos * (args.darks + args.levels * args.per_level)

    # 1. reading one full-size file per format
    read = {}
    with tempfile.TemporaryDirectory() as tmp:
        mosaic = simulate_raw_frame(
            2000.0, size, 1.0, 0.1, 3.0, 0.5, rng, black_level=BLACK, white_level=WHITE
        )
        (Path(tmp) / "raw.json").write_text(f'{{"black_level": {BLACK}, "white_level": {WHITE}}}')
        for ext in (".png", ".tif"):
            p = Path(tmp) / "ISO100" / f"frame{ext}"
            p.parent.mkdir(exist_ok=True)
            cv2.imwrite(str(p), mosaic)
            times = []
            for _ in range(args.read_repeat):
                t = _clock()
                read_frame(p, Path(tmp), "flat", args.crop)
                times.append(_since(t))
            read[ext] = (statistics.median(w for w, _ in times), statistics.median(c for _, c in times))
            read[ext] += (p.stat().st_size / 2**20,)

    # 1b. a real camera RAW (LibRaw decode), scaled per pixel to the frame size
    dng = (
        Path(__file__).resolve().parents[1].parent
        / "shared/data/raw-samples/colorchart_Canon550D_MagicLantern.dng"
    )
    if dng.is_file():
        times = []
        for _ in range(args.read_repeat):
            t = _clock()
            f = read_frame(dng, dng.parent, "dark", args.crop)
            times.append(_since(t))
        mp = f.mosaic_shape[0] * f.mosaic_shape[1] / 1e6
        scale = args.width * args.height / 1e6 / mp
        w, cpu = statistics.median(w for w, _ in times), statistics.median(c for _, c in times)
        read[f"Canon 550D DNG ({mp:.1f} MP, lossless JPEG) x {scale:.1f}"] = (w * scale, cpu * scale, None)

    # 2. the analysis of the whole shoot at the kept crop size
    c = args.crop
    crop_shape = (2 * min(c, args.height // 2), 2 * min(c, args.width // 2))
    t = _clock()
    fs = FrameSet(black=np.full(4, BLACK), white=WHITE)
    ks = np.geomspace(0.2, 14.0, args.isos)
    for i, k in enumerate(ks):
        iso = 100.0 * 2**i
        tl, row, lam = 1.3 * k**0.65 * 2.5, 0.45 * k**0.47, 0.1

        def sim(signal, k=k, tl=tl, row=row, lam=lam):
            return pack_bayer(simulate_raw_frame(signal, crop_shape, k, lam, tl, row, rng))

        fs.darks[iso] = [_frame(sim(0.0), f"d{j}", "dark", iso, size) for j in range(args.darks)]
        fs.flats[iso] = [
            _frame(sim(lv), f"f{j}", "flat", iso, size)
            for lv in np.geomspace(0.02, 0.5, args.levels) * (WHITE - BLACK)
            for j in range(args.per_level)
        ]
    sim = _since(t)
    t = _clock()
    profile, results, _ = calibrate_frameset(fs, "Bench", progress=False)
    analysis = _since(t)
    got = np.array([r.gain.K for r in results])
    assert np.allclose(got, ks, rtol=0.05), (got, ks)

    print(
        f"darkseg calibrate benchmark: {args.isos} ISOs x ({args.darks} dark + "
        f"{args.levels}x{args.per_level} flat) = {n_files} frames of {args.width}x{args.height}, "
        f"crop {c} packed px, 1 thread"
    )
    print()
    print("| step | per frame, wall s | per frame, CPU s | whole shoot, wall s | whole shoot, CPU s |")
    print("|---|---:|---:|---:|---:|")
    for ext, (w, cpu, mb) in read.items():
        what = f"read 16-bit {ext[1:].upper()} ({mb:.0f} MiB)" if mb is not None else f"read {ext}"
        print(f"| {what} | {w:.3f} | {cpu:.3f} | {w * n_files:.1f} | "
              f"{cpu * n_files:.1f} |")  # fmt: skip
    print(f"| analysis (gain, darks, fits) | {analysis[0] / n_files:.4f} | {analysis[1] / n_files:.4f} | "
          f"{analysis[0]:.1f} | {analysis[1]:.1f} |")  # fmt: skip
    for ext, (w, cpu, mb) in read.items():
        what = ext[1:].upper() if mb is not None else "camera RAW (DNG-like)"
        print(f"| **total with {what} files** | | | **{w * n_files + analysis[0]:.1f}** | "
              f"**{cpu * n_files + analysis[1]:.1f}** |")  # fmt: skip
    print()
    print(f"(simulating the crops for the analysis took {sim[0]:.1f} s wall, not counted; recovered K within "
          f"{100 * np.max(np.abs(got / ks - 1)):.1f} % of the truth)")  # fmt: skip


if __name__ == "__main__":
    main()
