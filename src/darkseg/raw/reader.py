"""Camera RAW files (DNG, CR2, NEF, ARW, RAF, KDC, ...) -> normalised Bayer mosaic -> network input.

``read_camera_raw(path)`` decodes a file with rawpy/LibRaw and returns a :class:`RawFrame`:

* ``mosaic``: float32 ``(H, W)`` of the *visible* sensor area (cropped to even H, W), each site
  black-subtracted with its own channel's black level and divided by ``white - black``, clipped to [0, 1];
* ``pattern``: the CFA of the top-left 2x2 tile of ``mosaic`` (``"RGGB"``, ``"BGGR"``, ``"GRBG"``,
  ``"GBRG"``), derived from rawpy's ``raw_pattern`` + ``color_desc``;
* levels, white balance, colour matrix and exposure time as metadata.

Files whose data is not a 2x2 Bayer mosaic (film-scanner "NEF", linear/demosaiced DNG, X-Trans, Foveon,
CMYG sensors) raise :class:`RawFormatError` naming the file and the reason.

``frame_to_input(frame, "rgb" | "packed", ratio)`` builds what the network takes (the LIS RAW test path):
``"rgb"`` = LIS binning ``[R, (G1 + G2) / 2, B]`` at half resolution (how LIS RAW PNGs were made),
``"packed"`` = the 4 planes ``(R, G1, B, G2)`` at half resolution; both ``torch.float32 (C, h, w)``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from darkseg.errors import DarkSegError

from .bayer import bin2x2, pack_bayer, pattern_offsets

__all__ = [
    "CAMERA_RAW_EXTENSIONS",
    "RawFormatError",
    "RawFrame",
    "is_camera_raw_path",
    "read_camera_raw",
    "frame_to_input",
    "cam2rgb_from_xyz",
]

#: file suffixes (lower case) treated as camera RAW (decoded with rawpy/LibRaw)
CAMERA_RAW_EXTENSIONS = frozenset(
    {
        ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2",
        ".rwl", ".pef", ".ptx", ".srw", ".kdc", ".dcr", ".k25", ".mrw", ".3fr", ".fff", ".erf", ".mef",
        ".mos", ".iiq", ".x3f", ".raw", ".rwz", ".bay", ".cap", ".eip", ".mdc",
    }
)  # fmt: skip

# sRGB (D65) -> XYZ, used to turn LibRaw's camera-from-XYZ matrix into camera-from-sRGB
_SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]],
    dtype=np.float64,
)


class RawFormatError(DarkSegError, ValueError):
    """A file is not a camera RAW this reader supports (unreadable, or not a 2x2 Bayer mosaic)."""


@dataclass
class RawFrame:
    """One decoded camera RAW frame.

    Attributes:
        path: the source file.
        mosaic: float32 ``(H, W)`` visible area, black-subtracted, / (white - black), clipped to [0, 1];
            H and W even (an odd last row/column of the visible area is dropped).
        pattern: CFA of the top-left 2x2 tile of ``mosaic`` (e.g. ``"RGGB"``).
        black_level: float ``(4,)`` black level in DN of the packed planes (R, G1, B, G2).
        white_level: float, saturation in DN.
        camera_wb: float ``(3,)`` as-shot white-balance gains (R, G, B) normalised to G = 1; ones when the
            file has none.
        cam2rgb: float ``(3, 3)`` camera RGB -> linear sRGB matrix (rows sum to 1); identity when the file
            has no colour matrix (``has_color_matrix`` False).
        exposure_time: seconds, ``None`` when the file does not say.
        raw_shape: ``(H, W)`` of the full sensor readout (margins included).
        visible_offset: ``(top, left)`` of the visible area within the sensor readout.
    """

    path: str
    mosaic: np.ndarray
    pattern: str
    black_level: np.ndarray
    white_level: float
    camera_wb: np.ndarray = field(default_factory=lambda: np.ones(3))
    cam2rgb: np.ndarray = field(default_factory=lambda: np.eye(3))
    has_color_matrix: bool = False
    exposure_time: float | None = None
    raw_shape: tuple[int, int] = (0, 0)
    visible_offset: tuple[int, int] = (0, 0)

    @property
    def shape(self) -> tuple[int, int]:
        """``(H, W)`` of the mosaic (full resolution)."""
        return int(self.mosaic.shape[0]), int(self.mosaic.shape[1])

    def packed(self) -> np.ndarray:
        """float32 ``(H/2, W/2, 4)`` planes (R, G1, B, G2)."""
        return pack_bayer(self.mosaic, self.pattern)


def is_camera_raw_path(path: str | os.PathLike) -> bool:
    """True when the file suffix is a known camera RAW extension."""
    return Path(path).suffix.lower() in CAMERA_RAW_EXTENSIONS


def cam2rgb_from_xyz(cam_xyz: np.ndarray) -> np.ndarray:
    """Camera-from-XYZ ``(3, 3)`` -> camera RGB -> linear sRGB ``(3, 3)`` (dcraw's rule: rows of
    camera-from-sRGB normalised to 1 so white stays white, then inverted)."""
    cam_rgb = np.asarray(cam_xyz, dtype=np.float64)[:3, :3] @ _SRGB_TO_XYZ
    cam_rgb = cam_rgb / cam_rgb.sum(axis=1, keepdims=True)
    return np.linalg.inv(cam_rgb)


def _pattern_from_rawpy(path: Path, raw_pattern, color_desc: bytes) -> tuple[str, dict[str, tuple[int, int]]]:
    """CFA name of the 2x2 tile and the (row, col) of each site R, G1, B, G2 (G1 on R's row)."""
    if raw_pattern is None:
        raise RawFormatError(f"{path}: no colour filter array (rawpy raw_pattern is None): not a Bayer RAW")
    pat = np.asarray(raw_pattern)
    if pat.shape == (6, 6):
        raise RawFormatError(f"{path}: Fujifilm X-Trans 6x6 CFA is not supported (only 2x2 Bayer)")
    if pat.shape != (2, 2):
        raise RawFormatError(f"{path}: CFA tile of shape {pat.shape} is not a 2x2 Bayer pattern")
    desc = color_desc.decode("ascii", "replace") if isinstance(color_desc, bytes) else str(color_desc)
    try:
        letters = [[desc[int(pat[r, c])] for c in range(2)] for r in range(2)]
    except IndexError:
        raise RawFormatError(f"{path}: CFA indices {pat.tolist()} do not index color_desc {desc!r}") from None
    name = "".join(letters[0] + letters[1])
    if sorted(name) != ["B", "G", "G", "R"]:
        raise RawFormatError(
            f"{path}: CFA {name!r} (color_desc {desc!r}) is not an R/G/G/B Bayer pattern (e.g. CMYG)"
        )
    pattern_offsets(name)  # the four Bayer names are exactly the valid permutations; raises otherwise
    offs = dict(zip(("R", "G1", "B", "G2"), pattern_offsets(name)))
    return name, offs


def read_camera_raw(path: str | os.PathLike, data: bytes | None = None) -> RawFrame:
    """Decode a camera RAW file into a normalised Bayer :class:`RawFrame`.

    ``data``: the file's bytes, already in memory (e.g. an upload); ``path`` then only names the input
    in messages and in ``RawFrame.path`` and is never opened.

    Raises:
        FileNotFoundError: no such file (``data`` not given).
        RawFormatError: LibRaw cannot decode it, or its data is not a 2x2 Bayer mosaic (message says why).
    """
    import io

    import rawpy

    path = Path(path)
    if data is None and not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        raw = rawpy.imread(str(path) if data is None else io.BytesIO(data))
    except (rawpy.LibRawError, OSError, ValueError) as exc:
        raise RawFormatError(
            f"{path}: not a camera RAW file LibRaw can decode ({type(exc).__name__}: {exc})"
        ) from exc
    with raw:
        if raw.raw_type != rawpy.RawType.Flat:
            raise RawFormatError(
                f"{path}: RAW data has several values per pixel (rawpy {raw.raw_type}), not a Bayer mosaic - "
                "e.g. a linear (demosaiced) DNG or a film scanner file; convert it to sRGB (PNG/JPEG) instead"
            )
        if raw.num_colors != 3:
            raise RawFormatError(f"{path}: sensor has {raw.num_colors} colours; only RGB Bayer is supported")
        name, offs = _pattern_from_rawpy(path, raw.raw_pattern, raw.color_desc)
        visible = raw.raw_image_visible
        h, w = visible.shape[0] // 2 * 2, visible.shape[1] // 2 * 2
        if h < 2 or w < 2:
            raise RawFormatError(f"{path}: visible area {visible.shape} is too small")
        visible = visible[:h, :w]
        cfa = np.asarray(raw.raw_pattern)
        black_c = np.asarray(raw.black_level_per_channel, dtype=np.float64)
        white = float(raw.white_level)
        # black level of each site of the 2x2 tile (LibRaw indexes black levels by CFA colour index)
        tile_black = np.array([[black_c[int(cfa[r, c])] for c in range(2)] for r in range(2)], np.float32)
        if np.any(tile_black >= white):
            raise RawFormatError(f"{path}: black level {tile_black.tolist()} >= white level {white}")
        black_map = np.tile(tile_black, (h // 2, w // 2))
        mosaic = visible.astype(np.float32)
        mosaic -= black_map
        mosaic /= white - black_map
        np.clip(mosaic, 0.0, 1.0, out=mosaic)
        black_planes = np.array([tile_black[offs[k]] for k in ("R", "G1", "B", "G2")], dtype=np.float64)

        wb = np.asarray(raw.camera_whitebalance, dtype=np.float64)[:3]
        if not np.all(np.isfinite(wb)) or np.any(wb <= 0):
            wb = np.ones(3)
        wb = wb / wb[1]
        cm = np.asarray(raw.color_matrix, dtype=np.float64)[:3, :3]
        cam_xyz = np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[:3, :3]
        has_cm = True
        if np.any(cm != 0) and np.all(np.isfinite(cm)):
            cam2rgb = cm
        elif np.any(cam_xyz != 0) and np.all(np.isfinite(cam_xyz)):
            cam2rgb = cam2rgb_from_xyz(cam_xyz)
        else:
            cam2rgb, has_cm = np.eye(3), False
        other = getattr(raw, "other", None)
        shutter = float(getattr(other, "shutter_speed", 0.0) or 0.0) if other is not None else 0.0
        sizes = raw.sizes
        return RawFrame(
            path=str(path),
            mosaic=mosaic,
            pattern=name,
            black_level=black_planes,
            white_level=white,
            camera_wb=wb,
            cam2rgb=cam2rgb,
            has_color_matrix=has_cm,
            exposure_time=shutter if shutter > 0 else None,
            raw_shape=(int(sizes.raw_height), int(sizes.raw_width)),
            visible_offset=(int(sizes.top_margin), int(sizes.left_margin)),
        )


def frame_to_input(
    frame: RawFrame,
    input_format: str = "rgb",
    ratio: float = 1.0,
    size: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Network input from a RAW frame.

    Args:
        frame: a decoded frame.
        input_format: ``"rgb"`` -> ``(3, H/2, W/2)`` LIS binning ``[R, (G1 + G2) / 2, B]`` (a
            3-channel model); ``"packed"`` -> ``(4, H/2, W/2)`` planes (R, G1, B, G2) (a 4-channel model).
        ratio: exposure-ratio gain (> 0) applied to the normalised RAW, then clipped to [0, 1]
            (as LIS does; the frame is already clipped once, so saturated sites stay at 1 for
            ratio >= 1).
        size: optional ``(width, height)`` to resize to with bilinear interpolation (LIS resized its
            binned PNGs to 1200x800); ``None`` keeps half resolution.

    Returns:
        ``torch.float32`` ``(C, h, w)`` in [0, 1].
    """
    import cv2

    if input_format not in ("rgb", "packed"):
        raise ValueError(f"input_format must be 'rgb' or 'packed', got {input_format!r}")
    ratio = float(ratio)
    if not np.isfinite(ratio) or ratio <= 0:
        raise ValueError(f"ratio must be a finite number > 0, got {ratio}")
    x = frame.packed()
    if ratio != 1.0:
        x = x * np.float32(ratio)
    np.clip(x, 0.0, 1.0, out=x)
    if input_format == "rgb":
        x = np.clip(bin2x2(x), 0.0, 1.0)
    if size is not None:
        w, h = int(size[0]), int(size[1])
        if w <= 0 or h <= 0:
            raise ValueError(f"size must be positive (width, height), got {size}")
        x = np.stack(
            [cv2.resize(x[:, :, c], (w, h), interpolation=cv2.INTER_LINEAR) for c in range(x.shape[2])], -1
        )
        np.clip(x, 0.0, 1.0, out=x)
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))
