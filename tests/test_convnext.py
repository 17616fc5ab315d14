"""ConvNeXt AWD+SCB backbone against the original LIS model's golden fixture and key manifest."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from conftest import shared_subdir
from darkseg.models.awd import AWD
from darkseg.models.convnext import ConvNeXtBlock, ConvNeXtBody, LayerNorm2d

FIXTURE = "tiny_convnext_awd_scb_seed0.npz"
MANIFEST = "keys_mask_rcnn_convnext-t_p4_w7_fpn_AWD_SCB_DSL_SynCOCO2LIS.json"
TINY = {"depths": (1, 1, 2, 1), "dims": (16, 32, 64, 128)}
PREFIX = "backbone."


@pytest.fixture(scope="module")
def fixture():
    z = np.load(shared_subdir("lis-reference-model") / FIXTURE, allow_pickle=False)
    sd = {
        k[len("state_dict/" + PREFIX) :]: torch.from_numpy(z[k])
        for k in z.files
        if k.startswith("state_dict/" + PREFIX)
    }
    outs = {k[len("outputs/") :]: torch.from_numpy(z[k]) for k in z.files if k.startswith("outputs/")}
    meta = json.loads(str(z["meta_json"]))
    body = ConvNeXtBody(**TINY).eval()
    body.load_state_dict(sd, strict=True)
    return body, torch.from_numpy(z["input/img"]), outs, meta, sd


def _first_mismatch(got: dict[str, torch.Tensor], ref: dict[str, torch.Tensor], keys: list[str]) -> str:
    """'' when all agree (atol 1e-5 * max|ref|, rtol 0), else a message naming the first stage off."""
    for k in keys:
        g, r = got[k], ref[k]
        if g.shape != r.shape:
            return f"first stage that differs: {k}: shape {tuple(g.shape)} != {tuple(r.shape)}"
        tol = 1e-5 * r.abs().max().item()
        err = (g - r).abs().max().item()
        if not err <= tol:
            return f"first stage that differs: {k}: max|diff| {err:.3g} > atol {tol:.3g}"
    return ""


def _stage_keys() -> list[str]:
    keys = []
    for i in range(4):
        keys += [f"adad/{i}"] if i else []
        keys += [f"convnext_downsample/{i}", f"convnext_stage/{i}", f"backbone/{i}"]
    return keys


def test_fixture_end_to_end_every_stage(fixture):
    body, img, outs, _, _ = fixture
    with torch.no_grad():
        inter = body.forward_intermediates(img)
        out = body(img)
    assert list(inter) == _stage_keys()
    msg = _first_mismatch(inter, outs, _stage_keys())
    assert not msg, msg
    assert list(out) == ["0", "1", "2", "3"]
    for i in range(4):
        assert torch.equal(out[str(i)], inter[f"backbone/{i}"])


def test_fixture_each_stage_from_its_recorded_input(fixture):
    body, img, outs, _, _ = fixture
    got, keys = {}, []
    with torch.no_grad():
        for i in range(4):
            if i:
                got[f"adad/{i}"] = body.AdaD[str(i)](outs[f"convnext_stage/{i - 1}"])
            ds_in = img if i == 0 else outs[f"adad/{i}"]
            got[f"convnext_downsample/{i}"] = body.downsample_layers[i](ds_in)
            got[f"convnext_stage/{i}"] = body.stages[i](outs[f"convnext_downsample/{i}"])
            got[f"backbone/{i}"] = getattr(body, f"norm{i}")(outs[f"convnext_stage/{i}"])
            keys += [k for k in _stage_keys() if k.endswith(f"/{i}")]
    msg = _first_mismatch(got, outs, keys)
    assert not msg, msg


def test_fixture_norm_types_and_eps(fixture):
    body, _, _, meta, _ = fixture
    norms = meta["facts"]["norm_layers"]
    assert len(norms) == sum(isinstance(m, (LayerNorm2d, nn.BatchNorm2d)) for m in body.modules())
    for name, fact in norms.items():
        m = body.get_submodule(name[len(PREFIX) :])
        kind = {"LayerNorm2d": LayerNorm2d, "BatchNorm2d": nn.BatchNorm2d}[fact["type"]]
        assert isinstance(m, kind) and m.eps == fact["eps"], name


def test_fixture_parameter_count(fixture):
    body, _, _, _, sd = fixture
    buffers = {n for n, _ in body.named_buffers()}
    n_fixture = sum(v.numel() for k, v in sd.items() if k not in buffers)
    assert sum(p.numel() for p in body.parameters()) == n_fixture == 311600


def test_full_convnext_t_matches_manifest():
    manifest = json.loads((shared_subdir("lis-reference-model") / MANIFEST).read_text())
    cfg = manifest["config_facts"]["model_cfg"]["backbone"]
    assert cfg["type"] == "ConvNeXtAdaDSmoothPrior" and cfg["arch"] == "tiny"
    assert cfg["out_indices"] == [0, 1, 2, 3] and not cfg["gap_before_final_norm"]
    body = ConvNeXtBody(
        depths=(3, 3, 9, 3),
        dims=(96, 192, 384, 768),
        layer_scale_init_value=cfg["layer_scale_init_value"],
        drop_path_rate=cfg["drop_path_rate"],
        frozen_stages=cfg["frozen_stages"],
    )
    ref = {k[len(PREFIX) :]: v for k, v in manifest["state_dict"].items() if k.startswith(PREFIX)}
    sd = body.state_dict()
    assert list(sd) == list(ref)  # same keys, same order
    assert {k: list(v.shape) for k, v in sd.items()} == {k: v["shape"] for k, v in ref.items()}
    params = dict(body.named_parameters())
    assert {k for k, v in ref.items() if v["kind"] == "parameter"} == set(params)
    assert {k for k, v in ref.items() if v["requires_grad"]} == {
        k for k, p in params.items() if p.requires_grad
    }
    n_ref = sum(math.prod(v["shape"]) for v in ref.values() if v["kind"] == "parameter")
    assert sum(p.numel() for p in params.values()) == n_ref == 31_279_200
    assert body.out_channels_list == [96, 192, 384, 768]
    for name, fact in manifest["config_facts"]["norm_layers"].items():
        assert body.get_submodule(name[len(PREFIX) :]).eps == fact["eps"], name
    rates = [blk.drop_path for stage in body.stages for blk in stage]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.4) and len(rates) == 18
    assert all(b > a for a, b in zip(rates, rates[1:]))


@pytest.mark.parametrize("awd,scb", [(True, True), (False, True), (True, False), (False, False)])
def test_variants_keys_and_shapes(awd, scb):
    torch.manual_seed(0)
    body = ConvNeXtBody(**TINY, awd=awd, scb=scb).eval()
    keys = list(body.state_dict())
    assert any(k.startswith("AdaD.") for k in keys) == awd
    assert any(".llpf." in k or ".learnable_conv1." in k for k in keys) == scb
    assert sum(isinstance(m, AWD) for m in body.modules()) == (3 if awd else 0)
    with torch.no_grad():
        out = body(torch.randn(2, 3, 64, 96))
    assert [tuple(v.shape) for v in out.values()] == [
        (2, 16, 16, 24),
        (2, 32, 8, 12),
        (2, 64, 4, 6),
        (2, 128, 2, 3),
    ]
    assert all(torch.isfinite(v).all() for v in out.values())


def test_plain_variant_loads_the_fixture_subset(fixture):
    """awd=False, scb=False is the plain mmcls ConvNeXt: its keys are the fixture's minus AdaD/SCB."""
    _, _, _, _, sd = fixture
    plain = ConvNeXtBody(**TINY, awd=False, scb=False)
    sub = {
        k: v
        for k, v in sd.items()
        if not (k.startswith("AdaD.") or ".llpf." in k or ".learnable_conv1." in k)
    }
    plain.load_state_dict(sub, strict=True)


def test_drop_path_only_in_train_mode():
    torch.manual_seed(0)
    body = ConvNeXtBody(**TINY, awd=False, drop_path_rate=0.5)
    ref = ConvNeXtBody(**TINY, awd=False, drop_path_rate=0.0)
    ref.load_state_dict(body.state_dict())
    x = torch.randn(4, 3, 64, 64)
    with torch.no_grad():
        e1, e2 = body.eval()(x), ref.eval()(x)
        t_ref = ref.train()(x)
        torch.manual_seed(1)
        t1 = body.train()(x)
        torch.manual_seed(1)
        t2 = body(x)
    for k in e1:
        assert torch.equal(e1[k], e2[k]) and torch.equal(t_ref[k], e2[k])  # eval / rate 0: identity
        assert torch.equal(t1[k], t2[k])  # seeded: reproducible
    assert any(not torch.allclose(t1[k], e1[k]) for k in e1)

    blk = ConvNeXtBlock(8, drop_path=0.5).train()
    xb = torch.randn(64, 8, 5, 5)
    with torch.no_grad():
        y = blk(xb)
    dropped = (y == xb).flatten(1).all(1)
    assert 0 < int(dropped.sum()) < 64  # whole samples keep only their shortcut


def test_gradients_reach_awd_and_scb():
    torch.manual_seed(0)
    body = ConvNeXtBody(**TINY, drop_path_rate=0.2).train()
    out = body(torch.randn(2, 3, 64, 64))
    sum(v.square().mean() for v in out.values()).backward()
    names = [
        n
        for n, _ in body.named_parameters()
        if n.startswith("AdaD.") or ".llpf." in n or "learnable_conv1" in n
    ]
    assert len(names) == 3 * 5 + 2 * 5
    for n, p in body.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), n
        if n in names:
            assert p.grad.abs().sum() > 0, n


def test_frozen_stages_follow_mmcls():
    body = ConvNeXtBody(**TINY, frozen_stages=2).train()
    frozen = {n for n, p in body.named_parameters() if not p.requires_grad}
    expect = {
        n
        for n, _ in body.named_parameters()
        if n.split(".")[0] in ("downsample_layers", "stages") and n.split(".")[1] in "01"
    }
    assert frozen == expect
    assert not body.stages[1].training and not body.downsample_layers[0].training and body.stages[2].training
    assert all(p.requires_grad for p in ConvNeXtBody(**TINY, frozen_stages=0).parameters())


def test_rejects_bad_input():
    body = ConvNeXtBody(**TINY)
    with pytest.raises(ValueError, match="expects"):
        body(torch.randn(1, 4, 64, 64))
    with pytest.raises(ValueError, match="4 stages"):
        ConvNeXtBody(depths=(1, 1, 1), dims=(8, 16, 32))
