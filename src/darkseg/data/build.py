"""Build a dataset from plain settings (the fields of ``darkseg.config.DatasetConfig``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from darkseg.data.coco import CocoInstances
from darkseg.data.lis import lis_dataset

__all__ = ["DATASET_TYPES", "build_dataset", "dataset_from_config"]

DATASET_TYPES = ("coco", "lis")


def build_dataset(
    type: str,
    image_dir: str | os.PathLike,
    ann_file: str | os.PathLike,
    class_names: Sequence[str] | None = None,
    aliases: Mapping[str, Iterable[str]] | None = None,
    image_ext: str | None = None,
    recompute_area: bool = False,
    train: bool = False,
    transforms: Callable | None = None,
    intensity_ratio: float | str = 1.0,
) -> CocoInstances:
    """A dataset of a type: ``"coco"`` = a plain :class:`CocoInstances`; ``"lis"`` = :func:`lis_dataset`
    (LIS aliases, ``JPEGImages/`` lookup, canonical class order unless ``class_names`` is given)."""
    if type == "coco":
        return CocoInstances(
            image_dir,
            ann_file,
            class_names=class_names,
            aliases=aliases,
            train=train,
            transforms=transforms,
            recompute_area=recompute_area,
            image_ext=image_ext,
            intensity_ratio=intensity_ratio,
        )
    if type == "lis":
        return lis_dataset(
            ann_file=ann_file,
            image_dir=image_dir,
            train=train,
            transforms=transforms,
            recompute_area=recompute_area,
            image_ext=image_ext,
            class_names=class_names,
            aliases=dict(aliases) if aliases else None,
            intensity_ratio=intensity_ratio,
        )
    raise ValueError(f"dataset type must be one of {DATASET_TYPES}, got {type!r}")


def dataset_from_config(
    cfg: Any,
    class_names: Sequence[str] | None = None,
    train: bool = False,
    transforms: Callable | None = None,
) -> CocoInstances:
    """Dataset described by a ``DatasetConfig``-like object (``type``, ``image_dir``, ``ann_file``,
    ``class_names``, ``aliases``, ``image_ext``, ``recompute_area``); ``class_names`` is the fallback
    when the config has none (typically the model's)."""
    names = getattr(cfg, "class_names", None) or class_names
    aliases = dict(getattr(cfg, "aliases", None) or {})
    return build_dataset(
        getattr(cfg, "type", "coco"),
        cfg.image_dir,
        cfg.ann_file,
        class_names=names,
        aliases=aliases or None,
        image_ext=getattr(cfg, "image_ext", None),
        recompute_area=bool(getattr(cfg, "recompute_area", False)),
        train=train,
        transforms=transforms,
        intensity_ratio=getattr(cfg, "intensity_ratio", 1.0),
    )
