"""gru-bench: GRU vs LSTM, and their implementations, measured with numbers you can trust."""
from __future__ import annotations

__version__ = "0.1.0"


def load_results(paths):  # noqa: D401 - re-exported lazily so `import gru_bench` stays light
    """Run records (files or directories) -> pandas DataFrame, one row per case. See ``tabular.load_results``."""
    from .tabular import load_results as _load

    return _load(paths)


__all__ = ["__version__", "load_results"]
