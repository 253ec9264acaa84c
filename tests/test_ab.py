"""gru-bench ab: the paired decision, ABBA order, environments reaching the worker, a killed worker, exit codes."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from gru_bench import ab
from gru_bench.case import Case
from gru_bench.cli import ExitStatus, main
from gru_bench.errors import InputError
from gru_bench.schema import CaseResult, TimingStats

PERF = Path(__file__).resolve().parents[1] / "bench" / "perf"


def _stats(median: float, cpu: float | None = None) -> TimingStats:
    return TimingStats(samples=[median], median=median, iqr=0, min=median, mean=median, ci_low=median,
                       ci_high=median, cpu_samples=None if cpu is None else [cpu])


CASE = Case(backend="numpy", cell="gru", variant="reset_after", task="adding", seq_len=10, hidden=8, batch_size=8,
            repetitions=3)


def _result(median: float | None, status: str = "ok") -> CaseResult:
    return CaseResult(case=CASE, case_id=CASE.case_id, status=status,
                      train_time=_stats(median, median) if median is not None else None)


# ------------------------------------------------------------------------------------------ paired decision
def test_paired_decision_catches_a_10pct_shift_hidden_in_drift():
    # the machine drifts by ±40 % from round to round; the candidate is 10 % slower in every round (±1 % noise)
    rng = np.random.default_rng(0)
    base = 1e-3 * np.exp(rng.normal(0, 0.3, 12))
    cand = base * 1.10 * np.exp(rng.normal(0, 0.01, 12))
    d = ab.paired_decision(base, cand, factor=0.05)
    assert d.verdict == "regressed"
    assert d.ratio == pytest.approx(1.10, rel=0.02)
    assert d.ci_low <= d.ratio <= d.ci_high
    assert d.p_value < 0.05


def test_paired_decision_unchanged_improved_and_factor():
    rng = np.random.default_rng(1)
    base = 1e-3 * np.exp(rng.normal(0, 0.3, 12))
    same = base * np.exp(rng.normal(0, 0.01, 12))
    assert ab.paired_decision(base, same, 0.05).verdict == "unchanged"
    assert ab.paired_decision(base, base * 0.8, 0.05).verdict == "improved"
    # a real but small 3 % slowdown is significant, yet under the practical factor of 5 %: not gating
    d = ab.paired_decision(base, base * 1.03 * np.exp(rng.normal(0, 0.002, 12)), 0.05)
    assert d.p_value < 0.05 and d.verdict == "unchanged"


def test_paired_decision_too_few_rounds_is_inconclusive():
    assert ab.paired_decision([1, 1, 1, 1, 1], [2, 2, 2, 2, 2], 0.05).verdict == "inconclusive"


# ------------------------------------------------------------------------------------------------ ABBA order
def test_abba_order_alternates_who_goes_first():
    assert ab.abba_order(4) == [("A", "B"), ("B", "A"), ("A", "B"), ("B", "A")]
    with pytest.raises(InputError, match="--rounds 0"):
        ab.abba_order(0)


def test_run_rounds_runs_sides_in_abba_order_with_their_environments():
    calls: list[tuple[str, str, dict]] = []
    sides = {"A": ("pyA", {"X": "a"}), "B": ("pyB", {"X": "b"})}

    def runner(case, python, env):
        calls.append((case.case_id, python, env))
        return _result(1.0)

    got = ab.run_rounds([CASE], 3, runner, sides)
    assert [c[1] for c in calls] == ["pyA", "pyB", "pyB", "pyA", "pyA", "pyB"]
    assert all(env == {"X": "a" if py == "pyA" else "b"} for _, py, env in calls)
    assert len(got["A"][CASE.case_id]) == 3 and len(got["B"][CASE.case_id]) == 3


# ---------------------------------------------------------------------------------------------------- K=V
@pytest.mark.parametrize("item", ["NOEQUALS", "=1", " K=1"])
def test_bad_env_item_is_a_one_line_input_error(item):
    with pytest.raises(InputError, match="--baseline-env") as e:
        ab.parse_env([item], "--baseline-env")
    assert "\n" not in str(e.value)
    assert ab.parse_env(["A=1", "B=x=y", "C="], "--candidate-env") == {"A": "1", "B": "x=y", "C": ""}


def test_cli_bad_env_exits_2(tmp_path, capsys):
    code = main(["ab", "quick", "--baseline-env", "OOPS", "--out", str(tmp_path)])
    assert code == ExitStatus.USAGE == 2
    assert "--baseline-env 'OOPS'" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ killed worker (synthetic)
def test_failed_side_marks_the_case_failed_and_keeps_measurements():
    base = [_result(1.0) for _ in range(6)]
    cand = [_result(1.0) for _ in range(5)] + [_result(None, status="failed")]
    c = ab.decide_case(CASE, base, cand, 0.05)
    assert c.verdict == "failed"
    assert c.failures == ["candidate round 5: failed"]
    assert c.baseline_s == [1.0] * 6 and c.candidate_s[:5] == [1.0] * 5
    assert ab.exit_code([c]) == 1


# ------------------------------------------------------------------------------------------- end to end
def _suite(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.toml"
    keys = dict(name="tiny", backend="slow", cell="gru", task="adding", seq_len=10, hidden=[8], batch_size=8,
                warmup=1, repetitions=3, threads=1, timeout_s=120)
    p.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items()))
    return p


@pytest.fixture
def slow_plugin(monkeypatch):
    monkeypatch.syspath_prepend(str(PERF))
    import os
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(PERF), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("GRU_BENCH_BACKENDS", "slow=ab_slow_backend:SlowBackend")


def test_end_to_end_env_reaches_worker_records_and_exit_1(tmp_path, slow_plugin):
    # the candidate's env makes its steps 100 % slower: only if the variable reaches the worker does it regress
    out, js, md = tmp_path / "out", tmp_path / "ab.json", tmp_path / "ab.md"
    code = main(["ab", str(_suite(tmp_path)), "--rounds", "6", "--out", str(out), "--json", str(js),
                 "--markdown", str(md), "--candidate-env", "GRU_BENCH_AB_SLOWDOWN=1.0",
                 "--baseline-python", sys.executable])
    payload = json.loads(js.read_text())
    case = payload["cases"][0]
    assert code == 1 and payload["exit_code"] == 1
    assert case["verdict"] == "regressed" and case["wall"]["ratio"] > 1.5  # ×2 injected; load may blur it
    assert "regressed" in md.read_text()
    from gru_bench.storage import load_record
    for side in ("baseline", "candidate"):
        rec = load_record(Path(payload["meta"][side]["record"]))
        (r,) = rec.cases
        assert len(r.train_time.samples) == 6 * 3 and len(r.train_time.cpu_samples) == 6 * 3


def test_end_to_end_killed_worker_on_one_side(tmp_path, slow_plugin):
    js = tmp_path / "ab.json"
    code = main(["ab", str(_suite(tmp_path)), "--rounds", "2", "--out", str(tmp_path / "out"), "--json", str(js),
                 "--candidate-env", "GRU_BENCH_AB_KILL=1"])
    case = json.loads(js.read_text())["cases"][0]
    assert code == 1
    assert case["verdict"] == "failed"
    assert len(case["failures"]) == 2  # both candidate rounds
    assert all(f.startswith("candidate round") and ("SIGKILL" in f or "killed" in f) for f in case["failures"])
    assert all(s is not None for s in case["baseline_s"])  # the baseline's measurements are kept


# ------------------------------------------------------------------------------- compare: the CPU channel
def _compare_sides(wall_scale: float, cpu_scale: float, busy: bool):
    from test_compare import make_case, record, result

    from gru_bench.compare import compare_records
    from gru_bench.checks import parse_fail_on
    from gru_bench.schema import Load

    rng = np.random.default_rng(3)
    c = make_case()
    base_w, cand_w = 0.01 * np.exp(rng.normal(0, 0.02, 20)), 0.01 * wall_scale * np.exp(rng.normal(0, 0.02, 20))
    base_c, cand_c = 0.01 * np.exp(rng.normal(0, 0.02, 20)), 0.01 * cpu_scale * np.exp(rng.normal(0, 0.02, 20))
    rb, rc = result(c, base_w, base_w), result(c, cand_w, cand_w)
    rb.train_time.cpu_samples, rc.train_time.cpu_samples = base_c.tolist(), cand_c.tolist()
    rc.load = Load(busy=busy, warning="busy" if busy else None)
    cmp = compare_records([record([rb])], [record([rc])], parse_fail_on("train_time:10%"))
    return next(r for r in cmp.rows if r.metric == "train_time"), cmp


def test_compare_busy_wall_regression_that_cpu_time_does_not_see_is_decided_by_cpu():
    row, cmp = _compare_sides(1.3, 1.0, busy=True)
    assert row.verdict == "unchanged" and row.channel == "cpu" and "CPU channel" in row.note
    assert cmp.exit_code == 0


def test_compare_busy_regression_seen_by_both_channels_still_gates():
    row, cmp = _compare_sides(1.3, 1.3, busy=True)
    assert row.verdict == "regressed" and row.channel == "wall" and cmp.exit_code == 1


def test_compare_quiet_machine_ignores_the_cpu_channel():
    row, _ = _compare_sides(1.3, 1.0, busy=False)
    assert row.verdict == "regressed" and row.cpu_p is None
