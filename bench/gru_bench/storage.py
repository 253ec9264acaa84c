"""Run records on disk: one JSON file per run, ``<out>/<machine-id>/<timestamp>_<suite>.json``; the one atomic
writer (``atomic_write_text``: every file gru-bench must never leave half-written goes through it), save, load with
one-line errors, and the folders of records."""
from __future__ import annotations

import json
import os
import tempfile
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from .errors import InputError
from .machine import slug
from .schema import RunRecord, record_from_dict


def now_utc() -> datetime:
    """The current time in UTC, to the second: the one clock of records, journals and results."""
    return datetime.now(timezone.utc).replace(microsecond=0)


def now_iso() -> str:
    """The current time in UTC, ISO 8601 to the second with its offset, e.g. ``2025-01-01T12:00:00+00:00`` (the
    form of ``RunRecord.created``/``finished`` and ``CaseResult.started_at``)."""
    return now_utc().isoformat()


def record_path(out_dir: str | os.PathLike[str], machine_id: str, suite_name: str,
                created: str | datetime) -> Path:
    """``out_dir/<machine-id>/<YYYYmmddTHHMMSSZ>_<suite>.json`` (timestamp in UTC, so files sort by time)."""
    when = datetime.fromisoformat(created) if isinstance(created, str) else created
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc)
    stamp = when.strftime("%Y%m%dT%H%M%S") + ("Z" if when.tzinfo is not None else "")
    return Path(out_dir) / slug(machine_id, 80) / f"{stamp}_{slug(suite_name, 60)}.json"


def fsync_dir(directory: Path) -> None:
    """Make a rename or a new file in ``directory`` durable (best effort where the platform refuses)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems / platforms refuse fsync on a directory
        pass
    finally:
        os.close(fd)


def write_outputs(outputs: Any) -> None:
    """Write each ``(path, make_text)`` whose path is not None (``--markdown``/``--json`` of compare and ab); a path
    that cannot be written is an ``InputError`` naming it."""
    for path, text in outputs:
        if path is not None:
            try:
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                Path(path).write_text(text() + "\n", encoding="utf-8")
            except OSError as e:
                raise InputError(f"cannot write {path}: {e.strerror or e}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike[str], text: str, exclusive: bool = False) -> Path:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one, never a part: a temp file
    in the same directory, flushed and fsynced, renamed over ``path`` (``os.replace``), then the directory fsynced.
    The file gets the mode any new file would get (``0o666 & ~umask``, not ``mkstemp``'s 0600).

    ``exclusive``: create ``path`` only if it does not exist (a hard link of the complete temp file, which fails
    with ``FileExistsError`` when ``path`` exists; two writers can never both claim it). The one writer of every
    file gru-bench must not leave half-written: records, journals' headers, a worker's result."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            os.link(tmp, path)  # atomic create-if-absent, with its content already in place
        else:
            os.replace(tmp, path)
    finally:
        try:
            os.unlink(tmp)  # gone already after os.replace
        except FileNotFoundError:
            pass
    fsync_dir(path.parent)
    return path


def save_record(record: RunRecord, path: str | os.PathLike[str]) -> Path:
    """Write ``record`` as JSON to ``path`` atomically (``atomic_write_text``); returns the path."""
    return atomic_write_text(path, record.model_dump_json(indent=1))


MAX_JSON_DEPTH = 64  # a record nests ~6 levels; anything far deeper is not one (and would exhaust the stack later)


def _json_depth_exceeds(data: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Is a parsed JSON document nested deeper than ``limit`` (iteratively: no recursion)?"""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > limit:
                return True
            stack.extend((v, depth + 1) for v in (node.values() if isinstance(node, dict) else node))
    return False


def _parse_json(text: str, path: Path) -> Any:
    """``json.loads`` with a one-line ``InputError`` naming ``path`` for invalid or absurdly nested JSON."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: corrupt record (invalid JSON at line {e.lineno} column {e.colno}: "
                         f"{e.msg})") from None
    except RecursionError:
        too_deep = True
    else:
        too_deep = _json_depth_exceeds(data)
    if too_deep:
        raise InputError(f"{path}: not a gru-bench run record (JSON nested deeper than {MAX_JSON_DEPTH} levels)")
    return data


def _warn_duplicate_cases(record: RunRecord, where: str) -> None:
    """A record holds each case once (a resume replaces, never appends): flag one that does not."""
    counts: dict[str, int] = {}
    for c in record.cases:
        counts[c.case_id] = counts.get(c.case_id, 0) + 1
    dup = {cid: n for cid, n in counts.items() if n > 1}
    if dup:
        label = next(c.case.label for c in record.cases if c.case_id in dup)
        warnings.warn(f"{where}: holds {len(dup)} case(s) more than once (e.g. {label!r} "
                      f"{dup[next(iter(dup))]} times): every result is kept; compare pools them as separate runs",
                      stacklevel=3)


def load_record(path: str | os.PathLike[str]) -> RunRecord:
    """Read one run record; ``InputError`` naming the file when it is missing, corrupt (truncated, not JSON), not a
    gru-bench record, of an unknown schema version, or invalid."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"{path}: cannot be read: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: corrupt record (not UTF-8 text)") from None
    record = record_from_dict(_parse_json(text, path), where=str(path))
    _warn_duplicate_cases(record, str(path))
    return record


def _is_record_file(path: Path) -> bool:
    """Cheap check for directory scans: a JSON object whose keys include schema_version and run_id."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return True  # let load_record name the problem: a corrupt record must not vanish from a report
    return isinstance(data, dict) and "schema_version" in data and "run_id" in data


def record_files(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; directories searched recursively for ``*.json`` (other JSON documents skipped with a
    warning). ``InputError`` for a path that does not exist or a directory with no record."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = []
            for f in sorted(p.rglob("*.json")):
                if _is_record_file(f):
                    found.append(f)
                else:
                    warnings.warn(f"{f}: skipped, not a gru-bench run record", stacklevel=2)
            if not found:
                raise InputError(f"{p}: no run records (*.json) found in this directory")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise InputError(f"{p}: no such file or directory: expected run records (.json) or a folder of them")
    out: list[Path] = []
    for f in files:  # the same file named twice counts once
        if f.resolve() not in {o.resolve() for o in out}:
            out.append(f)
    return out
