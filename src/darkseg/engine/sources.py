"""What ``darkseg predict`` reads: files, folders, globs, ``@list.txt`` files, videos and webcams.

:func:`expand_sources` turns command-line items into :class:`Source` entries:

* ``cam:N`` - webcam ``N``;
* ``@FILE`` - one item per line of ``FILE`` (blank lines and lines starting with ``#`` ignored; relative
  paths are relative to ``FILE``'s folder; each line may itself be a folder, a glob or ``cam:N``);
* a folder - its images, camera RAW files and videos (by suffix; recursively with ``recursive``);
* a pattern with ``*``, ``?`` or ``[`` that is not an existing path - the sorted matches
  (``**`` matches across folders); folders among the matches are expanded as above;
* a file - a video when its suffix is in :data:`darkseg.engine.video.VIDEO_EXTENSIONS`, else an image /
  camera RAW file (tried whatever its suffix).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass
from pathlib import Path

from darkseg.engine.video import VIDEO_EXTENSIONS, is_video_path, parse_webcam

__all__ = ["Source", "expand_sources"]


@dataclass(frozen=True)
class Source:
    """One thing to predict on: ``kind`` is ``"image"`` (image or camera RAW file), ``"video"`` or
    ``"webcam"`` (then ``camera`` is its index and ``path`` is ``None``)."""

    kind: str
    path: Path | None = None
    camera: int | None = None

    @property
    def name(self) -> str:
        return f"cam:{self.camera}" if self.kind == "webcam" else str(self.path)


def _folder(path: Path, recursive: bool) -> list[Source]:
    from darkseg.engine.predictor import IMAGE_EXTENSIONS
    from darkseg.raw import CAMERA_RAW_EXTENSIONS

    known = IMAGE_EXTENSIONS | CAMERA_RAW_EXTENSIONS | VIDEO_EXTENSIONS
    it = path.rglob("*") if recursive else path.iterdir()
    files = sorted(f for f in it if f.is_file() and f.suffix.lower() in known)
    return [Source("video" if is_video_path(f) else "image", f) for f in files]


def _is_pattern(text: str) -> bool:
    return any(c in text for c in "*?[")


def _expand_one(item: str, base: Path | None, recursive: bool, missing: list[str]) -> list[Source]:
    cam = parse_webcam(item)
    if cam is not None:
        return [Source("webcam", camera=cam)]
    p = Path(item).expanduser()
    if base is not None and not p.is_absolute():
        p = base / p
    if p.is_dir():
        return _folder(p, recursive)
    if p.is_file():
        return [Source("video" if is_video_path(p) else "image", p)]
    if _is_pattern(item):
        matches = sorted(glob.glob(str(p), recursive=True))
        if not matches:
            missing.append(f"{item}: no file matches this pattern")
            return []
        out: list[Source] = []
        for m in matches:
            mp = Path(m)
            if mp.is_dir():
                out.extend(_folder(mp, recursive))
            elif mp.is_file():
                out.append(Source("video" if is_video_path(mp) else "image", mp))
        return out
    missing.append(f"{p}: no such file or folder")
    return []


def expand_sources(items: list[str | os.PathLike], recursive: bool = False) -> tuple[list[Source], list[str]]:
    """Expand command-line items (module docstring). Returns ``(sources, problems)``: one message per
    item that matched nothing (missing file, empty pattern, unreadable list file)."""
    missing: list[str] = []
    out: list[Source] = []
    for raw in items:
        item = str(raw)
        if item.startswith("@"):
            lst = Path(item[1:]).expanduser()
            try:
                lines = lst.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                missing.append(f"{lst}: cannot read the list file ({exc.__class__.__name__}: {exc})")
                continue
            for line in lines:
                line = line.strip()
                if line and not line.startswith("#"):
                    out.extend(_expand_one(line, lst.parent, recursive, missing))
        else:
            out.extend(_expand_one(item, None, recursive, missing))
    return out, missing
