"""Procedural instance-segmentation scenes: the data darkseg makes for itself.

No weights and no dataset can be downloaded on the machines darkseg is developed on, so the demo, the
tests and the small-scale ablation run on scenes rendered here: textured backgrounds with several
object classes of distinct shape and texture, directional shading, soft cast shadows and occlusion.
The renderer paints objects back to front with hard (not anti-aliased) edges, so the instance masks
are *exactly* the pixels each object occupies in the final picture (its visible part). Objects whose
visible part is smaller than ``SceneConfig.min_visible_area`` pixels are not painted at all and get no
annotation, so every object pixel in an image belongs to an annotated instance.

Output: sRGB 8-bit images (PNG by default, JPEG on request) and one COCO instance JSON with compressed
RLE masks (``pycocotools.mask.encode``, lossless), boxes ``[x, y, w, h]`` in pixels and mask areas.
Image ``i`` depends only on ``(seed, i)``, so a larger set starts with the images of a smaller one.

Pure NumPy + OpenCV; one ``numpy.random.Generator`` per image, no global random state.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from darkseg.utils.io import atomic_write_json, write_image

__all__ = [
    "SCENE_CLASSES",
    "EXTRA_SCENE_CLASSES",
    "ALL_SCENE_CLASSES",
    "SceneConfig",
    "SceneInstance",
    "Scene",
    "render_scene",
    "resolve_occlusion",
    "shape_mask",
    "generate_scenes",
    "scene_outputs",
]

#: Object classes, in category-id order (category id = index + 1).
SCENE_CLASSES: tuple[str, ...] = ("disc", "box", "triangle", "ring", "star", "cross")

#: Further classes, drawn only when asked for by name (the default set stays ``SCENE_CLASSES``, so
#: existing datasets are unchanged). ``tile`` has the shape of ``box`` and ``coin`` the shape of
#: ``disc``: they differ from them only by a fine texture (period 2-3 px), so telling them apart needs
#: high-frequency features, the ones low-light noise destroys. ``hexagon`` (fine hatching) and
#: ``moon`` (a crescent, smooth) add shapes.
EXTRA_SCENE_CLASSES: tuple[str, ...] = ("tile", "coin", "hexagon", "moon")

#: Every class :func:`render_scene` can draw.
ALL_SCENE_CLASSES: tuple[str, ...] = SCENE_CLASSES + EXTRA_SCENE_CLASSES


@dataclass
class SceneConfig:
    """How scenes look.

    Attributes:
        min_objects, max_objects: objects *placed* per image (inclusive range); occlusion can hide
            some of them, so an image may have fewer annotations.
        min_scale, max_scale: object radius as a fraction of ``min(W, H)``.
        min_visible_area: objects with fewer visible pixels are not painted and not annotated.
        shadows: paint a soft cast shadow under every object (shadows only darken what lies below;
            they are not part of any mask).
        vignette: darken the image corners (applied to the whole picture, masks unaffected).
        max_overlap: reject a placement when more than this fraction of the new object's own area
            would be covered by / cover objects already placed (keeps most objects recognisable).
        clutter: number of unannotated thin strokes and specks painted into the background (0 = none,
            and no random numbers are drawn for it, so scenes without clutter are unchanged).
    """

    min_objects: int = 3
    max_objects: int = 7
    min_scale: float = 0.08
    max_scale: float = 0.24
    min_visible_area: int = 48
    shadows: bool = True
    vignette: bool = True
    max_overlap: float = 0.6
    clutter: int = 0


@dataclass
class SceneInstance:
    """One annotated object: class name, its exact visible mask ``(H, W) bool`` and its depth order."""

    category: str
    mask: np.ndarray
    depth: int


@dataclass
class Scene:
    """A rendered scene.

    Attributes:
        image: ``(H, W, 3) uint8`` sRGB, RGB order.
        background: ``(H, W, 3) uint8`` the same scene with no objects and no shadows (vignette
            included) - useful to check masks against pixels.
        instance_map: ``(H, W) int32``; 0 = background, ``k`` = ``instances[k - 1]``.
        instances: annotated objects, back to front.
    """

    image: np.ndarray
    background: np.ndarray
    instance_map: np.ndarray
    instances: list[SceneInstance] = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# geometry


def _polygon(cx: float, cy: float, radii: np.ndarray, angles: np.ndarray) -> np.ndarray:
    pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
    return np.round(pts * 16).astype(np.int32)  # 4 fractional bits for cv2.fillPoly(shift=4)


def shape_mask(
    category: str, size: tuple[int, int], cx: float, cy: float, r: float, theta: float, aspect: float = 1.0
) -> np.ndarray:
    """Binary footprint of one object.

    Args:
        category: one of ``SCENE_CLASSES``.
        size: ``(W, H)`` of the canvas in pixels.
        cx, cy: centre in pixels; r: outer radius in pixels; theta: rotation in radians;
        aspect: minor/major axis ratio for ``disc`` and ``box`` (1 = circle / square).

    Returns:
        ``(H, W) bool`` mask, hard edges (no anti-aliasing).
    """
    w, h = size
    canvas = np.zeros((h, w), np.uint8)
    if category in ("disc", "coin"):
        axes = (max(1, int(round(r))), max(1, int(round(r * aspect))))
        cv2.ellipse(canvas, (int(round(cx)), int(round(cy))), axes, math.degrees(theta), 0, 360, 1, -1)
    elif category == "ring":
        cv2.circle(canvas, (int(round(cx)), int(round(cy))), max(2, int(round(r))), 1, -1)
        cv2.circle(canvas, (int(round(cx)), int(round(cy))), max(1, int(round(r * 0.5))), 0, -1)
    elif category == "moon":
        cv2.circle(canvas, (int(round(cx)), int(round(cy))), max(2, int(round(r))), 1, -1)
        ox, oy = cx + 0.55 * r * math.cos(theta), cy + 0.55 * r * math.sin(theta)
        cv2.circle(canvas, (int(round(ox)), int(round(oy))), max(1, int(round(r * 0.8))), 0, -1)
    else:
        if category in ("box", "tile"):
            a = math.atan(aspect)
            angles = np.array([a, math.pi - a, math.pi + a, -a]) + theta
            radii = np.full(4, r)
        elif category == "triangle":
            angles = theta + np.arange(3) * 2 * math.pi / 3
            radii = np.full(3, r * 1.1)
        elif category == "hexagon":
            angles = theta + np.arange(6) * math.pi / 3
            radii = np.full(6, r)
        elif category == "star":
            angles = theta + np.arange(10) * math.pi / 5
            radii = np.where(np.arange(10) % 2 == 0, r * 1.1, r * 0.45)
        elif category == "cross":
            t = 0.34  # half arm width relative to r
            xs = np.array([t, t, 1, 1, t, t, -t, -t, -1, -1, -t, -t]) * r
            ys = np.array([1, t, t, -t, -t, -1, -1, -t, -t, t, t, 1]) * r
            angles = np.arctan2(ys, xs) + theta
            radii = np.hypot(xs, ys)
        else:
            raise ValueError(f"unknown scene class {category!r}; known: {', '.join(ALL_SCENE_CLASSES)}")
        cv2.fillPoly(canvas, [_polygon(cx, cy, radii, angles)], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def resolve_occlusion(footprints: list[np.ndarray], min_visible_area: int) -> tuple[np.ndarray, list[int]]:
    """Painter's algorithm with dropping of (almost) hidden objects.

    Objects are painted in list order (later = in front). Walking from the front object backwards,
    each object's visible part is its footprint minus the footprints of the *kept* objects in front of
    it; an object with fewer than ``min_visible_area`` visible pixels is dropped (not painted), which
    can only enlarge what is visible of the objects behind it, so one pass is exact.

    Args:
        footprints: ``(H, W) bool`` masks, back to front.
        min_visible_area: smallest visible part, in pixels, that is kept.

    Returns:
        ``instance_map`` ``(H, W) int32`` (0 = background, ``j + 1`` = ``kept[j]``) and ``kept``, the
        indices into ``footprints`` of the kept objects, back to front.
    """
    if not footprints:
        raise ValueError("resolve_occlusion needs at least one footprint")
    h, w = footprints[0].shape
    occupied = np.zeros((h, w), bool)
    kept_rev: list[int] = []
    for idx in range(len(footprints) - 1, -1, -1):
        visible = footprints[idx] & ~occupied
        if int(visible.sum()) >= min_visible_area:
            kept_rev.append(idx)
            occupied |= footprints[idx]
    kept = kept_rev[::-1]
    instance_map = np.zeros((h, w), np.int32)
    for j, idx in enumerate(kept):
        instance_map[footprints[idx]] = j + 1
    return instance_map, kept


# --------------------------------------------------------------------------------------------------
# appearance


def _srgb_encode(linear: np.ndarray) -> np.ndarray:
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)


def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """Low-frequency noise in ``[0, 1]``: a random ``cells``-grid upsampled bicubically."""
    gh = max(2, int(round(cells * h / max(h, w))) + 1)
    gw = max(2, int(round(cells * w / max(h, w))) + 1)
    grid = rng.random((gh, gw), dtype=np.float32)
    up = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
    return np.clip(up, 0.0, 1.0)


def _random_colour(
    rng: np.random.Generator, sat: tuple[float, float], val: tuple[float, float]
) -> np.ndarray:
    """A linear-RGB colour from a random hue with saturation/value ranges."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*sat) * 255, rng.uniform(*val) * 255]]], np.float32)
    rgb = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)[0, 0] / 255.0
    return rgb**2.2


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Textured background ``(H, W, 3) float32`` linear RGB: a muted base with one of several textures."""
    base = _random_colour(rng, (0.05, 0.45), (0.35, 0.8))
    second = _random_colour(rng, (0.05, 0.45), (0.3, 0.8))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    kind = int(rng.integers(0, 4))
    if kind == 0:  # clouds: two colours blended by low-frequency noise
        t = _smooth_noise(rng, h, w, int(rng.integers(3, 7)))
    elif kind == 1:  # planks / wood grain: warped stripes
        ang = rng.uniform(0, math.pi)
        period = rng.uniform(0.08, 0.2) * max(h, w)
        warp = _smooth_noise(rng, h, w, 4) * period * 0.8
        u = xx * math.cos(ang) + yy * math.sin(ang) + warp
        t = 0.5 + 0.5 * np.sin(2 * math.pi * u / period)
    elif kind == 2:  # fabric: fine crossed weave
        period = rng.uniform(4.0, 9.0)
        t = 0.5 + 0.25 * (np.sin(2 * math.pi * xx / period) + np.sin(2 * math.pi * yy / period))
    else:  # gravel: fine speckle over smooth noise
        t = 0.6 * _smooth_noise(rng, h, w, 5) + 0.4 * rng.random((h, w), dtype=np.float32)
    t = t.astype(np.float32)[..., None]
    img = base[None, None] * (1 - t) + second[None, None] * t
    img *= (0.7 + 0.6 * _smooth_noise(rng, h, w, 3))[..., None]  # uneven illumination
    img += rng.normal(0.0, 0.01, size=(h, w, 3)).astype(np.float32)  # grain
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def _texture(category: str, rng: np.random.Generator, u: np.ndarray, v: np.ndarray, r: float) -> np.ndarray:
    """Class-specific pattern in ``[0, 1]`` in the object's frame (``u, v`` in pixels from the centre)."""
    if category == "disc":  # sphere-like radial shading
        d = np.clip(np.hypot(u, v) / max(r, 1.0), 0, 1)
        return np.sqrt(np.clip(1 - d**2, 0, 1))
    if category == "box":  # stripes along the box axis
        period = max(3.0, r * rng.uniform(0.3, 0.5))
        return (np.floor(u / period) % 2).astype(np.float32)
    if category == "triangle":  # checkerboard
        period = max(3.0, r * rng.uniform(0.25, 0.4))
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    if category == "ring":  # concentric grooves
        return 0.5 + 0.5 * np.cos(2 * math.pi * np.hypot(u, v) / max(3.0, r * 0.25))
    if category == "star":  # polka dots
        period = max(4.0, r * 0.35)
        fu = (u / period) % 1 - 0.5
        fv = (v / period) % 1 - 0.5
        return (np.hypot(fu, fv) < 0.28).astype(np.float32)
    if category == "cross":  # smooth two-tone gradient
        return np.clip(0.5 + u / (2 * max(r, 1.0)), 0, 1)
    if category == "tile":  # fine checkerboard (the box shape with a high-frequency texture)
        period = rng.uniform(2.0, 3.0)
        return ((np.floor(u / period) + np.floor(v / period)) % 2).astype(np.float32)
    if category == "coin":  # fine concentric grooves on the disc shape
        return 0.5 + 0.5 * np.cos(2 * math.pi * np.hypot(u, v) / rng.uniform(2.0, 3.0))
    if category == "hexagon":  # fine diagonal hatching
        return (np.floor((u + v) / rng.uniform(2.0, 3.0)) % 2).astype(np.float32)
    if category == "moon":  # smooth radial falloff
        return np.clip(1.0 - np.hypot(u, v) / max(r, 1.0), 0, 1)
    raise ValueError(f"unknown scene class {category!r}")


def _paint_clutter(img: np.ndarray, rng: np.random.Generator, count: int) -> None:
    """Paint ``count`` thin strokes and small specks into the background (in place; not annotated)."""
    h, w = img.shape[:2]
    for _ in range(count):
        colour = tuple(float(c) for c in _random_colour(rng, (0.0, 0.8), (0.1, 0.9)))
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.6:  # a stroke
            length = rng.uniform(0.03, 0.15) * max(w, h)
            ang = rng.uniform(0, 2 * math.pi)
            x1, y1 = int(round(x0 + length * math.cos(ang))), int(round(y0 + length * math.sin(ang)))
            cv2.line(img, (x0, y0), (x1, y1), colour, int(rng.integers(1, 3)), lineType=cv2.LINE_8)
        else:  # a speck
            cv2.circle(img, (x0, y0), int(rng.integers(1, 3)), colour, -1, lineType=cv2.LINE_8)


def _paint_object(
    img: np.ndarray,
    footprint: np.ndarray,
    category: str,
    rng: np.random.Generator,
    cx: float,
    cy: float,
    r: float,
    theta: float,
    light: np.ndarray,
) -> None:
    """Paint one object (in place) over ``footprint`` with its texture, colour and directional shading."""
    ys, xs = np.nonzero(footprint)
    if ys.size == 0:
        return
    dx = xs.astype(np.float32) - cx
    dy = ys.astype(np.float32) - cy
    c, s = math.cos(theta), math.sin(theta)
    u, v = c * dx + s * dy, -s * dx + c * dy
    col_a = _random_colour(rng, (0.55, 1.0), (0.55, 1.0))
    col_b = col_a * rng.uniform(0.25, 0.55)
    t = _texture(category, rng, u, v, r).astype(np.float32)[:, None]
    colour = col_a[None] * t + col_b[None] * (1 - t)
    shade = 0.8 + 0.35 * (dx * light[0] + dy * light[1]) / max(r, 1.0)  # light from direction ``light``
    colour *= np.clip(shade, 0.45, 1.3)[:, None]
    colour += rng.normal(0.0, 0.008, size=colour.shape).astype(np.float32)
    img[ys, xs] = np.clip(colour, 0.0, 1.0)


def _paint_shadow(img: np.ndarray, footprint: np.ndarray, offset: tuple[int, int], r: float) -> None:
    """Darken, in place, the pixels under a blurred, shifted copy of ``footprint``."""
    h, w = footprint.shape
    m = np.float32([[1, 0, offset[0]], [0, 1, offset[1]]])
    shifted = cv2.warpAffine(footprint.astype(np.float32), m, (w, h), flags=cv2.INTER_NEAREST)
    k = max(3, int(r * 0.25) | 1)
    soft = cv2.GaussianBlur(shifted, (k, k), 0)
    img *= (1.0 - 0.45 * soft)[..., None]


# --------------------------------------------------------------------------------------------------
# scenes


def _place(
    rng: np.random.Generator,
    w: int,
    h: int,
    classes: tuple[str, ...],
    cfg: SceneConfig,
    placed: list[np.ndarray],
) -> tuple[str, np.ndarray, tuple[float, ...]] | None:
    """Draw one object's class and pose; ``None`` when 20 tries all overlap too much."""
    short = min(w, h)
    for _ in range(20):
        category = classes[int(rng.integers(0, len(classes)))]
        r = rng.uniform(cfg.min_scale, cfg.max_scale) * short
        cx = rng.uniform(0.05 * w, 0.95 * w)
        cy = rng.uniform(0.05 * h, 0.95 * h)
        theta = rng.uniform(0, 2 * math.pi)
        aspect = rng.uniform(0.55, 1.0) if category in ("disc", "box", "coin", "tile") else 1.0
        fp = shape_mask(category, (w, h), cx, cy, r, theta, aspect)
        area = int(fp.sum())
        if area < cfg.min_visible_area:
            continue
        if placed:
            union = np.logical_or.reduce(placed)
            if (fp & union).sum() > cfg.max_overlap * area:
                continue
        return category, fp, (cx, cy, r, theta)
    return None


def render_scene(
    rng: np.random.Generator,
    size: tuple[int, int],
    classes: tuple[str, ...] = SCENE_CLASSES,
    cfg: SceneConfig | None = None,
) -> Scene:
    """Render one scene.

    Args:
        rng: the only source of randomness.
        size: ``(W, H)`` in pixels (any size ≥ 16×16).
        classes: class names to draw from (a subset of ``ALL_SCENE_CLASSES``).
        cfg: appearance settings; defaults to ``SceneConfig()``.

    Returns:
        A :class:`Scene` whose instance masks are exactly the object pixels of ``image``.
    """
    cfg = cfg or SceneConfig()
    w, h = int(size[0]), int(size[1])
    if w < 16 or h < 16:
        raise ValueError(f"scene size must be at least 16x16 pixels, got {w}x{h}")
    bg = _background(rng, h, w)
    if cfg.clutter > 0:
        _paint_clutter(bg, rng, cfg.clutter)
    n = int(rng.integers(cfg.min_objects, cfg.max_objects + 1))
    objs: list[tuple[str, np.ndarray, tuple[float, ...]]] = []
    for _ in range(n):
        o = _place(rng, w, h, classes, cfg, [fp for _, fp, _ in objs])
        if o is not None:
            objs.append(o)
    instance_map, kept = (
        resolve_occlusion([fp for _, fp, _ in objs], cfg.min_visible_area)
        if objs
        else (np.zeros((h, w), np.int32), [])
    )

    light_ang = rng.uniform(0, 2 * math.pi)
    light = np.array([-math.cos(light_ang), -math.sin(light_ang)], np.float32)  # shade gradient direction
    shadow_dir = -light  # shadows fall away from the light
    img = bg.copy()
    instances: list[SceneInstance] = []
    for j, idx in enumerate(kept):
        category, fp, (cx, cy, r, theta) = objs[idx]
        if cfg.shadows:
            off = (int(round(shadow_dir[0] * r * 0.18)), int(round(shadow_dir[1] * r * 0.18)))
            _paint_shadow(img, fp, off, r)
        _paint_object(img, fp, category, rng, cx, cy, r, theta, light)
        instances.append(SceneInstance(category=category, mask=instance_map == j + 1, depth=j))

    if cfg.vignette:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        d2 = ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2
        vig = (1.0 - 0.25 * np.clip(d2 / 2, 0, 1))[..., None]
        img *= vig
        bg = bg * vig
    exposure = rng.uniform(0.8, 1.1)
    to8 = lambda x: np.round(_srgb_encode(x * exposure) * 255).astype(np.uint8)  # noqa: E731
    return Scene(image=to8(img), background=to8(bg), instance_map=instance_map, instances=instances)


def _coco_annotation(mask: np.ndarray, ann_id: int, image_id: int, category_id: int) -> dict:
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    ys, xs = np.nonzero(mask)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": rle,
        "area": int(mask.sum()),
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "iscrowd": 0,
    }


def generate_scenes(
    out_dir: str | os.PathLike,
    num_images: int,
    size: tuple[int, int] = (256, 192),
    seed: int = 0,
    classes: tuple[str, ...] | list[str] | None = None,
    image_format: str = "png",
    cfg: SceneConfig | None = None,
    progress: bool = True,
) -> tuple[Path, Path]:
    """Render ``num_images`` scenes into ``out_dir/images/`` and write ``out_dir/annotations.json``.

    Args:
        out_dir: destination folder (created).
        num_images: how many images (≥ 1).
        size: ``(W, H)`` of every image in pixels.
        seed: image ``i`` is rendered from ``numpy.random.default_rng([seed, i])``.
        classes: class names (subset of ``ALL_SCENE_CLASSES``, in the order that sets category ids);
            ``None`` = ``SCENE_CLASSES``.
        image_format: ``"png"`` (lossless) or ``"jpg"`` (quality 95).
        cfg: scene appearance; ``SceneConfig()`` by default.
        progress: show a tqdm bar.

    Returns:
        ``(image_dir, ann_file)``. Every file is written atomically; the JSON is written last, so a
        present annotation file means a complete dataset. Files of an earlier scene set in ``out_dir``
        are replaced; an existing file of the same name that no scene set wrote is refused
        (:class:`darkseg.errors.OutputError`, :mod:`darkseg.utils.outputs`).
    """
    from tqdm import tqdm

    if num_images < 1:
        raise ValueError(f"num_images must be >= 1, got {num_images}")
    classes = tuple(classes) if classes is not None else SCENE_CLASSES
    unknown = [c for c in classes if c not in ALL_SCENE_CLASSES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise ValueError(f"classes must be distinct names from {ALL_SCENE_CLASSES}, got {classes}")
    from darkseg.utils.outputs import OutputRecord, check_paths

    planned = scene_outputs(num_images, image_format)
    ext = Path(planned[0]).suffix[1:]
    out_dir = Path(out_dir)
    check_paths("scenes", [], folders=[out_dir])
    record = OutputRecord(out_dir, "scenes")  # files of earlier scene sets are replaced, no other file
    record.check(planned)
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    record.remove_stale_temporaries(planned)
    record.claim(planned)
    cat_ids = {name: i + 1 for i, name in enumerate(classes)}
    images, annotations = [], []
    for i in tqdm(range(num_images), desc=f"scenes -> {out_dir}", unit="img", disable=not progress):
        rng = np.random.default_rng([int(seed), i])
        scene = render_scene(rng, size, classes, cfg)
        file_name = Path(planned[i]).name
        if ext == "png":
            write_image(image_dir / file_name, scene.image)
        else:
            _write_jpeg(image_dir / file_name, scene.image)
        image_id = i + 1
        images.append({"id": image_id, "file_name": file_name, "width": int(size[0]), "height": int(size[1])})
        for inst in scene.instances:
            ann = _coco_annotation(inst.mask, len(annotations) + 1, image_id, cat_ids[inst.category])
            annotations.append(ann)
    coco = {
        "info": {
            "description": "darkseg procedural scenes",
            "seed": int(seed),
            "size": [int(s) for s in size],
        },
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cid, "name": name, "supercategory": "shape"} for name, cid in cat_ids.items()],
    }
    ann_file = out_dir / "annotations.json"
    atomic_write_json(ann_file, coco)
    return image_dir, ann_file


def scene_outputs(num_images: int, image_format: str = "png") -> list[str]:
    """The files :func:`generate_scenes` writes, relative to its folder: ``images/NNNNNN.<ext>`` for
    ``num_images`` scenes, then ``annotations.json``."""
    fmt = image_format.lower().lstrip(".")
    if fmt not in ("png", "jpg", "jpeg"):
        raise ValueError(f"image_format must be 'png' or 'jpg', got {image_format!r}")
    ext = "png" if fmt == "png" else "jpg"
    return [f"images/{i:06d}.{ext}" for i in range(num_images)] + ["annotations.json"]


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    from darkseg.utils.io import atomic_write_bytes

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise OSError(f"{path}: could not encode JPEG")
    atomic_write_bytes(path, buf.tobytes())
