"""Folder job: synthesise the low-light version of every image of a COCO annotation file.

Output layout under ``out``::

    out/images/<file_name with the suffix .png or .npy>   the noisy rendering (same sub-folders)
    out/clean/<...>                                       the clean rendering (``save_clean``)
    out/<annotation file name>                            the annotation file, ``file_name`` updated
    out/synth_config.json                                 settings of the run (checked on resume)

* The annotation file is written when the images are done and lists only the images whose output
  exists: an image that failed is left out together with its annotations (the report counts them).
* ``output="packed"`` arrays are half resolution (``(H/2, W/2, 4)``), so the annotation file is rescaled
  to them: ``width``/``height`` halved, boxes and polygon coordinates x0.5, RLE masks downsampled 2x2
  (a half-resolution pixel belongs to an instance when at least 2 of its 4 sites do) and areas
  recomputed (RLE) or divided by 4 (polygons, boxes).
* Worker processes end when the parent process dies, even by SIGKILL
  (:func:`darkseg.utils.runtime.exit_with_parent`).

* Deterministic: image ``i`` uses ``numpy.random.default_rng([seed, image_id])``, so the result does
  not depend on order, worker count, or interruptions.
* Resumable: every file is written atomically (temporary file + rename); a rerun skips outputs that
  exist and deletes the stale temporary files of a killed run (temporaries of this job's outputs only).
* Safe: an output folder that is or contains an input (the image folder, an image, the annotation
  file) is refused, and so is an existing output file that no ``synth`` run wrote (the folder's
  ``.darkseg-outputs.json`` records what was written: :mod:`darkseg.utils.outputs`), before any work.
* Robust: an unreadable image is reported with its file name and the job goes on; the report lists
  the failures.
"""

from __future__ import annotations

import copy
import os
import zlib
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np

from darkseg.errors import short_repr
from darkseg.synth.pipeline import LowLightSynthesizer, SynthConfig

__all__ = [
    "SynthJob",
    "SynthReport",
    "load_coco_images",
    "image_rng",
    "output_relpath",
    "run_synth_folder",
    "synth_outputs",
    "half_resolution_annotations",
]

FORMATS = ("png16", "png8", "npy")
#: the scale of each PNG format: stored value = ``round(scale x)`` of the rendering clipped to [0, 1]
_PNG_SCALE = {"png16": (65535.0, np.uint16), "png8": (255.0, np.uint8)}
CONFIG_NAME = "synth_config.json"


@dataclass
class SynthJob:
    """One folder job. ``fmt``: ``"png16"`` (16-bit RGB PNG, ``round(65535 x)``), ``"png8"`` (8-bit RGB
    PNG, ``round(255 x)``: exact for renderings with ``quantize_8bit``) or ``"npy"`` (float32)."""

    images: Path
    annotations: Path
    out: Path
    cfg: SynthConfig = field(default_factory=SynthConfig)
    seed: int = 0
    workers: int = 1
    fmt: str = "png16"
    save_clean: bool = False


@dataclass
class SynthReport:
    """``written`` now, ``skipped`` (already present), ``failed`` ``(file_name, message)`` - these images
    and their annotations are left out of the output annotation file; ``removed_temporaries`` of a
    killed run."""

    written: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    removed_temporaries: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def load_coco_images(path: str | os.PathLike) -> dict[str, Any]:
    """Load and validate a COCO annotation file; raises ``ValueError`` naming the file and the problem.

    The ``images`` are checked as every dataset checks them (unique ids, ``file_name``, positive
    ``width``/``height``), and so are the ``annotations`` when present (unique ids, known images and
    categories, finite in-image boxes, well-formed masks: ``darkseg.utils.coco_checks``), so a file that
    training would refuse is refused before any image is synthesised.
    """
    from darkseg.utils.coco_checks import check_annotations, check_categories, check_images
    from darkseg.utils.io import load_json

    path = Path(path)
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"{path}: annotation file is empty")
    coco = load_json(path)
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list):
        raise ValueError(f"{path}: not a COCO annotation file (needs an 'images' list)")
    if not coco["images"]:
        raise ValueError(f"{path}: the 'images' list is empty")
    for key in ("annotations", "categories"):
        if not isinstance(coco.get(key, []), list) or any(not isinstance(e, dict) for e in coco.get(key, [])):
            raise ValueError(f"{path}: {short_repr(key)} must be a list of objects")
    if any(not isinstance(im, dict) for im in coco["images"]):
        raise ValueError(f"{path}: every entry of 'images' must be an object")
    images = check_images(coco["images"], str(path))
    for im in coco["images"]:  # outputs go to OUT/images/<file_name>: it must stay inside OUT
        name = Path(im["file_name"])
        if name.is_absolute() or ".." in name.parts:
            raise ValueError(
                f"{path}: image id {short_repr(im['id'])}: file_name {short_repr(im['file_name'])} must be "
                "a relative path inside the image folder (no '..', not absolute)"
            )
    category_ids = check_categories(coco["categories"], str(path)) if "categories" in coco else None
    check_annotations(coco.get("annotations", []), images, category_ids, str(path))
    return coco


def image_rng(seed: int, image_id: Any) -> np.random.Generator:
    """The RNG of one image: ``default_rng([seed, id])`` (non-integer ids are hashed with CRC32)."""
    key = image_id if isinstance(image_id, int) and image_id >= 0 else zlib.crc32(str(image_id).encode())
    return np.random.default_rng([int(seed), int(key)])


def output_relpath(file_name: str, fmt: str) -> str:
    """Relative output path of an input ``file_name``: same folders and stem, suffix of ``fmt``."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {short_repr(fmt)}")
    return str(Path(file_name).with_suffix(".npy" if fmt == "npy" else ".png"))


def synth_outputs(rels: Iterable[str], annotation_name: str, save_clean: bool) -> list[str]:
    """The files the folder job writes, relative to its folder: ``images/<rel>`` (and ``clean/<rel>``)
    for every output path ``rel`` (:func:`output_relpath`), the annotation file and ``synth_config.json``."""
    subs = ("images", "clean") if save_clean else ("images",)
    return [f"{sub}/{rel}" for rel in rels for sub in subs] + [annotation_name, CONFIG_NAME]


def _encode(arr: np.ndarray, fmt: str, name: str) -> bytes:
    import io

    if fmt == "npy":
        buf = io.BytesIO()
        np.save(buf, arr.astype(np.float32), allow_pickle=False)
        return buf.getvalue()
    import cv2

    scale, dtype = _PNG_SCALE[fmt]
    img = np.round(np.clip(arr, 0.0, 1.0) * scale).astype(dtype)
    ok, enc = cv2.imencode(".png", np.ascontiguousarray(img[:, :, ::-1]))  # RGB -> OpenCV's BGR
    if not ok:
        raise OSError(f"{name}: PNG encoding failed")
    return enc.tobytes()


# one synthesiser per (worker) process
_WORKER: dict[str, Any] = {}


def _init_worker(
    cfg_dict: dict,
    images: str,
    out: str,
    seed: int,
    fmt: str,
    save_clean: bool,
    parent_pid: int | None = None,
) -> None:
    """Set up the synthesiser of this process; a pool worker (``parent_pid`` given) dies with its parent
    and uses one torch/OpenCV thread (the workers already fill the CPUs side by side)."""
    from darkseg.utils.runtime import exit_with_parent, keep_freed_memory
    from darkseg.utils.threads import single_thread_worker

    if parent_pid is not None:
        exit_with_parent(parent_pid)
        single_thread_worker()
    keep_freed_memory()  # reuse freed image buffers instead of page-faulting fresh ones (~20 % faster)
    _WORKER.update(
        synth=LowLightSynthesizer(SynthConfig(**cfg_dict)),
        images=Path(images),
        out=Path(out),
        seed=seed,
        fmt=fmt,
        save_clean=save_clean,
    )


def _process_one(item: tuple[Any, str]) -> tuple[str, str | None]:
    """Synthesise one image; returns ``(file_name, error message or None)``."""
    from darkseg.utils.io import atomic_write_bytes, read_image

    image_id, file_name = item
    w = _WORKER
    try:
        rgb = read_image(w["images"] / file_name)
        clean, noisy = w["synth"].numpy(rgb, image_rng(w["seed"], image_id))
        rel = output_relpath(file_name, w["fmt"])
        if w["save_clean"]:
            atomic_write_bytes(w["out"] / "clean" / rel, _encode(clean, w["fmt"], file_name))
        atomic_write_bytes(w["out"] / "images" / rel, _encode(noisy, w["fmt"], file_name))
        return file_name, None
    except Exception as exc:  # noqa: BLE001 - every per-file problem is reported, the job goes on
        msg = str(exc)
        if file_name not in msg:
            msg = f"{w['images'] / file_name}: {msg}"
        return file_name, f"{type(exc).__name__}: {msg}"


def half_resolution_annotations(coco: dict[str, Any]) -> dict[str, Any]:
    """A copy of a COCO dict rescaled to half-resolution images (the packed RAW grid).

    ``width``/``height`` are halved (packed output needs even sizes), boxes and polygons scaled by 0.5,
    RLE masks downsampled by 2x2 blocks (on when at least 2 of the 4 sites are), areas recomputed for
    RLE and divided by 4 otherwise.
    """
    from pycocotools import mask as mask_utils

    out = copy.deepcopy(coco)
    for im in out["images"]:
        im["width"], im["height"] = int(im["width"]) // 2, int(im["height"]) // 2
    for ann in out.get("annotations", []):
        if isinstance(ann.get("bbox"), list):
            ann["bbox"] = [float(v) * 0.5 for v in ann["bbox"]]
        seg = ann.get("segmentation")
        if isinstance(seg, dict) and "counts" in seg:
            h, w = seg["size"]
            rle = mask_utils.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else seg
            m = mask_utils.decode(rle)[: h - h % 2, : w - w % 2].astype(np.uint8)
            half = m.reshape(h // 2, 2, w // 2, 2).sum(axis=(1, 3)) >= 2
            enc = mask_utils.encode(np.asfortranarray(half.astype(np.uint8)))
            ann["segmentation"] = {"size": [h // 2, w // 2], "counts": enc["counts"].decode("ascii")}
            ann["area"] = float(half.sum())
        else:
            if isinstance(seg, list):
                ann["segmentation"] = [[float(v) * 0.5 for v in poly] for poly in seg]
            if "area" in ann:
                ann["area"] = float(ann["area"]) * 0.25
    return out


def _output_annotations(coco: dict, rel_of: dict[str, str], kept: set[str], packed: bool) -> dict:
    """The output annotation file: images whose output exists (``kept`` file names), renamed to their
    output files, with their annotations; rescaled to half resolution for packed output."""
    new = copy.deepcopy(coco)
    new["images"] = [im for im in new["images"] if im["file_name"] in kept]
    ids = {im["id"] for im in new["images"]}
    if isinstance(new.get("annotations"), list):
        new["annotations"] = [
            a for a in new["annotations"] if not isinstance(a, dict) or a.get("image_id") in ids
        ]
    for im in new["images"]:
        im["file_name"] = rel_of[im["file_name"]]
    return half_resolution_annotations(new) if packed else new


def _check_run_config(out: Path, meta: dict) -> None:
    from darkseg.utils.io import atomic_write_json, load_json

    path = out / CONFIG_NAME
    if path.is_file():
        old = load_json(path)
        if old != meta:
            diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
            raise ValueError(
                f"{out}: was produced with different settings ({', '.join(diff)}); "
                "use a new --out folder or the same settings to resume"
            )
    else:
        atomic_write_json(path, meta, indent=2)


def run_synth_folder(job: SynthJob, progress: bool = True) -> SynthReport:
    """Run the folder job (see module docstring). Raises ``ValueError``/``FileNotFoundError`` on bad
    arguments before any image is processed; per-image problems go to the report."""
    from tqdm import tqdm

    from darkseg.utils.io import atomic_write_json
    from darkseg.utils.outputs import OutputRecord, check_paths

    if job.fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {short_repr(job.fmt)}")
    if job.fmt in _PNG_SCALE and job.cfg.output == "packed":
        raise ValueError("packed 4-channel output cannot be stored as an RGB PNG; use --format npy")
    if not Path(job.images).is_dir():
        raise FileNotFoundError(f"{job.images}: image folder not found")
    LowLightSynthesizer(job.cfg)  # validate the configuration before doing anything
    coco = load_coco_images(job.annotations)
    out = Path(job.out)

    rel_of: dict[str, str] = {}
    for im in coco["images"]:
        rel = output_relpath(im["file_name"], job.fmt)
        if rel in rel_of.values():
            other = next(k for k, v in rel_of.items() if v == rel)
            raise ValueError(
                f"{job.annotations}: {short_repr(im['file_name'])} and {short_repr(other)} map to the same "
                f"output {rel}"
            )
        rel_of[im["file_name"]] = rel

    # never over an input, never over a file no synth run wrote; files a synth run wrote are reused
    images_in = [Path(job.images) / im["file_name"] for im in coco["images"]]
    check_paths("synth", [job.images, job.annotations, *images_in], folders=[out])
    record = OutputRecord(out, "synth")
    planned = synth_outputs(rel_of.values(), Path(job.annotations).name, job.save_clean)
    record.check(planned)
    out.mkdir(parents=True, exist_ok=True)
    report = SynthReport()
    report.removed_temporaries = record.remove_stale_temporaries(planned)
    record.claim(planned)
    meta = {
        "config": job.cfg.to_dict(),
        "seed": int(job.seed),
        "format": job.fmt,
        "save_clean": job.save_clean,
    }
    _check_run_config(out, meta)

    todo = []
    for im in coco["images"]:
        rel = rel_of[im["file_name"]]
        done = (out / "images" / rel).is_file() and (not job.save_clean or (out / "clean" / rel).is_file())
        if done:
            report.skipped += 1
        else:
            todo.append((im["id"], im["file_name"]))

    init_args = (job.cfg.to_dict(), str(job.images), str(out), int(job.seed), job.fmt, job.save_clean)
    bar = tqdm(total=len(todo), desc="synth", unit="img", disable=not progress)
    try:
        if job.workers <= 1 or len(todo) <= 1:
            _init_worker(*init_args)
            results = map(_process_one, todo)
            for name, err in results:
                _account(report, name, err, bar)
        else:
            with ProcessPoolExecutor(
                job.workers,
                mp_context=get_context("spawn"),
                initializer=_init_worker,
                initargs=(*init_args, os.getpid()),
            ) as pool:
                for name, err in pool.map(_process_one, todo, chunksize=4):
                    _account(report, name, err, bar)
    finally:
        bar.close()
    failed = {name for name, _ in report.failed}
    kept = {im["file_name"] for im in coco["images"]} - failed
    new_coco = _output_annotations(coco, rel_of, kept, packed=job.cfg.output == "packed")
    atomic_write_json(out / Path(job.annotations).name, new_coco)
    return report


def _account(report: SynthReport, name: str, err: str | None, bar) -> None:
    if err is None:
        report.written += 1
    else:
        report.failed.append((name, err))
        bar.write(f"error: {err}")
    bar.update(1)
