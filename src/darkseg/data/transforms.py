"""Sample transforms on torch tensors: ``(image (C, H, W) float, target dict) -> (image, target)``.

* :class:`ResizeKeepRatio` - scale into a ``max_size x min_size`` box (paper: 600x400) keeping the aspect
  ratio, ``f = min(max_size / long, min_size / short)``, output ``round(W*f) x round(H*f)`` (mmdetection's
  ``rescale_size``). Nearest-neighbour by default: averaging interpolations (bilinear, area) denoise a
  low-light image and would change the noise level the detector sees, so the paper uses
  nearest everywhere. For 0.5x it picks even rows/columns, ``out[i, j] = in[2i, 2j]``, like
  OpenCV ``INTER_NEAREST``. Masks are always resized nearest; boxes, areas and polygons are scaled.
* :class:`RandomHorizontalFlip` - flips image, boxes, masks and polygons with probability ``p``, driven by
  its own ``torch.Generator`` (re-seeded per DataLoader worker by :func:`darkseg.data.loader.seed_worker`).
* :class:`LowLightViews` - the synthesis step for DSL: sRGB sample -> ``(clean, noisy, target)`` with
  ``darkseg.synth.LowLightSynthesizer``; the target is rescaled to the synthesiser's output size (half
  resolution for packed RAW).
* :func:`low_light_batch` - the same on a list of images already on the GPU (batched synthesis).

Padding to a multiple of 32 happens inside the model (``GeneralizedRCNNTransform(size_divisible=32)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from darkseg.data import polygons

__all__ = [
    "Compose",
    "ResizeKeepRatio",
    "RandomHorizontalFlip",
    "LowLightViews",
    "keep_ratio_size",
    "resize_image",
    "resize_target",
    "low_light_batch",
    "reseed_transforms",
    "crop_to_even",
    "drop_empty_boxes",
]

Target = dict[str, Any]
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area")


class Compose:
    """Apply transforms in order; each takes and returns the sample's fields as a tuple."""

    def __init__(self, transforms: Sequence[Callable]) -> None:
        self.transforms = list(transforms)

    def __call__(self, *sample):
        for t in self.transforms:
            sample = t(*sample)
        return sample

    def reseed(self, seed: int) -> None:
        reseed_transforms(self.transforms, seed)

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


def reseed_transforms(obj: Any, seed: int) -> None:
    """Re-seed every random transform reachable from ``obj`` (a transform, list or Compose).

    Transform ``k`` in the list gets seed ``seed + 1000003 * k`` so two random transforms do not share
    a stream.
    """
    items = obj if isinstance(obj, (list, tuple)) else [obj]
    for k, t in enumerate(items):
        if hasattr(t, "reseed"):
            t.reseed(seed + 1000003 * k)


def keep_ratio_size(width: int, height: int, max_size: int = 600, min_size: int = 400) -> tuple[int, int]:
    """Output ``(W, H)`` of a keep-ratio resize into the box: long side <= max_size, short <= min_size.

    ``f = min(max_size / long, min_size / short)``; 1200x800 -> 600x400, 640x480 -> 533x400.
    """
    long_side, short_side = max(width, height), min(width, height)
    f = min(max_size / long_side, min_size / short_side)
    return max(1, int(width * f + 0.5)), max(1, int(height * f + 0.5))


def resize_image(
    image: torch.Tensor, size_hw: tuple[int, int], interpolation: str = "nearest"
) -> torch.Tensor:
    """Resize ``(C, H, W)`` or ``(B, C, H, W)`` float image to ``size_hw``.

    ``nearest`` picks ``in[floor(i * H_in / H_out)]`` (OpenCV INTER_NEAREST semantics); ``area`` is
    box averaging; ``bilinear``/``bicubic`` use half-pixel centres without antialiasing (as OpenCV).
    """
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
    squeeze = image.dim() == 3
    x = image[None] if squeeze else image
    if tuple(x.shape[-2:]) != tuple(size_hw):
        kwargs = {} if interpolation in ("nearest", "area") else {"align_corners": False}
        dtype = x.dtype
        x = F.interpolate(x.float(), size=size_hw, mode=interpolation, **kwargs).to(dtype)
        if interpolation == "bicubic" and dtype.is_floating_point:
            x = x.clamp_(0.0, 1.0)
    return x[0] if squeeze else x


def resize_target(target: Target, old_hw: tuple[int, int], new_hw: tuple[int, int]) -> Target:
    """Rescale boxes, areas and (nearest) masks of ``target`` from ``old_hw`` to ``new_hw``."""
    if tuple(old_hw) == tuple(new_hw):
        return target
    out = dict(target)
    sy, sx = new_hw[0] / old_hw[0], new_hw[1] / old_hw[1]
    if "boxes" in target:
        scale = torch.tensor([sx, sy, sx, sy], dtype=target["boxes"].dtype, device=target["boxes"].device)
        out["boxes"] = target["boxes"] * scale
    if "area" in target:
        out["area"] = target["area"] * (sx * sy)
    if "masks" in target:
        m = target["masks"]
        if m.numel():
            out["masks"] = F.interpolate(m[None].float(), size=new_hw, mode="nearest")[0].to(m.dtype)
        else:
            out["masks"] = m.new_zeros((m.shape[0], *new_hw))
    if "polygons" in target:
        out["polygons"] = polygons.scale(target["polygons"], sx, sy)
    return out


class ResizeKeepRatio:
    """Resize into a ``max_size x min_size`` box keeping the aspect ratio (see module docstring)."""

    def __init__(self, max_size: int = 600, min_size: int = 400, interpolation: str = "nearest") -> None:
        if interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, got {interpolation!r}")
        if max_size < min_size or min_size < 1:
            raise ValueError(f"need max_size >= min_size >= 1, got {max_size}, {min_size}")
        self.max_size, self.min_size, self.interpolation = max_size, min_size, interpolation

    def __call__(self, image: torch.Tensor, target: Target | None = None):
        h, w = image.shape[-2:]
        nw, nh = keep_ratio_size(w, h, self.max_size, self.min_size)
        image = resize_image(image, (nh, nw), self.interpolation)
        if target is not None:
            target = resize_target(target, (h, w), (nh, nw))
        return image, target

    def __repr__(self) -> str:
        return f"ResizeKeepRatio(max_size={self.max_size}, min_size={self.min_size}, {self.interpolation!r})"


class RandomHorizontalFlip:
    """Flip image, boxes and masks left-right with probability ``p`` (own generator, seed ``seed``)."""

    def __init__(self, p: float = 0.5, seed: int = 0) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {p}")
        self.p = p
        self.generator = torch.Generator().manual_seed(seed)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def __call__(self, image: torch.Tensor, target: Target | None = None):
        if torch.rand((), generator=self.generator).item() >= self.p:
            return image, target
        w = image.shape[-1]
        image = image.flip(-1)
        if target is not None:
            target = dict(target)
            if "boxes" in target:
                b = target["boxes"]
                target["boxes"] = torch.stack([w - b[:, 2], b[:, 1], w - b[:, 0], b[:, 3]], dim=1)
            if "masks" in target:
                target["masks"] = target["masks"].flip(-1)
            if "polygons" in target:
                target["polygons"] = polygons.flip(target["polygons"], w)
        return image, target

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class LowLightViews:
    """sRGB sample -> ``(clean, noisy, target)`` through a ``darkseg.synth.LowLightSynthesizer``.

    ``clean``/``noisy`` are the synthesiser's outputs for the image (3ch full resolution for
    ``output="rgb"``/``"binned"``, 4ch packed half resolution for ``output="packed"``); the target is
    rescaled to the output size. Randomness: an own ``torch.Generator`` (seed ``seed``, re-seeded per worker).
    """

    def __init__(self, synthesizer: Any, seed: int = 0) -> None:
        self.synthesizer = synthesizer
        self.generator = torch.Generator().manual_seed(seed)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def __call__(self, image: torch.Tensor, target: Target | None = None):
        image, target = crop_to_even(self.synthesizer, image, target)
        clean, noisy = self.synthesizer(image, self.generator)
        target = _match_target(target, image.shape[-2:], clean.shape[-2:])
        return clean, noisy, target

    def __repr__(self) -> str:
        return f"LowLightViews({self.synthesizer!r})"


def crop_to_even(synthesizer: Any, image: torch.Tensor, target: Target | None = None):
    """Drop the last row/column of an odd-sized image (and its target) for a half-resolution synthesiser.

    Packed RAW needs even height and width (a 533x400 keep-ratio resize is odd); one pixel is cropped
    rather than padded so that no invented pixels enter the noise model.
    """
    if float(getattr(synthesizer, "output_scale", 1.0)) == 1.0:
        return image, target
    h, w = image.shape[-2:]
    eh, ew = h - h % 2, w - w % 2
    if (eh, ew) == (h, w):
        return image, target
    image = image[..., :eh, :ew]
    if target is not None:
        target = dict(target)
        if "boxes" in target:
            b = target["boxes"].clone()
            b[:, 0::2] = b[:, 0::2].clamp(max=ew)
            b[:, 1::2] = b[:, 1::2].clamp(max=eh)
            target["boxes"] = b
        if "masks" in target:
            target["masks"] = target["masks"][..., :eh, :ew]
        target = drop_empty_boxes(target)
    return image, target


def drop_empty_boxes(target: Target) -> Target:
    """Remove instances whose box has no area (x2 <= x1 or y2 <= y1) from every per-instance field.

    torchvision's detectors reject such boxes in training; they appear when a crop cuts an object off.
    """
    boxes = target.get("boxes")
    if boxes is None or boxes.numel() == 0:
        return target
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if bool(keep.all()):
        return target
    n = boxes.shape[0]
    out = {
        k: (v[keep] if torch.is_tensor(v) and v.dim() >= 1 and v.shape[0] == n else v)
        for k, v in target.items()
    }
    if "polygons" in target:
        out["polygons"] = polygons.select(target["polygons"], keep.tolist())
    return out


def _match_target(target: Target | None, in_hw, out_hw) -> Target | None:
    if target is None:
        return None
    return resize_target(target, (int(in_hw[0]), int(in_hw[1])), (int(out_hw[0]), int(out_hw[1])))


def low_light_batch(
    synthesizer: Any,
    images: Sequence[torch.Tensor],
    targets: Sequence[Target] | None = None,
    generator: torch.Generator | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor], list[Target] | None]:
    """Synthesise clean/noisy views for a list of sRGB images on their device (e.g. the GPU).

    Images of equal size are synthesised as one ``(B, 3, H, W)`` batch; ``generator`` must live on the
    images' device. Targets are rescaled like in :class:`LowLightViews` (they may stay on the CPU).

    Returns:
        ``(cleans, noisys, targets)`` lists in the input order.
    """
    n = len(images)
    cleans: list[torch.Tensor | None] = [None] * n
    noisys: list[torch.Tensor | None] = [None] * n
    groups: dict[tuple[int, int], list[int]] = {}
    images = list(images)
    targets = list(targets) if targets is not None else None
    for i in range(n):
        images[i], t = crop_to_even(synthesizer, images[i], targets[i] if targets is not None else None)
        if targets is not None:
            targets[i] = t
    for i, img in enumerate(images):
        groups.setdefault(tuple(img.shape[-2:]), []).append(i)
    for idx in groups.values():
        batch = torch.stack([images[i] for i in idx])
        clean, noisy = synthesizer(batch, generator)
        for j, i in enumerate(idx):
            cleans[i], noisys[i] = clean[j], noisy[j]
    out_targets = None
    if targets is not None:
        out_targets = [
            _match_target(t, img.shape[-2:], c.shape[-2:]) for t, img, c in zip(targets, images, cleans)
        ]
    return cleans, noisys, out_targets  # type: ignore[return-value]
