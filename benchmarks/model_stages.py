"""Per-stage time, counted FLOPs and share of this CPU's peak for the paper's R50 "Ours" (mmdet numerics).

Used by ``benchmarks/model.py --only stages`` (and ``compare_trees.py``'s probes). The model is the one of
``model.compat_modes``' "mmdet mode, fused" row: caffe R50 + AWD + SCB (folded), BatchNorm statistics
calibrated on the input, RPN output gains x100 / x20, so that 1000 proposals and 100 detections reach
the heads, as with a trained model. Stages follow ``DarkMaskRCNN.forward_mmdet`` one by one.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` on the stage's real call (2 per
multiply-add of every convolution and matrix product; gathers, NMS, element-wise work count 0). The
peak is the better of a 2048 x 2048 float32 matrix product and a large 3x3 convolution, measured in the
same process and thread setting before and after the stages.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

#: the stages of one mmdet-numerics inference, in order
STAGES = (
    "transform",
    "trunk (ResNet + AWD)",
    "FPN",
    "RPN (head + proposals)",
    "box RoIAlign",
    "box head (2 FC)",
    "box predictor + post-processing",
    "mask RoIAlign",
    "mask head (4 conv 3x3)",
    "mask predictor (deconv + 1x1)",
    "mask paste",
)


def _clock() -> float:
    return time.process_time()


def build_paper_model(size: tuple[int, int]):
    """The paper's R50 "Ours" in mmdet numerics with calibrated BN and 100 detections; ``(model, image)``."""
    from model import MMDET_INPUT, calibrated_paper_model  # benchmarks/model.py (run from benchmarks/)

    model, img = calibrated_paper_model(size, **MMDET_INPUT)
    model.fuse()
    model.mask_threshold = 0.5
    return model.eval(), img


def stage_calls(model, img) -> list[tuple[str, Callable[[dict], None]]]:
    """One callable per stage; each reads its inputs from and writes its outputs to a shared dict."""
    from darkseg.models.mmdet_compat import bbox_postprocess, scale_factor_of
    from darkseg.models.paste import paste_masks_grid_sample

    rh = model.roi_heads
    h0, w0 = int(img[0].shape[-2]), int(img[0].shape[-1])

    def transform(s):
        s["il"], _ = model.transform(img)
        s["sf"] = scale_factor_of(h0, w0, *s["il"].image_sizes[0])

    def trunk(s):
        s["c"] = model.backbone.body(s["il"].tensors)

    def fpn(s):
        s["p"] = model.backbone.fpn(s["c"])

    def rpn(s):
        s["props"], _ = model.rpn(s["il"], s["p"])

    def box_pool(s):
        s["bp"] = rh.box_roi_pool(s["p"], s["props"], s["il"].image_sizes)

    def box_head(s):
        s["bf"] = rh.box_head(s["bp"])

    def box_post(s):
        logits, deltas = rh.box_predictor(s["bf"])
        shape = tuple(s["il"].image_sizes[0])
        b, sc, lab = bbox_postprocess(
            s["props"][0],
            logits,
            deltas,
            shape,
            s["sf"],
            rh.score_thresh,
            rh.nms_thresh,
            rh.detections_per_img,
        )
        s["det"] = {"boxes": b, "labels": lab + 1, "mask_rois": b * s["sf"]}

    def mask_pool(s):
        s["mp"] = rh.mask_roi_pool(s["p"], [s["det"]["mask_rois"]], s["il"].image_sizes)

    def mask_head(s):
        s["mf"] = rh.mask_head(s["mp"])

    def mask_pred(s):
        lg = rh.mask_predictor(s["mf"])
        n = lg.shape[0]
        s["ml"] = lg[torch.arange(n), s["det"]["labels"]]

    def paste(s):
        d = s["det"]
        s["masks"] = paste_masks_grid_sample(s["ml"].sigmoid(), d["mask_rois"] / s["sf"], (h0, w0), 0.5)

    fns = [transform, trunk, fpn, rpn, box_pool, box_head, box_post, mask_pool, mask_head, mask_pred, paste]
    return list(zip(STAGES, fns))


def count_flops(calls) -> dict[str, int]:
    """FLOPs of each stage, counted on one real pass."""
    from torch.utils.flop_counter import FlopCounterMode

    state: dict = {}
    flops = {}
    with torch.inference_mode():
        for name, fn in calls:
            with FlopCounterMode(display=False) as counter:
                fn(state)
            flops[name] = int(counter.get_total_flops())
    return flops


def time_stages(calls, repeats: int) -> tuple[dict[str, float], float, int]:
    """Median process-CPU seconds per stage, of the whole chain, and the number of detections."""
    times: dict[str, list[float]] = {n: [] for n, _ in calls}
    total = []
    state: dict = {}
    with torch.inference_mode():
        for _, fn in calls:  # warm-up
            fn(state)
        for _ in range(repeats):
            state = {}
            t_all = _clock()
            for name, fn in calls:
                t0 = _clock()
                fn(state)
                times[name].append(_clock() - t0)
            total.append(_clock() - t_all)
    return (
        {n: statistics.median(v) for n, v in times.items()},
        statistics.median(total),
        len(state["det"]["boxes"]),
    )


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Single-process float32 GFLOP/s of an ``n x n`` matrix product (best of ``repeats``)."""
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = _clock()
        a @ b
        best = min(best, _clock() - t0)
    return 2 * n**3 / best / 1e9


def conv_peak(repeats: int = 5) -> float:
    """GFLOP/s of a 3x3 conv, 256 -> 256 channels on 16 x 28 x 28, channels-last (oneDNN; best of
    ``repeats``). On some CPUs oneDNN's direct convolution beats the BLAS matrix product."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 256, 28, 28, generator=g).contiguous(memory_format=torch.channels_last)
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).to(memory_format=torch.channels_last)
    best = float("inf")
    with torch.inference_mode():
        conv(x)
        for _ in range(repeats):
            t0 = _clock()
            conv(x)
            best = min(best, _clock() - t0)
    return 2 * 16 * 28 * 28 * 256 * 256 * 9 / best / 1e9


def stages(size: tuple[int, int], repeats: int) -> tuple[list[dict], dict]:
    """Rows ``{stage, ms, share, gflop, gflops, peak_share}`` and a summary ``{total_ms, peak, ...}``."""
    model, img = build_paper_model(size)
    calls = stage_calls(model, img)
    flops = count_flops(calls)
    mm, cv = matmul_peak(), conv_peak()
    med, total, dets = time_stages(calls, repeats)
    mm, cv = max(mm, matmul_peak()), max(cv, conv_peak())  # before and after the stages, the better
    peak = max(mm, cv)
    rows = []
    for name in STAGES:
        t, f = med[name], flops[name]
        rate = f / t / 1e9 if t > 0 and f else 0.0
        rows.append(
            {
                "stage": name,
                "ms": t * 1e3,
                "share": t / total,
                "gflop": f / 1e9,
                "gflops": rate,
                "peak_share": rate / peak if f else None,
            }
        )
    all_flops = sum(flops.values())
    summary = {
        "total_ms": total * 1e3,
        "peak_gflops": peak,
        "matmul_gflops": mm,
        "conv_gflops": cv,
        "detections": dets,
        "gflop": all_flops / 1e9,
        "floor_ms": all_flops / (peak * 1e9) * 1e3,
    }
    return rows, summary


def print_stages(rows: list[dict], summary: dict, repeats: int) -> None:
    print(
        f'Per stage, R50 "Ours" in mmdet numerics (fused), {summary["detections"]} detections, median of '
        f"{repeats}; peak = {summary['peak_gflops']:.1f} GFLOP/s, the better of a 2048x2048 float32 matmul "
        f"({summary['matmul_gflops']:.1f}) and a 3x3 256-channel conv ({summary['conv_gflops']:.1f}), same "
        "process and thread\n"
    )
    print("| stage | ms | share of time | GFLOP (counted) | GFLOP/s | of peak |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        rate = f"{r['gflops']:.1f}" if r["gflop"] else "—"
        ps = f"{100 * r['peak_share']:.0f} %" if r["peak_share"] is not None else "—"
        print(
            f"| {r['stage']} | {r['ms']:.1f} | {100 * r['share']:.1f} % | {r['gflop']:.2f} | {rate} | {ps} |"
        )
    print(
        f"| **total** | **{summary['total_ms']:.0f}** | 100 % | {summary['gflop']:.1f} | "
        f"{summary['gflop'] / summary['total_ms'] * 1e3:.1f} | "
        f"{100 * summary['gflop'] / summary['total_ms'] * 1e3 / summary['peak_gflops']:.0f} % |"
    )
    print(
        f"\nAll counted FLOPs at the peak rate would take {summary['floor_ms']:.0f} ms "
        f"({summary['floor_ms'] / summary['total_ms']:.2f} of the measured total).\n"
    )


def _median_ms(fn: Callable[[], object], repeats: int) -> float:
    """Median process CPU time of ``repeats`` calls of ``fn`` after one warm-up call, in ms."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = _clock()
        fn()
        times.append(_clock() - t0)
    return statistics.median(times) * 1e3


def compiled_backbone(size: tuple[int, int], repeats: int) -> list[dict]:
    """``torch.compile`` (inductor, CPU) of the paper model's trunk + FPN against eager, same process.

    Rows ``{variant, compile_s, ms, rel_err}``: the first call's wall time (compilation into a fresh
    inductor cache; the second variant may reuse kernels of the first), the median
    process CPU time of ``repeats`` calls, and the largest error of any FPN level against the same
    backbone in float64, relative to that level's largest magnitude (eager float32 is the yardstick).
    """
    import copy
    import os
    import tempfile

    import torch._inductor.config as inductor_config

    # a fresh inductor cache, so that the first call's time is a cold compilation, as in a new install
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="darkseg-inductor-")

    model, img = build_paper_model(size)
    bb = model.backbone
    h, w = (-(-v // 32) * 32 for v in img[0].shape[-2:])
    x = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)) * 255 - 100

    def median_ms(fn) -> float:
        return _median_ms(fn, repeats)

    rows = []
    with torch.no_grad():
        ref = copy.deepcopy(bb).double()(x.double())

        def rel_err(out) -> float:
            return max(float((out[k].double() - ref[k]).abs().max() / ref[k].abs().max()) for k in ref)

        rows.append(
            {"variant": "eager", "compile_s": 0.0, "ms": median_ms(lambda: bb(x)), "rel_err": rel_err(bb(x))}
        )
        for freezing in (False, True):
            inductor_config.freezing = freezing
            torch._dynamo.reset()
            compiled = torch.compile(bb)
            t0 = time.perf_counter()
            out = compiled(x)
            compile_s = time.perf_counter() - t0
            rows.append(
                {
                    "variant": f"torch.compile, freezing={freezing}",
                    "compile_s": compile_s,
                    "ms": median_ms(lambda c=compiled: c(x)),
                    "rel_err": rel_err(out),
                }
            )
    return rows


def fast_path_ops(repeats: int) -> list[dict]:
    """The operations behind this pass's fast paths, each against the call it replaces, same process.

    Rows ``{op, shape, ms_ref, ms_new}`` (median process CPU time of ``repeats`` calls): the stem's max
    pooling (inference), the FPN's top-down upsample + add (inference, the three levels), and AWD's logit
    convolution forward + backward at the paper model's trainable AWD stages (batch 2 folded into the
    groups, as in training).
    """
    import torch.nn.functional as F

    from darkseg.models.awd import window_logits
    from darkseg.models.fpn import upsample_add
    from darkseg.models.resnet import stem_pool

    g = torch.Generator().manual_seed(0)

    def median_ms(fn) -> float:
        return _median_ms(fn, repeats)

    rows = []
    with torch.no_grad():
        x = torch.randn(1, 64, 208, 304, generator=g)
        pool = torch.nn.MaxPool2d(3, 2, 1)
        rows.append(
            {
                "op": "stem max pool 3x3/2 (no grad)",
                "shape": "1x64x208x304",
                "ms_ref": median_ms(lambda: pool(x)),
                "ms_new": median_ms(lambda: stem_pool(pool, x)),
            }
        )
        pairs = [
            (torch.randn(1, 256, 2 * h, 2 * w, generator=g), torch.randn(1, 256, h, w, generator=g))
            for h, w in ((52, 76), (26, 38), (13, 19))
        ]

        def interp_all():
            for lat, top in pairs:
                lat + F.interpolate(top, size=lat.shape[-2:], mode="nearest")

        def fused_all():
            for lat, top in pairs:
                upsample_add(lat, top)

        rows.append(
            {
                "op": "FPN top-down upsample + add, 3 levels (no grad)",
                "shape": "1x256x104x152 ... 26x38",
                "ms_ref": median_ms(interp_all),
                "ms_new": median_ms(fused_all),
            }
        )
    for groups, h, w in ((1024, 52, 76), (2048, 26, 38)):
        x = torch.randn(1, groups, h, w, generator=g, requires_grad=True)
        wt = torch.randn(groups * 9, 1, 3, 3, generator=g, requires_grad=True)
        b = torch.randn(groups * 9, generator=g, requires_grad=True)

        def fwd_bwd(fn, x=x, wt=wt, b=b, groups=groups):
            z = fn(x, wt, b, (2, 2), (1, 1), 1, groups)
            z.backward(torch.ones_like(z))

        rows.append(
            {
                "op": "AWD logit conv, forward + backward",
                "shape": f"1x{groups}x{h}x{w}",
                "ms_ref": median_ms(lambda f=fwd_bwd: f(F.conv2d)),
                "ms_new": median_ms(lambda f=fwd_bwd: f(window_logits)),
            }
        )
    return rows
