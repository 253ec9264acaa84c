"""The report: one or many run records -> a self-contained ``index.html`` (plots embedded, no network), the plots as
PNG and SVG, the tables as CSV and Markdown, and ``summary.md`` for a CI job summary.

Reads run records only (no backend, no framework). Entry point: ``build_report``.
"""

from __future__ import annotations

import datetime as _dt
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from .. import __version__
from ..schema import RunRecord
from . import answer, figure, group_tables, html, iso, markdown, plots, tables
from .frame import cases_frame, groups_frame, run_name
from .inputs import load_records
from .palette import css_variables
from .runinfo import machine_line, manifest
from .display_table import Column, Table
from .timeline import HistoryProvider, history_frame, spans_commits

__all__ = ["build_report"]


def _not_run(records: list[RunRecord], names: list[str]) -> tuple[list[dict], list[str]]:
    """Cases a run planned but never recorded (it was stopped), from the suite stored in the record; and a warning
    per run that did not finish."""
    rows, warnings = [], []
    for rec, name in zip(records, names):
        if rec.finished:
            continue
        try:
            from ..suite import Suite  # configuration only: no backend, no framework

            planned = {c.case_id: c for c in Suite.from_record(rec.suite).cases()} if rec.suite else {}
        except Exception:  # noqa: BLE001 - a suite this version cannot read: say so, without the count
            planned = {}
        done = {r.case_id for r in rec.cases}
        missing = [c for cid, c in planned.items() if cid not in done]
        rows += [
            {
                "run": name,
                "label": c.label,
                "status": "not run",
                "case_id": c.case_id,
                "reason": "the run stopped before this case (resume it with gru-bench run --resume)",
            }
            for c in missing
        ]
        count = f": {len(rec.cases)} of {len(planned)} planned cases recorded" if planned else ""
        warnings.append(f"run {name} did not finish (interrupted, or still running){count}")
    return rows, warnings


def _title(records: list[RunRecord]) -> str:
    """Names the run(s) by suite, machine and time (and label, when given), never a bare shared word."""
    def one(r: RunRecord) -> str:
        machine = r.machine_id or r.machine.get("hostname") or "unknown machine"
        label = f"{r.label}: " if r.label else ""
        return f"{label}{r.suite_name} on {machine}, {r.created[:16].replace('T', ' ')}"
    if len(records) <= 2:
        return "gru-bench: " + " vs ".join(one(r) for r in records)
    return f"gru-bench: {len(records)} runs, " + "; ".join(one(r) for r in records[:2]) + "; …"


def _case_warnings(cases: pd.DataFrame, runs: int) -> list[str]:
    out: list[str] = []
    for _, r in cases.iterrows():
        where = (f"{r['run']}: " if runs > 1 else "") + r["label"]
        ws = list(r["warnings"])
        if r["busy"] and not any("busy" in w.lower() for w in ws):
            ws.append("the machine was busy during this case: timings may be inflated")
        out += [f"{where}: {w}" for w in ws]
    return list(dict.fromkeys(out))


_TMP_PREFIX = ".gru-bench-report-"  # the new report is built here, inside the output folder (same filesystem)
REPORT_FILES = ("plots", "tables", "summary.md", "index.html")  # swapped in this order: index.html last


def _swap_in(new: Path, out_dir: Path, trash: Path) -> None:
    """Move the report built in ``new`` into ``out_dir``, item by item, each a rename: files replace the old ones
    atomically (``os.replace``), folders are renamed aside then in. ``index.html`` (self-contained) goes last, so a
    kill at any moment leaves a complete page, old or new. Other files in ``out_dir`` are left alone."""
    for name in REPORT_FILES:
        src, dst = new / name, out_dir / name
        if not src.exists():
            continue
        if src.is_dir() and dst.exists():
            os.replace(dst, trash / name)  # the old folder aside ...
        os.replace(src, dst)  # ... the new one in (a file: replaced atomically)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _sweep_stale(out_dir: Path) -> None:
    """Remove the temp folders of earlier builds that were killed mid-way (their process is gone; a build running
    at the same time into the same folder keeps its own)."""
    if out_dir.is_dir():
        for d in out_dir.glob(f"{_TMP_PREFIX}*"):
            pid = d.name[len(_TMP_PREFIX):].split("-", 1)[0]
            if not (pid.isdigit() and _alive(int(pid))):
                shutil.rmtree(d, ignore_errors=True)


def _history_table(series: pd.DataFrame) -> Table:
    unit = str(series["unit"].iloc[0]) if "unit" in series and len(series) else "value"
    cols = [
        Column("series", "case", css="wrap"),
        Column("commit", "commit"),
        Column("created", "run created"),
        Column("value", unit, "float", "num"),
    ]
    if "verdict" in series:
        cols.append(Column("verdict", "change point", css="wrap"))
    return Table(
        "history",
        "History",
        cols,
        series.reset_index(drop=True),
        note="One row per case and commit, oldest first.",
        row_css=["failed" if v else "" for v in series.get("change_point", [False] * len(series))],
    )


def _make_tables(cases: pd.DataFrame, groups: pd.DataFrame, names: list[str], not_run: list[dict]) -> dict[str, Table]:
    tabs = {
        "verdict": tables.verdict_table(groups),
        "iso": iso.iso_table(groups),
        "accuracy": group_tables.accuracy_table(groups),
        "speed": group_tables.speed_table(groups),
        "memory": group_tables.memory_table(groups),
        "backends": group_tables.backends_table(groups),
        "problems": tables.problems_table(cases, not_run),
    }
    comp = tables.comparison_table(cases, names)
    if comp is not None:
        tabs["comparison"] = comp
    return tabs


PLOTS = (
    "headline",
    "accuracy_vs_T",
    "solved_vs_step",
    "learning_curves",
    "speed_vs_hidden",
    "speed_vs_seq_len",
    "throughput",
    "memory",
    "comparison",
    "history",
)


def _make_plots(
    cases: pd.DataFrame, groups: pd.DataFrame, names: list[str], hist: pd.DataFrame | None, plot_dir: Path
) -> tuple[dict[str, figure.Plot | None], int]:
    """Every plot the data can show (``None`` where it cannot), saved as PNG and SVG; and the curve panels left out."""
    if cases.empty:
        return dict.fromkeys(PLOTS), 0
    with figure.style():
        curves, left_out = plots.learning_curves(cases)
        made = {
            "accuracy_vs_T": plots.accuracy_vs_T(groups),
            "solved_vs_step": plots.solved_vs_step(groups)[0],
            "learning_curves": curves,
            "speed_vs_hidden": plots.speed_vs_hidden(groups),
            "speed_vs_seq_len": plots.speed_vs_seq_len(groups),
            "throughput": plots.throughput(groups),
            "memory": plots.memory(groups),
            "comparison": plots.comparison(cases, names),
            "history": plots.history(hist) if hist is not None else None,
            "headline": answer.headline_figure(cases),
        }
        return {k: figure.save(p, plot_dir) if p is not None else None for k, p in made.items()}, left_out


def _problems(
    cases: pd.DataFrame, case_warnings: list[str], not_run: list[dict], unfinished: list[str], skipped_inputs: list[str]
) -> str:
    """One line for the top of the page: what did not go as planned (empty when everything did)."""
    statuses = cases["status"].value_counts()
    out = []
    not_ok = [f"{n} {s}" for s, n in statuses.items() if s != "ok"]
    if not_ok:
        out.append(", ".join(not_ok) + " case(s)")
    busy = int(cases["busy"].sum())
    if busy:
        out.append(f"{busy} case(s) on a busy machine")
    if len(case_warnings) > busy:
        out.append(f"{len(case_warnings)} measurement warning(s)")
    if not_run:
        out.append(f"{len(not_run)} planned case(s) not run")
    elif unfinished:
        out.append(f"{len(unfinished)} run(s) not finished")
    if skipped_inputs:
        out.append(f"{len(skipped_inputs)} input file(s) skipped")
    if cases.empty:
        out.append("the records hold no cases")
    return "; ".join(out)


def _toc(n_runs: int, history: bool) -> list[tuple[str, str]]:
    toc = [
        ("verdict", "Verdict"),
        ("iso", "Equal parameters"),
        ("accuracy", "Accuracy vs T"),
        ("curves", "Learning curves"),
        ("speed", "Speed"),
        ("memory", "Memory"),
        ("backends", "Backends"),
    ]
    toc += [("comparison", "Runs compared")] if n_runs > 1 else []
    toc += [("history", "History")] if history else []
    return toc + [("manifest", "Machine & commit"), ("warnings", "Warnings")]


def build_report(
    inputs: list[Path],
    out_dir: Path,
    title: str | None = None,
    *,
    history: HistoryProvider | None = None,
    stderr: TextIO | None = None,
) -> Path:
    """Build the report from run records (files or directories) into ``out_dir``; return ``out_dir/index.html``.

    A corrupt or foreign file is named, skipped and warned about (on ``stderr`` and in the report); no record at
    all is an ``InputError``. When the records span commits, ``history(records)`` gives the history view's frame
    (default: ``gru_bench.history``'s series and change points; see ``timeline``).
    """
    loaded = load_records(list(inputs), stderr=stderr if stderr is not None else sys.stderr)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _sweep_stale(out_dir)
    work = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{os.getpid()}-", dir=out_dir))
    try:
        _write_report(loaded, work, title, history)
        trash = work / ".old"
        trash.mkdir()
        _swap_in(work, out_dir, trash)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out_dir / "index.html"


def _write_report(loaded: Any, out_dir: Path, title: str | None, history: HistoryProvider | None) -> None:
    """Every file of the report, into the (empty) folder ``out_dir``."""
    records, n_runs = loaded.records, len(loaded.records)
    plot_dir, table_dir = out_dir / "plots", out_dir / "tables"
    plot_dir.mkdir(parents=True, exist_ok=True)
    table_dir.mkdir(parents=True, exist_ok=True)

    cases = cases_frame(records)
    groups = groups_frame(cases)
    names = [run_name(r, i) for i, r in enumerate(records)]
    not_run, unfinished = _not_run(records, names)
    tabs = _make_tables(cases, groups, names, not_run)
    hist, hist_note = None, ""
    if spans_commits(records):
        hist, hist_note = history_frame(records, cases, history)
        hist = hist.sort_values(["created", "series"], kind="stable")
        tabs["history"] = _history_table(hist)
    made, curves_left_out = _make_plots(cases, groups, names, hist, plot_dir)
    for t in tabs.values():
        t.to_csv(table_dir / f"{t.name}.csv")
        (table_dir / f"{t.name}.md").write_text(f"## {t.title}\n\n{t.note}\n\n{t.to_markdown()}\n", encoding="utf-8")

    case_warnings = [*unfinished, *_case_warnings(cases, n_runs)]
    statuses = cases["status"].value_counts()
    title = title or _title(records)
    runs = [
        {
            "name": names[i],
            "suite": r.suite_name,
            "created": r.created[:19].replace("T", " "),
            "commit": (r.git.commit or "")[:10],
            "dirty": bool(r.git.dirty),
            "machine": machine_line(r),
            "manifest": manifest(r, loaded.paths[i]),
        }
        for i, r in enumerate(records)
    ]
    headline = tables.headline(tabs["verdict"].df, groups)
    answers = answer.sentences(cases)
    context = dict(
        title=title,
        version=__version__,
        generated=_dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M"),
        summary={
            "runs": n_runs,
            "cases": len(cases),
            "by_status": ", ".join(f"{n} {s}" for s, n in statuses.items()) or "none",
            "problems": _problems(cases, case_warnings, not_run, unfinished, loaded.warnings),
        },
        runs=runs,
        toc=_toc(n_runs, hist is not None),
        headline=headline,
        answers=answers,
        no_answer=answer.NO_ANSWER,
        cells=tables.keep_cells(groups),
        cell_css=tables.CELL_CSS,
        follows_pct=f"{tables.FOLLOWS_TOLERANCE:.0%}",
        verdict=tabs["verdict"],
        iso=tabs["iso"],
        accuracy=tabs["accuracy"],
        speed=tabs["speed"],
        memory=tabs["memory"],
        backends=tabs["backends"],
        problems=tabs["problems"],
        comparison=tabs.get("comparison"),
        comparison_section=n_runs > 1,
        history_section=hist is not None,
        history_note=hist_note,
        history_table=tabs.get("history"),
        plots=made,
        curves_left_out=curves_left_out,
        input_warnings=[*loaded.warnings, *loaded.old_schema],
        case_warnings=case_warnings,
        input_paths=[str(p) for p in loaded.paths],
    )
    index = out_dir / "index.html"
    index.write_text(html.render(context, css_variables()), encoding="utf-8")
    run_lines = [
        f"{r['name']}: suite {r['suite']}, {r['created']}, commit {r['commit'] or 'unknown'}, {r['machine']}"
        for r in runs
    ]
    (out_dir / "summary.md").write_text(
        markdown.summary(
            title,
            answers,
            run_lines,
            headline,
            tabs["verdict"],
            tabs["iso"],
            tabs["problems"],
            [*loaded.warnings, *loaded.old_schema, *case_warnings],
        ),
        encoding="utf-8",
    )
