"""``darkseg predict``: instance masks + overlay pictures for images and camera RAW files.

::

    darkseg predict --checkpoint CKPT INPUT... [--out DIR] [--score-thr 0.5] [--ratio 1] [--device cpu|cuda]

INPUT is any mix of files and folders: sRGB JPEG/PNG photos, LIS RAW PNGs, camera RAW files (DNG, CR2,
NEF, ARW, RAF, KDC, ...). For every input ``DIR/<stem>_overlay.png`` shows the instances on a brightened
preview (camera RAW: rendered at half sensor resolution, the resolution the model sees); for all inputs
``DIR/results.json`` holds COCO results (``category_id`` = class index 1..K, RLE masks) and
``DIR/images.json`` the image list (ids, sources, sizes), categories and per-file errors. A bad or
missing file is reported on stderr and in ``images.json`` and skipped; the exit status is 1 when any
input failed. A DIR that holds a previous prediction (``images.json``/``results.json``) is refused
unless ``--overwrite`` is given, which first removes that prediction's JSON files and overlays.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from darkseg.cli.argtypes import open_probability, probability

HELP = "instance masks for sRGB, LIS RAW PNG and camera RAW files"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image / camera RAW files or folders")
    parser.add_argument("--checkpoint", required=True, type=Path, help="darkseg checkpoint (.pt)")
    parser.add_argument("--out", type=Path, default=Path("predictions"), help="output folder")
    parser.add_argument("--score-thr", type=probability, default=0.5, help="drop detections below this score")
    parser.add_argument(
        "--mask-thr", type=open_probability, default=0.5, help="mask probability threshold, in (0, 1)"
    )
    parser.add_argument(
        "--ratio",
        type=_ratio,
        default=1.0,
        help="exposure-ratio gain on the normalised input before clipping, or 'auto': per camera RAW / "
        "linear input, the gain that brings its mean to the training inputs' (chosen value in images.json)",
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    parser.add_argument(
        "--linear-images",
        action="store_true",
        help="image files are linear RAW renderings (LIS RAW PNGs): preview them with a linear tone curve",
    )
    parser.add_argument("--recursive", action="store_true", help="search folders recursively")
    parser.add_argument("--no-overlay", action="store_true", help="write only the JSON files")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="DIR holds a previous prediction: remove its JSON files and overlays first",
    )


#: ``darkseg predict``'s output folder; overlays are owned through the previous ``images.json``.
PREDICT_LAYOUT_MARKERS = ("images.json", "results.json")


def _previous_overlays(out_dir: Path) -> list[Path]:
    """Overlay files a previous prediction in ``out_dir`` wrote (listed in its ``images.json``)."""
    from darkseg.utils.io import load_json

    try:
        info = load_json(out_dir / "images.json")
    except (FileNotFoundError, ValueError):
        return []
    images = info.get("images") if isinstance(info, dict) else None
    names = [im.get("overlay") for im in images or [] if isinstance(im, dict)]
    return [
        out_dir / n for n in names if isinstance(n, str) and Path(n).name == n and n.endswith("_overlay.png")
    ]


def _check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Raise ``RunFolderError`` when ``out_dir`` holds a previous prediction and ``overwrite`` is off."""
    from darkseg.engine.runfolder import RunLayout, check_run_folder

    layout = RunLayout("predict", PREDICT_LAYOUT_MARKERS, PREDICT_LAYOUT_MARKERS)
    check_run_folder(out_dir, layout, resume=False, overwrite=overwrite)


def _clear_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Remove a previous prediction (with ``overwrite``) and stale temporary files from ``out_dir``."""
    from darkseg.utils.io import remove_stale_temporaries

    if overwrite:
        for p in [*_previous_overlays(out_dir), *(out_dir / n for n in PREDICT_LAYOUT_MARKERS)]:
            p.unlink(missing_ok=True)
    for p in remove_stale_temporaries(out_dir):
        print(f"darkseg predict: removed {p} (temporary file of an interrupted write)", file=sys.stderr)


def _ratio(text: str) -> float | str:
    from darkseg.raw.exposure import parse_ratio

    try:
        return parse_ratio(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _unique_name(stem: str, used: set[str]) -> str:
    name, k = f"{stem}_overlay.png", 2
    while name in used:
        name, k = f"{stem}_{k}_overlay.png", k + 1
    used.add(name)
    return name


def run(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from darkseg.engine.predictor import Predictor, PredictResult, collect_inputs
    from darkseg.engine.visualize import draw_instances
    from darkseg.models import CheckpointError
    from darkseg.utils.io import atomic_write_json, exif_orientation, write_image

    try:
        _check_out_dir(args.out, args.overwrite)
        predictor = Predictor(
            args.checkpoint,
            device=args.device,
            score_thr=args.score_thr,
            mask_thr=args.mask_thr,
            ratio=args.ratio,
            linear_images=args.linear_images,
        )
    except (CheckpointError, FileNotFoundError, ValueError, RuntimeError) as exc:  # incl. RunFolderError
        print(f"darkseg predict: {exc}", file=sys.stderr)
        return 2
    missing = [p for p in args.inputs if not Path(p).exists()]
    files = collect_inputs([p for p in args.inputs if Path(p).exists()], recursive=args.recursive)
    if not files and not missing:
        print("darkseg predict: no image or camera RAW files found in the inputs", file=sys.stderr)
        return 2
    out_dir: Path = args.out
    _clear_out_dir(out_dir, args.overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    images: list[dict] = []
    results: list[dict] = []
    errors: list[dict] = [{"file": str(p), "error": f"{p}: no such file or folder"} for p in missing]
    for e in errors:
        print(f"darkseg predict: skipped {e['error']}", file=sys.stderr)
    used: set[str] = set()

    def on_result(res: PredictResult) -> None:
        if not res.ok:
            errors.append({"file": res.source, "error": res.error})
            tqdm.write(f"darkseg predict: skipped {res.error}", file=sys.stderr)
            return
        pred = res.prediction
        image_id = len(images) + 1
        entry = {
            "id": image_id,
            "file_name": res.source,
            "height": pred.image_size[0],
            "width": pred.image_size[1],
            "kind": pred.kind,
            "ratio": round(pred.ratio, 4),
            "num_instances": len(pred),
        }
        orientation = exif_orientation(res.source) if pred.kind == "image" else 1
        if orientation != 1:
            entry["exif_orientation"] = orientation  # reported, not applied: results are in stored pixels
        if not args.no_overlay:
            name = _unique_name(Path(res.source).stem, used)
            write_image(out_dir / name, draw_instances(res.preview, pred))
            entry["overlay"] = name
        images.append(entry)
        results.extend(pred.to_coco(image_id))

    predictor.predict_many(
        files, progress=not args.no_progress, preview=not args.no_overlay, on_result=on_result
    )
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(predictor.class_names)]
    atomic_write_json(out_dir / "results.json", results)
    atomic_write_json(
        out_dir / "images.json",
        {
            "images": images,
            "categories": categories,
            "errors": errors,
            "checkpoint": str(args.checkpoint),
            "score_thr": args.score_thr,
            "ratio": args.ratio,
            "coordinates": "pixels of the image the model saw (camera RAW: half sensor resolution)",
        },
        indent=1,
    )
    n_inst = sum(im["num_instances"] for im in images)
    print(f"{len(images)} image(s), {n_inst} instance(s), {len(errors)} error(s) -> {out_dir}")
    return 1 if errors else 0
