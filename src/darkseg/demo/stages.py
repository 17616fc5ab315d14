"""The demo's stages as plain functions: ``darkseg demo`` (:func:`darkseg.demo.job.run_demo`) and
``benchmarks/ablation.py`` are compositions of them.

1. :func:`make_scene_sets` - procedural sRGB scene sets with exact instance masks (COCO JSON);
2. :func:`make_dark_test_set` - the synthetic low-light (and clean) renderings of a test set, written by
   ``darkseg synth``'s folder job (:func:`darkseg.synth.offline.run_synth_folder`) as 8-bit PNGs;
3. :func:`train_stage` - :func:`darkseg.engine.train.train` into a run folder;
4. :func:`evaluate_views` - COCO AP of one model on several renderings of the test scenes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from darkseg.config import ExperimentConfig
    from darkseg.data.scenes import SceneConfig
    from darkseg.synth import SynthConfig

__all__ = ["DarkTestSet", "make_scene_sets", "make_dark_test_set", "train_stage", "evaluate_views"]


def make_scene_sets(
    data_dir: str | os.PathLike,
    sets: Mapping[str, tuple[int, int]],
    size: tuple[int, int],
    classes: Sequence[str],
    scene_cfg: SceneConfig | None = None,
    reuse: bool = False,
    progress: bool = True,
) -> dict[str, tuple[Path, Path]]:
    """Render the scene sets ``{name: (count, seed)}`` into ``data_dir/<name>/{images/, annotations.json}``.

    Args:
        size: ``(W, H)`` of the scenes.
        classes: scene classes (the model's class names, in order).
        scene_cfg: object counts, clutter, ... (:class:`darkseg.data.scenes.SceneConfig`; default: its
            defaults).
        reuse: keep a set whose ``annotations.json`` exists instead of rendering it again (the scenes
            are a function of count, size, classes, ``scene_cfg`` and seed).

    Returns:
        ``{name: (image folder, annotation file)}``.
    """
    from darkseg.data.scenes import generate_scenes

    out: dict[str, tuple[Path, Path]] = {}
    for name, (count, seed) in sets.items():
        d = Path(data_dir) / name
        if reuse and (d / "annotations.json").is_file():
            out[name] = (d / "images", d / "annotations.json")
        else:
            out[name] = generate_scenes(
                d, count, size, seed, tuple(classes), cfg=scene_cfg, progress=progress
            )
    return out


@dataclass(frozen=True)
class DarkTestSet:
    """A low-light test set written by :func:`make_dark_test_set`: the noisy renderings, the clean ones
    (or None) and the annotation file (``file_name`` entries are the ``.png`` names in both folders)."""

    images: Path
    clean: Path | None
    ann_file: Path


def make_dark_test_set(
    images: str | os.PathLike,
    ann_file: str | os.PathLike,
    out_dir: str | os.PathLike,
    synth_cfg: SynthConfig,
    seed: int,
    save_clean: bool = True,
    reuse: bool = False,
    progress: bool = True,
) -> DarkTestSet:
    """Synthetic low-light renderings of a COCO image set, as ``darkseg synth --format png8`` writes them.

    Image ``id`` is synthesised with ``numpy.random.default_rng([seed, id])``
    (:func:`darkseg.synth.offline.image_rng`); the noisy rendering goes to ``out_dir/images``, the
    noise-free rendering of the same unprocessing (``save_clean``) to ``out_dir/clean``, the annotation
    file (named as ``ann_file``, ``file_name`` suffixes ``.png``) and ``synth_config.json`` to ``out_dir``.
    ``synth_cfg.output`` must give 3-channel renderings (``rgb``, ``binned``, ``sensor``); with
    ``quantize_8bit`` the PNGs hold the renderings exactly.

    Args:
        reuse: keep a finished set (annotation file and ``synth_config.json`` present, ``clean/`` too when
            asked for); without it the files a previous synth run wrote there (as its record lists them)
            are removed and the set is written afresh, so that new scenes under the same file names never
            meet old renderings. Other files in ``out_dir`` are never touched; one in the way of an
            output is refused (:class:`darkseg.errors.OutputError`).

    Raises:
        ValueError: bad settings (packed output, ...) or images that could not be synthesised (named).
    """
    from darkseg.synth.offline import CONFIG_NAME, SynthJob, run_synth_folder
    from darkseg.utils.outputs import OutputRecord

    out = Path(out_dir)
    ann_out = out / Path(ann_file).name
    result = DarkTestSet(out / "images", out / "clean" if save_clean else None, ann_out)
    done = ann_out.is_file() and (out / CONFIG_NAME).is_file()
    if reuse and done and (result.clean is None or result.clean.is_dir()):
        return result
    if not reuse:  # only the files a synth run wrote there (its record); any other file stays
        OutputRecord(out, "synth").remove_recorded()
    job = SynthJob(Path(images), Path(ann_file), out, synth_cfg, seed=seed, fmt="png8", save_clean=save_clean)
    report = run_synth_folder(job, progress=progress)
    if not report.ok:
        ann_out.unlink(missing_ok=True)  # not a finished set: a rerun retries the failed images
        raise ValueError(
            f"{out}: {len(report.failed)} image(s) could not be synthesised; first: {report.failed[0][1]}"
        )
    return result


def train_stage(
    cfg: ExperimentConfig,
    run_dir: str | os.PathLike,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``cfg`` into ``run_dir`` (:func:`darkseg.engine.train.train`: a folder holding a run is
    refused unless ``resume`` or ``overwrite``). Returns the training summary (``final_model``: the
    weights to evaluate; ``iterations``, ``seconds``, ``loss_first``/``loss_last``, ...)."""
    from darkseg.engine.train import train

    return train(cfg, run_dir, resume=resume, progress=progress, overwrite=overwrite)


def evaluate_views(
    model: nn.Module | str | os.PathLike,
    views: Mapping[str, tuple[str | os.PathLike, str | os.PathLike]],
    class_names: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    results_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> dict[str, dict[str, Any]]:
    """COCO evaluation (bbox and segm AP, pycocotools) of one model on several test renderings.

    Args:
        model: a detector, or a darkseg checkpoint path (loaded onto ``device``).
        views: ``{name: (image folder, annotation file)}``, e.g. the noisy and the clean renderings of
            the test scenes (:class:`DarkTestSet`), the images as stored by their file names.
        class_names: the model's classes in label order (default: the model's ``config.class_names``).
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` or a device.
        results_dir: write the COCO results of view ``name`` to ``results_dir/results_<name>.json``.

    Returns:
        ``{name: evaluate_model's result}`` (``metrics``, ``per_class``, ``num_images``,
        ``num_detections``, ``results_file``).
    """
    from darkseg.data.build import build_dataset
    from darkseg.engine.evaluate import evaluate_model
    from darkseg.models import load_model
    from darkseg.utils.runtime import resolve_device

    dev = resolve_device(device)
    if isinstance(model, (str, os.PathLike)):
        model, _ = load_model(model, map_location=dev)
    names = list(class_names) if class_names is not None else list(model.config.class_names)
    results: dict[str, dict[str, Any]] = {}
    for name, (image_dir, ann_file) in views.items():
        ds = build_dataset("coco", image_dir, ann_file, class_names=names)
        res_file = None if results_dir is None else Path(results_dir) / f"results_{name}.json"
        results[name] = evaluate_model(model, ds, device=dev, results_file=res_file, progress=progress)
    return results
