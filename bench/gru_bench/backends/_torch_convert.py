"""Canonical weights <-> the PyTorch model's state dict.

The canonical layout (``spec.py``) *is* PyTorch's: ``nn.GRU``/``nn.LSTM`` name and shape their parameters exactly as
the canonical dict does (``weight_ih_l{k}`` (G·H, I_k), gate rows ``[r; z; n]`` / ``[i; f; g; o]``), and
``ResetBeforeGRU`` copies those names. The model module (``_torch_cells.Net``) keeps the recurrent layers under
``rnn.`` and the head under ``head.``, so a conversion renames keys and changes nothing else: the function is
unchanged by construction, and the round trip is exact.

This module imports torch: only ``torch_backend`` imports it.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from ..spec import ModelSpec, Weights, check_weights, param_shapes

RNN_PREFIX = "rnn."


def torch_key(canonical: str) -> str:
    """``weight_ih_l0`` -> ``rnn.weight_ih_l0``; ``head.weight`` stays."""
    return canonical if canonical.startswith("head.") else RNN_PREFIX + canonical


def canonical_to_state_dict(spec: ModelSpec, weights: Mapping[str, np.ndarray], dtype: torch.dtype | None = None,
                            device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The model's state dict from canonical weights (copied; cast to ``dtype`` when given)."""
    check_weights(spec, weights)
    return {torch_key(k): torch.tensor(np.asarray(weights[k]), dtype=dtype, device=device)
            for k in param_shapes(spec)}


def state_dict_to_canonical(spec: ModelSpec, state: Mapping[str, torch.Tensor]) -> Weights:
    """Canonical NumPy weights (the tensors' own dtype, on the host) from the model's state dict or any mapping with
    the same keys (e.g. its named gradients). Raises ``ValueError`` naming missing or unexpected keys."""
    expected = {torch_key(k): k for k in param_shapes(spec)}
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        raise ValueError(f"state dict: missing {missing}, unexpected {extra}; expected keys {list(expected)}")
    out: Weights = {}
    for tk, ck in expected.items():
        t = state[tk].detach()
        if t.dtype not in (torch.float32, torch.float64):  # reduced-precision copies: export as float32
            t = t.float()
        out[ck] = t.cpu().numpy().copy()
    check_weights(spec, out, name="exported weights")
    return out
