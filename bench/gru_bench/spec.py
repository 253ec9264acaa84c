"""THE math of gru-bench: the cells, the canonical weight layout, initialisation, parameter and FLOP counts.

Every backend computes exactly the functions written here; the equations are written once, in this docstring.

Shapes: batch-first, ``x`` is ``(B, T, I)``, the hidden state ``h`` is ``(B, H)``.

GRU (gate rows ``[r; z; n]``; ``weight_ih (3H, I)``, ``weight_hh (3H, H)``, ``bias_ih (3H)``, ``bias_hh (3H)``)::

    r  = σ(x W_ir^T + b_ir + h W_hr^T + b_hr)                     # (B, H) reset gate
    z  = σ(x W_iz^T + b_iz + h W_hz^T + b_hz)                     # (B, H) "keep" gate
    n  = tanh(x W_in^T + b_in + r ⊙ (h W_hn^T + b_hn))            # variant "reset_after"  (cuDNN, PyTorch,
                                                                 #   Keras default)
    n  = tanh(x W_in^T + b_in + (r ⊙ h) W_hn^T + b_hn)            # variant "reset_before" (Cho et al. 2014 v3,
                                                                 #   Keras reset_after=False, ONNX default)
    h' = (1 − z) ⊙ n + z ⊙ h

The textbook form (update gate ``u``, candidate ``h̃``) is the same function with ``u = 1 − z``, ``h̃ = n``::

    h_t = (1 − u_t) ⊙ h_{t−1} + u_t ⊙ h̃_t

LSTM (gate rows ``[i; f; g; o]``; ``weight_ih (4H, I)``, ``weight_hh (4H, H)``, ``bias_ih (4H)``, ``bias_hh (4H)``)::

    i, f, o = σ(·),  g = tanh(·)      each · = x W_i*^T + b_i* + h W_h*^T + b_h*
    c' = f ⊙ c + i ⊙ g
    h' = o ⊙ tanh(c')

A model is ``num_layers`` stacked cells (layer ``l > 0`` reads the hidden states of layer ``l − 1``; initial
states are zero), then a linear head ``y = h W^T + b`` with ``W (O, H)``, ``b (O)``:

* ``head="last"``  (many-to-one): on the last step only, output ``(B, O)``;
* ``head="every"`` (many-to-many): on every step, output ``(B, T, O)``.

Losses: ``"mse"`` is the mean over all output elements of ``(ŷ − y)²`` (PyTorch ``MSELoss``); ``"xent"`` is the
mean over positions of ``−log softmax(ŷ)[y]`` with integer targets ``y`` of shape ``(B,)`` or ``(B, T)``
(PyTorch ``CrossEntropyLoss``).

Optimizers (PyTorch's formulas). Gradients are first clipped to a global norm ``c`` (``clip_grad_norm_``)::

    N = sqrt(Σ_p ||g_p||²);   g ← g · min(1, c / (N + 1e-6))

    SGD:   p ← p − lr · g
    Adam:  m ← β1 m + (1 − β1) g;   v ← β2 v + (1 − β2) g²;   (t = step number, from 1)
           p ← p − (lr / (1 − β1^t)) · m / (sqrt(v) / sqrt(1 − β2^t) + ε)

Canonical weights are a flat ``dict[str, np.ndarray]`` with PyTorch's names: ``weight_ih_l{k}``,
``weight_hh_l{k}``, ``bias_ih_l{k}``, ``bias_hh_l{k}`` for each layer ``k``, then ``head.weight``, ``head.bias``.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Mapping

import numpy as np

Weights = dict[str, np.ndarray]

CELLS = ("gru", "lstm")
GRU_VARIANTS = ("reset_after", "reset_before")
LSTM_VARIANTS = ("standard",)
HEADS = ("last", "every")
LOSSES = ("mse", "xent")
INITS = ("pytorch", "keras")
DTYPES = ("float32", "float64")
OPTIMIZERS = ("sgd", "adam")  # the two update rules of the docstring (PyTorch's formulas)
GATES = {"gru": 3, "lstm": 4}
STATES = {"gru": 1, "lstm": 2}  # h; h and c


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(choices)}")


def _check_positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name}={value!r}: expected a positive integer")


@dataclass(frozen=True)
class ModelSpec:
    """One model: ``num_layers`` stacked cells and a linear head. Validated on construction."""

    cell: str  # "gru" | "lstm"
    input_size: int  # I
    hidden_size: int  # H
    output_size: int  # O
    num_layers: int = 1
    variant: str | None = None  # GRU: "reset_after" (default) | "reset_before"; LSTM: "standard"
    head: str = "last"  # "last" (many-to-one) | "every" (many-to-many)
    loss: str = "mse"  # "mse" | "xent"

    def __post_init__(self) -> None:
        _check_choice("cell", self.cell, CELLS)
        if self.variant is None:
            object.__setattr__(self, "variant", "reset_after" if self.cell == "gru" else "standard")
        _check_choice("variant", self.variant, GRU_VARIANTS if self.cell == "gru" else LSTM_VARIANTS)
        for name in ("input_size", "hidden_size", "output_size", "num_layers"):
            _check_positive(name, getattr(self, name))
        _check_choice("head", self.head, HEADS)
        _check_choice("loss", self.loss, LOSSES)
        if self.loss == "xent" and self.output_size < 2:
            raise ValueError(f"output_size={self.output_size}: cross-entropy needs at least 2 classes")

    @property
    def gates(self) -> int:
        """G: 3 for a GRU, 4 for an LSTM."""
        return GATES[self.cell]

    @property
    def states(self) -> int:
        """S: the state vectors a cell carries from step to step: 1 for a GRU (h), 2 for an LSTM (h, c)."""
        return STATES[self.cell]

    def layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.hidden_size

    def to_dict(self) -> dict:
        return asdict(self)


# ----------------------------------------------------------------------------------------------------- layout
def param_shapes(spec: ModelSpec) -> dict[str, tuple[int, ...]]:
    """The canonical names and shapes, in canonical order."""
    G, H = spec.gates, spec.hidden_size
    shapes: dict[str, tuple[int, ...]] = {}
    for k in range(spec.num_layers):
        shapes[f"weight_ih_l{k}"] = (G * H, spec.layer_input_size(k))
        shapes[f"weight_hh_l{k}"] = (G * H, H)
        shapes[f"bias_ih_l{k}"] = (G * H,)
        shapes[f"bias_hh_l{k}"] = (G * H,)
    shapes["head.weight"] = (spec.output_size, H)
    shapes["head.bias"] = (spec.output_size,)
    return shapes


def check_weights(spec: ModelSpec, weights: Mapping[str, np.ndarray], name: str = "weights") -> None:
    """Raise ``ValueError`` naming the first missing, extra or misshapen entry."""
    shapes = param_shapes(spec)
    missing = [k for k in shapes if k not in weights]
    extra = [k for k in weights if k not in shapes]
    if missing or extra:
        raise ValueError(f"{name}: missing {missing}, unexpected {extra}; expected keys {list(shapes)}")
    for k, shape in shapes.items():
        arr = weights[k]
        if not isinstance(arr, np.ndarray) or arr.shape != shape:
            got = getattr(arr, "shape", type(arr).__name__)
            raise ValueError(f"{name}[{k!r}] has shape {got}: expected {shape}")
        if arr.dtype not in (np.float32, np.float64):
            raise ValueError(f"{name}[{k!r}] has dtype {arr.dtype}: expected float32 or float64")


def param_count(spec: ModelSpec) -> int:
    """Per layer G·H·(I_l + H) + 2·G·H (GRU: 3H(I+H)+6H, LSTM: 4H(I+H)+8H), plus the head O·H + O."""
    return sum(math.prod(s) for s in param_shapes(spec).values())


def recurrent_param_count(spec: ModelSpec) -> int:
    """Parameters of the recurrent layers alone (no head)."""
    return param_count(spec) - spec.output_size * (spec.hidden_size + 1)


# ------------------------------------------------------------------------------------------------------ init
def _orthogonal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """Keras' Orthogonal initializer for a ``(rows, cols)`` kernel: orthonormal rows or columns."""
    a = rng.standard_normal((max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    return q.T if rows < cols else q


INIT_CHUNK = 1 << 20  # values drawn at a time: the float64 draw of a big matrix never exists whole


def _uniform(rng: np.random.Generator, low: float, high: float, shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """``rng.uniform(low, high, shape).astype(dtype)``, value for value (the generator's stream is the same whether
    drawn at once or in pieces), but drawn ``INIT_CHUNK`` values at a time into the ``dtype`` array."""
    out = np.empty(shape, dtype=dtype)
    flat = out.reshape(-1)  # a view: out is contiguous
    for start in range(0, flat.size, INIT_CHUNK):
        stop = min(start + INIT_CHUNK, flat.size)
        flat[start:stop] = rng.uniform(low, high, stop - start)
    return out


def _glorot(rng: np.random.Generator, fan_in: int, fan_out: int, shape: tuple[int, ...],
            dtype: str = "float64") -> np.ndarray:
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return _uniform(rng, -limit, limit, shape, dtype)


def init_weights(spec: ModelSpec, seed: int, scheme: str = "pytorch", dtype: str = "float64") -> Weights:
    """Seeded initial weights in canonical layout.

    Drawn in float64 and then cast, so one seed gives the same model in every dtype and every backend (the uniform
    draws go in chunks straight into the ``dtype`` arrays: a float32 model never holds a float64 copy; the
    ``keras`` orthogonal kernels need their float64 QR whole).

    * ``"pytorch"``: every entry (head included) ~ U(−1/√H, 1/√H) (``nn.GRU``/``nn.LSTM``/``nn.Linear``, fan-in H).
    * ``"keras"``: input kernels Glorot-uniform over Keras' ``(I, G·H)`` kernel, recurrent kernels orthogonal over
      Keras' ``(H, G·H)`` kernel, zero biases, LSTM forget-gate bias 1.0 (placed in ``bias_ih``); head Glorot, zero
      bias.
    """
    _check_choice("scheme", scheme, INITS)
    _check_choice("dtype", dtype, DTYPES)
    rng = np.random.default_rng(seed)
    shapes = param_shapes(spec)
    G, H, O = spec.gates, spec.hidden_size, spec.output_size
    w: Weights = {}
    if scheme == "pytorch":
        bound = 1.0 / math.sqrt(H)
        for k, shape in shapes.items():
            w[k] = _uniform(rng, -bound, bound, shape, dtype)
    else:
        for k in range(spec.num_layers):
            In = spec.layer_input_size(k)
            w[f"weight_ih_l{k}"] = _glorot(rng, In, G * H, (In, G * H), dtype).T.copy()  # kernel (I, GH) -> (GH, I)
            w[f"weight_hh_l{k}"] = _orthogonal(rng, H, G * H).T.copy()  # kernel (H, GH) -> (GH, H)
            w[f"bias_ih_l{k}"] = np.zeros(G * H)
            w[f"bias_hh_l{k}"] = np.zeros(G * H)
            if spec.cell == "lstm":
                w[f"bias_ih_l{k}"][H : 2 * H] = 1.0  # forget gate rows [i; f; g; o]
        w["head.weight"] = _glorot(rng, H, O, (H, O), dtype).T.copy()
        w["head.bias"] = np.zeros(O)
    return {k: np.ascontiguousarray(v, dtype=dtype) for k, v in w.items()}


def cast_weights(weights: Mapping[str, np.ndarray], dtype: str) -> Weights:
    _check_choice("dtype", dtype, DTYPES)
    return {k: np.asarray(v, dtype=dtype).copy() for k, v in weights.items()}


# ----------------------------------------------------------------------------------------------------- costs
@dataclass(frozen=True)
class Flops:
    """Analytic matrix-multiply FLOPs (one multiply-add = 2 FLOPs) for one batch; element-wise work not counted."""

    forward: float  # one forward pass over (B, T)
    train_step: float  # forward + backward (≈ 2× forward: grads w.r.t. inputs and weights) + optimizer (ignored)


def flops(spec: ModelSpec, batch_size: int, seq_len: int) -> Flops:
    """Per step and layer ``2·G·B·H·(I_l + H)``; head ``2·B·H·O`` per output step; backward = 2× forward."""
    _check_positive("batch_size", batch_size)
    _check_positive("seq_len", seq_len)
    G, H, O, B, T = spec.gates, spec.hidden_size, spec.output_size, batch_size, seq_len
    rec = sum(2 * G * B * H * (spec.layer_input_size(k) + H) * T for k in range(spec.num_layers))
    head = 2 * B * H * O * (T if spec.head == "every" else 1)
    fwd = float(rec + head)
    return Flops(forward=fwd, train_step=3.0 * fwd)


def activation_bytes(spec: ModelSpec, batch_size: int, seq_len: int, itemsize: int) -> int:
    """The least activation memory BPTT keeps: ``B·T·H·(G+S)·bytes`` per layer — each step's G gate outputs and the
    S states it read (``h_{t-1}``, and ``c_{t-1}`` for an LSTM: ``dW_hh`` needs ``h_{t-1}``, ``df`` needs ``c_{t-1}``).
    A backend keeps more (input projections, pre-activations, gate gradients kept for batched weight GEMMs);
    NumPy's own layout keeps about ``12H`` values per sample and step for every cell (backends/_np_layers.py)."""
    return spec.num_layers * batch_size * seq_len * spec.hidden_size * (spec.gates + spec.states) * itemsize


def iso_param_hidden(spec: ModelSpec, cell: str) -> int:
    """The hidden size for ``cell`` whose parameter count is closest to ``spec``'s (same I, O, layers, head).

    E.g. the GRU that matches an LSTM of hidden size H has hidden size ≈ H·√(4/3) for large H.
    """
    _check_choice("cell", cell, CELLS)
    target = param_count(spec)

    def count(h: int) -> int:
        return param_count(ModelSpec(cell, spec.input_size, h, spec.output_size, spec.num_layers,
                                     head=spec.head, loss=spec.loss))

    lo, hi = 1, 1
    while count(hi) < target:  # counts grow monotonically with h
        hi *= 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    return min((lo, hi), key=lambda h: (abs(count(h) - target), h))
