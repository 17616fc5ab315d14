"""Read an MMDetection 2.x config from its Python text without executing it.

MMDetection stores the whole (merged) config of a run as Python source text in a checkpoint's
``meta["config"]`` (``Config.pretty_text``: literal values only). :func:`parse_config_text` evaluates
only literal assignments with Python's ``ast`` module: numbers, strings, ``True``/``False``/``None``,
lists, tuples, dicts, ``dict(...)`` calls with keyword and ``**`` arguments, names assigned earlier,
unary ``+``/``-`` on numbers and ``+ - * /`` between two numbers. No operator ever applies to a string
or a list (no repetition, no concatenation) and there is no power, so nothing can grow; anything
else (imports, function calls, attribute access, comprehensions, other operators) is skipped, never
run.

The text is untrusted (it comes with a downloaded file), so everything is bounded and every problem
is a :class:`ConfigTextError` naming the variable (and the line): at most :data:`MAX_TEXT_CHARS`
characters, :data:`MAX_AST_NODES` syntax nodes and :data:`MAX_AST_DEPTH` levels of syntax nesting;
one assigned value (names substituted) at most :data:`MAX_VALUE_NODES` items and
:data:`MAX_VALUE_DEPTH` levels; arithmetic results finite and within :data:`MAX_NUMBER`; dict keys
hashable; no division by zero.

:func:`test_settings` extracts what inference needs and checks every value's type and range (the
limits are the constants below; docs/checkpoints.md lists them); an unknown enumeration value (a
backbone ``style``, a resize interpolation) is refused, never replaced by a default.
"""

from __future__ import annotations

import ast
import math
import operator
from typing import Any

from darkseg.errors import short_repr

__all__ = [
    "ConfigTextError",
    "MAX_AST_DEPTH",
    "MAX_AST_NODES",
    "MAX_IMG_SIDE",
    "MAX_NUMBER",
    "MAX_TEXT_CHARS",
    "MAX_VALUE_DEPTH",
    "MAX_VALUE_NODES",
    "parse_config_text",
    "test_settings",
]

#: Longest config text read (characters); MMDetection's merged configs are 5-30 KB.
MAX_TEXT_CHARS = 1_000_000
#: Most syntax-tree nodes of the whole text, and deepest nesting of one statement's syntax tree.
MAX_AST_NODES = 200_000
MAX_AST_DEPTH = 64
#: Most items (numbers, strings, containers) of one assigned value with earlier names substituted,
#: and its deepest nesting of containers.
MAX_VALUE_NODES = 100_000
MAX_VALUE_DEPTH = 32
#: Largest magnitude of an arithmetic result.
MAX_NUMBER = 1e15
#: Largest side of the test resize box (``img_scale``) accepted, in pixels.
MAX_IMG_SIDE = 8192
#: Largest proposal / detection count accepted from ``test_cfg`` / ``train_cfg``.
MAX_COUNT = 100_000
#: Largest sampler ``num`` accepted from ``train_cfg`` (a value above every candidate count = take all).
MAX_SAMPLER_NUM = 10**9

_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv}
_SCALARS = (int, float, str, bool, type(None))


class ConfigTextError(ValueError):
    """The config text is not Python source, exceeds a limit, or holds a value of the wrong type or
    range; the message names the variable or key."""


class _Unsupported(Exception):
    """A construct the reader skips (never runs): the assignment holding it is left out."""


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _eval(node: ast.AST, names: dict[str, tuple[Any, int, int]]) -> tuple[Any, int, int]:
    """``(value, items, depth)`` of a literal expression; ``items``/``depth`` count the expanded value."""
    out = _eval_node(node, names)
    if out[1] > MAX_VALUE_NODES:
        raise ConfigTextError(f"the value expands to more than {MAX_VALUE_NODES} items")
    if out[2] > MAX_VALUE_DEPTH:
        raise ConfigTextError(f"the value is nested deeper than {MAX_VALUE_DEPTH} levels")
    return out


def _eval_node(node: ast.AST, names: dict[str, tuple[Any, int, int]]) -> tuple[Any, int, int]:
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, _SCALARS):
            raise _Unsupported(type(node.value).__name__)
        return node.value, 1, 0
    if isinstance(node, (ast.List, ast.Tuple)):
        parts = [_eval(e, names) for e in node.elts]
        vals = [p[0] for p in parts]
        value = vals if isinstance(node, ast.List) else tuple(vals)
        return value, 1 + sum(p[1] for p in parts), 1 + max((p[2] for p in parts), default=0)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):
            raise _Unsupported("dict unpacking")
        out: dict[Any, Any] = {}
        size, depth = 1, 1
        for k, v in zip(node.keys, node.values):
            key, ks, _ = _eval(k, names)
            value, vs, vd = _eval(v, names)
            try:
                out[key] = value
            except TypeError:
                raise ConfigTextError(f"dict key {short_repr(key)} is not hashable") from None
            size, depth = size + ks + vs, max(depth, 1 + vd)
        return out, size, depth
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict":
        if node.args:
            raise _Unsupported("dict() with positional arguments")
        out = {}
        size, depth = 1, 1
        for kw in node.keywords:
            value, vs, vd = _eval(kw.value, names)
            if kw.arg is not None:
                out[kw.arg] = value
            elif isinstance(value, dict):  # dict(**other)
                out.update(value)
            else:
                raise _Unsupported("** of a non-dict")
            size, depth = size + vs, max(depth, vd if kw.arg is None else 1 + vd)
        return out, size, depth
    if isinstance(node, ast.Name):
        if node.id in names:
            return names[node.id]
        raise _Unsupported(f"unknown name {node.id}")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        v, _, _ = _eval(node.operand, names)
        if not _number(v):
            raise _Unsupported("unary operator on a non-number")
        return (-v if isinstance(node.op, ast.USub) else v), 1, 0
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        a, _, _ = _eval(node.left, names)
        b, _, _ = _eval(node.right, names)
        if not (_number(a) and _number(b)):
            raise _Unsupported("arithmetic on non-numbers")
        try:
            result = _BINOPS[type(node.op)](a, b)
        except ZeroDivisionError:
            raise ConfigTextError("division by zero") from None
        except OverflowError:
            result = math.inf
        if not (math.isfinite(result) and abs(result) <= MAX_NUMBER):
            raise ConfigTextError(f"an arithmetic result is not a finite number within +-{MAX_NUMBER:g}")
        return result, 1, 0
    raise _Unsupported(type(node).__name__)


def _syntax_depth(tree: ast.AST) -> int:
    """Deepest nesting of ``tree`` (iterative: a deep tree cannot exhaust the call stack)."""
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_AST_DEPTH:
            return deepest
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _statement_name(stmt: ast.stmt) -> str:
    target = stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else None
    name = target.id if isinstance(target, ast.Name) else "statement"
    return f"{name} (line {stmt.lineno})"


def parse_config_text(text: str) -> dict[str, Any]:
    """Top-level literal assignments of a config's Python text, as plain data.

    Raises:
        ConfigTextError: the text is not valid Python, exceeds a limit of the module docstring, or an
            assignment divides by zero, overflows or uses an unhashable dict key (names the variable).
    """
    if len(text) > MAX_TEXT_CHARS:
        raise ConfigTextError(f"config text of {len(text)} characters; the limit is {MAX_TEXT_CHARS}")
    try:
        tree = ast.parse(text)
    except SyntaxError as exc:
        raise ConfigTextError(f"config text is not Python source (line {exc.lineno}: {exc.msg})") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ConfigTextError(
            f"config text is nested too deeply or too long to parse ({type(exc).__name__})"
        ) from None
    n_nodes = sum(1 for _ in ast.walk(tree))
    if n_nodes > MAX_AST_NODES:
        raise ConfigTextError(f"config text has {n_nodes} syntax nodes; the limit is {MAX_AST_NODES}")
    names: dict[str, tuple[Any, int, int]] = {
        "True": (True, 1, 0),
        "False": (False, 1, 0),
        "None": (None, 1, 0),
    }
    out: dict[str, Any] = {}
    for stmt in tree.body:
        if _syntax_depth(stmt) > MAX_AST_DEPTH:
            raise ConfigTextError(
                f"{_statement_name(stmt)}: nested deeper than {MAX_AST_DEPTH} levels of syntax"
            )
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1):
            continue
        target = stmt.targets[0]
        if not isinstance(target, ast.Name):
            continue
        try:
            evaluated = _eval(stmt.value, names)
        except _Unsupported:
            continue
        except ConfigTextError as exc:
            raise ConfigTextError(f"{_statement_name(stmt)}: {exc}") from None
        names[target.id] = evaluated
        out[target.id] = evaluated[0]
    return out


# ------------------------------------------------------------------------------ typed extraction
def _fail(key: str, problem: str, value: Any) -> ConfigTextError:
    return ConfigTextError(f"{key}: {problem}, got {short_repr(value)}")


def _section(parent: dict[str, Any], name: str, key: str) -> dict[str, Any]:
    """``parent[name]`` as a dict (``{}`` when absent or None); anything else is refused."""
    value = parent.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _fail(key, "expected a dict", value)
    return value


def _int_in(value: Any, lo: int, hi: int, key: str) -> int:
    """An int (or integral float) in ``lo..hi``; bools, strings, lists, NaN and inf are refused."""
    ok = _number(value) and math.isfinite(value) and float(value).is_integer() and lo <= value <= hi
    if not ok:
        raise _fail(key, f"expected an integer in {lo}..{hi}", value)
    return int(value)


def _float_in(value: Any, lo: float, hi: float, key: str, open_lo: bool = False) -> float:
    ok = _number(value) and math.isfinite(value) and (lo < value if open_lo else lo <= value) and value <= hi
    if not ok:
        bracket = "(" if open_lo else "["
        raise _fail(key, f"expected a number in {bracket}{lo:g}, {hi:g}]", value)
    return float(value)


def _choice(value: Any, allowed: tuple[str, ...], key: str) -> str:
    if not (isinstance(value, str) and value in allowed):
        raise _fail(
            key, f"expected one of {', '.join(map(repr, allowed))} (darkseg supports no other)", value
        )
    return value


def _img_scale(value: Any, key: str) -> tuple[int, int]:
    """``(long, short)`` of an ``img_scale``: a pair, or a list of pairs (the first is used)."""
    first = value
    if isinstance(value, list) and value and isinstance(value[0], (list, tuple)):
        first = value[0]
    if not (isinstance(first, (list, tuple)) and len(first) == 2):
        raise _fail(key, "expected a (long, short) pair of sizes or a list of them", value)
    sides = [_int_in(v, 1, MAX_IMG_SIDE, key) for v in first]
    return max(sides), min(sides)


def _channel_values(value: Any, lo: float, hi: float, key: str, open_lo: bool = False) -> list[float]:
    if not (isinstance(value, (list, tuple)) and len(value) == 3):
        raise _fail(key, "expected 3 numbers (one per colour channel)", value)
    return [_float_in(v, lo, hi, key, open_lo) for v in value]


def _find_test_pipeline(cfg: dict[str, Any]) -> tuple[str, list[Any]]:
    data = cfg.get("data")
    test = data.get("test") if isinstance(data, dict) else None
    if isinstance(test, dict) and isinstance(test.get("pipeline"), list):
        return "data.test.pipeline", test["pipeline"]
    pipe = cfg.get("test_pipeline")
    return "test_pipeline", pipe if isinstance(pipe, list) else []


def _flatten_pipeline(pipeline: list[Any]) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for step in pipeline:
        if not isinstance(step, dict):
            continue
        steps.append(step)
        if isinstance(step.get("transforms"), list):
            steps.extend(_flatten_pipeline(step["transforms"]))
    return steps


def _pipeline_settings(cfg: dict[str, Any], out: dict[str, Any]) -> None:
    where, pipeline = _find_test_pipeline(cfg)
    for step in _flatten_pipeline(pipeline):
        kind = step.get("type")
        at = f"{where}: {kind}"
        scale = step.get("img_scale")
        if kind == "MultiScaleFlipAug" and scale is not None:
            out["img_scale"] = _img_scale(scale, f"{at}.img_scale")
        elif kind == "Resize":
            name = "interpolate_mode" if "interpolate_mode" in step else "interpolation"
            if step.get(name) is not None:
                out["interpolation"] = _choice(step[name], ("nearest", "bilinear"), f"{at}.{name}")
            if scale is not None:
                pair = _img_scale(scale, f"{at}.img_scale")
                out.setdefault("img_scale", pair)
        elif kind == "Normalize":
            if "mean" in step:
                out["mean"] = _channel_values(step["mean"], 0.0, 255.0, f"{at}.mean")
            if "std" in step:
                out["std"] = _channel_values(step["std"], 0.0, 1000.0, f"{at}.std", open_lo=True)
            to_rgb = step.get("to_rgb", True)
            if not isinstance(to_rgb, bool):
                raise _fail(f"{at}.to_rgb", "expected True or False", to_rgb)
            out["to_rgb"] = to_rgb


def test_settings(cfg: dict[str, Any]) -> dict[str, Any]:
    """What inference needs from a parsed MMDetection config; keys present only when found.

    ``img_scale`` ``(long, short)`` (ints in 1..:data:`MAX_IMG_SIDE`); ``interpolation`` "nearest" |
    "bilinear"; ``mean`` (3 numbers in [0, 255]), ``std`` (3 numbers in (0, 1000]) in 0-255 units and the
    network's channel order, ``to_rgb`` (a bool); ``style`` "pytorch" | "caffe", ``frozen_stages``
    (-1..4) of the backbone; ``rpn_nms_pre``, ``rpn_max_per_img``, ``rcnn_max_per_img``,
    ``train_rpn_nms_pre``, ``train_rpn_max_per_img`` (ints in 1..:data:`MAX_COUNT`); ``rpn_iou``,
    ``rcnn_iou`` (in (0, 1]); ``rcnn_score_thr``, ``mask_thr`` (in [0, 1]). For training:
    ``bn_requires_grad`` (the backbone's ``norm_cfg.requires_grad``, a bool); the samplers' ``num`` and
    ``pos_fraction`` as ``rpn_sampler_num``, ``rcnn_sampler_num`` (ints in 1..:data:`MAX_SAMPLER_NUM`)
    and ``rpn_pos_fraction``, ``rcnn_pos_fraction`` (in (0, 1]).

    Raises:
        ConfigTextError: a section that is not a dict, or a value of the wrong type or range (names
            the key, e.g. ``model.backbone.frozen_stages``, and the value, cut to a short prefix).
    """
    out: dict[str, Any] = {}
    _pipeline_settings(cfg, out)
    model = _section(cfg, "model", "model")
    backbone = _section(model, "backbone", "model.backbone")
    if "style" in backbone:
        out["style"] = _choice(backbone["style"], ("pytorch", "caffe"), "model.backbone.style")
    if "frozen_stages" in backbone:
        out["frozen_stages"] = _int_in(backbone["frozen_stages"], -1, 4, "model.backbone.frozen_stages")
    norm_cfg = _section(backbone, "norm_cfg", "model.backbone.norm_cfg")
    if norm_cfg.get("requires_grad") is not None:
        if not isinstance(norm_cfg["requires_grad"], bool):
            raise _fail(
                "model.backbone.norm_cfg.requires_grad", "expected True or False", norm_cfg["requires_grad"]
            )
        out["bn_requires_grad"] = norm_cfg["requires_grad"]
    tc_key = "model.test_cfg" if model.get("test_cfg") is not None else "test_cfg"
    test_cfg = _section(model if model.get("test_cfg") is not None else cfg, "test_cfg", tc_key)
    rpn = _section(test_cfg, "rpn", f"{tc_key}.rpn")
    rcnn = _section(test_cfg, "rcnn", f"{tc_key}.rcnn")
    _count(rpn, out, {"nms_pre": "rpn_nms_pre", "max_per_img": "rpn_max_per_img"}, f"{tc_key}.rpn")
    _count(rcnn, out, {"max_per_img": "rcnn_max_per_img"}, f"{tc_key}.rcnn")
    if rcnn.get("score_thr") is not None:
        out["rcnn_score_thr"] = _float_in(rcnn["score_thr"], 0.0, 1.0, f"{tc_key}.rcnn.score_thr")
    if rcnn.get("mask_thr_binary") is not None:
        out["mask_thr"] = _float_in(rcnn["mask_thr_binary"], 0.0, 1.0, f"{tc_key}.rcnn.mask_thr_binary")
    rpn_nms = _section(rpn, "nms", f"{tc_key}.rpn.nms")
    if rpn_nms.get("iou_threshold") is not None:
        key = f"{tc_key}.rpn.nms.iou_threshold"
        out["rpn_iou"] = _float_in(rpn_nms["iou_threshold"], 0.0, 1.0, key, open_lo=True)
    elif rpn.get("nms_thr") is not None:
        out["rpn_iou"] = _float_in(rpn["nms_thr"], 0.0, 1.0, f"{tc_key}.rpn.nms_thr", open_lo=True)
    rcnn_nms = _section(rcnn, "nms", f"{tc_key}.rcnn.nms")
    if rcnn_nms.get("iou_threshold") is not None:
        key = f"{tc_key}.rcnn.nms.iou_threshold"
        out["rcnn_iou"] = _float_in(rcnn_nms["iou_threshold"], 0.0, 1.0, key, open_lo=True)
    tr_key = "model.train_cfg" if model.get("train_cfg") is not None else "train_cfg"
    train_cfg = _section(model if model.get("train_cfg") is not None else cfg, "train_cfg", tr_key)
    proposal = _section(train_cfg, "rpn_proposal", f"{tr_key}.rpn_proposal")
    names = {"nms_pre": "train_rpn_nms_pre", "max_per_img": "train_rpn_max_per_img"}
    _count(proposal, out, names, f"{tr_key}.rpn_proposal")
    for stage in ("rpn", "rcnn"):
        key = f"{tr_key}.{stage}.sampler"
        sampler = _section(_section(train_cfg, stage, f"{tr_key}.{stage}"), "sampler", key)
        if sampler.get("num") is not None:
            out[f"{stage}_sampler_num"] = _int_in(sampler["num"], 1, MAX_SAMPLER_NUM, f"{key}.num")
        if sampler.get("pos_fraction") is not None:
            out[f"{stage}_pos_fraction"] = _float_in(
                sampler["pos_fraction"], 0.0, 1.0, f"{key}.pos_fraction", open_lo=True
            )
    return out


def _count(src: dict[str, Any], dst: dict[str, Any], names: dict[str, str], where: str) -> None:
    for a, b in names.items():
        if src.get(a) is not None:
            dst[b] = _int_in(src[a], 1, MAX_COUNT, f"{where}.{a}")
