"""Run-time choices: device selection, seeding, the CPU memory allocator."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import random
import signal
import sys
import threading
import time

import numpy as np
import torch

__all__ = ["resolve_device", "seed_everything", "mix_seed", "keep_freed_memory", "exit_with_parent"]

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """Pick the compute device.

    ``None`` or ``"auto"`` -> CUDA when available, else CPU.

    Raises:
        darkseg.errors.DeviceError: an unknown device name, ``cuda`` without a CUDA device, or a GPU
            index this machine does not have (one line that says to use ``--device cpu``).
    """
    from darkseg.errors import DeviceError

    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise DeviceError(f"unknown device {str(device)!r}; use auto, cpu, cuda or cuda:N") from exc
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise DeviceError(f"no CUDA device on this machine (device {str(device)!r}); use --device cpu")
        if dev.index is not None and dev.index >= count:
            raise DeviceError(
                f"device {str(device)!r}: this machine has {count} CUDA device(s) (cuda:0..cuda:{count - 1})"
            )
    return dev


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and PyTorch (all devices); optionally request deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)


def mix_seed(*values: int) -> int:
    """Deterministic 63-bit seed from integers (splitmix64 mixing): independent streams per key."""
    x = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    for v in values:
        x = (x ^ (int(v) & mask)) & mask
        x = (x + 0x9E3779B97F4A7C15) & mask
        z = x
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        x = z ^ (z >> 31)
    return x & ((1 << 63) - 1)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep freed memory for reuse instead of returning it to the OS.

    By default glibc serves every large tensor with a fresh ``mmap`` and unmaps it when freed, so each
    training step page-faults its whole working set again (several GB for Mask R-CNN at 600x400): on
    CPU this made a DSL step 2.1-2.3x a plain step instead of 2.0x (docs/benchmarks.md). After this call
    large blocks come from the heap and freed memory stays mapped (peak RSS is unchanged; memory is not
    returned to the OS before the process ends). Process-wide and idempotent; called by CPU training.
    Returns False (and does nothing) where the C library is not glibc.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_MAX, 0) == 1  # no mmap for large blocks: heap memory is reused
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1  # never shrink the heap
    ok &= mallopt(_M_TOP_PAD, 256 * 2**20) == 1  # grow the heap in 256 MiB steps
    return bool(ok)


def exit_with_parent(parent_pid: int, poll_seconds: float = 0.5) -> bool:
    """End this (worker) process as soon as the process ``parent_pid`` is gone, however it died.

    A worker pool's processes otherwise outlive a parent killed with SIGKILL (each holding its memory)
    until they happen to touch a closed pipe. On Linux the kernel is asked to send SIGKILL when the
    parent dies (``prctl(PR_SET_PDEATHSIG)``); everywhere a daemon thread also polls the parent pid and
    exits when this process has been re-parented (the fallback for other systems and for the
    parent-thread subtlety of ``PR_SET_PDEATHSIG``). Call it first thing in the worker initializer.

    Returns:
        Whether the kernel hook was installed (Linux with a usable libc).
    """
    hooked = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            hooked = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            hooked = False
    if os.getppid() != parent_pid:  # the parent died before the hook was in place
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="darkseg-parent-watchdog", daemon=True).start()
    return hooked
