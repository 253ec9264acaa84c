"""The terminal's GRU/LSTM table (terminal_table.py): the step cell carries the GEMM-floor efficiency."""
from __future__ import annotations

from rich.console import Console

from gru_bench.case import Case
from gru_bench.schema import CaseResult, GemmFloor, TimingStats
from gru_bench.terminal_table import summary_table


def _result(cell: str, variant: str, seed: int, step_s: float, efficiency: float | None) -> CaseResult:
    c = Case(backend="numpy", cell=cell, variant=variant, task="adding", seq_len=50, hidden=64, seed=seed, steps=300)
    t = TimingStats(samples=[step_s], median=step_s, iqr=0, min=step_s, mean=step_s, ci_low=step_s, ci_high=step_s)
    floor = None if efficiency is None else GemmFloor(seconds=efficiency * step_s, gflops=1.0, efficiency=efficiency)
    return CaseResult(case=c, case_id=c.case_id, status="ok", params=100, train_time=t, gemm_floor=floor)


def _row(cases: list[CaseResult]) -> str:
    console = Console(width=300, record=True)
    console.print(summary_table(cases))
    return next(line for line in console.export_text().splitlines() if "reset_after" in line)


def test_step_cell_shows_the_median_gemm_floor_efficiency():
    """GRU seeds at 0.30, 0.41, 0.50 of the floor -> the median 41 %; the LSTM at 0.25 -> 25 %."""
    cases = [_result("gru", "reset_after", s, 0.003, e) for s, e in ((0, 0.30), (1, 0.41), (2, 0.50))]
    cases += [_result("lstm", "standard", 0, 0.006, 0.25)]
    row = _row(cases)
    assert "3.00 ms (41% floor)" in row and "6.00 ms (25% floor)" in row


def test_step_cell_without_a_floor_is_the_time_alone():
    row = _row([_result("gru", "reset_after", 0, 0.003, None), _result("lstm", "standard", 0, 0.006, None)])
    assert "3.00 ms" in row and "floor" not in row
