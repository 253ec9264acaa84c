"""History: run records of many commits -> per-case series over commits, and the commits where a metric stepped.

``history_series(records)`` is a tidy DataFrame, one row per (machine, case, metric, commit), that the HTML report's
history page plots; ``change_points(series)`` marks where a series moved.

The step detector (``detect_steps``) is a bottom-up segmentation judged with the evidence ``compare`` uses: every
commit starts as its own segment, and the most similar neighbours merge until each boundary left is a step — an
effect beyond the metric's threshold (timing: a ratio of medians of at least the check's factor, 1.10 by default;
accuracy/loss: a shift of at least the margin), beyond three times the commit-to-commit noise estimated from the
series itself (as asv's step detection does), *and* a two-sided Mann-Whitney U test between the two segments
(scipy) below α, Bonferroni-corrected over the boundaries. Each commit contributes its raw timing samples, so one
commit on either side of a step is enough. Segments that do not vary at all (deterministic metrics, fixed seeds)
need no test. ``ruptures`` was considered and not added as a dependency: its penalised costs need a penalty tuned
per metric and noise level, give no p-value, and see one value per commit, which throws away the per-commit samples
that make a single-commit step detectable; a dozen lines of scipy do what is needed here.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats

from .compare.checks import DEFAULT_CHECKS
from .compare.engine import TIME_METRICS
from .compare.machines import machine_id
from .compare.stats import ALPHA
from .compare.thresholds import Thresholds
from .schema import RunRecord

NOISE_Z = 3.0  # a step must also exceed this many commit-to-commit standard deviations
SERIES_METRICS = ("train_time", "forward_time", "accuracy", "loss")
SERIES_COLUMNS = ("machine_id", "case_id", "label", "metric", "unit", "commit", "order", "created", "dirty", "runs",
                  "n", "value", "ci_low", "ci_high", "samples")
CHANGE_COLUMNS = ("machine_id", "case_id", "label", "metric", "unit", "commit", "order", "commit_before", "before",
                  "after", "change", "p_value", "direction")


def _commit_of(record: RunRecord) -> str:
    return record.git.commit or f"run:{record.run_id}"


def history_series(records: Iterable[RunRecord], metrics: Sequence[str] = SERIES_METRICS) -> pd.DataFrame:
    """One row per (machine, case, metric, commit), commits ordered by their first record's ``created`` time.

    Columns: ``machine_id, case_id, label, metric, unit`` ("s" for timings, else the task's metric name or "loss"),
    ``commit`` (``run:<run_id>`` when a record has no commit), ``order`` (0, 1, ... over the machine's commits),
    ``created`` (first record of the commit), ``dirty`` (any record of the commit from a dirty tree), ``runs``
    (records pooled), ``n`` (values pooled), ``value`` (timing: the median of all raw samples; accuracy/loss: the
    mean over runs), ``ci_low``/``ci_high`` (timing: the record's 95 % CI of the median, the widest over pooled
    records; accuracy/loss: min/max over runs), and ``samples`` (a tuple of the pooled raw values, for the detector).
    Only cases with status ok contribute.
    """
    unknown = [m for m in metrics if m not in SERIES_METRICS]
    if unknown:
        raise ValueError(f"metrics={unknown!r}: expected a subset of {', '.join(SERIES_METRICS)}")
    by_machine: dict[str, list[RunRecord]] = defaultdict(list)
    for rec in records:
        by_machine[machine_id(rec)].append(rec)
    rows = []
    for mid, recs in by_machine.items():
        recs.sort(key=lambda r: r.created)
        order = {c: i for i, c in enumerate(dict.fromkeys(_commit_of(r) for r in recs))}
        cells: dict[tuple[str, str, str], dict] = {}
        for rec in recs:
            commit = _commit_of(rec)
            for cr in rec.cases:
                if cr.status != "ok":
                    continue
                for metric in metrics:
                    got = _values(cr, metric)
                    if got is None:
                        continue
                    values, lo, hi, unit = got
                    cell = cells.setdefault((cr.case.case_id, metric, commit), dict(
                        machine_id=mid, case_id=cr.case.case_id, label=cr.case.label, metric=metric, unit=unit,
                        commit=commit, order=order[commit], created=rec.created, dirty=False, runs=0, samples=[],
                        los=[], his=[]))
                    cell["runs"] += 1
                    cell["dirty"] = cell["dirty"] or bool(rec.git.dirty)
                    cell["samples"] += values
                    cell["los"].append(lo)
                    cell["his"].append(hi)
        for cell in cells.values():
            s = np.asarray(cell.pop("samples"), dtype=float)
            los, his = cell.pop("los"), cell.pop("his")
            timing = cell["metric"] in TIME_METRICS
            rows.append(dict(cell, n=int(s.size), value=float(np.median(s) if timing else np.mean(s)),
                             ci_low=float(min(los)), ci_high=float(max(his)), samples=tuple(s.tolist())))
    df = pd.DataFrame(rows, columns=list(SERIES_COLUMNS))
    return df.sort_values(["machine_id", "case_id", "metric", "order"], ignore_index=True)


def _values(cr, metric: str) -> tuple[list[float], float, float, str] | None:
    if metric in TIME_METRICS:
        st = getattr(cr, metric)
        if st is None or not st.samples:
            return None
        return list(st.samples), st.ci_low, st.ci_high, "s"
    if cr.accuracy is None:
        return None
    v = cr.accuracy.final_metric if metric == "accuracy" else cr.accuracy.final_loss
    if v is None or not np.isfinite(v):
        return None
    return [float(v)], float(v), float(v), cr.accuracy.metric if metric == "accuracy" else "loss"


# ------------------------------------------------------------------------------------------------ detector
@dataclass(frozen=True)
class Step:
    index: int  # first group of the new level
    p_value: float | None  # None: both sides constant, no test needed
    before: float  # median of the segment before
    after: float  # median of the segment after


def _effect(left: np.ndarray, right: np.ndarray, timing: bool) -> tuple[float, float, float]:
    """(before, after, change): medians and their ratio (timing) or difference."""
    before, after = float(np.median(left)), float(np.median(right))
    if timing:
        return before, after, (after / before if before > 0 else float("inf"))
    return before, after, after - before


def _big_enough(change: float, before: float, timing: bool, check, noise: float) -> bool:
    """Beyond the check's threshold and beyond ``NOISE_Z`` × the commit-to-commit noise (log scale for timings)."""
    bound = max(check.smallest_change(before), NOISE_Z * noise)
    if timing:
        return change > 0 and abs(np.log(change)) >= bound
    return change != 0 and abs(change) >= bound


def commit_noise(groups: Sequence[np.ndarray], timing: bool) -> float:
    """A robust estimate of the commit-to-commit standard deviation of the per-commit centre (log median for
    timings): ``1.4826 · median(|Δ|) / √2`` over neighbouring commits, so a few steps do not inflate it."""
    centres = [np.log(np.median(g)) if timing else np.mean(g) for g in groups if np.size(g) and
               (not timing or np.median(g) > 0)]
    if len(centres) < 3:
        return 0.0
    return float(1.4826 * np.median(np.abs(np.diff(centres))) / np.sqrt(2.0))


def detect_steps(groups: Sequence[Sequence[float]], timing: bool, check=None, alpha: float = ALPHA) -> list[Step]:
    """Bottom-up segmentation of a series of groups (one per commit, each its raw values): start with one segment
    per commit and merge the most similar neighbours until every boundary left is a step — an effect beyond the
    check's threshold and beyond ``NOISE_Z`` × the commit-to-commit noise (``commit_noise``: the raw samples of one
    run understate how much runs differ), and a two-sided Mann-Whitney U p-value below α, Bonferroni-corrected
    over the boundaries.
    Two constant neighbours (deterministic metrics; at least 3 values between them) need no test.
    Bottom-up rather than top-down, so a level that goes up and comes back down is found too."""
    if check is None:
        check = DEFAULT_CHECKS["train_time" if timing else "accuracy"]
    segs = [np.asarray(g, dtype=float) for g in groups]
    starts = list(range(len(segs)))
    keep = [i for i, a in enumerate(segs) if a.size]  # a commit without values joins no segment
    segs, starts = [segs[i] for i in keep], [starts[i] for i in keep]
    noise = commit_noise(segs, timing)

    def judge(left: np.ndarray, right: np.ndarray, n_bounds: int) -> tuple[bool, float, float | None]:
        """(is a step, effect size for merge order, p-value)."""
        before, _, change = _effect(left, right, timing)
        size = abs(np.log(change)) if timing and 0 < change < float("inf") else abs(change)
        if not _big_enough(change, before, timing, check, noise):
            return False, size, None
        if np.ptp(left) == 0 and np.ptp(right) == 0 and left.size + right.size >= 3:
            return True, size, None
        p = float(stats.mannwhitneyu(right, left, alternative="two-sided").pvalue)
        return min(1.0, p * n_bounds) < alpha, size, p

    while len(segs) > 1:
        verdicts = [judge(segs[i], segs[i + 1], len(segs) - 1) for i in range(len(segs) - 1)]
        merge = [(size, -(p if p is not None else 0.0), i) for i, (step, size, p) in enumerate(verdicts) if not step]
        if not merge:
            return [Step(starts[i + 1], verdicts[i][2], *_effect(segs[i], segs[i + 1], timing)[:2])
                    for i in range(len(segs) - 1)]
        i = min(merge)[2]
        segs[i : i + 2] = [np.concatenate(segs[i : i + 2])]
        del starts[i + 1]
    return []


def change_points(series: pd.DataFrame, thresholds: Thresholds | None = None, alpha: float = ALPHA) -> pd.DataFrame:
    """The steps of every (machine, case, metric) series of ``history_series``: one row per step, with the first
    commit of the new level (``commit``, ``order``), the last commit before it, the medians before/after (between
    neighbouring steps), ``change`` (ratio for timings, difference otherwise), the test's p-value (None when both
    sides are constant) and ``direction`` ("slower"/"faster" for timings, "higher"/"lower" otherwise)."""
    missing = [c for c in ("machine_id", "case_id", "metric", "order", "commit", "samples") if c not in series]
    if missing:
        raise ValueError(f"series: missing columns {missing}; expected the frame of history_series()")
    th = thresholds or Thresholds()
    rows = []
    for (mid, cid, metric), g in series.groupby(["machine_id", "case_id", "metric"], sort=True):
        g = g.sort_values("order")
        timing = metric in TIME_METRICS
        check = th[metric]  # a TimeCheck or MarginCheck: its smallest_change is the step's threshold
        for s in detect_steps(list(g["samples"]), timing, check, alpha):
            after_row, before_row = g.iloc[s.index], g.iloc[s.index - 1]
            change = s.after / s.before if timing and s.before > 0 else s.after - s.before
            direction = ("slower" if change > 1 else "faster") if timing else ("higher" if change > 0 else "lower")
            rows.append(dict(machine_id=mid, case_id=cid, label=after_row["label"], metric=metric,
                             unit=after_row["unit"], commit=after_row["commit"], order=int(after_row["order"]),
                             commit_before=before_row["commit"], before=s.before, after=s.after, change=change,
                             p_value=s.p_value, direction=direction))
    return pd.DataFrame(rows, columns=list(CHANGE_COLUMNS))
