"""The HTTP side of ``darkseg serve``: a Starlette (ASGI) application around a
:class:`~darkseg.serve.service.PredictionService`.

Routes (nothing else; no route reads or writes a file):

* ``GET /`` - the web page (drop a photo or RAW file, see the masks, change the score threshold and
  the exposure ratio, download the JSON);
* ``GET /health`` - ``{"status": "ok", "in_progress", "served", "uptime_s"}``;
* ``GET /model`` - classes, numerics mode, input size, device, limits;
* ``POST /predict`` - ``multipart/form-data`` with ``file`` and optional ``ratio`` (number or ``auto``),
  ``score_thr``, ``linear``, ``preview`` -> the JSON of :meth:`PredictionService.predict`, with
  ``timings.upload_s`` and ``timings.total_s`` added. Errors are ``{"error": message}`` with status 400
  (malformed form), 413 (upload over the limit), 415 (not an image or camera RAW file), 422 (bad
  setting, image over the pixel limit, unusable file), 503 (too many requests in progress) or 500 (an
  unexpected failure, logged with its traceback; the server goes on).

Every answer carries ``X-Content-Type-Options: nosniff``; the page also a Content-Security-Policy that
allows only its own inline script and this server. With ``allowed_hosts`` the ``Host`` header is
checked (``darkseg serve`` passes the loopback names when it binds to a loopback address), so a web
page elsewhere cannot reach the server through DNS rebinding.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from importlib import resources
from typing import Any

from darkseg.serve.limits import RequestError
from darkseg.serve.service import PredictionService, parse_options
from darkseg.serve.upload import read_form

__all__ = ["create_app", "page_html"]

log = logging.getLogger("darkseg.serve")

_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
_PAGE_HEADERS = {
    **_HEADERS,
    "Content-Security-Policy": "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data: blob:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
    "X-Frame-Options": "DENY",
}


def page_html(service: PredictionService) -> str:
    """The web page (``serve/page.html``) with the overlay palette of
    :func:`darkseg.engine.visualize.draw_instances` filled in, so that both colour instance ``i`` alike."""
    from darkseg.engine.visualize import PALETTE

    text = resources.files("darkseg.serve").joinpath("page.html").read_text(encoding="utf-8")
    return text.replace("/*PALETTE*/[]", json.dumps([list(c) for c in PALETTE]))


def create_app(service: PredictionService, allowed_hosts: Sequence[str] | None = None) -> Any:
    """The ASGI application serving ``service`` (see the module docstring)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.middleware import Middleware
    from starlette.middleware.trustedhost import TrustedHostMiddleware
    from starlette.requests import Request
    from starlette.responses import HTMLResponse, JSONResponse
    from starlette.routing import Route

    page = page_html(service)

    def error(exc: RequestError) -> JSONResponse:
        headers = {**_HEADERS, **({"Retry-After": "1"} if exc.status == 503 else {})}
        return JSONResponse({"error": str(exc)}, status_code=exc.status, headers=headers)

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page, headers=_PAGE_HEADERS)

    async def health(request: Request) -> JSONResponse:
        return JSONResponse(service.health(), headers=_HEADERS)

    async def model(request: Request) -> JSONResponse:
        return JSONResponse(service.model_info(), headers=_HEADERS)

    async def predict(request: Request) -> JSONResponse:
        t0 = time.perf_counter()
        try:
            form = await read_form(
                request.headers.get("content-type"),
                request.headers.get("content-length"),
                request.stream(),
                service.limits.max_upload_bytes,
            )
            upload = form.get("file")
            if upload is None or upload.filename is None:
                raise RequestError("no file: send the image in a multipart form field named 'file'", 422)
            options = parse_options({k: p.text for k, p in form.items() if k != "file"})
            t1 = time.perf_counter()
            answer = await run_in_threadpool(service.predict, upload.filename, bytes(upload.data), options)
        except RequestError as exc:
            return error(exc)
        except Exception as exc:  # noqa: BLE001 - the page shows the message; the server goes on
            log.exception("POST /predict failed")
            return error(RequestError(f"internal error: {type(exc).__name__}: {exc}", 500))
        answer["timings"]["upload_s"] = round(t1 - t0, 4)
        answer["timings"]["total_s"] = round(time.perf_counter() - t0, 4)
        return JSONResponse(answer, headers=_HEADERS)

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/model", model, methods=["GET"]),
        Route("/predict", predict, methods=["POST"]),
    ]
    middleware = (
        [Middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))] if allowed_hosts else []
    )
    return Starlette(routes=routes, middleware=middleware)
