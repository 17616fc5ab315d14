"""``darkseg synth``: low-light RAW versions of a COCO image folder (see ``darkseg.synth.offline``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "turn sRGB images + COCO annotations into synthetic low-light RAW"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from darkseg.synth.noise import NAMED_MODELS

    parser.add_argument(
        "--images", required=True, type=Path, help="folder the annotation file_names are relative to"
    )
    parser.add_argument("--annotations", required=True, type=Path, help="COCO annotation JSON")
    parser.add_argument(
        "--out", required=True, type=Path, help="output folder (rerun with the same one to resume)"
    )
    parser.add_argument("--camera", default="CanonEOS5D4", help="camera profile name or JSON path")
    parser.add_argument("--noise-model", default="PGRU", choices=sorted(NAMED_MODELS))
    parser.add_argument(
        "--ratio",
        nargs=2,
        type=float,
        default=(10.0, 100.0),
        metavar=("LO", "HI"),
        help="exposure ratio range, sampled uniformly per image (default 10 100)",
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed; image i uses (seed, image id)")
    parser.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=("png16", "npy"),
        default="png16",
        help="png16: 16-bit RGB PNG; npy: float32 array (needed for --output packed)",
    )
    parser.add_argument(
        "--output",
        choices=("rgb", "binned", "packed", "sensor"),
        default="rgb",
        help="rgb: demosaiced 3-channel full resolution; binned: 3-channel full resolution, 2x2 binning + "
        "bilinear 2x upsampling of the image's own planes (neighbouring pixels' noise correlated); "
        "sensor: 3-channel full resolution with the noise statistics of the real LIS RAW test images "
        "(binned full sensor, resized); packed: 4-channel R,G1,B,G2 half resolution",
    )
    parser.add_argument("--ccm", choices=("calibrated", "random"), default="calibrated")
    parser.add_argument(
        "--no-8bit",
        dest="quantize_8bit",
        action="store_false",
        help="keep full precision instead of LIS's 8-bit rounding",
    )
    parser.add_argument("--per-pixel-quantisation", action="store_true", help="U noise per pixel (spec 13.4)")
    parser.add_argument("--legacy-swap-rb", action="store_true", help="B,G,R output like the original code")
    parser.add_argument(
        "--save-clean", action="store_true", help="also write the clean rendering to OUT/clean"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from darkseg.synth.offline import SynthJob, run_synth_folder
    from darkseg.synth.pipeline import SynthConfig

    try:
        cfg = SynthConfig(
            camera=args.camera,
            noise_model=args.noise_model,
            ratio_range=tuple(args.ratio),
            output=args.output,
            quantize_8bit=args.quantize_8bit,
            legacy_swap_rb=args.legacy_swap_rb,
            per_pixel_quantisation=args.per_pixel_quantisation,
            ccm=args.ccm,
        )
        job = SynthJob(
            images=args.images,
            annotations=args.annotations,
            out=args.out,
            cfg=cfg,
            seed=args.seed,
            workers=args.workers,
            fmt=args.fmt,
            save_clean=args.save_clean,
        )
        report = run_synth_folder(job, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as exc:
        print(f"darkseg synth: error: {exc}", file=sys.stderr)
        return 2
    print(
        f"darkseg synth: {report.written} written, {report.skipped} already present, "
        f"{len(report.failed)} failed -> {args.out}"
    )
    for name, err in report.failed:
        print(f"  failed: {name}: {err}", file=sys.stderr)
    return 0 if report.ok else 1
