"""Output folders that hold a run: refuse to mix two runs, replace one only when asked.

``train``, ``demo`` and ``predict`` write a set of files into an output folder. Running again into a
folder that holds such files without saying what should happen would overwrite checkpoints silently
and append a second run to the logs. :func:`check_run_folder` therefore refuses such a folder unless
the run continues it (``resume``) or replaces it (``overwrite``); :func:`clear_run_folder` then removes
exactly the files the job writes (:class:`RunLayout` patterns), never anything else in the folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from darkseg.errors import RunFolderError

__all__ = ["RunLayout", "TRAIN_LAYOUT", "find_run_files", "check_run_folder", "clear_run_folder"]


@dataclass(frozen=True)
class RunLayout:
    """The files one job writes into its output folder.

    Attributes:
        job: the command's name, for messages.
        markers: glob patterns (relative to the folder) whose presence means the folder holds a run.
        owned: glob patterns of every file the job writes (what ``overwrite`` removes); folders named
            by a pattern's parent are removed when they end up empty.
        resumable: whether the job can continue a run (``--resume``).
    """

    job: str
    markers: tuple[str, ...]
    owned: tuple[str, ...]
    resumable: bool = False


#: ``darkseg train``'s run folder. ``config.yaml`` is rewritten by every run but is no marker and is not
#: removed: it may be the user's own config file given as CONFIG.
TRAIN_LAYOUT = RunLayout(
    job="train",
    markers=("last.pth", "final.pth", "epoch_*.pth", "log.jsonl", "log.csv", "summary.json"),
    owned=(
        "last.pth",
        "final.pth",
        "epoch_*.pth",
        "log.jsonl",
        "log.csv",
        "summary.json",
        "results_*.json",
        "tb/events.out.tfevents.*",
    ),
    resumable=True,
)


def find_run_files(folder: str | os.PathLike, patterns: tuple[str, ...]) -> list[Path]:
    """Regular files in ``folder`` matching any of ``patterns`` (sorted, no duplicates)."""
    root = Path(folder)
    if not root.is_dir():
        return []
    found = {p for pattern in patterns for p in root.glob(pattern) if p.is_file() or p.is_symlink()}
    return sorted(found)


def check_run_folder(folder: str | os.PathLike, layout: RunLayout, resume: bool, overwrite: bool) -> None:
    """Refuse ``folder`` when it holds a run and neither ``resume`` nor ``overwrite`` is set.

    Raises:
        RunFolderError: one line naming the folder, what it holds and the flags that decide.
        ValueError: ``resume`` and ``overwrite`` together, or ``resume`` for a job that cannot resume.
    """
    if resume and overwrite:
        raise ValueError(f"{layout.job}: --resume and --overwrite exclude each other")
    if resume and not layout.resumable:
        raise ValueError(f"{layout.job}: cannot resume a run")
    if resume or overwrite:
        return
    found = find_run_files(folder, layout.markers)
    if found:
        shown = ", ".join(p.name for p in found[:3]) + (", ..." if len(found) > 3 else "")
        choices = "--resume to continue it or --overwrite" if layout.resumable else "--overwrite"
        raise RunFolderError(
            f"{folder}: already holds a {layout.job} run ({shown}); pass {choices} to replace it "
            "(its files are removed), or choose another output folder"
        )


def clear_run_folder(folder: str | os.PathLike, layout: RunLayout) -> list[Path]:
    """Remove the files of a previous run (``layout.owned``) from ``folder``; returns them.

    Sub-folders named in the patterns (e.g. ``tb/``) are removed too when nothing else is left in them.
    """
    root = Path(folder)
    removed = find_run_files(root, layout.owned)
    for p in removed:
        p.unlink(missing_ok=True)
    for sub in sorted({Path(p).parent for p in layout.owned if Path(p).parent != Path(".")}, reverse=True):
        d = root / sub
        if d.is_dir() and not any(d.iterdir()):
            d.rmdir()
    return removed
