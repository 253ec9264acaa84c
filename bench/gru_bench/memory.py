"""Peak memory that means the same on every backend: the per-batch working set and the fixed overhead.

A backend's peak memory mixes two things: what scales with the work (the activations BPTT keeps, the gate
buffers, the gradient of each step's input: the *working set*) and what does not (framework runtime, the traced
graph and its compiler, the weights, gradients and optimizer state, kernel scratch: the *fixed overhead*). Reading
one peak as "the memory of this model" compares TF/XLA's fixed 160–190 MiB with NumPy's few MiB of activations.
This module separates the two with one method for every backend:

* a **window** is one fresh process (``python -m gru_bench.memory_window``, one per batch size): it fixes its
  threads, imports the backend and reads the level; then it builds the case's model from its seed, puts a batch
  of ``b`` where the model lives, runs the warm-up steps, zeroes its peak reader and runs one more training step;
  its figure is that step's peak above the level before the build (the warm-up's own transients — tracing,
  compiling — are left out: TF's compile peak is above a small model's step and hid the batch's share);
* the windows run at batch ``B`` and ``2B``; ``working_set = peak(2B) − peak(B)``: what one more batch of B samples
  costs — B × what one sample keeps; ``fixed_overhead = peak(B) − working_set``: the intercept, what the window
  holds at its peak that does not scale with the batch (weights, optimizer state, the traced graph, what the
  framework keeps between steps). Both are clamped at zero.

Why a fresh process per window: in one process a window sees what the earlier windows left behind. Measured in
the worker with in-process windows (bench/perf/memory_figures.py): torch's 2B/B ratio of the working set ranged
0.87–2.59 (freed buffers reused through glibc's heap and mmap-threshold growth), and TF/Keras kept its memory
resident after a model was freed, so its windows rose by the same ~1.5 MiB at B and 2B: below the noise floor.
A fresh process has nothing resident of another window, and it trims the heap after the warm-up (``memory_window``):
without the trim TF's measured step reused the heap pages its graph compilation had freed, and its working set was
not linear in B (B=64→128: 9.6 MiB, 256→512: 73 MiB at H=128, T=100; with it 0.27 and 0.32 MiB a sample). The method
is the same on every backend (numpy too: its processes are cheap). The cost is one interpreter and framework start
per window, paid after the timed loop; the two windows run side by side (quiet, B=64, T=100, H=128: 0.6–0.7 s numpy,
3.0–3.1 s torch, 5.8–6.2 s TF, wall, bench/perf/memory_figures.py). Measured (one window, B=32, H=128, T=50, 1
thread; on a 2-core machine at load 8.5–9, at the lowest priority; CPU seconds are the load-robust figure): numpy
0.35 CPU s (2.4–2.8 s wall), torch 3.4 CPU s (26–28 s wall), TF 6.9 CPU s (56–62 s wall). The figure's ``seconds``
records each case's own cost.

The peak reader decides what the figure sees, and it must see every allocator:

* CPU on Linux: the kernel's resident-set high-water mark ``VmHWM`` (``/proc/self/status``), reset at the start of
  the window by writing ``5`` to ``/proc/self/clear_refs`` (Linux ≥ 4.0). It counts every page the process
  touches — NumPy, PyTorch's and TensorFlow's allocators, oneDNN scratch, XLA buffers — and misses no peak, however
  short (a sampler thread can). It counts pages, not bytes: see ``RSS_FLOOR``. On glibc the mmap threshold is fixed
  at its 128 KiB default first (``fix_mmap_threshold``), so every large buffer is its own mapping and RSS follows
  the live buffers.
* CPU elsewhere: a psutil RSS sampler (every ``interval`` s; may miss peaks shorter than that; the method says so).
* CUDA: the device allocator's own peak (the backend's ``MemoryProbe``, e.g. ``torch.cuda.max_memory_allocated``)
  reset at the start of the window — the same B/2B method on the allocator's bytes.

Below ``RSS_FLOOR`` the host figure is page and allocator noise, not the work: the record says so (the figure's
``method`` ends in "below the noise floor ...") and tables show it as such.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .case import Case
from .host_memory import RssSampler, reset_hwm, rss, vm_hwm
from .schema import MemoryFigure
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
FRESH_PROCESS = "gru_bench.memory_window"  # the module each window runs as (python -m), named in the method
WINDOW_TIMEOUT_S = 600.0  # one window: interpreter, framework import, build, warm-up and one step


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
        self._sampler = RssSampler(interval, name="gru-bench-ws")
        self.method = f"psutil RSS sampled every {interval * 1000:.0f} ms"

    def start(self) -> int:
        return self._sampler.start()

    def stop(self) -> int:
        return self._sampler.stop()


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


def fit(windows: Sequence[Window]) -> tuple[float, float]:
    """Least-squares line ``delta = fixed + per_sample · b`` through the windows -> ``(per_sample, fixed)``
    (two windows: the line through both)."""
    bs = np.array([float(w.batch) for w in windows])
    if len(set(bs)) < 2:
        raise ValueError("windows: need at least two different batch sizes")
    slope, fixed = np.polyfit(bs, [float(w.delta) for w in windows], 1)
    return float(slope), float(fixed)


def figures(windows: Sequence[Window], batch: int, method: str, floor: int) -> list[MemoryFigure]:
    """``working_set`` (at ``batch``) and ``fixed_overhead`` from the windows, each with its method (``method``:
    the peak reader's; ``floor``: the figure below which it is noise)."""
    per_sample, fixed = fit(windows)
    ws = max(int(round(per_sample * batch)), 0)
    sizes = " and ".join(f"B={w.batch}" for w in windows)
    peaks = ", ".join(f"{w.delta / 2**20:.2f}" for w in windows)
    how = (f"{method}; a fresh process per batch ({FRESH_PROCESS}) at {sizes}: the peak of one training step "
           f"after the warm-up, above the level before the build "
           f"= {peaks} MiB")
    note = ""
    if ws < floor:
        note = f"; {BELOW_FLOOR} ({floor / 2**20:.0f} MiB): not meaningful"
    return [
        MemoryFigure(name=WORKING_SET, bytes=ws, floor_bytes=floor or None,
                     seconds=round(max(w.seconds for w in windows), 4),  # the windows run side by side
                     method=f"per-batch working set at B={batch}: slope of the peak over the batch × B; {how}{note}"),
        MemoryFigure(name=FIXED_OVERHEAD, bytes=max(int(round(fixed)), 0),
                     method=f"fixed overhead: the peak's intercept at batch 0 (what does not scale with B); {how}"),
    ]


def activation_estimate(spec: ModelSpec, batch_size: int, seq_len: int, itemsize: int) -> MemoryFigure:
    """The least activation memory BPTT keeps (``spec.activation_bytes``), to read beside the measured figures."""
    return MemoryFigure(name="activation_estimate", bytes=activation_bytes(spec, batch_size, seq_len, itemsize),
                        method="analytic B·T·H·(G+S)·bytes per layer: gate outputs and states (spec.activation_bytes)")


def below_floor(fig: Any) -> bool:
    """Whether a recorded ``working_set`` figure is under its noise floor (not meaningful)."""
    floor = getattr(fig, "floor_bytes", None)
    return bool(floor) and int(fig.bytes) < int(floor)


def _start_window(case: Case, batch: int, threads: int | None) -> subprocess.Popen:
    if batch < 1:
        raise ValueError(f"batch={batch!r}: expected a positive integer")
    request = json.dumps({"case": case.model_dump(mode="json"), "batch": batch, "threads": threads})
    return subprocess.Popen([sys.executable, "-m", FRESH_PROCESS, request], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish_window(proc: subprocess.Popen, batch: int, t0: float, timeout: float) -> tuple[Window, str, int]:
    try:
        out, err = proc.communicate(timeout=max(timeout - (time.perf_counter() - t0), 1.0))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RuntimeError(f"the window at batch {batch} ran past {timeout:.0f} s") from None
    seconds = time.perf_counter() - t0
    lines = out.strip().splitlines()
    if proc.returncode != 0 or not lines:
        last = next((s for s in reversed(err.strip().splitlines()) if s.strip()), "no output")
        raise RuntimeError(f"the window at batch {batch} exited {proc.returncode}: {last.strip()}")
    answer = json.loads(lines[-1])
    window = Window(batch=int(answer["batch"]), start=int(answer["start"]), peak=int(answer["peak"]),
                    seconds=seconds)
    return window, str(answer["method"]), int(answer["floor"])


def fresh_windows(case: Case, batches: Sequence[int], threads: int | None = None,
                  timeout: float = WINDOW_TIMEOUT_S) -> tuple[list[Window], str, int]:
    """A window at each of ``batches``, each in its own fresh ``python -m gru_bench.memory_window`` process, all
    started at once (each reads its own peak, so they cannot disturb each other's figure; the timed loop is over)
    -> ``(windows, the reader's method, its floor)``. ``Window.seconds`` is the wall time from the start of all
    windows to the end of this one's process (interpreter and framework start included): the last is the cost.
    ``RuntimeError`` with a failing window's last line; every window process is gone when this returns."""
    t0 = time.perf_counter()
    procs: list[subprocess.Popen] = []
    try:
        for b in batches:
            procs.append(_start_window(case, b, threads))
        runs = [_finish_window(p, b, t0, timeout) for p, b in zip(procs, batches)]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [w for w, _, _ in runs], runs[-1][1], runs[-1][2]


def working_set(case: Case, threads: int | None = None, factors: Sequence[int] = (1, 2),
                timeout: float = WINDOW_TIMEOUT_S) -> tuple[list[MemoryFigure], list[Window]]:
    """Measure ``case``: a fresh-process window at each ``factor × case.batch_size`` -> the two figures and the
    windows (for their cost and inspection)."""
    if len(factors) < 2 or list(factors) != sorted(set(factors)) or factors[0] < 1:
        raise ValueError(f"factors={list(factors)!r}: expected at least two ascending positive integers")
    windows, method, floor = fresh_windows(case, [f * case.batch_size for f in factors], threads, timeout)
    return figures(windows, case.batch_size, method, floor), windows


__all__ = ["DevicePeak", "FIXED_OVERHEAD", "HostHWM", "HostSampler", "PeakReader", "RSS_FLOOR", "WORKING_SET",
           "Window", "activation_estimate", "below_floor", "figures", "fit", "host_reader", "measure_window",
           "fresh_windows", "release_free_memory", "working_set"]
