"""The main job on embedded data: ``darkseg demo`` / ``make demo``.

Nothing can be downloaded where darkseg is developed, so the demo makes its own data and runs the
paper's whole method on it, on the CPU, in a few minutes:

1. **scenes** - :func:`darkseg.data.scenes.generate_scenes` renders a training set and a test set of
   sRGB scenes with exact instance masks (COCO JSON);
2. **dark test set** - every test image goes through the low-light synthesiser of the config
   (sRGB -> unprocessed RAW -> camera noise -> rendering) and the noisy and the clean (noise-free)
   renderings are written as 8-bit PNGs with the same annotations;
3. **training** - :func:`darkseg.engine.train.train` with the packaged ``demo`` config: a ResNet-18
   Mask R-CNN with AWD + SCB trained from scratch with DSL on synthetic (clean, noisy) pairs;
4. **evaluation** - COCO bbox/segm AP (pycocotools) on the dark and on the clean test renderings;
5. **report** - ``metrics.json``, ``report.md``, ``report.html``, ``overlays/*.png`` (the dark input,
   the prediction on the brightened dark image, and the ground truth on the sRGB image, side by side)
   and ``loss_curve.png``.

Layout of ``out_dir``::

    data/{train,test,test_dark,test_clean}/{images/, annotations.json}
    train/            the training run (config.yaml, log.jsonl, last.pth, final.pth, summary.json)
    eval/             results_{dark,clean}.json (COCO results)
    overlays/         NNN.png
    metrics.json  report.md  report.html  loss_curve.png

A folder that already holds a demo run is refused unless ``resume`` (continue the training from
``train/last.pth``; the data are regenerated identically from the seed) or ``overwrite`` (the previous
run's report, evaluation results, overlays and training files are removed first; ``data/`` is
regenerated in place, other files are left alone).
"""

from __future__ import annotations

import html
import io
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEMO_LAYOUT",
    "DemoSettings",
    "QUICK_OVERRIDES",
    "run_demo",
    "write_low_light_set",
    "plot_loss_curve",
    "write_report",
]

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


def _demo_layout():
    from darkseg.engine.runfolder import TRAIN_LAYOUT, RunLayout

    report = ("metrics.json", "report.md", "report.html", "loss_curve.png")
    train = tuple(f"train/{p}" for p in TRAIN_LAYOUT.owned)
    return RunLayout(
        job="demo",
        markers=report + tuple(f"train/{p}" for p in TRAIN_LAYOUT.markers),
        owned=report
        + train
        + ("eval/results_dark.json", "eval/results_clean.json", "overlays/[0-9][0-9][0-9].png"),
        resumable=True,
    )


#: The files a demo run writes (``data/`` is regenerated in place and not listed).
DEMO_LAYOUT = _demo_layout()


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


# ---------------------------------------------------------------------------------------- data
def write_low_light_set(
    image_dir: str | os.PathLike,
    ann_file: str | os.PathLike,
    out_dir: str | os.PathLike,
    synth_cfg: Any,
    seed: int,
    clean_out_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> tuple[Path, Path]:
    """Synthetic low-light version of a COCO image set, written as 8-bit PNG files.

    Image ``id`` is synthesised with ``numpy.random.default_rng([seed, id])`` by
    ``LowLightSynthesizer(synth_cfg).numpy``; the noisy rendering goes to ``out_dir/images`` and,
    when ``clean_out_dir`` is given, the noise-free rendering of the same unprocessing to
    ``clean_out_dir/images``. Annotations are copied (``file_name`` suffix set to ``.png``).
    ``synth_cfg.output`` must be ``"rgb"``, ``"binned"`` or ``"sensor"`` (3-channel renderings); with
    ``quantize_8bit`` the PNGs hold the renderings exactly.

    Returns:
        ``(out_dir/images, out_dir/annotations.json)``.
    """
    from tqdm import tqdm

    from darkseg.synth import LowLightSynthesizer
    from darkseg.utils.io import atomic_write_json, load_json, read_image, write_image

    if synth_cfg.output == "packed":
        raise ValueError(
            f"write_low_light_set needs a 3-channel synth output (image files), got {synth_cfg.output!r}"
        )
    synth = LowLightSynthesizer(synth_cfg)
    coco = load_json(ann_file)
    outs = [Path(out_dir)] + ([Path(clean_out_dir)] if clean_out_dir is not None else [])
    for o in outs:
        (o / "images").mkdir(parents=True, exist_ok=True)
    images = []
    for info in tqdm(
        coco["images"], desc=f"low-light -> {Path(out_dir).name}", unit="img", disable=not progress
    ):
        src = Path(image_dir) / info["file_name"]
        srgb = read_image(src)
        clean, noisy = synth.numpy(srgb, np.random.default_rng([int(seed), int(info["id"])]))
        name = str(Path(info["file_name"]).with_suffix(".png"))
        for o, img in zip(outs, (noisy, clean)):
            write_image(o / "images" / name, np.round(np.clip(img, 0, 1) * 255).astype(np.uint8))
        images.append({**info, "file_name": name})
    meta = {**coco, "images": images}
    meta["info"] = {**coco.get("info", {}), "low_light": synth_cfg.to_dict(), "low_light_seed": int(seed)}
    for o, view in zip(outs, ("noisy", "clean")):
        atomic_write_json(o / "annotations.json", {**meta, "info": {**meta["info"], "view": view}})
    return Path(out_dir) / "images", Path(out_dir) / "annotations.json"


# ------------------------------------------------------------------------------------ pictures
def _savefig(fig: Any, path: Path) -> None:
    from darkseg.utils.io import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def _moving_average(x: np.ndarray, k: int) -> np.ndarray:
    if len(x) < k or k <= 1:
        return x
    c = np.cumsum(np.insert(x, 0, 0.0))
    head = c[1:k] / np.arange(1, k)
    return np.concatenate([head, (c[k:] - c[:-k]) / k])


def plot_loss_curve(
    records: Sequence[dict[str, Any]], path: str | os.PathLike, title: str = "training loss"
) -> None:
    """Loss curve PNG from the training log (``log.jsonl`` records with ``iter`` and ``loss*`` keys).

    Left: the total loss per iteration and its moving average. Right: each loss term (moving average,
    log scale): task losses of the noisy and the clean view and ``loss_dsl``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    recs = [r for r in records if "iter" in r and "loss" in r]
    if not recs:
        raise ValueError(f"{path}: no training records with 'iter' and 'loss' to plot")
    it = np.array([r["iter"] for r in recs])
    total = np.array([r["loss"] for r in recs], dtype=float)
    k = max(1, min(20, len(recs) // 10))
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 3.8))
    a1.plot(it, total, color="0.75", lw=0.8, label="per iteration")
    a1.plot(it, _moving_average(total, k), color="C0", lw=2, label=f"moving average ({k})")
    a1.set_xlabel("iteration")
    a1.set_ylabel("total loss")
    a1.set_title(title)
    a1.legend()
    a1.grid(alpha=0.3)
    terms = sorted({key for r in recs for key in r if key.startswith(("loss_", "clean_loss_"))})
    bases = sorted({key.removeprefix("clean_") for key in terms})
    for key in terms:
        v = np.array([r.get(key, np.nan) for r in recs], dtype=float)
        clean = key.startswith("clean_")
        colour = f"C{bases.index(key.removeprefix('clean_')) % 10}"
        a2.plot(
            it,
            np.maximum(_moving_average(v, k), 1e-6),
            "--" if clean else "-",
            color=colour,
            lw=1.3,
            label=None if clean else key,
        )
    a2.set_yscale("log")
    a2.set_xlabel("iteration")
    a2.set_title("loss terms, moving average (solid: noisy view, dashed: clean view)", fontsize=9)
    a2.legend(fontsize=7, ncol=2)
    a2.grid(alpha=0.3, which="both")
    _savefig(fig, Path(path))
    plt.close(fig)


def _label_bar(img: np.ndarray, text: str) -> np.ndarray:
    import cv2

    bar = np.full((18, img.shape[1], 3), 255, np.uint8)
    cv2.putText(bar, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([bar, img], axis=0)


def write_overlays(
    dark_ds_dir: Path,
    srgb_dir: Path,
    ann_file: Path,
    results: list[dict],
    class_names: Sequence[str],
    out_dir: Path,
    count: int,
    score_thresh: float,
) -> list[Path]:
    """Side-by-side pictures for the first ``count`` test images.

    Panels: the dark input as stored (what the network sees), the predictions (score ≥ ``score_thresh``)
    drawn on the brightened dark image, and the ground truth drawn on the sRGB test image.
    """
    if count <= 0:
        return []
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    from darkseg.engine.visualize import brighten, draw_instances
    from darkseg.utils.io import read_image, write_image

    with _quiet():
        gt = COCO(str(ann_file))
    cat_to_label = {c: i + 1 for i, c in enumerate(sorted(gt.getCatIds()))}
    by_image: dict[int, list[dict]] = {}
    for r in results:
        by_image.setdefault(int(r["image_id"]), []).append(r)
    paths = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for n, img_id in enumerate(sorted(gt.getImgIds())[:count]):
        info = gt.imgs[img_id]
        dark = read_image(dark_ds_dir / info["file_name"])
        srgb = read_image(srgb_dir / Path(info["file_name"]).name)
        h, w = dark.shape[:2]
        dets = [r for r in by_image.get(img_id, []) if r["score"] >= score_thresh]
        pred = _instances(dets, cat_to_label, (h, w), mask_utils)
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[img_id]))
        truth = {
            "boxes": np.array(
                [
                    [a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                    for a in anns
                ],
                np.float32,
            ).reshape(-1, 4),
            "labels": np.array([cat_to_label[a["category_id"]] for a in anns], np.int64),
            "scores": np.ones(len(anns), np.float32),
            "masks": np.stack([gt.annToMask(a).astype(bool) for a in anns])
            if anns
            else np.zeros((0, h, w), bool),
        }
        bright = brighten(dark, linear=True)  # the renderings are linear camera RGB
        left = _label_bar(dark, "dark input")
        mid = _label_bar(draw_instances(bright, pred, class_names), f"prediction ({len(dets)})")
        right = _label_bar(draw_instances(srgb, truth, class_names), f"ground truth ({len(anns)})")
        gap = np.full((left.shape[0], 4, 3), 255, np.uint8)
        path = out_dir / f"{n:03d}.png"
        write_image(path, np.concatenate([left, gap, mid, gap, right], axis=1))
        paths.append(path)
    return paths


def _instances(dets: list[dict], cat_to_label: dict[int, int], hw: tuple[int, int], mask_utils) -> dict:
    h, w = hw
    if not dets:
        return {
            "boxes": np.zeros((0, 4), np.float32),
            "labels": np.zeros(0, np.int64),
            "scores": np.zeros(0, np.float32),
            "masks": np.zeros((0, h, w), bool),
        }
    boxes = np.array(
        [
            [d["bbox"][0], d["bbox"][1], d["bbox"][0] + d["bbox"][2], d["bbox"][1] + d["bbox"][3]]
            for d in dets
        ],
        np.float32,
    )
    masks = np.stack([mask_utils.decode(d["segmentation"]).astype(bool) for d in dets])
    return {
        "boxes": boxes,
        "labels": np.array([cat_to_label[d["category_id"]] for d in dets], np.int64),
        "scores": np.array([d["score"] for d in dets], np.float32),
        "masks": masks,
    }


class _quiet:
    """Silence pycocotools' prints."""

    def __enter__(self):
        import contextlib

        self._cm = contextlib.redirect_stdout(io.StringIO())
        return self._cm.__enter__()

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


# -------------------------------------------------------------------------------------- report
_METRIC_ORDER = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")


def _fmt(v: float) -> str:
    return "-" if v is None or v < 0 else f"{100 * v:.1f}"


def _metric_rows(metrics: dict[str, dict[str, dict[str, float]]]) -> tuple[list[str], list[list[str]]]:
    header = ["test set", "IoU type", *_METRIC_ORDER]
    rows = []
    for test_name, per_type in metrics.items():
        for iou_type in ("segm", "bbox"):
            if iou_type in per_type:
                rows.append([test_name, iou_type, *[_fmt(per_type[iou_type].get(m)) for m in _METRIC_ORDER]])
    return header, rows


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    h = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


def write_report(out_dir: str | os.PathLike, summary: dict[str, Any]) -> tuple[Path, Path]:
    """``report.md`` and ``report.html`` from the demo summary (what ``metrics.json`` holds).

    Pictures are referenced relative to ``out_dir`` (``loss_curve.png``, ``overlays/*.png``).
    """
    from darkseg.utils.io import atomic_open

    out = Path(out_dir)
    header, rows = _metric_rows(summary["metrics"])
    pc = summary.get("per_class", {})
    pc_header = ["test set", *summary["settings"]["classes"]]
    pc_rows = [
        [name, *[_fmt(v.get(c, -1)) for c in summary["settings"]["classes"]]] for name, v in pc.items()
    ]
    tr = summary["train"]
    s = summary["settings"]
    facts = [
        (
            "data",
            f"{s['train_images']} training / {s['test_images']} test scenes of {s['size'][0]}x{s['size'][1]} "
            f"px, classes: {', '.join(s['classes'])}",
        ),
        (
            "dark test set",
            f"camera {summary['synth']['camera']}, noise {summary['synth']['noise_model']}, "
            f"exposure ratio {summary['synth']['ratio_range'][0]:g}-"
            f"{summary['synth']['ratio_range'][1]:g} (seed {s['seed']})",
        ),
        ("model", summary["model_description"]),
        (
            "training",
            f"{tr['iterations']} iterations x batch {summary['batch_size']} in {tr['seconds']:.0f} s on "
            f"{tr['device']} (loss {tr['loss_first']:.3f} -> {tr['loss_last']:.3f})",
        ),
        ("total time", f"{summary['timings']['total']:.0f} s"),
    ]
    overlays = summary.get("overlays", [])
    headline = (
        f"segm AP on the synthetic dark test set: **{_fmt(summary['headline']['segm_AP_dark'])}** "
        f"(box AP {_fmt(summary['headline']['bbox_AP_dark'])}); on the clean renderings: segm "
        f"{_fmt(summary['headline']['segm_AP_clean'])} / box {_fmt(summary['headline']['bbox_AP_clean'])}."
    )
    md = [
        "# darkseg demo report",
        "",
        "The paper's method (low-light RAW synthesis + AWD + SCB + DSL) trained from scratch on "
        "procedural scenes and tested on synthetic low-light renderings of unseen scenes. "
        "AP values x100 (COCO, pycocotools).",
        "",
        headline,
        "",
        *[f"* **{k}**: {v}" for k, v in facts],
        "",
        "## COCO metrics",
        "",
        _md_table(header, rows),
        "",
        "## Per-class segm AP",
        "",
        _md_table(pc_header, pc_rows),
        "",
        "## Training loss",
        "",
        "![loss curve](loss_curve.png)",
        "",
        "## Predictions on dark test images",
        "",
        "Left: the dark input as the network sees it. Middle: predictions (score >= "
        f"{s['score_thresh']}) on the brightened dark image. Right: ground truth on the sRGB scene.",
        "",
        *[f"![overlay {i}]({p})\n" for i, p in enumerate(overlays)],
    ]
    style = (
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:13px;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}img{max-width:100%}"
    )
    strong = headline.replace("**", "")
    page = [
        "<!doctype html><html><head><meta charset='utf-8'><title>darkseg demo</title>"
        f"<style>{style}</style></head><body><h1>darkseg demo report</h1>",
        "<p>The paper's method (low-light RAW synthesis + AWD + SCB + DSL) trained from scratch on "
        "procedural scenes and tested on synthetic low-light renderings of unseen scenes. "
        "AP values x100.</p>",
        f"<p><b>{html.escape(strong)}</b></p><ul>",
        *[f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in facts],
        "</ul><h2>COCO metrics</h2>",
        _html_table(header, rows),
        "<h2>Per-class segm AP</h2>",
        _html_table(pc_header, pc_rows),
        "<h2>Training loss</h2><img src='loss_curve.png' alt='loss curve'>",
        "<h2>Predictions on dark test images</h2><p>Left: dark input. Middle: predictions on the brightened "
        "dark image. Right: ground truth on the sRGB scene.</p>",
        *[f"<p><img src='{html.escape(p)}' alt='overlay {i}'></p>" for i, p in enumerate(overlays)],
        "</body></html>",
    ]
    md_path, html_path = out / "report.md", out / "report.html"
    with atomic_open(md_path, "w") as fh:
        fh.write("\n".join(md) + "\n")
    with atomic_open(html_path, "w") as fh:
        fh.write("\n".join(page) + "\n")
    return md_path, html_path


# ---------------------------------------------------------------------------------------- main
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
        overwrite: remove the previous run's files (:data:`DEMO_LAYOUT`) and start afresh.

    Returns:
        The summary written to ``out_dir/metrics.json``: ``metrics`` (``{"dark"|"clean": {"bbox"|"segm":
        {12 COCO metrics}}}``), ``headline``, ``per_class``, ``train``, ``timings``, ``settings``, ...
    """
    import torch

    from darkseg.config import load_config
    from darkseg.data.build import build_dataset
    from darkseg.data.scenes import generate_scenes
    from darkseg.engine.evaluate import evaluate_model, format_metrics
    from darkseg.engine.logger import read_jsonl
    from darkseg.engine.runfolder import check_run_folder, clear_run_folder
    from darkseg.engine.train import train
    from darkseg.models import load_model
    from darkseg.utils.io import atomic_write_json, load_json, remove_stale_temporaries
    from darkseg.utils.runtime import resolve_device

    settings = settings or (DemoSettings.quick() if quick else DemoSettings())
    out = Path(out_dir).resolve()
    check_run_folder(out, DEMO_LAYOUT, resume=resume, overwrite=overwrite)
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
    if overwrite:
        removed = clear_run_folder(out, DEMO_LAYOUT)
        if removed and progress:
            print(
                f"--overwrite: removed {len(removed)} file(s) of the previous demo run in {out}", flush=True
            )
    out.mkdir(parents=True, exist_ok=True)
    for p in remove_stale_temporaries(out, recursive=True):
        print(f"removed {p} (temporary file of an interrupted write)", flush=True)

    # 1. scenes
    _stage(
        1,
        n_stages,
        f"rendering {settings.train_images} training and {settings.test_images} test scenes",
        progress,
    )
    t = time.perf_counter()
    train_dir, train_ann = generate_scenes(
        data / "train", settings.train_images, settings.size, seed, settings.classes, progress=progress
    )
    test_dir, test_ann = generate_scenes(
        data / "test", settings.test_images, settings.size, seed + 1, settings.classes, progress=progress
    )
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
    dark_dir, dark_ann = write_low_light_set(
        test_dir,
        test_ann,
        data / "test_dark",
        cfg.synth,
        seed + 2,
        clean_out_dir=data / "test_clean",
        progress=progress,
    )
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
    train_summary = train(cfg, out / "train", resume=resume, progress=progress, overwrite=overwrite)
    timings["train"] = time.perf_counter() - t

    # 4. evaluation
    _stage(4, n_stages, "evaluating on the dark and the clean test renderings", progress)
    t = time.perf_counter()
    dev = resolve_device(device)
    model, _ = load_model(train_summary["final_model"], map_location=dev)
    model.to(dev).eval()
    results: dict[str, Any] = {}
    for view, img_dir in (("dark", dark_dir), ("clean", data / "test_clean" / "images")):
        ds = build_dataset("coco", img_dir, dark_ann, class_names=list(cfg.model.class_names))
        results[view] = evaluate_model(
            model, ds, device=dev, results_file=out / "eval" / f"results_{view}.json", progress=progress
        )
    timings["evaluate"] = time.perf_counter() - t

    # 5. report
    _stage(5, n_stages, f"writing the report to {out}", progress)
    t = time.perf_counter()
    plot_loss_curve(
        read_jsonl(out / "train" / "log.jsonl"),
        out / "loss_curve.png",
        title=f"demo: {train_summary['iterations']} iterations",
    )
    overlay_paths = write_overlays(
        dark_dir,
        test_dir,
        dark_ann,
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
            **_loss_window(read_jsonl(out / "train" / "log.jsonl")),
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
