"""File helpers shared by every stage.

All writers are *atomic*: data goes to a temporary file in the destination folder, is flushed and
fsynced, then renamed over the destination. A run killed mid-write therefore never leaves a partial
file under the final name; it can leave the temporary file, which is hidden and named
``.<final name>.<tag>.tmp`` (``tag``: 8 random characters of ``mkstemp``, or ``link`` / ``partial``
for checkpoint hard links and ONNX exports). :func:`atomic_temporary_target` names the file a temporary
belongs to; every job removes the temporaries of the files it writes when it starts
(:meth:`darkseg.utils.outputs.OutputRecord.remove_stale_temporaries`). A write that fails (a full disk,
a quota) removes the temporary file and raises the ``OSError`` with the destination as its file name,
also from inside ``torch.save`` / ``torch.jit.save`` (:func:`atomic_save`), which report it as a
``RuntimeError`` without the cause; every command prints it as one line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from darkseg.errors import DarkSegError

__all__ = [
    "ImageReadError",
    "atomic_open",
    "atomic_write_bytes",
    "atomic_write_json",
    "output_file_problem",
    "atomic_save",
    "atomic_torch_save",
    "decode_image",
    "exif_orientation",
    "stored_image_size",
    "read_image",
    "write_image",
    "load_json",
    "atomic_temporary_target",
    "parse_json",
    "json_depth",
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


def _naming(exc: OSError, path: Path) -> OSError:
    """``exc`` with ``path`` as its file name when it names none (flush / write errors do not)."""
    if exc.filename is not None or exc.errno is None:
        return exc
    return type(exc)(exc.errno, exc.strerror or str(exc), str(path))


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success fsync and rename it to ``path``.

    On an exception the temporary file is removed and ``path`` is untouched; an ``OSError`` (a full
    disk) is re-raised naming ``path``.
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
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and _naming(exc, path) is not exc:
            raise _naming(exc, path) from exc
        raise


class _WriteErrors:
    """A binary file proxy that remembers the first ``OSError`` its ``write`` raised."""

    def __init__(self, fh: IO[bytes]) -> None:
        self._fh = fh
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self._fh.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fh, name)


def atomic_save(path: str | os.PathLike, save: Callable[[IO[bytes]], Any]) -> None:
    """Run a serialiser ``save(file)`` (``torch.save``, ``torch.jit.save``) into ``path`` atomically.

    torch's writers turn a failed ``write`` (``ENOSPC``: disk full) into a ``RuntimeError`` that only
    says a position was unexpected; the ``OSError`` that caused it is raised instead, naming ``path``.
    """
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        proxy = _WriteErrors(fh)
        try:
            save(proxy)
        except RuntimeError as exc:
            if proxy.error is None:
                raise
            raise _naming(proxy.error, path) from exc


def atomic_temporary_target(path: str | os.PathLike) -> str | None:
    """The final file name whose temporary ``path`` is (see the module docstring), or None when ``path``
    is not named like a temporary of darkseg's atomic writers."""
    m = _TEMPORARY_NAME.match(Path(path).name)
    return m.group("final") if m is not None else None


def output_file_problem(path: str | os.PathLike) -> str | None:
    """Why a file cannot be written at ``path`` (checked before a job's work, not after it), or None.

    ``path`` must not be a folder; its nearest existing ancestor must be a folder (the missing ones
    are created when the file is written) in which a file can be created: a hidden probe file is
    created and removed, which also catches read-only file systems and quotas that permissions do not
    show.
    """
    path = Path(path)
    if path.is_dir():
        return f"{path}: is a folder, not a file"
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"{path}: {folder} is not a folder"
    try:
        with tempfile.TemporaryFile(prefix=f".{path.name}.", suffix=".tmp", dir=folder):
            pass
    except OSError as exc:
        return f"{path}: cannot create a file in {folder} ({exc.strerror or exc})"
    return None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> None:
    """Serialise ``obj`` as JSON to ``path`` atomically."""
    with atomic_open(path, "w") as fh:
        json.dump(obj, fh, indent=indent)


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` to ``path`` atomically (a full disk raises the ``OSError``, see :func:`atomic_save`)."""
    import torch

    atomic_save(path, lambda fh: torch.save(obj, fh))


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


def json_depth(obj: Any, limit: int) -> int:
    """Nesting depth of parsed JSON ``obj`` (a scalar is 0, ``[]`` is 1), counted without recursion and
    stopping as soon as it passes ``limit`` (then ``limit + 1`` is returned)."""
    deepest, stack = 0, [(obj, 0)]
    while stack:
        x, depth = stack.pop()
        if isinstance(x, (dict, list)):
            depth += 1
            if depth > limit:
                return depth
            stack.extend((v, depth) for v in (x.values() if isinstance(x, dict) else x))
        deepest = max(deepest, depth)
    return deepest


def parse_json(text: str, where: str, max_depth: int | None = None) -> Any:
    """Parse JSON ``text``; raise ``ValueError`` naming ``where`` for malformed JSON (line and column),
    for an object that repeats a key (named, with the object's ``id`` when it has one), and for nesting
    deeper than Python's parser allows (about 1000 levels) or than ``max_depth`` when given."""
    try:
        data = json.loads(text, object_pairs_hook=_unique_object)
    except json.JSONDecodeError as exc:
        position = f"line {exc.lineno} column {exc.colno}"
        raise ValueError(f"{where}: malformed JSON at {position}: {exc.msg}") from exc
    except _DuplicateKeyError as exc:
        raise ValueError(f"{where}: {exc}") from exc
    except RecursionError:
        raise ValueError(
            f"{where}: JSON nested too deeply to read (lists / objects inside each other)"
        ) from None
    if max_depth is not None and json_depth(data, max_depth) > max_depth:
        raise ValueError(f"{where}: JSON nested deeper than {max_depth} levels")
    return data


def load_json(path: str | os.PathLike, max_depth: int | None = None) -> Any:
    """Load a JSON file; raise ``ValueError`` naming the file and position when it is malformed, and
    naming the key when an object repeats one (see :func:`parse_json`)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return parse_json(path.read_text(encoding="utf-8"), str(path), max_depth)


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
