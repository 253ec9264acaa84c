"""gru-bench ab: the paired decision, ABBA order, environments reaching the worker, a killed worker, exit codes."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from gru_bench import ab
from gru_bench.case import Case
from gru_bench.cli import main
from gru_bench.errors import InputError
from gru_bench.schema import CaseResult, TimingStats
from gru_bench.status import ExitStatus

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


def test_paired_decision_ci_is_timing_stats_bootstrap_with_abs_seed_and_unchanged():
    """ab's interval is ``timing_stats.bootstrap_median_ci`` of the log ratios on ab's own seed: the numbers are
    those of ab's former copy of the bootstrap (pinned from it, rel 1e-12)."""
    from gru_bench.timing_stats import bootstrap_median_ci

    rng = np.random.default_rng(0)
    base = 1e-3 * np.exp(rng.normal(0, 0.3, 12))
    cand = base * 1.10 * np.exp(rng.normal(0, 0.01, 12))
    d = ab.paired_decision(base, cand, factor=0.05)
    assert (d.ci_low, d.ci_high) == pytest.approx((1.0923407487887442, 1.104205291304686), rel=1e-12)
    lo, hi = bootstrap_median_ci(np.log(cand / base), 0.95, ab.BOOTSTRAP_SEED)
    assert (d.ci_low, d.ci_high) == pytest.approx((np.exp(lo), np.exp(hi)), rel=1e-12)


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


# --------------------------------------------------------------------------------------- the gate: --fail-on
@pytest.mark.parametrize("fail_on, factor, gates, inconclusive", [
    (None, None, 0.05, False),  # the default gate: train_time:5%
    (None, 0.2, 0.2, False),  # --factor 0.2 is --fail-on train_time:20%
    ("train_time:20%", None, 0.2, False),
    ("train_time:1.2x", None, 0.2, False),
    ("train_time", None, 0.10, False),  # a value-less token means what it means in compare: its default, 10 %
    ("inconclusive", None, 0.05, True),  # alone: the default gate, and inconclusive fails too
    ("train_time:20%,inconclusive", None, 0.2, True),
    ("none", None, None, False),  # report only
])
def test_gate_speaks_compares_fail_on_grammar(fail_on, factor, gates, inconclusive):
    th = ab.gate(fail_on, factor)
    assert th.gates("train_time") is (gates is not None) and th.inconclusive is inconclusive
    if gates is not None:
        assert ab.practical_factor(th) == pytest.approx(gates, abs=1e-12)


@pytest.mark.parametrize("fail_on, factor, message", [
    ("train_time:10%", 0.1, "--factor 0.1 with --fail-on 'train_time:10%': expected one of them"),
    (None, -0.1, "--factor -0.1: expected a number >= 0"),
    ("params,train_time", None, "--fail-on 'params': gru-bench ab decides train_time only"),
    ("train_time:ten", None, "--fail-on 'train_time:ten': value 'ten' not understood"),
    ("none,train_time", None, "'none' (gate nothing) must stand alone"),
])
def test_bad_gate_is_a_one_line_input_error(fail_on, factor, message):
    with pytest.raises(InputError) as e:
        ab.gate(fail_on, factor)
    assert message in str(e.value) and "\n" not in str(e.value)


def _case_ab(verdict: str, label: str = "case") -> ab.CaseAB:
    return ab.CaseAB("id", label, verdict, "wall", {"ratio": 1.3, "ci_low": 1.2, "ci_high": 1.4, "p_value": 0.01})


def test_exit_code_follows_the_gate():
    regressed, inconclusive, failed = _case_ab("regressed"), _case_ab("inconclusive"), _case_ab("failed")
    assert ab.exit_code([regressed]) == 1 and ab.exit_code([inconclusive]) == 0
    assert ab.exit_code([regressed], ab.gate("none")) == 0  # reported, not gating
    assert ab.exit_code([inconclusive], ab.gate("inconclusive")) == 1
    assert ab.exit_code([inconclusive], ab.gate("none")) == 0
    assert ab.exit_code([failed], ab.gate("none")) == 1  # a failed worker always fails, as in compare


def test_cli_fail_on_with_a_metric_ab_does_not_decide_exits_2(tmp_path, capsys):
    code = main(["ab", "quick", "--fail-on", "accuracy:-0.02", "--out", str(tmp_path)])
    assert code == ExitStatus.USAGE
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.strip()]
    assert line.startswith("error: --fail-on 'accuracy:-0.02': gru-bench ab decides train_time only")


def test_default_rounds_is_the_one_named_constant():
    import inspect

    from gru_bench import cli

    assert ab.DEFAULT_ROUNDS == 8
    assert inspect.signature(cli.ab).parameters["rounds"].default.default is ab.DEFAULT_ROUNDS


def test_markdown_escapes_labels_and_notes():
    """A label (or a failure reason) with | or * must not break the table nor turn into emphasis."""
    cases = [_case_ab("regressed", "gru | h=8 *bold* <b>x</b>"), _case_ab("unchanged", "lstm_[x](y)")]
    cases[0].failures = ["candidate round 1: failed: a|b"]
    md = ab.to_markdown(cases, {"rounds": 8, "factor": 0.05, "gate": ab.describe_gate(ab.gate())})
    rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 3  # header + 2 cases
    import re
    for row in rows:
        assert len(re.findall(r"(?<!\\)\|", row)) == 8  # 7 columns: 8 unescaped pipes, none from a label
    assert "gru \\| h=8 \\*bold\\* &lt;b&gt;x&lt;/b&gt;" in md and "lstm\\_\\[x\\](y)" in md
    assert "a\\|b" in md
    assert "gate: train\\_time: ≥ ×1.05 and signed-rank p &lt; α, or a failed worker (defaults)" in md


def test_ab_command_records_both_sides_and_gates_with_the_thresholds(tmp_path):
    """A fake runner 30 % slower on the candidate: regressed under the default gate (exit 1), reported but not
    gating under --fail-on none (exit 0); both sides recorded, the gate named in the JSON."""
    from rich.console import Console

    from gru_bench.suite import validate_suite

    suite = validate_suite(dict(name="t", backend="numpy", cell="gru", task="adding", seq_len=10, hidden=8,
                                batch_size=8, repetitions=3, steps=0))
    rng = np.random.default_rng(0)

    def runner(case, python, env):
        t = 0.01 * (1.3 if env.get("SLOW") else 1.0) * float(np.exp(rng.normal(0, 0.01)))
        return CaseResult(case=case, case_id=case.case_id, status="ok", train_time=_stats(t, t))

    sides = {"A": (sys.executable, {}), "B": (sys.executable, {"SLOW": "1"})}
    console = Console(file=open(tmp_path / "console.txt", "w"))
    for spec, want in ((None, 1), ("none", 0)):
        js = tmp_path / f"{spec}.json"
        code = ab.ab_command(suite, tmp_path / f"out-{spec}", 8, ab.gate(spec), sides, None, js, console, runner)
        payload = json.loads(js.read_text())
        assert code == payload["exit_code"] == want
        assert [c["verdict"] for c in payload["cases"]] == ["regressed"]
        assert payload["meta"]["rounds"] == 8 and payload["meta"]["gate"].startswith(
            "train_time: ≥ ×1.05" if spec is None else "none")
        assert Path(payload["meta"]["candidate"]["record"]).exists()


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

    from gru_bench.compare.engine import compare_records
    from gru_bench.compare.thresholds import parse_fail_on
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
