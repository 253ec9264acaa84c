"""The report's plots: each function takes the frames of ``frame.py`` and returns a ``Plot`` (``figure``) or
``None`` when the data cannot show it (the report then says why)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .figure import (MAX_CURVE_ROWS, MAX_PANELS, WIDTH, Plot, equality_line, finish, log_axis, new_figure, points,
                     series_keys, series_label, size_axis, tasks_of, text)
from .palette import BASELINE_COLOR, backend_style, cell_color


# ---------------------------------------------------------------------------------------------- accuracy
def accuracy_vs_T(groups: pd.DataFrame) -> Plot | None:
    df = groups[groups["n_acc"] > 0]
    if df.empty:
        return None
    tasks = tasks_of(df)
    fig, axes = new_figure(1, len(tasks))
    multi_h = df.groupby("task")["hidden"].nunique().max() > 1
    multi_run = df["run"].nunique() > 1
    for ax, task in zip(axes[0], tasks):
        t = df[df["task"] == task].sort_values("seq_len")
        metric = text(t["metric"].iloc[0] or "metric")
        for key, s in t.groupby(series_keys(t, multi_h, multi_run), sort=False):
            k = dict(zip(series_keys(t, multi_h, multi_run), key))
            ax.errorbar(
                s["seq_len"],
                s["final_metric"],
                yerr=s["final_metric_std"].fillna(0),
                color=cell_color(k["cell_key"]),
                capsize=3,
                **backend_style(k["backend"], k["device"]),
                label=series_label(k, multi_h, multi_run),
                alpha=0.9,
            )
        base = t.dropna(subset=["baseline_metric"]).groupby("seq_len")["baseline_metric"].first()
        if len(base):
            ax.plot(
                base.index,
                base.values,
                color=BASELINE_COLOR,
                linestyle=(0, (4, 3)),
                linewidth=1.5,
                marker="",
                label="trivial baseline",
            )
        size_axis(ax, t["seq_len"])
        ax.set_title(text(task))
        ax.set_xlabel(
            "dependency length T (steps, log)" if t["seq_len"].nunique() > 1 else "dependency length T (steps)"
        )
        ax.set_ylabel(f"held-out {metric}")
    return finish(
        fig, df,
        "accuracy_vs_T",
        "Accuracy vs dependency length",
        "Held-out metric after the step budget (mean over seeds, bars: ± one standard deviation); "
        "dashed grey: the task's trivial baseline.",
        dashed="trivial baseline",
    )


# ------------------------------------------------------------------------------------------ time-to-target
def solved_vs_step(groups: pd.DataFrame) -> tuple[Plot | None, int]:
    """Fraction of seeds whose held-out loss reached the target by each step (Kaplan–Meier, unsolved seeds
    censored at their budget: ``survival.py``), one panel per (run, task, T, H), a step line per cell and backend.
    Returns the plot and how many panels were left out."""
    df = groups[groups["n_tt"] > 0] if "n_tt" in groups else groups.iloc[0:0]
    if df.empty:
        return None, 0
    panels = list(df.groupby(["run", "task", "seq_len", "hidden"], sort=False))
    shown, left_out = panels[:MAX_PANELS], max(0, len(panels) - MAX_PANELS)
    cols = min(2, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = new_figure(rows, cols, height=2.9)
    multi_run = df["run"].nunique() > 1
    for ax in axes.flat[len(shown):]:
        ax.set_visible(False)
    for ((run, task, T, H), p), ax in zip(shown, axes.flat):
        for r in p.itertuples():
            ax.step(r.solved_curve_step, r.solved_curve_frac, where="post", color=cell_color(r.cell_key),
                    linestyle=backend_style(r.backend, r.device)["linestyle"], linewidth=1.6)
            if not np.isnan(r.median_steps_to_target):
                ax.plot([r.median_steps_to_target], [0.5], marker="o", markersize=4, color=cell_color(r.cell_key))
        ax.axhline(0.5, color=BASELINE_COLOR, linestyle=(0, (4, 3)), linewidth=1.0)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlim(left=0)
        seeds = int(p["n_tt"].max())
        title = f"{text(task)} · T={T} · H={H} · {seeds} seed{'s' if seeds != 1 else ''}"
        ax.set_title(title + (f" · {text(run)}"[:40] if multi_run else ""))
        ax.set_xlabel("training step")
        ax.set_ylabel("fraction of seeds at target")
    return finish(
        fig, df, "solved_vs_step", "Time to target",
        "Fraction of seeds whose held-out loss reached the target (10 % of the trivial baseline's loss) by each "
        "step, evaluated every eval_every steps; Kaplan–Meier: a seed that did not reach it is censored at its "
        "step budget, not dropped. Dot: the median steps-to-target (where the line crosses one half).",
        dashed="half",
    ), left_out


# ----------------------------------------------------------------------------------------- learning curves
def _band(curves: list[tuple[np.ndarray, np.ndarray]], points: int = 60):
    """Mean and min–max of several (x, loss) curves on a common x grid (their shared range)."""
    hi = min(float(x[-1]) for x, _ in curves)
    lo = max(float(x[0]) for x, _ in curves)
    if not hi > lo:
        x, y = curves[0]
        return x, y, y, y
    grid = np.linspace(lo, hi, points)
    ys = np.array([np.interp(grid, x, y) for x, y in curves])
    return grid, ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0)


def learning_curves(cases: pd.DataFrame) -> tuple[Plot | None, int]:
    """Loss vs steps and vs seconds per (task, T, H); seeds of one configuration as a mean line and a min–max band.
    Returns the plot and how many (task, T, H) panels were left out."""
    df = cases[(cases["status"] == "ok") & (cases["curve_step"].map(len) > 1)]
    if df.empty:
        return None, 0
    panels = list(df.groupby(["run", "task", "seq_len", "hidden"], sort=False))
    panels.sort(key=lambda kp: -kp[1]["cell"].nunique())  # GRU beside LSTM first (stable otherwise)
    shown, left_out = panels[:MAX_CURVE_ROWS], max(0, len(panels) - MAX_CURVE_ROWS)
    fig, axes = new_figure(len(shown), 2, height=2.9)
    multi_run = df["run"].nunique() > 1
    for (key, p), (ax_s, ax_t) in zip(shown, axes):
        run, task, T, H = key
        for skey, s in p.groupby(["cell_key", "backend", "device", "group_id"], sort=False):
            ck, b, d, _ = skey
            style = dict(color=cell_color(ck), linestyle=backend_style(b, d)["linestyle"])
            by_step = [(np.asarray(r.curve_step, float), np.asarray(r.curve_loss, float)) for r in s.itertuples()]
            by_sec = [
                (np.asarray(r.curve_seconds, float), np.asarray(r.curve_loss, float))
                for r in s.itertuples()
                if len(r.curve_seconds) == len(r.curve_loss) > 1
            ]
            for ax, curves in ((ax_s, by_step), (ax_t, by_sec)):
                if not curves:
                    continue
                x, mean, lo, hi = _band(curves)
                ax.plot(x, mean, **style)
                if len(curves) > 1:
                    ax.fill_between(x, lo, hi, color=style["color"], alpha=0.18, linewidth=0)
        base = p["baseline_loss"].dropna()
        for ax in (ax_s, ax_t):
            if len(base):
                ax.axhline(float(base.iloc[0]), color=BASELINE_COLOR, linestyle=(0, (4, 3)), linewidth=1.2)
            if (p["curve_loss"].map(lambda v: min(v) if v else 1) > 0).all():
                log_axis(ax, "y")
            ax.set_ylabel("training loss")
        title = f"{text(task)} · T={T} · H={H}" + (f" · {text(run)}"[:40] if multi_run else "")
        ax_s.set_title(title + " · vs steps")
        ax_t.set_title(title + " · vs time")
        ax_s.set_xlabel("training step")
        ax_t.set_xlabel("wall time (s)")
    seeds = int(df.groupby("group_id")["seed"].nunique().max())
    band = "band: min–max over seeds" if seeds > 1 else "one seed per configuration (no band)"
    return finish(
        fig, df, "learning_curves", "Learning curves",
        f"Training loss vs steps (left) and vs wall time (right), mean over seeds; {band}; "
        "dashed grey: the trivial baseline's loss.",
        dashed="trivial baseline",
    ), left_out


# --------------------------------------------------------------------------------------------------- speed
def _speed_vs(groups: pd.DataFrame, x: str, fixed: str, xlabel: str, name: str, title: str) -> Plot | None:
    df = groups[(groups["n_ok"] > 0) & groups["train_s"].notna()]
    if df.empty:
        return None
    multi_run = df["run"].nunique() > 1
    keys = series_keys(df, with_run=multi_run)
    tasks = [t for t in tasks_of(df) if (df[df["task"] == t].groupby(keys)[x].nunique() > 1).any()]
    if not tasks:
        return None
    fig, axes = new_figure(1, len(tasks))
    fixed_notes = []
    for ax, task in zip(axes[0], tasks):
        t = df[df["task"] == task]
        # the most common value of the other size, so lines differ in `x` only
        at = t.groupby(fixed)[x].nunique().sort_values(ascending=False).index[0]
        t = t[t[fixed] == at].sort_values(x)
        fixed_notes.append(f"{text(task)}: {'T' if fixed == 'seq_len' else 'H'}={at}")
        for key, s in t.groupby(keys + ["num_layers", "batch_size", "dtype"], sort=False):
            k = dict(zip(keys, key))
            ax.plot(
                s[x], s["train_s"] * 1e3, color=cell_color(k["cell_key"]), **backend_style(k["backend"], k["device"])
            )
        size_axis(ax, t[x])
        log_axis(ax, "y")
        ax.set_title(f"{text(task)} ({fixed_notes[-1].split(': ')[1]})")
        ax.set_xlabel(f"{xlabel} (log)")
        ax.set_ylabel("train step time (ms, log)")
    return finish(
        fig, df,
        name,
        title,
        "Median train step (forward, backward, optimizer) per configuration; " + "; ".join(fixed_notes) + ".",
    )


def speed_vs_hidden(groups: pd.DataFrame) -> Plot | None:
    return _speed_vs(groups, "hidden", "seq_len", "hidden size H", "speed_vs_hidden", "Step time vs hidden size")


def speed_vs_seq_len(groups: pd.DataFrame) -> Plot | None:
    return _speed_vs(
        groups, "seq_len", "hidden", "sequence length T", "speed_vs_seq_len", "Step time vs sequence length"
    )


def throughput(groups: pd.DataFrame) -> Plot | None:
    df = groups[(groups["n_ok"] > 0) & groups["pct_peak"].notna() & groups["flops_train_step"].notna()]
    if df.empty:
        return None
    fig, axes = new_figure(1, 1, height=3.8)
    ax = axes[0][0]
    points(ax, df, df["flops_train_step"], df["pct_peak"])
    log_axis(ax, "x")
    ax.set_xlabel("analytic FLOPs per train step (log)")
    ax.set_ylabel("achieved, % of calibrated peak")
    ax.set_ylim(bottom=0)
    return finish(
        fig, df,
        "throughput",
        "Achieved GFLOP/s as % of the machine's peak",
        "Each point one configuration: spec.py's FLOPs per step over the median step time, divided by the "
        "run's float32 GEMM calibration.",
    )


# -------------------------------------------------------------------------------------------------- memory
def memory(groups: pd.DataFrame) -> Plot | None:
    df = groups[(groups["n_ok"] > 0) & (groups["peak_bytes"] > 0) & (groups["activation_bytes"] > 0)]
    if df.empty:
        return None
    fig, axes = new_figure(1, 1, height=3.8)
    ax = axes[0][0]
    points(ax, df, df["activation_bytes"] / 2**20, df["peak_bytes"] / 2**20)
    lo = min(df["activation_bytes"].min(), df["peak_bytes"].min()) / 2**20
    hi = max(df["activation_bytes"].max(), df["peak_bytes"].max()) / 2**20
    equality_line(ax, lo, hi)
    ax.set_xlabel("analytic activation memory (MiB, log)")
    ax.set_ylabel("measured peak (MiB, log)")
    return finish(
        fig, df,
        "memory",
        "Memory: measured peak vs analytic estimate",
        "Measured memory (the device allocator's peak on GPU; on CPU the per-batch working set, from fresh-process "
        "windows at B and 2B) against the least BPTT keeps, B·T·H·(G+S)·bytes; dashed: equality.",
        dashed="measured = analytic",
    )


# -------------------------------------------------------------------------------------------- several runs
def comparison(cases: pd.DataFrame, run_names: list[str]) -> Plot | None:
    ok = cases[(cases["status"] == "ok") & cases["train_s"].notna()]
    if len(run_names) < 2 or ok.empty:
        return None
    base = ok[ok["run_index"] == 0].set_index("case_id")["train_s"]
    fig, axes = new_figure(1, 1, height=3.8)
    ax = axes[0][0]
    drawn = 0
    for i in range(1, len(run_names)):
        other = ok[ok["run_index"] == i]
        m = other[other["case_id"].isin(base.index)]
        if m.empty:
            continue
        for _, r in m.iterrows():
            ax.plot(
                [base[r["case_id"]] * 1e3],
                [r["train_s"] * 1e3],
                color=cell_color(r["cell_key"]),
                alpha=0.85,
                **{**backend_style(r["backend"], r["device"]), "linestyle": "none"},
            )
            drawn += 1
    if not drawn:
        return None
    vals = pd.concat([base, ok["train_s"]]) * 1e3
    lo, hi = float(vals.min()), float(vals.max())
    equality_line(ax, lo, hi)
    ax.set_xlabel(f"run 1 train step (ms, log): {text(run_names[0])}"[:90])
    ax.set_ylabel("other runs (ms, log)")
    return finish(fig, ok, "comparison", "Runs compared",
                   "Each point one case present in run 1 and a later run; above the dashed line: slower than run 1.",
                   dashed="same time")


def history(series: pd.DataFrame, max_series: int = 12) -> Plot | None:
    """A history frame (see ``timeline``) as lines over commits, change points starred. Series with a change point
    come first, then the slowest; at most ``max_series`` lines (all of them are in the history table)."""
    if series is None or series.empty or series["commit"].nunique() < 2:
        return None
    order = list(dict.fromkeys(series.sort_values("created")["commit"]))
    cp = (
        series["change_point"].fillna(False).astype(bool)
        if "change_point" in series
        else pd.Series(False, series.index)
    )
    rank = (
        series.assign(_cp=cp)
        .groupby("series")
        .agg(cp=("_cp", "any"), v=("value", "median"))
        .sort_values(["cp", "v"], ascending=False)
    )
    top = list(rank.index[:max_series])
    legend_rows = math.ceil(len(top) / 2)
    height = 3.6 + 0.22 * legend_rows + 0.9
    fig = Figure(figsize=(WIDTH, height))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    fig.subplots_adjust(
        left=0.8 / WIDTH, right=1 - 0.25 / WIDTH, top=1 - 0.3 / height, bottom=(0.22 * legend_rows + 1.3) / height
    )
    for name in top:
        s = series[series["series"] == name].sort_values("created")
        xs = [order.index(c) for c in s["commit"]]
        ck = s["cell_key"].iloc[0] if "cell_key" in s else ""
        ax.plot(xs, s["value"], marker="o", color=cell_color(ck) if ck else None, alpha=0.8, label=text(name)[:70])
        hit = cp[s.index]
        if hit.any():
            ax.plot(
                [order.index(c) for c in s.loc[hit, "commit"]],
                s.loc[hit, "value"],
                linestyle="none",
                marker="*",
                markersize=14,
                color="black",
            )
    ax.set_xticks(range(len(order)), [text(c)[:10] for c in order], rotation=30, ha="right")
    log_axis(ax, "y")
    ax.set_xlabel("commit (oldest first)")
    unit = series["unit"].iloc[0] if "unit" in series else "train step (ms)"
    ax.set_ylabel(f"{text(unit)}, log")
    fig.legend(loc="lower center", ncols=2, frameon=False, fontsize=8, bbox_to_anchor=(0.5, 0.0))
    shown = f"the {len(top)} shown" if len(top) < series["series"].nunique() else "every case"
    return Plot(
        "history",
        "History over commits",
        f"One line per case ({shown}; change points first, then the slowest); stars mark change points.",
        fig,
    )
