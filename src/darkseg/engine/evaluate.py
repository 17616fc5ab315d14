"""COCO bbox/segm evaluation with pycocotools, results writing and model evaluation.

* :func:`coco_evaluate` - the 12 standard COCO metrics per IoU type, computed by ``pycocotools.COCOeval``
  (results loaded with ``COCO.loadRes``, so its rules apply: a result's ``area`` comes from its bbox when
  it has one, else from its mask).
* :func:`predictions_to_results` - torchvision prediction dicts -> COCO results (boxes ``xywh``, RLE
  masks from ``pycocotools.mask.encode``, labels -> category ids).
* :func:`evaluate_model` - run a model over a :class:`~darkseg.data.coco.CocoInstances` dataset, write
  the results JSON atomically, evaluate, and build a per-class AP table.

Bounded work: pycocotools matches every detection with every ground-truth object of its image and
category in Python loops, so the ground truth may hold at most :data:`MAX_OBJECTS_PER_IMAGE` objects per
evaluated image (more is refused, naming the image; COCO has at most 93, LIS 98), and of the results
only the :data:`MAX_DETS` best-scoring per image and category reach pycocotools (``COCOeval`` reads no
others: dropping them first changes no metric). Image sizes are bounded by the annotation checks
(:data:`darkseg.utils.coco_checks.MAX_IMAGE_PIXELS`).

Note for LIS: its annotation files store the box area in ``area``; COCOeval splits small / medium /
large by the GT ``area`` field, so APs/APm/APl are by box size unless the dataset was loaded with
``recompute_area=True`` (docs/data.md).
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from darkseg.errors import DarkSegError, short_repr

__all__ = [
    "METRIC_NAMES",
    "IOU_TYPES",
    "MAX_OBJECTS_PER_IMAGE",
    "MAX_DETS",
    "ResultsError",
    "load_results",
    "validate_results",
    "best_results",
    "coco_evaluate",
    "coco_evaluate_full",
    "check_ground_truth",
    "per_class_ap",
    "predictions_to_results",
    "check_mask_threshold",
    "evaluate_model",
    "format_metrics",
    "format_per_class",
]

#: The 12 numbers of ``COCOeval.summarize()``, in its order.
METRIC_NAMES: tuple[str, ...] = (
    "AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl",
)  # fmt: skip
IOU_TYPES: tuple[str, ...] = ("bbox", "segm")
#: Ground-truth objects per evaluated image above which evaluation is refused: ``COCOeval`` costs about
#: 4 ms per object with 100 detections (measured: 1000 objects 4 s, 10 000 objects 63 s on one image).
MAX_OBJECTS_PER_IMAGE = 2000
#: ``COCOeval``'s largest ``maxDets``: it scores only the best this many results per image and category.
MAX_DETS = 100


class ResultsError(DarkSegError, ValueError):
    """A results file/list is malformed or refers to unknown images/categories (names file and entry)."""


# ------------------------------------------------------------ loading
def load_results(results: str | os.PathLike | Sequence[Mapping[str, Any]]) -> tuple[list[dict], str]:
    """Read a COCO results file (a JSON list) or copy a list; returns ``(results, source_name)``."""
    if isinstance(results, (str, os.PathLike)):
        from darkseg.utils.io import load_json

        path = Path(results)
        if path.is_file() and path.stat().st_size == 0:
            raise ResultsError(f"{path}: results file is empty")
        try:
            data = load_json(path)
        except ValueError as exc:
            raise ResultsError(str(exc)) from exc
        if not isinstance(data, list):
            raise ResultsError(f"{path}: a COCO results file must be a JSON list, got {type(data).__name__}")
        return data, str(path)
    return [dict(r) for r in results], "results"


def validate_results(
    results: Sequence[Mapping[str, Any]], gt, iou_type: str, source: str = "results"
) -> None:
    """Check every result before pycocotools sees it.

    Each entry needs a known ``image_id`` and ``category_id``, a finite ``score``, and the field
    ``iou_type`` needs (``bbox`` or ``segmentation``). A ``bbox`` must be four finite numbers with
    ``w, h >= 0`` inside the image (the rules of ``darkseg.utils.coco_checks.box_problem``); a
    ``segmentation`` must be RLE of the image's ``[height, width]`` with run lengths that cover the
    image exactly, or valid polygons. Raises :class:`ResultsError` naming the file, the entry index
    and the image id.
    """
    from darkseg.utils.coco_checks import box_problem, segmentation_problem

    img_ids, cat_ids = set(gt.getImgIds()), set(gt.getCatIds())
    for i, r in enumerate(results):
        where = f"{source}: entry {i}"
        if not isinstance(r, Mapping):
            raise ResultsError(f"{where} is not an object")
        for key in ("image_id", "category_id", "score"):
            if key not in r:
                raise ResultsError(f"{where} has no {short_repr(key)}")
        try:
            known_image, known_category = r["image_id"] in img_ids, r["category_id"] in cat_ids
        except TypeError:  # unhashable: a list or an object
            raise ResultsError(f"{where}: image_id and category_id must be numbers") from None
        if not known_image:
            raise ResultsError(
                f"{where}: image_id {short_repr(r['image_id'])} is not an image of the annotation file"
            )
        if not known_category:
            raise ResultsError(
                f"{where}: category_id {short_repr(r['category_id'])} is not a category of the annotation "
                f"file (known: {sorted(cat_ids)})"
            )
        if not isinstance(r["score"], (int, float)) or not math.isfinite(r["score"]):
            raise ResultsError(f"{where}: score {short_repr(r['score'])} is not a finite number")
        if iou_type == "bbox" and "bbox" not in r and "segmentation" not in r:
            raise ResultsError(f"{where}: no 'bbox' (or 'segmentation') for bbox evaluation")
        if iou_type == "segm" and "segmentation" not in r:
            raise ResultsError(f"{where}: no 'segmentation' for segm evaluation")
        info = gt.imgs[r["image_id"]]
        width, height = int(info["width"]), int(info["height"])
        problem = box_problem(r["bbox"], width, height) if "bbox" in r else None
        if problem is None and "segmentation" in r:
            problem = segmentation_problem(r["segmentation"], width, height)
        if problem is not None:
            raise ResultsError(f"{where} (image id {short_repr(r['image_id'])}): {problem}")


def best_results(results: Sequence[Mapping[str, Any]], max_dets: int = MAX_DETS) -> list[Mapping[str, Any]]:
    """The results ``COCOeval`` scores: the ``max_dets`` highest-scoring per image and category (ties in
    file order, as COCOeval's stable sort breaks them), in file order. Every metric is the same as with
    all results; the work handed to pycocotools is bounded by images x categories x ``max_dets``."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, r in enumerate(results):
        groups[(r["image_id"], r["category_id"])].append(i)
    if all(len(idx) <= max_dets for idx in groups.values()):
        return list(results)
    keep: list[int] = []
    for idx in groups.values():
        keep += sorted(idx, key=lambda i: -results[i]["score"])[:max_dets] if len(idx) > max_dets else idx
    return [results[i] for i in sorted(keep)]


def _results_coco(gt, results: list[dict]):
    """``gt.loadRes`` (silently), also for an empty list (pycocotools fails on that)."""
    from pycocotools.coco import COCO

    if results:
        with contextlib.redirect_stdout(io.StringIO()):
            return gt.loadRes(copy.deepcopy(results))
    dt = COCO()
    dt.dataset = {"images": list(gt.dataset["images"]), "categories": copy.deepcopy(gt.dataset["categories"])}
    dt.dataset["annotations"] = []
    with contextlib.redirect_stdout(io.StringIO()):
        dt.createIndex()
    return dt


def _gt_for_eval(gt, iou_types: Sequence[str], img_ids=None, cat_ids=None):
    """A private ground-truth index for COCOeval (from a path, dict or ``COCO``), checked with
    :func:`check_ground_truth` for ``iou_types`` (before any renumbering, so messages give the file's ids).

    COCOeval rewrites the GT it is given (``ignore`` flags, polygons replaced by RLE), so a ``COCO``
    passed in is copied and the caller's index (e.g. a dataset's ``.coco``) stays as loaded. pycocotools
    also marks a matched GT with the matched detection's id and vice versa, with 0 meaning 'unmatched':
    a GT annotation with id 0 would count its matches as misses, so ids are renumbered 1..N when needed.
    """
    from pycocotools.coco import COCO

    from darkseg.data.coco import load_coco

    source = getattr(gt, "source", "<dict>") if isinstance(gt, COCO) else "<dict>"
    fresh = load_coco(gt.dataset if isinstance(gt, COCO) else gt, source=source)  # dicts are deep-copied
    check_ground_truth(fresh, iou_types, img_ids, cat_ids)
    anns = fresh.dataset["annotations"]
    ids = [a["id"] for a in anns]
    if not (all(isinstance(i, int) and i > 0 for i in ids) and len(set(ids)) == len(ids)):
        for k, ann in enumerate(anns, start=1):
            ann["id"] = k
        with contextlib.redirect_stdout(io.StringIO()):
            fresh.createIndex()
    return fresh


def check_ground_truth(
    gt,
    iou_types: str | Sequence[str] = IOU_TYPES,
    img_ids: Iterable[int] | None = None,
    cat_ids: Iterable[int] | None = None,
) -> None:
    """Check what COCOeval needs of the ground truth it will score, before any model runs.

    Every annotation of the evaluated images and categories needs an ``area`` (the small / medium /
    large split reads it) and, for ``"segm"``, a non-empty segmentation (COCOeval rasterises each one);
    an image may hold at most :data:`MAX_OBJECTS_PER_IMAGE` of them.
    ``gt`` is a loaded pycocotools ``COCO`` (e.g. a dataset's ``.coco``). Raises
    :class:`~darkseg.data.coco.AnnotationError` naming the file, the annotation id and the image id.
    """
    from darkseg.data.coco import AnnotationError

    types = [iou_types] if isinstance(iou_types, str) else list(iou_types)
    images = None if img_ids is None else set(img_ids)
    cats = None if cat_ids is None else set(cat_ids)
    source = getattr(gt, "source", "<dict>")
    per_image: Counter = Counter()
    for ann in gt.dataset["annotations"]:
        if (images is not None and ann["image_id"] not in images) or (
            cats is not None and ann["category_id"] not in cats
        ):
            continue
        per_image[ann["image_id"]] += 1
        if per_image[ann["image_id"]] > MAX_OBJECTS_PER_IMAGE:
            raise AnnotationError(
                f"{source}: image id {short_repr(ann['image_id'])} has more than {MAX_OBJECTS_PER_IMAGE} "
                "ground-truth objects to evaluate; COCO evaluation's matching grows with objects x "
                "detections per image "
                "(evaluate fewer classes or split the image)"
            )
        where = f"{source}: annotation id {short_repr(ann['id'])} (image id {short_repr(ann['image_id'])})"
        if "area" not in ann:
            raise AnnotationError(f"{where} has no 'area', which COCO evaluation needs")
        if "segm" in types and not ann.get("segmentation"):
            raise AnnotationError(
                f"{where} has no segmentation; segm evaluation needs one for every annotation "
                "(or use --iou-type bbox)"
            )


# ------------------------------------------------------------ evaluation
def _run_cocoeval(gt, dt, iou_type: str, img_ids: Iterable[int] | None, cat_ids: Iterable[int] | None):
    from pycocotools.cocoeval import COCOeval

    ev = COCOeval(gt, dt, iouType=iou_type)
    if img_ids is not None:
        ev.params.imgIds = sorted(int(i) for i in img_ids)
    if cat_ids is not None:
        ev.params.catIds = sorted(int(c) for c in cat_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def per_class_ap(ev) -> dict[int, float]:
    """AP@[.5:.95] (area all, maxDets 100) per category id from an accumulated ``COCOeval``
    (-1 when the class has no GT)."""
    precision = ev.eval["precision"]  # (T, R, K, A, M)
    out: dict[int, float] = {}
    for k, cat_id in enumerate(ev.params.catIds):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        out[int(cat_id)] = float(p.mean()) if p.size else -1.0
    return out


def coco_evaluate_full(
    gt,
    results,
    iou_types: str | Sequence[str] = IOU_TYPES,
    img_ids: Iterable[int] | None = None,
    cat_ids: Iterable[int] | None = None,
) -> dict[str, dict[str, dict]]:
    """Like :func:`coco_evaluate`, with per-class AP too.

    Returns:
        ``{iou_type: {"metrics": {name: value}, "per_class": {category_id: AP}}}``.
    """
    types = [iou_types] if isinstance(iou_types, str) else list(iou_types)
    gt = _gt_for_eval(gt, types, img_ids, cat_ids)
    res, source = load_results(results)
    out: dict[str, dict[str, dict]] = {}
    for t in types:
        if t not in IOU_TYPES:
            raise ValueError(f"iou type must be one of {IOU_TYPES}, got {short_repr(t)}")
        validate_results(res, gt, t, source)
        dt = _results_coco(gt, best_results(res))
        ev = _run_cocoeval(gt, dt, t, img_ids, cat_ids)
        metrics = {name: float(v) for name, v in zip(METRIC_NAMES, ev.stats)}
        out[t] = {"metrics": metrics, "per_class": per_class_ap(ev)}
    return out


def coco_evaluate(
    gt,
    results,
    iou_types: str | Sequence[str] = IOU_TYPES,
    img_ids: Iterable[int] | None = None,
    cat_ids: Iterable[int] | None = None,
) -> dict[str, dict[str, float]]:
    """The 12 COCO metrics per IoU type, computed by pycocotools.

    Args:
        gt: annotation file path, loaded dict, or pycocotools ``COCO``.
        results: results file path or list of COCO result dicts (``image_id``, ``category_id``,
            ``score``, ``bbox`` [x, y, w, h] and/or ``segmentation`` RLE/polygons).
        iou_types: ``"bbox"``, ``"segm"`` or both.
        img_ids, cat_ids: restrict the evaluation (default: every image / category of ``gt``).

    Returns:
        ``{iou_type: {"AP": .., "AP50": .., ..., "ARl": ..}}`` in [0, 1]; -1 where COCOeval has no GT
        (e.g. APs without small objects).
    """
    full = coco_evaluate_full(gt, results, iou_types, img_ids, cat_ids)
    return {t: v["metrics"] for t, v in full.items()}


# ------------------------------------------------------------ results writing
def check_mask_threshold(value: float, name: str = "mask threshold") -> float:
    """``value`` if it is a usable mask probability threshold, in the open interval (0, 1).

    A pixel is inside when its probability is ``> value``: 1 (or more) gives empty masks, 0 (or less)
    whole-image masks. Raises ``ValueError`` naming ``name``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
        raise ValueError(f"{name} must be a probability in (0, 1), got {short_repr(value)}")
    return float(value)


def predictions_to_results(
    predictions: Sequence[Mapping[str, Any]],
    image_ids: Sequence[int],
    label_to_category_id: Mapping[int, int],
    mask_threshold: float = 0.5,
    image_sizes: Sequence[tuple[int, int]] | None = None,
    original_sizes: Sequence[tuple[int, int]] | None = None,
) -> list[dict]:
    """torchvision prediction dicts -> COCO result dicts.

    Args:
        predictions: per image ``{"boxes": (N, 4) xyxy, "scores": (N,), "labels": (N,) int 1..K,
            "masks": (N, 1, H, W) float probabilities}`` (``masks`` optional).
        image_ids: the annotation file's id of each image.
        label_to_category_id: model label -> category id of the annotation file.
        mask_threshold: probability above which a pixel is inside (the paper: 0.5).
        image_sizes, original_sizes: ``(H, W)`` the predictions refer to and the annotation file's size;
            when they differ, boxes are scaled and masks resized (bilinear on probabilities) first.

    Returns:
        list of ``{"image_id", "category_id", "score", "bbox": [x, y, w, h], "segmentation": RLE}``
        (RLE ``counts`` as str, JSON-ready).
    """
    import torch
    import torch.nn.functional as F
    from pycocotools import mask as mask_utils

    check_mask_threshold(mask_threshold)
    out: list[dict] = []
    for k, (pred, image_id) in enumerate(zip(predictions, image_ids)):
        boxes = pred["boxes"].detach().float().cpu()
        scores = pred["scores"].detach().float().cpu()
        labels = pred["labels"].detach().cpu()
        masks = pred.get("masks")
        if masks is not None:
            masks = masks.detach().float().cpu()
        if image_sizes is not None and original_sizes is not None:
            (h, w), (h0, w0) = image_sizes[k], original_sizes[k]
            if (h, w) != (h0, w0):
                boxes = boxes * torch.tensor([w0 / w, h0 / h, w0 / w, h0 / h])
                if masks is not None and masks.numel():
                    masks = F.interpolate(masks, size=(h0, w0), mode="bilinear", align_corners=False)
        rles = None
        if masks is not None:
            binary = (masks[:, 0] > mask_threshold).to(torch.uint8).numpy()  # (N, H, W)
            if len(binary):
                rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))
            else:
                rles = []
        xywh = boxes.clone()
        xywh[:, 2:] -= xywh[:, :2]
        for i in range(len(scores)):
            label = int(labels[i])
            if label not in label_to_category_id:
                known = sorted(label_to_category_id)
                raise ResultsError(f"prediction label {label} has no category id (known labels {known})")
            r = {
                "image_id": int(image_id),
                "category_id": int(label_to_category_id[label]),
                "score": round(float(scores[i]), 6),
                "bbox": [round(float(v), 3) for v in xywh[i]],
            }
            if rles is not None:
                rle = rles[i]
                size = [int(s) for s in rle["size"]]
                r["segmentation"] = {"size": size, "counts": rle["counts"].decode("ascii")}
            out.append(r)
    return out


# ------------------------------------------------------------ model evaluation
def evaluate_model(
    model,
    dataset,
    device="cpu",
    batch_size: int = 1,
    num_workers: int = 0,
    iou_types: Sequence[str] = IOU_TYPES,
    results_file: str | os.PathLike | None = None,
    mask_threshold: float = 0.5,
    progress: bool = True,
    max_images: int | None = None,
) -> dict[str, Any]:
    """Run ``model`` over ``dataset`` (a ``CocoInstances``), write results, evaluate with pycocotools.

    The model gets each image as the dataset yields it (``(C, H, W)`` float); predictions are mapped back
    to the annotation file's image size when the dataset's transforms resized the image. Labels 1..K map
    to category ids with ``dataset.label_to_category_id``; the evaluation is restricted to the dataset's
    images and classes.

    Returns:
        ``{"metrics": {iou_type: {name: value}}, "per_class": {iou_type: {class_name: AP}},
        "num_images": int, "num_detections": int, "results_file": str | None}``.
    """
    import torch
    from tqdm import tqdm

    from darkseg.data.loader import build_loader
    from darkseg.utils.io import atomic_write_json

    check_mask_threshold(mask_threshold)
    if max_images is not None and max_images < 1:
        raise ValueError(f"max_images must be >= 1 or None, got {max_images}")
    device = torch.device(device)
    ids = list(dataset.ids)
    if not ids:
        raise ValueError(f"{getattr(dataset, 'ann_file', 'dataset')}: no images to evaluate")
    subset = dataset
    if max_images is not None and max_images < len(ids):
        subset = torch.utils.data.Subset(dataset, range(max_images))
        ids = ids[:max_images]
    check_ground_truth(dataset.coco, iou_types, ids, dataset.category_ids)  # before the model runs
    loader = build_loader(subset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    was_training = model.training
    model.eval()
    results: list[dict] = []
    try:
        with torch.inference_mode():
            bar = tqdm(loader, desc="evaluate", unit="batch", disable=not progress, dynamic_ncols=True)
            for images, targets in bar:
                batch_ids = [int(t["image_id"]) for t in targets]
                preds = model([img.to(device) for img in images])
                sizes = [tuple(img.shape[-2:]) for img in images]
                infos = [dataset.coco.imgs[i] for i in batch_ids]
                originals = [(int(info["height"]), int(info["width"])) for info in infos]
                results += predictions_to_results(
                    preds, batch_ids, dataset.label_to_category_id, mask_threshold, sizes, originals
                )
                bar.set_postfix(dets=len(results))
    finally:
        model.train(was_training)
    if results_file is not None:
        atomic_write_json(results_file, results)
    types = [t for t in iou_types if t == "bbox" or all("segmentation" in r for r in results)]
    full = coco_evaluate_full(dataset.coco, results, types, img_ids=ids, cat_ids=dataset.category_ids)
    names = dict(zip(dataset.category_ids, dataset.class_names))
    return {
        "metrics": {t: v["metrics"] for t, v in full.items()},
        "per_class": {
            t: {names[c]: v["per_class"][c] for c in dataset.category_ids} for t, v in full.items()
        },  # label order
        "num_images": len(ids),
        "num_detections": len(results),
        "results_file": None if results_file is None else str(results_file),
    }


# ------------------------------------------------------------ printing
def format_metrics(metrics: Mapping[str, Mapping[str, float]], scale: float = 100.0) -> str:
    """A table: one row per IoU type, one column per metric (×100 by default, -1 shown as ``-``)."""
    header = f"{'type':<6}" + "".join(f"{m:>7}" for m in METRIC_NAMES)
    lines = [header]
    for t, vals in metrics.items():
        cells = "".join(f"{'-':>7}" if vals[m] < 0 else f"{vals[m] * scale:7.2f}" for m in METRIC_NAMES)
        lines.append(f"{t:<6}" + cells)
    return "\n".join(lines)


def format_per_class(per_class: Mapping[str, Mapping[str, float]], scale: float = 100.0) -> str:
    """Per-class AP table: one row per class, one column per IoU type."""
    types = list(per_class)
    if not types:
        return ""
    classes = list(per_class[types[0]])
    width = max([5, *(len(str(c)) for c in classes)])
    lines = [f"{'class':<{width}}" + "".join(f"{t + ' AP':>10}" for t in types)]
    for c in classes:
        cells = ""
        for t in types:
            v = per_class[t].get(c, -1.0)
            cells += f"{'-':>10}" if v < 0 else f"{v * scale:10.2f}"
        lines.append(f"{c!s:<{width}}" + cells)
    return "\n".join(lines)
