"""How far can ``gru-bench compare`` be trusted on this machine? Two measurements, interleaved run by run:

* A/A: the same code run twice, ``--pairs`` times; every "regressed" timing verdict is a false alarm.
  The rate is per timing comparison (case × metric) and per pair (any false alarm in one comparison).
* Injected slowdown: a test-only backend that wraps the NumPy backend and spins ``--slowdown`` (default 25 %) of
  each step's own duration on top of it; the rate at which the slowed timings are caught as "regressed".

Both sides of every pair run the quick suite's timing cases (``steps=0``) on the backend ``aanp`` — a plugin
registered through ``GRU_BENCH_BACKENDS`` — bound to ``Plain`` (the NumPy backend as it is) or ``Slow``; the
same backend name keeps the case ids equal, so the comparison matches them like any two runs. The order inside a
pair alternates (A,B / B,A) so a drift of the machine does not favour one side.

    python bench/perf/aa_experiment.py --pairs 20 --out aa-results

writes every record under ``OUT/runs/``, the figures to ``OUT/aa_summary.json``, and prints them.
This module is also the plugin itself: workers import ``aa_experiment:Plain`` / ``aa_experiment:Slow``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from time import perf_counter

from gru_bench.backends.numpy_backend import NumpyBackend

HERE = Path(__file__).resolve().parent
NAME = "aanp"
SLOWDOWN_ENV = "GRU_BENCH_AA_SLOWDOWN"


class Plain(NumpyBackend):
    """The NumPy backend under another name (so the A/A and the slowed runs share case ids)."""

    name = NAME


class Slow(Plain):
    """The NumPy backend plus a busy-wait of ``GRU_BENCH_AA_SLOWDOWN`` (default 0.25) × each step's own time."""

    def __init__(self) -> None:
        super().__init__()
        self.extra = float(os.environ.get(SLOWDOWN_ENV, "0.25"))

    def _spin(self, t0: float) -> None:
        end = perf_counter() + self.extra * (perf_counter() - t0)
        while perf_counter() < end:
            pass

    def train_step(self, model, x, y):
        t0 = perf_counter()
        loss = super().train_step(model, x, y)
        self._spin(t0)
        return loss

    def forward(self, model, x):
        t0 = perf_counter()
        out = super().forward(model, x)
        self._spin(t0)
        return out


def _run(kind: str, out_dir: Path, overrides: dict, label: str):
    """One run of the quick suite's timing cases with ``aanp`` bound to ``kind``; the record."""
    from gru_bench import runner
    from gru_bench.backends import PLUGIN_ENV
    from gru_bench.suite import load_suite

    os.environ[PLUGIN_ENV] = f"{NAME}=aa_experiment:{kind}"
    suite = load_suite("quick", {"backend": NAME, "steps": "0", **overrides})
    outcome = runner.execute(runner.new_run(suite, out_dir, label), progress=False,
                             console=_quiet_console())
    if outcome.interrupted or len(outcome.record.cases) != len(suite.cases()):
        raise SystemExit(f"{label}: incomplete run ({len(outcome.record.cases)} of {len(suite.cases())} cases)")
    bad = [c for c in outcome.record.cases if c.status != "ok"]
    if bad:
        raise SystemExit(f"{label}: {bad[0].case.label} {bad[0].status}: {bad[0].reason}")
    return outcome.record


def _quiet_console():
    from rich.console import Console

    return Console(stderr=True, quiet=True)


def _timing_rows(cmp):
    return [r for r in cmp.rows if r.metric in ("train_time", "forward_time")]


def _wilson(k: int, n: int) -> tuple[float, float]:
    """95 % Wilson score interval of a rate k/n (scipy's binomtest)."""
    from scipy.stats import binomtest

    ci = binomtest(k, n).proportion_ci(0.95, method="wilson")
    return float(ci.low), float(ci.high)


def experiment(pairs: int, slowdown: float, out: Path, overrides: dict) -> dict:
    from gru_bench.compare.engine import compare_records
    from gru_bench.sysload import load_snapshot

    os.environ[SLOWDOWN_ENV] = str(slowdown)
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
    sys.path.insert(0, str(HERE))
    runs = out / "runs"
    la, cp = load_snapshot()
    load_before = {"loadavg": la, "other_cpu_percent": cp}
    t_start = time.monotonic()
    aa, det = [], []
    for i in range(pairs):
        for study, kinds, sink in (("aa", ("Plain", "Plain"), aa), ("slow", ("Plain", "Slow"), det)):
            order = (0, 1) if i % 2 == 0 else (1, 0)
            recs = [None, None]
            for side in order:
                recs[side] = _run(kinds[side], runs / study, overrides, f"{study} pair {i} side {side}")
            cmp = compare_records([recs[0]], [recs[1]])
            rows = _timing_rows(cmp)
            busy = sum(1 for rec in recs for c in rec.cases if c.load is not None and c.load.busy)
            sink.append({"pair": i, "busy_cases": busy, "cases": sum(len(r.cases) for r in recs),
                         "ratios": [r.change for r in rows],
                         "verdicts": [r.verdict for r in rows],
                         "q": [r.q_value for r in rows], "n": [min(r.n_baseline, r.n_candidate) for r in rows],
                         "metric": [r.metric for r in rows], "case": [r.label for r in rows]})
        done = (i + 1) / pairs
        print(f"pair {i + 1}/{pairs}: A/A {aa[-1]['verdicts'].count('regressed')} false alarms; slowdown caught "
              f"{det[-1]['verdicts'].count('regressed')}/{len(det[-1]['verdicts'])}; "
              f"{time.monotonic() - t_start:.0f} s, ~{(time.monotonic() - t_start) * (1 / done - 1):.0f} s left",
              flush=True)

    def rate(sink, verdict):
        k = sum(p["verdicts"].count(verdict) for p in sink)
        n = sum(len(p["verdicts"]) for p in sink)
        return k, n

    fa_k, fa_n = rate(aa, "regressed")
    fi_k, _ = rate(aa, "improved")
    det_k, det_n = rate(det, "regressed")
    pairs_with_alarm = sum(1 for p in aa if "regressed" in p["verdicts"])
    ratios = [r for p in det for r in p["ratios"]]
    aa_ratios = [r for p in aa for r in p["ratios"]]
    load_avg, cpu_pct = load_snapshot()
    summary = {
        "pairs": pairs, "slowdown": slowdown, "suite": "quick (timing cases, steps=0)", "backend": "numpy via plugin",
        "overrides": overrides, "wall_s": round(time.monotonic() - t_start, 1),
        "aa": {"comparisons": fa_n, "false_regressed": fa_k, "rate": fa_k / fa_n, "rate_ci95": _wilson(fa_k, fa_n),
               "false_improved": fi_k, "pairs_with_a_false_regressed": pairs_with_alarm,
               "ratio_min": min(aa_ratios), "ratio_max": max(aa_ratios)},
        "slowdown_detection": {"comparisons": det_n, "regressed": det_k, "rate": det_k / det_n,
                               "rate_ci95": _wilson(det_k, det_n), "ratio_min": min(ratios),
                               "ratio_max": max(ratios)},
        "busy_cases": sum(p["busy_cases"] for p in aa + det),  # cases the runner flagged as run on a busy machine
        "cases": sum(p["cases"] for p in aa + det),
        "load_before": load_before, "load_after": {"loadavg": load_avg, "other_cpu_percent": cpu_pct},
        "pairs_detail": {"aa": aa, "slow": det},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "aa_summary.json").write_text(json.dumps(summary, indent=1, default=str))
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=20, help="A/A pairs, and as many slowed pairs (default 20)")
    ap.add_argument("--slowdown", type=float, default=0.25, help="injected extra time per step (default 0.25)")
    ap.add_argument("--repetitions", type=int, default=None, help="timed steps per case (default: the suite's)")
    ap.add_argument("--threads", type=int, default=None, help="BLAS threads per case (default: the suite's)")
    ap.add_argument("--out", type=Path, default=Path("aa-results"), help="records and aa_summary.json go here")
    args = ap.parse_args(argv)
    if args.pairs < 1:
        ap.error(f"--pairs {args.pairs}: expected a positive integer")
    if not args.slowdown > 0:
        ap.error(f"--slowdown {args.slowdown}: expected a positive fraction, e.g. 0.25")
    overrides = {k: str(v) for k, v in (("repetitions", args.repetitions), ("threads", args.threads)) if v is not None}
    s = experiment(args.pairs, args.slowdown, args.out, overrides)
    a, d = s["aa"], s["slowdown_detection"]
    print(f"A/A: {a['false_regressed']}/{a['comparisons']} timing comparisons falsely 'regressed' "
          f"({a['rate']:.1%}, 95% CI {a['rate_ci95'][0]:.1%}-{a['rate_ci95'][1]:.1%}); "
          f"{a['pairs_with_a_false_regressed']}/{s['pairs']} pairs with any; ratios {a['ratio_min']:.3f}-"
          f"{a['ratio_max']:.3f}")
    print(f"+{s['slowdown']:.0%} slowdown: {d['regressed']}/{d['comparisons']} caught ({d['rate']:.1%}, 95% CI "
          f"{d['rate_ci95'][0]:.1%}-{d['rate_ci95'][1]:.1%}); ratios {d['ratio_min']:.3f}-{d['ratio_max']:.3f}")
    print(f"wall time {s['wall_s']} s; summary: {args.out / 'aa_summary.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
