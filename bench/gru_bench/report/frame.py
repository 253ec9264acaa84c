"""Run records -> pandas frames: one row per case (``cases_frame``), one row per configuration with its seeds
aggregated (``groups_frame``). Everything downstream (tables, plots) reads these frames only."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from ..case import Case
from ..memory import below_floor
from ..schema import CaseResult, RunRecord

# Case fields that pick a configuration; a seed group varies only ``seed``; a GRU/LSTM pair varies cell/variant too.
CONFIG_FIELDS = [f for f in Case.model_fields if f not in ("seed", "timeout_s")]
PAIR_FIELDS = ["run", *[f for f in CONFIG_FIELDS if f not in ("cell", "variant")]]  # what a GRU/LSTM pair shares
CELL_KEYS = ("GRU reset_after", "GRU reset_before", "LSTM")
ANALYTIC = "activation_estimate"


def cell_key(cell: str, variant: str | None) -> str:
    """The name a cell keeps everywhere in the report (and its colour, see ``palette``)."""
    return "LSTM" if cell == "lstm" else f"GRU {variant or 'reset_after'}"


def run_name(record: RunRecord, index: int) -> str:
    """Short, readable name of a run: its label, else suite and creation time."""
    if record.label:
        return record.label
    return f"{record.suite_name} {record.created[:16].replace('T', ' ')}"


def _peak(r: CaseResult) -> tuple[float, str | None, str | None]:
    """The case's peak memory (``CaseResult.peak_memory``): its bytes (NaN when it has none, or when the figure is
    under its noise floor, ``memory.below_floor``: the terminal table's "—", not a number to compare), name, method."""
    fig = r.peak_memory()
    if fig is None:
        return np.nan, None, None
    return (np.nan if below_floor(fig) else float(fig.bytes)), fig.name, fig.method


def _stat(t, attr: str) -> float:
    v = getattr(t, attr, None) if t is not None else None
    return float(v) if v is not None else np.nan


def report_row(record: RunRecord, index: int, r: CaseResult) -> dict[str, Any]:
    """One case as the report reads it: the Case's fields plus derived figures (the peak memory by preference,
    GFLOP/s, % of peak, the run's name, group/pair ids); ``tabular.stored_row`` is the record's own fields, flat."""
    c = r.case
    row: dict[str, Any] = {f: getattr(c, f) for f in Case.model_fields if f != "options"}
    row["options"] = json.dumps(c.options, sort_keys=True) if c.options else ""
    gemm = record.calibration.gemm_gflops if record.calibration else None
    tt, ft, acc = r.train_time, r.forward_time, r.accuracy
    peak, peak_name, peak_method = _peak(r)
    analytic = next((m for m in r.memory if m.name == ANALYTIC), None)
    gflops = _stat(tt, "gflops")
    if np.isnan(gflops) and r.flops_train_step and tt is not None and tt.median > 0:
        gflops = r.flops_train_step / tt.median / 1e9
    pct = _stat(tt, "pct_peak")
    if np.isnan(pct) and gemm and not np.isnan(gflops):
        pct = 100.0 * gflops / gemm
    curve = acc.curve if acc is not None else None
    row.update(
        run_index=index,
        run=run_name(record, index),
        run_id=record.run_id,
        commit=(record.git.commit or "")[:10],
        created=record.created,
        machine=str(record.machine_id or record.machine.get("hostname") or ""),
        case_id=r.case_id,
        group_id=c.group_id,
        label=c.label,
        # the GRU/LSTM pair at equal H (cell and variant ignored), and the pair's family over H (for iso-parameter)
        pair_id=c.pair_id,
        family_id=c.model_copy(update={"hidden": 1}).pair_id,
        cell_key=cell_key(c.cell, c.variant),
        status=r.status,
        reason=r.reason or "",
        params=float(r.params) if r.params is not None else np.nan,
        flops_forward=float(r.flops_forward) if r.flops_forward is not None else np.nan,
        flops_train_step=float(r.flops_train_step) if r.flops_train_step is not None else np.nan,
        implementation=r.implementation or "",
        provenance=r.provenance,
        model=r.model,  # spec.ModelSpec or None (older records)
        train_s=_stat(tt, "median"),
        train_ci_low=_stat(tt, "ci_low"),
        train_ci_high=_stat(tt, "ci_high"),
        train_iqr=_stat(tt, "iqr"),
        n_samples=len(tt.samples) if tt is not None else 0,
        infer_s=_stat(ft, "median"),
        gflops=gflops,
        pct_peak=pct,
        pct_floor=100.0 * r.gemm_floor.efficiency if r.gemm_floor and r.gemm_floor.efficiency else np.nan,
        floor_s=r.gemm_floor.seconds if r.gemm_floor else np.nan,
        subnormal_max=max(r.subnormals.values()) if r.subnormals else np.nan,
        calibrated_gflops=gemm if gemm else np.nan,
        peak_bytes=peak,
        peak_name=peak_name or "",
        peak_method=peak_method or "",
        activation_bytes=float(analytic.bytes) if analytic is not None else np.nan,
        metric=acc.metric if acc is not None else "",
        final_metric=_stat(acc, "final_metric"),
        final_loss=_stat(acc, "final_loss"),
        baseline_loss=_stat(acc, "baseline_loss"),
        baseline_metric=_stat(acc, "baseline_metric"),
        solved=bool(acc.solved) if acc is not None else False,
        has_accuracy=acc is not None and acc.final_loss is not None,
        steps_to_solve=_stat(acc, "steps_to_solve"),
        seconds_to_solve=_stat(acc, "seconds_to_solve"),
        # time-to-target (schema 2; NaN for a version-1 record): the held-out evaluation that decides it
        target_loss=_stat(acc, "target_loss"),
        steps_to_target=_stat(acc, "steps_to_target"),
        seconds_to_target=_stat(acc, "seconds_to_target"),
        best_loss=_stat(acc, "best_loss"),
        best_metric=_stat(acc, "best_metric"),
        heldout_step=list(acc.heldout.step) if acc is not None and acc.heldout else [],
        heldout_loss=list(acc.heldout.loss) if acc is not None and acc.heldout else [],
        curve_step=list(curve.step) if curve else [],
        curve_loss=list(curve.loss) if curve else [],
        curve_seconds=list(curve.seconds) if curve else [],
        busy=bool(r.load.busy) if r.load is not None else False,
        warnings=list(r.warnings),
        node=r.node or "",
        wall_s=r.wall_s if r.wall_s is not None else np.nan,
        memory=[m.model_dump() for m in r.memory],
    )
    return row


def _template_row() -> dict[str, Any]:
    """A row of a placeholder case: only its keys are used, to give an empty frame its columns."""
    case = Case(backend="numpy", cell="lstm", variant="standard", task="none", seq_len=1, hidden=1)
    rec = RunRecord(run_id="none", suite_name="none", created="")
    return report_row(rec, 0, CaseResult(case=case, case_id=case.case_id, status="skipped"))


def cases_frame(records: list[RunRecord]) -> pd.DataFrame:
    """One row per case of every record (failed and skipped ones included); the columns exist even when empty."""
    rows = [report_row(rec, i, r) for i, rec in enumerate(records) for r in rec.cases]
    return pd.DataFrame(rows) if rows else pd.DataFrame(columns=list(_template_row()))


def _join_unique(values) -> str:
    return "; ".join(dict.fromkeys(str(v) for v in values if v))


def _status_summary(statuses: pd.Series) -> str:
    counts = statuses.value_counts()
    if len(counts) == 1:
        return str(counts.index[0])
    return ", ".join(f"{n} {s}" for s, n in counts.items())


FIRST_FIELDS = [
    "run_index",
    "run",
    "run_id",
    "commit",
    "machine",
    "created",
    "group_id",
    "pair_id",
    "family_id",
    "cell_key",
    "options",
    *[f for f in CONFIG_FIELDS if f != "options"],
]
# over the seeds that ran ok
MEDIAN_FIELDS = ["train_s", "infer_s", "gflops", "pct_peak", "pct_floor", "floor_s", "subnormal_max", "peak_bytes"]
FIRST_NUMBER_FIELDS = ["params", "flops_forward", "flops_train_step", "baseline_loss", "baseline_metric"]


def _median(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(np.median(x)) if len(x) else np.nan


def _first_number(x: np.ndarray) -> float:
    x = x[~np.isnan(x)]
    return float(x[0]) if len(x) else np.nan


TARGET_FIELDS = ("target_loss", "steps_to_target", "best_loss", "best_metric", "steps")


def _time_to_target(idx: np.ndarray, status: list[str], num: dict[str, np.ndarray]) -> dict[str, Any]:
    """Time-to-target over the seeds of one group (``survival.py``): the Kaplan–Meier median steps, seeds that
    reached the target / seeds that say (ok or diverged, schema 2), the fraction-solved step curve, best loss."""
    from ..survival import curve, median_steps

    rows = [i for i in idx if status[i] in ("ok", "diverged") and not np.isnan(num["target_loss"][i])
            and num["steps"][i] > 0]
    steps = [None if status[i] != "ok" or np.isnan(num["steps_to_target"][i]) else float(num["steps_to_target"][i])
             for i in rows]
    budgets = [float(num["steps"][i]) for i in rows]
    best = np.array([num["best_loss"][i] for i in rows if status[i] == "ok"], dtype=float)
    best = best[~np.isnan(best)]
    out: dict[str, Any] = dict(n_tt=len(rows), reached=sum(s is not None for s in steps),
                               median_steps_to_target=np.nan, solved_curve_step=[], solved_curve_frac=[],
                               best_loss=float(best.mean()) if len(best) else np.nan,
                               target_loss=_first_number(num["target_loss"][idx]))
    if rows:
        m = median_steps(steps, budgets)
        out["median_steps_to_target"] = float(m) if m is not None else np.nan
        out["solved_curve_step"], out["solved_curve_frac"] = curve(steps, budgets)
    return out


def groups_frame(cases: pd.DataFrame) -> pd.DataFrame:
    """One row per (run, configuration): seeds aggregated over the cases that ran (status ok).

    Times, throughput and memory: median over seeds; final loss/metric: mean and standard deviation over seeds;
    ``solved``/``n_acc``: how many seeds solved the task / had an accuracy phase; statuses and reasons are kept;
    time-to-target over seeds (``_time_to_target``): ``median_steps_to_target`` (Kaplan–Meier, unsolved seeds
    censored at the budget), ``reached``/``n_tt``, the ``solved_curve_*`` step function, ``best_loss`` (mean).
    """
    if cases.empty:
        return groups_frame(pd.DataFrame([_template_row()])).iloc[0:0]
    # plain arrays once: per-group pandas indexing of this wide frame is what would cost the time
    num = {
        c: cases[c].to_numpy(dtype=float)
        for c in [*MEDIAN_FIELDS, *FIRST_NUMBER_FIELDS, "activation_bytes", "final_metric", "final_loss",
                  *TARGET_FIELDS]
    }
    obj = {
        c: cases[c].tolist()
        for c in [*FIRST_FIELDS, "status", "reason", "implementation", "peak_name", "metric", "provenance", "model"]
    }
    ok_all = (cases["status"] == "ok").to_numpy()
    acc_all = ok_all & cases["has_accuracy"].to_numpy(dtype=bool)
    solved_all = cases["solved"].to_numpy(dtype=bool)
    busy_all = cases["busy"].to_numpy(dtype=bool)
    out = []
    for idx in cases.groupby(["run_index", "group_id"], sort=False).indices.values():
        idx = np.sort(idx)
        ok, acc = idx[ok_all[idx]], idx[acc_all[idx]]
        pick = lambda col, rows: [obj[col][i] for i in rows]  # noqa: E731
        row = {f: obj[f][idx[0]] for f in FIRST_FIELDS}
        row.update({f: _median(num[f][ok]) for f in MEDIAN_FIELDS})
        row.update({f: _first_number(num[f][idx]) for f in FIRST_NUMBER_FIELDS})
        tt = _time_to_target(idx, obj["status"], num)
        fm, fl = num["final_metric"][acc], num["final_loss"][acc]
        fm, fl = fm[~np.isnan(fm)], fl[~np.isnan(fl)]
        row.update(
            seeds=len(idx),
            n_ok=len(ok),
            status=_status_summary(pd.Series(pick("status", idx))),
            all_ok=len(ok) == len(idx),
            reason=_join_unique(pick("reason", idx)),
            implementation=_join_unique(pick("implementation", ok)) or _join_unique(pick("implementation", idx)),
            peak_name=_join_unique(pick("peak_name", ok)),
            activation_bytes=_median(num["activation_bytes"][idx]),
            metric=_join_unique(pick("metric", idx)),
            n_acc=len(acc),
            final_metric=float(fm.mean()) if len(fm) else np.nan,
            final_metric_std=float(fm.std()) if len(fm) else np.nan,
            final_loss=float(fl.mean()) if len(fl) else np.nan,
            final_loss_std=float(fl.std()) if len(fl) else np.nan,
            solved=int(solved_all[acc].sum()),
            **tt,
            busy=bool(busy_all[idx].any()),
            provenance=obj["provenance"][ok[0] if len(ok) else idx[0]],
            model=next((m for m in pick("model", idx) if m is not None), None),
        )
        out.append(row)
    return pd.DataFrame(out)
