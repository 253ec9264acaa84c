"""The two losses of ``spec.py`` in NumPy, value and gradient w.r.t. the head output (shared by the NumPy backend,
the tasks' evaluation and the conformance checks)."""
from __future__ import annotations

import numpy as np


def mse(yhat: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """mean((ŷ − y)²) over all elements; returns (loss, dL/dŷ) with dL/dŷ shaped like ŷ."""
    if yhat.shape != y.shape:
        raise ValueError(f"y has shape {y.shape}: expected {yhat.shape} (the head output) for loss 'mse'")
    d = yhat - y
    return float(np.mean(d * d)), (2.0 / d.size) * d


def xent(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """mean over positions of −log softmax(ŷ)[y]; ``logits`` (..., C), integer ``y`` (...)."""
    if logits.shape[:-1] != y.shape:
        raise ValueError(f"y has shape {y.shape}: expected {logits.shape[:-1]} (class indices) for loss 'xent'")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"y has dtype {y.dtype}: expected integer class indices for loss 'xent'")
    C = logits.shape[-1]
    if y.size and (y.min() < 0 or y.max() >= C):
        bad = int(y.min()) if y.min() < 0 else int(y.max())
        raise ValueError(f"y holds class index {bad}: expected indices in [0, {C - 1}] for loss 'xent'")
    z = logits - logits.max(axis=-1, keepdims=True)
    logsumexp = np.log(np.exp(z).sum(axis=-1, keepdims=True))
    logp = z - logsumexp  # (..., C)
    picked = np.take_along_axis(logp, y[..., None].astype(np.intp), axis=-1)[..., 0]
    n = y.size
    grad = np.exp(logp)
    idx = y[..., None].astype(np.intp)
    np.put_along_axis(grad, idx, np.take_along_axis(grad, idx, -1) - 1.0, -1)
    return float(-picked.mean()), grad / n


LOSSES = {"mse": mse, "xent": xent}


def loss_and_grad(kind: str, yhat: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    if kind not in LOSSES:
        raise ValueError(f"loss={kind!r}: expected one of {', '.join(LOSSES)}")
    return LOSSES[kind](yhat, y)
