"""Timing samples -> ``TimingStats``: median, IQR, min, mean, a seeded bootstrap interval of the median, GFLOP/s."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .schema import TimingStats

BOOTSTRAP_SEED = 20240601
BOOTSTRAP_RESAMPLES = 2000


def bootstrap_median_ci(x: np.ndarray, confidence: float = 0.95, seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the median of ``x`` (1-D), ``BOOTSTRAP_RESAMPLES`` resamples from
    ``default_rng(seed)``, so the same samples give the same interval; ``(median, median)`` for fewer than two
    samples or no spread."""
    x = np.asarray(x, dtype=np.float64)
    if x.size < 2 or np.ptp(x) == 0:
        m = float(np.median(x))
        return m, m
    from scipy.stats import bootstrap

    res = bootstrap((x,), np.median, n_resamples=BOOTSTRAP_RESAMPLES, confidence_level=confidence,
                    method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def summarize(samples: Sequence[float], flops: float | None = None, peak_gflops: float | None = None) -> TimingStats:
    """Raw samples -> median, IQR (75th − 25th percentile), min, mean, 95 % bootstrap CI of the median, and, given
    the FLOPs of one call, achieved GFLOP/s at the median and its share of the calibrated ``peak_gflops``."""
    x = np.asarray(list(samples), dtype=np.float64)
    if x.size == 0:
        raise ValueError("samples=[]: expected at least one timing")
    if not np.all(np.isfinite(x)) or np.any(x < 0):
        raise ValueError(f"samples={list(samples)!r}: expected finite non-negative seconds")
    q25, med, q75 = np.percentile(x, [25, 50, 75])
    lo, hi = bootstrap_median_ci(x)
    gflops = pct = None
    if flops is not None and med > 0:
        gflops = float(flops) / float(med) / 1e9
        if peak_gflops:
            pct = 100.0 * gflops / float(peak_gflops)
    return TimingStats(samples=x.tolist(), median=float(med), iqr=float(q75 - q25), min=float(x.min()),
                       mean=float(x.mean()), ci_low=lo, ci_high=hi, gflops=gflops, pct_peak=pct)


__all__ = ["BOOTSTRAP_RESAMPLES", "BOOTSTRAP_SEED", "bootstrap_median_ci", "summarize"]
