"""``darkseg train``: train a detector from an experiment config.

::

    darkseg train CONFIG [--out DIR] [--resume | --overwrite] [--set KEY=VALUE ...] [--device cpu|cuda|auto]
    torchrun --nproc_per_node=4 -m darkseg train CONFIG --out DIR        (DistributedDataParallel)

CONFIG is a YAML file or the name of a packaged config (``darkseg train --list``). ``--set`` overrides
any entry (values parsed as YAML): ``--set train.max_iters=100 --set synth=null``.
"""

from __future__ import annotations

import argparse
import sys

from darkseg.cli.argtypes import add_set_option

HELP = "train a detector from a config file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", nargs="?", help="experiment YAML file or packaged config name")
    parser.add_argument("--out", help="output folder (default: the config's output_dir)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue from OUT/last.pth exactly")
    mode.add_argument(
        "--overwrite",
        action="store_true",
        help="OUT holds a previous run: remove its checkpoints, logs and results and start afresh",
    )
    add_set_option(parser, "train.lr=0.02")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), help="overrides train.device")
    parser.add_argument("--no-progress", action="store_true", help="print log lines instead of a bar")
    parser.add_argument("--list", action="store_true", help="list the packaged configs and exit")
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config (after --set) as YAML and exit"
    )


def run(args: argparse.Namespace) -> int:
    from darkseg.config import ConfigError, config_to_yaml, load_config, packaged_configs

    if args.list:
        print("\n".join(packaged_configs()))
        return 0
    if not args.config:
        print("darkseg train: a CONFIG is required (see darkseg train --list)", file=sys.stderr)
        return 2
    overrides = list(args.set)
    if args.device:
        overrides.append(f"train.device={args.device}")
    try:
        cfg = load_config(args.config, overrides)
    except (ConfigError, FileNotFoundError) as exc:
        print(f"darkseg train: {exc}", file=sys.stderr)
        return 2
    if args.print_config:
        print(config_to_yaml(cfg), end="")
        return 0
    out = args.out or cfg.output_dir
    if not out:
        print("darkseg train: no output folder: pass --out or set output_dir in the config", file=sys.stderr)
        return 2

    from darkseg.engine.distributed import cleanup_distributed
    from darkseg.engine.interrupt import TrainingInterrupted
    from darkseg.engine.train import TrainingError, train

    try:
        from pathlib import Path

        config_file = [args.config] if Path(args.config).is_file() else []  # else a packaged config
        train(
            cfg,
            out,
            resume=args.resume,
            progress=not args.no_progress,
            overwrite=args.overwrite,
            inputs=config_file,
        )
    except TrainingInterrupted as exc:
        print(f"darkseg train: {exc}", file=sys.stderr)
        return 130 if exc.signame == "SIGINT" else 143
    except (TrainingError, FileNotFoundError, ValueError) as exc:
        from darkseg.cli import error_line

        print(f"darkseg train: {error_line(exc)}", file=sys.stderr)
        return 1
    finally:
        cleanup_distributed()
    return 0
