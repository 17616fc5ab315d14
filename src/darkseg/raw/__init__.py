"""darkseg.raw: camera RAW files, Bayer mosaics and a preview ISP.

Public API::

    from darkseg.raw import (read_camera_raw, RawFrame, RawFormatError, frame_to_input, render,
                             is_camera_raw_path, CAMERA_RAW_EXTENSIONS)

Bayer helpers live in :mod:`darkseg.raw.bayer`; ``render`` (the preview ISP) in :mod:`darkseg.raw.preview`.
"""

from __future__ import annotations

from .preview import auto_exposure_gain, render, srgb_decode, srgb_encode
from .reader import (
    CAMERA_RAW_EXTENSIONS,
    RawFormatError,
    RawFrame,
    cam2rgb_from_xyz,
    frame_to_input,
    is_camera_raw_path,
    read_camera_raw,
)

__all__ = [
    "CAMERA_RAW_EXTENSIONS",
    "RawFormatError",
    "RawFrame",
    "cam2rgb_from_xyz",
    "frame_to_input",
    "is_camera_raw_path",
    "read_camera_raw",
    "render",
    "auto_exposure_gain",
    "srgb_encode",
    "srgb_decode",
]
