"""A small reader for the TIFF/EXIF/DNG tags of TIFF-based files (DNG, CR2, NEF, ARW, PEF, TIFF, ...).

Only what calibration needs: ISO, make/model, exposure time, and the DNG ``NoiseProfile`` with the
black/white levels of the raw image. Reads the IFD chain, the EXIF IFD and SubIFDs; never decodes
pixel data. Non-TIFF containers (CR3, RAF, ...) give an empty result.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TiffInfo", "read_tiff_info", "TAG"]

TAG = {
    "NewSubfileType": 254,
    "Make": 271,
    "Model": 272,
    "SubIFDs": 330,
    "ExposureTime": 33434,
    "ExifIFD": 34665,
    "ISOSpeedRatings": 34855,
    "UniqueCameraModel": 50708,
    "BlackLevel": 50714,
    "WhiteLevel": 50717,
    "CFAPattern": 33422,
    "NoiseProfile": 51041,
}
_TYPES = {  # TIFF type -> (struct code, size)
    1: ("B", 1), 2: ("c", 1), 3: ("H", 2), 4: ("I", 4), 5: ("II", 8), 6: ("b", 1), 7: ("B", 1),
    8: ("h", 2), 9: ("i", 4), 10: ("ii", 8), 11: ("f", 4), 12: ("d", 8), 13: ("I", 4), 16: ("Q", 8),
}  # fmt: skip


@dataclass
class TiffInfo:
    """Tags found. ``raw_ifd``: tags of the full-resolution raw image (NewSubfileType 0 with a CFA or
    the first IFD), ``ifds``: every IFD read (tag id -> value)."""

    make: str | None = None
    model: str | None = None
    iso: float | None = None
    exposure_time: float | None = None
    noise_profile: list[float] | None = None
    black_level: list[float] | None = None
    white_level: float | None = None
    ifds: list[dict[int, Any]] = field(default_factory=list)

    @property
    def camera(self) -> str | None:
        parts = [p for p in (self.make, self.model) if p]
        return " ".join(parts) if parts else None


def _read_ifd(f, off: int, endian: str, big: bool) -> tuple[dict[int, Any], int]:
    f.seek(off)
    if big:
        (n,) = struct.unpack(endian + "Q", f.read(8))
        entry, cnt_fmt, inline = 20, "Q", 8
    else:
        (n,) = struct.unpack(endian + "H", f.read(2))
        entry, cnt_fmt, inline = 12, "I", 4
    if n > 4096:
        raise ValueError("implausible IFD entry count")
    raw = f.read(entry * n)
    nxt = struct.unpack(endian + ("Q" if big else "I"), f.read(8 if big else 4))[0]
    tags: dict[int, Any] = {}
    for i in range(n):
        e = raw[i * entry : (i + 1) * entry]
        tag, typ = struct.unpack(endian + "HH", e[:4])
        (count,) = struct.unpack(endian + cnt_fmt, e[4 : 4 + (8 if big else 4)])
        if typ not in _TYPES or count > 1 << 20:
            continue
        code, size = _TYPES[typ]
        nbytes = size * count
        data = e[4 + (8 if big else 4) :]
        if nbytes > inline:
            (ptr,) = struct.unpack(endian + ("Q" if big else "I"), data[:inline])
            here = f.tell()
            f.seek(ptr)
            data = f.read(nbytes)
            f.seek(here)
        data = data[:nbytes]
        if len(data) < nbytes:
            continue
        if typ == 2:
            tags[tag] = data.split(b"\0", 1)[0].decode("latin-1").strip()
            continue
        rational = code in ("II", "ii")
        vals = struct.unpack(endian + code[0] * (count * 2 if rational else count), data)
        if rational:
            vals = tuple(vals[j] / vals[j + 1] if vals[j + 1] else 0.0 for j in range(0, len(vals), 2))
        tags[tag] = vals
    return tags, nxt


def read_tiff_info(path: str | os.PathLike) -> TiffInfo:
    """Tags of a TIFF-based file; an empty :class:`TiffInfo` when the file is not TIFF-structured."""
    info = TiffInfo()
    try:
        with open(path, "rb") as f:
            head = f.read(16)
            if head[:2] == b"II":
                endian = "<"
            elif head[:2] == b"MM":
                endian = ">"
            else:
                return info
            (magic,) = struct.unpack(endian + "H", head[2:4])
            if magic == 42:
                big, (first,) = False, struct.unpack(endian + "I", head[4:8])
            elif magic == 43:
                big, (first,) = True, struct.unpack(endian + "Q", head[8:16])
            elif magic in (0x4F52, 0x5352, 0x55):  # ORF / RW2 variants: TIFF structure, other magic
                big, (first,) = False, struct.unpack(endian + "I", head[4:8])
            else:
                return info
            todo, seen = [first], set()
            while todo and len(seen) < 64:
                off = todo.pop(0)
                if not off or off in seen:
                    continue
                seen.add(off)
                tags, nxt = _read_ifd(f, off, endian, big)
                info.ifds.append(tags)
                todo.append(nxt)
                for key in (TAG["SubIFDs"], TAG["ExifIFD"]):
                    todo.extend(int(v) for v in tags.get(key, ()))
    except (OSError, ValueError, struct.error):
        return info

    def first(tag: int):
        for t in info.ifds:
            if tag in t:
                return t[tag]
        return None

    make, model = first(TAG["Make"]), first(TAG["Model"])
    info.make = make if isinstance(make, str) and make else None
    info.model = model if isinstance(model, str) and model else None
    if info.model is None:
        ucm = first(TAG["UniqueCameraModel"])
        info.model = ucm if isinstance(ucm, str) and ucm else None
    iso = first(TAG["ISOSpeedRatings"])
    if iso and iso[0] > 0:
        info.iso = float(iso[0])
    exp = first(TAG["ExposureTime"])
    if exp and exp[0] > 0:
        info.exposure_time = float(exp[0])
    npf = first(TAG["NoiseProfile"])
    if npf:
        info.noise_profile = [float(v) for v in npf]
    raw = next(
        (t for t in info.ifds if t.get(TAG["NewSubfileType"], (0,))[0] == 0 and TAG["BlackLevel"] in t),
        None,
    ) or next((t for t in info.ifds if TAG["WhiteLevel"] in t), None)
    if raw is not None:
        if TAG["BlackLevel"] in raw:
            info.black_level = [float(v) for v in raw[TAG["BlackLevel"]]]
        if TAG["WhiteLevel"] in raw:
            info.white_level = float(raw[TAG["WhiteLevel"]][0])
    return info
