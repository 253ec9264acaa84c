"""threads.py, timer.py, timing_stats.py, calibration.py, host_memory.py, sysload.py: thread fixing, the timer's
sync discipline, statistics against NumPy/analytic references, the GEMM
calibration, memory probes against known allocations, and the busy-machine rule."""
from __future__ import annotations

import math
import subprocess
import sys
import time

import numpy as np
import pytest

from gru_bench import calibration, host_memory, memory, sysload, threads, timer, timing_stats
from gru_bench.schema import Calibration, Load
from gru_bench.spec import ModelSpec

MB = 1 << 20


# ------------------------------------------------------------------------------------------------------ threads
def test_fix_threads_limits_blas_and_sets_env():
    """In a fresh process (a worker's situation): BLAS pools and the thread env vars end at n."""
    code = ("import numpy, json; from gru_bench.threads import fix_threads; from threadpoolctl import threadpool_info;"
            "r = fix_threads(1); print(json.dumps([r, [p['num_threads'] for p in threadpool_info()]]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    import json

    rec, pools = json.loads(out.stdout)
    assert rec["requested"] == 1
    assert pools and all(n == 1 for n in pools)
    assert set(rec["blas"].values()) == {1}
    assert all(rec["env"][v] == "1" for v in threads.THREAD_ENV)


def test_fix_threads_none_leaves_and_reports():
    from threadpoolctl import threadpool_info

    before = [p["num_threads"] for p in threadpool_info()]
    rec = threads.fix_threads(None)
    assert rec["requested"] is None
    assert [p["num_threads"] for p in threadpool_info()] == before


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_fix_threads_rejects_bad_counts(bad):
    with pytest.raises(ValueError, match=r"threads=.*expected an integer >= 1"):
        threads.fix_threads(bad)


# ------------------------------------------------------------------------------------------------------- timing
class FakeClock:
    """perf_counter that only moves when told: makes the timed region exact."""

    def __init__(self) -> None:
        self.t = 100.0
        self.events: list[str] = []

    def __call__(self) -> float:
        return self.t


def test_time_calls_times_fn_and_the_sync_after_but_not_the_sync_before(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(timer.time, "perf_counter", clock)
    n_sync = {"k": 0}

    def sync():
        # odd calls are the sync before a call (+1000 s, must not count), even ones the sync after (+2 s, counts)
        n_sync["k"] += 1
        clock.t += 1000.0 if n_sync["k"] % 2 == 1 else 2.0
        clock.events.append("sync")

    def fn():
        clock.t += 0.25
        clock.events.append("fn")

    samples = timer.time_calls(fn, 4, sync)
    assert samples == [2.25] * 4  # exact: fn + the sync after it
    assert clock.events == ["sync", "fn", "sync"] * 4


def test_time_calls_without_sync_and_bad_n():
    samples = timer.time_calls(lambda: time.sleep(0.001), 3)
    assert len(samples) == 3 and all(s >= 0.001 for s in samples)
    with pytest.raises(ValueError, match=r"n=0: expected an integer >= 1"):
        timer.time_calls(lambda: None, 0)


def test_summarize_matches_numpy_and_flops():
    x = [0.010, 0.012, 0.011, 0.030, 0.009, 0.0105, 0.0111]
    s = timing_stats.summarize(x, flops=2e9, peak_gflops=400.0)
    assert s.samples == x
    assert s.median == pytest.approx(np.median(x), rel=1e-12)
    assert s.iqr == pytest.approx(np.percentile(x, 75) - np.percentile(x, 25), rel=1e-12)
    assert s.min == min(x) and s.mean == pytest.approx(np.mean(x), rel=1e-12)
    assert s.ci_low <= s.median <= s.ci_high
    assert min(x) <= s.ci_low and s.ci_high <= max(x)
    assert s.gflops == pytest.approx(2e9 / np.median(x) / 1e9, rel=1e-12)
    assert s.pct_peak == pytest.approx(100 * s.gflops / 400.0, rel=1e-12)
    assert timing_stats.summarize(x) == timing_stats.summarize(x)  # seeded bootstrap: same samples, same interval
    assert timing_stats.summarize(x).gflops is None and timing_stats.summarize(x, flops=1.0).pct_peak is None


def test_bootstrap_ci_of_the_median_has_the_analytic_width():
    """For N(0, 1) samples the median's standard error is sqrt(pi/2)/sqrt(n); the 95 % interval is about
    2 * 1.96 * that wide. Accept a factor 1.5 either way (one draw of n = 400)."""
    rng = np.random.default_rng(1)
    x = 1.0 + 0.1 * rng.standard_normal(400)
    s = timing_stats.summarize(x)
    expected = 2 * 1.96 * 0.1 * math.sqrt(math.pi / 2) / math.sqrt(400)
    assert expected / 1.5 < s.ci_high - s.ci_low < expected * 1.5
    assert s.ci_low < 1.0 < s.ci_high


def test_summarize_degenerate_and_bad_samples():
    one = timing_stats.summarize([0.5])
    assert (one.median, one.iqr, one.ci_low, one.ci_high) == (0.5, 0.0, 0.5, 0.5)
    same = timing_stats.summarize([0.2] * 5)
    assert (same.ci_low, same.ci_high) == (0.2, 0.2)
    with pytest.raises(ValueError, match=r"samples=\[\]: expected at least one timing"):
        timing_stats.summarize([])
    with pytest.raises(ValueError, match="expected finite non-negative seconds"):
        timing_stats.summarize([0.1, float("nan")])
    with pytest.raises(ValueError, match="expected finite non-negative seconds"):
        timing_stats.summarize([0.1, -0.1])


# -------------------------------------------------------------------------------------------------- calibration
def test_calibrate_reports_a_positive_gemm_rate_and_its_method():
    cal = calibration.calibrate(seconds=0.05, n=256, min_repeats=5)
    assert isinstance(cal, Calibration)
    k = int(cal.method.split("median of ")[1].split()[0])
    assert k >= 5 and "256x256x256" in cal.method
    assert cal.gemm_gflops > 0
    with pytest.raises(ValueError, match="seconds=0"):
        calibration.calibrate(seconds=0)


# ------------------------------------------------------------------------------------------------------- memory
def _hold(nbytes: int, seconds: float = 0.2) -> None:
    a = np.ones(nbytes // 8)  # touched: resident
    time.sleep(seconds)  # many sampling intervals, even on a loaded machine
    del a


def test_host_memory_sees_an_allocation_inside_the_window():
    size = 64 * MB
    with host_memory.HostMemory(interval=0.002) as hm:
        _hold(size)
    figs = {f.name: f for f in hm.figures}
    assert {"host_peak_rss_delta", "host_maxrss_delta"} <= set(figs)
    for f in figs.values():
        assert f.method
        assert f.bytes >= 0.9 * size, f
    # the sampled and kernel figures are exact to the allocator's overhead; ru_maxrss may be an upper bound
    assert figs["host_peak_rss_delta"].bytes <= size + 16 * MB
    if "host_vmhwm_delta" in figs:
        assert figs["host_vmhwm_delta"].bytes <= size + 16 * MB
    if "upper bound" not in figs["host_maxrss_delta"].method:
        assert figs["host_maxrss_delta"].bytes <= size + 16 * MB


def test_host_memory_ignores_what_was_allocated_before_start():
    kept = np.ones(64 * MB // 8)  # setup: before the window
    hm = host_memory.HostMemory().start()
    time.sleep(0.02)
    figs = {f.name: f for f in hm.stop()}
    del kept
    assert figs["host_peak_rss_delta"].bytes < 8 * MB
    if "host_vmhwm_delta" in figs:
        assert figs["host_vmhwm_delta"].bytes < 8 * MB
    with pytest.raises(RuntimeError):
        hm.stop()


def test_tracemalloc_peak_of_a_numpy_array():
    import tracemalloc

    was = tracemalloc.is_tracing()
    with host_memory.TraceMalloc() as tm:
        a = np.ones(1_000_000)  # 8 000 000 bytes
        del a
    (fig,) = tm.figures
    assert fig.name == "tracemalloc_peak"
    assert 8_000_000 <= fig.bytes <= 8_000_000 + 64 * 1024
    assert tracemalloc.is_tracing() == was  # stops only what it started


def test_activation_estimate_is_b_t_h_gates_plus_states_bytes():
    """Per layer B·T·H·(G+S)·bytes: G gate outputs and the S states BPTT keeps per step (GRU: h; LSTM: h and c)."""
    gru = ModelSpec("gru", 1, 128, 1)
    lstm2 = ModelSpec("lstm", 1, 64, 1, num_layers=2)
    assert memory.activation_estimate(gru, 64, 100, 4).bytes == 64 * 100 * 128 * (3 + 1) * 4
    assert memory.activation_estimate(lstm2, 8, 10, 8).bytes == 2 * 8 * 10 * 64 * (4 + 2) * 8
    assert "analytic" in memory.activation_estimate(gru, 1, 1, 4).method


# --------------------------------------------------------------------------------------------------------- load
def test_load_snapshot_shape():
    loads, cpu = sysload.load_snapshot(interval=0.05)
    assert len(loads) == 3 and all(v >= 0 for v in loads)
    assert 0.0 <= cpu <= 100.0


def test_load_snapshot_subtracts_this_process(monkeypatch):
    """Machine 80 % busy over 1 s on 2 cores while this process used 1 CPU-second (= 50 % of the machine):
    other processes used 30 %."""
    from types import SimpleNamespace

    clock = FakeClock()
    used = iter([10.0, 11.0])

    class Proc:
        def cpu_times(self):
            return SimpleNamespace(user=next(used), system=0.5)

    def cpu_percent(interval):
        clock.t += 1.0
        return 80.0

    monkeypatch.setattr(sysload.time, "perf_counter", clock)
    monkeypatch.setattr(sysload.psutil, "Process", Proc)
    monkeypatch.setattr(sysload.psutil, "cpu_percent", cpu_percent)
    monkeypatch.setattr(sysload.psutil, "cpu_count", lambda *a, **k: 2)
    monkeypatch.setattr(sysload.psutil, "getloadavg", lambda: (1.5, 1.0, 0.5))
    assert sysload.load_snapshot(interval=1.0) == ([1.5, 1.0, 0.5], pytest.approx(30.0, abs=1e-9))


@pytest.mark.parametrize("before, after, own, busy, words", [
    (([0.1, 0.1, 0.1], 3.0), ([0.2, 0.1, 0.1], 5.0), 0, False, None),
    (([0.1, 0.1, 0.1], 80.0), ([0.2, 0.1, 0.1], 5.0), 0, True, "80 % CPU before"),
    (([0.1, 0.1, 0.1], 3.0), ([0.2, 0.1, 0.1], 60.0), 0, True, "60 % CPU after"),
    (([3.5, 1.0, 1.0], 3.0), ([3.5, 1.0, 1.0], 3.0), 2, True, "1-min load 3.50 on 2 cores before"),
    (([2.0, 1.0, 1.0], 3.0), ([2.0, 1.0, 1.0], 3.0), 2, False, None),  # our own previous case's threads
])
def test_assess_load_busy_rule(before, after, own, busy, words):
    rec = sysload.assess_load(before, after, cores=2, own_threads=own)
    assert isinstance(rec, Load)
    assert rec.busy is busy
    assert rec.before == before[0] and rec.cpu_percent_after == after[1]
    if words:
        assert words in rec.warning and "timings may be noisy" in rec.warning
    else:
        assert rec.warning is None


def test_assess_load_with_one_snapshot():
    rec = sysload.assess_load(([0.0, 0.0, 0.0], 1.0), None, cores=4)
    assert rec.after is None and rec.busy is False
