"""Errors the CLI turns into exit codes (in one place, ``cli.py``; the codes in ``status.py``)."""
from __future__ import annotations


class InputError(ValueError):
    """Bad usage or input (suite file, flag, record): a one-line message naming the culprit, exit code 2.

    A ``ValueError`` so that library callers (``load_suite``, ``parse_fail_on``, ``load_record``) can catch bad values
    the Python way; the CLI maps *only* this class to exit 2: a plain ``ValueError`` from deeper down is a bug (exit
    1), never "bad input". Code that checks user input raises this, not a bare ``ValueError``."""
