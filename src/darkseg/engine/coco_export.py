"""Predictions as one COCO *instances* file, for pre-labelling in annotation tools.

The file has the layout of a COCO ground-truth file (``images``, ``categories``, ``annotations``), the
format annotation tools import as existing annotations (pre-labels to correct); it is checked with
pycocotools' ``COCO(file)`` / ``annToMask`` (the tools themselves are not run in the tests):

* ``images``: ``id``, ``file_name``, ``width``, ``height`` (pixels of the image the model saw);
* ``categories``: ``id`` = the model's class index 1..K, ``name``, ``supercategory`` ``""``;
* ``annotations``: ``id``, ``image_id``, ``category_id``, ``segmentation`` (compressed RLE
  ``{"size": [H, W], "counts": str}``, or polygons ``[[x0, y0, x1, y1, ...], ...]``), ``area`` (mask
  pixels for RLE, polygon area for polygons), ``bbox`` ``[x, y, w, h]`` (the detector's box),
  ``iscrowd: 0``, ``score`` and ``attributes: {"score": ...}`` (CVAT keeps ``attributes``; FiftyOne and
  pycocotools keep extra keys such as ``score``).

RLE is exact (``annToMask`` gives back the predicted mask bit for bit). Polygons (:func:`mask_to_polygons`,
for tools that only take polygons) re-rasterise exactly for masks without holes; holes are filled.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["MASK_FORMATS", "CocoInstancesWriter", "mask_to_polygons", "prediction_annotations"]

MASK_FORMATS = ("rle", "polygon")


def mask_to_polygons(mask: np.ndarray) -> list[list[float]]:
    """Outer outlines of a bool ``(H, W)`` mask as COCO polygons ``[x0, y0, x1, y1, ...]`` (pixel-corner
    coordinates: pixel ``(i, j)`` covers ``[j, j + 1] x [i, i + 1]``), one per connected part.

    The outline runs a quarter pixel inside the edges of the boundary pixels (contours of the mask
    upsampled 2x, ``cv2.CHAIN_APPROX_SIMPLE``), so pycocotools re-rasterises a mask without holes exactly.
    Holes cannot be written as COCO polygons (the polygons of one annotation are united): they are filled.
    """
    import cv2

    m = np.asarray(mask, dtype=bool)
    ys, xs = np.nonzero(m)
    if ys.size == 0:
        return []
    y0, x0 = int(ys.min()), int(xs.min())
    crop = m[y0 : int(ys.max()) + 1, x0 : int(xs.max()) + 1].astype(np.uint8)
    up = np.ascontiguousarray(np.repeat(np.repeat(crop, 2, axis=0), 2, axis=1))
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for c in contours:
        pts = (c.reshape(-1, 2).astype(np.float64) + 0.5) / 2.0 + (x0, y0)
        if len(pts) < 3:  # a single pixel or line: outline the pixels' box instead
            lo, hi = pts.min(0) - 0.25, pts.max(0) + 0.25
            pts = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])
        polys.append([round(float(v), 2) for v in pts.reshape(-1)])
    return polys


def prediction_annotations(
    prediction: Any, image_id: int, first_id: int, mask_format: str = "rle"
) -> list[dict[str, Any]]:
    """COCO instance annotations of one :class:`~darkseg.engine.predictor.Prediction`.

    Args:
        prediction: boxes ``(N, 4)`` xyxy, labels ``(N,)``, scores ``(N,)``, masks bool ``(N, H, W)``.
        image_id: the image's id.
        first_id: id of the first annotation (ids are consecutive).
        mask_format: ``"rle"`` or ``"polygon"``.
    """
    from pycocotools import mask as mask_utils

    if mask_format not in MASK_FORMATS:
        raise ValueError(f"mask_format must be one of {MASK_FORMATS}, got {mask_format!r}")
    n = len(prediction)
    masks = np.asarray(prediction.masks, dtype=bool)
    h, w = prediction.image_size
    out = []
    for i in range(n):
        x0, y0, x1, y1 = (float(v) for v in prediction.boxes[i])
        score = round(float(prediction.scores[i]), 6)
        if mask_format == "rle":
            rle = mask_utils.encode(np.asfortranarray(masks[i].astype(np.uint8)))
            seg: Any = {"size": [int(h), int(w)], "counts": rle["counts"].decode("ascii")}
            area = float(masks[i].sum())
        else:
            seg = mask_to_polygons(masks[i])
            if seg:
                rles = mask_utils.frPyObjects(seg, int(h), int(w))
                area = float(mask_utils.area(mask_utils.merge(rles)))
            else:
                area = 0.0
        out.append(
            {
                "id": int(first_id + i),
                "image_id": int(image_id),
                "category_id": int(prediction.labels[i]),
                "segmentation": seg,
                "area": area,
                "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                "iscrowd": 0,
                "score": score,
                "attributes": {"score": score},
            }
        )
    return out


class CocoInstancesWriter:
    """Collect images and predictions; :meth:`write` saves the COCO instances file atomically.

    Args:
        class_names: the model's ``K`` class names (category ids 1..K).
        mask_format: ``"rle"`` (exact) or ``"polygon"``.
    """

    def __init__(self, class_names: list[str], mask_format: str = "rle") -> None:
        if mask_format not in MASK_FORMATS:
            raise ValueError(f"mask_format must be one of {MASK_FORMATS}, got {mask_format!r}")
        self.mask_format = mask_format
        self.categories = [{"id": i + 1, "name": n, "supercategory": ""} for i, n in enumerate(class_names)]
        self.images: list[dict[str, Any]] = []
        self.annotations: list[dict[str, Any]] = []

    def add(self, prediction: Any, file_name: str, image_id: int | None = None, **extra: Any) -> int:
        """Add one image and its predicted instances; returns the image id (default: next integer).
        ``extra`` keys go into the image entry (e.g. ``frame_index``)."""
        image_id = len(self.images) + 1 if image_id is None else int(image_id)
        h, w = prediction.image_size
        entry = {"id": image_id, "file_name": file_name, "width": int(w), "height": int(h), **extra}
        self.images.append(entry)
        anns = prediction_annotations(prediction, image_id, len(self.annotations) + 1, self.mask_format)
        self.annotations.extend(anns)
        return image_id

    def document(self) -> dict[str, Any]:
        """The COCO instances dict."""
        return {
            "info": {"description": "darkseg predictions (pre-labels)"},
            "licenses": [],
            "images": self.images,
            "categories": self.categories,
            "annotations": self.annotations,
        }

    def write(self, path: str | os.PathLike) -> Path:
        """Write the file atomically; returns its path."""
        from darkseg.utils.io import atomic_write_json

        atomic_write_json(path, self.document())
        return Path(path)
