"""A sweep: calibrate, run every case of a suite through an executor, journal each result the moment it exists
(``journal.py``), resume an interrupted run, stop cleanly on Ctrl-C, and write the run record; what it prints is
``console.py``'s.

``resume`` reads the journal and runs only the planned cases it does not hold: every case ends up in the record
exactly once. A Ctrl-C (or SIGTERM) cancels the case in flight, keeps the finished ones and writes a partial
record (``finished`` unset); a second Ctrl-C aborts at once. A completed record replaces its journal.
"""
from __future__ import annotations

import json
import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator, Sequence

from rich.console import Console

from . import calibration, storage
from .case import Case
from .console import SweepConsole
from .errors import InputError
from .executors import KILLED_FROM_OUTSIDE, Executor, get_executor
from .journal import TIMED, Journal, journal_path_for, resolve_run, run_id_of, run_in_folder
from .machine import git_info, machine_id, machine_manifest
from .schema import CaseResult, RunRecord
from .threads import fix_threads

FAILED_STATUSES = frozenset({"failed", "timeout", "oom"})  # the run "did not run" these; diverged/skipped are results
CALIBRATION_SECONDS = 1.0
PACKAGE_DIR = Path(__file__).resolve().parent


# ------------------------------------------------------------------------------------------------- the run
@dataclass
class Run:
    """A run in progress: its record (without cases), the planned cases, and the finished ones by case id."""

    record: RunRecord
    plan: list[Case]
    done: dict[str, CaseResult]
    record_path: Path
    journal: Journal
    notes: list[str] = field(default_factory=list)  # things to tell the user (resume details)
    timed: dict[str, CaseResult] = field(default_factory=dict)  # timing phases journaled, their training not done
    fresh: bool = False  # created by new_run: nothing of it existed before this process

    @property
    def remaining(self) -> list[Case]:
        return [c for c in self.plan if c.case_id not in self.done]

    def assemble(self, complete: bool) -> RunRecord:
        cases = [self.done[c.case_id] for c in self.plan if c.case_id in self.done]
        finished = storage.now_iso() if complete else None
        return self.record.model_copy(update={"cases": cases, "finished": finished})


@dataclass
class Outcome:
    record: RunRecord
    record_path: Path
    interrupted: bool

    @property
    def failed(self) -> list[CaseResult]:
        return [r for r in self.record.cases if r.status in FAILED_STATUSES]


def _dedupe(cases: Sequence[Case]) -> list[Case]:
    seen: set[str] = set()
    out = []
    for c in cases:
        if c.case_id not in seen:
            seen.add(c.case_id)
            out.append(c)
    return out


def _threads_of(cases: Sequence[Case]) -> int | None:
    counts = [c.threads for c in cases if c.threads]
    return max(counts) if counts else None


def new_run(suite: Any, out_dir: Path, label: str | None = None, calibrate: bool = True,
            calibration_seconds: float = CALIBRATION_SECONDS) -> Run:
    """Plan ``suite``'s cases, measure the machine's GEMM peak, and create the run's journal under ``out_dir``."""
    plan = _dedupe(suite.cases())
    if not plan:
        raise InputError(f"suite {suite.name!r}: expected at least one case, the grid is empty")
    manifest = machine_manifest()
    machine = machine_id(manifest)
    cal = None
    if calibrate:
        threads = _threads_of(plan)
        if threads:
            fix_threads(threads)
        cal = calibration.calibrate(seconds=calibration_seconds)
    git = git_info(PACKAGE_DIR)
    created = storage.now_utc()
    while True:  # two runs of one suite in the same second: the first to create its journal gets the id
        path = storage.record_path(out_dir, machine, suite.name, created)
        record = RunRecord(run_id=path.stem, suite_name=suite.name, suite=suite.record(), label=label,
                           created=created.isoformat(), machine_id=machine, machine=manifest,
                           calibration=cal, git=git)
        header = {"record": json.loads(record.model_dump_json()),
                  "plan": [c.model_dump(mode="json") for c in plan]}
        created += timedelta(seconds=1)
        if path.exists():
            continue
        try:
            journal = Journal.create(journal_path_for(path), header, exclusive=True)
        except FileExistsError:
            continue
        if path.exists():  # a run of this id finished (record written, then its journal removed) meanwhile
            journal.path.unlink(missing_ok=True)
            continue
        journal.acquire()
        return Run(record=record, plan=plan, done={}, record_path=path, journal=journal, fresh=True)


_UNCONFIRMED_OOM = "(probably the kernel's OOM killer)"  # what records before that distinction say


def retry_on_resume(result: CaseResult) -> bool:
    """A case ``--resume`` runs again although the journal holds its result: its worker was killed by someone else
    (a stray ``kill -9``, a job scheduler), which says nothing about the case."""
    reason = result.reason or ""
    return ((result.status == "failed" and reason.startswith(KILLED_FROM_OUTSIDE))
            or (result.status == "oom" and reason.endswith(_UNCONFIRMED_OOM)))


def open_run(ref: str | os.PathLike[str], out_dir: Path) -> Run:
    """An interrupted run, ready to finish: the journal's planned cases minus the finished ones."""
    notes: list[str] = []
    if Path(ref).is_dir():
        chosen, others = run_in_folder(ref)
        if others:
            names = ", ".join(run_id_of(o) for o in others)
            notes.append(f"{str(ref)!r} holds {len(others) + 1} unfinished runs: resuming the newest, "
                         f"{run_id_of(chosen)}; the others: {names} (resume one with --resume ID)")
        ref = chosen
    record_path, jpath = resolve_run(ref, out_dir)
    if jpath.exists():
        journal = Journal(jpath).acquire()  # locked before reading: what it holds cannot change under us
        try:
            header, finished, timed = Journal.read_all(jpath)
        except InputError:
            journal.close()
            raise
        record = RunRecord.model_validate(header["record"])
        plan = [Case.model_validate(c) for c in header["plan"]]
        machine = record.machine_id
    elif record_path.exists():  # a record without its journal: complete, or partial with the journal lost
        record = storage.load_record(record_path)
        finished, timed = list(record.cases), {}
        if record.finished is not None:
            plan = [r.case for r in finished]
        else:
            from .suite import Suite

            plan = _dedupe(Suite.from_record(record.suite).cases())
        record = record.model_copy(update={"cases": [], "finished": None})
        header = {"record": json.loads(record.model_dump_json()), "plan": [c.model_dump(mode="json") for c in plan]}
        journal = Journal.create(jpath, header).acquire()
        for r in finished:
            journal.append(r)
        machine = record.machine_id
    else:
        raise InputError(f"--resume {str(ref)!r}: neither {record_path} nor {jpath} exists")
    done: dict[str, CaseResult] = {}
    for r in finished:
        done[r.case_id] = r  # a case journaled twice (should not happen) counts once: the latest
    retry = [cid for cid, r in done.items() if retry_on_resume(r)]
    for cid in retry:
        del done[cid]
    if retry:
        notes.append(f"{len(retry)} case(s) whose worker was killed from outside (not by the OOM killer) run again")
    here = machine_id(machine_manifest())
    if machine is not None and machine != here:
        notes.append(f"this run started on machine {machine!r}; resuming on {here!r}: its timings mix two machines")
    timed = {cid: r for cid, r in timed.items() if cid not in done}
    return Run(record=record, plan=plan, done=done, record_path=record_path, journal=journal, notes=notes,
               timed=timed)


# ------------------------------------------------------------------------------------------------- execute
class _Stop:
    """Ctrl-C / SIGTERM: the first asks the executor to stop after cancelling the case in flight, the second
    aborts at once (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self) -> bool:
        return self.requested

    def handle(self, signum: int, frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True


@contextmanager
def _signals(stop: _Stop) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.signal(s, stop.handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def execute(run: Run, executor: Executor | None = None, console: Console | None = None,
            progress: bool = True) -> Outcome:
    """Run the cases ``run`` still lacks; write the record (partial when interrupted)."""
    executor = executor or get_executor("local")
    stop = _Stop()
    remaining = run.remaining
    screen = SweepConsole(console or Console(stderr=True), total=len(run.plan),
                          completed=len(run.plan) - len(remaining), progress=progress)
    keep_timing = getattr(executor, "keep_timing", None)
    timed_note = ([f"{len(run.timed)} case(s) stopped in training keep their timing: only their training runs again"]
                  if run.timed and keep_timing is not None else [])
    screen.notes([*run.notes, *timed_note])

    def on_result(result: CaseResult) -> None:
        run.journal.append(result)  # durable before anything else happens
        run.done[result.case_id] = result
        run.timed.pop(result.case_id, None)
        screen.finished(result)

    def on_timed(result: CaseResult) -> None:
        run.journal.append(result, TIMED)  # its training may be stopped: the timing is kept
        run.timed[result.case_id] = result

    if keep_timing is not None:
        keep_timing(dict(run.timed), on_timed)

    interrupted = False
    try:
        with _signals(stop), screen:
            executor.run(remaining, run.record.calibration, on_result, stop, screen.started)
    except KeyboardInterrupt:
        interrupted = True
    except BaseException:
        run.journal.close()
        if run.fresh and not run.done:  # e.g. Ray could not start: nothing ran, so no run is left behind
            run.journal.path.unlink(missing_ok=True)
        raise
    finally:
        run.journal.close()
    interrupted = interrupted or stop.requested or bool(run.remaining)
    record = run.assemble(complete=not interrupted)
    machines = getattr(executor, "machines", None)
    if callable(machines):
        record = record.model_copy(update={"machines": machines()})
    storage.save_record(record, run.record_path)
    screen.closing(record, len(run.done), len(run.plan), interrupted)
    if not interrupted:
        run.journal.path.unlink(missing_ok=True)  # the complete record replaces its journal
    return Outcome(record=record, record_path=run.record_path, interrupted=interrupted)


def run_suite(suite: Any, out_dir: Path, label: str | None = None, executor: Executor | None = None,
              console: Console | None = None, progress: bool = True) -> Outcome:
    """Plan, calibrate and run ``suite`` (the whole of ``gru-bench run SUITE`` but the table)."""
    return execute(new_run(suite, out_dir, label), executor, console, progress)


def resume(ref: str | os.PathLike[str], out_dir: Path, executor: Executor | None = None,
           console: Console | None = None, progress: bool = True) -> Outcome:
    return execute(open_run(ref, out_dir), executor, console, progress)


__all__ = ["FAILED_STATUSES", "Outcome", "Run", "execute", "new_run", "open_run", "resume", "retry_on_resume",
           "run_suite"]
