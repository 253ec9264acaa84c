"""A sweep: calibrate, run every case of a suite through an executor, journal each result the moment it exists,
resume an interrupted run, stop cleanly on Ctrl-C, and write the run record.

Files of a run (``RUN`` is the run id, the record's file stem ``<timestamp>_<suite>``)::

    OUT/<machine-id>/RUN.json            the record (storage.save_record: atomic), written at the end
    OUT/<machine-id>/RUN.journal.jsonl   the journal: a header line, then one finished CaseResult per line

The journal is created atomically with its header (the record without cases, and the planned cases); each
finished case is appended as one line, flushed and fsynced before the next case starts, so a run killed even by
SIGKILL loses at most the case in flight. A truncated last line (killed mid-write) is dropped on reading.
``resume`` reads the journal and runs only the planned cases it does not hold: every case ends up in the record
exactly once. A Ctrl-C (or SIGTERM) cancels the case in flight, keeps the finished ones and writes a partial
record (``finished`` unset); a second Ctrl-C aborts at once. A completed record replaces its journal.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

from rich.console import Console
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)

from . import measure, storage
from .case import Case
from .errors import InputError
from .executors import Executor, get_executor
from .machine import git_info, machine_id, machine_manifest
from .schema import CaseResult, RunRecord

JOURNAL_SUFFIX = ".journal.jsonl"
JOURNAL_VERSION = 1
FAILED_STATUSES = frozenset({"failed", "timeout", "oom"})  # the run "did not run" these; diverged/skipped are results
CALIBRATION_SECONDS = 1.0
PACKAGE_DIR = Path(__file__).resolve().parent


def journal_path_for(record_path: Path) -> Path:
    return record_path.with_name(record_path.stem + JOURNAL_SUFFIX)


def record_path_for(journal_path: Path) -> Path:
    return journal_path.with_name(journal_path.name[: -len(JOURNAL_SUFFIX)] + ".json")


# ------------------------------------------------------------------------------------------------- journal
class Journal:
    """JSON lines: a header, then one finished ``CaseResult`` per line, each flushed and fsynced at once."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._f: Any = None

    @classmethod
    def create(cls, path: Path, header: dict[str, Any], exclusive: bool = False) -> "Journal":
        """A new journal holding only ``header``, written atomically (never a file without its header).

        ``storage.atomic_write_text`` (the records' writer, the records' file mode); ``exclusive`` fails with
        ``FileExistsError`` when ``path`` exists (two runs can never claim one run id)."""
        path = Path(path)
        header_line = json.dumps({"type": "header", "journal_version": JOURNAL_VERSION, **header}) + "\n"
        storage.atomic_write_text(path, header_line, exclusive=exclusive)
        return cls(path)

    @staticmethod
    def read(path: Path) -> tuple[dict[str, Any], list[CaseResult]]:
        """The header and the results, in order. A truncated or unreadable LAST line is dropped (the writer was
        killed mid-line); anything else that is not a journal is an ``InputError`` naming the file and line."""
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"{path}: cannot be read as a run journal: {e}") from None
        complete = lines[:-1]  # text after the last newline is an unfinished line (killed mid-write): dropped
        header: dict[str, Any] | None = None
        out: list[CaseResult] = []
        for i, line in enumerate(complete, start=1):
            if not line.strip():
                continue
            last = i == len(complete)
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                if last and header is not None:
                    break
                raise InputError(f"{path}:{i}: not a JSON line: expected a gru-bench run journal") from None
            if header is None:
                if not isinstance(entry, dict) or entry.get("type") != "header":
                    raise InputError(f"{path}:{i}: no journal header: expected a gru-bench run journal")
                if entry.get("journal_version") != JOURNAL_VERSION:
                    raise InputError(f"{path}: journal_version={entry.get('journal_version')!r}: expected "
                                     f"{JOURNAL_VERSION}")
                header = entry
                continue
            try:
                out.append(CaseResult.model_validate(entry["result"]))
            except Exception as e:  # noqa: BLE001 - pydantic or a missing key: one line either way
                if last:
                    break
                raise InputError(f"{path}:{i}: not a case result: {type(e).__name__}") from None
        if header is None:
            raise InputError(f"{path}: empty journal: expected a header line")
        return header, out

    def acquire(self) -> "Journal":
        """Open for appending under an exclusive lock (one process per run: a case is never run twice at once),
        dropping a partial last line first. ``InputError`` when another process holds the run."""
        if self._f is not None:
            return self
        f = open(self.path, "rb+")
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise InputError(f"{self.path}: another gru-bench process is running this run: expected it to finish "
                             f"or be stopped first") from None
        data = f.read()
        keep = data.rfind(b"\n") + 1
        if keep < len(data):  # killed mid-line: the partial line goes, the next append starts a fresh one
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
        f.seek(0, os.SEEK_END)
        self._f = f
        return self

    def append(self, result: CaseResult) -> None:
        f = self.acquire()._f
        f.write(b'{"type": "result", "result": ' + result.model_dump_json().encode() + b"}\n")  # strict JSON
        f.flush()
        os.fsync(f.fileno())

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


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
    fresh: bool = False  # created by new_run: nothing of it existed before this process

    @property
    def remaining(self) -> list[Case]:
        return [c for c in self.plan if c.case_id not in self.done]

    def assemble(self, complete: bool) -> RunRecord:
        cases = [self.done[c.case_id] for c in self.plan if c.case_id in self.done]
        finished = datetime.now(timezone.utc).isoformat(timespec="seconds") if complete else None
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
    counts = [c.options.get("threads") for c in cases if c.options.get("threads")]
    return max(counts) if counts else None


def new_run(suite: Any, out_dir: Path, label: str | None = None, calibrate: bool = True,
            calibration_seconds: float = CALIBRATION_SECONDS) -> Run:
    """Plan ``suite``'s cases, measure the machine's GEMM peak, and create the run's journal under ``out_dir``."""
    plan = _dedupe(suite.cases())
    if not plan:
        raise InputError(f"suite {suite.name!r}: expected at least one case, the grid is empty")
    manifest = machine_manifest()
    machine = machine_id(manifest)
    calibration = None
    if calibrate:
        threads = _threads_of(plan)
        if threads:
            measure.fix_threads(threads)
        calibration = measure.calibrate(seconds=calibration_seconds)
    git = git_info(PACKAGE_DIR)
    created = datetime.now(timezone.utc).replace(microsecond=0)
    while True:  # two runs of one suite in the same second: the first to create its journal gets the id
        path = storage.record_path(out_dir, machine, suite.name, created)
        record = RunRecord(run_id=path.stem, suite_name=suite.name, suite=suite.record(), label=label,
                           created=created.isoformat(), machine_id=machine, machine=manifest,
                           calibration=calibration, git=git)
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


def _is_unfinished_record(path: Path) -> bool:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(data, dict) and "run_id" in data and "cases" in data and data.get("finished") is None


def unfinished_runs(folder: Path) -> list[Path]:
    """The unfinished runs in ``folder`` (an ``--out`` folder or one machine's folder below it), newest first: each
    run's journal, or its record where a partial record lost its journal. Newest = latest in the run id's UTC
    timestamp (the file names sort by time)."""
    folder = Path(folder)
    runs: dict[Path, Path] = {}  # record path -> what stands for the run
    for pattern in (f"*{JOURNAL_SUFFIX}", f"*/*{JOURNAL_SUFFIX}"):
        for j in folder.glob(pattern):
            if j.is_file():
                runs[record_path_for(j)] = j
    for pattern in ("*.json", "*/*.json"):
        for r in folder.glob(pattern):
            if r not in runs and r.is_file() and _is_unfinished_record(r):
                runs[r] = r
    return sorted(runs.values(), key=lambda f: (record_path_for(f).stem if f.name.endswith(JOURNAL_SUFFIX)
                                                else f.stem, str(f)), reverse=True)


def _run_in_folder(ref: str | os.PathLike[str]) -> tuple[Path, list[Path]]:
    """``--resume FOLDER``: its newest unfinished run, and the other unfinished ones."""
    found = unfinished_runs(Path(ref))
    if not found:
        raise InputError(f"--resume {str(ref)!r}: no unfinished run in this folder (no {JOURNAL_SUFFIX} and no "
                         f"partial record): expected the folder of an interrupted run, its id, record or journal")
    return found[0], found[1:]


def _run_id(path: Path) -> str:
    return path.name[: -len(JOURNAL_SUFFIX)] if path.name.endswith(JOURNAL_SUFFIX) else path.stem


def resolve_run(ref: str | os.PathLike[str], out_dir: Path) -> tuple[Path, Path]:
    """``--resume RUN``: a run id (looked up under ``out_dir``), a record ``.json``, a journal, or a folder holding
    runs (its newest unfinished one) -> (record, journal)."""
    p = Path(ref)
    if p.is_dir():
        p = _run_in_folder(p)[0]
    if p.is_file():
        if p.name.endswith(JOURNAL_SUFFIX):
            return record_path_for(p), p
        if p.suffix == ".json":
            return p, journal_path_for(p)
        raise InputError(f"--resume {str(ref)!r}: expected a run id, a record .json or a journal {JOURNAL_SUFFIX}")
    name = p.name.removesuffix(JOURNAL_SUFFIX).removesuffix(".json")
    found = sorted({*Path(out_dir).glob(f"*/{name}{JOURNAL_SUFFIX}"), *Path(out_dir).glob(f"*/{name}.json")})
    if not found:
        raise InputError(f"--resume {str(ref)!r}: no such run under {str(out_dir)!r}: expected a run id "
                         f"(a record's file name without .json), a record .json or a journal")
    dirs = {f.parent for f in found}
    if len(dirs) > 1:
        raise InputError(f"--resume {str(ref)!r}: found under several machines ({', '.join(sorted(map(str, dirs)))})"
                         f": expected a path to one record or journal")
    parent = dirs.pop()
    return parent / f"{name}.json", parent / f"{name}{JOURNAL_SUFFIX}"


KILLED_FROM_OUTSIDE = "worker killed by SIGKILL from outside"  # executors.local's reason; a resume retries it
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
        chosen, others = _run_in_folder(ref)
        if others:
            names = ", ".join(_run_id(o) for o in others)
            notes.append(f"{str(ref)!r} holds {len(others) + 1} unfinished runs: resuming the newest, "
                         f"{_run_id(chosen)}; the others: {names} (resume one with --resume ID)")
        ref = chosen
    record_path, jpath = resolve_run(ref, out_dir)
    if jpath.exists():
        journal = Journal(jpath).acquire()  # locked before reading: what it holds cannot change under us
        try:
            header, finished = Journal.read(jpath)
        except InputError:
            journal.close()
            raise
        record = RunRecord.model_validate(header["record"])
        plan = [Case.model_validate(c) for c in header["plan"]]
        machine = record.machine_id
    elif record_path.exists():  # a record without its journal: complete, or partial with the journal lost
        record = storage.load_record(record_path)
        finished = list(record.cases)
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
    return Run(record=record, plan=plan, done=done, record_path=record_path, journal=journal, notes=notes)


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


STATUS_STYLE = {"ok": "green", "skipped": "dim", "diverged": "yellow", "failed": "red", "timeout": "red",
                "oom": "red"}


def describe(result: CaseResult) -> str:
    """One rich-markup line for a finished case."""
    style = STATUS_STYLE.get(result.status, "red")
    parts = [f"[{style}]{result.status:>8}[/] {escape(result.case.label)}"]
    if result.train_time is not None:
        parts.append(f"step {result.train_time.median * 1e3:.2f} ms")
    acc = result.accuracy
    if acc is not None and acc.final_metric is not None:
        parts.append(f"{acc.metric} {acc.final_metric:.4g} (baseline {acc.baseline_metric:.4g})"
                     if acc.baseline_metric is not None else f"{acc.metric} {acc.final_metric:.4g}")
    if acc is not None and acc.target_loss is not None:
        parts.append(f"target at step {acc.steps_to_target} ({acc.seconds_to_target:.2f} s)"
                     if acc.steps_to_target is not None else "target not reached")
    if result.reason:
        parts.append(f"[dim]— {escape(result.reason)}[/]")
    return "  ".join(parts)


def execute(run: Run, executor: Executor | None = None, console: Console | None = None,
            progress: bool = True) -> Outcome:
    """Run the cases ``run`` still lacks; write the record (partial when interrupted)."""
    console = console or Console(stderr=True)
    executor = executor or get_executor("local")
    stop = _Stop()
    remaining = run.remaining
    for note in run.notes:
        console.print(f"[yellow]note[/]: {escape(note)}")
    bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(), console=console,
                   disable=not progress, transient=True)
    task = bar.add_task("starting", total=len(run.plan), completed=len(run.plan) - len(remaining))

    def on_start(case: Case) -> None:
        bar.update(task, description=escape(case.label))

    def on_result(result: CaseResult) -> None:
        run.journal.append(result)  # durable before anything else happens
        run.done[result.case_id] = result
        bar.advance(task)
        console.print(describe(result), highlight=False)
        for w in result.warnings:
            console.print(f"  [yellow]warning[/]: {escape(w)}", highlight=False)

    interrupted = False
    try:
        with _signals(stop), bar:
            executor.run(remaining, run.record.calibration, on_result, stop, on_start)
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
    busy = sum(1 for r in record.cases if r.load is not None and r.load.busy)
    if busy:
        console.print(f"[yellow]warning[/]: {busy} of {len(record.cases)} cases ran on a busy machine: their timings "
                      f"may be noisy (see each case's warning)", highlight=False)
    if interrupted:
        console.print(f"[yellow]interrupted[/]: {len(run.done)} of {len(run.plan)} cases kept; finish with "
                      f"[bold]gru-bench run --resume {escape(run.record.run_id)}[/]", highlight=False)
    else:
        run.journal.path.unlink(missing_ok=True)  # the complete record replaces its journal
    return Outcome(record=record, record_path=run.record_path, interrupted=interrupted)


def run_suite(suite: Any, out_dir: Path, label: str | None = None, executor: Executor | None = None,
              console: Console | None = None, progress: bool = True) -> Outcome:
    """Plan, calibrate and run ``suite`` (the whole of ``gru-bench run SUITE`` but the table)."""
    return execute(new_run(suite, out_dir, label), executor, console, progress)


def resume(ref: str | os.PathLike[str], out_dir: Path, executor: Executor | None = None,
           console: Console | None = None, progress: bool = True) -> Outcome:
    return execute(open_run(ref, out_dir), executor, console, progress)


__all__ = ["FAILED_STATUSES", "JOURNAL_SUFFIX", "KILLED_FROM_OUTSIDE", "Journal", "Outcome", "Run", "describe",
           "execute", "journal_path_for", "new_run", "open_run", "resolve_run", "resume", "retry_on_resume",
           "run_suite", "unfinished_runs"]
