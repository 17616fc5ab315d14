"""Reading a ``multipart/form-data`` upload into memory, with a bound on its size.

:func:`read_form` streams the request body through python-multipart's parser and keeps every part in
memory: nothing is written to disk (no spooled temporary file) and no name from the request is ever used
as a path. The body is refused as soon as it is known to be too large: from its ``Content-Length``
before anything is read, or while it streams in.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from darkseg.serve.limits import RequestError

__all__ = ["FormPart", "read_form"]

#: bytes a form may have beyond its file: boundaries, part headers and the small fields
FORM_OVERHEAD = 64 * 1024
#: parts a form may have (one file and a few settings)
MAX_PARTS = 16
#: bytes of a field that is not a file
MAX_FIELD_BYTES = 1024


@dataclass
class FormPart:
    """One part of a form: its field ``name``, the ``filename`` a browser sent (None for plain
    fields) and the ``data``."""

    name: str
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace").strip()


def _mib(n: int) -> str:
    return f"{n / 2**20:g} MiB"


async def read_form(
    content_type: str | None, content_length: str | None, body: AsyncIterator[bytes], max_file_bytes: int
) -> dict[str, FormPart]:
    """Parse a ``multipart/form-data`` body into ``{field name: part}`` (a repeated name keeps the first).

    Args:
        content_type: the request's ``Content-Type`` header (holds the boundary).
        content_length: its ``Content-Length`` header, when sent.
        body: the body's chunks (Starlette's ``request.stream()``).
        max_file_bytes: the largest file accepted; the whole body may be :data:`FORM_OVERHEAD` larger.

    Raises:
        RequestError: 413 when the body is over the limit (the message names it), 415 when it is not
            ``multipart/form-data``, 400 when it is malformed.
    """
    from python_multipart import MultipartParser
    from python_multipart.exceptions import MultipartParseError
    from python_multipart.multipart import parse_options_header

    ctype, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary")
    if ctype != b"multipart/form-data" or not boundary:
        raise RequestError("send the file as multipart/form-data (a form field named 'file')", 415)
    limit = max_file_bytes + FORM_OVERHEAD
    too_large = f"upload larger than the limit of {_mib(max_file_bytes)} per file (--max-upload-mb)"
    if content_length is not None and content_length.strip().isdigit() and int(content_length) > limit:
        raise RequestError(too_large, 413)

    parts: list[FormPart] = []
    header: dict[str, bytearray] = {}
    current: dict[str, bytearray] = {}

    def on_part_begin() -> None:
        current.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header.setdefault("field", bytearray()).extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header.setdefault("value", bytearray()).extend(data[start:end])

    def on_header_end() -> None:
        current[bytes(header.get("field", b"")).decode("latin-1").lower()] = header.get("value", bytearray())
        header.clear()

    def on_headers_finished() -> None:
        _, opts = parse_options_header(bytes(current.get("content-disposition", b"")))
        if len(parts) >= MAX_PARTS:
            raise RequestError(f"more than {MAX_PARTS} form fields", 400)
        name = opts.get(b"name", b"").decode("utf-8", "replace")
        filename = opts.get(b"filename")
        parts.append(FormPart(name, None if filename is None else filename.decode("utf-8", "replace")))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        part = parts[-1]
        part.data.extend(data[start:end])
        if part.filename is None and len(part.data) > MAX_FIELD_BYTES:
            raise RequestError(f"form field {part.name!r} is longer than {MAX_FIELD_BYTES} bytes", 400)
        if len(part.data) > max_file_bytes:
            raise RequestError(too_large, 413)

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
        },
    )
    total = 0
    try:
        async for chunk in body:
            total += len(chunk)
            if total > limit:
                raise RequestError(too_large, 413)
            parser.write(chunk)
        parser.finalize()
    except MultipartParseError as exc:
        raise RequestError(f"malformed multipart/form-data body ({exc})", 400) from None
    form: dict[str, FormPart] = {}
    for p in parts:
        form.setdefault(p.name, p)
    return form
