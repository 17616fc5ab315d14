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

Sidecars are checked when read: a JSON object; ``black_level`` one finite number >= 0 or four;
``white_level`` a finite number > 0; ``cfa_pattern`` one of RGGB, BGGR, GRBG, GBRG; ``iso`` a finite number
> 0; ``camera`` a string. A sidecar that breaks a rule (or is not JSON) makes the files it describes
skipped, each with the reason naming the sidecar; the other files go on. A ``--black/--white/--cfa``
value that differs from a sidecar's value for the same file is refused (:class:`LevelConflictError`):
both claim to describe the file, and silently preferring either would calibrate the wrong levels.

ISO: the file's metadata; otherwise the nearest folder named ``ISO<n>``, ``ISO_<n>``, ``ISO <n>`` (or
just ``<n>``) above it, ``n > 0``; a folder whose name means an ISO but gives none (``ISO0``,
``ISO-400``) makes its files skipped with the folder named. When metadata and folder both exist and
disagree, the metadata wins and the file is reported as misfiled.

Checks (the file is named and left out, the rest goes on): unreadable; another camera (its model, mosaic
size, CFA or levels differ from the majority of the files); no ISO; a flat with more than 1 % clipped
pixels (saturated); a dark frame whose noise or mean is unlike the other dark frames of its ISO (a frame
of another ISO, or light leaking in; needs 3 or more frames to tell; the noise is measured as the spread of
the upper half, ``q84 - q50``, so dark frames clipped at the black level, as some cameras store them,
compare like any others); a crop smaller than :data:`MIN_CROP` packed pixels per side.

Only a central crop of ``crop x crop`` packed pixels is kept (vignetting and amplifier glow are worst at
the edges; the crop also keeps memory at 2 bytes per kept pixel).
"""

from __future__ import annotations

import math
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
from darkseg.synth.calibrate import MIN_PTC_POINTS, CalibrationError

__all__ = [
    "CalFrame",
    "FrameSet",
    "IMAGE_EXTENSIONS",
    "MIN_CROP",
    "LevelConflictError",
    "load_frames",
    "iso_from_path",
    "check_levels",
    "group_levels",
]

IMAGE_EXTENSIONS = frozenset({".png", ".tif", ".tiff", ".pgm"})
#: a flat with more clipped pixels than this fraction is left out as saturated
MAX_CLIPPED = 0.01
#: a dark frame whose robust noise differs from its ISO's median by more than this (log ratio) is left out
DARK_OUTLIER_LOG = 0.15
#: smallest usable central crop, packed pixels per side (row statistics and tiles need room)
MIN_CROP = 16
_ISO_DIR = re.compile(r"^(?:iso[ _]?)?(\d+(?:\.\d+)?)$", re.IGNORECASE)
#: a name that means an ISO but is not a valid one (``ISO-400``, ``ISO +100``, ``ISO_0.``)
_ISO_LIKE = re.compile(r"^iso[\s_+-]*[+-]?\d", re.IGNORECASE)
_CFA_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")


class FrameMetadataError(RawFormatError):
    """A file's levels, ISO or sidecar are unusable (the file is skipped with this reason)."""


class LevelConflictError(CalibrationError):
    """A command-line level (``--black/--white/--cfa``) differs from a sidecar's for the same file."""


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
    found: dict[str, int] = field(default_factory=dict)  # "dark"/"flat" -> calibration files found
    roots: dict[str, str] = field(default_factory=dict)  # "dark"/"flat" -> the folder given
    camera: str | None = None
    pattern: str = "RGGB"
    black: np.ndarray = field(default_factory=lambda: np.zeros(4))
    white: float = 0.0

    @property
    def isos(self) -> list[float]:
        return sorted(set(self.darks) | set(self.flats))


def _folder_iso(name: str) -> float | None:
    """ISO of a folder name ``ISO<n>`` / ``ISO_<n>`` / ``ISO <n>`` / ``<n>``; None for other names.

    Raises :class:`FrameMetadataError` for a name that means an ISO but gives no ISO > 0 (``ISO0``,
    ``ISO-400``, ``0``); other names (``isolated``) are not ISO folders."""
    m = _ISO_DIR.match(name)
    if m:
        iso = float(m.group(1))
        if iso > 0:
            return iso
        raise FrameMetadataError(f"folder {name!r}: an ISO must be > 0")
    if _ISO_LIKE.match(name):
        raise FrameMetadataError(
            f"folder {name!r}: not an ISO folder name (ISO<n>, ISO_<n> or <n> with n > 0)"
        )
    return None


def iso_from_path(path: Path, root: Path) -> float | None:
    """ISO of the nearest folder named ``ISO<n>`` / ``<n>`` between ``path`` and ``root`` (or ``root``
    itself); raises :class:`FrameMetadataError` naming a folder like ``ISO0`` or ``ISO-400``."""
    try:
        parts = path.resolve().relative_to(root.resolve()).parts[:-1]
    except ValueError:
        parts = path.parent.parts
    for name in [*reversed(parts), root.name]:
        iso = _folder_iso(name)
        if iso is not None:
            return iso
    return None


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_levels(meta: dict[str, Any], where: str, names: dict[str, str] | None = None) -> None:
    """Check the level / ISO / camera entries of calibration metadata (a sidecar or the command line).

    ``black_level``: a finite number >= 0, or 4 of them (R, G1, B, G2); ``white_level``: a finite number
    > 0; ``cfa_pattern``: RGGB, BGGR, GRBG or GBRG; ``iso``: a finite number > 0; ``camera``: a string.
    Absent or None entries are not checked. ``names`` renames keys in the messages (``--black``).
    Raises :class:`FrameMetadataError` starting with ``where``.
    """
    names = names or {}

    def bad(key: str, rule: str) -> FrameMetadataError:
        value = meta[key]
        shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
        return FrameMetadataError(f"{where}: {names.get(key, key)} must be {rule}, got {shown}")

    black = meta.get("black_level")
    if black is not None:
        values = black if isinstance(black, (list, tuple)) else [black]
        ok = all(_is_number(v) and math.isfinite(v) and v >= 0 for v in values)
        if len(values) not in (1, 4) or not ok:
            raise bad("black_level", "one finite number >= 0 or 4 of them (R, G1, B, G2)")
    white = meta.get("white_level")
    if white is not None and not (_is_number(white) and math.isfinite(white) and white > 0):
        raise bad("white_level", "a finite number > 0")
    cfa = meta.get("cfa_pattern")
    if cfa is not None and not (isinstance(cfa, str) and cfa.upper() in _CFA_PATTERNS):
        raise bad("cfa_pattern", f"one of {', '.join(_CFA_PATTERNS)}")
    iso = meta.get("iso")
    if iso is not None and not (_is_number(iso) and math.isfinite(iso) and iso > 0):
        raise bad("iso", "a finite number > 0")
    camera = meta.get("camera")
    if camera is not None and not isinstance(camera, str):
        raise bad("camera", "a string")


def _find_files(root: Path) -> list[Path]:
    exts = CAMERA_RAW_EXTENSIONS | IMAGE_EXTENSIONS
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in exts)


def _read_sidecar(path: Path) -> dict[str, Any]:
    """One sidecar JSON file, checked (:func:`check_levels`); raises :class:`FrameMetadataError` naming it."""
    from darkseg.utils.io import parse_json

    try:
        data = parse_json(path.read_text(encoding="utf-8"), f"sidecar {path}")
    except (OSError, UnicodeDecodeError) as exc:
        raise FrameMetadataError(f"sidecar {path}: cannot be read ({type(exc).__name__}: {exc})") from None
    except ValueError as exc:
        raise FrameMetadataError(str(exc)) from None
    if not isinstance(data, dict):
        raise FrameMetadataError(f"sidecar {path}: must be a JSON object, got a {type(data).__name__}")
    check_levels(data, f"sidecar {path}")
    return data


def _sidecar(path: Path, root: Path) -> tuple[dict[str, Any], dict[str, Path]]:
    """Merged sidecar metadata: ``raw.json`` files from ``root`` down, then ``<stem>.json``; and for each
    key the sidecar that gave it."""
    found: list[Path] = []
    d = path.parent
    root_r = root.resolve() if root.is_dir() else root.parent.resolve()
    while True:
        if (d / "raw.json").is_file():
            found.append(d / "raw.json")
        if d.resolve() == root_r or d.parent == d:
            break
        d = d.parent
    own = path.with_suffix(".json")
    meta: dict[str, Any] = {}
    origin: dict[str, Path] = {}
    for p in [*reversed(found), *([own] if own.is_file() else [])]:
        for key, value in _read_sidecar(p).items():
            if value is not None:
                meta[key], origin[key] = value, p
    return meta, origin


def _check_conflicts(
    path: Path, defaults: dict[str, Any], side: dict[str, Any], origin: dict[str, Path]
) -> None:
    """Refuse a command-line level that differs from a sidecar's for ``path``."""
    flags = {"black_level": "--black", "white_level": "--white", "cfa_pattern": "--cfa"}
    for key, flag in flags.items():
        given, own = defaults.get(key), side.get(key)
        if given is None or own is None:
            continue
        if key == "cfa_pattern":
            same = str(given).upper() == str(own).upper()
        else:
            a, b = np.atleast_1d(np.asarray(given, np.float64)), np.atleast_1d(np.asarray(own, np.float64))
            same = bool(np.all(np.broadcast_to(a, (4,)) == np.broadcast_to(b, (4,))))
        if not same:
            shown = " ".join(f"{v:g}" for v in given) if isinstance(given, (list, tuple)) else given
            raise LevelConflictError(
                f"{flag} {shown} conflicts with {key} {own} in {origin[key]} (for {path}): remove the flag "
                "or fix the sidecar"
            )


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
    side, origin = _sidecar(path, root)
    _check_conflicts(path, defaults, side, origin)
    meta = {**{k: v for k, v in defaults.items() if v is not None}, **side}
    missing = [k for k in ("black_level", "white_level") if meta.get(k) is None]
    if missing:
        raise RawFormatError(
            f"no {' / '.join(missing)}: give a raw.json sidecar or --black/--white for PNG/TIFF mosaics"
        )
    check_levels(meta, str(path))
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
    if min(mosaic.shape[:2]) < 2 * MIN_CROP:
        h, w = mosaic.shape[0] // 2, mosaic.shape[1] // 2
        raise RawFormatError(f"too small: {w}x{h} packed pixels (need {MIN_CROP}x{MIN_CROP} or more)")
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


def _unit_quantiles(values: np.ndarray, probs: tuple[float, ...]) -> list[float]:
    """Quantiles of integer-valued data with each value ``v`` spread uniformly over ``[v - 0.5, v + 0.5]``
    (continuous in the data, unlike the plain quantiles of a few distinct integers)."""
    v, counts = np.unique(np.asarray(values).ravel(), return_counts=True)
    cdf = np.cumsum(counts) / counts.sum()
    out = []
    for p in probs:
        k = min(int(np.searchsorted(cdf, p)), v.size - 1)
        below = cdf[k - 1] if k > 0 else 0.0
        out.append(float(v[k] - 0.5 + (p - below) / (cdf[k] - below)))
    return out


def _dark_outliers(frames: list[CalFrame]) -> list[tuple[CalFrame, str]]:
    """Dark frames whose robust noise level or mean is far from the others of the same ISO.

    The noise level is the spread of the upper half (``q84 - q50`` per channel, the standard deviation
    for symmetric noise), which a clip at the black level does not touch while fewer than half of the
    pixels are clipped (and touches alike in every frame when more are). The quantiles treat each
    integer DN as spread over its unit interval, so a noise of 1-2 DN is measured without steps."""
    if len(frames) < 3:
        return []
    stds, means = [], []
    for f in frames:
        x = f.dn()[::2, ::2]
        q = np.array([_unit_quantiles(x[:, :, c], (0.5, 0.8413)) for c in range(x.shape[2])])
        stds.append(float(np.mean(q[:, 1] - q[:, 0])) + 1e-3)
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
    fs = FrameSet()
    for root, kind in ((dark, "dark"), (flat, "flat")):
        if root is not None:
            r = Path(root)
            files = _find_files(r)
            fs.found[kind], fs.roots[kind] = len(files), str(r)
            jobs += [(p, r, kind) for p in files]
    frames: list[CalFrame] = []
    for path, root, kind in tqdm(jobs, desc="reading frames", unit="file", disable=not progress):
        try:
            frames.append(read_frame(path, root, kind, crop, defaults))
        except FrameMetadataError as exc:
            fs.skipped.append((str(path), str(exc)))
        except LevelConflictError:
            raise
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


def _none_usable(fs: FrameSet, kind: str) -> str:
    """Why there are no usable frames of ``kind``: no such folder given, no files in it, or all skipped."""
    root = fs.roots.get(kind)
    if root is None:
        return f"no usable {kind} frames: no --{kind} folder given"
    if not fs.found.get(kind):
        exts = ", ".join(sorted(CAMERA_RAW_EXTENSIONS | IMAGE_EXTENSIONS))
        return f"no usable {kind} frames: {root} holds no calibration files ({exts})"
    return f"no usable {kind} frames: all {fs.found[kind]} file(s) under {root} were skipped (reasons above)"


def _flat_advice(frames: list[CalFrame], levels: list, tile: int) -> str:
    """What to change when an ISO's flats give no gain fit: the tile size or the shoot."""
    h, w = frames[0].packed.shape[:2]
    tiles = (h // tile) * (w // tile)
    if tiles < MIN_PTC_POINTS:
        return (
            f"the {w}x{h} crop holds {tiles} tile(s) of {tile}x{tile} per frame: give a smaller --tile or a "
            "larger --crop"
        )
    return (
        f"{len(frames)} usable flat frame(s) in {len(levels)} exposure level(s); shoot 2 or more frames at "
        "each of 4 or more levels"
    )


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
    progress: bool = True,
) -> tuple[dict[str, Any], list, dict]:
    """Per-ISO analysis of a :class:`FrameSet` and the profile (see :mod:`darkseg.synth.calibrate`).

    An ISO needs dark frames (for the read/row noise) and flat frames (for K); an ISO with darks but no
    flats gets K interpolated linearly in ISO from the measured ones (reported). Raises
    :class:`~darkseg.synth.calibrate.CalibrationError` naming the ISO when its frames cannot give a fit.
    Raises it too when a whole kind of frame is missing (naming the folder: no files in it, or every file
    skipped) and when ``tile`` does not fit the frames' crop. Returns the profile dict, the per-ISO
    results and the cross-ISO fits.
    """
    from tqdm import tqdm

    from darkseg.synth.calibrate import (
        MIN_TILE,
        GainResult,
        IsoResult,
        analyse_darks,
        build_profile,
        estimate_gain,
    )

    if not fs.darks:
        raise CalibrationError(_none_usable(fs, "dark"))
    if not fs.flats:
        raise CalibrationError(_none_usable(fs, "flat") + ": the system gain K cannot be measured")
    if tile < MIN_TILE:
        raise CalibrationError(f"--tile must be >= {MIN_TILE} packed pixels, got {tile}")
    crop = min(min(f.packed.shape[:2]) for lv in fs.flats.values() for f in lv)
    if tile > crop:
        raise CalibrationError(
            f"--tile {tile} is larger than the {crop}-pixel crop of the flat frames: give --tile {crop} or "
            "less, or a larger --crop"
        )
    gains: dict[float, GainResult] = {}
    darks: dict[float, tuple] = {}
    saturation = float(fs.white - fs.black.max())
    for iso in tqdm(fs.isos, desc="calibrating", unit="ISO", disable=not progress):
        bias = mask = None
        if iso in fs.darks:
            try:
                dres, mask = analyse_darks([f.dn() for f in fs.darks[iso]])
            except CalibrationError as exc:
                raise CalibrationError(f"ISO {iso:g}: {exc}") from None
            darks[iso] = (dres, mask)
            bias = np.asarray(dres.bias)
        if iso in fs.flats:
            levels = [[f.dn() for f in lv] for lv in group_levels(fs.flats[iso])]
            try:
                gains[iso] = estimate_gain(levels, saturation, bias, mask, tile)
            except CalibrationError as exc:
                advice = _flat_advice(fs.flats[iso], levels, tile)
                raise CalibrationError(f"ISO {iso:g}: {exc} ({advice})") from None
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
