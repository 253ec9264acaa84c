"""One recurrent layer of the NumPy backend: forward and hand-written backprop through time (equations: ``spec.py``).

Inside, everything is time-major: a layer reads ``X (T, B, I)`` and writes ``Hs (T+1, B, H)`` with ``Hs[0] = 0``
and ``Hs[t+1]`` the state after step ``t``, so ``Hs[:-1]`` (the h_prev of every step) and ``Hs[1:]`` (the outputs)
are both contiguous ``(T·B, H)`` matrices. The work is arranged around the one thing that must be sequential:

* forward: the input projection of all T steps is ONE GEMM (``X (T·B, I) @ W_ihᵀ``) done before the loop, with the
  biases added once; each step then does one in-place ``+= h @ W_hhᵀ`` for all gates and the element-wise gates;
* backward: everything that does not depend on dL/dh (σ', tanh', the products of saved activations) is computed
  for all T at once after the forward (``_coefficients``), so a step of the backward loop is one broadcast multiply
  dL/dh × coefficients -> all gate gradients, one in-place ``dh_prev += dgates @ W_hh`` and the direct path;
* the weight gradients are ONE GEMM each over all ``T·B`` rows after the loop (``dW_hh = dgatesᵀ @ Hs[:-1]``).

Buffers live in a ``Workspace`` per ``(T, B)`` and are reused across steps and calls. Weight and gradient arrays
are views into the model's flat parameter and gradient vectors (see ``numpy_backend``), updated in place.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ._np_kernels import Gemm, sigmoid


@dataclass
class Params:
    """One layer's tensors in the backend's internal gate order (views into a flat vector)."""

    W_ih: np.ndarray  # (G·H, I)
    W_hh: np.ndarray  # (G·H, H)
    b_ih: np.ndarray  # (G·H,)
    b_hh: np.ndarray  # (G·H,)


@dataclass
class Workspace:
    """Buffers of one layer for one ``(T, B)``; ``Hs`` and ``dHs`` are what neighbouring layers read and write."""

    T: int
    B: int
    Hs: np.ndarray  # (T+1, B, H) states, Hs[0] = 0
    dHs: np.ndarray  # (T, B, H) dL/dh_t: filled by the layer above / the head, completed by the backward loop
    ones: np.ndarray  # (T·B,) for bias gradients as one GEMV
    tmp: np.ndarray  # (B, H)
    buf: dict[str, np.ndarray] = field(default_factory=dict)


class Layer:
    """Base: shapes, workspaces, the shared weight-gradient GEMMs. Subclasses implement one cell."""

    gates: int  # G
    order: tuple[int, ...]  # internal gate block k holds canonical gate block order[k]

    def __init__(self, input_size: int, hidden_size: int, dtype: np.dtype, p: Params, g: Params) -> None:
        self.I, self.H, self.dtype = input_size, hidden_size, np.dtype(dtype)
        self.p, self.g = p, g  # parameters and their gradients, (internal order)
        self.gemm = Gemm(self.dtype)
        self._ws: dict[tuple[int, int], Workspace] = {}
        self.b_sum = np.empty(self.gates * hidden_size, self.dtype)  # (G·H,) scratch for folded biases

    # ------------------------------------------------------------------------------------------------ buffers
    def _shapes(self, T: int, B: int) -> dict[str, tuple[int, ...]]:
        raise NotImplementedError

    def workspace(self, T: int, B: int) -> Workspace:
        ws = self._ws.get((T, B))
        if ws is None:
            H, dt = self.H, self.dtype
            ws = Workspace(T, B, Hs=np.zeros((T + 1, B, H), dt), dHs=np.empty((T, B, H), dt),
                           ones=np.ones(T * B, dt), tmp=np.empty((B, H), dt),
                           buf={k: np.empty(s, dt) for k, s in self._shapes(T, B).items()})
            self._ws = {(T, B): ws}  # keep one shape: a new shape frees the old buffers
        return ws

    # --------------------------------------------------------------------------------------------- interface
    def forward(self, X: np.ndarray, ws: Workspace) -> np.ndarray:
        """X (T, B, I) -> Hs (T+1, B, H); saves what the backward needs in ``ws``."""
        raise NotImplementedError

    def backward(self, X: np.ndarray, ws: Workspace, dX: np.ndarray | None) -> None:
        """Given ``ws.dHs`` (T, B, H) holding dL/dh_t from outside the layer, accumulate nothing: WRITE this layer's
        parameter gradients into ``self.g`` and, if ``dX`` (T, B, I) is given, dL/dX into it."""
        raise NotImplementedError

    def _input_grads(self, X: np.ndarray, dGi: list[tuple[slice, np.ndarray]], dX: np.ndarray | None) -> None:
        """dW_ih, db_ih and dX from the gradients w.r.t. the input-projection pre-activations, given as
        (row block of W_ih, (T·B, rows) matrix) pairs: one GEMM per block over all T·B rows."""
        X2 = X.reshape(-1, self.I)  # (T·B, I)
        for rows, d in dGi:
            np.matmul(d.T, X2, out=self.g.W_ih[rows])  # (rows, I)
        if dX is not None:
            dX2 = dX.reshape(-1, self.I)  # (T·B, I)
            (rows, d), rest = dGi[0], dGi[1:]
            np.matmul(d, self.p.W_ih[rows], out=dX2)
            for rows, d in rest:
                self.gemm.acc(dX2, d, self.p.W_ih[rows])


# ------------------------------------------------------------------------------------------------------- GRU
class GRUResetAfter(Layer):
    """GRU, variant "reset_after": n = tanh(x W_inᵀ + b_in + r ⊙ (h W_hnᵀ + b_hn)). Gate blocks [r; z; n]."""

    gates, order = 3, (0, 1, 2)

    def _shapes(self, T, B):
        H = self.H
        return dict(A=(T, B, 3 * H),  # [r,z pre-activations | h W_hnᵀ + b_hn], then dL/d(those)
                    Gin=(T, B, H),  # x W_inᵀ + b_in
                    RZ=(T, B, 2 * H),  # [r | z]
                    N=(T, B, H),  # n
                    D=(T, B, H),  # h_prev − n
                    K=(T, B, 3 * H),  # backward coefficients: dL/d(A) = dL/dh × K
                    Ka=(T, B, H),  # dL/d(n pre-activation) = dL/dh × Ka
                    dA=(T, B, 3 * H))

    def forward(self, X, ws):
        T, B, H, p, b = ws.T, ws.B, self.H, self.p, ws.buf
        A, Gin, RZ, N, D, Hs = b["A"], b["Gin"], b["RZ"], b["N"], b["D"], ws.Hs
        np.add(p.b_ih, p.b_hh, out=self.b_sum)
        self.b_sum[2 * H:] = p.b_ih[2 * H:]  # b_hn stays inside r ⊙ (·)
        np.matmul(X.reshape(T * B, -1), p.W_ih.T, out=A.reshape(T * B, 3 * H))  # (T·B, 3H) all steps, one GEMM
        A += self.b_sum  # (T, B, 3H) [x W_irᵀ + b_ir + b_hr | x W_izᵀ + b_iz + b_hz | x W_inᵀ + b_in]
        np.copyto(Gin, A[..., 2 * H:])  # (T, B, H)
        A[..., 2 * H:] = p.b_hh[2 * H:]  # (T, B, H) b_hn: the step's GEMM adds h W_hnᵀ on top
        acc = self.gemm.acc_fn(p.W_hh.T)
        for t in range(T):
            h, a, rz, n, d = Hs[t], A[t], RZ[t], N[t], D[t]  # (B, H), (B, 3H), (B, 2H), (B, H), (B, H)
            acc(a, h)  # a += h @ W_hhᵀ: [r, z pre-activations | h W_hnᵀ + b_hn]
            sigmoid(a[:, :2 * H], out=rz)  # (B, 2H) [r | z]
            np.multiply(rz[:, :H], a[:, 2 * H:], out=n)  # r ⊙ (h W_hnᵀ + b_hn)
            n += Gin[t]
            np.tanh(n, out=n)  # n
            np.subtract(h, n, out=d)  # h − n
            np.multiply(rz[:, H:], d, out=Hs[t + 1])  # z ⊙ (h − n)
            Hs[t + 1] += n  # h' = (1 − z) ⊙ n + z ⊙ h
        return Hs

    def _coefficients(self, ws):
        """K = [∂h'/∂a_r, ∂h'/∂a_z, ∂h'/∂(h W_hnᵀ + b_hn)] and Ka = ∂h'/∂a_n for all T at once (element-wise)."""
        H, b = self.H, ws.buf
        RZ, N, D, A, K, Ka = b["RZ"], b["N"], b["D"], b["A"], b["K"], b["Ka"]
        r, z, Kr, Kz, Kn = RZ[..., :H], RZ[..., H:], K[..., :H], K[..., H:2 * H], K[..., 2 * H:]
        np.subtract(1.0, RZ, out=K[..., :2 * H])
        K[..., :2 * H] *= RZ  # σ' = s(1 − s) for r and z
        np.multiply(N, N, out=Ka)
        np.subtract(1.0, Ka, out=Ka)  # 1 − n²
        np.subtract(1.0, z, out=Kn)
        Ka *= Kn  # Ka = (1 − z)(1 − n²)
        np.multiply(Ka, r, out=Kn)  # Kn = Ka r
        Kr *= A[..., 2 * H:]
        Kr *= Ka  # Kr = Ka (h W_hnᵀ + b_hn) r(1 − r)
        Kz *= D  # Kz = (h − n) z(1 − z)

    def backward(self, X, ws, dX):
        T, B, H, b, g = ws.T, ws.B, self.H, ws.buf, self.g
        self._coefficients(ws)
        RZ, K, Ka, dA, dHs, tmp = b["RZ"], b["K"], b["Ka"], b["dA"], ws.dHs, ws.tmp
        K3, dA3 = K.reshape(T, B, 3, H), dA.reshape(T, B, 3, H)
        acc = self.gemm.acc_fn(self.p.W_hh)
        for t in range(T - 1, -1, -1):
            dh = dHs[t]  # (B, H) complete: from outside plus step t+1
            np.multiply(dh[:, None, :], K3[t], out=dA3[t])  # (B, 3, H) [da_r, da_z, d(h W_hnᵀ + b_hn)]
            if t:
                acc(dHs[t - 1], dA[t])  # dh_prev += dA @ W_hh
                np.multiply(dh, RZ[t, :, H:], out=tmp)
                dHs[t - 1] += tmp  # dh_prev += dh ⊙ z
        dA2, Hp2 = dA.reshape(T * B, 3 * H), ws.Hs[:-1].reshape(T * B, H)  # (T·B, 3H), (T·B, H)
        np.matmul(dA2.T, Hp2, out=g.W_hh)  # (3H, H) one GEMM over all steps
        np.matmul(ws.ones, dA2, out=g.b_hh)  # (3H,)
        dAn = np.multiply(dHs, Ka, out=Ka).reshape(T * B, H)  # (T·B, H) da_n
        g.b_ih[:2 * H] = g.b_hh[:2 * H]
        np.matmul(ws.ones, dAn, out=g.b_ih[2 * H:])
        self._input_grads(X, [(slice(0, 2 * H), dA2[:, :2 * H]), (slice(2 * H, 3 * H), dAn)], dX)


class GRUResetBefore(Layer):
    """GRU, variant "reset_before": n = tanh(x W_inᵀ + b_in + (r ⊙ h) W_hnᵀ + b_hn). Gate blocks [r; z; n]."""

    gates, order = 3, (0, 1, 2)

    def _shapes(self, T, B):
        H = self.H
        return dict(Arz=(T, B, 2 * H),  # r, z pre-activations
                    N=(T, B, H),  # n pre-activation, then n
                    RZ=(T, B, 2 * H),  # [r | z]
                    RH=(T, B, H),  # r ⊙ h_prev
                    D=(T, B, H),  # h_prev − n
                    Krz=(T, B, 2 * H),  # [∂/∂a_r of r ⊙ h: h_prev r(1 − r) | ∂h'/∂a_z: (h − n) z(1 − z)]
                    Ka=(T, B, H),  # ∂h'/∂a_n = (1 − z)(1 − n²)
                    dRZ=(T, B, 2 * H),  # dL/d[a_r | a_z]
                    dAn=(T, B, H),  # dL/da_n
                    drh=(B, H))  # dL/d(r ⊙ h) of one step

    def forward(self, X, ws):
        T, B, H, p, b = ws.T, ws.B, self.H, self.p, ws.buf
        Arz, N, RZ, RH, D, Hs = b["Arz"], b["N"], b["RZ"], b["RH"], b["D"], ws.Hs
        X2 = X.reshape(T * B, -1)  # (T·B, I)
        np.add(p.b_ih, p.b_hh, out=self.b_sum)  # here every bias sits outside the gates' products
        np.matmul(X2, p.W_ih[:2 * H].T, out=Arz.reshape(T * B, 2 * H))  # (T·B, 2H)
        Arz += self.b_sum[:2 * H]
        np.matmul(X2, p.W_ih[2 * H:].T, out=N.reshape(T * B, H))  # (T·B, H)
        N += self.b_sum[2 * H:]
        acc_rz, acc_n = self.gemm.acc_fn(p.W_hh[:2 * H].T), self.gemm.acc_fn(p.W_hh[2 * H:].T)
        for t in range(T):
            h, rz, n, rh, d = Hs[t], RZ[t], N[t], RH[t], D[t]
            acc_rz(Arz[t], h)  # (B, 2H) += h @ [W_hr; W_hz]ᵀ
            sigmoid(Arz[t], out=rz)  # (B, 2H) [r | z]
            np.multiply(rz[:, :H], h, out=rh)  # r ⊙ h
            acc_n(n, rh)  # (B, H) += (r ⊙ h) W_hnᵀ
            np.tanh(n, out=n)  # n
            np.subtract(h, n, out=d)
            np.multiply(rz[:, H:], d, out=Hs[t + 1])
            Hs[t + 1] += n  # h' = (1 − z) ⊙ n + z ⊙ h
        return Hs

    def _coefficients(self, ws):
        H, b = self.H, ws.buf
        RZ, N, D, Krz, Ka = b["RZ"], b["N"], b["D"], b["Krz"], b["Ka"]
        np.subtract(1.0, RZ, out=Krz)
        Krz *= RZ  # σ' for r and z
        Krz[..., :H] *= ws.Hs[:-1]  # h_prev r(1 − r)
        Krz[..., H:] *= D  # (h − n) z(1 − z)
        np.multiply(N, N, out=Ka)
        np.subtract(1.0, Ka, out=Ka)  # 1 − n²
        one_minus_z = np.subtract(1.0, RZ[..., H:], out=b["dAn"])  # dAn is free until the backward loop
        Ka *= one_minus_z  # (1 − z)(1 − n²)

    def backward(self, X, ws, dX):
        T, B, H, b, g, p = ws.T, ws.B, self.H, ws.buf, self.g, self.p
        self._coefficients(ws)
        RZ, Krz, Ka, dRZ, dAn, drh, dHs, tmp = (b["RZ"], b["Krz"], b["Ka"], b["dRZ"], b["dAn"], b["drh"], ws.dHs,
                                                ws.tmp)
        W_hn = p.W_hh[2 * H:]  # (H, H)
        acc = self.gemm.acc_fn(p.W_hh[:2 * H])
        for t in range(T - 1, -1, -1):
            dh = dHs[t]  # (B, H)
            np.multiply(dh, Ka[t], out=dAn[t])  # da_n
            np.matmul(dAn[t], W_hn, out=drh)  # (B, H) dL/d(r ⊙ h)
            np.multiply(drh, Krz[t, :, :H], out=dRZ[t, :, :H])  # da_r
            np.multiply(dh, Krz[t, :, H:], out=dRZ[t, :, H:])  # da_z
            if t:
                acc(dHs[t - 1], dRZ[t])  # dh_prev += [da_r, da_z] @ [W_hr; W_hz]
                np.multiply(dh, RZ[t, :, H:], out=tmp)
                dHs[t - 1] += tmp  # + dh ⊙ z
                np.multiply(drh, RZ[t, :, :H], out=tmp)
                dHs[t - 1] += tmp  # + dL/d(r ⊙ h) ⊙ r
        TB = T * B
        dRZ2, dAn2 = dRZ.reshape(TB, 2 * H), dAn.reshape(TB, H)
        np.matmul(dRZ2.T, ws.Hs[:-1].reshape(TB, H), out=g.W_hh[:2 * H])  # (2H, H)
        np.matmul(dAn2.T, b["RH"].reshape(TB, H), out=g.W_hh[2 * H:])  # (H, H)
        np.matmul(ws.ones, dRZ2, out=g.b_hh[:2 * H])
        np.matmul(ws.ones, dAn2, out=g.b_hh[2 * H:])
        g.b_ih[:] = g.b_hh
        self._input_grads(X, [(slice(0, 2 * H), dRZ2), (slice(2 * H, 3 * H), dAn2)], dX)


# ------------------------------------------------------------------------------------------------------ LSTM
class LSTM(Layer):
    """LSTM (spec.py). Internal gate blocks [o; i; f; g] (canonical [i; f; g; o]): the three sigmoid gates are one
    contiguous block for the forward, and i, f, g (the gates dL/dc reaches) one block for the backward."""

    gates, order = 4, (3, 0, 1, 2)

    def _shapes(self, T, B):
        H = self.H
        return dict(S=(T, B, 4 * H),  # pre-activations, then the gates [o, i, f, g]
                    C=(T + 1, B, H),  # cell states, C[0] = 0
                    TC=(T, B, H),  # tanh(c')
                    K=(T, B, 4 * H),  # [∂h'/∂a_o (via dh) | ∂c'/∂a_i, ∂c'/∂a_f, ∂c'/∂a_g (via dc)]
                    Kc=(T, B, H),  # ∂h'/∂c' = o (1 − tanh²c')
                    dA=(T, B, 4 * H),
                    dc=(B, H))

    def forward(self, X, ws):
        T, B, H, p, b = ws.T, ws.B, self.H, self.p, ws.buf
        S, C, TC, Hs, tmp = b["S"], b["C"], b["TC"], ws.Hs, ws.tmp
        C[0] = 0.0
        np.add(p.b_ih, p.b_hh, out=self.b_sum)
        np.matmul(X.reshape(T * B, -1), p.W_ih.T, out=S.reshape(T * B, 4 * H))  # (T·B, 4H) all steps
        S += self.b_sum
        acc = self.gemm.acc_fn(p.W_hh.T)
        for t in range(T):
            s = S[t]  # (B, 4H)
            acc(s, Hs[t])  # += h @ W_hhᵀ
            sigmoid(s[:, :3 * H], out=s[:, :3 * H])  # o, i, f
            np.tanh(s[:, 3 * H:], out=s[:, 3 * H:])  # g
            o, i, f, g = s[:, :H], s[:, H:2 * H], s[:, 2 * H:3 * H], s[:, 3 * H:]
            np.multiply(f, C[t], out=C[t + 1])
            np.multiply(i, g, out=tmp)
            C[t + 1] += tmp  # c' = f ⊙ c + i ⊙ g
            np.tanh(C[t + 1], out=TC[t])
            np.multiply(o, TC[t], out=Hs[t + 1])  # h' = o ⊙ tanh(c')
        return Hs

    def _coefficients(self, ws):
        H, b = self.H, ws.buf
        S, C, TC, K, Kc = b["S"], b["C"], b["TC"], b["K"], b["Kc"]
        o, i, f, g = S[..., :H], S[..., H:2 * H], S[..., 2 * H:3 * H], S[..., 3 * H:]
        np.subtract(1.0, S[..., :3 * H], out=K[..., :3 * H])
        K[..., :3 * H] *= S[..., :3 * H]  # σ' for o, i, f
        K[..., :H] *= TC  # ∂h'/∂a_o = tanh(c') o(1 − o)
        K[..., H:2 * H] *= g  # ∂c'/∂a_i = g i(1 − i)
        K[..., 2 * H:3 * H] *= C[:-1]  # ∂c'/∂a_f = c f(1 − f)
        Kg = K[..., 3 * H:]
        np.multiply(g, g, out=Kg)
        np.subtract(1.0, Kg, out=Kg)
        Kg *= i  # ∂c'/∂a_g = i (1 − g²)
        np.multiply(TC, TC, out=Kc)
        np.subtract(1.0, Kc, out=Kc)
        Kc *= o  # ∂h'/∂c' = o (1 − tanh²c')

    def backward(self, X, ws, dX):
        T, B, H, b, g = ws.T, ws.B, self.H, ws.buf, self.g
        self._coefficients(ws)
        S, K, Kc, dA, dc, dHs, tmp = b["S"], b["K"], b["Kc"], b["dA"], b["dc"], ws.dHs, ws.tmp
        K4, dA4 = K.reshape(T, B, 4, H), dA.reshape(T, B, 4, H)
        dc[...] = 0.0
        acc = self.gemm.acc_fn(self.p.W_hh)
        for t in range(T - 1, -1, -1):
            dh = dHs[t]  # (B, H)
            np.multiply(dh, Kc[t], out=tmp)
            dc += tmp  # dL/dc' (B, H): from step t+1 and through h'
            np.multiply(dh, K[t, :, :H], out=dA[t, :, :H])  # da_o
            np.multiply(dc[:, None, :], K4[t, :, 1:], out=dA4[t, :, 1:])  # (B, 3, H) [da_i, da_f, da_g]
            if t:
                acc(dHs[t - 1], dA[t])  # dh_prev += dA @ W_hh
                dc *= S[t, :, 2 * H:3 * H]  # dc_prev = dc ⊙ f
        TB = T * B
        dA2 = dA.reshape(TB, 4 * H)
        np.matmul(dA2.T, ws.Hs[:-1].reshape(TB, H), out=g.W_hh)  # (4H, H)
        np.matmul(ws.ones, dA2, out=g.b_hh)
        g.b_ih[:] = g.b_hh
        self._input_grads(X, [(slice(0, 4 * H), dA2)], dX)


LAYERS: dict[tuple[str, str], type[Layer]] = {
    ("gru", "reset_after"): GRUResetAfter,
    ("gru", "reset_before"): GRUResetBefore,
    ("lstm", "standard"): LSTM,
}
