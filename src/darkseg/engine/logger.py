"""Training logs: one JSON line and one CSV row per iteration, TensorBoard when installed, a tqdm bar.

Files (in the run's output folder, written by rank 0 only):

* ``log.jsonl`` - ``{"iter": i, "epoch": e, "lr": ..., "loss": total, "<loss name>": ..., "time": s}`` per
  iteration (``iter`` is 1-based: the number of iterations done); evaluation records carry ``"eval"``.
* ``log.csv`` - the same iteration records as columns (header from the first record).
* ``tb/`` - TensorBoard scalars if ``torch.utils.tensorboard`` can be imported.

On resume the logs are truncated to the checkpoint's iteration, so an interrupted run's log never
contains iterations twice.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from darkseg.utils.outputs import OutputRecord

__all__ = ["TrainLogger", "truncate_logs", "read_jsonl"]


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a JSONL log (a torn last line of a killed run is skipped)."""
    out = []
    p = Path(path)
    if not p.is_file():
        return out
    for line in p.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def truncate_logs(out_dir: str | os.PathLike, iteration: int) -> None:
    """Drop log records after ``iteration`` (atomically rewrites ``log.jsonl`` and ``log.csv``)."""
    from darkseg.utils.io import atomic_open

    out_dir = Path(out_dir)
    jl = out_dir / "log.jsonl"
    if jl.is_file():
        keep = [r for r in read_jsonl(jl) if int(r.get("iter", 0)) <= iteration]
        with atomic_open(jl, "w") as fh:
            for r in keep:
                fh.write(json.dumps(r) + "\n")
    cp = out_dir / "log.csv"
    if cp.is_file():
        with open(cp, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        if rows:
            header, body = rows[0], rows[1:]
            col = header.index("iter") if "iter" in header else None
            kept = [r for r in body if col is not None and len(r) == len(header) and int(r[col]) <= iteration]
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(header)
            w.writerows(kept)
            with atomic_open(cp, "w") as fh:
                fh.write(buf.getvalue())


class TrainLogger:
    """Per-iteration logging on the main process; every method is a no-op elsewhere.

    Args:
        out_dir: run folder.
        total_iters: for the progress bar.
        start_iter: iterations already done (resume).
        enabled: False on ranks other than 0.
        progress: show a tqdm bar.
        tensorboard: write TensorBoard scalars if the package is importable.
        record: the run folder's record of written files; the TensorBoard event file (named by
            TensorBoard when it is created) is added to it.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        total_iters: int,
        start_iter: int = 0,
        enabled: bool = True,
        progress: bool = True,
        tensorboard: bool = True,
        record: OutputRecord | None = None,
    ) -> None:
        self.enabled = enabled
        self.out_dir = Path(out_dir)
        self._jsonl = self._csv_fh = self._csv = self._tb = self._bar = None
        self._csv_fields: list[str] | None = None
        if not enabled:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._jsonl = open(self.out_dir / "log.jsonl", "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        csv_path = self.out_dir / "log.csv"
        if csv_path.is_file() and csv_path.stat().st_size > 0:
            with open(csv_path, newline="", encoding="utf-8") as fh:
                self._csv_fields = next(csv.reader(fh), None)
        self._csv_fh = open(csv_path, "a", newline="", encoding="utf-8")  # noqa: SIM115 - closed in close()
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                tb = self.out_dir / "tb"
                before = set(tb.glob("events.out.tfevents.*"))
                self._tb = SummaryWriter(str(tb))
            except Exception:  # noqa: BLE001 - tensorboard not installed or broken: skip it
                self._tb = None
            if self._tb is not None and record is not None:
                self._tb.flush()
                new = set(tb.glob("events.out.tfevents.*")) - before
                record.claim(p.relative_to(self.out_dir) for p in new)
        if progress:
            from tqdm import tqdm

            self._bar = tqdm(
                total=total_iters, initial=start_iter, desc="train", dynamic_ncols=True, unit="it"
            )

    def log_iter(self, record: dict[str, Any], show: bool = True) -> None:
        """Write one iteration record (must contain ``iter``); update the bar."""
        if not self.enabled:
            return
        rec = {k: (float(v) if isinstance(v, float) else v) for k, v in record.items()}
        self._jsonl.write(json.dumps(rec) + "\n")
        self._jsonl.flush()
        if self._csv_fields is None:
            self._csv_fields = list(rec)
            self._csv = csv.DictWriter(self._csv_fh, fieldnames=self._csv_fields, extrasaction="ignore")
            self._csv.writeheader()
        elif self._csv is None:
            self._csv = csv.DictWriter(self._csv_fh, fieldnames=self._csv_fields, extrasaction="ignore")
        self._csv.writerow(rec)
        self._csv_fh.flush()
        it = int(rec["iter"])
        if self._tb is not None:
            for k, v in rec.items():
                if k not in ("iter", "epoch") and isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(f"train/{k}", v, it)
        if self._bar is not None:
            self._bar.update(it - self._bar.n)
            if show:
                loss, lr = rec.get("loss", float("nan")), rec.get("lr", 0.0)
                self._bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")

    def log_eval(self, iteration: int, metrics: dict[str, Any]) -> None:
        """Write an evaluation record (JSONL + TensorBoard)."""
        if not self.enabled:
            return
        self._jsonl.write(json.dumps({"iter": iteration, "eval": metrics}) + "\n")
        self._jsonl.flush()
        if self._tb is not None:
            for iou_type, ms in metrics.items():
                if isinstance(ms, dict):
                    for k, v in ms.items():
                        if isinstance(v, (int, float)):
                            self._tb.add_scalar(f"eval/{iou_type}/{k}", v, iteration)

    def write(self, text: str) -> None:
        """Print a line without breaking the progress bar."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        for h in (self._bar, self._tb):
            if h is not None:
                h.close()
        for fh in (self._jsonl, self._csv_fh):
            if fh is not None:
                fh.close()
        self._bar = self._tb = self._jsonl = self._csv_fh = None
