"""Global-norm clipping, SGD and Adam of the NumPy backend, on one flat parameter vector (formulas: ``spec.py``,
written as PyTorch computes them: ``clip_grad_norm_``, ``torch.optim.SGD``, ``torch.optim.Adam``)."""
from __future__ import annotations

import math

import numpy as np

from .base import TrainConfig


def clip_(g: np.ndarray, max_norm: float | None) -> float:
    """g ← g · min(1, c / (N + 1e-6)) with N = ||g||₂; returns N (before clipping)."""
    norm = math.sqrt(float(np.dot(g, g)))
    if max_norm is not None:
        coef = max_norm / (norm + 1e-6)
        if coef < 1.0:
            g *= coef
    return norm


class Optimizer:
    """SGD or Adam over the flat vector ``theta`` with gradient ``g`` (both (P,)); state: ``m``, ``v``, ``t``."""

    def __init__(self, cfg: TrainConfig, size: int, dtype: np.dtype) -> None:
        self.cfg = cfg
        self.t = 0  # steps taken
        self.m = np.zeros(size, dtype)  # Adam first moment
        self.v = np.zeros(size, dtype)  # Adam second moment
        self._tmp = np.empty(size, dtype)

    def step(self, theta: np.ndarray, g: np.ndarray) -> None:
        """Clip ``g`` in place, then update ``theta`` in place."""
        cfg, tmp = self.cfg, self._tmp
        clip_(g, cfg.clip)
        self.t += 1
        if cfg.optimizer == "sgd":
            np.multiply(g, cfg.lr, out=tmp)
            theta -= tmp  # p ← p − lr · g
            return
        b1, b2 = cfg.betas
        m, v = self.m, self.v
        m *= b1
        np.multiply(g, 1.0 - b1, out=tmp)
        m += tmp  # m ← β1 m + (1 − β1) g
        v *= b2
        np.multiply(g, g, out=tmp)
        tmp *= 1.0 - b2
        v += tmp  # v ← β2 v + (1 − β2) g²
        step_size = cfg.lr / (1.0 - b1 ** self.t)
        np.sqrt(v, out=tmp)
        tmp /= math.sqrt(1.0 - b2 ** self.t)
        tmp += cfg.eps  # sqrt(v) / sqrt(1 − β2^t) + ε
        np.divide(m, tmp, out=tmp)
        tmp *= step_size
        theta -= tmp  # p ← p − (lr / (1 − β1^t)) · m / (·)
