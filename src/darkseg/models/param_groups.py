"""Optimizer parameter groups with learning-rate multipliers (the paper: x2 for AWD and SCB).

Name-matching rule (mmcv's ``paramwise_cfg.custom_keys`` rule): for every trainable parameter, the
keys of ``lr_mult`` that *match* it are collected and the LONGEST matching key decides its multiplier
(ties: the first key in ``lr_mult`` order); a parameter no key matches gets multiplier 1. A key matches
when it is a substring of the parameter's full name (``model.named_parameters()``), with two aliases:

* ``"awd"`` also matches every parameter owned by an :class:`~darkseg.models.awd.AWD` module;
* ``"scb"`` matches the parameters of the SCB branch (``*.llpf.weight``, ``*.learnable_conv1.weight``)
  but NOT the main 3x3 kernel of an SCB conv (as the paper: ``layer2.0.conv2.weight`` keeps lr x1).

The paper uses ``{"awd": 2.0, "scb": 2.0}``. Weight decay is the same for every group.
"""

from __future__ import annotations

from torch import nn

from .awd import AWD
from .convnext import ConvNeXtBlock
from .scb import SCBConv

__all__ = ["param_groups", "param_lr_mults"]


def _tags(model: nn.Module) -> dict[int, set[str]]:
    tags: dict[int, set[str]] = {}
    for m in model.modules():
        if isinstance(m, AWD):
            for p in m.parameters():
                tags.setdefault(id(p), set()).add("awd")
        elif isinstance(m, (SCBConv, ConvNeXtBlock)) and getattr(m, "llpf", None) is not None:
            for p in list(m.llpf.parameters()) + list(m.learnable_conv1.parameters()):
                tags.setdefault(id(p), set()).add("scb")
    return tags


def param_lr_mults(model: nn.Module, lr_mult: dict[str, float] | None = None) -> dict[str, float]:
    """``{parameter name: lr multiplier}`` for every trainable parameter (see module docstring)."""
    lr_mult = {"awd": 2.0, "scb": 2.0} if lr_mult is None else dict(lr_mult)
    keys = sorted(lr_mult, key=len, reverse=True)  # stable: ties keep dict order
    tags = _tags(model)
    out: dict[str, float] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        ptags = tags.get(id(p), set())
        mult = 1.0
        for k in keys:
            if k in name or k in ptags:
                mult = float(lr_mult[k])
                break
        out[name] = mult
    return out


def param_groups(
    model: nn.Module, lr: float, weight_decay: float, lr_mult: dict[str, float] | None = None
) -> list[dict]:
    """Parameter groups for ``torch.optim.SGD`` (or any optimizer taking ``lr``/``weight_decay``).

    Returns one group per distinct multiplier: ``{"params": [...], "lr": lr * mult,
    "weight_decay": weight_decay, "lr_mult": mult, "param_names": [...]}`` (multiplier-1 group first).
    Only parameters with ``requires_grad`` are included. ``lr_mult`` defaults to ``{"awd": 2, "scb": 2}``.
    """
    mults = param_lr_mults(model, lr_mult)
    params = dict(model.named_parameters())
    groups: dict[float, dict] = {}
    for name in sorted(mults, key=lambda n: mults[n] != 1.0):
        mult = mults[name]
        g = groups.setdefault(
            mult,
            {"params": [], "lr": lr * mult, "weight_decay": weight_decay, "lr_mult": mult, "param_names": []},
        )
        g["params"].append(params[name])
        g["param_names"].append(name)
    return list(groups.values())
