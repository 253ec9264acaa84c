"""Byte counts as people read them (binary units), the one formatter every table, message and check uses."""
from __future__ import annotations

_UNITS = (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10))


def format_bytes(n: float | None, missing: str = "—") -> str:
    """``1536`` -> ``1.5 KiB``, ``3 * 2**20`` -> ``3 MiB``: three significant digits in the smallest unit where the
    rounded value stays under 1000 (``512 B`` below 1 KiB; 1000 KiB is ``0.977 MiB``, never ``1e+03 KiB``);
    ``missing`` for None or NaN."""
    if n is None or n != n:
        return missing
    if abs(float(f"{n:.0f}")) < 2**10:
        return f"{n:.0f} B"
    for unit, scale in reversed(_UNITS):  # KiB first
        text = f"{n / scale:.3g}"
        if abs(float(text)) < 1000:
            return f"{text} {unit}"
    return f"{n / _UNITS[0][1]:.0f} {_UNITS[0][0]}"  # 1000 PiB and more: whole PiB
