"""Reading the two sides: record files or folders -> records, and records -> every result of each case (pooled over
runs), with the time scale of its record and the finite timing samples of an ok run."""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import storage
from ..case import Case
from ..errors import InputError
from ..schema import CaseResult, RunRecord


def load_side(path: Path, name: str = "record", files: dict[str, str] | None = None) -> list[RunRecord]:
    """A record file, or every run record under a directory (their cases pooled); ``InputError`` naming the file
    that is missing, corrupt or not a record. ``files``, if given, gets run id -> file for each record."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{name}={str(path)!r}: no such file or directory; expected a run record or a folder of them")
    out = []
    for p in storage.record_files(path):
        out.append(storage.load_record(p))
        if files is not None:
            files.setdefault(out[-1].run_id, str(p))
    return out



def case_key(result: CaseResult) -> str:
    """Match on the configuration itself (recomputed from ``case``), not on a run-specific field."""
    return result.case.case_id


def group_key(case: Case) -> str:
    """The seed group of a case (``Case.group_id``: cases that differ only by their seed; accuracy is compared across
    seeds), prefixed so a group's rows never share a key with the rows of its seed-0 case."""
    return case.group_id


def group_label(case: Case) -> str:
    return case.label.rsplit(" seed=", 1)[0]


@dataclass
class Entry:
    results: list[CaseResult] = field(default_factory=list)
    scales: list[float] = field(default_factory=list)  # the time scale of each result's record

    @property
    def case(self) -> Case:
        return self.results[0].case

    @property
    def ok(self) -> list[tuple[CaseResult, float]]:
        return [(r, s) for r, s in zip(self.results, self.scales) if r.status == "ok"]

    @property
    def status(self) -> str:
        """``ok`` if any run of the case succeeded, else the first run's status."""
        return "ok" if self.ok else self.results[0].status

    @property
    def reason(self) -> str:
        return next((r.reason for r in self.results if r.reason), "") or ""


def source_of(rec: RunRecord, files: dict[str, str]) -> str:
    return f"{files[rec.run_id]} (run {rec.run_id})" if rec.run_id in files else f"run {rec.run_id}"


def index_side(records: list[RunRecord], scales: list[float], side: str, files: dict[str, str],
           warn: list[str]) -> dict[str, Entry]:
    """case id -> every result of that case on this side (several runs of a suite pool); a record holding one case
    more than once is named in a warning (all its results are kept and pooled, as separate runs would be)."""
    out: dict[str, Entry] = {}
    for rec, scale in zip(records, scales):
        seen: dict[str, int] = defaultdict(int)
        for cr in rec.cases:
            e = out.setdefault(case_key(cr), Entry())
            e.results.append(cr)
            e.scales.append(scale)
            seen[case_key(cr)] += 1
        dup = [cid for cid, n in seen.items() if n > 1]
        if dup:
            warn.append(f"{side} {source_of(rec, files)} holds {len(dup)} case(s) more than once (e.g. "
                        f"{next(c.case.label for c in rec.cases if case_key(c) == dup[0])}): their results are "
                        "pooled as separate runs")
    return out


def finite_samples(side: str, e: Entry, metric: str, files_of: dict[int, str], warn: list[str]) -> list[float]:
    """The scaled timing samples of ``metric`` over the ok runs of a case, non-finite ones dropped with a warning."""
    out: list[float] = []
    for r, s in e.ok:
        st = getattr(r, metric)
        if st is None:
            continue
        x = np.asarray(st.samples, dtype=float)
        bad = int((~np.isfinite(x)).sum())
        if bad:
            where = files_of.get(id(r), "a record")
            warn.append(f"{side} {where}: {r.case.label}: {bad} of {x.size} {metric} samples are not finite "
                        f"(NaN/inf): dropped" + ("; no timing verdict from this run" if bad == x.size else ""))
        out += [float(t) * s for t in x[np.isfinite(x)]]
    return out



def cpu_samples(e: Entry, metric: str) -> list[float]:
    """The scaled CPU-time samples of ``metric`` over a case's ok runs (the record's time scale, as the wall
    samples of ``finite_samples``); [] unless every run has them."""
    out: list[float] = []
    for r, s in e.ok:
        st = getattr(r, metric)
        if st is None or not getattr(st, "cpu_samples", None):
            return []
        out += [float(v) * s for v in st.cpu_samples if np.isfinite(v)]
    return out

