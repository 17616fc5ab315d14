"""Experiment configuration: a dataclass tree that YAML files map onto 1:1.

An :class:`ExperimentConfig` has five sections::

    name:   str                      run name (logs, summary)
    model:  darkseg.models.ModelConfig   (YAML: the ModelConfig fields)
    synth:  darkseg.synth.SynthConfig | null   (null = no low-light synthesis: train on sRGB)
    data:   DataConfig               train / val datasets, training interpolation, flip
    train:  TrainConfig              optimiser, schedule, DSL, AMP, checkpoints, logging
    output_dir: str | null           default output folder (``darkseg train --out`` overrides it)

:func:`load_config` reads a YAML file (a path, or the name of a packaged config such as
``tiny_coco_cpu``), resolves its ``_base_`` chain (a config states only what differs from its base:
:func:`read_config_dict`), applies ``"a.b=value"`` overrides (values parsed as YAML, so
``train.lr=0.02``, ``train.lr_steps=[8,11]``, ``synth=null`` work) and validates everything. Unknown
keys, wrong types and bad values raise :class:`ConfigError` naming the key and the file
(or the ``--set`` item).
The resize box is the model's alone (``model.min_size`` / ``model.max_size``): training images are
resized into it by the data pipeline and every image again by the model. ``data.min_size`` /
``data.max_size`` (older configs) are accepted only when equal to the model's and then dropped.
Relative dataset paths are resolved against the current working directory when the datasets are
built, not against the config file, so the packaged configs can name ``data/coco/...``.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from darkseg.errors import DarkSegError

__all__ = [
    "ConfigError",
    "DatasetConfig",
    "DataConfig",
    "TrainConfig",
    "ExperimentConfig",
    "load_config",
    "load_synth_config",
    "read_config_dict",
    "packaged_configs",
    "apply_overrides",
    "config_to_yaml",
]


class ConfigError(DarkSegError, ValueError):
    """A configuration entry is unknown or invalid; the message names the key and its source."""


# ---------------------------------------------------------------------------------------------- data
@dataclass
class DatasetConfig:
    """One dataset (COCO instance JSON + image folder).

    Attributes:
        type: ``"coco"`` (any COCO instance JSON) or ``"lis"`` (LIS layout quirks: ``JPEGImages/``
            sub-folder, canonical 8 classes).
        image_dir: folder the ``file_name`` entries are relative to.
        ann_file: COCO instance JSON.
        class_names: classes to keep, in label order; ``null`` = the model's ``class_names``
            (matched by name with aliases, so LIS names work on COCO files).
        aliases: extra name aliases ``{name: [other names]}``.
        image_ext: replace every file suffix (e.g. ``".png"``), or null.
        recompute_area: replace ``area`` by the mask area.
        max_images: keep only the first N images (small/overfit runs), or null for all.
        intensity_ratio: gain applied to every image before clipping to [0, 1], for dark linear RAW
            images stored without brightening; ``"auto"`` = per image, the gain that brings its mean to
            the training inputs' (``darkseg.raw.exposure.estimate_ratio``); 1 = as stored.
    """

    type: str = "coco"
    image_dir: str = ""
    ann_file: str = ""
    class_names: list[str] | None = None
    aliases: dict[str, list[str]] = field(default_factory=dict)
    image_ext: str | None = None
    recompute_area: bool = False
    max_images: int | None = None
    intensity_ratio: float | str = 1.0

    def validate(self, where: str) -> None:
        if self.type not in ("coco", "lis"):
            raise ConfigError(f"{where}.type: must be 'coco' or 'lis' (got {self.type!r})")
        if not self.image_dir:
            raise ConfigError(f"{where}.image_dir: required")
        if not self.ann_file:
            raise ConfigError(f"{where}.ann_file: required")
        if self.image_ext is not None and not (
            len(self.image_ext) > 1 and self.image_ext.startswith(".") and "/" not in self.image_ext
        ):
            raise ConfigError(
                f"{where}.image_ext: a file suffix such as '.png', or null (got {self.image_ext!r})"
            )
        if self.max_images is not None and self.max_images < 1:
            raise ConfigError(f"{where}.max_images: must be >= 1 or null (got {self.max_images})")
        from darkseg.raw.exposure import parse_ratio

        try:
            self.intensity_ratio = parse_ratio(str(self.intensity_ratio))
        except ValueError as exc:
            raise ConfigError(f"{where}.intensity_ratio: {exc}") from None


@dataclass
class DataConfig:
    """Datasets and the geometric transforms of training.

    The resize box is not here: training images are resized into the model's box
    (``model.min_size`` / ``model.max_size``, paper 400 / 600), the one resize setting.

    Attributes:
        train: training dataset.
        val: evaluation dataset (null = no evaluation).
        interpolation: resize interpolation of training images (paper: ``"nearest"``).
        flip: horizontal flip probability (paper: 0.5).
        val_view: what the model sees at evaluation: ``"image"`` (the files as stored: LIS RAW_Dark PNGs,
            sRGB photos) or ``"noisy"`` / ``"clean"`` (synthetic renderings of the val images with the
            ``synth`` settings, seeded per image id).
    """

    train: DatasetConfig = field(default_factory=DatasetConfig)
    val: DatasetConfig | None = None
    interpolation: str = "nearest"
    flip: float = 0.5
    val_view: str = "image"

    def validate(self) -> None:
        self.train.validate("data.train")
        if self.val is not None:
            self.val.validate("data.val")
        if self.interpolation not in ("nearest", "bilinear", "bicubic", "area"):
            raise ConfigError(
                f"data.interpolation: must be nearest|bilinear|bicubic|area (got {self.interpolation!r})"
            )
        if not 0.0 <= self.flip <= 1.0:
            raise ConfigError(f"data.flip: probability in [0, 1] (got {self.flip})")
        if self.val_view not in ("image", "noisy", "clean"):
            raise ConfigError(f"data.val_view: must be image|noisy|clean (got {self.val_view!r})")


# --------------------------------------------------------------------------------------------- train
@dataclass
class TrainConfig:
    """Optimisation, schedule and run-time settings (paper values in brackets).

    Length: exactly one of ``max_iters`` / ``epochs`` [12 epochs].
    Optimiser: SGD, ``lr`` [0.01 for batch 8], ``momentum`` [0.9], ``weight_decay`` [1e-4],
    ``lr_mult`` per-name multipliers [{"awd": 2, "scb": 2}] (darkseg.models.param_groups rule),
    ``grad_clip`` max global L2 norm of the gradients or null [null].
    Schedule: linear warm-up over ``warmup_iters`` [500] from ``warmup_ratio`` [0.001], then
    ``lr x gamma`` [0.1] at each of ``lr_steps`` [9, 11] counted in ``lr_step_unit`` "epoch"|"iter"
    (epoch steps: the lr drops at the start of 0-based epoch ``s``, i.e. after ``s`` epochs).
    ``batch_size`` is per process (global batch = batch_size x world size) [8 on 1 GPU].
    Synthesis/loss: ``dsl`` (clean + noisy task losses + DSL; needs ``synth``), ``train_view`` (the
    rendering trained on without DSL), ``synth_device`` "workers" | "device" (batched on the GPU).
    Run: ``amp`` auto|true|false (float16 autocast + GradScaler, CUDA only), ``device``, ``seed``,
    ``deterministic``, ``num_workers``, ``find_unused_parameters`` (DDP), ``init_from`` (a darkseg or
    torchvision checkpoint to start from), ``max_unreadable_images`` (unreadable or missing training
    images are skipped with a warning and replaced by the next sample; more distinct bad files than
    this stop the run, 0 = stop at the first). Checkpoints: ``checkpoint_every`` iterations and every
    ``checkpoint_every_epochs`` epochs (0 = off; ``last.pth``), ``keep_epoch_checkpoints`` (also
    ``epoch_<E>.pth``). Logs: ``log_every`` (console/bar; the files get every iteration). Evaluation:
    ``eval_every`` iterations (0 = off), ``eval_at_end``.
    """

    max_iters: int | None = None
    epochs: int | None = 12
    batch_size: int = 8
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_mult: dict[str, float] = field(default_factory=lambda: {"awd": 2.0, "scb": 2.0})
    warmup_iters: int = 500
    warmup_ratio: float = 0.001
    lr_steps: list[int] = field(default_factory=lambda: [9, 11])
    lr_step_unit: str = "epoch"
    gamma: float = 0.1
    grad_clip: float | None = None
    amp: str | bool = "auto"
    dsl: bool = True
    train_view: str = "noisy"
    synth_device: str = "workers"
    init_from: str | None = None
    device: str = "auto"
    seed: int = 0
    deterministic: bool = False
    num_workers: int = 2
    max_unreadable_images: int = 100
    find_unused_parameters: bool = True
    checkpoint_every: int = 1000
    checkpoint_every_epochs: int = 1
    keep_epoch_checkpoints: bool = True
    log_every: int = 20
    eval_every: int = 0
    eval_at_end: bool = True

    def validate(self) -> None:
        def bad(name: str, msg: str) -> None:
            raise ConfigError(f"train.{name}: {msg} (got {getattr(self, name)!r})")

        if (self.max_iters is None) == (self.epochs is None):
            raise ConfigError(
                f"train.max_iters / train.epochs: give exactly one (got max_iters="
                f"{self.max_iters}, epochs={self.epochs})"
            )
        if self.max_iters is not None and self.max_iters < 1:
            bad("max_iters", "must be >= 1")
        if self.epochs is not None and self.epochs < 1:
            bad("epochs", "must be >= 1")
        if self.batch_size < 1:
            bad("batch_size", "must be >= 1")
        if not self.lr > 0:
            bad("lr", "must be > 0")
        if not 0 <= self.momentum < 1:
            bad("momentum", "must be in [0, 1)")
        if self.weight_decay < 0:
            bad("weight_decay", "must be >= 0")
        if any(not float(v) > 0 for v in self.lr_mult.values()):
            bad("lr_mult", "multipliers must be > 0")
        if self.warmup_iters < 0:
            bad("warmup_iters", "must be >= 0")
        if not 0 < self.warmup_ratio <= 1:
            bad("warmup_ratio", "must be in (0, 1]")
        if self.lr_step_unit not in ("epoch", "iter"):
            bad("lr_step_unit", "must be 'epoch' or 'iter'")
        if list(self.lr_steps) != sorted(self.lr_steps) or any(s < 0 for s in self.lr_steps):
            bad("lr_steps", "must be non-negative and increasing")
        if not 0 < self.gamma <= 1:
            bad("gamma", "must be in (0, 1]")
        if self.grad_clip is not None and not self.grad_clip > 0:
            bad("grad_clip", "must be > 0 or null")
        if self.amp not in ("auto", True, False):
            bad("amp", "must be auto, true or false")
        if self.train_view not in ("noisy", "clean"):
            bad("train_view", "must be 'noisy' or 'clean'")
        if self.synth_device not in ("workers", "device"):
            bad("synth_device", "must be 'workers' (DataLoader workers) or 'device' (batched on the GPU)")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            bad("device", "must be auto, cpu, cuda or cuda:N")
        if self.num_workers < 0:
            bad("num_workers", "must be >= 0")
        if self.max_unreadable_images < 0:
            bad("max_unreadable_images", "must be >= 0 (0 = stop at the first unreadable image)")
        for name in ("checkpoint_every", "checkpoint_every_epochs", "log_every", "eval_every"):
            if getattr(self, name) < 0:
                bad(name, "must be >= 0 (0 = off)")
        if self.log_every < 1:
            bad("log_every", "must be >= 1")


# ---------------------------------------------------------------------------------------- experiment
@dataclass
class ExperimentConfig:
    """The whole experiment; see the module docstring. ``model`` is a ``darkseg.models.ModelConfig``,
    ``synth`` a ``darkseg.synth.SynthConfig`` or None."""

    name: str = "experiment"
    model: Any = None
    synth: Any = None
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    output_dir: str | None = None

    def validate(self) -> None:
        self.data.validate()
        self.train.validate()
        if self.train.dsl and self.synth is None:
            raise ConfigError(
                "train.dsl: DSL needs clean/noisy pairs; add a synth section or set train.dsl=false"
            )
        in_ch = getattr(self.model, "in_channels", 3)
        if self.synth is not None:
            want = 4 if self.synth.output == "packed" else 3
            if in_ch != want:
                raise ConfigError(
                    f"model.in_channels: synth.output={self.synth.output!r} gives "
                    f"{want}-channel images but the model expects {in_ch}"
                )
        elif in_ch != 3:
            raise ConfigError("model.in_channels: without synthesis the inputs are 3-channel sRGB images")
        if self.data.val is not None and self.data.val_view != "image" and self.synth is None:
            raise ConfigError(f"data.val_view: {self.data.val_view!r} needs a synth section")
        if self.data.val is not None and self.data.val_view == "image" and in_ch == 4:
            raise ConfigError(
                "data.val_view: a packed-RAW (4-channel) model cannot be evaluated on stored "
                "3-channel images; use noisy or clean"
            )
        for where, ds in (("data.train", self.data.train), ("data.val", self.data.val)):
            if (
                ds is not None
                and ds.class_names is not None
                and len(ds.class_names) != len(self.model.class_names)
            ):
                raise ConfigError(
                    f"{where}.class_names: {len(ds.class_names)} names but the model has "
                    f"{len(self.model.class_names)} classes"
                )

    def to_dict(self) -> dict[str, Any]:
        """Plain-Python dict (YAML/JSON-serialisable) that :meth:`from_dict` reads back."""
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["model"] = self.model.to_dict()
        d["synth"] = None if self.synth is None else self.synth.to_dict()
        d["data"] = dataclasses.asdict(self.data)
        d["train"] = dataclasses.asdict(self.train)
        return _plain(d)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "<dict>") -> ExperimentConfig:
        """Build and validate from a nested dict; errors name ``source`` (a file or ``--set`` item)."""
        from darkseg.models import ModelConfig

        if not isinstance(d, dict):
            raise ConfigError(f"{source}: the top level must be a mapping, got {type(d).__name__}")
        d = copy.deepcopy(d)
        _check_keys(cls, d, "", source)
        model = _build_section(ModelConfig, d.pop("model", None) or {}, "model", source)
        synth = _synth_section(d.pop("synth", None), source)
        data = _build(
            DataConfig, _drop_resize_copies(d.pop("data", None) or {}, model, source), "data", source
        )
        train = _build(TrainConfig, d.pop("train", None) or {}, "train", source)
        top = {k: _coerce(v, _hints(cls)[k], k, source) for k, v in d.items()}
        cfg = cls(model=model, synth=synth, data=data, train=train, **top)
        try:
            cfg.validate()
        except ConfigError as exc:
            raise ConfigError(f"{source}: {exc}") from exc
        return cfg


# ------------------------------------------------------------------------------ dict -> dataclass
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _build_section(cls: type, d: Any, where: str, source: str):
    """A ``model`` / ``synth`` dataclass from its YAML mapping: keys and types checked like the other
    sections (:func:`_build`), then the class's own validation; its errors name ``where`` and ``source``."""
    try:
        return _build(cls, d, where, source)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: {where}: {exc}") from exc


def _drop_resize_copies(data: Any, model: Any, source: str) -> Any:
    """``data.min_size`` / ``data.max_size`` of older configs: the model's box is the one resize setting,
    so an equal value is dropped and a different one refused naming both keys."""
    if not isinstance(data, dict):
        return data  # _build reports it
    data = dict(data)
    for key in ("min_size", "max_size"):
        if key in data:
            value = data.pop(key)
            if value != getattr(model, key):
                raise ConfigError(
                    f"{source}: data.{key} ({value!r}) differs from model.{key} ({getattr(model, key)!r}); "
                    f"the model's box is the one resize setting: set model.{key} and drop data.{key}"
                )
    return data


def _synth_section(synth_d: Any, source: str):
    """The ``synth`` section as a ``SynthConfig`` (checked: keys, types, camera, ratio range), or None."""
    from darkseg.synth import SynthConfig

    if synth_d is None:
        return None
    if not isinstance(synth_d, dict):
        raise ConfigError(f"{source}: synth: must be a mapping or null, got {synth_d!r}")
    _check_synth_values(synth_d, source)
    return _build_section(SynthConfig, synth_d, "synth", source)


def _check_synth_values(d: dict[str, Any], source: str) -> None:
    """Catch at load what synthesis would refuse only when training starts: the camera profile
    (``synth.camera``, a shipped name or a profile JSON) and the exposure-ratio range."""
    from darkseg.synth import load_camera

    if "ratio_range" in d:
        lo_hi = _coerce(d["ratio_range"], tuple[float, float], "synth.ratio_range", source)
        if not 0 < lo_hi[0] <= lo_hi[1]:
            raise ConfigError(
                f"{source}: synth.ratio_range: need [lo, hi] with 0 < lo <= hi, got {d['ratio_range']!r}"
            )
    if "camera" in d:
        camera = _coerce(d["camera"], str, "synth.camera", source)
        try:
            load_camera(camera)
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(f"{source}: synth.camera: {exc}") from exc


def _check_keys(cls: type, d: dict[str, Any], where: str, source: str) -> None:
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        prefix = f"{where}." if where else ""
        names = ", ".join(f"'{prefix}{k}'" for k in unknown)
        raise ConfigError(
            f"{source}: unknown key {names}; known keys{' of ' + where if where else ''}: {sorted(known)}"
        )


def _build(cls: type, d: Any, where: str, source: str):
    if not isinstance(d, dict):
        raise ConfigError(f"{source}: {where}: must be a mapping, got {d!r}")
    _check_keys(cls, d, where, source)
    hints = _hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}", source) for k, v in d.items()}
    return cls(**kwargs)


def _coerce(value: Any, tp: Any, where: str, source: str) -> Any:
    """Check/convert a YAML value against a type hint (dataclasses, Optional, list, dict, scalars)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where, source)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{source}: {where}: {value!r} is not a valid {_tname(tp)}"
        )
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, where, source)
    if tp is Any:
        return value
    if origin in (list, tuple):
        return _coerce_sequence(value, tp, where, source)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {where}: expected a mapping, got {value!r}")
        _, a = typing.get_args(tp) or (Any, Any)
        return {str(k): _coerce(v, a, f"{where}.{k}", source) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():
                return int(value)
            raise ConfigError(f"{source}: {where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        number = _as_float(value)
        if number is None:
            raise ConfigError(f"{source}: {where}: expected a number, got {value!r}")
        if not math.isfinite(number):
            raise ConfigError(f"{source}: {where}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {where}: expected a string, got {value!r}")
        return value
    return value


def _as_float(value: Any) -> float | None:
    """``value`` as a float, or None; YAML 1.1 reads ``1e-4`` (no dot) as a string, so numeric strings
    are accepted."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _coerce_sequence(value: Any, tp: Any, where: str, source: str) -> list | tuple:
    """A YAML list checked against ``list[X]``, ``tuple[X, ...]`` or ``tuple[X, Y]``.

    A single value where a list is expected is refused, not wrapped: ``class_names: person`` (or
    ``--set model.class_names=person``) would otherwise become the six classes p, e, r, s, o, n.
    """
    if isinstance(value, str):
        raise ConfigError(
            f"{source}: {where}: expected a list, got the string {value!r}; write [{value}] for a "
            "one-element list"
        )
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{source}: {where}: expected a list, got {value!r}")
    args = typing.get_args(tp) or (Any,)
    if typing.get_origin(tp) is list:
        return [_coerce(v, args[0], f"{where}[{i}]", source) for i, v in enumerate(value)]
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(_coerce(v, args[0], f"{where}[{i}]", source) for i, v in enumerate(value))
    if len(value) != len(args):
        raise ConfigError(f"{source}: {where}: expected a list of {len(args)} values, got {value!r}")
    return tuple(_coerce(v, a, f"{where}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))


def _tname(tp: Any) -> str:
    return str(tp).replace("typing.", "")


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------ loading
class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that repeats a key (plain PyYAML keeps the last value
    silently). ``source`` names the file (or ``--set`` item) in the error."""

    source = "<yaml>"

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # "<<: *base" merges; keys written after it may override the merged ones
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                if key in first_line:
                    where = f"at line {line} (first at line {first_line[key]})"
                    raise ConfigError(f"{self.source}: duplicate key {key!r} {where}")
            except TypeError:
                continue  # an unhashable key: PyYAML reports it below
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def _load_yaml(text: str, source: str) -> Any:
    """Parse YAML ``text`` safely, refusing repeated keys; errors name ``source``."""
    loader = _UniqueKeyLoader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def packaged_configs() -> list[str]:
    """Names of the configs shipped in ``darkseg/configs`` (without ``.yaml``)."""
    root = resources.files("darkseg") / "configs"
    return sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith(".yaml"))


def _resolve_path(path: str | os.PathLike) -> Path:
    p = Path(path)
    if p.is_file():
        return p
    name = p.name[:-5] if p.name.endswith(".yaml") else p.name
    if p.parent == Path(".") and name in packaged_configs():
        return Path(str(resources.files("darkseg") / "configs" / f"{name}.yaml"))
    names = ", ".join(packaged_configs())
    raise FileNotFoundError(f"{path}: no such config file (packaged configs: {names})")


def apply_overrides(d: dict[str, Any], overrides: list[str] | None) -> dict[str, Any]:
    """Apply ``"a.b.c=value"`` items (value parsed as YAML) to a nested dict; returns a new dict.

    Only existing sections are walked into; a missing or ``null`` intermediate section becomes ``{}``
    (so ``synth.camera=SonyA7S2`` enables synthesis with that camera). Key validity is checked later
    by :meth:`ExperimentConfig.from_dict`, which names the ``--set`` item.
    """
    d = copy.deepcopy(d)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.lr=0.02")
        key, raw = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if not key or any(not p for p in parts):
            raise ConfigError(f"--set {item!r}: malformed key {key!r}")
        try:
            value = _load_yaml(raw, f"--set {item!r}") if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"--set {item!r}: value is not valid YAML ({exc})") from exc
        node = d
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(parts[: i + 1])} is not a section")
            node = nxt
        node[parts[-1]] = value
    return d


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` deep-merged onto ``base``: mappings merge key by key (a mapping holding ``_delete_: true``
    replaces the base's instead), anything else (lists, scalars, null) replaces."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and v.get("_delete_") is True:
            out[k] = {kk: vv for kk, vv in v.items() if kk != "_delete_"}
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = v
    return out


def _base_path(value: Any, p: Path) -> Path:
    """Where ``_base_: value`` of file ``p`` points: a file relative to ``p``'s folder (``.yaml`` may be
    left out), else a packaged config name."""
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{p}: _base_: expected a config name or a relative path, got {value!r}")
    for candidate in (p.parent / value, p.parent / f"{value}.yaml"):
        if candidate.is_file():
            return candidate
    name = value[:-5] if value.endswith(".yaml") else value
    if name in packaged_configs():
        return Path(str(resources.files("darkseg") / "configs" / f"{name}.yaml"))
    raise ConfigError(
        f"{p}: _base_: no config {value!r} next to the file nor packaged ({', '.join(packaged_configs())})"
    )


def read_config_dict(path: str | os.PathLike, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The plain dict of a YAML config file (path or packaged name) with its ``_base_`` chain resolved.

    ``_base_: NAME`` (a packaged config, or a path relative to the file) makes the file state only what
    differs: its mappings are deep-merged onto the base's (:func:`_merge`), lists and scalars replace.
    A cycle is refused naming the files in order.
    """
    p = _resolve_path(path) if not _chain else Path(path)
    if p.resolve() in _chain:
        names = " -> ".join(str(f) for f in (*_chain, p.resolve()))
        raise ConfigError(f"{p}: _base_ cycle: {names}")
    try:
        raw = _load_yaml(p.read_text(encoding="utf-8"), str(p))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: malformed YAML: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: the top level must be a mapping, got {type(raw).__name__}")
    if "_base_" not in raw:
        return raw
    base = read_config_dict(_base_path(raw.pop("_base_"), p), (*_chain, p.resolve()))
    return _merge(base, raw)


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> ExperimentConfig:
    """Read a YAML config (file path or packaged name), apply overrides, validate.

    Raises:
        FileNotFoundError: no such file / packaged config.
        ConfigError: malformed YAML, a repeated key (file, key and line named), a missing or cyclic
            ``_base_``, unknown key, bad type or value, unknown camera, empty or reversed
            ``synth.ratio_range``, ``data.min_size``/``max_size`` unequal to the model's (message names
            key and file).
    """
    p = _resolve_path(path)
    raw = read_config_dict(p)
    if overrides:
        merged = apply_overrides(raw, overrides)
        return ExperimentConfig.from_dict(merged, source=f"{p} with --set {' '.join(overrides)}")
    return ExperimentConfig.from_dict(raw, source=str(p))


def load_synth_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None):
    """The ``synth`` section of a config (``darkseg synth --config/--set``): a ``SynthConfig`` or None.

    Only that section of the file (path or packaged name, ``_base_`` resolved) is read and checked, so a
    file holding just ``synth:`` works; without ``path`` the defaults are the start. ``overrides`` are
    ``synth.KEY=VALUE`` items as for :func:`load_config`; other keys are refused.
    """
    for item in overrides or []:
        if item.split("=", 1)[0].strip().split(".")[0] != "synth":
            raise ConfigError(f"--set {item!r}: darkseg synth reads only the synth section (synth.KEY=VALUE)")
    if path is None:
        d, source = {"synth": {}}, "<defaults>"
    else:
        raw = read_config_dict(path)
        d, source = {"synth": raw.get("synth")}, str(_resolve_path(path))
    if overrides:
        d = apply_overrides(d, overrides)
        source = f"{source} with --set {' '.join(overrides)}"
    return _synth_section(d["synth"], source)


def config_to_yaml(cfg: ExperimentConfig) -> str:
    """The resolved config as YAML text (written to ``<out>/config.yaml`` by training)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
