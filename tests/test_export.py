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
    printed = capsys.readouterr().out
    assert out.is_file() and "max |exported - pytorch|: boxes" in printed and "check passed" in printed
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


def _export_argv(ckpt_path, out, *extra):
    return ["export", "--checkpoint", str(ckpt_path), "--format", "torchscript", "--out", str(out),
            "--example-size", "64", "96", *extra]  # fmt: skip


def test_check_compares_real_detections_on_a_scene_and_cleans_leftovers(ckpt, tmp_path, capsys):
    """--check runs on a procedural scene where the model finds objects and says how many it compared
    (it used to compare on random noise with nothing found); a killed export's temporaries of the same
    output are removed, other hidden files stay."""
    import re

    from darkseg.cli import main

    path, _ = ckpt
    out = tmp_path / "m.ts"
    leftovers = [tmp_path / ".m.ts.k3j_9x0a.tmp", tmp_path / ".m.ts.partial.tmp"]
    for p in [*leftovers, tmp_path / ".other.ts.k3j_9x0a.tmp"]:
        p.write_bytes(b"x")
    assert main(_export_argv(path, out, "--check")) == 0
    captured = capsys.readouterr()
    n = int(re.search(r"check: (\d+) detection\(s\) compared on procedural scene", captured.out).group(1))
    assert n > 0 and "tol 0.01" in captured.out and "check passed" in captured.out
    assert not any(p.exists() for p in leftovers) and (tmp_path / ".other.ts.k3j_9x0a.tmp").exists()
    assert str(leftovers[0]) in captured.err


def test_check_fails_beyond_tolerance(ckpt, tmp_path, capsys, monkeypatch):
    """An exported model whose boxes are 1 px off fails the check with exit status 1."""
    import darkseg.engine.export as ex
    from darkseg.cli import main

    real = ex.run_exported

    def shifted(p, fmt):
        run = real(p, fmt)
        return lambda image: {**run(image), "boxes": run(image)["boxes"] + 1.0}

    monkeypatch.setattr(ex, "run_exported", shifted)
    assert main(_export_argv(ckpt[0], tmp_path / "m.ts", "--check")) == 1
    captured = capsys.readouterr()
    assert "boxes 1 (tol 0.01)" in captured.out and "check FAILED" in captured.err


def test_check_without_detections_is_inconclusive(tmp_path, capsys):
    """A model that finds nothing even on the scene: no '0 difference', a plain message and exit 3."""
    from darkseg.cli import main

    torch.manual_seed(0)
    cfg = ModelConfig.tiny(["person"], min_size=64, max_size=96, box_score_thresh=0.999)
    path = tmp_path / "blind.pt"
    save_checkpoint(path, build_model(cfg).eval())
    assert main(_export_argv(path, tmp_path / "m.ts", "--check")) == 3
    captured = capsys.readouterr()
    assert "check inconclusive: the model finds no detections" in captured.err
    assert "max |exported" not in captured.out and (tmp_path / "m.ts").is_file()


def test_check_images_fit_the_model_input():
    """The default check inputs: sRGB scene + its low-light rendering (3 channels), or the packed RAW
    planes of the rendering at half resolution (4 channels)."""
    from darkseg.engine.export import check_images

    for c, shapes in ((3, [(3, 120, 160), (3, 120, 160)]), (4, [(4, 60, 80)])):
        model = build_model(ModelConfig.tiny(["person"], in_channels=c, min_size=64, max_size=96))
        inputs = check_images(model, size=(120, 160))
        assert [tuple(x.shape) for _, x in inputs] == shapes
        assert all(
            x.dtype == torch.float32 and float(x.min()) >= 0 and float(x.max()) <= 1 for _, x in inputs
        )
