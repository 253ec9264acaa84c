"""One working-set window, in a fresh process of its own: ``python -m gru_bench.memory_window`` (``memory.py`` runs
it once at batch B and once at 2B for each case).

The process fixes its threads as the case's worker did, imports the backend, puts the denormal policy in force and
reads the level (``start``); then it builds the case's model from its seed, makes a batch of ``b`` from the case's
timing seed stream, puts it where the model lives and runs the warm-up steps (tracing, compiling, first-touch
allocations: their peak is ``warm_peak``, for inspection); it hands freed heap pages back to the system
(``memory.release_free_memory``: glibc's ``malloc_trim``), zeroes the peak and runs one more training step: the
peak of that measured step (``peak``) is over everything resident then — weights, optimizer state, what the
framework keeps between steps — plus the step's own transients. Its compile-time transients are not in it: TF's
graph compilation peaks above a small model's step and would hide the batch's share (measured: the whole-window
peak rose 2.5 MiB from B=64 to 128). The trim matters as much: without it the heap pages the compilation freed stay
resident, the step's small per-time-step buffers (B×H floats, below the 128 KiB mmap threshold) reuse them
unseen, and TF's working set grew 9.6 MiB from B=64 to 128 but 73 MiB from 256 to 512 (GRU, T=100, H=128); with
it 17.5 and 81.5 MiB (0.27 and 0.32 MiB a sample: linear within the page noise). Nothing of another window or of
the timing run is resident here, whatever the framework pools or keeps (glibc's and the allocators' reuse of
freed memory, TF's memory kept after a model is freed).

Request (the one argument, JSON): ``{"case": {...}, "batch": b, "threads": n | null}``. Answer (the last stdout
line, JSON): ``{"batch", "start", "peak", "warm_peak", "seconds", "method", "floor"}``: bytes for the levels (the
reader's counter), ``seconds`` the window's alone (the parent times the whole process).
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any

import numpy as np

from . import memory
from .backends import Backend, _denormals, get_backend
from .case import Case
from .tasks import get_task
from .threads import fix_threads
from .worker import build_model, model_spec

PARENT_POLL_S = 0.5


def _exit_with_parent(parent: int) -> None:
    """Stop at once when the process that started this one is gone (its worker was killed)."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def reader_for(backend: Backend, device: str) -> memory.PeakReader:
    """The device allocator's peak where the backend has one for ``device``, else the host's peak RSS."""
    probe = backend.memory(device)
    if probe.method != "none":
        return memory.DevicePeak(probe, lambda: backend.sync(device))
    memory.fix_mmap_threshold()
    return memory.host_reader()


def window(case: Case, batch: int, threads: int | None) -> dict[str, Any]:
    """The window at ``batch`` in this process (see the module docstring) -> the answer's fields."""
    fix_threads(threads)  # before the framework is imported: its OpenMP pool reads the env once
    backend = get_backend(case.backend)
    backend.set_threads(threads)
    _denormals.apply(backend, case.denormals)
    task = get_task(case.task)
    spec, _ = model_spec(case)
    timing_seed = np.random.SeedSequence(case.seed).spawn(3)[0]  # the worker's timing stream
    reader = reader_for(backend, case.device)

    t0 = time.perf_counter()
    memory.release_free_memory()
    start = reader.start()  # the level before the build: the framework imported, nothing of the case yet
    model = build_model(case, backend, spec)
    x, y = task.batch(np.random.default_rng(timing_seed), batch, case.seq_len, case.dtype)  # (b, L, I)
    xp, yp = backend.prepare(model, x, y)
    for i in range(max(1, case.warmup)):  # tracing, compiling, first-touch allocations: paid here
        _check_loss(backend.train_step(model, xp, yp), f"warm-up step {i + 1}", batch)
    backend.sync(case.device)
    warm_peak = reader.stop()
    memory.release_free_memory()
    reader.start()  # the measured step's own peak, over everything resident now
    _check_loss(backend.train_step(model, xp, yp), "the measured step", batch)
    backend.sync(case.device)
    peak = reader.stop()
    # on the host, the backend's own run-to-run noise floors the figure too (TF's windows vary by ~3 MiB)
    floor = reader.floor if isinstance(reader, memory.DevicePeak) else max(reader.floor,
                                                                            backend.capabilities.host_memory_noise)
    return {"batch": batch, "start": start, "peak": peak, "warm_peak": warm_peak,
            "seconds": time.perf_counter() - t0, "method": reader.method, "floor": floor}


def _check_loss(loss: float, where: str, batch: int) -> None:
    if not np.isfinite(loss):
        raise ValueError(f"loss became {loss} at {where} of the working-set window at batch {batch}")


def main() -> int:
    _exit_with_parent(os.getppid())
    request = json.loads(sys.argv[1])
    answer = window(Case.model_validate(request["case"]), int(request["batch"]), request.get("threads"))
    print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
