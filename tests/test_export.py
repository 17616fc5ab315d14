"""Export of the fused model (darkseg.engine.export, darkseg export): outputs equal PyTorch's."""

from __future__ import annotations

import pytest
import torch

from darkseg.engine.export import (
    compare_exported,
    detection_differences,
    export_model,
    prepare_for_export,
    run_exported,
)
from darkseg.models import ModelConfig, build_model, save_checkpoint


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    torch.manual_seed(0)
    cfg = ModelConfig.tiny(
        ["person", "car"], awd=True, scb=True, min_size=96, max_size=128, box_score_thresh=0.0,
        box_detections_per_img=20,
    )  # fmt: skip
    model = build_model(cfg).eval()
    path = tmp_path_factory.mktemp("export") / "tiny.pt"
    save_checkpoint(path, model)
    return path, model


def _image(h, w, seed):
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed))


def test_torchscript_matches_pytorch_at_other_sizes(ckpt, tmp_path, capsys):
    from darkseg.cli import main

    path, model = ckpt
    out = tmp_path / "m.ts"
    argv = ["export", "--checkpoint", str(path), "--format", "torchscript", "--out", str(out), "--check"]
    assert main([*argv, "--example-size", "64", "96"]) == 0
    assert out.is_file() and "max |exported - pytorch|: boxes" in capsys.readouterr().out
    fused = build_model(model.config).eval()
    fused.load_state_dict(model.state_dict())
    fused.fuse()
    run = run_exported(out, "torchscript")
    for h, w in ((75, 130), (128, 90)):  # neither is the tracing example's size
        x = _image(h, w, h)
        with torch.no_grad():
            ref = fused([x])[0]
        got = run(x)
        assert len(ref["scores"]) > 0 and got["masks"].shape == ref["masks"].shape
        for k in ("boxes", "labels", "scores", "masks"):
            torch.testing.assert_close(got[k], ref[k], atol=1e-4, rtol=1e-4)
    # the fused model agrees with the unfused one (re-parameterisation is exact up to rounding)
    with torch.no_grad():
        x = _image(75, 130, 75)
        torch.testing.assert_close(model([x])[0]["scores"], fused([x])[0]["scores"], atol=1e-4, rtol=1e-4)


def test_onnx_matches_pytorch(ckpt, tmp_path):
    pytest.importorskip("onnxruntime")
    path, model = ckpt
    out = export_model(path, "onnx", tmp_path / "m.onnx", example_size=(96, 128))
    # (80, 110): non-integer upscale (ONNX Resize would shift rows); (60, 200): another padded grid
    for size in ((80, 110), (60, 200)):
        diffs = compare_exported(model, out, "onnx", size=size)
        assert diffs["labels"] == 0.0, (size, diffs)
        assert diffs["boxes"] < 1e-3 and diffs["scores"] < 1e-4 and diffs["masks"] < 1e-4, (size, diffs)
    # a rendered scene, run the way docs/prediction.md shows: onnxruntime's outputs equal PyTorch's and
    # there is something to compare (the tiny model keeps every detection: box_score_thresh 0)
    import numpy as np
    import onnxruntime as ort

    from darkseg.data.scenes import render_scene

    img = render_scene(np.random.default_rng(0), (150, 100)).image  # (W, H) -> uint8 (100, 150, 3)
    x = np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32) / 255.0
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    boxes, labels, scores, masks = sess.run(None, {"image": x})
    with torch.no_grad():
        ref = prepare_for_export(model)([torch.from_numpy(x)])[0]
    got = {"boxes": boxes, "labels": labels, "scores": scores, "masks": masks}
    got = {k: torch.from_numpy(v) for k, v in got.items()}
    assert len(ref["scores"]) == len(scores) == 20 and masks.shape == (20, 1, 100, 150)
    diffs = detection_differences(ref, got)
    assert diffs["labels"] == 0.0 and diffs["boxes"] < 1e-3 and diffs["scores"] < 1e-4, diffs
    assert diffs["masks"] < 1e-4, diffs


def test_cli_export_and_errors(ckpt, tmp_path, capsys):
    from darkseg.cli import main

    path, _ = ckpt
    with pytest.raises(ValueError, match="format"):
        export_model(path, "tflite", tmp_path / "x")
    torch.save({"weights": 1}, tmp_path / "foreign.pt")
    assert (
        main(["export", "--checkpoint", str(tmp_path / "foreign.pt"), "--out", str(tmp_path / "f.ts")]) == 1
    )
    assert "not a darkseg checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "f.ts").exists()
