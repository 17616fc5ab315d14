"""Checks of COCO-format entries, shared by every reader of annotation and results files.

The datasets (``darkseg.data``), ``darkseg synth`` and ``darkseg evaluate`` apply the same rules, when a
file is loaded and before any image is read. Pure Python + NumPy (no torch, no pycocotools), so the
lowest layers can use it. A problem raises :class:`AnnotationError` (a ``ValueError``) whose one-line
message names the file, the entry (image id / annotation id) and the problem.

Rules (coordinates in pixels of the stored image, ``width x height``):

* ids: image ids, annotation ids and category ids are unique within their list;
* images: ``id``, ``file_name`` (string), ``width`` / ``height`` positive integers with at most
  :data:`MAX_IMAGE_PIXELS` pixels (OpenCV's own decode limit; pycocotools counts pixels in 32 bits);
* ``bbox``: ``[x, y, w, h]``, four finite numbers, ``w, h >= 0``, inside the image up to
  :data:`EDGE_TOLERANCE` of its side (annotation tools put points a little past the border: the LIS test
  file has boxes 2 px past a 1200 px wide image);
* ``segmentation``: polygons (each a flat list of at least 3 points, ``x, y`` pairs of finite numbers
  inside the image up to :data:`EDGE_TOLERANCE`, like boxes: pycocotools rasterises them on the image grid),
  or RLE ``{"size": [height, width], "counts": ...}`` of the image's size whose run lengths
  (uncompressed list, or pycocotools' compressed string) are non-negative and add up to
  ``height * width``; an empty list means "no mask" (the box is used);
* ``area``: a finite number ``>= 0`` when present; ``iscrowd``: 0 or 1 when present.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np

from darkseg.errors import DarkSegError, cut_text, short_repr

__all__ = [
    "EDGE_TOLERANCE",
    "MAX_IMAGE_PIXELS",
    "AnnotationError",
    "box_problem",
    "segmentation_problem",
    "rle_string_counts",
    "check_unique_ids",
    "check_images",
    "check_categories",
    "check_annotations",
    "validate_coco",
]

#: How far (fraction of the image side) a box or polygon may reach past the image border.
EDGE_TOLERANCE = 0.01
#: Largest image (width x height) an annotation or results file may describe: OpenCV's default decode
#: limit (``CV_IO_MAX_IMAGE_PIXELS``), well below the 2**32 pixels where pycocotools' 32-bit run lengths
#: and areas overflow.
MAX_IMAGE_PIXELS = 2**30
#: Characters of one compressed-RLE number; 12 x 5 bits covers every run length of a real image.
_MAX_RLE_CHARS = 12


class AnnotationError(DarkSegError, ValueError):
    """An annotation file is malformed; the message names the file and the offending entry."""


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _all_finite(values: Sequence[Any]) -> bool:
    """Whether every value is a finite number (one C-level sum instead of a check per coordinate: a
    string raises, a NaN or infinity makes the sum non-finite)."""
    try:
        return math.isfinite(sum(values, 0.0))
    except (TypeError, OverflowError):
        return False


def _positive_int(v: Any) -> bool:
    return _finite(v) and float(v).is_integer() and v > 0


def box_problem(box: Any, width: float, height: float) -> str | None:
    """What is wrong with a COCO ``[x, y, w, h]`` box (pixels) of a ``width x height`` image, or None."""
    if not isinstance(box, (list, tuple)) or len(box) != 4:
        return f"bbox must be [x, y, w, h], got {short_repr(box)}"
    if not _all_finite(box):
        return f"bbox {short_repr(list(box))} has a value that is not a finite number"
    x, y, w, h = (float(v) for v in box)
    if w < 0 or h < 0:
        return f"bbox {list(box)} has a negative width or height"
    tx, ty = EDGE_TOLERANCE * width, EDGE_TOLERANCE * height
    if x < -tx or y < -ty or x + w > width + tx or y + h > height + ty:
        return f"bbox {list(box)} [x, y, w, h] lies outside the {width}x{height} image"
    return None


def rle_string_counts(counts: str) -> np.ndarray:
    """Run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``, vectorised).

    Returns:
        int64 ``(M,)`` run lengths (may be negative for a corrupt string; the caller checks).

    Raises:
        ValueError: a character outside the RLE alphabet, a truncated last number, or a number longer
            than any run length of a real image.
    """
    try:
        b = np.frombuffer(counts.encode("ascii"), np.uint8).astype(np.int64) - 48
    except UnicodeEncodeError as exc:
        raise ValueError("RLE counts hold non-ASCII characters") from exc
    if b.size == 0:
        return np.zeros(0, np.int64)
    if b.min() < 0 or b.max() > 63:
        raise ValueError("RLE counts hold a character outside the RLE alphabet ('0'..'o')")
    more = (b & 0x20) != 0
    if more[-1]:
        raise ValueError("RLE counts end in the middle of a number")
    ends = np.flatnonzero(~more)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > _MAX_RLE_CHARS:
        raise ValueError("RLE counts hold a number too large for a run length")
    k = np.arange(b.size) - np.repeat(starts, lengths)  # position of each char within its number
    x = np.add.reduceat((b & 0x1F) << (5 * k), starts)
    x -= np.where((b[ends] & 0x10) != 0, np.int64(1) << (5 * lengths), 0)  # sign extension
    out = x.copy()  # runs from the 4th on are stored as differences to the run two before
    out[1::2] = np.cumsum(x[1::2])
    out[2::2] = np.cumsum(x[2::2])
    return out


def _rle_problem(seg: Mapping[str, Any], width: int, height: int) -> str | None:
    size, counts = seg.get("size"), seg.get("counts")
    if size is None or counts is None:
        return "RLE segmentation needs 'size' and 'counts'"
    if not isinstance(size, (list, tuple)) or [v for v in size] != [height, width]:
        return f"RLE size {short_repr(size)} is not the image's [height, width] = [{height}, {width}]"
    if isinstance(counts, bytes):
        counts = counts.decode("ascii", errors="replace")
    if isinstance(counts, str):
        try:
            runs = rle_string_counts(counts)
        except ValueError as exc:
            return f"RLE counts are corrupt ({exc})"
    elif isinstance(counts, (list, tuple)):
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in counts):
            return "uncompressed RLE counts must be integers"
        runs = np.asarray(counts, dtype=np.int64)
    else:
        return f"RLE counts must be a string or a list of integers, got {type(counts).__name__}"
    if runs.size and runs.min() < 0:
        return "RLE counts are corrupt (a negative run length)"
    if int(runs.sum()) != height * width:
        return (
            f"RLE counts cover {int(runs.sum())} pixels, not the image's {height}x{width} = {height * width}"
        )
    return None


def segmentation_problem(seg: Any, width: int, height: int) -> str | None:
    """What is wrong with a COCO ``segmentation`` (polygons or RLE) of a ``width x height`` image, or None."""
    if isinstance(seg, Mapping):
        return _rle_problem(seg, width, height)
    if not isinstance(seg, (list, tuple)):
        return f"segmentation must be polygons or RLE, got {type(seg).__name__}"
    for k, poly in enumerate(seg):
        if not isinstance(poly, (list, tuple)):
            return f"polygon {k} is not a list of coordinates"
        if len(poly) < 6 or len(poly) % 2:
            return f"polygon {k} has {len(poly)} coordinates; a polygon needs x, y pairs of at least 3 points"
        if not _all_finite(poly):
            return f"polygon {k} has a coordinate that is not a finite number"
        problem = _polygon_outside(poly, width, height)
        if problem is not None:
            return f"polygon {k} {problem}"
    return None


def _polygon_outside(poly: Sequence[float], width: float, height: float) -> str | None:
    """Where a polygon's points reach past the image by more than :data:`EDGE_TOLERANCE`, or None."""
    xs, ys = poly[0::2], poly[1::2]
    tx, ty = EDGE_TOLERANCE * width, EDGE_TOLERANCE * height
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    if x0 < -tx or y0 < -ty or x1 > width + tx or y1 > height + ty:
        return f"reaches x {x0:g}..{x1:g}, y {y0:g}..{y1:g}, outside the {width}x{height} image"
    return None


def check_unique_ids(entries: Sequence[Mapping[str, Any]], kind: str, path: str) -> dict[Hashable, int]:
    """``{id: index}`` of a list of entries with an ``id``; raises naming the repeated id and both entries."""
    seen: dict[Hashable, int] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or "id" not in entry:
            raise AnnotationError(f"{path}: {kind}s[{i}] has no 'id'")
        key = entry["id"]
        try:
            repeated = key in seen
        except TypeError:  # unhashable: a list or an object
            raise AnnotationError(
                f"{path}: {kind}s[{i}] has an id that is not a number or string: {short_repr(key)}"
            ) from None
        if repeated:
            raise AnnotationError(
                f"{path}: {kind} id {short_repr(key)} appears twice ({kind}s[{seen[key]}] and {kind}s[{i}])"
            )
        seen[key] = i
    return seen


def check_images(images: Sequence[Mapping[str, Any]], path: str) -> dict[Hashable, Mapping[str, Any]]:
    """Check the ``images`` list; returns ``{image id: entry}``."""
    check_unique_ids(images, "image", path)
    for im in images:
        where = f"{path}: image id {short_repr(im['id'])}"
        if not isinstance(im.get("file_name"), str) or not im["file_name"]:
            raise AnnotationError(f"{where} has no 'file_name'")
        for key in ("width", "height"):
            if key not in im:
                raise AnnotationError(f"{where} has no {short_repr(key)}")
            if not _positive_int(im[key]):
                raise AnnotationError(f"{where}: {key} must be a positive integer, got {short_repr(im[key])}")
        if im["width"] * im["height"] > MAX_IMAGE_PIXELS:
            raise AnnotationError(
                f"{where}: {im['width']}x{im['height']} is larger than the {MAX_IMAGE_PIXELS} pixels darkseg "
                "reads (OpenCV's decode limit)"
            )
    return {im["id"]: im for im in images}


def check_categories(categories: Sequence[Mapping[str, Any]], path: str) -> set[Hashable]:
    """Check the ``categories`` list; returns the category ids."""
    ids = check_unique_ids(categories, "category", path)
    for i, cat in enumerate(categories):
        if "name" not in cat:
            raise AnnotationError(f"{path}: categories[{i}] needs 'id' and 'name'")
    return set(ids)


def _annotation_problem(ann: Mapping[str, Any], image: Mapping[str, Any]) -> str | None:
    width, height = int(image["width"]), int(image["height"])
    problem = box_problem(ann["bbox"], width, height)
    if problem is None and ann.get("segmentation") is not None:
        problem = segmentation_problem(ann["segmentation"], width, height)
    if problem is None and "area" in ann and not (_finite(ann["area"]) and ann["area"] >= 0):
        problem = f"area {short_repr(ann['area'])} is not a finite number >= 0"
    if problem is None and ann.get("iscrowd", 0) not in (0, 1):
        problem = f"iscrowd must be 0 or 1, got {short_repr(ann['iscrowd'])}"
    return problem


def check_annotations(
    annotations: Sequence[Mapping[str, Any]],
    images: Mapping[Hashable, Mapping[str, Any]],
    category_ids: set[Hashable] | None,
    path: str,
) -> None:
    """Check every annotation (unique ids, known image / category, the numbers; see module docstring).

    ``category_ids=None`` skips the category check (``darkseg synth`` needs no categories).
    """
    check_unique_ids(annotations, "annotation", path)
    for i, ann in enumerate(annotations):
        entry = f"{path}: annotations[{i}] (id {cut_text(str(ann['id']))})"
        for key in ("image_id", "category_id", "bbox"):
            if key not in ann:
                raise AnnotationError(f"{entry} has no {short_repr(key)}")
        try:
            known_image = ann["image_id"] in images
            known_category = category_ids is None or ann["category_id"] in category_ids
        except TypeError:  # unhashable: a list or an object
            raise AnnotationError(
                f"{entry} has image_id {short_repr(ann['image_id'])} / "
                f"category_id {short_repr(ann['category_id'])}; both must be numbers or strings"
            ) from None
        if not known_image:
            raise AnnotationError(f"{entry} refers to unknown image_id {short_repr(ann['image_id'])}")
        if not known_category:
            raise AnnotationError(f"{entry} has unknown category_id {short_repr(ann['category_id'])}")
        problem = _annotation_problem(ann, images[ann["image_id"]])
        if problem is not None:
            raise AnnotationError(
                f"{path}: annotation id {short_repr(ann['id'])} (image id {short_repr(ann['image_id'])}): "
                f"{problem}"
            )


def validate_coco(data: Any, path: str) -> None:
    """Check a whole COCO instance file (top-level lists, images, categories, annotations)."""
    if not isinstance(data, dict):
        raise AnnotationError(f"{path}: not a COCO annotation file (top level is {type(data).__name__})")
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise AnnotationError(f"{path}: missing key {short_repr(key)} (COCO instance format)")
        if not isinstance(data[key], list):
            raise AnnotationError(f"{path}: {short_repr(key)} must be a list")
        if any(not isinstance(e, Mapping) for e in data[key]):
            raise AnnotationError(f"{path}: every entry of {short_repr(key)} must be an object")
    if not data["images"]:
        raise AnnotationError(f"{path}: no images")
    if not data["categories"]:
        raise AnnotationError(f"{path}: no categories")
    images = check_images(data["images"], path)
    category_ids = check_categories(data["categories"], path)
    check_annotations(data["annotations"], images, category_ids, path)
