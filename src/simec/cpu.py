"""CPU threads for torch: an explicit choice, never made when simec is imported.

Importing simec changes nothing in the process (no environment variable, no torch setting).
The command line calls :func:`configure_cpu` once per command; a Python user may call it too::

    >>> import simec
    >>> simec.configure_cpu()          # as many torch threads as there are idle cores now
    >>> simec.configure_cpu(threads=1) # or a fixed count

Why: torch uses one OpenMP thread per core, and OpenMP threads wait for each other at the end of
every parallel region. On cores that other processes also use, one of two threads is often
descheduled while the other waits for it, and ``simec demo`` ran ~10x slower with two threads
than with one (README, "Reliability"). On an idle machine two threads are the fastest.
:func:`choose_threads` therefore takes the cores this process may run on and subtracts those
that *other* processes keep busy right now (:func:`busy_cores`, sampled from ``/proc/stat``
over a fraction of a second, this process's own use subtracted). The 1-minute load average,
used before, also counts a user's own previous command for a minute after it ended, and is only
the fallback where ``/proc/stat`` cannot be read.

The OpenMP wait policy (``OMP_WAIT_POLICY``: ``PASSIVE`` sleeps at once, ``ACTIVE`` spins) is read
once, when torch loads its OpenMP library, so no function called after ``import torch`` can
change it; simec leaves it to OpenMP (which spins briefly, then sleeps) unless the environment
sets it. On an idle machine ``PASSIVE`` cost 19-40% with two threads (README); with one thread,
which :func:`choose_threads` picks on a busy machine, there is no waiting to tune. To choose it
anyway, set it before Python starts: ``OMP_WAIT_POLICY=PASSIVE simec ...``.
"""

from __future__ import annotations

import math
import os
import time

__all__ = ["available_cpus", "busy_cores", "choose_threads", "configure_cpu", "cpu_ticks"]

#: seconds over which :func:`busy_cores` samples the cores' use
SAMPLE_SECONDS = 0.2


def available_cpus() -> int:
    """The cores this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def cpu_ticks(cpus: set[int] | None, stat: str = "/proc/stat") -> tuple[int, int] | None:
    """(busy, total) clock ticks since boot of the cores ``cpus`` (all when None), summed, from
    ``stat`` (``/proc/stat``); None where it cannot be read (not Linux). Idle is idle + iowait;
    busy is the rest of user, nice, system, idle, iowait, irq, softirq, steal."""
    busy = total = 0
    try:
        with open(stat) as fh:
            lines = [line.split() for line in fh if line.startswith("cpu")]
    except OSError:
        return None
    for fields in lines:
        name = fields[0]
        if name == "cpu" or not name[3:].isdigit():
            continue
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        # user nice system idle iowait irq softirq steal (guest time is inside user already)
        ticks = [int(v) for v in fields[1:9]]
        idle = ticks[3] + (ticks[4] if len(ticks) > 4 else 0)
        busy += sum(ticks) - idle
        total += sum(ticks)
    return (busy, total) if total > 0 else None


def busy_cores(seconds: float = SAMPLE_SECONDS) -> float | None:
    """How many of this process's cores other processes keep busy now: the cores' busy time
    over ``seconds`` (from ``/proc/stat``) minus this process's own CPU time, in cores. None
    where ``/proc/stat`` cannot be read."""
    try:
        mask: set[int] | None = set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        mask = None
    start = cpu_ticks(mask)
    own_start, wall_start = time.process_time(), time.monotonic()
    if start is None:
        return None
    time.sleep(seconds)
    end = cpu_ticks(mask)
    own, wall = time.process_time() - own_start, time.monotonic() - wall_start
    if end is None or end[1] <= start[1] or wall <= 0:
        return None
    cores = len(mask) if mask else (os.cpu_count() or 1)
    # the busy share of the cores' ticks, in cores, less this process's own use
    busy = cores * (end[0] - start[0]) / (end[1] - start[1]) - own / wall
    return max(0.0, busy)


def choose_threads(cpus: int, busy: float) -> int:
    """The idle cores: ``cpus`` minus the ``busy`` ones (rounded half up), between 1 and
    ``cpus``; a non-finite or negative ``busy`` counts as 0."""
    if not math.isfinite(busy) or busy < 0:
        busy = 0.0
    return max(1, min(cpus, cpus - math.floor(busy + 0.5)))


def configure_cpu(threads: int | None = None) -> int:
    """Set torch's intra-op thread count (``torch.set_num_threads``) and return it.

    ``threads``: that many. None: if ``OMP_NUM_THREADS`` is set, torch's count as it stands
    (torch read it when it loaded); else :func:`choose_threads` of this process's cores and
    the cores other processes keep busy now (:func:`busy_cores`, which waits
    ``SAMPLE_SECONDS``; the 1-minute load average where that cannot be measured): one thread
    on a machine whose cores are busy, all of them on an idle one.

    This is a process-wide torch setting: simec calls it only from the command line, never at
    import. It does not touch the OpenMP wait policy (see the module docstring).
    """
    import torch

    from .errors import InputError

    if threads is None:
        if os.environ.get("OMP_NUM_THREADS", "").strip():  # torch read it when it loaded
            return int(torch.get_num_threads())
        busy = busy_cores()
        if busy is None:
            try:
                busy = os.getloadavg()[0]
            except OSError:  # pragma: no cover - no load average either
                busy = 0.0
        threads = choose_threads(available_cpus(), busy)
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise InputError(f"threads must be a whole number >= 1, got {threads!r}")
    torch.set_num_threads(threads)
    return threads
