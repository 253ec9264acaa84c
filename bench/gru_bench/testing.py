"""The backend conformance checks (docs/architecture.md §3), written once for every backend.

Each check takes a backend name, a device and a ``ConformanceCase`` (a small model and the task that feeds it),
runs the backend through the contract of ``backends/base.py`` only, and raises ``AssertionError`` with a message
that says what differed and by how much. Checks that compare numbers return the largest deviation they saw, so a
caller can report it. A new backend is done when it passes every check on every case of ``conformance_cases()``::

    from gru_bench.testing import check_backend
    check_backend("mybackend", "cpu")          # raises AssertionError on the first failure

The reference is the NumPy backend in float64. The backend under test gets the weights and batches in its own
dtype; the reference gets those same numbers widened to float64, so only the arithmetic differs.

Deviation = ``max|a − b| / max|b|`` over one tensor (``b`` the reference), the largest over all tensors compared.
Tolerances (``TOLERANCES``), float64 / float32:

* forward output, gradients, the update of one SGD step, the loss curve of ``steps`` Adam steps:
  1e-8 / forward 1e-4, gradients 1e-3, SGD update 1e-3, Adam curve 1e-3;
* central finite differences (float64 only, step 1e-5): 1e-6.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from .backends import get_backend, unavailable_reason
from .backends.base import TrainConfig
from .losses import loss_and_grad
from .spec import ModelSpec, Weights, cast_weights, check_weights, init_weights, param_count
from .tasks import get_task

REFERENCE = "numpy"  # the reference backend, always run in float64 on the CPU
TOLERANCES: dict[str, dict[str, float]] = {
    "float64": dict(forward=1e-8, gradients=1e-8, sgd=1e-8, adam_curve=1e-8, finite_difference=1e-6),
    "float32": dict(forward=1e-4, gradients=1e-3, sgd=1e-3, adam_curve=1e-3),
}


@dataclass(frozen=True)
class ConformanceCase:
    """A small model and the task whose batches feed it (the task decides input/output sizes, head and loss)."""

    cell: str
    variant: str
    head: str  # "last": the adding problem (MSE, many-to-one); "every": copy memory (cross-entropy, many-to-many)
    num_layers: int
    hidden_size: int = 5
    batch_size: int = 3

    @property
    def task(self) -> str:
        return "adding" if self.head == "last" else "copy"

    @property
    def seq_len(self) -> int:
        return 7 if self.head == "last" else 2  # copy: 2 + 20 = 22 steps

    @property
    def spec(self) -> ModelSpec:
        io = get_task(self.task).model_io(self.seq_len)
        return ModelSpec(self.cell, io["input_size"], self.hidden_size, io["output_size"], self.num_layers,
                         variant=self.variant, head=io["head"], loss=io["loss"])

    @property
    def id(self) -> str:
        return f"{self.cell}-{self.variant}-{self.head}-L{self.num_layers}"

    def batch(self, rng: np.random.Generator, dtype: str) -> tuple[np.ndarray, np.ndarray]:
        return get_task(self.task).batch(rng, self.batch_size, self.seq_len, dtype)


def conformance_cases() -> list[ConformanceCase]:
    """Every cell × variant, head last (adding) and every (copy), num_layers 1 and 2: 12 small models."""
    cells = [("gru", "reset_after"), ("gru", "reset_before"), ("lstm", "standard")]
    return [ConformanceCase(c, v, head, layers) for c, v in cells for head in ("last", "every") for layers in (1, 2)]


# ---------------------------------------------------------------------------------------------------- helpers
def skip_reason(backend_name: str, device: str) -> str | None:
    """None when the backend can run on ``device`` here, else why not (for a visible skip)."""
    return unavailable_reason(backend_name, device)


def deviation(a: np.ndarray, b: np.ndarray) -> float:
    """``max|a − b| / max|b|`` (``b`` the reference); 0 for two zero arrays, inf for a nonzero ``a`` against zeros."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise AssertionError(f"shape {a.shape} differs from the reference's {b.shape}")
    diff, scale = float(np.max(np.abs(a - b), initial=0.0)), float(np.max(np.abs(b), initial=0.0))
    if not math.isfinite(diff):
        return math.inf
    return diff / scale if scale > 0 else (0.0 if diff == 0 else math.inf)


def _dict_deviation(got: Mapping[str, np.ndarray], want: Mapping[str, np.ndarray]) -> tuple[float, str]:
    """The largest ``deviation`` over the tensors of ``want`` and the name of the worst one."""
    if set(got) != set(want):
        raise AssertionError(f"keys {sorted(got)} differ from the reference's {sorted(want)}")
    worst = max(want, key=lambda k: deviation(got[k], want[k]))
    return deviation(got[worst], want[worst]), worst


def _tol(dtype: str, what: str) -> float:
    if dtype not in TOLERANCES or what not in TOLERANCES[dtype]:
        raise ValueError(f"dtype={dtype!r}: no {what} tolerance; expected one of {', '.join(TOLERANCES)}")
    return TOLERANCES[dtype][what]


def _build(backend_name: str, device: str, spec: ModelSpec, weights: Weights, dtype: str,
           train: TrainConfig = TrainConfig()) -> tuple[Any, Any]:
    backend = get_backend(backend_name)
    return backend, backend.build(spec, cast_weights(weights, dtype), device=device, dtype=dtype, train=train)


def _reference(spec: ModelSpec, weights: Weights, train: TrainConfig = TrainConfig()) -> tuple[Any, Any]:
    return _build(REFERENCE, "cpu", spec, cast_weights(weights, "float64"), "float64", train)


def _where(backend_name: str, device: str, case: ConformanceCase, dtype: str) -> str:
    return f"{backend_name}/{device} {case.id} {dtype}"


def _losses(backend: Any, model: Any, batches: list[tuple[np.ndarray, np.ndarray]]) -> list[float]:
    """Train one step per batch (moved with ``prepare`` first, as the runner does); the losses."""
    out = []
    for x, y in batches:
        xp, yp = backend.prepare(model, x, y)
        out.append(float(backend.train_step(model, xp, yp)))
    return out


def _wide(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A batch as the float64 reference takes it: floats widened, class indices kept."""
    return x.astype(np.float64), (y.astype(np.float64) if y.dtype.kind == "f" else y)


def _loss(backend: Any, model: Any, spec: ModelSpec, x: np.ndarray, y: np.ndarray) -> float:
    """The loss of ``spec.py`` computed from the backend's forward output, in float64."""
    return loss_and_grad(spec.loss, np.asarray(backend.forward(model, x), dtype=np.float64), y)[0]


# ------------------------------------------------------------------------------------------------------ checks
def check_provenance(backend_name: str, device: str, case: ConformanceCase, dtype: str = "float64") -> dict:
    """``provenance(model)`` names the implementation that ran; returns the provenance."""
    backend, model = _build(backend_name, device, case.spec, init_weights(case.spec, 0), dtype)
    prov = backend.provenance(model)
    assert isinstance(prov, dict) and isinstance(prov.get("implementation"), str) and prov["implementation"], (
        f"{_where(backend_name, device, case, dtype)}: provenance must hold a non-empty 'implementation', got {prov!r}")
    return prov


def check_weight_roundtrip(backend_name: str, device: str, case: ConformanceCase, dtype: str = "float64",
                           seed: int = 0) -> float:
    """Weights in, weights out: canonical names, shapes and dtype; weight matrices and head bit for bit; each layer's
    ``bias_ih + bias_hh`` unchanged (a backend may fold the two into one, which never changes the function); a model
    rebuilt from the returned weights computes the same function and returns the same weights again.
    Returns the deviation of the rebuilt model's forward output."""
    spec, where = case.spec, _where(backend_name, device, case, dtype)
    w = cast_weights(init_weights(spec, seed), dtype)
    backend, model = _build(backend_name, device, spec, w, dtype)
    out = backend.weights(model)
    try:
        check_weights(spec, out, f"{where}: weights(model)")
    except ValueError as e:
        raise AssertionError(str(e)) from None
    for k, v in out.items():
        assert v.dtype == np.dtype(dtype), f"{where}: weights(model)[{k!r}] has dtype {v.dtype}, built as {dtype}"
        if not k.startswith("bias_"):
            assert np.array_equal(v, w[k]), f"{where}: weights(model)[{k!r}] differs from the weights it was built from"
    for layer in range(spec.num_layers):
        b_in = w[f"bias_ih_l{layer}"] + w[f"bias_hh_l{layer}"]
        b_out = out[f"bias_ih_l{layer}"] + out[f"bias_hh_l{layer}"]
        dev = deviation(b_out, b_in)
        assert dev <= 4 * np.finfo(dtype).eps, f"{where}: bias_ih + bias_hh of layer {layer} changed by {dev:.2e}"
    x, _ = case.batch(np.random.default_rng(seed), dtype)
    backend2, model2 = _build(backend_name, device, spec, out, dtype)
    dev = deviation(backend2.forward(model2, x), backend.forward(model, x))
    assert dev <= _tol(dtype, "forward"), f"{where}: rebuilding from weights(model) changed the output by {dev:.2e}"
    again = backend2.weights(model2)
    for k in out:
        assert np.array_equal(again[k], out[k]), f"{where}: a second round trip changed {k!r}"
    return dev


def check_param_count(backend_name: str, device: str, case: ConformanceCase, dtype: str = "float64") -> int:
    """The backend's canonical weights hold exactly ``spec.param_count`` numbers. When ``provenance`` reports the
    framework's own count (``"param_count"``), it must equal ``spec.param_count`` less the biases the backend folds
    into one (``"folded_bias_params"``, default 0; e.g. Keras' LSTM keeps one bias per gate row). Returns the count."""
    spec, where = case.spec, _where(backend_name, device, case, dtype)
    backend, model = _build(backend_name, device, spec, init_weights(spec, 0), dtype)
    want = param_count(spec)
    got = sum(int(v.size) for v in backend.weights(model).values())
    assert got == want, f"{where}: the backend's weights hold {got} numbers; spec.param_count says {want}"
    prov = backend.provenance(model)
    if "param_count" in prov:
        own, folded = int(prov["param_count"]), int(prov.get("folded_bias_params", 0))
        assert own + folded == want, (f"{where}: the framework counts {own} parameters (+{folded} folded biases); "
                                      f"spec.param_count says {want}")
    return got


def check_forward_matches_reference(backend_name: str, device: str, case: ConformanceCase, dtype: str = "float64",
                                    seed: int = 0) -> float:
    """``forward`` equals the float64 NumPy reference on a task batch; the output has the model's dtype and the
    head's shape. Returns the deviation."""
    spec, where = case.spec, _where(backend_name, device, case, dtype)
    w = cast_weights(init_weights(spec, seed), dtype)
    x, _ = case.batch(np.random.default_rng(seed + 1), dtype)
    backend, model = _build(backend_name, device, spec, w, dtype)
    ref, ref_model = _reference(spec, w)
    got = np.asarray(backend.forward(model, x))
    want = ref.forward(ref_model, x.astype(np.float64))
    assert got.dtype == np.dtype(dtype), f"{where}: forward returned {got.dtype}"
    dev = deviation(got, want)
    assert dev <= _tol(dtype, "forward"), f"{where}: forward deviates from the reference by {dev:.2e}"
    return dev


def check_gradients_match_reference(backend_name: str, device: str, case: ConformanceCase, dtype: str = "float64",
                                    seed: int = 0) -> float:
    """``gradients`` equal the float64 NumPy reference's, tensor by tensor, and leave the model unchanged.
    Returns the largest deviation over the tensors."""
    spec, where = case.spec, _where(backend_name, device, case, dtype)
    w = cast_weights(init_weights(spec, seed), dtype)
    x, y = case.batch(np.random.default_rng(seed + 2), dtype)
    backend, model = _build(backend_name, device, spec, w, dtype)
    ref, ref_model = _reference(spec, w)
    before = backend.weights(model)
    got = backend.gradients(model, x, y)
    want = ref.gradients(ref_model, *_wide(x, y))
    for k, v in got.items():
        assert np.asarray(v).dtype == np.dtype(dtype), f"{where}: gradients[{k!r}] has dtype {np.asarray(v).dtype}"
    dev, worst = _dict_deviation(got, want)
    assert dev <= _tol(dtype, "gradients"), f"{where}: gradient of {worst!r} deviates from the reference by {dev:.2e}"
    after = backend.weights(model)
    changed = [k for k in before if not np.array_equal(before[k], after[k])]
    assert not changed, f"{where}: gradients() changed the model's weights {changed}"
    return dev


def check_gradients_finite_difference(backend_name: str, device: str, case: ConformanceCase, seed: int = 0,
                                      samples: int = 6, step: float = 1e-5) -> float:
    """Float64 gradients against central finite differences of the loss, ``(L(w + s) − L(w − s)) / 2s`` with
    ``s = 1e-5``, on ``samples`` entries of every tensor (the largest-gradient entry and random others).
    Deviation per tensor over the sampled entries; tolerance 1e-6. Returns the largest deviation."""
    spec, where = case.spec, _where(backend_name, device, case, "float64")
    w = init_weights(spec, seed)
    x, y = case.batch(np.random.default_rng(seed + 3), "float64")
    backend, model = _build(backend_name, device, spec, w, "float64")
    grads = backend.gradients(model, x, y)
    rng = np.random.default_rng(seed + 4)
    worst, worst_name = 0.0, ""
    for name, g in grads.items():
        flat = np.asarray(g).ravel()
        top = int(np.argmax(np.abs(flat)))
        others = rng.permutation(np.delete(np.arange(flat.size), top))[: max(samples - 1, 0)]
        idx = [top, *others.tolist()]
        numeric = np.empty(len(idx))
        for j, i in enumerate(idx):
            side = []
            for sign in (+1.0, -1.0):
                wp = {k: v.copy() for k, v in w.items()}
                wp[name].flat[i] += sign * step
                b, m = _build(backend_name, device, spec, wp, "float64")
                side.append(_loss(b, m, spec, x, y))
            numeric[j] = (side[0] - side[1]) / (2 * step)
        dev = deviation(flat[idx], numeric)
        if dev > worst:
            worst, worst_name = dev, name
    tol = _tol("float64", "finite_difference")
    assert worst <= tol, f"{where}: gradient of {worst_name!r} deviates from finite differences by {worst:.2e}"
    return worst


def check_sgd_step_matches_reference(backend_name: str, device: str, case: ConformanceCase, dtype: str = "float64",
                                     seed: int = 0, clip: str = "active") -> float:
    """One SGD step (lr 0.1): the returned loss (the loss before the step) and the update of every tensor equal the
    reference's. ``clip``: ``"none"`` (no clipping) or ``"active"`` (max norm = half the gradient's global norm, so the
    clipping changes the step). Returns the largest deviation of loss and updates."""
    spec, where = case.spec, f"{_where(backend_name, device, case, dtype)} clip={clip}"
    w = cast_weights(init_weights(spec, seed), dtype)
    x, y = case.batch(np.random.default_rng(seed + 5), dtype)
    ref, probe = _reference(spec, w)
    if clip == "none":
        max_norm = None
    elif clip == "active":
        g = ref.gradients(probe, *_wide(x, y))
        max_norm = 0.5 * math.sqrt(sum(float(np.sum(v * v)) for v in g.values()))
    else:
        raise ValueError(f"clip={clip!r}: expected 'none' or 'active'")
    train = TrainConfig(optimizer="sgd", lr=0.1, clip=max_norm)
    backend, model = _build(backend_name, device, spec, w, dtype, train)
    ref, ref_model = _reference(spec, w, train)
    loss = _losses(backend, model, [(x, y)])[0]
    ref_loss = _losses(ref, ref_model, [_wide(x, y)])[0]
    got = {k: v.astype(np.float64) - w[k] for k, v in backend.weights(model).items()}
    want = {k: v - w[k] for k, v in ref.weights(ref_model).items()}
    dev, worst = _dict_deviation(got, want)
    dev_loss = abs(loss - ref_loss) / abs(ref_loss)
    tol = _tol(dtype, "sgd")
    assert dev_loss <= tol, f"{where}: loss {loss!r} deviates from the reference's {ref_loss!r} by {dev_loss:.2e}"
    assert dev <= tol, f"{where}: the SGD update of {worst!r} deviates from the reference by {dev:.2e}"
    return max(dev, dev_loss)


def _curve(backend_name: str, device: str, case: ConformanceCase, dtype: str, seed: int, steps: int,
           train: TrainConfig) -> tuple[list[float], Weights]:
    w = cast_weights(init_weights(case.spec, seed), dtype)
    rng = np.random.default_rng(seed)
    batches = [case.batch(rng, dtype) for _ in range(steps)]
    backend, model = _build(backend_name, device, case.spec, w, dtype, train)
    losses = _losses(backend, model, batches)
    return losses, backend.weights(model)


def check_adam_curve_matches_reference(backend_name: str, device: str, case: ConformanceCase, dtype: str = "float64",
                                       steps: int = 100, seed: int = 0, lr: float = 1e-2) -> float:
    """``steps`` Adam steps (lr 1e-2, clipping at norm 1) on fresh seeded task batches: the loss curve equals the
    float64 reference's point by point. Returns the largest relative deviation of a loss."""
    where = _where(backend_name, device, case, dtype)
    train = TrainConfig(optimizer="adam", lr=lr, clip=1.0)
    got, _ = _curve(backend_name, device, case, dtype, seed, steps, train)
    want = _reference_curve(case, dtype, seed, steps, train)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(np.asarray(got) - np.asarray(want)) / np.abs(np.asarray(want))
    bad = ~np.isfinite(rel)
    at = int(np.argmax(bad)) if bad.any() else int(np.argmax(rel))
    dev = math.inf if bad.any() else float(rel[at])
    assert dev <= _tol(dtype, "adam_curve"), (
        f"{where}: Adam loss curve deviates from the reference by {dev:.2e} at step {at} ({got[at]!r} vs {want[at]!r})")
    return dev


@functools.lru_cache(maxsize=64)
def _reference_curve(case: ConformanceCase, dtype: str, seed: int, steps: int, train: TrainConfig) -> tuple[float, ...]:
    """The float64 reference's losses, fed the ``dtype`` model's starting weights and batches widened to float64.
    Deterministic, so computed once per process for every backend checked against it."""
    w = cast_weights(init_weights(case.spec, seed), dtype)
    rng = np.random.default_rng(seed)
    batches = [_wide(*case.batch(rng, dtype)) for _ in range(steps)]
    ref, model = _reference(case.spec, w, train)
    return tuple(_losses(ref, model, batches))


def check_same_seed_same_numbers(backend_name: str, device: str, case: ConformanceCase, dtype: str = "float32",
                                 steps: int = 5, seed: int = 0, rtol: float = 0.0) -> None:
    """Two runs from the same seed (weights from ``spec.init_weights``, batches from ``tasks``) give the same losses
    and the same final weights, bit for bit by default (``rtol`` for devices whose kernels are not deterministic);
    another seed gives other losses."""
    where = _where(backend_name, device, case, dtype)
    train = TrainConfig(optimizer="adam", lr=1e-2)
    a, wa = _curve(backend_name, device, case, dtype, seed, steps, train)
    b, wb = _curve(backend_name, device, case, dtype, seed, steps, train)
    c, _ = _curve(backend_name, device, case, dtype, seed + 1, steps, train)
    if rtol == 0.0:
        assert a == b, f"{where}: the same seed gave different losses {a} and {b}"
        diff = [k for k in wa if not np.array_equal(wa[k], wb[k])]
    else:
        assert np.allclose(a, b, rtol=rtol, atol=0), f"{where}: the same seed gave losses {a} and {b} (rtol {rtol})"
        diff = [k for k in wa if not np.allclose(wa[k], wb[k], rtol=rtol, atol=0)]
    assert not diff, f"{where}: the same seed gave different final weights {diff}"
    assert a != c, f"{where}: seeds {seed} and {seed + 1} gave the same losses {a}"


def check_loss_falls(backend_name: str, device: str, case: ConformanceCase, dtype: str = "float32",
                     steps: int = 40, seed: int = 0) -> tuple[float, float]:
    """Adam (lr 0.03) on four fixed task batches, cycled for ``steps`` steps: the mean loss of the last four steps
    is below half that of the first four. Returns both means."""
    where = _where(backend_name, device, case, dtype)
    rng = np.random.default_rng(seed)
    fixed = [case.batch(rng, dtype) for _ in range(4)]
    w = cast_weights(init_weights(case.spec, seed), dtype)
    backend, model = _build(backend_name, device, case.spec, w, dtype, TrainConfig(optimizer="adam", lr=0.03))
    losses = _losses(backend, model, [fixed[i % 4] for i in range(steps)])
    first, last = float(np.mean(losses[:4])), float(np.mean(losses[-4:]))
    assert math.isfinite(last) and last < 0.5 * first, (
        f"{where}: loss did not fall by half in {steps} steps: {first:.4g} -> {last:.4g}")
    return first, last


# ---------------------------------------------------------------------------------------------- all at once
CHECKS: dict[str, Callable[..., Any]] = {
    "provenance": check_provenance,
    "weight_roundtrip": check_weight_roundtrip,
    "param_count": check_param_count,
    "forward": check_forward_matches_reference,
    "gradients": check_gradients_match_reference,
    "sgd_step": check_sgd_step_matches_reference,
    "adam_curve": check_adam_curve_matches_reference,
    "same_seed": check_same_seed_same_numbers,
    "loss_falls": check_loss_falls,
}
FLOAT64_ONLY = {"finite_difference": check_gradients_finite_difference}


def check_backend(backend_name: str, device: str = "cpu", dtypes: tuple[str, ...] = ("float64", "float32"),
                  cases: list[ConformanceCase] | None = None) -> dict[str, Any]:
    """Every check on every case and dtype; raises ``AssertionError`` on the first failure, else returns the measured
    deviations by ``"check case dtype"``. Raises ``RuntimeError`` if the backend cannot run on ``device`` here."""
    reason = skip_reason(backend_name, device)
    if reason is not None:
        raise RuntimeError(f"{backend_name}/{device} cannot run here: {reason}")
    out: dict[str, Any] = {}
    for case in cases if cases is not None else conformance_cases():
        for dtype in dtypes:
            for name, fn in CHECKS.items():
                out[f"{name} {case.id} {dtype}"] = fn(backend_name, device, case, dtype)
            if dtype == "float64":
                for name, fn in FLOAT64_ONLY.items():
                    out[f"{name} {case.id} {dtype}"] = fn(backend_name, device, case)
    return out
