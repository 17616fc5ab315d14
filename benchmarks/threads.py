"""Threads on a busy machine: the demo's training step with 1 vs 2 torch threads, with and without
another CPU-bound process, and with libgomp's busy-waiting on or off.

Usage::

    python benchmarks/threads.py                  # prints a Markdown table (about 3-5 minutes)
    python benchmarks/threads.py --iters 3 --budget 20   # quicker

Each setting runs in a fresh Python process (thread counts and ``OMP_WAIT_POLICY`` take effect when the
OpenMP runtime starts): it builds the packaged ``demo`` config's model (ResNet-18 Mask R-CNN with AWD +
SCB, 6 classes) and times training steps as ``darkseg train``/``demo`` runs them on CPU (DSL forward on a
clean and a noisy view, backward, SGD step; batch 4 of 192x144 images with 4 box instances each;
denormals flushed, freed memory kept). One warm-up step, then up to ``--iters`` timed steps or until
``--budget`` seconds have passed (at least 2). Wall-clock seconds per step, median; ``n`` steps timed.

"+1 busy process": a plain Python busy loop (``while True: pass``, not pinned) runs for the whole
setting. The table's ``load`` is the 1-minute load average when the setting started (it lags by about a
minute; it counts everything else running on the machine, e.g. other jobs of other users).

Settings: ``--threads 1``; ``--threads 2`` with libgomp's default wait (spin about 300 000 iterations,
then sleep), with a short spin (``GOMP_SPINCOUNT=10000``) and with ``OMP_WAIT_POLICY=PASSIVE`` (OpenMP
threads sleep at once while they wait); and ``default``: darkseg's own choice
(:func:`darkseg.utils.threads.configure_threads`, what every ``darkseg`` command runs without
``--threads``), with the environment the ``darkseg`` command line gives it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

CHILD = r"""
import json, os, sys, time
import torch
from darkseg.config import load_config
from darkseg.models import build_model, param_groups
from darkseg.utils.runtime import keep_freed_memory
from darkseg.utils.threads import apply_threads, configure_threads

threads, iters, budget = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
choice = None
if threads == "default":
    choice = configure_threads(None)
else:
    apply_threads(int(threads))
torch.set_flush_denormal(True)
keep_freed_memory()
torch.manual_seed(0)
cfg = load_config("demo")
model = build_model(cfg.model).train()
t = cfg.train
opt = torch.optim.SGD(param_groups(model, t.lr, t.weight_decay, t.lr_mult), lr=t.lr, momentum=0.9)
g = torch.Generator().manual_seed(1)
h, w = 144, 192
clean = [torch.rand(3, h, w, generator=g) for _ in range(t.batch_size)]
noisy = [(c + 0.1 * torch.randn(3, h, w, generator=g)).clamp(0, 1) for c in clean]
sys.path.insert(0, BENCHMARKS)
from model import make_targets  # benchmarks/model.py: 4 box instances per image

targets = make_targets(t.batch_size, h, w, g)
for tgt in targets:  # the demo's 6 classes
    tgt["labels"] = (tgt["labels"] - 1) % len(cfg.model.class_names) + 1

def step():
    losses = model.forward_dsl(clean, noisy, targets) if t.dsl else model(noisy, targets)
    loss = sum(losses.values())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()

step()  # warm-up
times, start = [], time.perf_counter()
while len(times) < iters and (len(times) < 2 or time.perf_counter() - start < budget):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
print(json.dumps({"times": times, "threads": torch.get_num_threads(),
                  "source": None if choice is None else choice.source}))
"""

BUSY = "while True:\n    pass\n"


#: OpenMP wait settings: label -> environment entries (libgomp's variables)
WAIT = {
    "spin": {},  # libgomp's default: spin ~300 000 iterations, then sleep
    "short spin": {"GOMP_SPINCOUNT": "10000"},
    "PASSIVE": {"OMP_WAIT_POLICY": "PASSIVE"},  # no spinning
}


def run_setting(threads: str, wait: dict[str, str], iters: int, budget: float) -> dict:
    """One setting in a fresh process; returns the child's JSON plus the load average at its start."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT"):
        env.pop(var, None)
    env.update(wait)
    load = os.getloadavg()[0]
    child = CHILD.replace("BENCHMARKS", repr(os.path.dirname(os.path.abspath(__file__))))
    out = subprocess.run(
        [sys.executable, "-c", child, threads, str(iters), str(budget)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["load"] = load
    result["stderr"] = out.stderr.strip()
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iters", type=int, default=5, help="timed steps per setting at most (default 5)")
    ap.add_argument(
        "--budget", type=float, default=25.0, help="seconds of timed steps per setting (default 25)"
    )
    ap.add_argument("--no-quiet", action="store_true", help="only the runs with the extra busy process")
    args = ap.parse_args()

    from darkseg.cli import wait_policy_env  # what the darkseg command line sets before torch starts

    default_env = wait_policy_env({})
    waits = dict(WAIT)
    default_label = next((k for k, v in waits.items() if v == default_env), str(default_env))
    waits.setdefault(default_label, default_env)
    settings = [("1", "spin"), ("2", "spin"), ("2", "short spin"), ("2", "PASSIVE")]
    settings.append(("default", default_label))
    cpus = f"{os.cpu_count()} CPUs, {len(os.sched_getaffinity(0))} usable"
    print(f"python {sys.version.split()[0]}, {cpus}\n")
    print("| machine | threads | OpenMP wait | s / step (median) | n | load at start |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for busy in ([False] if not args.no_quiet else []) + [True]:
        for threads, wait in settings:
            hog = subprocess.Popen([sys.executable, "-c", BUSY]) if busy else None
            try:
                if hog is not None:
                    time.sleep(1.0)
                r = run_setting(threads, waits[wait], args.iters, args.budget)
            finally:
                if hog is not None:
                    hog.kill()
                    hog.wait()
            label = f"default ({r['threads']})" if threads == "default" else threads
            machine = "+1 busy process" if busy else "as found"
            policy = wait + "".join(f" ({k}={v})" for k, v in waits[wait].items())
            print(
                f"| {machine} | {label} | {policy} | {statistics.median(r['times']):.2f} | "
                f"{len(r['times'])} | {r['load']:.2f} |",
                flush=True,
            )
            if r["stderr"]:
                print(f"<!-- stderr: {r['stderr'][-300:]} -->", file=sys.stderr)


if __name__ == "__main__":
    main()
