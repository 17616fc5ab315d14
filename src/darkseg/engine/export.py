"""Export a checkpoint's fused (SCB re-parameterised) model to TorchScript or ONNX.

* **TorchScript** (``torch.jit.script``): the whole torchvision Mask R-CNN incl. pre/post-processing,
  any image size. Load with ``torch.jit.load(path)``; call ``module([img])`` with ``img`` float
  ``(C, H, W)`` in [0, 1]; it returns ``(losses, detections)`` (torchvision's scripted signature),
  ``detections[0]`` the usual dict (``boxes``, ``labels``, ``scores``, ``masks``).
* **ONNX** (``torch.onnx.export``, TorchScript-based exporter, opset 17): one image ``(C, H, W)`` in,
  ``boxes (N, 4)``, ``labels (N,)``, ``scores (N,)``, ``masks (N, 1, H, W)`` out; height and width are
  dynamic axes. Run with onnxruntime.

The model's input-checking transform (Python-only checks) is replaced by :class:`ExportTransform`, which
does the same resize / normalise / pad in scriptable code.
"""

from __future__ import annotations

import copy
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor
from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
from torchvision.models.detection.transform import (
    GeneralizedRCNNTransform,
    _get_shape_onnx,
    _resize_image_and_masks,
    resize_boxes,
)

from darkseg.errors import DarkSegError

__all__ = [
    "EXPORT_FORMATS",
    "CHECK_TOLERANCE",
    "ExportCheck",
    "ExportTransform",
    "prepare_for_export",
    "export_model",
    "ExportError",
    "check_images",
    "check_export",
]

#: Largest differences ``darkseg export --check`` accepts between the exported file and the fused
#: PyTorch model: box corners in pixels, scores, mask probabilities, labels (exact). Measured
#: differences are about 3e-5 px, 3e-7 and 1e-5.
CHECK_TOLERANCE: dict[str, float] = {"boxes": 1e-2, "labels": 0.0, "scores": 1e-3, "masks": 1e-3}

EXPORT_FORMATS = ("torchscript", "onnx")


class ExportError(DarkSegError, RuntimeError):
    """Export failed; the message says which format and why."""


class ExportTransform(GeneralizedRCNNTransform):
    """Scriptable twin of :class:`darkseg.models.detector.DarkTransform` (same resize rule, no checks)."""

    def __init__(self, src: GeneralizedRCNNTransform) -> None:
        super().__init__(
            src.min_size,
            src.max_size,
            src.image_mean,
            src.image_std,
            size_divisible=src.size_divisible,
            fixed_size=src.fixed_size,
        )
        self.nearest: bool = getattr(src, "interpolation", "bilinear") == "nearest"
        self.input_scale: float = float(getattr(src, "input_scale", 1.0))
        self.bgr: bool = getattr(src, "channel_order", "rgb") == "bgr"

    def normalize(self, image: Tensor) -> Tensor:
        """``(x[order] * input_scale - mean) / std``, as :class:`DarkTransform` (RGB -> BGR if asked)."""
        if self.bgr:
            image = torch.cat([image[2:3], image[1:2], image[0:1], image[3:]], 0)
        if self.input_scale != 1.0:
            image = image * self.input_scale
        mean = torch.as_tensor(self.image_mean, dtype=image.dtype, device=image.device)
        std = torch.as_tensor(self.image_std, dtype=image.dtype, device=image.device)
        return (image - mean[:, None, None]) / std[:, None, None]

    def resize(
        self,
        image: Tensor,
        target: Optional[dict[str, Tensor]] = None,  # noqa: UP045 - TorchScript
    ) -> tuple[Tensor, Optional[dict[str, Tensor]]]:  # noqa: UP045
        h, w = image.shape[-2:]
        size = float(self.min_size[-1])
        if not self.nearest:
            image, target = _resize_image_and_masks(
                image, self.min_size[-1], self.max_size, target, self.fixed_size
            )
        else:
            if torchvision._is_tracing():
                image = _nearest_resize_traced(image, size, float(self.max_size))
            else:
                scale = min(size / float(min(h, w)), float(self.max_size) / float(max(h, w)))
                image = F.interpolate(
                    image[None], size=None, scale_factor=scale, mode="nearest", recompute_scale_factor=True
                )[0]
        if target is None:
            return image, target
        bbox = target["boxes"]
        target["boxes"] = resize_boxes(bbox, (h, w), image.shape[-2:])
        return image, target


def _nearest_resize_traced(image: Tensor, size: float, max_size: float) -> Tensor:
    """Keep-ratio nearest resize written as two gathers, for ONNX.

    Bit-identical to PyTorch's ``F.interpolate(mode="nearest", recompute_scale_factor=True)``: the output
    size is ``floor(side * scale)`` in float64 (Python floats), source index ``floor(dst * (in / out))`` in
    float32 as PyTorch's kernel computes it. ONNX ``Resize`` instead divides by the scale, which lands on the
    other side of integer boundaries for some sizes and shifts whole rows.
    """
    shape = _get_shape_onnx(image)
    shape64 = shape.to(torch.float64)
    # 1-d tensors only: the ONNX exporter computes 0-d ("scalar") arithmetic in float32
    s64 = torch.tensor([size, max_size], dtype=torch.float64)
    lo, hi = shape64.min(dim=0, keepdim=True)[0], shape64.max(dim=0, keepdim=True)[0]
    scale = torch.minimum(s64[0:1] / lo, s64[1:2] / hi)
    out_hw = torch.floor(shape64 * scale).to(torch.int64)
    ratio = shape.to(torch.float32) / out_hw.to(torch.float32)
    idx_h = torch.floor(torch.arange(out_hw[0]).to(torch.float32) * ratio[0]).to(torch.int64)
    idx_w = torch.floor(torch.arange(out_hw[1]).to(torch.float32) * ratio[1]).to(torch.int64)
    idx_h = torch.min(idx_h, shape[0] - 1)
    idx_w = torch.min(idx_w, shape[1] - 1)
    return image.index_select(1, idx_h).index_select(2, idx_w)


class _OnnxWrapper(torch.nn.Module):
    """One image in, four tensors out (ONNX-friendly signature)."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: Tensor):
        out = self.model([image])[0]
        return out["boxes"], out["labels"], out["scores"], out["masks"]


def _torchvision_numerics(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of an ``compat="mmdet"`` model computing with torchvision's numerics (same weights).

    MMDetection's test-time steps (per-level proposals, original-frame NMS, ``grid_sample`` pasting) are
    Python code that TorchScript / ONNX do not capture; the exported graph is torchvision's Mask R-CNN
    with the same weights, input normalisation and resize box. Its detections agree with MMDetection's
    up to the differences listed in docs/checkpoints.md (rounded anchors, proposal selection, RoIAlign
    sampling, mask pasting): close, not identical.
    """
    import dataclasses

    from darkseg.models import build_model

    cfg = dataclasses.replace(model.config, compat="torchvision")
    m = build_model(cfg)
    if getattr(model, "fused", False):
        m.fuse()
    m.load_state_dict(model.state_dict(), strict=True)
    warnings.warn(
        "exporting an MMDetection-compatible (compat='mmdet') model with torchvision's numerics: "
        "detections are close to, not identical with, darkseg's / MMDetection's (docs/checkpoints.md)",
        stacklevel=3,
    )
    return m


def prepare_for_export(model: torch.nn.Module) -> torch.nn.Module:
    """A fused, eval-mode deep copy of ``model`` with the scriptable :class:`ExportTransform`."""
    if getattr(getattr(model, "config", None), "compat", "torchvision") == "mmdet":
        model = _torchvision_numerics(model)
    m = copy.deepcopy(model).cpu().eval()
    if hasattr(m, "fuse") and not getattr(m, "fused", False):
        m.fuse()
    m.transform = ExportTransform(m.transform)
    _torchvision_modules(m)
    for p in m.parameters():
        p.requires_grad_(False)
    return m.eval()


def _torchvision_modules(model: torch.nn.Module) -> None:
    """Swap darkseg's CPU fast paths for the torchvision modules they subclass (same state, scriptable).

    ``PyramidRoIAlign``, ``MaskPredictor`` and ``FPN`` compute torchvision's values another way (a gather
    over channel vectors, matrix products, a broadcast addition); the exported graph uses torchvision's
    operators.
    """
    from torchvision.models.detection.mask_rcnn import MaskRCNNPredictor
    from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign

    from darkseg.models.fpn import FPN
    from darkseg.models.mask_predictor import MaskPredictor
    from darkseg.models.roi_align import PyramidRoIAlign

    swaps = {
        PyramidRoIAlign: MultiScaleRoIAlign,
        MaskPredictor: MaskRCNNPredictor,
        FPN: FeaturePyramidNetwork,
    }
    for mod in model.modules():
        if type(mod) in swaps:
            mod.__class__ = swaps[type(mod)]


def trace_backbone(
    model: torch.nn.Module, example_size: tuple[int, int] = (320, 480)
) -> torch.jit.ScriptModule:
    """``torch.jit.trace`` of ``model.backbone`` (trunk + FPN) on a padded example batch.

    The trunk's Python-side input checks (AWD, ResNet body) are not TorchScript-compilable, but the
    convolutional graph is shape-generic: sizes are recorded as ``aten::size`` ops, so the traced
    backbone runs on any input size (``tests/test_export.py`` checks a size other than the example's).
    """
    c = int(model.config.in_channels)
    h, w = (int(-(-v // 32) * 32) for v in example_size)
    x = torch.rand(1, c, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.trace(model.backbone, x, strict=False, check_trace=False)


def _example_input(model: torch.nn.Module, height: int, width: int) -> Tensor:
    c = int(model.config.in_channels)
    g = torch.Generator().manual_seed(0)
    return torch.rand(c, height, width, generator=g)


def export_model(
    checkpoint: str | os.PathLike | torch.nn.Module,
    format: str,
    out: str | os.PathLike,
    *,
    example_size: tuple[int, int] = (320, 480),
    opset: int = 17,
) -> Path:
    """Export the fused model of ``checkpoint`` to ``out``.

    Args:
        checkpoint: darkseg checkpoint path (or a built model).
        format: ``"torchscript"`` or ``"onnx"``.
        out: destination file (written atomically).
        example_size: ``(H, W)`` of the example input used for ONNX tracing.
        opset: ONNX opset.

    Returns:
        ``Path(out)``.
    """
    from darkseg.utils.io import atomic_open, atomic_save

    if format not in EXPORT_FORMATS:
        raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {format!r}")
    if isinstance(checkpoint, torch.nn.Module):
        model = checkpoint
    else:
        from darkseg.models import load_model

        model, _ = load_model(checkpoint, map_location="cpu")
    m = prepare_for_export(model)
    out = Path(out)
    if format == "torchscript":
        try:
            # a plain GeneralizedRCNN shell around the same parts: DarkMaskRCNN's extra Python-only members
            # (properties, DSL step) are not compilable
            shell = GeneralizedRCNN(trace_backbone(m, example_size), m.rpn, m.roi_heads, m.transform).eval()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script deprecation notice
                scripted = torch.jit.script(shell)
        except Exception as exc:  # noqa: BLE001 - report the scripting error verbatim
            raise ExportError(f"TorchScript export failed: {type(exc).__name__}: {exc}") from exc
        atomic_save(out, lambda fh: torch.jit.save(scripted, fh))
        return out
    example = _example_input(m, *example_size)
    wrapper = _OnnxWrapper(m).eval()
    tmp = out.with_name(f".{out.name}.partial.tmp")  # a darkseg temporary (removed if left behind)
    try:
        torch.onnx.export(
            wrapper,
            (example,),
            str(tmp),
            dynamo=False,
            opset_version=opset,
            input_names=["image"],
            output_names=["boxes", "labels", "scores", "masks"],
            dynamic_axes={
                "image": {1: "height", 2: "width"},
                "boxes": {0: "n"},
                "labels": {0: "n"},
                "scores": {0: "n"},
                "masks": {0: "n", 2: "height", 3: "width"},
            },
        )
        with atomic_open(out, "wb") as fh:
            fh.write(tmp.read_bytes())
    except Exception as exc:  # noqa: BLE001
        raise ExportError(f"ONNX export failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if tmp.exists():
            tmp.unlink()
    return out


def run_exported(path: str | os.PathLike, format: str):
    """A callable ``f(image (C, H, W) tensor) -> {"boxes", "labels", "scores", "masks"}`` (torch tensors)
    running an exported file: TorchScript via ``torch.jit.load``, ONNX via onnxruntime (CPU)."""
    path = str(path)
    if format == "torchscript":
        module = torch.jit.load(path, map_location="cpu").eval()

        def run_ts(image: Tensor) -> dict[str, Tensor]:
            with torch.no_grad():
                return dict(module([image])[1][0])

        return run_ts
    if format == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])

        def run_onnx(image: Tensor) -> dict[str, Tensor]:
            outs = sess.run(None, {"image": image.detach().cpu().numpy()})
            return {k: torch.from_numpy(v) for k, v in zip(("boxes", "labels", "scores", "masks"), outs)}

        return run_onnx
    raise ValueError(f"format must be one of {EXPORT_FORMATS}, got {format!r}")


def compare_exported(
    model: torch.nn.Module,
    path: str | os.PathLike,
    format: str,
    image: Tensor | None = None,
    size: tuple[int, int] = (240, 320),
) -> dict[str, float]:
    """Largest absolute difference per output between the exported file and the fused PyTorch model.

    ``image`` defaults to a seeded random ``(C, *size)`` input. A different number of detections gives
    ``inf`` for every output.
    """
    ref_model = prepare_for_export(model)
    if image is None:
        image = _example_input(model, *size)
    with torch.no_grad():
        ref = ref_model([image])[0]
    got = run_exported(path, format)(image)
    return detection_differences(ref, got)


def detection_differences(ref: dict[str, Tensor], got: dict[str, Tensor]) -> dict[str, float]:
    """Largest absolute difference per output between two detection dicts, order-insensitively.

    Detections with (almost) equal scores may come out in another order after float-rounding
    differences, so each detection of ``got`` is paired with the unused ``ref`` detection of the same
    label whose box and score are closest. ``labels`` is 0 when every detection found a partner, ``inf``
    for every output when the counts differ or one is left without a partner.
    """
    n = int(ref["scores"].numel())
    if int(got["scores"].numel()) != n:
        return {k: float("inf") for k in ("boxes", "labels", "scores", "masks")}
    diffs = {"boxes": 0.0, "labels": 0.0, "scores": 0.0, "masks": 0.0}
    used: set[int] = set()
    rb, rs, rl = ref["boxes"].float(), ref["scores"].float(), ref["labels"]
    for i in range(n):
        cost = (rb - got["boxes"][i].float()).abs().amax(1) + (rs - float(got["scores"][i])).abs()
        cost[rl != got["labels"][i]] = float("inf")
        for j in used:
            cost[j] = float("inf")
        j = int(cost.argmin()) if n else 0
        if not torch.isfinite(cost[j]):
            return {k: float("inf") for k in diffs}
        used.add(j)
        diffs["boxes"] = max(diffs["boxes"], float((rb[j] - got["boxes"][i].float()).abs().max()))
        diffs["scores"] = max(diffs["scores"], float(abs(rs[j] - float(got["scores"][i]))))
        if "masks" in ref and "masks" in got:
            a, b = ref["masks"][j].float(), got["masks"][i].float()
            diffs["masks"] = max(
                diffs["masks"], float((a - b).abs().max()) if a.shape == b.shape else float("inf")
            )
    return diffs


@dataclass
class ExportCheck:
    """Outcome of comparing an exported file with the fused PyTorch model on some inputs.

    Attributes:
        inputs: names of the inputs compared.
        detections: PyTorch detections compared, over all inputs (0: the check proves nothing).
        differences: largest absolute difference per output over all inputs (``inf``: the detections
            did not match up, e.g. different counts).
        tolerance: the limits the differences are held to.
    """

    inputs: list[str]
    detections: int
    differences: dict[str, float]
    tolerance: dict[str, float] = field(default_factory=lambda: dict(CHECK_TOLERANCE))

    @property
    def within_tolerance(self) -> bool:
        return all(self.differences[k] <= self.tolerance[k] for k in self.tolerance)

    @property
    def status(self) -> str:
        """``"passed"``, ``"failed"`` (beyond tolerance) or ``"inconclusive"`` (no detections compared)."""
        if not self.within_tolerance:
            return "failed"
        return "passed" if self.detections > 0 else "inconclusive"


def check_images(
    model: torch.nn.Module, paths: list[str | os.PathLike] | None = None, size: tuple[int, int] = (240, 320)
) -> list[tuple[str, Tensor]]:
    """Inputs for :func:`check_export`: ``paths`` read as ``darkseg predict`` reads them, or by default a
    procedural scene (``darkseg.data.scenes``, seed 0, ``size`` = ``(H, W)``) as sRGB and as its
    synthetic low-light rendering (packed RAW planes for a 4-channel model), so that a model trained on
    photos or on dark RAW finds objects in at least one of them."""
    c = int(model.config.in_channels)
    if paths:
        from darkseg.engine.predictor import load_input

        return [(str(p), load_input(p, c, preview=False).tensor) for p in paths]
    import numpy as np

    from darkseg.data.scenes import render_scene
    from darkseg.synth import LowLightSynthesizer, SynthConfig

    scene = render_scene(np.random.default_rng(0), (size[1], size[0])).image
    out = []
    if c == 3:
        out.append(
            ("procedural scene (sRGB)", torch.from_numpy(scene.astype(np.float32) / 255.0).permute(2, 0, 1))
        )
    synth = LowLightSynthesizer(SynthConfig(output="rgb" if c == 3 else "packed", ratio_range=(10.0, 10.0)))
    _, noisy = synth.numpy(scene, np.random.default_rng(1))
    out.append(
        (
            "procedural scene (low-light rendering)",
            torch.from_numpy(np.ascontiguousarray(noisy)).permute(2, 0, 1),
        )
    )
    return out


def check_export(
    model: torch.nn.Module, path: str | os.PathLike, format: str, inputs: list[tuple[str, Tensor]]
) -> ExportCheck:
    """Run the exported file and the fused PyTorch model on ``inputs`` and compare their detections."""
    ref_model = prepare_for_export(model)
    run = run_exported(path, format)
    worst = {k: 0.0 for k in CHECK_TOLERANCE}
    n = 0
    for _, image in inputs:
        with torch.no_grad():
            ref = ref_model([image])[0]
        diffs = detection_differences(ref, run(image))
        n += int(ref["scores"].numel())
        worst = {k: max(worst[k], diffs[k]) for k in worst}
    return ExportCheck([name for name, _ in inputs], n, worst)
