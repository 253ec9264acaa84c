"""The history view's data: one value per (series, commit), with change points and their verdicts.

``history_frame(records)`` reads ``gru_bench.history`` (``history_series`` and ``change_points``: the per-case
series over commits and the step detector shared with ``gru-bench compare``) when it is importable; without it, a
plain series of median step times. A custom ``provider(records)`` may replace both; it returns the frame below.

Columns the report reads: ``series`` (one line), ``commit``, ``created`` (ISO time, orders commits), ``value``;
optional ``cell_key`` (colour), ``change_point`` (bool: starred), ``verdict`` (text), ``unit`` (axis label).
"""

from __future__ import annotations

from typing import Callable

import pandas as pd

from ..schema import RunRecord
from .frame import cell_key

HistoryProvider = Callable[[list[RunRecord]], pd.DataFrame]
COLUMNS = ["series", "commit", "created", "value", "cell_key", "unit", "change_point", "verdict"]


def spans_commits(records: list[RunRecord]) -> bool:
    return len({r.git.commit for r in records if r.git.commit}) > 1


def basic_series(cases: pd.DataFrame) -> pd.DataFrame:
    """Median train step (ms) per case configuration (seeds pooled) and commit; no change detection."""
    ok = cases[(cases["status"] == "ok") & cases["train_s"].notna() & (cases["commit"] != "")]
    if ok.empty:
        return pd.DataFrame(columns=COLUMNS)
    # a series is a seed group (Case.group_id), named by its label without the seed
    name = ok["label"].str.replace(r" seed=\d+$", "", regex=True)
    clash = name.groupby(name).transform(lambda n: ok.loc[n.index, "group_id"].nunique() > 1)
    ok = ok.assign(series=name.where(~clash, name + " (" + ok["group_id"].str[:6] + ")"))
    g = (
        ok.groupby(["group_id", "commit"], sort=False)
        .agg(series=("series", "first"), created=("created", "min"), value=("train_s", "median"),
             cell_key=("cell_key", "first"))
        .reset_index()
    )
    g["value"] = g["value"] * 1e3
    g["unit"] = "train step (ms)"
    g["change_point"] = False
    g["verdict"] = ""
    return g[COLUMNS]


def from_history_module(records: list[RunRecord]) -> pd.DataFrame | None:
    """Train-step series and change points from ``gru_bench.history``; ``None`` when that module is missing."""
    try:
        from ..history import change_points, history_series
    except ImportError:
        return None
    s = history_series(records, metrics=("train_time",))
    if s.empty:
        return pd.DataFrame(columns=COLUMNS)
    steps = change_points(s)
    cells = {r.case_id: cell_key(r.case.cell, r.case.variant) for rec in records for r in rec.cases}
    multi_machine = s["machine_id"].nunique() > 1
    out = pd.DataFrame(
        {
            "series": s["label"] + (" @ " + s["machine_id"] if multi_machine else ""),
            "commit": s["commit"].astype(str),
            "created": s["created"],
            "value": s["value"] * 1e3,
            "cell_key": s["case_id"].map(cells).fillna(""),
            "unit": "train step (ms)",
            "change_point": False,
            "verdict": "",
        }
    )
    for _, st in steps.iterrows():
        hit = (s["machine_id"] == st["machine_id"]) & (s["case_id"] == st["case_id"]) & (s["commit"] == st["commit"])
        p = "" if st["p_value"] is None or pd.isna(st["p_value"]) else f", p={st['p_value']:.2g}"
        out.loc[hit, "change_point"] = True
        out.loc[hit, "verdict"] = f"{st['direction']} {st['change']:.2f}× vs {str(st['commit_before'])[:10]}{p}"
    return out[COLUMNS]


def history_frame(
    records: list[RunRecord], cases: pd.DataFrame, provider: HistoryProvider | None = None
) -> tuple[pd.DataFrame, str]:
    """The history frame and a note for the reader (which source, or why it fell back)."""
    try:
        frame = provider(records) if provider is not None else from_history_module(records)
    except Exception as e:  # noqa: BLE001 - an add-on failing must not cost the whole report
        return basic_series(cases), f"History module failed ({type(e).__name__}: {e}); plain median step times shown."
    if frame is None:
        return basic_series(cases), "Median train step per commit (no change-point detection available)."
    return frame, "Median train step per commit; stars mark change points found by the history module's step detector."
