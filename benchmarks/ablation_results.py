"""Results CSVs of the ablation studies: read, and add one finished run's rows atomically.

Every study keeps one CSV under ``benchmarks/results/`` (committed); a run found in it is not repeated,
so a killed study loses at most the run in progress. Two processes may add rows at once (a lock file
next to the CSV, ignored by git)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from pathlib import Path

#: columns read back as numbers when present (empty cells: NaN / 0)
FLOAT_FIELDS = (
    "AP", "AP50", "AP75", "train_seconds", "total_seconds", "lr", "grad_norm_max", "grad_norm_median",
    "grad_norm_last", "dsl_share", "noise_cost",
)  # fmt: skip
INT_FIELDS = ("seed", "iterations", "batch")


def read_csv(path: Path) -> list[dict]:
    """The rows of a results CSV (empty list when missing); numeric columns converted."""
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for k in FLOAT_FIELDS:
            if k in r:
                r[k] = float(r[k]) if r[k] not in ("", None) else float("nan")
        for k in INT_FIELDS:
            if k in r:
                r[k] = int(r[k]) if r[k] not in ("", None) else 0
        r["status"] = r.get("status") or "ok"
    return rows


def append_rows(
    path: Path, rows: list[dict], fields: Sequence[str], key: Callable[[dict], tuple], order: Callable
) -> None:
    """Add ``rows`` (one run's) to the CSV ``path``: rows with the same ``key`` are replaced, all rows are
    sorted by ``order`` and the file is rewritten atomically, header first, under a lock."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "w") as lock:  # two processes may finish runs at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        _append_locked(path, rows, fields, key, order)


def _append_locked(path, rows, fields, key, order) -> None:
    from darkseg.utils.io import atomic_write_bytes

    new = {key(r) for r in rows}
    allrows = [r for r in read_csv(path) if key(r) not in new] + rows
    allrows.sort(key=order)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), lineterminator="\n")
    w.writeheader()
    for r in allrows:
        w.writerow({k: r.get(k, "") for k in fields})
    atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def sha256_prefix(path: Path) -> str:
    """The first 16 hex digits of a file's SHA-256 (which checkpoint a row comes from)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
