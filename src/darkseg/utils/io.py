"""File helpers shared by every stage.

All writers are *atomic*: data goes to a temporary file in the destination folder, is flushed and
fsynced, then renamed over the destination. A run killed mid-write therefore never leaves a partial
file under the final name; it can leave the temporary file, which is hidden and named
``.<final name>.<tag>.tmp`` (``tag``: 8 random characters of ``mkstemp``, or ``link`` / ``partial``
for checkpoint hard links and ONNX exports). :func:`remove_stale_temporaries` removes exactly such
files, and every job calls it on its output folder when it starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from darkseg.errors import DarkSegError

__all__ = [
    "ImageReadError",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_torch_save",
    "decode_image",
    "exif_orientation",
    "stored_image_size",
    "read_image",
    "write_image",
    "load_json",
    "is_atomic_temporary",
    "remove_stale_temporaries",
    "parse_json",
]

#: Names of darkseg's own temporary files: ``.<final name>.<8 mkstemp characters | link | partial>.tmp``.
_TEMPORARY_NAME = re.compile(r"^\.(?P<final>.+)\.(?:[a-z0-9_]{8}|link|partial)\.tmp$")


class ImageReadError(DarkSegError, RuntimeError):
    """An image file could not be read; the message names the file and the reason."""


def _current_umask() -> int:
    """The process umask (read once per call; os.umask has no read-only form)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success fsync and rename it to ``path``.

    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_current_umask())  # mkstemp creates 0600; honour the umask like open()
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def is_atomic_temporary(path: str | os.PathLike, final_names: set[str] | None = None) -> bool:
    """Whether ``path`` is named like a temporary file of darkseg's atomic writers.

    With ``final_names``, only temporaries of those destination names count.
    """
    m = _TEMPORARY_NAME.match(Path(path).name)
    return m is not None and (final_names is None or m.group("final") in final_names)


def remove_stale_temporaries(
    folder: str | os.PathLike, recursive: bool = False, final_names: set[str] | None = None
) -> list[Path]:
    """Delete the temporary files a killed darkseg process left in ``folder``; returns what was removed.

    Only regular files named like darkseg's own temporaries (see the module docstring) are touched,
    optionally only those of ``final_names``; every other file stays. Call it before the job writes,
    never while another process writes into the same folder.
    """
    root = Path(folder)
    if not root.is_dir():
        return []
    found = root.rglob(".*.tmp") if recursive else root.glob(".*.tmp")
    removed = []
    for p in sorted(found):
        if p.is_file() and not p.is_symlink() and is_atomic_temporary(p, final_names):
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> None:
    """Serialise ``obj`` as JSON to ``path`` atomically."""
    with atomic_open(path, "w") as fh:
        json.dump(obj, fh, indent=indent)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically."""
    import torch

    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)


class _DuplicateKeyError(ValueError):
    """A JSON object repeats a key (raised inside ``json`` by :func:`_unique_object`)."""


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook`` that refuses a repeated key (``json`` keeps the last value silently)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        repeated = next(k for k, _ in pairs if k in seen or seen.add(k))
        owner = f" in the object with id {obj['id']!r}" if "id" in obj else ""
        raise _DuplicateKeyError(f"duplicate key {repeated!r}{owner}")
    return obj


def parse_json(text: str, where: str) -> Any:
    """Parse JSON ``text``; raise ``ValueError`` naming ``where`` for malformed JSON (line and column)
    and for an object that repeats a key (named, with the object's ``id`` when it has one)."""
    try:
        return json.loads(text, object_pairs_hook=_unique_object)
    except json.JSONDecodeError as exc:
        position = f"line {exc.lineno} column {exc.colno}"
        raise ValueError(f"{where}: malformed JSON at {position}: {exc.msg}") from exc
    except _DuplicateKeyError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def load_json(path: str | os.PathLike) -> Any:
    """Load a JSON file; raise ``ValueError`` naming the file and position when it is malformed, and
    naming the key when an object repeats one (see :func:`parse_json`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return parse_json(path.read_text(encoding="utf-8"), str(path))


def read_image(path: str | os.PathLike, *, unchanged: bool = False) -> np.ndarray:
    """Read an image file into a NumPy array in **RGB** channel order, as stored (EXIF orientation ignored).

    This is the one image decoder of every darkseg job (datasets, ``synth``, ``predict``, ``demo``).
    The result is the **stored pixel grid**: an EXIF ``Orientation`` tag (phone photos: 3 = upside down,
    6 / 8 = rotated 90 degrees) is ignored, because COCO annotations (and pycocotools, and the COCO
    tools) refer to the stored pixels and the file's ``width`` / ``height``. Use
    :func:`exif_orientation` to find out whether a viewer would show the file rotated.

    Args:
        path: image file (PNG, JPEG, TIFF, ... anything OpenCV decodes).
        unchanged: keep the stored bit depth (e.g. ``uint16`` for 16-bit PNG) and channel count;
            otherwise the result is 8-bit, 3 channels.

    Returns:
        ``(H, W, 3)`` (or ``(H, W)`` / ``(H, W, C)`` with ``unchanged``) array, RGB order, ``H x W`` the
        stored size.

    Raises:
        ImageReadError: the file is missing, empty, or cannot be decoded (message names the file).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    return decode_image(np.fromfile(str(path), dtype=np.uint8), str(path), unchanged=unchanged)


def decode_image(data: bytes | np.ndarray, where: str, *, unchanged: bool = False) -> np.ndarray:
    """:func:`read_image` of an encoded image held in memory (the bytes of a PNG, JPEG, ... file);
    ``where`` names it in errors. Nothing touches the file system."""
    import cv2

    buf = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    if buf.size == 0:
        raise ImageReadError(f"{where}: file is empty")
    # IMREAD_UNCHANGED never applies the EXIF orientation; IMREAD_COLOR does unless told not to.
    flag = cv2.IMREAD_UNCHANGED if unchanged else cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    img = cv2.imdecode(buf, flag)
    if img is None:
        raise ImageReadError(f"{where}: not a decodable image (corrupt or unsupported format)")
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[:, :, ::-1]
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[:, :, [2, 1, 0, 3]]
    return np.ascontiguousarray(img)


def stored_image_size(path: str | os.PathLike | IO[bytes]) -> tuple[int, int] | None:
    """``(width, height)`` of an image file (a path or a binary file object) from its header alone
    (Pillow), as :func:`read_image` will decode it (stored grid, EXIF orientation ignored); None when
    Pillow cannot identify the file."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception:  # noqa: BLE001 - unknown to Pillow: the decoder reports problems on reading
        return None


def exif_orientation(path: str | os.PathLike | IO[bytes]) -> int:
    """The EXIF ``Orientation`` tag of an image file (a path or a binary file object): 1..8, 1 (as
    stored) when absent or unreadable.

    Only reads the file header (Pillow, installed with matplotlib). darkseg never applies the tag (see
    :func:`read_image`); ``darkseg predict`` reports it so a rotated phone photo is not a surprise.
    """
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow comes with matplotlib
        return 1
    try:
        with Image.open(path) as im:
            value = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - not an image Pillow reads: no orientation to report
        return 1
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else 1


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an RGB (or single-channel) ``uint8``/``uint16`` image atomically; format from the suffix."""
    import cv2

    path = Path(path)
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 3:
        arr = arr[:, :, ::-1]
    ok, buf = cv2.imencode(path.suffix or ".png", np.ascontiguousarray(arr))
    if not ok:
        raise OSError(f"{path}: could not encode image of shape {arr.shape} dtype {arr.dtype}")
    atomic_write_bytes(path, buf.tobytes())
