"""Run records -> pandas frames: one row per case (``cases_frame``), one row per configuration with its seeds
aggregated (``groups_frame``). Everything downstream (tables, plots) reads these frames only."""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from ..case import Case
from ..results import CaseResult, RunRecord

# Case fields that pick a configuration; a seed group varies only ``seed``; a GRU/LSTM pair varies cell/variant too.
CONFIG_FIELDS = [f for f in Case.model_fields if f not in ("seed", "timeout_s")]
PAIR_FIELDS = ["run", *[f for f in CONFIG_FIELDS if f not in ("cell", "variant")]]
CELL_KEYS = ("GRU reset_after", "GRU reset_before", "LSTM")
# Which measured memory figure is "the peak", in order of preference (the terminal table's order): the device
# allocator on a GPU, tracemalloc for NumPy (exact), then the host's high-water mark and sampled RSS.
PEAK_PREFERENCE = ("device_peak_allocated", "tracemalloc_peak", "host_vmhwm_delta", "host_peak_rss_delta")
ANALYTIC = "activation_estimate"


def cell_key(cell: str, variant: str | None) -> str:
    """The name a cell keeps everywhere in the report (and its colour, see ``palette``)."""
    return "LSTM" if cell == "lstm" else f"GRU {variant or 'reset_after'}"


def run_name(record: RunRecord, index: int) -> str:
    """Short, readable name of a run: its label, else suite and creation time."""
    if record.label:
        return record.label
    return f"{record.suite_name} {record.created[:16].replace('T', ' ')}"


def _peak(memory: list) -> tuple[float, str | None, str | None]:
    measured = {m.name: m for m in memory if m.name != ANALYTIC}
    for name in PEAK_PREFERENCE:
        if name in measured:
            return float(measured[name].bytes), name, measured[name].method
    if measured:
        m = max(measured.values(), key=lambda m: m.bytes)
        return float(m.bytes), m.name, m.method
    return np.nan, None, None


def _stat(t, attr: str) -> float:
    v = getattr(t, attr, None) if t is not None else None
    return float(v) if v is not None else np.nan


def case_row(record: RunRecord, index: int, r: CaseResult) -> dict[str, Any]:
    c = r.case
    row: dict[str, Any] = {f: getattr(c, f) for f in Case.model_fields if f != "options"}
    row["options"] = json.dumps(c.options, sort_keys=True) if c.options else ""
    gemm = record.calibration.gemm_gflops if record.calibration else None
    tt, ft, acc = r.train_time, r.forward_time, r.accuracy
    peak, peak_name, peak_method = _peak(r.memory)
    analytic = next((m for m in r.memory if m.name == ANALYTIC), None)
    gflops = _stat(tt, "gflops")
    if np.isnan(gflops) and r.flops_train_step and tt is not None and tt.median > 0:
        gflops = r.flops_train_step / tt.median / 1e9
    pct = _stat(tt, "pct_peak")
    if np.isnan(pct) and gemm and not np.isnan(gflops):
        pct = 100.0 * gflops / gemm
    curve = acc.curve if acc is not None else None
    row.update(
        run_index=index, run=run_name(record, index), run_id=record.run_id,
        commit=(record.git.commit or "")[:10], created=record.created,
        machine=str(record.machine_id or record.machine.get("hostname") or ""),
        case_id=r.case_id, group_id=c.model_copy(update={"seed": 0}).case_id, label=c.label,
        cell_key=cell_key(c.cell, c.variant), status=r.status, reason=r.reason or "",
        params=float(r.params) if r.params is not None else np.nan,
        flops_forward=float(r.flops_forward) if r.flops_forward is not None else np.nan,
        flops_train_step=float(r.flops_train_step) if r.flops_train_step is not None else np.nan,
        implementation=r.implementation or "", provenance=r.provenance,
        train_s=_stat(tt, "median"), train_ci_low=_stat(tt, "ci_low"), train_ci_high=_stat(tt, "ci_high"),
        train_iqr=_stat(tt, "iqr"), n_samples=len(tt.samples) if tt is not None else 0,
        infer_s=_stat(ft, "median"), gflops=gflops, pct_peak=pct, calibrated_gflops=gemm if gemm else np.nan,
        peak_bytes=peak, peak_name=peak_name or "", peak_method=peak_method or "",
        activation_bytes=float(analytic.bytes) if analytic is not None else np.nan,
        metric=acc.metric if acc is not None else "", final_metric=_stat(acc, "final_metric"),
        final_loss=_stat(acc, "final_loss"), baseline_loss=_stat(acc, "baseline_loss"),
        baseline_metric=_stat(acc, "baseline_metric"), solved=bool(acc.solved) if acc is not None else False,
        has_accuracy=acc is not None and acc.final_loss is not None,
        steps_to_solve=_stat(acc, "steps_to_solve"), seconds_to_solve=_stat(acc, "seconds_to_solve"),
        curve_step=list(curve.step) if curve else [], curve_loss=list(curve.loss) if curve else [],
        curve_seconds=list(curve.seconds) if curve else [],
        busy=bool(r.load.busy) if r.load is not None else False, warnings=list(r.warnings),
        node=r.node or "", wall_s=r.wall_s if r.wall_s is not None else np.nan,
        memory=[m.model_dump() for m in r.memory],
    )
    return row


def _template_row() -> dict[str, Any]:
    """A row of a placeholder case: only its keys are used, to give an empty frame its columns."""
    case = Case(backend="numpy", cell="lstm", variant="standard", task="none", seq_len=1, hidden=1)
    rec = RunRecord(run_id="none", suite_name="none", created="")
    return case_row(rec, 0, CaseResult(case=case, case_id=case.case_id, status="skipped"))


def cases_frame(records: list[RunRecord]) -> pd.DataFrame:
    """One row per case of every record (failed and skipped ones included); the columns exist even when empty."""
    rows = [case_row(rec, i, r) for i, rec in enumerate(records) for r in rec.cases]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(_template_row()))


def _join_unique(values) -> str:
    return "; ".join(dict.fromkeys(str(v) for v in values if v))


def _status_summary(statuses: pd.Series) -> str:
    counts = statuses.value_counts()
    if len(counts) == 1:
        return str(counts.index[0])
    return ", ".join(f"{n} {s}" for s, n in counts.items())


def groups_frame(cases: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, configuration): seeds aggregated over the cases that ran (status ok).

    Times, throughput and memory: median over seeds; final loss/metric: mean and standard deviation over seeds;
    ``solved``/``n_acc``: how many seeds solved the task / had an accuracy phase; statuses and reasons are kept.
    """
    out = []
    for _, g in cases.groupby(["run_index", "group_id"], sort=False):
        ok = g[g["status"] == "ok"]
        first = g.iloc[0]
        row = {f: first[f] for f in ["run_index", "run", "run_id", "commit", "machine", "created", "group_id",
                                     "cell_key", "options", *[f for f in CONFIG_FIELDS if f != "options"]]}
        acc = ok[ok["has_accuracy"]]
        row.update(
            seeds=int(len(g)), n_ok=int(len(ok)), status=_status_summary(g["status"]),
            all_ok=bool(len(ok) == len(g)), reason=_join_unique(g["reason"]),
            params=g["params"].dropna().iloc[0] if g["params"].notna().any() else np.nan,
            flops_forward=g["flops_forward"].dropna().iloc[0] if g["flops_forward"].notna().any() else np.nan,
            flops_train_step=(g["flops_train_step"].dropna().iloc[0] if g["flops_train_step"].notna().any()
                              else np.nan),
            implementation=_join_unique(ok["implementation"]) or _join_unique(g["implementation"]),
            train_s=ok["train_s"].median(), infer_s=ok["infer_s"].median(), gflops=ok["gflops"].median(),
            pct_peak=ok["pct_peak"].median(), peak_bytes=ok["peak_bytes"].median(),
            peak_name=_join_unique(ok["peak_name"]), activation_bytes=g["activation_bytes"].median(),
            metric=_join_unique(g["metric"]), n_acc=int(len(acc)),
            final_metric=acc["final_metric"].mean(), final_metric_std=acc["final_metric"].std(ddof=0),
            final_loss=acc["final_loss"].mean(), final_loss_std=acc["final_loss"].std(ddof=0),
            baseline_loss=g["baseline_loss"].dropna().iloc[0] if g["baseline_loss"].notna().any() else np.nan,
            baseline_metric=(g["baseline_metric"].dropna().iloc[0] if g["baseline_metric"].notna().any()
                             else np.nan),
            solved=int(acc["solved"].sum()), busy=bool(g["busy"].any()),
            provenance=ok["provenance"].iloc[0] if len(ok) else first["provenance"],
        )
        out.append(row)
    if not out:
        return groups_frame(pd.DataFrame([_template_row()])).iloc[0:0]
    return pd.DataFrame(out)
