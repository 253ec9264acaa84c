"""The statistics of a comparison: timing (Mann-Whitney U, bootstrap CI of the median ratio, Benjamini-Hochberg) and
accuracy/loss non-inferiority (one-sided t tests with a margin). Pure functions of numbers; no records, no verdicts."""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

ALPHA = 0.05
N_BOOTSTRAP = 2000


@dataclass(frozen=True)
class TimingTest:
    """Candidate vs baseline samples: ratio of medians (> 1: slower), its bootstrap CI, one-sided p-values."""

    ratio: float
    ci_low: float | None
    ci_high: float | None
    p_slower: float  # H1: candidate stochastically larger (slower)
    p_faster: float  # H1: candidate stochastically smaller (faster)


def _median_ratio(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.median(b, axis=axis) / np.median(a, axis=axis)


def timing_test(baseline: Sequence[float], candidate: Sequence[float], rng: np.random.Generator) -> TimingTest:
    """Mann-Whitney U both ways and a percentile-bootstrap 95 % CI of median(candidate)/median(baseline)."""
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(candidate, dtype=float)
    if a.size == 0 or b.size == 0:
        raise ValueError(f"samples: got {a.size} baseline and {b.size} candidate samples; expected at least 1 each")
    ratio = float(_median_ratio(a, b))
    p_slower = float(stats.mannwhitneyu(b, a, alternative="greater").pvalue)
    p_faster = float(stats.mannwhitneyu(b, a, alternative="less").pvalue)
    lo = hi = None
    if a.size >= 2 and b.size >= 2:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # degenerate (all-equal) samples give a zero-width interval: fine
            ci = stats.bootstrap((a, b), _median_ratio, n_resamples=N_BOOTSTRAP, paired=False, vectorized=True,
                                 method="percentile", rng=rng).confidence_interval
        lo, hi = float(ci.low), float(ci.high)
    return TimingTest(ratio, lo, hi, p_slower, p_faster)


def fdr(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (q-values), in the same order."""
    if not len(pvalues):
        return []
    p = np.asarray(pvalues, dtype=float)
    p = np.where(np.isfinite(p), np.clip(p, 0.0, 1.0), 1.0)  # an undefined p-value shows nothing
    return [float(q) for q in stats.false_discovery_control(p, method="bh")]


@dataclass(frozen=True)
class MarginTest:
    """Non-inferiority of candidate vs baseline values in the 'goodness' orientation (higher is better)."""

    diff: float  # mean(candidate) − mean(baseline), in goodness units
    ci_low: float | None  # 90 % Welch CI of diff (each side one-sided 95 %: TOST's convention)
    ci_high: float | None
    p_inferior: float | None  # H0: diff ≤ −margin; small p: non-inferior
    p_superior: float | None  # H0: diff ≤ +margin; small p: better by more than the margin
    method: str


def margin_test(baseline: Sequence[float], candidate: Sequence[float], margin: float, paired: bool = False,
                alpha: float = ALPHA) -> MarginTest:
    """One-sided t tests of the difference against ``−margin`` (non-inferiority) and ``+margin`` (superiority).

    ``paired``: the i-th values of both sides share a seed (same initial weights, same batches), so the per-seed
    differences are tested (a paired t test); otherwise Welch's unequal-variance test. Falls back to an exact/threshold
    comparison of the means when a side has one value, or the differences have no spread (deterministic runs)."""
    a = np.asarray(baseline, dtype=float)
    b = np.asarray(candidate, dtype=float)
    if paired and a.shape != b.shape:
        raise ValueError(f"paired: got {a.size} baseline and {b.size} candidate values; expected equal counts")
    diff = float(b.mean() - a.mean())
    if a.size < 2 or b.size < 2:
        return MarginTest(diff, None, None, None, None, f"threshold (n={a.size}/{b.size}: too few seeds for a test)")
    if paired and np.ptp(b - a) == 0:
        return MarginTest(diff, None, None, None, None,
                          f"exact (n={a.size} seeds, same difference on every seed: deterministic)")
    if not paired and np.ptp(a) == 0 and np.ptp(b) == 0:
        return MarginTest(diff, None, None, None, None, f"exact (n={a.size}/{b.size}, no spread across seeds)")
    if paired:
        test, name = (lambda x, y, **kw: stats.ttest_rel(x, y, **kw)), f"paired t (n={a.size} seeds)"
    else:
        test, name = (lambda x, y, **kw: stats.ttest_ind(x, y, equal_var=False, **kw)), f"Welch t (n={a.size}/{b.size})"
    p_inf = float(test(b, a - margin, alternative="greater").pvalue)
    p_sup = float(test(b, a + margin, alternative="greater").pvalue)
    ci = test(b, a).confidence_interval(1 - 2 * alpha)  # two-sided 90 %: each side a one-sided 95 % bound (TOST)
    return MarginTest(diff, float(ci.low), float(ci.high), p_inf, p_sup, f"non-inferiority, {name}")

