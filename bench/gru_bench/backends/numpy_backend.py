"""The NumPy reference backend: float32/float64, hand-written backprop through time, SGD/Adam with clipping.

It is the oracle every other backend is checked against (run in float64) and a CPU contender in its own right
(float32). The math is ``spec.py``'s; the layer kernels are in ``_np_layers.py`` (how the work is arranged for
speed is written there), the optimizer in ``_np_optim.py``.

All parameters live in ONE flat vector, and so do their gradients and the optimizer state: clipping and Adam are a
handful of vector operations. Inside it each layer has two blocks, ``[W_ih | b_ih]`` and ``[W_hh | b_hh]`` (bias as
the last column, so that biases ride in the matrix products; LSTM gate blocks in the internal order of
``_np_layers.LSTM``), and the head ``[W | b]``; ``weights``/``gradients`` map them to the canonical layout.
"""
from __future__ import annotations

import os
from typing import Any, ClassVar, Mapping

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from ..losses import loss_and_grad
from ..spec import DTYPES, ModelSpec, Weights, param_count, param_shapes
from ._np_layers import KEEP_SHAPES, LAYERS, Layer, Params, Workspace
from ._np_optim import Optimizer
from .base import Backend, Capabilities, TrainConfig, check_threads, check_x_shape, check_y

IMPLEMENTATION = "numpy (hand-written BPTT)"


class NumpyModel:
    """Parameters (flat), gradients (flat), optimizer state and reusable buffers of one model."""

    implementation = IMPLEMENTATION

    def __init__(self, spec: ModelSpec, weights: Weights, dtype: str, train: TrainConfig) -> None:
        self.spec, self.dtype, self.train = spec, np.dtype(dtype), train
        G, H, O = spec.gates, spec.hidden_size, spec.output_size
        # internal blocks, each a weight matrix with its bias as the last column
        self.blocks: dict[str, tuple[int, int]] = {}
        for k in range(spec.num_layers):
            self.blocks[f"Wi{k}"] = (G * H, spec.layer_input_size(k) + 1)  # [W_ih | b_ih]
            self.blocks[f"Wh{k}"] = (G * H, H + 1)  # [W_hh | b_hh]
        self.blocks["head"] = (O, H + 1)  # [W | b]
        size = sum(r * c for r, c in self.blocks.values())
        assert size == param_count(spec)
        self.theta = np.empty(size, self.dtype)  # (P,) all parameters
        self.grad = np.zeros(size, self.dtype)  # (P,) their gradients
        self.p, self.g = self._blocks(self.theta), self._blocks(self.grad)  # block name -> (rows, cols) view
        layer_cls = LAYERS[(spec.cell, spec.variant)]
        self.rows = np.concatenate([np.arange(k * H, (k + 1) * H) for k in layer_cls.order])  # internal <- canonical
        self.layers: list[Layer] = [
            layer_cls(spec.layer_input_size(k), H, self.dtype, Params(self.p[f"Wi{k}"], self.p[f"Wh{k}"]),
                      Params(self.g[f"Wi{k}"], self.g[f"Wh{k}"]))
            for k in range(spec.num_layers)]
        self.load(weights)
        self.optimizer = Optimizer(train, size, self.dtype)
        self._buffers: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        self._ws: list[Workspace] = []

    # ----------------------------------------------------------------------------------------------- layout
    def _blocks(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        views, start = {}, 0
        for name, (r, c) in self.blocks.items():
            views[name] = flat[start:start + r * c].reshape(r, c)
            start += r * c
        return views

    def canonical_views(self, blocks: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Canonical name -> view into an internal block (internal gate order)."""
        out: dict[str, np.ndarray] = {}
        for k in range(self.spec.num_layers):
            Wi, Wh = blocks[f"Wi{k}"], blocks[f"Wh{k}"]
            out[f"weight_ih_l{k}"], out[f"weight_hh_l{k}"] = Wi[:, :-1], Wh[:, :-1]
            out[f"bias_ih_l{k}"], out[f"bias_hh_l{k}"] = Wi[:, -1], Wh[:, -1]
        out["head.weight"], out["head.bias"] = blocks["head"][:, :-1], blocks["head"][:, -1]
        return out

    def load(self, weights: Mapping[str, np.ndarray]) -> None:
        """Canonical weights -> the flat vector (cast to the model's dtype, gate blocks reordered)."""
        for name, view in self.canonical_views(self.p).items():
            w = np.asarray(weights[name])
            view[...] = w if name.startswith("head.") else w[self.rows]

    def export(self, blocks: Mapping[str, np.ndarray]) -> Weights:
        """Internal blocks (parameters or gradients) -> canonical copies, in canonical order."""
        views = self.canonical_views(blocks)
        out: Weights = {}
        for name in param_shapes(self.spec):
            v = views[name]
            if name.startswith("head."):
                out[name] = v.copy()
            else:
                out[name] = np.empty_like(v, order="C")
                out[name][self.rows] = v
        return out

    # ------------------------------------------------------------------------------------------------ compute
    def _head_buffers(self, T: int, B: int) -> dict[str, np.ndarray]:
        buf = self._buffers.pop((T, B), None)
        if buf is None:
            s, dt = self.spec, self.dtype
            steps = T if s.head == "every" else 1
            X = np.empty((T, B, s.input_size + 1), dt)  # [x | 1], time-major
            X[..., -1] = 1.0
            buf = dict(X=X, Y=np.empty((steps, B, s.output_size), dt),  # head output, time-major
                       dY=np.empty((steps, B, s.output_size), dt))
            while len(self._buffers) >= KEEP_SHAPES:
                self._buffers.pop(next(iter(self._buffers)))  # the least recently used
        self._buffers[(T, B)] = buf  # most recent last
        return buf

    def run_forward(self, x: np.ndarray) -> np.ndarray:
        """x (B, T, I) -> the head output (B, O) or (B, T, O): a view of a reused buffer."""
        B, T, I = x.shape
        buf = self._head_buffers(T, B)
        np.copyto(buf["X"][..., :I], x.transpose(1, 0, 2))  # (T, B, I)
        inp = buf["X"]
        self._ws = [layer.workspace(T, B) for layer in self.layers]  # what the backward reads
        with np.errstate(over="ignore"):  # exp(−a) → inf in σ for a < −88 (float32) gives the right 0
            for layer, ws in zip(self.layers, self._ws):
                inp = layer.forward(inp, ws)[1:]  # (T, B, H+1)
        Y = buf["Y"]
        top = inp if self.spec.head == "every" else inp[-1:]  # (steps, B, H+1)
        np.matmul(top.reshape(-1, self.spec.hidden_size + 1), self.p["head"].T,
                  out=Y.reshape(-1, self.spec.output_size))  # (steps·B, O) = h Wᵀ + b
        return Y.transpose(1, 0, 2) if self.spec.head == "every" else Y[0]

    def run_backward(self, dY: np.ndarray) -> None:
        """dL/d(head output) (as returned by ``run_forward``) -> every gradient, written into ``self.grad``."""
        spec, H = self.spec, self.spec.hidden_size
        ws = self._ws  # of the latest run_forward
        T, B = ws[0].T, ws[0].B
        buf = self._head_buffers(T, B)
        d = buf["dY"]  # (steps, B, O)
        np.copyto(d, dY.transpose(1, 0, 2) if spec.head == "every" else dY[None])
        d2 = d.reshape(-1, spec.output_size)  # (steps·B, O)
        top, dtop = ws[-1].Hs[1:], ws[-1].dHs  # (T, B, H+1), (T, B, H)
        W = self.p["head"][:, :H]  # (O, H)
        if spec.head == "every":
            np.matmul(d2.T, top.reshape(T * B, H + 1), out=self.g["head"])  # (O, H+1) [dW | db]
            np.matmul(d2, W, out=dtop.reshape(T * B, H))  # (T·B, H)
        else:
            np.matmul(d2.T, top[-1], out=self.g["head"])
            dtop[:-1] = 0.0
            np.matmul(d2, W, out=dtop[-1])  # (B, H)
        for k in range(len(self.layers) - 1, -1, -1):
            X = buf["X"] if k == 0 else ws[k - 1].Hs[1:]
            self.layers[k].backward(X, ws[k], ws[k - 1].dHs if k > 0 else None)

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray) -> float:
        """Forward, loss, backward: returns the loss; the gradients are in ``self.grad``."""
        loss, dY = loss_and_grad(self.spec.loss, self.run_forward(x), y)
        self.run_backward(np.asarray(dY, dtype=self.dtype))
        return loss


# ---------------------------------------------------------------------------------------------- validation
def _check_x(model: NumpyModel, x: Any) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise ValueError(f"x is a {type(x).__name__}: expected a numpy array of shape (B, T, {model.spec.input_size})")
    check_x_shape(model.spec, x.shape)
    if x.dtype != model.dtype:
        raise ValueError(f"x has dtype {x.dtype}: expected {model.dtype} (the model's dtype)")
    return x


def _check_y(model: NumpyModel, x: np.ndarray, y: Any) -> np.ndarray:
    if not isinstance(y, np.ndarray):
        raise ValueError(f"y is a {type(y).__name__}: expected a numpy array")
    xent = model.spec.loss == "xent"
    bounds = (int(y.min()), int(y.max())) if xent and y.size and y.dtype.kind in "iu" else None
    check_y(model.spec, x.shape, y.shape, y.dtype, y.dtype.kind, bounds)
    return y if xent else y.astype(model.dtype, copy=False)


def _check_model(model: Any) -> NumpyModel:
    if not isinstance(model, NumpyModel):
        raise ValueError(f"model is a {type(model).__name__}: expected a model built by NumpyBackend.build")
    return model


# ------------------------------------------------------------------------------------------------- backend
class NumpyBackend(Backend):
    """The backend contract (``base.py``) in NumPy: device "cpu" only; dtypes float32 and float64; no options."""

    name: ClassVar[str] = "numpy"
    capabilities: ClassVar[Capabilities] = Capabilities(devices=("cpu",), dtypes=DTYPES, device_memory=False,
                                                        traced_allocations=True)

    def make_model(self, spec: ModelSpec, weights: Weights, device: str, dtype: str, train: TrainConfig,
                   options: dict[str, Any]) -> NumpyModel:
        return NumpyModel(spec, weights, dtype, train)

    def train_step(self, model: NumpyModel, x: np.ndarray, y: np.ndarray) -> float:
        model = _check_model(model)
        x = _check_x(model, x)
        y = _check_y(model, x, y)
        loss = model.loss_and_gradients(x, y)
        model.optimizer.step(model.theta, model.grad)
        return loss

    def forward(self, model: NumpyModel, x: np.ndarray) -> np.ndarray:
        model = _check_model(model)
        return model.run_forward(_check_x(model, x)).copy()

    def gradients(self, model: NumpyModel, x: np.ndarray, y: np.ndarray) -> Weights:
        model = _check_model(model)
        x = _check_x(model, x)
        model.loss_and_gradients(x, _check_y(model, x, y))
        return model.export(model.g)

    def subnormal_census(self, model: NumpyModel, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Subnormal fractions after one backward pass (model unchanged): dL/dh of every step and layer (the
        layers' ``dHs`` buffers, after any flush) and the parameter gradients (optional helper, ``_denormals``)."""
        from ._denormals import census

        model = _check_model(model)
        x = _check_x(model, x)
        model.loss_and_gradients(x, _check_y(model, x, y))
        dh = np.concatenate([ws.dHs.ravel() for ws in model._ws])  # (layers·T·B·H,)
        return census([("hidden_grad", dh), ("param_grad", model.grad)])

    def loss(self, model: NumpyModel, x: np.ndarray, y: np.ndarray) -> float:
        """The loss on one batch, without changing the model (optional helper)."""
        model = _check_model(model)
        x = _check_x(model, x)
        return loss_and_grad(model.spec.loss, model.run_forward(x), _check_y(model, x, y))[0]

    def weights(self, model: NumpyModel) -> Weights:
        model = _check_model(model)
        return model.export(model.p)

    def provenance(self, model: NumpyModel) -> dict[str, Any]:
        model = _check_model(model)
        blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        mine = [p for p in blas if "numpy" in str(p.get("filepath", ""))] or blas  # NumPy's own BLAS does the GEMMs
        return {
            "implementation": IMPLEMENTATION,
            "dtype": str(model.dtype),
            "numpy": np.__version__,
            "blas": ", ".join(f"{p.get('internal_api')} {p.get('version')} ({p.get('architecture')})"
                              f" x{p.get('num_threads')} threads" for p in mine),
            "optimizer": model.train.optimizer,
            "sigmoid": "1/(1+exp(-a))",
            "elementwise_threads": 1,
        }

    def set_denormals(self, policy: str) -> dict[str, Any]:
        """Put ``Case.denormals`` ("flush" | "keep") in force in this process (optional; ``_denormals.py``)."""
        from ._denormals import numpy_policy

        return numpy_policy(policy)

    def set_threads(self, n: int | None) -> dict[str, int]:
        """Threads of every loaded BLAS = ``n`` (threadpoolctl); returns them by library. NumPy's element-wise work
        is single-threaded whatever ``n``."""
        n = check_threads(n)
        if n is not None:
            self._limits = threadpool_limits(limits=n, user_api="blas")  # in force until the process ends
        return {f"numpy_blas:{os.path.basename(p.get('filepath', '?'))}": int(p.get("num_threads"))
                for p in threadpool_info() if p.get("user_api") == "blas"}
