"""The GEMM floor of a training step: the time of the step's own matrix products at their real shapes, through
NumPy's BLAS on this machine (threads as in force), and the step's efficiency against it.

A model-wide "% of peak" divides by a large square GEMM's rate, which small recurrent GEMMs never reach
(``(B, H) @ (H, G·H)`` runs far below a 1024³ product). The floor asks instead: how long do *these* GEMMs take here?

The GEMMs of one training step, per layer (``G`` = 3 GRU, 4 LSTM; ``I`` the layer's input width; ``L`` the
sequence length), as the NumPy reference arranges them (a framework does the same products, maybe split or fused):

* forward: the input projection ``(L·B, I) @ (I, G·H)`` once; the recurrent ``(B, H) @ (H, G·H)`` L times;
* backward: ``(B, G·H) @ (G·H, H)`` (dL/dh_prev) L−1 times; ``(G·H, L·B) @ (L·B, H)`` (dW_hh) and
  ``(G·H, L·B) @ (L·B, I)`` (dW_ih) once; ``(L·B, G·H) @ (G·H, I)`` (dL/dx) once for layers above the first;
* the head: ``(B, H) @ (H, O)`` (many-to-one) or ``(L·B, H) @ (H, O)`` (every step), forward and its two
  backward products.

Each distinct ``(m, k, n, dtype)`` is timed once per process (median of repeats, warm operands; ``_CACHE``) and
the floor is the sum of count × median. Element-wise work (gates, activations) is not in the floor: efficiency
``floor / step`` is the share of the step that the GEMMs at BLAS speed would need, 1.0 being all-GEMM.
"""
from __future__ import annotations

import time
from collections import Counter
from statistics import median

import numpy as np

from .schema import GemmFloor
from .spec import ModelSpec

_CACHE: dict[tuple[int, int, int, str], float] = {}
MIN_SECONDS = 0.02  # timing budget per shape (at least MIN_REPEATS products)
MIN_REPEATS = 5


def step_gemms(spec: ModelSpec, batch: int, length: int) -> Counter:
    """``Counter({(m, k, n): count})`` of one training step's GEMMs (``(m, k) @ (k, n)``)."""
    G, B, L, H = spec.gates, batch, length, spec.hidden_size
    out: Counter = Counter()
    for layer in range(spec.num_layers):
        I = spec.layer_input_size(layer)  # noqa: E741 - the input width, as in spec.py
        out[(L * B, I, G * H)] += 1  # input projection, all steps
        out[(B, H, G * H)] += L  # recurrent, per step
        if L > 1:
            out[(B, G * H, H)] += L - 1  # dL/dh_prev, per step
        out[(G * H, L * B, H)] += 1  # dW_hh
        out[(G * H, L * B, I)] += 1  # dW_ih
        if layer > 0:
            out[(L * B, G * H, I)] += 1  # dL/dx into the layer below
    rows = B if spec.head == "last" else L * B
    O = spec.output_size  # noqa: E741
    out[(rows, H, O)] += 1  # head forward
    out[(O, rows, H)] += 1  # d head weight
    out[(rows, O, H)] += 1  # d head input
    return out


def time_gemm(m: int, k: int, n: int, dtype: str = "float32") -> float:
    """Median seconds of one ``(m, k) @ (k, n)`` product through NumPy's BLAS, cached per process."""
    key = (m, k, n, dtype)
    if key not in _CACHE:
        rng = np.random.default_rng(0)
        a = rng.standard_normal((m, k)).astype(dtype)  # (m, k)
        b = rng.standard_normal((k, n)).astype(dtype)  # (k, n)
        c = np.empty((m, n), dtype=dtype)  # (m, n)
        np.matmul(a, b, out=c)  # warm-up
        samples: list[float] = []
        deadline = time.perf_counter() + MIN_SECONDS
        while len(samples) < MIN_REPEATS or time.perf_counter() < deadline:
            t0 = time.perf_counter()
            np.matmul(a, b, out=c)
            samples.append(time.perf_counter() - t0)
        _CACHE[key] = float(median(samples))
    return _CACHE[key]


def floor(spec: ModelSpec, batch: int, length: int, dtype: str, step_seconds: float | None) -> GemmFloor:
    """The step's GEMM floor and ``efficiency = floor / step_seconds`` (None without a step time)."""
    shapes, total, flop = [], 0.0, 0.0
    for (m, k, n), count in sorted(step_gemms(spec, batch, length).items()):
        s = time_gemm(m, k, n, dtype)
        shapes.append({"m": m, "k": k, "n": n, "count": count, "seconds": s})
        total += count * s
        flop += count * 2.0 * m * k * n
    eff = total / step_seconds if step_seconds else None
    return GemmFloor(seconds=total, gflops=flop / total / 1e9 if total > 0 else 0.0, efficiency=eff, shapes=shapes,
                     method=f"numpy {dtype} GEMMs at the step's shapes, median per shape, this process's BLAS threads")
