"""Executors: what runs the workers of a sweep. The runner owns the journal, resume and Ctrl-C; an executor only
turns cases into ``CaseResult``s and hands each one back the moment it is finished.

The protocol (one call, the same for every executor, so a cluster executor plugs in without touching the runner):

* ``name``: a short name shown in the record and on screen, e.g. ``"local"``, ``"ray"``.
* ``run(cases, calibration, on_result, should_stop, on_start=None)``: run every case once and call
  ``on_result(result)`` for each, in completion order, from the calling thread (the runner journals it at once).
  Every case must end in exactly one ``on_result`` call (a crash, hang or OOM is a result with its status), unless
  ``should_stop()`` turned true: then cancel the cases in flight (no result for them: resume reruns them), start no
  new one, and return. ``on_start(case)``, when given, is called as a case starts (for the progress display).
  Timing cases must never share a machine's cores or a device with another timing case.
* ``keep_timing(timed, on_timed)`` (optional; the runner calls it before ``run``): ``timed`` maps case ids to the
  timing-phase results a stopped run journaled (run only their training and hand back the merged result);
  ``on_timed(result)`` is to be called when a case's timing phase is done and its training still to run (the runner
  journals it, so a run stopped during the training keeps it). Without it a resume runs such a case whole.
* ``machines()`` (optional): per-node machine manifests ``{node: manifest}`` for a multi-node run; the runner stores
  them in ``RunRecord.machines``. A single-machine executor leaves it out.

Executors are looked up by name with ``get_executor``; their modules are imported on first use (a cluster
executor imports its framework inside its own module only).
"""
from __future__ import annotations

import importlib
from typing import Any, Callable, ClassVar, Protocol, Sequence, runtime_checkable

from ..case import Case
from ..errors import InputError
from ..schema import CaseResult, Calibration

# The reason prefix of a worker killed by SIGKILL from outside (a stray ``kill -9``, a job scheduler), not by the
# kernel's OOM killer: it says nothing about the case, so a resume runs such a case again.
KILLED_FROM_OUTSIDE = "worker killed by SIGKILL from outside"

OnResult = Callable[[CaseResult], None]
OnStart = Callable[[Case], None]
OnTimed = Callable[[CaseResult], None]
ShouldStop = Callable[[], bool]


@runtime_checkable
class Executor(Protocol):
    name: ClassVar[str]

    def run(self, cases: Sequence[Case], calibration: Calibration | None, on_result: OnResult,
            should_stop: ShouldStop, on_start: OnStart | None = None) -> None: ...


# name -> (module, class, pip extra that provides the framework)
_EXECUTORS: dict[str, tuple[str, str, str | None]] = {
    "local": ("gru_bench.executors.local", "LocalExecutor", None),
    "ray": ("gru_bench.executors.ray", "RayExecutor", "ray"),
}


def executor_names() -> tuple[str, ...]:
    return tuple(_EXECUTORS)


def get_executor(name: str, **options: Any) -> Executor:
    """An executor by name, built with ``options`` (e.g. ``threads=2``)."""
    if name not in _EXECUTORS:
        raise InputError(f"executor={name!r}: expected one of {', '.join(_EXECUTORS)}")
    module, cls, extra = _EXECUTORS[name]
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        hint = f" (pip install 'gru-bench[{extra}]')" if extra else ""
        raise InputError(f"executor={name!r} cannot be imported: {e}{hint}") from e
    return getattr(mod, cls)(**options)


__all__ = ["KILLED_FROM_OUTSIDE", "Executor", "OnResult", "OnStart", "OnTimed",
           "ShouldStop", "executor_names", "get_executor"]
