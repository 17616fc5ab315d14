"""Read an MMDetection 2.x config from its Python text without executing it.

MMDetection stores the whole (merged) config of a run as Python source text in a checkpoint's
``meta["config"]``. :func:`parse_config_text` evaluates only literal assignments (numbers, strings,
lists, tuples, dicts, ``dict(...)`` calls with keyword and ``**`` arguments, names assigned earlier,
unary minus and arithmetic on numbers) with Python's ``ast`` module; anything else (imports,
function calls, attribute access, comprehensions) is skipped, never run. :func:`test_settings`
extracts what inference needs.
"""

from __future__ import annotations

import ast
import operator
from typing import Any

__all__ = ["ConfigTextError", "parse_config_text", "test_settings"]

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}


class ConfigTextError(ValueError):
    """The config text is not Python source."""


class _Unsupported(Exception):
    pass


def _eval(node: ast.AST, names: dict[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        vals = [_eval(e, names) for e in node.elts]
        return vals if isinstance(node, ast.List) else tuple(vals)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise _Unsupported("dict unpacking")
        return {_eval(k, names): _eval(v, names) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        if node.args:
            raise _Unsupported("dict() with positional arguments")
        out: dict[Any, Any] = {}
        for kw in node.keywords:
            value = _eval(kw.value, names)
            if kw.arg is not None:
                out[kw.arg] = value
            elif isinstance(value, dict):  # dict(**other)
                out.update(value)
            else:
                raise _Unsupported("** of a non-dict")
        return out
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        raise _Unsupported(f"unknown name {node.id}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v = _eval(node.operand, names)
        if not isinstance(v, (int, float)):
            raise _Unsupported("unary operator on a non-number")
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a, b = _eval(node.left, names), _eval(node.right, names)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)):
            return _BINOPS[type(node.op)](a, b)
        if isinstance(node.op, ast.Add) and type(a) is type(b) and isinstance(a, (list, tuple, str)):
            return a + b
        raise _Unsupported("arithmetic on non-numbers")
    raise _Unsupported(type(node).__name__)


def parse_config_text(text: str) -> dict[str, Any]:
    """Top-level literal assignments of a config's Python text, as plain data.

    Raises:
        ConfigTextError: the text is not valid Python.
    """
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise ConfigTextError(f"config text is not Python source (line {exc.lineno}: {exc.msg})") from None
    names: dict[str, Any] = {"True": True, "False": False, "None": None}
    out: dict[str, Any] = {}
    for stmt in tree.body:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1):
            continue
        target = stmt.targets[0]
        if not isinstance(target, ast.Name):
            continue
        try:
            value = _eval(stmt.value, names)
        except _Unsupported:
            continue
        names[target.id] = value
        out[target.id] = value
    return out


def _find_test_pipeline(cfg: dict[str, Any]) -> list[dict[str, Any]]:
    test = (cfg.get("data") or {}).get("test") if isinstance(cfg.get("data"), dict) else None
    if isinstance(test, dict) and isinstance(test.get("pipeline"), list):
        return test["pipeline"]
    pipe = cfg.get("test_pipeline")
    return pipe if isinstance(pipe, list) else []


def _flatten_pipeline(pipeline: list[Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for step in pipeline:
        if not isinstance(step, dict):
            continue
        steps.append(step)
        if isinstance(step.get("transforms"), list):
            steps.extend(_flatten_pipeline(step["transforms"]))
    return steps


def test_settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """What inference needs from a parsed MMDetection config; keys present only when found.

    ``img_scale`` ``(long, short)``; ``interpolation`` "nearest" | "bilinear"; ``mean``, ``std`` (0-255
    units, in the network's channel order), ``to_rgb``; ``style``, ``frozen_stages`` of the backbone;
    ``rpn_nms_pre``, ``rpn_max_per_img``, ``rpn_iou``, ``rcnn_score_thr``, ``rcnn_iou``,
    ``rcnn_max_per_img``, ``mask_thr``; ``train_rpn_nms_pre``, ``train_rpn_max_per_img``; training:
    ``bn_requires_grad`` (the backbone's ``norm_cfg.requires_grad``), the samplers' ``num`` and
    ``pos_fraction`` as ``rpn_sampler_num``, ``rpn_pos_fraction``, ``rcnn_sampler_num``,
    ``rcnn_pos_fraction``.
    """
    out: dict[str, Any] = {}
    for step in _flatten_pipeline(_find_test_pipeline(cfg)):
        kind = step.get("type")
        scale = step.get("img_scale")
        if kind == "MultiScaleFlipAug" and isinstance(scale, (list, tuple)) and scale:
            first = scale[0] if isinstance(scale[0], (list, tuple)) else scale
            if len(first) == 2:
                out["img_scale"] = (int(max(first)), int(min(first)))
        elif kind == "Resize":
            mode = step.get("interpolate_mode", step.get("interpolation"))
            if mode in ("nearest", "bilinear"):
                out["interpolation"] = mode
            plain = isinstance(scale, (list, tuple)) and len(scale) == 2
            if "img_scale" not in out and plain and all(isinstance(v, (int, float)) for v in scale):
                out["img_scale"] = (int(max(scale)), int(min(scale)))
        elif kind == "Normalize":
            out.update(mean=list(step.get("mean", [])), std=list(step.get("std", [])))
            out["to_rgb"] = bool(step.get("to_rgb", True))
    model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    backbone = model.get("backbone") if isinstance(model.get("backbone"), dict) else {}
    for key in ("style", "frozen_stages"):
        if key in backbone:
            out[key] = backbone[key]
    norm_cfg = backbone.get("norm_cfg")
    if isinstance(norm_cfg, dict) and "requires_grad" in norm_cfg:
        if not isinstance(norm_cfg["requires_grad"], bool):
            raise ConfigTextError(
                "model.backbone.norm_cfg.requires_grad must be True or False, got "
                f"{norm_cfg['requires_grad']!r}"
            )
        out["bn_requires_grad"] = norm_cfg["requires_grad"]
    test_cfg = model.get("test_cfg") or cfg.get("test_cfg") or {}
    rpn, rcnn = test_cfg.get("rpn") or {}, test_cfg.get("rcnn") or {}
    _copy(rpn, out, {"nms_pre": "rpn_nms_pre", "max_per_img": "rpn_max_per_img"})
    _copy(rcnn, out, {"score_thr": "rcnn_score_thr", "max_per_img": "rcnn_max_per_img"})
    _copy(rcnn, out, {"mask_thr_binary": "mask_thr"})
    if isinstance(rpn.get("nms"), dict) and "iou_threshold" in rpn["nms"]:
        out["rpn_iou"] = rpn["nms"]["iou_threshold"]
    elif "nms_thr" in rpn:
        out["rpn_iou"] = rpn["nms_thr"]
    if isinstance(rcnn.get("nms"), dict) and "iou_threshold" in rcnn["nms"]:
        out["rcnn_iou"] = rcnn["nms"]["iou_threshold"]
    train_cfg = model.get("train_cfg") or cfg.get("train_cfg") or {}
    _copy(train_cfg.get("rpn_proposal") or {}, out, {"nms_pre": "train_rpn_nms_pre"})
    _copy(train_cfg.get("rpn_proposal") or {}, out, {"max_per_img": "train_rpn_max_per_img"})
    for stage in ("rpn", "rcnn"):
        sampler = (
            (train_cfg.get(stage) or {}).get("sampler") if isinstance(train_cfg.get(stage), dict) else None
        )
        if isinstance(sampler, dict):
            _copy(sampler, out, {"num": f"{stage}_sampler_num", "pos_fraction": f"{stage}_pos_fraction"})
    return out


def _copy(src: dict[str, Any], dst: dict[str, Any], names: dict[str, str]) -> None:
    for a, b in names.items():
        if isinstance(src.get(a), (int, float)) and not isinstance(src.get(a), bool):
            dst[b] = src[a]
