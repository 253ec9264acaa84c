"""Peak memory that means the same on every backend: the per-batch working set and the fixed overhead.

A backend's peak memory mixes two things: what scales with the work (the activations BPTT keeps, the gate
buffers, the gradient of each step's input: the *working set*) and what does not (framework runtime, the traced
graph and its compiler, the weights, gradients and optimizer state, kernel scratch: the *fixed overhead*). Reading
one peak as "the memory of this model" compares TF/XLA's fixed 160–190 MiB with NumPy's few MiB of activations.
This module separates the two with one method for every backend:

* a **window** is a model built fresh at batch ``b`` (``run_at(b)``: build, put a batch of ``b`` where the model
  lives, ``steps`` training steps, drop it); its figure is the peak of the window above the level at its start;
* first one unmeasured run at every size (``B``, ``2B``): tracing, compiling and kernel caches that a new input
  shape triggers are paid there, not in the 2B window (without it TF's 2B window showed a 134 MiB retrace against
  1.5 MiB at B, a "working set" that was compile cost);
* the windows run at batch ``B`` and ``2B`` (ascending), each after ``gc.collect()`` and, on glibc, ``malloc_trim``
  (so memory freed by the previous window is back with the system and not silently reused, which would hide it);
  on glibc the mmap threshold is fixed at its 128 KiB default first (``fix_mmap_threshold``): glibc otherwise raises
  it after each large free, so the 2B window's buffers would come from heap pages the B window left resident and
  the figures would depend on the order of the windows (measured: torch's GRU working set 51 MiB -> 27 MiB);
* ``working_set = peak(2B) − peak(B)``: what one more batch of B samples costs — B × what one sample keeps;
  ``fixed_overhead = peak(B) − working_set``: the intercept, what the window holds at its peak that does not scale
  with the batch. Both are clamped at zero (noise can make a tiny difference negative).

The peak reader decides what the figure sees, and it must see every allocator:

* CPU on Linux: the kernel's resident-set high-water mark ``VmHWM`` (``/proc/self/status``), reset at the start of
  each window by writing ``5`` to ``/proc/self/clear_refs`` (Linux ≥ 4.0). It counts every page the process
  touches — NumPy, PyTorch's and TensorFlow's allocators, oneDNN scratch, XLA buffers — and misses no peak, however
  short (a sampler thread can). It counts pages, not bytes: see ``RSS_FLOOR``.
* CPU elsewhere: a psutil RSS sampler (every ``interval`` s; may miss peaks shorter than that; the method says so).
* CUDA: the device allocator's own peak (the backend's ``MemoryProbe``, e.g. ``torch.cuda.max_memory_allocated``)
  reset at the start of each window — the same B/2B method on the allocator's bytes.

Why windows in one process and not B and 2B in two fresh processes (each one's lifetime ``VmHWM``): a fresh process
per size costs a framework start each (seconds for TF) per case; the reset-able ``VmHWM`` gives the same peak inside
the worker, outside the timed loop. What the in-process method cannot see: memory a framework keeps pooled between
windows and reuses (then already resident at the window's start). Measured here that is TF/Keras on the CPU: after
the warm-up runs its windows rise by ~1.5 MiB at B and 2B alike, so its ``working_set`` reads below the noise floor
(flagged), not its activations. numpy and torch free their buffers and are measured (see bench/perf/memory_figures.py).

Below ``RSS_FLOOR`` the host figure is page and allocator noise, not the work: the record says so (the figure's
``method`` ends in "below the noise floor ...") and tables show it as such.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import psutil

from .host_memory import reset_hwm, rss, vm_hwm
from .results import MemoryFigure
from .spec import ModelSpec, activation_bytes

WORKING_SET = "working_set"
FIXED_OVERHEAD = "fixed_overhead"
# The host working set below which the B/2B difference of RSS peaks is noise: page granularity (4 KiB; 2 MiB for
# NumPy's arrays of ≥ 4 MiB, which it asks the kernel to back with transparent huge pages), malloc's arena
# growth in 64 MiB-reserved / 128 KiB-trimmed steps, Python objects made by the step. Measured here: repeated
# windows at the same batch differ by up to ~0.3 MiB (bench/perf/memory_figures.py).
RSS_FLOOR = 1 << 20  # bytes
DEVICE_FLOOR = 0  # the device allocator counts bytes exactly
BELOW_FLOOR = "below the noise floor"


# ------------------------------------------------------------------------------------------------ peak readers
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name) if name else None
    except OSError:
        return None


_LIBC = _libc()
_HAS_TRIM = _LIBC is not None and hasattr(_LIBC, "malloc_trim")
_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD = 128 * 1024  # glibc's own default, made fixed


def fix_mmap_threshold() -> bool:
    """glibc: fix the mmap threshold at its 128 KiB default. glibc otherwise raises it to the size of each mmapped
    block freed (up to 32 MiB), so after the B window the 2B window's buffers come from the heap, reusing pages
    the B window left resident: the B/2B peaks would then depend on the order of the windows. Fixed, every
    buffer of 128 KiB or more is its own mapping, returned to the system when freed: RSS follows the live
    buffers. Returns whether it ran (False off glibc)."""
    if _LIBC is None or not hasattr(_LIBC, "mallopt"):
        return False
    return bool(_LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))


def release_free_memory() -> bool:
    """``gc.collect()``, then glibc's ``malloc_trim(0)``: free heap pages go back to the system (every arena).
    Returns whether the trim ran (False off glibc)."""
    gc.collect()
    if not _HAS_TRIM:
        return False
    _LIBC.malloc_trim(0)
    return True


class PeakReader:
    """``start()`` zeroes the peak and returns the level now; ``stop()`` returns the peak since ``start()``.
    ``method`` names what it reads; ``floor`` is the figure below which it is noise (bytes)."""

    method: str = "?"
    floor: int = 0

    def start(self) -> int:
        raise NotImplementedError

    def stop(self) -> int:
        raise NotImplementedError


class HostHWM(PeakReader):
    """Linux: the kernel's ``VmHWM`` reset through ``/proc/self/clear_refs`` — exact, every allocator."""

    method = "Linux VmHWM (peak RSS, reset by clear_refs 5)"
    floor = RSS_FLOOR

    @staticmethod
    def works() -> bool:
        return reset_hwm() and vm_hwm() is not None

    def start(self) -> int:
        if not reset_hwm():
            raise OSError("cannot reset the peak RSS (/proc/self/clear_refs)")
        return int(vm_hwm() or rss())  # the mark is reset to the RSS now

    def stop(self) -> int:
        return int(vm_hwm() or 0)


class HostSampler(PeakReader):
    """Elsewhere: RSS sampled by a thread every ``interval`` s (can miss a peak shorter than that)."""

    floor = RSS_FLOOR

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self.method = f"psutil RSS sampled every {interval * 1000:.0f} ms"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._peak = 0

    def _sample(self) -> None:
        proc = psutil.Process()
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, proc.memory_info().rss)

    def start(self) -> int:
        self._peak = base = rss()
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="gru-bench-ws", daemon=True)
        self._thread.start()
        return base

    def stop(self) -> int:
        self._peak = max(self._peak, rss())
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._thread = None
        return self._peak


class DevicePeak(PeakReader):
    """A device allocator's own peak (a backend's ``MemoryProbe``, the ``allocated`` counter)."""

    floor = DEVICE_FLOOR

    def __init__(self, probe: Any, sync: Callable[[], None] | None = None) -> None:
        self.probe, self.sync = probe, sync or (lambda: None)
        self.method = f"device allocator peak ({probe.method})"

    def _allocated(self) -> int:
        peaks = self.probe.peak() or {}
        return int(peaks.get("allocated", max(peaks.values(), default=0)))

    def start(self) -> int:
        self.sync()
        self.probe.reset()
        return self._allocated()  # after a reset the peak is what is allocated now

    def stop(self) -> int:
        self.sync()
        return self._allocated()


def host_reader() -> PeakReader:
    """The best host peak reader here: the kernel's reset-able high-water mark, else a sampler."""
    return HostHWM() if HostHWM.works() else HostSampler()


# --------------------------------------------------------------------------------------------------- windows
@dataclass(frozen=True)
class Window:
    batch: int
    start: int  # bytes at the window's start (after the release)
    peak: int  # the peak during the window (same counter)
    seconds: float

    @property
    def delta(self) -> int:
        return max(self.peak - self.start, 0)


def measure_window(run_at: Callable[[int], Any], batch: int, reader: PeakReader) -> Window:
    """One window: release free memory, zero the reader's peak, ``run_at(batch)`` (which builds a fresh model, runs
    its steps and drops it), read the peak."""
    t0 = time.perf_counter()
    release_free_memory()
    start = reader.start()
    try:
        run_at(batch)
    finally:
        peak = reader.stop()
    return Window(batch=batch, start=start, peak=peak, seconds=time.perf_counter() - t0)


def scaling_windows(run_at: Callable[[int], Any], batch: int, reader: PeakReader,
                    factors: Sequence[int] = (1, 2)) -> list[Window]:
    """Windows at ``factor × batch`` for each factor, ascending, after one unmeasured warm-up run at every size."""
    if batch < 1:
        raise ValueError(f"batch={batch!r}: expected a positive integer")
    if len(factors) < 2 or list(factors) != sorted(set(factors)) or factors[0] < 1:
        raise ValueError(f"factors={list(factors)!r}: expected at least two ascending positive integers")
    for f in factors:  # warm: each shape traced/compiled and its kernels' caches filled once, outside the windows
        run_at(f * batch)
    return [measure_window(run_at, f * batch, reader) for f in factors]


def fit(windows: Sequence[Window]) -> tuple[float, float]:
    """Least-squares line ``delta = fixed + per_sample · b`` through the windows -> ``(per_sample, fixed)``
    (two windows: the line through both)."""
    bs = [float(w.batch) for w in windows]
    ds = [float(w.delta) for w in windows]
    n = len(bs)
    mb, md = sum(bs) / n, sum(ds) / n
    sbb = sum((b - mb) ** 2 for b in bs)
    if sbb == 0:
        raise ValueError("windows: need at least two different batch sizes")
    slope = sum((b - mb) * (d - md) for b, d in zip(bs, ds)) / sbb
    return slope, md - slope * mb


def figures(windows: Sequence[Window], batch: int, reader: PeakReader) -> list[MemoryFigure]:
    """``working_set`` (at ``batch``) and ``fixed_overhead`` from the windows, each with its method."""
    per_sample, fixed = fit(windows)
    ws = max(int(round(per_sample * batch)), 0)
    sizes = " and ".join(f"B={w.batch}" for w in windows)
    peaks = ", ".join(f"{w.delta / 2**20:.2f}" for w in windows)
    trim = "malloc_trim + " if _HAS_TRIM and isinstance(reader, (HostHWM, HostSampler)) else ""
    how = (f"{reader.method}; fresh model at {sizes} ({trim}gc before each), peak above the window's start "
           f"= {peaks} MiB")
    note = ""
    if ws < reader.floor:
        note = f"; {BELOW_FLOOR} ({reader.floor / 2**20:.0f} MiB): not meaningful"
    return [
        MemoryFigure(name=WORKING_SET, bytes=ws, floor_bytes=reader.floor or None,
                     seconds=round(sum(w.seconds for w in windows), 4),
                     method=f"per-batch working set at B={batch}: slope of the peak over the batch × B; {how}{note}"),
        MemoryFigure(name=FIXED_OVERHEAD, bytes=max(int(round(fixed)), 0),
                     method=f"fixed overhead: the peak's intercept at batch 0 (what does not scale with B); {how}"),
    ]


def activation_estimate(spec: ModelSpec, batch_size: int, seq_len: int, itemsize: int) -> MemoryFigure:
    """The analytic activation memory BPTT keeps (``spec.activation_bytes``), to read beside the measured figures."""
    return MemoryFigure(name="activation_estimate", bytes=activation_bytes(spec, batch_size, seq_len, itemsize),
                        method="analytic B·T·H·G·bytes per layer (spec.activation_bytes)")


def below_floor(fig: Any) -> bool:
    """Whether a recorded ``working_set`` figure is under its noise floor (not meaningful)."""
    floor = getattr(fig, "floor_bytes", None)
    return bool(floor) and int(fig.bytes) < int(floor)


def working_set(run_at: Callable[[int], Any], batch: int, reader: PeakReader | None = None,
                factors: Sequence[int] = (1, 2)) -> tuple[list[MemoryFigure], list[Window]]:
    """Measure: windows at ``factors × batch`` -> the two figures and the windows (for timing and inspection)."""
    reader = reader or host_reader()
    if not isinstance(reader, DevicePeak):
        fix_mmap_threshold()
    windows = scaling_windows(run_at, batch, reader, factors)
    return figures(windows, batch, reader), windows


__all__ = ["DevicePeak", "FIXED_OVERHEAD", "HostHWM", "HostSampler", "PeakReader", "RSS_FLOOR", "WORKING_SET",
           "Window", "activation_estimate", "below_floor", "figures", "fit", "host_reader", "measure_window",
           "release_free_memory", "scaling_windows", "working_set"]
