"""The per-configuration tables (one row per run, configuration and cell: accuracy, speed, memory, backends), each
described once (``GroupTable``) and built the same way (``group_table``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pandas as pd

from .display_table import Column, Table
from .frame import PAIR_FIELDS
from .tables import ratio, solved_text


def _bd(df: pd.DataFrame) -> pd.Series:
    return df["backend"].astype(str) + "/" + df["device"].astype(str)


# Each table says which groups, which columns, what is derived and how rows sort.
@dataclass(frozen=True)
class WhenVaries:
    """A column shown only when it takes more than one value among the table's rows (e.g. the run)."""

    column: Column


@dataclass(frozen=True)
class GroupTable:
    name: str
    title: str
    note: str
    columns: tuple[Column | WhenVaries, ...]
    sort: tuple[str, ...]
    rows: Callable[[pd.DataFrame], pd.Series] | None = None  # which groups; None: all
    derive: Callable[[pd.DataFrame], None] | None = None  # adds the derived columns, in place
    row_css: Callable[[pd.DataFrame], list[str]] | None = None


RUN = WhenVaries(Column("run", "run"))


def group_table(desc: GroupTable, groups: pd.DataFrame) -> Table:
    df = groups[desc.rows(groups)].copy() if desc.rows is not None and not groups.empty else groups.copy()
    cols = [c.column if isinstance(c, WhenVaries) else c for c in desc.columns
            if not isinstance(c, WhenVaries) or (c.column.key in df and df[c.column.key].nunique() > 1)]
    if not df.empty:
        df["backend_device"] = _bd(df)
        if desc.derive is not None:
            desc.derive(df)
        df = df.sort_values(list(desc.sort), kind="stable")
    else:
        df = pd.DataFrame(columns=[c.key for c in cols])
    df = df.reset_index(drop=True)
    return Table(desc.name, desc.title, cols, df, note=desc.note,
                 row_css=desc.row_css(df) if desc.row_css is not None else [])


def _derive_accuracy(df: pd.DataFrame) -> None:
    df["solved_text"] = [solved_text(s, n) for s, n in zip(df["solved"], df["n_acc"])]
    df["reached_text"] = [solved_text(s, n) for s, n in zip(df["reached"], df["n_tt"])]


def _derive_memory(df: pd.DataFrame) -> None:
    df["mem_ratio"] = [ratio(a, b) for a, b in zip(df["peak_bytes"], df["activation_bytes"])]


# not part of what a training step computes: the backend knobs ([options.torch] in a suite) and the training
# budget (a timing-only backend of the answer suite runs steps=0 beside numpy's 1500); keeping either would make
# each backend its own group (each "fastest", 1.00×)
NOT_THE_STEP = ("run", "backend", "device", "options", "steps", "eval_every", "eval_batches", "stop_at_target")


def _derive_vs_fastest(df: pd.DataFrame) -> None:
    # the same step on every backend/device
    key = ["run", *[f for f in PAIR_FIELDS if f not in NOT_THE_STEP], "cell_key"]
    df["vs_fastest"] = df["train_s"] / df.groupby(key, dropna=False)["train_s"].transform("min")


def _ran_ok(groups: pd.DataFrame) -> pd.Series:
    return groups["n_ok"] > 0


T, H = Column("seq_len", "T", "int", "num"), Column("hidden", "H", "int", "num")
B = Column("batch_size", "B", "int", "num")
TASK, DTYPE, BACKEND, CELL = (Column("task", "task"), Column("dtype", "dtype"), Column("backend_device", "backend"),
                              Column("cell_key", "cell"))

ACCURACY = GroupTable(
    "accuracy", "Accuracy vs dependency length",
    "Held-out metric after the step budget, mean and standard deviation over seeds; time-to-target: the "
    "step of the first held-out evaluation under the target (every eval_every steps), Kaplan–Meier median "
    "over seeds.",
    (RUN, TASK, T, H, BACKEND, CELL,
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
     Column("steps", "step budget", "int", "num")),
    sort=("run", "task", "seq_len", "hidden", "backend_device", "cell_key"),
    rows=lambda g: g["n_acc"] > 0, derive=_derive_accuracy,
)
SPEED = GroupTable(
    "speed", "Speed and achieved throughput",
    "Seeds aggregated by the median. % of peak compares with the GEMM calibration at the run's start; "
    "% of GEMM floor with the step's own GEMMs timed at their shapes on this machine.",
    (RUN, TASK, T, H, B, DTYPE, BACKEND, CELL,
     Column("implementation", "implementation"),
     Column("train_s", "train step (ms)", "seconds_ms", "num", "median over timed steps and seeds"),
     Column("infer_s", "inference (ms)", "seconds_ms", "num"),
     Column("flops_train_step", "FLOPs / step", "float", "num", "analytic, spec.py"),
     Column("gflops", "GFLOP/s", "float", "num"),
     Column("pct_peak", "% of peak", "pct", "num", "achieved / the run's calibrated float32 GEMM GFLOP/s"),
     Column("pct_floor", "% of GEMM floor", "pct", "num",
            "the step's own GEMMs timed at their shapes here / the step's time (gemm_floor.py)"),
     WhenVaries(Column("denormals", "denormals"))),
    sort=("run", "task", "seq_len", "hidden", "backend_device", "cell_key"),
    rows=_ran_ok,
)
MEMORY = GroupTable(
    "memory", "Memory: measured peak vs analytic activations",
    "Host figures include framework workspaces and allocator slack; the analytic figure counts only "
    "the activations BPTT keeps.",
    (RUN, TASK, T, H, B, DTYPE, BACKEND, CELL,
     Column("peak_bytes", "measured peak", "bytes", "num"),
     Column("peak_name", "measured as"),
     Column("activation_bytes", "analytic activations", "bytes", "num", "least BPTT keeps: B·T·H·(G+S)·bytes a layer"),
     Column("mem_ratio", "measured/analytic", "ratio", "num ratio")),
    sort=("run", "backend_device", "task", "seq_len", "hidden", "cell_key"),
    rows=_ran_ok, derive=_derive_memory,
)
BACKENDS = GroupTable(
    "backends", "The same case across backends",
    "Which implementation ran is as each backend recorded it; a fallback shows here.",
    (RUN, TASK, T, H, CELL, DTYPE, BACKEND,
     Column("implementation", "kernel that ran", css="wrap"),
     Column("train_s", "train step (ms)", "seconds_ms", "num"),
     Column("vs_fastest", "× fastest", "ratio", "num ratio", "train step time / the fastest backend's"),
     Column("infer_s", "inference (ms)", "seconds_ms", "num"),
     Column("final_loss", "held-out loss", "float", "num"),
     Column("status", "status"),
     Column("reason", "reason", css="wrap")),
    sort=("run", "task", "seq_len", "hidden", "cell_key", "dtype", "train_s"),
    derive=_derive_vs_fastest,
    row_css=lambda df: ["failed" if s != "ok" else "" for s in df.get("status", [])],
)


def accuracy_table(groups: pd.DataFrame) -> Table:
    return group_table(ACCURACY, groups)


def speed_table(groups: pd.DataFrame) -> Table:
    return group_table(SPEED, groups)


def memory_table(groups: pd.DataFrame) -> Table:
    return group_table(MEMORY, groups)


def backends_table(groups: pd.DataFrame) -> Table:
    return group_table(BACKENDS, groups)
