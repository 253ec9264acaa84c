"""The per-batch working set and fixed overhead (memory.py): same method on every backend, scales with the batch."""
from __future__ import annotations

import numpy as np
import pytest

from gru_bench import memory
from gru_bench.case import Case
from gru_bench.schema import MemoryFigure
from gru_bench.worker import run_case

MiB = 2 ** 20
# the 2B/B ratio of the working set (B=32 -> 64, H=128, T=50, fresh-process windows), measured on a loaded 2-core
# machine, 3 runs each: numpy 2.00-2.07, torch 1.81-2.23 (in-process windows gave torch 0.87-2.59)
SCALING_TOLERANCE = 0.25


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
    """A step whose buffers are b × 1 MiB, windows at 16 and 32: working_set ≈ B MiB (10 %), fixed overhead ≈ 0
    (< 2 MiB)."""
    reader = memory.host_reader()
    windows = [memory.measure_window(lambda b: np.ones(b * MiB // 8).sum(), b, reader) for b in (16, 32)]
    f = {m.name: m for m in memory.figures(windows, 16, reader.method, reader.floor)}
    assert f["working_set"].bytes == pytest.approx(16 * MiB, rel=0.10)
    assert f["fixed_overhead"].bytes < 2 * MiB
    assert "VmHWM" in f["working_set"].method or "psutil" in f["working_set"].method


def test_a_failing_window_names_its_batch_and_error():
    """A window whose process fails (here: an unknown backend) is a RuntimeError naming the batch and the child's
    last error line; no window process is left behind."""
    import psutil

    case = _case("numpy", 8).model_copy(update={"backend": "no-such-backend"})
    with pytest.raises(RuntimeError, match=r"window at batch (8|16) exited 1: .*no-such-backend"):
        memory.fresh_windows(case, [8, 16], threads=1)
    assert not [p for p in psutil.Process().children() if "memory_window" in " ".join(p.cmdline())]


def _case(backend: str, batch: int) -> Case:
    return Case(backend=backend, cell="gru", variant="reset_after", task="adding", seq_len=50, hidden=128,
                batch_size=batch, warmup=1, repetitions=2, options={"threads": 1})


def _figures(backend: str, batch: int) -> dict[str, MemoryFigure]:
    r = run_case(_case(backend, batch), None, phases=("timing",))
    assert r.status == "ok", r.reason
    f = {m.name: m for m in r.memory}
    assert {"working_set", "fixed_overhead"} <= f.keys(), r.warnings
    assert "peak RSS" in f["working_set"].method or "psutil" in f["working_set"].method
    assert "fresh process per batch" in f["working_set"].method
    return f


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_case_figures_scale_and_match_analytic(backend):
    """On numpy and torch: both figures recorded with their method; the working set at batch 64 is 2× that at 32
    (±TOLERANCE), and within 5× of the analytic activation estimate (the backends keep gate buffers, input
    projections and backward temporaries the B·T·H·G estimate leaves out: measured 3–4.5× at B=64, T=100, H=128)."""
    if backend == "torch":
        pytest.importorskip("torch")
    small, big = _figures(backend, 32), _figures(backend, 64)
    ratio = big["working_set"].bytes / small["working_set"].bytes
    assert 2 * (1 - SCALING_TOLERANCE) <= ratio <= 2 * (1 + SCALING_TOLERANCE), ratio
    an = big["activation_estimate"].bytes
    assert an / 5 <= big["working_set"].bytes <= 5 * an


def test_tf_working_set_is_above_the_floor():
    """TF keeps its memory resident after a model is freed, which in-process windows could not see (below the
    floor); a fresh process per window measures its working set: above the floor and within 10× of the analytic
    estimate."""
    pytest.importorskip("tensorflow")
    f = _figures("tf", 32)
    assert not memory.below_floor(f["working_set"]) and f["working_set"].bytes >= memory.RSS_FLOOR
    an = f["activation_estimate"].bytes
    assert an <= f["working_set"].bytes <= 10 * an


def test_old_figure_loads():
    old = MemoryFigure.model_validate({"name": "tracemalloc_peak", "bytes": 10, "method": "tracemalloc"})
    assert old.floor_bytes is None and old.seconds is None


def test_preference_puts_working_set_first_on_cpu_and_device_peak_on_cuda():
    from gru_bench.terminal_table import _memory
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
