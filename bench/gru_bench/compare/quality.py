"""Rows compared per configuration across seeds: accuracy (the task's metric) and held-out loss (non-inferiority with a
margin), and time-to-target (Kaplan–Meier medians, ``survival.py``). Each verdict comes from the metric's check."""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from .. import survival
from ..case import Case
from ..schema import CaseResult
from ..tasks import metric_higher_is_better
from .checks import DEFAULT_CHECKS, MarginEvidence, TargetEvidence
from .loading import Entry, group_key, group_label
from .rows import Row
from .stats import margin_test
from .thresholds import Thresholds


def _values(pairs: list[tuple[Case, CaseResult]], getter) -> dict[int, float]:  # noqa: ANN001 - a field getter
    """seed -> the mean of that seed's finite values (one per run: repeated runs of a seed are pooled, so the seed
    still pairs the two sides)."""
    out: dict[int, list[float]] = defaultdict(list)
    for case, r in pairs:
        v = getter(r.accuracy)
        if v is not None and math.isfinite(v):
            out[case.seed].append(float(v))
    return {s: float(np.mean(v)) for s, v in out.items()}


def _pairing(va: dict[int, float], vb: dict[int, float]) -> tuple[list[int] | None, str]:
    """The seeds to pair on: all of them when both sides hold the same seeds; the common ones when they make at least
    half of each side (a seed lost on one side, e.g. to a NaN, must not turn the test into one of different seeds);
    ``None`` (unpaired, Welch) otherwise. And a note naming the seeds left out."""
    common = sorted(set(va) & set(vb))
    if set(va) == set(vb):
        return common, ""
    if common and 2 * len(common) >= max(len(va), len(vb)):
        left = sorted(set(va) ^ set(vb))
        return common, f"paired on the common seeds; seed(s) {', '.join(map(str, left))} on one side only, left out"
    return None, ""


def quality_rows(base: dict[str, Entry], cand: dict[str, Entry], th: Thresholds, alpha: float) -> list[Row]:
    """Accuracy (the task's metric) and held-out loss per configuration, across seeds. When both sides hold the same
    seeds once each, the seeds pair the runs (same weights, same batches: ``spec.py``/``tasks.py``) and the test is
    paired; otherwise Welch's."""
    groups: dict[str, dict[str, list[tuple[Case, CaseResult]]]] = defaultdict(lambda: {"b": [], "c": []})
    for side, index in (("b", base), ("c", cand)):
        for e in index.values():
            for r, _ in e.ok:
                if r.accuracy is not None:
                    groups[group_key(e.case)][side].append((e.case, r))
    rows = []
    for gkey, sides in groups.items():
        first = sides["c"] or sides["b"]
        seeds = sorted({c.seed for c, _ in first})
        label = f"{group_label(first[0][0])} seeds={','.join(str(s) for s in seeds)}"
        metric_name = first[0][1].accuracy.metric  # type: ignore[union-attr]
        for check_name, getter, higher in (
                ("accuracy", lambda a: a.final_metric, metric_higher_is_better(metric_name)),
                ("loss", lambda a: a.final_loss, metric_higher_is_better("loss"))):
            va, vb = _values(sides["b"], getter), _values(sides["c"], getter)
            if not va and not vb:
                continue
            metric = check_name if check_name == "loss" else f"accuracy:{metric_name}"
            if not va or not vb:
                rows.append(Row(gkey, label, metric, check_name, "new" if vb else "missing", False,
                                note=f"values only in the {'candidate' if vb else 'baseline'}"))
                continue
            pair_on, pair_note = _pairing(va, vb)
            paired = pair_on is not None
            a = [va[s] for s in (pair_on if paired else sorted(va))]  # type: ignore[union-attr]
            b = [vb[s] for s in (pair_on if paired else sorted(vb))]  # type: ignore[union-attr]
            if higher is None:
                rows.append(Row(gkey, label, metric, check_name, "unchanged", False, float(np.mean(a)),
                                float(np.mean(b)), note=f"unknown direction of metric {metric_name!r}: not tested"))
                continue
            check = th[check_name]
            margin = check.margin_for(float(np.mean(a)))  # type: ignore[attr-defined]
            sign = 1.0 if higher else -1.0  # goodness = sign · value
            t = margin_test([sign * v for v in a], [sign * v for v in b], margin, paired, alpha)
            j = check.judge(MarginEvidence(t, margin), alpha)
            note = "; ".join(x for x in (j.note, pair_note) if x)
            lo, hi = (None, None) if t.ci_low is None else sorted((sign * t.ci_low, sign * t.ci_high))  # type: ignore
            rows.append(Row(gkey, label, metric, check_name, j.verdict, th.gates(check_name), float(np.mean(a)),
                            float(np.mean(b)), sign * t.diff, lo, hi, t.p_inferior, t.p_superior, None, len(a), len(b),
                            "", f"{t.method}, margin {margin:.4g}", note))
    return rows


def target_rows(base: dict[str, Entry], cand: dict[str, Entry], th: Thresholds, alpha: float) -> list[Row]:
    """Time-to-target per configuration across seeds: the Kaplan–Meier median steps-to-target of each side (unsolved
    seeds censored at their budget, ``survival.py``), judged by the ``steps_to_target`` check (``TargetCheck``)."""
    groups: dict[str, dict[str, list[CaseResult]]] = defaultdict(lambda: {"b": [], "c": []})
    for side, index in (("b", base), ("c", cand)):
        for e in index.values():
            groups[group_key(e.case)][side].extend(e.results)
    check = th.checks.get("steps_to_target", DEFAULT_CHECKS["steps_to_target"])
    rows = []
    for gkey, sides in groups.items():
        sb, sc = survival.seeds_of(sides["b"]), survival.seeds_of(sides["c"])
        if not sb[1] and not sc[1]:
            continue  # no time-to-target on either side (timing only, or version-1 records)
        first = sides["c"] or sides["b"]
        seeds = sorted({r.case.seed for r in first})
        label = f"{group_label(first[0].case)} seeds={','.join(str(s) for s in seeds)}"
        if not sb[1] or not sc[1]:
            rows.append(Row(gkey, label, "steps_to_target", "steps_to_target", "new" if sc[1] else "missing", False,
                            note=f"time-to-target only in the {'candidate' if sc[1] else 'baseline'}"))
            continue
        mb, mc = survival.median_steps(*sb), survival.median_steps(*sc)
        p = survival.logrank_p_later(sc, sb) if min(len(sb[1]), len(sc[1])) >= 2 else None
        p_sooner = survival.logrank_p_later(sb, sc) if p is not None else None
        solved = f"reached by {sum(s is not None for s in sb[0])}/{len(sb[0])} → {sum(s is not None for s in sc[0])}" \
                 f"/{len(sc[0])} seeds"
        j = check.judge(TargetEvidence(mb, mc, p, p_sooner, solved), alpha)
        change = mc / mb if mb and mc is not None else None
        method = "Kaplan–Meier median, unsolved seeds censored at the budget" + (", log-rank" if p is not None else "")
        rows.append(Row(gkey, label, "steps_to_target", "steps_to_target", j.verdict, th.gates("steps_to_target"),
                        mb, mc, change, None, None, p, p_sooner, None, len(sb[1]), len(sc[1]), "steps", method,
                        j.note))
    return rows
