"""Instance polygons in a training target: ``target["polygons"]``.

COCO annotates most instances as polygons. The bitmaps in ``target["masks"]`` are always present; the
polygons ride along so that a model in MMDetection numerics can build its mask targets with the polygon
rule, as the original LIS training configs do (``darkseg.models.mask_targets``). Layout: one entry per
instance, in the order of ``boxes``: a list of float64 ``(2k,)`` NumPy arrays ``x0, y0, x1, y1, ...``
(pixel coordinates of the target's frame, ``k >= 3``), or ``None`` for an instance stored as RLE or a box.
The geometric transforms below follow MMDetection's ``PolygonMasks``: resizing scales x and y by the
image's size ratios, a horizontal flip maps ``x -> width - x``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["InstancePolygons", "from_segmentation", "scale", "flip", "select"]

#: one instance's polygons, or None for an instance given as a bitmap (RLE) or a box
InstancePolygons = list[np.ndarray] | None


def from_segmentation(segmentation: Any) -> InstancePolygons:
    """The polygons of a COCO ``segmentation`` entry (a list of flat coordinate lists), else ``None``.

    Polygons with fewer than 3 points are dropped (as MMDetection does); an instance left with none is
    ``None`` (its bitmap is used).
    """
    if not isinstance(segmentation, list):
        return None
    polys = [np.asarray(p, dtype=np.float64) for p in segmentation]
    polys = [p for p in polys if p.ndim == 1 and len(p) >= 6 and len(p) % 2 == 0]
    return polys or None


def _map_x_y(polygons: Sequence[InstancePolygons], fx, fy) -> list[InstancePolygons]:
    """New arrays with ``x -> fx(x)`` and ``y -> fy(y)`` applied to every point."""
    out: list[InstancePolygons] = []
    for inst in polygons:
        if inst is None:
            out.append(None)
            continue
        new = []
        for p in inst:
            q = p.copy()
            q[0::2] = fx(q[0::2])
            q[1::2] = fy(q[1::2])
            new.append(q)
        out.append(new)
    return out


def scale(polygons: Sequence[InstancePolygons], sx: float, sy: float) -> list[InstancePolygons]:
    """Every point ``(x, y) -> (x sx, y sy)`` (new arrays)."""
    return _map_x_y(polygons, lambda x: x * sx, lambda y: y * sy)


def flip(polygons: Sequence[InstancePolygons], width: float) -> list[InstancePolygons]:
    """Left-right flip of an image ``width`` pixels wide: ``x -> width - x`` (new arrays)."""
    return _map_x_y(polygons, lambda x: width - x, lambda y: y)


def select(polygons: Sequence[InstancePolygons], keep: Sequence[bool]) -> list[InstancePolygons]:
    """The entries whose ``keep`` flag is true (``keep`` one flag per instance)."""
    return [p for p, k in zip(polygons, keep) if bool(k)]
