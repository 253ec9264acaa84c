"""Baseline vs candidate: match cases by configuration, test each metric, give verdicts and an exit code.

Per case and metric the verdict is one of ``improved / unchanged / regressed / inconclusive / new / missing /
failed`` (``inconclusive``: the test could neither show nor refute non-inferiority; it gates only on request):

* timing (``train_time``, ``forward_time``): a one-sided Mann-Whitney U test on the raw samples *and* the ratio of
  medians candidate/baseline against a minimum factor (default 1.10); a seeded bootstrap CI of the ratio; the
  p-values of all timing comparisons are corrected together (Benjamini-Hochberg). When the two sides come from
  different machines, each record's samples are scaled by its ``calibration.gemm_gflops`` first, with a warning.
* accuracy / loss, per configuration across seeds (cases that differ only by ``seed``): a non-inferiority test with
  a margin (a one-sided t test: the lower side of TOST), paired by seed when both sides ran the same seeds (same
  weights, same batches), Welch's otherwise; with one value per side, or no spread in the differences
  (deterministic runs), an exact/threshold comparison instead, and the row says so.
* ``params``/``flops``: exact; ``memory``: a change must exceed both a relative and an absolute tolerance.

A case that appears more than once on a side (several runs of one suite in a folder, interleaved CI rounds) is
pooled: its timing samples together, its accuracy/loss as the mean per seed, so the seeds still pair the sides; a
record that holds one case twice is warned about. Non-finite timing samples (NaN, inf) are dropped with a warning
naming the record and the case; a case with no finite sample has no timing verdict.

The thresholds are check objects (``checks.py``). Only gating metrics turn a regression into exit code 1; a
candidate case that fails (crash, divergence, timeout, OOM) where the baseline did not always does.
``compare`` reads run records only (``schema``, ``storage``); it imports no framework.
"""
from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

import numpy as np
from scipy import stats

from .case import ID_OPTIONAL, Case
from . import survival
from .checks import DEFAULT_CHECKS, ExactCheck, MarginCheck, MemoryCheck, Thresholds, TimeCheck, parse_fail_on, thresholds_from_suite
from .errors import InputError
from . import machine, storage
from .schema import CaseResult, RunRecord

Verdict = Literal["improved", "unchanged", "regressed", "inconclusive", "new", "missing", "failed"]
VERDICTS: tuple[Verdict, ...] = ("failed", "regressed", "inconclusive", "missing", "new", "improved",
                                 "unchanged")  # worst first
ALPHA = 0.05
N_BOOTSTRAP = 2000
TIME_METRICS = ("train_time", "forward_time")
EXACT_FIELDS = {"params": ("params", "params_backend"), "flops": ("flops_forward", "flops_train_step")}
HIGHER_IS_BETTER = {"accuracy": True, "mse": False}  # tasks.py's metric names -> direction
NOT_OK = ("failed", "diverged", "timeout", "oom")


# ------------------------------------------------------------------------------------------------ statistics
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


# -------------------------------------------------------------------------------------------------- loading
def load_side(path: Path, name: str = "record", files: dict[str, str] | None = None) -> list[RunRecord]:
    """A record file, or every run record under a directory (their cases pooled); ``InputError`` naming the file
    that is missing, corrupt or not a record. ``files``, if given, gets run id -> file for each record."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{name}={str(path)!r}: no such file or directory; expected a run record or a folder of them")
    out = []
    for p in storage.record_files(path):
        out.append(storage.load_record(p))
        if files is not None:
            files.setdefault(out[-1].run_id, str(p))
    return out


# ------------------------------------------------------------------------------------------------- machines
def machine_id(record: RunRecord) -> str:
    """The record's machine (``machine.machine_id``: hostname and hardware, not software)."""
    return record.machine_id or machine.machine_id(record.machine or {})


def _machine_name(record: RunRecord) -> str:
    m = record.machine or {}
    cpu = (m.get("cpu") or {}).get("model") if isinstance(m.get("cpu"), dict) else m.get("cpu")
    return " / ".join(str(x) for x in (m.get("hostname"), cpu) if x) or machine_id(record)


def _time_scales(base: list[RunRecord], cand: list[RunRecord], warn: list[str]) -> tuple[list[float], list[float]]:
    """Per-record factors for timing samples: 1 on one machine; ``gflops_r / gflops_ref`` across machines, so a
    sample becomes 'seconds on the reference (first baseline) machine'."""
    ids = {machine_id(r) for r in base + cand}
    if len(ids) <= 1:
        return [1.0] * len(base), [1.0] * len(cand)
    names = sorted({_machine_name(r) for r in base + cand})
    if any(r.calibration is None or not r.calibration.gemm_gflops > 0 for r in base + cand):
        warn.append(f"records come from different machines ({', '.join(names)}) and not all have a calibration: "
                    "timings are compared unnormalised; read timing verdicts with care")
        return [1.0] * len(base), [1.0] * len(cand)
    ref = base[0].calibration.gemm_gflops  # type: ignore[union-attr]
    gf = ", ".join(f"{r.calibration.gemm_gflops:.1f}" for r in base + cand)  # type: ignore[union-attr]
    warn.append(f"records come from different machines ({', '.join(names)}): timings normalised by each record's "
                f"calibration.gemm_gflops ({gf} GFLOP/s) to the baseline machine; timing verdicts are indicative")
    return ([r.calibration.gemm_gflops / ref for r in base],  # type: ignore[union-attr]
            [r.calibration.gemm_gflops / ref for r in cand])  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------------------- cases
def case_key(result: CaseResult) -> str:
    """Match on the configuration itself (recomputed from ``case``), not on a run-specific field."""
    return result.case.case_id


def group_key(case: Case) -> str:
    """Cases that differ only by their seed share this key (accuracy is compared across seeds)."""
    d = case.model_dump(exclude={"seed", "timeout_s"})
    for k, default in ID_OPTIONAL.items():  # as in case_id: later fields count only off their default
        if d.get(k) == default:
            d.pop(k)
    return "g" + hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:11]


def group_label(case: Case) -> str:
    return case.label.rsplit(" seed=", 1)[0]


@dataclass
class _Entry:
    results: list[CaseResult] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)  # the time scale of each result's record

    @property
    def case(self) -> Case:
        return self.results[0].case

    @property
    def ok(self) -> list[tuple[CaseResult, float]]:
        return [(r, s) for r, s in zip(self.results, self.scales) if r.status == "ok"]

    @property
    def status(self) -> str:
        """``ok`` if any run of the case succeeded, else the first run's status."""
        return "ok" if self.ok else self.results[0].status

    @property
    def reason(self) -> str:
        return next((r.reason for r in self.results if r.reason), "") or ""


def _where(rec: RunRecord, files: dict[str, str]) -> str:
    return f"{files[rec.run_id]} (run {rec.run_id})" if rec.run_id in files else f"run {rec.run_id}"


def _index(records: list[RunRecord], scales: list[float], side: str, files: dict[str, str],
           warn: list[str]) -> dict[str, _Entry]:
    """case id -> every result of that case on this side (several runs of a suite pool); a record holding one case
    more than once is named in a warning (all its results are kept and pooled, as separate runs would be)."""
    out: dict[str, _Entry] = {}
    for rec, scale in zip(records, scales):
        seen: dict[str, int] = defaultdict(int)
        for cr in rec.cases:
            e = out.setdefault(case_key(cr), _Entry())
            e.results.append(cr)
            e.scales.append(scale)
            seen[case_key(cr)] += 1
        dup = [cid for cid, n in seen.items() if n > 1]
        if dup:
            warn.append(f"{side} {_where(rec, files)} holds {len(dup)} case(s) more than once (e.g. "
                        f"{next(c.case.label for c in rec.cases if case_key(c) == dup[0])}): their results are "
                        "pooled as separate runs")
    return out


def _finite_samples(side: str, e: _Entry, metric: str, files_of: dict[int, str], warn: list[str]) -> list[float]:
    """The scaled timing samples of ``metric`` over the ok runs of a case, non-finite ones dropped with a warning."""
    out: list[float] = []
    for r, s in e.ok:
        st = getattr(r, metric)
        if st is None:
            continue
        x = np.asarray(st.samples, dtype=float)
        bad = int((~np.isfinite(x)).sum())
        if bad:
            where = files_of.get(id(r), "a record")
            warn.append(f"{side} {where}: {r.case.label}: {bad} of {x.size} {metric} samples are not finite "
                        f"(NaN/inf): dropped" + ("; no timing verdict from this run" if bad == x.size else ""))
        out += [float(t) * s for t in x[np.isfinite(x)]]
    return out


# ------------------------------------------------------------------------------------------------------ rows
@dataclass
class Row:
    """One verdict: a case (or, for accuracy/loss, a configuration across seeds) and a metric."""

    key: str  # case_id, or the seed-group id for accuracy/loss
    label: str
    metric: str  # train_time, forward_time, accuracy, loss, memory:<figure>, params, flops_forward, status...
    check: str  # the check's metric name (gating is decided on it)
    verdict: Verdict
    gating: bool  # does a regressed/failed verdict here fail the comparison?
    baseline: float | None = None
    candidate: float | None = None
    change: float | None = None  # ratio (timing, memory) or difference candidate − baseline (accuracy, loss)
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None  # one-sided, H1: worse (slower; inferior beyond the margin)
    p_improved: float | None = None  # one-sided, H1: better (faster; superior beyond the margin)
    q_value: float | None = None  # the FDR-adjusted p of the verdict's direction (timing)
    n_baseline: int = 0
    n_candidate: int = 0
    unit: str = ""
    method: str = ""
    note: str = ""
    inconclusive_gates: bool = False  # the gate asked for it (``--fail-on ...,inconclusive``)
    channel: str = "wall"  # which timing channel decided: "wall", or "cpu" (process CPU time, on a busy machine)
    cpu_change: float | None = None  # the CPU channel's median ratio (busy machine, both sides with cpu_samples)
    cpu_p: float | None = None  # its one-sided p (slower)

    @property
    def fails(self) -> bool:
        return self.gating and (self.verdict in ("regressed", "failed")
                                or (self.verdict == "inconclusive" and self.inconclusive_gates))


@dataclass
class Comparison:
    rows: list[Row]
    thresholds: Thresholds
    warnings: list[str]
    baseline: list[str]  # where each side came from (paths or run ids)
    candidate: list[str]
    alpha: float = ALPHA

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if r.fails]

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0

    def counts(self) -> dict[str, int]:
        c = {v: 0 for v in VERDICTS}
        for r in self.rows:
            c[r.verdict] += 1
        return c

    def case_verdicts(self) -> dict[str, Verdict]:
        """The worst verdict of each case (or seed group)."""
        out: dict[str, Verdict] = {}
        for r in self.rows:
            prev = out.get(r.key)
            if prev is None or VERDICTS.index(r.verdict) < VERDICTS.index(prev):
                out[r.key] = r.verdict
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "baseline": self.baseline, "candidate": self.candidate, "alpha": self.alpha,
            "thresholds": self.thresholds.to_dict(), "warnings": self.warnings,
            "exit_code": self.exit_code, "counts": self.counts(),
            "failures": [f"{r.label} {r.metric}" for r in self.failures],
            "cases": self.case_verdicts(),
            "rows": [_finite(asdict(r)) | {"fails": r.fails} for r in self.rows],
        }


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    """NaN/inf -> None, so the JSON is strict."""
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def _rng(key: str, metric: str, seed: int) -> np.random.Generator:
    h = int(hashlib.sha1(f"{key}/{metric}".encode()).hexdigest()[:8], 16)
    return np.random.default_rng([seed, h])


def _status_row(key: str, base: _Entry | None, cand: _Entry | None, th: Thresholds) -> Row | None:
    """A row for a case that is not ok on both sides (None if it is: then its metrics are compared)."""
    e = cand or base
    assert e is not None
    label = e.case.label
    if cand is None:
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


def _timing_rows(key: str, base: _Entry, cand: _Entry, th: Thresholds, seed: int,
                 files_of: dict[int, str] | None = None, warn: list[str] | None = None) -> list[Row]:
    rows = []
    files_of = {} if files_of is None else files_of
    warn = [] if warn is None else warn
    for metric in TIME_METRICS:
        a = _finite_samples("baseline", base, metric, files_of, warn)
        b = _finite_samples("candidate", cand, metric, files_of, warn)
        if not a and not b:
            continue
        label = cand.case.label
        if not a or not b:
            rows.append(Row(key, label, metric, metric, "new" if b else "missing", False, unit="s",
                            note=f"samples only in the {'candidate' if b else 'baseline'}"))
            continue
        check = th[metric]
        assert isinstance(check, TimeCheck)
        t = timing_test(a, b, _rng(key, metric, seed))
        busy = [side for side, e in (("baseline", base), ("candidate", cand))
                if any(r.load is not None and r.load.busy for r, _ in e.ok)]
        rows.append(Row(key, label, metric, metric, "unchanged", th.gates(metric), float(np.median(a)),
                        float(np.median(b)), t.ratio, t.ci_low, t.ci_high, t.p_slower, t.p_faster, None, len(a),
                        len(b), "s", f"Mann-Whitney U one-sided, BH-FDR, ≥ {check.factor:.3g}×",
                        note=f"busy machine ({' and '.join(busy)})" if busy else ""))
        ca, cb = _cpu_samples(base, metric), _cpu_samples(cand, metric)
        if busy and ca and cb:  # the second opinion: process CPU time, which another process's load disturbs less
            tc = timing_test(ca, cb, _rng(key, metric + ":cpu", seed))
            rows[-1].cpu_change, rows[-1].cpu_p = tc.ratio, tc.p_slower
    return rows


def _cpu_samples(e: _Entry, metric: str) -> list[float]:
    """The CPU-time samples of ``metric`` over a case's ok runs; [] unless every run has them."""
    out: list[float] = []
    for r, _ in e.ok:
        st = getattr(r, metric)
        if st is None or not getattr(st, "cpu_samples", None):
            return []
        out += [float(v) for v in st.cpu_samples if np.isfinite(v)]
    return out


def _finish_timing(rows: list[Row], th: Thresholds, alpha: float) -> None:
    """Benjamini-Hochberg across all timing comparisons (each direction), then the verdicts."""
    timed = [r for r in rows if r.metric in TIME_METRICS and r.p_value is not None]
    q_slow = fdr([r.p_value for r in timed])  # type: ignore[misc]
    q_fast = fdr([r.p_improved for r in timed])  # type: ignore[misc]
    for r, qs, qf in zip(timed, q_slow, q_fast):
        check = th[r.check]
        assert isinstance(check, TimeCheck) and r.change is not None
        r.q_value, notes = qs, ([r.note] if r.note else [])
        if qs < alpha and r.change >= check.factor and r.cpu_p is not None and \
                not (r.cpu_p < alpha and r.cpu_change is not None and r.cpu_change >= check.factor):
            r.channel = "cpu"  # wall time regressed on a busy machine, CPU time did not: the load, not the code
            notes.append(f"wall {r.change:.2f}× on a busy machine, CPU time {r.cpu_change:.2f}× "
                         f"(p={r.cpu_p:.2g}): decided by the CPU channel")
        elif qs < alpha and r.change >= check.factor:
            r.verdict = "regressed"
        elif qf < alpha and r.change <= 1.0 / check.factor:
            r.verdict, r.q_value = "improved", qf
        else:
            if r.change >= check.factor:
                notes.append(f"{r.change:.2f}× but not significant (q={qs:.2g})")
            elif qs < alpha and r.change > 1.0:
                notes.append(f"significant but below {check.factor:.3g}×")
            if min(r.n_baseline, r.n_candidate) < 4:
                notes.append("too few samples for a significant test")
        r.note = "; ".join(notes)


def _exact_rows(key: str, base: _Entry, cand: _Entry, th: Thresholds) -> list[Row]:
    rows = []
    for check_name, fields in EXACT_FIELDS.items():
        assert isinstance(th[check_name], ExactCheck)
        for f in fields:
            a = {getattr(r, f) for r, _ in base.ok} - {None}
            b = {getattr(r, f) for r, _ in cand.ok} - {None}
            if not a or not b:
                continue
            va, vb = sorted(a)[0], sorted(b)[0]
            same = a == b
            note = "" if len(a) == len(b) == 1 else f"varies between runs: baseline {sorted(a)}, candidate {sorted(b)}"
            if not same and not note:
                note = f"deterministic metric changed: {va:g} → {vb:g}"
            rows.append(Row(key, cand.case.label, f, check_name, "unchanged" if same else "regressed",
                            th.gates(check_name), float(va), float(vb), (vb / va) if va else None,
                            n_baseline=len(base.ok), n_candidate=len(cand.ok), method="exact", note=note,
                            unit="FLOPs" if check_name == "flops" else ""))
    return rows


def _memory_rows(key: str, base: _Entry, cand: _Entry, th: Thresholds) -> list[Row]:
    check = th["memory"]
    assert isinstance(check, MemoryCheck)
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
        delta, tol = vb - va, check.rtol * abs(va)
        if delta > tol and delta > check.atol:
            verdict: Verdict = "regressed"
        elif -delta > tol and -delta > check.atol:
            verdict = "improved"
        else:
            verdict = "unchanged"
        rows.append(Row(key, cand.case.label, metric, "memory", verdict, th.gates("memory"), va, vb,
                        (vb / va) if va else None, n_baseline=len(a_by[name]), n_candidate=len(b_by[name]), unit="B",
                        method=f"tolerance {check.rtol:.0%} and {check.atol} B", note=f"Δ={delta:+.0f} B"))
    return rows


def _margin_verdict(t: MarginTest, margin: float, alpha: float) -> tuple[Verdict, str]:
    if t.p_inferior is None:  # threshold/exact comparison
        if t.diff < -margin:
            return "regressed", f"worse by {-t.diff:.4g} > margin {margin:.4g}"
        if t.diff > margin:
            return "improved", f"better by {t.diff:.4g} > margin {margin:.4g}"
        return "unchanged", ""
    assert t.p_superior is not None
    if t.p_superior < alpha:
        return "improved", f"better by more than {margin:.4g} (p={t.p_superior:.2g})"
    if t.p_inferior < alpha:
        return "unchanged", f"non-inferior within {margin:.4g} (p={t.p_inferior:.2g})"
    if t.ci_high is not None and t.ci_high < -margin:  # the one-sided 95 % bound: worse beyond the margin, shown
        return "regressed", f"worse beyond the margin {margin:.4g}: the 90 % CI lies below −{margin:.4g}"
    return "inconclusive", (f"inconclusive: more seeds (non-inferiority within {margin:.4g} neither shown nor "
                            f"refuted, p={t.p_inferior:.2g}; more seeds or a wider margin give the test power)")


def _values(pairs: list[tuple[Case, CaseResult]], getter) -> dict[int, float]:
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


def _quality_rows(base: dict[str, _Entry], cand: dict[str, _Entry], th: Thresholds, alpha: float) -> list[Row]:
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
                ("accuracy", lambda a: a.final_metric, HIGHER_IS_BETTER.get(metric_name)),
                ("loss", lambda a: a.final_loss, False)):
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
            a = [va[s] for s in (pair_on if paired else sorted(va))]
            b = [vb[s] for s in (pair_on if paired else sorted(vb))]
            if higher is None:
                rows.append(Row(gkey, label, metric, check_name, "unchanged", False, float(np.mean(a)),
                                float(np.mean(b)), note=f"unknown direction of metric {metric_name!r}: not tested"))
                continue
            check = th[check_name]
            assert isinstance(check, MarginCheck)
            margin = check.margin_for(float(np.mean(a)))
            sign = 1.0 if higher else -1.0  # goodness = sign · value
            t = margin_test([sign * v for v in a], [sign * v for v in b], margin, paired, alpha)
            verdict, note = _margin_verdict(t, margin, alpha)
            note = "; ".join(x for x in (note, pair_note) if x)
            lo, hi = (None, None) if t.ci_low is None else sorted((sign * t.ci_low, sign * t.ci_high))  # type: ignore
            rows.append(Row(gkey, label, metric, check_name, verdict, th.gates(check_name), float(np.mean(a)),
                            float(np.mean(b)), sign * t.diff, lo, hi, t.p_inferior, t.p_superior, None, len(a), len(b),
                            "", f"{t.method}, margin {margin:.4g}", note))
    return rows


def _target_rows(base: dict[str, _Entry], cand: dict[str, _Entry], th: Thresholds, alpha: float) -> list[Row]:
    """Time-to-target per configuration across seeds: the Kaplan–Meier median steps-to-target of each side (unsolved
    seeds censored at their budget, ``survival.py``); a regression by ``th["steps_to_target"]``'s factor, or a
    median no longer reached, and with ≥ 2 seeds a side a one-sided log-rank p < α as well."""
    groups: dict[str, dict[str, list[CaseResult]]] = defaultdict(lambda: {"b": [], "c": []})
    for side, index in (("b", base), ("c", cand)):
        for e in index.values():
            groups[group_key(e.case)][side].extend(e.results)
    check = th.checks.get("steps_to_target", DEFAULT_CHECKS["steps_to_target"])
    factor = getattr(check, "factor", 1.25)
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
        significant_later = p is None or p < alpha
        significant_sooner = p_sooner is None or p_sooner < alpha
        solved = f"reached by {sum(s is not None for s in sb[0])}/{len(sb[0])} → {sum(s is not None for s in sc[0])}" \
                 f"/{len(sc[0])} seeds"
        change = mc / mb if mb and mc is not None else None
        if mb is None and mc is None:
            verdict, note = "unchanged", f"median not reached on either side; {solved}"
        elif mc is None:
            verdict, note = ("regressed" if significant_later else "unchanged"), f"median no longer reached; {solved}"
        elif mb is None:
            verdict, note = ("improved" if significant_sooner else "unchanged"), f"median now reached; {solved}"
        elif change is not None and change >= factor and significant_later:
            verdict, note = "regressed", f"later by ≥ {factor:.3g}×; {solved}"
        elif change is not None and change <= 1 / factor and significant_sooner:
            verdict, note = "improved", f"sooner by ≥ {factor:.3g}×; {solved}"
        else:
            verdict, note = "unchanged", solved
        method = "Kaplan–Meier median, unsolved seeds censored at the budget" + (", log-rank" if p is not None else "")
        rows.append(Row(gkey, label, "steps_to_target", "steps_to_target", verdict, th.gates("steps_to_target"),
                        mb, mc, change, None, None, p, p_sooner, None, len(sb[1]), len(sc[1]), "steps", method,
                        note))
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
    sb, sc = _time_scales(baseline, candidate, warn)
    files = files or {}
    base = _index(baseline, sb, "baseline", files, warn)
    cand = _index(candidate, sc, "candidate", files, warn)
    files_of = {id(cr): _where(rec, files) for rec in baseline + candidate for cr in rec.cases}
    rows: list[Row] = []
    for key in list(base) + [k for k in cand if k not in base]:
        b, c = base.get(key), cand.get(key)
        status = _status_row(key, b, c, th)
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
    rows += _quality_rows(base, cand, th, alpha)
    rows += _target_rows(base, cand, th, alpha)
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


# --------------------------------------------------------------------------------------------------- command
def compare_command(baseline: Path, candidate: Path, fail_on: str | None = None, markdown: Path | None = None,
                    json_path: Path | None = None) -> int:
    """``gru-bench compare``: print the table, write the Markdown/JSON if asked, return 0 (no regression) or 1.
    Raises ``InputError`` for usage and input errors (exit 2)."""
    from .compare_output import print_table, to_markdown

    files: dict[str, str] = {}
    with warnings.catch_warnings(record=True) as caught:  # into the comparison's warnings: printed and in the JSON
        warnings.simplefilter("always")
        b, c = load_side(Path(baseline), "baseline", files), load_side(Path(candidate), "candidate", files)
    th = parse_fail_on(fail_on) if fail_on is not None else None
    result = compare_records(b, c, th, baseline_name=[str(baseline)], candidate_name=[str(candidate)], files=files)
    loading = [str(w.message) for w in caught if "more than once" not in str(w.message)]  # compare names those
    result.warnings[:0] = list(dict.fromkeys(loading))
    print_table(result)
    storage.write_outputs(((markdown, lambda: to_markdown(result)),
                           (json_path, lambda: json.dumps(result.to_dict(), indent=1, allow_nan=False, default=str))))
    return result.exit_code
