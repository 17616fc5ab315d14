"""Video input and output for prediction: frames from files and webcams, an annotated video writer.

* :class:`VideoSource` - RGB ``uint8 (H, W, 3)`` frames of a video file (any container / codec OpenCV's
  FFmpeg backend decodes) or of a webcam (OpenCV's default camera backend, V4L2 on Linux). A frame that
  cannot be decoded is skipped and reported; a stream that ends before the frame count in its header is
  reported; what was read is kept.
* :class:`VideoSink` - Motion-JPEG frames in an AVI file written with ``cv2.VideoWriter`` (OpenCV's own
  AVI muxer, ``cv2.CAP_OPENCV_MJPEG``). Every frame is a self-contained JPEG chunk written as it comes,
  so a run killed mid-video (even with SIGKILL) leaves a file that FFmpeg-based readers and players open
  and play up to the last frame that reached the disk; only the AVI index at the end is missing, and
  readers fall back to scanning the chunks.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from darkseg.engine.predictor import InputFormatError

__all__ = [
    "VIDEO_EXTENSIONS",
    "MAX_WEBCAM_INDEX",
    "VideoOpenError",
    "VideoSource",
    "VideoSink",
    "is_video_path",
    "parse_webcam",
]

#: suffixes (lower case) read as video with OpenCV's FFmpeg backend
VIDEO_EXTENSIONS = frozenset(
    {".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts", ".wmv",
     ".flv", ".3gp", ".ogv", ".mjpeg", ".mjpg", ".y4m"}
)  # fmt: skip

#: default frame rate when a source does not report one (webcams often report 0)
DEFAULT_FPS = 25.0
#: largest webcam index: OpenCV reads ``index // 100`` as a capture backend (200 = V4L2 + 0), a negative
#: index crashes some backends and a number past 32 bits overflows
MAX_WEBCAM_INDEX = 99

_CAM = re.compile(r"^cam:(\d+)$", re.IGNORECASE)


class VideoOpenError(InputFormatError):
    """A video file or a camera cannot be opened; the message names it and says why."""


def is_video_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` has a video suffix (:data:`VIDEO_EXTENSIONS`)."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def parse_webcam(text: str) -> int | None:
    """``"cam:N"`` -> ``N``; anything else -> ``None``."""
    m = _CAM.match(str(text).strip())
    return int(m.group(1)) if m else None


class VideoSource:
    """Frames of a video file or a webcam.

    Args:
        source: a video file path, or a webcam index (int).
        max_frames: stop after this many frames (``None``: until the stream ends; a webcam runs until
            interrupted).
        max_skips: consecutive undecodable frames skipped before the stream is taken to have ended.

    Attributes:
        name: the path, or ``"cam:N"``.
        fps: frames per second reported by the source (:data:`DEFAULT_FPS` when it reports none).
        width, height: frame size in pixels.
        frame_count: frames announced by the file's header (``None`` for cameras or when unknown).
        problems: messages about skipped frames and early ends, in order.
        frames_read: frames yielded so far.
    """

    def __init__(self, source: str | os.PathLike | int, max_frames: int | None = None, max_skips: int = 5):
        import cv2

        self.is_camera = isinstance(source, int)
        self.name = f"cam:{source}" if self.is_camera else str(source)
        if self.is_camera:
            if not 0 <= source <= MAX_WEBCAM_INDEX:
                raise VideoOpenError(f"{self.name}: a webcam index must be 0..{MAX_WEBCAM_INDEX}")
            cap = cv2.VideoCapture(int(source))
            if not cap.isOpened():
                raise VideoOpenError(
                    f"{self.name}: no camera could be opened at index {source} (no such device, or it is "
                    "busy / not permitted)"
                )
        else:
            path = Path(source)
            if not path.is_file():
                raise FileNotFoundError(f"{path}: no such file")
            cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
            if not cap.isOpened():
                raise VideoOpenError(f"{path}: not a video OpenCV's FFmpeg backend can open")
        self._cap = cap
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = fps if np.isfinite(fps) and 0 < fps < 1000 else DEFAULT_FPS
        self.width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        self.frame_count: int | None = n if n > 0 and not self.is_camera else None
        self.max_frames = max_frames
        self.max_skips = int(max_skips)
        self.problems: list[str] = []
        self.frames_read = 0

    def _read(self) -> np.ndarray | None:
        ok, frame = self._cap.read()
        return frame if ok and frame is not None and frame.size else None

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yields ``(frame index, RGB uint8 (H, W, 3))``; indices count skipped frames too."""
        index = 0
        while self.max_frames is None or self.frames_read < self.max_frames:
            frame = self._read()
            skipped = 0
            while frame is None and skipped < self.max_skips and not self._at_announced_end(index + skipped):
                skipped += 1  # a frame that does not decode: try the next ones before giving up
                frame = self._read()
            if frame is None:
                if self.frame_count is not None and index < self.frame_count:
                    self.problems.append(
                        f"{self.name}: stream ended early at frame {index} of {self.frame_count} (header); "
                        f"the {index} frame(s) before are kept"
                    )
                elif self.is_camera:
                    self.problems.append(f"{self.name}: the camera stopped delivering frames at {index}")
                return
            if skipped:
                self.problems.append(
                    f"{self.name}: frame(s) {index}..{index + skipped - 1} could not be decoded; skipped"
                )
                index += skipped
            if frame.ndim == 2:
                frame = np.repeat(frame[:, :, None], 3, axis=2)
            self.frames_read += 1
            yield index, np.ascontiguousarray(frame[:, :, 2::-1])  # BGR -> RGB
            index += 1

    def _at_announced_end(self, index: int) -> bool:
        return self.frame_count is not None and index + 1 >= self.frame_count

    def close(self) -> None:
        self._cap.release()

    def __enter__(self) -> VideoSource:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class VideoSink:
    """Write RGB ``uint8 (H, W, 3)`` frames as Motion-JPEG in AVI (see the module docstring).

    Args:
        path: output file; ``.avi`` is the container written whatever the suffix says.
        fps: frame rate stored in the header.
        size: ``(width, height)`` of every frame.
        quality: JPEG quality 1..100.
    """

    def __init__(self, path: str | os.PathLike, fps: float, size: tuple[int, int], quality: int = 90):
        import cv2

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = (int(size[0]), int(size[1]))
        self.fps = float(fps)
        fourcc = cv2.VideoWriter_fourcc(*"MJPG")
        self._writer = cv2.VideoWriter(str(self.path), cv2.CAP_OPENCV_MJPEG, fourcc, self.fps, self.size)
        if not self._writer.isOpened():
            raise OSError(f"{self.path}: cannot open a Motion-JPEG AVI writer ({self.size}, {self.fps} fps)")
        self._writer.set(cv2.VIDEOWRITER_PROP_QUALITY, float(quality))
        self.frames_written = 0

    def write(self, frame: np.ndarray) -> None:
        """Append one RGB frame of the sink's size."""
        f = np.asarray(frame)
        if f.dtype != np.uint8 or f.shape != (self.size[1], self.size[0], 3):
            raise ValueError(
                f"{self.path}: expected uint8 ({self.size[1]}, {self.size[0]}, 3) frames, "
                f"got {f.dtype} {f.shape}"
            )
        self._writer.write(np.ascontiguousarray(f[:, :, ::-1]))
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file (writes the AVI index and the final frame count)."""
        self._writer.release()

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
