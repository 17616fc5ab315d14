"""``darkseg export``: the fused (SCB re-parameterised) model of a checkpoint as TorchScript or ONNX.

::

    darkseg export --checkpoint CKPT --format torchscript|onnx --out FILE [--check]

``--check`` runs the exported file (TorchScript: ``torch.jit.load``; ONNX: onnxruntime) and the PyTorch
model on the same random input and prints the largest output differences.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from darkseg.cli.argtypes import positive_int

HELP = "export a fused model to TorchScript or ONNX"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="darkseg checkpoint (.pt)")
    parser.add_argument("--format", choices=("torchscript", "onnx"), default="torchscript")
    parser.add_argument("--out", required=True, type=Path, help="output file (.pt / .onnx)")
    parser.add_argument(
        "--example-size",
        nargs=2,
        type=positive_int,
        default=(320, 480),
        metavar=("H", "W"),
        help="example input size used for tracing (the exported model accepts any size)",
    )
    parser.add_argument("--opset", type=positive_int, default=17, help="ONNX opset version")
    parser.add_argument("--check", action="store_true", help="compare the exported model with PyTorch")


def run(args: argparse.Namespace) -> int:
    from darkseg.engine.export import ExportError, compare_exported, export_model
    from darkseg.models import CheckpointError, load_model

    try:
        model, _ = load_model(args.checkpoint, map_location="cpu")
        path = export_model(
            model, args.format, args.out, example_size=tuple(args.example_size), opset=args.opset
        )
    except (CheckpointError, FileNotFoundError, ExportError, ValueError) as exc:
        print(f"darkseg export: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.format} model to {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if args.check:
        diffs = compare_exported(model, path, args.format)
        print("max |exported - pytorch|: " + ", ".join(f"{k} {v:.3g}" for k, v in diffs.items()))
    return 0
