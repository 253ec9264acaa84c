"""Errors the CLI turns into exit codes (in one place, ``cli.py``)."""
from __future__ import annotations


class InputError(ValueError):
    """Bad usage or input (suite file, flag, record): a one-line message, exit code 2."""
