"""sRGB -> linear camera RGB ("unprocessing", Brooks et al. 2019 as used by LIS; docs/synthesis.md).

Steps (per image): inverse smoothstep tone curve, inverse gamma 2.2, inverse colour correction
(``x <- x @ rgb2cam.T``), inverse white balance / brightening with highlight protection, clip to
``[0, 1]``. The Bayer mosaic is done by the caller with :mod:`darkseg.raw.bayer`.

The forward direction (:func:`process_linear`) re-applies gains, ``cam2rgb``, gamma and the tone
curve; where nothing clips it inverts :func:`unprocess` (tested to < 1e-3).

Each formula is written once against :mod:`darkseg.synth.backend`, for two array libraries:

* NumPy: one image ``(H, W, 3)`` float32, :class:`UnprocessParams` holding floats / ``(3, 3)`` arrays.
* torch: a batch ``(B, 3, H, W)``, :class:`UnprocessParams` holding ``(B,)`` / ``(B, 3, 3)`` tensors.

Linearisation (inverse tone curve + inverse gamma) runs in place in one float32 buffer, the power as
``exp(2.2 ln x)`` (vectorised ``exp``/``log``; within 4e-7 of ``x ** 2.2`` on ``[0, 1]`` in float32).
NumPy ``uint8`` images (codes ``k`` meaning ``k / 255``) are linearised by looking the codes up in
:func:`linearize_table`, which holds the same float32 results for all 256 codes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from darkseg.synth.backend import backend_of, draws

__all__ = [
    "CAM2RGB_LIS",
    "XYZ2CAMS",
    "RGB2XYZ",
    "UnprocessParams",
    "inverse_smoothstep",
    "smoothstep",
    "gamma_expand",
    "gamma_compress",
    "linearize",
    "linearize_table",
    "random_rgb2cam",
    "sample_unprocess_params",
    "unprocess",
    "unprocess_packed",
    "process_linear",
]

#: calibrated camera -> sRGB matrix of LIS (float32, rows sum to 1): LIS's Canon EOS 5D IV calibration
CAM2RGB_LIS = np.array(
    [
        [2.04840695, -1.27161572, 0.22320878],
        [-0.22163155, 1.77694640, -0.55531485],
        [-0.00770995, -0.59257895, 1.60028890],
    ],
    dtype=np.float32,
)
_RGB2CAM_LIS = np.linalg.inv(CAM2RGB_LIS).astype(np.float32)

#: Brooks et al. XYZ -> camera matrices (random_ccm)
XYZ2CAMS = np.array(
    [
        [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
        [[0.4913, -0.0541, -0.0202], [-0.613, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
        [[0.838, -0.263, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
        [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.097, 0.1581, 0.5181]],
    ],
    dtype=np.float64,
)

#: linear sRGB -> XYZ (D65)
RGB2XYZ = np.array(
    [
        [0.4124564, 0.3575761, 0.1804375],
        [0.2126729, 0.7151522, 0.0721750],
        [0.0193339, 0.1191920, 0.9503041],
    ],
    dtype=np.float64,
)

# gains of Brooks et al. / LIS
RGB_GAIN_INV_MEAN, RGB_GAIN_INV_STD = 0.8, 0.1
RED_GAIN_RANGE = (1.9, 2.4)
BLUE_GAIN_RANGE = (1.5, 1.9)


@dataclass
class UnprocessParams:
    """Per-image unprocessing metadata.

    NumPy path (one image): ``rgb2cam``/``cam2rgb`` ``(3, 3)`` float32 arrays, gains Python floats.
    torch path (batch): ``(B, 3, 3)`` and ``(B,)`` float32 tensors on the images' device.
    ``rgb_gain`` is the brightening gain (``1 / N(0.8, 0.1)``), ``red_gain``/``blue_gain`` the white
    balance gains; unprocessing divides by them, :func:`process_linear` multiplies.
    """

    rgb2cam: Any
    cam2rgb: Any
    rgb_gain: Any
    red_gain: Any
    blue_gain: Any


def _inverse_smoothstep_(y):
    """:func:`inverse_smoothstep` of ``y`` already clipped to ``[0, 1]``, in place."""
    B = backend_of(y)
    y *= -2.0
    y += 1.0
    B.asin_(y)
    y /= 3.0
    return B.rsub_(0.5, B.sin_(y))


def _gamma_expand_(y):
    """:func:`gamma_expand` in place, as ``exp(2.2 ln max(y, 1e-8))``."""
    B = backend_of(y)
    B.log_(B.clamp_min_(y, 1e-8))
    y *= 2.2
    return B.exp_(y)


def inverse_smoothstep(x):
    """Inverse of ``3x^2 - 2x^3`` on ``[0, 1]``: ``0.5 - sin(asin(1 - 2x) / 3)`` (input clipped)."""
    B = backend_of(x)
    return _inverse_smoothstep_(B.clip(B.as_float(x), 0.0, 1.0))


def gamma_expand(x):
    """Inverse gamma: ``max(x, 1e-8) ** 2.2``, as ``exp(2.2 ln x)`` (vectorised, faster on the CPU)."""
    B = backend_of(x)
    return _gamma_expand_(B.clamp_min(B.as_float(x), 1e-8))


def linearize(x):
    """``gamma_expand(inverse_smoothstep(x))`` in float32, in one new buffer (``x`` is not written)."""
    B = backend_of(x)
    return _gamma_expand_(_inverse_smoothstep_(B.clip(B.to_f32(x), 0.0, 1.0)))


def linearize_table() -> np.ndarray:
    """``(256,)`` float32, read-only: ``linearize(k / 255)`` for the 8-bit codes ``k = 0 .. 255``.

    Computed by :func:`linearize` itself from ``float32(k) / 255`` (what :meth:`LowLightSynthesizer.numpy`
    makes of a ``uint8`` image), so looking a code up gives the same bits as linearising ``k / 255``.
    """
    table = linearize(np.arange(256, dtype=np.float32) / np.float32(255.0))
    table.flags.writeable = False
    return table


def _lookup(codes: np.ndarray, table: np.ndarray) -> np.ndarray:
    """``table[codes]`` as float32 of ``codes``' shape: ``uint8`` codes, ``(256,)`` float32 table.

    OpenCV's ``LUT`` (about 2x faster than ``np.take``, which first widens the codes to ``intp``).
    """
    import cv2

    flat = np.ascontiguousarray(codes).reshape(-1, codes.shape[-1])
    return cv2.LUT(flat, np.asarray(table, dtype=np.float32)).reshape(codes.shape)


def _linearize_image(rgb, table: np.ndarray | None):
    """:func:`linearize` of an sRGB image, or the :func:`linearize_table` lookup of a NumPy ``uint8`` one
    (``table``: that table, ``None`` = compute it)."""
    if isinstance(rgb, np.ndarray) and rgb.dtype == np.uint8:
        return _lookup(rgb, linearize_table() if table is None else table)
    return linearize(rgb)


def _cfa_sites_linear(rgb, offs, table: np.ndarray | None):
    """The linearised sRGB values at the four CFA sites of every 2x2 tile.

    ``offs``: the ``(row, col)`` of the R, G1, B, G2 sites. NumPy ``(H, W, 3)`` -> ``(4, 3, H/2, W/2)``
    float32 (site plane, channel); torch ``(B, 3, H, W)`` -> ``(B, 4, 3, H/2, W/2)``.

    NumPy gathers the sites first, as one copy per site plane, and linearises the gathered values in
    place (or looks ``uint8`` codes up in ``table``); the values are the same as linearising the image
    first, without its full-size planar copy. torch linearises the image, then gathers.
    """
    if isinstance(rgb, torch.Tensor):
        planes = linearize(rgb)
        return torch.stack([planes[..., dy::2, dx::2] for dy, dx in offs], -4)
    x = np.asarray(rgb)
    h, w = x.shape[:2]
    codes = x.dtype == np.uint8
    sites = np.empty((4, 3, h // 2, w // 2), dtype=np.uint8 if codes else np.float32)
    for plane, (dy, dx) in zip(sites, offs):
        np.copyto(plane.transpose(1, 2, 0), x[dy::2, dx::2], casting="unsafe")
    if codes:
        return _linearize_image(sites, table)
    return _gamma_expand_(_inverse_smoothstep_(np.clip(sites, 0.0, 1.0, out=sites)))


def smoothstep(x):
    """The tone curve ``3x^2 - 2x^3`` on ``[0, 1]`` (input clipped)."""
    x = backend_of(x).clip(x, 0.0, 1.0)
    return 3.0 * x * x - 2.0 * x * x * x


def gamma_compress(x):
    """Gamma: ``max(x, 1e-8) ** (1 / 2.2)``."""
    return backend_of(x).clamp_min(x, 1e-8) ** (1.0 / 2.2)


def random_rgb2cam(rng: np.random.Generator | torch.Generator, batch: int | None = None):
    """Brooks et al. random CCM: convex mix of 4 XYZ->camera matrices, weights ``U(1e-8, 1e8)``, times
    sRGB->XYZ, rows normalised to sum 1. float64 ``(3, 3)`` (NumPy generator) or ``(B, 3, 3)`` on the
    ``torch.Generator``'s device."""
    D = draws(rng, batch)
    B = D.backend
    w = D.uniform(1e-8, 1e8, (*D.batch, 4))
    xyz2cam = B.einsum("...k,kij->...ij", w / B.sum(w, -1), D.table(XYZ2CAMS))
    rgb2cam = B.matmul(xyz2cam, D.table(RGB2XYZ))
    return rgb2cam / B.sum(rgb2cam, -1)


def _check_ccm(ccm: str) -> None:
    if ccm not in ("calibrated", "random"):
        raise ValueError(f"ccm must be 'calibrated' or 'random', got {ccm!r}")


def sample_unprocess_params(
    rng: np.random.Generator | torch.Generator,
    ccm: str = "calibrated",
    batch: int | None = None,
    device: torch.device | str | None = None,
) -> UnprocessParams:
    """Metadata of one image (``numpy.random.Generator``) or ``batch`` images (``torch.Generator``,
    drawn on its device; tensors on ``device``, default the generator's).

    Draw order: [ccm weights], rgb gain (normal), red gain, blue gain (vectorised over the batch).
    ``cam2rgb`` is the inverse of the float64 ``rgb2cam``.
    """
    _check_ccm(ccm)
    D = draws(rng, batch, device)
    if ccm == "calibrated":
        rgb2cam, cam2rgb = D.repeat(_RGB2CAM_LIS), D.repeat(CAM2RGB_LIS)
    else:
        rgb2cam = random_rgb2cam(rng, batch)
        cam2rgb = D.backend.inv(rgb2cam)
    rgb_gain = 1.0 / (RGB_GAIN_INV_MEAN + RGB_GAIN_INV_STD * D.normal(D.batch))
    red_gain = D.uniform(*RED_GAIN_RANGE, D.batch)
    blue_gain = D.uniform(*BLUE_GAIN_RANGE, D.batch)
    return UnprocessParams(*(D.finish(v) for v in (rgb2cam, cam2rgb, rgb_gain, red_gain, blue_gain)))


def _highlight_gains(gray, gains):
    """``max((1 - m) gains + m, gains)``, ``m = (max(gray - 0.9, 0) / 0.1) ** 2``: the gains raised towards
    1 for pixels whose grey level is above 0.9 (highlight protection); equal to ``gains`` elsewhere
    (``m = 0``). Shape: ``gray`` and ``gains`` broadcast."""
    B = backend_of(gray)
    mask = B.clamp_min_(gray - 0.9, 0.0)  # in place from here: few image-sized temporaries
    mask /= 0.1
    mask *= mask
    safe = (1.0 - mask) * gains
    safe += mask
    return B.maximum_(safe, gains)


def _white_balance_inverse(x, gray, p: UnprocessParams, channel_rows):
    """Divide linear camera values ``x`` by the white balance and brightening gains with highlight
    protection (``gray``: the pixels' mean over R, G, B), clip to ``[0, 1]``. A new compact array: a
    result that kept ``x``'s (larger) buffer alive made glibc's allocator page-fault more.

    ``channel_rows``: the camera channel (0 R, 1 G, 2 B) of each channel of ``x``. NumPy evaluates the
    protection only where the grey level is above 0.9 (or NaN); elsewhere it is ``x * gains``.
    """
    B = backend_of(x)
    g = [1.0 / p.red_gain, 1.0, 1.0 / p.blue_gain]
    gains = B.channels([g[r] for r in channel_rows], x) / B.per_image(p.rgb_gain)
    if isinstance(x, torch.Tensor):
        safe = _highlight_gains(gray, gains)
        safe *= x
    else:
        safe = x * gains
        bright = np.broadcast_to(~(gray <= 0.9), safe.shape)
        if bright.any():
            wide = np.broadcast_to(gray, safe.shape)[bright], np.broadcast_to(gains, safe.shape)[bright]
            safe[bright] = _highlight_gains(*wide) * x[bright]
    return B.clip_(safe, 0.0, 1.0)


def unprocess(rgb, p: UnprocessParams, table: np.ndarray | None = None):
    """sRGB in ``[0, 1]`` -> linear camera RGB in ``[0, 1]`` (docs/synthesis.md, step 2).

    NumPy ``(H, W, 3)`` (float, or ``uint8`` codes ``k`` meaning ``k / 255``, linearised by ``table``,
    :func:`linearize_table`, computed if ``None``) with single-image params, or torch ``(B, 3, H, W)``
    with batched params. Returns float32 of the same layout.
    """
    B = backend_of(rgb)
    x = B.colour_matrix(p.rgb2cam, _linearize_image(rgb, table))
    return _white_balance_inverse(x, B.channel_mean(x), p, (0, 1, 2))


def unprocess_packed(rgb, p: UnprocessParams, pattern: str = "RGGB", table: np.ndarray | None = None):
    """:func:`unprocess` fused with mosaicking and packing: sRGB -> packed (R, G1, B, G2) camera RAW.

    Equal to ``pack_bayer(mosaic_rgb(unprocess(rgb, p), pattern), pattern)`` (to float rounding) but
    the colour matrix, gains and highlight mask are evaluated only at the CFA sites that are kept.
    NumPy ``(H, W, 3)`` -> ``(H/2, W/2, 4)``; torch ``(B, 3, H, W)`` -> ``(B, 4, H/2, W/2)``; H, W even.
    NumPy ``uint8`` images are codes ``k`` meaning ``k / 255``, linearised by ``table``
    (:func:`linearize_table`, computed if ``None``).
    """
    from darkseg.raw.bayer import pattern_offsets

    B = backend_of(rgb)
    offs = pattern_offsets(pattern)
    rows = [0, 1, 2, 1]  # the rgb2cam row (camera channel) of each packed plane
    h, w = B.hw(rgb)
    if h % 2 or w % 2:
        raise ValueError(f"unprocess_packed needs even height and width, got {h}x{w}")
    # ``linear`` is kept until the return on purpose: with glibc's default allocator the result then
    # lands high in the heap and keeps it from being trimmed and page-faulted again by the noise step
    # (measured: docs/benchmarks.md, "Synthesis")
    linear = _cfa_sites_linear(rgb, offs, table)
    lead, hh, ww = linear.shape[:-4], h // 2, w // 2
    sites = linear.reshape(*lead, 4, 3, hh * ww)
    # per plane: its rgb2cam row and the column means (for the highlight mask's grey level), as one
    # (2 x 3) @ (3 x hw) product per plane
    m = B.to_f32(p.rgb2cam)
    weights = B.stack([m[..., rows, :], B.broadcast_to(B.mean(m, -2), (*lead, 4, 3))], -2)
    res = B.matmul(weights, sites).reshape(*lead, 4, 2, hh, ww)
    val, gray = B.from_planar(res[..., 0, :, :]), B.from_planar(res[..., 1, :, :])
    return _white_balance_inverse(val, gray, p, rows)


def process_linear(
    cam,
    p: UnprocessParams,
    *,
    white_balance: bool = True,
    brighten: bool = True,
    ccm: bool = True,
    gamma: bool = True,
    tone: bool = True,
):
    """Forward ISP on linear camera RGB: gains, ``cam2rgb``, gamma 1/2.2, smoothstep; clips to ``[0, 1]``.

    ``white_balance`` multiplies R, B by ``red_gain``, ``blue_gain``; ``brighten`` all channels by
    ``rgb_gain`` (together these undo :func:`unprocess`'s gains). NumPy ``(H, W, 3)`` or torch
    ``(B, 3, H, W)``; float32 out.
    """
    B = backend_of(cam)
    x = B.to_f32(cam)
    r, bl = (p.red_gain, p.blue_gain) if white_balance else (1.0, 1.0)
    x = x * (B.channels([r, 1.0, bl], x) * B.per_image(p.rgb_gain if brighten else 1.0))
    if ccm:
        x = B.colour_matrix(p.cam2rgb, B.clip(x, 0.0, 1.0))
    x = B.clip(x, 0.0, 1.0)
    if gamma:
        x = gamma_compress(x)
    if tone:
        x = smoothstep(x)
    return B.to_f32(x)
