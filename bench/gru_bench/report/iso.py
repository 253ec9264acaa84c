"""GRU vs LSTM at equal parameter count: for every LSTM, the GRU hidden size whose parameter count is closest
(``spec.iso_param_hidden``) and the measured GRU nearest to it."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd

from .. import spec
from .display_table import Column, Table
from .frame import PAIR_FIELDS
from .tables import CELL_CSS, ratio, solved_text

ISO_TOLERANCE = 0.10  # a measured GRU counts as iso-parameter when its parameters are within ±10 % of the LSTM's


def lstm_model(lstm: pd.Series) -> tuple[spec.ModelSpec | None, str]:
    """The model an LSTM configuration ran, and where it is known from: the record (``CaseResult.model``); for
    records written before it was stored, rebuilt from the Case (H, layers) and its task's definition (I, O, head,
    loss: ``tasks.Task.model_io``, the worker's own source). ``(None, "")`` when this version knows no such task."""
    m = lstm.get("model")
    if isinstance(m, spec.ModelSpec):
        return m, "recorded model"
    from ..tasks import get_task  # tasks.py is plain NumPy: no framework is imported

    try:
        task = get_task(str(lstm["task"]))
    except ValueError:  # get_task's error for a task this version does not define: only "not known"
        return None, ""
    io = task.model_io(int(lstm["seq_len"]))
    return spec.ModelSpec("lstm", int(io["input_size"]), int(lstm["hidden"]), int(io["output_size"]),
                          int(lstm["num_layers"]), head=str(io["head"]), loss=str(io["loss"])), "task definition"


def iso_frame(groups: pd.DataFrame) -> pd.DataFrame:
    """For every LSTM configuration: the GRU hidden size with the closest parameter count (``spec.iso_param_hidden``)
    and, per GRU variant, the measured GRU nearest to it."""
    rows = []
    if groups.empty:
        return pd.DataFrame()
    for _, family in groups.groupby(["run_index", "family_id"], sort=False):
        grus = family[family["cell"] == "gru"]
        for _, l in family[family["cell"] == "lstm"].iterrows():
            rows += _iso_rows(l, grus, *lstm_model(l))
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


def _iso_rows(l: pd.Series, grus: pd.DataFrame, model: spec.ModelSpec | None, source: str) -> list[dict]:
    base = {k: l[k] for k in PAIR_FIELDS}
    base.update(
        backend_device=f"{l['backend']}/{l['device']}",
        lstm_hidden=int(l["hidden"]),
        lstm_params=l["params"],
        lstm_train_s=l["train_s"],
        lstm_infer_s=l["infer_s"],
        lstm_final_loss=l["final_loss"],
        lstm_final_metric=l["final_metric"],
        lstm_solved=solved_text(l["solved"], l["n_acc"]),
        metric=l["metric"],
    )
    if model is None:
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
    iso_h = spec.iso_param_hidden(model, "gru")
    iso_p = spec.param_count(replace(model, cell="gru", variant=None, hidden_size=iso_h))
    rows = []
    for v in sorted(grus["variant"].unique()) or [""]:
        cand = grus[grus["variant"] == v] if v else grus
        row = {
            **base,
            "iso_hidden": iso_h,
            "iso_params": iso_p,
            "gru_variant": v,
            "io_source": source,
            "match": f"not measured: add hidden={iso_h} to the suite",
        }
        if len(cand):
            near = cand.iloc[int(np.argmin(np.abs(cand["hidden"].to_numpy() - iso_h)))]
            pr = ratio(near["params"], l["params"])
            if not math.isnan(pr) and abs(pr - 1) <= ISO_TOLERANCE:
                row.update(
                    gru_hidden=int(near["hidden"]),
                    gru_params=near["params"],
                    params_ratio=pr,
                    gru_train_s=near["train_s"],
                    gru_infer_s=near["infer_s"],
                    gru_final_loss=near["final_loss"],
                    gru_final_metric=near["final_metric"],
                    gru_solved=solved_text(near["solved"], near["n_acc"]),
                    time_ratio=ratio(near["train_s"], l["train_s"]),
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
