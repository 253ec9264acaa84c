"""Byte counts as people read them (binary units), the one formatter every table, message and check uses."""
from __future__ import annotations

_UNITS = (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def format_bytes(n: float | None, missing: str = "—") -> str:
    """``1536`` -> ``1.5 KiB``, ``3 * 2**20`` -> ``3 MiB``: three significant digits in the largest unit that the
    value reaches (``512 B`` below 1 KiB); ``missing`` for None or NaN."""
    if n is None or n != n:
        return missing
    for unit, scale in _UNITS:
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"
