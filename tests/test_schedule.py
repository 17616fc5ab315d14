"""LR schedule (mmcv linear warm-up + step decay, docs/training.md), lr multipliers, resumable sampler."""

from __future__ import annotations

import math

import pytest
import torch

from darkseg.engine.distributed import ShardedBatchSampler, mix_seed
from darkseg.engine.schedule import StepWarmupSchedule, set_lr


def test_warmup_is_mmcv_linear():
    s = StepWarmupSchedule(
        base_lr=0.01, lr_steps=(9, 11), iters_per_epoch=1000, warmup_iters=500, warmup_ratio=0.001
    )
    assert s.lr(0) == pytest.approx(0.01 * 0.001)
    for it in (1, 100, 250, 499):
        assert s.lr(it) == pytest.approx(0.01 * (1 - (1 - it / 500) * (1 - 0.001)))
    assert s.lr(250) == pytest.approx(0.01 * 0.5005)
    assert s.lr(500) == 0.01
    assert all(s.lr(i) < s.lr(i + 1) for i in range(499))


def test_epoch_steps_after_epochs_9_and_11():
    ipe = 100
    s = StepWarmupSchedule(base_lr=0.01, lr_steps=(9, 11), iters_per_epoch=ipe, warmup_iters=500)
    assert s.lr(9 * ipe - 1) == pytest.approx(0.01)
    assert s.lr(9 * ipe) == pytest.approx(0.001)  # first iteration of the 10th epoch
    assert s.lr(11 * ipe - 1) == pytest.approx(0.001)
    assert s.lr(11 * ipe) == pytest.approx(0.0001)
    assert s.lr(12 * ipe - 1) == pytest.approx(0.0001)


def test_iter_steps_and_warmup_compose():
    s = StepWarmupSchedule(
        base_lr=1.0, lr_steps=(2, 4), unit="iter", gamma=0.5, warmup_iters=4, warmup_ratio=0.2
    )
    # warm-up multiplies the already decayed lr (mmcv get_warmup_lr(regular_lr))
    expected = [0.2, 0.4, 0.6 * 0.5, 0.8 * 0.5, 0.25, 0.25]
    assert [s.lr(i) for i in range(6)] == pytest.approx(expected)
    with pytest.raises(ValueError):
        s.lr(-1)
    with pytest.raises(ValueError):
        StepWarmupSchedule(base_lr=1.0, unit="week")


def test_set_lr_applies_group_multipliers():
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr_mult": 1.0}, {"params": [b], "lr_mult": 2.0}], lr=0.1)
    s = StepWarmupSchedule(base_lr=0.01, lr_steps=(1,), iters_per_epoch=10, warmup_iters=0)
    assert set_lr(opt, s, 0) == pytest.approx(0.01)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.02])
    set_lr(opt, s, 10)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.001, 0.002])


def test_paper_config_param_groups_get_double_lr():
    """The paper's lr multipliers, packaged "Ours" config: AWD and SCB-branch params lr 0.02, conv2 0.01."""
    from darkseg.config import load_config
    from darkseg.models import build_model, param_groups

    cfg = load_config("syncoco2lis_awd_scb_dsl")
    model = build_model(cfg.model)
    t = cfg.train
    opt = torch.optim.SGD(param_groups(model, t.lr, t.weight_decay, t.lr_mult), lr=t.lr, momentum=t.momentum)
    s = StepWarmupSchedule(
        base_lr=t.lr, lr_steps=t.lr_steps, iters_per_epoch=1000, warmup_iters=t.warmup_iters
    )
    set_lr(opt, s, t.warmup_iters)
    lr_of = {n: g["lr"] for g in opt.param_groups for n in g["param_names"]}
    llpf = [n for n in lr_of if "llpf" in n]
    one_by_one = [n for n in lr_of if "learnable_conv1" in n]
    awd = [n for n, m in model.named_modules() if type(m).__name__ == "AWD"]
    assert llpf and one_by_one and awd
    assert all(lr_of[n] == pytest.approx(0.02) for n in llpf + one_by_one)
    awd_params = [f"{m}.{p}" for m in awd for p, _ in dict(model.named_modules())[m].named_parameters()]
    assert awd_params and all(lr_of[n] == pytest.approx(0.02) for n in awd_params if n in lr_of)
    conv2 = [n for n in lr_of if n.endswith("layer2.0.conv2.weight")]
    assert conv2 and lr_of[conv2[0]] == pytest.approx(0.01)
    # stem and layer1 are frozen (frozen_stages 1): not in the optimiser
    assert not [n for n in lr_of if ".layer1." in n or n.endswith("conv1.weight") and "layer" not in n]
    assert t.momentum == 0.9 and t.weight_decay == 1e-4 and t.grad_clip is None


def test_sampler_order_is_a_function_of_seed_and_epoch():
    a = ShardedBatchSampler(10, batch_size=3, seed=5)
    b = ShardedBatchSampler(10, batch_size=3, seed=5)
    assert a.iters_per_epoch == 4
    assert a.epoch_order(2) == b.epoch_order(2)
    assert a.epoch_order(2) != a.epoch_order(3)
    assert sorted(a.epoch_order(0)[:10]) == list(range(10))  # a permutation, then wrap-around padding
    assert len(a.epoch_order(0)) == 12
    assert ShardedBatchSampler(10, 3, seed=6).epoch_order(0) != a.epoch_order(0)


def test_sampler_resume_position_gives_the_same_batches():
    full = ShardedBatchSampler(7, batch_size=2, seed=1)
    it = iter(full)
    straight = [next(it) for _ in range(11)]
    ipe = full.iters_per_epoch
    for start in (0, 3, 4, 9):
        e, b = divmod(start, ipe)
        resumed = iter(ShardedBatchSampler(7, batch_size=2, seed=1, start_epoch=e, start_batch=b))
        assert [next(resumed) for _ in range(11 - start)] == straight[start:]
    assert all(k[0] == i // ipe for i, batch in enumerate(straight) for k in batch)


def test_sampler_ranks_partition_each_global_batch():
    world, bs, n = 3, 2, 11
    samplers = [ShardedBatchSampler(n, bs, world_size=world, rank=r, seed=0) for r in range(world)]
    ipe = samplers[0].iters_per_epoch
    assert ipe == math.ceil(n / (bs * world))
    seen = []
    for b in range(ipe):
        parts = [s.batch(0, b) for s in samplers]
        assert all(len(p) == bs for p in parts)
        seen += [i for p in parts for _, i in p]
    assert set(seen) == set(range(n))
    assert sorted(seen) == sorted(samplers[0].epoch_order(0))


def test_mix_seed_distinguishes_keys():
    seeds = {mix_seed(0, e, i) for e in range(5) for i in range(50)}
    assert len(seeds) == 250
    assert mix_seed(1, 2) != mix_seed(2, 1)
    assert 0 <= mix_seed(123, 456) < 2**63
