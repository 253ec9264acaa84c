"""Each case in a fresh ``python -m gru_bench.worker`` process on this machine, one at a time.

A fresh process per case means framework state, thread pools and peak-memory counters never leak from one case
into the next, and whatever kills the worker kills one case only:

* over ``case.timeout_s`` (the whole worker, imports included): killed, status ``timeout``;
* died by a signal (a segfault in native code): ``failed``, with the signal's name;
* killed by SIGKILL that gru-bench did not send (the kernel's OOM killer; the cgroup's ``oom_kill`` counter, when
  readable, confirms it): ``oom``;
* exited without a result: ``failed``, with the last line it printed.

The worker runs in its own session, so a Ctrl-C at the terminal reaches the runner only; the runner then cancels
the case in flight through ``should_stop`` and the worker's process group is killed. The worker also exits on its
own when this process dies (its stdin, a pipe held here, closes).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import ClassVar, Sequence

from ..case import Case
from ..results import CaseResult, Calibration
from ..worker import case_costs, now_iso, one_line
from . import OnResult, OnStart, ShouldStop

CGROUP_EVENTS = Path("/sys/fs/cgroup/memory.events")  # cgroup v2: "oom_kill N"


def _oom_kills() -> int | None:
    try:
        for line in CGROUP_EVENTS.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return None


def _signal_name(num: int) -> str:
    """E.g. ``"SIGSEGV (Segmentation fault)"``."""
    try:
        name = signal.Signals(num).name
    except ValueError:
        return f"signal {num}"
    text = signal.strsignal(num)
    return f"{name} ({text})" if text else name


def _last_line(log: Path) -> str:
    try:
        lines = [s for s in log.read_text(encoding="utf-8", errors="replace").splitlines() if s.strip()]
    except OSError:
        return ""
    return one_line(lines[-1]) if lines else ""


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the worker leads its own process group (start_new_session)
    except ProcessLookupError:
        pass
    proc.wait()


def run_isolated(case: Case, calibration: Calibration | None = None, should_stop: ShouldStop = lambda: False,
                 poll_s: float = 0.2, python: str = sys.executable) -> CaseResult | None:
    """Run ``case`` in a fresh worker process; ``None`` when ``should_stop()`` cancelled it.

    Reusable on its own, e.g. inside a cluster task, to keep the same isolation, time limit and statuses there.
    """
    tmp = Path(tempfile.mkdtemp(prefix="gru-bench-case-"))
    request, result, log = tmp / "request.json", tmp / "result.json", tmp / "worker.log"
    request.write_text(json.dumps({"case": case.model_dump(mode="json"),
                                   "calibration": calibration.model_dump(mode="json") if calibration else None}))
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ log lines are noise in a worker log
    cmd = [python, "-m", "gru_bench.worker", "--request", str(request), "--result", str(result), "--watch-stdin"]
    started, t0 = now_iso(), time.monotonic()
    oom_before = _oom_kills()

    def ended(status: str, reason: str) -> CaseResult:
        try:
            costs = case_costs(case)
        except ValueError:  # a case the worker would have failed anyway
            costs = {}
        return CaseResult(case=case, case_id=case.case_id, status=status, reason=reason, node=socket.gethostname(),
                          started_at=started, wall_s=time.monotonic() - t0, **costs)

    try:
        with open(log, "wb") as log_f:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=log_f, stderr=subprocess.STDOUT, env=env,
                                    start_new_session=True)
        try:
            while True:
                try:
                    proc.wait(timeout=poll_s)
                    break
                except subprocess.TimeoutExpired:
                    if should_stop():
                        _kill_group(proc)
                        return None
                    if time.monotonic() - t0 > case.timeout_s:
                        _kill_group(proc)
                        return ended("timeout", f"killed after its time limit of {case.timeout_s:g} s (timeout_s)")
        except BaseException:  # KeyboardInterrupt or a bug here: never leave a worker behind
            _kill_group(proc)
            raise
        finally:
            if proc.stdin:
                proc.stdin.close()

        if result.exists():  # the worker finished the case, whatever its status
            return CaseResult.model_validate_json(result.read_text(encoding="utf-8"))
        rc, last = proc.returncode, _last_line(log)
        detail = f": {last}" if last else ""
        if rc < 0 and -rc == signal.SIGKILL:
            oom_after = _oom_kills()
            confirmed = oom_before is not None and oom_after is not None and oom_after > oom_before
            why = "the cgroup's oom_kill count rose" if confirmed else "probably the kernel's OOM killer"
            return ended("oom", f"worker killed by SIGKILL ({why})")
        if rc < 0:
            return ended("failed", f"worker died from {_signal_name(-rc)}")
        return ended("failed", f"worker exited with code {rc} and no result{detail}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class LocalExecutor:
    """Cases one after another, each in a fresh worker process on this machine (timing cases never overlap)."""

    name: ClassVar[str] = "local"

    def __init__(self, poll_s: float = 0.2, python: str = sys.executable) -> None:
        self.poll_s = poll_s
        self.python = python

    def run(self, cases: Sequence[Case], calibration: Calibration | None, on_result: OnResult,
            should_stop: ShouldStop, on_start: OnStart | None = None) -> None:
        for case in cases:
            if should_stop():
                return
            if on_start is not None:
                on_start(case)
            result = run_isolated(case, calibration, should_stop, self.poll_s, self.python)
            if result is None:  # cancelled: no result, so a resume runs it again
                return
            on_result(result)
