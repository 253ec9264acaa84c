"""System load around a case: snapshots of the load averages and of other processes' CPU use, and the verdict
whether other work competed with the case (``Load``: a busy flag and a warning)."""
from __future__ import annotations

import time
from typing import Sequence

import psutil

from .schema import Load
from .threads import fixed_threads

BUSY_CPU_PERCENT = 25.0  # other processes using more than this share of all cores -> busy (one of 4 cores)
BUSY_LOAD_FRACTION = 0.5  # 1-min load beyond our own threads above this fraction of the cores -> busy


def load_snapshot(interval: float = 0.2) -> tuple[list[float], float]:
    """``(1/5/15-min load averages, CPU %)``: the CPU % is what other processes used of the whole machine
    (0–100 % of all cores) over ``interval`` seconds — the machine's use minus this process's own (its idle
    framework threads may still spin)."""
    if not interval > 0:
        raise ValueError(f"interval={interval!r}: expected a positive number of seconds")
    me = psutil.Process()
    cores = psutil.cpu_count() or 1
    t0, w0 = me.cpu_times(), time.perf_counter()
    machine = psutil.cpu_percent(interval=interval)
    t1, w1 = me.cpu_times(), time.perf_counter()
    own = 100.0 * ((t1.user + t1.system) - (t0.user + t0.system)) / max(w1 - w0, 1e-9) / cores
    return [float(v) for v in psutil.getloadavg()], float(min(max(machine - own, 0.0), 100.0))


def assess_load(before: tuple[Sequence[float], float] | None, after: tuple[Sequence[float], float] | None,
                cores: int | None = None, own_threads: int | None = None) -> Load:
    """Two snapshots -> ``Load`` with a busy flag and a warning when other work competed with the case.

    Busy when, at either snapshot, other processes used more than ``BUSY_CPU_PERCENT`` % of the machine, or the
    1-min load average minus ``own_threads`` (this run's own recent work, which the average still holds; default:
    the thread count ``fix_threads`` set in this process) exceeded ``BUSY_LOAD_FRACTION`` of the cores.
    """
    cores = cores or psutil.cpu_count() or 1
    if own_threads is None:
        own_threads = fixed_threads() or 0
    reasons: list[str] = []
    for when, snap in (("before", before), ("after", after)):
        if snap is None:
            continue
        loads, cpu = snap
        if cpu > BUSY_CPU_PERCENT:
            reasons.append(f"other processes used {cpu:.0f} % CPU {when} the case")
        beyond = loads[0] - own_threads
        if beyond > BUSY_LOAD_FRACTION * cores:
            reasons.append(f"1-min load {loads[0]:.2f} on {cores} cores {when} the case")
    busy = bool(reasons)
    warning = f"machine busy: {'; '.join(reasons)}; timings may be noisy" if busy else None
    return Load(before=list(before[0]) if before else None, after=list(after[0]) if after else None,
                cpu_percent_before=before[1] if before else None, cpu_percent_after=after[1] if after else None,
                busy=busy, warning=warning)


__all__ = ["BUSY_CPU_PERCENT", "BUSY_LOAD_FRACTION", "assess_load", "load_snapshot"]
