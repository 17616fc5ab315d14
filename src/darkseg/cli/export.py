"""``darkseg export``: the fused (SCB re-parameterised) model of a checkpoint as TorchScript or ONNX.

::

    darkseg export --checkpoint CKPT --format torchscript|onnx --out FILE [--check [--check-image IMG ...]]

``--check`` runs the exported file (TorchScript: ``torch.jit.load``; ONNX: onnxruntime) and the fused
PyTorch model on inputs where the model finds objects (by default a procedural scene, as sRGB and as a
low-light rendering; or the ``--check-image`` files), reports how many detections were compared and
the largest output differences, and fails beyond ``darkseg.engine.export.CHECK_TOLERANCE``.

Exit status: 0 exported (and check passed), 1 export failed or check failed (differences beyond the
tolerance), 3 exported but the check is inconclusive (the model finds nothing on the check inputs).
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
    parser.add_argument(
        "--check-image",
        action="append",
        type=Path,
        metavar="IMG",
        help="--check on this image or camera RAW file instead of a procedural scene (repeatable)",
    )


def _report_check(check) -> int:
    """Print the outcome of ``--check``; returns the exit status (0 passed, 1 failed, 3 inconclusive)."""
    diffs = ", ".join(f"{k} {v:.3g} (tol {check.tolerance[k]:g})" for k, v in check.differences.items())
    where = "; ".join(check.inputs)
    if check.status == "inconclusive":
        print(
            f"darkseg export: check inconclusive: the model finds no detections on {where}, so nothing "
            "was compared; give --check-image with an image where it finds objects",
            file=sys.stderr,
        )
        return 3
    print(f"check: {check.detections} detection(s) compared on {where}; max |exported - pytorch|: {diffs}")
    if check.status == "failed":
        print(
            "darkseg export: check FAILED: the exported model differs beyond the tolerance", file=sys.stderr
        )
        return 1
    print("check passed")
    return 0


def run(args: argparse.Namespace) -> int:
    from darkseg.engine.export import ExportError, check_export, check_images, export_model
    from darkseg.models import CheckpointError, load_model
    from darkseg.utils.outputs import check_file, claim_file

    read = [args.checkpoint, *(args.check_image or [])]
    try:
        check_file(args.out, "export", read)  # never over an input or a file no export run wrote
        model, _ = load_model(args.checkpoint, map_location="cpu")
        inputs = check_images(model, args.check_image) if args.check else []  # bad images fail first
        for p in claim_file(args.out, "export", read):
            print(f"darkseg export: removed {p} (temporary file of an interrupted export)", file=sys.stderr)
        path = export_model(
            model, args.format, args.out, example_size=tuple(args.example_size), opset=args.opset
        )
    except (CheckpointError, FileNotFoundError, ExportError, ValueError) as exc:
        print(f"darkseg export: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.format} model to {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if not args.check:
        return 0
    return _report_check(check_export(model, path, args.format, inputs))
