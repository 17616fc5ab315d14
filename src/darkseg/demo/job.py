"""The main job on embedded data: ``darkseg demo`` / ``make demo`` (:func:`run_demo`).

Nothing can be downloaded where darkseg is developed, so the demo makes its own data and runs the
paper's whole method on it, on the CPU, in a few minutes. Each step is a function of
:mod:`darkseg.demo.stages` (``benchmarks/ablation.py`` composes the same ones):

1. **scenes** - :func:`~darkseg.demo.stages.make_scene_sets` renders a training set and a test set of
   sRGB scenes with exact instance masks (COCO JSON);
2. **dark test set** - :func:`~darkseg.demo.stages.make_dark_test_set`: every test image goes through
   the low-light synthesiser of the config (sRGB -> unprocessed RAW -> camera noise -> rendering) in
   ``darkseg synth``'s folder job, and the noisy and the clean (noise-free) renderings are written as
   8-bit PNGs with the same annotations;
3. **training** - :func:`~darkseg.demo.stages.train_stage` with the packaged ``demo`` config: a ResNet-18
   Mask R-CNN with AWD + SCB trained from scratch with DSL on synthetic (clean, noisy) pairs;
4. **evaluation** - :func:`~darkseg.demo.stages.evaluate_views`: COCO bbox/segm AP (pycocotools) on the
   dark and on the clean test renderings;
5. **report** - :mod:`darkseg.demo.report`: ``metrics.json``, ``report.md``, ``report.html``,
   ``overlays/*.png`` (the dark input, the prediction on the brightened dark image, and the ground truth
   on the sRGB image, side by side) and ``loss_curve.png``.

Layout of ``out_dir``::

    data/{train,test}/{images/, annotations.json}       the scenes
    data/test_dark/{images/, clean/, annotations.json, synth_config.json}
                      the noisy and the clean renderings of the test scenes (``darkseg synth`` layout)
    train/            the training run (config.yaml, log.jsonl, last.pth, final.pth, summary.json)
    eval/             results_{dark,clean}.json (COCO results)
    overlays/         NNN.png
    metrics.json  report.md  report.html  loss_curve.png

A folder that already holds a demo run is refused unless ``resume`` (continue the training from
``train/last.pth``; the data are regenerated identically from the seed) or ``overwrite`` (the files the
previous run wrote - report, evaluation results, overlays, training files - are removed first; ``data/``
is regenerated in place). Every folder keeps the record of the files its job wrote
(``.darkseg-outputs.json``, :mod:`darkseg.utils.outputs`): only those are ever replaced or removed, and
a file in the way of an output that the job did not write is refused by name before any stage runs.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from darkseg.demo.report import plot_loss_curve, write_overlays, write_report
from darkseg.demo.stages import evaluate_views, make_dark_test_set, make_scene_sets, train_stage

__all__ = ["DemoSettings", "QUICK_OVERRIDES", "run_demo"]

#: Config overrides of ``--quick``: a tiny model and a few iterations (seconds, for tests).
QUICK_OVERRIDES: tuple[str, ...] = (
    "model.min_size=64",
    "model.max_size=96",
    "model.fpn_channels=32",
    "model.box_head_dim=64",
    "model.mask_head_channels=32",
    "model.rpn_pre_nms_top_n_train=100",
    "model.rpn_post_nms_top_n_train=50",
    "model.rpn_pre_nms_top_n_test=50",
    "model.rpn_post_nms_top_n_test=20",
    "model.box_detections_per_img=10",
    "data.min_size=64",
    "data.max_size=96",
    "train.max_iters=4",
    "train.batch_size=2",
    "train.warmup_iters=2",
    "train.lr_steps=[3]",
    "train.checkpoint_every=0",
    "train.log_every=1",
)


#: the demo's own files in its folder (``overlays/NNN.png`` come on top, see :func:`_demo_outputs`);
#: the stages' folders ``data/*`` and ``train/`` hold the records of their own jobs
REPORT_FILES = (
    "metrics.json",
    "report.md",
    "report.html",
    "loss_curve.png",
    "eval/results_dark.json",
    "eval/results_clean.json",
)


def _demo_outputs(settings: DemoSettings) -> list[str]:
    """The files the demo itself writes into its folder, relative to it."""
    return [
        *REPORT_FILES,
        *(f"overlays/{n:03d}.png" for n in range(min(settings.overlays, settings.test_images))),
    ]


def _check_stage_outputs(out: Path, settings: DemoSettings) -> None:
    """Refuse, before any stage runs, a file in the way of a stage's outputs that the stage's job did not
    write (:class:`darkseg.errors.OutputError` naming it): scenes, dark test set, training run."""
    from darkseg.data.scenes import scene_outputs
    from darkseg.engine.train import RUN_FILES
    from darkseg.synth.offline import output_relpath, synth_outputs
    from darkseg.utils.outputs import OutputRecord

    data = out / "data"
    test = scene_outputs(settings.test_images)
    dark = synth_outputs([output_relpath(Path(r).name, "png8") for r in test[:-1]], "annotations.json", True)
    stages = [
        (data / "train", "scenes", scene_outputs(settings.train_images)),
        (data / "test", "scenes", test),
        (data / "test_dark", "synth", dark),
        (out / "train", "train", list(RUN_FILES)),
    ]
    for folder, job, names in stages:
        OutputRecord(folder, job).check(names)


@dataclass
class DemoSettings:
    """What the demo generates and runs (the model and training settings live in the config).

    Attributes:
        train_images, test_images: scene counts.
        size: ``(W, H)`` of the scenes in pixels.
        classes: scene classes (must match ``model.class_names`` of the config, in order).
        overlays: how many test images get an overlay picture.
        score_thresh: detections drawn in the overlays (the AP uses all of them).
        config: packaged config name or YAML path.
        overrides: ``"key=value"`` items applied to the config (``--set`` syntax).
    """

    train_images: int = 400
    test_images: int = 60
    size: tuple[int, int] = (192, 144)
    classes: tuple[str, ...] = ("disc", "box", "triangle", "ring", "star", "cross")
    overlays: int = 6
    score_thresh: float = 0.3
    config: str = "demo"
    overrides: list[str] = field(default_factory=list)

    @classmethod
    def quick(cls) -> DemoSettings:
        """A run of a few seconds that exercises every step (used by the tests)."""
        return cls(train_images=8, test_images=4, size=(96, 64), overlays=2, overrides=list(QUICK_OVERRIDES))


def _loss_window(records: list[dict[str, Any]]) -> dict[str, float | None]:
    """Mean loss of the first and the last iterations of the whole logged run (also after a resume,
    where the training summary only knows the iterations of its own process)."""
    losses = [float(r["loss"]) for r in records if "eval" not in r and "loss" in r]
    if not losses:
        return {"loss_first": None, "loss_last": None}
    k = max(1, min(10, len(losses) // 4))
    return {"loss_first": sum(losses[:k]) / k, "loss_last": sum(losses[-k:]) / k}


def _stage(i: int, n: int, text: str, progress: bool) -> None:
    if progress:
        print(f"[{i}/{n}] {text}", flush=True)


def run_demo(
    out_dir: str | os.PathLike,
    settings: DemoSettings | None = None,
    quick: bool = False,
    seed: int = 0,
    device: str = "auto",
    progress: bool = True,
    resume: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Generate data, train, evaluate and write the report into ``out_dir``.

    Args:
        out_dir: the run folder (created). One that holds a demo run is refused
            (:class:`darkseg.errors.RunFolderError`) unless ``resume`` or ``overwrite``.
        settings: data sizes, config and overrides; default :class:`DemoSettings` (or
            :meth:`DemoSettings.quick` with ``quick=True``).
        seed: seeds the scenes (train: ``seed``, test: ``seed + 1``), the dark test set and training.
        device: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``.
        progress: stage headers and tqdm bars.
        resume: continue the training of the run in ``out_dir`` from ``train/last.pth``.
        overwrite: remove the files the previous run wrote (as the folders' records list them) and
            start afresh; other files stay.

    Returns:
        The summary written to ``out_dir/metrics.json``: ``metrics`` (``{"dark"|"clean": {"bbox"|"segm":
        {12 COCO metrics}}}``), ``headline``, ``per_class``, ``train``, ``timings``, ``settings``, ...
    """
    import torch

    from darkseg.config import load_config
    from darkseg.engine.evaluate import format_metrics
    from darkseg.engine.logger import read_jsonl
    from darkseg.engine.runfolder import check_run_folder
    from darkseg.models import load_model
    from darkseg.utils.io import atomic_write_json, load_json
    from darkseg.utils.outputs import check_paths
    from darkseg.utils.runtime import resolve_device

    settings = settings or (DemoSettings.quick() if quick else DemoSettings())
    out = Path(out_dir).resolve()
    config_file = [settings.config] if Path(settings.config).is_file() else []  # else a packaged config
    check_paths("demo", config_file, folders=[out])
    record = check_run_folder(out, "demo", resume, overwrite, resumable=True)
    if not (resume or overwrite):  # a run killed during training has no report yet: its train/ counts
        check_run_folder(out / "train", "train", resume, overwrite, resumable=True)
    resolve_device(device)  # DeviceError now, not after the data stages
    data = out / "data"
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    n_stages = 5

    cfg_overrides = [
        f"data.train.image_dir={data / 'train' / 'images'}",
        f"data.train.ann_file={data / 'train' / 'annotations.json'}",
        f"data.val.image_dir={data / 'test_dark' / 'images'}",
        f"data.val.ann_file={data / 'test_dark' / 'annotations.json'}",
        f"train.seed={seed}",
        f"train.device={device}",
        f"output_dir={out / 'train'}",
        *settings.overrides,
    ]
    cfg = load_config(settings.config, cfg_overrides)
    if list(cfg.model.class_names) != list(settings.classes):
        raise ValueError(
            f"config {settings.config}: model.class_names {cfg.model.class_names} differ from the "
            f"demo's scene classes {list(settings.classes)}"
        )
    if cfg.synth is None:
        raise ValueError(f"config {settings.config}: the demo needs a synth section (low-light synthesis)")
    planned = _demo_outputs(settings)
    record.check(planned)
    _check_stage_outputs(out, settings)
    if overwrite:  # the demo's own files; the stages replace theirs (train --overwrite, synth, scenes)
        removed = record.remove_recorded()
        if removed and progress:
            print(
                f"--overwrite: removed {len(removed)} file(s) of the previous demo run in {out}", flush=True
            )
    out.mkdir(parents=True, exist_ok=True)
    for p in record.remove_stale_temporaries(planned):
        print(f"removed {p} (temporary file of an interrupted write)", flush=True)
    record.claim(planned)

    # 1. scenes
    _stage(
        1,
        n_stages,
        f"rendering {settings.train_images} training and {settings.test_images} test scenes",
        progress,
    )
    t = time.perf_counter()
    scenes = make_scene_sets(
        data,
        {"train": (settings.train_images, seed), "test": (settings.test_images, seed + 1)},
        settings.size,
        settings.classes,
        progress=progress,
    )
    test_dir, test_ann = scenes["test"]
    timings["scenes"] = time.perf_counter() - t

    # 2. dark (and clean) test renderings
    _stage(
        2,
        n_stages,
        f"synthesising the low-light test set ({cfg.synth.camera}, ratio "
        f"{cfg.synth.ratio_range[0]:g}-{cfg.synth.ratio_range[1]:g})",
        progress,
    )
    t = time.perf_counter()
    dark = make_dark_test_set(test_dir, test_ann, data / "test_dark", cfg.synth, seed + 2, progress=progress)
    timings["low_light_test_set"] = time.perf_counter() - t

    # 3. training
    _stage(
        3,
        n_stages,
        f"training ({cfg.train.max_iters} iterations, batch {cfg.train.batch_size}, "
        f"ResNet-{cfg.model.depth} AWD={cfg.model.awd} SCB={cfg.model.scb} DSL={cfg.train.dsl})",
        progress,
    )
    t = time.perf_counter()
    train_summary = train_stage(cfg, out / "train", resume=resume, overwrite=overwrite, progress=progress)
    timings["train"] = time.perf_counter() - t

    # 4. evaluation
    _stage(4, n_stages, "evaluating on the dark and the clean test renderings", progress)
    t = time.perf_counter()
    dev = resolve_device(device)
    model, _ = load_model(train_summary["final_model"], map_location=dev)
    results = evaluate_views(
        model,
        {"dark": (dark.images, dark.ann_file), "clean": (dark.clean, dark.ann_file)},
        cfg.model.class_names,
        dev,
        results_dir=out / "eval",
        progress=progress,
    )
    timings["evaluate"] = time.perf_counter() - t

    # 5. report
    _stage(5, n_stages, f"writing the report to {out}", progress)
    t = time.perf_counter()
    log_records = read_jsonl(out / "train" / "log.jsonl")
    plot_loss_curve(
        log_records,
        out / "loss_curve.png",
        title=f"demo: {train_summary['iterations']} iterations",
    )
    overlay_paths = write_overlays(
        dark.images,
        test_dir,
        dark.ann_file,
        load_json(results["dark"]["results_file"]),
        list(cfg.model.class_names),
        out / "overlays",
        settings.overlays,
        settings.score_thresh,
    )
    timings["report"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t_start

    metrics = {view: r["metrics"] for view, r in results.items()}
    mc = cfg.model
    summary = {
        "headline": {
            "segm_AP_dark": metrics["dark"]["segm"]["AP"],
            "bbox_AP_dark": metrics["dark"]["bbox"]["AP"],
            "segm_AP_clean": metrics["clean"]["segm"]["AP"],
            "bbox_AP_clean": metrics["clean"]["bbox"]["AP"],
        },
        "metrics": metrics,
        "per_class": {view: r["per_class"].get("segm", {}) for view, r in results.items()},
        "num_detections": {view: r["num_detections"] for view, r in results.items()},
        "train": {
            **{
                k: train_summary.get(k)
                for k in ("iterations", "seconds", "seconds_per_iter", "device", "final_model")
            },
            **_loss_window(log_records),
        },
        "batch_size": cfg.train.batch_size,
        "model_description": (
            f"Mask R-CNN, ResNet-{mc.depth} ({mc.style}) + FPN({mc.fpn_channels}), "
            f"AWD={mc.awd}, SCB={mc.scb}, DSL={cfg.train.dsl}, trained from scratch; "
            f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters"
        ),
        "synth": cfg.synth.to_dict(),
        "settings": {
            **asdict(settings),
            "seed": seed,
            "device": str(dev),
            "quick": quick,
            "torch_threads": torch.get_num_threads(),
        },
        "timings": timings,
        "overlays": [str(p.relative_to(out)) for p in overlay_paths],
        "paths": {"train": str(out / "train"), "data": str(data)},
    }
    summary["settings"]["size"] = list(settings.size)
    summary["settings"]["classes"] = list(settings.classes)
    atomic_write_json(out / "metrics.json", summary, indent=2)
    write_report(out, summary)
    if progress:
        for view in ("dark", "clean"):
            print(f"{view} test set ({results[view]['num_images']} images):\n{format_metrics(metrics[view])}")
        print(
            f"segm AP on the dark test set: {100 * summary['headline']['segm_AP_dark']:.1f}  "
            f"(total {timings['total']:.0f} s) -> {out / 'report.html'}",
            flush=True,
        )
    return summary
