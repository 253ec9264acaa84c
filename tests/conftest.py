"""What many test files build the same way: a tiny suite file, a tiny Case, a silent console, the one-line errors a
command printed, and the fault-injecting backends. Helpers are imported (``from conftest import write_suite``);
fixtures are found by pytest."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from rich.console import Console

import fault_backend
from gru_bench.backends import _np_layers
from gru_bench.case import Case

# the smallest case a worker runs in well under a second: adding, T=10, H=8, B=8, one warm-up and three timed steps
TINY = dict(task="adding", seq_len=10, hidden=8, batch_size=8, warmup=1, repetitions=3, options={"threads": 1})
# the smallest suite: one GRU and one LSTM of that size on NumPy
TINY_SUITE = dict(name="tiny", backend="numpy", cell=["gru", "lstm"], task="adding", seq_len=10, hidden=8,
                  batch_size=8, warmup=1, repetitions=3, threads=1, timeout_s=120)
QUIET = Console(file=open(os.devnull, "w"))  # progress and tables go nowhere


def tiny_case(backend: str = "numpy", **kw) -> Case:
    """A ``TINY`` GRU (reset_after) case on ``backend``; ``kw`` overrides any key."""
    return Case(**{**dict(backend=backend, cell="gru", variant="reset_after", **TINY), **kw})


def write_suite(path: Path, base: dict | None = None, **keys) -> Path:
    """A suite file at ``path``: ``base`` (default ``TINY_SUITE``) with ``keys`` overriding; returns ``path``."""
    path.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in {**(base or TINY_SUITE), **keys}.items()))
    return path


def error_lines(capsys) -> list[str]:
    """The non-empty lines a command wrote to stderr (warnings, the one-line error)."""
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


@pytest.fixture
def faults(monkeypatch):
    """The fault-injecting backends of ``fault_backend.py``, registered for this test."""
    fault_backend.enable(monkeypatch)


@pytest.fixture(autouse=True)
def restore_denormal_state():
    """After each test, the process's denormal state as at start-up: a case run in this process under the default
    "flush" policy leaves torch's FTZ/DAZ set (``torch.set_flush_denormal(True)``) and the NumPy layer's software
    flush on, and a later in-process ``denormals="keep"`` test would then see no subnormal. Torch is reset only if
    already imported (never imported here)."""
    yield
    _np_layers.set_flush(False)  # the module's default (_FLUSH = [False])
    torch = sys.modules.get("torch")  # None where an import was blocked (sys.modules["torch"] = None)
    if torch is not None:
        torch.set_flush_denormal(False)
