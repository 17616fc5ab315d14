"""Drawing predictions: brightened previews of dark images and instance overlays.

* :func:`brighten` - auto-exposure preview of a dark sRGB (or linear) image, ``uint8 (H, W, 3)``.
* :func:`draw_instances` - masks (translucent fill + outline), boxes, class names and scores on an
  ``uint8`` RGB image.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["brighten", "preview_gain", "draw_instances", "color_for", "PALETTE"]

#: distinct, saturated RGB colours (cycled per instance)
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255),
    (170, 110, 40), (255, 250, 200), (128, 0, 0), (170, 255, 195), (128, 128, 0), (255, 215, 180),
)  # fmt: skip


def color_for(index: int) -> tuple[int, int, int]:
    """The palette colour of instance ``index``."""
    return PALETTE[int(index) % len(PALETTE)]


def _linear_rgb(image: np.ndarray, linear: bool) -> np.ndarray:
    """``(H, W, 3)`` float32 linear-light RGB of an uint8 / uint16 / float image (sRGB-decoded unless
    ``linear``)."""
    from darkseg.raw.preview import srgb_decode

    x = np.asarray(image)
    if x.ndim == 2:
        x = np.repeat(x[:, :, None], 3, axis=2)
    if x.ndim != 3 or x.shape[2] < 3:
        raise ValueError(f"brighten: expected an (H, W, 3) image, got shape {x.shape}")
    x = x[:, :, :3]
    if x.dtype == np.uint8:
        x = x.astype(np.float32) / 255.0
    elif x.dtype == np.uint16:
        x = x.astype(np.float32) / 65535.0
    else:
        x = np.clip(x.astype(np.float32), 0.0, 1.0)
    return x if linear else srgb_decode(x)


def preview_gain(
    image: np.ndarray, *, linear: bool = False, target: float = 0.18, max_gain: float = 64.0
) -> float:
    """The gain :func:`brighten` applies to ``image`` (linear light; in ``[1, max_gain]``)."""
    from darkseg.raw.preview import auto_exposure_gain

    lin = _linear_rgb(image, linear)
    return float(min(max(auto_exposure_gain(lin, target, max_gain=max_gain), 1.0), max_gain))


def brighten(
    image: np.ndarray,
    *,
    linear: bool = False,
    target: float = 0.18,
    max_gain: float = 64.0,
    gain: float | None = None,
) -> np.ndarray:
    """Auto-exposed preview of a (dark) image.

    Args:
        image: ``(H, W, 3)`` (or ``(H, W)``) RGB, ``uint8``, ``uint16`` or float in [0, 1].
        linear: the values are linear light (e.g. LIS RAW PNGs, binned RAW); otherwise sRGB-encoded.
        target: median luminance after the gain (linear; 0.18 = mid grey).
        max_gain: upper bound of the gain (a bright image is never darkened: gain >= 1).
        gain: use this linear-light gain instead of the automatic one (e.g. a gain smoothed over video
            frames, see :func:`preview_gain`).

    Returns:
        ``uint8 (H, W, 3)`` sRGB.
    """
    from darkseg.raw.preview import auto_exposure_gain, srgb_encode, to_uint8

    lin = _linear_rgb(image, linear)
    if gain is None:
        gain = min(max(auto_exposure_gain(lin, target, max_gain=max_gain), 1.0), max_gain)
    return to_uint8(srgb_encode(lin * np.float32(gain)))


def _get(prediction: Any, key: str):
    return prediction[key] if isinstance(prediction, dict) else getattr(prediction, key)


def _np(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def draw_instances(
    image: np.ndarray,
    prediction: Any,
    class_names: Sequence[str] | None = None,
    *,
    alpha: float = 0.45,
    show_boxes: bool = True,
    show_labels: bool = True,
) -> np.ndarray:
    """Overlay instances on an image.

    Args:
        image: ``uint8 (H, W, 3)`` RGB (use :func:`brighten` first for dark images).
        prediction: a :class:`~darkseg.engine.predictor.Prediction` or a dict with ``boxes`` ``(N, 4)``
            xyxy pixels of ``image``, ``labels`` ``(N,)`` in 1..K, ``scores`` ``(N,)`` and optional ``masks``
            ``(N, H, W)`` bool (or ``(N, 1, H, W)`` probabilities, thresholded at 0.5).
        class_names: the model's class names (label ``k`` -> ``class_names[k - 1]``); defaults to the
            prediction's ``class_names`` when it has them.
        alpha: mask fill opacity.

    Returns:
        a new ``uint8 (H, W, 3)`` RGB image.
    """
    import cv2

    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"draw_instances: expected a uint8 (H, W, 3) image, got {img.dtype} {img.shape}")
    out = np.ascontiguousarray(img.copy())
    h, w = out.shape[:2]
    boxes = _np(_get(prediction, "boxes")).reshape(-1, 4).astype(np.float64)
    labels = _np(_get(prediction, "labels")).reshape(-1).astype(np.int64)
    scores = _np(_get(prediction, "scores")).reshape(-1).astype(np.float64)
    try:
        masks = _get(prediction, "masks")
    except (KeyError, AttributeError):
        masks = None
    if masks is not None:
        masks = _np(masks)
        if masks.ndim == 4:
            masks = masks[:, 0]
        masks = masks > 0.5 if masks.dtype != bool else masks
        if masks.shape[0] and masks.shape[1:] != (h, w):
            raise ValueError(f"draw_instances: masks {masks.shape[1:]} do not match the image ({h}, {w})")
    if class_names is None:
        try:
            class_names = _get(prediction, "class_names")
        except (KeyError, AttributeError):
            class_names = None
    thick = max(1, round(max(h, w) / 400))
    font_scale = max(0.35, max(h, w) / 1400)
    # masks first (all fills), then outlines, boxes and labels on top
    order = np.argsort(scores)  # low scores first so the best instance ends up on top
    for i in order:
        if masks is not None and masks.shape[0]:
            m = masks[i]
            col = np.array(color_for(i), dtype=np.float32)
            out[m] = (out[m].astype(np.float32) * (1 - alpha) + col * alpha + 0.5).astype(np.uint8)
            contours, _ = cv2.findContours(m.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            cv2.drawContours(out, contours, -1, color_for(i), thick, lineType=cv2.LINE_AA)
    for i in order:
        col = color_for(i)
        x0, y0, x1, y1 = (int(round(v)) for v in boxes[i])
        if show_boxes:
            cv2.rectangle(out, (x0, y0), (x1, y1), col, thick, lineType=cv2.LINE_AA)
        if show_labels:
            k = int(labels[i])
            name = class_names[k - 1] if class_names is not None and 1 <= k <= len(class_names) else str(k)
            text = f"{name} {scores[i]:.2f}"
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
            ty = y0 - 2 if y0 - th - base - 2 >= 0 else min(h - 1, y0 + th + base + 2)
            tx = int(np.clip(x0, 0, max(0, w - tw - 2)))
            cv2.rectangle(out, (tx, ty - th - base), (tx + tw + 2, ty + 1), col, -1)
            lum = 0.299 * col[0] + 0.587 * col[1] + 0.114 * col[2]
            fg = (0, 0, 0) if lum > 140 else (255, 255, 255)
            cv2.putText(
                out, text, (tx + 1, ty - base + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, fg, 1, cv2.LINE_AA
            )
    return out
