"""DistributedDataParallel through a real process group at world size 1 (NCCL on CUDA, gloo on the CPU).

Run under ``torchrun`` (it sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``)::

    torchrun --standalone --nproc_per_node 1 benchmarks/ddp_nccl.py                  # NCCL, CUDA
    torchrun --standalone --nproc_per_node 1 benchmarks/ddp_nccl.py --backend gloo --device cpu --size 96 64

Why a separate script: ``darkseg train`` under ``torchrun --nproc_per_node 1`` runs as one plain process
(``darkseg.engine.distributed.init_distributed`` starts a process group only when ``WORLD_SIZE > 1``), so
it never touches NCCL there; a machine with one GPU cannot run two NCCL ranks either (NCCL refuses two
ranks on one device). This script starts the group itself, as ``init_distributed`` does for several
processes (``device_id`` given for NCCL), and then runs what a DDP training iteration runs: an
``all_reduce``, and ``--iters`` DSL training steps (AMP on CUDA) of the paper's model (caffe R50 + AWD +
SCB, ``benchmarks/model.py``'s ``_train_setup``, frozen BatchNorm statistics calibrated on the input,
gradients clipped to L2 norm 10) wrapped in ``DistributedDataParallel`` around the
training engine's ``_Step`` module, so the gradient all-reduce goes through the backend.

Checks (exit status 1 and a line naming the failed one): the backend the group reports, the all-reduced
value (sum of ``rank + 1`` over the ranks), finite losses, every trainable parameter finite and most of
them moved by the steps. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model import _train_setup, calibrate_batchnorm  # noqa: E402 - sibling benchmark script
from train_amp import _to  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="nccl", choices=["nccl", "gloo"])
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--size", type=int, nargs=2, default=(600, 400), metavar=("W", "H"))
    ap.add_argument("--batch", type=int, default=2, help="images per process")
    ap.add_argument("--iters", type=int, default=3, help="DDP training steps")
    args = ap.parse_args(argv)
    if "WORLD_SIZE" not in os.environ:
        print("ddp_nccl.py: WORLD_SIZE is not set; launch with torchrun", file=sys.stderr)
        return 2
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if args.device == "cuda":
        if not torch.cuda.is_available():
            print("ddp_nccl.py: --device cuda but no CUDA device on this machine", file=sys.stderr)
            return 2
        dev = torch.device("cuda", local)
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
        torch.set_num_threads(1)
        torch.set_flush_denormal(True)
    from darkseg.engine.train import _Step

    kwargs = {"device_id": dev} if dev.type == "cuda" else {}
    t0 = time.perf_counter()
    dist.init_process_group(backend=args.backend, rank=rank, world_size=world, **kwargs)
    failed: list[str] = []
    try:
        backend = str(dist.get_backend())
        if backend != args.backend:
            failed.append(f"backend {backend}, expected {args.backend}")
        v = torch.full((1,), float(rank + 1), device=dev)
        dist.all_reduce(v)
        want = world * (world + 1) / 2
        if float(v) != want:
            failed.append(f"all_reduce gave {float(v)}, expected {want}")
        init_s = time.perf_counter() - t0

        model, opt, clean, noisy, targets = _train_setup(tuple(args.size), args.batch)
        model.to(dev)
        clean, noisy, targets = _to(clean, dev), _to(noisy, dev), _to(targets, dev)
        calibrate_batchnorm(model, noisy)  # identity statistics: a random R50 diverges at once
        model.train()
        step = nn.parallel.DistributedDataParallel(
            _Step(model), device_ids=[dev.index] if dev.type == "cuda" else None
        )
        amp = dev.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        before = {k: p.detach().clone() for k, p in model.named_parameters() if p.requires_grad}
        losses_seen, times = [], []
        for _ in range(args.iters):
            t1 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=dev.type, dtype=torch.float16, enabled=amp):
                total = sum(step(clean, targets, noisy).values())
            scaler.scale(total).backward()
            scaler.unscale_(opt)
            nn.utils.clip_grad_norm_(model.parameters(), 10.0)  # as train.grad_clip of the tiny config
            scaler.step(opt)
            scaler.update()
            losses_seen.append(float(total.detach()))
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            times.append(time.perf_counter() - t1)
        if not all(torch.isfinite(torch.tensor(losses_seen))):
            failed.append(f"non-finite loss: {losses_seen}")
        params = dict(model.named_parameters())
        bad = [k for k in before if not torch.isfinite(params[k]).all()]
        moved = sum(not torch.equal(before[k], params[k].detach()) for k in before)
        if bad:
            failed.append(f"non-finite parameters: {bad[:3]}")
        if moved <= len(before) // 2:
            failed.append(f"only {moved} of {len(before)} parameter tensors changed")
    finally:
        dist.destroy_process_group()
    if rank == 0:
        w, h = args.size
        print(
            f"torch {torch.__version__}, DDP at world size {world}, DSL steps, {w}x{h}, batch {args.batch}\n"
        )
        print("| backend | device | world size | init + all_reduce (s) | steps | loss first → last |", end="")
        print(" s/step after the first | parameters moved | result |")
        print("|---|---|---:|---:|---:|---|---:|---:|---|")
        later = times[1:] or times
        print(
            f"| {backend} | {dev} | {world} | {init_s:.2f} | {len(times)} | {losses_seen[0]:.3f} → "
            f"{losses_seen[-1]:.3f} | {sum(later) / len(later):.3f} | {moved}/{len(before)} | "
            f"{'ok' if not failed else 'FAILED'} |"
        )
    for f in failed:
        print(f"ddp_nccl.py: check failed on rank {rank}: {f}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
