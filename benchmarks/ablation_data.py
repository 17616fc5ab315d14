"""What the ablation presets share: the train / val / test scene sets, common options and the paper's
fine-tuning settings."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

#: stage-2 settings of the paper's fine-tuning: the new AWD/SCB modules at PyTorch's default initialisation
#: (``scb_zero_init: false``), frozen BatchNorm (mmdet ``norm_eval``), stem + stage 1 frozen, lr x2 for
#: AWD and SCB
PAPER_FINETUNE = [
    "model.scb_zero_init=false",
    "model.frozen_bn=true",
    "model.frozen_stages=1",
    "train.lr_mult={awd: 2.0, scb: 2.0}",
]


def add_scene_arguments(
    p: argparse.ArgumentParser, size: tuple[int, int], val_images: int, test_images: int
) -> None:
    """The scene options both presets share (``--size``, image counts, ``--clutter``)."""
    p.add_argument("--size", type=int, nargs=2, default=size, metavar=("W", "H"))
    p.add_argument("--train-images", type=int, default=600)
    p.add_argument("--val-images", type=int, default=val_images, help="clean val scenes (stage-1 AP curve)")
    p.add_argument("--test-images", type=int, default=test_images)
    p.add_argument("--clutter", type=int, default=12, help="unannotated strokes/specks per scene")


def add_run_arguments(p: argparse.ArgumentParser, data_seed: int, docs: Path) -> None:
    """The run options both presets share: scene seed, device, threads, results CSV and docs."""
    p.add_argument("--data-seed", type=int, default=data_seed, help="seed of the scenes")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.add_argument("--results", type=Path, default=None, help="CSV (default benchmarks/results/<study>.csv)")
    p.add_argument("--write-docs", action="store_true", help="write the tables into the docs")
    p.add_argument("--docs", type=Path, default=docs)


def train_val_test_scenes(
    data: Path, args: argparse.Namespace, classes: Sequence[str], scene_cfg
) -> dict[str, Path]:
    """Render (or reuse) ``data/{train,val,test}`` with ``args.train_images/val_images/test_images``
    scenes of ``args.size`` (W, H), seeded ``args.data_seed`` + 0 / 3 / 1 (the demo's stage
    :func:`darkseg.demo.stages.make_scene_sets`). Returns ``{"<set>_images": folder, "<set>_ann":
    annotation file}``."""
    from darkseg.demo.stages import make_scene_sets

    seeds = {"train": args.data_seed, "val": args.data_seed + 3, "test": args.data_seed + 1}
    counts = {"train": args.train_images, "val": args.val_images, "test": args.test_images}
    sets = make_scene_sets(
        data,
        {name: (counts[name], seeds[name]) for name in ("train", "val", "test")},
        tuple(args.size),
        classes,
        scene_cfg=scene_cfg,
        reuse=True,
        progress=False,
    )
    paths: dict[str, Path] = {}
    for name, (images, ann) in sets.items():
        paths[f"{name}_images"], paths[f"{name}_ann"] = images, ann
    return paths
