"""Run records -> one flat row per case, every field of the record as it was stored (``load_results``: the public
``gru_bench.load_results`` for notebooks and scripts). The report's frame (``report/frame.py``) derives figures
instead (the peak memory, GFLOP/s, run names); this module adds nothing that is not in the record."""
from __future__ import annotations

import json
import os
from typing import Any, Iterable

from .case import Case
from .machine import machine_id
from .schema import CaseResult, RunRecord, TimingStats
from .storage import load_record, record_files


# the fixed columns of load_results, in order; memory, provenance and thread columns follow, sorted
RUN_COLUMNS = ("run_id", "suite_name", "run_label", "created", "machine_id", "hostname", "cpu_model", "commit",
               "dirty", "branch", "calibration_gflops", "record")
CASE_COLUMNS = tuple(Case.model_fields) + ("case_id", "label")
RESULT_COLUMNS = ("status", "reason", "implementation", "params", "params_backend", "flops_forward",
                  "flops_train_step", "node", "started_at", "wall_s", "warnings")
TIMING_FIELDS = ("median", "iqr", "min", "mean", "ci_low", "ci_high", "gflops", "pct_peak", "n", "samples")
ACCURACY_SCALARS = ("metric", "final_metric", "final_loss", "baseline_loss", "baseline_metric", "solved",
                    "steps_to_solve", "seconds_to_solve", "target_loss", "steps_to_target",
                    "seconds_to_target", "stopped_at_target", "best_loss", "best_metric", "best_step")
ACCURACY_COLUMNS = ACCURACY_SCALARS + ("curve_step", "curve_loss", "curve_seconds", "heldout_step", "heldout_loss",
                                       "heldout_seconds", "heldout_metric")
LOAD_COLUMNS = ("load_busy", "load_warning", "load_before_1m", "load_after_1m", "cpu_percent_before",
                "cpu_percent_after")
FIXED_COLUMNS = (RUN_COLUMNS + CASE_COLUMNS + RESULT_COLUMNS
                 + tuple(f"{t}_{f}" for t in ("train_time", "forward_time") for f in TIMING_FIELDS)
                 + ACCURACY_COLUMNS + LOAD_COLUMNS)


def _timing_columns(prefix: str, t: TimingStats | None) -> dict[str, Any]:
    if t is None:
        return {f"{prefix}_{f}": None for f in TIMING_FIELDS}
    d = {f"{prefix}_{f}": getattr(t, f) for f in TIMING_FIELDS if f not in ("n", "samples")}
    d[f"{prefix}_n"] = len(t.samples)
    d[f"{prefix}_samples"] = list(t.samples)
    return d


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (str, int, float, bool))


def stored_row(record: RunRecord, result: CaseResult, record_file: str | None = None) -> dict[str, Any]:
    """One case of one run as a flat dict of its stored fields (the row ``load_results`` builds)."""
    row: dict[str, Any] = {
        "run_id": record.run_id, "suite_name": record.suite_name, "run_label": record.label,
        "created": record.created, "machine_id": record.machine_id or machine_id(record.machine),
        "hostname": record.machine.get("hostname"), "cpu_model": (record.machine.get("cpu") or {}).get("model"),
        "commit": record.git.commit, "dirty": record.git.dirty, "branch": record.git.branch,
        "calibration_gflops": record.calibration.gemm_gflops if record.calibration else None,
        "record": record_file,
    }
    case = result.case.model_dump()
    case["options"] = json.dumps(case["options"], sort_keys=True)  # hashable: rows group by it
    row.update(case)
    row["case_id"] = result.case_id
    row["label"] = result.case.label
    for k in RESULT_COLUMNS:
        row[k] = getattr(result, k)
    row["warnings"] = "; ".join(result.warnings) if result.warnings else None
    row.update(_timing_columns("train_time", result.train_time))
    row.update(_timing_columns("forward_time", result.forward_time))
    acc = result.accuracy
    for k in ACCURACY_COLUMNS:
        row[k] = None
    if acc is not None:
        for k in ACCURACY_SCALARS:
            row[k] = getattr(acc, k)
        row["curve_step"], row["curve_loss"], row["curve_seconds"] = acc.curve.step, acc.curve.loss, acc.curve.seconds
        if acc.heldout is not None:
            row["heldout_step"], row["heldout_loss"] = acc.heldout.step, acc.heldout.loss
            row["heldout_seconds"], row["heldout_metric"] = acc.heldout.seconds, acc.heldout.metric
    load = result.load
    row.update({"load_busy": load.busy if load else None, "load_warning": load.warning if load else None,
                "load_before_1m": load.before[0] if load and load.before else None,
                "load_after_1m": load.after[0] if load and load.after else None,
                "cpu_percent_before": load.cpu_percent_before if load else None,
                "cpu_percent_after": load.cpu_percent_after if load else None})
    for fig in result.memory:
        row[f"mem_{fig.name}"] = fig.bytes
        row[f"mem_{fig.name}_method"] = fig.method
    for k, v in result.provenance.items():
        if k != "implementation" and _scalar(v):
            row[f"prov_{k}"] = v
    for k, v in result.threads.items():
        if _scalar(v):
            row[f"threads_{k}"] = v
    return row


def load_results(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> "Any":
    """Run records (files, or directories searched recursively for ``*.json``) -> a pandas DataFrame, one row per
    case: run columns, the case's fields, status, counts, timing statistics (``train_time_median`` ...),
    accuracy, load, then ``mem_<name>`` (bytes), ``prov_<key>`` and ``threads_<key>`` columns.
    ``InputError`` naming the file for a corrupt record or an unknown schema version."""
    import pandas as pd

    rows = []
    for f in record_files(paths):
        record = load_record(f)
        rows.extend(stored_row(record, r, str(f)) for r in record.cases)
    extra = sorted({k for r in rows for k in r} - set(FIXED_COLUMNS))
    return pd.DataFrame(rows, columns=list(FIXED_COLUMNS) + extra)
