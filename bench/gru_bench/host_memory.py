"""The process's peak resident memory in a window, and tracemalloc's peak: the probes around a case's warm-up.

Also the kernel's reset-able peak-RSS mark (``reset_hwm``/``vm_hwm``, Linux), which ``memory.py`` reads per window.
"""
from __future__ import annotations

import resource
import sys
import threading
import tracemalloc

import psutil

from .schema import MemoryFigure


def rss() -> int:
    return psutil.Process().memory_info().rss


def maxrss_bytes() -> int:
    """``ru_maxrss`` in bytes (the kernel reports KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) if sys.platform == "darwin" else int(r) * 1024


def reset_hwm() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux ``/proc/self/clear_refs`` 5); False where it can't."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def vm_hwm() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return None


class RssSampler:
    """The peak RSS seen by a thread sampling every ``interval`` s: ``start()`` returns the RSS now, ``stop()`` the
    peak since (it can miss a peak shorter than ``interval``)."""

    def __init__(self, interval: float, name: str = "gru-bench-rss") -> None:
        if not interval > 0:
            raise ValueError(f"interval={interval!r}: expected a positive number of seconds")
        self.interval, self.name = interval, name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak = 0

    @property
    def running(self) -> bool:
        return self._thread is not None

    def start(self) -> int:
        self._peak = base = rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name=self.name, daemon=True)
        self._thread.start()
        return base

    def _sample(self) -> None:
        proc = psutil.Process()
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, proc.memory_info().rss)

    def stop(self) -> int:
        self._peak = max(self._peak, rss())
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._thread = None
        return self._peak


class HostMemory:
    """The process's peak resident memory above its baseline at ``start()`` (call it after setup).

    Three figures, each labelled: a psutil sampling thread (every ``interval`` s; it can miss a peak shorter than
    that), ``resource.getrusage`` ``ru_maxrss`` (exact only when the window's peak exceeds the process's earlier
    peak, else an upper bound — the method says which), and on Linux the kernel's ``VmHWM`` mark reset at
    ``start()`` (exact). Use as a context manager (``.figures`` after the block) or ``start()`` / ``stop()``.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self._sampler = RssSampler(interval)
        self.interval = interval
        self.figures: list[MemoryFigure] = []

    def start(self) -> "HostMemory":
        if self._sampler.running:
            raise RuntimeError("HostMemory already started")
        self._hwm_reset = reset_hwm()
        self._maxrss_before = maxrss_bytes()
        self.baseline = self._sampler.start()
        return self

    def stop(self) -> list[MemoryFigure]:
        if not self._sampler.running:
            raise RuntimeError("HostMemory.stop() before start()")
        peak = self._sampler.stop()
        ms = int(round(self.interval * 1000))
        figs = [MemoryFigure(name="host_peak_rss_delta", bytes=max(peak - self.baseline, 0),
                             method=f"psutil RSS sampling every {ms} ms, peak − baseline")]
        maxrss = maxrss_bytes()
        exact = maxrss > self._maxrss_before
        bound = "" if exact else " (upper bound: earlier process peak not exceeded)"
        figs.append(MemoryFigure(name="host_maxrss_delta", bytes=max(maxrss - self.baseline, 0),
                                 method=f"resource.getrusage ru_maxrss − baseline RSS{bound}"))
        hwm = vm_hwm() if self._hwm_reset else None
        if hwm is not None:
            figs.append(MemoryFigure(name="host_vmhwm_delta", bytes=max(hwm - self.baseline, 0),
                                     method="Linux VmHWM reset at start (clear_refs 5) − baseline RSS"))
        self.figures = figs
        return figs

    def __enter__(self) -> "HostMemory":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class TraceMalloc:
    """Peak of the allocations Python and NumPy report to ``tracemalloc``, above the level at ``start()``.

    Cheap for a few large arrays, costly for many small Python objects: use it around NumPy work only."""

    def __init__(self) -> None:
        self.figures: list[MemoryFigure] = []
        self._started_here = False

    def start(self) -> "TraceMalloc":
        self._started_here = not tracemalloc.is_tracing()
        if self._started_here:
            tracemalloc.start()
        tracemalloc.reset_peak()
        self._base = tracemalloc.get_traced_memory()[0]
        return self

    def stop(self) -> list[MemoryFigure]:
        _, peak = tracemalloc.get_traced_memory()
        if self._started_here:
            tracemalloc.stop()
        self.figures = [MemoryFigure(name="tracemalloc_peak", bytes=max(peak - self._base, 0),
                                     method="tracemalloc peak − level at start (Python and NumPy allocations)")]
        return self.figures

    def __enter__(self) -> "TraceMalloc":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


__all__ = ["HostMemory", "TraceMalloc", "maxrss_bytes", "reset_hwm", "rss", "vm_hwm"]
