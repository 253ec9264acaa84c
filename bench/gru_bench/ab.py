"""``gru-bench ab``: interleaved (ABBA…) timing of two environments, decided on the paired per-round ratios.

Each round runs every case's timing phase once per side, each in a fresh worker process; round ``r`` runs the
baseline first when ``r`` is even and the candidate first when it is odd, so drift hits both sides alike. The
decision per case uses the per-round ratio ``candidate median / baseline median``: a one-sided Wilcoxon
signed-rank test on the log ratios, a bootstrap 95 % CI of the median ratio, and a practical factor (a change
smaller than ``factor`` never gates). The wall-time channel decides unless the machine was busy, where the
process-CPU-time channel is consulted as a second opinion: both must agree for a regression.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .case import Case
from .errors import InputError
from .results import CaseResult
from .results import write_outputs as write_files

ALPHA = 0.05
BOOTSTRAP_SEED = 20261203
Runner = Callable[[Case, str, dict[str, str]], CaseResult]


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
    from scipy.stats import bootstrap, wilcoxon

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
    if np.ptp(logr) == 0:
        lo = hi = ratio
        p = 0.0 if logr[0] != 0 else 1.0
    else:
        res = bootstrap((logr,), np.median, n_resamples=2000, confidence_level=0.95, method="percentile",
                        vectorized=True, rng=np.random.default_rng(BOOTSTRAP_SEED))
        lo, hi = float(np.exp(res.confidence_interval.low)), float(np.exp(res.confidence_interval.high))
        p = float(wilcoxon(logr).pvalue) if np.any(logr != 0) else 1.0
    if p < alpha and ratio > 1 + factor:
        verdict = "regressed"
    elif p < alpha and ratio < 1 / (1 + factor):
        verdict = "improved"
    else:
        verdict = "unchanged"
    return Decision(verdict, ratio, lo, hi, p, n)


def _median(stats: Any, cpu: bool) -> float | None:
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


def exit_code(cases: list[CaseAB], fail_on_failed: bool = True) -> int:
    if any(c.verdict == "regressed" for c in cases):
        return 1
    if fail_on_failed and any(c.verdict == "failed" for c in cases):
        return 1
    return 0


def to_markdown(cases: list[CaseAB], meta: dict[str, Any]) -> str:
    from .compare_output import ICON

    lines = [f"## gru-bench ab: {meta['rounds']} rounds, factor {meta['factor']:.0%}", "",
             "| case | verdict | ratio (cand/base) | 95 % CI | p | channel | note |",
             "|---|---|---|---|---|---|---|"]
    for c in cases:
        d = c.cpu if c.channel == "cpu" and c.cpu else c.wall or {}
        ratio = f"×{d['ratio']:.3f}" if d.get("ratio") else "–"
        ci = f"[{d['ci_low']:.3f}, {d['ci_high']:.3f}]" if d.get("ci_low") else ""
        p = f"{d['p_value']:.2g}" if d.get("p_value") is not None else ""
        note = "; ".join(c.failures)
        lines.append(f"| {c.label} | {ICON.get(c.verdict, '')} {c.verdict} | {ratio} | {ci} | {p} | {c.channel} "
                     f"| {note} |")
    return "\n".join(lines)


def write_outputs(cases: list[CaseAB], meta: dict[str, Any], markdown: Path | None, json_path: Path | None) -> None:
    payload = {"meta": meta, "cases": [asdict(c) for c in cases], "exit_code": exit_code(cases)}
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
    from . import results, runner

    run = runner.new_run(suite, out_dir, label, calibrate=False)
    try:
        for case in run.plan:
            if case.case_id in merged:
                run.journal.append(merged[case.case_id])
                run.done[case.case_id] = merged[case.case_id]
    finally:
        run.journal.close()
    results.save_record(run.assemble(complete=len(run.done) == len(run.plan)), run.record_path)
    run.journal.path.unlink(missing_ok=True)
    return run.record_path


def ab_command(suite: Any, out_dir: Path, rounds: int, factor: float, sides: dict[str, tuple[str, dict[str, str]]],
               markdown: Path | None, json_path: Path | None, console: Any, runner: Runner | None = None) -> int:
    import time

    from .runner import _dedupe

    cases = _dedupe(suite.cases())  # timing only: the suite has steps=0
    t0 = time.monotonic()

    def progress(side: str, r: int, result: CaseResult) -> None:
        name = "baseline" if side == "A" else "candidate"
        t = f"{result.train_time.median * 1e3:.3g} ms" if result.train_time else f"{result.status}: {result.reason}"
        console.print(f"round {r} {name} {result.case.label}: {t}", highlight=False)

    got = run_rounds(cases, rounds, runner or isolated_runner(), sides, progress)
    verdicts = [decide_case(c, got["A"].get(c.case_id, []), got["B"].get(c.case_id, []), factor) for c in cases]
    paths = {}
    for side, name in (("A", "baseline"), ("B", "candidate")):
        merged = {cid: merge_rounds(rs) for cid, rs in got[side].items()}
        paths[name] = str(save_side(suite, out_dir, f"ab {name}", merged))
    meta = {"rounds": rounds, "factor": factor, "alpha": ALPHA, "wall_s": time.monotonic() - t0,
            "baseline": {"python": sides["A"][0], "env": sides["A"][1], "record": paths["baseline"]},
            "candidate": {"python": sides["B"][0], "env": sides["B"][1], "record": paths["candidate"]}}
    write_outputs(verdicts, meta, markdown, json_path)
    console.print(to_markdown(verdicts, meta), highlight=False, markup=False)
    for name, p in paths.items():
        console.print(f"{name} record: {p}", highlight=False)
    return exit_code(verdicts)
