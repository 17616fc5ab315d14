"""The LIS dataset ("Instance Segmentation in the Dark", Chen et al., IJCV 2023): layout, classes, quirks.

Layout (the underscore folder names of the original configs; see docs/data.md)::

    LIS/
      RAW_Dark/   [JPEGImages/]{2,4,6,...}.png    short exposure, RAW rendered to 8-bit RGB (test input)
      RAW_Normal/ [JPEGImages/]{1,3,5,...}.png    long exposure, RAW rendered
      RGB_Dark/   [JPEGImages/]{2,4,6,...}.JPG    short exposure, camera sRGB JPEG
      RGB_Normal/ [JPEGImages/]{1,3,5,...}.png    long exposure, camera sRGB
      annotations/
        lis_coco_png_{split}+1.json   dark images (.png names, even numbers); split: train|test|traintest
        lis_coco_png_{split}.json     normal images (odd file numbers)
        lis_coco_JPG_{split}+1.json   dark camera JPGs

Quirks handled here:

* category ids start at 0 (``0 bicycle``) and follow the LOD order; labels are assigned **by name** to
  the canonical order :data:`LIS_CLASSES` (docs/decisions.md), with COCO's names as aliases;
* ``area`` holds the *box* area ``w*h``, so COCOeval's APs/APm/APl split by box size;
  ``recompute_area=True`` replaces it by the mask area (docs/data.md explains both);
* ``file_name`` may or may not carry the ``JPEGImages/`` folder; both are found.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from darkseg.data.coco import CocoInstances

__all__ = [
    "LIS_CLASSES",
    "COCO_LIS_CLASSES",
    "LIS_ALIASES",
    "LIS_IMAGE_TYPES",
    "lis_annotation_file",
    "lis_image_dir",
    "lis_dataset",
]

#: Canonical label order (label = index + 1): the COCO category-id order of these classes.
LIS_CLASSES: tuple[str, ...] = (
    "bicycle",
    "car",
    "motorbike",
    "bus",
    "bottle",
    "chair",
    "diningtable",
    "tvmonitor",
)
#: The same classes under their COCO names, for training on COCO (same label order).
COCO_LIS_CLASSES: tuple[str, ...] = (
    "bicycle",
    "car",
    "motorcycle",
    "bus",
    "bottle",
    "chair",
    "dining table",
    "tv",
)
LIS_ALIASES: dict[str, tuple[str, ...]] = {
    "motorbike": ("motorcycle",),
    "diningtable": ("dining table",),
    "tvmonitor": ("tv",),
}
#: folder -> (annotation file stem, is dark)
LIS_IMAGE_TYPES: dict[str, tuple[str, bool]] = {
    "RAW_Dark": ("lis_coco_png", True),
    "RAW_Normal": ("lis_coco_png", False),
    "RGB_Dark": ("lis_coco_JPG", True),
    "RGB_Normal": ("lis_coco_png", False),
}
SPLITS = ("train", "test", "traintest")


def _check_type(image_type: str) -> None:
    if image_type not in LIS_IMAGE_TYPES:
        raise ValueError(f"LIS image type must be one of {sorted(LIS_IMAGE_TYPES)}, got {image_type!r}")


def lis_annotation_file(root: str | os.PathLike, split: str = "test", image_type: str = "RAW_Dark") -> Path:
    """``<root>/annotations/lis_coco_{png|JPG}_{split}[+1].json`` for an image type and split."""
    _check_type(image_type)
    if split not in SPLITS:
        raise ValueError(f"LIS split must be one of {SPLITS}, got {split!r}")
    stem, dark = LIS_IMAGE_TYPES[image_type]
    return Path(root) / "annotations" / f"{stem}_{split}{'+1' if dark else ''}.json"


def lis_image_dir(root: str | os.PathLike, image_type: str = "RAW_Dark") -> Path:
    """``<root>/<image_type>``; the folder, not ``JPEGImages``, that ``file_name`` entries are relative to."""
    _check_type(image_type)
    d = Path(root) / image_type
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: LIS image folder not found (expected {sorted(LIS_IMAGE_TYPES)})")
    return d


def lis_dataset(
    root: str | os.PathLike | None = None,
    split: str = "test",
    image_type: str = "RAW_Dark",
    *,
    ann_file: str | os.PathLike | None = None,
    image_dir: str | os.PathLike | None = None,
    train: bool = False,
    transforms=None,
    recompute_area: bool = False,
    image_ext: str | None = None,
    class_names: Sequence[str] | None = None,
    aliases: dict[str, Sequence[str]] | None = None,
    intensity_ratio: float | str = 1.0,
) -> CocoInstances:
    """A LIS split as :class:`CocoInstances` with the canonical 8 classes (or ``class_names``, e.g. a
    model's COCO-named classes, matched through :data:`LIS_ALIASES`).

    Either ``root`` (the standard layout) or explicit ``ann_file`` + ``image_dir``. When the files'
    ``file_name`` has no folder and ``<image_dir>/JPEGImages`` exists, that folder is used.
    ``image_ext`` (e.g. ``".png"``) replaces the file suffix, to use the JPG annotations with RAW PNGs.
    ``intensity_ratio``: gain on every image (or ``"auto"``, per image), see :class:`CocoInstances`.
    """
    if ann_file is None:
        if root is None:
            raise ValueError("lis_dataset needs root or ann_file")
        ann_file = lis_annotation_file(root, split, image_type)
    if image_dir is None:
        if root is None:
            raise ValueError("lis_dataset needs root or image_dir")
        image_dir = lis_image_dir(root, image_type)
    ds = CocoInstances(
        image_dir,
        ann_file,
        class_names=list(class_names or LIS_CLASSES),
        aliases={**LIS_ALIASES, **(aliases or {})},
        train=train,
        transforms=transforms,
        recompute_area=recompute_area,
        image_ext=image_ext,
        intensity_ratio=intensity_ratio,
    )
    sub = Path(image_dir) / "JPEGImages"
    if sub.is_dir() and ds.ids:
        first = ds.image_path(ds.ids[0])
        if not first.is_file() and (sub / first.relative_to(ds.image_dir)).is_file():
            ds.image_dir = sub
    return ds
