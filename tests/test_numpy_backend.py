"""The NumPy reference backend against independent references: a naive step-by-step implementation of spec.py's
equations (forward), central finite differences (gradients), and the optimizer formulas computed here by hand.

Tolerances are stated per test; "relative error" of a tensor is ||a − b|| / ||b|| unless said otherwise.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.special import expit

from gru_bench.backends import get_backend
from gru_bench.backends.base import Backend, TrainConfig
from gru_bench.backends.numpy_backend import NumpyBackend
from gru_bench.losses import loss_and_grad
from gru_bench.spec import ModelSpec, cast_weights, init_weights, param_shapes

CELLS = [("gru", "reset_after"), ("gru", "reset_before"), ("lstm", "standard")]
HEAD_LOSS = [("last", "mse"), ("last", "xent"), ("every", "mse"), ("every", "xent")]
B, T, I, H, O = 3, 5, 2, 4, 3  # small sizes for the finite-difference checks

be = NumpyBackend()


def _spec(cell="gru", variant="reset_after", head="last", loss="mse", layers=1, i=I, h=H, o=O) -> ModelSpec:
    return ModelSpec(cell, i, h, o, layers, variant=variant, head=head, loss=loss)


def _batch(spec: ModelSpec, seed: int, b: int = B, t: int = T, dtype=np.float64):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, t, spec.input_size)).astype(dtype)
    shape = (b,) if spec.head == "last" else (b, t)
    if spec.loss == "mse":
        y = rng.standard_normal(shape + (spec.output_size,)).astype(dtype)
    else:
        y = rng.integers(0, spec.output_size, shape)
    return x, y


def _loss(spec, weights, x, y) -> float:
    model = be.build(spec, weights, dtype="float64")
    return loss_and_grad(spec.loss, be.forward(model, x), y)[0]


def _flat(d: dict[str, np.ndarray], keys) -> np.ndarray:
    return np.concatenate([d[k].ravel() for k in keys])


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ------------------------------------------------------------------------------------- naive reference forward
def _reference_forward(spec: ModelSpec, w: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """spec.py's equations written out step by step with canonical weights (float64, scipy's expit for σ)."""
    Hn = spec.hidden_size
    seq = [x[:, t] for t in range(x.shape[1])]  # T × (B, I)
    for k in range(spec.num_layers):
        W_ih, W_hh = w[f"weight_ih_l{k}"], w[f"weight_hh_l{k}"]
        b_ih, b_hh = w[f"bias_ih_l{k}"], w[f"bias_hh_l{k}"]
        h = np.zeros((x.shape[0], Hn))
        c = np.zeros_like(h)
        out = []
        for xt in seq:
            gi = xt @ W_ih.T + b_ih
            if spec.cell == "gru":
                gh = h @ W_hh.T + b_hh
                r = expit(gi[:, :Hn] + gh[:, :Hn])
                z = expit(gi[:, Hn:2 * Hn] + gh[:, Hn:2 * Hn])
                if spec.variant == "reset_after":
                    n = np.tanh(gi[:, 2 * Hn:] + r * gh[:, 2 * Hn:])
                else:
                    n = np.tanh(gi[:, 2 * Hn:] + (r * h) @ W_hh[2 * Hn:].T + b_hh[2 * Hn:])
                h = (1 - z) * n + z * h
            else:
                a = gi + h @ W_hh.T + b_hh
                i_, f_, g_, o_ = (a[:, j * Hn:(j + 1) * Hn] for j in range(4))
                c = expit(f_) * c + expit(i_) * np.tanh(g_)
                h = expit(o_) * np.tanh(c)
            out.append(h)
        seq = out
    hs = np.stack(seq, axis=1)  # (B, T, H)
    top = hs[:, -1] if spec.head == "last" else hs
    return top @ w["head.weight"].T + w["head.bias"]


@pytest.mark.parametrize("cell,variant", CELLS)
@pytest.mark.parametrize("head,loss", HEAD_LOSS)
@pytest.mark.parametrize("layers", [1, 2])
def test_forward_equals_naive_reference(cell, variant, head, loss, layers):
    """float64 forward = the equations written out naively, to 1e-12 (max-abs relative to max |output|)."""
    spec = _spec(cell, variant, head, loss, layers)
    w = init_weights(spec, 3)
    x, _ = _batch(spec, 4)
    got = be.forward(be.build(spec, w, dtype="float64"), x)
    want = _reference_forward(spec, w, x)
    assert got.shape == want.shape == ((B, O) if head == "last" else (B, T, O))
    assert np.max(np.abs(got - want)) <= 1e-12 * np.max(np.abs(want))


# ------------------------------------------------------------------------------------------- finite differences
@pytest.mark.parametrize("cell,variant", CELLS)
@pytest.mark.parametrize("head,loss", HEAD_LOSS)
@pytest.mark.parametrize("layers", [1, 2])
def test_bptt_matches_central_finite_differences(cell, variant, head, loss, layers):
    """Hand-written BPTT = central differences in float64: whole-vector and per-tensor relative error <= 1e-6
    (||g − g_fd|| / ||g_fd||). eps = 1e-5 ≈ the optimum (machine eps)^(1/3) for central differences: truncation
    ~eps², rounding ~1e-16/eps; at eps = 1e-6 rounding alone reaches ~1e-6 on the smallest tensors (layer 0's
    W_hh of a 2-layer model, gradients ~1e-5)."""
    spec = _spec(cell, variant, head, loss, layers)
    w = init_weights(spec, 1)
    x, y = _batch(spec, 0)
    grads = be.gradients(be.build(spec, w, dtype="float64"), x, y)
    assert set(grads) == set(param_shapes(spec))
    eps = 1e-5
    fd = {}
    for name, v in w.items():
        g = np.zeros_like(v)
        for idx in np.ndindex(v.shape):
            wp = {k: a.copy() for k, a in w.items()}
            wm = {k: a.copy() for k, a in w.items()}
            wp[name][idx] += eps
            wm[name][idx] -= eps
            g[idx] = (_loss(spec, wp, x, y) - _loss(spec, wm, x, y)) / (2 * eps)
        fd[name] = g
    keys = list(w)
    assert _rel(_flat(grads, keys), _flat(fd, keys)) <= 1e-6
    for name in keys:
        assert grads[name].shape == w[name].shape and grads[name].dtype == np.float64
        assert _rel(grads[name], fd[name]) <= 1e-6, name


@pytest.mark.parametrize("cell,variant", CELLS)
@pytest.mark.parametrize("head,loss", [("last", "mse"), ("every", "xent")])
def test_edge_shapes_one_step_one_sample(cell, variant, head, loss):
    """B = 1 and/or T = 1 (no recurrence to backpropagate through), 2 layers: forward = naive reference to 1e-12;
    at B = T = 1 the whole gradient = central differences to 1e-6 (relative, eps 1e-5)."""
    spec = _spec(cell, variant, head, loss, layers=2)
    w = init_weights(spec, 21)
    for b, t in [(1, 1), (2, 1), (1, 3)]:
        x, _ = _batch(spec, 22, b=b, t=t)
        want = _reference_forward(spec, w, x)
        assert np.max(np.abs(be.forward(be.build(spec, w, dtype="float64"), x) - want)) <= 1e-12 * np.max(np.abs(want))
    x, y = _batch(spec, 23, b=1, t=1)
    grads = be.gradients(be.build(spec, w, dtype="float64"), x, y)
    keys, eps = list(w), 1e-5
    fd = {k: np.zeros_like(v) for k, v in w.items()}
    for name in keys:
        for idx in np.ndindex(w[name].shape):
            wp = {k: a.copy() for k, a in w.items()}
            wm = {k: a.copy() for k, a in w.items()}
            wp[name][idx] += eps
            wm[name][idx] -= eps
            fd[name][idx] = (_loss(spec, wp, x, y) - _loss(spec, wm, x, y)) / (2 * eps)
    assert _rel(_flat(grads, keys), _flat(fd, keys)) <= 1e-6
    # T = 1: W_hh never meets a nonzero state, so its gradient is exactly zero in both
    assert not np.any(grads["weight_hh_l0"]) and not np.any(grads["weight_hh_l1"])


# ---------------------------------------------------------------------------------------------------- optimizers
def test_gradients_leave_the_model_unchanged():
    """gradients() changes neither the weights nor the optimizer: a train step afterwards equals one on a fresh
    model (bit for bit)."""
    spec = _spec("lstm", "standard", layers=2)
    w = init_weights(spec, 2)
    x, y = _batch(spec, 5)
    a, b = be.build(spec, w, dtype="float64"), be.build(spec, w, dtype="float64")
    be.gradients(a, x, y)
    be.gradients(a, *_batch(spec, 6))
    for k, v in be.weights(a).items():
        assert np.array_equal(v, w[k]), k
    assert be.train_step(a, x, y) == be.train_step(b, x, y)
    for k, v in be.weights(a).items():
        assert np.array_equal(v, be.weights(b)[k]), k


@pytest.mark.parametrize("cell,variant", CELLS)
def test_sgd_step_is_p_minus_lr_g_and_returns_the_loss_before(cell, variant):
    """SGD without clipping: p' = p − lr·g to 1e-15 relative; train_step returns the loss before the update."""
    spec = _spec(cell, variant, layers=2)
    w = init_weights(spec, 3)
    x, y = _batch(spec, 7)
    model = be.build(spec, w, dtype="float64", train=TrainConfig(optimizer="sgd", lr=0.1, clip=None))
    g = be.gradients(model, x, y)
    loss_before = loss_and_grad(spec.loss, be.forward(model, x), y)[0]
    assert be.train_step(model, x, y) == loss_before
    after = be.weights(model)
    for k in w:
        want = w[k] - 0.1 * g[k]
        assert np.max(np.abs(after[k] - want)) <= 1e-15 * max(1.0, np.max(np.abs(want))), k


def test_adam_first_two_steps_follow_the_formula():
    """Adam (PyTorch's formula, as in spec.py), computed here by hand for two steps: 1e-12 relative."""
    spec = _spec("gru", "reset_before", head="every", loss="xent", layers=2)
    w = init_weights(spec, 4)
    batches = [_batch(spec, 8), _batch(spec, 9)]
    lr, (b1, b2), eps = 0.01, (0.8, 0.9), 1e-8
    cfg = TrainConfig(optimizer="adam", lr=lr, betas=(b1, b2), eps=eps, clip=None)
    model = be.build(spec, w, dtype="float64", train=cfg)
    p = {k: v.copy() for k, v in w.items()}
    m = {k: np.zeros_like(v) for k, v in w.items()}
    v2 = {k: np.zeros_like(v) for k, v in w.items()}
    for t, (x, y) in enumerate(batches, start=1):
        g = be.gradients(be.build(spec, p, dtype="float64"), x, y)
        for k in p:
            m[k] = b1 * m[k] + (1 - b1) * g[k]
            v2[k] = b2 * v2[k] + (1 - b2) * g[k] ** 2
            p[k] = p[k] - (lr / (1 - b1 ** t)) * m[k] / (np.sqrt(v2[k]) / np.sqrt(1 - b2 ** t) + eps)
        be.train_step(model, x, y)
    got = be.weights(model)
    keys = list(w)
    assert _rel(_flat(got, keys) - _flat(w, keys), _flat(p, keys) - _flat(w, keys)) <= 1e-12
    for k in keys:
        assert np.max(np.abs(got[k] - p[k])) <= 1e-12 * np.max(np.abs(p[k])), k


@pytest.mark.parametrize("clip", [1e-3, 0.05])
def test_clipping_scales_the_global_norm_to_c(clip):
    """With SGD (lr 1) the update is the clipped gradient: its global norm is c·N/(N + 1e-6) (N = the unclipped
    norm, here > c), to 1e-12 relative, and its direction is the gradient's."""
    spec = _spec("lstm", "standard", head="every", loss="mse", layers=2)
    w = init_weights(spec, 5)
    x, y = _batch(spec, 10)
    model = be.build(spec, w, dtype="float64", train=TrainConfig(optimizer="sgd", lr=1.0, clip=clip))
    g = be.gradients(model, x, y)
    keys = list(w)
    gflat = _flat(g, keys)
    N = np.linalg.norm(gflat)
    assert N > clip
    be.train_step(model, x, y)
    step = _flat(w, keys) - _flat(be.weights(model), keys)
    assert abs(np.linalg.norm(step) - clip * N / (N + 1e-6)) <= 1e-12 * clip
    assert _rel(step, gflat * (clip / (N + 1e-6))) <= 1e-12


def test_clipping_leaves_small_gradients_alone():
    """N < c: the update is exactly −lr·g (the coefficient is capped at 1)."""
    spec = _spec("gru", "reset_after")
    w = init_weights(spec, 6)
    x, y = _batch(spec, 11)
    model = be.build(spec, w, dtype="float64", train=TrainConfig(optimizer="sgd", lr=0.5, clip=1e6))
    g = be.gradients(model, x, y)
    be.train_step(model, x, y)
    for k, v in be.weights(model).items():
        assert np.max(np.abs(v - (w[k] - 0.5 * g[k]))) <= 1e-15 * max(1.0, np.max(np.abs(w[k]))), k


# ---------------------------------------------------------------------------------------- dtypes, seeds, buffers
@pytest.mark.parametrize("cell,variant", CELLS)
@pytest.mark.parametrize("head,loss", [("last", "mse"), ("every", "xent")])
def test_float32_forward_agrees_with_float64(cell, variant, head, loss):
    """Same weights and inputs: float32 output within 1e-5 of float64 (max-abs relative to max |output|), and its
    dtype is float32; float32 gradients within 1e-4 (whole-vector relative)."""
    spec = _spec(cell, variant, head, loss, layers=2, h=32, i=3)
    w = init_weights(spec, 7)
    x, y = _batch(spec, 12, b=8, t=30)
    m64, m32 = be.build(spec, w, dtype="float64"), be.build(spec, cast_weights(w, "float32"), dtype="float32")
    y64, y32 = be.forward(m64, x), be.forward(m32, x.astype(np.float32))
    assert y32.dtype == np.float32
    assert np.max(np.abs(y32 - y64)) <= 1e-5 * np.max(np.abs(y64))
    y_32 = y.astype(np.float32) if loss == "mse" else y
    g64, g32 = be.gradients(m64, x, y), be.gradients(m32, x.astype(np.float32), y_32)
    keys = list(w)
    assert all(g32[k].dtype == np.float32 for k in keys)
    assert _rel(_flat(g32, keys).astype(np.float64), _flat(g64, keys)) <= 1e-4


def test_same_seed_gives_identical_numbers():
    """Two models from the same seed, trained on the same seeded batches: bit-identical losses and weights."""
    spec = _spec("gru", "reset_after", head="every", loss="xent", layers=2, h=16)

    def run():
        model = be.build(spec, init_weights(spec, 11, dtype="float32"), dtype="float32")
        rng = np.random.default_rng(12)
        losses = []
        for _ in range(4):
            x = rng.standard_normal((4, 9, I)).astype(np.float32)
            y = rng.integers(0, O, (4, 9))
            losses.append(be.train_step(model, x, y))
        return losses, be.weights(model)

    (l1, w1), (l2, w2) = run(), run()
    assert l1 == l2
    assert all(np.array_equal(w1[k], w2[k]) for k in w1)


def test_buffers_reused_across_shapes_give_fresh_results():
    """One model fed (B, T) shapes in turn (buffers kept for two shapes: reused, evicted, reallocated) = a fresh model
    per shape, bit for bit; forward returns a copy that later calls do not overwrite."""
    spec = _spec("lstm", "standard", head="every", loss="mse", layers=2)
    w = init_weights(spec, 13)
    model = be.build(spec, w, dtype="float64")
    shapes = [(3, 5), (2, 7), (3, 5), (4, 2), (2, 7), (3, 5), (3, 5)]
    outs = []
    for b, t in shapes:
        x, y = _batch(spec, b * 100 + t, b=b, t=t)
        outs.append(be.forward(model, x))
        fresh = be.build(spec, w, dtype="float64")
        assert np.array_equal(outs[-1], be.forward(fresh, x))
        g, g_fresh = be.gradients(model, x, y), be.gradients(fresh, x, y)
        assert all(np.array_equal(g[k], g_fresh[k]) for k in g)
    x, _ = _batch(spec, 305, b=3, t=5)
    assert np.array_equal(outs[0], be.forward(be.build(spec, w, dtype="float64"), x))


def test_weights_round_trip_exactly():
    """weights(build(w)) == w bit for bit, in the model's dtype (LSTM gate blocks are reordered inside)."""
    for cell, variant in CELLS:
        spec = _spec(cell, variant, layers=2)
        for dtype in ("float32", "float64"):
            w = init_weights(spec, 14, scheme="keras", dtype=dtype)
            out = be.weights(be.build(spec, w, dtype=dtype))
            assert list(out) == list(param_shapes(spec))
            for k in w:
                assert out[k].dtype == np.dtype(dtype) and np.array_equal(out[k], w[k]), (cell, k)


def test_saturated_gates_stay_finite_without_warnings():
    """Huge pre-activations (σ's exp overflows in float32) give finite outputs and gradients and no warning."""
    spec = _spec("lstm", "standard", head="every", loss="xent")
    w = init_weights(spec, 15, dtype="float32")
    x = np.full((2, 4, I), 1e4, np.float32)
    x[0] *= -1
    model = be.build(spec, w, dtype="float32")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = be.forward(model, x)
        g = be.gradients(model, x, np.zeros((2, 4), np.int64))
    assert np.all(np.isfinite(out)) and all(np.all(np.isfinite(v)) for v in g.values())


def test_training_reduces_the_loss():
    """Adam on one fixed batch: the loss falls below half its start within 40 steps (float32, GRU and LSTM)."""
    for cell, variant in CELLS:
        spec = _spec(cell, variant, h=16)
        model = be.build(spec, init_weights(spec, 16, dtype="float32"), dtype="float32",
                         train=TrainConfig(lr=0.02))
        x, y = _batch(spec, 17, b=16, t=10, dtype=np.float32)
        losses = [be.train_step(model, x, y) for _ in range(40)]
        assert losses[-1] < 0.5 * losses[0], (cell, variant, losses[0], losses[-1])


# -------------------------------------------------------------------------------------------- protocol, threads
def test_protocol_and_registry():
    assert isinstance(be, Backend) and be.name == "numpy"
    assert isinstance(get_backend("numpy"), NumpyBackend)
    assert be.available("cpu") is None
    assert "cpu" in be.available("cuda")
    assert be.memory("cpu").method == "none" and be.memory("cpu").peak() == {}
    spec = _spec()
    model = be.build(spec, init_weights(spec, 0))
    prov = be.provenance(model)
    assert prov["implementation"] == "numpy (hand-written BPTT)" and prov["dtype"] == "float32"
    be.sync("cpu")


def test_set_threads_fixes_blas_threads():
    """set_threads(n) returns the BLAS thread counts in force, all equal to n."""
    from threadpoolctl import threadpool_info

    before = {p["filepath"]: p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"}
    try:
        got = be.set_threads(1)
        assert got and set(got.values()) == {1}
        assert be.set_threads(None) == got
    finally:
        from threadpoolctl import ThreadpoolController

        for lib in ThreadpoolController().select(user_api="blas").lib_controllers:
            lib.set_num_threads(before.get(lib.filepath, lib.num_threads))


# ---------------------------------------------------------------------------------------------------- bad input
def _model(cell="gru", head="last", loss="mse", dtype="float32"):
    spec = _spec(cell, head=head, loss=loss)
    return spec, be.build(spec, init_weights(spec, 0, dtype=dtype), dtype=dtype)


@pytest.mark.parametrize("kwargs,names", [
    (dict(dtype="float16"), "dtype='float16'"),
    (dict(device="cuda"), "device='cuda'"),
    (dict(options={"autocast": "bfloat16"}), "options="),
    (dict(train="adam"), "train is a str"),
])
def test_build_rejects_bad_arguments(kwargs, names):
    spec = _spec()
    with pytest.raises(ValueError, match=names):
        be.build(spec, init_weights(spec, 0), **kwargs)


def test_build_rejects_bad_weights_and_spec():
    spec = _spec()
    w = init_weights(spec, 0)
    del w["head.bias"]
    with pytest.raises(ValueError, match=r"weights: missing \['head.bias'\]"):
        be.build(spec, w)
    w = init_weights(spec, 0)
    w["weight_hh_l0"] = w["weight_hh_l0"][:, :2]
    with pytest.raises(ValueError, match=r"weights\['weight_hh_l0'\] has shape \(12, 2\)"):
        be.build(spec, w)
    with pytest.raises(ValueError, match="spec is a dict"):
        be.build(spec.to_dict(), init_weights(spec, 0))


@pytest.mark.parametrize("make_x,match", [
    (lambda: np.zeros((3, 5), np.float32), r"x has shape \(3, 5\): expected \(B, T, 2\)"),
    (lambda: np.zeros((3, 5, 4), np.float32), r"x has shape \(3, 5, 4\): expected \(B, T, 2\)"),
    (lambda: np.zeros((3, 0, 2), np.float32), r"x has shape \(3, 0, 2\)"),
    (lambda: np.zeros((3, 5, 2), np.float64), "x has dtype float64: expected float32"),
    (lambda: np.zeros((3, 5, 2), np.int64), "x has dtype int64: expected float32"),
    (lambda: [[[0.0, 0.0]]], "x is a list"),
])
def test_bad_x_is_rejected_naming_x(make_x, match):
    spec, model = _model()
    y = np.zeros((3, O), np.float32)
    for call in (lambda: be.forward(model, make_x()), lambda: be.train_step(model, make_x(), y),
                 lambda: be.gradients(model, make_x(), y)):
        with pytest.raises(ValueError, match=match):
            call()


@pytest.mark.parametrize("head,loss,y,match", [
    ("last", "mse", np.zeros((3, 5, O), np.float32), r"y has shape \(3, 5, 3\): expected \(3, 3\)"),
    ("every", "mse", np.zeros((3, O), np.float32), r"y has shape \(3, 3\): expected \(3, 5, 3\)"),
    ("last", "mse", np.zeros((3, O), np.int64), "y has dtype int64: expected floating"),
    ("last", "xent", np.zeros(3, np.float32), "y has dtype float32: expected integer"),
    ("every", "xent", np.zeros(3, np.int64), r"y has shape \(3,\): expected \(3, 5\)"),
    ("last", "xent", np.array([0, 1, 3]), r"y has class indices in \[0, 3\]: expected 0 <= y < 3"),
    ("last", "xent", np.array([0, -1, 2]), r"y has class indices in \[-1, 2\]"),
])
def test_bad_y_is_rejected_naming_y(head, loss, y, match):
    spec, model = _model(head=head, loss=loss)
    x = np.zeros((3, 5, I), np.float32)
    with pytest.raises(ValueError, match=match):
        be.train_step(model, x, y)
    with pytest.raises(ValueError, match=match):
        be.gradients(model, x, y)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="threads=0: expected a positive integer"):
        be.set_threads(0)
    with pytest.raises(ValueError, match="model is a str: expected a model built by NumpyBackend.build"):
        be.forward("model", np.zeros((1, 1, I), np.float32))
