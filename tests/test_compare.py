"""`gru-bench compare`: verdicts, statistics, thresholds, outputs and exit codes, on synthetic run records.

Records are built through the pydantic schema with seeded synthetic samples, written to disk and read back the way
the CLI reads them, so the tests cover loading too.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from gru_bench.case import Case
from gru_bench.compare.checks import DEFAULT_CHECKS, ExactCheck, MarginCheck, MemoryCheck, TimeCheck
from gru_bench.compare.command import compare_command
from gru_bench.compare.engine import compare_records
from gru_bench.compare.loading import load_side
from gru_bench.compare.stats import fdr, margin_test, timing_test
from gru_bench.compare.thresholds import parse_check, parse_fail_on
from gru_bench.errors import InputError
from gru_bench.schema import Accuracy, Calibration, CaseResult, GitInfo, Load, MemoryFigure, RunRecord, TimingStats

MACHINE_A = {"hostname": "runner-a", "cpu": {"model": "Xeon A"}, "cores_logical": 2}
MACHINE_B = {"hostname": "runner-b", "cpu": {"model": "EPYC B"}, "cores_logical": 8}


# ------------------------------------------------------------------------------------------------ builders
def make_case(**kw) -> Case:
    d = dict(backend="numpy", cell="gru", variant="reset_after", task="adding", seq_len=20, hidden=16,
             batch_size=8, repetitions=20)
    d.update(kw)
    return Case(**d)


def timing(samples) -> TimingStats:
    s = np.asarray(samples, dtype=float)
    q1, q3 = np.percentile(s, [25, 75])
    return TimingStats(samples=s.tolist(), median=float(np.median(s)), iqr=float(q3 - q1), min=float(s.min()),
                       mean=float(s.mean()), ci_low=float(s.min()), ci_high=float(s.max()))


def result(case: Case, train=None, forward=None, *, status="ok", reason=None, params=1234, flops=5.0e6,
           memory=(("activation_estimate", 10 * 2**20),), accuracy=None, metric="mse") -> CaseResult:
    acc = None
    if accuracy is not None:
        acc = Accuracy(metric=metric, final_metric=accuracy, final_loss=accuracy if metric == "mse" else 1 - accuracy,
                       baseline_loss=1 / 6)
    ok = status == "ok"
    return CaseResult(case=case, case_id=case.case_id, status=status, reason=reason,
                      params=params if ok else None, params_backend=params if ok else None,
                      flops_forward=flops if ok else None, flops_train_step=3 * flops if ok else None,
                      implementation="numpy (hand-written BPTT)",
                      train_time=timing(train) if ok and train is not None else None,
                      forward_time=timing(forward) if ok and forward is not None else None,
                      memory=[MemoryFigure(name=n, bytes=int(b), method="analytic") for n, b in memory] if ok else [],
                      accuracy=acc if ok else None)


def record(cases: list[CaseResult], run_id="run", machine=None, gflops=50.0, suite=None) -> RunRecord:
    return RunRecord(run_id=run_id, suite_name="quick", suite=suite or {}, created="2025-01-01T00:00:00",
                     machine=dict(machine or MACHINE_A), calibration=Calibration(gemm_gflops=gflops, method="test"),
                     git=GitInfo(commit="abc"), cases=cases)


def samples(rng: np.random.Generator, median: float, n: int = 20, cv: float = 0.03) -> np.ndarray:
    """Lognormal timing-like samples around ``median`` with a coefficient of variation ``cv``."""
    return median * np.exp(rng.normal(0.0, cv, n))


def timing_records(scale: float = 1.0, n_cases: int = 4, seed: int = 0, **rec_kw) -> tuple[RunRecord, RunRecord]:
    """A baseline and a candidate with the same cases; the candidate's samples are an independent draw × scale."""
    rng = np.random.default_rng(seed)
    cases = [make_case(hidden=16 * (i + 1)) for i in range(n_cases)]
    base = [result(c, samples(rng, 0.01 * (i + 1)), samples(rng, 0.003 * (i + 1))) for i, c in enumerate(cases)]
    cand = [result(c, samples(rng, 0.01 * (i + 1)) * scale, samples(rng, 0.003 * (i + 1)) * scale)
            for i, c in enumerate(cases)]
    return record(base, "base"), record(cand, "cand", **rec_kw)


def write(tmp_path: Path, name: str, rec: RunRecord) -> Path:
    p = tmp_path / f"{name}.json"
    p.write_text(rec.model_dump_json())
    return p


def rows(cmp, metric=None, verdict=None):
    return [r for r in cmp.rows if (metric is None or r.metric == metric) and (verdict is None or r.verdict == verdict)]


# ------------------------------------------------------------------------------------------ the command
def test_identical_inputs_are_unchanged_exit_0(tmp_path, capsys):
    base, _ = timing_records()
    p = write(tmp_path, "base", base)
    assert compare_command(p, p, None, tmp_path / "s.md", tmp_path / "s.json") == 0
    data = json.loads((tmp_path / "s.json").read_text())
    assert data["exit_code"] == 0
    assert {r["verdict"] for r in data["rows"]} == {"unchanged"}
    # every timing row is there, with ratio exactly 1 inside its bootstrap CI and p(slower) = p(faster) = 0.5ish
    timed = [r for r in data["rows"] if r["metric"] in ("train_time", "forward_time")]
    assert len(timed) == 8 and all(r["change"] == 1.0 and r["ci_low"] < 1.0 < r["ci_high"] for r in timed)
    assert all(r["p_value"] > 0.4 and r["p_improved"] > 0.4 for r in timed)
    md = (tmp_path / "s.md").read_text()
    assert md.startswith("### gru-bench compare: ✅ no gating regression")
    out = capsys.readouterr().out
    assert "gru-bench compare" in out and "no gating regression" in out
    assert "gru[reset_after] adding" in out  # labels are printed verbatim, not eaten as rich markup


def test_independent_reruns_of_the_same_distribution_are_unchanged():
    base, cand = timing_records(1.0, n_cases=8, seed=3)
    cmp = compare_records([base], [cand])
    assert cmp.exit_code == 0
    assert not rows(cmp, verdict="regressed") and not rows(cmp, verdict="improved")


def test_injected_slowdown_is_regressed_exit_1(tmp_path, capsys):
    base, cand = timing_records(1.25, seed=1)
    code = compare_command(write(tmp_path, "b", base), write(tmp_path, "c", cand), None, tmp_path / "s.md", None)
    assert code == 1
    cmp = compare_records([base], [cand])
    slow = rows(cmp, "train_time") + rows(cmp, "forward_time")
    assert len(slow) == 8 and all(r.verdict == "regressed" for r in slow)
    for r in slow:  # the 95 % bootstrap CI of the ratio covers the injected 1.25 (within sampling noise, cv 3 %)
        assert r.ci_low <= 1.25 * 1.03 and r.ci_high >= 1.25 / 1.03 and 1.15 < r.change < 1.35
        assert r.q_value < 0.05
    assert "❌ 8 gating regressions" in (tmp_path / "s.md").read_text()
    assert "regressed" in capsys.readouterr().out


def test_speedup_is_improved_exit_0():
    base, cand = timing_records(0.75, seed=2)
    cmp = compare_records([base], [cand])
    assert cmp.exit_code == 0
    assert all(r.verdict == "improved" for r in rows(cmp, "train_time"))


def test_slowdown_below_the_factor_is_unchanged_and_factor_is_configurable():
    base, cand = timing_records(1.06, seed=4, n_cases=2)
    cmp = compare_records([base], [cand])
    assert [r.verdict for r in rows(cmp, "train_time")] == ["unchanged"] * 2
    assert all(r.q_value < 0.05 for r in rows(cmp, "train_time"))  # significant, but below 1.10×
    cmp = compare_records([base], [cand], parse_fail_on("train_time:3%"))
    assert [r.verdict for r in rows(cmp, "train_time")] == ["regressed"] * 2 and cmp.exit_code == 1


def test_missing_and_new_cases(tmp_path):
    rng = np.random.default_rng(5)
    a, b, c = make_case(hidden=8), make_case(hidden=16), make_case(hidden=32)
    base = record([result(a, samples(rng, 0.01)), result(b, samples(rng, 0.01))])
    cand = record([result(a, samples(rng, 0.01)), result(c, samples(rng, 0.01))])
    cmp = compare_records([base], [cand])
    by_key = cmp.case_verdicts()
    assert by_key[b.case_id] == "missing" and by_key[c.case_id] == "new" and by_key[a.case_id] == "unchanged"
    assert cmp.exit_code == 0  # neither gates
    assert compare_command(write(tmp_path, "b", base), write(tmp_path, "c", cand), None, None, None) == 0


def test_cases_match_on_configuration_not_on_run_fields():
    """A different timeout (it limits, it does not change the case) and a stale stored case_id still match."""
    rng = np.random.default_rng(6)
    case = make_case()
    base = record([result(case, samples(rng, 0.01))])
    other = result(case.model_copy(update={"timeout_s": 5.0}), samples(rng, 0.01))
    other.case_id = "stale-id-000"
    cmp = compare_records([base], [record([other])])
    assert cmp.case_verdicts() == {case.case_id: "unchanged"}


def test_failed_candidate_case_fails_the_comparison():
    rng = np.random.default_rng(7)
    a, b = make_case(hidden=8), make_case(hidden=16)
    base = record([result(a, samples(rng, 0.01)), result(b, status="failed", reason="boom")])
    cand = record([result(a, status="diverged", reason="loss is nan"), result(b, status="failed", reason="boom")])
    cmp = compare_records([base], [cand])
    fa, fb = rows(cmp, "status", "failed")
    assert {fa.key, fb.key} == {a.case_id, b.case_id}
    failing = {r.key for r in cmp.failures}
    assert failing == {a.case_id}  # b failed in the baseline too: reported, not a new regression
    assert cmp.exit_code == 1 and "loss is nan" in next(r.note for r in rows(cmp, "status") if r.key == a.case_id)


def test_skipped_cases():
    rng = np.random.default_rng(8)
    a, b = make_case(hidden=8, device="cuda"), make_case(hidden=16, device="cuda")
    base = record([result(a, samples(rng, 0.01)), result(b, status="skipped", reason="no GPU")])
    cand = record([result(a, status="skipped", reason="no GPU"), result(b, status="skipped", reason="no GPU")])
    v = compare_records([base], [cand]).case_verdicts()
    assert v == {a.case_id: "missing", b.case_id: "unchanged"}


# ----------------------------------------------------------------------------------------------- inputs
@pytest.mark.parametrize("content, expect", [
    ("{not json", "corrupt"), ('{"hello": "world"}', "not a"), ("", "corrupt"),
    ('{"schema_version": 2, "run_id": "x"}', "not a valid")])
def test_corrupt_or_foreign_input_raises_input_error(tmp_path, content, expect):
    good = write(tmp_path, "good", timing_records()[0])
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    with pytest.raises(InputError) as e:
        compare_command(good, bad, None, None, None)
    assert "bad.json" in str(e.value) and expect in str(e.value) and len(str(e.value).splitlines()) == 1


def test_missing_path_and_empty_directory_raise_input_error(tmp_path):
    good = write(tmp_path, "good", timing_records()[0])
    with pytest.raises(InputError, match="baseline=.*nope.*no such file"):
        compare_command(tmp_path / "nope.json", good, None, None, None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no run records"):
        compare_command(good, tmp_path / "empty", None, None, None)


def test_directories_pool_their_records(tmp_path):
    """Two baseline runs in a directory pool their samples (n doubles) and compare like one record."""
    rng = np.random.default_rng(9)
    case = make_case()
    d = tmp_path / "base"
    d.mkdir()
    for i in range(2):
        write(d, f"run{i}", record([result(case, samples(rng, 0.01))], f"b{i}"))
    cand = write(tmp_path, "cand", record([result(case, samples(rng, 0.01) * 1.3)], "c"))
    assert len(load_side(d)) == 2
    assert compare_command(d, cand, None, None, tmp_path / "o.json") == 1
    row = next(r for r in json.loads((tmp_path / "o.json").read_text())["rows"] if r["metric"] == "train_time")
    assert (row["n_baseline"], row["n_candidate"], row["verdict"]) == (40, 20, "regressed")


def test_bad_fail_on_is_an_input_error(tmp_path):
    p = write(tmp_path, "b", timing_records()[0])
    with pytest.raises(InputError, match="train_tme"):
        compare_command(p, p, "train_tme:10%", None, None)


# ----------------------------------------------------------------------------------------------- checks
@pytest.mark.parametrize("token, expected", [
    ("train_time:10%", TimeCheck("train_time", 1.10)),
    ("forward_time:1.25x", TimeCheck("forward_time", 1.25)),
    ("train_time", DEFAULT_CHECKS["train_time"]),
    ("accuracy:-0.02", MarginCheck("accuracy", 0.02)),
    ("accuracy:-2%", MarginCheck("accuracy", 0.02, relative=True)),
    ("loss:0.01", MarginCheck("loss", 0.01)),
    ("memory:20%", MemoryCheck("memory", 0.20, 2**20)),
    ("memory:8MiB", MemoryCheck("memory", 0.20, 8 * 2**20)),
    ("memory:10%+4MB", MemoryCheck("memory", 0.10, 4_000_000)),
    ("params", ExactCheck("params")),
    ("flops:exact", ExactCheck("flops")),
])
def test_parse_check(token, expected):
    assert parse_check(token) == expected


@pytest.mark.parametrize("spec, culprit", [
    ("train_tme:10%", "'train_tme'"),
    ("train_time:ten", "'ten'"),
    ("train_time:0.9x", "0.9x"),
    ("train_time:-5%", "-5%"),
    ("accuracy:lots", "'lots'"),
    ("memory:20%+many", "'many'"),
    ("params:5%", "'5%'"),
    ("train_time:10%,train_time:5%", "named twice"),
    ("train_time:10%,,memory", "empty token"),
    ("", "expected comma-separated"),
])
def test_check_parsing_errors_name_the_culprit(spec, culprit):
    with pytest.raises(InputError) as e:
        parse_fail_on(spec)
    msg = str(e.value)
    assert culprit in msg and msg.startswith("--fail-on") and "\n" not in msg


def test_fail_on_gates_only_the_named_metrics():
    """The project's CI gate: deterministic metrics and accuracy gate, timings are reported only."""
    base, cand = timing_records(1.25, n_cases=2, seed=10)
    cmp = compare_records([base], [cand], parse_fail_on("params,flops,accuracy:-0.02"))
    assert rows(cmp, "train_time", "regressed") and cmp.exit_code == 0
    assert all(not r.gating for r in rows(cmp, "train_time"))
    assert compare_records([base], [cand], parse_fail_on("none")).exit_code == 0


def test_thresholds_come_from_the_suite_when_not_given(tmp_path):
    base, cand = timing_records(1.25, n_cases=1, seed=11)
    cand = cand.model_copy(update={"suite": {"fail_on": {"params": True, "accuracy": "-0.05"}}})
    cmp = compare_records([base], [cand])
    assert cmp.thresholds.gating == {"params", "accuracy"} and cmp.thresholds.source.startswith("suite of")
    assert cmp.exit_code == 0
    # the command line wins over the suite
    assert compare_command(write(tmp_path, "b", base), write(tmp_path, "c", cand), "train_time:10%", None, None) == 1
    bad = cand.model_copy(update={"suite": {"fail_on": "accuracy:??"}})
    with pytest.raises(InputError, match="fail_on in the suite of cand"):
        compare_records([base], [bad])


SUITE_TOML = 'name = "gated"\nbackend = "numpy"\ncell = "gru"\ntask = "adding"\nseq_len = 5\nhidden = 4\n'


def test_a_suite_file_declares_fail_on_and_compare_uses_it(tmp_path):
    """``fail_on`` in a suite file (docs/ci.md): validated at load with --fail-on's grammar, stored in the record's
    suite, applied by compare when the command line gives none; the command line still wins."""
    from gru_bench.suite import load_suite

    (tmp_path / "s.toml").write_text(SUITE_TOML + 'fail_on = "params,flops"\n')
    suite = load_suite(tmp_path / "s.toml")
    assert suite.fail_on == "params,flops" and suite.record()["fail_on"] == "params,flops"
    (tmp_path / "t.toml").write_text(SUITE_TOML + '[fail_on]\nparams = true\naccuracy = "-2%"\n')
    assert load_suite(tmp_path / "t.toml").fail_on == {"params": True, "accuracy": "-2%"}
    assert load_suite(tmp_path / "t.toml").cases() == suite.cases()  # not a grid key: the cases are the same
    base, cand = timing_records(1.25, n_cases=1, seed=11, suite=suite.record())
    b, c = write(tmp_path, "b", base), write(tmp_path, "c", cand)
    cmp = compare_records([base], [cand])
    assert cmp.thresholds.gating == {"params", "flops"} and cmp.thresholds.source == "suite of cand"
    assert [r.verdict for r in rows(cmp, "train_time")] == ["regressed"]  # compared, reported, not gating
    assert compare_command(b, c) == 0
    assert compare_command(b, c, "train_time:10%") == 1


@pytest.mark.parametrize("text, message", [
    ('fail_on = "train_time:ten"\n', "fail_on 'train_time:ten': value 'ten' not understood"),
    ('fail_on = ["params", "speed"]\n', "fail_on 'speed': unknown metric 'speed'"),
    ('fail_on = 3\n', "fail_on=3: expected a valid string"),
    ('[[also]]\nfail_on = "params"\n', "also[0].fail_on: expected a grid key"),
])
def test_a_bad_fail_on_in_a_suite_file_is_a_one_line_input_error(tmp_path, text, message):
    from gru_bench.suite import load_suite

    (tmp_path / "s.toml").write_text(SUITE_TOML + text)
    with pytest.raises(InputError) as e:
        load_suite(tmp_path / "s.toml")
    assert message in str(e.value) and str(e.value).startswith(str(tmp_path / "s.toml")), str(e.value)
    assert "\n" not in str(e.value)


# -------------------------------------------------------------------------------------------- statistics
def test_false_discovery_rate_correction_across_cases():
    """A marginal slowdown (ratio 1.11, one-sided p ≈ 0.021) is a regression alone, but not among 10 null cases:
    BH's q = p·m/rank ≥ 0.05 there. The q-values are scipy's BH of the raw p-values."""
    a = [1.0, 1.02, 1.04, 1.06, 1.08, 1.10]
    b = [1.05, 1.07, 1.16, 1.18, 1.20, 1.22]
    p = stats.mannwhitneyu(b, a, alternative="greater").pvalue
    assert 0.01 < p < 0.05 and np.median(b) / np.median(a) > 1.10
    marginal = make_case(hidden=99)
    alone = compare_records([record([result(marginal, a)])], [record([result(marginal, b)])])
    assert rows(alone, "train_time")[0].verdict == "regressed"

    rng = np.random.default_rng(12)
    nulls = [make_case(hidden=8 + i) for i in range(10)]
    base = record([result(marginal, a)] + [result(c, samples(rng, 1.0, 6)) for c in nulls])
    cand = record([result(marginal, b)] + [result(c, samples(rng, 1.0, 6)) for c in nulls])
    many = compare_records([base], [cand])
    timed = rows(many, "train_time")
    assert next(r for r in timed if r.key == marginal.case_id).verdict == "unchanged"
    q = fdr([r.p_value for r in timed])
    assert [r.q_value for r in timed] == pytest.approx(q, rel=1e-12)
    assert all(qq >= r.p_value for qq, r in zip(q, timed))


def test_timing_test_bootstrap_is_seeded_and_covers_the_true_ratio():
    rng = np.random.default_rng(13)
    a, b = samples(rng, 1.0, 30), samples(rng, 1.2, 30)
    t1 = timing_test(a, b, np.random.default_rng(0))
    t2 = timing_test(a, b, np.random.default_rng(0))
    assert t1 == t2  # same seed, same interval
    assert t1.ci_low < 1.2 < t1.ci_high and t1.p_slower < 1e-6 and t1.p_faster > 0.99


def test_calibration_normalises_timings_across_machines():
    """Candidate machine calibrates 2× faster and its samples are 2× smaller: normalised, nothing changed."""
    rng = np.random.default_rng(14)
    case = make_case()
    a = samples(rng, 0.02)
    base = record([result(case, a)], "base", MACHINE_A, gflops=50.0)
    cand = record([result(case, a / 2)], "cand", MACHINE_B, gflops=100.0)
    cmp = compare_records([base], [cand])
    r = rows(cmp, "train_time")[0]
    assert r.verdict == "unchanged" and r.change == pytest.approx(1.0, rel=1e-12)
    assert any("different machines" in w and "normalised" in w for w in cmp.warnings)
    # the same numbers on one machine are a real 2× speed-up, with no warning
    same = compare_records([base], [record([result(case, a / 2)], "cand", MACHINE_A, gflops=100.0)])
    assert rows(same, "train_time")[0].verdict == "improved" and not same.warnings
    # across machines without a calibration: compared raw, with a warning that says so
    nocal = record([result(case, a / 2)], "cand", MACHINE_B).model_copy(update={"calibration": None})
    cmp = compare_records([base], [nocal])
    assert any("unnormalised" in w for w in cmp.warnings)


def test_cpu_channel_is_normalised_across_machines_like_the_wall_channel():
    """The busy-machine second opinion (process CPU time) gets each record's time scale too: a candidate machine
    that calibrates 2x faster with CPU samples 2x smaller is unchanged on the CPU channel (ratio 1, rel 1e-12)."""
    from gru_bench.compare.loading import Entry, cpu_samples

    rng = np.random.default_rng(15)
    case = make_case()
    a, c = samples(rng, 0.02), samples(rng, 0.02)

    def with_cpu(values, cpu):
        r = result(case, values)
        r.train_time.cpu_samples = list(cpu)
        return r

    base = record([with_cpu(a, c)], "base", MACHINE_A, gflops=50.0)
    cand = record([with_cpu(a / 2, c / 2)], "cand", MACHINE_B, gflops=100.0)
    cand.cases[0].load = Load(busy=True, warning="load 13 on 2 cores")
    r = rows(compare_records([base], [cand]), "train_time")[0]
    assert r.change == pytest.approx(1.0, rel=1e-12)
    assert r.cpu_change == pytest.approx(1.0, rel=1e-12), "CPU samples scaled as the wall samples are"
    e = Entry([cand.cases[0]], [2.0])
    assert cpu_samples(e, "train_time") == pytest.approx([2.0 * v for v in c / 2], rel=1e-12)


def accuracy_records(base_vals, cand_vals, metric="accuracy", task="copy", cand_seeds=None):
    def mk(vals, seeds):
        return record([result(make_case(task=task, seed=s, steps=100), samples(np.random.default_rng(s), .01),
                              accuracy=v, metric=metric) for s, v in zip(seeds, vals)])
    return mk(base_vals, range(len(base_vals))), mk(cand_vals, cand_seeds or range(len(cand_vals)))


def test_accuracy_non_inferiority_across_seeds_welch():
    """Different seeds on the two sides: Welch's one-sided test against the margin."""
    base_vals = [0.900, 0.905, 0.895, 0.902, 0.898, 0.903, 0.897, 0.900]
    near = [0.897, 0.899, 0.893, 0.901, 0.896, 0.894, 0.899, 0.895]  # −0.004 on average: inside the 0.02 margin
    b, c = accuracy_records(base_vals, near, cand_seeds=range(10, 18))
    cmp = compare_records([b], [c], parse_fail_on("accuracy:-0.02"))
    row = rows(cmp, "accuracy:accuracy")[0]
    assert row.verdict == "unchanged" and row.p_value < 0.05 and "Welch" in row.method and cmp.exit_code == 0
    assert row.n_baseline == row.n_candidate == 8
    ref = stats.ttest_ind(np.array(near) + 0.02, base_vals, equal_var=False, alternative="greater").pvalue
    assert row.p_value == pytest.approx(ref, rel=1e-12)
    # a drop of 0.05: non-inferiority cannot be shown -> regressed, exit 1; the 90 % CI lies beyond the margin
    b, c = accuracy_records(base_vals, [v - 0.05 for v in near], cand_seeds=range(10, 18))
    cmp = compare_records([b], [c], parse_fail_on("accuracy:-0.02"))
    row = rows(cmp, "accuracy:accuracy")[0]
    assert row.verdict == "regressed" and row.change == pytest.approx(np.mean(near) - 0.05 - np.mean(base_vals))
    assert row.ci_high < -0.02 and cmp.exit_code == 1
    # never a bare mean: the means differ by only 0.01 (< margin), but with this spread nothing is shown
    noisy = [0.70, 0.99, 0.80, 0.95, 0.75]
    b, c = accuracy_records(noisy, [v - 0.01 for v in [0.99, 0.70, 0.95, 0.80, 0.75]], cand_seeds=range(5, 10))
    row = rows(compare_records([b], [c]), "accuracy:accuracy")[0]
    assert row.verdict == "inconclusive" and "not shown" not in row.note and row.p_value > 0.05


def test_accuracy_non_inferiority_paired_by_seed():
    """The same seeds on both sides pair the runs: per-seed differences are tested (a paired t test), so a small
    consistent change is judged on its own spread, not on the spread between seeds."""
    base_vals = [0.70, 0.99, 0.80, 0.95, 0.75]
    cand_vals = [0.695, 0.992, 0.79, 0.951, 0.745]
    b, c = accuracy_records(base_vals, cand_vals)
    row = rows(compare_records([b], [c]), "accuracy:accuracy")[0]
    assert row.verdict == "unchanged" and "paired" in row.method
    ref = stats.ttest_rel(np.array(cand_vals) + 0.02, base_vals, alternative="greater").pvalue
    assert row.p_value == pytest.approx(ref, rel=1e-12) and row.p_value < 0.05
    b, c = accuracy_records(base_vals, [v - 0.04 + d for v, d in zip(base_vals, [0, .01, -.01, .005, 0])])
    assert rows(compare_records([b], [c]), "accuracy:accuracy")[0].verdict == "regressed"


def test_accuracy_lower_is_better_metric_and_loss():
    """mse: lower is better; a rise beyond the margin regresses."""
    base_vals = [0.010, 0.012, 0.011, 0.013]
    b, c = accuracy_records(base_vals, [v + 0.05 for v in base_vals], metric="mse", task="adding")
    cmp = compare_records([b], [c], parse_fail_on("accuracy:0.02,loss:0.02"))
    assert rows(cmp, "accuracy:mse")[0].verdict == "regressed" and rows(cmp, "loss")[0].verdict == "regressed"
    b, c = accuracy_records(base_vals, [v - 0.009 for v in base_vals], metric="mse", task="adding")
    assert rows(compare_records([b], [c]), "accuracy:mse")[0].verdict == "unchanged"


def test_single_seed_falls_back_to_a_threshold_and_says_so():
    b, c = accuracy_records([0.90], [0.89])
    row = rows(compare_records([b], [c]), "accuracy:accuracy")[0]
    assert row.verdict == "unchanged" and "threshold" in row.method and "too few seeds" in row.method
    b, c = accuracy_records([0.90], [0.85])
    row = rows(compare_records([b], [c]), "accuracy:accuracy")[0]
    assert row.verdict == "regressed" and "margin" in row.note


def test_deterministic_seeds_compare_exactly():
    """Identical per-seed values (fixed seeds, deterministic kernels): unchanged, by an exact comparison; a task
    solved on every seed (no spread) compares exactly too."""
    vals = [0.90, 0.93, 0.88]
    b, c = accuracy_records(vals, vals)
    row = rows(compare_records([b], [c]), "accuracy:accuracy")[0]
    assert row.verdict == "unchanged" and row.change == 0
    b, c = accuracy_records([1.0, 1.0, 1.0], [1.0, 1.0, 1.0])
    row = rows(compare_records([b], [c]), "accuracy:accuracy")[0]
    assert row.verdict == "unchanged" and "exact" in row.method


def test_margin_test_matches_a_shifted_welch_test():
    a, b = [0.9, 0.92, 0.91, 0.89], [0.88, 0.90, 0.91, 0.89]
    t = margin_test(a, b, 0.02)
    ref = stats.ttest_ind(np.array(b) + 0.02, a, equal_var=False, alternative="greater").pvalue
    assert t.p_inferior == pytest.approx(ref, rel=1e-12) and t.diff == pytest.approx(np.mean(b) - np.mean(a))


# ------------------------------------------------------------------------------ deterministic and memory
def test_parameter_and_flop_counts_compare_exactly():
    rng = np.random.default_rng(15)
    case = make_case()
    base = record([result(case, samples(rng, 0.01), params=1234)])
    cand = record([result(case, samples(rng, 0.01), params=1235)])
    cmp = compare_records([base], [cand])
    assert {r.metric for r in rows(cmp, verdict="regressed")} == {"params", "params_backend"}
    assert cmp.exit_code == 1 and "1234 → 1235" in rows(cmp, "params")[0].note
    same = compare_records([base], [record([result(case, samples(rng, 0.01), params=1234)])])
    assert all(r.verdict == "unchanged" for r in same.rows if r.check in ("params", "flops"))


@pytest.mark.parametrize("base_b, cand_b, verdict", [
    (10 * 2**20, 12 * 2**20, "unchanged"),  # +20 %: not more than 20 %
    (10 * 2**20, 13 * 2**20, "regressed"),  # +30 % and +3 MiB
    (2**20, 2 * 2**20 - 1, "unchanged"),  # +100 % but under 1 MiB: absolute tolerance holds it
    (10 * 2**20, 7 * 2**20, "improved"),
])
def test_memory_needs_both_relative_and_absolute_change(base_b, cand_b, verdict):
    rng = np.random.default_rng(16)
    case = make_case()
    base = record([result(case, samples(rng, 0.01), memory=(("host_peak_rss_delta", base_b),))])
    cand = record([result(case, samples(rng, 0.01), memory=(("host_peak_rss_delta", cand_b),))])
    assert rows(compare_records([base], [cand]), "memory:host_peak_rss_delta")[0].verdict == verdict


def test_json_and_markdown_outputs(tmp_path):
    base, cand = timing_records(1.25, n_cases=2, seed=17)
    base.cases[0].case = base.cases[0].case.model_copy(update={"options": {"note": "a|b"}})  # a pipe in the label?
    code = compare_command(write(tmp_path, "b", base), write(tmp_path, "c", cand), "train_time:10%",
                           tmp_path / "out" / "summary.md", tmp_path / "out" / "cmp.json")
    assert code == 1
    data = json.loads((tmp_path / "out" / "cmp.json").read_text())
    assert data["thresholds"]["gating"] == ["train_time"] and data["counts"]["regressed"] >= 1
    assert set(data["cases"]) == {c.case.case_id for c in base.cases + cand.cases}
    assert data["cases"][base.cases[0].case.case_id] == "missing" and "regressed" in data["cases"].values()
    assert all(r["fails"] == (r["verdict"] == "regressed" and r["check"] == "train_time") for r in data["rows"])
    md = (tmp_path / "out" / "summary.md").read_text()
    assert "#### Gating regressions and failures" in md and "<details>" in md
    for line in md.splitlines():
        if line.startswith("| "):
            assert line.count(" | ") == 8  # 9 columns, no stray pipe from a label


def test_cli_exit_codes(tmp_path, capsys):
    """Through the console script's entry point: 0 no regression, 1 regression, 2 usage/input error."""
    from gru_bench.cli import main

    base, slow = timing_records(1.25, n_cases=1, seed=18)
    b, c = write(tmp_path, "b", base), write(tmp_path, "c", slow)
    md = tmp_path / "summary.md"
    assert main(["compare", str(b), str(b)]) == 0
    assert main(["compare", str(b), str(c), "--markdown", str(md)]) == 1 and md.exists()
    assert main(["compare", str(b), str(c), "--fail-on", "params,flops"]) == 0
    assert main(["compare", str(b), str(c), "--fail-on", "train_time:ten"]) == 2
    (tmp_path / "bad.json").write_text("{truncated")
    assert main(["compare", str(b), str(tmp_path / "bad.json")]) == 2
    assert "bad.json" in capsys.readouterr().err


def test_a_bug_is_exit_1_not_a_usage_error_and_bad_input_stays_2(tmp_path, capsys, monkeypatch):
    """A plain ValueError raised deep inside (a bug, not bad input) is exit 1 with its type named and a pointer to
    --debug; only InputError (and usage errors) are exit 2, with their one-line message and no traceback."""
    from gru_bench.cli import main
    from gru_bench.compare import engine
    from gru_bench.status import ExitStatus

    base, cand = timing_records(1.0, n_cases=1, seed=18)
    b, c = write(tmp_path, "b", base), write(tmp_path, "c", cand)
    capsys.readouterr()
    assert main(["compare", str(b), str(c), "--fail-on", "train_time:ten"]) == ExitStatus.USAGE == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: --fail-on 'train_time:ten': value 'ten' not understood; expected a percentage (10%) or a "
                   "factor (1.1x)"]

    def broken(*a, **k):
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr(engine, "timing_test", broken)
    assert main(["compare", str(b), str(c)]) == ExitStatus.FAILED == 1
    err = capsys.readouterr().err
    assert err.strip().splitlines() == ["error: ValueError: operands could not be broadcast together (run with "
                                        "--debug for the traceback)"]
    assert "Traceback" not in err
    assert main(["compare", str(b), str(c), "--debug"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_busy_machine_is_warned_and_noted():
    """The runner flags cases timed while other processes competed for the CPU; compare says so."""
    base, cand = timing_records(1.0, n_cases=2, seed=19)
    assert not compare_records([base], [cand]).warnings
    cand.cases[0].load = Load(busy=True, warning="load 13 on 2 cores")
    cmp = compare_records([base], [cand])
    assert any("busy machine (1 in the candidate)" in w for w in cmp.warnings)
    noted = [r for r in rows(cmp, "train_time") if "busy machine (candidate)" in r.note]
    assert [r.key for r in noted] == [cand.cases[0].case.case_id]


# ------------------------------------------------------------------------- reliability review (issue 14)
def multi_seed_run(run_id: str, jitter: float = 0.0) -> RunRecord:
    """One run of a multi-seed suite: seeds [0, 1] × H [8, 16], accuracy and timings per case."""
    cases = []
    for h in (8, 16):
        for s in (0, 1):
            c = make_case(task="copy", hidden=h, seed=s, steps=20)
            cases.append(result(c, samples(np.random.default_rng([h, s, int(jitter * 1e6)]), 0.01),
                                samples(np.random.default_rng([h, s, 7]), 0.004),
                                accuracy=0.8 + 0.05 * s + h / 1000, metric="accuracy"))
    return record(cases, run_id)


def test_folder_of_two_runs_of_a_multi_seed_suite_compared_with_itself_exits_0(tmp_path, capsys):
    """Each seed twice per side used to break the pairing: an unpaired test of identical values, 'regressed'."""
    d = tmp_path / "runs"
    d.mkdir()
    write(d, "a", multi_seed_run("run-a"))
    write(d, "b", multi_seed_run("run-b", jitter=1.0))
    assert compare_command(d, d) == 0
    cmp = compare_records(load_side(d), load_side(d))
    assert not rows(cmp, verdict="regressed") and not rows(cmp, verdict="inconclusive")
    acc = rows(cmp, "accuracy:accuracy")
    assert len(acc) == 2 and all(r.n_baseline == r.n_candidate == 2 and "exact" in r.method for r in acc)
    assert all(r.n_baseline == 40 for r in rows(cmp, "train_time"))  # timing samples of both runs pooled
    assert "no gating regression" in capsys.readouterr().out


def test_record_with_duplicated_cases_is_flagged_and_compares_with_itself(tmp_path):
    rec = multi_seed_run("run-a")
    dup = rec.model_copy(update={"cases": rec.cases + rec.cases[:2]})
    path = write(tmp_path, "dup", dup)
    with pytest.warns(UserWarning, match=r"dup\.json: holds 2 case\(s\) more than once"):
        side = load_side(path)
    cmp = compare_records(side, side, files={"run-a": str(path)})
    assert cmp.exit_code == 0 and not rows(cmp, verdict="regressed")
    assert any("dup.json" in w and "more than once" in w for w in cmp.warnings)


def test_lack_of_power_is_inconclusive_and_gates_only_on_request(tmp_path):
    """Means 0.01 apart (< margin 0.02) but a spread that shows nothing: neither non-inferior nor inferior."""
    noisy = [0.70, 0.99, 0.80, 0.95, 0.75]
    b, c = accuracy_records(noisy, [v - 0.01 for v in [0.99, 0.70, 0.95, 0.80, 0.75]], cand_seeds=range(5, 10))
    cmp = compare_records([b], [c])
    row = rows(cmp, "accuracy:accuracy")[0]
    assert row.verdict == "inconclusive" and row.note.startswith("inconclusive: more seeds") and row.p_value > 0.05
    assert row.ci_low < -0.02 < row.ci_high and cmp.exit_code == 0 and not row.fails
    strict = compare_records([b], [c], parse_fail_on("accuracy,inconclusive"))
    assert strict.exit_code == 1 and [f.metric for f in strict.failures] == ["accuracy:accuracy"]
    assert compare_records([b], [c], parse_fail_on("params,inconclusive")).exit_code == 0  # accuracy not gating
    pb, pc = write(tmp_path, "b", b), write(tmp_path, "c", c)
    assert compare_command(pb, pc) == 0 and compare_command(pb, pc, "accuracy,inconclusive") == 1


def test_fail_on_inconclusive_grammar():
    th = parse_fail_on("inconclusive")
    assert th.inconclusive and th.gating == frozenset(DEFAULT_CHECKS)  # alone: every metric, as with no spec
    th = parse_fail_on("params, accuracy:-0.05 ,inconclusive")
    assert th.inconclusive and th.gating == {"params", "accuracy"} and th["accuracy"].margin == 0.05
    assert not parse_fail_on("params").inconclusive
    for bad, msg in (("inconclusive,inconclusive", "named twice"), ("none,params", "must stand alone"),
                     ("inconclusive:yes", "unknown metric")):
        with pytest.raises(InputError, match=msg):
            parse_fail_on(bad)


def test_deeply_nested_json_is_refused_naming_the_file(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match=r"deep\.json: .*nested deeper"):
        compare_command(deep, deep)
    shallow_in_record = tmp_path / "d2" / "r.json"  # parses, but nests far deeper than any record
    shallow_in_record.parent.mkdir()
    shallow_in_record.write_text('{"schema_version": 1, "run_id": "x", "machine": ' + '{"a": ' * 500 + "1"
                                 + "}" * 500 + "}")
    with pytest.raises(InputError, match=r"r\.json: .*nested deeper"):
        compare_command(shallow_in_record.parent, shallow_in_record.parent)


def nan_timing(rec: RunRecord, which: int, n_nan: int | None = None) -> RunRecord:
    """``rec`` with the train_time samples of case ``which`` made NaN (all of them, or the first ``n_nan``)."""
    cases = list(rec.cases)
    cr = cases[which]
    s = list(cr.train_time.samples)
    s[: len(s) if n_nan is None else n_nan] = [float("nan")] * (len(s) if n_nan is None else n_nan)
    cases[which] = cr.model_copy(update={"train_time": cr.train_time.model_copy(
        update={"samples": s, "median": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")})})
    return rec.model_copy(update={"cases": cases})


def test_nan_timing_samples_are_dropped_with_a_warning_naming_file_and_case(tmp_path, capsys):
    base, cand = timing_records(n_cases=2)
    pb = write(tmp_path, "base", nan_timing(base, 0))  # all NaN on one case
    pc = write(tmp_path, "cand", nan_timing(cand, 1, n_nan=5))  # some NaN on another
    assert compare_command(pb, pc) == 0
    out = capsys.readouterr().out
    assert "base.json" in out and "cand.json" in out and "not finite" in out
    cmp = compare_records(load_side(pb), load_side(pc), files={base.run_id: str(pb)})
    label0 = base.cases[0].case.label
    row0 = [r for r in rows(cmp, "train_time") if r.label == label0][0]
    assert row0.verdict == "new" and "only in the candidate" in row0.note  # no timing verdict without a sample
    row1 = [r for r in rows(cmp, "train_time") if r.label == base.cases[1].case.label][0]
    assert row1.verdict == "unchanged" and row1.n_candidate == 15 and np.isfinite(row1.p_value)
    assert any("base.json" in w and label0 in w and "20 of 20" in w for w in cmp.warnings)


def test_all_nan_on_both_sides_gives_no_timing_verdict():
    base, cand = timing_records(n_cases=1)
    cmp = compare_records([nan_timing(base, 0)], [nan_timing(cand, 0)])
    assert not rows(cmp, "train_time") and cmp.exit_code == 0
    assert fdr([float("nan"), 0.01]) == pytest.approx([1.0, 0.02])  # an undefined p shows nothing


def test_a_seed_lost_on_one_side_pairs_on_the_common_seeds():
    """Baseline seed 0 has no finite accuracy: seed 1 is compared with seed 1, never with the candidate's seed 0."""
    b, c = accuracy_records([float("nan"), 0.90], [0.50, 0.90])
    row = rows(compare_records([b], [c]), "accuracy:accuracy")[0]
    assert row.verdict == "unchanged" and row.n_baseline == row.n_candidate == 1
    assert row.change == pytest.approx(0.0, abs=1e-12) and "common seeds" in row.note
    # the common seeds too few (1 of 4): unpaired, as before
    b, c = accuracy_records([0.9, 0.91, 0.89, 0.9], [0.9, 0.91, 0.89, 0.9], cand_seeds=[3, 10, 11, 12])
    assert "Welch" in rows(compare_records([b], [c]), "accuracy:accuracy")[0].method


def test_markdown_escapes_record_strings(tmp_path):
    evil = '<script>alert(1)</script><img src=x onerror=alert(2)>![t](http://x/t.png)'
    case = make_case(device=evil)
    b = record([result(case, samples(np.random.default_rng(0), .01))], "base")
    c = record([result(case, status="failed", reason=evil)], "cand")
    cmp = compare_records([b], [c], baseline_name=[evil])
    from gru_bench.compare.output import to_markdown
    md = to_markdown(cmp)
    assert "<script" not in md and "<img" not in md and "![" not in md
    assert md.count("&lt;script&gt;") >= 3  # label, note, baseline name: shown, inert
    md_path = tmp_path / "s.md"
    compare_command(write(tmp_path, "b", b), write(tmp_path, "c", c), markdown=md_path)
    text = md_path.read_text()
    assert "<script" not in text and "onerror=alert(2)&gt;" in text and "<details>" in text
# ----------------------------------------------------------------------------------------------- time-to-target
def target_result(seed: int, steps_to_target: int | None, budget: int = 400, status: str = "ok") -> CaseResult:
    c = make_case(seed=seed, steps=budget)
    acc = Accuracy(metric="mse", final_metric=0.01, final_loss=0.01, baseline_loss=1 / 6, target_loss=1 / 60,
                   steps_to_target=steps_to_target, eval_every=50)
    return CaseResult(case=c, case_id=c.case_id, status=status, params=1234, params_backend=1234,
                      flops_forward=5e6, flops_train_step=1.5e7, accuracy=acc)


def target_rows(base_steps, cand_steps, fail_on="steps_to_target:25%"):
    b = record([target_result(i, s) for i, s in enumerate(base_steps)], "b")
    c = record([target_result(i, s) for i, s in enumerate(cand_steps)], "c")
    res = compare_records([b], [c], parse_fail_on(fail_on))
    return [r for r in res.rows if r.metric == "steps_to_target"], res


def test_time_to_target_median_with_censoring_and_log_rank():
    # baseline: 100, 150, 200, 150 -> KM median 150. Candidate: 300, 350, unsolved, unsolved (censored at 400) ->
    # F(350) = 1/2: median 350; ratio 2.33 ≥ 1.25 and the log-rank test says later
    (row,), res = target_rows([100, 150, 200, 150], [300, 350, None, None])
    assert (row.baseline, row.candidate) == (150, 350) and row.change == pytest.approx(350 / 150, rel=1e-12)
    assert row.verdict == "regressed" and row.gating and res.exit_code == 1
    assert row.p_value < 0.05 and "2/4" in row.note and row.unit == "steps"


def test_time_to_target_not_reached_by_half_is_a_regression_and_the_reverse_an_improvement():
    (row,), _ = target_rows([100], [None])  # one seed a side: the threshold rule alone
    assert row.candidate is None and row.verdict == "regressed" and "no longer reached" in row.note
    (row,), _ = target_rows([None], [100])
    assert row.verdict == "improved"
    (row,), res = target_rows([100, 100], [110, 120])  # within 1.25x: unchanged
    assert row.verdict == "unchanged" and res.exit_code == 0


def test_time_to_target_without_the_check_does_not_gate():
    (row,), res = target_rows([100], [None], fail_on="params")
    assert row.verdict == "regressed" and not row.gating and res.exit_code == 0


def test_version_1_side_has_no_time_to_target_row_to_gate():
    b = record([target_result(0, 100)], "b")
    c = record([target_result(0, 100)], "c")
    b.cases[0].accuracy.target_loss = None  # what a migrated version-1 record holds
    b.cases[0].accuracy.steps_to_target = None
    res = compare_records([b], [c], parse_fail_on("steps_to_target"))
    (row,) = [r for r in res.rows if r.metric == "steps_to_target"]
    assert row.verdict == "new" and not row.fails


def test_steps_to_target_check_parses_as_a_factor():
    from gru_bench.compare.checks import TargetCheck
    assert parse_check("steps_to_target:1.5x") == TargetCheck("steps_to_target", 1.5)
    assert parse_check("steps_to_target:20%").factor == pytest.approx(1.2)
    with pytest.raises(InputError, match="steps_to_target:0.5x"):
        parse_check("steps_to_target:0.5x")


# ------------------------------------------------------------------------------- checks decide their verdicts
def test_each_check_judges_its_own_evidence():
    """The verdict is the check's (pytest-benchmark's RegressionCheck.fails()): the engine passes evidence, the
    check decides; tolerances as stated in each check's describe()."""
    from gru_bench.compare.checks import (ExactEvidence, MarginEvidence, MemoryEvidence, TargetCheck, TargetEvidence,
                                          TimingEvidence)
    from gru_bench.compare.stats import MarginTest

    t = TimeCheck("train_time", 1.10)
    assert t.judge(TimingEvidence(1.2, 0.001, 1.0, 20, 20), 0.05).verdict == "regressed"
    assert t.judge(TimingEvidence(1.05, 0.001, 1.0, 20, 20), 0.05).note == "significant but below 1.1×"
    assert t.judge(TimingEvidence(0.8, 1.0, 0.001, 20, 20), 0.05).verdict == "improved"
    busy = t.judge(TimingEvidence(1.2, 0.001, 1.0, 20, 20, cpu_ratio=1.01, cpu_p=0.4), 0.05)
    assert (busy.verdict, busy.channel) == ("unchanged", "cpu")  # wall slower on a busy machine, CPU time not
    m = MemoryCheck("memory", 0.20, 2**20)
    assert m.judge(MemoryEvidence(10 * 2**20, 13 * 2**20), 0.05).verdict == "regressed"  # +30 %, +3 MiB
    assert m.judge(MemoryEvidence(2**20, 2 * 2**20 - 1), 0.05).verdict == "unchanged"  # +100 % but < 1 MiB
    e = ExactCheck("params")
    assert e.judge(ExactEvidence(frozenset({100}), frozenset({100})), 0.05).verdict == "unchanged"
    assert e.judge(ExactEvidence(frozenset({100}), frozenset({101})), 0.05).note == \
        "deterministic metric changed: 100 → 101"
    a = MarginCheck("accuracy", 0.02)
    worse = MarginTest(-0.05, -0.06, -0.04, 0.9, 1.0, "paired t")  # the 90 % CI lies below −margin
    assert a.judge(MarginEvidence(worse, 0.02), 0.05).verdict == "regressed"
    unsure = MarginTest(-0.01, -0.05, 0.03, 0.3, 0.9, "paired t")
    assert a.judge(MarginEvidence(unsure, 0.02), 0.05).verdict == "inconclusive"
    k = TargetCheck("steps_to_target", 1.25)
    assert k.judge(TargetEvidence(100, 130, 0.01, 0.9, ""), 0.05).verdict == "regressed"
    assert k.judge(TargetEvidence(100, 130, 0.2, 0.9, ""), 0.05).verdict == "unchanged"  # log-rank disagrees
    assert k.judge(TargetEvidence(100, None, None, None, ""), 0.05).verdict == "regressed"  # no longer reached
