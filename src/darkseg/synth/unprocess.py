"""sRGB -> linear camera RGB ("unprocessing", Brooks et al. 2019 as used by LIS; docs/synthesis.md).

Steps (per image): inverse smoothstep tone curve, inverse gamma 2.2, inverse colour correction
(``x <- x @ rgb2cam.T``), inverse white balance / brightening with highlight protection, clip to
``[0, 1]``. The Bayer mosaic is done by the caller with :mod:`darkseg.raw.bayer`.

The forward direction (:func:`process_linear`) re-applies gains, ``cam2rgb``, gamma and the tone
curve; where nothing clips it inverts :func:`unprocess` (tested to < 1e-3).

Two array back-ends with the same maths:

* NumPy: one image ``(H, W, 3)`` float32, :class:`UnprocessParams` holding floats / ``(3, 3)`` arrays.
* torch: a batch ``(B, 3, H, W)``, :class:`UnprocessParams` holding ``(B,)`` / ``(B, 3, 3)`` tensors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = [
    "CAM2RGB_LIS",
    "XYZ2CAMS",
    "RGB2XYZ",
    "UnprocessParams",
    "inverse_smoothstep",
    "smoothstep",
    "gamma_expand",
    "gamma_compress",
    "random_rgb2cam_numpy",
    "random_rgb2cam_torch",
    "sample_unprocess_params_numpy",
    "sample_unprocess_params_torch",
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


def inverse_smoothstep(x):
    """Inverse of ``3x^2 - 2x^3`` on ``[0, 1]``: ``0.5 - sin(asin(1 - 2x) / 3)`` (input clipped)."""
    if isinstance(x, torch.Tensor):
        y = x.clamp(0.0, 1.0).mul_(-2.0).add_(1.0).asin_().div_(3.0).sin_()
        return y.neg_().add_(0.5)
    return 0.5 - np.sin(np.arcsin(1.0 - 2.0 * np.clip(x, 0.0, 1.0)) / 3.0)


def _linearize_numpy(x: np.ndarray) -> np.ndarray:
    """``gamma_expand(inverse_smoothstep(x))`` for NumPy in float32, in one buffer.

    The power is taken as ``exp(2.2 ln x)`` (vectorised float32 ``exp``/``log``; within 4e-7 of
    ``x ** 2.2`` on ``[0, 1]``).
    """
    y = np.clip(np.asarray(x, dtype=np.float32), np.float32(0.0), np.float32(1.0))
    y *= np.float32(-2.0)
    y += np.float32(1.0)
    np.arcsin(y, out=y)
    y /= np.float32(3.0)
    np.sin(y, out=y)
    np.subtract(np.float32(0.5), y, out=y)
    np.maximum(y, np.float32(1e-8), out=y)
    np.log(y, out=y)
    y *= np.float32(2.2)
    return np.exp(y, out=y)


def smoothstep(x):
    """The tone curve ``3x^2 - 2x^3`` on ``[0, 1]`` (input clipped)."""
    x = x.clamp(0.0, 1.0) if isinstance(x, torch.Tensor) else np.clip(x, 0.0, 1.0)
    return 3.0 * x * x - 2.0 * x * x * x


def gamma_expand(x):
    """Inverse gamma: ``max(x, 1e-8) ** 2.2`` (torch: as ``exp(2.2 ln x)``, faster on the CPU)."""
    if isinstance(x, torch.Tensor):
        return x.clamp_min(1e-8).log_().mul_(2.2).exp_()
    return np.maximum(x, 1e-8) ** 2.2


def gamma_compress(x):
    """Gamma: ``max(x, 1e-8) ** (1 / 2.2)``."""
    if isinstance(x, torch.Tensor):
        return x.clamp_min(1e-8) ** (1.0 / 2.2)
    return np.maximum(x, 1e-8) ** (1.0 / 2.2)


def _rgb2cam_from_weights(weights: np.ndarray) -> np.ndarray:
    """``(B, 4)`` positive weights -> ``(B, 3, 3)`` rgb2cam (rows normalised to sum 1), float64."""
    w = weights / weights.sum(axis=-1, keepdims=True)
    xyz2cam = np.einsum("bk,kij->bij", w, XYZ2CAMS)
    rgb2cam = xyz2cam @ RGB2XYZ
    return rgb2cam / rgb2cam.sum(axis=-1, keepdims=True)


def random_rgb2cam_numpy(rng: np.random.Generator) -> np.ndarray:
    """Brooks et al. random CCM: convex mix of 4 XYZ->camera matrices, weights ``U(1e-8, 1e8)``."""
    return _rgb2cam_from_weights(rng.uniform(1e-8, 1e8, size=(1, 4)))[0]


def random_rgb2cam_torch(generator: torch.Generator, batch: int, device: torch.device) -> torch.Tensor:
    """Batched :func:`random_rgb2cam_numpy`: ``(B, 3, 3)`` float32 on ``device``."""
    w = torch.rand(batch, 4, generator=generator, device=generator.device, dtype=torch.float64)
    w = 1e-8 + w * (1e8 - 1e-8)
    xyz2cam = torch.einsum("bk,kij->bij", w / w.sum(-1, keepdim=True), torch.from_numpy(XYZ2CAMS).to(w))
    rgb2cam = xyz2cam @ torch.from_numpy(RGB2XYZ).to(w)
    rgb2cam = rgb2cam / rgb2cam.sum(-1, keepdim=True)
    return rgb2cam.to(device=device, dtype=torch.float32)


def _check_ccm(ccm: str) -> None:
    if ccm not in ("calibrated", "random"):
        raise ValueError(f"ccm must be 'calibrated' or 'random', got {ccm!r}")


def sample_unprocess_params_numpy(rng: np.random.Generator, ccm: str = "calibrated") -> UnprocessParams:
    """Draw one image's metadata (order: [ccm weights], rgb gain, red gain, blue gain)."""
    _check_ccm(ccm)
    if ccm == "calibrated":
        cam2rgb = CAM2RGB_LIS.copy()
        rgb2cam = np.linalg.inv(CAM2RGB_LIS).astype(np.float32)
    else:
        rgb2cam64 = random_rgb2cam_numpy(rng)
        rgb2cam = rgb2cam64.astype(np.float32)
        cam2rgb = np.linalg.inv(rgb2cam64).astype(np.float32)
    rgb_gain = 1.0 / rng.normal(RGB_GAIN_INV_MEAN, RGB_GAIN_INV_STD)
    red_gain = rng.uniform(*RED_GAIN_RANGE)
    blue_gain = rng.uniform(*BLUE_GAIN_RANGE)
    return UnprocessParams(rgb2cam, cam2rgb, float(rgb_gain), float(red_gain), float(blue_gain))


def sample_unprocess_params_torch(
    generator: torch.Generator, batch: int, device: torch.device, ccm: str = "calibrated"
) -> UnprocessParams:
    """Draw ``batch`` images' metadata with ``generator`` (on its device); tensors on ``device``."""
    _check_ccm(ccm)
    gdev = generator.device
    if ccm == "calibrated":
        cam2rgb = torch.from_numpy(CAM2RGB_LIS).to(device).expand(batch, 3, 3).contiguous()
        rgb2cam = torch.from_numpy(np.linalg.inv(CAM2RGB_LIS).astype(np.float32)).to(device)
        rgb2cam = rgb2cam.expand(batch, 3, 3).contiguous()
    else:
        rgb2cam = random_rgb2cam_torch(generator, batch, device)
        cam2rgb = torch.linalg.inv(rgb2cam.double()).float()
    u = torch.rand(3, batch, generator=generator, device=gdev, dtype=torch.float64)
    n = torch.randn(batch, generator=generator, device=gdev, dtype=torch.float64)
    rgb_gain = 1.0 / (RGB_GAIN_INV_MEAN + RGB_GAIN_INV_STD * n)
    red = RED_GAIN_RANGE[0] + (RED_GAIN_RANGE[1] - RED_GAIN_RANGE[0]) * u[0]
    blue = BLUE_GAIN_RANGE[0] + (BLUE_GAIN_RANGE[1] - BLUE_GAIN_RANGE[0]) * u[1]
    f = {"device": device, "dtype": torch.float32}
    return UnprocessParams(rgb2cam, cam2rgb, rgb_gain.to(**f), red.to(**f), blue.to(**f))


def unprocess(rgb, p: UnprocessParams):
    """sRGB in ``[0, 1]`` -> linear camera RGB in ``[0, 1]`` (docs/synthesis.md, step 2).

    NumPy ``(H, W, 3)`` with single-image params, or torch ``(B, 3, H, W)`` with batched params.
    Returns float32 of the same layout.
    """
    if isinstance(rgb, torch.Tensor):
        x = gamma_expand(inverse_smoothstep(rgb.float()))
        x = torch.einsum("bij,bjhw->bihw", p.rgb2cam, x)
        gains = torch.stack([1.0 / p.red_gain, torch.ones_like(p.red_gain), 1.0 / p.blue_gain], dim=1)
        gains = (gains / p.rgb_gain[:, None])[:, :, None, None]  # (B, 3, 1, 1)
        # gray = mean_c(x); linear, so fold into the matmul's column sums
        gray = x.mean(dim=1, keepdim=True)
        mask = ((gray - 0.9).clamp_min(0.0) / 0.1) ** 2
        safe = torch.maximum(mask + (1.0 - mask) * gains, gains)
        return (x * safe).clamp_(0.0, 1.0)
    x = _linearize_numpy(rgb)
    x = x @ np.asarray(p.rgb2cam, dtype=np.float32).T
    gains = np.array([1.0 / p.red_gain, 1.0, 1.0 / p.blue_gain], dtype=np.float32) / np.float32(p.rgb_gain)
    gray = x.mean(axis=-1, keepdims=True)
    mask = (np.maximum(gray - 0.9, 0.0) / 0.1) ** 2
    safe = np.maximum(mask + (1.0 - mask) * gains, gains)
    return np.clip(x * safe, 0.0, 1.0).astype(np.float32, copy=False)


def unprocess_packed(rgb, p: UnprocessParams, pattern: str = "RGGB"):
    """:func:`unprocess` fused with mosaicking and packing: sRGB -> packed (R, G1, B, G2) camera RAW.

    Equal to ``pack_bayer(mosaic_rgb(unprocess(rgb, p), pattern), pattern)`` (to float rounding) but
    the colour matrix, gains and highlight mask are evaluated only at the CFA sites that are kept.
    NumPy ``(H, W, 3)`` -> ``(H/2, W/2, 4)``; torch ``(B, 3, H, W)`` -> ``(B, 4, H/2, W/2)``; H, W even.
    """
    from darkseg.raw.bayer import pattern_offsets

    offs = pattern_offsets(pattern)
    rows = [0, 1, 2, 1]  # the rgb2cam row (camera channel) of each packed plane
    if isinstance(rgb, torch.Tensor):
        h, w = rgb.shape[-2:]
        if h % 2 or w % 2:
            raise ValueError(f"unprocess_packed needs even height and width, got {h}x{w}")
        x = gamma_expand(inverse_smoothstep(rgb.float()))
        bsz, hh, ww = x.shape[0], h // 2, w // 2
        sites = torch.stack([x[:, :, dy::2, dx::2] for dy, dx in offs], dim=1)  # (B, 4, 3, h/2, w/2)
        # per plane: its rgb2cam row and the column means (for the highlight mask's grey level), as one
        # batched (2 x 3) @ (3 x hw) product
        weights = torch.stack(
            [p.rgb2cam[:, rows, :], p.rgb2cam.mean(dim=1, keepdim=True).expand(bsz, 4, 3)], dim=2
        )
        res = torch.matmul(weights, sites.reshape(bsz, 4, 3, hh * ww)).view(bsz, 4, 2, hh, ww)
        val, gray = res[:, :, 0], res[:, :, 1]
        gains = torch.stack([1.0 / p.red_gain, torch.ones_like(p.red_gain), 1.0 / p.blue_gain], dim=1)
        gains = (gains / p.rgb_gain[:, None])[:, rows, None, None]  # (B, 4, 1, 1)
        mask = ((gray - 0.9).clamp_min_(0.0) / 0.1).square_()
        safe = torch.maximum(mask + (1.0 - mask) * gains, gains)
        return val.mul_(safe).clamp_(0.0, 1.0)
    x = np.asarray(rgb, dtype=np.float32)
    h, w = x.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"unprocess_packed needs even height and width, got {h}x{w}")
    x = _linearize_numpy(x)
    hh, ww = h // 2, w // 2
    planar = np.ascontiguousarray(x.transpose(2, 0, 1))  # (3, H, W)
    sites = np.stack([planar[:, dy::2, dx::2] for dy, dx in offs]).reshape(4, 3, hh * ww)
    m = np.asarray(p.rgb2cam, dtype=np.float32)
    weights = np.stack([m[rows], np.broadcast_to(m.mean(axis=0), (4, 3))], axis=1)  # (4, 2, 3)
    res = np.matmul(weights, sites).reshape(4, 2, hh, ww).transpose(1, 2, 3, 0)  # (2, h/2, w/2, 4)
    val, gray = res[0], res[1]
    gains = np.array([1.0 / p.red_gain, 1.0, 1.0 / p.blue_gain], dtype=np.float32) / np.float32(p.rgb_gain)
    gains = gains[rows]
    mask = (np.maximum(gray - 0.9, 0.0) / 0.1) ** 2
    safe = np.maximum(mask + (1.0 - mask) * gains, gains)
    return np.clip(val * safe, 0.0, 1.0).astype(np.float32, copy=False)


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
    if isinstance(cam, torch.Tensor):
        x = cam.float()
        b = x.shape[0]
        one = torch.ones(b, device=x.device)
        r = p.red_gain if white_balance else one
        bl = p.blue_gain if white_balance else one
        g = p.rgb_gain if brighten else one
        gains = (torch.stack([r, one, bl], dim=1) * g[:, None])[:, :, None, None]
        x = x * gains
        if ccm:
            x = torch.einsum("bij,bjhw->bihw", p.cam2rgb, x.clamp(0.0, 1.0))
        x = x.clamp(0.0, 1.0)
    else:
        x = np.asarray(cam, dtype=np.float32)
        r = p.red_gain if white_balance else 1.0
        bl = p.blue_gain if white_balance else 1.0
        g = p.rgb_gain if brighten else 1.0
        x = x * (np.array([r, 1.0, bl], dtype=np.float32) * np.float32(g))
        if ccm:
            x = np.clip(x, 0.0, 1.0) @ np.asarray(p.cam2rgb, dtype=np.float32).T
        x = np.clip(x, 0.0, 1.0)
    if gamma:
        x = gamma_compress(x)
    if tone:
        x = smoothstep(x)
    return x.float() if isinstance(x, torch.Tensor) else x.astype(np.float32, copy=False)
