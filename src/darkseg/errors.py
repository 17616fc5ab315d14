"""The base of darkseg's own error types.

Every error darkseg raises on purpose (bad input, bad file, bad setting, a run that cannot go on)
derives from :class:`DarkSegError` as well as from the built-in type it always had (``ValueError``,
``RuntimeError``), so existing ``except ValueError`` code keeps working and the command line can catch
all of them in one place and print their one-line message instead of a traceback.
"""

from __future__ import annotations

import reprlib
from typing import Any

__all__ = [
    "DarkSegError",
    "ConfigError",
    "DeviceError",
    "OutputError",
    "RunFolderError",
    "ECHO_LIMIT",
    "cut_text",
    "short_repr",
]

#: The most characters of a value that an error message repeats (:func:`short_repr`).
ECHO_LIMIT = 80


def cut_text(text: str, limit: int = ECHO_LIMIT) -> str:
    """``text`` itself when at most ``limit`` characters, else its first ``limit - 3`` and ``...``."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short_repr(value: Any, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)`` cut to at most ``limit`` characters (``...`` at the end when cut).

    Built with :mod:`reprlib`, which looks at only the first few items and levels of a container, so a
    huge or deeply nested value (a YAML alias bomb, a 100 MB string, a 10 000-level list) costs no more
    than a short one. Every error message that repeats a value from a file uses it.
    """
    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother, r.maxlong = 3, limit, limit, limit
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = r.maxfrozenset = r.maxdeque = r.maxarray = 8
    try:
        text = r.repr(value)
    except Exception:  # noqa: BLE001 - e.g. an int past Python's digit limit: name its type only
        text = f"<{type(value).__name__}>"
    return cut_text(text, limit)


class DarkSegError(Exception):
    """Base class of darkseg's errors; the message names the file, entry or setting and the problem."""


class DeviceError(DarkSegError, RuntimeError):
    """The requested compute device does not exist on this machine (e.g. ``cuda`` without a GPU)."""


class OutputError(DarkSegError, ValueError):
    """An output path would write over an input, over a file the job did not write, or is no place to
    write (the file-system root, a folder given as a file); the message names the path
    (:mod:`darkseg.utils.outputs`)."""


class RunFolderError(OutputError):
    """An output folder already holds a run that the job would mix with or overwrite."""


class ConfigError(DarkSegError, ValueError):
    """A setting is unknown or invalid: the one error type of every settings dataclass and of the loader
    (:mod:`darkseg.utils.typed_config`).

    The message is ``SOURCE: KEY: PROBLEM`` (empty parts left out). ``source`` is where the values came
    from: a YAML file, a ``--set`` item, or the dataclass they were given to in code; ``key`` the
    setting's dotted path (``data.train.image_dir``), relative to the dataclass that raised the error
    until the loader puts the section path in front; ``problem`` what is wrong.
    """

    def __init__(self, problem: str, key: str = "", source: str = "") -> None:
        super().__init__(": ".join(part for part in (source, key, problem) if part))
        self.problem, self.key, self.source = problem, key, source

    def __reduce__(self):  # keep the parts through pickling (DataLoader workers)
        return type(self), (self.problem, self.key, self.source)
