"""One recurrent layer of the NumPy backend: forward and hand-written backprop through time (equations: ``spec.py``).

Inside, everything is time-major and carries a column of ones, so that every bias rides in its matrix product: a
layer reads ``X (T, B, I+1)`` (``X[..., I] = 1``) and writes ``Hs (T+1, B, H+1)`` with ``Hs[0, :, :H] = 0``,
``Hs[t+1, :, :H]`` the state after step ``t`` and ``Hs[..., H] = 1``. ``Hs[:-1]`` (the h_prev of every step) and
``Hs[1:]`` (the outputs, the next layer's input) are contiguous ``(T·B, H+1)`` matrices; weights are stored with
their bias as an extra column, ``Wi = [W_ih | b_ih] (G·H, I+1)`` and ``Wh = [W_hh | b_hh] (G·H, H+1)``. The work
is arranged around the part that must be sequential:

* forward: the input projection of all T steps is ONE GEMM (``X (T·B, I+1) @ Wiᵀ``, biases included) before the
  loop; a step is one GEMM ``[h, 1] @ Whᵀ`` for all gates (``(B, G·H)``) and a few whole-block element-wise ops
  (GRU "reset_before" needs a second, ``[r ⊙ h, 1] @ [W_hn | b_hn]ᵀ``, since r must come first);
* backward: a step turns dL/dh into all gate gradients with a few whole-block element-wise ops (on ``(B, H)`` and
  ``(B, 2H…3H)`` blocks that stay in cache: measured faster here than precomputing coefficients for all T at
  once), then one GEMM ``dgates @ W_hh`` for dL/dh_prev;
* the weight gradients are ONE GEMM each over all ``T·B`` rows after the loop: ``dWh = dgatesᵀ @ Hs[:-1]`` gives
  ``[dW_hh | db_hh]``, ``dWi = dgatesᵀ @ X`` gives ``[dW_ih | db_ih]``.

All GEMMs go through NumPy's BLAS (one thread pool). Buffers live in a ``Workspace`` per ``(T, B)`` and are reused
across steps and calls (``out=`` everywhere; no allocation inside the loops). Weights and gradients are views into
the model's flat parameter and gradient vectors (see ``numpy_backend``), read and written in place.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._np_kernels import sigmoid_grad, sigmoid_of_negated, tanh_grad

_FLUSH = [False]  # Case.denormals == "flush": zero subnormal dL/dh (and dL/dc) after every BPTT step (_denormals.py)


def set_flush(on: bool) -> None:
    """Turn the software flush of the recurrent gradients on or off (this process)."""
    _FLUSH[0] = bool(on)


# Zeroing only what is already subnormal is too late: the next multiply or GEMM of a tiny normal value produces
# subnormal results, which cost the same microcode assists. So the flush zeroes below tiny·2^24 (fp32: 2e-31), leaving
# ~7 decades of headroom for one step's products; such values are < 2e-28 of any O(1e-3) gradient: no effect on fp32
# training, and float64's threshold (4e-301) is far below its conformance tolerance.
FLUSH_MARGIN = 2.0 ** 24


def _flush(a: np.ndarray) -> None:
    np.copyto(a, 0, where=np.abs(a) < np.finfo(a.dtype).tiny * FLUSH_MARGIN)  # (B, H) in place


KEEP_SHAPES = 2  # workspaces kept per layer (and head buffers per model), by (T, B)


@dataclass
class Params:
    """One layer's tensors in the backend's internal gate order, bias as the last column (views into a flat vector)."""

    Wi: np.ndarray  # (G·H, I+1) [W_ih | b_ih]
    Wh: np.ndarray  # (G·H, H+1) [W_hh | b_hh]


@dataclass
class Workspace:
    """Buffers of one layer for one ``(T, B)``; ``Hs`` and ``dHs`` are what neighbouring layers read and write."""

    T: int
    B: int
    Hs: np.ndarray  # (T+1, B, H+1) [states | 1], Hs[0, :, :H] = 0
    dHs: np.ndarray  # (T, B, H) dL/dh_t: set from outside the layer, completed step by step by the backward loop
    buf: dict[str, np.ndarray] = field(default_factory=dict)


class Layer:
    """Base: shapes, workspaces, the input-side gradients. Subclasses implement one cell."""

    gates: int  # G
    order: tuple[int, ...]  # internal gate block k holds canonical gate block order[k]

    def __init__(self, input_size: int, hidden_size: int, dtype: np.dtype, p: Params, g: Params) -> None:
        self.I, self.H, self.dtype = input_size, hidden_size, np.dtype(dtype)
        self.p, self.g = p, g  # parameters and their gradients (internal order)
        self._ws: dict[tuple[int, int], Workspace] = {}  # the last KEEP_SHAPES (T, B) used, oldest first
        self._scratch: dict[str, np.ndarray] = {}

    def _copy(self, name: str, src: np.ndarray, negate: bool = False) -> np.ndarray:
        """``src`` (or −src) copied into a C-contiguous scratch array kept under ``name``. Once per call: BLAS
        multiplies a C-contiguous right operand measurably faster than a transposed or strided view (float32,
        (64, 513) @ (513, 2048): 1.7 vs 2.3 ms here), and the step's GEMM runs T times."""
        buf = self._scratch.get(name)
        if buf is None or buf.shape != src.shape:
            buf = self._scratch[name] = np.empty(src.shape, self.dtype)
        if negate:
            np.negative(src, out=buf)
        else:
            np.copyto(buf, src)
        return buf

    def _shapes(self, T: int, B: int) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def workspace(self, T: int, B: int) -> Workspace:
        """The buffers for ``(T, B)``, allocated on first use and kept for the ``KEEP_SHAPES`` latest shapes (say
        a training batch and an evaluation batch of another size)."""
        ws = self._ws.pop((T, B), None)
        if ws is None:
            H, dt = self.H, self.dtype
            Hs = np.zeros((T + 1, B, H + 1), dt)
            Hs[..., H] = 1.0
            ws = Workspace(T, B, Hs=Hs, dHs=np.empty((T, B, H), dt),
                           buf={k: np.empty(s, dt) for k, s in self._shapes(T, B).items()})
            self._init_buffers(ws)
            while len(self._ws) >= KEEP_SHAPES:
                self._ws.pop(next(iter(self._ws)))  # the least recently used
        self._ws[(T, B)] = ws  # most recent last
        return ws

    def _init_buffers(self, ws: Workspace) -> None:
        """Set the constant parts of freshly allocated buffers (optional)."""

    def forward(self, X: np.ndarray, ws: Workspace) -> np.ndarray:
        """X (T, B, I+1) -> Hs (T+1, B, H+1); keeps what the backward needs in ``ws``."""
        raise NotImplementedError

    def backward(self, X: np.ndarray, ws: Workspace, dX: np.ndarray | None) -> None:
        """After ``forward(X, ws)`` and with ``ws.dHs`` holding dL/dh_t from outside the layer (head or layer above):
        write this layer's parameter gradients into ``self.g`` and, if ``dX`` (T, B, I) is given, dL/dX into it."""
        raise NotImplementedError

    def _input_grads(self, X: np.ndarray, dGi: list[tuple[slice, np.ndarray]], dX: np.ndarray | None) -> None:
        """[dW_ih | db_ih] and dX from dL/d(input-projection pre-activations), given as (row block of Wi,
        (T·B, rows) matrix) pairs: one GEMM per block over all T·B rows."""
        X2, I = X.reshape(-1, self.I + 1), self.I  # (T·B, I+1)
        for rows, d in dGi:
            np.matmul(d.T, X2, out=self.g.Wi[rows])  # (rows, I+1)
        if dX is not None:
            dX2 = dX.reshape(-1, I)  # (T·B, I)
            (rows, d), rest = dGi[0], dGi[1:]
            np.matmul(d, self.p.Wi[rows, :I], out=dX2)
            for rows, d in rest:
                dX2 += d @ self.p.Wi[rows, :I]  # (T·B, I), once per backward


# ------------------------------------------------------------------------------------------------------- GRU
class GRUResetAfter(Layer):
    """GRU, variant "reset_after": n = tanh(x W_inᵀ + b_in + r ⊙ (h W_hnᵀ + b_hn)). Gate blocks [r; z; n]."""

    gates, order = 3, (0, 1, 2)

    def _shapes(self, T, B):
        H = self.H
        return dict(NA=(T, B, 2 * H),  # −(x [W_ir; W_iz]ᵀ + [b_ir; b_iz]): the input part of −[a_r | a_z]
                    Gin=(T, B, H),  # x W_inᵀ + b_in
                    Gh=(T, B, 3 * H),  # h W_hhᵀ + b_hh; the backward overwrites step t with dL/d[a_r | a_z | ·]
                    RZ=(T, B, 2 * H),  # [r | z]
                    N=(T, B, H),  # n; the backward overwrites step t with dL/da_n
                    D=(T, B, H),  # h_prev − n
                    t1=(B, H), t2=(B, H), t3=(B, H), t2h=(B, 2 * H))

    def forward(self, X, ws):
        T, B, H, p, b = ws.T, ws.B, self.H, self.p, ws.buf
        NA, Gin, Gh, RZ, N, D, Hs = b["NA"], b["Gin"], b["Gh"], b["RZ"], b["N"], b["D"], ws.Hs
        X2 = X.reshape(T * B, -1)  # (T·B, I+1)
        np.matmul(X2, self._copy("-WiT_rz", p.Wi[:2 * H].T, negate=True), out=NA.reshape(T * B, 2 * H))  # one GEMM
        np.matmul(X2, self._copy("WiT_n", p.Wi[2 * H:].T), out=Gin.reshape(T * B, H))
        WhT = self._copy("WhT", p.Wh.T)  # (H+1, 3H)
        for t in range(T):
            h, gh, rz, n, d = Hs[t], Gh[t], RZ[t], N[t], D[t]  # (B, H+1), (B, 3H), (B, 2H), (B, H), (B, H)
            h_new = Hs[t + 1, :, :H]
            np.matmul(h, WhT, out=gh)  # (B, 3H) all gates, one GEMM: h W_hhᵀ + b_hh
            np.subtract(NA[t], gh[:, :2 * H], out=rz)  # −[a_r | a_z]
            sigmoid_of_negated(rz, out=rz)  # [r | z]
            np.multiply(rz[:, :H], gh[:, 2 * H:], out=n)  # r ⊙ (h W_hnᵀ + b_hn)
            n += Gin[t]
            np.tanh(n, out=n)  # n
            np.subtract(h[:, :H], n, out=d)  # h − n
            np.multiply(rz[:, H:], d, out=h_new)
            h_new += n  # h' = (1 − z) ⊙ n + z ⊙ h
        return Hs

    def backward(self, X, ws, dX):
        T, B, H, b, g = ws.T, ws.B, self.H, ws.buf, self.g
        Gh, RZ, N, D, dHs = b["Gh"], b["RZ"], b["N"], b["D"], ws.dHs
        dA, dAn = Gh, N  # each step reads its Gh[t], N[t] before overwriting them: less memory, warm cache
        dhz, dn, t1, t2h = b["t1"], b["t2"], b["t3"], b["t2h"]
        W_hh = self._copy("W_hh", self.p.Wh[:, :H])  # (3H, H)
        for t in range(T - 1, -1, -1):
            dh, rz, da = dHs[t], RZ[t], dA[t]  # (B, H) complete: from outside plus from step t+1
            np.multiply(dh, D[t], out=da[:, H:2 * H])  # dL/dz = dh ⊙ (h − n)
            np.multiply(dh, rz[:, H:], out=dhz)  # dh ⊙ z: the direct path to h_prev
            np.subtract(dh, dhz, out=dn)  # dL/dn = dh ⊙ (1 − z)
            tanh_grad(N[t], dn, out=dAn[t], tmp=t1)  # dL/da_n (n read before it is overwritten)
            np.multiply(dAn[t], Gh[t, :, 2 * H:], out=da[:, :H])  # dL/dr (h W_hnᵀ + b_hn read before …)
            np.multiply(dAn[t], rz[:, :H], out=da[:, 2 * H:])  # … it is overwritten by dL/d(h W_hnᵀ + b_hn)
            sigmoid_grad(rz, da[:, :2 * H], tmp=t2h)  # dL/d[a_r | a_z]
            if _FLUSH[0]:  # the gate gradients feed this step's GEMM and the weight-gradient GEMMs
                _flush(da)
                _flush(dAn[t])
            if t:
                np.matmul(da, W_hh, out=t1)  # (B, H) through all gates, one GEMM
                t1 += dhz
                dHs[t - 1] += t1  # dL/dh_prev
                if _FLUSH[0]:
                    _flush(dHs[t - 1])
        TB = T * B
        dA2, dAn2 = dA.reshape(TB, 3 * H), dAn.reshape(TB, H)  # (T·B, 3H), (T·B, H)
        np.matmul(dA2.T, ws.Hs[:-1].reshape(TB, H + 1), out=g.Wh)  # (3H, H+1) [dW_hh | db_hh], one GEMM
        self._input_grads(X, [(slice(0, 2 * H), dA2[:, :2 * H]), (slice(2 * H, 3 * H), dAn2)], dX)


class GRUResetBefore(Layer):
    """GRU, variant "reset_before": n = tanh(x W_inᵀ + b_in + (r ⊙ h) W_hnᵀ + b_hn). Gate blocks [r; z; n]."""

    gates, order = 3, (0, 1, 2)

    def _shapes(self, T, B):
        H = self.H
        return dict(NA=(T, B, 2 * H),  # the input part of −[a_r | a_z]
                    An=(T, B, H),  # x W_inᵀ + b_in
                    RZ=(T, B, 2 * H),  # [r | z]
                    RH=(T, B, H + 1),  # [r ⊙ h_prev | 1]
                    N=(T, B, H),  # n; the backward overwrites step t with dL/da_n
                    D=(T, B, H),  # h_prev − n
                    dRZ=(T, B, 2 * H),  # dL/d[a_r | a_z]
                    g2h=(B, 2 * H), t1=(B, H), t2=(B, H), t3=(B, H), drh=(B, H))

    def _init_buffers(self, ws):
        ws.buf["RH"][..., self.H] = 1.0  # the ones column that carries b_hn

    def forward(self, X, ws):
        T, B, H, p, b = ws.T, ws.B, self.H, self.p, ws.buf
        NA, An, RZ, RH, N, D, Hs, g2h, t1 = (b["NA"], b["An"], b["RZ"], b["RH"], b["N"], b["D"], ws.Hs, b["g2h"],
                                             b["t1"])
        X2 = X.reshape(T * B, -1)  # (T·B, I+1)
        np.matmul(X2, self._copy("-WiT_rz", p.Wi[:2 * H].T, negate=True), out=NA.reshape(T * B, 2 * H))  # one GEMM
        np.matmul(X2, self._copy("WiT_n", p.Wi[2 * H:].T), out=An.reshape(T * B, H))
        W_rzT, W_nT = self._copy("WhT_rz", p.Wh[:2 * H].T), self._copy("WhT_n", p.Wh[2 * H:].T)  # (H+1, 2H), (H+1, H)
        for t in range(T):
            h, rz, rh, n, d = Hs[t], RZ[t], RH[t], N[t], D[t]  # (B, H+1), (B, 2H), (B, H+1), (B, H), (B, H)
            h_new = Hs[t + 1, :, :H]
            np.matmul(h, W_rzT, out=g2h)  # (B, 2H) r and z, one GEMM
            np.subtract(NA[t], g2h, out=rz)
            sigmoid_of_negated(rz, out=rz)  # [r | z]
            np.multiply(rz[:, :H], h[:, :H], out=rh[:, :H])  # r ⊙ h
            np.matmul(rh, W_nT, out=t1)  # (B, H) (r ⊙ h) W_hnᵀ + b_hn
            np.add(An[t], t1, out=n)
            np.tanh(n, out=n)  # n
            np.subtract(h[:, :H], n, out=d)
            np.multiply(rz[:, H:], d, out=h_new)
            h_new += n  # h' = (1 − z) ⊙ n + z ⊙ h
        return Hs

    def backward(self, X, ws, dX):
        T, B, H, b, g, p = ws.T, ws.B, self.H, ws.buf, self.g, self.p
        RZ, N, D, dRZ, dHs, Hs = b["RZ"], b["N"], b["D"], b["dRZ"], ws.dHs, ws.Hs
        dAn = N  # each step reads n before overwriting it with dL/da_n
        dhz, dn, t1, drh, g2h = b["t1"], b["t2"], b["t3"], b["drh"], b["g2h"]
        W_rz, W_n = self._copy("W_rz", p.Wh[:2 * H, :H]), self._copy("W_n", p.Wh[2 * H:, :H])  # (2H, H), (H, H)
        for t in range(T - 1, -1, -1):
            dh, rz, drz = dHs[t], RZ[t], dRZ[t]  # (B, H), (B, 2H), (B, 2H)
            np.multiply(dh, D[t], out=drz[:, H:])  # dL/dz = dh ⊙ (h − n)
            np.multiply(dh, rz[:, H:], out=dhz)  # dh ⊙ z
            np.subtract(dh, dhz, out=dn)  # dL/dn = dh ⊙ (1 − z)
            tanh_grad(N[t], dn, out=dAn[t], tmp=t1)  # dL/da_n
            if _FLUSH[0]:
                _flush(dAn[t])
            np.matmul(dAn[t], W_n, out=drh)  # (B, H) dL/d(r ⊙ h)
            np.multiply(drh, Hs[t, :, :H], out=drz[:, :H])  # dL/dr
            sigmoid_grad(rz, drz, tmp=g2h)  # dL/d[a_r | a_z]
            if _FLUSH[0]:
                _flush(drz)
            if t:
                np.matmul(drz, W_rz, out=t1)  # (B, H)
                t1 += dhz
                np.multiply(drh, rz[:, :H], out=dhz)  # dL/d(r ⊙ h) ⊙ r
                t1 += dhz
                dHs[t - 1] += t1  # dL/dh_prev
                if _FLUSH[0]:
                    _flush(dHs[t - 1])
        TB = T * B
        dRZ2, dAn2 = dRZ.reshape(TB, 2 * H), dAn.reshape(TB, H)
        np.matmul(dRZ2.T, Hs[:-1].reshape(TB, H + 1), out=g.Wh[:2 * H])  # (2H, H+1), one GEMM
        np.matmul(dAn2.T, b["RH"].reshape(TB, H + 1), out=g.Wh[2 * H:])  # (H, H+1) [dW_hn | db_hn]
        self._input_grads(X, [(slice(0, 2 * H), dRZ2), (slice(2 * H, 3 * H), dAn2)], dX)


# ------------------------------------------------------------------------------------------------------ LSTM
class LSTM(Layer):
    """LSTM (spec.py). Internal gate blocks [o; i; f; g] (canonical [i; f; g; o]): the three sigmoid gates form one
    contiguous block."""

    gates, order = 4, (3, 0, 1, 2)

    def _shapes(self, T, B):
        H = self.H
        return dict(S=(T, B, 4 * H),  # pre-activations, then the gates [o, i, f, g]
                    C=(T + 1, B, H),  # cell states, C[0] = 0
                    TC=(T, B, H),  # tanh(c')
                    dA=(T, B, 4 * H),  # dL/d[a_o | a_i | a_f | a_g]
                    g4h=(B, 4 * H), t4h=(B, 4 * H), t1=(B, H), t2=(B, H), dc=(B, H))

    def forward(self, X, ws):
        T, B, H, p, b = ws.T, ws.B, self.H, self.p, ws.buf
        S, C, TC, Hs, g4h, t1 = b["S"], b["C"], b["TC"], ws.Hs, b["g4h"], b["t1"]
        C[0] = 0.0
        WiT, WhT = self._copy("WiT", p.Wi.T), self._copy("WhT", p.Wh.T)  # (I+1, 4H), (H+1, 4H)
        WiT[:, :3 * H] *= -1.0  # the sigmoid gates' columns negated: the products give −a, what σ needs
        WhT[:, :3 * H] *= -1.0
        np.matmul(X.reshape(T * B, -1), WiT, out=S.reshape(T * B, 4 * H))  # all steps, one GEMM (with b_ih)
        for t in range(T):
            s = S[t]  # (B, 4H)
            np.matmul(Hs[t], WhT, out=g4h)  # (B, 4H) all gates, one GEMM (with b_hh)
            s += g4h  # [−a_o, −a_i, −a_f | a_g]
            sigmoid_of_negated(s[:, :3 * H], out=s[:, :3 * H])  # o, i, f
            np.tanh(s[:, 3 * H:], out=s[:, 3 * H:])  # g
            o, i, f, g = s[:, :H], s[:, H:2 * H], s[:, 2 * H:3 * H], s[:, 3 * H:]
            np.multiply(f, C[t], out=C[t + 1])
            np.multiply(i, g, out=t1)
            C[t + 1] += t1  # c' = f ⊙ c + i ⊙ g
            np.tanh(C[t + 1], out=TC[t])
            np.multiply(o, TC[t], out=Hs[t + 1, :, :H])  # h' = o ⊙ tanh(c')
        return Hs

    def backward(self, X, ws, dX):
        T, B, H, b, g = ws.T, ws.B, self.H, ws.buf, self.g
        S, C, TC, dA, dHs = b["S"], b["C"], b["TC"], b["dA"], ws.dHs
        t4h, t1, t2, dc = b["t4h"], b["t1"], b["t2"], b["dc"]
        W_hh = self._copy("W_hh", self.p.Wh[:, :H])  # (4H, H)
        dc[...] = 0.0
        for t in range(T - 1, -1, -1):
            dh, s, da, tc = dHs[t], S[t], dA[t], TC[t]  # (B, H), (B, 4H), (B, 4H), (B, H)
            o, i, f, gg = s[:, :H], s[:, H:2 * H], s[:, 2 * H:3 * H], s[:, 3 * H:]
            np.multiply(dh, o, out=t2)  # dL/dtanh(c')
            tanh_grad(tc, t2, out=t2, tmp=t1)
            dc += t2  # dL/dc' (B, H): from step t+1 and through h'
            np.multiply(dh, tc, out=da[:, :H])  # dL/do
            np.multiply(dc, gg, out=da[:, H:2 * H])  # dL/di
            np.multiply(dc, C[t], out=da[:, 2 * H:3 * H])  # dL/df
            np.multiply(dc, i, out=da[:, 3 * H:])  # dL/dg
            np.multiply(s, s, out=t4h)  # [o², i², f², g²]
            np.subtract(s[:, :3 * H], t4h[:, :3 * H], out=t4h[:, :3 * H])  # σ' = s − s² for o, i, f
            np.subtract(1.0, t4h[:, 3 * H:], out=t4h[:, 3 * H:])  # tanh' = 1 − g²
            da *= t4h  # dL/d[a_o | a_i | a_f | a_g]
            if _FLUSH[0]:
                _flush(da)
            if t:
                np.matmul(da, W_hh, out=t1)  # (B, H) through all gates, one GEMM
                dHs[t - 1] += t1  # dL/dh_prev
                if _FLUSH[0]:
                    _flush(dHs[t - 1])
                dc *= f  # dL/dc through c' = f ⊙ c + …
                if _FLUSH[0]:
                    _flush(dc)
        TB = T * B
        dA2 = dA.reshape(TB, 4 * H)
        np.matmul(dA2.T, ws.Hs[:-1].reshape(TB, H + 1), out=g.Wh)  # (4H, H+1) [dW_hh | db_hh], one GEMM
        self._input_grads(X, [(slice(0, 4 * H), dA2)], dX)


LAYERS: dict[tuple[str, str], type[Layer]] = {
    ("gru", "reset_after"): GRUResetAfter,
    ("gru", "reset_before"): GRUResetBefore,
    ("lstm", "standard"): LSTM,
}
