"""Preview ISP: show a human what the camera saw (not used by the network).

The module is ``preview`` and its main function ``render`` (public as :func:`darkseg.raw.render`), so
that the name ``darkseg.raw.render`` means one thing: the function.

``render(frame)``: exposure gain -> demosaic (bilinear at full resolution, or 2x2 binning at half
resolution) -> camera white balance -> camera-to-sRGB colour matrix -> auto-exposure -> sRGB gamma ->
``uint8 (H, W, 3)`` RGB. The building blocks (:func:`srgb_encode`, :func:`srgb_decode`,
:func:`auto_exposure_gain`) are shared with :func:`darkseg.engine.visualize.brighten`.
"""

from __future__ import annotations

import numpy as np

from .bayer import bin2x2, demosaic_bilinear, pack_bayer
from .reader import RawFrame

__all__ = ["render", "srgb_encode", "srgb_decode", "auto_exposure_gain", "luminance", "to_uint8"]

_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def srgb_encode(linear: np.ndarray) -> np.ndarray:
    """Linear [0, 1] -> sRGB-encoded [0, 1] (IEC 61966-2-1 curve), float32; input is clipped first."""
    x = np.clip(np.asarray(linear, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055).astype(np.float32)


def srgb_decode(encoded: np.ndarray) -> np.ndarray:
    """sRGB-encoded [0, 1] -> linear [0, 1], float32 (inverse of :func:`srgb_encode`)."""
    x = np.clip(np.asarray(encoded, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4)).astype(np.float32)


def luminance(linear_rgb: np.ndarray) -> np.ndarray:
    """Rec. 709 luminance ``(H, W)`` of a linear RGB ``(H, W, 3)`` image."""
    return np.asarray(linear_rgb, dtype=np.float32) @ _LUMA


def auto_exposure_gain(
    linear_rgb: np.ndarray, target: float = 0.18, percentile: float = 50.0, max_gain: float = 1000.0
) -> float:
    """Gain that brings the ``percentile`` of the luminance of a linear image to ``target``.

    The median (default) is robust to a few bright lights in a dark scene. The gain is limited to
    ``[1 / max_gain, max_gain]``; an all-black image gets ``max_gain``.
    """
    lum = luminance(linear_rgb)
    level = float(np.percentile(lum, percentile)) if lum.size else 0.0
    if level <= 0:  # mostly black: fall back to the mean, then to max_gain
        level = float(lum.mean()) if lum.size else 0.0
    if not np.isfinite(level) or level <= 0:
        return float(max_gain)
    return float(np.clip(target / level, 1.0 / max_gain, max_gain))


def to_uint8(x01: np.ndarray) -> np.ndarray:
    """[0, 1] float -> uint8 with rounding."""
    return (np.clip(x01, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def render(
    frame: RawFrame,
    *,
    ratio: float = 1.0,
    half: bool = False,
    white_balance: str | np.ndarray = "camera",
    color_matrix: bool = True,
    auto_exposure: bool = True,
    target: float = 0.18,
    gamma: str = "srgb",
) -> np.ndarray:
    """Render a RAW frame to an 8-bit sRGB preview.

    Args:
        frame: from :func:`darkseg.raw.read_camera_raw`.
        ratio: exposure gain applied to the normalised RAW first (as for the network input).
        half: ``True`` -> 2x2 binning at half resolution ``(H/2, W/2)`` (pixel ``(i, j)`` covers sensor
            sites ``2i..2i+1, 2j..2j+1``: the geometry of the network input); ``False`` -> bilinear
            demosaic at full resolution ``(H, W)``.
        white_balance: ``"camera"`` (as-shot gains), ``"none"``, ``"gray"`` (gray-world) or explicit
            ``(3,)`` R, G, B gains.
        color_matrix: apply the frame's camera -> sRGB matrix (identity when the file has none).
        auto_exposure: scale the linear image so its median luminance reaches ``target``.
        gamma: ``"srgb"`` (sRGB curve), ``"2.2"`` (plain power 1/2.2) or ``"linear"``.

    Returns:
        ``uint8 (H', W', 3)`` RGB.
    """
    x = frame.mosaic * np.float32(ratio) if ratio != 1.0 else frame.mosaic
    x = np.clip(x, 0.0, 1.0)
    rgb = bin2x2(pack_bayer(x, frame.pattern)) if half else demosaic_bilinear(x, frame.pattern)
    rgb = np.asarray(rgb, dtype=np.float32)
    if isinstance(white_balance, str):
        if white_balance == "camera":
            gains = np.asarray(frame.camera_wb, dtype=np.float32)
        elif white_balance == "none":
            gains = np.ones(3, np.float32)
        elif white_balance == "gray":
            means = rgb.reshape(-1, 3).mean(0)
            gains = np.where(means > 0, means[1] / np.maximum(means, 1e-12), 1.0).astype(np.float32)
        else:
            raise ValueError(
                f"white_balance must be 'camera', 'none', 'gray' or 3 gains, got {white_balance!r}"
            )
    else:
        gains = np.asarray(white_balance, dtype=np.float32).reshape(3)
    rgb = rgb * gains
    if color_matrix:
        rgb = rgb @ np.asarray(frame.cam2rgb, dtype=np.float32).T
    rgb = np.maximum(rgb, 0.0)
    if auto_exposure:
        rgb = rgb * np.float32(auto_exposure_gain(rgb, target))
    if gamma == "srgb":
        out = srgb_encode(rgb)
    elif gamma == "2.2":
        out = np.power(np.clip(rgb, 0.0, 1.0), 1.0 / 2.2)
    elif gamma == "linear":
        out = np.clip(rgb, 0.0, 1.0)
    else:
        raise ValueError(f"gamma must be 'srgb', '2.2' or 'linear', got {gamma!r}")
    return to_uint8(out)
