"""Experiment configuration: a dataclass tree that YAML files map onto 1:1.

An :class:`ExperimentConfig` has five sections::

    name:   str                      run name (logs, summary)
    model:  darkseg.models.ModelConfig   (YAML: the ModelConfig fields)
    synth:  darkseg.synth.SynthConfig | null   (null = no low-light synthesis: train on sRGB)
    data:   darkseg.data.config.DataConfig   train / val datasets, training interpolation, flip
    train:  TrainConfig              optimiser, schedule, DSL, AMP, checkpoints, logging
    output_dir: str | null           default output folder (``darkseg train --out`` overrides it)

:func:`load_config` reads a YAML file (a path, or the name of a packaged config such as
``tiny_coco_cpu``), resolves its ``_base_`` chain (a config states only what differs from its base:
:func:`read_config_dict`), applies ``"a.b=value"`` overrides (values parsed as YAML, so
``train.lr=0.02``, ``train.lr_steps=[8,11]``, ``synth=null`` work) and builds the sections with the one
settings loader, :func:`darkseg.utils.typed_config.load_dataclass`. Each section's dataclass checks its
own values when constructed (``validate``); :meth:`ExperimentConfig.validate` checks what spans sections.
Unknown keys, wrong types and bad values raise :class:`ConfigError` (``darkseg.errors.ConfigError``,
re-exported here with ``DataConfig`` and ``DatasetConfig``) naming the file (or the ``--set`` item) and
the key: ``cfg.yaml: data.train.image_dir: required``.
The resize box is the model's alone (``model.min_size`` / ``model.max_size``): training images are
resized into it by the data pipeline and every image again by the model. ``data.min_size`` /
``data.max_size`` (older configs) are accepted only when equal to the model's and then dropped.
Relative dataset paths are resolved against the current working directory when the datasets are
built, not against the config file, so the packaged configs can name ``data/coco/...``.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from darkseg.data.config import DataConfig, DatasetConfig
from darkseg.errors import ConfigError, cut_text, short_repr
from darkseg.utils.typed_config import Settings, check_keys, load_dataclass, load_value

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
    "MAX_BASE_DEPTH",
    "MAX_YAML_DEPTH",
    "MAX_YAML_ITEMS",
]

#: Deepest nesting of a YAML config (mappings and lists; darkseg's own configs use 4 levels).
MAX_YAML_DEPTH = 32
#: Most values a YAML document may hold with every alias (``*name``) expanded: anchors and merge keys
#: (``<<: *base``) work, a "billion laughs" document is refused before anything is built from it.
MAX_YAML_ITEMS = 100_000
#: Longest ``_base_`` chain (a config, its base, the base's base, ...).
MAX_BASE_DEPTH = 16


# --------------------------------------------------------------------------------------------- train
@dataclass
class TrainConfig(Settings):
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
    ``epoch_<E>.pth``). Logs: ``log_every`` (console/bar; the files get every iteration, with the global
    gradient norm ``grad_norm`` before any clipping), ``log_grad_parts`` (loss terms, e.g. ``[loss_dsl]``,
    whose own gradient norm is logged every ``log_every`` iterations as ``grad_norm_<term>``: one extra
    backward pass each; single process only). Evaluation:
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
    log_grad_parts: list[str] = field(default_factory=list)
    eval_every: int = 0
    eval_at_end: bool = True

    def validate(self) -> None:
        if (self.max_iters is None) == (self.epochs is None):
            raise ConfigError(
                f"give exactly one of max_iters / epochs (got max_iters={self.max_iters}, "
                f"epochs={self.epochs})"
            )
        if self.max_iters is not None and self.max_iters < 1:
            raise self.invalid("max_iters", "must be >= 1")
        if self.epochs is not None and self.epochs < 1:
            raise self.invalid("epochs", "must be >= 1")
        if self.batch_size < 1:
            raise self.invalid("batch_size", "must be >= 1")
        if not self.lr > 0:
            raise self.invalid("lr", "must be > 0")
        if not 0 <= self.momentum < 1:
            raise self.invalid("momentum", "must be in [0, 1)")
        if self.weight_decay < 0:
            raise self.invalid("weight_decay", "must be >= 0")
        if any(not float(v) > 0 for v in self.lr_mult.values()):
            raise self.invalid("lr_mult", "multipliers must be > 0")
        if self.warmup_iters < 0:
            raise self.invalid("warmup_iters", "must be >= 0")
        if not 0 < self.warmup_ratio <= 1:
            raise self.invalid("warmup_ratio", "must be in (0, 1]")
        if self.lr_step_unit not in ("epoch", "iter"):
            raise self.invalid("lr_step_unit", "must be 'epoch' or 'iter'")
        if list(self.lr_steps) != sorted(self.lr_steps) or any(s < 0 for s in self.lr_steps):
            raise self.invalid("lr_steps", "must be non-negative and increasing")
        if not 0 < self.gamma <= 1:
            raise self.invalid("gamma", "must be in (0, 1]")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise self.invalid("grad_clip", "must be > 0 or null")
        if self.amp not in ("auto", True, False):
            raise self.invalid("amp", "must be auto, true or false")
        if self.train_view not in ("noisy", "clean"):
            raise self.invalid("train_view", "must be 'noisy' or 'clean'")
        if self.synth_device not in ("workers", "device"):
            raise self.invalid(
                "synth_device", "must be 'workers' (DataLoader workers) or 'device' (batched on the GPU)"
            )
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            raise self.invalid("device", "must be auto, cpu, cuda or cuda:N")
        if self.num_workers < 0:
            raise self.invalid("num_workers", "must be >= 0")
        if self.max_unreadable_images < 0:
            raise self.invalid(
                "max_unreadable_images", "must be >= 0 (0 = stop at the first unreadable image)"
            )
        for name in ("checkpoint_every", "checkpoint_every_epochs", "log_every", "eval_every"):
            if getattr(self, name) < 0:
                raise self.invalid(name, "must be >= 0 (0 = off)")
        if self.log_every < 1:
            raise self.invalid("log_every", "must be >= 1")


# ---------------------------------------------------------------------------------------- experiment
@dataclass(kw_only=True)
class ExperimentConfig(Settings):
    """The whole experiment; see the module docstring. ``model`` is a ``darkseg.models.ModelConfig``,
    ``synth`` a ``darkseg.synth.SynthConfig`` or None. Each section checked its own values when it was
    built; :meth:`validate` checks what spans sections."""

    name: str = "experiment"
    model: Any
    synth: Any = None
    data: DataConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    output_dir: str | None = None

    def validate(self) -> None:
        if self.train.dsl and self.synth is None:
            raise ConfigError(
                "DSL needs clean/noisy pairs; add a synth section or set train.dsl=false", "train.dsl"
            )
        in_ch = getattr(self.model, "in_channels", 3)
        if self.synth is not None:
            want = 4 if self.synth.output == "packed" else 3
            if in_ch != want:
                raise ConfigError(
                    f"synth.output={short_repr(self.synth.output)} gives {want}-channel images but the "
                    f"model expects {in_ch}",
                    "model.in_channels",
                )
        elif in_ch != 3:
            raise ConfigError("without synthesis the inputs are 3-channel sRGB images", "model.in_channels")
        if self.data.val is not None and self.data.val_view != "image" and self.synth is None:
            raise ConfigError(f"{short_repr(self.data.val_view)} needs a synth section", "data.val_view")
        if self.data.val is not None and self.data.val_view == "image" and in_ch == 4:
            raise ConfigError(
                "a packed-RAW (4-channel) model cannot be evaluated on stored 3-channel images; use noisy "
                "or clean",
                "data.val_view",
            )
        for where, ds in (("data.train", self.data.train), ("data.val", self.data.val)):
            if (
                ds is not None
                and ds.class_names is not None
                and len(ds.class_names) != len(self.model.class_names)
            ):
                raise ConfigError(
                    f"{len(ds.class_names)} names but the model has {len(self.model.class_names)} classes",
                    f"{where}.class_names",
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
    def from_dict(cls, d: Any, source: str = "<dict>", where: str = "") -> ExperimentConfig:
        """Build and check from a nested dict (:func:`~darkseg.utils.typed_config.load_dataclass`);
        errors name ``source`` (a file or ``--set`` item) and the key. A missing or null ``model`` /
        ``train`` section means the defaults."""
        from darkseg.models import ModelConfig

        if not isinstance(d, dict):
            raise ConfigError(f"the top level must be a mapping, got {type(d).__name__}", source=source)
        check_keys(cls, d, where, source)
        d = copy.deepcopy(d)
        d["model"] = model = load_dataclass(ModelConfig, d.get("model") or {}, "model", source)
        d["synth"] = _synth_section(d.get("synth"), source)
        d["data"] = _drop_resize_copies(d.get("data") or {}, model, source)
        d["train"] = d.get("train") or {}
        return load_dataclass(cls, d, where, source)


def _drop_resize_copies(data: Any, model: Any, source: str) -> Any:
    """``data.min_size`` / ``data.max_size`` of older configs: the model's box is the one resize setting,
    so an equal value is dropped and a different one refused naming both keys."""
    if not isinstance(data, dict):
        return data  # load_dataclass reports it
    data = dict(data)
    for key in ("min_size", "max_size"):
        if key in data:
            value = data.pop(key)
            if value != getattr(model, key):
                raise ConfigError(
                    f"data.{key} ({short_repr(value)}) differs from model.{key} "
                    f"({short_repr(getattr(model, key))}); the model's box is the one resize setting: set "
                    f"model.{key} and drop data.{key}",
                    source=source,
                )
    return data


def _synth_section(synth_d: Any, source: str):
    """The ``synth`` section as a checked ``SynthConfig``, or None for ``synth: null``."""
    from darkseg.synth import SynthConfig

    return load_value(synth_d, SynthConfig | None, "synth", source)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


# ------------------------------------------------------------------------------------ loading
class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a mapping that repeats a key (plain PyYAML keeps the last value
    silently), nesting deeper than :data:`MAX_YAML_DEPTH`, a recursive alias and a document holding
    more than :data:`MAX_YAML_ITEMS` values with its aliases expanded. ``source`` names the file (or
    ``--set`` item) in the error."""

    source = "<yaml>"
    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                line = self.peek_event().start_mark.line + 1
                raise ConfigError(
                    f"nested deeper than {MAX_YAML_DEPTH} levels (line {line})", source=self.source
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def get_single_node(self) -> yaml.Node | None:
        node = super().get_single_node()
        if node is not None:
            items, depth = _expanded_size(node, {}, set(), self.source)
            if depth > MAX_YAML_DEPTH:
                raise ConfigError(
                    f"nested deeper than {MAX_YAML_DEPTH} levels with aliases expanded", source=self.source
                )
            if items > MAX_YAML_ITEMS:
                raise ConfigError(
                    f"holds {items} values with its aliases (*name) expanded; the limit is {MAX_YAML_ITEMS}",
                    source=self.source,
                )
        return node

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
                    raise ConfigError(f"duplicate key {short_repr(key)} {where}", source=self.source)
            except TypeError:
                continue  # an unhashable key: PyYAML reports it below
            first_line[key] = line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(
    node: yaml.Node, memo: dict[int, tuple[int, int]], open_nodes: set[int], source: str
) -> tuple[int, int]:
    """``(values, depth)`` of a composed YAML node with aliases expanded (each node counted once per
    use, computed once); a recursive alias or an expanded depth past :data:`MAX_YAML_DEPTH` is
    refused, so the recursion here stays shallow."""
    key = id(node)
    if key in memo:
        return memo[key]
    if key in open_nodes:
        raise ConfigError("a recursive alias (a node that contains itself)", source=source)
    if isinstance(node, yaml.MappingNode):
        children = [n for pair in node.value for n in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = list(node.value)
    else:
        children = []
    items, depth = 1, 0
    if children:
        if len(open_nodes) >= MAX_YAML_DEPTH:
            raise ConfigError(
                f"nested deeper than {MAX_YAML_DEPTH} levels with aliases expanded", source=source
            )
        open_nodes.add(key)
        for child in children:
            n, d = _expanded_size(child, memo, open_nodes, source)
            items, depth = items + n, max(depth, d + 1)
        open_nodes.discard(key)
    memo[key] = items, depth
    return items, depth


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
            raise ConfigError("expected KEY=VALUE, e.g. train.lr=0.02", source=f"--set {short_repr(item)}")
        key, raw = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if not key or any(not p for p in parts):
            raise ConfigError(f"malformed key {short_repr(key)}", source=f"--set {short_repr(item)}")
        try:
            value = _load_yaml(raw, f"--set {short_repr(item)}") if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"value is not valid YAML ({exc})", source=f"--set {short_repr(item)}") from exc
        node = d
        for i, p in enumerate(parts[:-1]):
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError("not a section", ".".join(parts[: i + 1]), f"--set {short_repr(item)}")
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
        raise ConfigError(
            f"expected a config name or a relative path, got {short_repr(value)}", "_base_", str(p)
        )
    for candidate in (p.parent / value, p.parent / f"{value}.yaml"):
        if candidate.is_file():
            return candidate
    name = value[:-5] if value.endswith(".yaml") else value
    if name in packaged_configs():
        return Path(str(resources.files("darkseg") / "configs" / f"{name}.yaml"))
    raise ConfigError(
        f"no config {short_repr(value)} next to the file nor packaged ({', '.join(packaged_configs())})",
        "_base_",
        str(p),
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
        raise ConfigError(f"_base_ cycle: {names}", source=str(p))
    if len(_chain) >= MAX_BASE_DEPTH:
        raise ConfigError(
            f"_base_ chain longer than {MAX_BASE_DEPTH} files (started at {_chain[0]})", "_base_", str(p)
        )
    try:
        raw = _load_yaml(p.read_text(encoding="utf-8"), str(p))
    except yaml.YAMLError as exc:
        raise ConfigError(f"malformed YAML: {exc}", source=str(p)) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"the top level must be a mapping, got {type(raw).__name__}", source=str(p))
    if "_base_" not in raw:
        return raw
    base = read_config_dict(_base_path(raw.pop("_base_"), p), (*_chain, p.resolve()))
    return _merge(base, raw)


def _set_items(overrides: list[str]) -> str:
    """The ``--set`` items for an error's source, each cut to a short prefix."""
    return " ".join(cut_text(item) for item in overrides)


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
        return ExperimentConfig.from_dict(merged, source=f"{p} with --set {_set_items(overrides)}")
    return ExperimentConfig.from_dict(raw, source=str(p))


def load_synth_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None):
    """The ``synth`` section of a config (``darkseg synth --config/--set``): a ``SynthConfig`` or None.

    Only that section of the file (path or packaged name, ``_base_`` resolved) is read and checked, so a
    file holding just ``synth:`` works; without ``path`` the defaults are the start. ``overrides`` are
    ``synth.KEY=VALUE`` items as for :func:`load_config`; other keys are refused.
    """
    for item in overrides or []:
        if item.split("=", 1)[0].strip().split(".")[0] != "synth":
            raise ConfigError(
                "darkseg synth reads only the synth section (synth.KEY=VALUE)",
                source=f"--set {short_repr(item)}",
            )
    if path is None:
        d, source = {"synth": {}}, "<defaults>"
    else:
        raw = read_config_dict(path)
        d, source = {"synth": raw.get("synth")}, str(_resolve_path(path))
    if overrides:
        d = apply_overrides(d, overrides)
        source = f"{source} with --set {_set_items(overrides)}"
    return _synth_section(d["synth"], source)


def config_to_yaml(cfg: ExperimentConfig) -> str:
    """The resolved config as YAML text (written to ``<out>/config.yaml`` by training)."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
