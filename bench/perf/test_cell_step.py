"""pytest-benchmark micro-benchmarks: one cell step (T = 1), forward and train step, per backend × cell × variant.

Outside ``tests/``, so the default test run does not collect them. Run and compare::

    pytest bench/perf --benchmark-only --benchmark-autosave                # saves .benchmarks/<machine>/0001_*.json
    pytest bench/perf --benchmark-only --benchmark-compare=0001 --benchmark-compare-fail=median:10%

Every backend goes through the protocol (``gru_bench.backends``), so a backend that cannot run here (its framework
is not installed, or the device is missing) shows as a skip with the reason. ``train_step`` is what the suite times:
forward, backward (BPTT over the one step), clipping and the optimizer update. Sizes and threads can be set with
``GRU_BENCH_PERF_BATCH`` / ``_HIDDEN`` / ``_INPUT`` / ``_THREADS`` (default 32, 64, 64, 1 thread: the steadiest).
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from gru_bench.backends import TrainConfig, backend_names, get_backend, unavailable_reason
from gru_bench.spec import ModelSpec, init_weights

B = int(os.environ.get("GRU_BENCH_PERF_BATCH", "32"))
H = int(os.environ.get("GRU_BENCH_PERF_HIDDEN", "64"))
I = int(os.environ.get("GRU_BENCH_PERF_INPUT", "64"))
THREADS = int(os.environ.get("GRU_BENCH_PERF_THREADS", "1"))
DEVICE = os.environ.get("GRU_BENCH_PERF_DEVICE", "cpu")
CELLS = [("gru", "reset_after"), ("gru", "reset_before"), ("lstm", "standard")]


@pytest.fixture(scope="module", params=backend_names())
def backend(request):
    reason = unavailable_reason(request.param, DEVICE)
    if reason is not None:
        pytest.skip(f"{request.param} on {DEVICE}: {reason}")
    b = get_backend(request.param)
    threads = b.set_threads(THREADS)
    return b, threads


def _setup(backend, cell: str, variant: str):
    b, threads = backend
    spec = ModelSpec(cell, input_size=I, hidden_size=H, output_size=1, variant=variant)
    try:
        model = b.build(spec, init_weights(spec, seed=0), DEVICE, "float32", TrainConfig("adam", 1e-3, 1.0))
    except NotImplementedError as e:  # a backend without this variant says so
        pytest.skip(f"{b.name} {cell}[{variant}]: {e}")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, 1, I)).astype(np.float32)  # (B, T=1, I): one cell step
    y = rng.standard_normal((B, 1)).astype(np.float32)  # (B, O)
    x, y = b.prepare(model, x, y)
    return b, threads, model, x, y


def _info(benchmark, b, threads, model, cell, variant, what):
    benchmark.group = f"{cell}[{variant}] {what} B={B} H={H} I={I}"
    benchmark.extra_info.update(backend=b.name, device=DEVICE, cell=cell, variant=variant, batch=B, hidden=H,
                                input=I, threads=threads, implementation=b.provenance(model).get("implementation"))


@pytest.mark.parametrize("cell, variant", CELLS, ids=[f"{c}-{v}" for c, v in CELLS])
def test_forward(benchmark, backend, cell, variant):
    b, threads, model, x, _ = _setup(backend, cell, variant)
    _info(benchmark, b, threads, model, cell, variant, "forward")

    def step():
        out = b.forward(model, x)
        b.sync(DEVICE)
        return out

    out = benchmark(step)
    assert np.asarray(out).shape == (B, 1) and np.isfinite(out).all()


@pytest.mark.parametrize("cell, variant", CELLS, ids=[f"{c}-{v}" for c, v in CELLS])
def test_train_step(benchmark, backend, cell, variant):
    b, threads, model, x, y = _setup(backend, cell, variant)
    _info(benchmark, b, threads, model, cell, variant, "train_step")

    def step():
        loss = b.train_step(model, x, y)
        b.sync(DEVICE)
        return loss

    loss = benchmark(step)
    assert np.isfinite(loss)
