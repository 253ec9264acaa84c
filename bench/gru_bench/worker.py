"""One case, start to finish, in this process -> ``CaseResult``.

``run_case`` is what every executor runs: the local executor in a fresh ``python -m gru_bench.worker`` process,
a cluster executor as a remote task. It never raises for a case that goes wrong: the result's status says what
happened (``skipped`` backend unavailable here, ``diverged`` NaN/inf loss, ``oom`` out of memory, ``failed`` any
other error, with a one-line reason); figures measured before the failure are kept.

The case, in order:

1. threads fixed (BLAS via threadpoolctl and the framework's intra-op pool), the denormal policy put in force
   (``Case.denormals``, ``backends/_denormals.py``; recorded in the provenance), load sampled;
2. timing: the model built from ``spec.init_weights(seed)``, one seeded batch put where the model lives
   (``backend.prepare``), warm-up steps under the host-memory sampler and the device probe, then ``repetitions``
   timed training steps and forward passes (``backend.sync`` before and after each, raw samples kept);
   one un-timed backward pass for the subnormal census (``subnormals``; a warning when kept and non-zero); on CPU
   the GEMM floor (``gemm_floor.py``); for the NumPy backend one more step under tracemalloc; the analytic
   activation estimate beside them;
3. accuracy (``steps > 0``): the model rebuilt from the same seed, ``steps`` steps on seeded training batches; every
   ``eval_every`` steps (and at the last) a training-curve point (mean training loss, training wall seconds) and
   the held-out loss and metric on ``eval_batches`` seeded batches from a seed stream distinct from training's (the
   ``heldout`` curve); time-to-target: the step and training seconds of the first evaluation below the task's
   target loss (``stop_at_target`` ends training there); best and final held-out values, the ``solved`` flag;
4. load sampled again; a busy machine is a warning in the result;
5. when the timed loop finished (even if training then failed): ``working_set``/``fixed_overhead`` from a fresh
   process at B and one at 2B (memory.py), after the load snapshot (their processes are not other work) and with
   the timing model and batch released.

Seed streams: ``SeedSequence(case.seed).spawn(3)`` gives the timing batch, the training batches and the held-out
batches, so the same case sees the same data on every backend and every machine.

Run by hand: ``python -m gru_bench.worker --request REQUEST.json --result RESULT.json`` where the request is
``{"case": {...}, "calibration": {...} | null, "phases": ["timing", "accuracy"]}`` (``phases`` optional: both).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import psutil

from . import gemm_floor, host_memory, sysload, timer, timing_stats
from . import memory as memory_figures
from .backends import Backend, BackendUnavailable, TrainConfig, _denormals, get_backend
from .case import Case
from .schema import Accuracy, CaseResult, Calibration, Curve, MemoryFigure
from .spec import ModelSpec, flops, init_weights, param_count
from .storage import atomic_write_text, now_iso
from .tasks import get_task
from .threads import fix_threads, fixed_threads

# Exception class names that mean "out of memory", matched anywhere in the exception's MRO so no framework is
# imported here: Python/NumPy MemoryError, torch.OutOfMemoryError (torch.cuda.OutOfMemoryError), TensorFlow's
# tf.errors.ResourceExhaustedError.
OOM_CLASS_NAMES = frozenset({"MemoryError", "OutOfMemoryError", "ResourceExhaustedError"})
REASON_MAX = 300  # characters of a one-line reason
BUSY_FALLBACK = "the machine was busy during this case"  # a busy Load without its own warning


class Skipped(Exception):
    """The case cannot run here (backend or device unavailable)."""


class Diverged(Exception):
    """A training loss was NaN or infinite."""


def one_line(text: str, limit: int = REASON_MAX) -> str:
    """The first non-empty line of ``text``, cut to ``limit`` characters."""
    line = next((s.strip() for s in str(text).splitlines() if s.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def is_oom(exc: BaseException) -> bool:
    return any(k.__name__ in OOM_CLASS_NAMES for k in type(exc).__mro__)


def exception_reason(exc: BaseException) -> str:
    msg = one_line(str(exc))
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _check_finite(loss: float, where: str) -> float:
    if not math.isfinite(loss):
        raise Diverged(f"loss became {loss} at {where}")
    return loss


# ------------------------------------------------------------------------------------------------- the case
def model_spec(case: Case) -> tuple[ModelSpec, int]:
    """The case's model and the length L of the sequences fed to it (copy memory: T + 20)."""
    task = get_task(case.task)
    io = task.model_io(case.seq_len)
    spec = ModelSpec(cell=case.cell, input_size=io["input_size"], hidden_size=case.hidden,
                     output_size=io["output_size"], num_layers=case.num_layers, variant=case.variant,
                     head=io["head"], loss=io["loss"])
    return spec, task.input_len(case.seq_len)


def case_costs(case: Case) -> dict[str, Any]:
    """Parameters and FLOPs from ``spec.py`` alone: known without a backend, even for a worker that died."""
    spec, L = model_spec(case)
    cost = flops(spec, case.batch_size, L)
    return dict(params=param_count(spec), flops_forward=cost.forward, flops_train_step=cost.train_step)


PHASES = ("timing", "accuracy")  # the two phases of a case, in the order they run


def build_model(case: Case, backend: Backend, spec: ModelSpec) -> Any:
    """The case's model, built from ``spec.init_weights(case.seed)``: the same weights every time it is called."""
    train_cfg = TrainConfig(optimizer=case.optimizer, lr=case.lr, clip=case.clip)
    weights = init_weights(spec, case.seed, scheme=case.init, dtype=case.dtype)
    return backend.build(spec, weights, case.device, case.dtype, train_cfg, case.options)


def run_case(case: Case, calibration: Calibration | None = None,
             phases: tuple[str, ...] | list[str] = PHASES, threads: int | None = None) -> CaseResult:
    """Run ``case`` in this process and return its result; never raises for a case that goes wrong.

    ``phases`` selects what runs: ``("timing",)`` only the timed steps (what an A/B run repeats),
    ``("accuracy",)`` only the training run (what may run beside other cases' training), both by default.
    ``threads`` overrides the case's thread count for this process (``run --jobs`` trains on one thread each);
    the case, and so its id, stays as it is.
    """
    unknown = set(phases) - set(PHASES)
    if unknown or not phases:
        raise ValueError(f"phases must be a non-empty subset of {PHASES}, got {list(phases)}")
    t0 = time.perf_counter()
    out: dict[str, Any] = dict(case=case, case_id=case.case_id, node=socket.gethostname(), started_at=now_iso(),
                               status="ok", warnings=[])
    try:
        _run(case, calibration, out, tuple(phases), threads)
    except Skipped as e:
        out.update(status="skipped", reason=one_line(str(e)))
    except Diverged as e:
        out.update(status="diverged", reason=one_line(str(e)))
    except Exception as e:  # noqa: BLE001 - every error of one case is that case's result
        out.update(status="oom" if is_oom(e) else "failed", reason=exception_reason(e))
    out["wall_s"] = time.perf_counter() - t0
    return CaseResult(**out)


def _run(case: Case, calibration: Calibration | None, out: dict[str, Any], phases: tuple[str, ...] = PHASES,
         threads: int | None = None) -> None:
    threads = threads or case.threads
    blas = fix_threads(threads)  # before the framework is imported: its OpenMP pool reads the env once
    try:
        backend = get_backend(case.backend)
    except BackendUnavailable as e:
        raise Skipped(str(e)) from e
    reason = backend.available(case.device)
    if reason is not None:
        raise Skipped(reason)
    try:
        denormals = _denormals.apply(backend, case.denormals)  # before any timing or training
    except _denormals.KeepUnsupported as e:
        raise Skipped(str(e)) from e

    task = get_task(case.task)
    spec, L = model_spec(case)
    out["model"] = spec
    out.update(case_costs(case))
    out["threads"] = {**blas, **(backend.set_threads(threads) or {})}
    timing_ss, train_ss, eval_ss = np.random.SeedSequence(case.seed).spawn(3)
    cores = os.cpu_count() or 1
    load_before = sysload.load_snapshot()

    def build() -> Any:
        return build_model(case, backend, spec)

    def sync() -> None:
        backend.sync(case.device)

    timed = False
    try:
        model = build()
        out["params_backend"] = int(sum(np.asarray(w).size for w in backend.weights(model).values()))
        out["provenance"] = {**backend.provenance(model), "denormals": denormals}
        out["implementation"] = out["provenance"].get("implementation")
        if "timing" in phases:
            _timing(case, backend, model, task, spec, L, timing_ss, calibration, sync, out)
            timed = True
        del model  # the timing model (and its batch, _timing's) are gone before training and the windows
        if case.steps > 0 and "accuracy" in phases:
            _accuracy(case, backend, build(), task, train_ss, eval_ss, sync, out)
    finally:
        # the "after" snapshot before the working-set windows: their fresh processes are this case's, not other work
        load = sysload.assess_load(load_before, sysload.load_snapshot(), cores)
        out["load"] = load
        if load.busy:
            out["warnings"].append(getattr(load, "warning", None) or BUSY_FALLBACK)
        if timed:  # the timed loop finished: its memory figures get the working set beside them
            out["memory"].extend(_working_set(case, out["memory"], out["warnings"]))


def _timing(case: Case, backend: Backend, model: Any, task: Any, spec: ModelSpec, L: int,
            seed: np.random.SeedSequence, calibration: Calibration | None, sync: Callable[[], None],
            out: dict[str, Any]) -> None:
    x, y = task.batch(np.random.default_rng(seed), case.batch_size, case.seq_len, case.dtype)  # (B, L, I)
    xp, yp = backend.prepare(model, x, y)  # on the model's device, once: no data moves in the timed region
    peak = calibration.gemm_gflops if calibration is not None else None
    itemsize = np.dtype(case.dtype).itemsize
    memory = [memory_figures.activation_estimate(spec, case.batch_size, L, itemsize)]
    out["memory"] = memory

    # Warm-up under the memory probes (the timed steps below run with no sampler thread beside them).
    probe = backend.memory(case.device)
    probe.reset()
    host = host_memory.HostMemory()
    host.start()
    try:
        for i in range(max(1, case.warmup)):
            _check_finite(backend.train_step(model, xp, yp), f"warm-up step {i + 1}")
        sync()
    finally:
        memory[:0] = host.stop()
    for key, nbytes in (probe.peak() or {}).items():
        memory.append(MemoryFigure(name=f"device_peak_{key}", bytes=int(nbytes), method=probe.method))

    losses: list[float] = []
    samples, cpu = timer.time_calls_cpu(lambda: losses.append(backend.train_step(model, xp, yp)),
                                          case.repetitions, sync)
    out["train_time"] = timing_stats.summarize(samples, flops=out["flops_train_step"], peak_gflops=peak)
    out["train_time"].cpu_samples = cpu
    for i, loss in enumerate(losses):  # after the summary: a diverged case keeps its timing
        _check_finite(loss, f"timed step {i + 1}")
    fwd = timer.time_calls(lambda: backend.forward(model, xp), case.repetitions, sync)
    out["forward_time"] = timing_stats.summarize(fwd, flops=out["flops_forward"], peak_gflops=peak)

    # one un-timed backward pass: hidden-state gradients and more where the backend reads them (default: the
    # parameter gradients of ``backend.gradients``)
    out["subnormals"] = dict(backend.subnormal_census(model, xp, yp))
    if case.device == "cpu" and out["train_time"] is not None:  # a BLAS floor says nothing of a GPU's step
        out["gemm_floor"] = gemm_floor.floor(spec, case.batch_size, L, case.dtype, out["train_time"].median)
    _warn_kept_denormals(case, out)
    if backend.capabilities.traced_allocations:  # NumPy allocations are what tracemalloc sees; frameworks are not
        tm = host_memory.TraceMalloc()
        tm.start()
        try:
            _check_finite(backend.train_step(model, xp, yp), "the tracemalloc step")
        finally:
            figure = tm.stop()
        memory.extend(figure if isinstance(figure, list) else [figure])


def _working_set(case: Case, measured: list[MemoryFigure], warnings: list[str]) -> list[MemoryFigure]:
    """``working_set`` and ``fixed_overhead`` (``memory.py``): a fresh process at batch B and one at 2B, each
    building the model and reading its own peak (the device allocator's on a GPU, the host's peak RSS on the CPU).
    Never fails the case: a window that cannot run (e.g. 2B does not fit) is a warning and no figure."""
    # the 2B window beside this worker: about 3× the step's own peak must fit in what is free
    need = 3 * max((m.bytes for m in measured if m.name != "fixed_overhead"), default=0)
    free = psutil.virtual_memory().available
    if need > free:
        warnings.append(f"working set not measured: a batch of {2 * case.batch_size} needs ~{need >> 20} MiB, "
                        f"{free >> 20} MiB free")
        return []
    try:
        figs, _ = memory_figures.working_set(case, fixed_threads())
    except Exception as e:  # noqa: BLE001 - the timing figures stand without it
        warnings.append(f"working set not measured: {exception_reason(e)}")
        return []
    return figs


def _warn_kept_denormals(case: Case, out: dict[str, Any]) -> None:
    census = out.get("subnormals") or {}
    if case.denormals == "keep" and any(v > 0 for v in census.values()):
        worst = max(census, key=census.get)
        out["warnings"].append(f"denormals kept and present ({worst}: {census[worst]:.1%} subnormal): "
                               "step time includes the CPU's subnormal penalty")


def _add_point(curve: Curve, step: int, loss: float, seconds: float) -> None:
    curve.step.append(step)
    curve.loss.append(float(loss))
    curve.seconds.append(seconds)


def _accuracy(case: Case, backend: Backend, model: Any, task: Any, train_seed: np.random.SeedSequence,
              eval_seed: np.random.SeedSequence, sync: Callable[[], None], out: dict[str, Any]) -> None:
    """Train for the step budget, evaluating the held-out batches every ``eval_every`` steps and at the last step.

    The first evaluation whose held-out loss is below the task's target sets ``steps_to_target`` and
    ``seconds_to_target`` (training seconds: batches and steps, evaluation excluded); ``stop_at_target`` ends
    training there; a non-finite held-out loss at any evaluation is a divergence. An evaluation costs
    ``eval_batches`` forward passes, the held-out batches put on the model's device once: measured on the quick
    suite (4 batches every 50 steps; a forward pass is 0.2–0.45 of a training step) 2–4 % of the training time,
    kept out of ``seconds`` and ``seconds_to_target``."""
    T, B = case.seq_len, case.batch_size
    base = task.baseline(T)
    target = task.target_loss(T)
    heldout = Curve(metric=[])
    acc = Accuracy(metric=task.metric, baseline_loss=base["loss"], baseline_metric=base.get("metric"), curve=Curve(),
                   eval_every=case.eval_every, heldout=heldout, target_loss=target)
    out["accuracy"] = acc
    eval_rng = np.random.default_rng(eval_seed)
    held_out = [task.batch(eval_rng, B, T, case.dtype) for _ in range(case.eval_batches)]
    held_in = [backend.prepare(model, x)[0] for x, _ in held_out]  # on the model's device, once

    def evaluate() -> dict[str, float]:
        scores = [task.evaluate(backend.forward(model, xp), y) for xp, (_, y) in zip(held_in, held_out)]
        return {k: float(np.mean([s[k] for s in scores])) for k in scores[0]}

    train_rng = np.random.default_rng(train_seed)
    window: list[float] = []
    seconds = 0.0  # training wall time: batches + steps, held-out evaluations excluded
    for step in range(1, case.steps + 1):
        t = time.perf_counter()
        x, y = task.batch(train_rng, B, T, case.dtype)
        xp, yp = backend.prepare(model, x, y)
        loss = backend.train_step(model, xp, yp)
        sync()
        seconds += time.perf_counter() - t
        window.append(loss)
        if not math.isfinite(loss):  # the curve keeps the finite points before it (JSON has no NaN)
            raise Diverged(f"training loss became {loss} at step {step}")
        if step % case.eval_every == 0 or step == case.steps:
            _add_point(acc.curve, step, float(np.mean(window)), seconds)
            window.clear()
            score = evaluate()
            _add_point(heldout, step, score["loss"], seconds)
            heldout.metric.append(score["metric"])  # type: ignore[union-attr]
            if not math.isfinite(score["loss"]):
                raise Diverged(f"held-out loss is {score['loss']} at step {step}")
            if acc.best_loss is None or score["loss"] < acc.best_loss:
                acc.best_loss, acc.best_metric, acc.best_step = score["loss"], score["metric"], step
            if acc.steps_to_target is None and score["loss"] < target:
                acc.steps_to_target, acc.seconds_to_target = step, seconds
                acc.steps_to_solve, acc.seconds_to_solve = step, seconds  # the schema-1 names, same values
                if case.stop_at_target:
                    acc.stopped_at_target = step < case.steps
                    break

    acc.final_loss, acc.final_metric = heldout.loss[-1], heldout.metric[-1]  # type: ignore[index]
    acc.solved = bool(task.solved(acc.final_loss, T))


# ------------------------------------------------------------------------------------------ process entry
def _exit_when_stdin_closes() -> None:
    """The parent holds our stdin open; EOF means it is gone (killed, even by SIGKILL): stop at once."""
    def watch() -> None:
        while sys.stdin.buffer.read(65536):
            pass
        os._exit(3)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m gru_bench.worker", description="Run one gru-bench case.")
    ap.add_argument("--request", type=Path, required=True,
                    help='JSON: {"case": {...}, "calibration": {...}|null, "phases": [...]?, "threads": N?}')
    ap.add_argument("--result", type=Path, required=True, help="where the CaseResult JSON is written")
    ap.add_argument("--watch-stdin", action="store_true", help="exit when stdin closes (the parent is gone)")
    args = ap.parse_args(argv)
    if args.watch_stdin:
        _exit_when_stdin_closes()
    request = json.loads(args.request.read_text(encoding="utf-8"))
    case = Case.model_validate(request["case"])
    cal = request.get("calibration")
    result = run_case(case, Calibration.model_validate(cal) if cal else None, request.get("phases") or PHASES,
                      request.get("threads"))
    atomic_write_text(args.result, result.model_dump_json())
    return 0


if __name__ == "__main__":
    sys.exit(main())
