"""The subnormal penalty, side by side: training-step time at T = 100, 200, 400 for every CPU backend and cell,
with ``denormals = "flush"`` and ``"keep"`` (B=64, H=64, adding task, 1 thread, float32, medians).

Target (flush): each doubling of T costs at most 2.3x the time. ``keep`` is shown beside it with the census (the
largest subnormal fraction the case's census found). TF cannot keep denormals: its keep column says "skipped".

    python bench/perf/denormals.py                  # numpy, torch, tf, one after another
    python bench/perf/denormals.py --backend torch  # one framework

Each case runs through ``worker.run_case`` in a fresh process (one at a time), so the policy is applied exactly as
in a suite run. Exit status 1 when a flush doubling exceeds the target.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

TARGET = 2.3
SEQ = (100, 200, 400)
CELLS = (("gru", "reset_after"), ("lstm", "standard"))

_ONE = """
import json, sys
from gru_bench.case import Case
from gru_bench.worker import run_case
r = run_case(Case(**json.loads(sys.argv[1])))
sub = r.subnormals or {}
print(json.dumps({"status": r.status, "reason": r.reason,
                  "median": r.train_time.median if r.train_time else None,
                  "subnormal": max(sub.values()) if sub else None,
                  "method": r.provenance.get("denormals", {}).get("method")}))
"""


def one(backend: str, cell: str, variant: str, T: int, policy: str, reps: int) -> dict:
    case = dict(backend=backend, cell=cell, variant=variant, task="adding", seq_len=T, hidden=64, batch_size=64,
                warmup=2, repetitions=reps, denormals=policy, threads=1)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    p = subprocess.run([sys.executable, "-c", _ONE, json.dumps(case)], capture_output=True, text=True, env=env)
    if p.returncode:
        return {"status": "failed", "reason": p.stderr.strip().splitlines()[-1:], "median": None}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backend", action="append", choices=("numpy", "torch", "tf"))
    ap.add_argument("--repetitions", type=int, default=7)
    args = ap.parse_args()
    backends = args.backend or ["numpy", "torch", "tf"]
    print(f"load (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    hdr = ("| backend | cell | T | flush ms | x prev | keep ms | x prev | keep/flush | subnormal (keep) "
           "| method (flush) |")
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    bad = 0
    for backend in backends:
        for cell, variant in CELLS:
            prev: dict[str, float | None] = {"flush": None, "keep": None}
            for T in SEQ:
                row = {pol: one(backend, cell, variant, T, pol, args.repetitions) for pol in ("flush", "keep")}
                cells = []
                for pol in ("flush", "keep"):
                    m = row[pol]["median"]
                    if m is None:
                        cells += [row[pol]["status"], ""]
                        continue
                    ratio = m / prev[pol] if prev[pol] else None
                    if pol == "flush" and ratio is not None and ratio > TARGET:
                        bad += 1
                    cells += [f"{m * 1e3:.1f}", f"{ratio:.2f}x" if ratio else ""]
                    prev[pol] = m
                f, k = row["flush"]["median"], row["keep"]["median"]
                sub = row["keep"].get("subnormal")
                cells += [f"{k / f:.2f}" if f and k else "", f"{sub:.2%}" if sub is not None else "",
                          str(row["flush"].get("method"))]
                print(f"| {backend} | {cell} | {T} | " + " | ".join(cells) + " |", flush=True)
    print(f"flush doublings over {TARGET}x: {bad}")
    print(f"load (1/5/15 min): {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
