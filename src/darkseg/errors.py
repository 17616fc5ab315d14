"""The base of darkseg's own error types.

Every error darkseg raises on purpose (bad input, bad file, bad setting, a run that cannot go on)
derives from :class:`DarkSegError` as well as from the built-in type it always had (``ValueError``,
``RuntimeError``), so existing ``except ValueError`` code keeps working and the command line can catch
all of them in one place and print their one-line message instead of a traceback.
"""

from __future__ import annotations

__all__ = ["DarkSegError", "DeviceError", "RunFolderError"]


class DarkSegError(Exception):
    """Base class of darkseg's errors; the message names the file, entry or setting and the problem."""


class DeviceError(DarkSegError, RuntimeError):
    """The requested compute device does not exist on this machine (e.g. ``cuda`` without a GPU)."""


class RunFolderError(DarkSegError, ValueError):
    """An output folder already holds a run that the job would mix with or overwrite."""
