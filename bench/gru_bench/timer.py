"""Wall-clock and CPU-time samples of a call, with the device's queued work inside the timed region.

Framework-free: the worker passes the backend's ``sync`` in.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np


def check_count(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int, or ``ValueError`` naming ``name`` when it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r}: expected an integer >= {minimum}")
    return int(value)


def time_calls(fn: Callable[[], Any], n: int, sync: Callable[[], Any] | None = None) -> list[float]:
    """``n`` wall-clock samples (seconds) of ``fn()``; ``sync()`` before each (untimed) and after each (timed:
    the call is not over until the device's queued work is)."""
    n = check_count("n", n)
    sync = sync or (lambda: None)
    samples: list[float] = []
    for _ in range(n):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - t0)
    return samples


def time_calls_cpu(fn: Callable[[], Any], n: int,
                   sync: Callable[[], Any] | None = None) -> tuple[list[float], list[float]]:
    """As ``time_calls``, plus the process CPU seconds (all threads) of each call: a second channel that a busy
    machine disturbs less than wall time."""
    n = check_count("n", n)
    sync = sync or (lambda: None)
    wall: list[float] = []
    cpu: list[float] = []
    for _ in range(n):
        sync()
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        sync()
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu



__all__ = ["check_count", "time_calls", "time_calls_cpu"]
