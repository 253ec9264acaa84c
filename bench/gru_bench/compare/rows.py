"""The result of a comparison: one ``Row`` per verdict, and the ``Comparison`` that holds them (its exit code, counts
and JSON form). Data only; the engine (``engine.py``) fills it, the output (``output.py``) shows it."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from .checks import VERDICTS, Verdict
from .stats import ALPHA
from .thresholds import Thresholds


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

