"""Output folders that hold a run: refuse to mix two runs, replace one only when asked.

``train``, ``demo`` and ``predict`` write a set of files into an output folder. Running again into a
folder that holds such files without saying what should happen would overwrite checkpoints silently
and append a second run to the logs. :func:`check_run_folder` therefore refuses such a folder unless
the run continues it (``resume``) or replaces it (``overwrite``). What a run is, is what the job
recorded as written in the folder's record (:class:`darkseg.utils.outputs.OutputRecord`): ``overwrite``
removes exactly those files (:meth:`~darkseg.utils.outputs.OutputRecord.remove_recorded`), never a
folder or a name pattern, and every other file in the folder stays.
"""

from __future__ import annotations

import os

from darkseg.errors import RunFolderError
from darkseg.utils.outputs import OutputRecord

__all__ = ["check_run_folder"]


def check_run_folder(
    folder: str | os.PathLike, job: str, resume: bool, overwrite: bool, resumable: bool = False
) -> OutputRecord:
    """Refuse ``folder`` when it holds a run of ``job`` and neither ``resume`` nor ``overwrite`` is set;
    returns the folder's record as seen by ``job``.

    Raises:
        RunFolderError: one line naming the folder, what it holds and the flags that decide.
        ValueError: ``resume`` and ``overwrite`` together, or ``resume`` for a job that cannot resume.
    """
    if resume and overwrite:
        raise ValueError(f"{job}: --resume and --overwrite exclude each other")
    if resume and not resumable:
        raise ValueError(f"{job}: cannot resume a run")
    record = OutputRecord(folder, job)
    if resume or overwrite:
        return record
    found = record.existing()
    if found:
        names = [p.relative_to(record.folder).as_posix() for p in found]
        shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
        choices = "--resume to continue it or --overwrite" if resumable else "--overwrite"
        raise RunFolderError(
            f"{folder}: already holds a {job} run ({shown}); pass {choices} to replace it "
            "(the files it wrote are removed), or choose another output folder"
        )
    return record
