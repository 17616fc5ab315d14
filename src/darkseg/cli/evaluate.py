"""``darkseg evaluate``: COCO bbox/segm AP (pycocotools) of a results file or of a checkpoint.

Results file::

    darkseg evaluate --annotations GT.json --results RESULTS.json [--iou-type bbox|segm|both] [--json OUT]

Checkpoint (runs the model, writes the results JSON, evaluates, prints a per-class AP table)::

    darkseg evaluate --checkpoint CKPT --annotations GT.json --images DIR [--dataset-type coco|lis]
    darkseg evaluate --checkpoint CKPT --config EXPERIMENT.yaml        (dataset = the config's data.val)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from darkseg.cli.argtypes import add_set_option, non_negative_int, positive_int, ratio_or_auto

HELP = "COCO bbox/segm AP of a results file or of a checkpoint"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--annotations", type=Path, help="COCO instance annotation JSON (ground truth)")
    parser.add_argument("--results", type=Path, help="COCO results JSON to evaluate (results-file mode)")
    parser.add_argument("--checkpoint", type=Path, help="darkseg checkpoint to run (checkpoint mode)")
    parser.add_argument("--images", type=Path, help="image folder the annotation file_names are relative to")
    parser.add_argument(
        "--config", help="experiment YAML (path or packaged name): its data.val dataset is evaluated"
    )
    add_set_option(parser, "data.val.image_dir=/data/LIS/RAW_Dark")
    parser.add_argument(
        "--dataset-type",
        choices=("coco", "lis"),
        default="coco",
        help="lis: LIS class aliases and JPEGImages/ lookup (checkpoint mode)",
    )
    parser.add_argument("--image-ext", help="replace every file suffix, e.g. .png (LIS JPG json + RAW PNGs)")
    parser.add_argument(
        "--intensity-ratio",
        type=ratio_or_auto,
        default=1.0,
        help="checkpoint mode: gain on every image before clipping (dark linear RAW), or 'auto' per image",
    )
    parser.add_argument("--iou-type", choices=("bbox", "segm", "both"), default="both")
    parser.add_argument(
        "--recompute-area",
        action="store_true",
        help="use mask areas instead of the file's `area` for APs/APm/APl (LIS stores box areas)",
    )
    parser.add_argument("--json", type=Path, dest="json_out", help="write metrics (and per-class AP) here")
    parser.add_argument(
        "--results-out", type=Path, help="checkpoint mode: where to write the results JSON (default: none)"
    )
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (checkpoint mode)")
    parser.add_argument("--batch-size", type=positive_int, default=1)
    parser.add_argument("--workers", type=non_negative_int, default=0, help="DataLoader worker processes")
    parser.add_argument("--max-images", type=positive_int, help="evaluate only the first N images")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _iou_types(choice: str) -> tuple[str, ...]:
    return ("bbox", "segm") if choice == "both" else (choice,)


def _run_results(args: argparse.Namespace) -> dict:
    from darkseg.data.coco import load_coco, recompute_areas
    from darkseg.engine.evaluate import coco_evaluate_full

    if args.annotations is None:
        raise ValueError("--results needs --annotations GT.json")
    gt = load_coco(args.annotations)
    if args.recompute_area:
        recompute_areas(gt)
    full = coco_evaluate_full(gt, args.results, _iou_types(args.iou_type))
    names = {c["id"]: c["name"] for c in gt.dataset["categories"]}
    anns = gt.dataset["annotations"]
    return {
        "annotations": str(args.annotations),
        "results": str(args.results),
        "ground_truth": {
            "images": len(gt.dataset["images"]),
            "instances": len(anns),
            "crowd": sum(1 for a in anns if a.get("iscrowd", 0)),
        },
        "metrics": {t: v["metrics"] for t, v in full.items()},
        "per_class": {t: {names[c]: ap for c, ap in v["per_class"].items()} for t, v in full.items()},
    }


def _dataset_from_experiment(args: argparse.Namespace, class_names: list[str]):
    """The config's ``data.val`` built as training evaluates it (``data.val_view`` included)."""
    from darkseg.config import load_config  # lazy: owned by the training package

    cfg = load_config(args.config, args.set)
    if cfg.data.val is None:
        raise ValueError(f"{args.config}: data.val is not set; pass --annotations and --images")
    if list(cfg.model.class_names) != list(class_names):
        raise ValueError(
            f"{args.config}: model.class_names {list(cfg.model.class_names)} differ from the checkpoint's "
            f"{list(class_names)}"
        )
    if args.recompute_area:
        cfg.data.val.recompute_area = True
    from darkseg.data.build import build_eval_dataset

    synth = None
    if cfg.data.val_view != "image" and cfg.synth is not None:
        from darkseg.synth import LowLightSynthesizer

        synth = LowLightSynthesizer(cfg.synth)
    return build_eval_dataset(cfg.data, class_names, synth, seed=cfg.train.seed)


def _dataset_for_checkpoint(args: argparse.Namespace, class_names: list[str]):
    from darkseg.data.build import build_dataset

    if args.config is not None and (args.annotations is None or args.images is None):
        return _dataset_from_experiment(args, class_names)
    if args.annotations is None or args.images is None:
        raise ValueError("--checkpoint needs --annotations and --images (or --config with data.val)")
    return build_dataset(
        args.dataset_type,
        args.images,
        args.annotations,
        class_names=class_names,
        image_ext=args.image_ext,
        recompute_area=args.recompute_area,
        intensity_ratio=args.intensity_ratio,
    )


def _run_checkpoint(args: argparse.Namespace) -> dict:
    from darkseg.engine.evaluate import evaluate_model
    from darkseg.models import load_model
    from darkseg.utils.runtime import resolve_device

    device = resolve_device(args.device)
    model, _ = load_model(args.checkpoint, map_location=device)
    cfg = model.config
    if int(getattr(cfg, "in_channels", 3)) != 3:
        raise ValueError(
            f"{args.checkpoint}: model takes {cfg.in_channels}-channel input; darkseg evaluate feeds "
            "3-channel images (use darkseg predict for packed RAW input)"
        )
    dataset = _dataset_for_checkpoint(args, list(cfg.class_names))
    dataset.check_files()
    out = evaluate_model(
        model,
        dataset,
        device=device,
        batch_size=args.batch_size,
        num_workers=args.workers,
        iou_types=_iou_types(args.iou_type),
        results_file=args.results_out,
        progress=not args.no_progress,
        max_images=args.max_images,
    )
    return {
        "checkpoint": str(args.checkpoint),
        "annotations": str(dataset.ann_file),
        "images": str(dataset.image_dir),
        **out,
    }


def _check_outputs(args: argparse.Namespace) -> None:
    """Before any work: ``--json`` and ``--results-out`` are no input, not the same file, and no existing
    file that no ``evaluate`` run wrote (``OutputError``); then both are recorded in their folders'
    records and the temporaries a killed evaluation left of them are removed (and reported)."""
    from darkseg.errors import OutputError
    from darkseg.utils.outputs import check_file, claim_file, resolved

    config = Path(args.config) if args.config and Path(args.config).is_file() else None
    inputs = [args.annotations, args.results, args.checkpoint, args.images, config]
    for out in (args.json_out, args.results_out):
        if out is not None:
            check_file(out, "evaluate", inputs)
    if args.json_out and args.results_out and resolved(args.json_out) == resolved(args.results_out):
        raise OutputError(f"{args.json_out}: --json and --results-out name the same file")
    for out in (args.json_out, args.results_out):
        for p in claim_file(out, "evaluate", inputs) if out is not None else []:
            print(f"darkseg evaluate: removed {p} (temporary file of an interrupted write)", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from darkseg.engine.evaluate import format_metrics, format_per_class
    from darkseg.utils.io import ImageReadError, atomic_write_json

    if (args.results is None) == (args.checkpoint is None):
        print("darkseg evaluate: error: give exactly one of --results or --checkpoint", file=sys.stderr)
        return 2
    try:
        _check_outputs(args)
        report = _run_results(args) if args.results is not None else _run_checkpoint(args)
    except (ValueError, FileNotFoundError, ImageReadError, RuntimeError) as exc:
        print(f"darkseg evaluate: error: {exc}", file=sys.stderr)
        return 2
    print(format_metrics(report["metrics"]))
    print()
    print(format_per_class(report["per_class"]))
    if report.get("ground_truth") is not None:
        g = report["ground_truth"]
        print(f"\nground truth: {g['images']} images, {g['instances']} instances ({g['crowd']} crowd)")
    if report.get("num_images") is not None:
        print(f"\n{report['num_images']} images, {report['num_detections']} detections")
    if args.json_out is not None:
        atomic_write_json(args.json_out, report, indent=1)
        print(f"metrics written to {args.json_out}")
    return 0
