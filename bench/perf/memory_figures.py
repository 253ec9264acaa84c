"""Benchmark: the per-batch working set and fixed overhead (memory.py) of the same cases on numpy, torch and TF.

Each case runs in its own worker process (``worker.run_case``, timing phase), as ``gru-bench run`` does, and its
B and 2B windows each in a fresh process of their own (memory.py), so one framework's memory never shows in
another's figure. Prints working_set, fixed_overhead, the analytic activation estimate (the least BPTT keeps: gate
outputs and states), the ratios, what each backend keeps per sample and step in units of H (working set ÷ B·T·H·bytes)
and what the two window processes cost (wall seconds, started side by side); target: the working sets of the
backends within 2x of each other (the spread: max ÷ min per cell), each within 3x of the analytic estimate. Run it
on a quiet machine: the cost column is a time.

    PYTHONPATH=bench python bench/perf/memory_figures.py [--batch 64 --seq-len 100 --hidden 128]
        [--backends numpy,torch,tf]
"""
from __future__ import annotations

import argparse
import multiprocessing as mp

from gru_bench.case import Case
from gru_bench.worker import run_case

MiB = 2 ** 20


def _one(kw: dict, q: mp.Queue) -> None:
    r = run_case(Case(**kw), None, phases=("timing",))
    seconds = {m.name: m.seconds for m in r.memory if m.seconds is not None}
    q.put({m.name: m.bytes for m in r.memory} | {"_status": r.status, "_reason": r.reason,
                                                 "_cost_s": seconds.get("working_set")})


def measure(kw: dict) -> dict:
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_one, args=(kw, q))
    p.start()
    out = q.get()
    p.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--backends", default="numpy,torch,tf")
    a = ap.parse_args()
    cells = [("gru", "reset_after"), ("lstm", None)]
    print(f"B={a.batch} T={a.seq_len} H={a.hidden} I=1 fp32, adding task, 1 thread per worker")
    print(f"{'cell':16} {'backend':8} {'working_set':>12} {'fixed':>10} {'analytic':>10} "
          f"{'ws/analytic':>12} {'ws/numpy':>9} {'kept/H':>7} {'cost':>7}")
    ok = True
    for cell, variant in cells:
        ref, sets = None, []
        for be in a.backends.split(","):
            kw = dict(backend=be, device="cpu", cell=cell, variant=variant or "standard", task="adding",
                      seq_len=a.seq_len,
                      hidden=a.hidden, batch_size=a.batch, dtype="float32", warmup=1, repetitions=3, seed=0,
                      threads=1)
            m = measure(kw)
            name = f"{'GRU ' + variant if cell == 'gru' else 'LSTM'}"
            if "working_set" not in m:
                print(f"{name:16} {be:8} {m['_status']}: {m['_reason']}")
                ok = False
                continue
            ws, fx, an = m["working_set"], m.get("fixed_overhead", 0), m["activation_estimate"]
            ref = ref or ws
            sets.append(ws)
            r_an, r_ref = ws / an, ws / ref
            ok &= 1 / 3 <= r_an <= 3
            per_h = ws / (a.batch * a.seq_len * a.hidden * 4)  # values kept per sample and step, in units of H (fp32)
            print(f"{name:16} {be:8} {ws / MiB:10.2f} M {fx / MiB:8.1f} M {an / MiB:8.2f} M {r_an:12.2f} "
                  f"{r_ref:9.2f} {per_h:6.1f}H {m['_cost_s'] or 0:6.1f}s")
        if len(sets) > 1:
            spread = max(sets) / min(sets)
            ok &= spread <= 2
            print(f"{'':16} spread of the working sets (max / min): {spread:.2f}")
    print("target met" if ok else "target NOT met (see the ratios)")


if __name__ == "__main__":
    main()
