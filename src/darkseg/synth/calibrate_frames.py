"""Calibration inputs: find, read, check and group dark frames and flat fields (``darkseg calibrate``).

Accepted files:

* camera RAW (DNG, CR2, NEF, ARW, ... anything rawpy/LibRaw decodes as a 2x2 Bayer mosaic): black level per
  CFA colour, white level (``camera_white_level_per_channel`` when the file has it) and CFA from LibRaw; ISO
  from LibRaw or, for TIFF-based files, from the EXIF ``ISOSpeedRatings`` tag;
* 16-bit (or 8-bit) single-channel PNG/TIFF Bayer mosaics: levels and CFA from a JSON sidecar
  ``<file stem>.json`` or ``raw.json`` in the file's folder or any folder above it up to the root given
  (keys ``black_level`` (number or 4 numbers R, G1, B, G2), ``white_level``, ``cfa_pattern``, optional
  ``iso`` and ``camera``), or from the command-line defaults; a TIFF's own ISO and make/model tags are
  used when the sidecar does not give them.

ISO: the file's metadata; otherwise the nearest folder named ``ISO<n>`` (or just ``<n>``) above it. When
both exist and disagree, the metadata wins and the file is reported as misfiled.

Checks (the file is named and left out, the rest goes on): unreadable; another camera (its model, mosaic
size, CFA or levels differ from the majority of the files); no ISO; a flat with more than 1 % clipped
pixels (saturated); a dark frame whose noise or mean is unlike the other dark frames of its ISO (a frame
of another ISO, or light leaking in; needs 3 or more frames to tell).

Only a central crop of ``crop x crop`` packed pixels is kept (vignetting and amplifier glow are worst at
the edges; the crop also keeps memory at 2 bytes per kept pixel).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from darkseg.raw.bayer import pack_bayer
from darkseg.raw.reader import CAMERA_RAW_EXTENSIONS, RawFormatError
from darkseg.raw.tiff_tags import read_tiff_info

__all__ = ["CalFrame", "FrameSet", "IMAGE_EXTENSIONS", "load_frames", "iso_from_path", "group_levels"]

IMAGE_EXTENSIONS = frozenset({".png", ".tif", ".tiff", ".pgm"})
#: a flat with more clipped pixels than this fraction is left out as saturated
MAX_CLIPPED = 0.01
#: a dark frame whose robust noise differs from its ISO's median by more than this (log ratio) is left out
DARK_OUTLIER_LOG = 0.15
_ISO_DIR = re.compile(r"^(?:iso[ _-]?)?(\d+(?:\.\d+)?)$", re.IGNORECASE)


@dataclass
class CalFrame:
    """One frame: ``packed`` uint16 ``(h, w, 4)`` central crop of the raw DN (black not subtracted)."""

    path: str
    kind: str  # "dark" or "flat"
    packed: np.ndarray
    black: np.ndarray  # (4,) DN, R G1 B G2
    white: float
    pattern: str
    iso: float | None
    camera: str | None
    mosaic_shape: tuple[int, int]
    clipped: float
    note: str = ""

    @property
    def saturation(self) -> float:
        return float(self.white - self.black.max())

    def dn(self) -> np.ndarray:
        """float64 ``(h, w, 4)`` DN above the nominal black level."""
        return self.packed.astype(np.float64) - self.black.reshape(1, 1, 4)

    def signature(self) -> tuple:
        return (
            self.camera,
            self.mosaic_shape,
            self.pattern,
            round(self.white),
            tuple(round(b) for b in self.black),
        )


@dataclass
class FrameSet:
    """Usable frames by ISO and the files left out with the reason."""

    darks: dict[float, list[CalFrame]] = field(default_factory=dict)
    flats: dict[float, list[CalFrame]] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    camera: str | None = None
    pattern: str = "RGGB"
    black: np.ndarray = field(default_factory=lambda: np.zeros(4))
    white: float = 0.0

    @property
    def isos(self) -> list[float]:
        return sorted(set(self.darks) | set(self.flats))


def iso_from_path(path: Path, root: Path) -> float | None:
    """ISO of the nearest folder named ``ISO<n>`` / ``<n>`` between ``path`` and ``root``."""
    try:
        parts = path.resolve().relative_to(root.resolve()).parts[:-1]
    except ValueError:
        parts = path.parent.parts
    for name in reversed(parts):
        m = _ISO_DIR.match(name)
        if m:
            return float(m.group(1))
    m = _ISO_DIR.match(root.name)
    return float(m.group(1)) if m else None


def _find_files(root: Path) -> list[Path]:
    exts = CAMERA_RAW_EXTENSIONS | IMAGE_EXTENSIONS
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)


def _sidecar(path: Path, root: Path) -> dict[str, Any]:
    """Merged sidecar metadata: ``raw.json`` files from ``root`` down, then ``<stem>.json``."""
    found: list[Path] = []
    d = path.parent
    root_r = root.resolve() if root.is_dir() else root.parent.resolve()
    while True:
        if (d / "raw.json").is_file():
            found.append(d / "raw.json")
        if d.resolve() == root_r or d.parent == d:
            break
        d = d.parent
    meta: dict[str, Any] = {}
    for p in reversed(found):
        meta.update(json.loads(p.read_text(encoding="utf-8")))
    own = path.with_suffix(".json")
    if own.is_file():
        meta.update(json.loads(own.read_text(encoding="utf-8")))
    return meta


def _crop(mosaic: np.ndarray, crop: int | None) -> np.ndarray:
    """Central ``2 crop x 2 crop`` window of a mosaic at even offsets (= a ``crop x crop`` packed crop),
    taken before packing so that a large frame is never copied whole."""
    h, w = mosaic.shape[0] // 2, mosaic.shape[1] // 2
    if not crop:
        return mosaic[: 2 * h, : 2 * w]
    ch, cw = min(crop, h), min(crop, w)
    t, l = (h - ch) // 2, (w - cw) // 2
    return mosaic[2 * t : 2 * (t + ch), 2 * l : 2 * (l + cw)]


def _read_camera_raw(path: Path, crop: int | None) -> tuple:
    import rawpy

    from darkseg.raw.reader import _pattern_from_rawpy

    try:
        raw = rawpy.imread(str(path))
    except (rawpy.LibRawError, OSError, ValueError) as exc:
        raise RawFormatError(f"LibRaw cannot decode it ({type(exc).__name__}: {exc})") from exc
    with raw:
        if raw.raw_type != rawpy.RawType.Flat:
            raise RawFormatError("not a Bayer mosaic (several values per pixel)")
        name, offs = _pattern_from_rawpy(path, raw.raw_pattern, raw.color_desc)
        vis = raw.raw_image_visible
        shape = (vis.shape[0] // 2 * 2, vis.shape[1] // 2 * 2)
        mosaic = np.array(_crop(vis, crop), dtype=np.uint16)
        cfa = np.asarray(raw.raw_pattern)
        black_c = np.asarray(raw.black_level_per_channel, dtype=np.float64)
        black = np.array([black_c[int(cfa[offs[k]])] for k in ("R", "G1", "B", "G2")])
        wl = raw.camera_white_level_per_channel
        white = float(max(wl)) if wl is not None and max(wl) > 0 else float(raw.white_level)
        other = getattr(raw, "other", None)
        iso = float(getattr(other, "iso_speed", 0.0) or 0.0) if other is not None else 0.0
    tinfo = read_tiff_info(path)
    if iso <= 0:
        iso = tinfo.iso or 0.0
    return mosaic, shape, black, white, name, (iso if iso > 0 else None), tinfo.camera


def _read_image(path: Path, root: Path, defaults: dict[str, Any], crop: int | None) -> tuple:
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if img is None:
        raise RawFormatError("not a decodable image")
    if img.ndim != 2 or img.dtype not in (np.uint8, np.uint16):
        raise RawFormatError(f"not a single-channel 8/16-bit Bayer mosaic (shape {img.shape}, {img.dtype})")
    meta = {**defaults, **{k: v for k, v in _sidecar(path, root).items() if v is not None}}
    missing = [k for k in ("black_level", "white_level") if meta.get(k) is None]
    if missing:
        raise RawFormatError(
            f"no {' / '.join(missing)}: give a raw.json sidecar or --black/--white for PNG/TIFF mosaics"
        )
    black = np.broadcast_to(np.asarray(meta["black_level"], dtype=np.float64), (4,)).copy()
    iso, camera = meta.get("iso"), meta.get("camera")
    if path.suffix.lower() in (".tif", ".tiff") and (not iso or not camera):
        tags = read_tiff_info(path)  # a TIFF may carry EXIF ISO and make/model
        iso, camera = iso or tags.iso, camera or tags.camera
    return (
        _crop(img, crop),
        (img.shape[0] // 2 * 2, img.shape[1] // 2 * 2),
        black,
        float(meta["white_level"]),
        str(meta.get("cfa_pattern") or "RGGB").upper(),
        float(iso) if iso else None,
        camera,
    )


def read_frame(
    path: Path, root: Path, kind: str, crop: int | None, defaults: dict[str, Any] | None = None
) -> CalFrame:
    """Read one calibration frame (raises :class:`RawFormatError` / ``OSError`` / ``ValueError``)."""
    if path.suffix.lower() in CAMERA_RAW_EXTENSIONS:
        mosaic, shape, black, white, pattern, iso, camera = _read_camera_raw(path, crop)
    else:
        mosaic, shape, black, white, pattern, iso, camera = _read_image(path, root, defaults or {}, crop)
    if np.any(black >= white):
        raise RawFormatError(f"black level {black.tolist()} >= white level {white}")
    packed = pack_bayer(mosaic, pattern)
    clipped = float(np.mean(packed >= white - 0.5)) if packed.size else 0.0
    folder_iso = iso_from_path(path, root)
    note = ""
    if iso is None:
        iso = folder_iso
    elif folder_iso is not None and folder_iso != iso:
        note = f"filed under ISO {folder_iso:g} but its metadata says ISO {iso:g}: used as ISO {iso:g}"
    return CalFrame(
        path=str(path),
        kind=kind,
        packed=np.ascontiguousarray(packed, dtype=np.uint16),
        black=black,
        white=white,
        pattern=pattern,
        iso=iso,
        camera=camera,
        mosaic_shape=(int(shape[0]), int(shape[1])),
        clipped=clipped,
        note=note,
    )


def _dark_outliers(frames: list[CalFrame]) -> list[tuple[CalFrame, str]]:
    """Dark frames whose robust noise level or mean is far from the others of the same ISO."""
    if len(frames) < 3:
        return []
    stds, means = [], []
    for f in frames:
        x = f.dn()[::2, ::2]
        d = x - np.median(x, axis=(0, 1))
        stds.append(1.4826 * float(np.median(np.abs(d))) + 1e-3)
        means.append(float(np.median(x)))
    ls = np.log(stds)
    med_s, med_m = float(np.median(ls)), float(np.median(means))
    out = []
    for f, s, m in zip(frames, ls, means):
        if abs(s - med_s) > DARK_OUTLIER_LOG:
            out.append(
                (f, f"noise {np.exp(s):.3g} DN unlike the other dark frames of ISO {f.iso:g} "
                f"({np.exp(med_s):.3g} DN): a frame of another ISO?")
            )  # fmt: skip
        elif abs(m - med_m) > 5 * np.exp(med_s) + 2:
            out.append((f, f"mean {m:.1f} DN above black, the others {med_m:.1f} DN: light leak?"))
    return out


def load_frames(
    dark: str | os.PathLike | None,
    flat: str | os.PathLike | None,
    crop: int | None = 512,
    defaults: dict[str, Any] | None = None,
    progress: bool = True,
) -> FrameSet:
    """Read every frame under ``dark`` and ``flat``, check them and group them by ISO."""
    from tqdm import tqdm

    jobs: list[tuple[Path, Path, str]] = []
    for root, kind in ((dark, "dark"), (flat, "flat")):
        if root is not None:
            r = Path(root)
            jobs += [(p, r, kind) for p in _find_files(r)]
    fs = FrameSet()
    frames: list[CalFrame] = []
    for path, root, kind in tqdm(jobs, desc="reading frames", unit="file", disable=not progress):
        try:
            frames.append(read_frame(path, root, kind, crop, defaults))
        except (RawFormatError, OSError, ValueError) as exc:
            fs.skipped.append((str(path), f"unreadable: {exc}"))
    if not frames:
        return fs
    sig = Counter(f.signature() for f in frames).most_common(1)[0][0]
    fs.camera, _, fs.pattern, _, _ = sig
    ref = next(f for f in frames if f.signature() == sig)
    fs.black, fs.white = ref.black, ref.white
    for f in frames:
        if f.signature() != sig:
            fs.skipped.append((f.path, f"another camera: {_describe(f)} vs {_describe(ref)}"))
            continue
        if f.iso is None:
            fs.skipped.append((f.path, "no ISO in its metadata and not under an ISO<n>/ folder"))
            continue
        if f.kind == "flat" and f.clipped > MAX_CLIPPED:
            fs.skipped.append((f.path, f"saturated: {100 * f.clipped:.1f} % of the crop is clipped"))
            continue
        if f.note:
            fs.notes.append(f"{f.path}: {f.note}")
        (fs.darks if f.kind == "dark" else fs.flats).setdefault(f.iso, []).append(f)
    for iso in list(fs.darks):
        for f, why in _dark_outliers(fs.darks[iso]):
            fs.skipped.append((f.path, why))
            fs.darks[iso].remove(f)
    return fs


def _describe(f: CalFrame) -> str:
    cam = f.camera or "unknown model"
    size = f"{f.mosaic_shape[1]}x{f.mosaic_shape[0]}"
    return f"{cam}, {size} {f.pattern}, black {f.black.tolist()}, white {f.white:g}"


def group_levels(frames: list[CalFrame], tol: float = 0.03) -> list[list[CalFrame]]:
    """Flat frames grouped into exposure levels: sorted by mean signal, a new level where the mean moves
    by more than ``tol`` (relative) from the level's first frame."""
    means = [(float(np.mean(f.dn())), f) for f in frames]
    means.sort(key=lambda t: t[0])
    levels: list[list[CalFrame]] = []
    first = None
    for m, f in means:
        if first is None or abs(m - first) > tol * max(abs(first), 1.0):
            levels.append([f])
            first = m
        else:
            levels[-1].append(f)
    return levels


def calibrate_frameset(
    fs: FrameSet,
    name: str,
    tile: int = 32,
    seed: int = 0,
    progress: bool = True,
) -> tuple[dict[str, Any], list, dict]:
    """Per-ISO analysis of a :class:`FrameSet` and the profile (see :mod:`darkseg.synth.calibrate`).

    An ISO needs dark frames (for the read/row noise) and flat frames (for K); an ISO with darks but no
    flats gets K interpolated linearly in ISO from the measured ones (reported). Raises
    :class:`~darkseg.synth.calibrate.CalibrationError` naming the ISO when its frames cannot give a fit.
    Returns the profile dict, the per-ISO results and the cross-ISO fits.
    """
    from tqdm import tqdm

    from darkseg.synth.calibrate import (
        CalibrationError,
        GainResult,
        IsoResult,
        analyse_darks,
        build_profile,
        estimate_gain,
    )

    rng = np.random.default_rng(seed)
    if not fs.darks:
        raise CalibrationError("no usable dark frames")
    gains: dict[float, GainResult] = {}
    darks: dict[float, tuple] = {}
    saturation = float(fs.white - fs.black.max())
    for iso in tqdm(fs.isos, desc="calibrating", unit="ISO", disable=not progress):
        bias = mask = None
        if iso in fs.darks:
            try:
                dres, mask = analyse_darks([f.dn() for f in fs.darks[iso]], rng)
            except CalibrationError as exc:
                raise CalibrationError(f"ISO {iso:g}: {exc}") from None
            darks[iso] = (dres, mask)
            bias = np.asarray(dres.bias)
        if iso in fs.flats:
            levels = [[f.dn() for f in lv] for lv in group_levels(fs.flats[iso])]
            try:
                gains[iso] = estimate_gain(levels, saturation, bias, mask, tile)
            except CalibrationError as exc:
                n = len(fs.flats[iso])
                raise CalibrationError(
                    f"ISO {iso:g}: {exc} ({n} usable flat frame(s) in {len(levels)} exposure level(s); "
                    "shoot 2 or more frames at each of 4 or more levels)"
                ) from None
    if not gains:
        raise CalibrationError("no usable flat frames: the system gain K cannot be measured")
    missing = sorted(set(darks) - set(gains))
    interp = {}
    if missing:
        iso_m = np.array(sorted(gains))
        k_m = np.array([gains[i].K for i in iso_m])
        if len(iso_m) >= 2:
            alpha, beta = np.polyfit(iso_m, k_m, 1)
        else:
            alpha, beta = k_m[0] / iso_m[0], 0.0
        for iso in missing:
            k = float(alpha * iso + beta)
            if k <= 0:
                raise CalibrationError(f"ISO {iso:g}: no flat frames and K cannot be interpolated")
            interp[iso] = k
            fs.notes.append(f"ISO {iso:g}: no flat frames; K = {k:.4g} interpolated linearly in ISO")
            gains[iso] = GainResult(k, [k] * 4, [0.0] * 4, [float("nan")] * 4, "interpolated", 0, 0, 0)
    results = [
        IsoResult(
            iso=iso,
            gain=gains[iso],
            dark=darks[iso][0],
            n_dark_files=len(fs.darks.get(iso, [])),
            n_flat_files=len(fs.flats.get(iso, [])),
        )
        for iso in sorted(darks)
    ]
    crop = fs.darks[results[0].iso][0].packed.shape[:2]
    profile, fits = build_profile(
        name,
        fs.pattern,
        fs.black.tolist(),
        fs.white,
        results,
        extra={
            "camera_model": fs.camera,
            "crop_packed": [int(crop[0]), int(crop[1])],
            "flat_only_iso": sorted(set(gains) - set(darks) - set(interp)),
            "flat_only_K": {f"{i:g}": gains[i].K for i in sorted(set(gains) - set(darks))},
            "skipped_files": [{"path": p, "reason": r} for p, r in fs.skipped],
            "notes": list(fs.notes),
        },
    )
    return profile, results, fits
