"""Every GPU-only test and the GPU benchmarks in one run with a hard time budget (``gpu_check.sh``).

Steps (each a list of commands run as subprocesses, each step under its own timeout, never past the
overall ``--budget``):

- ``pytest``: the tests marked ``cuda`` (skipped on a machine without CUDA), with CUDA visible; only the
  files that use the marker are collected.
- ``train_amp``: ``benchmarks/train_amp.py``: training step of the paper's model, float32 vs AMP, plain vs
  DSL, batch 2 and 8, 600x400: ms/step and peak CUDA memory.
- ``ddp_nccl``: ``torchrun --nproc_per_node 1 -m darkseg train`` of a tiny run on CUDA (batched synthesis
  on the GPU, AMP; passes when it exits 0 and wrote ``last.pth`` and ``summary.json``), then
  ``benchmarks/ddp_nccl.py`` under torchrun: an NCCL process group at world size 1, all_reduce and DDP
  training steps (``darkseg train`` itself starts no process group at world size 1).
- ``synth``: ``benchmarks/synth.py`` with the torch path batched on CUDA, then on one CPU thread; the
  ratio of the two batched rows.
- ``predict``: ``benchmarks/predict.py --device cuda``: images/s in float32 / float16 / bfloat16.

Everything the steps print goes to ``OUT/gpu_check.log`` (and to stdout); ``OUT/gpu_check_summary.json``
is rewritten after every step (status, seconds, the Markdown table lines the step printed), so a run cut
short still leaves the finished steps' results. Scratch files (scenes, the tiny run) go to ``--work``.
Status of a step: ``ok``, ``failed`` (a command exited non-zero, or an expected file is missing),
``timed out``, ``skipped (no CUDA)`` or ``skipped (budget)``.

``--dry-run``: every step tiny on the CPU (a minute or two), for checking the script without a GPU. Steps
that need CUDA then run a CPU stand-in of their commands instead (pytest: collection only; ddp_nccl: the
tiny train on the CPU and the gloo backend) and report ``skipped (no CUDA)``, never ``ok``; the stand-in
failing reports ``failed``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STEPS = ("pytest", "train_amp", "ddp_nccl", "synth", "predict")


@dataclass
class Step:
    """One step: ``commands`` run in order (argv lists); ``cpu_commands`` are run instead on a machine
    without CUDA when ``needs_cuda`` (the step then reports ``skipped (no CUDA)``); ``expect``: files that
    must exist afterwards; ``report``: called with the step's output text, returns extra lines to print."""

    name: str
    title: str
    commands: list[list[str]]
    timeout_s: float
    needs_cuda: bool = False
    cpu_commands: list[list[str]] = field(default_factory=list)
    expect: list[Path] = field(default_factory=list)
    report: Callable[[str], list[str]] | None = None


@dataclass
class Result:
    name: str
    status: str
    seconds: float
    note: str = ""
    tables: list[str] = field(default_factory=list)


class Log:
    """Writes every line to stdout and to ``path`` (flushed at once, so a killed run keeps it)."""

    def __init__(self, path: Path) -> None:
        self.fh = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()
        self.lock = threading.Lock()

    def __call__(self, line: str = "") -> None:
        with self.lock:
            print(line, flush=True)
            self.fh.write(line + "\n")
            self.fh.flush()

    def close(self) -> None:
        self.fh.close()


def run_command(argv: list[str], timeout_s: float, log: Log, env: dict[str, str]) -> tuple[int | None, str]:
    """Run ``argv`` in its own process group, streaming its output (stderr merged) to ``log``.

    Returns ``(exit status, output)``; the status is ``None`` when ``timeout_s`` (seconds) ran out, in
    which case the whole process group was killed.
    """
    log("$ " + " ".join(argv))
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        errors="replace",
        start_new_session=True,
    )
    lines: list[str] = []

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            log(lines[-1])

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        rc: int | None = proc.wait(timeout=max(timeout_s, 0.1))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        rc = None
    reader.join(timeout=5)
    return rc, "\n".join(lines)


def markdown_tables(text: str) -> list[str]:
    """The Markdown table lines (``| ... |``) of ``text``, in order."""
    return [ln for ln in text.splitlines() if ln.startswith("|") and ln.rstrip().endswith("|")]


def run_step(step: Step, timeout_s: float, has_cuda: bool, log: Log, env: dict[str, str]) -> Result:
    """Run one step within ``timeout_s`` seconds (shared by its commands) and classify the outcome."""
    stand_in = step.needs_cuda and not has_cuda
    commands = step.cpu_commands if stand_in else step.commands
    log(f"\n## {step.name}: {step.title}" + (" (CPU stand-in: no CUDA)" if stand_in else "") + "\n")
    t0 = time.monotonic()
    out, note = [], ""
    status = "ok"
    for argv in commands:
        left = timeout_s - (time.monotonic() - t0)
        rc, text = run_command(argv, left, log, env)
        out.append(text)
        if rc is None:
            status, note = "timed out", f"after {timeout_s:.0f} s in {Path(argv[1]).name}"
            break
        if rc != 0:
            status, note = "failed", f"exit status {rc} of {' '.join(argv[:4])}"
            break
    text = "\n".join(out)
    if status == "ok":
        missing = [str(p) for p in step.expect if not p.is_file()]
        if missing:
            status, note = "failed", "missing " + ", ".join(missing)
    if status == "ok" and step.report is not None:
        for line in step.report(text):
            log(line)
            out.append(line)
    if stand_in and status == "ok":
        status, note = "skipped (no CUDA)", "CPU stand-in ran"
    return Result(step.name, status, time.monotonic() - t0, note, markdown_tables("\n".join(out)))


def _batched_ips(text: str, device: str) -> float | None:
    """images/s (wall) of the ``torch, batch N (device)`` row (glibc allocator) of benchmarks/synth.py."""
    m = re.search(rf"^\| torch, batch \d+ \({device}\) \| ([0-9.]+) \|", text, re.M)
    return float(m.group(1)) if m else None


def synth_report(text: str) -> list[str]:
    """The batched torch path on the first device vs one CPU thread: a Markdown table."""
    devs = re.findall(r"^\| torch, batch \d+ \((\w+)\) \|", text, re.M)
    first = devs[0] if devs else "cuda"
    fast, cpu = _batched_ips(text, first), _batched_ips(text, "cpu")
    if fast is None or cpu is None:
        return ["synth: the batched torch rows were not found in the output"]
    return [
        "",
        "| torch synthesis, batched | images/s (wall) | × one CPU thread |",
        "|---|---:|---:|",
        f"| {first} | {fast:.1f} | {fast / cpu:.2f} |",
        f"| cpu, 1 thread | {cpu:.1f} | 1.00 |",
    ]


def plan(args: argparse.Namespace, work: Path) -> list[Step]:
    """The steps, full size or ``--dry-run`` size; every path under ``work``."""
    py, dry = args.python, args.dry_run
    dev = "cpu" if dry else "cuda"
    b = ROOT / "benchmarks"
    torchrun = [py, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1"]
    scenes = work / "scenes"
    n_scenes, scene_size = (2, (96, 64)) if dry else (8, (192, 128))
    make_scenes = [
        py,
        "-c",
        "import sys; from darkseg.data.scenes import generate_scenes; "
        f"generate_scenes(sys.argv[1], {n_scenes}, size={scene_size}, seed=3, progress=False)",
        str(scenes),
    ]
    from_scenes = [
        f"data.train.image_dir={scenes}/images",
        f"data.train.ann_file={scenes}/annotations.json",
        "model.class_names=[" + ", ".join(_scene_classes()) + "]",
    ]

    def train_cmd(device: str, run: Path) -> list[str]:
        sets = [
            *from_scenes,
            "data.val=null",
            "train.eval_at_end=false",
            "train.max_iters=2" if dry else "train.max_iters=20",
            "train.batch_size=1" if dry else "train.batch_size=4",
            "train.warmup_iters=0",
            f"train.device={device}",
        ]
        if device == "cuda":
            sets.append("train.synth_device=device")
        if dry:
            sets += ["model.max_size=96", "model.min_size=64", "model.fpn_channels=16"]
        cmd = [*torchrun, "-m", "darkseg", "train", "tiny_coco_cpu", "--out", str(run), "--no-progress"]
        cmd.append("--overwrite")  # a rerun into the same OUT
        return cmd + [a for s in sets for a in ("--set", s)]

    small = ["--size", "96", "64"] if dry else []
    amp = [py, str(b / "train_amp.py"), "--device", dev, *small]
    amp += ["--batches", "1", "--warmup", "1", "--steps", "1"] if dry else ["--batches", "2", "8"]
    ddp = [*torchrun, str(b / "ddp_nccl.py")]
    ddp_cpu = [
        *ddp,
        "--backend",
        "gloo",
        "--device",
        "cpu",
        "--size",
        "96",
        "64",
        "--batch",
        "1",
        "--iters",
        "2",
    ]
    synth_small = ["--width", "64", "--height", "48", "--n", "2", "--batch", "2", "--repeat", "1"]
    synth_dev = [py, str(b / "synth.py"), "--device", dev, "--threads", "1"]
    synth_cpu = [py, str(b / "synth.py"), "--device", "cpu", "--threads", "1"]
    if dry:
        synth_dev, synth_cpu = synth_dev + synth_small, synth_cpu + synth_small
    else:
        synth_dev += ["--n", "64", "--batch", "32"]
        synth_cpu += ["--n", "32", "--batch", "16"]
    pred = [py, str(b / "predict.py"), "--device", dev]
    pred += [*small, "--images", "1", "--batches", "1", "--repeats", "1"] if dry else ["--threads", "4"]
    pytest = [py, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *cuda_test_files()]
    return [
        Step("pytest", "the tests that need CUDA (marker cuda)", [pytest], 120, True, [[*pytest, "--co"]]),
        Step("train_amp", "training step, float32 vs AMP, plain vs DSL", [amp], 150),
        Step(
            "ddp_nccl",
            "torchrun at world size 1: darkseg train on CUDA; NCCL process group + DDP steps",
            [make_scenes, train_cmd("cuda", work / "ddp_train"), ddp],
            120,
            True,
            [make_scenes, train_cmd("cpu", work / "ddp_train"), ddp_cpu],
            expect=[work / "ddp_train" / "last.pth", work / "ddp_train" / "summary.json"],
        ),
        Step(
            "synth",
            "low-light synthesis, torch batched on the device vs one CPU thread",
            [synth_dev, synth_cpu],
            150,
            report=synth_report,
        ),
        Step("predict", "Predictor throughput, float32 / float16 / bfloat16", [pred], 120),
    ]


def cuda_test_files(tests: Path = ROOT / "tests") -> list[str]:
    """The test files that use the ``cuda`` marker (collecting only those keeps a machine that lacks the
    optional packages of other test files, e.g. the browser tests', from failing the step)."""
    return sorted(str(p) for p in tests.glob("test_*.py") if "pytest.mark.cuda" in p.read_text())


def _scene_classes() -> list[str]:
    from darkseg.data.scenes import SCENE_CLASSES

    return list(SCENE_CLASSES)


def write_summary(path: Path, results: list[Result], meta: dict) -> None:
    """``path``: JSON with ``meta`` and one entry per finished step (written atomically)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**meta, "steps": [vars(r) for r in results]}, indent=1) + "\n")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "runs/gpu_check"))
    ap.add_argument(
        "--work", type=Path, help="scratch folder (scenes, the tiny run); default: a new one under /tmp"
    )
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for all steps together")
    ap.add_argument("--dry-run", action="store_true", help="every step tiny on the CPU")
    ap.add_argument("--only", nargs="+", choices=STEPS, help="run these steps only")
    ap.add_argument("--python", default=sys.executable, help="interpreter for the steps")
    args = ap.parse_args(argv)
    t_start = time.monotonic()
    args.out.mkdir(parents=True, exist_ok=True)
    # not under OUT: the device tool brings back only a few files from there
    work = (args.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    log = Log(args.out / "gpu_check.log")
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    import torch

    has_cuda = torch.cuda.is_available() and not args.dry_run
    gpu = torch.cuda.get_device_name(0) if has_cuda else "none"
    meta = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "mode": "dry-run (CPU)" if args.dry_run else "gpu",
        "gpu": gpu,
        "torch": torch.__version__,
        "budget_s": args.budget,
    }
    log(
        f"# GPU check, {meta['started']}: torch {torch.__version__}, GPU {gpu}, {os.cpu_count()} CPUs, "
        f"budget {args.budget:.0f} s" + (", dry run on the CPU" if args.dry_run else "")
    )
    steps = [s for s in plan(args, work) if not args.only or s.name in args.only]
    results: list[Result] = []
    summary = args.out / "gpu_check_summary.json"
    for step in steps:
        left = args.budget - (time.monotonic() - t_start)
        if left < 5:
            results.append(Result(step.name, "skipped (budget)", 0.0, f"{max(left, 0):.0f} s left"))
            continue
        results.append(run_step(step, min(step.timeout_s, left), has_cuda, log, env))
        write_summary(summary, results, meta)
    meta["seconds"] = round(time.monotonic() - t_start, 1)
    write_summary(summary, results, meta)
    log(f"\n## summary ({meta['seconds']:.0f} s in all)\n")
    log("| step | status | seconds | note |")
    log("|---|---|---:|---|")
    for r in results:
        log(f"| {r.name} | {r.status} | {r.seconds:.1f} | {r.note} |")
    log.close()
    bad = [r for r in results if r.status in ("failed", "timed out")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
