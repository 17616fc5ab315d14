"""How many CPU threads a job uses, chosen so that it degrades gracefully on a busy machine.

PyTorch's CPU kernels run on an OpenMP team (GNU libgomp in the pip wheels) whose size is by default
the number of cores of the machine, and whose threads spin on their core while they wait for work. On a
shared 2-core machine with other CPU-bound processes that made the demo's training step 4-6x slower
with 2 threads than with 1 (19-30 s against about 5 s). With waiting threads that sleep
(``OMP_WAIT_POLICY=PASSIVE``, which the ``darkseg`` command line sets before torch starts unless the
user set it) 2 threads were within this machine's noise of 1 thread or faster (docs/benchmarks.md,
"Threads on a busy machine"). So every command chooses its thread count up front:

1. ``--threads N`` when given;
2. else ``OMP_NUM_THREADS`` when the user set it (a positive integer);
3. else the CPUs this process may use (:func:`usable_cpus`: its CPU affinity and the cgroup CPU quota);
   with spinning threads (no ``OMP_WAIT_POLICY=PASSIVE``) only those that other runnable work leaves
   free (the 1-minute load average), at least 1.

When a count the user chose (1 or 2) would spin on busy cores (more threads than free CPUs and no
``PASSIVE`` wait policy), one line on stderr says so, once, at the start of the job; the other cases
are not slowed down by the load (measured) and print nothing, so a job's stderr stays its own.
Plain functions, no module state: the caller passes what it read (load, affinity), so
every choice can be tested with made-up machines.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from darkseg.errors import ConfigError

__all__ = [
    "ThreadChoice",
    "cgroup_cpu_limit",
    "usable_cpus",
    "load_average",
    "free_cpus",
    "passive_wait",
    "choose_threads",
    "apply_threads",
    "single_thread_worker",
    "configure_threads",
    "CGROUP_CPU_MAX",
]

#: cgroup v2 CPU bandwidth limit of this process's cgroup: ``"QUOTA PERIOD"`` (microseconds) or ``"max ..."``.
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class ThreadChoice:
    """The thread count of a job and why.

    Attributes:
        threads: torch intra-op threads (>= 1).
        source: ``"--threads"``, ``"OMP_NUM_THREADS"`` or ``"default"``.
        usable: CPUs this process may run on (affinity and cgroup quota).
        free: CPUs not kept busy by other runnable work (``None``: load unknown).
        warning: the one-line oversubscription note for stderr, or ``None``.
    """

    threads: int
    source: str
    usable: int
    free: float | None
    warning: str | None = None


def cgroup_cpu_limit(path: Path = CGROUP_CPU_MAX) -> float | None:
    """The CPU quota of the cgroup in CPUs (``quota / period``), or ``None`` when unlimited or unreadable."""
    try:
        fields = path.read_text().split()
    except OSError:
        return None
    if len(fields) < 2 or fields[0] == "max":
        return None
    try:
        quota, period = float(fields[0]), float(fields[1])
    except ValueError:
        return None
    return quota / period if quota > 0 and period > 0 else None


def usable_cpus(
    affinity: set[int] | None = None, cpu_count: int | None = None, quota: float | None = None
) -> int:
    """CPUs this process may use: its CPU affinity (``os.sched_getaffinity``; ``os.cpu_count`` where that
    does not exist), capped by the cgroup CPU quota rounded up; at least 1.

    Arguments default to what this machine reports; pass them to ask about another.
    """
    if affinity is None and hasattr(os, "sched_getaffinity"):
        affinity = os.sched_getaffinity(0)
    n = len(affinity) if affinity else (cpu_count or os.cpu_count() or 1)
    if quota is None:
        quota = cgroup_cpu_limit()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota - 1e-9)))
    return max(1, n)


def load_average() -> float | None:
    """The 1-minute load average (runnable + uninterruptible tasks), or ``None`` where unavailable."""
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):
        return None


def free_cpus(usable: int, load: float | None, machine_cpus: int | None = None) -> float | None:
    """CPUs of the ``usable`` ones that other runnable work leaves free: ``machine_cpus - load``
    (the load average counts the whole machine), at most ``usable``, at least 0; ``None`` if ``load`` is.

    The caller should read the load before its own work starts, so that it counts only the others.
    """
    if load is None:
        return None
    machine = machine_cpus or os.cpu_count() or usable
    return max(0.0, min(float(usable), machine - load))


def _env_threads(env: Mapping[str, str]) -> int | None:
    text = env.get("OMP_NUM_THREADS", "").strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"OMP_NUM_THREADS={text!r} is not a positive integer; unset it or use --threads N")
    return value


def passive_wait(env: Mapping[str, str]) -> bool:
    """Whether OpenMP threads sleep while they wait (``OMP_WAIT_POLICY=PASSIVE`` in ``env``) instead of
    spinning on their core (GNU libgomp's default: spin for a while, then sleep)."""
    return env.get("OMP_WAIT_POLICY", "").strip().upper() == "PASSIVE"


def choose_threads(
    explicit: int | None,
    env: Mapping[str, str],
    usable: int,
    free: float | None,
) -> ThreadChoice:
    """The thread count: ``explicit`` (``--threads``) > ``OMP_NUM_THREADS`` in ``env`` > the default.

    The default is every ``usable`` CPU when the load is unknown or when waiting threads sleep
    (:func:`passive_wait`); with spinning threads it is the free CPUs rounded to the nearest whole one,
    at least 1 (spinning threads on busy cores made a training step 4-6x slower than one thread,
    sleeping ones were within noise of one thread or faster: docs/benchmarks.md). An explicit or
    environment count is kept as asked; when its threads would spin on busy cores (more than the free
    CPUs, no ``PASSIVE`` wait policy), the choice carries a one-line ``warning``.

    Raises:
        darkseg.errors.ConfigError: ``explicit`` < 1 (names ``--threads``) or an ``OMP_NUM_THREADS`` that
            is not a positive integer (names the variable); a ``ValueError`` too.
    """
    if explicit is not None and (isinstance(explicit, bool) or int(explicit) < 1):
        raise ConfigError(f"--threads must be an integer >= 1, got {explicit!r}")
    env_value = _env_threads(env)
    passive = passive_wait(env)
    if explicit is not None:
        source, threads = "--threads", int(explicit)
    elif env_value is not None:
        source, threads = "OMP_NUM_THREADS", env_value
    else:
        source, threads = "default", usable
    if free is None or passive or threads <= max(1.0, free) + 0.5:
        return ThreadChoice(threads, source, usable, free)  # sleeping waiters: measured harmless
    if source == "default":  # spinning threads on busy cores: use the free ones only
        return ThreadChoice(max(1, min(usable, int(math.floor(free + 0.5)))), source, usable, free)
    warning = (
        f"darkseg: warning: machine oversubscribed: {usable - free:.1f} of the {usable} usable CPUs are "
        f"busy with other work, and {threads} threads ({source}) spin while they wait; expect slow steps "
        "(set OMP_WAIT_POLICY=PASSIVE or fewer --threads)"
    )
    return ThreadChoice(threads, source, usable, free, warning)


def apply_threads(threads: int) -> dict[str, int]:
    """Use ``threads`` intra-op threads in torch (and OpenCV when it is installed), and as many inter-op
    threads while torch still allows setting them (only before its first parallel work).

    Returns:
        What was set: ``{"torch": n, "torch_interop": n or -1 (too late), "cv2": n or -1 (no OpenCV)}``.
    """
    import torch

    torch.set_num_threads(threads)
    interop = -1
    try:
        torch.set_num_interop_threads(threads)
        interop = threads
    except RuntimeError:  # inter-op pool already started: it keeps its size
        pass
    cv = -1
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None:
        cv2.setNumThreads(threads)
        cv = threads
    return {"torch": torch.get_num_threads(), "torch_interop": interop, "cv2": cv}


def single_thread_worker() -> None:
    """One torch and OpenCV thread in a worker process (DataLoader or synthesis pool): the workers
    already run in parallel with each other and the main process, and OpenCV's own thread pool is not
    safe to use in a forked child."""
    import torch

    torch.set_num_threads(1)
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        cv2.setNumThreads(1)


def configure_threads(explicit: int | None = None, env: Mapping[str, str] | None = None) -> ThreadChoice:
    """Choose (:func:`choose_threads`, from this machine's affinity, quota and load) and apply the thread
    count of this process; prints the choice's warning (if any) as one line on stderr."""
    env = os.environ if env is None else env
    usable = usable_cpus()
    choice = choose_threads(explicit, env, usable, free_cpus(usable, load_average()))
    apply_threads(choice.threads)
    if choice.warning:
        print(choice.warning, file=sys.stderr, flush=True)
    return choice
