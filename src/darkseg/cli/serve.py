"""``darkseg serve``: a local web app and HTTP API for dark photos and camera RAW files.

::

    darkseg serve --checkpoint CKPT [--host 127.0.0.1] [--port 8000] [--device auto] [--dtype float32]
                  [--mask-thr 0.5] [--max-upload-mb 128] [--max-megapixels 40] [--max-queue 32]

Keeps one model in memory and serves (``darkseg.serve.app``): the web page at ``/`` (drop a file, see
the masks, change the score threshold and the exposure ratio, download the JSON), ``POST /predict``
(multipart upload ``file`` + optional ``ratio`` number|auto, ``score_thr``, ``linear``, ``preview``
-> detections with COCO RLE masks, the ratio used, timings), ``GET /health`` and ``GET /model``.
Binds to 127.0.0.1 (this computer only) unless ``--host`` says otherwise; on a loopback address only
requests naming a loopback host are answered (no DNS rebinding). One inference runs at a time; uploads
stay in memory and are bounded (413), as are image sizes (422). Needs ``pip install 'darkseg[serve]'``.
Stop it with Ctrl-C.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from darkseg.cli.argtypes import open_probability, positive_float, positive_int

HELP = "a local web app and HTTP API: drop a dark photo or RAW file, see its masks"

#: Host header values answered when the server binds to a loopback address
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "[::1]")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="darkseg checkpoint (.pt)")
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this computer only)"
    )
    parser.add_argument("--port", type=int, default=8000, help="TCP port, 1..65535")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument(
        "--mask-thr", type=open_probability, default=0.5, help="mask probability threshold, in (0, 1)"
    )
    parser.add_argument("--max-upload-mb", type=positive_float, default=128.0, help="largest upload (MiB)")
    parser.add_argument(
        "--max-megapixels",
        type=positive_float,
        default=40.0,
        help="largest image the model is given, in megapixels (camera RAW: half sensor resolution)",
    )
    parser.add_argument(
        "--max-queue", type=positive_int, default=32, help="requests in progress at once; more get 503"
    )


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address or ``localhost``."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def build_app(args: argparse.Namespace):
    """The ASGI application of ``args`` (the model is loaded here)."""
    from darkseg.engine.predictor import Predictor
    from darkseg.serve.app import create_app
    from darkseg.serve.limits import ServeLimits
    from darkseg.serve.service import PredictionService

    limits = ServeLimits(
        max_upload_bytes=int(args.max_upload_mb * 2**20),
        max_pixels=int(args.max_megapixels * 1e6),
        max_queue=args.max_queue,
    )
    predictor = Predictor(
        args.checkpoint, device=args.device, score_thr=0.0, mask_thr=args.mask_thr, dtype=args.dtype
    )
    service = PredictionService(predictor, limits, checkpoint_name=args.checkpoint.name)
    return create_app(service, allowed_hosts=LOOPBACK_HOSTS if is_loopback(args.host) else None)


def run(args: argparse.Namespace) -> int:
    try:
        import python_multipart  # noqa: F401
        import starlette  # noqa: F401
        import uvicorn
    except ImportError as exc:
        print(f"darkseg serve: needs the serve extra ({exc.name} is missing): pip install 'darkseg[serve]'",
              file=sys.stderr)  # fmt: skip
        return 2
    if not 1 <= args.port <= 65535:
        print(f"darkseg serve: --port must be in 1..65535, got {args.port}", file=sys.stderr)
        return 2
    from darkseg.models import CheckpointError

    try:
        app = build_app(args)
    except (CheckpointError, FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"darkseg serve: {exc}", file=sys.stderr)
        return 2
    if not is_loopback(args.host):
        print(
            f"darkseg serve: listening on {args.host}: anyone who can reach this address can use the model",
            file=sys.stderr,
        )
    shown = f"[{args.host}]" if ":" in args.host else args.host
    print(f"darkseg serve: open http://{shown}:{args.port}/ in a browser (Ctrl-C stops)", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0
