"""End-to-end training on real photos (../shared/data/tinycoco-seg): DSL + low-light synthesis on CPU,
checkpoint, resume (exact, also after a crash), evaluation with pycocotools.

Scale: ResNet-18 with AWD + SCB, 32/64-wide heads, images resized into a 128 x 96 box, 2 images.
"""

from __future__ import annotations

import json

import pytest
import torch

from conftest import shared_subdir

TINY = [
    "model.max_size=128",
    "model.min_size=96",
    "model.fpn_channels=32",
    "model.box_head_dim=64",
    "model.mask_head_channels=32",
    "model.rpn_pre_nms_top_n_train=200",
    "model.rpn_post_nms_top_n_train=100",
    "model.rpn_pre_nms_top_n_test=100",
    "model.rpn_post_nms_top_n_test=50",
    "model.rpn_batch_size_per_image=64",
    "model.box_batch_size_per_image=32",
    "model.box_detections_per_img=20",
    "train.num_workers=0",
    "train.batch_size=2",
    "train.keep_epoch_checkpoints=false",
    "train.checkpoint_every_epochs=0",
]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _cfg(extra: list[str]):
    from darkseg.config import load_config

    root = shared_subdir("tinycoco-seg")
    train_dir, train_ann = root / "images/train2017", root / "annotations/instances_train2017.json"
    data = [
        f"data.train.image_dir={train_dir}",
        f"data.train.ann_file={train_ann}",
        "data.train.max_images=2",
        # evaluate on the same two photos (an overfit check), rendered as synthetic low light
        f"data.val.image_dir={train_dir}",
        f"data.val.ann_file={train_ann}",
        "data.val.max_images=2",
    ]
    return load_config("tiny_coco_cpu", TINY + data + extra)


def _records(out_dir):
    from darkseg.engine.logger import read_jsonl

    return [r for r in read_jsonl(out_dir / "log.jsonl") if "eval" not in r]


def test_train_overfit_checkpoint_resume_evaluate(tmp_path):
    from darkseg.engine.train import train
    from darkseg.models import load_model

    out = tmp_path / "run"
    cfg = _cfg(
        [
            "train.max_iters=10",
            "train.warmup_iters=2",
            "train.lr=0.02",
            "train.lr_steps=[100]",
            "train.checkpoint_every=4",
            "train.checkpoint_every_epochs=5",
            "train.keep_epoch_checkpoints=true",
            "data.flip=0.0",
        ]
    )
    assert cfg.train.dsl and cfg.synth is not None and cfg.model.awd and cfg.model.scb
    s = train(cfg, out, progress=False)

    recs = _records(out)
    assert [r["iter"] for r in recs] == list(range(1, 11))
    for r in recs:  # DSL step: clean_ and noisy task losses + loss_dsl, all finite
        keys = [k for k in r if k.startswith(("loss_", "clean_loss_"))]
        assert "loss_dsl" in keys and "clean_loss_mask" in keys and "loss_mask" in keys and len(keys) == 11
        assert all(torch.isfinite(torch.tensor(r[k])) for k in keys + ["loss"])
        assert 0 <= r["loss_dsl"] <= 0.004 + 1e-6  # bound: 4 levels x weight 0.01 x clamp 0.1
    first, last = [r["loss"] for r in recs[:4]], [r["loss"] for r in recs[-4:]]
    assert sum(last) / 4 < 0.9 * sum(first) / 4, (first, last)
    assert s["iterations"] == 10 and s["loss_last"] < s["loss_first"]
    assert recs[0]["lr"] == pytest.approx(0.02 * 0.001) and recs[-1]["lr"] == pytest.approx(0.02)

    # files: checkpoints (iterations 4 and 8, epochs 5 and 10, final), logs, config, summary, results
    ckpt = torch.load(out / "last.pth", map_location="cpu", weights_only=True)
    assert ckpt["iteration"] == 10 and ckpt["epoch_batch"] == 0 and ckpt["iters_per_epoch"] == 1
    assert ckpt["config"]["train"]["max_iters"] == 10 and ckpt["optimizer"]["state"]
    names = sorted(p.name for p in out.glob("*.pth"))
    assert names == ["epoch_10.pth", "epoch_5.pth", "final.pth", "last.pth"]
    assert torch.load(out / "epoch_5.pth", map_location="cpu", weights_only=True)["iteration"] == 5
    assert (out / "log.csv").read_text().splitlines()[0].startswith("iter,epoch,lr,loss")
    assert len((out / "log.csv").read_text().splitlines()) == 11
    assert json.loads((out / "summary.json").read_text())["iterations"] == 10

    # evaluation ran through pycocotools on synthetic dark renderings: 12 metrics per IoU type
    assert set(s["eval"]) == {"bbox", "segm"} and all(len(v) == 12 for v in s["eval"].values())
    assert all(-1.0 <= x <= 1.0 for v in s["eval"].values() for x in v.values())
    results = json.loads((out / "results_final.json").read_text())
    assert isinstance(results, list)

    # the final checkpoint is a darkseg model checkpoint with the trained weights
    model, _ = load_model(out / "final.pth")
    last_model, _ = load_model(out / "last.pth")
    for (k, a), b in zip(model.state_dict().items(), last_model.state_dict().values()):
        assert torch.equal(a, b), k

    # resume with a longer schedule: continues at iteration 11, no duplicated log records
    cfg2 = _cfg(
        [
            "train.max_iters=12",
            "train.warmup_iters=2",
            "train.lr=0.02",
            "train.lr_steps=[100]",
            "train.checkpoint_every=4",
            "data.flip=0.0",
            "train.eval_at_end=false",
        ]
    )
    s2 = train(cfg2, out, resume=True, progress=False)
    assert s2["resumed_from"] == 10 and s2["iterations"] == 12 and s2["iterations_this_run"] == 2
    assert [r["iter"] for r in _records(out)] == list(range(1, 13))


def _params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_resume_after_crash_is_bit_identical(tmp_path, monkeypatch):
    """4 iterations straight == 2 iterations, checkpoint, crash during iteration 4, resume, 2 more."""
    import darkseg.engine.train as tr

    extra = [
        "train.max_iters=4",
        "train.warmup_iters=3",
        "train.lr=0.02",
        "train.lr_steps=[3]",
        "train.lr_step_unit=iter",
        "train.checkpoint_every=2",
        "train.eval_at_end=false",
        "data.train.max_images=3",
        "train.grad_clip=5.0",
    ]  # 3 images / batch 2: epochs of 2 batches
    straight = tr.Trainer(_cfg(extra), tmp_path / "straight", progress=False)
    straight.run()
    want = _params(straight.model)

    class Crash(RuntimeError):
        pass

    real_set_lr = tr.set_lr

    def crashing_set_lr(opt, schedule, iteration):
        if iteration == 3:  # iterations 1-3 done, checkpoint at 2: iteration 3's work is lost
            raise Crash("simulated kill")
        return real_set_lr(opt, schedule, iteration)

    monkeypatch.setattr(tr, "set_lr", crashing_set_lr)
    with pytest.raises(Crash):
        tr.Trainer(_cfg(extra), tmp_path / "killed", progress=False).run()
    assert [r["iter"] for r in _records(tmp_path / "killed")] == [1, 2, 3]
    monkeypatch.setattr(tr, "set_lr", real_set_lr)

    resumed = tr.Trainer(_cfg(extra), tmp_path / "killed", resume=True, progress=False)
    assert resumed.start_iter == 2
    resumed.run()
    got = _params(resumed.model)
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), f"{k} differs after resume"
    a, b = _records(tmp_path / "straight"), _records(tmp_path / "killed")
    assert [r["iter"] for r in b] == [1, 2, 3, 4]
    assert [r["loss"] for r in a] == [r["loss"] for r in b]
    assert [r["lr"] for r in a] == [r["lr"] for r in b]
    # and the run did change the weights
    init = tr.Trainer(_cfg(extra), tmp_path / "fresh", progress=False)
    changed = [k for k, v in init.model.state_dict().items() if not torch.equal(v, want[k])]
    assert len(changed) > 10


def test_resume_refuses_incompatible_or_missing_checkpoint(tmp_path):
    from darkseg.engine.train import Trainer, TrainingError

    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        Trainer(_cfg(["train.max_iters=1"]), tmp_path / "none", resume=True, progress=False)
    out = tmp_path / "run"
    Trainer(_cfg(["train.max_iters=1", "train.eval_at_end=false"]), out, progress=False).run()
    with pytest.raises(TrainingError, match="model config differs"):
        Trainer(_cfg(["train.max_iters=2", "model.fpn_channels=16"]), out, resume=True, progress=False)


def test_init_from_checkpoint_and_cli(tmp_path, capsys):
    from darkseg.cli import main
    from darkseg.engine.train import Trainer
    from darkseg.models import load_model

    root = shared_subdir("tinycoco-seg")
    out = tmp_path / "cli"
    args = ["train", "tiny_coco_cpu", "--out", str(out), "--device", "cpu", "--no-progress"]
    for item in TINY + [
        "train.max_iters=1",
        "data.train.max_images=2",
        "data.val=null",
        f"data.train.image_dir={root / 'images/train2017'}",
        f"data.train.ann_file={root / 'annotations/instances_train2017.json'}",
    ]:
        args += ["--set", item]
    assert main(args) == 0
    assert "1 iterations" in capsys.readouterr().out
    assert (out / "final.pth").is_file() and (out / "config.yaml").is_file()
    assert main(args[:-2] + ["--set", "train.max_iters=2", "--resume"]) == 0
    assert [r["iter"] for r in _records(out)] == [1, 2]

    trained, _ = load_model(out / "final.pth")
    fresh = Trainer(
        _cfg(["train.max_iters=1", f"train.init_from={out / 'final.pth'}"]), tmp_path / "init", progress=False
    )
    for (k, a), b in zip(trained.state_dict().items(), fresh.model.state_dict().values()):
        assert torch.equal(a, b), k


def _signal_training_process(out, checkpoint_every: int, sig: int):
    """Start a real ``darkseg train`` process (200 iterations, tiny model), send it ``sig`` once two
    iterations are logged, wait for it to end; returns ``(returncode, stderr, last logged iteration)``."""
    import os
    import subprocess
    import sys
    import time

    from darkseg.engine.logger import read_jsonl

    root = shared_subdir("tinycoco-seg")
    sets = TINY + [
        "train.max_iters=200",
        f"train.checkpoint_every={checkpoint_every}",
        "data.train.max_images=2",
        "data.val=null",
        f"data.train.image_dir={root / 'images/train2017'}",
        f"data.train.ann_file={root / 'annotations/instances_train2017.json'}",
    ]
    cmd = [sys.executable, "-m", "darkseg", "train", "tiny_coco_cpu", "--device", "cpu", "--no-progress"]
    cmd += ["--out", str(out)] + [a for s in sets for a in ("--set", s)]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            if len(read_jsonl(out / "log.jsonl")) >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read()
        if not checkpoint_every:
            assert not (out / "last.pth").exists()  # no periodic checkpoint was due
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err, max(r["iter"] for r in read_jsonl(out / "log.jsonl"))


def _resume_one_more(out, done: int) -> None:
    from darkseg.engine.train import Trainer

    resumed = Trainer(
        _cfg(["train.max_iters=" + str(done + 1), "train.checkpoint_every=1", "data.val=null"]),
        out,
        resume=True,
        progress=False,
    )
    assert resumed.start_iter == done
    assert resumed.run()["iterations"] == done + 1
    assert [r["iter"] for r in _records(out)] == list(range(1, done + 2))


def test_sigkill_loses_at_most_the_work_since_the_last_checkpoint(tmp_path):
    """A real ``darkseg train`` process killed with SIGKILL: last.pth stays readable, --resume continues."""
    import signal

    out = tmp_path / "killed"
    _, _, done = _signal_training_process(out, 1, signal.SIGKILL)
    ckpt = torch.load(out / "last.pth", map_location="cpu", weights_only=True)
    assert done - 1 <= ckpt["iteration"] <= done  # checkpoint after every iteration: at most one lost
    _resume_one_more(out, ckpt["iteration"])


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_checkpoints_the_finished_iteration_and_stops(tmp_path, sig):
    """A real ``darkseg train`` process gets SIGINT (Ctrl-C) or SIGTERM (``kill``, preemption): it finishes
    the running iteration, writes last.pth at that iteration (periodic checkpoints are off), says how to
    continue, exits 130/143; ``--resume`` continues from there with nothing lost."""
    import signal

    out = tmp_path / "stopped"
    rc, err, done = _signal_training_process(out, 0, getattr(signal, sig))
    assert rc == (130 if sig == "SIGINT" else 143), err
    assert f"stopped by {sig} after iteration {done}" in err and "--resume" in err
    ckpt = torch.load(out / "last.pth", map_location="cpu", weights_only=True)
    assert ckpt["iteration"] == done < 200
    assert not (out / "final.pth").exists()
    _resume_one_more(out, done)


def test_batched_synthesis_on_the_training_device(tmp_path):
    """``synth_device: device``: sRGB batches from the loader, synthesis in the main process (seeded per
    iteration), DSL step; two runs give the same losses."""
    from darkseg.engine.train import train

    extra = ["train.max_iters=2", "train.synth_device=device", "data.val=null", "train.warmup_iters=0"]
    a = train(_cfg(extra), tmp_path / "a", progress=False)
    b = train(_cfg(extra), tmp_path / "b", progress=False)
    ra, rb = _records(tmp_path / "a"), _records(tmp_path / "b")
    assert a["iterations"] == 2 and len(ra) == 2 and "loss_dsl" in ra[0]
    assert all(torch.isfinite(torch.tensor(r["loss"])) for r in ra)
    assert [r["loss"] for r in ra] == [r["loss"] for r in rb]
    assert b["loss_last"] == a["loss_last"]


def test_gradient_norm_every_iteration_and_dsl_share(tmp_path):
    """Without clipping the log still has the global gradient norm of every iteration; the DSL term's own
    gradient norm (``train.log_grad_parts``) is logged every ``log_every`` iterations, and measuring it
    leaves training unchanged (same losses as a run without it)."""
    from darkseg.engine.train import train

    extra = ["train.max_iters=2", "data.val=null", "train.grad_clip=null", "train.log_every=2"]
    train(_cfg(extra + ["train.log_grad_parts=[loss_dsl]"]), tmp_path / "a", progress=False)
    train(_cfg(extra), tmp_path / "b", progress=False)
    ra, rb = _records(tmp_path / "a"), _records(tmp_path / "b")
    assert all(r["grad_norm"] > 0 and torch.isfinite(torch.tensor(r["grad_norm"])) for r in ra + rb)
    assert "grad_norm_loss_dsl" not in ra[0] and 0 < ra[1]["grad_norm_loss_dsl"] < float("inf")
    assert [r["loss"] for r in ra] == [r["loss"] for r in rb]
    assert [r["grad_norm"] for r in ra] == [r["grad_norm"] for r in rb]


# ------------------------------------------------------------------ run folders, leftovers, bad images
def _cli_args(out, extra: list[str], data: list[str] | None = None) -> list[str]:
    """``darkseg train`` arguments for a 1-image-pair CPU run of the tiny config into ``out``."""
    root = shared_subdir("tinycoco-seg")
    data = data or [
        f"data.train.image_dir={root / 'images/train2017'}",
        f"data.train.ann_file={root / 'annotations/instances_train2017.json'}",
    ]
    sets = TINY + ["train.max_iters=1", "data.train.max_images=2", "data.val=null", *data, *extra]
    return ["train", "tiny_coco_cpu", "--out", str(out), "--device", "cpu", "--no-progress"] + [
        a for s in sets for a in ("--set", s)
    ]


def test_rerun_into_a_run_folder_needs_resume_or_overwrite(tmp_path, capsys):
    """A second run into a folder holding a run is refused (one line naming the folder and both flags);
    --overwrite removes the previous run's checkpoints and logs, and nothing else."""
    from darkseg.cli import main

    out = tmp_path / "run"
    assert main(_cli_args(out, [])) == 0
    (out / "notes.txt").write_text("mine")
    before = (out / "log.jsonl").read_text()
    capsys.readouterr()
    assert main(_cli_args(out, ["train.max_iters=2"])) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(out) in err and "--resume" in err and "--overwrite" in err
    assert (out / "log.jsonl").read_text() == before  # nothing was touched
    # --overwrite: a clean log of the new run only; the user's file stays
    assert main(_cli_args(out, ["train.max_iters=2"]) + ["--overwrite"]) == 0
    assert [r["iter"] for r in _records(out)] == [1, 2]
    assert len((out / "log.csv").read_text().splitlines()) == 3
    assert (out / "notes.txt").read_text() == "mine"
    with pytest.raises(SystemExit):  # argparse: not both
        main(_cli_args(out, []) + ["--overwrite", "--resume"])
    # the Python API refuses the same way
    from darkseg.engine.train import train
    from darkseg.errors import RunFolderError

    with pytest.raises(RunFolderError, match="--overwrite"):
        train(_cfg(["train.max_iters=1"]), out, progress=False)


def test_killed_checkpoint_write_leaves_a_temporary_that_the_next_start_removes(tmp_path, capsys):
    """A real process killed (SIGKILL) inside darkseg's atomic checkpoint writer leaves a hidden
    ``.last.pth.XXXXXXXX.tmp``; the next ``train`` start (here --resume) removes it and says so, and
    leaves unrelated hidden files alone."""
    import os
    import subprocess
    import sys

    from darkseg.cli import main

    out = tmp_path / "run"
    assert main(_cli_args(out, ["train.checkpoint_every=1"])) == 0
    code = (
        "import os, signal, sys\n"
        "from darkseg.utils.io import atomic_open\n"
        "with atomic_open(sys.argv[1], 'wb') as fh:\n"
        "    fh.write(b'x' * 100000); fh.flush()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code, str(out / "last.pth")], env=env, timeout=60)
    assert proc.returncode == -9
    leftovers = list(out.glob(".last.pth.*.tmp"))
    assert len(leftovers) == 1
    (out / ".keep.tmp").write_text("not darkseg's")
    capsys.readouterr()
    assert main(_cli_args(out, ["train.max_iters=2"]) + ["--resume"]) == 0
    assert not leftovers[0].exists() and (out / ".keep.tmp").is_file()
    assert f"removed {leftovers[0]}" in capsys.readouterr().out


def _with_corrupt_image(tmp_path):
    """A copy (symlinks) of the tiny training set whose first training image is replaced by garbage."""
    import shutil

    from darkseg.data.build import build_train_dataset

    root = shared_subdir("tinycoco-seg")
    images = tmp_path / "images"
    images.mkdir()
    for p in (root / "images/train2017").iterdir():
        (images / p.name).symlink_to(p)
    ann = tmp_path / "ann.json"
    shutil.copy(root / "annotations/instances_train2017.json", ann)
    data = [f"data.train.image_dir={images}", f"data.train.ann_file={ann}"]
    cfg = _cfg(data + ["data.train.max_images=2"])
    ds = build_train_dataset(cfg.data, cfg.model.class_names, cfg.model.min_size, cfg.model.max_size)
    bad = ds.image_path(ds.ids[0])
    bad.unlink()
    bad.write_bytes(b"\xff\xd8 not a jpeg")
    return data, bad


def test_unreadable_training_image_is_skipped_counted_and_capped(tmp_path, capsys):
    """A corrupt image is skipped with a warning naming it (the next sample stands in), counted in the
    summary; with train.max_unreadable_images=0 the run stops with one line naming the file."""
    from darkseg.cli import main

    data, bad = _with_corrupt_image(tmp_path)
    out = tmp_path / "run"
    assert main(_cli_args(out, ["train.max_iters=2"], data)) == 0
    captured = capsys.readouterr()
    assert f"skipped unreadable training image (1/100): {bad}" in captured.out + captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unreadable_images"] == [str(bad)] and summary["iterations"] == 2
    assert main(_cli_args(tmp_path / "strict", ["train.max_unreadable_images=0"], data)) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and "max_unreadable_images=0" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line(tmp_path, capsys):
    from darkseg.cli import main

    args = _cli_args(tmp_path / "run", [])
    args[args.index("--device") + 1] = "cuda"
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and "no CUDA device" in err and "--device cpu" in err
    assert not (tmp_path / "run").exists()


def test_non_finite_weights_are_never_checkpointed(tmp_path):
    """Weights that turn NaN (a diverging step) stop the run before last.pth is replaced: the previous
    finite checkpoint survives and the error names the tensor and the checkpoint kept."""
    from darkseg.engine.train import Trainer, TrainingError

    out = tmp_path / "run"
    tr = Trainer(
        _cfg(["train.max_iters=2", "train.checkpoint_every=1", "data.val=null"]), out, progress=False
    )
    real_step, calls = tr.optimizer.step, []

    def diverging_step(*args, **kwargs):
        result = real_step(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            with torch.no_grad():
                next(tr.model.parameters()).fill_(float("nan"))
        return result

    tr.optimizer.step = diverging_step
    with pytest.raises(TrainingError, match=r"non-finite weights .* keeps the last finite checkpoint"):
        tr.run()
    assert torch.load(out / "last.pth", map_location="cpu", weights_only=True)["iteration"] == 1
    assert not (out / "final.pth").exists()


def test_annotation_error_in_a_dataloader_worker_is_one_line(tmp_path, capsys):
    """An image whose size differs from its annotation entry, read in a DataLoader worker process,
    used to print the worker's traceback; now one line naming the file and the image id."""
    import cv2

    from darkseg.cli import main

    data, bad = _with_corrupt_image(tmp_path)
    good = next(p for p in sorted((tmp_path / "images").iterdir()) if p.is_symlink())
    bad.unlink()
    small = cv2.imread(str(good))[:40, :50]
    cv2.imwrite(str(bad), small)  # decodable, but 50x40 instead of the annotated size
    assert main(_cli_args(tmp_path / "run", ["train.num_workers=1"], data)) == 1
    err = capsys.readouterr().err.strip()
    assert (
        err.splitlines() == [err] and str(bad) in err and "image is 50x40" in err and "Traceback" not in err
    )


def test_dataset_problems_are_dataset_errors(tmp_path):
    """The datasets are built in darkseg.data from plain settings; what makes one unusable for the model
    is a DatasetError (a DarkSegError and a ValueError) naming the annotation file."""
    from types import SimpleNamespace

    from darkseg.data.build import DatasetError, build_eval_dataset
    from darkseg.data.scenes import generate_scenes
    from darkseg.errors import DarkSegError

    assert issubclass(DatasetError, DarkSegError) and issubclass(DatasetError, ValueError)
    images, ann = generate_scenes(tmp_path, 2, (48, 32), seed=0, progress=False)
    model_classes = ["disc", "box", "triangle", "ring", "star", "cross"]
    val = SimpleNamespace(type="coco", image_dir=str(images), ann_file=str(ann), class_names=["disc", "box"])
    val.max_images = None
    data = SimpleNamespace(val=val, val_view="image")
    with pytest.raises(DatasetError, match=r"annotations\.json: 2 classes but the model has 6"):
        build_eval_dataset(data, model_classes)
    val.class_names, data.val_view = None, "noisy"
    with pytest.raises(DatasetError, match="val_view='noisy' needs a synthesiser"):
        build_eval_dataset(data, model_classes)
    assert len(build_eval_dataset(SimpleNamespace(val=val, val_view="image"), model_classes)) == 2
    assert build_eval_dataset(SimpleNamespace(val=None, val_view="image"), model_classes) is None
