"""Writing generated result tables into docs/benchmarks.md (one subsection replaced, the rest kept)."""

from __future__ import annotations

from pathlib import Path


def write_docs(path: Path, text: str, header: str = "### The paper's ablation") -> None:
    """Replace the body of the subsection starting with ``header`` in ``path``, up to the next ``##``
    or ``###`` header. Without such a subsection it is added at the end of the ``## Ablation`` section
    (created at the end of the file when missing)."""
    from darkseg.utils.io import atomic_open

    doc = path.read_text(encoding="utf-8")
    lines = doc.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.startswith(header)), None)
    if start is None:
        sec = next((i for i, line in enumerate(lines) if line.startswith("## Ablation")), None)
        if sec is None:
            lines += ["\n", "## Ablation (`benchmarks/ablation.py`)\n"]
            sec = len(lines) - 1
        end = next((i for i in range(sec + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        lines[end:end] = ["\n", header.rstrip("\n") + "\n", "\n"]
        start = end + 1
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(("## ", "### "))), len(lines))
    new = lines[: start + 1] + ["\n", text.rstrip() + "\n", "\n"] + lines[end:]
    with atomic_open(path, "w") as fh:
        fh.write("".join(new).rstrip() + "\n")
