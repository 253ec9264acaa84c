"""Exporters from run records to the JSON that continuous-benchmarking services ingest.

* github-action-benchmark, ``tool: customSmallerIsBetter`` / ``customBiggerIsBetter``: a list of
  ``{"name", "unit", "value", "range", "extra"}``. Smaller is better: training and forward step time (ms),
  memory (MiB), held-out loss and lower-is-better task metrics (mse). Bigger is better: accuracy.
* Bencher Metric Format (BMF): ``{benchmark: {measure: {"value", "lower_value", "upper_value"}}}``; step times
  go to Bencher's built-in ``latency`` measure (nanoseconds) and ``forward-latency``; memory figures, the loss and
  the task metric get their own measures.

The benchmark name is the case's short label (its main keys and seed: stable across versions). Cases that ran in
several records (reruns, interleaved CI runs) are pooled: timings take the median of all raw samples and the widest
record CI, the rest the mean.
Only cases with status ok are exported. Non-finite timing samples (NaN, inf) are dropped with a warning naming the
record and the case; a case with no finite sample exports no timing.
"""
from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .errors import InputError
from .schema import RunRecord
from .tasks import metric_higher_is_better

FORMATS = ("github-smaller", "github-bigger", "bmf")


@dataclass
class _Pooled:
    label: str
    implementation: str | None = None
    commits: set[str] = field(default_factory=set)
    times: dict[str, list[float]] = field(default_factory=dict)
    cis: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    memory: dict[str, list[int]] = field(default_factory=dict)
    quality: dict[str, list[float]] = field(default_factory=dict)  # "loss" and the task metric's name


def _pool(records: Iterable[RunRecord], files: dict[str, str] | None = None) -> list[_Pooled]:
    out: dict[str, _Pooled] = {}
    files = files or {}
    for rec in records:
        for cr in rec.cases:
            if cr.status != "ok":
                continue
            p = out.setdefault(cr.case.case_id, _Pooled(cr.case.short_label, cr.implementation))
            if rec.git.commit:
                p.commits.add(rec.git.commit[:12])
            for metric in ("train_time", "forward_time"):
                st = getattr(cr, metric)
                if st is None or not st.samples:
                    continue
                x = np.asarray(st.samples, dtype=float)
                fin = x[np.isfinite(x)]
                if fin.size < x.size:
                    warnings.warn(f"{files.get(rec.run_id, f'run {rec.run_id}')}: {cr.case.label}: "
                                  f"{x.size - fin.size} of {x.size} {metric} samples are not finite (NaN/inf): "
                                  "dropped", stacklevel=2)
                if not fin.size:
                    continue
                p.times.setdefault(metric, []).extend(fin.tolist())
                lo, hi = st.ci_low, st.ci_high
                if not (np.isfinite(lo) and np.isfinite(hi)):  # the record's CI came from the bad samples
                    lo, hi = float(fin.min()), float(fin.max())
                p.cis.setdefault(metric, []).append((lo, hi))
            for m in cr.memory:
                p.memory.setdefault(m.name, []).append(m.bytes)
            acc = cr.accuracy
            if acc is not None:
                for name, v in (("loss", acc.final_loss), (acc.metric, acc.final_metric)):
                    if v is not None and np.isfinite(v):
                        p.quality.setdefault(name, []).append(float(v))
    return sorted(out.values(), key=lambda p: p.label)


def _time(p: _Pooled, metric: str) -> tuple[float, float, float, int]:
    """(median, ci_low, ci_high, n) in seconds."""
    s = p.times[metric]
    return float(np.median(s)), min(c[0] for c in p.cis[metric]), max(c[1] for c in p.cis[metric]), len(s)


def to_github_benchmark(records: Iterable[RunRecord], bigger_is_better: bool = False,
                        files: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Entries for github-action-benchmark's ``customSmallerIsBetter`` (default) or ``customBiggerIsBetter``."""
    entries: list[dict[str, Any]] = []
    for p in _pool(records, files):
        extra = "; ".join(x for x in (p.implementation, f"commit {', '.join(sorted(p.commits))}" if p.commits else "")
                          if x)
        if bigger_is_better:
            for name, vals in p.quality.items():
                if metric_higher_is_better(name):
                    entries.append(dict(name=f"{p.label} · {name}", unit=name, value=float(np.mean(vals)),
                                        range=f"± {float(np.std(vals)):.4g}", extra=f"{extra}; runs={len(vals)}"))
            continue
        for metric in ("train_time", "forward_time"):
            if metric in p.times:
                med, lo, hi, n = _time(p, metric)
                entries.append(dict(name=f"{p.label} · {metric}", unit="ms", value=med * 1e3,
                                    range=f"± {(hi - lo) * 1e3 / 2:.4g}",
                                    extra=f"{extra}; n={n} samples; 95% CI [{lo * 1e3:.4g}, {hi * 1e3:.4g}] ms"))
        for name, vals in sorted(p.memory.items()):
            entries.append(dict(name=f"{p.label} · memory:{name}", unit="MiB", value=float(np.median(vals)) / 2**20,
                                range=f"± {float(np.ptp(vals)) / 2**21:.4g}", extra=extra))
        for name, vals in p.quality.items():
            if not metric_higher_is_better(name):  # loss, mse (and a metric of no known task)
                entries.append(dict(name=f"{p.label} · {name}", unit=name, value=float(np.mean(vals)),
                                    range=f"± {float(np.std(vals)):.4g}", extra=f"{extra}; runs={len(vals)}"))
    return entries


def to_bmf(records: Iterable[RunRecord], files: dict[str, str] | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Bencher Metric Format: benchmark (the case label) -> measure slug -> value (and bounds)."""
    out: dict[str, dict[str, dict[str, float]]] = {}
    for p in _pool(records, files):
        measures: dict[str, dict[str, float]] = {}
        for metric, slug in (("train_time", "latency"), ("forward_time", "forward-latency")):
            if metric in p.times:
                med, lo, hi, _ = _time(p, metric)
                measures[slug] = {"value": med * 1e9, "lower_value": lo * 1e9, "upper_value": hi * 1e9}
        for name, vals in sorted(p.memory.items()):
            measures[f"memory-{name.replace('_', '-')}"[:64]] = {"value": float(np.median(vals)),
                                                                  "lower_value": float(min(vals)),
                                                                  "upper_value": float(max(vals))}
        for name, vals in p.quality.items():
            measures[f"final-{name}"] = {"value": float(np.mean(vals)), "lower_value": float(min(vals)),
                                         "upper_value": float(max(vals))}
        if measures:
            out[p.label] = measures
    return out


def export(records: list[RunRecord], fmt: str, files: dict[str, str] | None = None) -> Any:
    """``files``: run id -> the record's file, named in warnings."""
    if fmt not in FORMATS:
        raise InputError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if fmt == "bmf":
        return to_bmf(records, files)
    return to_github_benchmark(records, bigger_is_better=fmt == "github-bigger", files=files)


def export_command(inputs: Path | list[Path], fmt: str, out: Path | None = None) -> int:
    """``gru-bench export RECORDS... --format F [-o PATH]``: write the JSON to ``out`` (stdout if None); 0."""
    from . import storage

    paths = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if fmt not in FORMATS:  # before reading anything
        raise InputError(f"--format {fmt!r}: expected one of {', '.join(FORMATS)}")
    with warnings.catch_warnings(record=True) as caught:  # one line each on stderr, not Python's warning format
        warnings.simplefilter("always")
        files = storage.record_files(paths)
        records = [storage.load_record(p) for p in files]
        names = {r.run_id: str(p) for r, p in zip(records, files)}
        data = export(records, fmt, names)
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    text = json.dumps(data, indent=1, allow_nan=False)
    if out is None:
        print(text)
        return 0
    try:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(text + "\n", encoding="utf-8")
    except OSError as e:
        raise InputError(f"-o {str(out)!r}: cannot write: {e.strerror or e}") from None
    return 0
