"""Each case in a fresh ``python -m gru_bench.worker`` process on this machine, one at a time.

A fresh process per case means framework state, thread pools and peak-memory counters never leak from one case
into the next, and whatever kills the worker kills one case only. Each case's files live in a temp folder
``gru-bench-case-*`` marked with its owner; one left by a SIGKILLed run is removed when the next run starts.

* over ``case.timeout_s`` (the whole worker, imports included): killed, status ``timeout``;
* died by a signal (a segfault in native code): ``failed``, with the signal's name;
* killed by SIGKILL that gru-bench did not send: ``oom`` when an OOM-kill counter rose meanwhile (the cgroup's
  ``memory.events`` / ``memory.oom_control``, or the kernel's ``/proc/vmstat``), else ``failed`` "killed by SIGKILL
  from outside", which ``--resume`` runs again;
* exited without a result: ``failed``, with the last line it printed.

``LocalExecutor(jobs=N)`` with N > 1 (``gru-bench run --jobs N``) splits each case with a training budget into its
two phases: first the timing phases of all cases, one after another with nothing else running (as with one job),
then the training phases N at a time, each worker on one thread. Training results do not depend on a quiet
machine the way step times do, but its seconds-to-target then come from a shared machine: the merged result
says so (``provenance["accuracy_run"]``, a warning). A case is handed back, whole, when its training ends; each
timing phase is handed to ``on_timed`` as it ends (the runner journals it), so a run stopped during the training
stage keeps the timing of every case, and resume runs only the training of the unfinished ones.

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
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import ClassVar, Sequence

import psutil

from ..case import Case
from ..schema import CaseResult, Calibration
from ..storage import now_iso
from ..worker import BUSY_FALLBACK, case_costs, one_line
from . import KILLED_FROM_OUTSIDE, OnResult, OnStart, OnTimed, ShouldStop

CGROUP_ROOT = Path("/sys/fs/cgroup")
VMSTAT = Path("/proc/vmstat")  # "oom_kill N": the kernel's OOM kills since boot, machine-wide (Linux >= 4.13)
TEMP_PREFIX = "gru-bench-case-"
OWNER_FILE = "owner.json"  # in each case's temp folder: the pid and start time of the process that made it


def _counter(path: Path, key: str = "oom_kill") -> int | None:
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value)
    except (OSError, ValueError):
        pass
    return None


def _cgroup_event_files() -> list[Path]:
    """This process's cgroup's OOM counters: cgroup v2 ``memory.events``, v1 ``memory.oom_control``."""
    files: list[Path] = []
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        lines = []
    for line in lines:  # "0::/path" (v2) or "4:memory:/path" (v1)
        _, controllers, rel = (line.split(":", 2) + ["", ""])[:3]
        rel = rel.lstrip("/")
        if controllers == "":
            files.append(CGROUP_ROOT / rel / "memory.events")
        elif "memory" in controllers.split(","):
            files.append(CGROUP_ROOT / "memory" / rel / "memory.oom_control")
    files += [CGROUP_ROOT / "memory.events", CGROUP_ROOT / "memory" / "memory.oom_control"]
    return list(dict.fromkeys(files))


def _oom_kills() -> dict[str, int]:
    """Every OOM-kill counter readable here, by file: the worker's cgroup's and the kernel's. A SIGKILLed worker
    was the OOM killer's when one of them rose while it ran."""
    out: dict[str, int] = {}
    for f in [*_cgroup_event_files(), VMSTAT]:
        n = _counter(f)
        if n is not None:
            out[str(f)] = n
    return out


def _oom_verdict(before: dict[str, int], after: dict[str, int]) -> tuple[str, str]:
    """(status, reason) of a worker that died from SIGKILL gru-bench did not send."""
    rose = [f for f in before if f in after and after[f] > before[f]]
    if rose:
        return "oom", f"worker killed by SIGKILL: the OOM killer (oom_kill rose in {rose[0]})"
    if before:
        return "failed", (f"{KILLED_FROM_OUTSIDE} (no OOM kill counted by the kernel or the cgroup): "
                          f"not a result of the case; --resume runs it again")
    return "failed", (f"{KILLED_FROM_OUTSIDE} or by the OOM killer (no OOM counter readable here to tell): "
                      f"--resume runs it again")


def _alive(pid: int, create_time: float) -> bool:
    try:
        return abs(psutil.Process(pid).create_time() - create_time) < 1.0
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return False


def _make_temp() -> Path:
    """A case's temp folder, marked with its owner so that ``clean_stale_temps`` knows when it is abandoned."""
    tmp = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX))
    me = psutil.Process()
    (tmp / OWNER_FILE).write_text(json.dumps({"pid": me.pid, "create_time": me.create_time()}))
    return tmp


def clean_stale_temps(root: str | os.PathLike[str] | None = None) -> int:
    """Remove the case temp folders whose owner process is gone (it was SIGKILLed mid-case, so its ``finally``
    never ran); the number removed. A folder without an owner file (being made, or from an older version) is
    left alone unless it is a day old."""
    removed = 0
    for d in Path(root or tempfile.gettempdir()).glob(f"{TEMP_PREFIX}*"):
        try:
            if not d.is_dir() or d.is_symlink():
                continue
            owner = d / OWNER_FILE
            if owner.exists():
                o = json.loads(owner.read_text())
                stale = not _alive(int(o["pid"]), float(o["create_time"]))
            else:
                stale = time.time() - d.stat().st_mtime > 86400
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if stale:
            shutil.rmtree(d, ignore_errors=True)
            removed += not d.exists()
    return removed


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
                 poll_s: float = 0.2, python: str = sys.executable, extra_env: dict[str, str] | None = None,
                 phases: Sequence[str] | None = None, threads: int | None = None) -> CaseResult | None:
    """Run ``case`` in a fresh worker process; ``None`` when ``should_stop()`` cancelled it.

    ``phases`` and ``threads`` are passed to ``worker.run_case`` (default: both phases, the case's threads).
    Reusable on its own, e.g. inside a cluster task, to keep the same isolation, time limit and statuses there.
    """
    tmp = _make_temp()
    request, result, log = tmp / "request.json", tmp / "result.json", tmp / "worker.log"
    payload = {"case": case.model_dump(mode="json"),
               "calibration": calibration.model_dump(mode="json") if calibration else None}
    if phases is not None:
        payload["phases"] = list(phases)
    if threads is not None:
        payload["threads"] = threads
    request.write_text(json.dumps(payload))
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TF's C++ log lines are noise in a worker log
    env.update(extra_env or {})  # gru-bench ab: one side's environment
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
        if rc < 0 and -rc == signal.SIGKILL:  # not ours (a timeout or a cancel returned above)
            return ended(*_oom_verdict(oom_before, _oom_kills()))
        if rc < 0:
            return ended("failed", f"worker died from {_signal_name(-rc)}")
        return ended("failed", f"worker exited with code {rc} and no result{detail}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def merge_phases(timing: CaseResult, training: CaseResult, jobs: int) -> CaseResult:
    """One case's result from its timing-phase and training-phase results (``--jobs``): the timing side's figures
    and load, the training side's accuracy, the worse status of the two, both sides' warnings and wall time.

    The result's ``load`` is the timing phase's (what "busy machine" means: noisy step times); the training phase's
    load is kept in ``provenance["accuracy_run"]["load"]`` and its busy warning is left out, since with ``jobs`` > 1
    the training shares the machine by design (the shared-machine warning says so)."""
    order = ("ok", "skipped", "diverged", "timeout", "oom", "failed")
    worse = max(timing, training, key=lambda r: order.index(r.status) if r.status in order else len(order))
    run_note = {"jobs": jobs, "threads": (training.threads or {}).get("requested", 1),
                "wall_s": training.wall_s,
                "load": training.load.model_dump(mode="json") if training.load is not None else None}
    beside = [f"trained beside up to {jobs - 1} other cases' training (--jobs {jobs}), on one thread: "
              f"its seconds-to-target come from a shared machine"] if jobs > 1 else []
    busy = training.load is not None and training.load.busy
    busy_notes = {training.load.warning, BUSY_FALLBACK} if busy else set()  # type: ignore[union-attr]
    trained = [w for w in training.warnings if w not in busy_notes]
    warnings = [*timing.warnings, *trained, *beside]
    return timing.model_copy(update={
        "status": worse.status, "reason": worse.reason if worse.status != "ok" else None,
        "accuracy": training.accuracy, "warnings": list(dict.fromkeys(warnings)), "load": timing.load,
        "provenance": {**timing.provenance, "accuracy_run": run_note},
        "wall_s": (timing.wall_s or 0.0) + (training.wall_s or 0.0)})


class LocalExecutor:
    """Cases one after another, each in a fresh worker process on this machine (timing cases never overlap);
    with ``jobs`` > 1, the training phases of up to ``jobs`` cases at once after all timing phases ran alone."""

    name: ClassVar[str] = "local"

    def __init__(self, poll_s: float = 0.2, python: str = sys.executable, jobs: int = 1) -> None:
        if jobs < 1:
            raise ValueError(f"jobs must be >= 1, got {jobs}")
        self.poll_s = poll_s
        self.python = python
        self.jobs = jobs
        self._timed: dict[str, CaseResult] = {}
        self._on_timed: OnTimed | None = None

    def keep_timing(self, timed: dict[str, CaseResult], on_timed: OnTimed | None) -> None:
        """``timed``: timing phases a stopped run kept (only their training runs); ``on_timed``: called with each
        timing phase done whose training is still to run (``--jobs``). For the next ``run``."""
        self._timed, self._on_timed = dict(timed), on_timed

    def run(self, cases: Sequence[Case], calibration: Calibration | None, on_result: OnResult,
            should_stop: ShouldStop, on_start: OnStart | None = None) -> None:
        clean_stale_temps()  # left by a run that was SIGKILLed mid-case
        kept = {c.case_id: self._timed[c.case_id] for c in cases if c.case_id in self._timed and c.steps > 0}
        if kept or (self.jobs > 1 and sum(1 for c in cases if c.steps > 0) > 1):
            self._run_jobs(cases, calibration, on_result, should_stop, on_start, kept, self._on_timed)
            return
        for case in cases:
            if should_stop():
                return
            if on_start is not None:
                on_start(case)
            result = run_isolated(case, calibration, should_stop, self.poll_s, self.python)
            if result is None:  # cancelled: no result, so a resume runs it again
                return
            on_result(result)

    def _run_jobs(self, cases: Sequence[Case], calibration: Calibration | None, on_result: OnResult,
                  should_stop: ShouldStop, on_start: OnStart | None, timed: dict[str, CaseResult],
                  on_timed: OnTimed | None) -> None:
        """Stage 1: the timing phases alone (but those in ``timed``); stage 2: the training phases, ``jobs`` at
        once on one thread each (with one job: alone, on the case's threads)."""
        timed = dict(timed)
        for case in cases:  # stage 1: every timing phase alone, as with one job
            if case.case_id in timed:  # journaled by a run stopped in its training
                continue
            if should_stop():
                return
            if on_start is not None:
                on_start(case)
            phases = ("timing",) if case.steps > 0 else None
            result = run_isolated(case, calibration, should_stop, self.poll_s, self.python, phases=phases)
            if result is None:
                return
            if phases is None or result.status != "ok":  # nothing left to run for it
                on_result(result)
            else:
                timed[case.case_id] = result
                if on_timed is not None:
                    on_timed(result)
        if not timed:
            return
        by_id = {c.case_id: c for c in cases}
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="gru-bench-train") as pool:
            flights: dict[Future, str] = {}
            queue = list(timed)
            while queue or flights:  # stage 2: up to `jobs` training phases at once, results in completion order
                while queue and len(flights) < self.jobs and not should_stop():
                    case_id = queue.pop(0)
                    if on_start is not None:
                        on_start(by_id[case_id])
                    flights[pool.submit(run_isolated, by_id[case_id], calibration, should_stop, self.poll_s,
                                        self.python, None, ("accuracy",), 1 if self.jobs > 1 else None)] = case_id
                if not flights:
                    return  # stopped before the queue emptied
                done, _ = wait(flights, return_when=FIRST_COMPLETED)
                for fut in done:
                    case_id = flights.pop(fut)
                    trained = fut.result()
                    if trained is None:  # cancelled: no result; its timing went to on_timed (the runner's
                        continue  # journal), so a resume runs only its training again
                    on_result(merge_phases(timed[case_id], trained, self.jobs))
