"""``darkseg convert``: an MMDetection 2.x Mask R-CNN checkpoint -> a darkseg checkpoint.

::

    darkseg convert SRC.pth --out DST.pth [--img-scale LONG SHORT] [--class-names A B ...]
                    [--interpolation nearest|bilinear] [--check]

Reads the paper's released LIS checkpoints and MMDetection's COCO Mask R-CNN models (weights-only load:
no pickled object is ever executed), infers the architecture from the weights, takes class names and
test settings from the checkpoint's ``meta`` where present, and writes a checkpoint that ``predict``,
``evaluate``, ``export``, ``train.init_from`` and ``darkseg.Predictor`` use unchanged. The converted
model computes like MMDetection 2.x (``model.compat = "mmdet"``). Nothing is written on any error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "convert an MMDetection 2.x (LIS) Mask R-CNN checkpoint to darkseg"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, metavar="SRC", help="MMDetection checkpoint (.pth)")
    parser.add_argument("--out", type=Path, help="darkseg checkpoint to write (omit with --check)")
    parser.add_argument(
        "--img-scale",
        nargs=2,
        type=int,
        metavar=("LONG", "SHORT"),
        help="test resize box, overriding the checkpoint's config (LIS: 600 400; MMDetection COCO: 1333 800)",
    )
    parser.add_argument("--class-names", nargs="+", metavar="NAME", help="class names (override meta)")
    parser.add_argument(
        "--interpolation", choices=("nearest", "bilinear"), help="test resize interpolation (override)"
    )
    parser.add_argument(
        "--style", choices=("pytorch", "caffe"), help="ResNet stride placement when meta does not say"
    )
    parser.add_argument("--check", action="store_true", help="only check and report; write nothing")


def run(args: argparse.Namespace) -> int:
    from darkseg.models.convert import ConversionError, convert_mmdet_checkpoint

    if args.out is None and not args.check:
        print("darkseg convert: give --out DST.pth (or --check to only inspect)", file=sys.stderr)
        return 2
    overrides = {}
    if args.interpolation:
        overrides["resize_interpolation"] = args.interpolation
    if args.style:
        overrides["style"] = args.style
    scale = tuple(args.img_scale) if args.img_scale else None
    if scale is not None and min(scale) <= 0:
        print(f"darkseg convert: --img-scale must be positive, got {scale}", file=sys.stderr)
        return 2
    try:
        report = convert_mmdet_checkpoint(
            args.source,
            None if args.check else args.out,
            class_names=args.class_names,
            img_scale=scale,
            config_overrides=overrides,
        )
    except (ConversionError, FileNotFoundError) as exc:
        print(f"darkseg convert: {exc}", file=sys.stderr)
        return 1
    print(report.summary())
    if not args.check:
        print(f"wrote {args.out}")
    return 0
