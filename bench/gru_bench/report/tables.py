"""The report's tables, built from the case and group frames of ``frame.py``.

Expected GRU/LSTM ratios come from ``spec.py``: per layer the GRU has 3 gate blocks and the LSTM 4, so parameters
and GEMM FLOPs are ≈ 3/4 (exactly 3/4 for the recurrent layers; the shared head moves it slightly).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import spec
from .frame import CELL_KEYS, PAIR_FIELDS
from .modelio import ModelIO, from_provenance, from_task, io_from_param_pair, model_spec
from .table import Column, Table

EXPECTED_RATIO = 0.75  # GRU/LSTM parameters and FLOPs: 3 gate blocks vs 4 (spec.GATES)
FOLLOWS_TOLERANCE = 0.20  # the time ratio "follows" the FLOPs ratio when within ±20 % of it
ISO_TOLERANCE = 0.10  # a measured GRU counts as iso-parameter when its parameters are within ±10 % of the LSTM's

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


def _ratio(a, b) -> float:
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


def _solved_text(solved, n_acc) -> str:
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
                row[f"{side}_solved"] = _solved_text(s["solved"], s["n_acc"]) if s is not None else ""
                row[f"{side}_status"] = _status_text(s)
                row[f"{side}_impl"] = s["implementation"] if s is not None else ""
            row["metric"] = next((s["metric"] for s in (g, l) if s is not None and s["metric"]), "")
            row["baseline"] = (
                row["gru_baseline_metric"] if not pd.isna(row["gru_baseline_metric"]) else row["lstm_baseline_metric"]
            )
            row["params_ratio"] = _ratio(row["gru_params"], row["lstm_params"])
            row["flops_ratio"] = _ratio(row["gru_flops_train_step"], row["lstm_flops_train_step"])
            row["time_ratio"] = _ratio(row["gru_train_s"], row["lstm_train_s"])
            row["infer_ratio"] = _ratio(row["gru_infer_s"], row["lstm_infer_s"])
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


# ------------------------------------------------------------------------------------------- iso-parameter
def model_io_for(lstm: pd.Series, family: pd.DataFrame) -> ModelIO | None:
    """Input/output sizes of an LSTM group's model (see ``modelio``); ``family``: its configurations over H."""
    io = from_provenance(lstm.get("provenance") or {})
    if io is not None:
        return io
    same = family[(family["hidden"] == lstm["hidden"]) & family["params"].notna()]
    g = same[same["cell"] == "gru"]["params"]
    if len(g) and not pd.isna(lstm["params"]):
        io = io_from_param_pair(int(lstm["hidden"]), int(lstm["num_layers"]), int(g.iloc[0]), int(lstm["params"]))
        if io is not None:
            return io
    return from_task(str(lstm["task"]), int(lstm["seq_len"]))


def iso_frame(groups: pd.DataFrame) -> pd.DataFrame:
    """For every LSTM configuration: the GRU hidden size with the closest parameter count (``spec.iso_param_hidden``)
    and, per GRU variant, the measured GRU nearest to it."""
    rows = []
    if groups.empty:
        return pd.DataFrame()
    for _, family in groups.groupby(["run_index", "family_id"], sort=False):
        grus = family[family["cell"] == "gru"]
        for _, l in family[family["cell"] == "lstm"].iterrows():
            rows += _iso_rows(l, grus, model_io_for(l, family))
    if not rows:  # no LSTM in these runs
        return pd.DataFrame()
    df = pd.DataFrame(rows)
    for k in (
        "gru_hidden",
        "gru_params",
        "params_ratio",
        "gru_train_s",
        "gru_infer_s",
        "gru_final_loss",
        "gru_final_metric",
        "time_ratio",
    ):
        if k not in df:
            df[k] = np.nan
    if "gru_solved" not in df:
        df["gru_solved"] = ""
    df["gru_solved"] = df["gru_solved"].fillna("")
    return df.sort_values(
        ["run", "task", "seq_len", "lstm_hidden", "backend_device", "gru_variant"], kind="stable"
    ).reset_index(drop=True)


def _iso_rows(l: pd.Series, grus: pd.DataFrame, io: ModelIO | None) -> list[dict]:
    base = {k: l[k] for k in PAIR_FIELDS}
    base.update(
        backend_device=f"{l['backend']}/{l['device']}",
        lstm_hidden=int(l["hidden"]),
        lstm_params=l["params"],
        lstm_train_s=l["train_s"],
        lstm_infer_s=l["infer_s"],
        lstm_final_loss=l["final_loss"],
        lstm_final_metric=l["final_metric"],
        lstm_solved=_solved_text(l["solved"], l["n_acc"]),
        metric=l["metric"],
    )
    if io is None:
        return [
            {
                **base,
                "iso_hidden": np.nan,
                "iso_params": np.nan,
                "gru_variant": "",
                "match": "model sizes unknown (task not recognised)",
                "io_source": "",
            }
        ]
    iso_h = spec.iso_param_hidden(model_spec("lstm", None, int(l["hidden"]), int(l["num_layers"]), io), "gru")
    iso_p = spec.param_count(model_spec("gru", None, iso_h, int(l["num_layers"]), io))
    rows = []
    for v in sorted(grus["variant"].unique()) or [""]:
        cand = grus[grus["variant"] == v] if v else grus
        row = {
            **base,
            "iso_hidden": iso_h,
            "iso_params": iso_p,
            "gru_variant": v,
            "io_source": io.source,
            "match": f"not measured: add hidden={iso_h} to the suite",
        }
        if len(cand):
            near = cand.iloc[int(np.argmin(np.abs(cand["hidden"].to_numpy() - iso_h)))]
            pr = _ratio(near["params"], l["params"])
            if not math.isnan(pr) and abs(pr - 1) <= ISO_TOLERANCE:
                row.update(
                    gru_hidden=int(near["hidden"]),
                    gru_params=near["params"],
                    params_ratio=pr,
                    gru_train_s=near["train_s"],
                    gru_infer_s=near["infer_s"],
                    gru_final_loss=near["final_loss"],
                    gru_final_metric=near["final_metric"],
                    gru_solved=_solved_text(near["solved"], near["n_acc"]),
                    time_ratio=_ratio(near["train_s"], l["train_s"]),
                    match="exact" if int(near["hidden"]) == iso_h else f"within {abs(pr - 1):.0%}",
                )
        rows.append(row)
    return rows


def iso_table(groups: pd.DataFrame) -> Table:
    df = iso_frame(groups)
    runs = df["run"].nunique() if not df.empty else 1
    ra, lc = CELL_CSS["GRU reset_after"], CELL_CSS["LSTM"]
    cols = [
        *([Column("run", "run")] if runs > 1 else []),
        Column("task", "task"),
        Column("seq_len", "T", "int", "num"),
        Column("backend_device", "backend"),
        Column("lstm_hidden", "H LSTM", "int", f"num {lc}"),
        Column("lstm_params", "params LSTM", "int", f"num {lc}"),
        Column("iso_hidden", "iso H GRU (spec)", "int", "num", "GRU hidden size whose parameter count is closest"),
        Column("iso_params", "params at iso H", "int", "num"),
        Column("gru_variant", "GRU variant"),
        Column("gru_hidden", "H GRU measured", "int", f"num {ra}"),
        Column("params_ratio", "params GRU/LSTM", "ratio", "num ratio"),
        Column("gru_train_s", "train step GRU (ms)", "seconds_ms", f"num {ra}"),
        Column("lstm_train_s", "train step LSTM (ms)", "seconds_ms", f"num {lc}"),
        Column("time_ratio", "time GRU/LSTM", "ratio", "num ratio"),
        Column("metric", "metric"),
        Column("gru_final_metric", "final GRU", "float", f"num {ra}"),
        Column("lstm_final_metric", "final LSTM", "float", f"num {lc}"),
        Column("gru_solved", "solved GRU", "count", f"num {ra}"),
        Column("lstm_solved", "solved LSTM", "count", f"num {lc}"),
        Column(
            "match", "match", css="wrap", tip=f"a measured GRU within ±{ISO_TOLERANCE:.0%} of the LSTM's parameters"
        ),
    ]
    if df.empty:
        df = pd.DataFrame(columns=[c.key for c in cols])
    return Table(
        "iso_parameter",
        "GRU vs LSTM at equal parameter count",
        cols,
        df,
        note=(
            "For each LSTM, the GRU hidden size whose parameter count is closest (spec.iso_param_hidden), "
            f"and the measured GRU nearest to it when its parameters are within ±{ISO_TOLERANCE:.0%}."
        ),
    )


# ----------------------------------------------------------------------------------------------- the rest
def _bd(df: pd.DataFrame) -> pd.Series:
    return df["backend"].astype(str) + "/" + df["device"].astype(str)


def accuracy_table(groups: pd.DataFrame) -> Table:
    df = groups[groups["n_acc"] > 0].copy() if not groups.empty else groups.copy()
    cols = [
        *([Column("run", "run")] if not df.empty and df["run"].nunique() > 1 else []),
        Column("task", "task"),
        Column("seq_len", "T", "int", "num"),
        Column("hidden", "H", "int", "num"),
        Column("backend_device", "backend"),
        Column("cell_key", "cell"),
        Column("metric", "metric"),
        Column("final_metric", "final (mean)", "float", "num"),
        Column("final_metric_std", "± std", "float", "num"),
        Column("baseline_metric", "trivial baseline", "float", "num"),
        Column("final_loss", "held-out loss", "float", "num"),
        Column("baseline_loss", "baseline loss", "float", "num"),
        Column("solved_text", "solved", "count", "num", "seeds below 10 % of the baseline loss"),
        Column("median_steps_to_target", "steps to target (median)", "int", "num",
               "Kaplan–Meier median over seeds of the first evaluation whose held-out loss is under the target; "
               "unsolved seeds censored at the budget; empty when under half reach it"),
        Column("reached_text", "reached target", "count", "num", "seeds whose held-out loss reached the target"),
        Column("best_loss", "best held-out loss", "float", "num", "lowest over the evaluations, mean over seeds"),
        Column("target_loss", "target loss", "float", "num", "10 % of the baseline loss"),
        Column("steps", "step budget", "int", "num"),
    ]
    if not df.empty:
        df["backend_device"] = _bd(df)
        df["solved_text"] = [_solved_text(s, n) for s, n in zip(df["solved"], df["n_acc"])]
        df["reached_text"] = [_solved_text(s, n) for s, n in zip(df["reached"], df["n_tt"])]
        df = df.sort_values(["run", "task", "seq_len", "hidden", "backend_device", "cell_key"], kind="stable")
    else:
        df = pd.DataFrame(columns=[c.key for c in cols])
    return Table(
        "accuracy",
        "Accuracy vs dependency length",
        cols,
        df.reset_index(drop=True),
        note="Held-out metric after the step budget, mean and standard deviation over seeds; time-to-target: the "
        "step of the first held-out evaluation under the target (every eval_every steps), Kaplan–Meier median "
        "over seeds.",
    )


def speed_table(groups: pd.DataFrame) -> Table:
    df = groups[groups["n_ok"] > 0].copy() if not groups.empty else groups.copy()
    cols = [
        *([Column("run", "run")] if not df.empty and df["run"].nunique() > 1 else []),
        Column("task", "task"),
        Column("seq_len", "T", "int", "num"),
        Column("hidden", "H", "int", "num"),
        Column("batch_size", "B", "int", "num"),
        Column("dtype", "dtype"),
        Column("backend_device", "backend"),
        Column("cell_key", "cell"),
        Column("implementation", "implementation"),
        Column("train_s", "train step (ms)", "seconds_ms", "num", "median over timed steps and seeds"),
        Column("infer_s", "inference (ms)", "seconds_ms", "num"),
        Column("flops_train_step", "FLOPs / step", "float", "num", "analytic, spec.py"),
        Column("gflops", "GFLOP/s", "float", "num"),
        Column("pct_peak", "% of peak", "pct", "num", "achieved / the run's calibrated float32 GEMM GFLOP/s"),
        Column("pct_floor", "% of GEMM floor", "pct", "num",
               "the step's own GEMMs timed at their shapes here / the step's time (gemm_floor.py)"),
        *([Column("denormals", "denormals")] if "denormals" in df and df["denormals"].nunique() > 1 else []),
    ]
    if not df.empty:
        df["backend_device"] = _bd(df)
        df = df.sort_values(["run", "task", "seq_len", "hidden", "backend_device", "cell_key"], kind="stable")
    else:
        df = pd.DataFrame(columns=[c.key for c in cols])
    return Table(
        "speed",
        "Speed and achieved throughput",
        cols,
        df.reset_index(drop=True),
        note="Seeds aggregated by the median. % of peak compares with the GEMM calibration at the run's start; "
        "% of GEMM floor with the step's own GEMMs timed at their shapes on this machine.",
    )


def memory_table(groups: pd.DataFrame) -> Table:
    df = groups[groups["n_ok"] > 0].copy() if not groups.empty else groups.copy()
    cols = [
        *([Column("run", "run")] if not df.empty and df["run"].nunique() > 1 else []),
        Column("task", "task"),
        Column("seq_len", "T", "int", "num"),
        Column("hidden", "H", "int", "num"),
        Column("batch_size", "B", "int", "num"),
        Column("dtype", "dtype"),
        Column("backend_device", "backend"),
        Column("cell_key", "cell"),
        Column("peak_bytes", "measured peak", "bytes", "num"),
        Column("peak_name", "measured as"),
        Column("activation_bytes", "analytic activations", "bytes", "num", "B·T·H·gates·bytes per layer"),
        Column("mem_ratio", "measured/analytic", "ratio", "num ratio"),
    ]
    if not df.empty:
        df["backend_device"] = _bd(df)
        df["mem_ratio"] = [_ratio(a, b) for a, b in zip(df["peak_bytes"], df["activation_bytes"])]
        df = df.sort_values(["run", "backend_device", "task", "seq_len", "hidden", "cell_key"], kind="stable")
    else:
        df = pd.DataFrame(columns=[c.key for c in cols])
    return Table(
        "memory",
        "Memory: measured peak vs analytic activations",
        cols,
        df.reset_index(drop=True),
        note="Host figures include framework workspaces and allocator slack; the analytic figure counts only "
        "the activations BPTT keeps.",
    )


def backends_table(groups: pd.DataFrame) -> Table:
    df = groups.copy()
    cols = [
        *([Column("run", "run")] if not df.empty and df["run"].nunique() > 1 else []),
        Column("task", "task"),
        Column("seq_len", "T", "int", "num"),
        Column("hidden", "H", "int", "num"),
        Column("cell_key", "cell"),
        Column("dtype", "dtype"),
        Column("backend_device", "backend"),
        Column("implementation", "kernel that ran", css="wrap"),
        Column("train_s", "train step (ms)", "seconds_ms", "num"),
        Column("vs_fastest", "× fastest", "ratio", "num ratio", "train step time / the fastest backend's"),
        Column("infer_s", "inference (ms)", "seconds_ms", "num"),
        Column("final_loss", "held-out loss", "float", "num"),
        Column("status", "status"),
        Column("reason", "reason", css="wrap"),
    ]
    if not df.empty:
        df["backend_device"] = _bd(df)
        key = ["run", *[f for f in PAIR_FIELDS if f not in ("run", "backend", "device")], "cell_key"]
        fastest = df.groupby(key, dropna=False)["train_s"].transform("min")
        df["vs_fastest"] = df["train_s"] / fastest
        df = df.sort_values(["run", "task", "seq_len", "hidden", "cell_key", "dtype", "train_s"], kind="stable")
    else:
        df = pd.DataFrame(columns=[c.key for c in cols])
    return Table(
        "backends",
        "The same case across backends",
        cols,
        df.reset_index(drop=True),
        note="Which implementation ran is as each backend recorded it; a fallback shows here.",
        row_css=["failed" if s != "ok" else "" for s in df.get("status", [])],
    )


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
                row[f"ratio_{i}"] = _ratio(row[f"train_s_{i}"], b["train_s"] if b is not None else np.nan)
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
