"""Fixing the BLAS/OpenMP thread count of this process (threadpoolctl and the thread environment variables).

The framework's own intra-op threads are fixed by ``backend.set_threads``.
"""
from __future__ import annotations

import os
from typing import Any

from .timer import check_count

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
              "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")

_limiter: Any = None  # the threadpoolctl limiter in force (kept so that it is not collected)
_fixed_threads: int | None = None  # what fix_threads last set in this process


def fix_threads(n: int | None) -> dict[str, Any]:
    """Fix BLAS/OpenMP threads to ``n`` (``None``: leave them) and return what is in force.

    Sets the thread environment variables (read by libraries loaded later in this process, e.g. a framework's
    OpenMP) and limits the BLAS/OpenMP pools already loaded through threadpoolctl. Returns
    ``{"requested": n, "blas": {"openblas": 2, ...}, "openmp": {...}, "env": {...}}``.
    """
    global _limiter, _fixed_threads
    from threadpoolctl import threadpool_info, threadpool_limits

    if n is not None:
        n = check_count("threads", n)
        for var in THREAD_ENV:
            os.environ[var] = str(n)
        _limiter = threadpool_limits(limits=n)  # persists until restored: this process runs one case
        _fixed_threads = n
    in_force: dict[str, Any] = {"requested": n}
    for pool in threadpool_info():
        api = pool.get("user_api", "other")
        name = pool.get("internal_api", "?")
        in_force.setdefault(api, {})[name] = pool.get("num_threads")
    in_force["env"] = {var: os.environ[var] for var in THREAD_ENV if var in os.environ}
    return in_force


def fixed_threads() -> int | None:
    """The thread count ``fix_threads`` last set in this process (``None``: never set)."""
    return _fixed_threads


__all__ = ["THREAD_ENV", "fix_threads", "fixed_threads"]
