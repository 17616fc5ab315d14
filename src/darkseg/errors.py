"""The base of darkseg's own error types.

Every error darkseg raises on purpose (bad input, bad file, bad setting, a run that cannot go on)
derives from :class:`DarkSegError` as well as from the built-in type it always had (``ValueError``,
``RuntimeError``), so existing ``except ValueError`` code keeps working and the command line can catch
all of them in one place and print their one-line message instead of a traceback.
"""

from __future__ import annotations

__all__ = ["DarkSegError", "ConfigError", "DeviceError", "OutputError", "RunFolderError"]


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
