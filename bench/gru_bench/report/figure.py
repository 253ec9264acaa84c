"""The report's figure toolkit: matplotlib ``Figure`` objects on the Agg canvas (no pyplot, no global state), one
palette, the shared legend and axes; ``Plot`` (a figure with its name, title and caption) and ``save`` (PNG and SVG,
the PNG kept as a data URI for the HTML). The plots themselves: ``plots``."""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

from .frame import CELL_KEYS
from .palette import BASELINE_COLOR, backend_style, cell_color

RC = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.hashsalt": "gru-bench",
    "figure.dpi": 100,
    "savefig.dpi": 100,
}
WIDTH = 11.0  # inches at 100 dpi: 1100 px, scaled down to the page width
PANEL_H = 3.4
MAX_PANELS = 4
MAX_CURVE_ROWS = 4


@dataclass
class Plot:
    name: str  # file stem: plots/<name>.png and .svg
    title: str
    caption: str
    fig: Figure
    uri: str = ""  # data:image/png;base64,..., set by save()
    files: tuple[str, ...] = ()


def text(s: object) -> str:
    """A string from a record, safe for matplotlib (no mathtext: ``$`` is literal)."""
    return str(s).replace("$", r"\$")


LEGEND_H = 0.45  # inches under the panels for the shared legend


def new_figure(rows: int, cols: int, height: float = PANEL_H, gap: float = 0.95) -> tuple[Figure, np.ndarray]:
    """Panels on a fixed grid: each row ``height`` inches of which ``gap`` holds the x label and the next title;
    margins in inches (a layout engine costs most of the drawing time on 2 cores)."""
    total = height * rows + LEGEND_H + 0.4
    fig = Figure(figsize=(WIDTH, total))
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    fig.subplots_adjust(
        left=0.8 / WIDTH,
        right=1 - 0.25 / WIDTH,
        top=1 - 0.4 / total,
        bottom=(LEGEND_H + 0.55) / total,
        wspace=0.28,
        hspace=gap / (height - gap),
    )
    return fig, axes


def finish(fig: Figure, df: pd.DataFrame, name: str, title: str, caption: str, dashed: str | None = None) -> Plot:
    """The plot of ``df``'s rows with the cells-and-backends legend (plus the dashed grey reference line's entry,
    ``dashed``, where one is drawn)."""
    cells, backends = cells_backends(df)
    extra = [Line2D([], [], color=BASELINE_COLOR, linestyle=(0, (4, 3)), label=dashed)] if dashed else []
    legend(fig, cells, backends, extra)
    return Plot(name, title, caption, fig)


def points(ax, df: pd.DataFrame, x: pd.Series, y: pd.Series) -> None:
    """One marker per row of ``df`` at (x, y): the cell's colour, the backend's marker."""
    for (_, r), xv, yv in zip(df.iterrows(), x, y):
        ax.plot([xv], [yv], color=cell_color(r["cell_key"]), alpha=0.85,
                **{**backend_style(r["backend"], r["device"]), "linestyle": "none"})


def equality_line(ax, lo: float, hi: float) -> None:
    """The dashed y = x line over [lo, hi] on log-log axes."""
    ax.plot([lo, hi], [lo, hi], color=BASELINE_COLOR, linestyle=(0, (4, 3)), linewidth=1.2)
    log_axis(ax, "x")
    log_axis(ax, "y")


def legend(fig: Figure, cells: list[str], backends: list[tuple[str, str]], extra: list = ()) -> None:
    handles = [Patch(color=cell_color(c), label=c) for c in cells]
    handles += [Line2D([], [], color="#333333", label=f"{b}/{d}", **backend_style(b, d)) for b, d in backends]
    handles += list(extra)
    if handles:
        fig.legend(
            handles=handles,
            loc="lower center",
            ncols=len(handles) if len(handles) <= 8 else (len(handles) + 1) // 2,
            frameon=False,
            bbox_to_anchor=(0.5, 0.0),
        )


def log_axis(ax, axis: str, base: int = 10) -> None:
    """A log axis with labelled major ticks only (minor labels crowd the axis and cost most of the drawing time)."""
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log", base=base)
    target = ax.xaxis if axis == "x" else ax.yaxis
    if base == 10:  # majors at 1, 2, 5 × 10^k, so a range under a decade still has labels
        target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    target.set_minor_formatter(NullFormatter())


def size_axis(ax, values, max_ticks: int = 10) -> None:
    """A size axis (H, T): log base 2, ticks at the sizes measured (when few enough to label them all)."""
    v = sorted({int(x) for x in values if x and x > 0})
    if len(v) < 2:
        return
    log_axis(ax, "x", base=2)
    if len(v) <= max_ticks:
        ax.set_xticks(v, [str(x) for x in v])
        ax.xaxis.set_minor_locator(NullLocator())


def series_keys(df: pd.DataFrame, with_hidden: bool = False, with_run: bool = False) -> list[str]:
    keys = ["cell_key", "backend", "device"]
    if with_hidden:
        keys.append("hidden")
    if with_run:
        keys.append("run")
    return keys


def series_label(key: dict, with_hidden: bool, with_run: bool) -> str:
    parts = [key["cell_key"], f"{key['backend']}/{key['device']}"]
    if with_hidden:
        parts.append(f"H={key['hidden']}")
    if with_run:
        parts.append(text(key["run"]))
    return " ".join(parts)


def cells_backends(df: pd.DataFrame) -> tuple[list[str], list[tuple[str, str]]]:
    cells = [c for c in CELL_KEYS if c in set(df["cell_key"])]
    backends = list(dict.fromkeys(zip(df["backend"], df["device"])))
    return cells, backends


def tasks_of(df: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(df["task"]))[:MAX_PANELS]


# ---------------------------------------------------------------------------------------------------- save
def style():
    """The report's matplotlib settings; build and save figures inside ``with style():``."""
    return matplotlib.rc_context(RC)


def save(plot: Plot, directory: Path) -> Plot:
    """Write ``<name>.png`` and ``<name>.svg`` under ``directory``; keep the PNG as a data URI; free the figure."""
    directory.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    plot.fig.savefig(buf, format="png")
    png = buf.getvalue()
    (directory / f"{plot.name}.png").write_bytes(png)
    plot.fig.savefig(directory / f"{plot.name}.svg", format="svg", metadata={"Date": None})
    plot.uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    plot.files = (f"{directory.name}/{plot.name}.png", f"{directory.name}/{plot.name}.svg")
    plot.fig.clear()
    return plot
