"""The comparison itself: two sides' records -> a ``Comparison`` of rows (status, timing, memory, exact metrics here;
accuracy/loss and time-to-target in ``quality.py``). Each row's verdict comes from its metric's check (``checks.py``);
the timing p-values of all cases are corrected together (Benjamini-Hochberg) before the checks judge them."""
from __future__ import annotations

import hashlib
from collections import defaultdict
from typing import Iterable

import numpy as np

from ..errors import InputError
from ..schema import RunRecord
from .checks import VERDICTS, ExactEvidence, MemoryEvidence, TimingEvidence
from .loading import Entry, cpu_samples, finite_samples, index_side, source_of
from .machines import time_scales
from .quality import quality_rows, target_rows
from .rows import Comparison, Row
from .stats import ALPHA, fdr, timing_test
from .thresholds import Thresholds, thresholds_from_suite

TIME_METRICS = ("train_time", "forward_time")
EXACT_FIELDS = {"params": ("params", "params_backend"), "flops": ("flops_forward", "flops_train_step")}
NOT_OK = ("failed", "diverged", "timeout", "oom")


def _rng(key: str, metric: str, seed: int) -> np.random.Generator:
    h = int(hashlib.sha1(f"{key}/{metric}".encode()).hexdigest()[:8], 16)
    return np.random.default_rng([seed, h])


def _status_row(key: str, base: Entry | None, cand: Entry | None) -> Row | None:
    """A row for a case that is not ok on both sides (None if it is: then its metrics are compared)."""
    e = cand or base
    assert e is not None
    label = e.case.label
    if cand is None:
        assert base is not None
        return Row(key, label, "case", "status", "missing", False, note=f"only in the baseline ({base.status})")
    bs, cs = (base.status if base else None), cand.status
    if cs in NOT_OK:
        repeat = bs == cs
        note = f"candidate {cs}: {cand.reason}".rstrip(": ")
        if bs is None:
            note = f"new case, {note}"
        elif repeat:
            note += " (baseline too)"
        return Row(key, label, "status", "status", "failed", not repeat, note=note)
    if base is None:
        return Row(key, label, "case", "status", "new", False,
                   note="only in the candidate" + ("" if cs == "ok" else f" ({cs}: {cand.reason})"))
    if cs == "skipped":
        if bs == "skipped":
            return Row(key, label, "status", "status", "unchanged", False, note=f"skipped in both: {cand.reason}")
        return Row(key, label, "status", "status", "missing", False, note=f"candidate skipped: {cand.reason}")
    if bs != "ok":  # candidate ok, baseline not
        return Row(key, label, "status", "status", "improved", False, note=f"baseline was {bs}, candidate ok")
    return None


def _timing_rows(key: str, base: Entry, cand: Entry, th: Thresholds, seed: int,
                 files_of: dict[int, str] | None = None, warn: list[str] | None = None) -> list[Row]:
    """One row per timing metric, its statistics filled in and its verdict still open (``_finish_timing``)."""
    rows = []
    files_of = {} if files_of is None else files_of
    warn = [] if warn is None else warn
    for metric in TIME_METRICS:
        a = finite_samples("baseline", base, metric, files_of, warn)
        b = finite_samples("candidate", cand, metric, files_of, warn)
        if not a and not b:
            continue
        label = cand.case.label
        if not a or not b:
            rows.append(Row(key, label, metric, metric, "new" if b else "missing", False, unit="s",
                            note=f"samples only in the {'candidate' if b else 'baseline'}"))
            continue
        t = timing_test(a, b, _rng(key, metric, seed))
        busy = [side for side, e in (("baseline", base), ("candidate", cand))
                if any(r.load is not None and r.load.busy for r, _ in e.ok)]
        rows.append(Row(key, label, metric, metric, "unchanged", th.gates(metric), float(np.median(a)),
                        float(np.median(b)), t.ratio, t.ci_low, t.ci_high, t.p_slower, t.p_faster, None, len(a),
                        len(b), "s", f"Mann-Whitney U one-sided, BH-FDR, ≥ {th[metric].factor:.3g}×",
                        note=f"busy machine ({' and '.join(busy)})" if busy else ""))
        ca, cb = cpu_samples(base, metric), cpu_samples(cand, metric)
        if busy and ca and cb:  # the second opinion: process CPU time, which another process's load disturbs less
            tc = timing_test(ca, cb, _rng(key, metric + ":cpu", seed))
            rows[-1].cpu_change, rows[-1].cpu_p = tc.ratio, tc.p_slower
    return rows


def _finish_timing(rows: list[Row], th: Thresholds, alpha: float) -> None:
    """Benjamini-Hochberg across all timing comparisons (each direction), then each metric's check judges."""
    timed = [r for r in rows if r.metric in TIME_METRICS and r.p_value is not None]
    q_slow = fdr([r.p_value for r in timed])  # type: ignore[misc]
    q_fast = fdr([r.p_improved for r in timed])  # type: ignore[misc]
    for r, qs, qf in zip(timed, q_slow, q_fast):
        j = th[r.check].judge(TimingEvidence(r.change, qs, qf, r.n_baseline, r.n_candidate,  # type: ignore[arg-type]
                                             r.cpu_change, r.cpu_p), alpha)
        r.verdict, r.channel = j.verdict, j.channel
        r.q_value = qf if j.verdict == "improved" else qs
        r.note = "; ".join(x for x in (r.note, j.note) if x)


def _exact_rows(key: str, base: Entry, cand: Entry, th: Thresholds) -> list[Row]:
    rows = []
    for check_name, fields in EXACT_FIELDS.items():
        for f in fields:
            a = frozenset({getattr(r, f) for r, _ in base.ok} - {None})
            b = frozenset({getattr(r, f) for r, _ in cand.ok} - {None})
            if not a or not b:
                continue
            va, vb = min(a), min(b)
            j = th[check_name].judge(ExactEvidence(a, b), ALPHA)
            rows.append(Row(key, cand.case.label, f, check_name, j.verdict, th.gates(check_name), float(va),
                            float(vb), (vb / va) if va else None, n_baseline=len(base.ok), n_candidate=len(cand.ok),
                            method="exact", note=j.note, unit="FLOPs" if check_name == "flops" else ""))
    return rows


def _memory_rows(key: str, base: Entry, cand: Entry, th: Thresholds) -> list[Row]:
    check = th["memory"]
    a_by: dict[str, list[int]] = defaultdict(list)
    b_by: dict[str, list[int]] = defaultdict(list)
    for r, _ in base.ok:
        for m in r.memory:
            a_by[m.name].append(m.bytes)
    for r, _ in cand.ok:
        for m in r.memory:
            b_by[m.name].append(m.bytes)
    rows = []
    for name in sorted(set(a_by) | set(b_by)):
        metric = f"memory:{name}"
        if name not in a_by or name not in b_by:
            rows.append(Row(key, cand.case.label, metric, "memory", "new" if name in b_by else "missing", False,
                            unit="B", note=f"figure only in the {'candidate' if name in b_by else 'baseline'}"))
            continue
        va, vb = float(np.median(a_by[name])), float(np.median(b_by[name]))
        j = check.judge(MemoryEvidence(va, vb), ALPHA)
        rows.append(Row(key, cand.case.label, metric, "memory", j.verdict, th.gates("memory"), va, vb,
                        (vb / va) if va else None, n_baseline=len(a_by[name]), n_candidate=len(b_by[name]), unit="B",
                        method=f"tolerance {check.rtol:.0%} and {check.atol} B", note=j.note))
    return rows


def compare_records(baseline: list[RunRecord], candidate: list[RunRecord], thresholds: Thresholds | None = None,
                    *, alpha: float = ALPHA, seed: int = 0, baseline_name: Iterable[str] = (),
                    candidate_name: Iterable[str] = (), files: dict[str, str] | None = None) -> Comparison:
    """The comparison of two sides (each one or more run records, their cases pooled); pure, seeded. ``files``: run
    id -> the file it came from (warnings name it)."""
    if not baseline or not candidate:
        raise InputError("compare: both sides need at least one run record")
    if not 0 < alpha < 1:
        raise InputError(f"alpha={alpha!r}: expected a number between 0 and 1")
    warn: list[str] = []
    th = thresholds or _suite_thresholds(baseline, candidate) or Thresholds()
    sb, sc = time_scales(baseline, candidate, warn)
    files = files or {}
    base = index_side(baseline, sb, "baseline", files, warn)
    cand = index_side(candidate, sc, "candidate", files, warn)
    files_of = {id(cr): source_of(rec, files) for rec in baseline + candidate for cr in rec.cases}
    rows: list[Row] = []
    for key in list(base) + [k for k in cand if k not in base]:
        b, c = base.get(key), cand.get(key)
        status = _status_row(key, b, c)
        if status is not None:
            rows.append(status)
            continue
        assert b is not None and c is not None
        rows += _timing_rows(key, b, c, th, seed, files_of, warn)
        rows += _memory_rows(key, b, c, th) + _exact_rows(key, b, c, th)
    _finish_timing(rows, th, alpha)
    busy = {side: sum(1 for rec in recs for c in rec.cases if c.load is not None and c.load.busy)
            for side, recs in (("baseline", baseline), ("candidate", candidate))}
    if any(busy.values()):
        warn.append("cases timed on a busy machine (" + ", ".join(f"{n} in the {s}" for s, n in busy.items() if n)
                    + "): other processes competed for the CPU, so their timing verdicts are unreliable")
    rows += quality_rows(base, cand, th, alpha)
    rows += target_rows(base, cand, th, alpha)
    for r in rows:
        r.inconclusive_gates = th.inconclusive
    rows.sort(key=lambda r: (VERDICTS.index(r.verdict), r.label, r.metric))
    return Comparison(rows, th, warn, list(baseline_name) or [r.run_id for r in baseline],
                      list(candidate_name) or [r.run_id for r in candidate], alpha)


def _suite_thresholds(baseline: list[RunRecord], candidate: list[RunRecord]) -> Thresholds | None:
    for rec in candidate + baseline:
        th = thresholds_from_suite(rec.suite or {}, rec.run_id)
        if th is not None:
            return th
    return None
