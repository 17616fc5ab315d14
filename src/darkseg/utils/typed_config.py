"""Plain data (parsed YAML or JSON) -> typed settings dataclasses: darkseg's one settings loader.

:func:`load_dataclass` builds a dataclass from a mapping: unknown keys are refused with the list of the
known ones, a missing required one is named, every value is checked and converted against its field's
type hint (nested dataclasses, ``X | None`` and other unions, ``list[X]``, ``tuple[X, ...]``,
``tuple[X, Y]``, ``dict[str, X]``, bool / int / float / str), then the dataclass checks its own values.
Every error is a :class:`~darkseg.errors.ConfigError` naming the source and the key's full path::

    cfg.yaml: data.train.image_dir: required

:class:`Settings` is the base of the settings dataclasses and their one validation convention:
constructing one runs its :meth:`~Settings.validate`, which raises ``ConfigError(problem, key)`` with
the key relative to the dataclass. Built in code the message names the class
(``ModelConfig: depth: must be one of 18, 34, 50, 101 (got 19)``); built by the loader, the file and
the section path (``cfg.yaml: model.depth: ...``).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from typing import Any, TypeVar

from darkseg.errors import ConfigError, cut_text, short_repr

__all__ = ["Settings", "load_dataclass", "load_value", "check_keys"]

T = TypeVar("T")


class Settings:
    """Base of darkseg's settings dataclasses (``ModelConfig``, ``SynthConfig``, ``DataConfig``, ...).

    A subclass puts every check of its own values in :meth:`validate`; one that normalises values given
    in code (a tuple where a list is kept, ...) does so in its own ``__post_init__`` and then calls this
    one. Checks that span sections belong to the dataclass holding them (``ExperimentConfig``).
    """

    def __post_init__(self) -> None:
        try:
            self.validate()
        except ConfigError as exc:
            raise ConfigError(exc.problem, exc.key, exc.source or type(self).__name__) from None

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the field (relative to this dataclass) of the first bad value."""

    def invalid(self, name: str, problem: str) -> ConfigError:
        """The error for field ``name``: ``problem`` followed by the value it has."""
        return ConfigError(f"{problem} (got {short_repr(getattr(self, name))})", name)

    @classmethod
    def from_dict(cls: type[T], data: Any, source: str = "", where: str = "") -> T:
        """Build from plain data (:func:`load_dataclass`); errors name ``source`` (default: the class)
        and the keys below ``where``."""
        return load_dataclass(cls, data, where, source)


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where and key else where or key


def check_keys(cls: type, data: dict[Any, Any], where: str = "", source: str = "") -> None:
    """Refuse keys of ``data`` that are not init fields of dataclass ``cls``, listing the known ones."""
    known = sorted(f.name for f in dataclasses.fields(cls) if f.init)
    unknown = sorted((k for k in data if k not in known), key=str)
    if unknown:
        names = ", ".join(f"'{_join(where, cut_text(str(k)))}'" for k in unknown[:5])
        if len(unknown) > 5:
            names += f" and {len(unknown) - 5} more"
        of = f" of {where}" if where else ""
        raise ConfigError(f"unknown key {names}; known keys{of}: {known}", source=source or cls.__name__)


def load_dataclass(cls: type[T], data: Any, where: str = "", source: str = "") -> T:
    """Dataclass ``cls`` built from the mapping ``data`` (see the module docstring).

    Args:
        where: the section's dotted path, put before every key in the errors (``""`` at the top).
        source: the file or ``--set`` item named first in the errors; default: the class name.
    """
    source = source or cls.__name__
    if not isinstance(data, dict):
        raise ConfigError(f"must be a mapping, got {short_repr(data)}", where, source)
    check_keys(cls, data, where, source)
    hints = typing.get_type_hints(cls)
    kwargs = {k: load_value(v, hints[k], _join(where, k), source) for k, v in data.items()}
    for f in dataclasses.fields(cls):
        no_default = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if f.init and no_default and f.name not in kwargs:
            raise ConfigError("required", _join(where, f.name), source)
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # the class's own checks: keys relative to it
        raise ConfigError(exc.problem, _join(where, exc.key), source) from None


def load_value(value: Any, tp: Any, where: str, source: str) -> Any:
    """``value`` checked against the type hint ``tp`` and converted (a mapping to a dataclass, a list to
    a tuple, an integral float to an int, a numeric string to a float); errors name ``where``."""
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
                return load_value(value, a, where, source)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(
            f"{short_repr(value)} is not a valid {str(tp).replace('typing.', '')}", where, source
        )
    if dataclasses.is_dataclass(tp):
        return value if isinstance(value, tp) else load_dataclass(tp, value, where, source)
    if tp is Any:
        return value
    if origin in (list, tuple):
        return _load_sequence(value, tp, where, source)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"expected a mapping, got {short_repr(value)}", where, source)
        _, a = typing.get_args(tp) or (Any, Any)
        return {str(k): load_value(v, a, f"{where}.{k}", source) for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"expected true/false, got {short_repr(value)}", where, source)
        return value
    if tp is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"expected an integer, got {short_repr(value)}", where, source)
    if tp is float:
        number = _as_float(value)
        if number is None:
            raise ConfigError(f"expected a number, got {short_repr(value)}", where, source)
        if not math.isfinite(number):
            raise ConfigError(f"expected a finite number, got {short_repr(value)}", where, source)
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"expected a string, got {short_repr(value)}", where, source)
        return value
    return value


def _as_float(value: Any) -> float | None:
    """``value`` as a float, or None; YAML 1.1 reads ``1e-4`` (no dot) as a string, so numeric strings
    are accepted."""
    if isinstance(value, bool):
        return None
    if isinstance(value, numbers.Real):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _load_sequence(value: Any, tp: Any, where: str, source: str) -> list | tuple:
    """A list checked against ``list[X]``, ``tuple[X, ...]`` or ``tuple[X, Y]``.

    A single value where a list is expected is refused, not wrapped: ``class_names: person`` (or
    ``--set model.class_names=person``) would otherwise become the six classes p, e, r, s, o, n.
    """
    if isinstance(value, str):
        item = cut_text(value)
        raise ConfigError(
            f"expected a list, got the string {short_repr(value)}; write [{item}] for a one-element list",
            where,
            source,
        )
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"expected a list, got {short_repr(value)}", where, source)
    args = typing.get_args(tp) or (Any,)
    if typing.get_origin(tp) is list:
        return [load_value(v, args[0], f"{where}[{i}]", source) for i, v in enumerate(value)]
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(load_value(v, args[0], f"{where}[{i}]", source) for i, v in enumerate(value))
    if len(value) != len(args):
        raise ConfigError(f"expected a list of {len(args)} values, got {short_repr(value)}", where, source)
    return tuple(load_value(v, a, f"{where}[{i}]", source) for i, (v, a) in enumerate(zip(value, args)))
