"""``darkseg demo``: the main job on embedded procedural data (see ``darkseg.demo``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from darkseg.cli.argtypes import add_set_option, positive_int

HELP = "the main job on embedded procedural data: synth, train, evaluate, report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", type=Path, default=Path("runs/demo"), help="report folder (default runs/demo)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a tiny run of a few seconds that exercises every step (for tests)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seeds scenes, low-light synthesis and training")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (default auto)")
    parser.add_argument(
        "--config", default="demo", help="packaged config name or YAML path (default: the packaged 'demo')"
    )
    parser.add_argument(
        "--train-images", type=positive_int, default=None, help="training scenes (default 400)"
    )
    parser.add_argument("--test-images", type=positive_int, default=None, help="test scenes (default 60)")
    add_set_option(parser, "train.max_iters=100", dest="overrides")
    parser.add_argument("--no-progress", action="store_true", help="no stage headers or progress bars")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--resume",
        action="store_true",
        help="OUT holds a demo run: continue its training from train/last.pth",
    )
    mode.add_argument(
        "--overwrite", action="store_true", help="OUT holds a demo run: remove its files and start afresh"
    )


def run(args: argparse.Namespace) -> int:
    from darkseg.config import ConfigError
    from darkseg.demo import DemoSettings, run_demo

    settings = DemoSettings.quick() if args.quick else DemoSettings()
    settings.config = args.config
    settings.overrides = [*settings.overrides, *args.overrides]
    if args.train_images is not None:
        settings.train_images = args.train_images
    if args.test_images is not None:
        settings.test_images = args.test_images
    try:
        run_demo(
            args.out,
            settings,
            quick=args.quick,
            seed=args.seed,
            device=args.device,
            progress=not args.no_progress,
            resume=args.resume,
            overwrite=args.overwrite,
        )
    except (ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"darkseg demo: {exc}", file=sys.stderr)
        return 2
    return 0
