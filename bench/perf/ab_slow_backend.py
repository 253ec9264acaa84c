"""A plugin backend that injects a slowdown through the environment, for ``ab_experiment.py`` and tests/test_ab.py.

The NumPy reference backend, whose ``train_step`` then spins (burns CPU, so the wall and CPU channels both see it)
for ``GRU_BENCH_AB_SLOWDOWN`` (a fraction, e.g. ``0.25``) of the step's own duration. ``GRU_BENCH_AB_KILL=1`` makes
the worker SIGKILL itself at its first training step (a killed worker on one side). Registered with::

    GRU_BENCH_BACKENDS="slow=ab_slow_backend:SlowBackend"   # with bench/perf on PYTHONPATH
"""
from __future__ import annotations

import os
import signal
import time
from typing import ClassVar

from gru_bench.backends.numpy_backend import NumpyBackend

PLUGIN_VALUE = "slow=ab_slow_backend:SlowBackend"


class SlowBackend(NumpyBackend):
    name: ClassVar[str] = "slow"

    def train_step(self, model, x, y) -> float:
        if os.environ.get("GRU_BENCH_AB_KILL") == "1":
            os.kill(os.getpid(), signal.SIGKILL)
        t0 = time.perf_counter()
        loss = super().train_step(model, x, y)
        extra = float(os.environ.get("GRU_BENCH_AB_SLOWDOWN", "0") or 0) * (time.perf_counter() - t0)
        end = time.perf_counter() + extra
        while time.perf_counter() < end:  # spin, not sleep: CPU time grows too
            pass
        return loss
