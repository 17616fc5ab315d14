"""Prediction on real images: sRGB photos, LIS RAW PNGs and camera RAW files.

``Predictor(checkpoint).predict(image_or_path) -> Prediction``. Inputs and what the network gets:

* **camera RAW** (``.dng``, ``.cr2``, ``.nef``, ``.arw``, ``.raf``, ``.kdc``, ...; or any file LibRaw
  decodes): :func:`darkseg.raw.read_camera_raw`, then :func:`darkseg.raw.frame_to_input` - a 3-channel
  model gets the LIS binning ``[R, (G1 + G2) / 2, B]``, a 4-channel model the packed ``(R, G1, B, G2)``
  planes, both at **half sensor resolution**; ``ratio`` multiplies the normalised RAW first. Predictions
  are in half-resolution coordinates and the preview (:func:`darkseg.raw.render` with ``half=True``) has
  the same size, pixel ``(i, j)`` covering sensor sites ``2i..2i+1, 2j..2j+1``.
* **PNG / JPEG / TIFF / BMP / WebP** (sRGB photos and LIS RAW PNGs, 8 or 16 bit): RGB in [0, 1] at the
  file's resolution (16-bit files keep their precision: value / 65535). 3-channel models only. The
  stored pixels, as every darkseg job reads them: an EXIF orientation tag is not applied (it is reported
  in ``LoadedInput.meta["exif_orientation"]``), so results line up with COCO-format files of the image.
* **files in memory** (:class:`EncodedFile`: a name and the file's bytes, e.g. an HTTP upload): decoded
  like a file of that name (the suffix picks camera RAW or image) without touching the file system.
* **arrays**: NumPy ``(H, W, C)`` (``uint8``, ``uint16`` or float in [0, 1]) or torch ``(C, H, W)`` float,
  ``C`` = the model's ``in_channels``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from darkseg.errors import DarkSegError

__all__ = [
    "IMAGE_EXTENSIONS",
    "EncodedFile",
    "InputFormatError",
    "LoadedInput",
    "Prediction",
    "PredictResult",
    "Predictor",
    "collect_inputs",
    "load_input",
]

#: suffixes (lower case) read as ordinary images with OpenCV
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"})


class InputFormatError(DarkSegError, ValueError):
    """An input cannot be used (unreadable, unsupported format, wrong channel count); names the input."""


@dataclass
class Prediction:
    """Instances found in one image, in the coordinates of the image the network saw (``image_size``).

    Attributes:
        boxes: float32 ``(N, 4)`` xyxy pixels.
        labels: int64 ``(N,)`` class index in ``1..K`` (``class_names[label - 1]``).
        scores: float32 ``(N,)`` in [0, 1], descending.
        masks: bool ``(N, H, W)``.
        class_names: the model's ``K`` class names.
        image_size: ``(H, W)`` of the masks / the preview.
        source: file path (or ``"<array>"``).
        kind: ``"image"``, ``"camera_raw"`` or ``"array"``.
        ratio: the exposure gain applied to the input (chosen per input with ``ratio="auto"``).
    """

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray
    masks: np.ndarray
    class_names: list[str]
    image_size: tuple[int, int]
    source: str = "<array>"
    kind: str = "array"
    ratio: float = 1.0

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @property
    def label_names(self) -> list[str]:
        """Class name of every instance."""
        return [self.class_names[int(k) - 1] for k in self.labels]

    def to_coco(self, image_id: int) -> list[dict[str, Any]]:
        """COCO result dicts (``category_id`` = label, ``bbox`` xywh, ``segmentation`` RLE)."""
        from pycocotools import mask as mask_utils

        out = []
        rles = (
            mask_utils.encode(np.asfortranarray(self.masks.transpose(1, 2, 0).astype(np.uint8)))
            if len(self)
            else []
        )
        for i in range(len(self)):
            x0, y0, x1, y1 = (float(v) for v in self.boxes[i])
            rle = rles[i]
            out.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(self.labels[i]),
                    "score": round(float(self.scores[i]), 6),
                    "bbox": [round(x0, 3), round(y0, 3), round(x1 - x0, 3), round(y1 - y0, 3)],
                    "segmentation": {
                        "size": [int(s) for s in rle["size"]],
                        "counts": rle["counts"].decode("ascii"),
                    },
                }
            )
        return out


@dataclass(frozen=True)
class EncodedFile:
    """An input file held in memory (e.g. an HTTP upload), read like a file of that name.

    ``name``: only its suffix picks the decoder (camera RAW or image) and it names the input in
    messages; it is never opened. ``data``: the file's bytes.
    """

    name: str
    data: bytes


@dataclass
class LoadedInput:
    """An input prepared for the network.

    ``tensor`` float32 ``(C, H, W)`` in [0, 1]; ``preview`` uint8 ``(H, W, 3)`` RGB of the same size,
    brightened for a human; ``linear`` says whether ``tensor`` holds linear RAW values.
    """

    tensor: torch.Tensor
    preview: np.ndarray
    source: str
    kind: str
    linear: bool = False
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class PredictResult:
    """Outcome for one input of :meth:`Predictor.predict_many`: a prediction or an error message."""

    source: str
    prediction: Prediction | None = None
    preview: np.ndarray | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _image_to_float(img: np.ndarray, source: str) -> np.ndarray:
    """OpenCV-read image (RGB order) -> float32 (H, W, 3) in [0, 1]."""
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, :3]  # drop alpha
    elif img.ndim == 3 and img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    if img.ndim != 3 or img.shape[2] != 3:
        raise InputFormatError(f"{source}: unsupported image layout {img.shape}")
    if img.dtype == np.uint8:
        return img.astype(np.float32) / 255.0
    if img.dtype == np.uint16:
        return img.astype(np.float32) / 65535.0
    if np.issubdtype(img.dtype, np.floating):
        return np.clip(_finite(img, source).astype(np.float32), 0.0, 1.0)
    raise InputFormatError(f"{source}: unsupported pixel type {img.dtype}")


def _finite(x: np.ndarray, source: str) -> np.ndarray:
    """``x`` if every value is finite; NaN / inf would pass ``clip`` and reach the network."""
    if not np.isfinite(x).all():
        raise InputFormatError(f"{source}: {int((~np.isfinite(x)).sum())} pixel values are NaN or infinite")
    return x


def load_input(
    source: str | os.PathLike | EncodedFile | np.ndarray | torch.Tensor,
    in_channels: int = 3,
    ratio: float | str = 1.0,
    preview: bool = True,
    linear_images: bool = False,
) -> LoadedInput:
    """Read a file (a path or an :class:`EncodedFile`) or an array into a network input plus a
    brightened preview (see the module docstring).

    ``linear_images``: image files hold linear RAW values (LIS RAW PNGs), not sRGB; only the preview's
    tone curve depends on it.

    ``ratio``: a gain > 0, or ``"auto"``: for linear inputs (camera RAW, LIS RAW PNGs with
    ``linear_images``, packed 4-channel arrays) the gain that brings the frame's mean to the training
    inputs' (:func:`darkseg.raw.exposure.estimate_ratio`); sRGB images and 3-channel arrays get 1. The
    gain used is in ``LoadedInput.meta["ratio"]``.

    Raises:
        InputFormatError: unreadable / unsupported file, an input that does not fit ``in_channels``, or
            something that is not a path, array or tensor (a list, None).
        FileNotFoundError: no such file.
    """
    if not isinstance(source, (str, os.PathLike, EncodedFile, np.ndarray, torch.Tensor)):
        several = isinstance(source, (list, tuple))
        raise InputFormatError(
            "an input must be a file path (str or os.PathLike), an EncodedFile, a NumPy (H, W, C) array or "
            f"a torch (C, H, W) tensor, got {type(source).__name__}"
            + ("; for several inputs use predict_batch or predict_many" if several else "")
        )
    if isinstance(source, (np.ndarray, torch.Tensor)):
        return _load_array(source, in_channels, ratio, preview)
    if isinstance(source, EncodedFile):
        return _load_file(source.name, source.data, in_channels, ratio, preview, linear_images)
    path = Path(source)
    if path.is_dir():
        raise InputFormatError(f"{path}: is a folder; use predict_many / collect_inputs for folders")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return _load_file(str(path), None, in_channels, ratio, preview, linear_images)


def _load_file(
    name: str, data: bytes | None, in_channels: int, ratio: float | str, preview: bool, linear_images: bool
) -> LoadedInput:
    """:func:`load_input` of a file: read from ``name`` (``data`` None) or decoded from ``data`` (its
    bytes; ``name`` then only picks the decoder by suffix and names the input)."""
    import io

    from darkseg.engine.visualize import brighten
    from darkseg.raw import RawFormatError, is_camera_raw_path

    if is_camera_raw_path(name):
        try:
            return _load_camera_raw(name, data, in_channels, ratio, preview)
        except RawFormatError as exc:
            raise InputFormatError(str(exc)) from exc
    from darkseg.utils.io import ImageReadError, decode_image, exif_orientation, read_image

    try:
        img = read_image(name, unchanged=True) if data is None else decode_image(data, name, unchanged=True)
    except ImageReadError as exc:
        # not an image OpenCV decodes: maybe a camera RAW with an unusual suffix
        try:
            return _load_camera_raw(name, data, in_channels, ratio, preview)
        except RawFormatError:
            raise InputFormatError(
                f"{name}: unsupported or unreadable file (neither an image OpenCV decodes nor a camera RAW "
                f"decodes); supported: PNG/JPEG/TIFF/BMP/WebP images and camera RAW ({exc})"
            ) from None
    if in_channels != 3:
        raise InputFormatError(
            f"{name}: the model takes {in_channels}-channel packed RAW input; give a camera RAW file "
            "(DNG, CR2, NEF, ...) instead of an image"
        )
    x = _image_to_float(img, name)
    ratio = _resolve(ratio, x if linear_images else None)
    if ratio != 1.0:
        x = np.clip(x * np.float32(ratio), 0.0, 1.0)
    tensor = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
    pv = brighten(x, linear=linear_images) if preview else np.zeros((0, 0, 3), np.uint8)
    orientation = exif_orientation(name if data is None else io.BytesIO(data))
    meta = {"dtype": str(img.dtype), "ratio": ratio, "exif_orientation": orientation}
    return LoadedInput(tensor, pv, name, "image", linear=linear_images, meta=meta)


def _resolve(ratio: float | str, linear: Any) -> float:
    """A numeric gain; ``"auto"`` is estimated on ``linear`` (None: not linear data -> 1)."""
    from darkseg.raw.exposure import resolve_ratio

    if ratio == "auto" and linear is None:
        return 1.0
    return resolve_ratio(ratio, linear)


def _load_camera_raw(
    name: str, data: bytes | None, in_channels: int, ratio: float | str, preview: bool
) -> LoadedInput:
    from darkseg.raw import frame_to_input, read_camera_raw, render

    frame = read_camera_raw(name, data)
    ratio = _resolve(ratio, frame)
    fmt = "packed" if in_channels == 4 else "rgb"
    tensor = frame_to_input(frame, fmt, ratio)
    pv = render(frame, ratio=ratio, half=True) if preview else np.zeros((0, 0, 3), np.uint8)
    meta = {
        "pattern": frame.pattern,
        "sensor_size": list(frame.shape),
        "scale_to_sensor": 2.0,
        "exposure_time": frame.exposure_time,
        "ratio": ratio,
    }
    return LoadedInput(tensor, pv, name, "camera_raw", linear=True, meta=meta)


def _load_array(
    arr: np.ndarray | torch.Tensor, in_channels: int, ratio: float | str, preview: bool
) -> LoadedInput:
    from darkseg.engine.visualize import brighten

    if isinstance(arr, torch.Tensor):
        if arr.ndim != 3 or arr.shape[0] != in_channels or not arr.is_floating_point():
            raise InputFormatError(
                f"<tensor>: expected a float (C={in_channels}, H, W) tensor in [0, 1], got "
                f"{tuple(arr.shape)} {arr.dtype}"
            )
        tensor = torch.from_numpy(_finite(arr.detach().float().cpu().numpy(), "<tensor>")).clamp(0, 1)
    else:
        a = np.asarray(arr)
        if a.ndim == 2 and in_channels == 3:
            a = np.repeat(a[:, :, None], 3, axis=2)
        if a.ndim != 3 or a.shape[2] != in_channels:
            raise InputFormatError(f"<array>: expected (H, W, {in_channels}) for this model, got {a.shape}")
        if in_channels == 3:
            x = _image_to_float(a, "<array>")
        elif np.issubdtype(a.dtype, np.floating):
            x = np.clip(_finite(a, "<array>").astype(np.float32), 0.0, 1.0)
        else:
            raise InputFormatError(f"<array>: packed RAW arrays must be float in [0, 1], got {a.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
    ratio = _resolve(ratio, tensor if in_channels == 4 else None)
    if ratio != 1.0:
        tensor = (tensor * float(ratio)).clamp(0, 1)
    if not preview:
        pv = np.zeros((0, 0, 3), np.uint8)
    elif in_channels == 4:
        from darkseg.raw.bayer import bin2x2

        pv = brighten(bin2x2(tensor).permute(1, 2, 0).numpy(), linear=True)
    else:
        pv = brighten(tensor.permute(1, 2, 0).numpy())
    return LoadedInput(tensor, pv, "<array>", "array", linear=in_channels == 4, meta={"ratio": ratio})


def collect_inputs(inputs: Iterable[str | os.PathLike], recursive: bool = False) -> list[Path]:
    """Expand files and folders into a sorted list of candidate files (images + camera RAW by suffix).

    Files named explicitly are kept whatever their suffix (they get a clear error later if unsupported);
    folders contribute files with a known image / camera RAW suffix.
    """
    from darkseg.raw import CAMERA_RAW_EXTENSIONS

    known = IMAGE_EXTENSIONS | CAMERA_RAW_EXTENSIONS
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            it = p.rglob("*") if recursive else p.iterdir()
            out.extend(sorted(f for f in it if f.is_file() and f.suffix.lower() in known))
        else:
            out.append(p)
    return out


#: memory a batched model call may use, bytes (``Predictor(batch_memory=...)``, ``--batch-memory``)
BATCH_MEMORY_BUDGET = 2 * 1024**3
#: activation memory per pixel of the padded grid a model call runs on, bytes: measured 520 for the
#: ResNet-50-FPN Mask R-CNN in float32 on the CPU (peak RSS of batch 4 vs batch 1 on 416x544 grids),
#: rounded up; smaller backbones need less, so the estimate errs on the safe side for them
ACTIVATION_BYTES_PER_PIXEL = 600


class Predictor:
    """Run a darkseg checkpoint on images and camera RAW files.

    Args:
        checkpoint: a darkseg checkpoint (``save_checkpoint``) or an already built model.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        score_thr: detections below this score are dropped.
        mask_thr: mask probability threshold, in (0, 1) (a pixel is inside when its probability is above).
        ratio: exposure-ratio gain applied to every input (camera RAW: the normalised RAW; images: the
            [0, 1] values), then clipped; or ``"auto"`` (estimated per linear input, see
            :func:`load_input`).
        fuse: fold SCB re-parameterisation before inference (exact up to float rounding).
        linear_images: image files are linear RAW renderings (LIS RAW PNGs): brighten previews as linear.
        dtype: ``"float32"``, ``"bfloat16"`` (CPU or CUDA) or ``"float16"`` (CUDA): autocast of the
            backbone and heads (:mod:`darkseg.engine.precision`; box decoding, NMS and mask pasting stay
            float32).
        batch_memory: bytes a batched model call may use (:data:`BATCH_MEMORY_BUDGET`): a batch holds at
            most :meth:`max_batch` inputs of a size, whatever batch size is asked for.
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike | torch.nn.Module,
        device: str | torch.device = "auto",
        score_thr: float = 0.5,
        mask_thr: float = 0.5,
        ratio: float | str = 1.0,
        fuse: bool = True,
        linear_images: bool = False,
        dtype: str | torch.dtype = "float32",
        batch_memory: int = BATCH_MEMORY_BUDGET,
    ) -> None:
        from darkseg.engine.evaluate import check_mask_threshold
        from darkseg.models import load_model
        from darkseg.utils.runtime import resolve_device

        if not 0.0 <= score_thr <= 1.0:
            raise ValueError(f"score_thr must be in [0, 1], got {score_thr}")
        if isinstance(batch_memory, bool) or not isinstance(batch_memory, int) or batch_memory < 1:
            raise ValueError(f"batch_memory must be a number of bytes >= 1, got {batch_memory!r}")
        self.batch_memory = batch_memory
        from darkseg.raw.exposure import parse_ratio

        ratio = parse_ratio(str(ratio))  # a finite number > 0 or "auto"; ValueError otherwise
        self.mask_thr = check_mask_threshold(mask_thr, "mask_thr")
        self.device = resolve_device(device)
        if isinstance(checkpoint, torch.nn.Module):
            self.model, self.checkpoint = checkpoint, {}
            self.model.to(self.device).eval()
        else:
            self.model, self.checkpoint = load_model(checkpoint, map_location=self.device)
        if fuse and hasattr(self.model, "fuse") and not getattr(self.model, "fused", False):
            self.model.fuse()
        self.model.eval()
        cfg = self.model.config
        self.class_names: list[str] = list(cfg.class_names)
        self.in_channels: int = int(cfg.in_channels)
        self.score_thr = float(score_thr)
        if hasattr(self.model, "mask_threshold"):  # bool masks while pasting: 4x less memory than floats
            self.model.mask_threshold = self.mask_thr
        self.ratio: float | str = ratio
        self.linear_images = bool(linear_images)
        from darkseg.engine.precision import check_dtype, enable_autocast, parse_dtype

        self.dtype = parse_dtype(dtype)
        check_dtype(self.dtype, self.device)
        enable_autocast(self.model, self.device.type, self.dtype)
        self._grid_cache: dict[tuple[int, int], tuple[int, int]] = {}

    def load(self, image_or_path: Any, preview: bool = True) -> LoadedInput:
        """Read an input the way :meth:`predict` does (tensor + preview)."""
        return load_input(image_or_path, self.in_channels, self.ratio, preview, self.linear_images)

    @torch.inference_mode()
    def predict_tensor(self, tensor: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw torchvision output dict for one ``(C, H, W)`` tensor (no thresholding), on the CPU."""
        out = self.model([tensor.to(self.device)])[0]
        return {k: v.detach().cpu() for k, v in out.items()}

    @torch.inference_mode()
    def predict_tensors(self, tensors: Sequence[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Raw outputs for several ``(C, H, W)`` tensors, on the CPU, in input order (padding-aware).

        Inputs are grouped by the padded grid the model's transform puts them on (resize, then pad to
        ``size_divisible``) and each group is one model call, so no image gets more padding than it
        would alone: results equal one-by-one calls up to float rounding. (Padding one image to a larger
        batch grid changes its features near the bottom/right border: convolutions then see
        the bias/normalisation response of padded pixels instead of zeros.) A group is split further so
        that each call stays within ``batch_memory`` (:meth:`input_memory` per input).
        """
        groups: dict[tuple[int, int], list[int]] = {}
        for i, t in enumerate(tensors):
            groups.setdefault(self.batch_grid(int(t.shape[-2]), int(t.shape[-1])), []).append(i)
        outs: list[dict[str, torch.Tensor] | None] = [None] * len(tensors)
        for group in groups.values():
            for idx in self._memory_chunks(group, [tensors[i].shape[-2:] for i in group]):
                res = self.model([tensors[i].to(self.device) for i in idx])
                for i, r in zip(idx, res):
                    outs[i] = {k: v.detach().cpu() for k, v in r.items()}
        return outs  # type: ignore[return-value]

    def _memory_chunks(self, items: list, sizes: Sequence[Sequence[int]]) -> list[list]:
        """``items`` cut into runs whose :meth:`input_memory` adds up to at most ``batch_memory`` (one
        item at least per run)."""
        chunks: list[list] = []
        used = 0
        for item, (h, w) in zip(items, sizes):
            need = self.input_memory(int(h), int(w))
            if not chunks or used + need > self.batch_memory:
                chunks.append([])
                used = 0
            chunks[-1].append(item)
            used += need
        return chunks

    def input_memory(self, height: int, width: int) -> int:
        """Estimated bytes one ``height x width`` input adds to a batched model call: activations on its
        padded grid (:data:`ACTIVATION_BYTES_PER_PIXEL`), its pasted masks (``detections_per_img`` masks
        of the input size; 1 byte per pixel when thresholded while pasting, else 4), the float input
        tensor and the preview (15 bytes per pixel)."""
        gh, gw = self.batch_grid(height, width)
        dets = int(getattr(getattr(self.model, "roi_heads", None), "detections_per_img", 100))
        mask_bytes = 1 if hasattr(self.model, "mask_threshold") else 4
        return ACTIVATION_BYTES_PER_PIXEL * gh * gw + (dets * mask_bytes + 15) * height * width

    def max_batch(self, height: int, width: int) -> int:
        """How many ``height x width`` inputs one model call may take within ``batch_memory`` (>= 1)."""
        return max(1, self.batch_memory // self.input_memory(height, width))

    def batch_grid(self, height: int, width: int) -> tuple[int, int]:
        """``(H, W)`` of the padded tensor the model runs on for an ``height x width`` input."""
        key = (height, width)
        if key not in self._grid_cache:
            tr = self.model.transform
            with torch.inference_mode():
                h, w = tr.resize(torch.zeros(1, height, width))[0].shape[-2:]
            d = int(getattr(tr, "size_divisible", 1) or 1)
            self._grid_cache[key] = (-(-int(h) // d) * d, -(-int(w) // d) * d)
        return self._grid_cache[key]

    def _to_prediction(self, out: dict[str, torch.Tensor], size: tuple[int, int], source: str, kind: str):
        keep = out["scores"] >= self.score_thr
        masks = out.get("masks")
        h, w = size
        if masks is None:
            m = np.zeros((int(keep.sum()), h, w), dtype=bool)
        elif masks.dtype == torch.bool:  # thresholded by the model while pasting
            m = (masks if bool(keep.all()) else masks[keep])[:, 0].numpy()  # no copy when all are kept
        else:
            m = (masks[keep][:, 0] > self.mask_thr).numpy()
        return Prediction(
            boxes=out["boxes"][keep].float().numpy().reshape(-1, 4),
            labels=out["labels"][keep].to(torch.int64).numpy(),
            scores=out["scores"][keep].float().numpy(),
            masks=m,
            class_names=self.class_names,
            image_size=(h, w),
            source=source,
            kind=kind,
        )

    def predict(self, image_or_path: Any) -> Prediction:
        """Instances of one image (path, NumPy ``(H, W, C)`` or torch ``(C, H, W)``)."""
        return self.predict_with_preview(image_or_path, preview=False)[0]

    def predict_with_preview(self, image_or_path: Any, preview: bool = True) -> tuple[Prediction, np.ndarray]:
        """``(prediction, preview uint8 (H, W, 3))``; the preview has the prediction's coordinates."""
        inp = self.load(image_or_path, preview=preview)
        out = self.predict_tensor(inp.tensor)
        size = (int(inp.tensor.shape[1]), int(inp.tensor.shape[2]))
        pred = self._to_prediction(out, size, inp.source, inp.kind)
        pred.ratio = float(inp.meta.get("ratio", 1.0))
        return pred, inp.preview

    def predict_batch(self, inputs: Sequence[Any]) -> list[Prediction]:
        """Instances of several inputs (paths, arrays, tensors), batched (see :meth:`predict_tensors`)."""
        return [p for p, _ in self.predict_batch_with_preview(inputs, preview=False)]

    def predict_batch_with_preview(
        self, inputs: Sequence[Any], preview: bool = True
    ) -> list[tuple[Prediction, np.ndarray]]:
        """:meth:`predict_with_preview` for several inputs with batched model calls."""
        loaded = [x if isinstance(x, LoadedInput) else self.load(x, preview=preview) for x in inputs]
        return self.predict_loaded(loaded)

    def predict_loaded(self, loaded: Sequence[LoadedInput]) -> list[tuple[Prediction, np.ndarray]]:
        """``(prediction, preview)`` of inputs already read (:meth:`load`, or frames made elsewhere), with
        batched model calls (:meth:`predict_tensors`)."""
        outs = self.predict_tensors([inp.tensor for inp in loaded])
        res = []
        for inp, out in zip(loaded, outs):
            size = (int(inp.tensor.shape[1]), int(inp.tensor.shape[2]))
            pred = self._to_prediction(out, size, inp.source, inp.kind)
            pred.ratio = float(inp.meta.get("ratio", 1.0))
            res.append((pred, inp.preview))
        return res

    def predict_many(
        self,
        inputs: Sequence[Any],
        progress: bool = True,
        preview: bool = True,
        on_result=None,
        batch_size: int = 1,
    ) -> list[PredictResult]:
        """Predict every input; a failing input records its error and the rest go on.

        Args:
            inputs: paths (folders are expanded by :func:`collect_inputs`) or arrays.
            progress: show a tqdm bar.
            preview: also render the brightened preview of each input.
            on_result: optional callback ``f(PredictResult)`` called after each input (e.g. to write files
                as they come instead of keeping every preview in memory; the result's preview is then
                dropped from the returned list).
            batch_size: inputs per model call (:meth:`predict_tensors`; inputs that land on different
                padded grids are separate calls, and a batch holds fewer inputs when their
                :meth:`input_memory` reaches ``batch_memory``). A batch whose model call fails is retried
                one by one.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if batch_size > 1:
            return self._predict_many_batched(inputs, progress, preview, on_result, batch_size)
        from tqdm.auto import tqdm

        paths: list[Any] = []
        for x in inputs:
            if isinstance(x, (str, os.PathLike)):
                paths.extend(collect_inputs([x]))
            else:
                paths.append(x)
        results: list[PredictResult] = []
        for src in tqdm(paths, desc="predict", unit="img", disable=not progress or len(paths) <= 1):
            name = str(src) if isinstance(src, (str, os.PathLike)) else "<array>"
            try:
                pred, pv = self.predict_with_preview(src, preview=preview)
                res = PredictResult(name, pred, pv if preview else None)
            except Exception as exc:  # noqa: BLE001 - one bad input must not stop the others
                msg = str(exc) or type(exc).__name__
                res = PredictResult(name, error=msg if name in msg else f"{name}: {msg}")
            if on_result is not None:
                on_result(res)
                res.preview = None
            results.append(res)
        return results

    def _predict_many_batched(
        self, inputs: Sequence[Any], progress: bool, preview: bool, on_result, batch_size: int
    ) -> list[PredictResult]:
        from tqdm.auto import tqdm

        paths = _expand(inputs)
        results: list[PredictResult] = []

        def emit(res: PredictResult) -> None:
            if on_result is not None:
                on_result(res)
                res.preview = None
            results.append(res)

        bar = tqdm(total=len(paths), desc="predict", unit="img", disable=not progress or len(paths) <= 1)
        pending = iter(paths)
        while True:  # a chunk: batch_size inputs, fewer when their memory reaches batch_memory
            slots: list[PredictResult | LoadedInput] = []
            used = 0
            for src in pending:  # load errors are per input
                try:
                    inp = self.load(src, preview=preview)
                    slots.append(inp)
                    used += self.input_memory(int(inp.tensor.shape[-2]), int(inp.tensor.shape[-1]))
                except Exception as exc:  # noqa: BLE001 - one bad input must not stop the others
                    slots.append(_error(_name(src), exc))
                if len(slots) >= batch_size or used >= self.batch_memory:
                    break
            if not slots:
                break
            loaded = [s for s in slots if isinstance(s, LoadedInput)]
            try:
                done = iter(self.predict_loaded(loaded))
            except Exception:  # noqa: BLE001 - retry alone so that only the failing input is reported
                done = iter(self._predict_one_by_one(loaded))
            for s in slots:
                if isinstance(s, PredictResult):
                    emit(s)
                    continue
                item = next(done)
                if isinstance(item, PredictResult):
                    emit(item)
                else:
                    pred, pv = item
                    emit(PredictResult(s.source, pred, pv if preview else None))
            bar.update(len(slots))
        bar.close()
        return results

    def _predict_one_by_one(self, loaded: Sequence[LoadedInput]) -> list[Any]:
        out: list[Any] = []
        for inp in loaded:
            try:
                out.append(self.predict_loaded([inp])[0])
            except Exception as exc:  # noqa: BLE001
                out.append(_error(inp.source, exc))
        return out


def _name(src: Any) -> str:
    if isinstance(src, EncodedFile):
        return src.name
    return str(src) if isinstance(src, (str, os.PathLike)) else "<array>"


def _error(name: str, exc: BaseException) -> PredictResult:
    msg = str(exc) or type(exc).__name__
    return PredictResult(name, error=msg if name in msg else f"{name}: {msg}")


def _expand(inputs: Sequence[Any]) -> list[Any]:
    """Paths expanded with :func:`collect_inputs` (folders), arrays kept."""
    out: list[Any] = []
    for x in inputs:
        if isinstance(x, (str, os.PathLike)):
            out.extend(collect_inputs([x]))
        else:
            out.append(x)
    return out
