"""``darkseg serve``: a local web app and HTTP API around one model.

* :mod:`~darkseg.serve.limits` - :class:`ServeLimits` (upload size, image size, requests in progress)
  and :class:`RequestError` (a refused request and its HTTP status);
* :mod:`~darkseg.serve.upload` - a ``multipart/form-data`` body read into memory, bounded as it streams;
* :mod:`~darkseg.serve.service` - :class:`PredictionService`: the model in memory, one inference at a
  time, an upload -> JSON detections (COCO RLE masks), no HTTP;
* :mod:`~darkseg.serve.app` - the Starlette application (``/``, ``/health``, ``/model``, ``/predict``);
* ``page.html`` - the web page served at ``/``.

Needs the optional extra ``darkseg[serve]`` (Starlette, Uvicorn, python-multipart); importing this
package does not import them.
"""

from __future__ import annotations

from darkseg.serve.limits import RequestError, ServeLimits

__all__ = ["RequestError", "ServeLimits"]
