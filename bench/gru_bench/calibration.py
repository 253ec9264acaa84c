"""This machine's GEMM throughput: the peak a step's GFLOP/s is read against."""
from __future__ import annotations

import time
from statistics import median

import numpy as np

from .schema import Calibration
from .timer import check_count


def calibrate(seconds: float = 1.0, n: int = 1024, min_repeats: int = 5) -> Calibration:
    """This machine's float32 GEMM throughput (``n × n`` by ``n × n`` through NumPy's BLAS, threads as in force):
    one warm-up, then repeats for about ``seconds`` (at least ``min_repeats``); the median GFLOP/s."""
    if not seconds > 0:
        raise ValueError(f"seconds={seconds!r}: expected a positive number")
    n = check_count("n", n)
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)  # (n, n)
    b = rng.standard_normal((n, n), dtype=np.float32)  # (n, n)
    out = np.empty((n, n), dtype=np.float32)  # (n, n)
    np.matmul(a, b, out=out)  # warm-up: pages touched, BLAS threads started
    flop = 2.0 * n**3
    rates: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(rates) < min_repeats or time.perf_counter() < deadline:
        t0 = time.perf_counter()
        np.matmul(a, b, out=out)
        rates.append(flop / (time.perf_counter() - t0) / 1e9)
    from threadpoolctl import threadpool_info

    blas = ", ".join(f"{p.get('internal_api')}×{p.get('num_threads')}" for p in threadpool_info()
                     if p.get("user_api") == "blas")
    return Calibration(gemm_gflops=float(median(rates)),
                       method=f"numpy float32 GEMM {n}x{n}x{n}, median of {len(rates)} ({blas or 'BLAS ?'} threads)")


__all__ = ["calibrate"]
