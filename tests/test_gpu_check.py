"""benchmarks/gpu_check.py: step outcomes (ok / failed / timed out / skipped), the plan, and the dry run on
the CPU writing its log and summary."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check as gc  # noqa: E402 - benchmark script

PY = sys.executable


def _run(step: gc.Step, tmp_path: Path, timeout_s: float = 30, has_cuda: bool = False) -> gc.Result:
    log = gc.Log(tmp_path / "log.txt")
    try:
        return gc.run_step(step, timeout_s, has_cuda, log, {"PATH": "/usr/bin:/bin"})
    finally:
        log.close()


def test_step_outcomes(tmp_path):
    ok = _run(gc.Step("a", "t", [[PY, "-c", "print('| x |\\n|---|\\n| 1 |')"]], 30), tmp_path)
    assert (ok.status, ok.tables) == ("ok", ["| x |", "|---|", "| 1 |"])
    bad = _run(
        gc.Step("b", "t", [[PY, "-c", "raise SystemExit(3)"], [PY, "-c", "print('never')"]], 30), tmp_path
    )
    assert bad.status == "failed" and "exit status 3" in bad.note
    assert "never" not in (tmp_path / "log.txt").read_text()
    slow = _run(gc.Step("c", "t", [[PY, "-c", "import time; time.sleep(30)"]], 30), tmp_path, timeout_s=1)
    assert slow.status == "timed out" and slow.seconds < 10
    gone = gc.Step("d", "t", [[PY, "-c", "pass"]], 30, expect=[tmp_path / "nothing.pth"])
    assert _run(gone, tmp_path).status == "failed"


def test_cuda_steps_without_cuda_are_skipped_never_ok(tmp_path):
    marker = tmp_path / "gpu_ran"
    step = gc.Step(
        "n",
        "t",
        [[PY, "-c", f"open({str(marker)!r}, 'w')"]],
        30,
        needs_cuda=True,
        cpu_commands=[[PY, "-c", "print('stand-in')"]],
    )
    res = _run(step, tmp_path)
    assert res.status == "skipped (no CUDA)" and not marker.exists()
    assert _run(step, tmp_path, has_cuda=True).status == "ok" and marker.exists()
    step.cpu_commands = [[PY, "-c", "raise SystemExit(1)"]]
    assert _run(step, tmp_path).status == "failed"


def test_plan_covers_every_step_and_existing_scripts(tmp_path):
    for dry in (True, False):
        args = gc.argparse.Namespace(python=PY, dry_run=dry)
        steps = gc.plan(args, tmp_path)
        assert tuple(s.name for s in steps) == gc.STEPS
        for s in steps:
            for argv in s.commands + s.cpu_commands:
                scripts = [a for a in argv if a.endswith(".py")]
                assert all(Path(a).is_file() for a in scripts), argv
    assert str(ROOT / "tests" / "test_synth_pipeline.py") in gc.cuda_test_files()
    assert {s.name for s in steps if s.needs_cuda} == {"pytest", "ddp_nccl"}


def test_synth_report_ratio():
    text = "| torch, batch 32 (cuda) | 900.0 | 9.00x | n/a |\n| torch, batch 16 (cpu) | 30.0 | 1.00x | 31.0 |"
    lines = gc.synth_report(text)
    assert "| cuda | 900.0 | 30.00 |" in lines and "| cpu, 1 thread | 30.0 | 1.00 |" in lines
    assert "not found" in gc.synth_report("nothing here")[0]


def test_dry_run_writes_log_and_summary(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "out"
    assert gc.main(["--dry-run", "--out", str(out), "--work", str(tmp_path / "w"), "--only", "synth"]) == 0
    summary = json.loads((out / "gpu_check_summary.json").read_text())
    assert summary["mode"] == "dry-run (CPU)"
    [step] = summary["steps"]
    assert step["status"] == "ok" and any("torch synthesis, batched" in t for t in step["tables"])
    log = (out / "gpu_check.log").read_text()
    assert "| synth | ok |" in log
    # no budget left: every step is reported, none is run
    assert gc.main(["--dry-run", "--out", str(out), "--work", str(tmp_path / "w"), "--budget", "0"]) == 0
    steps = json.loads((out / "gpu_check_summary.json").read_text())["steps"]
    assert [(s["name"], s["status"]) for s in steps] == [(n, "skipped (budget)") for n in gc.STEPS]


@pytest.mark.slow
def test_dry_run_ddp_step_runs_its_cpu_stand_in(tmp_path, monkeypatch):
    """torchrun of the tiny train on the CPU (checkpoint written) and the DDP probe with gloo; the step
    still reports skipped, since NCCL was not exercised."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    out = tmp_path / "out"
    argv = ["--dry-run", "--out", str(out), "--work", str(tmp_path / "work"), "--only", "ddp_nccl"]
    assert gc.main(argv) == 0
    [step] = json.loads((out / "gpu_check_summary.json").read_text())["steps"]
    assert step["status"] == "skipped (no CUDA)" and step["note"] == "CPU stand-in ran"
    assert (tmp_path / "work" / "ddp_train" / "last.pth").is_file()
    assert any("| gloo | cpu | 1 |" in t and t.endswith("| ok |") for t in step["tables"])
