"""Time-to-target over seeds: the Kaplan–Meier estimate of the fraction of seeds that reached the target by a step.

Each seed of a configuration either reached the target at ``steps_to_target`` (an event) or did not within its
step budget (``None``: right-censored at ``budget``; it is not known whether it would have reached it later). Dropping
the unsolved seeds would make a configuration that solves once in five look as fast as its one lucky seed; counting
them as "solved at the budget" would invent a time. Kaplan–Meier keeps them in the risk set up to their budget:

    F(t) = 1 − ∏_{t_i ≤ t} (1 − d_i / n_i)

with ``d_i`` seeds reaching the target at step ``t_i`` and ``n_i`` seeds still running (neither solved nor censored
before ``t_i``; a seed censored at ``t_i`` counts as running at ``t_i``). With no censoring before the last event it
is the plain fraction of seeds. Beyond the largest budget the estimate is held at its last value (no seed says
more). Computed by ``scipy.stats.ecdf`` on ``scipy.stats.CensoredData``.

The median steps-to-target is the smallest step at which ``F`` reaches 0.5 (the convention of ``lifelines`` and
R's ``survival``), ``None`` when it never does (fewer than half the seeds known to solve).
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np


def _ecdf(steps_to_target: Sequence[int | float | None], budgets: Sequence[int | float]):  # -> scipy ECDFResult.cdf
    from scipy import stats

    if len(steps_to_target) != len(budgets):
        raise ValueError(f"steps_to_target has {len(steps_to_target)} seeds and budgets {len(budgets)}: expected "
                         f"one budget per seed")
    if not len(budgets):
        raise ValueError("no seeds: expected at least one steps_to_target/budget pair")
    events, censored = [], []
    for i, (s, b) in enumerate(zip(steps_to_target, budgets)):
        if b is None or not math.isfinite(float(b)) or float(b) < 0:
            raise ValueError(f"budgets[{i}]={b!r}: expected a finite step count >= 0")
        if s is None or (isinstance(s, float) and math.isnan(s)):
            censored.append(float(b))
        elif float(s) > float(b):
            raise ValueError(f"steps_to_target[{i}]={s!r} exceeds its budget {b!r}")
        else:
            events.append(float(s))
    return stats.ecdf(stats.CensoredData(uncensored=np.asarray(events), right=np.asarray(censored))).cdf


def solved_fraction(steps_to_target: Sequence[int | float | None], budgets: Sequence[int | float],
                    at_steps: Sequence[int | float]) -> list[float]:
    """Kaplan–Meier fraction of seeds that reached the target by each step of ``at_steps``.

    ``steps_to_target[i]`` is seed i's first step at the target, ``None`` when it did not reach it within
    ``budgets[i]`` steps (censored there). ``ValueError`` for mismatched lengths, no seeds, or a step past its
    budget."""
    cdf = _ecdf(steps_to_target, budgets)
    return [float(v) for v in cdf.evaluate(np.asarray(at_steps, dtype=float))]


def median_steps(steps_to_target: Sequence[int | float | None], budgets: Sequence[int | float]) -> float | None:
    """Kaplan–Meier median steps-to-target: the first step at which the solved fraction reaches 0.5, ``None`` when
    it never does within the budgets."""
    cdf = _ecdf(steps_to_target, budgets)
    reached = np.flatnonzero(cdf.probabilities >= 0.5 - 1e-12)
    return float(cdf.quantiles[reached[0]]) if reached.size else None


def curve(steps_to_target: Sequence[int | float | None],
          budgets: Sequence[int | float]) -> tuple[list[float], list[float]]:
    """The step function for plotting: ``(steps, fraction)`` starting at (0, 0), one point per distinct event or
    censoring step, ending at the largest budget."""
    cdf = _ecdf(steps_to_target, budgets)
    steps = [0.0, *map(float, cdf.quantiles)]
    frac = [0.0, *map(float, cdf.probabilities)]
    end = float(max(budgets))
    if steps[-1] < end:
        steps.append(end)
        frac.append(frac[-1])
    return steps, frac


def seeds_of(results: Iterable[Any]) -> tuple[list[int | None], list[int]]:
    """The (steps_to_target, budget) of each result (``schema.CaseResult``) that says something about its target:
    ``ok`` and ``diverged`` cases with an accuracy phase of schema version 2 (``target_loss`` set). A diverged seed
    never reaches the target: it is censored at its budget like a seed that ran out of steps. Failed, timed-out and
    skipped cases are left out (nothing is known of them), as are version-1 records (they never measured it)."""
    steps: list[int | None] = []
    budgets: list[int] = []
    for r in results:
        acc = r.accuracy
        if r.status not in ("ok", "diverged") or acc is None or acc.target_loss is None or r.case.steps <= 0:
            continue
        steps.append(acc.steps_to_target if r.status == "ok" else None)
        budgets.append(int(r.case.steps))
    return steps, budgets


def logrank_p_later(candidate: tuple[Sequence[int | None], Sequence[int]],
                    baseline: tuple[Sequence[int | None], Sequence[int]]) -> float | None:
    """One-sided log-rank p-value for "the candidate reaches the target later than the baseline" (each side a
    ``(steps_to_target, budgets)`` pair); None when it is undefined (a side without seeds, no seed reached it)."""
    from scipy import stats

    def data(side):
        st, bu = side
        return stats.CensoredData(uncensored=np.asarray([float(s) for s in st if s is not None]),
                                  right=np.asarray([float(b) for s, b in zip(st, bu) if s is None]))

    if not len(candidate[1]) or not len(baseline[1]):
        return None
    if all(s is None for s in [*candidate[0], *baseline[0]]):
        return None
    # scipy's "less": the first sample's hazard (of reaching the target) is lower, i.e. it reaches it later
    p = stats.logrank(data(candidate), data(baseline), alternative="less").pvalue
    return float(p) if math.isfinite(p) else None


__all__ = ["curve", "logrank_p_later", "median_steps", "seeds_of", "solved_fraction"]
