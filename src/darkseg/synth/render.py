"""Packed RAW -> network input (channel order fixed to R, G, B: docs/decisions.md D1).

``"rgb"`` output: unpack to the flat mosaic of the CFA ``pattern``, optionally quantise to 8 bits
(``round(255 x) / 255``, as LIS), bilinear demosaic (:func:`darkseg.raw.bayer.demosaic_bilinear`),
optional ISP steps (white balance, brightening, CCM, gamma, tone curve; all off by default = the LIS
"dim linear camera RGB"), optional final 8-bit rounding (LIS demosaics a ``uint8`` mosaic with OpenCV,
whose output is ``uint8`` again). Channels are **R, G, B**; ``legacy_swap_rb`` returns B, G, R like
the original code's synthetic images.

``"binned"`` output: the real LIS RAW PNGs' rendering steps applied to the training image: 2x2
binning ``[R, (G1 + G2) / 2, B]`` at half resolution, bilinear 2x upsampling back to the full size
(:func:`darkseg.raw.bayer.upsample2x_bilinear`), optional ISP steps, optional 8-bit rounding (LIS
rounds after the resize). Same shape and channels as ``"rgb"``; it matches the test images' colour
rendering (binning, no demosaic), not their noise (see below).

``"binned"`` reproduces the *rendering* of the LIS PNGs but not their *noise statistics*: LIS binned
the planes of the full sensor (about 3372 x 2251 binned pixels), resized them to 1200 x 800 (bilinear)
and the test pipeline halves that (nearest) to 600 x 400, so one network-input pixel is a bilinear mix
of 2 x 2 binned pixels taken about 5.6 binned pixels apart from its neighbours' - neighbouring input
pixels have independent noise. ``"binned"`` up-samples the planes of the training image itself, so
neighbouring pixels share their sources (lag-1 noise correlation about 0.75) and the variance is lower.

``"sensor"`` output: the LIS test path simulated per network-input pixel. Input: the packed planes of a
sensor at twice the output resolution, ``(2h, 2w, 4)``; output pixel ``(i, j)`` owns the 2 x 2 binned
cells ``(2i + a, 2j + b)`` and is their bilinear mix with the weights the real path gives that pixel
(:func:`sensor_fractions`: the fractional source position of 1200 x 800 PNG pixel ``(2i, 2j)`` in the
binned planes, scale :data:`LIS_SENSOR_SCALE`), then the optional ISP steps and 8-bit rounding (LIS
rounds after the resize). The pipeline fills the cells of each output pixel with that pixel's clean
linear camera RGB (the scene is smooth at sensor scale: the sensor has ~5.6x the output's resolution)
and adds noise to every cell independently, so the noise per input pixel has the real path's variance
and no correlation between neighbours; the clean rendering equals the linear camera RGB.

``"packed"`` output: the 4 planes (R, G1, B, G2) at half resolution, optionally 8-bit quantised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from darkseg.raw.bayer import bin2x2, demosaic_packed, upsample2x_bilinear
from darkseg.synth.unprocess import UnprocessParams, process_linear

__all__ = [
    "OUTPUTS",
    "LIS_SENSOR_SCALE",
    "RenderOptions",
    "render_packed",
    "sensor_fractions",
    "sensor_combine",
    "sensor_cells",
    "lis_raw_path",
]

#: the network-input renderings (see the module docstring)
OUTPUTS = ("rgb", "binned", "packed", "sensor")

#: LIS RAW path: binned pixels per pixel of the 1200 x 800 PNG, ``(x, y)``: the Canon EOS 5D IV's
#: packed planes (3372 x 2251) resized to 1200 x 800.
LIS_SENSOR_SCALE: tuple[float, float] = (3372 / 1200, 2251 / 800)


@dataclass(frozen=True)
class RenderOptions:
    """How packed RAW becomes the network input (see module docstring)."""

    output: str = "rgb"
    pattern: str = "RGGB"
    quantize_8bit: bool = True
    white_balance: bool = False
    brighten: bool = False
    ccm: bool = False
    gamma: bool = False
    tone: bool = False
    legacy_swap_rb: bool = False

    @property
    def any_isp(self) -> bool:
        return self.white_balance or self.brighten or self.ccm or self.gamma or self.tone


def _q8(x, order: str = "K", in_place: bool = False):
    """``round(255 x) / 255`` in float32. NumPy: a new array in memory ``order`` (``"K"``: like ``x``),
    or ``x`` itself with ``in_place`` (float32 ``x``)."""
    if isinstance(x, torch.Tensor):
        return x.mul(255.0).round_().div_(255.0)
    if in_place:
        y = np.multiply(x, np.float32(255.0), out=x)
    else:
        y = np.multiply(x, np.float32(255.0), dtype=np.float32, order=order)
    np.rint(y, out=y)
    y /= np.float32(255.0)
    return y


def sensor_fractions(n: int, scale: float) -> np.ndarray:
    """``(n,)`` float32 weights ``f``: output pixel ``j`` = ``(1 - f[j]) * cell[2j] + f[j] * cell[2j + 1]``.

    Output pixel ``j`` is pixel ``2j`` of the resized PNG (0.5x nearest at test time), whose bilinear
    source position in the binned planes is ``(2j + 0.5) * scale - 0.5`` (OpenCV ``INTER_LINEAR``:
    half-pixel centres, two taps); ``f`` is its fractional part.
    """
    x = (2.0 * np.arange(n, dtype=np.float64) + 0.5) * float(scale) - 0.5
    return (x - np.floor(x)).astype(np.float32)


def sensor_combine(binned, scale: tuple[float, float] = LIS_SENSOR_SCALE):
    """Bilinear mix of each output pixel's 2 x 2 binned cells (see :func:`sensor_fractions`).

    NumPy ``(2h, 2w, C)`` -> ``(h, w, C)``; torch ``(..., C, 2h, 2w)`` -> ``(..., C, h, w)``.
    """
    if isinstance(binned, torch.Tensor):
        h2, w2 = binned.shape[-2:]
        fy = torch.from_numpy(sensor_fractions(h2 // 2, scale[1])).to(binned).view(-1, 1)
        fx = torch.from_numpy(sensor_fractions(w2 // 2, scale[0])).to(binned)
        rows = binned[..., 0::2, :] * (1 - fy) + binned[..., 1::2, :] * fy
        return rows[..., 0::2] * (1 - fx) + rows[..., 1::2] * fx
    b = np.asarray(binned, np.float32)
    h2, w2 = b.shape[:2]
    fy = sensor_fractions(h2 // 2, scale[1])[:, None, None]
    fx = sensor_fractions(w2 // 2, scale[0])[None, :, None]
    rows = b[0::2] * (1 - fy) + b[1::2] * fy
    return rows[:, 0::2] * (1 - fx) + rows[:, 1::2] * fx


def sensor_cells(linear):
    """Linear camera RGB -> the ``"sensor"`` rendering's input: packed (R, G1, B, G2) planes at twice the
    resolution, every output pixel's 2 x 2 cells filled with its own ``(R, G, B, G)``.

    NumPy ``(h, w, 3)`` -> ``(2h, 2w, 4)``; torch ``(B, 3, h, w)`` -> ``(B, 4, 2h, 2w)``.
    """
    if isinstance(linear, torch.Tensor):
        x = linear[:, [0, 1, 2, 1]]
        return x.repeat_interleave(2, dim=-2).repeat_interleave(2, dim=-1)
    x = np.asarray(linear, np.float32)[..., [0, 1, 2, 1]]
    return np.repeat(np.repeat(x, 2, axis=0), 2, axis=1)


def lis_raw_path(packed: np.ndarray, out_size: tuple[int, int], quantize_8bit: bool = True) -> np.ndarray:
    """Reference simulation of the real LIS RAW test path, from full-sensor planes to the network input.

    ``packed`` ``(Hb, Wb, 4)`` (R, G1, B, G2) planes of the whole sensor in ``[0, 1]`` -> 2x2 binning
    ``(R, (G1 + G2) / 2, B)`` -> OpenCV bilinear resize to ``2 x out_size`` (the 1200 x 800 PNG; LIS:
    ``out_size`` 600 x 400) -> 8-bit rounding -> nearest 0.5x at test time (even rows and columns).
    NumPy only (OpenCV); for tests and benchmarks of the ``"sensor"`` rendering.

    Args:
        packed: the sensor planes.
        out_size: ``(W, H)`` of the network input.
    """
    import cv2

    w, h = int(out_size[0]), int(out_size[1])
    binned = bin2x2(np.asarray(packed, np.float32)).astype(np.float32)
    png = cv2.resize(binned * 255.0, (2 * w, 2 * h), interpolation=cv2.INTER_LINEAR)
    if quantize_8bit:
        png = np.clip(np.rint(png), 0, 255)
    return np.ascontiguousarray(png[0::2, 0::2] / 255.0, dtype=np.float32)


def render_packed(
    packed, opts: RenderOptions, params: UnprocessParams | None = None, *, in_unit_range: bool = False
):
    """Render packed RAW.

    Args:
        packed: NumPy ``(h, w, 4)`` or torch ``(B, 4, h, w)``, values in ``[0, 1]`` (for ``"sensor"``:
            the cells at twice the output resolution, :func:`sensor_cells`).
        opts: :class:`RenderOptions`.
        params: the images' unprocessing metadata; needed only for ISP steps.
        in_unit_range: the caller guarantees ``packed`` in ``[0, 1]``: then the ``"rgb"`` rendering
            without ISP steps (means of two or four samples, 8-bit rounding: both stay in ``[0, 1]``)
            skips its final clip, which would change nothing.

    Returns:
        ``"rgb"``/``"binned"``: NumPy ``(2h, 2w, 3)`` / torch ``(B, 3, 2h, 2w)``; ``"sensor"``: NumPy
        ``(h/2, w/2, 3)`` / torch ``(B, 3, h/2, w/2)``; ``"packed"``: the input layout.
        float32 in ``[0, 1]``.
    """
    if opts.output == "packed":
        return _q8(packed) if opts.quantize_8bit else packed
    if opts.output == "binned":
        torch_in = isinstance(packed, torch.Tensor)
        rgb = upsample2x_bilinear(bin2x2(packed if torch_in else np.asarray(packed, np.float32)))
    elif opts.output == "sensor":
        torch_in = isinstance(packed, torch.Tensor)
        rgb = sensor_combine(bin2x2(packed if torch_in else np.asarray(packed, np.float32)))
    elif opts.output == "rgb":
        if opts.quantize_8bit and isinstance(packed, torch.Tensor):  # rounding the planes = the mosaic
            packed = _q8(packed)
        elif opts.quantize_8bit:  # NumPy: rounded into contiguous planes, the layout demosaicked in
            packed = _q8(np.asarray(packed).transpose(2, 0, 1), order="C").transpose(1, 2, 0)
        rgb = demosaic_packed(packed, opts.pattern)  # == demosaic_bilinear(unpack_bayer(packed))
    else:
        raise ValueError(f"output must be one of {OUTPUTS}, got {opts.output!r}")
    if opts.any_isp:
        if params is None:
            raise ValueError("render: ISP steps (white balance/CCM/gamma/tone) need the unprocess params")
        rgb = process_linear(
            rgb,
            params,
            white_balance=opts.white_balance,
            brighten=opts.brighten,
            ccm=opts.ccm,
            gamma=opts.gamma,
            tone=opts.tone,
        )
    if opts.quantize_8bit:  # every NumPy branch above made ``rgb`` (float32): round it in place
        rgb = _q8(rgb, in_place=isinstance(rgb, np.ndarray) and rgb.dtype == np.float32)
    if opts.legacy_swap_rb:
        rgb = rgb.flip(-3) if isinstance(rgb, torch.Tensor) else rgb[..., ::-1]
    if isinstance(rgb, torch.Tensor):
        return rgb.clamp_(0.0, 1.0)
    # every NumPy branch above made ``rgb`` (or a view of it) here: clip it in place
    rgb = np.asarray(rgb, dtype=np.float32)
    if not (in_unit_range and opts.output == "rgb" and not opts.any_isp):
        np.clip(rgb, 0.0, 1.0, out=rgb)
    return np.ascontiguousarray(rgb)
