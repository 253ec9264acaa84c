"""How far can ``gru-bench ab`` be trusted on a loaded 2-core machine? A/A and injected-slowdown trials.

While a busy-loop process (started here, stopped at the end) keeps one core busy, each trial runs
``gru-bench ab`` on a tiny NumPy case (backend ``slow`` from ``ab_slow_backend.py``, a plugin) in three
conditions, interleaved trial by trial: A/A (no slowdown), and the candidate slowed by 25 % and by 10 % through
``--candidate-env GRU_BENCH_AB_SLOWDOWN=…``. A/A "regressed" verdicts are false alarms; slowed "regressed"
verdicts are catches. The per-round medians of every trial are kept, so other factors and fewer rounds can be
re-decided offline (``--reanalyse``).

    PYTHONPATH=bench:bench/perf python bench/perf/ab_experiment.py --trials 20 --rounds 6 --out ab-results

writes ``OUT/trials.jsonl`` (one line per trial, as it finishes) and ``OUT/ab_summary.json``, and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from gru_bench import ab
from gru_bench.suite import load_suite

HERE = Path(__file__).resolve().parent
CONDITIONS = {"aa": 0.0, "slow25": 0.25, "slow10": 0.10}
SUITE = {"name": "ab-tiny", "backend": "slow", "cell": "gru", "task": "adding", "seq_len": 20, "hidden": [16],
         "batch_size": 16, "warmup": 2, "repetitions": 7, "threads": 1, "timeout_s": 120, "steps": 0}


def busy_loop() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def write_suite(path: Path, repetitions: int) -> Path:
    keys = dict(SUITE, repetitions=repetitions)
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items()), encoding="utf-8")
    return path


def trial(suite_path: Path, out: Path, rounds: int, factor: float, slowdown: float) -> dict:
    suite = load_suite(str(suite_path), {})
    sides = {"A": (sys.executable, {}), "B": (sys.executable, {"GRU_BENCH_AB_SLOWDOWN": str(slowdown)})}
    js = out / "tmp.json"
    t0 = time.monotonic()
    code = ab.ab_command(suite, out / "runs", rounds, ab.gate(factor=factor), sides, None, js,
                         Console(file=open(os.devnull, "w")))
    payload = json.loads(js.read_text())
    c = payload["cases"][0]
    return {"slowdown": slowdown, "exit": code, "verdict": c["verdict"], "channel": c["channel"],
            "wall": c["wall"], "cpu": c["cpu"], "baseline_s": c["baseline_s"], "candidate_s": c["candidate_s"],
            "seconds": time.monotonic() - t0, "load1": os.getloadavg()[0]}


def rates(rows: list[dict], rounds: int, factor: float) -> dict:
    """Re-decide each trial on its first ``rounds`` rounds (wall channel) at ``factor``."""
    out = {}
    for name, s in CONDITIONS.items():
        got = [r for r in rows if r["slowdown"] == s]
        hits = [ab.paired_decision(r["baseline_s"][:rounds], r["candidate_s"][:rounds], factor).verdict
                == "regressed" for r in got]
        out[name] = {"trials": len(got), "regressed": sum(hits), "rate": sum(hits) / len(got) if got else None}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=ab.DEFAULT_ROUNDS)
    ap.add_argument("--repetitions", type=int, default=7, help="timed steps per round (samples per round)")
    ap.add_argument("--factor", type=float, default=ab.DEFAULT_FACTOR)
    ap.add_argument("--out", type=Path, default=Path("ab-results"))
    ap.add_argument("--no-busy", action="store_true", help="do not start the busy-loop process")
    ap.add_argument("--reanalyse", action="store_true", help="only re-decide OUT/trials.jsonl")
    a = ap.parse_args(argv)
    a.out.mkdir(parents=True, exist_ok=True)
    log = a.out / "trials.jsonl"
    if not a.reanalyse:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), str(HERE.parent), os.environ.get("PYTHONPATH", "")])
        os.environ["GRU_BENCH_BACKENDS"] = "slow=ab_slow_backend:SlowBackend"
        suite_path = write_suite(a.out / "ab-tiny.toml", a.repetitions)
        hog = None if a.no_busy else busy_loop()
        t0 = time.monotonic()
        try:
            with open(log, "a", encoding="utf-8") as f:
                for i in range(a.trials):
                    for name, s in CONDITIONS.items():
                        row = trial(suite_path, a.out, a.rounds, a.factor, s)
                        row.update(trial=i, condition=name, busy_loop=hog is not None)
                        f.write(json.dumps(row) + "\n")
                        f.flush()
                        print(f"trial {i} {name}: {row['verdict']} ({row['channel']}) ×{row['wall']['ratio']:.3f} "
                              f"{row['seconds']:.0f} s load {row['load1']:.2f}", flush=True)
        finally:
            if hog is not None:
                hog.kill()
                hog.wait()
        print(f"wall time: {time.monotonic() - t0:.0f} s")
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    rounds = max(len(r["baseline_s"]) for r in rows)
    summary = {"factor": a.factor, "rounds": rounds, "by_verdict": {},
               "grid": {f"rounds={n} factor={fac}": rates(rows, n, fac)
                        for n in range(6, rounds + 1) for fac in (0.03, 0.05, 0.08)}}
    for name in CONDITIONS:
        got = [r for r in rows if r["condition"] == name]
        summary["by_verdict"][name] = {"trials": len(got),
                                       "regressed": sum(r["verdict"] == "regressed" for r in got),
                                       "decided_by_cpu": sum(r["channel"] == "cpu" for r in got),
                                       "median_seconds": sorted(r["seconds"] for r in got)[len(got) // 2]}
    (a.out / "ab_summary.json").write_text(json.dumps(summary, indent=1))
    print("| condition | trials | regressed | rate | decided by CPU channel |")
    print("|---|---|---|---|---|")
    for name, v in summary["by_verdict"].items():
        print(f"| {name} | {v['trials']} | {v['regressed']} | {v['regressed'] / max(1, v['trials']):.0%} | "
              f"{v['decided_by_cpu']} |")
    print(json.dumps(summary["grid"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
