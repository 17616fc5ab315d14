"""Where a job may write: never over an input, never over a file it did not write.

Every darkseg job that writes files (``synth``, ``train``, ``predict``, ``export``, ``convert``,
``calibrate``, ``evaluate``, ``demo``) follows one rule, implemented here:

1. **Before any work**, :func:`check_paths` resolves every output (files and folders, symbolic links
   followed) and compares it with every input. Refused, with one line naming both: an output file that
   is an input (same path, or the same file through a link); an output folder that is an input or
   contains one (``--out .`` next to the inputs, ``--out`` equal to an input folder); the file-system
   root as an output folder; an output file that is a folder, an output folder that is a file.
2. **A record of what it wrote.** Every folder a job writes into holds ``.darkseg-outputs.json``
   (:data:`RECORD_NAME`): the relative paths of the files darkseg jobs wrote there and which job wrote
   each. A job records a file (:meth:`OutputRecord.claim`) before it writes it, and refuses an existing
   file that it did not record (one line naming the file) instead of writing over it. Files the job
   recorded may be replaced by a re-run or continued by a resume; ``--overwrite`` removes exactly those
   (:meth:`OutputRecord.remove_recorded`), never a whole folder or every file matching a name pattern.
   A single output file (``export --out m.pt``) is recorded in the record of the folder it is in.
   The record is rewritten atomically under an exclusive lock of the folder, so concurrent jobs
   (several ``synth`` runs into one folder) never lose each other's entries.
3. **Temporaries.** A killed atomic write leaves ``.<name>.<tag>.tmp`` (:mod:`darkseg.utils.io`); a job
   removes only those of the files it writes (:meth:`OutputRecord.remove_stale_temporaries`).

A folder written by a darkseg version before this record existed has no record: its files count as
not written by the job, so a re-run refuses them by name (move them away, or run into a new folder).
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from darkseg.errors import OutputError

__all__ = ["RECORD_NAME", "OutputRecord", "check_file", "check_paths", "claim_file", "resolved"]

#: name of the record of written files in every output folder
RECORD_NAME = ".darkseg-outputs.json"
_FORMAT = "darkseg output record 1"

PathLike = str | os.PathLike


def resolved(path: PathLike) -> Path:
    """``path`` made absolute with ``~`` expanded and every symbolic link of its existing part followed."""
    return Path(path).expanduser().resolve()


class _Resolver:
    """:func:`resolved` as strings for many paths: the real path of each folder is looked up once (a
    COCO set's 100k images share a few folders), a path that is itself a link is followed."""

    def __init__(self) -> None:
        self._folders: dict[str, str] = {}

    def __call__(self, path: PathLike) -> str:
        p = os.path.abspath(os.path.expanduser(os.fspath(path)))
        if os.path.islink(p):
            return os.path.realpath(p)
        head, tail = os.path.split(p)
        if head not in self._folders:
            self._folders[head] = os.path.realpath(head)
        return os.path.join(self._folders[head], tail) if tail else self._folders[head]


def _file_id(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def check_paths(
    job: str,
    inputs: Iterable[PathLike | None],
    files: Iterable[PathLike | None] = (),
    folders: Iterable[PathLike | None] = (),
) -> None:
    """Refuse outputs that would write over an input, or that are no place to write (see module doc).

    Args:
        job: the command's name, for messages.
        inputs: every file and folder the job reads (``None`` entries are skipped).
        files: output files; ``folders``: output folders.

    Raises:
        OutputError: one line naming the output (and the input it meets).
    """
    res = _Resolver()
    ins = [(p, res(p)) for p in inputs if p is not None]
    for f in (f for f in files if f is not None):
        rf = res(f)
        if os.path.isdir(rf):
            raise OutputError(f"{f}: is a folder; darkseg {job} writes a file here: give a file name")
        fid = _file_id(rf)  # an existing output may be an input under another name (a hard link)
        for p, rp in ins:
            if rp == rf or (fid is not None and _file_id(rp) == fid):
                raise OutputError(
                    f"{f}: is the input {p}; darkseg {job} never writes over an input: choose another output"
                )
    for d in (d for d in folders if d is not None):
        rd = res(d)
        if os.path.dirname(rd) == rd:
            raise OutputError(f"{d}: the file-system root cannot be an output folder")
        if os.path.exists(rd) and not os.path.isdir(rd):
            raise OutputError(f"{d}: is a file, not a folder; darkseg {job} writes a folder of files here")
        for p, rp in ins:
            if rp == rd or rp.startswith(rd + os.sep):
                what = "is the input" if rp == rd else "contains the input"
                raise OutputError(
                    f"{d}: the output folder {what} {p}; darkseg {job} never writes among its inputs: "
                    "choose an output folder outside them"
                )


def _relative(rel: PathLike) -> str:
    """A record key: a normalised relative POSIX path inside the folder."""
    key = posixpath.normpath(os.fspath(rel).replace(os.sep, "/"))
    if key.startswith(("/", "../")) or key in (".", ".."):
        raise ValueError(f"{rel}: not a relative path inside the output folder")
    if posixpath.basename(key) == RECORD_NAME:
        raise OutputError(f"{rel}: is darkseg's record of the files written in its folder: use another name")
    return key


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    """An exclusive advisory lock of ``folder`` (``flock`` on the folder itself; none on Windows)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no concurrent jobs into one folder there
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


class OutputRecord:
    """The record of the files darkseg jobs wrote into ``folder``, seen by the job ``job``.

    Shapes: record keys are relative POSIX paths (``images/000001.png``); methods taking ``rels`` accept
    any relative paths and normalise them.
    """

    def __init__(self, folder: PathLike, job: str) -> None:
        self.folder = Path(folder)
        self.job = job
        self.path = self.folder / RECORD_NAME

    # ---------------------------------------------------------------- reading
    def _read(self) -> dict[str, str]:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise OutputError(
                f"{self.path}: unreadable record of the files darkseg wrote here ({exc})"
            ) from None
        files = data.get("files") if isinstance(data, dict) else None
        if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
            raise OutputError(f"{self.path}: not a darkseg record of written files (no 'files' object)")
        return files

    def owned(self) -> set[str]:
        """Relative paths recorded as written by this job."""
        return {rel for rel, job in self._read().items() if job == self.job}

    def existing(self) -> list[Path]:
        """Files recorded as written by this job that exist now (sorted)."""
        return sorted(p for p in (self.folder / rel for rel in self.owned()) if p.exists() or p.is_symlink())

    # ---------------------------------------------------------------- checking and recording
    def _refuse_foreign(self, rels: Iterable[str], files: dict[str, str]) -> None:
        folder = os.fspath(self.folder)
        for rel in rels:
            owner = files.get(rel)
            if owner != self.job and os.path.lexists(os.path.join(folder, rel)):
                p = self.folder / rel
                by = f" (written by darkseg {owner})" if owner else ""
                raise OutputError(
                    f"{p}: exists and was not written by darkseg {self.job}{by}; darkseg never writes over "
                    "a file it did not write: move it away or choose another output"
                )

    def check(self, rels: Iterable[PathLike]) -> None:
        """Refuse (``OutputError`` naming it) when one of ``rels`` exists and the job did not write it."""
        self._refuse_foreign([_relative(r) for r in rels], self._read())

    def claim(self, rels: Iterable[PathLike]) -> None:
        """:meth:`check` ``rels``, then record them as written by this job (before writing them)."""
        keys = [_relative(r) for r in rels]
        self.folder.mkdir(parents=True, exist_ok=True)
        with _folder_lock(self.folder):
            files = self._read()
            self._refuse_foreign(keys, files)
            new = [k for k in keys if files.get(k) != self.job]
            if new:
                files.update(dict.fromkeys(new, self.job))
                self._write(files)

    def _write(self, files: dict[str, str]) -> None:
        from darkseg.utils.io import atomic_write_json

        if files:
            atomic_write_json(self.path, {"format": _FORMAT, "files": dict(sorted(files.items()))}, indent=0)
        else:
            self.path.unlink(missing_ok=True)

    # ---------------------------------------------------------------- removing
    def remove_recorded(self) -> list[Path]:
        """Remove every file recorded as written by this job (``--overwrite``) and its record entries;
        folders left empty by it are removed too. Returns the files removed."""
        if not self.folder.is_dir():
            return []
        removed = []
        with _folder_lock(self.folder):
            files = self._read()
            mine = sorted(rel for rel, job in files.items() if job == self.job)
            for rel in mine:
                p = self.folder / rel
                if p.is_symlink() or p.is_file():
                    p.unlink()
                    removed.append(p)
                del files[rel]
            for sub in sorted({PurePosixPath(rel).parent for rel in mine}, key=lambda s: -len(s.parts)):
                for d in (self.folder / sub, *(self.folder / sub).parents):
                    if d == self.folder or self.folder not in d.parents:
                        break
                    with contextlib.suppress(OSError):  # not empty, or already gone
                        d.rmdir()
            self._write(files)
        return removed

    def remove_stale_temporaries(self, rels: Iterable[PathLike] | None = None) -> list[Path]:
        """Remove the temporaries a killed write left of the files this job writes: those recorded as
        its own and ``rels`` (its planned outputs). Other hidden files stay. Returns what was removed."""
        from darkseg.utils.io import atomic_temporary_target

        targets = self.owned() | {_relative(r) for r in rels or ()}
        removed = []
        for sub in sorted({PurePosixPath(t).parent for t in targets}):
            d = self.folder / sub
            if not d.is_dir():
                continue
            for p in sorted(d.glob(".*.tmp")):
                final = atomic_temporary_target(p)
                if final is not None and str(sub / final) in targets and p.is_file() and not p.is_symlink():
                    p.unlink(missing_ok=True)
                    removed.append(p)
        return removed


def check_file(path: PathLike, job: str, inputs: Iterable[PathLike | None] = ()) -> OutputRecord:
    """Before any work on the single output file ``path``: :func:`check_paths` against ``inputs``, and
    refuse an existing file there that the job did not write. Returns the record of its folder."""
    check_paths(job, inputs, files=[path])
    p = Path(path)
    record = OutputRecord(p.parent, job)
    record.check([p.name])
    return record


def claim_file(path: PathLike, job: str, inputs: Iterable[PathLike | None] = ()) -> list[Path]:
    """Right before writing the single output file ``path``: :func:`check_file`, record ``path`` in the
    record of its folder, and remove that file's stale temporaries (returned, for the job to report)."""
    record = check_file(path, job, inputs)
    record.claim([Path(path).name])
    return record.remove_stale_temporaries([Path(path).name])
