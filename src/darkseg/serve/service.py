"""The model behind ``darkseg serve``: one :class:`~darkseg.engine.predictor.Predictor` in memory, one
inference at a time, requests checked against :class:`~darkseg.serve.limits.ServeLimits`.

:class:`PredictionService` knows nothing of HTTP: ``predict(name, data, options)`` takes an uploaded
file's name and bytes and returns the JSON-ready answer, or raises :class:`RequestError` with the
status to answer. Decoding reuses the predictor's own (:func:`darkseg.engine.predictor.load_input` of
an :class:`~darkseg.engine.predictor.EncodedFile`): the bytes never touch the file system and the
uploaded name only picks the decoder by its suffix. The model call runs under a lock, so concurrent
requests queue for it and never share its state; decoding and encoding run outside the lock.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import re
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import numpy as np

from darkseg.engine.predictor import EncodedFile, InputFormatError, Prediction, Predictor, load_input
from darkseg.serve.limits import RequestError, ServeLimits

__all__ = ["PredictOptions", "PredictionService", "parse_options", "safe_name"]

#: quality of the JPEG preview sent back to the web page
PREVIEW_QUALITY = 90

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}


@dataclass(frozen=True)
class PredictOptions:
    """Settings of one request: ``ratio`` (a gain > 0 or ``"auto"``), ``score_thr`` in [0, 1],
    ``linear`` (image files hold linear RAW values, e.g. LIS RAW PNGs) and ``preview`` (send back the
    brightened picture the masks refer to, as a JPEG data URL)."""

    ratio: float | str = 1.0
    score_thr: float = 0.5
    linear: bool = False
    preview: bool = False


def _flag(name: str, text: str) -> bool:
    t = text.strip().lower()
    if t in _TRUE:
        return True
    if t in _FALSE:
        return False
    raise RequestError(f"{name} must be true or false (1/0), got {text!r}", 422)


def parse_options(fields: dict[str, str]) -> PredictOptions:
    """Options from the form's text fields ``ratio``, ``score_thr``, ``linear``, ``preview``; missing
    ones keep their defaults. Raises :class:`RequestError` (422) naming the field."""
    from darkseg.raw.exposure import parse_ratio

    known = {"ratio", "score_thr", "linear", "preview"}
    unknown = sorted(set(fields) - known - {"file"})
    if unknown:
        raise RequestError(f"unknown form field(s) {unknown}; known: file, {', '.join(sorted(known))}", 422)
    opts: dict[str, Any] = {}
    if "ratio" in fields:
        try:
            opts["ratio"] = parse_ratio(fields["ratio"])
        except ValueError as exc:
            raise RequestError(str(exc), 422) from None
    if "score_thr" in fields:
        try:
            thr = float(fields["score_thr"])
        except ValueError:
            thr = float("nan")
        if not 0.0 <= thr <= 1.0:
            raise RequestError(f"score_thr must be a number in [0, 1], got {fields['score_thr']!r}", 422)
        opts["score_thr"] = thr
    for name in ("linear", "preview"):
        if name in fields:
            opts[name] = _flag(name, fields[name])
    return PredictOptions(**opts)


def safe_name(filename: str | None) -> str:
    """The last component of an uploaded file's name, printable characters only, at most 120: used for
    its suffix and in messages, never as a path."""
    base = PurePosixPath(str(filename or "").replace("\\", "/")).name
    base = re.sub(r"[^\w .+()-]", "_", base)[-120:].strip()
    return base or "upload"


def _header_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` from an image file's header (Pillow, nothing decoded); None when Pillow does
    not know the file. Pillow's own bound (decompression bombs, ~179 megapixels) counts as too large."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as im:
                return int(im.size[0]), int(im.size[1])
        except Image.DecompressionBombError:
            return (2**31, 1)
        except Exception:  # noqa: BLE001 - not an image Pillow identifies
            return None


def _above(pred: Prediction, score_thr: float) -> Prediction:
    """The instances of ``pred`` with score >= ``score_thr``."""
    keep = pred.scores >= score_thr
    return dataclasses.replace(
        pred,
        boxes=pred.boxes[keep],
        labels=pred.labels[keep],
        scores=pred.scores[keep],
        masks=pred.masks[keep],
    )


def _jpeg_data_url(rgb: np.ndarray) -> str:
    import cv2

    ok, buf = cv2.imencode(
        ".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, PREVIEW_QUALITY]
    )
    if not ok:  # pragma: no cover - OpenCV encodes any uint8 image
        raise RuntimeError("could not encode the preview")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


class PredictionService:
    """One model in memory and the rules of serving it.

    Args:
        predictor: the model (built with ``score_thr=0``: each request's threshold is applied here).
        limits: upload size, image size and the number of requests in progress.
        checkpoint_name: what ``/model`` calls the checkpoint (its file name).
    """

    def __init__(
        self, predictor: Predictor, limits: ServeLimits | None = None, checkpoint_name: str = ""
    ) -> None:
        self.predictor = predictor
        self.limits = limits or ServeLimits()
        self.checkpoint_name = checkpoint_name
        self._model_lock = threading.Lock()  # one inference at a time
        self._count_lock = threading.Lock()
        self._in_progress = 0
        self.served = 0
        self.started = time.time()

    # ------------------------------------------------------------------ information
    def model_info(self) -> dict[str, Any]:
        """What ``GET /model`` answers: classes, numerics mode, input size, device, limits."""
        p = self.predictor
        cfg = p.model.config
        inputs = (
            "sRGB photos, LIS RAW PNGs (linear) and camera RAW files"
            if p.in_channels == 3
            else "camera RAW files (packed 4-channel input)"
        )
        return {
            "checkpoint": self.checkpoint_name,
            "classes": list(p.class_names),
            "in_channels": p.in_channels,
            "inputs": inputs,
            "numerics": str(cfg.compat),
            "dtype": str(p.dtype).removeprefix("torch."),
            "device": str(p.device),
            "input_size": {
                "min_size": int(cfg.min_size),
                "max_size": int(cfg.max_size),
                "size_divisible": int(cfg.size_divisible),
                "meaning": "each image is resized to fit min_size x max_size (short x long side), keeping "
                "its aspect ratio; results are in the input image's pixels",
            },
            "mask_thr": p.mask_thr,
            "limits": dataclasses.asdict(self.limits),
        }

    def health(self) -> dict[str, Any]:
        """What ``GET /health`` answers."""
        return {
            "status": "ok",
            "in_progress": self._in_progress,
            "served": self.served,
            "uptime_s": round(time.time() - self.started, 1),
        }

    # ------------------------------------------------------------------ prediction
    def _reserve(self) -> None:
        with self._count_lock:
            if self._in_progress >= self.limits.max_queue:
                raise RequestError(
                    f"busy: {self._in_progress} requests in progress (the limit, --max-queue); retry later",
                    503,
                )
            self._in_progress += 1

    def _release(self) -> None:
        with self._count_lock:
            self._in_progress -= 1

    def _check_file(self, name: str, data: bytes) -> None:
        """Refuse, before decoding, a file that is neither a camera RAW (by suffix) nor an image whose
        header Pillow reads, and an image over the pixel limit."""
        from darkseg.raw import is_camera_raw_path

        if not data:
            raise RequestError(f"{name}: the file is empty", 422)
        if is_camera_raw_path(name):
            return
        size = _header_size(data)
        if size is None:
            raise RequestError(
                f"{name}: not an image file (PNG, JPEG, TIFF, BMP, WebP) or a camera RAW file (DNG, CR2, "
                "NEF, ARW, ... by its suffix)",
                415,
            )
        self._check_pixels(name, size[0], size[1])

    def _check_pixels(self, name: str, width: int, height: int) -> None:
        if width * height > self.limits.max_pixels:
            raise RequestError(
                f"{name}: image of {width} x {height} pixels is over the limit of {self.limits.max_pixels} "
                "pixels (--max-megapixels)",
                422,
            )

    def predict(self, filename: str | None, data: bytes, options: PredictOptions) -> dict[str, Any]:
        """Instances in an uploaded file (blocking: call it from a worker thread).

        Returns the JSON-ready answer: ``file``, ``kind``, ``width``/``height`` (pixels of the image the
        model saw, the masks' grid), ``ratio`` (the exposure gain used), ``score_thr``, ``classes``,
        ``detections`` (COCO results without ``image_id``: ``category_id`` = class index 1..K, ``class``,
        ``score``, ``bbox`` xywh, ``area`` (mask pixels), ``segmentation`` RLE), ``timings`` (seconds)
        and, with ``options.preview``, ``preview`` (a JPEG data URL of the brightened input).

        Raises:
            RequestError: 415 not an image / camera RAW, 422 unusable (too large, wrong kind for the
                model, undecodable), 503 too many requests in progress.
        """
        from pycocotools import mask as mask_utils

        name = safe_name(filename)
        t0 = time.perf_counter()
        self._reserve()
        try:
            self._check_file(name, data)
            p = self.predictor
            try:
                inp = load_input(
                    EncodedFile(name, data), p.in_channels, options.ratio, options.preview, options.linear
                )
            except (InputFormatError, ValueError) as exc:
                raise RequestError(str(exc), 422) from None
            h, w = int(inp.tensor.shape[1]), int(inp.tensor.shape[2])
            self._check_pixels(name, w, h)
            t1 = time.perf_counter()
            with self._model_lock:
                t2 = time.perf_counter()
                pred, preview = p.predict_loaded([inp])[0]
                t3 = time.perf_counter()
            pred = _above(pred, options.score_thr)
            dets = pred.to_coco(0)
            areas = mask_utils.area([d["segmentation"] for d in dets]) if dets else []
            for d, name_k, area in zip(dets, pred.label_names, areas):
                del d["image_id"]
                d["class"] = name_k
                d["area"] = int(area)
            answer: dict[str, Any] = {
                "file": name,
                "kind": pred.kind,
                "width": w,
                "height": h,
                "ratio": round(float(pred.ratio), 6),
                "score_thr": options.score_thr,
                "linear": options.linear,
                "classes": list(p.class_names),
                "detections": dets,
                "coordinates": "pixels of the image the model saw (camera RAW: half sensor resolution)",
            }
            if options.preview:
                answer["preview"] = _jpeg_data_url(preview)
            t4 = time.perf_counter()
            answer["timings"] = {
                "decode_s": round(t1 - t0, 4),
                "wait_s": round(t2 - t1, 4),
                "inference_s": round(t3 - t2, 4),
                "encode_s": round(t4 - t3, 4),
            }
            with self._count_lock:
                self.served += 1
            return answer
        finally:
            self._release()
