"""The report's first screen: one sentence per question, from the data, and the headline figure.

Questions: which cell reaches the long-dependency target sooner (steps and seconds, per T, over seeds: Kaplan–Meier
medians of ``survival.py``, unsolved seeds censored at their budget); which is faster per step on each backend,
against the FLOP expectation GRU/LSTM = 3/4; and which needs less memory. Reads the cases frame (``frame.py``) only.
"""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..spec import GATES, STATES
from ..survival import median_steps
from .frame import CELL_KEYS, PAIR_FIELDS

FLOP_RATIO = 0.75  # GRU/LSTM: 3 gate blocks vs 4 (spec.py)
# GRU/LSTM of the least BPTT keeps per step (spec.activation_bytes: gate outputs and states): (3 + 1) / (4 + 2)
KEPT_RATIO = (GATES["gru"] + STATES["gru"]) / (GATES["lstm"] + STATES["lstm"])


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


# A learning sentence compares one configuration over seeds per cell: the GRU/LSTM pair's fields (``PAIR_FIELDS``)
# but the run, backend, task (the sentence's heading) and T (its parts); more than this many such comparisons for one
# (run, backend, task) would flood the first screen, so they are pooled into one sentence that names what it pools.
LEARN_FIELDS = [f for f in PAIR_FIELDS if f not in ("run", "backend", "task", "seq_len")]
MAX_LEARNING_SENTENCES = 4
FIELD_NAMES = {"hidden": "H", "num_layers": "layers", "batch_size": "B"}


def _t_parts(g: pd.DataFrame, unit: str) -> tuple[list[str], list[str | None]]:
    """Per T of ``g`` (the GRU and LSTM rows of one comparison): which cell reached the target first, and how sure;
    ``unit`` names what the counts count (seeds, or configurations × seeds when pooled)."""
    parts, winners = [], []
    for T, gt in sorted(g.groupby("seq_len"), key=lambda kv: kv[0]):
        s = {c: _seed_summary(gt[gt["cell"] == c]) for c in ("gru", "lstm")}
        if s["gru"]["n"] == 0 or s["lstm"]["n"] == 0:
            continue
        gm, lm = s["gru"]["median"], s["lstm"]["median"]
        seeds = f"{s['gru']['reached']}/{s['gru']['n']} vs {s['lstm']['reached']}/{s['lstm']['n']} {unit}s"
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
        sure = f"every {unit} agrees" if agree else f"{unit}s overlap"
        parts.append(f"T={T}: {_cell(w)} first, median {_fmt_steps(gm)} vs {_fmt_steps(lm)} steps{sec} "
                     f"({seeds}; {sure})")
    return parts, winners


def _lead(winners: list[str | None]) -> str:
    known = [w for w in winners if w]
    if known and len(known) == len(winners) and len(set(known)) == 1:
        return f"{_cell(known[0])} reached the target first at every T"
    if not known:
        return "No cell reached the target first at any T"
    return "Which cell reaches the target first depends on T"


def _comparisons(g: pd.DataFrame) -> list[tuple[dict, str, pd.DataFrame]]:
    """The comparisons of one (run, backend, task): per configuration (``LEARN_FIELDS``) and GRU variant, its
    fields, the GRU's cell key and the rows of that GRU and of the LSTM (each T, every seed)."""
    key = pd.Series([tuple(str(v) for v in row) for row in g[LEARN_FIELDS].itertuples(index=False)], index=g.index)
    out = []
    for _, gc in g.groupby(key, sort=False):
        lstm = gc[gc["cell"] == "lstm"]
        for gru_key in [k for k in CELL_KEYS if k != "LSTM" and k in set(gc["cell_key"])]:
            out.append(({f: gc[f].iloc[0] for f in LEARN_FIELDS}, gru_key,
                         pd.concat([gc[gc["cell_key"] == gru_key], lstm])))
    return out


def _setting(field: str, value) -> str:
    return f"{FIELD_NAMES.get(field, field)}={value}"


def learning_sentences(cases: pd.DataFrame) -> list[str]:
    """One sentence per (run, backend, task) and configuration over seeds (one per GRU variant): which cell reached
    the target first at each T, and how sure. Where several configurations share a task, each sentence names the
    settings that tell it apart; past ``MAX_LEARNING_SENTENCES`` of them, one pooled sentence names what it pools."""
    if cases.empty or "steps_to_target" not in cases or not cases["target_loss"].notna().any():
        return []
    multi_run = cases["run"].nunique() > 1
    out = []
    for (run, backend, task), g in cases[cases["target_loss"].notna()].groupby(["run", "backend", "task"], sort=False):
        where = f"{run}: " if multi_run else ""
        done = [(fields, gru, *_t_parts(rows, "seed")) for fields, gru, rows in _comparisons(g)]
        done = [d for d in done if d[2]]
        differ = [f for f in LEARN_FIELDS if len({str(d[0][f]) for d in done}) > 1]
        variants = len({d[1] for d in done}) > 1
        if len(done) > MAX_LEARNING_SENTENCES:
            parts, winners = _t_parts(g, "case")
            pooled = ", ".join([*(["GRU variant"] if variants else []), *(FIELD_NAMES.get(f, f) for f in differ)])
            out.append(f"{where}Learning ({task}, {backend}, GRU vs LSTM, {len(done)} configurations pooled over "
                       f"{pooled}; cases are configurations × seeds): {_lead(winners)} — " + "; ".join(parts) + ".")
            continue
        for fields, gru, parts, winners in done:
            name = ", ".join([f"{gru if variants else 'GRU'} vs LSTM", *(_setting(f, fields[f]) for f in differ)])
            out.append(f"{where}Learning ({task}, {backend}, {name}): {_lead(winners)} — " + "; ".join(parts) + ".")
    return out


def _pair_ratios(cases: pd.DataFrame, col: str) -> pd.DataFrame:
    """GRU/LSTM ratio of the per-config median of ``col`` over ok seeds, per (run, backend, device, pair, GRU
    variant): columns run, backend, device, gru (the GRU's cell key), ratio."""
    cols = ["run", "backend", "device", "gru", "ratio"]
    ok = cases[(cases["status"] == "ok") & cases[col].notna()]
    if ok.empty:
        return pd.DataFrame(columns=cols)
    med = ok.groupby(["run", "backend", "device", "pair_id", "cell_key"], sort=False)[col].median().unstack("cell_key")
    if "LSTM" not in med:
        return pd.DataFrame(columns=cols)
    out = []
    for gru in [k for k in CELL_KEYS if k != "LSTM" and k in med]:
        m = med[[gru, "LSTM"]].dropna()
        m = m[m["LSTM"] > 0]
        out.append((m[gru] / m["LSTM"]).rename("ratio").reset_index().assign(gru=gru))
    return pd.concat(out, ignore_index=True)[cols] if out else pd.DataFrame(columns=cols)


def _ratio_groups(r: pd.DataFrame):
    """``(run, heading, ratios)`` per (run, backend, device, GRU variant) of ``_pair_ratios``: the heading is the
    backend, with the device when the run has more than one for that backend, and the GRU variant when more than one
    is there (one device and one variant: the backend alone, as before)."""
    devices = r.groupby(["run", "backend"])["device"].nunique()
    variants = r.groupby(["run", "backend", "device"])["gru"].nunique()
    for (run, backend, device, gru), g in r.groupby(["run", "backend", "device", "gru"], sort=False):
        head = f"{backend}/{device}" if devices[(run, backend)] > 1 else str(backend)
        if variants[(run, backend, device)] > 1:
            head += f", {gru}"
        yield run, head, g


# a GRU/LSTM ratio this close to 1 names no winner: below what one run on a shared machine can tell apart
SAME_WITHIN = 0.05


def _same(ratio: float) -> bool:
    return abs(ratio - 1) <= SAME_WITHIN


def speed_sentences(cases: pd.DataFrame) -> list[str]:
    """Per backend (and device, GRU variant where a run has several: ``_ratio_groups``): the GRU/LSTM step-time ratio
    (median over the matched configurations) against 0.75."""
    if cases.empty:
        return []
    r = _pair_ratios(cases, "train_s")
    out, multi_run = [], cases["run"].nunique() > 1
    for run, head, g in _ratio_groups(r):
        q = g["ratio"].to_numpy()
        med = float(np.median(q))
        verdict = (f"GRU and LSTM are about as fast per training step (within {SAME_WITHIN:.0%})" if _same(med)
                   else f"{'GRU' if med < 1 else 'LSTM'} is faster per training step")
        spread = f" (range {q.min():.2f}–{q.max():.2f} over {len(q)} configurations)" if len(q) > 1 else ""
        vs = "close to" if abs(med - FLOP_RATIO) <= 0.1 * FLOP_RATIO else ("above" if med > FLOP_RATIO else "below")
        where = f"{run}: " if multi_run else ""
        out.append(f"{where}Speed ({head}): {verdict} — GRU/LSTM step time "
                   f"{med:.2f}{spread}, {vs} the FLOP expectation {FLOP_RATIO:.2f}.")
    return out


def memory_sentences(cases: pd.DataFrame) -> list[str]:
    """Per backend (and device, GRU variant: ``_ratio_groups``): the GRU/LSTM measured peak-memory ratio, naming the
    figures measured, against ``KEPT_RATIO``."""
    if cases.empty or not cases["peak_bytes"].notna().any():
        return []
    r = _pair_ratios(cases, "peak_bytes")
    out, multi_run = [], cases["run"].nunique() > 1
    measured = cases[cases["peak_bytes"].notna()]
    for run, head, g in _ratio_groups(r):
        med = float(np.median(g["ratio"]))
        names = measured[(measured["run"] == run) & (measured["backend"] == g["backend"].iloc[0])
                         & (measured["device"] == g["device"].iloc[0])]["peak_name"]
        how = ", ".join(sorted({n for n in names if n})) or "peak"
        verdict = (f"GRU and LSTM need about the same (within {SAME_WITHIN:.0%})" if _same(med)
                   else f"{'GRU' if med < 1 else 'LSTM'} needs less")
        where = f"{run}: " if multi_run else ""
        out.append(f"{where}Memory ({head}): {verdict} — GRU/LSTM measured peak ({how}) {med:.2f}, "
                   f"against {KEPT_RATIO:.2f} for the least BPTT keeps (gate outputs and states).")
    return out


# what the first screen (HTML and summary.md) says when there are no sentences
NO_ANSWER = "These runs answer no question yet: no time-to-target and no GRU/LSTM pair ran ok."


def sentences(cases: pd.DataFrame) -> list[str]:
    """Every first-screen sentence; empty when the records answer nothing (then the page says so)."""
    return [*learning_sentences(cases), *speed_sentences(cases), *memory_sentences(cases)]


HEADLINE_H = 3.0  # inches of the headline's panel row: the figure stays near its first-screen height (3.6 in before)


def headline_figure(cases: pd.DataFrame):  # -> figure.Plot | None
    """Steps-to-target vs T, GRU vs LSTM: each seed a dot (unsolved: a hollow marker at its budget), the
    Kaplan–Meier median a line, per cell key; one panel per (run, backend, task); the figure toolkit's grid and
    shared legend (``figure.new_figure``, ``figure.legend``)."""
    from matplotlib.lines import Line2D

    from . import figure
    from .palette import cell_color

    df = cases[cases["target_loss"].notna() & cases["status"].isin(["ok", "diverged"]) & (cases["steps"] > 0)]
    if df.empty:
        return None
    keys = list(dict.fromkeys(zip(df["run"], df["backend"], df["task"])))[: figure.MAX_PANELS]
    fig, axes = figure.new_figure(1, len(keys), height=HEADLINE_H)
    for ax, (run, backend, task) in zip(axes[0], keys):
        g = df[(df["run"] == run) & (df["backend"] == backend) & (df["task"] == task)]
        shown = [k for k in CELL_KEYS if k in set(g["cell_key"])]
        for i, key in enumerate(shown):
            _headline_cell(ax, g[g["cell_key"] == key], cell_color(key), (i - (len(shown) - 1) / 2) * 0.015)
        figure.size_axis(ax, g["seq_len"])
        ax.set_xlabel("dependency length T")
        ax.set_ylabel("steps to target")
        ax.set_title(figure.text(f"{task} · {backend}" + (f" · {run}" if len(keys) > 1 else "")))
    grey = "#555555"
    marks = [Line2D([], [], color=grey, marker="o", linestyle="none", alpha=0.6, label="seed (reached)"),
             Line2D([], [], color=grey, marker="o", mfc="none", linestyle="none", label="seed (not reached: budget)"),
             Line2D([], [], color=grey, lw=2, label="Kaplan–Meier median")]
    figure.legend(fig, [k for k in CELL_KEYS if k in set(df["cell_key"])], [], marks)
    return figure.Plot("headline", "Steps to target vs dependency length",
                      "Dots: one seed each; hollow: did not reach the target within its budget (censored there); "
                      "lines: Kaplan–Meier median over seeds.", fig)


def _headline_cell(ax, gc: pd.DataFrame, color: str, shift: float) -> None:
    """One cell key's seeds (dots, hollow at the budget when unsolved) and Kaplan–Meier medians over T, its dots
    shifted by ``shift``·T so the two cells' dots stay apart."""
    Ts, meds = [], []
    for T, gt in sorted(gc.groupby("seq_len"), key=lambda kv: kv[0]):
        s = _seed_summary(gt)
        solved = gt["steps_to_target"].dropna()
        ax.plot([T * (1 + shift)] * len(solved), solved, "o", color=color, alpha=0.6, ms=5)
        n_miss = int(gt["steps_to_target"].isna().sum())
        if n_miss:
            ax.plot([T * (1 + shift)] * n_miss, [s["budget"]] * n_miss, "o", mfc="none", color=color, ms=7)
        if s["median"] is not None:
            Ts.append(T)
            meds.append(s["median"])
    ax.plot(Ts, meds, "-", color=color, lw=2)
