"""``argparse`` helpers of the commands: types that check the range of numeric flags, so a bad value is
refused before any work, and the ``--set KEY=VALUE`` option of the config-reading commands.

A value out of range gives argparse's one-line ``darkseg <command>: error: argument --flag: ...`` and
exit status 2.
"""

from __future__ import annotations

import argparse
import math

__all__ = [
    "positive_int",
    "non_negative_int",
    "probability",
    "open_probability",
    "positive_float",
    "webcam_index",
    "add_set_option",
    "add_threads_option",
]


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not {'an integer' if kind is int else 'a number'}"
        ) from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (counts, sizes, batch sizes)."""
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (worker counts: 0 = in the main process)."""
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {value}")
    return value


def probability(text: str) -> float:
    """A number in [0, 1] (score thresholds)."""
    value = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value


def open_probability(text: str) -> float:
    """A number in (0, 1) (mask thresholds: 0 gives whole-image masks, 1 empty masks)."""
    value = _number(text, float)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1), got {value}")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (exposure ratios)."""
    value = _number(text, float)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {value}")
    return value


def ratio_or_auto(text: str) -> float | str:
    """An exposure gain: a finite number > 0, or ``"auto"`` (see ``darkseg.raw.exposure``)."""
    from darkseg.raw.exposure import parse_ratio

    try:
        return parse_ratio(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def webcam_index(text: str) -> int:
    """A webcam index, 0..99 (``darkseg.engine.video.MAX_WEBCAM_INDEX``: OpenCV reads larger numbers as a
    capture backend plus an index, and some backends crash on a negative one)."""
    value = _number(text, int)
    if not 0 <= value <= 99:
        raise argparse.ArgumentTypeError(f"must be a webcam index 0..99, got {value}")
    return value


def add_set_option(parser: argparse.ArgumentParser, example: str, dest: str = "set") -> None:
    """``--set KEY=VALUE`` (repeatable): config overrides, parsed by ``darkseg.config.apply_overrides``."""
    parser.add_argument(
        "--set",
        dest=dest,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config entry, e.g. --set {example} (repeatable)",
    )


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: CPU threads of the job (``darkseg.utils.threads``; default: the free CPUs)."""
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="CPU threads for torch and OpenCV (default: OMP_NUM_THREADS if set, else the CPUs this "
        "process may use minus those busy with other work, at least 1)",
    )
