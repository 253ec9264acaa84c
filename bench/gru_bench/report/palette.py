"""One palette for the whole report: each cell keeps its colour in every plot and table (Okabe–Ito, colour-blind
safe); each backend keeps its marker and line style; a GPU device is drawn hollow."""

from __future__ import annotations

CELL_COLORS = {
    "GRU reset_after": "#0072B2",  # blue
    "GRU reset_before": "#009E73",  # bluish green
    "LSTM": "#D55E00",  # vermilion
}
OTHER_COLOR = "#555555"
BASELINE_COLOR = "#7f7f7f"
BACKEND_STYLES = {
    "numpy": {"marker": "o", "linestyle": "-"},
    "torch": {"marker": "s", "linestyle": "--"},
    "tf": {"marker": "^", "linestyle": ":"},
}
OTHER_STYLE = {"marker": "D", "linestyle": "-."}


def cell_color(cell_key: str) -> str:
    return CELL_COLORS.get(cell_key, OTHER_COLOR)


def backend_style(backend: str, device: str = "cpu") -> dict:
    """Marker and line style of a backend; hollow markers on a GPU."""
    style = dict(BACKEND_STYLES.get(backend, OTHER_STYLE))
    if device != "cpu":
        style["markerfacecolor"] = "white"
    return style


def css_variables() -> str:
    """The cell colours as CSS custom properties, so tables use the plots' colours."""
    names = {"GRU reset_after": "gru-ra", "GRU reset_before": "gru-rb", "LSTM": "lstm"}
    return "; ".join(f"--{names[k]}: {v}" for k, v in CELL_COLORS.items())
