"""survival.py: Kaplan–Meier fraction of seeds at the target by a step, and the KM median, against values computed
by hand (with censoring), plus the log-rank direction and the result filter. Tolerance: 1e-12 (exact arithmetic)."""
from __future__ import annotations

import pytest

from gru_bench.case import Case
from gru_bench.schema import Accuracy, CaseResult
from gru_bench.survival import curve, logrank_p_later, median_steps, seeds_of, solved_fraction


def test_no_censoring_is_the_plain_fraction():
    # 4 seeds reach the target at 100, 200, 200, 400 (budget 500): F = 1/4, 3/4, 3/4, 1
    got = solved_fraction([100, 200, 200, 400], [500] * 4, [50, 100, 150, 200, 399, 400, 500])
    assert got == pytest.approx([0, 0.25, 0.25, 0.75, 0.75, 1.0, 1.0], abs=1e-12)
    assert median_steps([100, 200, 200, 400], [500] * 4) == 200


def test_censored_seeds_stay_at_risk_until_their_budget():
    # events 100, 200, 200; censored at 150 (a shorter budget) and 300 (ran out). By hand:
    # t=100: 5 at risk, 1 event -> S = 4/5; t=150: one leaves (censored); t=200: 3 at risk, 2 events ->
    # S = 4/5 · 1/3 = 4/15, F = 11/15. Dropping the censored seeds would say F(200) = 1; counting them as never
    # solving would say 3/5.
    steps, budgets = [100, None, 200, 200, None], [300, 150, 300, 300, 300]
    got = solved_fraction(steps, budgets, [99, 100, 150, 199, 200, 300, 1000])
    assert got == pytest.approx([0, 1 / 5, 1 / 5, 1 / 5, 11 / 15, 11 / 15, 11 / 15], abs=1e-12)
    assert median_steps(steps, budgets) == 200  # F first reaches 0.5 at 200


def test_censoring_shifts_the_median():
    # 2 of 5 solved at 100 and 300; the 3 others censored at 200 (short budgets). By hand: S(100) = 4/5,
    # at 300 one of one at risk solves -> S = 0: F(300) = 1, so the median is 300 though only 2 of 5 solved.
    # Without the censoring (all 5 with budget 400, 3 unsolved) F(300) = 2/5: no median.
    assert solved_fraction([100, None, None, None, 300], [400, 200, 200, 200, 400], [100, 299, 300]) == \
        pytest.approx([0.2, 0.2, 1.0], abs=1e-12)
    assert median_steps([100, None, None, None, 300], [400, 200, 200, 200, 400]) == 300
    assert median_steps([100, None, None, None, 300], [400] * 5) is None


def test_median_none_when_under_half_and_exactly_half_counts():
    assert median_steps([None, None, 100], [300] * 3) is None  # F = 1/3 at most
    assert median_steps([None, 100], [300, 300]) == 100  # F = 1/2 at 100: reaches 0.5
    assert median_steps([None, None], [300, 300]) is None
    assert solved_fraction([None, None], [300, 300], [0, 300]) == [0.0, 0.0]


def test_a_seed_solved_at_its_budget_is_an_event_not_a_censoring():
    # tie rule: a seed censored at t is at risk at t; here seed 2 solves exactly at its budget 200
    assert solved_fraction([None, 200], [200, 200], [200]) == pytest.approx([0.5], abs=1e-12)


def test_curve_is_a_step_function_from_zero_to_the_last_budget():
    steps, frac = curve([100, None, 200, 200, None], [300, 150, 300, 300, 300])
    assert steps == [0, 100, 150, 200, 300]
    assert frac == pytest.approx([0, 0.2, 0.2, 11 / 15, 11 / 15], abs=1e-12)


@pytest.mark.parametrize("steps, budgets, match", [
    ([100], [100, 200], "one budget per seed"),
    ([], [], "no seeds"),
    ([300], [200], "exceeds its budget"),
    ([None], [float("nan")], "budgets\\[0\\]"),
])
def test_bad_input_names_the_culprit(steps, budgets, match):
    with pytest.raises(ValueError, match=match):
        solved_fraction(steps, budgets, [0])


def test_logrank_direction():
    fast, slow = ([100, 150, 200], [400] * 3), ([300, None, None], [400] * 3)
    assert logrank_p_later(slow, fast) < 0.05 < logrank_p_later(fast, slow)
    assert logrank_p_later(([None], [400]), ([None], [400])) is None


def _result(status: str, steps_to_target, budget: int = 300, target=0.01) -> CaseResult:
    case = Case(backend="numpy", cell="gru", variant="reset_after", task="adding", seq_len=10, hidden=8,
                steps=budget)
    acc = Accuracy(metric="mse", baseline_loss=1 / 6, target_loss=target, steps_to_target=steps_to_target)
    return CaseResult(case=case, case_id=case.case_id, status=status, accuracy=acc)


def test_seeds_of_censors_diverged_and_drops_what_says_nothing():
    rs = [_result("ok", 100), _result("ok", None), _result("diverged", None, 200), _result("failed", None),
          _result("ok", 50, target=None)]  # the last: a version-1 record, never measured
    assert seeds_of(rs) == ([100, None, None], [300, 300, 200])
