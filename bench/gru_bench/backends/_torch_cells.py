"""The GRU ``reset_before`` variant as a step loop in PyTorch (no fused kernel computes it), and the model module.

The equations are those of ``spec.py`` (variant ``"reset_before"``); the names follow its symbols. The loop runs in
one of three forms, all the same function:

* ``"plain"``: eager autograd, one Python iteration per time step;
* ``"scripted"``: the same loop compiled by TorchScript (``torch.jit.script``): no Python per step, and on CUDA
  TorchScript's fuser may fuse the element-wise gate math (the "scripted cell" of PyTorch's own RNN benchmarks);
* ``"compiled"``: the loop under ``torch.compile`` (Inductor), unrolled over T and fused; it compiles on the first
  call of each shape and grad mode (minutes at T=100 on a 2-core CPU from a cold cache), then runs the fused
  kernels (the timings are in ``torch_backend``'s docstring).

This module imports torch: only ``torch_backend`` imports it.
"""
from __future__ import annotations

import math
import warnings
from typing import Callable

import torch
from torch import Tensor, nn

from ..spec import ModelSpec
from ._torch_decl import LOOP_IMPLS


def gru_reset_before_layer(gi: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor) -> tuple[Tensor, Tensor]:
    """One GRU layer, variant reset_before, over all steps.

    ``gi`` (B, T, 3H) is ``x W_ih^T + b_ih`` precomputed for every step (one GEMM); ``h`` (B, H) is the initial state.
    Returns the hidden states (B, T, H) and the last one (B, H).
    """
    H = h.size(1)
    w_hrz, w_hn = w_hh[: 2 * H], w_hh[2 * H :]  # (2H, H), (H, H)
    b_hrz, b_hn = b_hh[: 2 * H], b_hh[2 * H :]  # (2H,), (H,)
    outs: list[Tensor] = []
    for g in gi.unbind(1):  # g (B, 3H). One unbind, not gi[:, t]: each select's backward zero-fills a (B, T, 3H)
        rz = torch.sigmoid(g[:, : 2 * H] + torch.addmm(b_hrz, h, w_hrz.t()))  # (B, 2H)
        r, z = rz[:, :H], rz[:, H:]  # (B, H), (B, H)
        n = torch.tanh(g[:, 2 * H :] + torch.addmm(b_hn, r * h, w_hn.t()))  # (B, H)
        h = (1.0 - z) * n + z * h  # (B, H)
        outs.append(h)
    return torch.stack(outs, 1), h  # (B, T, H), (B, H)


_SCRIPTED: Callable | None = None


def scripted_layer() -> Callable:
    """``gru_reset_before_layer`` compiled by TorchScript, once per process.

    ``torch.jit.script`` is deprecated in recent torch (it warns, and still works); the warning is silenced here
    because the choice is recorded in the provenance instead.
    """
    global _SCRIPTED
    if _SCRIPTED is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            _SCRIPTED = torch.jit.script(gru_reset_before_layer)
    return _SCRIPTED


class ResetBeforeGRU(nn.Module):
    """A stack of ``num_layers`` reset_before GRU layers, batch-first, with ``nn.GRU``'s parameter names and shapes
    (``weight_ih_l{k}`` (3H, I_k), ``weight_hh_l{k}`` (3H, H), ``bias_ih_l{k}``, ``bias_hh_l{k}`` (3H)), so the same
    converters serve both. ``forward(x)`` returns ``(out (B, T, H), h_n (L, B, H))`` like ``nn.GRU``."""

    def __init__(self, spec: ModelSpec, loop: str, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        if loop not in LOOP_IMPLS:
            raise ValueError(f"loop={loop!r}: expected one of {', '.join(LOOP_IMPLS)}")
        self.loop = loop
        self.num_layers = spec.num_layers
        G, H = 3, spec.hidden_size
        bound = 1.0 / math.sqrt(H)  # overwritten by the canonical weights at build
        for k in range(spec.num_layers):
            shapes = {f"weight_ih_l{k}": (G * H, spec.layer_input_size(k)), f"weight_hh_l{k}": (G * H, H),
                      f"bias_ih_l{k}": (G * H,), f"bias_hh_l{k}": (G * H,)}
            for name, shape in shapes.items():
                p = torch.empty(shape, dtype=dtype, device=device).uniform_(-bound, bound)
                self.register_parameter(name, nn.Parameter(p))
        self._layer = scripted_layer() if loop == "scripted" else gru_reset_before_layer

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        B = x.size(0)
        out, last = x, []  # (B, T, I)
        for k in range(self.num_layers):
            w_ih, w_hh = getattr(self, f"weight_ih_l{k}"), getattr(self, f"weight_hh_l{k}")
            b_ih, b_hh = getattr(self, f"bias_ih_l{k}"), getattr(self, f"bias_hh_l{k}")
            gi = torch.nn.functional.linear(out, w_ih, b_ih)  # (B, T, 3H): the input part of every gate, one GEMM
            h0 = torch.zeros(B, w_hh.size(1), dtype=gi.dtype, device=gi.device)  # (B, H)
            out, h = self._layer(gi, h0, w_hh, b_hh)  # (B, T, H), (B, H)
            last.append(h)
        return out, torch.stack(last, 0)  # (B, T, H), (L, B, H)


class Net(nn.Module):
    """``rnn`` (``nn.GRU`` / ``nn.LSTM`` / ``ResetBeforeGRU``), then the linear ``head`` on the last step or on every
    step. Its state dict is ``rnn.<canonical name>`` for the recurrent weights and ``head.weight``/``head.bias``."""

    def __init__(self, spec: ModelSpec, rnn: nn.Module, dtype: torch.dtype, device: torch.device) -> None:
        super().__init__()
        self.rnn = rnn
        self.head = nn.Linear(spec.hidden_size, spec.output_size, dtype=dtype, device=device)
        self.last_only = spec.head == "last"

    def forward(self, x: Tensor) -> Tensor:
        out = self.rnn(x)[0]  # (B, T, H)
        if self.last_only:
            out = out[:, -1]  # (B, H)
        return self.head(out)  # (B, O) or (B, T, O)


def make_rnn(spec: ModelSpec, loop: str | None, dtype: torch.dtype, device: torch.device) -> nn.Module:
    """``nn.GRU`` (reset_after) / ``nn.LSTM``, or ``ResetBeforeGRU`` with loop ``loop`` for reset_before."""
    if spec.cell == "gru" and spec.variant == "reset_before":
        return ResetBeforeGRU(spec, loop or "plain", dtype, device)
    cls = nn.GRU if spec.cell == "gru" else nn.LSTM
    return cls(spec.input_size, spec.hidden_size, num_layers=spec.num_layers, batch_first=True,
               dtype=dtype, device=device)
