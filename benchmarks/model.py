"""Model benchmark: CPU inference latency of the AWD/SCB variants and the cost of a DSL training step.

Usage::

    python benchmarks/model.py                 # full run (600x400, R50), prints Markdown tables
    python benchmarks/model.py --repeats 3 --size 300 200   # quicker

Inference: Mask R-CNN R50-FPN (8 classes, min_size 400, max_size 600, eval mode, batch 1, one 600x400
image) for plain / +AWD / +SCB (unfused) / +SCB (fused) / +AWD+SCB (fused). The variants are timed
round-robin (each round runs every variant once, the median over rounds is reported) so that load drift
on a shared machine affects all of them alike; ratios are to the plain model of the same run. Every
variant gets the plain model's head weights and the same input, and we report the number of detections
(mask-head work depends on it). Random weights: latency, not accuracy.

Numerics modes: the paper's R50 "Ours" with the same weights in torchvision and mmdet mode (converted
MMDetection checkpoints), fused and unfused; and mask pasting alone (100 masks) with torchvision's
``paste_masks_in_image`` against darkseg's box-local pasting.

Stages (``model_stages.py``): the paper's R50 "Ours" in mmdet numerics stage by stage, with counted FLOPs,
achieved GFLOP/s and the share of this CPU's single-thread peak (a large matrix product, same run).

Training: one step (forward + backward + SGD step) of the paper's model (caffe R50 + AWD + SCB) at batch
2, 600x400: plain step ``model(images, targets)`` vs DSL step ``model.forward_dsl(clean, noisy,
targets)``. Peak memory: peak resident set size (``VmHWM``) of a fresh subprocess that builds the model
and runs one step, and the same for a plain step. Times are process CPU time with one torch thread (see
``_clock``); denormals are flushed (as the training engine does).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

from darkseg.models import ModelConfig, build_model, param_groups
from darkseg.utils.runtime import keep_freed_memory


def _clock() -> float:
    """Process CPU time: with one torch thread it measures this process's compute and is robust to other
    jobs sharing the cores (wall-clock time is inflated and noisy on a loaded machine)."""
    return time.process_time()


CLASSES = ["bicycle", "car", "motorcycle", "bus", "bottle", "chair", "dining table", "tv"]


def make_targets(n: int, h: int, w: int, g: torch.Generator):
    tgts = []
    for _ in range(n):
        boxes, masks = [], torch.zeros(4, h, w, dtype=torch.uint8)
        for k in range(4):
            x0 = int(torch.randint(0, w // 2, (1,), generator=g))
            y0 = int(torch.randint(0, h // 2, (1,), generator=g))
            x1, y1 = x0 + w // 4 + 8 * k, y0 + h // 4 + 4 * k
            boxes.append([x0, y0, x1, y1])
            masks[k, y0:y1, x0:x1] = 1
        tgts.append(
            {
                "boxes": torch.tensor(boxes, dtype=torch.float32),
                "labels": torch.randint(1, 9, (4,), generator=g),
                "masks": masks,
            }
        )
    return tgts


def cfg_for(awd: bool, scb: bool, **kw) -> ModelConfig:
    return ModelConfig(depth=50, style="caffe", awd=awd, scb=scb, class_names=CLASSES, **kw)


def inference(size: tuple[int, int], repeats: int) -> list[dict]:
    w, h = size
    torch.manual_seed(0)
    variants = [
        ("plain", False, False, False),
        ("+AWD", True, False, False),
        ("+SCB (unfused)", False, True, False),
        ("+SCB (fused)", False, True, True),
        ("+AWD+SCB (fused)", True, True, True),
    ]
    models = {}
    plain_sd = None
    for name, awd, scb, fuse in variants:
        m = build_model(cfg_for(awd, scb, min_size=min(h, w), max_size=max(h, w)))
        if plain_sd is None:
            plain_sd = m.state_dict()
        else:  # identical heads / shared trunk weights for a like-for-like comparison
            own = m.state_dict()
            m.load_state_dict(
                {k: v for k, v in plain_sd.items() if k in own and own[k].shape == v.shape}, strict=False
            )
        if fuse:
            m.fuse()
        models[name] = m.eval()
    img = [torch.rand(3, h, w, generator=torch.Generator().manual_seed(1))]
    times: dict[str, list[float]] = {n: [] for n in models}
    btimes: dict[str, list[float]] = {n: [] for n in models}
    dets: dict[str, int] = {}
    with torch.inference_mode():
        x = models["plain"].transform(img)[0].tensors
        for name, m in models.items():  # warm-up
            dets[name] = int(m(img)[0]["boxes"].shape[0])
            m.backbone(x)
        for _ in range(repeats):
            for name, m in models.items():
                t0 = _clock()
                m(img)
                t1 = _clock()
                m.backbone(x)
                t2 = _clock()
                times[name].append(t1 - t0)
                btimes[name].append(t2 - t1)
            print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    base = statistics.median(times["plain"])
    bbase = statistics.median(btimes["plain"])
    rows = []
    for name, m in models.items():
        med, bmed = statistics.median(times[name]), statistics.median(btimes[name])
        params = sum(p.numel() for p in m.parameters())
        rows.append(
            {
                "variant": name,
                "ms": med * 1e3,
                "ratio": med / base,
                "backbone_ms": bmed * 1e3,
                "backbone_ratio": bmed / bbase,
                "detections": dets[name],
                "params_M": params / 1e6,
            }
        )
    return rows


def _round_robin(fns: dict, repeats: int) -> dict[str, float]:
    """Median process-CPU seconds of each callable, timed round-robin (one call of each per round)."""
    times: dict[str, list[float]] = {n: [] for n in fns}
    for f in fns.values():  # warm-up
        f()
    for _ in range(repeats):
        for name, f in fns.items():
            t0 = _clock()
            f()
            times[name].append(_clock() - t0)
        print(".", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return {n: statistics.median(t) for n, t in times.items()}


def calibrate_batchnorm(model, images: list[torch.Tensor]) -> None:
    """Set every frozen BatchNorm's statistics to those of its input on ``images`` (one pass, in order).

    A randomly initialised R50 with identity BatchNorm statistics blows activations up to ~1e4 and finds
    nothing; with calibrated statistics (as the reference fixtures do) it proposes real boxes and the
    heads do the work of a trained model.
    """
    from darkseg.models.resnet import FrozenBatchNorm2d

    def hook(mod, args):
        x = args[0]
        mod.running_mean.copy_(x.mean(dim=(0, 2, 3)))
        mod.running_var.copy_(x.var(dim=(0, 2, 3), unbiased=False))

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, FrozenBatchNorm2d)]
    with torch.no_grad():
        model.eval()(images)
    for hnd in handles:
        hnd.remove()


#: the input settings of a converted MMDetection checkpoint (caffe R50: BGR, 0..255, mean only)
MMDET_INPUT = dict(
    compat="mmdet",
    input_scale=255.0,
    channel_order="bgr",
    image_mean=[103.53, 116.28, 123.675],
    image_std=[1.0, 1.0, 1.0],
    rpn_post_nms_top_n_train=1000,
)


def calibrated_paper_model(size: tuple[int, int], **extra):
    """The paper's R50 "Ours" (caffe, AWD, SCB) that finds real boxes: ``(model, [image])``.

    BatchNorm statistics are calibrated on the input and the RPN output layers get the gains of the
    reference fixtures (x100 / x20) so that the random model proposes real, varied boxes and keeps up
    to 100 detections (score > 0.05). ``extra``: more ``ModelConfig`` fields (e.g. :data:`MMDET_INPUT`).
    """
    w, h = size
    torch.manual_seed(0)
    model = build_model(cfg_for(True, True, min_size=min(h, w), max_size=max(h, w), **extra))
    img = [torch.rand(3, h, w, generator=torch.Generator().manual_seed(1))]
    calibrate_batchnorm(model, img)
    with torch.no_grad():
        model.rpn.head.cls_logits.weight.mul_(100)
        model.rpn.head.bbox_pred.weight.mul_(20)
    return model, img


def compat_modes(size: tuple[int, int], repeats: int) -> list[dict]:
    """The paper's R50 "Ours" (:func:`calibrated_paper_model`) with the same weights in torchvision and
    mmdet mode, fused and unfused."""
    w, h = size
    mm_cfg = MMDET_INPUT
    base, img = calibrated_paper_model(size)
    sd = base.state_dict()
    models = {}
    for name, extra, fuse in [
        ("torchvision mode, fused", {}, True),
        ("mmdet mode, fused", mm_cfg, True),
        ("mmdet mode, unfused", mm_cfg, False),
    ]:
        m = build_model(cfg_for(True, True, min_size=min(h, w), max_size=max(h, w), **extra))
        m.load_state_dict(sd)
        if fuse:
            m.fuse()
        m.mask_threshold = 0.5  # what Predictor does: bool masks pasted directly
        models[name] = m.eval()
    with torch.inference_mode():
        dets = {n: int(m(img)[0]["boxes"].shape[0]) for n, m in models.items()}
        med = _round_robin({n: (lambda m=m: m(img)) for n, m in models.items()}, repeats)
    ref = med["torchvision mode, fused"]
    return [{"variant": n, "ms": t * 1e3, "ratio": t / ref, "detections": dets[n]} for n, t in med.items()]


def pasting(size: tuple[int, int], repeats: int, n: int = 100) -> list[dict]:
    """Pasting ``n`` 28x28 masks into a ``W x H`` image: torchvision's function vs darkseg's box-local."""
    from torchvision.models.detection.roi_heads import paste_masks_in_image

    from darkseg.models.paste import paste_masks_box_local, paste_masks_grid_sample

    w, h = size
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.8, h * 0.8])
    wh = 8 + torch.rand(n, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3])
    boxes = torch.cat([xy, xy + wh], 1)
    probs = torch.rand(n, 1, 28, 28, generator=g)
    fns = {
        "torchvision paste_masks_in_image (float) + threshold": lambda: (
            paste_masks_in_image(probs, boxes, (h, w)) > 0.5
        ),
        "box-local, torchvision rule (float)": lambda: paste_masks_box_local(probs, boxes, (h, w)),
        "box-local, torchvision rule (bool)": lambda: paste_masks_box_local(probs, boxes, (h, w), 0.5),
        "box-local, MMDetection rule (bool)": lambda: paste_masks_grid_sample(
            probs[:, 0], boxes, (h, w), 0.5
        ),
    }
    with torch.inference_mode():
        med = _round_robin(fns, repeats)
    ref = med["torchvision paste_masks_in_image (float) + threshold"]
    return [{"variant": k, "ms": t * 1e3, "ratio": t / ref} for k, t in med.items()]


def _train_step(model, opt, mode: str, clean, noisy, targets) -> float:
    t0 = _clock()
    opt.zero_grad(set_to_none=True)
    losses = model.forward_dsl(clean, noisy, targets) if mode == "dsl" else model(noisy, targets)
    sum(losses.values()).backward()
    opt.step()
    return _clock() - t0


def _train_setup(size, batch):
    w, h = size
    torch.manual_seed(0)
    model = build_model(cfg_for(True, True, min_size=min(h, w), max_size=max(h, w))).train()
    opt = torch.optim.SGD(param_groups(model, 0.01, 1e-4), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(2)
    clean = [torch.rand(3, h, w, generator=g) for _ in range(batch)]
    noisy = [(c + 0.05 * torch.randn(c.shape, generator=g)).clamp(0, 1) for c in clean]
    return model, opt, clean, noisy, make_targets(batch, h, w, g)


def training(size, batch: int, repeats: int) -> list[dict]:
    """Median step times, first with glibc's default allocator, then after ``keep_freed_memory()`` (what
    ``darkseg train`` does on CPU; process-wide, so it is measured second)."""
    model, opt, clean, noisy, targets = _train_setup(size, batch)
    rows = []
    for alloc in ("default", "keep_freed_memory"):
        if alloc == "keep_freed_memory" and not keep_freed_memory():
            break
        times = {"plain": [], "dsl": []}
        _train_step(model, opt, "plain", clean, noisy, targets)  # warm-up
        for _ in range(repeats):
            for mode in ("plain", "dsl"):
                times[mode].append(_train_step(model, opt, mode, clean, noisy, targets))
            print(".", end="", file=sys.stderr, flush=True)
        base = statistics.median(times["plain"])
        rows += [
            {"step": k, "allocator": alloc, "s": statistics.median(v), "ratio": statistics.median(v) / base}
            for k, v in times.items()
        ]
    print(file=sys.stderr)
    return rows


def memory_probe(mode: str, size, batch: int) -> None:
    """Run in a fresh process: one training step (``"*-kept"``: three steps after ``keep_freed_memory()``),
    print the peak RSS in GiB as JSON."""
    steps = 1
    if mode.endswith("-kept"):
        keep_freed_memory()
        steps = 3
    model, opt, clean, noisy, targets = _train_setup(size, batch)
    before = _vm_hwm_kib()
    for _ in range(steps):
        _train_step(model, opt, mode.removesuffix("-kept"), clean, noisy, targets)
    peak = _vm_hwm_kib()
    print(json.dumps({"mode": mode, "peak_gib": peak / 2**20, "before_step_gib": before / 2**20}))


def _vm_hwm_kib() -> int:
    """Peak resident set size of this process (``VmHWM``; unlike ``ru_maxrss`` it is not inherited from
    the parent across fork/exec). Falls back to ``ru_maxrss`` where /proc is missing."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def memory(size, batch: int) -> list[dict]:
    rows = []
    for mode in ("plain", "dsl", "dsl-kept"):
        cmd = [
            sys.executable,
            __file__,
            "--memory-probe",
            mode,
            "--batch",
            str(batch),
            "--size",
            *map(str, size),
        ]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        rows.append(json.loads(out))
    return rows


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, nargs=2, default=(600, 400), metavar=("W", "H"))
    ap.add_argument("--repeats", type=int, default=7, help="timed rounds for inference")
    ap.add_argument("--train-repeats", type=int, default=3, help="timed rounds for training steps")
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument(
        "--threads", type=int, default=1, help="torch.set_num_threads (1: robust on a shared machine)"
    )
    sections = ["stages", "ops", "inference", "compat", "paste", "training", "memory", "compile"]
    ap.add_argument("--skip", nargs="*", default=[], choices=sections)
    ap.add_argument("--only", nargs="*", default=None, choices=sections, help="run only these sections")
    ap.add_argument("--memory-probe", choices=["plain", "dsl", "dsl-kept"], help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.only is not None:
        args.skip = [x for x in sections if x not in args.only]
    if "compile" not in (args.only or []):  # a minute of compilation: only when asked for by --only
        args.skip.append("compile")
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)  # random weights produce denormals that would distort timings
    size = tuple(args.size)
    if args.memory_probe:
        memory_probe(args.memory_probe, size, args.batch)
        return
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, input {size[0]}x{size[1]}\n")
    if "stages" not in args.skip:
        from model_stages import print_stages, stages

        rows, summary = stages(size, args.repeats)
        print_stages(rows, summary, args.repeats)
    if "ops" not in args.skip:
        from model_stages import fast_path_ops

        rows = fast_path_ops(max(args.repeats, 5))
        print(f"Fast-path operations against the calls they replace, median of {max(args.repeats, 5)}\n")
        print("| operation | shape | replaced (ms) | now (ms) | speed-up |\n|---|---|---:|---:|---:|")
        for r in rows:
            ratio = r["ms_ref"] / r["ms_new"]
            print(f"| {r['op']} | {r['shape']} | {r['ms_ref']:.1f} | {r['ms_new']:.1f} | {ratio:.2f}x |")
        print()
    if "compile" not in args.skip:
        from model_stages import compiled_backbone

        rows = compiled_backbone(size, args.repeats)
        print(
            f'torch.compile of the R50 "Ours" trunk + FPN (mmdet numerics, fused), median of {args.repeats}\n'
        )
        print("| variant | first call (s) | ms | × eager | largest error vs float64 (relative) |")
        print("|---|---:|---:|---:|---:|")
        for r in rows:
            cells = [
                r["variant"],
                f"{r['compile_s']:.0f}",
                f"{r['ms']:.0f}",
                f"{r['ms'] / rows[0]['ms']:.3f}",
            ]
            print("| " + " | ".join(cells) + f" | {r['rel_err']:.1e} |")
        print()
    if "inference" not in args.skip:
        rows = inference(size, args.repeats)
        print(f"Inference, batch 1, median of {args.repeats} rounds\n")
        print("| variant | model (ms) | × plain | backbone+FPN (ms) | × plain | detections | params (M) |")
        print("|---|---|---|---|---|---|---|")
        for r in rows:
            cells = [r["variant"], f"{r['ms']:.0f}", f"{r['ratio']:.3f}", f"{r['backbone_ms']:.0f}"]
            cells += [f"{r['backbone_ratio']:.3f}", str(r["detections"]), f"{r['params_M']:.2f}"]
            print("| " + " | ".join(cells) + " |")
        print()
    if "compat" not in args.skip:
        rows = compat_modes(size, args.repeats)
        print(f"R50 AWD+SCB, torchvision vs mmdet numerics (same weights), median of {args.repeats} rounds\n")
        print("| mode | model (ms) | × torchvision mode | detections |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r['variant']} | {r['ms']:.0f} | {r['ratio']:.3f} | {r['detections']} |")
        print()
    if "paste" not in args.skip:
        rows = pasting(size, max(args.repeats, 5))
        print("Pasting 100 masks of 28x28 into the image, median\n")
        print("| paste | ms | × torchvision |\n|---|---|---|")
        for r in rows:
            print(f"| {r['variant']} | {r['ms']:.1f} | {r['ratio']:.3f} |")
        print()
    if "training" not in args.skip:
        rows = training(size, args.batch, args.train_repeats)
        print(f"Training step (R50 caffe + AWD + SCB), batch {args.batch}, median of {args.train_repeats}\n")
        print("| step | allocator | time (s) | × plain step (same allocator) |\n|---|---|---|---|")
        for r in rows:
            print(f"| {r['step']} | {r['allocator']} | {r['s']:.2f} | {r['ratio']:.3f} |")
        print()
    if "memory" not in args.skip:
        rows = memory(size, args.batch)
        print(f"Peak resident memory of one training step, batch {args.batch} (fresh process)\n")
        print("| step | peak RSS (GiB) | RSS before the step (GiB) |\n|---|---|---|")
        for r in rows:
            print(f"| {r['mode']} | {r['peak_gib']:.2f} | {r['before_step_gib']:.2f} |")


if __name__ == "__main__":
    main()
