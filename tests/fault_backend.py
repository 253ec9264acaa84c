"""Backends that break on purpose, for the runner's fault tests.

They reach gru-bench the way any third-party backend does, through the plugin variable (no test hook in the
package)::

    GRU_BENCH_BACKENDS="segfault=fault_backend:SegfaultBackend,hang=fault_backend:HangBackend,..."

with ``tests/`` on ``PYTHONPATH`` so that worker processes import this module too. Each one is the NumPy reference
backend with ``train_step`` broken in one way, so everything before the fault (build, weights, provenance) is real.
"""
from __future__ import annotations

import ctypes
import os
import signal
import time
from typing import ClassVar

import numpy as np

from gru_bench.backends.numpy_backend import NumpyBackend


class SegfaultBackend(NumpyBackend):
    """Dereferences address 0 in native code: the worker dies from SIGSEGV."""

    name: ClassVar[str] = "segfault"

    def train_step(self, model, x, y) -> float:
        ctypes.string_at(0)
        raise AssertionError("unreachable: reading address 0 did not crash")


class HangBackend(NumpyBackend):
    """Never returns from a training step: only the time limit ends the case."""

    name: ClassVar[str] = "hang"

    def train_step(self, model, x, y) -> float:
        while True:
            time.sleep(3600)


class NanBackend(NumpyBackend):
    """Trains for real, then reports a NaN loss (a diverged run)."""

    name: ClassVar[str] = "nan"

    def train_step(self, model, x, y) -> float:
        super().train_step(model, x, y)
        return float("nan")


class LateNanBackend(NumpyBackend):
    """Real losses through timing and the first 20 accuracy steps, then NaN: divergence during training."""

    name: ClassVar[str] = "late_nan"

    def build(self, *args, **kwargs):
        model = super().build(*args, **kwargs)
        model._fault_calls = 0
        return model

    def train_step(self, model, x, y) -> float:
        loss = super().train_step(model, x, y)
        model._fault_calls += 1
        return loss if model._fault_calls <= 20 else float("inf")


class MemoryHogBackend(NumpyBackend):
    """Asks NumPy for an 8 PiB array: NumPy raises its MemoryError subclass at once (nothing is touched)."""

    name: ClassVar[str] = "memhog"

    def train_step(self, model, x, y) -> float:
        np.empty(1 << 50, dtype=np.float64)
        raise AssertionError("unreachable: an 8 PiB allocation succeeded")


class OomKilledBackend(NumpyBackend):
    """Dies from SIGKILL as if the kernel's OOM killer had picked it."""

    name: ClassVar[str] = "oomkilled"

    def train_step(self, model, x, y) -> float:
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(60)
        raise AssertionError("unreachable: SIGKILL did not end the process")


class RaisingBackend(NumpyBackend):
    """A plain bug in the backend: a multi-line exception message."""

    name: ClassVar[str] = "raising"

    def train_step(self, model, x, y) -> float:
        raise RuntimeError("kernel exploded\nsecond line that must not reach the reason")


class ExitingBackend(NumpyBackend):
    """Leaves the process with a non-zero code and a message on stderr, writing no result."""

    name: ClassVar[str] = "exiting"

    def train_step(self, model, x, y) -> float:
        os.write(2, b"fatal: the framework gave up\n")
        os._exit(7)


class NoCudaBackend(NumpyBackend):
    """Reports a reason for every device: the case is skipped."""

    name: ClassVar[str] = "nodevice"

    def available(self, device: str) -> str | None:
        return f"device {device!r} is not supported by this test backend"


ALL = {cls.name: cls for cls in (SegfaultBackend, HangBackend, NanBackend, LateNanBackend, MemoryHogBackend,
                                 OomKilledBackend, RaisingBackend, ExitingBackend, NoCudaBackend)}
PLUGIN_VALUE = ",".join(f"{name}=fault_backend:{cls.__name__}" for name, cls in ALL.items())


def enable(monkeypatch) -> None:
    """Register these backends for this process and its workers (pytest's ``monkeypatch`` undoes it)."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", here + (os.pathsep + path if path else ""))
    monkeypatch.setenv("GRU_BENCH_BACKENDS", PLUGIN_VALUE)
