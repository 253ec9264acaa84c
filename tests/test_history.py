"""History: per-case series over commits, and the step detector that marks where a metric moved.

Synthetic records of many commits (seeded lognormal timing samples) are built through the pydantic schema.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gru_bench.case import Case
from gru_bench.compare.thresholds import parse_fail_on
from gru_bench.history import (CHANGE_COLUMNS, SERIES_COLUMNS, change_points, commit_noise, detect_steps,
                               history_series)
from gru_bench.schema import Accuracy, CaseResult, GitInfo, RunRecord, TimingStats

MACHINE = {"hostname": "ci-1", "cpu": {"model": "Xeon"}, "cores_logical": 2}


def make_case(**kw) -> Case:
    d = dict(backend="numpy", cell="gru", variant="reset_after", task="adding", seq_len=20, hidden=16, batch_size=8)
    d.update(kw)
    return Case(**d)


def timing(s) -> TimingStats:
    s = np.asarray(s, dtype=float)
    return TimingStats(samples=s.tolist(), median=float(np.median(s)), iqr=0.0, min=float(s.min()),
                       mean=float(s.mean()), ci_low=float(np.percentile(s, 10)), ci_high=float(np.percentile(s, 90)))


def case_result(case, samples=None, accuracy=None, status="ok") -> CaseResult:
    acc = None if accuracy is None else Accuracy(metric="mse", final_metric=accuracy, final_loss=accuracy,
                                                 baseline_loss=1 / 6)
    return CaseResult(case=case, case_id=case.case_id, status=status,
                      train_time=None if samples is None else timing(samples), accuracy=acc)


def rec(i: int, cases, commit: str | None = None, machine=MACHINE, run=None) -> RunRecord:
    return RunRecord(run_id=run or f"run{i}", suite_name="quick", created=f"2025-01-{i + 1:02d}T00:00:00",
                     machine=dict(machine), git=GitInfo(commit=commit if commit is not None else f"c{i:02d}",
                                                        dirty=False), cases=cases)


def timing_history(levels, seed=0, cv=0.03, n=20, case=None):
    """One record per commit; commit i's samples have median 10 ms × levels[i]."""
    rng = np.random.default_rng(seed)
    case = case or make_case()
    return [rec(i, [case_result(case, 0.01 * lv * np.exp(rng.normal(0, cv, n)))]) for i, lv in enumerate(levels)]


# --------------------------------------------------------------------------------------------- series
def test_history_series_orders_commits_by_time_and_pools_reruns():
    rng = np.random.default_rng(1)
    case, failing = make_case(), make_case(hidden=32)
    records = [rec(i, [case_result(case, 0.01 * np.exp(rng.normal(0, .03, 20))),
                       case_result(failing, status="failed")]) for i in range(5)]
    records.append(rec(5, [case_result(case, 0.01 * np.exp(rng.normal(0, .03, 20)))], commit="c02", run="rerun"))
    records.append(rec(6, [case_result(case, 0.01 * np.exp(rng.normal(0, .03, 20)))], commit=""))  # no commit
    df = history_series(list(reversed(records)))  # order given does not matter
    assert tuple(df.columns) == SERIES_COLUMNS
    assert set(df["case_id"]) == {case.case_id}  # the failed case contributes nothing
    t = df[df["metric"] == "train_time"]
    assert list(t["commit"]) == ["c00", "c01", "c02", "c03", "c04", "run:run6"]
    assert list(t["order"]) == [0, 1, 2, 3, 4, 5]
    c2 = t[t["commit"] == "c02"].iloc[0]
    assert (c2["runs"], c2["n"]) == (2, 40)
    assert c2["value"] == pytest.approx(np.median(c2["samples"]), rel=1e-12)
    assert c2["ci_low"] <= c2["value"] <= c2["ci_high"] and c2["unit"] == "s"


def test_history_series_accuracy_and_machines_are_separate():
    case = make_case(steps=100)
    a = [rec(i, [case_result(case, [0.01, 0.011], accuracy=0.1 - 0.01 * i)]) for i in range(3)]
    b = [rec(i, [case_result(case, [0.02, 0.021], accuracy=0.2)], machine={"hostname": "ci-2"}) for i in range(2)]
    df = history_series(a + b, metrics=("accuracy",))
    assert set(df["metric"]) == {"accuracy"} and df.groupby("machine_id").size().sort_values().tolist() == [2, 3]
    first = df[df["machine_id"] == df["machine_id"].iloc[0]]
    assert first["unit"].iloc[0] == "mse"
    with pytest.raises(ValueError, match="metrics=\\['speed'\\]"):
        history_series(a, metrics=("speed",))


# ------------------------------------------------------------------------------------------- detector
def test_a_step_up_is_marked_at_its_first_commit():
    df = history_series(timing_history([1.0] * 6 + [1.25] * 6))
    cp = change_points(df)
    assert tuple(cp.columns) == CHANGE_COLUMNS and len(cp) == 1
    row = cp.iloc[0]
    assert (row["commit"], row["commit_before"], row["order"], row["direction"]) == ("c06", "c05", 6, "slower")
    assert row["change"] == pytest.approx(1.25, rel=0.03) and row["p_value"] < 1e-6


def test_a_single_commit_step_at_the_end_is_found():
    cp = change_points(history_series(timing_history([1.0] * 8 + [0.8])))
    assert list(cp["commit"]) == ["c08"] and cp["direction"].iloc[0] == "faster"


def test_up_and_back_down_gives_two_steps():
    cp = change_points(history_series(timing_history([1.0] * 4 + [1.3] * 4 + [1.0] * 4, seed=2)))
    assert list(cp["commit"]) == ["c04", "c08"] and list(cp["direction"]) == ["slower", "faster"]


@pytest.mark.parametrize("seed", range(5))
def test_flat_noisy_series_has_no_step(seed):
    """Sample noise 3 % and commit-to-commit noise 2 % (1.1× threshold, 3σ noise floor): nothing is marked."""
    rng = np.random.default_rng(100 + seed)
    levels = list(np.exp(rng.normal(0, 0.02, 30)))
    assert change_points(history_series(timing_history(levels, seed=seed))).empty


def test_commit_noise_raises_the_bar():
    """With 5 % commit-to-commit noise, a 12 % excursion of one commit is noise (3σ = 15 %), not a step; the same
    excursion in a quiet series is one."""
    rng = np.random.default_rng(7)
    noisy = list(1 + 0.05 * rng.standard_normal(20))
    noisy[10] = 1.12 * np.median(noisy)
    groups = [0.01 * lv * np.exp(rng.normal(0, .01, 20)) for lv in noisy]
    assert commit_noise(groups, True) > 0.03
    assert 10 not in [s.index for s in detect_steps(groups, True)]
    quiet = [0.01 * (1.12 if i == 10 else 1.0) * np.exp(rng.normal(0, .01, 20)) for i in range(20)]
    assert [s.index for s in detect_steps(quiet, True)] == [10, 11]


def test_threshold_comes_from_the_checks():
    df = history_series(timing_history([1.0] * 6 + [1.06] * 6, cv=0.01))
    assert change_points(df).empty  # 6 % < the default 1.10×
    cp = change_points(df, parse_fail_on("train_time:3%"))
    assert list(cp["commit"]) == ["c06"]


def test_deterministic_accuracy_step_needs_no_test():
    case = make_case(steps=100)
    vals = [0.05] * 5 + [0.09] * 3
    df = history_series([rec(i, [case_result(case, None, accuracy=v)]) for i, v in enumerate(vals)],
                        metrics=("accuracy",))
    cp = change_points(df)
    assert len(cp) == 1 and cp["commit"].iloc[0] == "c05" and cp["direction"].iloc[0] == "higher"
    assert cp["p_value"].iloc[0] is None and cp["change"].iloc[0] == pytest.approx(0.04)
    # a change below the margin (0.02 by default) is no step
    df = history_series([rec(i, [case_result(case, None, accuracy=v)]) for i, v in enumerate([0.05] * 5 + [0.06] * 3)],
                        metrics=("accuracy",))
    assert change_points(df).empty


def test_change_points_needs_the_series_frame():
    with pytest.raises(ValueError, match="missing columns"):
        change_points(pd.DataFrame({"case_id": ["x"]}))
