"""Canonical (PyTorch-layout) weights <-> Keras 3 layer weights, in NumPy only (no TensorFlow import).

Keras stores one list per layer, in ``layer.get_weights()`` order:

* ``keras.layers.GRU``:  ``kernel (I, 3H)``, ``recurrent_kernel (H, 3H)``, gate columns ``[z | r | h]``;
  ``bias (2, 3H)`` with ``reset_after=True`` (row 0 input bias, row 1 recurrent bias), ``bias (3H)`` without.
* ``keras.layers.LSTM``: ``kernel (I, 4H)``, ``recurrent_kernel (H, 4H)``, gate columns ``[i | f | c | o]``
  (the canonical order), one ``bias (4H)``.
* ``keras.layers.Dense`` head: ``kernel (H, O)``, ``bias (O)``.

The canonical layout (``spec.py``) is gate *rows* ``[r; z; n]`` (GRU) / ``[i; f; g; o]`` (LSTM), so a kernel is the
transpose of the canonical matrix with the GRU's first two gate blocks swapped.

Bias folding (the equations are in ``spec.py``):

* GRU ``reset_after``: ``b_hn`` sits inside ``r ⊙ (h W_hn^T + b_hn)``, so it cannot join ``b_in``; Keras keeps both
  biases as two rows and the conversion is exact in both directions, for all three gates.
* GRU ``reset_before``: every bias enters only through the sum ``b_i* + b_h*`` (for the n gate both sit outside
  ``r``: ``x W_in^T + b_in + (r ⊙ h) W_hn^T + b_hn``), so Keras' single bias is ``b = b_ih + b_hh``.
* LSTM: likewise ``b = b_ih + b_hh``.

A folded bias keeps the function but not the split: ``from_keras`` puts the folded bias in ``bias_ih`` and zeros in
``bias_hh`` (the same function, since only the sum enters it). Gradients are another matter: in the canonical model
``b_ih`` and ``b_hh`` each get ``dL/db`` (chain rule through the sum), so ``gradients_from_keras`` gives both of them
``dL/db``, a folded bias counts twice in the canonical global gradient norm and moves by two (identical) canonical
updates (``multiplicity``). The backend keeps the canonical pair itself so that ``weights`` returns the split it
was built with, updated exactly as the reference updates it.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from ..spec import ModelSpec, Weights, check_weights, param_shapes

KerasWeights = list[list[np.ndarray]]  # one list per Keras layer (recurrent layers, then the Dense head)


def folds_bias(spec: ModelSpec) -> bool:
    """True when Keras keeps one bias ``b = b_ih + b_hh`` per layer (LSTM, GRU reset_before)."""
    return spec.cell == "lstm" or spec.variant == "reset_before"


def gate_perm(spec: ModelSpec) -> np.ndarray:
    """Row indices that reorder canonical gate blocks into Keras order (an involution: its own inverse)."""
    H = spec.hidden_size
    blocks = [1, 0, 2] if spec.cell == "gru" else [0, 1, 2, 3]  # GRU: [r; z; n] <-> [z | r | h]
    return np.concatenate([np.arange(b * H, (b + 1) * H) for b in blocks])


def multiplicity(spec: ModelSpec) -> list[list[int]]:
    """For each Keras tensor, how many canonical tensors it stands for: 2 for a folded bias, else 1.

    The canonical global gradient norm counts a folded bias' gradient that many times, and the canonical
    optimizer moves the folded bias by that many (identical) updates.
    """
    rec = [[1, 1, 2 if folds_bias(spec) else 1] for _ in range(spec.num_layers)]
    return rec + [[1, 1]]


def keras_shapes(spec: ModelSpec) -> list[list[tuple[int, ...]]]:
    """The shapes ``layer.get_weights()`` returns, per layer."""
    G, H, O = spec.gates, spec.hidden_size, spec.output_size
    bias = (G * H,) if folds_bias(spec) else (2, G * H)
    rec = [[(spec.layer_input_size(k), G * H), (H, G * H), bias] for k in range(spec.num_layers)]
    return rec + [[(H, O), (O,)]]


def _check_keras(spec: ModelSpec, keras: Sequence[Sequence[np.ndarray]], name: str) -> None:
    want = keras_shapes(spec)
    if len(keras) != len(want):
        raise ValueError(f"{name} has {len(keras)} layers: expected {len(want)} ({spec.num_layers} recurrent + head)")
    for li, (got_l, want_l) in enumerate(zip(keras, want)):
        got = [tuple(np.shape(a)) for a in got_l]
        if got != want_l:
            raise ValueError(f"{name}[{li}] has shapes {got}: expected {want_l}")


def to_keras(spec: ModelSpec, weights: Mapping[str, np.ndarray]) -> KerasWeights:
    """Canonical weights -> per-layer Keras weights (folding ``b_ih + b_hh`` where Keras has one bias)."""
    check_weights(spec, weights)
    p = gate_perm(spec)
    out: KerasWeights = []
    for k in range(spec.num_layers):
        w_ih, w_hh = weights[f"weight_ih_l{k}"], weights[f"weight_hh_l{k}"]  # (GH, I), (GH, H)
        b_ih, b_hh = weights[f"bias_ih_l{k}"], weights[f"bias_hh_l{k}"]  # (GH,), (GH,)
        kernel = np.ascontiguousarray(w_ih[p].T)  # (I, GH)
        recurrent = np.ascontiguousarray(w_hh[p].T)  # (H, GH)
        bias = (b_ih + b_hh)[p] if folds_bias(spec) else np.stack([b_ih[p], b_hh[p]])  # (GH,) | (2, GH)
        out.append([kernel, recurrent, bias])
    out.append([np.ascontiguousarray(weights["head.weight"].T), weights["head.bias"].copy()])  # (H, O), (O,)
    return out


def from_keras(spec: ModelSpec, keras: Sequence[Sequence[np.ndarray]]) -> Weights:
    """Per-layer Keras weights -> canonical weights, the same function: a folded bias ``b`` goes to ``bias_ih`` and
    ``bias_hh`` is zero."""
    _check_keras(spec, keras, "keras weights")
    p = gate_perm(spec)
    w: Weights = {}
    for k in range(spec.num_layers):
        kernel, recurrent, bias = (np.asarray(a) for a in keras[k])
        w[f"weight_ih_l{k}"] = np.ascontiguousarray(kernel.T[p])  # (GH, I)
        w[f"weight_hh_l{k}"] = np.ascontiguousarray(recurrent.T[p])  # (GH, H)
        if not folds_bias(spec):
            w[f"bias_ih_l{k}"], w[f"bias_hh_l{k}"] = bias[0][p].copy(), bias[1][p].copy()
        else:
            w[f"bias_ih_l{k}"], w[f"bias_hh_l{k}"] = bias[p].copy(), np.zeros_like(bias)
    head_w, head_b = (np.asarray(a) for a in keras[-1])
    w["head.weight"], w["head.bias"] = np.ascontiguousarray(head_w.T), head_b.copy()
    return {name: w[name] for name in param_shapes(spec)}


def gradients_from_keras(spec: ModelSpec, grads: Sequence[Sequence[np.ndarray]]) -> Weights:
    """Per-layer Keras gradients -> canonical gradients. For a folded bias ``b = b_ih + b_hh``,
    ``dL/db_ih = dL/db_hh = dL/db`` (chain rule through the sum); unfolded biases map one to one."""
    _check_keras(spec, grads, "keras gradients")
    g = from_keras(spec, grads)
    if folds_bias(spec):
        for k in range(spec.num_layers):
            g[f"bias_hh_l{k}"] = g[f"bias_ih_l{k}"].copy()
    return g
