"""Build datasets from their settings (:class:`~darkseg.data.config.DatasetConfig` / ``DataConfig``).

* :func:`build_dataset` / :func:`dataset_from_config` - one dataset of a type (``coco``, ``lis``);
* :func:`build_train_dataset` / :func:`build_eval_dataset` - the training and the evaluation dataset of
  an experiment, from its data settings, the model's classes and resize box and a synthesiser object
  (built by the caller: ``data`` does not import the synthesis code).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from darkseg.data.coco import CocoInstances
from darkseg.data.config import DataConfig
from darkseg.data.lis import lis_dataset
from darkseg.errors import DarkSegError

__all__ = [
    "DATASET_TYPES",
    "DatasetError",
    "build_dataset",
    "dataset_from_config",
    "build_train_dataset",
    "build_eval_dataset",
]


class DatasetError(DarkSegError, ValueError):
    """A dataset cannot be used (no usable images, a class count that differs from the model's, no
    readable image at all); the message names the annotation file."""


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


def _make_dataset(ds_cfg: Any, class_names: Sequence[str], train: bool, transforms: Callable | None):
    """``dataset_from_config`` checked for use: ``max_images`` applied, every image file found, at least
    one image and as many classes as ``class_names`` (the model's)."""
    ds = dataset_from_config(ds_cfg, class_names=list(class_names), train=train, transforms=transforms)
    ds.keep_polygons = bool(getattr(ds_cfg, "polygon_masks", True))
    if ds_cfg.max_images is not None:
        ds.ids = ds.ids[: ds_cfg.max_images]
    ds.check_files()  # a missing image is named now, not when it is first sampled
    if len(ds) == 0:
        raise DatasetError(f"{ds_cfg.ann_file}: no usable images for classes {list(ds.class_names)}")
    if len(ds.class_names) != len(class_names):
        raise DatasetError(
            f"{ds_cfg.ann_file}: {len(ds.class_names)} classes but the model has {len(class_names)}"
        )
    return ds


def build_train_dataset(
    data: DataConfig,
    class_names: Sequence[str],
    min_size: int,
    max_size: int,
    synthesizer: Any | None = None,
) -> CocoInstances:
    """The training dataset ``data.train``: resize into the model's box (``max_size`` x ``min_size``,
    ``data.interpolation``), flip (``data.flip``) and, with a ``synthesizer``, ``LowLightViews``
    (samples are ``(clean, noisy, target)``). Raises :class:`DatasetError` / ``FileNotFoundError``."""
    from darkseg.data.transforms import Compose, LowLightViews, RandomHorizontalFlip, ResizeKeepRatio

    ts: list = [ResizeKeepRatio(max_size, min_size, data.interpolation)]
    if data.flip > 0:
        ts.append(RandomHorizontalFlip(data.flip))
    if synthesizer is not None:
        ts.append(LowLightViews(synthesizer))
    return _make_dataset(data.train, class_names, True, Compose(ts))


def build_eval_dataset(
    data: DataConfig, class_names: Sequence[str], synthesizer: Any | None = None, seed: int = 0
) -> CocoInstances | None:
    """The evaluation dataset ``data.val``, or None without one. Images are given to the model at their
    stored size (the model resizes into its own box); ``data.val_view`` selects the stored images
    (``"image"``) or the ``synthesizer``'s noisy/clean renderings seeded per image id with ``seed``
    (:class:`~darkseg.data.views.SeededView`)."""
    if data.val is None:
        return None
    transforms = None
    if data.val_view != "image":
        from darkseg.data.views import SeededView

        if synthesizer is None:
            raise DatasetError(f"data.val_view={data.val_view!r} needs a synthesiser (synth settings)")
        transforms = SeededView(synthesizer, data.val_view, seed)
    return _make_dataset(data.val, class_names, False, transforms)
