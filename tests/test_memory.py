"""The per-batch working set and fixed overhead (memory.py): same method on every backend, scales with the batch."""
from __future__ import annotations

import numpy as np
import pytest

from gru_bench import memory
from gru_bench.case import Case
from gru_bench.schema import MemoryFigure
from gru_bench.worker import run_case

MiB = 2 ** 20


def test_fit_recovers_line():
    ws = [memory.Window(batch=b, start=0, peak=1000 + 7 * b, seconds=0.0) for b in (4, 8, 16)]
    slope, fixed = memory.fit(ws)
    assert slope == pytest.approx(7.0, rel=1e-12) and fixed == pytest.approx(1000.0, rel=1e-12)


def test_host_reader_sees_numpy_buffers():
    """A 32 MiB NumPy buffer made inside a window shows in the host peak within 10 %."""
    reader = memory.host_reader()
    w = memory.measure_window(lambda b: np.ones(b * MiB // 8).sum(), 32, reader)
    assert w.delta == pytest.approx(32 * MiB, rel=0.10)


def test_working_set_linear_in_batch():
    """A step whose buffers are b × 1 MiB: working_set ≈ B MiB (10 %), fixed overhead ≈ 0 (< 2 MiB)."""
    figs, _ = memory.working_set(lambda b: np.ones(b * MiB // 8).sum(), 16)
    f = {m.name: m for m in figs}
    assert f["working_set"].bytes == pytest.approx(16 * MiB, rel=0.10)
    assert f["fixed_overhead"].bytes < 2 * MiB
    assert "VmHWM" in f["working_set"].method or "psutil" in f["working_set"].method


def _case(backend: str, batch: int) -> Case:
    return Case(backend=backend, cell="gru", variant="reset_after", task="adding", seq_len=50, hidden=128,
                batch_size=batch, warmup=1, repetitions=2, options={"threads": 1})


@pytest.mark.parametrize("backend", ["numpy", pytest.param("torch", marks=pytest.mark.xfail(
    strict=False, reason="known defect, not yet fixed: torch's working_set is not linear in B (2B/B measured 0.87-2.59 "
                         "at H=128 T=50, 2.4-4.4 at H=256 T=200); its windows see the caching allocator's reuse"))])
def test_case_figures_scale_and_match_analytic(backend):
    """On numpy and torch: both figures recorded with their method; working_set at 2B is 2× that at B (±50 %: torch's
    windows vary by ~10 MiB run to run at these sizes),
    and within 5× of the analytic activation estimate (the backends keep gate buffers, input projections and
    backward temporaries the B·T·H·G estimate leaves out: measured 3–4.5× at B=64, T=100, H=128)."""
    if backend == "torch":
        pytest.importorskip("torch")
    figs = []
    for b in (32, 64):
        r = run_case(_case(backend, b), None, phases=("timing",))
        assert r.status == "ok", r.reason
        figs.append({m.name: m for m in r.memory})
    small, big = figs
    for f in figs:
        assert {"working_set", "fixed_overhead"} <= f.keys()
        assert "peak RSS" in f["working_set"].method or "psutil" in f["working_set"].method
    ratio = big["working_set"].bytes / small["working_set"].bytes
    assert 2 / 1.5 <= ratio <= 2 * 1.5, ratio
    an = big["activation_estimate"].bytes
    assert an / 5 <= big["working_set"].bytes <= 5 * an


def test_old_figure_loads():
    old = MemoryFigure.model_validate({"name": "tracemalloc_peak", "bytes": 10, "method": "tracemalloc"})
    assert old.floor_bytes is None and old.seconds is None


def test_preference_puts_working_set_first_on_cpu_and_device_peak_on_cuda():
    from gru_bench.cli import _memory
    from gru_bench.report.frame import _peak
    from gru_bench.schema import CaseResult

    c = Case(backend="numpy", cell="gru", variant="reset_after", task="adding", seq_len=20, hidden=8)

    def result(figs):
        return CaseResult(case=c, case_id=c.case_id, status="ok", memory=figs)

    cpu = [MemoryFigure(name="tracemalloc_peak", bytes=5, method="t"),
           MemoryFigure(name="fixed_overhead", bytes=9 * MiB, method="f"),
           MemoryFigure(name="working_set", bytes=3 * MiB, method="w", floor_bytes=MiB)]
    assert result(cpu).peak_memory().name == "working_set"
    assert _memory(result(cpu)) == (3.0 * MiB, "working_set")
    assert _peak(result(cpu))[1] == "working_set"
    cuda = [*cpu, MemoryFigure(name="device_peak_allocated", bytes=7, method="d")]
    assert result(cuda).peak_memory().name == "device_peak_allocated"
    assert _memory(result(cuda)) == (7.0, "device_peak_allocated")
    assert _peak(result(cuda))[1] == "device_peak_allocated"
    noisy = [MemoryFigure(name="working_set", bytes=10, method="w", floor_bytes=MiB)]
    assert _memory(result(noisy)) == (None, "working_set")
