"""darkseg now against an earlier commit, in one run: inference, the DSL training step and synthesis.

Usage::

    python benchmarks/compare_trees.py --base 42b87d5 --rounds 3        # prints a Markdown table
    python benchmarks/compare_trees.py --base 42b87d5 --rounds 6 --repeats 5 --what synth synth-uint8

The base commit is checked out into a temporary detached work tree. Each measurement is a fresh process
(``--probe``) that imports darkseg from one tree (``PYTHONPATH``) and runs the same probe code (this
file, ``model.py``, ``model_stages.py`` of the current tree); rounds alternate the order of the trees,
so load drift on a shared machine hits both alike. Times are process CPU time with one thread.

Probes:
* ``inference``: the paper's R50 "Ours" in mmdet numerics, fused, 600x400, 100 detections
  (``model_stages.build_paper_model``), median of ``--repeats`` calls of ``model(images)``. The probe also
  returns the detections, and the table reports the largest box / score difference between the trees
  (equal detections within float32 rounding is the condition for comparing times at all).
* ``train``: one DSL step (``model.forward_dsl`` + backward + SGD), caffe R50 + AWD + SCB, batch 2,
  600x400 (``model._train_setup``), after ``keep_freed_memory()`` as ``darkseg train`` runs it; median
  of ``--repeats`` steps after one warm-up step; and the peak resident memory of the process.
* ``synth`` / ``synth-uint8``: ``LowLightSynthesizer.numpy`` (PGRU, clean + noisy ``rgb`` rendering) on
  ``benchmarks/synth.py``'s 600x400 test image, as float32 or as 8-bit codes, after
  ``keep_freed_memory()`` (the ``keep_freed_memory`` NumPy rows of ``benchmarks/synth.py``); best of
  ``--repeats`` timings of 32 images, per image. Tables of images/s invert it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def probe(kind: str, repeats: int) -> dict:
    import torch

    import darkseg

    torch.set_num_threads(1)
    torch.set_flush_denormal(True)
    out: dict = {"darkseg": str(Path(darkseg.__file__).parent)}
    if kind == "inference":
        from model_stages import _clock, build_paper_model

        model, img = build_paper_model((600, 400))
        times = []
        with torch.inference_mode():
            det = model(img)[0]
            for _ in range(repeats):
                t0 = _clock()
                model(img)
                times.append(_clock() - t0)
        out.update(
            ms=statistics.median(times) * 1e3,
            boxes=det["boxes"].tolist(),
            scores=det["scores"].tolist(),
            labels=det["labels"].tolist(),
        )
    elif kind == "train":
        from darkseg.utils.runtime import keep_freed_memory
        from model import _train_setup, _train_step, _vm_hwm_kib

        keep_freed_memory()
        model, opt, clean, noisy, targets = _train_setup((600, 400), 2)
        _train_step(model, opt, "dsl", clean, noisy, targets)
        times = [_train_step(model, opt, "dsl", clean, noisy, targets) for _ in range(repeats)]
        out.update(ms=statistics.median(times) * 1e3, peak_gib=_vm_hwm_kib() / 2**20)
    elif kind in ("synth", "synth-uint8"):
        import numpy as np

        from darkseg.synth import LowLightSynthesizer, SynthConfig
        from darkseg.utils.runtime import keep_freed_memory
        from model_stages import _clock
        from synth import test_image

        keep_freed_memory()
        synth = LowLightSynthesizer(SynthConfig(noise_model="PGRU", output="rgb"))
        img = test_image(400, 600)
        if kind == "synth-uint8":
            img = (img * 255).round().astype(np.uint8)
        rng = np.random.default_rng(0)
        n = 32
        synth.numpy(img, rng)
        times = []
        for _ in range(repeats):
            t0 = _clock()
            for _ in range(n):
                synth.numpy(img, rng)
            times.append((_clock() - t0) / n)
        out.update(ms=min(times) * 1e3)  # best of the repeats, per image (as benchmarks/synth.py)
    else:
        raise ValueError(kind)
    return out


def run_probe(tree: Path, kind: str, repeats: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(tree / "src"), OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(HERE / "compare_trees.py"), "--probe", kind, "--repeats", str(repeats)]
    res = subprocess.run(cmd, env=env, cwd=HERE, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"probe {kind} in {tree} failed:\n{res.stderr[-2000:]}")
    got = json.loads(res.stdout.strip().splitlines()[-1])
    if Path(got["darkseg"]).resolve() != (tree / "src" / "darkseg").resolve():
        raise SystemExit(f"probe imported darkseg from {got['darkseg']}, not from {tree}")
    return got


def _detection_diff(a: dict, b: dict) -> str:
    if len(a["boxes"]) != len(b["boxes"]) or a["labels"] != b["labels"]:
        return f"different ({len(a['boxes'])} vs {len(b['boxes'])} detections)"
    box = max((abs(x - y) for p, q in zip(a["boxes"], b["boxes"]) for x, y in zip(p, q)), default=0.0)
    score = max((abs(x - y) for x, y in zip(a["scores"], b["scores"])), default=0.0)
    return f"{len(a['boxes'])} equal labels; boxes within {box:.1e} px, scores within {score:.1e}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", help="commit to compare against (e.g. 42b87d5)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per probe process")
    kinds = ["inference", "train", "synth", "synth-uint8"]
    ap.add_argument("--what", nargs="*", default=kinds, choices=kinds)
    ap.add_argument("--probe", choices=kinds, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.probe:
        print(json.dumps(probe(args.probe, args.repeats)))
        return
    if not args.base:
        ap.error("--base is required")
    rev = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", args.base],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="darkseg-base-") as tmp:
        base = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base), rev],
            check=True,
            capture_output=True,
        )
        try:
            trees = {"base": base, "now": ROOT}
            res: dict[str, dict[str, list[dict]]] = {k: {"base": [], "now": []} for k in args.what}
            for r in range(args.rounds):
                order = ["base", "now"] if r % 2 == 0 else ["now", "base"]
                for kind in args.what:
                    for name in order:
                        res[kind][name].append(run_probe(trees[name], kind, args.repeats))
                print(".", end="", file=sys.stderr, flush=True)
            print(file=sys.stderr)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(base)], check=False)
    print(
        f"darkseg now vs {rev}: {args.rounds} rounds, each a fresh process per tree, {args.repeats} timings"
        " per process (model: median of calls; synthesis: best of 32-image runs); table: median over rounds"
        " (range)\n"
    )
    print(f"| path | {rev} (ms) | now (ms) | now vs {rev} | notes |\n|---|---:|---:|---:|---|")
    for kind in args.what:
        b = [x["ms"] for x in res[kind]["base"]]
        n = [x["ms"] for x in res[kind]["now"]]
        note = ""
        if kind == "inference":
            note = _detection_diff(res[kind]["base"][0], res[kind]["now"][0])
        elif kind == "train":
            pb = max(x["peak_gib"] for x in res[kind]["base"])
            pn = max(x["peak_gib"] for x in res[kind]["now"])
            note = f"peak RSS {pb:.2f} vs {pn:.2f} GiB"
        label = {
            "inference": "R50 Ours inference, mmdet numerics, fused",
            "train": "DSL training step, batch 2",
            "synth": "synthesis, NumPy, float32 photo, per image",
            "synth-uint8": "synthesis, NumPy, uint8 photo, per image",
        }
        d = 0 if min(b + n) >= 100 else 2  # decimals: whole ms for the model, 0.01 ms for synthesis
        print(
            f"| {label[kind]} | {statistics.median(b):.{d}f} ({min(b):.{d}f}–{max(b):.{d}f}) | "
            f"{statistics.median(n):.{d}f} ({min(n):.{d}f}–{max(n):.{d}f}) | "
            f"**{statistics.median(b) / statistics.median(n):.2f}x** | {note} |"
        )


if __name__ == "__main__":
    main()
