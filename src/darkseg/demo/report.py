"""The demo's report: the loss-curve plot, the overlay pictures and ``report.md`` / ``report.html``.

* :func:`plot_loss_curve` - ``loss_curve.png`` from the training log (total loss and each loss term);
* :func:`write_overlays` - the dark input, the predictions on the brightened dark image and the ground
  truth on the sRGB scene, side by side (COCO results decoded by :func:`coco_to_instances`);
* :func:`write_report` - ``report.md`` and ``report.html`` from the demo summary (``metrics.json``).
"""

from __future__ import annotations

import contextlib
import html
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_loss_curve", "write_overlays", "coco_to_instances", "write_report"]


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
    from pycocotools.coco import COCO

    from darkseg.engine.visualize import brighten, draw_instances
    from darkseg.utils.io import read_image, write_image

    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints
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
        pred = coco_to_instances(dets, cat_to_label, (h, w))
        anns = gt.loadAnns(gt.getAnnIds(imgIds=[img_id]))
        truth = coco_to_instances(anns, cat_to_label, (h, w), to_mask=gt.annToMask)
        bright = brighten(dark, linear=True)  # the renderings are linear camera RGB
        left = _label_bar(dark, "dark input")
        mid = _label_bar(draw_instances(bright, pred, class_names), f"prediction ({len(dets)})")
        right = _label_bar(draw_instances(srgb, truth, class_names), f"ground truth ({len(anns)})")
        gap = np.full((left.shape[0], 4, 3), 255, np.uint8)
        path = out_dir / f"{n:03d}.png"
        write_image(path, np.concatenate([left, gap, mid, gap, right], axis=1))
        paths.append(path)
    return paths


def coco_to_instances(
    entries: Sequence[dict[str, Any]],
    cat_to_label: dict[int, int],
    hw: tuple[int, int],
    to_mask: Callable[[dict[str, Any]], np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """COCO results (or annotations) of one image -> the instance arrays that
    :func:`darkseg.engine.visualize.draw_instances` draws: ``boxes`` (N, 4) xyxy from the xywh ``bbox``,
    ``labels`` (``cat_to_label`` of ``category_id``), ``scores`` (1 for entries without one: ground
    truth), ``masks`` (N, H, W) bool by ``to_mask`` (default: decode the RLE ``segmentation`` of a
    result; ``COCO.annToMask`` for annotations with polygons); ``hw`` sizes the masks of no entries."""
    from pycocotools import mask as mask_utils

    decode = to_mask or (lambda e: mask_utils.decode(e["segmentation"]))
    boxes = [
        [e["bbox"][0], e["bbox"][1], e["bbox"][0] + e["bbox"][2], e["bbox"][1] + e["bbox"][3]]
        for e in entries
    ]
    return {
        "boxes": np.array(boxes, np.float32).reshape(-1, 4),
        "labels": np.array([cat_to_label[e["category_id"]] for e in entries], np.int64),
        "scores": np.array([e.get("score", 1.0) for e in entries], np.float32),
        "masks": np.stack([decode(e).astype(bool) for e in entries]) if entries else np.zeros((0, *hw), bool),
    }


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


def write_report(out_dir: str | os.PathLike, summary: dict[str, Any]) -> tuple[Path, Path]:
    """``report.md`` and ``report.html`` from the demo summary (what ``metrics.json`` holds).

    Pictures are referenced relative to ``out_dir`` (``loss_curve.png``, ``overlays/*.png``).
    """
    from darkseg.engine.report_html import html_table
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
        html_table(header, rows),
        "<h2>Per-class segm AP</h2>",
        html_table(pc_header, pc_rows),
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
