"""The denormal policy of a case (``Case.denormals``: "flush" | "keep"), applied inside the worker process before
timing and accuracy, the same way on every backend, and the subnormal census.

How each backend is told (the ``method`` recorded in the case's provenance under ``denormals``):

* torch: ``torch.set_flush_denormal(flag)`` (sets FTZ/DAZ in MXCSR on x86 with SSE3; it returns False where the CPU
  cannot, and that is recorded as ``applied: False``);
* TF: TensorFlow sets flush-to-zero on its own threads for every op (``port::ScopedFlushDenormal``) and has no public
  switch to keep denormals: "flush" is ``tf-default``; "keep" cannot be honoured, so the case is skipped with that
  reason rather than silently flushed;
* numpy: setting MXCSR from Python needs compiled code per ISA (and BLAS threads have their own MXCSR), so there is no
  portable CPU-flag flush; under "flush" the NumPy BPTT zeroes every value below tiny·2^24 (subnormals and the tiny
  normals whose next product would be one; _np_layers.FLUSH_MARGIN) after every step of dL/dh, the LSTM's
  dL/dc and the gate gradients (B, G·H) that feed the step's GEMM and the weight-gradient GEMMs (``software-dh``: a
  compare and a masked copy per block, O(B·G·H) element-wise work per step beside the step's O(B·G·H²) GEMM).
  Forward values are not flushed (they do not decay into the subnormal range).
"""
from __future__ import annotations

from typing import Any, Iterable

import numpy as np

POLICIES = ("flush", "keep")
DEFAULT = "flush"


class KeepUnsupported(Exception):
    """The backend cannot keep denormals (the case is a visible skip)."""


def apply(backend: Any, policy: str) -> dict[str, Any]:
    """Put ``policy`` in force for ``backend`` (an instance) in this process; returns the provenance entry.

    A backend says how through ``set_denormals(policy) -> dict``; the base class's default (a plugin that does not
    override it) runs as it is, recorded as ``method: "none (backend has no set_denormals)"``, ``applied: False``.
    A policy outside the backend's ``capabilities.denormals`` raises ``KeepUnsupported`` (the case is skipped)
    when the backend's own ``set_denormals`` does not say why first."""
    if policy not in POLICIES:
        raise ValueError(f"denormals={policy!r}: expected one of {POLICIES}")
    entry = backend.set_denormals(policy)
    if policy not in backend.capabilities.denormals:
        raise KeepUnsupported(f"denormals={policy!r}: the {backend.name} backend cannot put it in force "
                              f"(it declares {', '.join(backend.capabilities.denormals)})")
    return {"policy": policy, **entry}


def torch_policy(policy: str) -> dict[str, Any]:
    import torch

    flush = policy == "flush"
    ok = bool(torch.set_flush_denormal(flush))
    # set_flush_denormal(False) returns False too where FTZ is unsupported: then denormals are kept anyway
    return {"method": "torch.set_flush_denormal", "applied": ok or not flush}


def tf_policy(policy: str) -> dict[str, Any]:
    if policy != "flush":
        raise KeepUnsupported("denormals='keep': TensorFlow flushes denormals on its CPU threads "
                              "(ScopedFlushDenormal around every kernel) and has no switch to keep them")
    return {"method": "tf-default", "applied": True}


def numpy_policy(policy: str) -> dict[str, Any]:
    from . import _np_layers

    _np_layers.set_flush(policy == "flush")
    return {"method": "software-dh" if policy == "flush" else "none", "applied": True}


def subnormal_fraction(a: Any) -> float:
    """Fraction of the values of the floating-point array ``a`` that are subnormal (non-zero, below ``tiny``)."""
    a = np.asarray(a)
    if a.size == 0:
        return 0.0
    m = np.abs(a)
    return float(np.count_nonzero((m > 0) & (m < np.finfo(a.dtype).tiny)) / a.size)


def census(named: Iterable[tuple[str, Any]]) -> dict[str, float]:
    """``{name: subnormal fraction}`` for each named array (e.g. ``hidden_grad``, ``param_grad``)."""
    return {k: subnormal_fraction(v) for k, v in named}
