"""Untrusted text and files are read within bounds, and every value is type- and range-checked.

Each case is a hostile or broken input (MMDetection config text in a checkpoint, checkpoint tensors,
YAML / JSON, camera profiles, DNG NoiseProfile tags); each must end in one error naming the file and
the problem, quickly and in small memory: no traceback type other than darkseg's, no hang, no silent
fallback to a default.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from importlib import resources

import pytest
import torch

from conftest import shared_subdir
from darkseg.config import ConfigError, load_config, load_synth_config, read_config_dict
from darkseg.models import CheckpointError, ModelConfig, UnsafeCheckpointError, mmdet_config, safe_torch_load
from darkseg.models.convert import ConversionError, convert_mmdet_checkpoint, infer_model_config
from darkseg.models.mmdet_config import ConfigTextError, parse_config_text

LONG = "x" * 100_000  # a value far longer than any message should repeat


# ------------------------------------------------------------------------ MMDetection config text
def _doubling(seed: str, n: int) -> str:
    lines = [f"a0 = {seed}"] + [f"a{i} = a{i - 1} + a{i - 1}" for i in range(1, n + 1)]
    return "\n".join(lines)


def test_config_text_operators_that_grow_are_never_evaluated():
    """Doubling a string or list through names (2^20 items here; 40 lines reach terabytes) and
    repetition are skipped like any unsupported construct; plain arithmetic on numbers still works."""
    for seed in ("'xx'", "[1, 2]"):
        cfg = parse_config_text(_doubling(seed, 20))
        assert "a20" not in cfg and "a1" not in cfg and "a0" in cfg
    cfg = parse_config_text("s = 'ab' * 100000000\nl = [0] * 100000000\np = 10 ** 100\nlr = 0.02 * 2 - 1 / 4")
    assert cfg == {"lr": 0.02 * 2 - 1 / 4}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("\n".join(["a = 10"] + ["a = a * a" for _ in range(16)]), r"a \(line \d+\): an arithmetic result"),
        ("x = " + "-" * 100_000 + "1", "nested too deeply or too long to parse"),
        ("x = " + " + ".join(["1"] * 100_000), "nested too deeply or too long to parse"),
        ("x = " + " + ".join(["1"] * 500), r"x \(line 1\): nested deeper than 64 levels of syntax"),
        ("x = {[1]: 2}", r"x \(line 1\): dict key \[1\] is not hashable"),
        ("x = 1 / 0", r"x \(line 1\): division by zero"),
        ("x = 1e308 * 10", r"x \(line 1\): an arithmetic result is not a finite number"),
        ("x = '" + "y" * 1_000_001 + "'", "config text of 1000007 characters; the limit is 1000000"),
        ("x = [" + ", ".join(["0"] * 250_000) + "]", "syntax nodes; the limit is 200000"),
        (
            "a = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0]\n"
            + "\n".join(
                f"{c} = [{p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}]" for p, c in zip("abcd", "bcde")
            ),
            r"e \(line 5\): the value expands to more than 100000 items",
        ),
        (
            "a0 = [0]\n" + "\n".join(f"a{i} = [a{i - 1}]" for i in range(1, 40)),
            r"a32 \(line 33\): .*deeper than 32",
        ),
    ],
    ids=[
        "int squaring",
        "100k unary minus",
        "100k-term sum",
        "500-term sum",
        "unhashable key",
        "1/0",
        "overflow",
        "1 MB text",
        "250k nodes",
        "expansion by names",
        "depth by names",
    ],
)
def test_config_text_limits_give_one_error_naming_the_variable(text, message):
    with pytest.raises(ConfigTextError, match=message):
        parse_config_text(text)


_BASE_TEXT = (
    "model = dict(backbone=dict(type='ResNet', style='caffe', frozen_stages=1), test_cfg=dict("
    "rpn=dict(nms_pre=1000, max_per_img=1000, nms=dict(type='nms', iou_threshold=0.7)), rcnn=dict("
    "score_thr=0.05, nms=dict(type='nms', iou_threshold=0.5), max_per_img=100, mask_thr_binary=0.5)))\n"
    "img_norm_cfg = dict(mean=[103.53, 116.28, 123.675], std=[1.0, 1.0, 1.0], to_rgb=False)\n"
    "test_pipeline = [dict(type='LoadImageFromFile'), dict(type='MultiScaleFlipAug', img_scale=(600, 400), "
    "flip=False, transforms=[dict(type='Resize', keep_ratio=True, interpolate_mode='nearest'), "
    "dict(type='Normalize', **img_norm_cfg)])]\n"
    "data = dict(test=dict(pipeline=test_pipeline))\n"
)

_BAD_VALUES = {
    "test_cfg int": ("test_cfg=dict(", "test_cfg=5, x=dict(", r"model\.test_cfg: expected a dict, got 5"),
    "mean 5": ("mean=[103.53, 116.28, 123.675]", "mean=5", r"Normalize\.mean: expected 3 numbers.*got 5"),
    "mean strings": (
        "mean=[103.53, 116.28, 123.675]",
        "mean=['a', 'b', 'c']",
        r"Normalize\.mean: expected a number",
    ),
    "std 0": (
        "std=[1.0, 1.0, 1.0]",
        "std=[1.0, 0, 1.0]",
        r"Normalize\.std: expected a number in \(0, 1000\]",
    ),
    "to_rgb string": (
        "to_rgb=False",
        "to_rgb='False'",
        r"Normalize\.to_rgb: expected True or False, got 'False'",
    ),
    "img_scale inf": (
        "(600, 400)",
        "(1e999, 400)",
        r"MultiScaleFlipAug\.img_scale: expected an integer in 1\.\.8192, got inf",
    ),
    "img_scale strings": (
        "(600, 400)",
        "('600', '400')",
        r"MultiScaleFlipAug\.img_scale: expected an integer",
    ),
    "img_scale 1e9": (
        "(600, 400)",
        "(1000000000, 400)",
        r"img_scale: expected an integer in 1\.\.8192, got 1000000000",
    ),
    "frozen_stages abc": (
        "frozen_stages=1",
        "frozen_stages='abc'",
        r"model\.backbone\.frozen_stages: expected an integer in -1\.\.4",
    ),
    "frozen_stages list": (
        "frozen_stages=1",
        "frozen_stages=[1]",
        r"model\.backbone\.frozen_stages: .*got \[1\]",
    ),
    "frozen_stages inf": (
        "frozen_stages=1",
        "frozen_stages=1e999",
        r"model\.backbone\.frozen_stages: .*got inf",
    ),
    "style unknown": (
        "style='caffe'",
        "style='fancy'",
        r"model\.backbone\.style: expected one of 'pytorch', 'caffe'",
    ),
    "interpolation unknown": (
        "interpolate_mode='nearest'",
        "interpolate_mode='bicubic'",
        r"Resize\.interpolate_mode: expected one of 'nearest', 'bilinear'",
    ),
    "score_thr string": (
        "score_thr=0.05",
        "score_thr='high'",
        r"model\.test_cfg\.rcnn\.score_thr: expected a number in \[0, 1\]",
    ),
    "iou 2": (
        "iou_threshold=0.7",
        "iou_threshold=2",
        r"model\.test_cfg\.rpn\.nms\.iou_threshold: expected a number in \(0, 1\]",
    ),
    "nms_pre float": (
        "nms_pre=1000",
        "nms_pre=10.5",
        r"model\.test_cfg\.rpn\.nms_pre: expected an integer in 1\.\.100000",
    ),
    "long value echoed": ("style='caffe'", f"style='{LONG}'", r"got 'xxxx.{60,80}'$"),
}


@pytest.fixture(scope="module")
def mmdet_sd():
    import numpy as np

    z = np.load(shared_subdir("lis-reference-model") / "tiny_plain_caffe_seed0.npz", allow_pickle=False)
    return {k[len("state_dict/") :]: torch.from_numpy(z[k]) for k in z.files if k.startswith("state_dict/")}


def test_config_text_values_are_type_and_range_checked(mmdet_sd):
    good = infer_model_config(mmdet_sd, {"config": _BASE_TEXT}, where="m.pth")
    assert (good.style, good.frozen_stages, good.max_size, good.channel_order) == ("caffe", 1, 600, "bgr")
    for name, (old, new, message) in _BAD_VALUES.items():
        assert old in _BASE_TEXT, name
        text = _BASE_TEXT.replace(old, new, 1)
        with pytest.raises(ConversionError, match=r"^m\.pth: meta\['config'\]: .*" + message) as err:
            infer_model_config(mmdet_sd, {"config": text}, where="m.pth")
        assert len(str(err.value)) < 300 and "\n" not in str(err.value), name
    # absent or null optional sections are fine
    assert mmdet_config.test_settings(parse_config_text("model = dict(type='MaskRCNN')\n")) == {}
    assert mmdet_config.test_settings(
        {"model": {"test_cfg": None}, "test_cfg": {"rpn": {"nms_pre": 500}}}
    ) == {"rpn_nms_pre": 500}


def _save_mmdet(path, sd, meta=None, **extra) -> None:
    obj = {"state_dict": sd, **extra}
    if meta is not None:
        obj["meta"] = meta
    torch.save(obj, path)


def test_convert_cli_reports_a_bad_config_value_in_one_line(tmp_path, mmdet_sd):
    src = tmp_path / "lis.pth"
    _save_mmdet(src, mmdet_sd, {"config": _BASE_TEXT.replace("(600, 400)", "(1000000000, 400)")})
    out = tmp_path / "out.pth"
    res = subprocess.run(
        [sys.executable, "-m", "darkseg", "convert", str(src), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1 and "Traceback" not in res.stderr and not out.exists()
    assert len(res.stderr.strip().splitlines()) == 1
    assert "lis.pth: meta['config']: data.test.pipeline: MultiScaleFlipAug.img_scale" in res.stderr


# ------------------------------------------------------------------------------ checkpoint tensors
def test_checkpoint_meta_and_keys_are_checked(tmp_path, mmdet_sd):
    cases = {
        "meta_tensor.pth": (
            {"state_dict": mmdet_sd, "meta": torch.zeros(3)},
            r"'meta' is a Tensor; expected a dict",
        ),
        "config_int.pth": ({"state_dict": mmdet_sd, "meta": {"config": 5}}, r"meta\['config'\] is a int"),
        "classes_str.pth": (
            {"state_dict": mmdet_sd, "meta": {"CLASSES": "car"}},
            r"meta\['CLASSES'\] is a str",
        ),
        "module.pth": (
            {"state_dict": {**mmdet_sd, "module.rpn_head.rpn_cls.bias": mmdet_sd["rpn_head.rpn_cls.bias"]}},
            r"'rpn_head\.rpn_cls\.bias' both with and without the 'module\.' prefix",
        ),
    }
    for name, (obj, message) in cases.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(ConversionError, match=message) as err:
            convert_mmdet_checkpoint(tmp_path / name, tmp_path / "out.pth")
        assert name in str(err.value) and not (tmp_path / "out.pth").exists()
    # the prefix alone (a DataParallel checkpoint) is fine
    torch.save({"state_dict": {f"module.{k}": v for k, v in mmdet_sd.items()}}, tmp_path / "dp.pth")
    convert_mmdet_checkpoint(tmp_path / "dp.pth", None)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["", "b"], r"meta\['CLASSES'\]\[0\]: class name '' is empty or only whitespace"),
        (["a", "  \t"], r"meta\['CLASSES'\]\[1\]: class name .* is empty or only whitespace"),
        (["a", "b\nc"], r"meta\['CLASSES'\]\[1\]: class name 'b\\nc' holds the control character U\+000A"),
        (["a", "x" * 100_000], r"meta\['CLASSES'\]\[1\]: class name of 100000 characters \(limit 128\)"),
        (["a", 5], r"meta\['CLASSES'\]\[1\]: class names must be strings, got 5 \(int\)"),
    ],
)
def test_class_names_are_checked(tmp_path, mmdet_sd, names, message):
    k = mmdet_sd["roi_head.bbox_head.fc_cls.weight"].shape[0] - 1
    classes = names + [f"c{i}" for i in range(k - len(names))]
    src = tmp_path / "names.pth"
    _save_mmdet(src, mmdet_sd, {"CLASSES": classes})
    with pytest.raises(ConversionError, match=r"names\.pth: " + message) as err:
        convert_mmdet_checkpoint(src, None)
    assert len(str(err.value)) < 300
    # the same names in a ModelConfig (darkseg checkpoints, training configs) are refused as well
    with pytest.raises(ConfigError, match=r"class_names\[\d\]: class"):
        ModelConfig(class_names=classes)


def test_model_config_refuses_bad_names_and_huge_resize_box(tmp_path):
    """From a YAML config and from a darkseg checkpoint's stored model_config (predict would resize a
    120 x 160 photo into a 10^9-pixel box)."""
    with pytest.raises(ConfigError, match=r"model\.class_names\[0\]: class name ' ' is empty"):
        load_config("tiny_coco_cpu", ["model.class_names=[' ']"])
    with pytest.raises(ConfigError, match=r"model\.max_size: must be <= 8192 pixels \(got 1000000000\)"):
        load_config("tiny_coco_cpu", ["model.max_size=1000000000"])
    from darkseg.models import build_model, load_model, save_checkpoint

    path = tmp_path / "m.pth"
    save_checkpoint(path, build_model(ModelConfig.tiny()))
    for key, value, message in (
        ("max_size", 10**9, "max_size: must be <= 8192"),
        ("class_names", ["a\x1b"], "U+001B"),
    ):
        ckpt = torch.load(path, weights_only=True)
        ckpt["model_config"][key] = value
        torch.save(ckpt, tmp_path / "bad.pth")
        with pytest.raises(CheckpointError, match=r"bad\.pth: invalid model_config: .*" + re.escape(message)):
            load_model(tmp_path / "bad.pth")


def test_expanded_and_aliased_tensors_are_refused_before_any_copy(tmp_path, mmdet_sd):
    """A stride-0 tensor of 4096 x 4096 floats is 64 MB when copied, a few bytes in the file; 100 views
    of one 1 MB tensor claim 100 MB. Both are refused by every reader before anything reads them."""
    expanded = torch.zeros(1).expand(4096, 4096)
    src = tmp_path / "expanded.pth"
    _save_mmdet(src, {**mmdet_sd, "neck.fpn_convs.0.conv.weight": expanded})
    assert os.path.getsize(src) < 2 * sum(v.numel() * v.element_size() for v in mmdet_sd.values())
    message = (
        r"tensor \['state_dict'\]\['neck\.fpn_convs\.0\.conv\.weight'\] is an expanded \(stride-0\) view"
    )
    with pytest.raises(ConversionError, match=r"expanded\.pth: refused: " + message):
        convert_mmdet_checkpoint(src, None)
    from darkseg.models import build_model, load_model, save_checkpoint

    good = tmp_path / "good.pth"
    save_checkpoint(good, build_model(ModelConfig.tiny()))
    ckpt = torch.load(good, weights_only=True)
    ckpt["state_dict"]["extra.weight"] = expanded
    bad = tmp_path / "bad.pth"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match=r"bad\.pth: refused: tensor .*extra\.weight.*stride-0"):
        load_model(bad)
    one = torch.zeros(512, 512)  # 1 MB
    torch.save({"views": [one] * 100}, tmp_path / "aliases.pth")
    with pytest.raises(CheckpointError, match=r"aliases\.pth: refused: its tensors claim 104857600 bytes"):
        safe_torch_load(tmp_path / "aliases.pth")
    torch.save({"a": one, "b": one.t(), "c": one[3:7]}, tmp_path / "views.pth")  # ordinary views load
    assert safe_torch_load(tmp_path / "views.pth")["c"].shape == (4, 512)


class _Payload:
    def __reduce__(self):
        return (os.system, ("true",))


def test_a_pickle_with_code_is_reported_as_forbidden_objects(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "meta": _Payload()}, path)
    with pytest.raises(
        UnsafeCheckpointError,
        match=r"evil\.pth: refused: the file holds forbidden Python objects \(GLOBAL \S*system\)",
    ):
        safe_torch_load(path)
    with pytest.raises(ConversionError, match="forbidden Python objects"):
        convert_mmdet_checkpoint(path, None)
    (tmp_path / "text.pth").write_text("hello")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        safe_torch_load(tmp_path / "text.pth")


# ---------------------------------------------------------------------------------------- YAML / JSON
def _laughs(levels: int) -> str:
    text = "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for i in range(1, levels + 1):
        text += f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]\n"
    return text


def test_yaml_alias_bombs_and_deep_nesting_are_refused(tmp_path):
    p = tmp_path / "bomb.yaml"
    p.write_text(_laughs(5) + "train: {lr: *a5}\n")  # 590 490 values once expanded (9 levels: 3.9e8)
    with pytest.raises(
        ConfigError, match=r"bomb\.yaml: holds \d+ values with its aliases .* limit is 100000"
    ) as err:
        load_config(p)
    assert len(str(err.value)) < 300
    p.write_text("train: {lr_steps: &r [*r]}\n")
    with pytest.raises(ConfigError, match=r"bomb\.yaml: a recursive alias"):
        load_config(p)
    p.write_text("train: {lr: " + "[" * 3000 + "]" * 3000 + "}\n")
    with pytest.raises(ConfigError, match=r"bomb\.yaml: nested deeper than 32 levels \(line 1\)"):
        load_config(p)
    p.write_text("model:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 2000)))
    with pytest.raises(ConfigError, match=r"bomb\.yaml: nested deeper than 32 levels"):
        load_config(p)
    with pytest.raises(ConfigError, match=r"nested deeper than 32 levels"):
        load_config("tiny_coco_cpu", ["train.lr=" + "[" * 3000 + "]" * 3000])
    # anchors and merge keys of ordinary size keep working
    p.write_text("base: &b {lr: 0.1}\ntrain: {<<: *b, lr: 0.2}\n")
    assert read_config_dict(p)["train"] == {"lr": 0.2}


def test_echoed_values_are_cut_to_a_short_prefix(tmp_path):
    for override in (
        f"train.lr={LONG}",
        f"model.depth={LONG}",
        f"model.style={LONG}",
        f"model.class_names={LONG}",
    ):
        with pytest.raises(ConfigError) as err:
            load_config("tiny_coco_cpu", [override])
        problem = err.value.problem
        assert "xxxx" in problem and len(problem) < 250, (override, len(problem))
        assert len(str(err.value)) < 500  # the --set item named as the source is cut too
    p = tmp_path / "keys.yaml"
    p.write_text(f"train:\n  ? {LONG}\n  : 1\n")  # an unknown key 100 000 characters long
    with pytest.raises(ConfigError, match=r"unknown key 'train\.xxx") as err:
        load_config(p)
    assert len(str(err.value)) < 1000
    p.write_text("train: {" + ", ".join(f"k{i}: 1" for i in range(10_000)) + "}\n")
    with pytest.raises(ConfigError, match=r"unknown key 'train\.k0', .* and 9995 more; known keys") as err:
        load_config(p)
    assert len(str(err.value)) < 1500


def test_base_chain_depth_is_bounded(tmp_path):
    n = 300
    (tmp_path / "c0.yaml").write_text("name: bottom\n")
    for i in range(1, n):
        (tmp_path / f"c{i}.yaml").write_text(f"_base_: c{i - 1}.yaml\n")
    with pytest.raises(
        ConfigError, match=r"_base_: _base_ chain longer than 16 files \(started at .*c299\.yaml\)"
    ):
        read_config_dict(tmp_path / f"c{n - 1}.yaml")
    assert read_config_dict(tmp_path / "c15.yaml") == {"name": "bottom"}  # 16 files: fine


def test_deep_json_is_one_error_naming_the_file(tmp_path):
    from darkseg.data import AnnotationError, load_coco
    from darkseg.synth.noise import load_camera

    ann = tmp_path / "deep.json"
    ann.write_text('{"images": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(AnnotationError, match=r"deep\.json: JSON nested too deeply"):
        load_coco(ann)
    profile = json.loads((resources.files("darkseg") / "synth" / "cameras" / "CanonEOS5D4.json").read_text())
    nested: list = []
    for _ in range(100):
        nested = [nested]
    cam = tmp_path / "cam.json"
    cam.write_text(json.dumps({**profile, "notes": nested}))
    with pytest.raises(ValueError, match=r"cam\.json: JSON nested deeper than 16 levels"):
        load_camera(cam)


def test_long_values_in_annotation_errors_are_cut(tmp_path):
    from darkseg.data import AnnotationError, load_coco

    data = {
        "images": [{"id": 1, "file_name": "a.png", "width": 60, "height": 40}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [LONG], "area": 1.0, "iscrowd": 0}
        ],
        "categories": [{"id": 1, "name": "car"}],
    }
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"gt\.json: annotation id 1") as err:
        load_coco(path)
    assert len(str(err.value)) < 300


# ------------------------------------------------------------------ camera profiles and NoiseProfile
def _profile() -> dict:
    return json.loads((resources.files("darkseg") / "synth" / "cameras" / "CanonEOS5D4.json").read_text())


_PROFILE_CASES = {
    "Kmax 1e300": (("Kmax",), 1e300, r"Kmax = 1e\+300 is outside its range \[0\.001, 1000\] DN/e-"),
    "Kmin 1e-300": (("Kmin",), 1e-300, r"Kmin = 1e-300 is outside its range \[0\.001, 1000\]"),
    "Kmin string": (("Kmin",), "abc", r"Kmin is not a finite number \(got 'abc'\)"),
    "lambda 5": (("G_shape", 0), 5.0, r"G_shape\[0\] = 5\.0 is outside its range \(-0\.5, 0\.5\]"),
    "lambda -5": (("G_shape", 3), -5.0, r"G_shape\[3\] = -5\.0 is outside its range \(-0\.5, 0\.5\]"),
    "negative sigma": (
        ("profiles", "Profile-1", "g_scale", "sigma"),
        -0.1,
        r"profiles\.Profile-1\.g_scale\.sigma = -0\.1 is outside its range \[0, 2\]",
    ),
    "slope 100": (
        ("profiles", "Profile-1", "R_scale", "slope"),
        100.0,
        r"profiles\.Profile-1\.R_scale\.slope = 100\.0 is outside",
    ),
    "huge read noise": (
        ("profiles", "Profile-1", "G_scale", "bias"),
        50.0,
        r"profiles\.Profile-1\.G_scale at Kmin \(exp\(slope ln K \+ bias\)\) = .* is outside",
    ),
    "black -5": (("black_level",), -5, r"black_level = -5 is outside its range"),
    "white 1e30": (
        ("white_level",),
        1e30,
        r"white_level = 1e\+30 is outside its range \[1, 1\.67772e\+07\] DN",
    ),
    "bias row of 3": (("color_bias", 0), [0.1, 0.2, 0.3], r"color_bias\[0\] must be 4 numbers"),
    "bias 1e9": (("color_bias", 2, 1), 1e9, r"color_bias\[2\]\[1\] = 1000000000\.0 is outside"),
}


@pytest.mark.parametrize("case", sorted(_PROFILE_CASES))
def test_camera_profile_values_have_physical_ranges(tmp_path, case):
    from darkseg.synth.noise import load_camera

    keys, value, message = _PROFILE_CASES[case]
    data = _profile()
    node = data
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    cam = tmp_path / "cam.json"
    cam.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"cam\.json: " + message):
        load_camera(cam)
    with pytest.raises(ConfigError, match=r"synth\.camera: .*cam\.json: " + message):
        load_synth_config(None, [f"synth.camera={cam}"])


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        (
            (1e300, 1e-6),
            r"NoiseProfile pair 0: S = 1e\+300 gives the gain K = .* outside \[0\.001, 1000\] DN/e-",
        ),
        ((1e-300, 1e-6), r"NoiseProfile pair 0: S = 1e-300 gives the gain K"),
        ((2e-4, 2.0), r"NoiseProfile pair 0: O = 2 is outside \[0, 1\]"),
        ((float("nan"), 1e-6), r"NoiseProfile .*not a finite number \(nan, 1e-06\)"),
    ],
)
def test_dng_noise_profile_values_have_physical_ranges(tmp_path, capsys, pair, message):
    from darkseg.cli import main
    from test_calibrate import _write_dng

    _write_dng(tmp_path / "phone.dng", 100, list(pair))
    out = tmp_path / "p.json"
    assert main(["calibrate", "--dng-profile", str(tmp_path / "phone.dng"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "phone.dng: " in err and len(err.strip().splitlines()) == 1 and not out.exists()
    assert re.search(message, err), err
