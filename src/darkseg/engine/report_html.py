"""The browsable report of ``darkseg predict``: one self-contained ``index.html`` in the output folder.

:func:`write_prediction_report` turns what ``predict`` writes into ``images.json`` / ``results.json`` into
a page that opens from disk (no server, no network, no external script or style): every image's overlay
(a thumbnail that links to the full overlay, ``loading="lazy"``), its detections in a table (class,
score, box, mask area, the exposure ratio used; each row's colour swatch is the instance's colour in the
overlay), filters by class and minimum score (plain inline JavaScript), links to the JSON files; for a
video, the timeline of detection counts per frame and a few key frames taken from its annotated video.

Thumbnails (``<overlay stem>_thumb.jpg``, at most :data:`THUMB_SIZE` px on the long side) and key frames
(``<video stem>_key<frame>.jpg``) are written next to the overlays; no existing file is ever written
over (a taken name gets a ``_2``, ``_3``, ... suffix) and every file is written atomically. The page
stays responsive with thousands of images: the browser decodes only the thumbnails on screen, and
filtering toggles table rows that are already laid out.
"""

from __future__ import annotations

import html
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

__all__ = ["THUMB_SIZE", "html_table", "write_prediction_report"]

#: long side (px) of the thumbnails shown on the page
THUMB_SIZE = 320
#: key frames shown per video
KEY_FRAMES = 4
#: width x height (px) of a video's detection-count timeline
_TIMELINE = (900, 120)

_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;padding:0 1em 2em;color:#222}
header{position:sticky;top:0;background:#fff;border-bottom:1px solid #ccc;padding:.5em 0;z-index:1}
h1{font-size:1.3em;margin:.3em 0}h2{font-size:1.1em}
.bar{display:flex;flex-wrap:wrap;gap:.4em 1.2em;align-items:center;font-size:14px}
.bar label{white-space:nowrap}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(400px,1fr));gap:12px;margin-top:1em}
.card{border:1px solid #ccc;border-radius:6px;padding:8px;overflow:hidden}
.card img{max-width:100%;height:auto;display:block;background:#111}
.name{font-weight:600;word-break:break-all;font-size:13px}
.meta{color:#555;font-size:12px;margin:2px 0 4px}
table{border-collapse:collapse;font-size:12px;width:100%}
td,th{border:1px solid #ddd;padding:2px 5px;text-align:right;white-space:nowrap}
.dets{max-height:16em;overflow:auto}
td:first-child,th:first-child,td.cls{text-align:left}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:middle}
.frames{display:flex;flex-wrap:wrap;gap:8px}.frames figure{margin:0;width:340px;font-size:12px}
.frames img{width:100%;height:auto;display:block}
.err th,.err td{text-align:left;white-space:normal}
svg{max-width:100%;height:auto;background:#fafafa;border:1px solid #ddd}
"""

_SCRIPT = """
(function(){
  var cards=[].map.call(document.querySelectorAll('.filt'),function(el){
    return {el:el,rows:[].slice.call(el.querySelectorAll('tr.det')),count:el.querySelector('.count')};});
  var score=document.getElementById('minscore'),scoreN=document.getElementById('minscore-n');
  var only=document.getElementById('only'),status=document.getElementById('status');
  var boxes=[].slice.call(document.querySelectorAll('input.cls'));
  function apply(){
    var min=parseFloat(score.value)||0,on={},shown=0,imgs=0,i,j;
    boxes.forEach(function(b){on[b.value]=b.checked;});
    for(i=0;i<cards.length;i++){
      var c=cards[i],n=0;
      for(j=0;j<c.rows.length;j++){
        var r=c.rows[j],ok=on[r.dataset.cls]&&parseFloat(r.dataset.score)>=min;
        r.hidden=!ok;if(ok)n++;}
      c.count.textContent=n;c.el.hidden=only.checked&&n===0;shown+=n;if(!c.el.hidden)imgs++;}
    status.textContent=shown+' detection(s) shown in '+imgs+' of '+cards.length+' picture(s)';
  }
  score.addEventListener('input',function(){scoreN.value=score.value;apply();});
  scoreN.addEventListener('input',function(){score.value=scoreN.value;apply();});
  only.addEventListener('change',apply);
  boxes.forEach(function(b){b.addEventListener('change',apply);});
  apply();
})();
"""


def html_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], row_attrs: Sequence[str] | None = None
) -> str:
    """An HTML table of plain-text cells (escaped here); ``row_attrs``: raw attribute text per row."""
    h = "".join(f"<th>{html.escape(c)}</th>" for c in header)
    attrs = row_attrs or [""] * len(rows)
    body = "".join(
        f"<tr{(' ' + a) if a else ''}>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
        for r, a in zip(rows, attrs)
    )
    return f"<table><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>"


class _ClaimedNames(set):
    """The file names the report has chosen; with a ``claim`` callable each name is handed to it (e.g.
    recorded as written by ``predict``) when chosen, before its file is written."""

    def __init__(self, claim: Callable[[list[str]], Any] | None = None) -> None:
        super().__init__()
        self._claim = claim

    def add(self, name: str) -> None:
        if self._claim is not None:
            self._claim([name])
        super().add(name)


def _free_name(out_dir: Path, name: str, taken: set[str]) -> str:
    """``name``, or ``<stem>_2<suffix>``, ``_3``, ... when a file of that name exists or was chosen."""
    stem, suffix = os.path.splitext(name)
    cand, k = name, 2
    while cand in taken or (out_dir / cand).exists():
        cand, k = f"{stem}_{k}{suffix}", k + 1
    taken.add(cand)
    return cand


def _write_jpeg(path: Path, rgb: np.ndarray, max_side: int) -> tuple[int, int]:
    """``rgb`` uint8 (H, W, 3) shrunk to at most ``max_side`` px (area filter) -> JPEG, atomically;
    returns the written ``(width, height)``."""
    import cv2

    from darkseg.utils.io import write_image

    h, w = rgb.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s < 1.0:
        rgb = cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
    write_image(path, rgb)
    return int(rgb.shape[1]), int(rgb.shape[0])


def _href(name: str) -> str:
    return html.escape(quote(name))


def _rows(dets: Sequence[dict[str, Any]], names: dict[int, str], ratio: float) -> tuple[str, int]:
    """The detection table of one image (``dets``: its COCO results in prediction order, so that row
    ``i`` has the colour of instance ``i`` in the overlay) and the row count."""
    from pycocotools import mask as mask_utils

    from darkseg.engine.visualize import color_for

    out = []
    for i, d in enumerate(dets):
        cls = names.get(int(d["category_id"]), str(d["category_id"]))
        x, y, w, h = (float(v) for v in d["bbox"])
        area = int(mask_utils.area(d["segmentation"])) if "segmentation" in d else -1
        r, g, b = color_for(i)
        out.append(
            f"<tr class='det' data-cls='{html.escape(cls)}' data-score='{float(d['score']):.6f}'>"
            f"<td class='cls'><span class='sw' style='background:rgb({r},{g},{b})'></span>"
            f"{html.escape(cls)}</td><td>{float(d['score']):.3f}</td>"
            f"<td>{x:.0f}, {y:.0f}, {w:.0f}, {h:.0f}</td><td>{area if area >= 0 else '-'}</td>"
            f"<td>{ratio:g}</td></tr>"
        )
    return "".join(out), len(out)


_DET_HEADER = (
    "<div class='dets'><table><thead><tr><th>class</th><th>score</th><th>box x, y, w, h (px)</th>"
    "<th>mask area (px)</th><th>ratio</th></tr></thead><tbody>"
)


def _image_card(
    out_dir: Path, im: dict[str, Any], dets: list[dict], names: dict[int, str], taken: set[str]
) -> tuple[str, list[str]]:
    """One image's card and the files written for it (its thumbnail)."""
    from darkseg.utils.io import read_image

    written: list[str] = []
    picture = "<p class='meta'>no overlay written (--no-overlay)</p>"
    overlay = im.get("overlay")
    if isinstance(overlay, str) and (out_dir / overlay).is_file():
        shown, size = overlay, (int(im.get("width", 0)), int(im.get("height", 0)))
        if max(size) > THUMB_SIZE:
            thumb = _free_name(out_dir, f"{Path(overlay).stem}_thumb.jpg", taken)
            size = _write_jpeg(out_dir / thumb, read_image(out_dir / overlay), THUMB_SIZE)
            shown = thumb
            written.append(thumb)
        picture = (
            f"<a href='{_href(overlay)}'><img src='{_href(shown)}' loading='lazy' decoding='async' "
            f"width='{size[0]}' height='{size[1]}' alt='overlay of {html.escape(str(im['file_name']))}'></a>"
        )
    ratio = float(im.get("ratio", 1.0))
    body, n = _rows(dets, names, ratio)
    card = (
        f"<div class='card filt' data-id='{int(im['id'])}'>{picture}"
        f"<div class='name' title='{html.escape(str(im['file_name']))}'>"
        f"{html.escape(Path(str(im['file_name'])).name)}</div>"
        f"<div class='meta'>{html.escape(str(im.get('kind', '')))}, {im.get('width')}x{im.get('height')} px, "
        f"ratio {ratio:g}, <span class='count'>{n}</span> of {n} detection(s) shown</div>"
        f"{_DET_HEADER}{body}</tbody></table></div></div>"
    )
    return card, written


def _key_frames(counts: Sequence[int], k: int = KEY_FRAMES) -> list[int]:
    """Positions (into the frame list) of up to ``k`` key frames: the first, the one with the most
    detections, evenly spaced others and the last, sorted and without repeats."""
    n = len(counts)
    if n == 0:
        return []
    picks = [0, int(np.argmax(counts)), n - 1]
    for p in np.linspace(0, n - 1, k).round().astype(int):
        if len(set(picks)) >= k:
            break
        picks.append(int(p))
    return sorted(set(picks))[:k]


def _timeline_svg(frame_index: Sequence[int], counts: Sequence[int]) -> str:
    """An inline SVG step plot of detections per frame (x: frame index, y: count)."""
    w, h = _TIMELINE
    pad = 24
    top = max(1, max(counts, default=0))
    lo, hi = (frame_index[0], frame_index[-1]) if frame_index else (0, 1)
    span = max(1, hi - lo)

    def x(f: int) -> float:
        return pad + (w - 2 * pad) * (f - lo) / span

    def y(c: int) -> float:
        return h - pad + -(h - 2 * pad) * c / top

    pts = " ".join(f"{x(f):.1f},{y(c):.1f}" for f, c in zip(frame_index, counts))
    return (
        f"<svg class='timeline' viewBox='0 0 {w} {h}' width='{w}' height='{h}' role='img' "
        f"aria-label='detections per frame'><polyline fill='none' stroke='#0082c8' stroke-width='1.5' "
        f"points='{pts}'/><line x1='{pad}' y1='{h - pad}' x2='{w - pad}' y2='{h - pad}' stroke='#999'/>"
        f"<text x='{pad}' y='{h - 6}' font-size='11'>frame {lo}</text>"
        f"<text x='{w - pad}' y='{h - 6}' font-size='11' text-anchor='end'>frame {hi}</text>"
        f"<text x='2' y='{pad - 6}' font-size='11'>{top} detection(s)</text></svg>"
    )


def _grab_frames(video: Path, positions: Sequence[int]) -> dict[int, np.ndarray]:
    """RGB frames at ``positions`` (0-based, in decoding order) of an annotated video; missing ones are
    left out."""
    import cv2

    want, got = set(positions), {}
    cap = cv2.VideoCapture(str(video), cv2.CAP_FFMPEG)
    try:
        pos = 0
        while cap.isOpened() and pos <= max(want, default=-1):
            ok, frame = cap.read()
            if not ok or frame is None:
                break
            if pos in want:
                got[pos] = np.ascontiguousarray(frame[:, :, ::-1])
            pos += 1
    finally:
        cap.release()
    return got


def _video_section(
    out_dir: Path,
    video: dict[str, Any],
    frames: list[dict[str, Any]],
    by_image: dict[int, list[dict]],
    names: dict[int, str],
    taken: set[str],
) -> tuple[str, list[str]]:
    """One video's timeline, key frames and their detection tables; the key-frame files written."""
    frames = sorted(frames, key=lambda e: int(e.get("frame_index", 0)))
    idx = [int(e.get("frame_index", 0)) for e in frames]
    counts = [int(e.get("num_instances", 0)) for e in frames]
    source = str(video.get("source", "video"))
    files = (video.get("overlay"), video.get("frames_jsonl"))
    links = [f"<a href='{_href(n)}'>{html.escape(n)}</a>" for n in files if isinstance(n, str)]
    parts = [
        f"<section class='video'><h2>video {html.escape(source)}</h2><p class='meta'>{len(frames)} frame(s), "
        f"{sum(counts)} detection(s), {float(video.get('fps', 0)):g} fps; {' · '.join(links)}</p>",
        _timeline_svg(idx, counts),
    ]
    written: list[str] = []
    keys = _key_frames(counts)
    overlay = video.get("overlay")
    grabbed = {}
    if isinstance(overlay, str) and (out_dir / overlay).is_file():
        grabbed = _grab_frames(out_dir / overlay, keys)
    figs = []
    stem = re.sub(r"[^\w.-]", "_", Path(source).stem) or "video"  # webcams: "cam:0" -> "cam_0"
    for p in keys:
        e = frames[p]
        body, n = _rows(by_image.get(int(e["id"]), []), names, float(e.get("ratio", 1.0)))
        pic = ""
        if p in grabbed:
            name = _free_name(out_dir, f"{stem}_key{idx[p]:06d}.jpg", taken)
            w, h = _write_jpeg(out_dir / name, grabbed[p], THUMB_SIZE)
            written.append(name)
            pic = f"<img src='{_href(name)}' loading='lazy' width='{w}' height='{h}' alt='frame {idx[p]}'>"
        figs.append(
            f"<figure class='filt'>{pic}<figcaption>frame {idx[p]}: <span class='count'>{n}</span> of {n} "
            "detection(s) shown</figcaption>"
            f"{_DET_HEADER}{body}</tbody></table></div></figure>"
        )
    parts.append(f"<h3>key frames</h3><div class='frames'>{''.join(figs)}</div></section>")
    return "".join(parts), written


def write_prediction_report(
    out_dir: str | os.PathLike,
    info: dict[str, Any],
    results: Sequence[dict[str, Any]],
    name: str = "index.html",
    claim: Callable[[list[str]], Any] | None = None,
) -> list[str]:
    """Write the report page of a prediction folder; returns the names of the files written (the page
    first, then thumbnails and key frames), all inside ``out_dir``.

    Args:
        out_dir: the ``darkseg predict`` output folder (overlays already written).
        info: what ``images.json`` holds (``images``, ``categories``, ``videos``, ``errors``, settings).
        results: the COCO results of ``results.json`` (RLE masks; ``image_id`` refers to ``info``).
        name: the page's file name; when a file of that name exists (e.g. the user's own), the page is
            written as ``<stem>_2.html`` etc. instead.
        claim: called with each file name before that file is written (``predict`` records it in the
            folder's output record, so a re-run or ``--overwrite`` knows it as its own).
    """
    from darkseg.utils.io import atomic_open

    out = Path(out_dir)
    taken: set[str] = _ClaimedNames(claim)
    page_name = _free_name(out, name, taken)
    names = {int(c["id"]): str(c["name"]) for c in info.get("categories", [])}
    by_image: dict[int, list[dict]] = {}
    for r in results:
        by_image.setdefault(int(r["image_id"]), []).append(r)
    images = [im for im in info.get("images", []) if "video" not in im]
    written: list[str] = []
    cards = []
    for im in images:
        card, files = _image_card(out, im, by_image.get(int(im["id"]), []), names, taken)
        cards.append(card)
        written += files
    sections = []
    for v in info.get("videos", []):
        frames = [im for im in info.get("images", []) if im.get("video") == v.get("source")]
        sec, files = _video_section(out, v, frames, by_image, names, taken)
        sections.append(sec)
        written += files
    errors = info.get("errors", [])
    n_det = sum(len(by_image.get(int(im["id"]), [])) for im in images)
    settings = ", ".join(f"{k} {info[k]}" for k in ("checkpoint", "score_thr", "ratio", "dtype") if k in info)
    class_boxes = "".join(
        f"<label><input type='checkbox' class='cls' value='{html.escape(c)}' checked> {html.escape(c)}"
        "</label>"
        for c in names.values()
    )
    page = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>darkseg predictions ({len(images)} images)</title><style>{_STYLE}</style></head><body>",
        "<header><h1>darkseg predictions</h1>",
        f"<p class='meta'>{len(images)} image(s), {n_det} detection(s), {len(info.get('videos', []))} "
        f"video(s), {len(errors)} error(s); {html.escape(settings)}. Overlays show detections with score "
        f">= the run's threshold; the filters act on the tables. Files: <a href='results.json'>results.json"
        "</a> (COCO results, RLE masks) · <a href='images.json'>images.json</a> (images, settings, errors)"
        "</p><div class='bar'>",
        class_boxes,
        "<label>min score <input type='range' id='minscore' min='0' max='1' step='0.01' value='0'> "
        "<input type='number' id='minscore-n' min='0' max='1' step='0.01' value='0' style='width:5em'>"
        "</label><label><input type='checkbox' id='only'> only images with shown detections</label>"
        "<span id='status'></span></div></header>",
    ]
    if errors:
        page.append("<h2>errors</h2>")
        rows = [[str(e.get("file")), str(e.get("error"))] for e in errors]
        page.append(f"<div class='err'>{html_table(['file', 'error'], rows)}</div>")
    page += sections
    if images:
        page.append(f"<h2>images</h2><div class='grid'>{''.join(cards)}</div>")
    page.append(f"<script>{_SCRIPT}</script></body></html>")
    with atomic_open(out / page_name, "w") as fh:
        fh.write("\n".join(page) + "\n")
    return [page_name, *written]
