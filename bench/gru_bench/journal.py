"""The run's journal: a header line (the record without its cases, and the planned cases), then one finished
``CaseResult`` per line, each flushed and fsynced before the next case starts, so a run killed even by SIGKILL loses
at most the case in flight; and where a resume finds a run (``resolve_run``, ``unfinished_runs``).

Files of a run (``RUN`` is the run id, the record's file stem ``<timestamp>_<suite>``)::

    OUT/<machine-id>/RUN.json            the record (storage.save_record: atomic), written at the end
    OUT/<machine-id>/RUN.journal.jsonl   the journal

The journal is created atomically with its header; a truncated last line (killed mid-write) is dropped on reading
and on reopening for appending; a complete line that is not an entry is skipped with a warning. One process holds
a run's journal at a time (an exclusive ``flock``).
"""
from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path
from typing import Any

from . import storage
from .errors import InputError
from .schema import CaseResult

JOURNAL_SUFFIX = ".journal.jsonl"
JOURNAL_VERSION = 2  # 2: "timed" entries (a case's timing phase, its training still to run)
READABLE_VERSIONS = (1, 2)
RESULT, TIMED = "result", "timed"  # entry types after the header


def journal_path_for(record_path: Path) -> Path:
    return record_path.with_name(record_path.stem + JOURNAL_SUFFIX)


def record_path_for(journal_path: Path) -> Path:
    return journal_path.with_name(journal_path.name[: -len(JOURNAL_SUFFIX)] + ".json")


def _skip(path: Path, line: int, what: str) -> None:
    """The one-line warning for a complete journal line that is skipped."""
    print(f"warning: {path}:{line}: {what}: skipped (corrupt line); its case runs again on resume", file=sys.stderr)


class Journal:
    """JSON lines: a header, then one finished ``CaseResult`` per line, each flushed and fsynced at once.

    A ``timed`` entry holds a case's timing-phase result while its training phase still runs (``run --jobs``): a
    run stopped then keeps the timing, and a resume runs only the training (``read_timed``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._f: Any = None

    @classmethod
    def create(cls, path: Path, header: dict[str, Any], exclusive: bool = False) -> "Journal":
        """A new journal holding only ``header``, written atomically (never a file without its header).

        ``storage.atomic_write_text`` (the records' writer and file mode); ``exclusive`` fails with
        ``FileExistsError`` when ``path`` exists (two runs can never claim one run id)."""
        line = json.dumps({"type": "header", "journal_version": JOURNAL_VERSION, **header}) + "\n"
        storage.atomic_write_text(Path(path), line, exclusive=exclusive)
        return cls(path)

    @staticmethod
    def _entries(path: Path) -> tuple[dict[str, Any], list[tuple[str, CaseResult]]]:
        """The header and the ``(type, result)`` entries, in order.

        Text after the last newline is an unfinished line (the writer was killed mid-write): dropped silently. A
        complete line after the header that is not a journal entry is corruption (a kill leaves no newline): it is
        skipped with a one-line warning on stderr naming the file and line, and the lines after it are read (its
        case runs again on resume). A first line that is not a header is an ``InputError`` naming the file."""
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").split("\n")
        except (OSError, UnicodeDecodeError) as e:
            raise InputError(f"{path}: cannot be read as a run journal: {e}") from None
        complete = lines[:-1]  # text after the last newline is an unfinished line (killed mid-write): dropped
        header: dict[str, Any] | None = None
        out: list[tuple[str, CaseResult]] = []
        for i, line in enumerate(complete, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                if header is not None:
                    _skip(path, i, "not a JSON line")
                    continue
                raise InputError(f"{path}:{i}: not a JSON line: expected a gru-bench run journal") from None
            if header is None:
                if not isinstance(entry, dict) or entry.get("type") != "header":
                    raise InputError(f"{path}:{i}: no journal header: expected a gru-bench run journal")
                if entry.get("journal_version") not in READABLE_VERSIONS:
                    raise InputError(f"{path}: journal_version={entry.get('journal_version')!r}: expected "
                                     f"{' or '.join(map(str, READABLE_VERSIONS))}")
                header = entry
                continue
            try:
                kind = entry.get("type", RESULT)
                out.append((kind if kind == TIMED else RESULT, CaseResult.model_validate(entry["result"])))
            except Exception as e:  # noqa: BLE001 - pydantic or a missing key: one line either way
                _skip(path, i, f"not a case result ({type(e).__name__})")
        if header is None:
            raise InputError(f"{path}: empty journal: expected a header line")
        return header, out

    @staticmethod
    def read(path: Path) -> tuple[dict[str, Any], list[CaseResult]]:
        """The header and the finished results, in order (``_entries`` says what is dropped or refused)."""
        header, finished, _ = Journal.read_all(path)
        return header, finished

    @staticmethod
    def read_timed(path: Path) -> dict[str, CaseResult]:
        """The timing-phase results of the cases with no finished result, by case id (the latest of each)."""
        return Journal.read_all(path)[2]

    @staticmethod
    def read_all(path: Path) -> tuple[dict[str, Any], list[CaseResult], dict[str, CaseResult]]:
        """``read`` and ``read_timed`` in one pass (a skipped line is warned about once)."""
        header, entries = Journal._entries(path)
        finished = [r for kind, r in entries if kind == RESULT]
        done = {r.case_id for r in finished}
        timed = {r.case_id: r for kind, r in entries if kind == TIMED and r.case_id not in done}
        return header, finished, timed

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

    def append(self, result: CaseResult, kind: str = RESULT) -> None:
        """``result`` as one line, flushed and fsynced; ``kind`` ``TIMED`` for a timing phase awaiting training."""
        if kind not in (RESULT, TIMED):
            raise ValueError(f"kind={kind!r}: expected {RESULT!r} or {TIMED!r}")
        f = self.acquire()._f
        entry = b'{"type": "' + kind.encode() + b'", "result": ' + result.model_dump_json().encode() + b"}\n"
        f.write(entry)  # strict JSON
        f.flush()
        os.fsync(f.fileno())

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


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


def run_in_folder(ref: str | os.PathLike[str]) -> tuple[Path, list[Path]]:
    """``--resume FOLDER``: its newest unfinished run, and the other unfinished ones."""
    found = unfinished_runs(Path(ref))
    if not found:
        raise InputError(f"--resume {str(ref)!r}: no unfinished run in this folder (no {JOURNAL_SUFFIX} and no "
                         f"partial record): expected the folder of an interrupted run, its id, record or journal")
    return found[0], found[1:]


def run_id_of(path: Path) -> str:
    return path.name[: -len(JOURNAL_SUFFIX)] if path.name.endswith(JOURNAL_SUFFIX) else path.stem


def resolve_run(ref: str | os.PathLike[str], out_dir: Path) -> tuple[Path, Path]:
    """``--resume RUN``: a run id (looked up under ``out_dir``), a record ``.json``, a journal, or a folder holding
    runs (its newest unfinished one) -> (record, journal)."""
    p = Path(ref)
    if p.is_dir():
        p = run_in_folder(p)[0]
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


__all__ = ["JOURNAL_SUFFIX", "JOURNAL_VERSION", "READABLE_VERSIONS", "RESULT", "TIMED", "Journal", "journal_path_for",
           "record_path_for", "resolve_run", "run_id_of", "run_in_folder", "unfinished_runs"]
