"""The report's GRU-vs-LSTM tables (verdict, headline), the problems and run-comparison tables, and the helpers
the other table modules share (``iso``: equal parameter count; ``group_tables``: one row per configuration).

Expected GRU/LSTM ratios come from ``spec.py``: per layer the GRU has 3 gate blocks and the LSTM 4, so parameters
and GEMM FLOPs are ≈ 3/4 (exactly 3/4 for the recurrent layers; the shared head moves it slightly).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .frame import CELL_KEYS, PAIR_FIELDS
from .display_table import Column, Table

EXPECTED_RATIO = 0.75  # GRU/LSTM parameters and FLOPs: 3 gate blocks vs 4 (spec.GATES)
FOLLOWS_TOLERANCE = 0.20  # the time ratio "follows" the FLOPs ratio when within ±20 % of it

CELL_CSS = {"GRU reset_after": "c-gru-ra", "GRU reset_before": "c-gru-rb", "LSTM": "c-lstm"}
SHORT = {"GRU reset_after": "GRU", "GRU reset_before": "GRU", "LSTM": "LSTM"}
# Configuration columns shown only when they vary (constant ones go in the table note).
OPTIONAL_CONFIG = [
    ("num_layers", "L", "int"),
    ("batch_size", "B", "int"),
    ("dtype", "dtype", "text"),
    ("optimizer", "optimizer", "text"),
    ("lr", "lr", "float"),
    ("steps", "steps", "int"),
    ("init", "init", "text"),
    ("options", "options", "text"),
]


def ratio(a, b) -> float:
    try:
        a, b = float(a), float(b)
    except (TypeError, ValueError):
        return np.nan
    return a / b if b and not (math.isnan(a) or math.isnan(b)) else np.nan


def follows(time_ratio: float, flops_ratio: float, tol: float = FOLLOWS_TOLERANCE) -> str:
    """Whether the measured GRU/LSTM time ratio follows the FLOPs ratio (within ±tol, relative)."""
    if math.isnan(time_ratio) or math.isnan(flops_ratio):
        return ""
    r = time_ratio / flops_ratio
    if abs(r - 1) <= tol:
        return "yes"
    return "no: GRU slower than FLOPs predict" if r > 1 else "no: GRU faster than FLOPs predict"


def _config_columns(df: pd.DataFrame, runs: int, skip: tuple[str, ...] = ()) -> tuple[list[Column], str]:
    """The varying optional configuration columns, and a note naming the constant ones."""
    cols, constant = [], []
    if runs > 1:
        cols.append(Column("run", "run"))
    for key, label, kind in OPTIONAL_CONFIG:
        if key not in df.columns or key in skip:
            continue
        vals = df[key].dropna().astype(str).unique()
        if len(vals) > 1:
            cols.append(Column(key, label, kind, "num" if kind != "text" else ""))
        elif len(vals) == 1 and vals[0] != "":
            constant.append(f"{label}={vals[0]}")
    return cols, ("All rows: " + ", ".join(constant) + ".") if constant else ""


def solved_text(solved, n_acc) -> str:
    return f"{int(solved)}/{int(n_acc)}" if n_acc else ""


def _status_text(g: pd.Series | None) -> str:
    if g is None:
        return "not run"
    if g["all_ok"]:
        return "ok"
    return f"{g['status']}: {g['reason']}" if g["reason"] else str(g["status"])


# ------------------------------------------------------------------------------------------------ verdict
def verdict_frame(groups: pd.DataFrame) -> pd.DataFrame:
    """One row per (configuration, GRU variant): the GRU beside the LSTM of the same configuration (equal H)."""
    rows = []
    if groups.empty:
        return pd.DataFrame()
    for _, pair in groups.groupby(["run_index", "pair_id"], sort=False):
        lstm = pair[pair["cell"] == "lstm"]
        grus = pair[pair["cell"] == "gru"]
        l = lstm.iloc[0] if len(lstm) else None
        gru_rows = [g for _, g in grus.iterrows()] or [None]
        for g in gru_rows:
            base = g if g is not None else l
            row = {k: base[k] for k in PAIR_FIELDS}
            row["backend_device"] = f"{base['backend']}/{base['device']}"
            row["gru_variant"] = g["variant"] if g is not None else ""
            row["cell_key"] = g["cell_key"] if g is not None else "LSTM"
            for side, s in (("gru", g), ("lstm", l)):
                for k in (
                    "params",
                    "flops_train_step",
                    "train_s",
                    "infer_s",
                    "peak_bytes",
                    "final_metric",
                    "final_loss",
                    "baseline_metric",
                    "baseline_loss",
                ):
                    row[f"{side}_{k}"] = s[k] if s is not None else np.nan
                row[f"{side}_solved"] = solved_text(s["solved"], s["n_acc"]) if s is not None else ""
                row[f"{side}_status"] = _status_text(s)
                row[f"{side}_impl"] = s["implementation"] if s is not None else ""
            row["metric"] = next((s["metric"] for s in (g, l) if s is not None and s["metric"]), "")
            row["baseline"] = (
                row["gru_baseline_metric"] if not pd.isna(row["gru_baseline_metric"]) else row["lstm_baseline_metric"]
            )
            row["params_ratio"] = ratio(row["gru_params"], row["lstm_params"])
            row["flops_ratio"] = ratio(row["gru_flops_train_step"], row["lstm_flops_train_step"])
            row["time_ratio"] = ratio(row["gru_train_s"], row["lstm_train_s"])
            row["infer_ratio"] = ratio(row["gru_infer_s"], row["lstm_infer_s"])
            row["follows"] = follows(row["time_ratio"], row["flops_ratio"])
            row["status"] = "; ".join(
                f"{n}: {row[f'{s}_status']}"
                for s, n in (("gru", "GRU"), ("lstm", "LSTM"))
                if row[f"{s}_status"] not in ("ok", "not run")
            )
            row["incomplete"] = bool(row["status"])
            if g is None or l is None:
                row["status"] = "; ".join(
                    filter(None, [row["status"], f"no {'GRU' if g is None else 'LSTM'} at this size"])
                )
            rows.append(row)
    df = pd.DataFrame(rows)
    return df.sort_values(
        ["run", "task", "seq_len", "hidden", "backend_device", "gru_variant"], kind="stable"
    ).reset_index(drop=True)


def verdict_table(groups: pd.DataFrame) -> Table:
    df = verdict_frame(groups)
    cfg, note = _config_columns(df, df["run"].nunique(), skip=("steps",)) if not df.empty else ([], "")
    ra, lc = CELL_CSS["GRU reset_after"], CELL_CSS["LSTM"]
    cols = [
        *[c for c in cfg if c.key == "run"],
        Column("task", "task"),
        Column("seq_len", "T", "int", "num", "dependency length"),
        Column("hidden", "H", "int", "num", "hidden size (equal for GRU and LSTM)"),
        *[c for c in cfg if c.key != "run"],
        Column("backend_device", "backend"),
        Column("gru_variant", "GRU variant", css="gru-variant"),
        Column("gru_params", "params GRU", "int", f"num {ra}"),
        Column("lstm_params", "params LSTM", "int", f"num {lc}"),
        Column(
            "params_ratio", "params GRU/LSTM, expected 0.75", "ratio", "num ratio", "expected ≈ 3/4: 3 gate blocks vs 4"
        ),
        Column("flops_ratio", "FLOPs GRU/LSTM, expected 0.75", "ratio", "num ratio", "analytic GEMM FLOPs, spec.py"),
        Column("gru_train_s", "train step GRU (ms)", "seconds_ms", f"num {ra}", "median of the timed steps"),
        Column("lstm_train_s", "train step LSTM (ms)", "seconds_ms", f"num {lc}", "median of the timed steps"),
        Column("time_ratio", "time GRU/LSTM", "ratio", "num ratio"),
        Column("follows", "time follows FLOPs?", tip=f"time ratio within ±{FOLLOWS_TOLERANCE:.0%} of the FLOPs ratio"),
        Column("gru_infer_s", "inference GRU (ms)", "seconds_ms", f"num {ra}"),
        Column("lstm_infer_s", "inference LSTM (ms)", "seconds_ms", f"num {lc}"),
        Column("gru_peak_bytes", "peak mem GRU", "bytes", f"num {ra}"),
        Column("lstm_peak_bytes", "peak mem LSTM", "bytes", f"num {lc}"),
        Column("metric", "metric"),
        Column("gru_final_metric", "final GRU", "float", f"num {ra}", "held-out, mean over seeds"),
        Column("lstm_final_metric", "final LSTM", "float", f"num {lc}", "held-out, mean over seeds"),
        Column("baseline", "trivial baseline", "float", "num"),
        Column("gru_solved", "solved GRU", "count", f"num {ra}", "seeds below 10 % of the baseline loss"),
        Column("lstm_solved", "solved LSTM", "count", f"num {lc}", "seeds below 10 % of the baseline loss"),
        Column("status", "status", css="wrap"),
    ]
    if df.empty:
        df = pd.DataFrame(columns=[c.key for c in cols])
    css = ["failed" if bad else "" for bad in df["incomplete"]] if "incomplete" in df else []
    return Table(
        "verdict",
        "GRU vs LSTM at equal hidden size",
        cols,
        df,
        note=(
            "One row per configuration and GRU variant, seeds aggregated (times: median; final metric: mean). " + note
        ).strip(),
        row_css=css,
    )


def headline(verdict: pd.DataFrame, groups: pd.DataFrame) -> list[dict]:
    """Per (run, task, backend): a few plain sentences a reader takes in first."""
    out = []
    if verdict.empty:
        return out
    for (run, task, bd), g in verdict.groupby(["run", "task", "backend_device"], sort=False):
        sel = groups[
            (groups["run"] == run) & (groups["task"] == task) & (groups["backend"] + "/" + groups["device"] == bd)
        ]
        tr = g["time_ratio"].dropna()
        fr = g.loc[tr.index, "flops_ratio"].dropna()
        lines = []
        if len(tr):
            gm = float(np.exp(np.log(tr).mean()))
            fe = float(np.exp(np.log(fr).mean())) if len(fr) else np.nan
            faster = "faster" if gm < 1 else "slower"
            lines.append(
                f"GRU train step {gm:.2f}× the LSTM's ({faster}; FLOPs predict {fe:.2f}×), "
                f"geometric mean over {len(tr)} comparison(s)."
            )
        acc = g[g["gru_final_loss"].notna() & g["lstm_final_loss"].notna()]
        if len(acc):
            better = int((acc["gru_final_loss"] < acc["lstm_final_loss"]).sum())
            lines.append(f"Held-out loss: GRU lower in {better} of {len(acc)} comparison(s).")
        solved = {c: (int(x["solved"].sum()), int(x["n_acc"].sum())) for c, x in sel.groupby("cell")}
        if any(n for _, n in solved.values()):
            frac = {c: f"{a}/{n}" if n else "–" for c, (a, n) in solved.items()}
            lines.append(f"Solved (seeds): GRU {frac.get('gru', '–')}, LSTM {frac.get('lstm', '–')}.")
        bad = sel[~sel["all_ok"]]
        if len(bad):
            what = "; ".join(
                f"{r['cell_key']} H={r['hidden']} T={r['seq_len']}: {r['status']}" for _, r in bad.iterrows()
            )
            lines.append(f"Did not finish: {what} (see Warnings).")
        out.append({"run": run, "task": task, "backend": bd, "lines": lines})
    return out


def problems_table(cases: pd.DataFrame, not_run: list[dict] | None = None) -> Table:
    """Every case that did not finish ok, with its reason, and the planned cases a stopped run never reached
    (``not_run``: dicts with run, label, status, reason, case_id): never dropped."""
    cols = [
        Column("run", "run"),
        Column("label", "case", css="wrap"),
        Column("status", "status"),
        Column("reason", "reason", css="wrap"),
        Column("case_id", "case id"),
    ]
    keys = [c.key for c in cols]
    bad = cases.loc[cases["status"] != "ok", keys] if not cases.empty else pd.DataFrame(columns=keys)
    extra = pd.DataFrame(not_run or [], columns=keys)
    df = (
        pd.concat([f for f in (bad, extra) if not f.empty], ignore_index=True)
        if len(bad) or len(extra)
        else pd.DataFrame(columns=keys)
    )
    return Table("problems", "Cases that did not finish", cols, df.reset_index(drop=True), row_css=["failed"] * len(df))


def comparison_table(cases: pd.DataFrame, run_names: list[str]) -> Table | None:
    """With several runs: each case (matched by ``case_id``) in every run, times relative to the first run."""
    if len(run_names) < 2 or cases.empty:
        return None
    counts = cases.groupby("case_id")["run_index"].nunique()
    shared = counts[counts > 1].index
    if not len(shared):
        return None
    sub = cases[cases["case_id"].isin(shared)]
    rows = []
    for cid, g in sub.groupby("case_id", sort=False):
        first = g.iloc[0]
        row = {"case_id": cid, "label": first["label"], "cell_key": first["cell_key"]}
        base = g[g["run_index"] == 0]
        b = base.iloc[0] if len(base) else None
        for i in range(len(run_names)):
            r = g[g["run_index"] == i]
            r = r.iloc[0] if len(r) else None
            row[f"train_s_{i}"] = r["train_s"] if r is not None and r["status"] == "ok" else np.nan
            row[f"status_{i}"] = r["status"] if r is not None else "missing"
            row[f"final_loss_{i}"] = r["final_loss"] if r is not None else np.nan
            if i:
                row[f"ratio_{i}"] = ratio(row[f"train_s_{i}"], b["train_s"] if b is not None else np.nan)
        rows.append(row)
    df = pd.DataFrame(rows)
    cols = [Column("label", "case"), Column("cell_key", "cell")]
    for i, name in enumerate(run_names):
        short = f"run {i + 1}"
        cols.append(Column(f"train_s_{i}", f"{short} train step (ms)", "seconds_ms", "num", name))
        if i:
            cols.append(Column(f"ratio_{i}", f"{short} / run 1", "ratio", "num ratio"))
        cols.append(Column(f"status_{i}", f"{short} status"))
        cols.append(Column(f"final_loss_{i}", f"{short} held-out loss", "float", "num"))
    return Table(
        "comparison",
        "Runs compared case by case",
        cols,
        df,
        note="Cases matched by configuration (case id). Ratios are medians' ratios; `gru-bench compare` "
        "gives the statistical verdict.",
    )


def keep_cells(groups: pd.DataFrame) -> list[str]:
    """The cell keys present, in the report's fixed order."""
    present = set(groups["cell_key"]) if not groups.empty else set()
    return [k for k in CELL_KEYS if k in present]
