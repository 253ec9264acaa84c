"""Find and load the run records a report is built from; a corrupt or foreign file is named and skipped."""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import InputError
from ..schema import RunRecord, SchemaWarning
from ..storage import load_record, record_files


@dataclass
class Loaded:
    """The records that loaded (oldest first), the file each came from, and one warning per skipped file."""

    records: list[RunRecord] = field(default_factory=list)
    paths: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    old_schema: list[str] = field(default_factory=list)  # records of an older schema version, read (SchemaWarning)


def load_records(inputs: list[Path], stderr=None) -> Loaded:
    """Load every record under ``inputs`` (files, or directories searched for ``*.json``).

    A file that is corrupt, foreign or of an unknown schema version is skipped with a warning naming it (kept in
    ``warnings`` and printed on ``stderr``); a run loaded twice counts once. ``InputError`` when no input is given,
    a path does not exist, or nothing loads.
    """
    if not inputs:
        raise InputError("report inputs: none given: expected run records (.json) or directories of them")
    stderr = sys.stderr if stderr is None else stderr
    loaded = Loaded()
    with warnings.catch_warnings(record=True) as caught:  # record_files warns about foreign JSON in directories
        warnings.simplefilter("always")
        files = record_files([Path(p) for p in inputs])
    loaded.warnings += [str(w.message) for w in caught]
    seen: dict[str, Path] = {}
    pairs: list[tuple[RunRecord, Path]] = []
    for f in files:
        try:
            with warnings.catch_warnings(record=True) as old:  # an older schema version: read, with a warning
                warnings.simplefilter("always", SchemaWarning)
                record = load_record(f)
            loaded.old_schema += [str(w.message) for w in old if issubclass(w.category, SchemaWarning)]
        except InputError as e:
            loaded.warnings.append(f"skipped {e}")
            continue
        if record.run_id in seen:
            loaded.warnings.append(f"skipped {f}: run {record.run_id} already loaded from {seen[record.run_id]}")
            continue
        seen[record.run_id] = f
        pairs.append((record, f))
    for w in [*loaded.warnings, *loaded.old_schema]:
        print(f"warning: {w}", file=stderr)
    if not pairs:
        where = ", ".join(str(p) for p in inputs)
        raise InputError(f"report inputs {where}: no readable gru-bench run record ({len(files)} file(s) skipped)")
    pairs.sort(key=lambda rp: (rp[0].created, rp[0].run_id))
    loaded.records = [r for r, _ in pairs]
    loaded.paths = [p for _, p in pairs]
    return loaded
