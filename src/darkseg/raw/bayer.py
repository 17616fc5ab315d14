"""Bayer colour-filter-array (CFA) helpers: patterns, packing, mosaicking, demosaicking, binning.

Layouts (see ``docs/architecture.md``):

* **flat mosaic** - one plane at full resolution. NumPy ``(H, W)`` (``(H, W, 1)`` accepted);
  torch ``(..., 1, H, W)``.
* **packed** - four planes at half resolution in the fixed order **(R, G1, B, G2)**, G1 being the
  green on the red pixel's row and G2 the green on the blue pixel's row, whatever the CFA pattern.
  NumPy ``(H/2, W/2, 4)``; torch ``(..., 4, H/2, W/2)``.
* **RGB** - NumPy ``(H, W, 3)``; torch ``(..., 3, H, W)``, channels R, G, B.

Pattern names (``"RGGB"``, ``"BGGR"``, ``"GRBG"``, ``"GBRG"``) spell the top-left 2x2 tile row-major.
All functions accept NumPy arrays or torch tensors and return the same kind; values are not changed
(no scaling, no clipping) except by the interpolation of :func:`demosaic_bilinear`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "PATTERNS",
    "pattern_offsets",
    "pack_bayer",
    "unpack_bayer",
    "mosaic_rgb",
    "demosaic_bilinear",
    "demosaic_packed",
    "bin2x2",
    "upsample2x_bilinear",
]

Array = np.ndarray | torch.Tensor

#: pattern -> (row, col) offsets inside the 2x2 tile of R, G1, B, G2 (the packed order)
PATTERNS: dict[str, tuple[tuple[int, int], ...]] = {
    "RGGB": ((0, 0), (0, 1), (1, 1), (1, 0)),
    "BGGR": ((1, 1), (1, 0), (0, 0), (0, 1)),
    "GRBG": ((0, 1), (0, 0), (1, 0), (1, 1)),
    "GBRG": ((1, 0), (1, 1), (0, 1), (0, 0)),
}

# packed plane -> RGB channel index
_PLANE_TO_RGB = (0, 1, 2, 1)


def pattern_offsets(pattern: str) -> tuple[tuple[int, int], ...]:
    """(row, col) offsets of the R, G1, B, G2 sites of ``pattern`` within its 2x2 tile."""
    key = str(pattern).upper()
    if key not in PATTERNS:
        raise ValueError(f"unknown CFA pattern {pattern!r}; expected one of {sorted(PATTERNS)}")
    return PATTERNS[key]


def _check_even(h: int, w: int, what: str) -> None:
    if h % 2 or w % 2:
        raise ValueError(f"{what}: height and width must be even for Bayer packing, got {h}x{w}")


def pack_bayer(mosaic: Array, pattern: str = "RGGB") -> Array:
    """Flat mosaic -> packed (R, G1, B, G2) planes at half resolution.

    NumPy ``(H, W)`` or ``(H, W, 1)`` -> ``(H/2, W/2, 4)``;
    torch ``(..., 1, H, W)`` -> ``(..., 4, H/2, W/2)``. H and W must be even.
    """
    offs = pattern_offsets(pattern)
    if isinstance(mosaic, torch.Tensor):
        if mosaic.ndim < 3 or mosaic.shape[-3] != 1:
            raise ValueError(f"pack_bayer: torch mosaic must be (..., 1, H, W), got {tuple(mosaic.shape)}")
        _check_even(mosaic.shape[-2], mosaic.shape[-1], "pack_bayer")
        return torch.cat([mosaic[..., dy::2, dx::2] for dy, dx in offs], dim=-3)
    m = np.asarray(mosaic)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[:, :, 0]
    if m.ndim != 2:
        raise ValueError(f"pack_bayer: NumPy mosaic must be (H, W), got {m.shape}")
    _check_even(*m.shape, "pack_bayer")
    return np.stack([m[dy::2, dx::2] for dy, dx in offs], axis=-1)


def unpack_bayer(packed: Array, pattern: str = "RGGB") -> Array:
    """Packed (R, G1, B, G2) planes -> flat mosaic (inverse of :func:`pack_bayer`).

    NumPy ``(h, w, 4)`` -> ``(2h, 2w)``; torch ``(..., 4, h, w)`` -> ``(..., 1, 2h, 2w)``.
    """
    offs = pattern_offsets(pattern)
    if isinstance(packed, torch.Tensor):
        if packed.ndim < 3 or packed.shape[-3] != 4:
            raise ValueError(f"unpack_bayer: torch packed must be (..., 4, h, w), got {tuple(packed.shape)}")
        h, w = packed.shape[-2:]
        out = packed.new_empty((*packed.shape[:-3], 1, 2 * h, 2 * w))
        for c, (dy, dx) in enumerate(offs):
            out[..., 0, dy::2, dx::2] = packed[..., c, :, :]
        return out
    p = np.asarray(packed)
    if p.ndim != 3 or p.shape[2] != 4:
        raise ValueError(f"unpack_bayer: NumPy packed must be (h, w, 4), got {p.shape}")
    out = np.empty((2 * p.shape[0], 2 * p.shape[1]), dtype=p.dtype)
    for c, (dy, dx) in enumerate(offs):
        out[dy::2, dx::2] = p[:, :, c]
    return out


def mosaic_rgb(rgb: Array, pattern: str = "RGGB") -> Array:
    """Sample an RGB image through the CFA: each pixel keeps the channel its filter passes.

    NumPy ``(H, W, 3)`` -> ``(H, W)``; torch ``(..., 3, H, W)`` -> ``(..., 1, H, W)``. Odd sizes allowed.
    """
    offs = pattern_offsets(pattern)
    if isinstance(rgb, torch.Tensor):
        if rgb.ndim < 3 or rgb.shape[-3] != 3:
            raise ValueError(f"mosaic_rgb: torch image must be (..., 3, H, W), got {tuple(rgb.shape)}")
        out = rgb.new_empty((*rgb.shape[:-3], 1, *rgb.shape[-2:]))
        for c, (dy, dx) in enumerate(offs):
            ch = _PLANE_TO_RGB[c]
            out[..., 0, dy::2, dx::2] = rgb[..., ch, dy::2, dx::2]
        return out
    x = np.asarray(rgb)
    if x.ndim != 3 or x.shape[2] != 3:
        raise ValueError(f"mosaic_rgb: NumPy image must be (H, W, 3), got {x.shape}")
    out = np.empty(x.shape[:2], dtype=x.dtype)
    for c, (dy, dx) in enumerate(offs):
        out[dy::2, dx::2] = x[dy::2, dx::2, _PLANE_TO_RGB[c]]
    return out


# Bilinear kernels applied to the zero-filled sparse colour planes.
_K_RB = np.array([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]], dtype=np.float32)
_K_G = np.array([[0.0, 0.25, 0.0], [0.25, 1.0, 0.25], [0.0, 0.25, 0.0]], dtype=np.float32)


def _site_masks(h: int, w: int, pattern: str) -> np.ndarray:
    """(3, H, W) float32 masks: 1 where the CFA site carries R / G / B."""
    offs = pattern_offsets(pattern)
    m = np.zeros((3, h, w), dtype=np.float32)
    for c, (dy, dx) in enumerate(offs):
        m[_PLANE_TO_RGB[c], dy::2, dx::2] = 1.0
    return m


def demosaic_bilinear(mosaic: Array, pattern: str = "RGGB") -> Array:
    """Bilinear demosaic of a flat mosaic into RGB.

    Each colour plane keeps its measured samples; missing ones are the mean of the 2 or 4 nearest
    samples of that colour (the classic bilinear kernels). Borders use reflect-101 padding, which
    keeps the CFA phase, so border pixels are interpolated the same way as interior ones. Inside the
    1-pixel border the result rounded half up equals OpenCV's ``cv2.COLOR_Bayer*2RGB`` demosaic of an
    8-bit mosaic (code ``BG`` for RGGB); OpenCV's border copies the adjacent row / column instead
    (docs/synthesis.md, "Demosaic"; tested).

    NumPy ``(H, W)`` -> ``(H, W, 3)`` float32; torch ``(..., 1, H, W)`` -> ``(..., 3, H, W)`` (input dtype).
    H, W >= 2; odd sizes are allowed.
    """
    if isinstance(mosaic, torch.Tensor):
        if mosaic.ndim < 3 or mosaic.shape[-3] != 1:
            raise ValueError(
                f"demosaic_bilinear: torch mosaic must be (..., 1, H, W), got {tuple(mosaic.shape)}"
            )
        lead = mosaic.shape[:-3]
        h, w = mosaic.shape[-2:]
        x = mosaic.reshape(-1, 1, h, w)
        masks = torch.from_numpy(_site_masks(h, w, pattern)).to(x.device, x.dtype)
        sparse = F.pad(x * masks.unsqueeze(0), (1, 1, 1, 1), mode="reflect")  # (N, 3, H+2, W+2)
        # R and B: separable [.5, 1, .5] x [.5, 1, .5]; G: the cross [.25 | .25, 1, .25 | .25]
        rb = sparse[:, 0::2]
        hz = rb[..., 1:-1] + 0.5 * (rb[..., :-2] + rb[..., 2:])
        rb = hz[..., 1:-1, :] + 0.5 * (hz[..., :-2, :] + hz[..., 2:, :])
        g = sparse[:, 1]
        g = g[..., 1:-1, 1:-1] + 0.25 * (
            g[..., :-2, 1:-1] + g[..., 2:, 1:-1] + g[..., 1:-1, :-2] + g[..., 1:-1, 2:]
        )
        out = torch.stack([rb[:, 0], g, rb[:, 1]], dim=1)
        return out.reshape(*lead, 3, h, w)
    import cv2

    m = np.asarray(mosaic, dtype=np.float32)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[:, :, 0]
    if m.ndim != 2:
        raise ValueError(f"demosaic_bilinear: NumPy mosaic must be (H, W), got {m.shape}")
    masks = _site_masks(*m.shape, pattern)
    planes = []
    for c, k in enumerate((_K_RB, _K_G, _K_RB)):
        planes.append(cv2.filter2D(m * masks[c], -1, k, borderType=cv2.BORDER_REFLECT_101))
    return np.stack(planes, axis=-1)


def _shift(x, axis: int, step: int):
    """``out[i] = x[i + step]`` along ``axis`` (step +-1), replicating the edge (NumPy or torch)."""
    n = x.shape[axis]
    if isinstance(x, torch.Tensor):
        if step > 0:
            return torch.cat([x.narrow(axis, 1, n - 1), x.narrow(axis, n - 1, 1)], dim=axis)
        return torch.cat([x.narrow(axis, 0, 1), x.narrow(axis, 0, n - 1)], dim=axis)
    idx = np.clip(np.arange(n) + step, 0, n - 1)
    return np.take(x, idx, axis=axis)


def _sum_shift(x: torch.Tensor, axis: int, step: int, scale: float = 1.0) -> torch.Tensor:
    """``scale * (x + _shift(x, axis, step))`` of a tensor."""
    s = x + _shift(x, axis, step)
    return s if scale == 1.0 else scale * s


def _pair_sum(x: np.ndarray, axis: int, step: int) -> np.ndarray:
    """``y[i] = x[i] + x[i + step]`` along ``axis`` (0 or 1 of a 2-D plane; step +-1) with the edge
    replicated (``2 x`` where the neighbour is missing), a new array; no index array, no copy of ``x``."""
    y = np.empty_like(x)
    xs, ys = (x, y) if axis == 0 else (x.T, y.T)
    if step > 0:
        np.add(xs[:-1], xs[1:], out=ys[:-1])
        np.add(xs[-1], xs[-1], out=ys[-1])
    else:
        np.add(xs[1:], xs[:-1], out=ys[1:])
        np.add(xs[0], xs[0], out=ys[0])
    return y


def _demosaic_planes(planes: np.ndarray, offs: tuple[tuple[int, int], ...]) -> np.ndarray:
    """:func:`demosaic_packed` of contiguous float32 planes ``(4, h, w)`` (R, G1, B, G2) -> ``(2h, 2w, 3)``.

    Each interpolated phase is computed in a contiguous half-resolution buffer and written once into
    the interleaved output (the last scaling writes it); the R / B values between two rows of samples
    are reused for the diagonal phase. The sums and their order are those of the torch branch.
    """
    h, w = planes.shape[1:]
    out = np.empty((2 * h, 2 * w, 3), dtype=np.float32)
    half, quarter = np.float32(0.5), np.float32(0.25)
    for plane, ch in ((0, 0), (2, 2)):  # R, B: the sample, its row / column means, the diagonal
        (y, x), src = offs[plane], planes[plane]
        out[y::2, x::2, ch] = src
        np.multiply(_pair_sum(src, 1, 1 - 2 * x), half, out=out[y::2, 1 - x :: 2, ch])
        vert = _pair_sum(src, 0, 1 - 2 * y)
        vert *= half
        out[1 - y :: 2, x::2, ch] = vert
        np.multiply(_pair_sum(vert, 1, 1 - 2 * x), half, out=out[1 - y :: 2, 1 - x :: 2, ch])
    (g1y, g1x), (g2y, g2x) = offs[1], offs[3]
    out[g1y::2, g1x::2, 1] = planes[1]
    out[g2y::2, g2x::2, 1] = planes[3]
    for a, b in (offs[0], offs[2]):  # G at an R or B site: its row's green left / right + the other up / down
        hp, vp = (1, 3) if a == g1y else (3, 1)
        green = _pair_sum(planes[hp], 1, 1 if b > offs[hp][1] else -1)
        green += _pair_sum(planes[vp], 0, 1 if a > offs[vp][0] else -1)
        np.multiply(green, quarter, out=out[a::2, b::2, 1])
    return out


def demosaic_packed(packed: Array, pattern: str = "RGGB") -> Array:
    """Bilinear demosaic straight from packed planes; equals ``demosaic_bilinear(unpack_bayer(p))``.

    Works at half resolution per 2x2 phase (reflect-101 padding of the full-resolution mosaic is edge
    replication of the half-resolution planes), which is several times cheaper than filtering the
    full-resolution sparse planes. NumPy ``(h, w, 4)`` -> ``(2h, 2w, 3)``; torch ``(..., 4, h, w)`` ->
    ``(..., 3, 2h, 2w)``.
    """
    offs = pattern_offsets(pattern)
    if not isinstance(packed, torch.Tensor):
        p = np.asarray(packed, dtype=np.float32)
        if p.ndim != 3 or p.shape[2] != 4:
            raise ValueError(f"demosaic_packed: NumPy packed must be (h, w, 4), got {p.shape}")
        return _demosaic_planes(np.ascontiguousarray(p.transpose(2, 0, 1)), offs)
    if packed.ndim < 3 or packed.shape[-3] != 4:
        raise ValueError(f"demosaic_packed: torch packed must be (..., 4, h, w), got {tuple(packed.shape)}")
    planes = [packed[..., c, :, :] for c in range(4)]
    h, w = packed.shape[-2:]
    out = packed.new_empty((*packed.shape[:-3], 3, 2 * h, 2 * w))

    def interp(x, dy: int, dx: int, a: int, b: int):
        """Plane sampled at phase (dy, dx), evaluated at phase (a, b): mean of the nearest samples."""
        if a != dy:
            x = _sum_shift(x, -2, 1 if a > dy else -1, 0.5)
        if b != dx:
            x = _sum_shift(x, -1, 1 if b > dx else -1, 0.5)
        return x

    (ry, rx), (g1y, g1x), (by, bx), (g2y, g2x) = offs
    for a in (0, 1):
        for b in (0, 1):
            out[..., 0, a::2, b::2] = interp(planes[0], ry, rx, a, b)
            out[..., 2, a::2, b::2] = interp(planes[2], by, bx, a, b)
            if (a, b) == (g1y, g1x):
                out[..., 1, a::2, b::2] = planes[1]
            elif (a, b) == (g2y, g2x):
                out[..., 1, a::2, b::2] = planes[3]
            else:  # an R or B site: its row's green plane left/right, the other green plane up/down
                hp, vp = (1, 3) if a == g1y else (3, 1)
                hx = offs[hp][1]
                vy = offs[vp][0]
                horiz = _sum_shift(planes[hp], -1, 1 if b > hx else -1)
                horiz += _sum_shift(planes[vp], -2, 1 if a > vy else -1)
                out[..., 1, a::2, b::2] = 0.25 * horiz
    return out


def bin2x2(packed: Array) -> Array:
    """Packed (R, G1, B, G2) -> half-resolution RGB ``(R, (G1 + G2) / 2, B)`` (the LIS PNG rendering).

    NumPy ``(h, w, 4)`` -> ``(h, w, 3)``; torch ``(..., 4, h, w)`` -> ``(..., 3, h, w)``.
    """
    if isinstance(packed, torch.Tensor):
        if packed.ndim < 3 or packed.shape[-3] != 4:
            raise ValueError(f"bin2x2: torch packed must be (..., 4, h, w), got {tuple(packed.shape)}")
        g = 0.5 * (packed[..., 1:2, :, :] + packed[..., 3:4, :, :])
        return torch.cat([packed[..., 0:1, :, :], g, packed[..., 2:3, :, :]], dim=-3)
    p = np.asarray(packed)
    if p.ndim != 3 or p.shape[2] != 4:
        raise ValueError(f"bin2x2: NumPy packed must be (h, w, 4), got {p.shape}")
    g = 0.5 * (p[:, :, 1] + p[:, :, 3])
    return np.stack([p[:, :, 0], g, p[:, :, 2]], axis=-1)


def upsample2x_bilinear(x: Array) -> Array:
    """Bilinear 2x upsampling with half-pixel centres and replicated edges (OpenCV ``INTER_LINEAR``).

    Output pixel ``2i`` is ``0.75 x[i] + 0.25 x[i - 1]`` and ``2i + 1`` is ``0.75 x[i] + 0.25 x[i + 1]``
    along each axis (indices clamped at the border): what ``cv2.resize(.., fx=2, fy=2)`` and
    ``torch.nn.functional.interpolate(scale_factor=2, mode="bilinear", align_corners=False)`` compute,
    written out so the NumPy and torch paths give the same numbers.

    NumPy ``(h, w, C)`` -> ``(2h, 2w, C)``; torch ``(..., C, h, w)`` -> ``(..., C, 2h, 2w)``.
    """
    torch_in = isinstance(x, torch.Tensor)
    if torch_in:
        if x.ndim < 3:
            raise ValueError(f"upsample2x_bilinear: torch input must be (..., C, h, w), got {tuple(x.shape)}")
        axes = (x.ndim - 2, x.ndim - 1)
    else:
        x = np.asarray(x)
        if x.ndim != 3:
            raise ValueError(f"upsample2x_bilinear: NumPy input must be (h, w, C), got {x.shape}")
        axes = (0, 1)
    for ax in axes:
        even = 0.75 * x + 0.25 * _shift(x, ax, -1)
        odd = 0.75 * x + 0.25 * _shift(x, ax, +1)
        if torch_in:
            x = torch.stack([even, odd], dim=ax + 1).flatten(ax, ax + 1)
        else:
            x = np.stack([even, odd], axis=ax + 1)
            x = x.reshape(x.shape[:ax] + (-1,) + x.shape[ax + 2 :])
    return x
