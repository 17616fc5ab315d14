"""Run a :class:`~darkseg.engine.predictor.Predictor` over a video file or webcam stream.

:func:`predict_video` reads frames (:class:`~darkseg.engine.video.VideoSource`), runs the model on
batches of ``batch_size`` frames, hands each frame's :class:`~darkseg.engine.predictor.Prediction` to a
callback, and writes an annotated video (brightened preview + instances, same frame rate and size) with
:class:`~darkseg.engine.video.VideoSink`.

Exposure: frames are sRGB-encoded 8-bit pictures (as decoded), the network input is ``frame / 255``
times the predictor's ``ratio``. With ``ratio="auto"`` and ``linear_images`` (frames hold linear RAW
values) the gain is estimated per frame (:func:`darkseg.raw.exposure.estimate_ratio`). With
``gain_ema`` > 0 that gain and the preview's auto-exposure gain (:func:`darkseg.engine.visualize.
preview_gain`) are smoothed over frames (:class:`darkseg.raw.exposure.GainEMA`) so neither flickers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from darkseg.engine.predictor import LoadedInput, Prediction, Predictor
from darkseg.engine.video import VideoSink, VideoSource

__all__ = ["VideoReport", "FrameLoader", "predict_video"]


@dataclass
class VideoReport:
    """Outcome of :func:`predict_video`.

    ``frames``: frames predicted; ``problems``: skipped / failed frames and early ends (messages);
    ``seconds``: wall time of the loop (reading, model, drawing, writing); ``fps`` / ``size``: the source's
    frame rate and ``(width, height)``; ``out``: the annotated video (``None`` when not written);
    ``interrupted``: stopped by Ctrl-C (KeyboardInterrupt), the frames before are complete.
    """

    source: str
    frames: int = 0
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0
    fps: float = 0.0
    size: tuple[int, int] = (0, 0)
    out: Path | None = None
    interrupted: bool = False

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


class FrameLoader:
    """Turn RGB ``uint8`` frames into network inputs + previews, with optional gain smoothing.

    Args:
        predictor: gives ``ratio``, ``linear_images`` and ``in_channels`` (must be 3).
        gain_ema: EMA momentum in [0, 1) for the exposure gains (0: every frame on its own).
        preview: also make the brightened preview.
    """

    def __init__(self, predictor: Predictor, gain_ema: float = 0.0, preview: bool = True) -> None:
        from darkseg.raw.exposure import GainEMA

        if predictor.in_channels != 3:
            raise ValueError(
                f"video frames are RGB pictures; this model takes {predictor.in_channels}-channel packed RAW"
            )
        self.predictor = predictor
        self.preview = preview
        self.smooth = gain_ema > 0
        self._ratio_ema = GainEMA(gain_ema) if self.smooth else None
        self._preview_ema = GainEMA(gain_ema) if self.smooth else None

    def __call__(self, frame: np.ndarray, source: str) -> LoadedInput:
        """``frame`` RGB uint8 ``(H, W, 3)`` -> input tensor ``(3, H, W)`` in [0, 1] and preview."""
        from darkseg.engine.visualize import brighten, preview_gain
        from darkseg.raw.exposure import estimate_ratio

        p = self.predictor
        x = frame.astype(np.float32) / 255.0
        if p.ratio == "auto":
            ratio = estimate_ratio(x) if p.linear_images else 1.0
            if self._ratio_ema is not None and p.linear_images:
                ratio = self._ratio_ema.update(ratio)
        else:
            ratio = float(p.ratio)
        if ratio != 1.0:
            x = np.clip(x * np.float32(ratio), 0.0, 1.0)
        tensor = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
        pv = np.zeros((0, 0, 3), np.uint8)
        gain = None
        if self.preview:
            gain = preview_gain(x, linear=p.linear_images)
            if self._preview_ema is not None:
                gain = self._preview_ema.update(gain)
            pv = brighten(x, linear=p.linear_images, gain=gain)
        meta = {"ratio": ratio, "preview_gain": gain}
        return LoadedInput(tensor, pv, source, "video_frame", linear=p.linear_images, meta=meta)


def predict_video(
    predictor: Predictor,
    source: VideoSource,
    *,
    out_video: str | Path | None = None,
    batch_size: int = 1,
    gain_ema: float = 0.0,
    on_frame: Callable[[int, Prediction, np.ndarray], None] | None = None,
    progress: bool = True,
) -> VideoReport:
    """Predict every frame of ``source``; write the annotated video to ``out_video`` (MJPG AVI).

    Args:
        predictor: the model.
        source: an open :class:`VideoSource` (closed on return).
        out_video: annotated video path (``None``: no video).
        batch_size: frames per model call; fewer when their memory reaches the predictor's
            ``batch_memory`` (:meth:`~darkseg.engine.predictor.Predictor.max_batch`).
        gain_ema: exposure gain smoothing (:class:`FrameLoader`).
        on_frame: ``f(frame_index, prediction, frame_rgb)`` after each predicted frame, in order.
        progress: tqdm bar (total = the header's frame count when known).

    A frame whose prediction fails is reported in ``problems`` and the annotated video gets the
    brightened frame without instances, so the video keeps its timing. Ctrl-C stops the loop and returns
    the report (``interrupted``); the frames of an unfinished batch are dropped. A source that yields no
    frame at all is a problem of the report ("no frame could be read").
    """
    from tqdm.auto import tqdm

    from darkseg.engine.visualize import draw_instances

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    want_video = out_video is not None
    loader = FrameLoader(predictor, gain_ema=gain_ema, preview=want_video)
    report = VideoReport(source.name, fps=source.fps, size=(source.width, source.height))
    sink: VideoSink | None = None
    total = source.frame_count if source.max_frames is None else source.max_frames
    bar = tqdm(total=total, desc=Path(source.name).name, unit="frame", disable=not progress)
    t0 = time.perf_counter()

    def flush(batch: list[tuple[int, np.ndarray, LoadedInput]]) -> None:
        nonlocal sink
        if not batch:
            return
        try:
            results: list = predictor.predict_loaded([b[2] for b in batch])
        except Exception:  # noqa: BLE001 - retry frame by frame so only the failing frame is lost
            results = predictor._predict_one_by_one([b[2] for b in batch])
        for (index, frame, inp), res in zip(batch, results):
            pred = None
            if isinstance(res, tuple):
                pred = res[0]
                report.frames += 1
                if on_frame is not None:
                    on_frame(index, pred, frame)
            else:
                report.problems.append(f"{source.name}: frame {index}: {res.error}")
            if want_video:
                if sink is None:
                    h, w = inp.preview.shape[:2]
                    sink = VideoSink(out_video, source.fps, (w, h))
                    report.out = sink.path
                sink.write(draw_instances(inp.preview, pred) if pred is not None else inp.preview)
        bar.update(len(batch))
        batch.clear()

    batch: list[tuple[int, np.ndarray, LoadedInput]] = []
    try:
        for index, frame in source:
            try:
                batch.append((index, frame, loader(frame, f"{source.name}#{index}")))
            except Exception as exc:  # noqa: BLE001
                report.problems.append(f"{source.name}: frame {index}: {exc}")
                continue
            if len(batch) >= min(batch_size, predictor.max_batch(*frame.shape[:2])):
                flush(batch)
        flush(batch)
        if source.frames_read == 0:
            report.problems.append(f"{source.name}: no frame could be read (no decodable frame in it)")
    except KeyboardInterrupt:  # Ctrl-C ends a webcam run: keep what was done, let the caller finish up
        report.interrupted = True
        report.problems.append(f"{source.name}: interrupted after {report.frames} frame(s)")
    finally:
        bar.close()
        source.close()
        if sink is not None:
            sink.close()
        report.seconds = time.perf_counter() - t0
        report.problems[:0] = source.problems
    return report
