"""The Markdown summary (fits a CI job summary): the verdict first, then what did not finish."""

from __future__ import annotations

from .table import Table


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def summary(
    title: str,
    run_lines: list[str],
    headline: list[dict],
    verdict: Table,
    iso: Table,
    problems: Table,
    warnings: list[str],
    max_rows: int = 40,
) -> str:
    out = [f"# {_esc(title)}", ""]
    out += [f"- {_esc(line)}" for line in run_lines] + [""]
    if headline:
        out += ["## Verdict", ""]
        for h in headline:
            out.append(
                f"**{_esc(str(h['task']))} · {_esc(str(h['backend']))}**"
                + (f" ({_esc(str(h['run']))})" if len(run_lines) > 1 else "")
            )
            out += [f"- {_esc(line)}" for line in h["lines"]] + [""]
    out += [
        f"## {verdict.title}",
        "",
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
