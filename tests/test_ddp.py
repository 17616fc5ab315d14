"""DistributedDataParallel on this machine: 2 processes, gloo backend, CPU, a tiny model, 2 iterations.

Each process trains on its own shard of every global batch (DSL + synthesis); afterwards every
parameter must be identical on both ranks (gradients were all-reduced), and different from the
initial weights.
"""

from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp

OVERRIDES = [
    "model.max_size=96",
    "model.min_size=64",
    "model.fpn_channels=16",
    "model.box_head_dim=32",
    "model.mask_head_channels=16",
    "model.rpn_pre_nms_top_n_train=100",
    "model.rpn_post_nms_top_n_train=50",
    "model.rpn_batch_size_per_image=32",
    "model.box_batch_size_per_image=16",
    "train.num_workers=0",
    "train.batch_size=1",
    "train.max_iters=2",
    "train.warmup_iters=0",
    "train.lr=0.02",
    "train.eval_at_end=false",
    "train.checkpoint_every_epochs=0",
    "data.val=null",
    "train.device=cpu",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, overrides: list[str], out_dir: str) -> None:
    import os

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
    )
    torch.set_num_threads(1)
    from darkseg.config import load_config
    from darkseg.engine.distributed import cleanup_distributed
    from darkseg.engine.train import Trainer

    cfg = load_config("tiny_coco_cpu", overrides)
    trainer = Trainer(cfg, out_dir, progress=False)
    init = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    summary = trainer.run()
    final = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    torch.save({"init": init, "final": final, "summary": summary}, f"{out_dir}/rank{rank}.pt")
    cleanup_distributed()


def _scene_overrides(tmp_path) -> list[str]:
    """OVERRIDES plus a 4-scene training set written under ``tmp_path``."""
    from darkseg.data.scenes import SCENE_CLASSES, generate_scenes

    image_dir, ann_file = generate_scenes(tmp_path / "scenes", 4, size=(96, 64), seed=3, progress=False)
    names = "[" + ", ".join(SCENE_CLASSES) + "]"
    return OVERRIDES + [
        f"data.train.image_dir={image_dir}",
        f"data.train.ann_file={ann_file}",
        f"model.class_names={names}",
    ]


@pytest.mark.slow
def test_two_process_gloo_training_keeps_parameters_identical(tmp_path):
    overrides = _scene_overrides(tmp_path)
    out = tmp_path / "run"
    out.mkdir()
    mp.spawn(_worker, args=(2, _free_port(), overrides, str(out)), nprocs=2, join=True)

    r0 = torch.load(out / "rank0.pt", weights_only=True)
    r1 = torch.load(out / "rank1.pt", weights_only=True)
    assert r0["summary"]["world_size"] == 2 and r0["summary"]["iterations"] == 2
    assert r0["init"].keys() == r1["init"].keys() == r0["final"].keys()
    for k in r0["init"]:
        assert torch.equal(r0["init"][k], r1["init"][k]), f"initial {k} differs across ranks"
        assert torch.equal(r0["final"][k], r1["final"][k]), f"{k} differs across ranks after training"
    moved = [k for k in r0["init"] if not torch.equal(r0["init"][k], r0["final"][k])]
    assert len(moved) > len(r0["init"]) // 2
    # the two ranks saw different images in every iteration (sharded global batches)
    from darkseg.engine.distributed import ShardedBatchSampler

    a = iter(ShardedBatchSampler(4, 1, world_size=2, rank=0, seed=0))
    b = iter(ShardedBatchSampler(4, 1, world_size=2, rank=1, seed=0))
    for _ in range(2):
        assert next(a) != next(b)
    # rank 0 wrote the checkpoint and the per-iteration log with all-reduced losses
    assert (out / "last.pth").is_file()
    assert len((out / "log.jsonl").read_text().splitlines()) == 2


@pytest.mark.slow
def test_torchrun_launches_the_train_cli(tmp_path):
    """`torchrun --nproc_per_node 2 -m darkseg train ...`: the launcher's environment is picked up, both
    ranks finish, rank 0 alone writes the checkpoint and log, the summary reports 2 processes."""
    import json
    import os
    import subprocess
    import sys

    overrides = _scene_overrides(tmp_path)
    out = tmp_path / "run"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd = torchrun + ["-m", "darkseg", "train", "tiny_coco_cpu", "--out", str(out), "--no-progress"]
    for o in overrides:
        cmd += ["--set", o]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert (out / "last.pth").is_file()
    assert len((out / "log.jsonl").read_text().splitlines()) == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["iterations"] == 2
