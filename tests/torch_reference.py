"""Torch autograd references for the tests, in float64.

* ``native_model``: ``torch.nn.GRU`` / ``torch.nn.LSTM`` + ``torch.nn.Linear`` with the canonical weights loaded
  (their parameter names are the canonical ones); PyTorch's GRU is the ``reset_after`` variant.
* ``transcribed_model``: the equations of ``gru_bench.spec`` transcribed line by line (every cell and variant; the
  only torch reference for ``reset_before``, which no torch module computes).

``forward`` and ``loss_and_grads`` run either through autograd; the losses are ``nn.MSELoss`` / ``nn.CrossEntropyLoss``
(mean reduction), the ones ``spec.py`` names.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor, nn

from gru_bench.spec import ModelSpec, Weights, check_weights


class _Head(nn.Module):
    def __init__(self, spec: ModelSpec, rnn: nn.Module):
        super().__init__()
        self.spec, self.rnn = spec, rnn
        self.head = nn.Linear(spec.hidden_size, spec.output_size, dtype=torch.float64)

    def forward(self, x: Tensor) -> Tensor:
        hs = self.rnn(x)[0]  # (B, T, H): the top layer's states
        return self.head(hs[:, -1] if self.spec.head == "last" else hs)  # (B, O) | (B, T, O)


class _Transcribed(nn.Module):
    """``num_layers`` cells written from ``spec.py``'s docstring; parameters carry the canonical names (dots -> _)."""

    def __init__(self, spec: ModelSpec):
        super().__init__()
        self.spec = spec

    def cell(self, k: int, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        H = self.spec.hidden_size
        W_ih, W_hh = getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}")
        b_ih, b_hh = getattr(self, f"bias_ih_l{k}"), getattr(self, f"bias_hh_l{k}")
        gi = x @ W_ih.T + b_ih  # (B, G·H)
        if self.spec.cell == "lstm":
            pre = gi + h @ W_hh.T + b_hh  # (B, 4H), rows [i; f; g; o]
            i, f, g, o = (pre[:, j * H:(j + 1) * H] for j in range(4))
            i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            c = f * c + i * g
            return o * torch.tanh(c), c
        gh = h @ W_hh.T + b_hh  # (B, 3H), rows [r; z; n]
        r = torch.sigmoid(gi[:, :H] + gh[:, :H])
        z = torch.sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
        if self.spec.variant == "reset_after":
            n = torch.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
        else:  # reset_before
            n = torch.tanh(gi[:, 2 * H:] + (r * h) @ W_hh[2 * H:].T + b_hh[2 * H:])
        return (1 - z) * n + z * h, c

    def forward(self, x: Tensor) -> Tensor:
        B, T, _ = x.shape
        seq = x
        for k in range(self.spec.num_layers):
            h = x.new_zeros(B, self.spec.hidden_size)
            c = x.new_zeros(B, self.spec.hidden_size)
            outs = []
            for t in range(T):
                h, c = self.cell(k, seq[:, t], h, c)
                outs.append(h)
            seq = torch.stack(outs, 1)  # (B, T, H)
        W, b = self.head_weight, self.head_bias
        return (seq[:, -1] if self.spec.head == "last" else seq) @ W.T + b


def _params(model: nn.Module) -> dict[str, Tensor]:
    """The model's parameters by canonical name."""
    return {n.replace("rnn.", "").replace("head_weight", "head.weight").replace("head_bias", "head.bias"): p
            for n, p in model.named_parameters()}


def native_model(spec: ModelSpec, weights: Weights) -> nn.Module:
    """``nn.GRU`` (reset_after only) or ``nn.LSTM`` plus a linear head, float64, holding ``weights``."""
    if spec.cell == "gru" and spec.variant != "reset_after":
        raise ValueError(f"variant={spec.variant!r}: torch.nn.GRU computes reset_after only")
    check_weights(spec, weights)
    rnn_cls = nn.GRU if spec.cell == "gru" else nn.LSTM
    rnn = rnn_cls(spec.input_size, spec.hidden_size, spec.num_layers, batch_first=True, dtype=torch.float64)
    model = _Head(spec, rnn)
    _load(model, weights)
    return model


def transcribed_model(spec: ModelSpec, weights: Weights) -> nn.Module:
    """``spec.py``'s equations in torch, every cell and variant, float64, holding ``weights``."""
    check_weights(spec, weights)
    model = _Transcribed(spec)
    for name, value in weights.items():
        model.register_parameter(name.replace(".", "_"), nn.Parameter(torch.tensor(value, dtype=torch.float64)))
    return model


def _load(model: nn.Module, weights: Weights) -> None:
    params = _params(model)
    assert set(params) == set(weights), f"{sorted(params)} vs {sorted(weights)}"
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(torch.as_tensor(np.asarray(weights[name], dtype=np.float64)))


def forward(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(np.asarray(x, dtype=np.float64))).numpy()


def loss_and_grads(model: nn.Module, x: np.ndarray, y: np.ndarray) -> tuple[float, Weights]:
    """``spec.py``'s loss of the model on ``(x, y)`` and its gradients by canonical name."""
    model.zero_grad()
    out = model(torch.as_tensor(np.asarray(x, dtype=np.float64)))  # (B, O) | (B, T, O)
    if model.spec.loss == "mse":
        loss = nn.functional.mse_loss(out, torch.as_tensor(np.asarray(y, dtype=np.float64)))
    else:
        target = torch.as_tensor(np.asarray(y, dtype=np.int64))
        loss = nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]), target.reshape(-1))
    loss.backward()
    return float(loss.detach()), {name: p.grad.numpy().copy() for name, p in _params(model).items()}
