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
(:mod:`darkseg.engine.report_html`: overlays, detection tables, filters, video timelines). A bad file or
frame is reported and skipped; the exit status is 1 when any input or frame failed. Throughput (images/s,
frames/s) is printed at the end. A missing input is reported on stderr and in ``images.json``. A DIR that
holds a previous prediction is refused unless ``--overwrite`` is given, which first removes the files that
prediction wrote (JSON files, overlays, per-frame results, saved frames, the report page and its thumbnails:
the ones DIR's ``.darkseg-outputs.json`` records) and nothing else. Before any work, a DIR that is or
contains an input (``--out`` equal to an input folder, ``--out .`` next to the inputs), the file-system
root, an ``--export-coco`` FILE that is an input, and any existing file in the way of an output that no
``predict`` run wrote (a user's ``x_overlay.png``, an existing ``--export-coco`` file) are refused with one
line naming it (:mod:`darkseg.utils.outputs`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from darkseg.cli.argtypes import (
    open_probability,
    positive_float,
    positive_int,
    probability,
    ratio_or_auto,
    webcam_index,
)

HELP = "instance masks for images, camera RAW files, videos and webcams"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="image / camera RAW / video files, folders, glob patterns, @list.txt files, cam:N webcams",
    )
    parser.add_argument(
        "--webcam", type=webcam_index, action="append", default=[], metavar="N", help="webcam index, 0..99"
    )
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
        "--batch-memory",
        type=positive_float,
        default=2.0,
        metavar="GB",
        help="memory one batched model call may use, GiB (caps --batch-size by the input size; default 2)",
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
    parser.add_argument(
        "--max-frames", type=positive_int, help="video / webcam: stop after this many frames (>= 1)"
    )
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


def _plan_outputs(args: argparse.Namespace, sources: list) -> tuple[list[str], list[str], list[str]]:
    """Names of the files the run writes into the output folder, decided before any work: ``(overlay
    name per image source, file stem per video / webcam source, every planned file)``. Saved video
    frames (``frames/<stem>/NNNNNN.png``) are recorded as they come, their number being unknown."""
    used: set[str] = set()
    images = [s for s in sources if s.kind == "image"]
    overlays = [_unique_name(Path(s.path).stem, used) for s in images]
    stems = [
        _unique_stem(f"cam{s.camera}" if s.kind == "webcam" else Path(s.name).stem, used)
        for s in sources
        if s.kind != "image"
    ]
    planned = ["results.json", "images.json"]
    if not args.no_overlay:
        planned += overlays + [f"{stem}_overlay.avi" for stem in stems]
    planned += [f"{stem}_frames.jsonl" for stem in stems]
    return overlays, stems, planned


def _check_outputs(args: argparse.Namespace, sources: list, planned: list[str], stems: list[str], record):
    """Before any work: no output over an input (or the root), no existing file that no ``predict`` run
    wrote in the way of an output (``--export-coco`` included). Raises ``OutputError``."""
    from darkseg.errors import OutputError
    from darkseg.utils.outputs import OutputRecord, check_paths, resolved

    given = [Path(i[1:] if i.startswith("@") else i) for i in args.inputs]
    inputs = [args.checkpoint, *(p for p in given if p.exists()), *(s.path for s in sources if s.path)]
    check_paths("predict", inputs, files=[args.export_coco], folders=[args.out])
    frames = [p for stem in stems for p in (args.out / "frames" / stem).glob("[0-9]" * 6 + ".png")]
    record.check([*planned, *(p.relative_to(args.out) for p in frames)])
    if args.export_coco is not None:
        if resolved(args.export_coco) in {resolved(args.out / n) for n in planned}:
            raise OutputError(f"{args.export_coco}: is one of the prediction's own files in {args.out}")
        OutputRecord(args.export_coco.parent, "predict").check([args.export_coco.name])


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
    from darkseg.engine.runfolder import check_run_folder
    from darkseg.utils.outputs import claim_file

    sources, missing = expand_sources(args.inputs, recursive=args.recursive)
    sources += [Source("webcam", camera=n) for n in args.webcam]
    if not sources and not missing:
        print("darkseg predict: no image, camera RAW, video or webcam inputs", file=sys.stderr)
        return 2
    if args.export_coco is not None:  # a path no file can be written at, before anything is planned
        from darkseg.utils.io import output_file_problem

        problem = output_file_problem(args.export_coco)
        if problem is not None:
            print(f"darkseg predict: --export-coco {problem}", file=sys.stderr)
            return 2
    out_dir: Path = args.out
    overlay_names, stems, planned = _plan_outputs(args, sources)
    try:  # the outputs first: nothing is loaded for a run that would write where it must not
        record = check_run_folder(args.out, "predict", resume=False, overwrite=args.overwrite)
        _check_outputs(args, sources, planned, stems, record)
        predictor = Predictor(
            args.checkpoint,
            device=args.device,
            score_thr=args.score_thr,
            mask_thr=args.mask_thr,
            ratio=args.ratio,
            linear_images=args.linear_images,
            dtype=args.dtype,
            batch_memory=max(1, int(args.batch_memory * 1024**3)),
        )
    except (CheckpointError, FileNotFoundError, ValueError, RuntimeError) as exc:  # incl. OutputError
        print(f"darkseg predict: {exc}", file=sys.stderr)
        return 2
    if args.overwrite:  # the files the previous prediction wrote (its record), nothing else
        record.remove_recorded()
    out_dir.mkdir(parents=True, exist_ok=True)
    for p in record.remove_stale_temporaries(planned):
        print(f"darkseg predict: removed {p} (temporary file of an interrupted write)", file=sys.stderr)
    record.claim(planned)
    if args.export_coco is not None:
        claim_file(args.export_coco, "predict")
    next_overlay = iter(overlay_names)  # results come one per image, in input order
    images: list[dict] = []
    results: list[dict] = []
    videos: list[dict] = []
    errors: list[dict] = [{"file": m.split(": ")[0], "error": m} for m in missing]
    for m in missing:
        print(f"darkseg predict: skipped {m}", file=sys.stderr)
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
        name = next(next_overlay)
        if not res.ok:
            errors.append({"file": res.source, "error": res.error})
            tqdm.write(f"darkseg predict: skipped {res.error}", file=sys.stderr)
            return
        extra = {}
        orientation = exif_orientation(res.source) if res.prediction.kind == "image" else 1
        if orientation != 1:
            extra["exif_orientation"] = orientation  # reported, not applied: results are in stored pixels
        if not args.no_overlay:
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
    for src, stem in zip((s for s in sources if s.kind != "image"), stems, strict=True):
        rc = _run_video(args, predictor, src, stem, record, add_image, videos, errors, throughput)
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
    info["report_files"] = write_prediction_report(out_dir, info, results, claim=record.claim)
    atomic_write_json(out_dir / "images.json", info, indent=1)
    if coco is not None:
        coco.write(args.export_coco)
    n_inst = sum(im["num_instances"] for im in images)
    print(f"{len(images)} image(s)/frame(s), {n_inst} instance(s), {len(errors)} error(s) -> {out_dir}")
    print(f"report: {out_dir / info['report_files'][0]} (open it in a browser)")
    for line in throughput:
        print(f"throughput {line}")
    return 1 if errors else 0


def _run_video(args, predictor, src, stem: str, record, add_image, videos, errors, throughput) -> int:
    """Predict one video / webcam into ``<stem>_*`` files of the output folder (saved frames recorded in
    its ``record`` before they are written); appends to ``videos`` / ``errors``; returns 2 on a setup
    error, 130 when interrupted with Ctrl-C, else 0."""
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
    out_dir: Path = args.out
    cap = predictor.max_batch(source.height, source.width) if source.height and source.width else None
    if cap is not None and args.batch_size > cap:
        mb = predictor.input_memory(source.height, source.width) / 1024**2
        tqdm.write(
            f"darkseg predict: {src.name}: --batch-size {args.batch_size} capped to {cap} for "
            f"{source.width}x{source.height} frames (about {mb:.0f} MB each, --batch-memory "
            f"{args.batch_memory:g} GiB)",
            file=sys.stderr,
        )
    jsonl = out_dir / f"{stem}_frames.jsonl"
    frames_dir = out_dir / "frames" / stem
    claimed = [0]  # frames recorded so far: in blocks, so the record is not rewritten for every frame

    with open(jsonl, "w", encoding="utf-8") as fh:

        def on_frame(index: int, pred, frame) -> None:
            file_name = f"{src.name}#{index}"
            if args.save_frames:
                path = frames_dir / f"{index:06d}.png"
                if index >= claimed[0]:
                    claimed[0] = index + 256
                    record.claim(f"frames/{stem}/{i:06d}.png" for i in range(index, claimed[0]))
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
