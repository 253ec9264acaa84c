"""The exit statuses of the ``gru-bench`` command (httpie's ``status.py``): what each code means to a shell or CI.

``cli.main`` is the one place that maps what happened to a status: ``InputError`` and typer/click usage errors are
``USAGE`` (2); any other exception is a bug or the environment, ``FAILED`` (1), never "bad input".
"""
from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0  # every case ran / no regression
    FAILED = 1  # some case failed, timed out or ran out of memory / a regression / an unexpected error
    USAGE = 2  # usage or input error (``InputError``): a bad flag, suite file, record or value
    INTERRUPTED = 130  # Ctrl-C: finished cases kept, resume with --resume
