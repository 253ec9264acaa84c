"""Harness overhead: the median training-step time gru-bench records for a case, divided by the median of a
hand-written loop timing the same backend's step on the same model and batch (target: <= 1.03).

Default mode: both sides run in fresh processes, alternated round by round (gru-bench, loop, gru-bench, loop, ...)
so machine noise falls on both alike; the ratio is the median of the per-round ratios, with its range.

``--interleave``: one process, one model; blocks of steps timed the worker's way (``timer.time_calls`` around
``backend.train_step`` with ``backend.sync``) alternate with blocks of a bare ``perf_counter`` loop, so even a busy
machine's noise falls on both alike; the ratio of the two medians isolates the timing path's own cost.

    python bench/perf/harness_overhead.py                       # numpy, B=64 T=100 H=128, 2 threads, 5 rounds
    python bench/perf/harness_overhead.py --interleave --blocks 40
    python bench/perf/harness_overhead.py --backend torch --rounds 7
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

from gru_bench.case import Case
from gru_bench.executors.local import run_isolated

# The hand-written loop: what a person would write to time one training step, nothing else.
LOOP = r"""
import json, sys, time
import numpy as np
from gru_bench.backends import TrainConfig, get_backend
from gru_bench.case import Case
from gru_bench.spec import init_weights
from gru_bench.threads import fix_threads
from gru_bench.worker import model_spec

case = Case.model_validate_json(sys.argv[1])
fix_threads(case.threads)
backend = get_backend(case.backend)
backend.set_threads(case.threads)
spec, L = model_spec(case)
model = backend.build(spec, init_weights(spec, case.seed, scheme=case.init, dtype=case.dtype), case.device,
                      case.dtype, TrainConfig(optimizer=case.optimizer, lr=case.lr, clip=case.clip), {})
from gru_bench.tasks import get_task
timing_ss = np.random.SeedSequence(case.seed).spawn(3)[0]
x, y = get_task(case.task).batch(np.random.default_rng(timing_ss), case.batch_size, case.seq_len, case.dtype)
x, y = backend.prepare(model, x, y)
for _ in range(case.warmup):
    backend.train_step(model, x, y)
backend.sync(case.device)
samples = []
for _ in range(case.repetitions):
    t0 = time.perf_counter()
    backend.train_step(model, x, y)
    backend.sync(case.device)
    samples.append(time.perf_counter() - t0)
print(json.dumps(samples))
"""


def interleaved(case: Case, blocks: int, per_block: int) -> tuple[list[float], list[float]]:
    """(worker-style samples, bare-loop samples), alternating blocks in this process on one model."""
    import time

    import numpy as np

    from gru_bench import timer
    from gru_bench.backends import TrainConfig, get_backend
    from gru_bench.spec import init_weights
    from gru_bench.threads import fix_threads
    from gru_bench.tasks import get_task
    from gru_bench.worker import model_spec

    fix_threads(case.threads)
    backend = get_backend(case.backend)
    backend.set_threads(case.threads)
    spec, _ = model_spec(case)
    model = backend.build(spec, init_weights(spec, case.seed, scheme=case.init, dtype=case.dtype), case.device,
                          case.dtype, TrainConfig(optimizer=case.optimizer, lr=case.lr, clip=case.clip), {})
    x, y = get_task(case.task).batch(np.random.default_rng(0), case.batch_size, case.seq_len, case.dtype)
    x, y = backend.prepare(model, x, y)
    for _ in range(case.warmup):
        backend.train_step(model, x, y)

    def sync() -> None:
        backend.sync(case.device)

    harness_s: list[float] = []
    loop_s: list[float] = []
    losses: list[float] = []
    for _ in range(blocks):
        harness_s += timer.time_calls(lambda: losses.append(backend.train_step(model, x, y)), per_block, sync)
        for _ in range(per_block):
            t0 = time.perf_counter()
            backend.train_step(model, x, y)
            backend.sync(case.device)
            loop_s.append(time.perf_counter() - t0)
    return harness_s, loop_s


def hand_loop(case: Case) -> float:
    p = subprocess.run([sys.executable, "-c", LOOP, case.model_dump_json()], capture_output=True, text=True,
                       check=True, timeout=case.timeout_s)
    return statistics.median(json.loads(p.stdout.strip().splitlines()[-1]))


def harness(case: Case) -> float:
    r = run_isolated(case)
    if r is None or r.status != "ok":
        raise SystemExit(f"gru-bench case ended {r and r.status}: {r and r.reason}")
    return r.train_time.median


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="numpy")
    ap.add_argument("--cell", default="gru")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seq-len", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repetitions", type=int, default=50)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--interleave", action="store_true", help="one process, alternating blocks (see above)")
    ap.add_argument("--blocks", type=int, default=40)
    ap.add_argument("--per-block", type=int, default=5)
    a = ap.parse_args()
    case = Case(backend=a.backend, cell=a.cell, variant="reset_after" if a.cell == "gru" else "standard",
                task="adding", seq_len=a.seq_len, hidden=a.hidden, batch_size=a.batch, warmup=5,
                repetitions=a.repetitions, threads=a.threads)
    if a.interleave:
        h, loop = interleaved(case, a.blocks, a.per_block)
        mh, ml = statistics.median(h), statistics.median(loop)
        print(f"{case.label}, {len(h)} steps per side in {a.blocks} alternating blocks of {a.per_block}")
        print(f"worker-style timing median {mh * 1e3:.3f} ms, bare loop median {ml * 1e3:.3f} ms")
        print(f"harness overhead ratio: {mh / ml:.3f}  target <= 1.03")
        return
    rows = []
    for i in range(a.rounds):
        h, loop = harness(case), hand_loop(case)
        rows.append((h, loop, h / loop))
        print(f"round {i + 1}: gru-bench {h * 1e3:8.3f} ms   hand loop {loop * 1e3:8.3f} ms   ratio {h / loop:.3f}",
              flush=True)
    ratios = [r[2] for r in rows]
    print(f"\n{case.label}, {a.repetitions} timed steps per side per round, {a.rounds} rounds")
    print(f"gru-bench median step {statistics.median(r[0] for r in rows) * 1e3:.3f} ms, hand loop "
          f"{statistics.median(r[1] for r in rows) * 1e3:.3f} ms")
    print(f"harness overhead ratio (median of rounds): {statistics.median(ratios):.3f} "
          f"[range {min(ratios):.3f} – {max(ratios):.3f}]  target <= 1.03")


if __name__ == "__main__":
    main()
