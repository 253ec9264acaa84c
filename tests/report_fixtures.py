"""Realistic run records for the report tests, built through the record schema (no run needed).

Sizes, parameter counts, FLOPs and activation bytes come from ``spec.py`` for each task's model; times follow the
FLOPs with a per-backend efficiency and seeded noise; loss curves decay towards a per-cell floor. Among the cases:
a failed one (its reason holds HTML), a skipped one, a busy-machine warning; the run label is a script tag.
"""
from __future__ import annotations

import math

import numpy as np

from gru_bench import spec
from gru_bench.case import Case
from gru_bench.results import (Accuracy, Calibration, CaseResult, Curve, GitInfo, Load, MemoryFigure, RunRecord,
                               TimingStats)

XSS = "<script>alert(1)</script>"
TASK_IO = {"adding": dict(input_size=2, output_size=1, head="last", loss="mse"),
           "copy": dict(input_size=10, output_size=9, head="every", loss="xent")}
BASELINE = {"adding": (1 / 6, 1 / 6), "copy": None}
EFFICIENCY = {"numpy": 0.35, "torch": 0.5, "tf": 0.3}  # fraction of the calibrated peak each backend reaches
IMPL = {("numpy", "gru"): "numpy (hand-written BPTT)", ("numpy", "lstm"): "numpy (hand-written BPTT)",
        ("torch", "gru"): "torch.nn.GRU (native CPU)", ("torch", "lstm"): "torch.nn.LSTM (native CPU)",
        ("tf", "gru"): "keras GRU (generic loop)", ("tf", "lstm"): "keras LSTM (generic loop)"}
PEAK_GFLOPS = 60.0
LSTM_H = 64
ISO_GRU_H = spec.iso_param_hidden(spec.ModelSpec("lstm", 2, LSTM_H, 1), "gru")  # 74 for the adding task


def model_spec(case: Case) -> spec.ModelSpec:
    io = TASK_IO[case.task]
    return spec.ModelSpec(case.cell, io["input_size"], case.hidden, io["output_size"], case.num_layers,
                          variant=case.variant, head=io["head"], loss=io["loss"])


def timing(rng: np.random.Generator, center: float, n: int = 12, flops: float | None = None) -> TimingStats:
    s = np.sort(center * (1 + 0.04 * rng.standard_normal(n)).clip(0.8, None))
    med = float(np.median(s))
    g = flops / med / 1e9 if flops else None
    return TimingStats(samples=s.tolist(), median=med, iqr=float(np.subtract(*np.percentile(s, [75, 25]))),
                       min=float(s[0]), mean=float(s.mean()), ci_low=float(np.percentile(s, 30)),
                       ci_high=float(np.percentile(s, 70)), gflops=g, pct_peak=100 * g / PEAK_GFLOPS if g else None)


def case_result(case: Case, rng: np.random.Generator, status: str = "ok", reason: str | None = None,
                busy: bool = False) -> CaseResult:
    ms = model_spec(case)
    fl = spec.flops(ms, case.batch_size, case.seq_len)
    common = dict(case=case, case_id=case.case_id, params=spec.param_count(ms), params_backend=spec.param_count(ms),
                  flops_forward=fl.forward, flops_train_step=fl.train_step)
    if status != "ok":
        return CaseResult(**common, status=status, reason=reason)
    step = fl.train_step / (PEAK_GFLOPS * 1e9 * EFFICIENCY[case.backend]) + 2e-4 * case.seq_len
    act = spec.activation_bytes(ms, case.batch_size, case.seq_len, 4)
    mem = [MemoryFigure(name="host_peak_rss_delta", bytes=int(act * 2.5 + 3e6), method="psutil RSS sampling"),
           MemoryFigure(name="activation_estimate", bytes=act, method="analytic B·T·H·G·bytes")]
    acc = None
    if case.steps:
        floor = {"gru": 0.004, "lstm": 0.012}[case.cell] * (1 + case.seq_len / 50)
        base = BASELINE[case.task][0] if BASELINE[case.task] else 10 * math.log(8) / (case.seq_len + 20)
        steps = list(range(0, case.steps + 1, case.eval_every))
        loss = [float(base * math.exp(-s / (case.steps / 4)) + floor * (1 + 0.1 * rng.standard_normal()) ** 2)
                for s in steps]
        seconds = [s * step * 1.1 for s in steps]
        final = loss[-1] * 1.05
        metric = "mse" if case.task == "adding" else "accuracy"
        fm = final if metric == "mse" else float(min(1.0, 0.125 + (1 - final / base)))
        solved = final < 0.1 * base
        acc = Accuracy(metric=metric, final_metric=fm, final_loss=final, baseline_loss=base,
                       baseline_metric=base if metric == "mse" else 0.125, solved=solved,
                       steps_to_solve=steps[-2] if solved else None, seconds_to_solve=seconds[-2] if solved else None,
                       curve=Curve(step=steps, loss=loss, seconds=seconds))
    load = Load(before=[3.5, 1.0, 0.5], after=[3.9, 1.2, 0.6], busy=True) if busy else Load(before=[0.1] * 3,
                                                                                          after=[0.2] * 3)
    warnings = ["machine busy: 1-min load 3.9 on 2 cores"] if busy else []
    return CaseResult(**common, status="ok", implementation=IMPL[(case.backend, case.cell)],
                      provenance={"implementation": IMPL[(case.backend, case.cell)]},
                      train_time=timing(rng, step, flops=fl.train_step), forward_time=timing(rng, step / 3),
                      memory=mem, accuracy=acc, load=load, warnings=warnings, wall_s=step * 40)


def synthetic_record(label: str | None = XSS, commit: str = "a1b2c3d4e5f60718", created: str = "2025-11-20T10:00:00",
                     slowdown: float = 1.0, seed: int = 0, run_id: str | None = None) -> RunRecord:
    rng = np.random.default_rng(seed)
    results: list[CaseResult] = []
    cells = [("gru", "reset_after"), ("gru", "reset_before"), ("lstm", "standard")]
    for backend in ("numpy", "torch", "tf"):
        for cell, variant in cells:
            hiddens = [32, LSTM_H] + ([ISO_GRU_H] if cell == "gru" else [])
            for hidden in hiddens:
                for T in (20, 50):
                    for s in (0, 1):
                        case = Case(backend=backend, cell=cell, variant=variant, task="adding", seq_len=T,
                                    hidden=hidden, batch_size=32, steps=200, eval_every=20, seed=s, repetitions=12)
                        if backend == "torch" and cell == "lstm" and hidden == 32 and T == 50 and s == 1:
                            results.append(case_result(case, rng, "failed", "RuntimeError: <b>boom</b> & more"))
                            continue
                        r = case_result(case, rng, busy=(backend == "tf" and hidden == 32 and T == 20 and s == 0))
                        if r.train_time is not None and slowdown != 1.0:
                            r = r.model_copy(update={"train_time": timing(rng, r.train_time.median * slowdown)})
                        results.append(r)
    for cell, variant in cells:  # the copy task on numpy only
        for T in (10, 20):
            case = Case(backend="numpy", cell=cell, variant=variant, task="copy", seq_len=T, hidden=32,
                        batch_size=32, steps=100, eval_every=20, seed=0, repetitions=12)
            results.append(case_result(case, rng))
    skipped = Case(backend="tf", device="cuda", cell="gru", variant="reset_after", task="adding", seq_len=20,
                   hidden=32, batch_size=32, steps=200, eval_every=20, repetitions=12)
    results.append(case_result(skipped, rng, "skipped", "TensorFlow sees no GPU"))
    return RunRecord(run_id=run_id or f"run-{commit[:6]}-{seed}", suite_name="fixture", label=label, created=created,
                     finished=created, suite={"name": "fixture", "backend": ["numpy", "torch", "tf"]},
                     machine_id="ci-box-1a2b3c",
                     machine={"hostname": "ci-box", "cpu": {"model": "Test CPU @ 2.0GHz", "arch": "x86_64"},
                              "cores_logical": 2, "ram_bytes": 8 * 2**30, "python": "CPython 3.11.9",
                              "versions": {"numpy": "2.4.0", "torch": "2.13.0+cpu", "tensorflow": "2.21.0"},
                              "env": {"OMP_NUM_THREADS": "2"}},
                     calibration=Calibration(gemm_gflops=PEAK_GFLOPS, method="float32 GEMM 1024³, median of 5"),
                     git=GitInfo(commit=commit, dirty=False, branch="main"), cases=results)


# ------------------------------------------------------------------------------------------- a real small run
TINY_SUITE = """\
name = "tiny"
description = "report tests: numpy only, a few steps"
backend = "numpy"
device = "cpu"
cell = ["gru", "lstm"]
variant = ["reset_after", "reset_before"]
task = "adding"
seq_len = [5, 10]
hidden = 8
batch_size = 8
steps = 4
eval_every = 2
eval_batches = 1
seeds = 0
warmup = 1
repetitions = 3
timeout_s = 120
threads = 1
"""
_REAL_RUN: dict[str, object] = {}


def real_run_record(tmp_root) -> "object":
    """Path of the record of a real six-case run (``gru-bench run`` with the tiny suite above, label = XSS), made
    once per test session and shared by the report tests and the browser test."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    if "path" in _REAL_RUN:
        return _REAL_RUN["path"]
    root = Path(tmp_root)
    (root / "tiny.toml").write_text(TINY_SUITE)
    exe = Path(sys.executable).with_name("gru-bench")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "gru_bench.cli"]
    proc = subprocess.run([*cmd, "run", str(root / "tiny.toml"), "--out", str(root / "results"), "--label", XSS,
                           "--no-progress"], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert proc.returncode == 0, f"gru-bench run failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    records = sorted((root / "results").rglob("*_tiny.json"))
    assert len(records) == 1, f"expected one record, found {records}"
    _REAL_RUN["path"] = records[0]
    return records[0]
