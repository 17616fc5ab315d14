"""``darkseg synth``: low-light RAW versions of a COCO image folder (see ``darkseg.synth.offline``).

The synthesis settings are the ``synth`` section of ``--config FILE`` (a YAML file or packaged config
name, e.g. ``syncoco2lis_awd_scb_dsl``) with ``--set synth.KEY=VALUE`` overrides, as ``darkseg train``
reads them; without ``--config`` the ``SynthConfig`` defaults. Flags given explicitly (``--camera``,
``--ratio``, ...) override both.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from darkseg.cli.argtypes import add_set_option, positive_float, positive_int

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
    parser.add_argument(
        "--config", help="experiment YAML file or packaged config name whose synth section is used"
    )
    add_set_option(parser, "synth.render_gamma=true (only synth.* keys)")
    parser.add_argument("--camera", help="camera profile name or JSON path (default CanonEOS5D4)")
    parser.add_argument("--noise-model", choices=sorted(NAMED_MODELS), help="default PGRU")
    parser.add_argument(
        "--ratio",
        nargs=2,
        type=positive_float,
        metavar=("LO", "HI"),
        help="exposure ratio range, sampled uniformly per image (default 10 100)",
    )
    parser.add_argument("--seed", type=int, default=0, help="base seed; image i uses (seed, image id)")
    parser.add_argument("--workers", type=positive_int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--format",
        dest="fmt",
        choices=("png16", "png8", "npy"),
        default="png16",
        help="png16: 16-bit RGB PNG; png8: 8-bit RGB PNG (exact with the default 8-bit rounding); "
        "npy: float32 array (needed for --output packed)",
    )
    parser.add_argument(
        "--output",
        choices=("rgb", "binned", "packed", "sensor"),
        help="rgb: demosaiced 3-channel full resolution; binned: 3-channel full resolution, 2x2 binning + "
        "bilinear 2x upsampling of the image's own planes (neighbouring pixels' noise correlated); "
        "sensor: 3-channel full resolution with the noise statistics of the real LIS RAW test images "
        "(binned full sensor, resized); packed: 4-channel R,G1,B,G2 half resolution (the annotation "
        "file is rescaled to it)",
    )
    parser.add_argument("--ccm", choices=("calibrated", "random"), help="default calibrated")
    parser.add_argument(
        "--no-8bit",
        dest="quantize_8bit",
        action="store_const",
        const=False,
        help="keep full precision instead of LIS's 8-bit rounding",
    )
    parser.add_argument(
        "--per-pixel-quantisation", action="store_const", const=True, help="U noise per pixel (decision D4)"
    )
    parser.add_argument(
        "--legacy-swap-rb", action="store_const", const=True, help="B,G,R output like the original code"
    )
    parser.add_argument(
        "--save-clean", action="store_true", help="also write the clean rendering to OUT/clean"
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


#: flag (argparse dest) -> SynthConfig field, for the flags that override the config
FLAG_FIELDS = {
    "camera": "camera",
    "noise_model": "noise_model",
    "ratio": "ratio_range",
    "output": "output",
    "quantize_8bit": "quantize_8bit",
    "legacy_swap_rb": "legacy_swap_rb",
    "per_pixel_quantisation": "per_pixel_quantisation",
    "ccm": "ccm",
}


def synth_config(args: argparse.Namespace):
    """The ``SynthConfig`` of the job: ``--config``'s synth section (or the defaults) with ``--set``
    applied, then the flags given explicitly. Raises ``ConfigError`` (a ``ValueError``)."""
    from darkseg.config import ConfigError, load_synth_config

    cfg = load_synth_config(args.config, args.set)
    if cfg is None:
        raise ConfigError(f"{args.config}: synth is null: there are no synthesis settings to use")
    given = {
        field: getattr(args, dest) for dest, field in FLAG_FIELDS.items() if getattr(args, dest) is not None
    }
    if "ratio_range" in given:
        given["ratio_range"] = tuple(given["ratio_range"])
    return dataclasses.replace(cfg, **given)


def run(args: argparse.Namespace) -> int:
    from darkseg.synth.offline import SynthJob, run_synth_folder

    if args.ratio is not None and args.ratio[0] > args.ratio[1]:
        print(
            f"darkseg synth: error: --ratio LO HI needs LO <= HI, got {args.ratio[0]:g} {args.ratio[1]:g}",
            file=sys.stderr,
        )
        return 2
    try:
        cfg = synth_config(args)
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
    for p in report.removed_temporaries:
        print(f"darkseg synth: removed {p} (temporary file of an interrupted write)", file=sys.stderr)
    print(
        f"darkseg synth: {report.written} written, {report.skipped} already present, "
        f"{len(report.failed)} failed -> {args.out}"
    )
    for name, err in report.failed:
        print(f"  failed: {name}: {err}", file=sys.stderr)
    if report.failed:
        print(
            f"darkseg synth: {len(report.failed)} failed image(s) and their annotations left out of "
            f"{args.out / args.annotations.name}; rerun to retry them",
            file=sys.stderr,
        )
    return 0 if report.ok else 1
