"""The data settings of an experiment: :class:`DataConfig` (the ``data`` section) and its
:class:`DatasetConfig` entries (``data.train``, ``data.val``).

Like every settings dataclass (:class:`darkseg.utils.typed_config.Settings`) they check their own values
when constructed and raise :class:`darkseg.errors.ConfigError` naming the key; loaded from a file
(``darkseg.config.load_config``) the message names the file and the full path,
``cfg.yaml: data.train.image_dir: required``. ``darkseg.config`` re-exports both.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from darkseg.errors import ConfigError
from darkseg.utils.typed_config import Settings

__all__ = ["DatasetConfig", "DataConfig"]


@dataclass
class DatasetConfig(Settings):
    """One dataset (COCO instance JSON + image folder).

    Attributes:
        type: ``"coco"`` (any COCO instance JSON) or ``"lis"`` (LIS layout quirks: ``JPEGImages/``
            sub-folder, canonical 8 classes).
        image_dir: folder the ``file_name`` entries are relative to (required).
        ann_file: COCO instance JSON (required).
        class_names: classes to keep, in label order; ``null`` = the model's ``class_names``
            (matched by name with aliases, so LIS names work on COCO files).
        aliases: extra name aliases ``{name: [other names]}``.
        image_ext: replace every file suffix (e.g. ``".png"``), or null.
        recompute_area: replace ``area`` by the mask area.
        max_images: keep only the first N images (small/overfit runs), or null for all.
        intensity_ratio: gain applied to every image before clipping to [0, 1], for dark linear RAW
            images stored without brightening; ``"auto"`` = per image, the gain that brings its mean to
            the training inputs' (``darkseg.raw.exposure.estimate_ratio``); 1 = as stored.
        polygon_masks: keep COCO polygons in the training targets (``target["polygons"]``) beside the
            decoded bitmaps, so that a model in MMDetection numerics builds those instances' mask
            targets by the polygon rule (MMDetection's ``poly2mask=False``, the paper's COCO2LIS and
            SynCOCO2LIS configs); false = bitmaps only (``poly2mask=True``, the LIS2LIS config).
    """

    type: str = "coco"
    image_dir: str = ""
    ann_file: str = ""
    class_names: list[str] | None = None
    aliases: dict[str, list[str]] = field(default_factory=dict)
    image_ext: str | None = None
    recompute_area: bool = False
    max_images: int | None = None
    intensity_ratio: float | str = 1.0
    polygon_masks: bool = True

    def validate(self) -> None:
        from darkseg.raw.exposure import parse_ratio

        if self.type not in ("coco", "lis"):
            raise self.invalid("type", "must be 'coco' or 'lis'")
        if not self.image_dir:
            raise ConfigError("required", "image_dir")
        if not self.ann_file:
            raise ConfigError("required", "ann_file")
        if self.image_ext is not None and not (
            len(self.image_ext) > 1 and self.image_ext.startswith(".") and "/" not in self.image_ext
        ):
            raise self.invalid("image_ext", "a file suffix such as '.png', or null")
        if self.max_images is not None and self.max_images < 1:
            raise self.invalid("max_images", "must be >= 1 or null")
        try:
            self.intensity_ratio = parse_ratio(str(self.intensity_ratio))
        except ValueError as exc:
            raise ConfigError(str(exc), "intensity_ratio") from None


@dataclass
class DataConfig(Settings):
    """Datasets and the geometric transforms of training.

    The resize box is not here: training images are resized into the model's box
    (``model.min_size`` / ``model.max_size``, paper 400 / 600), the one resize setting.

    Attributes:
        train: training dataset (required).
        val: evaluation dataset (null = no evaluation).
        interpolation: resize interpolation of training images (paper: ``"nearest"``).
        flip: horizontal flip probability (paper: 0.5).
        val_view: what the model sees at evaluation: ``"image"`` (the files as stored: LIS RAW_Dark PNGs,
            sRGB photos) or ``"noisy"`` / ``"clean"`` (synthetic renderings of the val images with the
            ``synth`` settings, seeded per image id).
    """

    train: DatasetConfig
    val: DatasetConfig | None = None
    interpolation: str = "nearest"
    flip: float = 0.5
    val_view: str = "image"

    def validate(self) -> None:
        if self.interpolation not in ("nearest", "bilinear", "bicubic", "area"):
            raise self.invalid("interpolation", "must be nearest|bilinear|bicubic|area")
        if not 0.0 <= self.flip <= 1.0:
            raise self.invalid("flip", "probability in [0, 1]")
        if self.val_view not in ("image", "noisy", "clean"):
            raise self.invalid("val_view", "must be image|noisy|clean")
