"""COCO-format instance-segmentation datasets (polygons, RLE, crowd regions) with class subsets.

``CocoInstances`` reads a COCO instance JSON and a folder of images and yields torchvision detection
samples::

    image   float32 (3, H, W), RGB, values in [0, 1]
    target  {"boxes":  float32 (N, 4) xyxy pixels,
             "labels": int64 (N,) in 1..K (0 is background; K = len(class_names), order of class_names),
             "masks":  uint8 (N, H, W) in {0, 1},
             "image_id": int (the annotation file's image id),
             "area":   float32 (N,) (the file's ``area`` field, or the mask area with recompute_area),
             "iscrowd": int64 (N,) (always 0: crowd regions are not training targets),
             "polygons": list of N entries: the instance's polygons (float64 arrays x0, y0, x1, ...)
                         or None for RLE / box-only instances (darkseg.data.polygons)}

Classes are chosen and ordered *by name* (docs/decisions.md): ``class_names`` lists the wanted classes;
each is matched to exactly one category of the file by a normalised name (case, spaces, ``_`` and ``-``
ignored) or an alias (``motorbike`` = ``motorcycle``, ``diningtable`` = ``dining table``,
``tvmonitor`` = ``tv``). Annotations of other categories are dropped. Category ids are used only to
look up names, so ids like LIS's ``0`` or COCO's non-contiguous 1..90 are handled alike.

Annotations kept as targets follow mmdetection / the torchvision references: crowd (``iscrowd=1``) and
``ignore=1`` annotations are left out, as are boxes with width or height < 1 px, ``area <= 0`` or
no overlap with the image. With ``train=True`` images without any kept annotation, or with a short
side < 32 px, are dropped. Invalid entries (repeated ids, non-finite or out-of-image boxes, broken
polygons or RLE) are refused when the file is loaded (``darkseg.utils.coco_checks``), not when an image
is first sampled.
Evaluation uses ``.coco`` (the pycocotools index of the file), where crowd regions act as COCO's
ignore regions.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from darkseg.data import polygons
from darkseg.errors import short_repr
from darkseg.utils.coco_checks import AnnotationError, validate_coco
from darkseg.utils.io import ImageReadError, exif_orientation, load_json, read_image, stored_image_size

__all__ = [
    "DEFAULT_ALIASES",
    "AnnotationError",
    "CocoInstances",
    "load_coco",
    "normalize_name",
    "match_categories",
    "recompute_areas",
]

#: Name groups treated as the same class (keys and values compared after :func:`normalize_name`).
DEFAULT_ALIASES: dict[str, tuple[str, ...]] = {
    "motorbike": ("motorcycle",),
    "diningtable": ("dining table",),
    "tvmonitor": ("tv", "tv monitor"),
    "aeroplane": ("airplane",),
    "sofa": ("couch",),
    "pottedplant": ("potted plant",),
}

#: Images with a shorter side are dropped from training sets (mmdetection ``filter_empty_gt`` min_size).
MIN_TRAIN_SIZE = 32


def normalize_name(name: str) -> str:
    """Lower-case a class name and drop spaces, ``_`` and ``-`` (``"Dining table"`` -> ``"diningtable"``)."""
    return "".join(ch for ch in str(name).lower() if ch not in " _-")


def _alias_groups(aliases: Mapping[str, Iterable[str]] | None) -> list[set[str]]:
    groups: list[set[str]] = []
    for key, values in {**DEFAULT_ALIASES, **(aliases or {})}.items():
        names = {normalize_name(key), *(normalize_name(v) for v in values)}
        for g in groups:
            if g & names:
                g |= names
                break
        else:
            groups.append(names)
    return groups


def match_categories(
    class_names: Sequence[str],
    categories: Sequence[Mapping[str, Any]],
    aliases: Mapping[str, Iterable[str]] | None = None,
    source: str = "annotation file",
) -> list[int]:
    """Category id of each wanted class name, matched by normalised name or alias.

    Raises:
        AnnotationError: a class matches no category, or more than one.
    """
    groups = _alias_groups(aliases)

    def equivalents(name: str) -> set[str]:
        n = normalize_name(name)
        for g in groups:
            if n in g:
                return g
        return {n}

    if isinstance(class_names, str):  # iterating "car" would look for the classes c, a, r
        raise AnnotationError(
            f"{source}: class_names must be a list of names, got the string {short_repr(class_names)}; "
            f"write [{short_repr(class_names)}]"
        )
    ids: list[int] = []
    for name in class_names:
        eq = equivalents(name)
        hits = [c for c in categories if normalize_name(c["name"]) in eq]
        if not hits:
            names = ", ".join(repr(c["name"]) for c in categories)
            raise AnnotationError(
                f"{source}: no category matches class {short_repr(name)} (categories: {names})"
            )
        if len(hits) > 1:
            found = ", ".join(f"{short_repr(c['name'])} (id {c['id']})" for c in hits)
            raise AnnotationError(f"{source}: class {short_repr(name)} matches several categories: {found}")
        ids.append(int(hits[0]["id"]))
    if len(set(ids)) != len(ids):
        raise AnnotationError(f"{source}: two classes of {list(class_names)} map to the same category")
    return ids


def load_coco(ann_file: str | os.PathLike | Mapping[str, Any], source: str = "<dict>") -> COCO:
    """Read and validate a COCO instance file into a (silent) pycocotools ``COCO`` index.

    Every entry is checked before anything else happens (``darkseg.utils.coco_checks``: unique image /
    annotation / category ids, known references, finite in-image boxes, well-formed polygons and RLE of
    the image's size). ``ann_file`` may also be an already-loaded dict (copied; ``source`` names it in
    errors). The index remembers its file name in ``coco.source``.

    Raises:
        FileNotFoundError: no such file.
        AnnotationError: (a ``ValueError``) naming the file, the entry and the problem.
    """
    if isinstance(ann_file, Mapping):
        data, path = copy.deepcopy(dict(ann_file)), source
    else:
        path = str(ann_file)
        if Path(ann_file).is_file() and Path(ann_file).stat().st_size == 0:
            raise AnnotationError(f"{path}: annotation file is empty")
        try:
            data = load_json(ann_file)
        except ValueError as exc:
            raise AnnotationError(str(exc)) from exc
    validate_coco(data, path)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    coco.source = path
    return coco


def _is_suffix(ext: str) -> bool:
    """Whether ``ext`` is usable with ``Path.with_suffix``: a dot, then a name without separators."""
    return (
        isinstance(ext, str) and len(ext) > 1 and ext.startswith(".") and "/" not in ext and "\\" not in ext
    )


def recompute_areas(coco: COCO) -> None:
    """Replace every annotation's ``area`` in ``coco`` by its mask area in pixels (in place).

    Used for LIS, whose files store the box area ``w*h`` in ``area`` (see docs/data.md): COCOeval's
    small/medium/large split reads the GT ``area``, so AP-by-size then refers to box, not mask, size.
    Annotations without a segmentation keep their ``area``.
    """
    for ann in coco.dataset["annotations"]:
        if ann.get("segmentation"):
            ann["area"] = float(mask_utils.area(coco.annToRLE(ann)))


class CocoInstances(torch.utils.data.Dataset):
    """A COCO instance-segmentation dataset (see the module docstring for the sample format).

    Args:
        image_dir: folder the files' ``file_name`` entries are relative to.
        ann_file: COCO instance JSON.
        class_names: wanted classes in label order (label = index + 1); ``None`` keeps every category of
            the file, in category-id order.
        aliases: extra name aliases, ``{name: [other names]}`` (added to :data:`DEFAULT_ALIASES`).
        train: drop images without kept annotations (and images with a short side < 32 px).
        transforms: callable ``(image, target) -> (image, target)`` (or a :class:`LowLightViews` triple).
        recompute_area: replace every ``area`` by the mask area, in the targets and in ``.coco``.
        image_ext: replace the suffix of every ``file_name`` (e.g. ``".png"`` to use the LIS JPG
            annotations with the RAW PNG folders).

    Attributes:
        class_names, category_ids (file category id per label - 1), label_to_category_id,
        category_id_to_label, coco (pycocotools index of the file), ids (image ids, in file order).
    """

    #: carry COCO polygons in the targets (``target["polygons"]``); False: every entry is None
    keep_polygons: bool = True

    def __init__(
        self,
        image_dir: str | os.PathLike,
        ann_file: str | os.PathLike,
        class_names: Sequence[str] | None = None,
        aliases: Mapping[str, Iterable[str]] | None = None,
        train: bool = False,
        transforms: Callable | None = None,
        recompute_area: bool = False,
        image_ext: str | None = None,
        intensity_ratio: float | str = 1.0,
    ) -> None:
        from darkseg.raw.exposure import parse_ratio

        self.intensity_ratio: float | str = parse_ratio(str(intensity_ratio))
        if image_ext is not None and not _is_suffix(image_ext):
            raise ValueError(f"image_ext must be a file suffix such as '.png', got {short_repr(image_ext)}")
        self.image_dir = Path(image_dir)
        self.ann_file = Path(ann_file)
        self.train = train
        self.transforms = transforms
        self.image_ext = image_ext
        self.coco = load_coco(self.ann_file)
        if recompute_area:
            recompute_areas(self.coco)
        cats = self.coco.dataset["categories"]
        if class_names is None:
            cats_sorted = sorted(cats, key=lambda c: c["id"])
            self.category_ids = [int(c["id"]) for c in cats_sorted]
            self.class_names = [str(c["name"]) for c in cats_sorted]
        else:
            self.category_ids = match_categories(class_names, cats, aliases, source=str(self.ann_file))
            self.class_names = list(class_names)
        self.label_to_category_id = {i + 1: cid for i, cid in enumerate(self.category_ids)}
        self.category_id_to_label = {cid: i + 1 for i, cid in enumerate(self.category_ids)}

        ids = [int(img["id"]) for img in self.coco.dataset["images"]]
        if train:
            ids = [i for i in ids if self._trainable(i)]
        self.ids = ids

    # ------------------------------------------------------------------ annotations
    def _kept_annotations(self, image_id: int) -> list[dict]:
        info = self.coco.imgs[image_id]
        width, height = float(info["width"]), float(info["height"])
        kept = []
        for ann in self.coco.imgToAnns.get(image_id, []):
            if ann["category_id"] not in self.category_id_to_label:
                continue
            if ann.get("iscrowd", 0) or ann.get("ignore", 0):
                continue
            x, y, w, h = (float(v) for v in ann["bbox"])
            if w < 1 or h < 1 or ann.get("area", w * h) <= 0:
                continue
            if min(width, x + w) - max(0.0, x) <= 0 or min(height, y + h) - max(0.0, y) <= 0:
                continue  # box entirely outside the image
            kept.append(ann)
        return kept

    def _trainable(self, image_id: int) -> bool:
        info = self.coco.imgs[image_id]
        if min(info["width"], info["height"]) < MIN_TRAIN_SIZE:
            return False
        return bool(self._kept_annotations(image_id))

    def image_path(self, image_id: int) -> Path:
        """Path of the image file of ``image_id``."""
        name = str(self.coco.imgs[image_id]["file_name"])
        if self.image_ext is not None:
            name = str(Path(name).with_suffix(self.image_ext))
        return self.image_dir / name

    def check_files(self, sizes: bool = True) -> None:
        """Check every image file of ``ids`` before training or evaluation starts.

        Raises ``FileNotFoundError`` naming the first missing files (and their ids); with ``sizes``,
        :class:`AnnotationError` naming the first files whose stored size (read from the file header,
        about 0.15 ms per file) differs from the annotation file's ``width`` x ``height``.
        """
        missing = [(i, self.image_path(i)) for i in self.ids if not self.image_path(i).is_file()]
        if missing:
            shown = "; ".join(f"{p} (image id {i})" for i, p in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise FileNotFoundError(
                f"{len(missing)} image file(s) of {self.ann_file} missing under {self.image_dir}: "
                f"{shown}{more}"
            )
        if not sizes:
            return
        wrong = []
        for i in self.ids:
            size = stored_image_size(self.image_path(i))
            if size is not None and size != self._annotated_size(i):
                wrong.append(self._size_mismatch(i, size))
        if wrong:
            more = f" (and {len(wrong) - 3} more)" if len(wrong) > 3 else ""
            raise AnnotationError("; ".join(wrong[:3]) + more)

    def _annotated_size(self, image_id: int) -> tuple[int, int]:
        info = self.coco.imgs[image_id]
        return int(info["width"]), int(info["height"])

    def _size_mismatch(self, image_id: int, size: tuple[int, int]) -> str:
        """One message for an image whose stored ``(width, height)`` differs from the annotation file."""
        path = self.image_path(image_id)
        w, h = self._annotated_size(image_id)
        msg = f"{path}: image is {size[0]}x{size[1]} but {self.ann_file} says {w}x{h} (image id {image_id})"
        orientation = exif_orientation(path)
        if orientation in (5, 6, 7, 8) and size == (h, w):
            msg += (
                f"; its EXIF orientation {orientation} shows it turned by 90 degrees: annotations refer "
                "to the stored pixels (docs/data.md)"
            )
        return msg

    def load_target(self, image_id: int) -> dict[str, Any]:
        """The target dict of ``image_id`` at the size stored in the annotation file."""
        info = self.coco.imgs[image_id]
        h, w = int(info["height"]), int(info["width"])
        anns = self._kept_annotations(image_id)
        n = len(anns)
        boxes = np.zeros((n, 4), dtype=np.float32)
        masks = np.zeros((n, h, w), dtype=np.uint8)
        labels = np.zeros((n,), dtype=np.int64)
        area = np.zeros((n,), dtype=np.float32)
        polys: list[polygons.InstancePolygons] = []
        for k, ann in enumerate(anns):
            polys.append(polygons.from_segmentation(ann.get("segmentation")) if self.keep_polygons else None)
            x, y, bw, bh = (float(v) for v in ann["bbox"])
            boxes[k] = (max(0.0, x), max(0.0, y), min(float(w), x + bw), min(float(h), y + bh))
            labels[k] = self.category_id_to_label[ann["category_id"]]
            if ann.get("segmentation"):
                try:
                    masks[k] = self.coco.annToMask(ann)
                except Exception as exc:  # pycocotools raises bare errors on bad segmentations
                    raise AnnotationError(
                        f"{self.ann_file}: annotation id {ann['id']} (image id {image_id}): "
                        f"undecodable segmentation ({exc})"
                    ) from exc
            else:  # box-only annotation: the box is the mask
                x0, y0, x1, y1 = boxes[k]
                masks[k, int(y0) : int(np.ceil(y1)), int(x0) : int(np.ceil(x1))] = 1
            area[k] = float(ann.get("area", bw * bh))
        return {
            "boxes": torch.from_numpy(boxes),
            "labels": torch.from_numpy(labels),
            "masks": torch.from_numpy(masks),
            "image_id": int(image_id),
            "area": torch.from_numpy(area),
            "iscrowd": torch.zeros((n,), dtype=torch.int64),
            "polygons": polys,
        }

    def load_image(self, image_id: int) -> torch.Tensor:
        """The image of ``image_id`` as float32 ``(3, H, W)`` RGB in [0, 1]; checks its size."""
        path = self.image_path(image_id)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image file of image id {image_id} ({self.ann_file}) not found")
        try:
            arr = read_image(path)
        except ImageReadError as exc:
            raise ImageReadError(f"{exc} (image id {image_id} of {self.ann_file})") from exc
        if (arr.shape[1], arr.shape[0]) != self._annotated_size(image_id):
            raise AnnotationError(self._size_mismatch(image_id, (arr.shape[1], arr.shape[0])))
        x = torch.from_numpy(arr).permute(2, 0, 1).contiguous().float().div_(255.0)
        return self._amplify(x)

    def _amplify(self, x: torch.Tensor) -> torch.Tensor:
        """Apply ``intensity_ratio`` (a gain, or ``"auto"``: per image, see
        :func:`darkseg.raw.exposure.estimate_ratio`), then clip to [0, 1]. For dark linear RAW images
        (e.g. LIS ``RAW_Dark`` PNGs) that were not brightened when they were written."""
        from darkseg.raw.exposure import resolve_ratio

        r = resolve_ratio(self.intensity_ratio, x)
        return x if r == 1.0 else x.mul_(r).clamp_(0.0, 1.0)

    # ------------------------------------------------------------------ Dataset API
    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        image_id = self.ids[index]
        image = self.load_image(image_id)
        target = self.load_target(image_id)
        if self.transforms is not None:
            return self.transforms(image, target)
        return image, target

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self)} images, {len(self.class_names)} classes, "
            f"ann_file={str(self.ann_file)!r}, image_dir={str(self.image_dir)!r}, train={self.train})"
        )
