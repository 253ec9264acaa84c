"""``format_bytes``: three significant digits in the smallest binary unit where the rounded value is under 1000."""
from __future__ import annotations

import pytest

from gru_bench.units import format_bytes


@pytest.mark.parametrize("n, text", [
    (0, "0 B"),
    (512, "512 B"),
    (1023, "1023 B"),
    (1024, "1 KiB"),
    (1536, "1.5 KiB"),
    (999 * 2**10, "999 KiB"),  # the last value that stays in KiB
    (999.5 * 2**10, "0.976 MiB"),  # rounds to 1000 KiB (".3g" would print 1e+03): one unit up
    (1_024_000, "0.977 MiB"),  # 1000 KiB exactly
    (3 * 2**20, "3 MiB"),
    (1023.7 * 2**20, "1 GiB"),  # not "1.02e+03 MiB"
    (-1_024_000, "-0.977 MiB"),
    (2**60, "1024 PiB"),  # past the largest unit: whole PiB, no exponent
])
def test_format_bytes_moves_up_a_unit_when_the_rounded_value_reaches_1000(n, text):
    assert format_bytes(n) == text


def test_format_bytes_never_prints_an_exponent():
    for k in range(10, 60):
        for n in (2**k, 2**k * 999.4, 2**k * 999.6, 2**k * 1023.9):
            assert "e+" not in format_bytes(n), n


def test_format_bytes_missing():
    assert format_bytes(None) == "—" and format_bytes(float("nan"), missing="n/a") == "n/a"
