"""The Markdown summary (fits a CI job summary): the answer first (the sentences of the HTML report's first screen,
``answer.py``), the runs, the verdict, then what did not finish."""

from __future__ import annotations

from ..compare.output import md as _esc  # record text as inert Markdown: HTML escaped, links/images/code too
from .answer import NO_ANSWER
from .display_table import Table


def summary(
    title: str,
    answers: list[str],
    run_lines: list[str],
    headline: list[dict],
    verdict: Table,
    iso: Table,
    problems: Table,
    warnings: list[str],
    max_rows: int = 40,
) -> str:
    out = [f"# {_esc(title)}", ""]
    out += [f"- {_esc(a)}" for a in answers] if answers else [f"_{_esc(NO_ANSWER)}_"]
    out += ["", "## Runs", ""] + [f"- {_esc(line)}" for line in run_lines] + [""]
    out += [f"## {verdict.title}", ""]
    for h in headline:  # the verdict section's cards, as in the HTML report
        out.append(
            f"**{_esc(str(h['task']))} · {_esc(str(h['backend']))}**"
            + (f" ({_esc(str(h['run']))})" if len(run_lines) > 1 else "")
        )
        out += [f"- {_esc(line)}" for line in h["lines"]] + [""]
    out += [
        verdict.note,
        "",
        verdict.to_markdown(max_rows) if not verdict.empty else "_none_",
        "",
    ]
    if not iso.empty:
        out += [f"## {iso.title}", "", iso.to_markdown(max_rows), ""]
    out += ["## Cases that did not finish", ""]
    out += [problems.to_markdown(max_rows) if not problems.empty else "None: every case finished ok.", ""]
    if warnings:
        out += ["## Warnings", ""] + [f"- {_esc(w)}" for w in warnings] + [""]
    return "\n".join(out)
