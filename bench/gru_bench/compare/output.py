"""A comparison as people and CI read it: a rich table on the terminal and a Markdown summary (a CI job summary).

The output depends on the engine's result types (``rows.py``), never the reverse."""
from __future__ import annotations

import re

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .rows import Comparison, Row

STYLE = {"improved": "green", "unchanged": "dim", "regressed": "bold red", "new": "cyan", "missing": "yellow",
         "failed": "bold red", "inconclusive": "magenta"}
ICON = {"improved": "🟢", "unchanged": "⚪", "regressed": "🔴", "new": "🆕", "missing": "🟡", "failed": "💥",
        "inconclusive": "❔"}
ALWAYS_SHOWN = ("train_time", "forward_time", "accuracy", "loss", "steps_to_target")  # checks shown even when unchanged


def _value(row: Row, v: float | None) -> str:
    if v is None:
        return "–"
    if row.unit == "s":
        return f"{v * 1e3:.4g} ms"
    if row.unit == "B":
        return f"{v / 2**20:.4g} MiB"
    if row.unit == "FLOPs" or row.check == "params":
        return f"{v:,.0f}"
    return f"{v:.4g}"


def _change(row: Row) -> str:
    if row.change is None:
        return ""
    if row.unit in ("s", "B", "FLOPs", "steps") or row.check == "params":
        return f"×{row.change:.3f}"
    return f"{row.change:+.4g}"


def _ci(row: Row) -> str:
    if row.ci_low is None or row.ci_high is None:
        return ""
    if row.unit == "s":
        return f"[{row.ci_low:.3f}, {row.ci_high:.3f}]"
    return f"[{row.ci_low:+.3g}, {row.ci_high:+.3g}]"


def _p(row: Row) -> str:
    if row.q_value is not None:
        return f"q={row.q_value:.2g}"
    if row.p_value is not None:
        return f"p={row.p_value:.2g}"
    return ""


def _note(row: Row) -> str:
    parts = [row.note] if row.note else []
    if row.verdict in ("regressed", "failed") and not row.gating:
        parts.append("not gating")
    if row.verdict == "inconclusive" and row.gating:
        parts.append("gating (--fail-on …,inconclusive)" if row.inconclusive_gates else
                     "not gating (add 'inconclusive' to --fail-on to gate)")
    return "; ".join(parts)


def shown(result: Comparison) -> tuple[list[Row], int]:
    """The rows worth reading (everything but unchanged exact/memory/status checks) and how many were hidden."""
    rows = [r for r in result.rows if r.verdict != "unchanged" or r.check in ALWAYS_SHOWN]
    return rows, len(result.rows) - len(rows)


def _headline(result: Comparison) -> str:
    n = len(result.failures)
    counts = ", ".join(f"{k} {v}" for k, v in result.counts().items() if v)
    verdict = f"{n} gating regression{'s' if n != 1 else ''}" if n else "no gating regression"
    return f"{verdict} ({counts})"


def print_table(result: Comparison, console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:  # a CI log or a pipe: don't squeeze the table into 80 columns
            console = Console(width=200)
    rows, hidden = shown(result)
    table = Table(title="gru-bench compare", caption=(f"{hidden} unchanged exact/memory checks not shown (see --json)"
                                                      if hidden else None), show_lines=False)
    for col, kw in (("verdict", {}), ("case", {"overflow": "fold"}), ("metric", {}), ("baseline", {"justify": "right"}),
                    ("candidate", {"justify": "right"}), ("change", {"justify": "right"}), ("95% CI", {}),
                    ("p/q", {}), ("note", {"overflow": "fold"})):
        table.add_column(col, **kw)
    for r in rows:
        table.add_row(f"[{STYLE[r.verdict]}]{r.verdict}[/]", escape(r.label), escape(r.metric),
                      _value(r, r.baseline), _value(r, r.candidate), _change(r), escape(_ci(r)), _p(r),
                      escape(_note(r)))
    console.print(table)
    for w in result.warnings:
        console.print(f"[yellow]warning:[/] {escape(w)}")
    console.print(escape(f"gate ({result.thresholds.source}): "
                         + (", ".join(result.thresholds[m].describe() for m in sorted(result.thresholds.gating))
                            or "none (report only)")))
    style = "bold red" if result.exit_code else "bold green"
    console.print(f"[{style}]{_headline(result)}[/]")


_MD_SPECIAL = re.compile(r"([\\`*_\[\]!|#~])")


def md(text: str) -> str:
    """Record text (labels, paths, notes) as inert Markdown: HTML escaped as the report does (GitHub renders raw HTML
    in job summaries and comments), Markdown's own syntax (links, images, code, tables) backslash-escaped, one line."""
    text = " ".join(str(text).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def _md_table(rows: list[Row]) -> list[str]:
    out = ["| | case | metric | baseline | candidate | change | 95% CI | p/q | note |",
           "|---|---|---|---:|---:|---:|---|---|---|"]
    for r in rows:
        out.append("| " + " | ".join(md(x) for x in (
            f"{ICON[r.verdict]} {r.verdict}", r.label, r.metric, _value(r, r.baseline), _value(r, r.candidate),
            _change(r), _ci(r), _p(r), _note(r))) + " |")
    return out


def to_markdown(result: Comparison) -> str:
    """A GitHub-flavoured Markdown summary: headline, gate, warnings, gating failures, other changes, all rows."""
    ok = result.exit_code == 0
    lines = [f"### gru-bench compare: {'✅' if ok else '❌'} {_headline(result)}", "",
             f"baseline {md(', '.join(result.baseline))} · candidate {md(', '.join(result.candidate))} · "
             f"α = {result.alpha}", "",
             f"**Gate** ({md(result.thresholds.source)}): "
             + (", ".join(md(result.thresholds[m].describe()) for m in sorted(result.thresholds.gating)) or "none"
                + " (report only)"), ""]
    if result.warnings:
        lines += ["**Warnings**", ""] + [f"- {md(w)}" for w in result.warnings] + [""]
    if result.failures:
        lines += ["#### Gating regressions and failures", ""] + _md_table(result.failures) + [""]
    others = [r for r in result.rows if r.verdict != "unchanged" and not r.fails]
    if others:
        lines += ["#### Other changes", ""] + _md_table(others) + [""]
    rows, hidden = shown(result)
    lines += [f"<details><summary>All comparisons ({len(rows)} shown, {hidden} unchanged exact/memory checks "
              "hidden)</summary>", ""] + _md_table(rows) + ["", "</details>"]
    return "\n".join(lines)
