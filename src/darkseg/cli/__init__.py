"""The ``darkseg`` command line.

Each sub-command lives in its own module ``darkseg.cli.<name>`` exposing

* ``HELP: str`` - one line shown by ``darkseg --help``;
* ``add_arguments(parser: argparse.ArgumentParser) -> None``;
* ``run(args: argparse.Namespace) -> int`` - the exit status.

Modules are imported only when their command runs, so ``darkseg --help`` stays fast.

Every command's errors that darkseg raises on purpose (:class:`darkseg.errors.DarkSegError`: bad file,
entry, setting or device) and operating-system errors (missing file, permission, full disk) end the
command with one line ``darkseg COMMAND: message`` on stderr and exit status 1 instead of a traceback.
Set ``DARKSEG_TRACEBACK=1`` to see the traceback.

Every command takes ``--threads N`` (:mod:`darkseg.utils.threads`: the CPU threads of the job, chosen
before the command starts). Before torch is first imported, ``OMP_WAIT_POLICY=PASSIVE`` is put in the
environment unless the user set ``OMP_WAIT_POLICY``: OpenMP threads that spin while they wait take the
cores of other processes, which made training many times slower on a busy machine (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Mapping, Sequence

from darkseg import __version__
from darkseg.cli.argtypes import add_threads_option
from darkseg.errors import DarkSegError

#: command name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("darkseg.cli.synth", "turn sRGB images + COCO annotations into synthetic low-light RAW"),
    "train": ("darkseg.cli.train", "train a detector from a config file"),
    "evaluate": ("darkseg.cli.evaluate", "COCO bbox/segm AP of a results file or of a checkpoint"),
    "predict": ("darkseg.cli.predict", "instance masks for images, camera RAW files, videos and webcams"),
    "serve": (
        "darkseg.cli.serve",
        "a local web app and HTTP API: drop a dark photo or RAW file, see its masks",
    ),
    "export": ("darkseg.cli.export", "export a fused model to TorchScript or ONNX"),
    "convert": ("darkseg.cli.convert", "convert an MMDetection 2.x (LIS) Mask R-CNN checkpoint to darkseg"),
    "calibrate": (
        "darkseg.cli.calibrate",
        "calibrate a camera noise profile from dark frames + flat fields (or a DNG NoiseProfile)",
    ),
    "demo": ("darkseg.cli.demo", "the main job on embedded procedural data: synth, train, evaluate, report"),
}


def wait_policy_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment entries to set before the OpenMP runtime starts (before ``import torch``):
    ``OMP_WAIT_POLICY=PASSIVE`` (waiting OpenMP threads sleep instead of spinning on a core that another
    process needs) unless ``env`` already has ``OMP_WAIT_POLICY``: the user's setting is kept."""
    return {} if "OMP_WAIT_POLICY" in env else {"OMP_WAIT_POLICY": "PASSIVE"}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the parser; only the module of ``command`` (if given) is imported for its arguments."""
    parser = argparse.ArgumentParser(prog="darkseg", description="Instance segmentation in the dark.")
    parser.add_argument("--version", action="version", version=f"darkseg {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_threads_option(p)
        if name == command:
            importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # before anything imports torch (building a command's parser may): the OpenMP runtime reads it once
    if "torch" not in sys.modules:
        os.environ.update(wait_policy_env(os.environ))
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command if command in COMMANDS else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    module = importlib.import_module(COMMANDS[args.command][0])
    try:
        from darkseg.utils.threads import configure_threads

        configure_threads(args.threads)
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (DarkSegError, OSError) as exc:
        if os.environ.get("DARKSEG_TRACEBACK"):
            raise
        print(f"darkseg {args.command}: {error_line(exc)}", file=sys.stderr)
        return 1


def error_line(exc: BaseException) -> str:
    """The message of an error (OS errors include the file name), or its type name when it has none.

    An error re-raised from a DataLoader worker process carries the worker's whole traceback in its
    message; only the original error's own message (its last line, without the type name) is kept.
    """
    msg = str(exc).strip() or type(exc).__name__
    if "Original Traceback" in msg:
        last = msg.splitlines()[-1].strip()
        head, sep, rest = last.partition(": ")
        msg = rest if sep and head.replace(".", "").replace("_", "").isalnum() else last
    return msg
