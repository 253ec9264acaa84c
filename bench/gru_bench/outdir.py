"""Output folders checked before any work starts: a bad ``--out`` / ``-o`` is a one-line ``InputError`` (exit 2),
not a raw ``OSError`` after the calibration. Nothing is created by the check."""
from __future__ import annotations

import os
from pathlib import Path

from .errors import InputError


def check_out_dir(path: str | os.PathLike[str], flag: str = "--out") -> Path:
    """``path`` is a folder, or can be made one: every existing part of it is a folder we may write into."""
    p = Path(path)
    shown = f"{flag} {str(path)!r}"
    if p.exists() and not p.is_dir():
        raise InputError(f"{shown}: is a file, not a folder: expected a folder (or a path where one can be made)")
    probe = p.absolute()
    while not probe.exists():  # the nearest existing ancestor decides whether the folder can be made
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise InputError(f"{shown}: {str(probe)!r} is a file, not a folder: expected a path below a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        what = "cannot be written" if probe == p.absolute() else f"cannot be made ({str(probe)!r} is not writable)"
        raise InputError(f"{shown}: {what}: expected a folder this user may write into")
    return p


__all__ = ["check_out_dir"]
