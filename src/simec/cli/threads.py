"""CPU threads for torch on a shared machine.

On a machine whose cores are busy with other processes, torch's OpenMP threads spin-wait for
each other at every parallel region: with two threads on two loaded cores ``simec demo`` ran
about 10x slower than with one (see README, "Reliability"). The command line therefore picks
the thread count from the cores this process may use and the current load, unless the user
chose (``OMP_NUM_THREADS``, ``--threads``); ``simec/__init__`` also asks OpenMP to sleep rather
than spin while waiting (``OMP_WAIT_POLICY=PASSIVE``) unless the environment says otherwise.
"""

from __future__ import annotations

import math
import os

__all__ = ["available_cpus", "choose_threads", "configure_threads"]


def available_cpus() -> int:
    """The cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def choose_threads(cpus: int, load: float) -> int:
    """The idle cores: ``cpus`` minus the 1-minute load (rounded), between 1 and ``cpus``."""
    if not math.isfinite(load) or load < 0:
        load = 0.0
    return max(1, min(cpus, cpus - math.floor(load + 0.5)))


def configure_threads(requested: int | None = None) -> int | None:
    """Set torch's thread count: ``requested`` if given, else nothing when OMP_NUM_THREADS is
    set, else :func:`choose_threads` of this machine now. Returns the count set (or None)."""
    import torch

    if requested is None and os.environ.get("OMP_NUM_THREADS"):
        return None
    if requested is None:
        try:
            load = os.getloadavg()[0]
        except OSError:  # pragma: no cover - no load average
            load = 0.0
        requested = choose_threads(available_cpus(), load)
    torch.set_num_threads(requested)
    return requested
