"""Measurement: threads, timers, statistics, machine calibration, memory probes and system load.

Framework-free: the worker passes the backend's ``sync`` in, and fixes the framework's own threads through
``backend.set_threads``; this module fixes BLAS (threadpoolctl) and the OpenMP/BLAS environment.
"""
from __future__ import annotations

import os
import resource
import sys
import threading
import time
import tracemalloc
from statistics import median
from typing import Any, Callable, Sequence

import numpy as np
import psutil

from .schema import Calibration, Load, MemoryFigure, TimingStats
from .spec import ModelSpec, activation_bytes

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
BOOTSTRAP_SEED = 20240601
BOOTSTRAP_RESAMPLES = 2000
BUSY_CPU_PERCENT = 25.0  # other processes using more than this share of all cores -> busy (one of 4 cores)
BUSY_LOAD_FRACTION = 0.5  # 1-min load beyond our own threads above this fraction of the cores -> busy

_limiter: Any = None  # the threadpoolctl limiter in force (kept so that it is not collected)
_fixed_threads: int | None = None  # what fix_threads last set in this process


def _check_count(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r}: expected an integer >= {minimum}")
    return int(value)


# ----------------------------------------------------------------------------------------------------- threads
def fix_threads(n: int | None) -> dict[str, Any]:
    """Fix BLAS/OpenMP threads to ``n`` (``None``: leave them) and return what is in force.

    Sets the thread environment variables (read by libraries loaded later in this process, e.g. a framework's
    OpenMP) and limits the BLAS/OpenMP pools already loaded through threadpoolctl. Returns
    ``{"requested": n, "blas": {"openblas": 2, ...}, "openmp": {...}, "env": {...}}``.
    """
    global _limiter, _fixed_threads
    from threadpoolctl import threadpool_info, threadpool_limits

    if n is not None:
        n = _check_count("threads", n)
        for var in THREAD_ENV:
            os.environ[var] = str(n)
        _limiter = threadpool_limits(limits=n)  # persists until restored: this process runs one case
        _fixed_threads = n
    in_force: dict[str, Any] = {"requested": n}
    for pool in threadpool_info():
        api = pool.get("user_api", "other")
        name = pool.get("internal_api", "?")
        in_force.setdefault(api, {})[name] = pool.get("num_threads")
    in_force["env"] = {var: os.environ[var] for var in THREAD_ENV if var in os.environ}
    return in_force


# ------------------------------------------------------------------------------------------------------ timing
def time_calls(fn: Callable[[], Any], n: int, sync: Callable[[], Any] | None = None) -> list[float]:
    """``n`` wall-clock samples (seconds) of ``fn()``; ``sync()`` before each (untimed) and after each (timed:
    the call is not over until the device's queued work is)."""
    n = _check_count("n", n)
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
    n = _check_count("n", n)
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


def _bootstrap_median_ci(x: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the median (seeded, so the same samples give the same interval)."""
    if x.size < 2 or np.ptp(x) == 0:
        m = float(np.median(x))
        return m, m
    from scipy.stats import bootstrap

    rng = np.random.default_rng(BOOTSTRAP_SEED)
    try:
        res = bootstrap((x,), np.median, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=confidence,
                        method="percentile", vectorized=True, rng=rng)
    except TypeError:  # scipy < 1.15 names it random_state
        res = bootstrap((x,), np.median, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=confidence,
                        method="percentile", vectorized=True, random_state=rng)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def summarize(samples: Sequence[float], flops: float | None = None, peak_gflops: float | None = None) -> TimingStats:
    """Raw samples -> median, IQR (75th − 25th percentile), min, mean, 95 % bootstrap CI of the median, and, given
    the FLOPs of one call, achieved GFLOP/s at the median and its share of the calibrated ``peak_gflops``."""
    x = np.asarray(list(samples), dtype=np.float64)
    if x.size == 0:
        raise ValueError("samples=[]: expected at least one timing")
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise ValueError(f"samples={list(samples)!r}: expected finite non-negative seconds")
    q25, med, q75 = np.percentile(x, [25, 50, 75])
    lo, hi = _bootstrap_median_ci(x)
    gflops = pct = None
    if flops is not None and med > 0:
        gflops = float(flops) / float(med) / 1e9
        if peak_gflops:
            pct = 100.0 * gflops / float(peak_gflops)
    return TimingStats(samples=x.tolist(), median=float(med), iqr=float(q75 - q25), min=float(x.min()),
                       mean=float(x.mean()), ci_low=lo, ci_high=hi, gflops=gflops, pct_peak=pct)


# ------------------------------------------------------------------------------------------------- calibration
def calibrate(seconds: float = 1.0, n: int = 1024, min_repeats: int = 5) -> Calibration:
    """This machine's float32 GEMM throughput (``n × n`` by ``n × n`` through NumPy's BLAS, threads as in force):
    one warm-up, then repeats for about ``seconds`` (at least ``min_repeats``); the median GFLOP/s."""
    if not seconds > 0:
        raise ValueError(f"seconds={seconds!r}: expected a positive number")
    n = _check_count("n", n)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)  # (n, n)
    b = rng.standard_normal((n, n), dtype=np.float32)  # (n, n)
    out = np.empty((n, n), dtype=np.float32)  # (n, n)
    np.matmul(a, b, out=out)  # warm-up: pages touched, BLAS threads started
    flop = 2.0 * n**3
    rates: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(rates) < min_repeats or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        rates.append(flop / (time.perf_counter() - t0) / 1e9)
    from threadpoolctl import threadpool_info

    blas = ", ".join(f"{p.get('internal_api')}×{p.get('num_threads')}" for p in threadpool_info()
                     if p.get("user_api") == "blas")
    return Calibration(gemm_gflops=float(median(rates)),
                       method=f"numpy float32 GEMM {n}x{n}x{n}, median of {len(rates)} ({blas or 'BLAS ?'} threads)")


# ------------------------------------------------------------------------------------------------------ memory
def _rss() -> int:
    return psutil.Process().memory_info().rss


def _maxrss_bytes() -> int:
    """``ru_maxrss`` in bytes (the kernel reports KiB on Linux, bytes on macOS)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r) if sys.platform == "darwin" else int(r) * 1024


def _reset_hwm() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux ``/proc/self/clear_refs`` 5); False where it can't."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _vm_hwm() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024  # kB
    except OSError:
        pass
    return None


class HostMemory:
    """The process's peak resident memory above its baseline at ``start()`` (call it after setup).

    Three figures, each labelled: a psutil sampling thread (every ``interval`` s; it can miss a peak shorter than
    that), ``resource.getrusage`` ``ru_maxrss`` (exact only when the window's peak exceeds the process's earlier
    peak, else an upper bound — the method says which), and on Linux the kernel's ``VmHWM`` mark reset at
    ``start()`` (exact). Use as a context manager (``.figures`` after the block) or ``start()`` / ``stop()``.
    """

    def __init__(self, interval: float = 0.005) -> None:
        if not interval > 0:
            raise ValueError(f"interval={interval!r}: expected a positive number of seconds")
        self.interval = interval
        self.figures: list[MemoryFigure] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._peak = 0

    def start(self) -> "HostMemory":
        if self._thread is not None:
            raise RuntimeError("HostMemory already started")
        self._hwm_reset = _reset_hwm()
        self.baseline = _rss()
        self._maxrss_before = _maxrss_bytes()
        self._peak = self.baseline
        self._stop.clear()
        self._thread = threading.Thread(target=self._sample, name="gru-bench-rss", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        proc = psutil.Process()
        while not self._stop.wait(self.interval):
            self._peak = max(self._peak, proc.memory_info().rss)

    def stop(self) -> list[MemoryFigure]:
        if self._thread is None:
            raise RuntimeError("HostMemory.stop() before start()")
        self._peak = max(self._peak, _rss())
        self._stop.set()
        self._thread.join()
        self._thread = None
        ms = int(round(self.interval * 1000))
        figs = [MemoryFigure(name="host_peak_rss_delta", bytes=max(self._peak - self.baseline, 0),
                             method=f"psutil RSS sampling every {ms} ms, peak − baseline")]
        maxrss = _maxrss_bytes()
        exact = maxrss > self._maxrss_before
        figs.append(MemoryFigure(
            name="host_maxrss_delta", bytes=max(maxrss - self.baseline, 0),
            method="resource.getrusage ru_maxrss − baseline RSS" + ("" if exact else
                                                                    " (upper bound: earlier process peak not exceeded)")))
        hwm = _vm_hwm() if self._hwm_reset else None
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


def activation_estimate(spec: ModelSpec, batch_size: int, seq_len: int, itemsize: int) -> MemoryFigure:
    """The analytic activation memory BPTT keeps (``spec.activation_bytes``), to read beside the measured figures."""
    return MemoryFigure(name="activation_estimate", bytes=activation_bytes(spec, batch_size, seq_len, itemsize),
                        method="analytic B·T·H·G·bytes per layer (spec.activation_bytes)")


# -------------------------------------------------------------------------------------------------------- load
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


def load_record(before: tuple[Sequence[float], float] | None, after: tuple[Sequence[float], float] | None,
                cores: int | None = None, own_threads: int | None = None) -> Load:
    """Two snapshots -> ``Load`` with a busy flag and a warning when other work competed with the case.

    Busy when, at either snapshot, other processes used more than ``BUSY_CPU_PERCENT`` % of the machine, or the
    1-min load average minus ``own_threads`` (this run's own recent work, which the average still holds; default:
    the thread count ``fix_threads`` set in this process) exceeded ``BUSY_LOAD_FRACTION`` of the cores.
    """
    cores = cores or psutil.cpu_count() or 1
    if own_threads is None:
        own_threads = _fixed_threads or 0
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


__all__ = ["HostMemory", "TraceMalloc", "activation_estimate", "calibrate", "fix_threads", "load_record",
           "load_snapshot", "summarize", "time_calls"]
