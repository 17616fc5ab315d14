"""``darkseg predict``: instance masks + overlay pictures for images and camera RAW files.

::

    darkseg predict --checkpoint CKPT INPUT... [--out DIR] [--score-thr 0.5] [--ratio 1] [--device cpu|cuda]

INPUT is any mix of files and folders: sRGB JPEG/PNG photos, LIS RAW PNGs, camera RAW files (DNG, CR2,
NEF, ARW, RAF, KDC, ...). For every input ``DIR/<stem>_overlay.png`` shows the instances on a brightened
preview (camera RAW: rendered at half sensor resolution, the resolution the model sees); for all inputs
``DIR/results.json`` holds COCO results (``category_id`` = class index 1..K, RLE masks) and
``DIR/images.json`` the image list (ids, sources, sizes), categories and per-file errors. A bad file is
reported and skipped; the exit status is 1 when any input failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from darkseg.cli.argtypes import open_probability, positive_float, probability

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
        type=positive_float,
        default=1.0,
        help="exposure-ratio gain on the normalised input before clipping",
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
        predictor = Predictor(
            args.checkpoint,
            device=args.device,
            score_thr=args.score_thr,
            mask_thr=args.mask_thr,
            ratio=args.ratio,
            linear_images=args.linear_images,
        )
    except (CheckpointError, FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"darkseg predict: {exc}", file=sys.stderr)
        return 2
    missing = [p for p in args.inputs if not Path(p).exists()]
    files = collect_inputs([p for p in args.inputs if Path(p).exists()], recursive=args.recursive)
    if not files and not missing:
        print("darkseg predict: no image or camera RAW files found in the inputs", file=sys.stderr)
        return 2
    out_dir: Path = args.out
    out_dir.mkdir(parents=True, exist_ok=True)
    images: list[dict] = []
    results: list[dict] = []
    errors: list[dict] = [{"file": str(p), "error": f"{p}: no such file or folder"} for p in missing]
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
