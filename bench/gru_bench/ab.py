"""``gru-bench ab``: interleaved (ABBA…) timing of two environments, decided on the paired per-round ratios.

Each round runs every case's timing phase once per side, each in a fresh worker process; round ``r`` runs the
baseline first when ``r`` is even and the candidate first when it is odd, so drift hits both sides alike. The
decision per case uses the per-round ratio ``candidate median / baseline median``: a two-sided Wilcoxon
signed-rank test on the log ratios, a bootstrap 95 % CI of the median ratio, and a practical factor (a change
smaller than ``factor`` never gates). The wall-time channel decides unless the machine was busy, where the
process-CPU-time channel is consulted as a second opinion: both must agree for a regression.

The gate speaks ``compare``'s ``--fail-on`` grammar (``compare/thresholds.py``), restricted to what ``ab`` decides:
``train_time[:F]`` (the practical factor: ``train_time:5%`` is ``--factor 0.05``), ``inconclusive`` (too few usable
pairs fail the gate too) and ``none`` (report only). Without either flag the gate is ``train_time:5%``
(``DEFAULT_FACTOR``); a worker that fails on either side always fails the gate, as a failing case does in ``compare``.
The module imports no numpy/scipy at import time (the CLI reads its defaults).
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from .case import Case
from .compare.checks import TimeCheck
from .compare.thresholds import Thresholds, parse_check, parse_fail_on
from .errors import InputError
from .schema import CaseResult
from .storage import write_outputs as write_files

ALPHA = 0.05
BOOTSTRAP_SEED = 20261203  # ab's own stream (timing_stats.bootstrap_median_ci): its published CIs stay as they were
DEFAULT_ROUNDS = 8  # ABBA rounds: the figure the A/A-and-slowdown experiment (bench/perf/aa_experiment.py) measured
DEFAULT_FACTOR = 0.05  # the practical factor: a smaller change never gates (the default gate is train_time:5%)
AB_METRICS = ("train_time",)  # what ab measures and decides; the rest is compare's
Runner = Callable[[Case, str, dict[str, str]], CaseResult]


def gate(fail_on: str | None = None, factor: float | None = None) -> Thresholds:
    """``--fail-on`` (compare's grammar) or ``--factor`` -> the gate: ``train_time``'s check (its factor is the
    practical factor), whether it gates, whether an inconclusive verdict fails. ``InputError`` for both flags at once,
    a negative factor or a metric ab does not decide."""
    if fail_on is not None and factor is not None:
        raise InputError(f"--factor {factor} with --fail-on {fail_on!r}: expected one of them (--factor F is "
                         f"--fail-on train_time:F×100%)")
    if fail_on is None:
        f = DEFAULT_FACTOR if factor is None else factor
        if not f >= 0:
            raise InputError(f"--factor {f}: expected a number >= 0 (0.05 = 5 %)")
        return Thresholds({"train_time": TimeCheck("train_time", 1.0 + f)}, frozenset(AB_METRICS),
                          "defaults" if factor is None else "--factor")
    th = parse_fail_on(fail_on)  # the grammar's own errors first
    named = [t.strip() for t in fail_on.split(",") if t.strip().lower() not in ("none", "inconclusive")]
    other = [t for t in named if parse_check(t).metric not in AB_METRICS]
    if other:
        raise InputError(f"--fail-on {other[0]!r}: gru-bench ab decides {', '.join(AB_METRICS)} only (paired timing "
                         f"rounds); gate the other metrics with gru-bench compare")
    check = th["train_time"] if named else TimeCheck("train_time", 1.0 + DEFAULT_FACTOR)
    return Thresholds({"train_time": check}, frozenset(AB_METRICS) & th.gating, th.source, th.inconclusive)


def practical_factor(th: Thresholds) -> float:
    """The gate's train_time factor as ab's fraction: ×1.05 -> 0.05."""
    return round(th["train_time"].factor - 1.0, 12)  # type: ignore[attr-defined]


def parse_env(items: Sequence[str] | None, option: str) -> dict[str, str]:
    """``["K=V", ...]`` -> ``{K: V}``; a one-line ``InputError`` naming the bad item otherwise."""
    env: dict[str, str] = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key or key != key.strip() or any(c in key for c in " \t\n\0"):
            raise InputError(f"{option} {item!r}: expected KEY=VALUE, e.g. {option} OMP_NUM_THREADS=1")
        env[key] = value
    return env


def abba_order(rounds: int) -> list[tuple[str, str]]:
    """The side order of each round: ``("A", "B")`` on even rounds, ``("B", "A")`` on odd ones."""
    if rounds < 1:
        raise InputError(f"--rounds {rounds}: expected at least 1")
    return [("A", "B") if r % 2 == 0 else ("B", "A") for r in range(rounds)]


@dataclass
class Decision:
    verdict: str  # improved | unchanged | regressed | inconclusive
    ratio: float | None  # median of the per-round candidate/baseline ratios
    ci_low: float | None
    ci_high: float | None
    p_value: float | None  # two-sided signed-rank p of the log ratios
    n: int


def paired_decision(baseline: Sequence[float], candidate: Sequence[float], factor: float,
                    alpha: float = ALPHA) -> Decision:
    """Per-round medians of the two sides (same length, paired by round) -> a verdict.

    regressed: two-sided signed-rank p < alpha and the median ratio > ``1 + factor`` (the CI is reported);
    improved symmetrically; fewer than 6 pairs: inconclusive.
    """
    import numpy as np
    from scipy.stats import wilcoxon

    from .timing_stats import bootstrap_median_ci

    a, b = np.asarray(baseline, dtype=float), np.asarray(candidate, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"{a.size} baseline rounds vs {b.size} candidate rounds: expected pairs")
    ok = (a > 0) & (b > 0) & np.isfinite(a) & np.isfinite(b)
    logr = np.log(b[ok] / a[ok])
    n = int(logr.size)
    if n < 6:  # the two-sided signed-rank p cannot go under 0.05 with fewer pairs
        ratio = float(np.exp(np.median(logr))) if n else None
        return Decision("inconclusive", ratio, None, None, None, n)
    ratio = float(np.exp(np.median(logr)))
    lo, hi = (float(np.exp(v)) for v in bootstrap_median_ci(logr, 0.95, BOOTSTRAP_SEED))  # no spread: the ratio
    if np.ptp(logr) == 0:
        p = 0.0 if logr[0] != 0 else 1.0
    else:
        p = float(wilcoxon(logr).pvalue) if np.any(logr != 0) else 1.0
    if p < alpha and ratio > 1 + factor:
        verdict = "regressed"
    elif p < alpha and ratio < 1 / (1 + factor):
        verdict = "improved"
    else:
        verdict = "unchanged"
    return Decision(verdict, ratio, lo, hi, p, n)


def _median(stats: Any, cpu: bool) -> float | None:
    import numpy as np

    if stats is None:
        return None
    if cpu:
        return float(np.median(stats.cpu_samples)) if stats.cpu_samples else None
    return float(stats.median)


@dataclass
class CaseAB:
    case_id: str
    label: str
    verdict: str
    channel: str  # "wall" or "cpu": which channel decided
    wall: dict[str, Any] | None = None
    cpu: dict[str, Any] | None = None
    failures: list[str] = field(default_factory=list)  # "baseline round 3: failed: worker died from SIGKILL"
    baseline_s: list[float | None] = field(default_factory=list)
    candidate_s: list[float | None] = field(default_factory=list)


def decide_case(case: Case, base: list[CaseResult], cand: list[CaseResult], factor: float) -> CaseAB:
    """One case's rounds of both sides -> its verdict (``failed`` when a side's worker failed in any round)."""
    failures = [f"{side} round {i}: {r.status}: {r.reason or ''}".rstrip(": ")
                for side, rs in (("baseline", base), ("candidate", cand)) for i, r in enumerate(rs)
                if r.status != "ok" or r.train_time is None]
    pairs = [(a, b) for a, b in zip(base, cand) if a.train_time is not None and b.train_time is not None]
    wall = paired_decision([_median(a.train_time, False) for a, _ in pairs],
                           [_median(b.train_time, False) for _, b in pairs], factor)
    cpu_pairs = [(_median(a.train_time, True), _median(b.train_time, True)) for a, b in pairs]
    cpu = None
    if cpu_pairs and all(x is not None and y is not None for x, y in cpu_pairs):
        cpu = paired_decision([x for x, _ in cpu_pairs], [y for _, y in cpu_pairs], factor)
    busy = any(r.load is not None and r.load.busy for r in base + cand)
    verdict, channel = wall.verdict, "wall"
    if busy and cpu is not None and wall.verdict != cpu.verdict:
        # a busy machine inflates wall time on one side's rounds; the CPU channel is the second opinion
        verdict, channel = ("unchanged" if "unchanged" in (wall.verdict, cpu.verdict) else cpu.verdict), "cpu"
    if failures:
        verdict = "failed"
    return CaseAB(case.case_id, case.label, verdict, channel, asdict(wall), asdict(cpu) if cpu else None, failures,
                  [_median(r.train_time, False) for r in base], [_median(r.train_time, False) for r in cand])


def run_rounds(cases: Sequence[Case], rounds: int, runner: Runner, sides: dict[str, tuple[str, dict[str, str]]],
               on_result: Callable[[str, int, CaseResult], None] | None = None
               ) -> dict[str, dict[str, list[CaseResult]]]:
    """ABBA… rounds of every case; returns ``{"A"|"B": {case_id: [result per round]}}``. ``runner(case, python,
    env)`` runs one case in a fresh worker; a failed worker is recorded and the rounds go on."""
    out: dict[str, dict[str, list[CaseResult]]] = {"A": {}, "B": {}}
    for r, order in enumerate(abba_order(rounds)):
        for case in cases:
            for side in order:
                python, env = sides[side]
                result = runner(case, python, env)
                out[side].setdefault(case.case_id, []).append(result)
                if on_result is not None:
                    on_result(side, r, result)
    return out


def isolated_runner(calibration: Any = None) -> Runner:
    from .executors.local import run_isolated

    def run(case: Case, python: str, env: dict[str, str]) -> CaseResult:
        result = run_isolated(case, calibration, python=python, extra_env=env)
        assert result is not None  # never cancelled here
        return result
    return run


def merge_rounds(results: list[CaseResult]) -> CaseResult:
    """A side's rounds of one case -> one ordinary record entry (all rounds' samples; the first failure if any)."""
    from .timing_stats import summarize

    bad = [r for r in results if r.status != "ok" or r.train_time is None]
    if bad:
        return bad[0]
    first = results[0]
    wall = [s for r in results for s in r.train_time.samples]  # type: ignore[union-attr]
    cpus = [r.train_time.cpu_samples for r in results]  # type: ignore[union-attr]
    tt = summarize(wall, flops=first.flops_train_step)
    tt.cpu_samples = [s for c in cpus for s in c] if all(cpus) else None  # type: ignore[union-attr]
    return first.model_copy(update={"train_time": tt})


def exit_code(cases: list[CaseAB], thresholds: Thresholds | None = None) -> int:
    """1 when train_time gates and a case regressed (or was inconclusive, with ``inconclusive`` in the gate), or a
    worker failed on either side; else 0."""
    th = thresholds or gate()
    fails = ("regressed", "inconclusive") if th.inconclusive else ("regressed",)
    if th.gates("train_time") and any(c.verdict in fails for c in cases):
        return 1
    return 1 if any(c.verdict == "failed" for c in cases) else 0


def describe_gate(th: Thresholds) -> str:
    rule = f"train_time: ≥ ×{th['train_time'].factor:.3g} and signed-rank p < α" if th.gates("train_time") else "none"
    return f"{rule}{', or inconclusive' if th.inconclusive else ''}, or a failed worker ({th.source})"


def to_markdown(cases: list[CaseAB], meta: dict[str, Any]) -> str:
    """A Markdown table of the cases' verdicts; record text (labels, failure reasons) escaped (``compare.output``)."""
    from .compare.output import ICON, md

    lines = [f"## gru-bench ab: {meta['rounds']} rounds, factor {meta['factor']:.0%}", "",
             f"gate: {md(meta['gate'])}" if meta.get("gate") else "", "",
             "| case | verdict | ratio (cand/base) | 95 % CI | p | channel | note |",
             "|---|---|---|---|---|---|---|"]
    for c in cases:
        d = c.cpu if c.channel == "cpu" and c.cpu else c.wall or {}
        ratio = f"×{d['ratio']:.3f}" if d.get("ratio") else "–"
        ci = f"[{d['ci_low']:.3f}, {d['ci_high']:.3f}]" if d.get("ci_low") else ""
        p = f"{d['p_value']:.2g}" if d.get("p_value") is not None else ""
        note = "; ".join(c.failures)
        lines.append(f"| {md(c.label)} | {ICON.get(c.verdict, '')} {c.verdict} | {ratio} | {ci} | {p} | "
                     f"{c.channel} | {md(note)} |")
    return "\n".join(lines)


def write_outputs(cases: list[CaseAB], meta: dict[str, Any], markdown: Path | None, json_path: Path | None,
                  thresholds: Thresholds | None = None) -> None:
    payload = {"meta": meta, "cases": [asdict(c) for c in cases], "exit_code": exit_code(cases, thresholds)}
    write_files(((markdown, lambda: to_markdown(cases, meta)),
                 (json_path, lambda: json.dumps(payload, indent=1, default=str))))


def check_python(python: str, option: str) -> str:
    import shutil

    found = shutil.which(python) or (python if os.access(python, os.X_OK) else None)
    if not found:
        raise InputError(f"{option} {python!r}: not an executable interpreter")
    return found


def default_python() -> str:
    return sys.executable


def save_side(suite: Any, out_dir: Path, label: str, merged: dict[str, CaseResult]) -> Path:
    """One side as an ordinary run record under ``out_dir`` (``compare`` and ``report`` read it)."""
    from . import runner, storage

    run = runner.new_run(suite, out_dir, label, calibrate=False)
    try:
        for case in run.plan:
            if case.case_id in merged:
                run.journal.append(merged[case.case_id])
                run.done[case.case_id] = merged[case.case_id]
    finally:
        run.journal.close()
    storage.save_record(run.assemble(complete=len(run.done) == len(run.plan)), run.record_path)
    run.journal.path.unlink(missing_ok=True)
    return run.record_path


def ab_command(suite: Any, out_dir: Path, rounds: int, thresholds: Thresholds,
               sides: dict[str, tuple[str, dict[str, str]]], markdown: Path | None, json_path: Path | None,
               console: Any, runner: Runner | None = None) -> int:
    """Run the rounds, record both sides, decide each case under ``thresholds`` (``gate()``), print and write the
    Markdown/JSON; returns the exit code."""
    import time

    from .runner import _dedupe

    cases = _dedupe(suite.cases())  # timing only: the suite has steps=0
    t0 = time.monotonic()

    def progress(side: str, r: int, result: CaseResult) -> None:
        name = "baseline" if side == "A" else "candidate"
        t = f"{result.train_time.median * 1e3:.3g} ms" if result.train_time else f"{result.status}: {result.reason}"
        console.print(f"round {r} {name} {result.case.label}: {t}", highlight=False)

    got = run_rounds(cases, rounds, runner or isolated_runner(), sides, progress)
    factor = practical_factor(thresholds)
    verdicts = [decide_case(c, got["A"].get(c.case_id, []), got["B"].get(c.case_id, []), factor) for c in cases]
    paths = {}
    for side, name in (("A", "baseline"), ("B", "candidate")):
        merged = {cid: merge_rounds(rs) for cid, rs in got[side].items()}
        paths[name] = str(save_side(suite, out_dir, f"ab {name}", merged))
    meta = {"rounds": rounds, "factor": factor, "gate": describe_gate(thresholds), "alpha": ALPHA,
            "wall_s": time.monotonic() - t0,
            "baseline": {"python": sides["A"][0], "env": sides["A"][1], "record": paths["baseline"]},
            "candidate": {"python": sides["B"][0], "env": sides["B"][1], "record": paths["candidate"]}}
    write_outputs(verdicts, meta, markdown, json_path, thresholds)
    console.print(to_markdown(verdicts, meta), highlight=False, markup=False)
    for name, p in paths.items():
        console.print(f"{name} record: {p}", highlight=False)
    return exit_code(verdicts, thresholds)
