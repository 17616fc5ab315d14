"""The bounds of ``darkseg serve`` (upload size, image size, waiting requests) and the error of a request
that breaks them or is otherwise unusable (with the HTTP status to answer)."""

from __future__ import annotations

from dataclasses import dataclass

from darkseg.errors import DarkSegError
from darkseg.utils.typed_config import Settings

__all__ = ["RequestError", "ServeLimits"]


class RequestError(DarkSegError, ValueError):
    """A request that cannot be served; ``status`` is the HTTP status (400, 413, 415, 422, 503)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = int(status)


@dataclass
class ServeLimits(Settings):
    """What one request may cost the server.

    Attributes:
        max_upload_bytes: largest uploaded file (bytes); a larger body is answered 413 before or while
            it streams in, never read whole.
        max_pixels: largest image the model may be given, in pixels of the image it sees (camera RAW:
            half sensor resolution); an image file's header is checked before it is decoded. Answered 422.
        max_queue: requests that may be in progress at once (decoding, waiting for the model, running);
            one more is answered 503 with ``Retry-After``.
    """

    max_upload_bytes: int = 128 * 2**20
    max_pixels: int = 40_000_000
    max_queue: int = 32

    def validate(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "max_queue"):
            if int(getattr(self, name)) < 1:
                raise self.invalid(name, "must be >= 1")
