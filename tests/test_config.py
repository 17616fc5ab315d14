"""Experiment configs: packaged YAMLs, ``_base_`` inheritance, the one resize box, overrides, clear errors,
round trips, the train CLI's config paths."""

from __future__ import annotations

import re
from importlib import resources

import pytest
import yaml

from darkseg.config import (
    ConfigError,
    ExperimentConfig,
    apply_overrides,
    config_to_yaml,
    load_config,
    packaged_configs,
    read_config_dict,
)

PAPER = ("coco2lis_baseline", "syncoco2lis_awd_scb_dsl", "lis2lis")
OURS = (*PAPER, "tiny_coco_cpu")  # the training configs
FULL = "syncoco2lis_awd_scb_dsl"  # the base: states and documents every field; the others state differences


def _text(name: str) -> str:
    return (resources.files("darkseg") / "configs" / f"{name}.yaml").read_text(encoding="utf-8")


def test_packaged_configs_exist_and_load():
    names = packaged_configs()
    for n in OURS:
        assert n in names
    for n in names:
        cfg = load_config(n)
        assert isinstance(cfg, ExperimentConfig) and cfg.name == n


def _same_keys(name: str, a, b, path: str) -> None:
    assert isinstance(a, dict), f"{name}: {path} should be a mapping"
    assert set(a) == set(b), f"{name}: {path or 'top level'} misses {sorted(set(b) - set(a))}"
    for k, v in b.items():
        if isinstance(v, dict) and k not in ("lr_mult", "aliases"):
            _same_keys(name, a[k], v, f"{path}.{k}" if path else k)


def test_packaged_configs_spell_out_and_comment_every_field():
    """Every dataclass field appears in the base config (the others inherit it through ``_base_``, so each
    resolved config has every field too), and every key line of every packaged config carries a comment."""
    resolved = load_config(FULL).to_dict()
    _same_keys(FULL, yaml.safe_load(_text(FULL)), resolved, "")
    assert "_base_" not in yaml.safe_load(_text(FULL))
    for n in OURS:
        _same_keys(n, read_config_dict(n), load_config(n).to_dict(), "")
    for n in packaged_configs():
        stated = yaml.safe_load(_text(n))
        assert n == FULL or len(str(stated)) < len(str(resolved)), f"{n}: should state only what differs"
        for line in _text(n).splitlines():
            m = re.match(r"^(\s*)([A-Za-z_][\w]*):\s*(\S.*)?$", line)
            if m and m.group(3) and not m.group(3).startswith("#"):  # a leaf key with a value
                if len(m.group(1)) == 0 and m.group(2) in ("name", "output_dir"):
                    continue
                assert "#" in line, f"{n}: '{line.strip()}' has no comment"


def test_paper_settings():
    ours = load_config("syncoco2lis_awd_scb_dsl")
    assert ours.model.awd and ours.model.scb and ours.model.depth == 50 and ours.model.style == "caffe"
    assert ours.train.dsl and ours.synth.noise_model == "PGRU" and ours.synth.ratio_range == (10.0, 100.0)
    t = ours.train
    assert (t.epochs, t.batch_size, t.lr, t.momentum, t.weight_decay) == (12, 8, 0.01, 0.9, 1e-4)
    assert (t.warmup_iters, t.warmup_ratio, t.lr_steps, t.gamma) == (500, 0.001, [9, 11], 0.1)
    assert t.lr_mult == {"awd": 2.0, "scb": 2.0} and t.grad_clip is None
    assert (ours.model.max_size, ours.model.min_size, ours.data.interpolation, ours.data.flip) == (
        600,
        400,
        "nearest",
        0.5,
    )
    assert ours.data.val.type == "lis" and "RAW_Dark" in ours.data.val.image_dir
    base = load_config("coco2lis_baseline")
    assert base.synth is None and not base.train.dsl and not base.model.awd and not base.model.scb
    assert "RGB_Dark" in base.data.val.image_dir


def test_overrides_are_parsed_as_yaml():
    cfg = load_config(
        "tiny_coco_cpu",
        [
            "train.lr=2e-2",
            "train.lr_steps=[5, 7]",
            "model.depth=34",
            "train.grad_clip=null",
            "data.val=null",
            "name=x y",
        ],
    )
    assert cfg.train.lr == 0.02 and isinstance(cfg.train.lr, float)
    assert cfg.train.lr_steps == [5, 7] and cfg.model.depth == 34 and cfg.train.grad_clip is None
    assert cfg.data.val is None and cfg.name == "x y"
    cfg = load_config("tiny_coco_cpu", ["synth=null", "train.dsl=false", "data.val_view=image"])
    assert cfg.synth is None
    cfg = load_config("coco2lis_baseline", ["synth.camera=SonyA7S2", "train.train_view=noisy"])
    assert cfg.synth.camera == "SonyA7S2" and cfg.synth.noise_model == "PGRU"  # null section -> defaults


def test_unknown_keys_name_key_and_file(tmp_path):
    p = tmp_path / "exp.yaml"
    text = _text("tiny_coco_cpu").replace("\ntrain:\n", "\ntrain:\n  lr_decay: 3\n")
    assert "lr_decay" in text
    p.write_text(text)
    with pytest.raises(ConfigError, match=r"exp\.yaml.*'train\.lr_decay'"):
        load_config(p)
    p.write_text(_text("tiny_coco_cpu").replace("  depth: 18", "  deepness: 18"))
    with pytest.raises(ConfigError, match=r"exp\.yaml.*deepness"):
        load_config(p)
    p.write_text(_text(FULL).replace("  camera: CanonEOS5D4", "  cam: CanonEOS5D4"))
    with pytest.raises(ConfigError, match=r"exp\.yaml.*'synth\.cam'"):
        load_config(p)
    with pytest.raises(ConfigError, match=r"--set.*'train\.momentm'"):
        load_config("tiny_coco_cpu", ["train.momentm=0.5"])
    p.write_text("foo: 1\n")
    with pytest.raises(ConfigError, match=r"exp\.yaml.*'foo'"):
        load_config(p)


def test_bad_values_give_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"train\.batch_size.*integer"):
        load_config("tiny_coco_cpu", ["train.batch_size=two"])
    with pytest.raises(ConfigError, match=r"train\.lr_step_unit"):
        load_config("tiny_coco_cpu", ["train.lr_step_unit=week"])
    with pytest.raises(ConfigError, match=r"train: give exactly one of max_iters / epochs"):
        load_config("tiny_coco_cpu", ["train.epochs=3"])
    with pytest.raises(ConfigError, match=r"train\.dsl"):
        load_config("tiny_coco_cpu", ["synth=null"])
    with pytest.raises(ConfigError, match=r"in_channels"):
        load_config("tiny_coco_cpu", ["synth.output=packed"])
    with pytest.raises(ConfigError, match=r"model\.depth: must be one of 18, 34, 50, 101 \(got 19\)"):
        load_config("tiny_coco_cpu", ["model.depth=19"])
    with pytest.raises(ConfigError, match=r"KEY=VALUE"):
        load_config("tiny_coco_cpu", ["train.lr"])
    with pytest.raises(ConfigError, match=r"--set .train\.lr\.x=1.: train\.lr: not a section"):
        load_config("tiny_coco_cpu", ["train.lr.x=1"])
    with pytest.raises(FileNotFoundError, match="packaged configs"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml.*malformed YAML"):
        load_config(bad)


def test_round_trip_through_yaml(tmp_path):
    cfg = load_config("syncoco2lis_awd_scb_dsl", ["train.max_iters=10", "train.epochs=null"])
    p = tmp_path / "resolved.yaml"
    p.write_text(config_to_yaml(cfg))
    again = load_config(p)
    assert again.to_dict() == cfg.to_dict()
    assert ExperimentConfig.from_dict(cfg.to_dict()).to_dict() == cfg.to_dict()


def test_apply_overrides_does_not_mutate_input():
    d = {"train": {"lr": 0.1}}
    out = apply_overrides(d, ["train.lr=0.2", "synth.camera=X"])
    assert d == {"train": {"lr": 0.1}} and out == {"train": {"lr": 0.2}, "synth": {"camera": "X"}}


def test_cli_list_and_print_config(capsys):
    from darkseg.cli import main

    assert main(["train", "--list"]) == 0
    assert "tiny_coco_cpu" in capsys.readouterr().out
    assert main(["train", "tiny_coco_cpu", "--print-config", "--set", "train.lr=0.5", "--device", "cpu"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["train"]["lr"] == 0.5 and printed["train"]["device"] == "cpu"
    assert main(["train", "tiny_coco_cpu", "--set", "train.nope=1"]) == 2
    assert "train.nope" in capsys.readouterr().err


def test_repeated_yaml_keys_refused_naming_file_key_and_line(tmp_path):
    p = tmp_path / "exp.yaml"
    text = _text(FULL).replace("\ntrain:\n", "\ntrain:\n  lr: 0.5\n", 1)
    p.write_text(text)
    line = text.splitlines().index("  lr: 0.5") + 1
    with pytest.raises(
        ConfigError, match=rf"exp\.yaml: duplicate key 'lr' at line \d+ \(first at line {line}\)"
    ):
        load_config(p)
    with pytest.raises(
        ConfigError, match=r"--set 'model.dsl=\{weight: 1, weight: 2\}': duplicate key 'weight'"
    ):
        load_config("tiny_coco_cpu", ["model.dsl={weight: 1, weight: 2}"])
    p.write_text("base: &b {lr: 0.1}\ntrain: {<<: *b, lr: 0.2, max_iters: 3, epochs: null}\n")
    with pytest.raises(ConfigError, match="unknown key 'base'"):  # a merge key may be overridden: no error
        load_config(p)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("synth.camera=NoSuchCam", r"synth\.camera: unknown camera 'NoSuchCam'; available: .*CanonEOS5D4"),
        (
            "synth.camera=/nowhere/cam.json",
            r"synth\.camera: /nowhere/cam\.json: camera profile file not found",
        ),
        ("synth.ratio_range=[100, 10]", r"synth\.ratio_range: need \[lo, hi\] with 0 < lo <= hi"),
        ("synth.ratio_range=[0, 10]", r"synth\.ratio_range: need \[lo, hi\] with 0 < lo <= hi"),
        ("synth.ratio_range=[]", r"synth\.ratio_range: expected a list of 2 values, got \[\]"),
        ("synth.ratio_range=50", r"synth\.ratio_range: expected a list, got 50"),
    ],
)
def test_synthesis_settings_checked_when_the_config_is_loaded(tmp_path, capsys, override, message):
    """These used to pass --print-config and fail only when training started, naming neither key nor file."""
    p = tmp_path / "exp.yaml"
    key, value = override.split("=", 1)
    p.write_text(_text(FULL).replace(f"  {key.split('.')[1]}:", f"  {key.split('.')[1]}: {value} #", 1))
    with pytest.raises(ConfigError, match=r"exp\.yaml: " + message):
        load_config(p)
    from darkseg.cli import main

    assert main(["train", str(p), "--print-config"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "exp.yaml" in err and key in err


def test_a_string_where_a_list_is_expected_is_refused():
    """``--set model.class_names=person`` used to give six one-letter classes."""
    for override, key in (
        ("model.class_names=person", "model.class_names"),
        ("data.train.class_names=car", "data.train.class_names"),
        ("train.lr_steps=8", "train.lr_steps"),
    ):
        with pytest.raises(ConfigError, match=rf"{re.escape(key)}: expected a list"):
            load_config("tiny_coco_cpu", [override])
    with pytest.raises(ConfigError, match=r"write \[person\] for a one-element list"):
        load_config("tiny_coco_cpu", ["model.class_names=person"])
    cfg = load_config("tiny_coco_cpu", ["model.class_names=[person]", "data.train.class_names=null"])
    assert cfg.model.class_names == ["person"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.weight_decay=.nan", r"train\.weight_decay: expected a finite number"),
        ("train.lr=.inf", r"train\.lr: expected a finite number"),
        ("model.awd=maybe", r"model\.awd: expected true/false"),
        ("model.depth=18.5", r"model\.depth: expected an integer"),
        ("model.class_names=[1, 2]", r"model\.class_names\[0\]: expected a string"),
        ("model.box_score_thresh=1.5", r"box_score_thresh: must be a score in \[0, 1\]"),
        ("model.box_nms_thresh=0", r"box_nms_thresh: must be an IoU in \(0, 1\]"),
        ("model.dsl.levels=[0, 9]", r"model\.dsl\.levels: must be distinct indices in 0\.\.3"),
    ],
)
def test_model_and_synth_sections_are_type_checked(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config("tiny_coco_cpu", [override])


# ------------------------------------------------------------------------------- _base_ inheritance
def test_base_deep_merges_mappings_and_replaces_lists(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "parent.yaml").write_text(
        "_base_: tiny_coco_cpu\nname: parent\ntrain: {lr_steps: [100, 150], lr_mult: {awd: 3.0}}\n"
    )
    (tmp_path / "child.yaml").write_text(
        "_base_: sub/parent.yaml\nname: child\nmodel: {depth: 34}\ntrain: {lr_steps: [120]}\n"
        "data: {val: null}\n"
    )
    cfg = load_config(tmp_path / "child.yaml")
    tiny = load_config("tiny_coco_cpu")
    assert cfg.name == "child" and cfg.model.depth == 34 and cfg.model.style == tiny.model.style
    assert cfg.train.lr_steps == [120] and cfg.train.max_iters == tiny.train.max_iters  # list replaced
    assert cfg.train.lr_mult == {"awd": 3.0, "scb": 2.0}  # mapping merged key by key
    assert cfg.data.val is None and cfg.data.train == tiny.data.train
    assert read_config_dict(tmp_path / "child.yaml")["model"]["depth"] == 34
    (tmp_path / "replace.yaml").write_text(
        "_base_: tiny_coco_cpu\nname: r\ntrain: {lr_mult: {_delete_: true, llpf: 5.0}}\n"
    )
    assert load_config(tmp_path / "replace.yaml").train.lr_mult == {"llpf": 5.0}
    cfg = load_config(tmp_path / "child.yaml", ["train.lr_steps=[130]"])  # --set applies on top
    assert cfg.train.lr_steps == [130]


@pytest.mark.parametrize(
    ("base", "message"),
    [
        ("b.yaml", r"a\.yaml: _base_ cycle: .*a\.yaml -> .*b\.yaml -> .*a\.yaml"),  # b.yaml: _base_: a
        ("a.yaml", r"a\.yaml: _base_ cycle: .*a\.yaml -> .*a\.yaml"),
        ("nowhere", r"a\.yaml: _base_: no config 'nowhere'.*tiny_coco_cpu"),
        ("[tiny_coco_cpu]", r"a\.yaml: _base_: expected a config name"),
    ],
)
def test_base_cycles_and_missing_bases_are_refused_naming_the_files(tmp_path, base, message):
    (tmp_path / "a.yaml").write_text(f"_base_: {base}\nname: a\n")
    (tmp_path / "b.yaml").write_text("_base_: a\nname: b\n")
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "a.yaml")


# --------------------------------------------------------------------------------- the resize box
def test_the_model_box_is_the_one_resize_setting(monkeypatch):
    """``data.min_size`` / ``data.max_size`` (older configs) are accepted when equal to the model's box
    and refused naming both keys otherwise; training resizes into the model's box."""
    from darkseg.data import build

    monkeypatch.setattr(build, "_make_dataset", lambda ds, class_names, train, transforms: transforms)
    cfg = load_config("tiny_coco_cpu")
    ds = build.build_train_dataset(cfg.data, cfg.model.class_names, cfg.model.min_size, cfg.model.max_size)
    resize = ds.transforms[0]
    assert (resize.max_size, resize.min_size) == (192, 128)
    cfg = load_config("tiny_coco_cpu", ["data.min_size=128", "data.max_size=192"])
    assert "min_size" not in cfg.to_dict()["data"] and cfg.model.min_size == 128
    with pytest.raises(ConfigError, match=r"data\.max_size \(600\) differs from model\.max_size \(192\)"):
        load_config("tiny_coco_cpu", ["data.max_size=600"])
    cfg = load_config("tiny_coco_cpu", ["model.min_size=96", "model.max_size=144"])
    assert (cfg.model.min_size, cfg.model.max_size) == (96, 144)


# ------------------------------------------------------------------ one loader, one error type
@pytest.mark.parametrize(
    ("section", "text", "key", "problem"),
    [
        ("model", "depth: 19", "model.depth", "must be one of 18, 34, 50, 101 (got 19)"),
        ("model", "dsl: {clamp: 0}", "model.dsl.clamp", "must be > 0 (got 0.0)"),
        ("synth", "ratio_range: [0, 10]", "synth.ratio_range", "need [lo, hi] with 0 < lo <= hi"),
        ("synth", "output: packd", "synth.output", "must be one of"),
        ("train", "lr: -1", "train.lr", "must be > 0 (got -1.0)"),
        ("data", "train: {_delete_: true, ann_file: a.json}", "data.train.image_dir", "required"),
        ("data", "flip: 2", "data.flip", "probability in [0, 1] (got 2.0)"),
    ],
)
def test_every_section_raises_the_one_config_error_naming_file_and_key(tmp_path, section, text, key, problem):
    """Model, synth, data and train settings used to raise three error types (ConfigError,
    ModelConfigError, plain ValueError) with three message styles; now one ConfigError, ``FILE: KEY: ...``."""
    from darkseg import errors
    from darkseg.models import ModelConfigError

    assert ModelConfigError is ConfigError is errors.ConfigError
    p = tmp_path / "cfg.yaml"
    p.write_text(f"_base_: tiny_coco_cpu\n{section}: {{{text}}}\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    exc = info.value
    assert type(exc) is ConfigError and isinstance(exc, ValueError)
    assert (exc.source, exc.key) == (str(p), key) and problem in exc.problem
    assert str(exc).startswith(f"{p}: {key}: ")


def test_settings_made_in_code_raise_config_error_naming_class_and_key():
    from darkseg.config import DatasetConfig, TrainConfig
    from darkseg.models import ModelConfig
    from darkseg.synth import SynthConfig

    cases = [
        (
            lambda: SynthConfig(ratio_range=(0, 1)),
            "SynthConfig: ratio_range: need [lo, hi] with 0 < lo <= hi",
        ),
        (lambda: SynthConfig(camera="NoSuchCam"), "SynthConfig: camera: unknown camera 'NoSuchCam'"),
        (lambda: ModelConfig(dsl={"clamp": 0}), "ModelConfig: dsl.clamp: must be > 0"),
        (lambda: TrainConfig(epochs=None), "TrainConfig: give exactly one of max_iters / epochs"),
        (lambda: DatasetConfig(image_dir="x"), "DatasetConfig: ann_file: required"),
    ]
    for build, message in cases:
        with pytest.raises(ConfigError, match=re.escape(message)):
            build()


def test_unknown_keys_are_listed_with_the_known_ones_by_the_one_loader(tmp_path):
    from darkseg.models import DSLConfig, ModelConfig

    p = tmp_path / "cfg.yaml"
    p.write_text("_base_: tiny_coco_cpu\nmodel: {depht: 50}\n")
    known = re.escape(str(sorted(f for f in ModelConfig.__dataclass_fields__)))
    with pytest.raises(
        ConfigError, match=rf"cfg\.yaml: unknown key 'model\.depht'; known keys of model: {known}"
    ):
        load_config(p)
    with pytest.raises(ConfigError, match=rf"^ModelConfig: unknown key 'depht'; known keys: {known}$"):
        ModelConfig.from_dict({"depht": 50})
    with pytest.raises(ConfigError, match=r"^DSLConfig: unknown key 'wieght'; known keys: \['clamp', "):
        DSLConfig.from_dict({"wieght": 1})
    with pytest.raises(ConfigError, match=r"model\.dsl\.wieght'; known keys of model\.dsl: \['clamp', "):
        load_config("tiny_coco_cpu", ["model.dsl.wieght=1"])
    assert ModelConfig.from_dict(ModelConfig.tiny().to_dict()) == ModelConfig.tiny()


def test_config_error_keeps_its_parts_through_pickling():
    import pickle

    exc = pickle.loads(pickle.dumps(ConfigError("required", "data.train.image_dir", "cfg.yaml")))
    assert (exc.problem, exc.key, exc.source) == ("required", "data.train.image_dir", "cfg.yaml")
    assert str(exc) == "cfg.yaml: data.train.image_dir: required"


def test_data_settings_live_in_the_data_package_below_config_synth_models_and_engine():
    import subprocess
    import sys

    from darkseg.config import DataConfig, DatasetConfig
    from darkseg.data import config as data_config

    assert (DataConfig, DatasetConfig) == (data_config.DataConfig, data_config.DatasetConfig)
    code = (
        "import sys, darkseg.data.config; "
        "print([m for m in ('darkseg.config', 'darkseg.synth', 'darkseg.models', 'darkseg.engine') "
        "if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
