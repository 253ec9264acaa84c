"""Thresholds as data: ``--fail-on train_time:10%,accuracy:-0.02,memory:20%`` parsed into small check objects.

One check per metric (pytest-benchmark's ``--benchmark-compare-fail`` style). Every metric is always compared, with
its default check unless the spec names it; only the metrics the spec names *gate* (turn a regression into exit 1).
With no spec at all (neither on the command line nor in the suite), every metric gates with its default.

Grammar: comma-separated ``metric[:value]`` tokens; ``none`` alone gates nothing (report only). The token
``inconclusive`` (no value) also fails the gate on an *inconclusive* verdict of a gating metric (accuracy/loss whose
non-inferiority the test could neither show nor refute: too few seeds for its spread); alone it gates every metric,
as no spec does. Without it an inconclusive verdict is reported and does not gate.

=============  =======================================  ===========================================================
metric         value                                    a regression is
=============  =======================================  ===========================================================
train_time     ``10%`` or ``1.1x`` (default 10%)        slower by at least the factor *and* significant (Mann-Whitney)
forward_time   as train_time                            as train_time
accuracy       ``-0.02`` or ``-2%`` (default -0.02)     non-inferiority within the margin not shown (the task's metric)
loss           ``0.01`` or ``5%`` (default 5%)          as accuracy, on the held-out loss (lower is better)
memory         ``20%``, ``8MiB`` or ``20%+8MiB``        larger by more than the relative *and* the absolute tolerance
               (default 20%+1MiB)
params, flops  none (``params`` or ``params:exact``)    any change at all (deterministic metrics)
=============  =======================================  ===========================================================

``steps_to_target`` (value ``25%`` or ``1.25x``, default 25%): a regression is a Kaplan–Meier median steps-to-target
over seeds (``survival.py``) later by the factor, or no longer reached by half the seeds; with ≥ 2 seeds a side a
one-sided log-rank test must also give p < α.

The accuracy/loss margin is the worsening allowed, in the metric's own direction (accuracy may fall, mse/loss may
rise); its sign is optional. A ``%`` margin is relative to the baseline's mean.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

from .errors import InputError
from .units import format_bytes

_PCT = re.compile(r"^([+-]?\d+(?:\.\d*)?|[+-]?\.\d+)%$")
_FACTOR = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)x$", re.IGNORECASE)
_NUMBER = re.compile(r"^[+-]?(\d+(?:\.\d*)?|\.\d+)(e[+-]?\d+)?$", re.IGNORECASE)
_BYTES = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*(B|KB|MB|GB|KiB|MiB|GiB)$", re.IGNORECASE)
_BYTE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


class Check:
    """A metric's threshold. ``metric`` is the name used in ``--fail-on``; ``describe()`` is the one-line rule."""

    metric: str
    kind: ClassVar[str]

    def describe(self) -> str:  # pragma: no cover - every subclass overrides
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


@dataclass(frozen=True)
class TargetCheck(TimeCheck):
    """Time-to-target over seeds: the Kaplan–Meier median steps-to-target (``survival.py``) must grow by
    ``factor``, or stop being reached by half the seeds; with ≥ 2 seeds a side a log-rank test must agree."""

    factor: float = 1.25

    def describe(self) -> str:
        return (f"{self.metric}: KM median over seeds later by ≥ {self.factor:.3g}× or no longer reached "
                f"(≥ 2 seeds a side: and log-rank p < α)")


@dataclass(frozen=True)
class MarginCheck(Check):
    """Accuracy/loss: non-inferiority with ``margin`` (absolute, or a fraction of the baseline mean if ``relative``)."""

    metric: str
    margin: float = 0.02
    relative: bool = False
    kind: ClassVar[str] = "margin"

    def margin_for(self, baseline_mean: float) -> float:
        return self.margin * abs(baseline_mean) if self.relative else self.margin

    def describe(self) -> str:
        m = f"{self.margin * 100:.3g}% of the baseline" if self.relative else f"{self.margin:.3g}"
        return f"{self.metric}: non-inferiority margin {m}"


@dataclass(frozen=True)
class MemoryCheck(Check):
    """Memory: a regression grows by more than ``rtol`` × baseline *and* by more than ``atol`` bytes."""

    metric: str = "memory"
    rtol: float = 0.20
    atol: int = 2**20
    kind: ClassVar[str] = "memory"

    def describe(self) -> str:
        return f"{self.metric}: grows by > {self.rtol * 100:.3g}% and > {format_bytes(self.atol)}"


@dataclass(frozen=True)
class ExactCheck(Check):
    """Deterministic metrics (parameter counts, FLOPs): any change is a regression."""

    metric: str
    kind: ClassVar[str] = "exact"

    def describe(self) -> str:
        return f"{self.metric}: exactly equal"


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


@dataclass(frozen=True)
class Thresholds:
    """The check for every metric and the set of metrics that gate the exit code."""

    checks: Mapping[str, Check] = field(default_factory=lambda: dict(DEFAULT_CHECKS))
    gating: frozenset[str] = frozenset(METRICS)
    source: str = "defaults"  # where they came from: "defaults", "--fail-on", "suite of <record>"
    inconclusive: bool = False  # does an inconclusive verdict of a gating metric fail too? (token ``inconclusive``)

    def __getitem__(self, metric: str) -> Check:
        return self.checks[metric]

    def gates(self, metric: str) -> bool:
        return metric in self.gating

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "gating": sorted(self.gating), "inconclusive_gates": self.inconclusive,
                "checks": {m: c.to_dict() for m, c in self.checks.items()}}


def _bad(token: str, what: str, option: str) -> InputError:
    return InputError(f"{option} {token!r}: {what}")


def _parse_time(metric: str, value: str, token: str, option: str) -> Check:
    if m := _PCT.match(value):
        pct = float(m.group(1))
        if pct <= 0:
            raise _bad(token, f"percentage {value} must be positive (e.g. {metric}:10%)", option)
        return type(DEFAULT_CHECKS[metric])(metric, 1.0 + pct / 100.0)
    if m := _FACTOR.match(value):
        factor = float(m.group(1))
        if factor <= 1.0:
            raise _bad(token, f"factor {value} must be above 1 (e.g. {metric}:1.1x)", option)
        return type(DEFAULT_CHECKS[metric])(metric, factor)
    raise _bad(token, f"value {value!r} not understood; expected a percentage (10%) or a factor (1.1x)", option)


def _parse_margin(metric: str, value: str, token: str, option: str) -> Check:
    if m := _PCT.match(value):
        return MarginCheck(metric, abs(float(m.group(1))) / 100.0, relative=True)
    if _NUMBER.match(value):
        return MarginCheck(metric, abs(float(value)))
    raise _bad(token, f"value {value!r} not understood; expected a margin such as -0.02 or -2%", option)


def _parse_memory(value: str, token: str, option: str) -> Check:
    rtol, atol = None, None
    for part in value.split("+"):
        part = part.strip()
        if m := _PCT.match(part):
            rtol = float(m.group(1)) / 100.0
        elif m := _BYTES.match(part):
            atol = int(float(m.group(1)) * _BYTE_UNITS[m.group(2).lower()])
        elif _NUMBER.match(part):
            atol = int(float(part))
        else:
            raise _bad(token, f"value {part!r} not understood; expected a percentage (20%), a size (8MiB) "
                              f"or both (20%+8MiB)", option)
    if (rtol is not None and rtol < 0) or (atol is not None and atol < 0):
        raise _bad(token, f"tolerance {value!r} must not be negative", option)
    base = DEFAULT_CHECKS["memory"]
    assert isinstance(base, MemoryCheck)
    return MemoryCheck("memory", base.rtol if rtol is None else rtol, base.atol if atol is None else atol)


def parse_check(token: str, option: str = "--fail-on") -> Check:
    """One ``metric[:value]`` token -> its check; ``InputError`` naming the token otherwise."""
    token = token.strip()
    metric, _, value = token.partition(":")
    metric, value = metric.strip(), value.strip()
    if metric not in DEFAULT_CHECKS:
        raise _bad(token, f"unknown metric {metric!r}; expected one of {', '.join(METRICS)}", option)
    if not value:
        return DEFAULT_CHECKS[metric]
    kind = DEFAULT_CHECKS[metric].kind
    if kind == "time":
        return _parse_time(metric, value, token, option)
    if kind == "margin":
        return _parse_margin(metric, value, token, option)
    if kind == "memory":
        return _parse_memory(value, token, option)
    if value.lower() != "exact":
        raise _bad(token, f"{metric} is compared exactly; expected {metric!r} or '{metric}:exact', not {value!r}",
                   option)
    return DEFAULT_CHECKS[metric]


def parse_fail_on(spec: str, option: str = "--fail-on", source: str | None = None) -> Thresholds:
    """``"train_time:10%,accuracy:-0.02"`` -> Thresholds gating exactly the named metrics (``"none"``: none)."""
    if not isinstance(spec, str) or not spec.strip():
        raise InputError(f"{option} {spec!r}: expected comma-separated metric[:value] tokens, e.g. train_time:10%")
    checks = dict(DEFAULT_CHECKS)
    if spec.strip().lower() == "none":
        return Thresholds(checks, frozenset(), source or option)
    gating: set[str] = set()
    inconclusive = False
    for token in spec.split(","):
        if not token.strip():
            raise InputError(f"{option} {spec!r}: empty token between commas")
        if token.strip().lower() == "inconclusive":
            if inconclusive:
                raise _bad(token.strip(), "'inconclusive' is named twice", option)
            inconclusive = True
            continue
        if token.strip().lower() == "none":
            raise _bad(token.strip(), "'none' (gate nothing) must stand alone", option)
        check = parse_check(token, option)
        if check.metric in gating:
            raise _bad(token.strip(), f"metric {check.metric!r} is named twice", option)
        checks[check.metric] = check
        gating.add(check.metric)
    if not gating:  # "inconclusive" alone: every metric gates with its default, as with no spec
        gating = set(METRICS)
    return Thresholds(checks, frozenset(gating), source or option, inconclusive)


def thresholds_from_suite(suite: Mapping[str, Any], where: str) -> Thresholds | None:
    """The suite's own gate, if it declares one: ``fail_on = "train_time:10%,..."`` or a table
    ``[fail_on] train_time = "10%"`` (``params = true`` / ``""`` for value-less metrics). ``None`` if absent."""
    raw = suite.get("fail_on")
    if raw is None:
        return None
    option = f"fail_on in the suite of {where}"
    if isinstance(raw, Mapping):
        tokens = [m if v in (True, "", None) else f"{m}:{v}" for m, v in raw.items()]
        raw = ",".join(tokens) if tokens else "none"
    if isinstance(raw, (list, tuple)):
        raw = ",".join(str(t) for t in raw) or "none"
    return parse_fail_on(str(raw), option, source=f"suite of {where}")
