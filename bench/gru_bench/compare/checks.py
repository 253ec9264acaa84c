"""A metric's check: its threshold, its one-line rule (``describe``) and its verdict on the evidence (``judge``).

Each check decides its own verdict (pytest-benchmark's ``RegressionCheck.fails()``), from evidence the engine gathers
(``engine.py``, ``quality.py``): the engine never inspects a check's type or fields beyond what it passes in. The
parsing of ``--fail-on`` into checks lives in ``thresholds.py``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ..units import format_bytes

if TYPE_CHECKING:  # the evidence's type only: checks (and the --fail-on grammar) import no scipy
    from .stats import MarginTest

Verdict = Literal["improved", "unchanged", "regressed", "inconclusive", "new", "missing", "failed"]
VERDICTS: tuple[Verdict, ...] = ("failed", "regressed", "inconclusive", "missing", "new", "improved",
                                 "unchanged")  # worst first


@dataclass(frozen=True)
class Judgement:
    """A check's verdict, the note that explains it, and (timing) the channel that decided."""

    verdict: Verdict
    note: str = ""
    channel: str = "wall"


# ---------------------------------------------------------------------------------------------- evidence
@dataclass(frozen=True)
class TimingEvidence:
    """A timing comparison after the FDR correction: the ratio of medians and its q-values both ways; on a busy
    machine, the CPU channel's ratio and p (both sides with CPU samples)."""

    ratio: float
    q_slower: float
    q_faster: float
    n_baseline: int
    n_candidate: int
    cpu_ratio: float | None = None
    cpu_p: float | None = None


@dataclass(frozen=True)
class TargetEvidence:
    """Kaplan–Meier median steps-to-target of each side (None: not reached), one-sided log-rank p's (None: fewer
    than 2 seeds a side), and how many seeds reached the target (``solved``: text for the note)."""

    median_baseline: float | None
    median_candidate: float | None
    p_later: float | None
    p_sooner: float | None
    solved: str


@dataclass(frozen=True)
class MarginEvidence:
    """A non-inferiority test in the goodness orientation and the margin it used."""

    test: MarginTest
    margin: float


@dataclass(frozen=True)
class MemoryEvidence:
    baseline: float  # bytes (median over runs)
    candidate: float


@dataclass(frozen=True)
class ExactEvidence:
    baseline: frozenset[Any]  # the distinct values over runs
    candidate: frozenset[Any]


# ------------------------------------------------------------------------------------------------ checks
class Check:
    """A metric's threshold. ``metric`` is the name used in ``--fail-on``; ``describe()`` is the one-line rule;
    ``judge(evidence, alpha)`` the verdict."""

    metric: str
    kind: ClassVar[str]

    def describe(self) -> str:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def judge(self, evidence: Any, alpha: float) -> Judgement:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items()}
        return {"kind": self.kind, **d, "rule": self.describe()}


@dataclass(frozen=True)
class TimeCheck(Check):
    """Timing: the ratio of medians candidate/baseline must reach ``factor`` (and the test be significant)."""

    metric: str
    factor: float = 1.10
    kind: ClassVar[str] = "time"

    def describe(self) -> str:
        return f"{self.metric}: slower by ≥ {self.factor:.3g}× and Mann-Whitney q < α"

    def smallest_change(self, baseline: float) -> float:
        """The smallest change this check counts, on a log-ratio scale (history's step detector)."""
        return float(math.log(self.factor))

    def judge(self, evidence: TimingEvidence, alpha: float) -> Judgement:
        e, f = evidence, self.factor
        slower = e.q_slower < alpha and e.ratio >= f
        if slower and e.cpu_p is not None and not (e.cpu_p < alpha and e.cpu_ratio is not None
                                                   and e.cpu_ratio >= f):
            # wall time regressed on a busy machine, CPU time did not: the load, not the code
            return Judgement("unchanged", f"wall {e.ratio:.2f}× on a busy machine, CPU time {e.cpu_ratio:.2f}× "
                                          f"(p={e.cpu_p:.2g}): decided by the CPU channel", "cpu")
        if slower:
            return Judgement("regressed")
        if e.q_faster < alpha and e.ratio <= 1.0 / f:
            return Judgement("improved")
        notes = []
        if e.ratio >= f:
            notes.append(f"{e.ratio:.2f}× but not significant (q={e.q_slower:.2g})")
        elif e.q_slower < alpha and e.ratio > 1.0:
            notes.append(f"significant but below {f:.3g}×")
        if min(e.n_baseline, e.n_candidate) < 4:
            notes.append("too few samples for a significant test")
        return Judgement("unchanged", "; ".join(notes))


@dataclass(frozen=True)
class TargetCheck(TimeCheck):
    """Time-to-target over seeds: the Kaplan–Meier median steps-to-target (``survival.py``) must grow by
    ``factor``, or stop being reached by half the seeds; with ≥ 2 seeds a side a log-rank test must agree."""

    factor: float = 1.25

    def describe(self) -> str:
        return (f"{self.metric}: KM median over seeds later by ≥ {self.factor:.3g}× or no longer reached "
                f"(≥ 2 seeds a side: and log-rank p < α)")

    def judge(self, evidence: TargetEvidence, alpha: float) -> Judgement:  # type: ignore[override]
        e, f = evidence, self.factor
        mb, mc, solved = e.median_baseline, e.median_candidate, e.solved
        later = e.p_later is None or e.p_later < alpha
        sooner = e.p_sooner is None or e.p_sooner < alpha
        change = mc / mb if mb and mc is not None else None
        if mb is None and mc is None:
            return Judgement("unchanged", f"median not reached on either side; {solved}")
        if mc is None:
            return Judgement("regressed" if later else "unchanged", f"median no longer reached; {solved}")
        if mb is None:
            return Judgement("improved" if sooner else "unchanged", f"median now reached; {solved}")
        if change is not None and change >= f and later:
            return Judgement("regressed", f"later by ≥ {f:.3g}×; {solved}")
        if change is not None and change <= 1 / f and sooner:
            return Judgement("improved", f"sooner by ≥ {f:.3g}×; {solved}")
        return Judgement("unchanged", solved)


@dataclass(frozen=True)
class MarginCheck(Check):
    """Accuracy/loss: non-inferiority with ``margin`` (absolute, or a fraction of the baseline mean if ``relative``)."""

    metric: str
    margin: float = 0.02
    relative: bool = False
    kind: ClassVar[str] = "margin"

    def margin_for(self, baseline_mean: float) -> float:
        return self.margin * abs(baseline_mean) if self.relative else self.margin

    def smallest_change(self, baseline: float) -> float:
        """The smallest change this check counts, as an absolute difference (history's step detector)."""
        return self.margin_for(baseline)

    def describe(self) -> str:
        m = f"{self.margin * 100:.3g}% of the baseline" if self.relative else f"{self.margin:.3g}"
        return f"{self.metric}: non-inferiority margin {m}"

    def judge(self, evidence: MarginEvidence, alpha: float) -> Judgement:
        t, margin = evidence.test, evidence.margin
        if t.p_inferior is None or t.p_superior is None:  # threshold/exact comparison
            if t.diff < -margin:
                return Judgement("regressed", f"worse by {-t.diff:.4g} > margin {margin:.4g}")
            if t.diff > margin:
                return Judgement("improved", f"better by {t.diff:.4g} > margin {margin:.4g}")
            return Judgement("unchanged")
        if t.p_superior < alpha:
            return Judgement("improved", f"better by more than {margin:.4g} (p={t.p_superior:.2g})")
        if t.p_inferior < alpha:
            return Judgement("unchanged", f"non-inferior within {margin:.4g} (p={t.p_inferior:.2g})")
        if t.ci_high is not None and t.ci_high < -margin:  # the one-sided 95 % bound: worse beyond the margin
            return Judgement("regressed", f"worse beyond the margin {margin:.4g}: the 90 % CI lies below "
                                          f"−{margin:.4g}")
        return Judgement("inconclusive", f"inconclusive: more seeds (non-inferiority within {margin:.4g} neither "
                                         f"shown nor refuted, p={t.p_inferior:.2g}; more seeds or a wider margin give "
                                         "the test power)")


@dataclass(frozen=True)
class MemoryCheck(Check):
    """Memory: a regression grows by more than ``rtol`` × baseline *and* by more than ``atol`` bytes."""

    metric: str = "memory"
    rtol: float = 0.20
    atol: int = 2**20
    kind: ClassVar[str] = "memory"

    def describe(self) -> str:
        return f"{self.metric}: grows by > {self.rtol * 100:.3g}% and > {format_bytes(self.atol)}"

    def judge(self, evidence: MemoryEvidence, alpha: float) -> Judgement:
        va, vb = evidence.baseline, evidence.candidate
        delta, tol = vb - va, self.rtol * abs(va)
        note = f"Δ={delta:+.0f} B"
        if delta > tol and delta > self.atol:
            return Judgement("regressed", note)
        if -delta > tol and -delta > self.atol:
            return Judgement("improved", note)
        return Judgement("unchanged", note)


@dataclass(frozen=True)
class ExactCheck(Check):
    """Deterministic metrics (parameter counts, FLOPs): any change is a regression."""

    metric: str
    kind: ClassVar[str] = "exact"

    def describe(self) -> str:
        return f"{self.metric}: exactly equal"

    def judge(self, evidence: ExactEvidence, alpha: float) -> Judgement:
        a, b = evidence.baseline, evidence.candidate
        note = "" if len(a) == len(b) == 1 else f"varies between runs: baseline {sorted(a)}, candidate {sorted(b)}"
        if a == b:
            return Judgement("unchanged", note)
        return Judgement("regressed", note or f"deterministic metric changed: {min(a):g} → {min(b):g}")


DEFAULT_CHECKS: dict[str, Check] = {
    "train_time": TimeCheck("train_time"),
    "forward_time": TimeCheck("forward_time"),
    "accuracy": MarginCheck("accuracy", 0.02),
    "loss": MarginCheck("loss", 0.05, relative=True),
    "memory": MemoryCheck(),
    "params": ExactCheck("params"),
    "flops": ExactCheck("flops"),
    "steps_to_target": TargetCheck("steps_to_target"),
}
METRICS = tuple(DEFAULT_CHECKS)
