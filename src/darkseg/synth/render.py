"""Packed RAW -> network input (spec section 6.6, with the channel-order fix of section 13.1).

``"rgb"`` output: unpack to the flat mosaic of the CFA ``pattern``, optionally quantise to 8 bits
(``round(255 x) / 255``, as LIS), bilinear demosaic (:func:`darkseg.raw.bayer.demosaic_bilinear`),
optional ISP steps (white balance, brightening, CCM, gamma, tone curve; all off by default = the LIS
"dim linear camera RGB"), optional final 8-bit rounding (LIS demosaics a ``uint8`` mosaic with OpenCV,
whose output is ``uint8`` again). Channels are **R, G, B**; ``legacy_swap_rb`` returns B, G, R like
the original code's synthetic images (spec 6.7).

``"binned"`` output: how the real LIS RAW PNGs were made (spec 7.2, the fix of section 13.8): 2x2
binning ``[R, (G1 + G2) / 2, B]`` at half resolution, bilinear 2x upsampling back to the full size
(:func:`darkseg.raw.bayer.upsample2x_bilinear`), optional ISP steps, optional 8-bit rounding (LIS rounds
after the resize). Same shape and channels as ``"rgb"``; training on it matches the real test images'
rendering instead of OpenCV's demosaic.

``"packed"`` output: the 4 planes (R, G1, B, G2) at half resolution, optionally 8-bit quantised.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from darkseg.raw.bayer import bin2x2, demosaic_packed, upsample2x_bilinear
from darkseg.synth.unprocess import UnprocessParams, process_linear

__all__ = ["OUTPUTS", "RenderOptions", "render"]

#: the network-input renderings (see the module docstring)
OUTPUTS = ("rgb", "binned", "packed")


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


def _q8(x):
    if isinstance(x, torch.Tensor):
        return x.mul(255.0).round_().div_(255.0)
    y = np.multiply(x, np.float32(255.0), dtype=np.float32)
    np.rint(y, out=y)
    y /= np.float32(255.0)
    return y


def render(packed, opts: RenderOptions, params: UnprocessParams | None = None):
    """Render packed RAW.

    Args:
        packed: NumPy ``(h, w, 4)`` or torch ``(B, 4, h, w)``, values in ``[0, 1]``.
        opts: :class:`RenderOptions`.
        params: the images' unprocessing metadata; needed only for ISP steps.

    Returns:
        ``"rgb"``/``"binned"``: NumPy ``(2h, 2w, 3)`` / torch ``(B, 3, 2h, 2w)``; ``"packed"``: the input
        layout.
        float32 in ``[0, 1]``.
    """
    if opts.output == "packed":
        return _q8(packed) if opts.quantize_8bit else packed
    if opts.output == "binned":
        torch_in = isinstance(packed, torch.Tensor)
        rgb = upsample2x_bilinear(bin2x2(packed if torch_in else np.asarray(packed, np.float32)))
    elif opts.output == "rgb":
        if opts.quantize_8bit:  # rounding the packed planes = rounding the mosaic
            packed = _q8(packed)
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
    if opts.quantize_8bit:
        rgb = _q8(rgb)
    if opts.legacy_swap_rb:
        rgb = rgb.flip(-3) if isinstance(rgb, torch.Tensor) else rgb[..., ::-1]
    if isinstance(rgb, torch.Tensor):
        return rgb.clamp_(0.0, 1.0)
    return np.ascontiguousarray(np.clip(rgb, 0.0, 1.0), dtype=np.float32)
