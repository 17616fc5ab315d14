"""darkseg.data: COCO-format instance datasets, LIS, transforms and loader helpers.

Public API::

    from darkseg.data import (CocoInstances, load_coco, lis_dataset, LIS_CLASSES, COCO_LIS_CLASSES,
                              Compose, ResizeKeepRatio, RandomHorizontalFlip, LowLightViews,
                              collate_fn, seed_worker, build_loader, build_train_dataset,
                              build_eval_dataset, KeyedDataset, SeededView, DatasetError)

See docs/data.md.
"""

from darkseg.data.build import (
    DatasetError,
    build_dataset,
    build_eval_dataset,
    build_train_dataset,
    dataset_from_config,
)
from darkseg.data.coco import DEFAULT_ALIASES, AnnotationError, CocoInstances, load_coco, recompute_areas
from darkseg.data.lis import COCO_LIS_CLASSES, LIS_ALIASES, LIS_CLASSES, lis_annotation_file, lis_dataset
from darkseg.data.loader import build_loader, collate_fn, seed_worker
from darkseg.data.transforms import (
    Compose,
    LowLightViews,
    RandomHorizontalFlip,
    ResizeKeepRatio,
    keep_ratio_size,
    low_light_batch,
)
from darkseg.data.views import KeyedDataset, SeededView

__all__ = [
    "AnnotationError",
    "build_dataset",
    "dataset_from_config",
    "build_train_dataset",
    "build_eval_dataset",
    "DatasetError",
    "KeyedDataset",
    "SeededView",
    "CocoInstances",
    "DEFAULT_ALIASES",
    "load_coco",
    "recompute_areas",
    "LIS_CLASSES",
    "COCO_LIS_CLASSES",
    "LIS_ALIASES",
    "lis_annotation_file",
    "lis_dataset",
    "collate_fn",
    "seed_worker",
    "build_loader",
    "Compose",
    "ResizeKeepRatio",
    "RandomHorizontalFlip",
    "LowLightViews",
    "keep_ratio_size",
    "low_light_batch",
]
