"""The report's first screen: one sentence per question, from the data, and the headline figure.

Questions: which cell reaches the long-dependency target sooner (steps and seconds, per T, over seeds: Kaplan–Meier
medians of ``survival.py``, unsolved seeds censored at their budget); which is faster per step on each backend,
against the FLOP expectation GRU/LSTM = 3/4; and which needs less memory. Reads the cases frame (``frame.py``) only.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..survival import median_steps

FLOP_RATIO = 0.75  # GRU/LSTM: 3 gate blocks vs 4 (spec.py)


def _cell(row_cell: str) -> str:
    return "GRU" if row_cell == "gru" else "LSTM"


def _fmt_steps(x: float | None) -> str:
    return "not reached" if x is None else f"{x:,.0f}"


def _fmt_s(x: float) -> str:
    return f"{x:.2g} s" if x < 10 else f"{x:,.0f} s"


def _seed_summary(df: pd.DataFrame) -> dict:
    """Seeds of one cell at one T: Kaplan–Meier median steps, the median seconds of the seeds that reached, counts."""
    ok = df[df["status"].isin(["ok", "diverged"]) & df["target_loss"].notna() & (df["steps"] > 0)]
    steps = [None if s != "ok" or math.isnan(t) else float(t) for s, t in zip(ok["status"], ok["steps_to_target"])]
    budgets = [float(b) for b in ok["steps"]]
    med = median_steps(steps, budgets) if steps else None
    secs = ok["seconds_to_target"].dropna()
    return dict(n=len(steps), reached=sum(s is not None for s in steps), median=med,
                seconds=float(secs.median()) if len(secs) else math.nan,
                steps=[s for s in steps if s is not None], budget=max(budgets) if budgets else math.nan)


def learning_sentences(cases: pd.DataFrame) -> list[str]:
    """One sentence per (run, backend, task): which cell reached the target first at each T, and how sure."""
    if cases.empty or "steps_to_target" not in cases or not cases["target_loss"].notna().any():
        return []
    multi_run = cases["run"].nunique() > 1
    out = []
    for (run, backend, task), g in cases[cases["target_loss"].notna()].groupby(["run", "backend", "task"], sort=False):
        parts, winners = [], []
        for T, gt in sorted(g.groupby("seq_len"), key=lambda kv: kv[0]):
            s = {c: _seed_summary(gt[gt["cell"] == c]) for c in ("gru", "lstm")}
            if s["gru"]["n"] == 0 or s["lstm"]["n"] == 0:
                continue
            gm, lm = s["gru"]["median"], s["lstm"]["median"]
            seeds = f"{s['gru']['reached']}/{s['gru']['n']} vs {s['lstm']['reached']}/{s['lstm']['n']} seeds"
            if gm is None and lm is None:
                winners.append(None)
                parts.append(f"T={T}: neither cell reached the target in {s['gru']['budget']:,.0f} steps ({seeds})")
                continue
            if lm is None or (gm is not None and gm < lm):
                w, lo = "gru", "lstm"
            elif gm is None or lm < gm:
                w, lo = "lstm", "gru"
            else:
                winners.append(None)
                parts.append(f"T={T}: a tie at {gm:,.0f} steps ({seeds})")
                continue
            winners.append(w)
            sec = ""
            if not math.isnan(s["gru"]["seconds"]) and not math.isnan(s["lstm"]["seconds"]):
                sec = f", {_fmt_s(s['gru']['seconds'])} vs {_fmt_s(s['lstm']['seconds'])}"
            # seeds agree when every seed of the winner reached before every seed of the loser
            wl, ll = s[w]["steps"], s[lo]["steps"]
            agree = s[w]["reached"] == s[w]["n"] and (not ll or max(wl) < min(ll))
            sure = "every seed agrees" if agree else "seeds overlap"
            parts.append(f"T={T}: {_cell(w)} first, median {_fmt_steps(gm)} vs {_fmt_steps(lm)} steps{sec} "
                         f"({seeds}; {sure})")
        if not parts:
            continue
        known = [w for w in winners if w]
        if known and len(known) == len(winners) and len(set(known)) == 1:
            lead = f"{_cell(known[0])} reached the target first at every T"
        elif not known:
            lead = "No cell reached the target first at any T"
        else:
            lead = "Which cell reaches the target first depends on T"
        where = f"{run}: " if multi_run else ""
        out.append(f"{where}Learning ({task}, {backend}, GRU vs LSTM): {lead} — " + "; ".join(parts) + ".")
    return out


def _pair_ratios(cases: pd.DataFrame, col: str) -> pd.DataFrame:
    """GRU/LSTM ratio of the per-config median of ``col`` over ok seeds, per (run, backend, pair)."""
    ok = cases[(cases["status"] == "ok") & cases[col].notna()]
    if ok.empty:
        return pd.DataFrame(columns=["run", "backend", "ratio"])
    med = ok.groupby(["run", "backend", "pair_id", "cell"])[col].median().unstack("cell")
    if "gru" not in med or "lstm" not in med:
        return pd.DataFrame(columns=["run", "backend", "ratio"])
    med = med.dropna(subset=["gru", "lstm"])
    med = med[med["lstm"] > 0]
    return (med["gru"] / med["lstm"]).rename("ratio").reset_index()


# a GRU/LSTM ratio this close to 1 names no winner: below what one run on a shared machine can tell apart
SAME_WITHIN = 0.05


def _same(ratio: float) -> bool:
    return abs(ratio - 1) <= SAME_WITHIN


def speed_sentences(cases: pd.DataFrame) -> list[str]:
    """Per backend: the GRU/LSTM step-time ratio (median over the matched configurations) against 0.75."""
    if cases.empty:
        return []
    r = _pair_ratios(cases, "train_s")
    out, multi_run = [], cases["run"].nunique() > 1
    for (run, backend), g in r.groupby(["run", "backend"], sort=False):
        q = g["ratio"].to_numpy()
        med = float(np.median(q))
        verdict = (f"GRU and LSTM are about as fast per training step (within {SAME_WITHIN:.0%})" if _same(med)
                   else f"{'GRU' if med < 1 else 'LSTM'} is faster per training step")
        spread = f" (range {q.min():.2f}–{q.max():.2f} over {len(q)} configurations)" if len(q) > 1 else ""
        vs = "close to" if abs(med - FLOP_RATIO) <= 0.1 * FLOP_RATIO else ("above" if med > FLOP_RATIO else "below")
        where = f"{run}: " if multi_run else ""
        out.append(f"{where}Speed ({backend}): {verdict} — GRU/LSTM step time "
                   f"{med:.2f}{spread}, {vs} the FLOP expectation {FLOP_RATIO:.2f}.")
    return out


def memory_sentences(cases: pd.DataFrame) -> list[str]:
    """Per backend: the GRU/LSTM measured peak-memory ratio, naming the figure measured."""
    if cases.empty or not cases["peak_bytes"].notna().any():
        return []
    r = _pair_ratios(cases, "peak_bytes")
    out, multi_run = [], cases["run"].nunique() > 1
    for (run, backend), g in r.groupby(["run", "backend"], sort=False):
        med = float(np.median(g["ratio"]))
        names = cases[(cases["run"] == run) & (cases["backend"] == backend)]["peak_name"]
        how = ", ".join(sorted({n for n in names if n})) or "peak"
        verdict = (f"GRU and LSTM need about the same (within {SAME_WITHIN:.0%})" if _same(med)
                   else f"{'GRU' if med < 1 else 'LSTM'} needs less")
        where = f"{run}: " if multi_run else ""
        out.append(f"{where}Memory ({backend}): {verdict} — GRU/LSTM measured peak ({how}) {med:.2f}, "
                   f"against {FLOP_RATIO:.2f} for the gate activations.")
    return out


# what the first screen (HTML and summary.md) says when there are no sentences
NO_ANSWER = "These runs answer no question yet: no time-to-target and no GRU/LSTM pair ran ok."


def sentences(cases: pd.DataFrame) -> list[str]:
    """Every first-screen sentence; empty when the records answer nothing (then the page says so)."""
    return [*learning_sentences(cases), *speed_sentences(cases), *memory_sentences(cases)]


def headline_figure(cases: pd.DataFrame):  # -> figure.Plot | None
    """Steps-to-target vs T, GRU vs LSTM: each seed a dot (unsolved: a hollow marker at its budget), the
    Kaplan–Meier median a line; one panel per (run, backend, task)."""
    from matplotlib.figure import Figure

    from . import figure
    from .palette import cell_color

    df = cases[cases["target_loss"].notna() & cases["status"].isin(["ok", "diverged"]) & (cases["steps"] > 0)]
    if df.empty:
        return None
    keys = list(dict.fromkeys(zip(df["run"], df["backend"], df["task"])))[: figure.MAX_PANELS]
    fig = Figure(figsize=(figure.WIDTH, 3.6))
    axes = fig.subplots(1, len(keys), squeeze=False)[0]
    for ax, (run, backend, task) in zip(axes, keys):
        g = df[(df["run"] == run) & (df["backend"] == backend) & (df["task"] == task)]
        for i, cell in enumerate(("gru", "lstm")):
            gc = g[g["cell"] == cell]
            if gc.empty:
                continue
            key = gc["cell_key"].iloc[0]
            c = cell_color(key)
            Ts, meds = [], []
            for T, gt in sorted(gc.groupby("seq_len"), key=lambda kv: kv[0]):
                s = _seed_summary(gt)
                dx = (i - 0.5) * 0.015 * T
                solved = gt["steps_to_target"].dropna()
                ax.plot([T + dx] * len(solved), solved, "o", color=c, alpha=0.6, ms=5)
                n_miss = int(gt["steps_to_target"].isna().sum())
                if n_miss:
                    ax.plot([T + dx] * n_miss, [s["budget"]] * n_miss, "o", mfc="none", color=c, ms=7)
                if s["median"] is not None:
                    Ts.append(T)
                    meds.append(s["median"])
            ax.plot(Ts, meds, "-", color=c, lw=2, label=f"{_cell(cell)} ({key}) median")
        ax.set_xlabel("dependency length T")
        ax.set_ylabel("steps to target")
        ax.set_title(figure.text(f"{task} · {backend}" + (f" · {run}" if len(keys) > 1 else "")))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return figure.Plot("headline", "Steps to target vs dependency length",
                      "Dots: one seed each; hollow: did not reach the target within its budget (censored there); "
                      "lines: Kaplan–Meier median over seeds.", fig)
