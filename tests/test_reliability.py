"""Cross-job reliability: non-finite checkpoints are refused at load, errors end in one line."""

from __future__ import annotations

import pytest
import torch

from darkseg.cli import main
from darkseg.models import CheckpointError, ModelConfig, build_model, load_model, save_checkpoint


@pytest.fixture(scope="module")
def nan_ckpt(tmp_path_factory):
    """A tiny model checkpoint whose weights are all NaN (what a diverged run writes)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig.tiny(["person", "car"], min_size=64, max_size=96))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(float("nan"))
    path = tmp_path_factory.mktemp("nan") / "diverged.pth"
    save_checkpoint(path, model)
    return path, next(n for n, p in model.state_dict().items() if p.is_floating_point())


def test_nan_weights_are_refused_at_load_naming_file_and_tensor(nan_ckpt):
    path, first = nan_ckpt
    with pytest.raises(CheckpointError, match=rf"{path}: refused: non-finite weights .* '{first}'"):
        load_model(path)


def test_every_job_refuses_a_nan_checkpoint_in_one_line(nan_ckpt, tmp_path, capsys):
    """predict used to report '0 instances' with exit 0; export and evaluate also load the checkpoint."""
    from darkseg.utils.io import write_image

    path, first = nan_ckpt
    img = tmp_path / "x.png"
    write_image(img, torch.full((40, 50, 3), 30, dtype=torch.uint8).numpy())
    runs = {
        "predict": ["predict", "--checkpoint", str(path), str(img), "--out", str(tmp_path / "p"),
                    "--no-progress"],
        "export": ["export", "--checkpoint", str(path), "--out", str(tmp_path / "m.ts")],
        "evaluate": ["evaluate", "--checkpoint", str(path), "--annotations", str(tmp_path / "gt.json"),
                     "--images", str(tmp_path), "--no-progress", "--device", "cpu"],
    }  # fmt: skip
    from darkseg.utils.io import atomic_write_json

    atomic_write_json(
        tmp_path / "gt.json",
        {"images": [{"id": 1, "file_name": "x.png", "height": 40, "width": 50}], "annotations": [],
         "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car"}]},
    )  # fmt: skip
    for job, argv in runs.items():
        assert main(argv) != 0, job
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and str(path) in err and first in err, (job, err)
    assert not (tmp_path / "p" / "results.json").exists() and not (tmp_path / "m.ts").exists()


def test_torchvision_state_dict_with_nan_is_refused(tmp_path):
    from darkseg.models import load_torchvision_state_dict

    model = build_model(ModelConfig.tiny(["person"], min_size=64, max_size=96))
    sd = {k: v.clone() for k, v in model.state_dict().items()}
    key = next(k for k, v in sd.items() if v.is_floating_point())
    sd[key].view(-1)[0] = float("inf")
    torch.save(sd, tmp_path / "tv.pth")
    with pytest.raises(CheckpointError, match=f"'{key}' \\(1 of"):
        load_torchvision_state_dict(model, tmp_path / "tv.pth")


def test_os_errors_end_in_one_line_not_a_traceback(tmp_path, capsys):
    """An --out below a file (an OS error deep inside a job) prints one line with the file name. (An
    --out that is a file itself is refused before any work: tests/test_outputs.py.)"""
    model = build_model(ModelConfig.tiny(["person"], min_size=64, max_size=96))
    save_checkpoint(tmp_path / "m.pth", model)
    from darkseg.utils.io import write_image

    write_image(tmp_path / "x.png", torch.zeros((40, 50, 3), dtype=torch.uint8).numpy())
    (tmp_path / "taken").write_text("a file, not a folder")
    argv = ["predict", "--checkpoint", str(tmp_path / "m.pth"), str(tmp_path / "x.png"),
            "--out", str(tmp_path / "taken" / "sub"), "--no-progress"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and err.startswith("darkseg predict: ") and "taken" in err


def test_device_errors_are_darkseg_errors_with_one_line():
    from darkseg.errors import DarkSegError, DeviceError
    from darkseg.utils.runtime import resolve_device

    with pytest.raises(DeviceError, match="unknown device 'gpu0'"):
        resolve_device("gpu0")
    if not torch.cuda.is_available():
        with pytest.raises(
            DeviceError, match=r"no CUDA device on this machine \(device 'cuda:1'\); use --device cpu"
        ):
            resolve_device("cuda:1")
    assert issubclass(DeviceError, DarkSegError) and issubclass(DeviceError, RuntimeError)
    assert resolve_device("cpu").type == "cpu"
