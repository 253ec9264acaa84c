"""A table as the report shows it: raw values (for CSV and sorting) plus a display format per column, written
as HTML cells (display text + sort key), CSV (raw SI units) and Markdown (display text, escaped)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..case import Case
from ..compare.output import md
from ..units import format_bytes

MAX_COLUMNS = 12  # per HTML table: a wider one is split into parts that repeat the key columns (fits 1280 px)
# what identifies a row (a case's configuration, the run, the cell): a table's leading columns with these keys are
# repeated in every part
KEY_FIELDS = frozenset({*Case.model_fields, "run", "label", "series", "case_id", "backend_device", "cell_key",
                        "gru_variant"})
KINDS = ("text", "int", "seconds_ms", "bytes", "ratio", "float", "pct", "count")


@dataclass(frozen=True)
class Column:
    key: str  # column of the raw frame; also the CSV header
    label: str  # header shown in HTML and Markdown
    kind: str = "text"  # one of KINDS: how a value is shown
    css: str = ""  # class of the header and cells (e.g. the cell colour, "num")
    tip: str = ""  # header tooltip: what the column means, its unit

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind={self.kind!r}: expected one of {', '.join(KINDS)}")


def _missing(v) -> bool:
    if v is None:
        return True
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    if ms >= 100:
        return f"{ms:,.0f}"
    if ms >= 10:
        return f"{ms:.1f}"
    if ms >= 0.1:
        return f"{ms:.2f}"
    return f"{ms:.3g}"


def format_value(kind: str, v) -> str:
    """The text a reader sees for one raw value ('' for missing)."""
    if _missing(v):
        return ""
    if kind == "int":
        return f"{int(v):,}"
    if kind == "seconds_ms":
        return _ms(float(v))
    if kind == "bytes":
        return format_bytes(float(v))
    if kind == "ratio":
        return f"{float(v):.2f}×"
    if kind == "float":
        x = float(v)
        return "0" if x == 0 else (f"{x:.4g}" if 1e-4 <= abs(x) < 1e6 else f"{x:.3e}")
    if kind == "pct":
        return f"{float(v):.1f} %"
    return str(v)


def sort_key(kind: str, v) -> str:
    """What the inline sorter compares: a number for numeric kinds (missing: empty, sorted last), else text."""
    if _missing(v):
        return ""
    if kind in ("text", "count"):
        if kind == "count" and isinstance(v, str) and "/" in v:  # "2/3" sorts by its fraction
            a, _, b = v.partition("/")
            try:
                return repr(float(a) / float(b)) if float(b) else "0"
            except ValueError:
                pass
        return str(v)
    x = float(v)
    return "" if math.isnan(x) else repr(x)


@dataclass
class Table:
    name: str  # file stem: tables/<name>.csv and .md
    title: str
    columns: list[Column]
    df: pd.DataFrame
    note: str = ""  # one sentence under the title: what a row is, tolerances
    row_css: list[str] = field(default_factory=list)  # optional class per row (e.g. "failed")

    def __post_init__(self) -> None:
        missing = [c.key for c in self.columns if c.key not in self.df.columns]
        if missing:
            raise ValueError(
                f"table {self.name!r}: columns {missing} not in the frame: expected {list(self.df.columns)}"
            )

    @property
    def empty(self) -> bool:
        return self.df.empty

    @property
    def shown(self) -> list[Column]:
        """The columns with a value on at least one row (a column empty on every row says nothing)."""
        if self.df.empty:
            return list(self.columns)
        return [c for c in self.columns if not all(_missing(v) for v in self.df[c.key])]

    def constant(self) -> list[tuple[str, str]]:
        """(label, text) of the shown columns whose text is the same on every row (two rows or more): the HTML
        says them once above the table instead of repeating them."""
        if len(self.df) < 2:
            return []
        out = []
        for c in self.shown:
            texts = {format_value(c.kind, v) for v in self.df[c.key]}
            if len(texts) == 1:
                out.append((c.label, texts.pop()))
        return out

    def parts(self, max_columns: int = MAX_COLUMNS) -> list["Table"]:
        """The HTML view: shown columns that vary, in parts of at most ``max_columns`` columns each, every part
        repeating the leading key columns (``KEY_FIELDS``) so a row reads on its own."""
        same = {label for label, _ in self.constant()}
        cols = [c for c in self.shown if c.label not in same] or self.shown
        keys: list[Column] = []
        for c in cols:
            if c.key not in KEY_FIELDS:
                break
            keys.append(c)
        rest = cols[len(keys):]
        width = max(1, max_columns - len(keys))
        chunks = [rest[i:i + width] for i in range(0, len(rest), width)] or [[]]
        return [Table(self.name, self.title, keys + chunk, self.df, self.note, self.row_css) for chunk in chunks]

    def rows(self) -> list[list[tuple[str, str, str]]]:
        """Per row, per shown column: (display text, sort key, css class). Strings are escaped by the template."""
        out = []
        shown = self.shown
        for _, r in self.df.iterrows():
            out.append([(format_value(c.kind, r[c.key]), sort_key(c.kind, r[c.key]), c.css) for c in shown])
        return out

    def raw(self) -> pd.DataFrame:
        return self.df[[c.key for c in self.columns]]

    def to_csv(self, path: Path) -> Path:
        self.raw().to_csv(path, index=False)
        return path

    def to_markdown(self, max_rows: int | None = None) -> str:
        """A GitHub-flavoured Markdown table of the display text, inert (``compare.output.md``: HTML escaped, ``|``,
        links, images and code backslash-escaped, one line per cell)."""
        head = "| " + " | ".join(md(c.label) for c in self.shown) + " |"
        rule = "|" + "|".join("---:" if c.kind not in ("text",) else "---" for c in self.shown) + "|"
        rows = self.rows()
        shown = rows if max_rows is None else rows[:max_rows]
        body = ["| " + " | ".join(md(t) for t, _, _ in row) + " |" for row in shown]
        more = [f"\n_{len(rows) - len(shown)} more rows in {self.name}.csv_"] if len(shown) < len(rows) else []
        return "\n".join([head, rule, *body, *more])
