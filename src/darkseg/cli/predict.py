"""``darkseg predict``: instance masks + overlays for images, camera RAW files, videos and webcams.

::

    darkseg predict --checkpoint CKPT INPUT... [--webcam N] [--out DIR] [--score-thr 0.5] [--ratio 1]
                    [--batch-size 1] [--dtype float32|bfloat16|float16] [--export-coco FILE]
                    [--gain-ema 0] [--max-frames N] [--save-frames] [--device cpu|cuda]

INPUT is any mix of files, folders, glob patterns, ``@list.txt`` files (one input per line) and ``cam:N``
webcams (:mod:`darkseg.engine.sources`): sRGB JPEG/PNG photos, LIS RAW PNGs, camera RAW files (DNG, CR2,
NEF, ARW, RAF, KDC, ...), videos (MP4, AVI, MKV, MOV, WebM, ... anything OpenCV's FFmpeg backend reads).
For every image ``DIR/<stem>_overlay.png`` shows the instances on a brightened preview (camera RAW:
rendered at half sensor resolution, the resolution the model sees); for every video or webcam
``DIR/<stem>_overlay.avi`` (Motion-JPEG, same frame rate and size) and ``DIR/<stem>_frames.jsonl`` (COCO
results per frame, appended as frames are done). For all inputs ``DIR/results.json`` holds COCO results
(``category_id`` = class index 1..K, RLE masks) and ``DIR/images.json`` the image / frame list (ids,
sources, sizes), categories, videos and per-file errors; ``--export-coco FILE`` writes one COCO instances
file for annotation tools. ``DIR/index.html`` is a self-contained report page that opens from disk
(:mod:`darkseg.engine.report_html`: overlays, detection tables, filters, video timelines). A bad file
or frame is reported and skipped; the exit status is 1 when any input or frame failed. Throughput
(images/s, frames/s) is printed at the end. A missing input is reported on stderr and in
``images.json``. A DIR that holds a previous prediction (``images.json``/``results.json``) is refused
unless ``--overwrite`` is given, which first removes that prediction's JSON files, overlays and report.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from darkseg.cli.argtypes import open_probability, probability, ratio_or_auto

HELP = "instance masks for images, camera RAW files, videos and webcams"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="image / camera RAW / video files, folders, glob patterns, @list.txt files, cam:N webcams",
    )
    parser.add_argument("--webcam", type=int, action="append", default=[], metavar="N", help="webcam index")
    parser.add_argument("--checkpoint", required=True, type=Path, help="darkseg checkpoint (.pt)")
    parser.add_argument("--out", type=Path, default=Path("predictions"), help="output folder")
    parser.add_argument("--score-thr", type=probability, default=0.5, help="drop detections below this score")
    parser.add_argument(
        "--mask-thr", type=open_probability, default=0.5, help="mask probability threshold, in (0, 1)"
    )
    parser.add_argument(
        "--ratio",
        type=ratio_or_auto,
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
        "--batch-size", type=int, default=1, help="images / frames per model call (same-grid inputs batched)"
    )
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16", "float16"],
        help="autocast precision of the backbone and heads (bfloat16: CPU or CUDA; float16: CUDA)",
    )
    parser.add_argument(
        "--export-coco", type=Path, metavar="FILE", help="also write one COCO instances file (pre-labels)"
    )
    parser.add_argument(
        "--coco-masks", choices=["rle", "polygon"], default="rle", help="mask encoding in --export-coco"
    )
    parser.add_argument(
        "--gain-ema",
        type=float,
        default=0.0,
        metavar="M",
        help="video: smooth the exposure gains over frames, EMA momentum in [0, 1) (0.9 ~ 10 frames)",
    )
    parser.add_argument("--max-frames", type=int, help="video / webcam: stop after this many frames")
    parser.add_argument(
        "--save-frames",
        action="store_true",
        help="video: also write each frame as DIR/frames/<stem>/<index>.png (file names of --export-coco)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="DIR holds a previous prediction: remove its JSON files and overlays first",
    )


#: ``darkseg predict``'s output folder; overlays are owned through the previous ``images.json``.
PREDICT_LAYOUT_MARKERS = ("images.json", "results.json")


def _previous_overlays(out_dir: Path) -> list[Path]:
    """Files a previous prediction in ``out_dir`` wrote, as its ``images.json`` lists them: image
    overlays (``*_overlay.png``), video overlays (``*_overlay.avi``), per-frame results
    (``*_frames.jsonl``) and the report page with its thumbnails and key frames (``report_files``).
    Saved video frames (``frames/``) are left alone."""
    from darkseg.utils.io import load_json

    try:
        info = load_json(out_dir / "images.json")
    except (FileNotFoundError, ValueError):
        return []
    if not isinstance(info, dict):
        return []
    names = [im.get("overlay") for im in info.get("images") or [] if isinstance(im, dict)]
    for v in info.get("videos") or []:
        if isinstance(v, dict):
            names += [v.get("overlay"), v.get("frames_jsonl")]
    names += [n for n in info.get("report_files") or [] if isinstance(n, str)]
    ours = ("_overlay.png", "_overlay.avi", "_frames.jsonl", ".html", ".jpg")
    return [out_dir / n for n in names if isinstance(n, str) and Path(n).name == n and n.endswith(ours)]


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


def _unique_name(stem: str, used: set[str]) -> str:
    name, k = f"{stem}_overlay.png", 2
    while name in used:
        name, k = f"{stem}_{k}_overlay.png", k + 1
    used.add(name)
    return name


def _unique_stem(stem: str, used: set[str]) -> str:
    name, k = stem, 2
    while name in used:
        name, k = f"{stem}_{k}", k + 1
    used.add(name)
    return name


def run(args: argparse.Namespace) -> int:
    import time

    from tqdm.auto import tqdm

    from darkseg.engine.coco_export import CocoInstancesWriter
    from darkseg.engine.predictor import Predictor, PredictResult
    from darkseg.engine.report_html import write_prediction_report
    from darkseg.engine.sources import Source, expand_sources
    from darkseg.engine.visualize import draw_instances
    from darkseg.models import CheckpointError
    from darkseg.utils.io import atomic_write_json, exif_orientation, write_image

    if args.batch_size < 1:
        print(f"darkseg predict: --batch-size must be >= 1, got {args.batch_size}", file=sys.stderr)
        return 2
    if not 0.0 <= args.gain_ema < 1.0:
        print(f"darkseg predict: --gain-ema must be in [0, 1), got {args.gain_ema}", file=sys.stderr)
        return 2
    try:
        _check_out_dir(args.out, args.overwrite)
        predictor = Predictor(
            args.checkpoint,
            device=args.device,
            score_thr=args.score_thr,
            mask_thr=args.mask_thr,
            ratio=args.ratio,
            linear_images=args.linear_images,
            dtype=args.dtype,
        )
    except (CheckpointError, FileNotFoundError, ValueError, RuntimeError) as exc:  # incl. RunFolderError
        print(f"darkseg predict: {exc}", file=sys.stderr)
        return 2
    sources, missing = expand_sources(args.inputs, recursive=args.recursive)
    sources += [Source("webcam", camera=n) for n in args.webcam]
    if not sources and not missing:
        print("darkseg predict: no image, camera RAW, video or webcam inputs", file=sys.stderr)
        return 2
    out_dir: Path = args.out
    _clear_out_dir(out_dir, args.overwrite)
    out_dir.mkdir(parents=True, exist_ok=True)
    images: list[dict] = []
    results: list[dict] = []
    videos: list[dict] = []
    errors: list[dict] = [{"file": m.split(": ")[0], "error": m} for m in missing]
    for m in missing:
        print(f"darkseg predict: skipped {m}", file=sys.stderr)
    used: set[str] = set()
    coco = CocoInstancesWriter(predictor.class_names, args.coco_masks) if args.export_coco else None

    def add_image(pred, file_name: str, **extra) -> int:
        image_id = len(images) + 1
        entry = {
            "id": image_id,
            "file_name": file_name,
            "height": pred.image_size[0],
            "width": pred.image_size[1],
            "kind": pred.kind,
            "ratio": round(pred.ratio, 4),
            "num_instances": len(pred),
            **extra,
        }
        images.append(entry)
        results.extend(pred.to_coco(image_id))
        if coco is not None:
            keep = {k: v for k, v in extra.items() if k in ("video", "frame_index")}
            coco.add(pred, file_name, image_id, **keep)
        return image_id

    def on_result(res: PredictResult) -> None:
        if not res.ok:
            errors.append({"file": res.source, "error": res.error})
            tqdm.write(f"darkseg predict: skipped {res.error}", file=sys.stderr)
            return
        extra = {}
        orientation = exif_orientation(res.source) if res.prediction.kind == "image" else 1
        if orientation != 1:
            extra["exif_orientation"] = orientation  # reported, not applied: results are in stored pixels
        if not args.no_overlay:
            name = _unique_name(Path(res.source).stem, used)
            write_image(out_dir / name, draw_instances(res.preview, res.prediction))
            extra["overlay"] = name
        add_image(res.prediction, res.source, **extra)

    throughput: list[str] = []
    files = [s.path for s in sources if s.kind == "image"]
    if files:
        t0 = time.perf_counter()
        predictor.predict_many(
            files,
            progress=not args.no_progress,
            preview=not args.no_overlay,
            on_result=on_result,
            batch_size=args.batch_size,
        )
        dt = time.perf_counter() - t0
        throughput.append(f"images: {len(files)} in {dt:.2f} s, {len(files) / max(dt, 1e-9):.2f} images/s")
    for src in (s for s in sources if s.kind != "image"):
        rc = _run_video(args, predictor, src, out_dir, used, add_image, videos, errors, throughput)
        if rc == 2:
            return rc
        if rc == 130:  # Ctrl-C: write what was done, skip the remaining inputs
            break
    categories = [{"id": i + 1, "name": n} for i, n in enumerate(predictor.class_names)]
    atomic_write_json(out_dir / "results.json", results)
    info = {
        "images": images,
        "categories": categories,
        "videos": videos,
        "errors": errors,
        "checkpoint": str(args.checkpoint),
        "score_thr": args.score_thr,
        "ratio": args.ratio,
        "dtype": args.dtype,
        "batch_size": args.batch_size,
        "coordinates": "pixels of the image the model saw (camera RAW: half sensor resolution)",
    }
    info["report_files"] = write_prediction_report(out_dir, info, results)
    atomic_write_json(out_dir / "images.json", info, indent=1)
    if coco is not None:
        coco.write(args.export_coco)
    n_inst = sum(im["num_instances"] for im in images)
    print(f"{len(images)} image(s)/frame(s), {n_inst} instance(s), {len(errors)} error(s) -> {out_dir}")
    print(f"report: {out_dir / info['report_files'][0]} (open it in a browser)")
    for line in throughput:
        print(f"throughput {line}")
    return 1 if errors else 0


def _run_video(
    args, predictor, src, out_dir: Path, used: set[str], add_image, videos, errors, throughput
) -> int:
    """Predict one video / webcam; appends to ``videos`` / ``errors``; returns 2 on a setup error, 130
    when interrupted with Ctrl-C, else 0."""
    import json

    from tqdm.auto import tqdm

    from darkseg.engine.stream import predict_video
    from darkseg.engine.video import VideoSource
    from darkseg.utils.io import write_image

    try:
        source = VideoSource(src.camera if src.kind == "webcam" else src.path, max_frames=args.max_frames)
    except (OSError, ValueError) as exc:  # VideoOpenError is a ValueError
        errors.append({"file": src.name, "error": str(exc)})
        tqdm.write(f"darkseg predict: skipped {exc}", file=sys.stderr)
        return 0
    stem = _unique_stem(f"cam{src.camera}" if src.kind == "webcam" else Path(src.name).stem, used)
    jsonl = out_dir / f"{stem}_frames.jsonl"
    frames_dir = out_dir / "frames" / stem

    with open(jsonl, "w", encoding="utf-8") as fh:

        def on_frame(index: int, pred, frame) -> None:
            file_name = f"{src.name}#{index}"
            if args.save_frames:
                path = frames_dir / f"{index:06d}.png"
                write_image(path, frame)
                file_name = str(path)
            image_id = add_image(pred, file_name, video=src.name, frame_index=index)
            line = {"frame_index": index, "image_id": image_id, "results": pred.to_coco(image_id)}
            fh.write(json.dumps(line) + "\n")
            fh.flush()  # a killed run keeps the frames done so far

        try:
            report = predict_video(
                predictor,
                source,
                out_video=None if args.no_overlay else out_dir / f"{stem}_overlay.avi",
                batch_size=args.batch_size,
                gain_ema=args.gain_ema,
                on_frame=on_frame,
                progress=not args.no_progress,
            )
        except ValueError as exc:  # e.g. a packed-RAW model cannot take video frames
            print(f"darkseg predict: {src.name}: {exc}", file=sys.stderr)
            return 2
    for p in report.problems:
        errors.append({"file": src.name, "error": p})
        tqdm.write(f"darkseg predict: {p}", file=sys.stderr)
    videos.append(
        {
            "source": src.name,
            "frames": report.frames,
            "fps": report.fps,
            "width": report.size[0],
            "height": report.size[1],
            "overlay": report.out.name if report.out else None,
            "frames_jsonl": jsonl.name,
            "problems": report.problems,
        }
    )
    throughput.append(
        f"{src.name}: {report.frames} frame(s) in {report.seconds:.2f} s, "
        f"{report.frames_per_second:.2f} frames/s"
    )
    return 130 if report.interrupted else 0
