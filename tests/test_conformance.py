"""Backend conformance (docs/architecture.md §3): ``gru_bench.testing``'s checks over backend × device × case × dtype.

Every backend runs every case of ``conformance_cases()`` except where cost forbids (TF: two cases; the 100-step Adam
curves: one case per cell/variant outside the reference; see ``CASES_FOR`` and ``ADAM``). A backend that cannot run
here (framework missing, no GPU) skips with the reason its ``available`` gives. For the NumPy backend in float64 the
checks compare the reference with itself; its float32 entries and the tests below are what check it: torch autograd
in float64 (``torch_reference.py``), central finite differences, and the checks catching deliberately broken
backends.
"""
from __future__ import annotations

import functools
import warnings

import numpy as np
import pytest

from gru_bench import testing as T
from gru_bench.backends import get_backend
from gru_bench.spec import init_weights

try:  # the torch autograd references; only the parity tests need torch
    import torch_reference as TR  # tests/ is on sys.path under pytest
except ImportError as e:  # torch missing: those tests skip, the rest run
    TR, TR_MISSING = None, f"torch is a test dependency (pip install 'gru-bench[torch]'): {e}"

CASES = T.conformance_cases()
CASE_IDS = [c.id for c in CASES]
TARGETS = [("numpy", "cpu"), ("torch", "cpu"), ("tf", "cpu"), ("torch", "cuda"), ("tf", "cuda")]
DTYPES = ["float64", "float32"]


@functools.lru_cache(maxsize=None)
def _reason(backend: str, device: str) -> str | None:
    return T.skip_reason(backend, device)


@pytest.fixture(scope="module")
def one_thread():
    """Run each backend under test on one intra-op thread while this module runs, then restore its setting.

    The conformance models are tiny (B=3, H=5): one thread is the fastest for them, and on a busy 2-core machine
    a framework's thread pool spinning at barriers made each torch step ~10x slower (0.05 s instead of 5 ms)."""
    saved: dict[str, dict] = {}

    def limit(name: str) -> None:
        if name not in saved:
            backend = get_backend(name)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # TF: runtime already started, setting unchanged
                saved[name] = backend.set_threads(None)
                backend.set_threads(1)

    yield limit
    for name, before in saved.items():
        n = max((v for v in before.values() if isinstance(v, int) and v > 0), default=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            get_backend(name).set_threads(n)


# A TF model compiles its XLA program on first use (1-4 s of CPU per build here) and every check builds several, so
# TF runs two cases here (both dtypes, every check): the reset_before GRU and the LSTM, whose biases Keras folds;
# test_tf_backend.py runs the float64 parity checks on all 12 cases. Every other backend runs every case.
CASES_FOR = {"tf": [c for c in CASES if c.id in ("gru-reset_before-last-L2", "lstm-standard-every-L1")]}
PARAMS = [(b, d, c) for b, d in TARGETS for c in CASES_FOR.get(b, CASES)]
# 100 Adam steps on two models per test: the reference backend runs all 12 cases in both dtypes (float32 against
# float64 is the meaningful comparison there); the others run one case per cell/variant (torch) or per cell (TF).
ADAM = {
    "torch": [(c, dt) for c in CASES if c.id in ("gru-reset_after-every-L2", "gru-reset_before-last-L2",
                                                 "lstm-standard-every-L2") for dt in DTYPES],
    "tf": [(c, dt) for c in CASES for dt in DTYPES
           if (c.id, dt) in (("gru-reset_before-last-L2", "float64"), ("lstm-standard-every-L1", "float32"))],
}
ADAM_PARAMS = [(b, d, c, dt) for b, d in TARGETS for c, dt in ADAM.get(b, [(c, dt) for c in CASES for dt in DTYPES])]


def _ready(backend: str, device: str, one_thread) -> None:
    """Skip with the backend's own reason when it cannot run here; else limit it to one thread."""
    reason = _reason(backend, device)
    if reason is not None:
        pytest.skip(f"{backend}/{device}: {reason}")
    one_thread(backend)


@pytest.fixture(params=PARAMS, ids=[f"{b}-{d}-{c.id}" for b, d, c in PARAMS])
def target_case(request, one_thread):
    """(backend, device, case)."""
    backend, device, case = request.param
    _ready(backend, device, one_thread)
    return backend, device, case


@pytest.fixture(params=DTYPES)
def dtype(request):
    return request.param


# ------------------------------------------------------------------------------------------ the generic checks
def test_provenance(target_case):
    T.check_provenance(*target_case)


def test_weight_roundtrip(target_case, dtype):
    T.check_weight_roundtrip(*target_case, dtype)


def test_param_count(target_case):
    case = target_case[2]
    assert T.check_param_count(*target_case) == sum(v.size for v in init_weights(case.spec, 0).values())


def test_forward_matches_reference(target_case, dtype):
    T.check_forward_matches_reference(*target_case, dtype)


def test_gradients_match_reference(target_case, dtype):
    T.check_gradients_match_reference(*target_case, dtype)


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_numpy_gradients_match_finite_differences(case, one_thread):
    """The reference's BPTT against central finite differences, float64, every case, <= 1e-6 relative. Other
    backends' gradients equal the reference's to 1e-8 (``test_gradients_match_reference``), so they inherit this."""
    one_thread("numpy")
    T.check_gradients_finite_difference("numpy", "cpu", case)


@pytest.mark.parametrize("clip", ["none", "active"])
def test_sgd_step_matches_reference(target_case, dtype, clip):
    T.check_sgd_step_matches_reference(*target_case, dtype, clip=clip)


@pytest.mark.parametrize("backend, device, case, dtype", ADAM_PARAMS,
                         ids=[f"{b}-{d}-{c.id}-{dt}" for b, d, c, dt in ADAM_PARAMS])
def test_adam_curve_matches_reference(backend, device, case, dtype, one_thread, record_property):
    _ready(backend, device, one_thread)
    dev = T.check_adam_curve_matches_reference(backend, device, case, dtype, steps=100)
    record_property("adam_curve_deviation", dev)  # float64 asserted <= 1e-8, float32 < 1e-3; the figure is kept


def test_same_seed_same_numbers(target_case):
    device = target_case[1]
    T.check_same_seed_same_numbers(*target_case, "float32", rtol=0.0 if device == "cpu" else 1e-5)


def test_loss_falls(target_case):
    T.check_loss_falls(*target_case, "float32")


# ------------------------------------------------------------------ the NumPy reference against torch autograd
PARITY_TOL = 1e-8  # float64, relative (max|a - b| / max|b| per tensor)


@pytest.fixture
def tr():
    if TR is None:
        pytest.skip(TR_MISSING)
    return TR


def _parity(case, seed=0):
    spec = case.spec
    w = init_weights(spec, seed)
    x, y = case.batch(np.random.default_rng(seed + 10), "float64")
    backend = get_backend("numpy")
    model = backend.build(spec, w, device="cpu", dtype="float64")
    return spec, w, x, y, backend, model


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
@pytest.mark.parametrize("reference", ["torch.nn", "transcribed"])
def test_numpy_equals_torch_autograd_float64(case, reference, tr):
    """Forward, loss and every gradient of the NumPy backend equal torch autograd's to 1e-8 relative: against
    ``torch.nn.GRU``/``nn.LSTM`` for reset_after and LSTM, against the transcription of ``spec.py`` for all."""
    if reference == "torch.nn" and case.variant == "reset_before":
        pytest.skip("torch.nn.GRU has no reset_before form; the transcribed reference covers it")
    spec, w, x, y, backend, model = _parity(case)
    ref = tr.native_model(spec, w) if reference == "torch.nn" else tr.transcribed_model(spec, w)
    assert T.deviation(backend.forward(model, x), tr.forward(ref, x)) <= PARITY_TOL
    ref_loss, ref_grads = tr.loss_and_grads(ref, x, y)
    grads = backend.gradients(model, x, y)
    assert set(grads) == set(ref_grads)
    devs = {k: T.deviation(grads[k], ref_grads[k]) for k in ref_grads}
    assert max(devs.values()) <= PARITY_TOL, devs
    loss = T._loss(backend, model, spec, x, y)
    assert abs(loss - ref_loss) <= PARITY_TOL * abs(ref_loss)


@pytest.mark.parametrize("case", [c for c in CASES if c.variant != "reset_before"], ids=lambda c: c.id)
def test_transcribed_reference_equals_torch_nn(case, tr):
    """The transcription used for reset_before is itself faithful: on the variants torch.nn computes, it equals
    torch.nn.GRU / nn.LSTM to 1e-12 relative (forward and gradients)."""
    spec, w, x, y, *_ = _parity(case)
    a, b = tr.transcribed_model(spec, w), tr.native_model(spec, w)
    assert T.deviation(tr.forward(a, x), tr.forward(b, x)) <= 1e-12
    ga, gb = tr.loss_and_grads(a, x, y)[1], tr.loss_and_grads(b, x, y)[1]
    assert max(T.deviation(ga[k], gb[k]) for k in gb) <= 1e-12


def test_reset_before_and_reset_after_are_different_functions(tr):
    """The parity tests could not pass with the variants confused: on the same weights their outputs differ."""
    case = next(c for c in CASES if c.variant == "reset_before")
    spec, w, x, *_ = _parity(case)
    after = tr.transcribed_model(type(spec)(**{**spec.to_dict(), "variant": "reset_after"}), w)
    assert T.deviation(tr.forward(after, x), tr.forward(tr.transcribed_model(spec, w), x)) > 1e-3


# ------------------------------------------------------------------------ the checks catch broken backends
class _Broken:
    """The NumPy backend with one defect injected (``fault``), to show each check fails on it."""

    name = "broken"

    def __init__(self, fault: str):
        self.inner, self.fault = get_backend("numpy"), fault

    def __getattr__(self, item):
        return getattr(self.inner, item)

    def build(self, spec, weights, device="cpu", dtype="float32", train=T.TrainConfig(), options=None):
        if self.fault == "variant" and spec.cell == "gru":
            spec = type(spec)(**{**spec.to_dict(), "variant": "reset_after" if spec.variant == "reset_before"
                                 else "reset_before"})
        if self.fault == "no_clip":
            train = T.TrainConfig(optimizer=train.optimizer, lr=train.lr, clip=None, betas=train.betas, eps=train.eps)
        if self.fault == "adam_beta":
            train = T.TrainConfig(optimizer=train.optimizer, lr=train.lr, clip=train.clip, betas=(0.9, 0.99),
                                  eps=train.eps)
        return self.inner.build(spec, weights, device=device, dtype=dtype, train=train, options=options)

    def forward(self, model, x):
        out = self.inner.forward(model, x)
        return out + 1e-6 * np.abs(out).max() if self.fault == "forward" else out

    def gradients(self, model, x, y):
        g = self.inner.gradients(model, x, y)
        if self.fault == "gradient":
            g["weight_hh_l0"] = g["weight_hh_l0"] * (1 + 1e-5)
        return g

    def weights(self, model):
        w = self.inner.weights(model)
        if self.fault == "weights":
            w["weight_ih_l0"] = w["weight_ih_l0"][::-1].copy()  # gate rows in the wrong order
        return w

    def train_step(self, model, x, y):
        loss = self.inner.train_step(model, x, y)
        return loss + np.random.default_rng().random() * 1e-7 if self.fault == "noise" else loss


@pytest.mark.parametrize(
    "fault, check, kwargs",
    [
        ("forward", T.check_forward_matches_reference, {}),
        ("variant", T.check_forward_matches_reference, {}),
        ("gradient", T.check_gradients_match_reference, {}),
        ("gradient", T.check_gradients_finite_difference, {}),
        ("weights", T.check_weight_roundtrip, {}),
        ("no_clip", T.check_sgd_step_matches_reference, {"clip": "active"}),
        ("adam_beta", T.check_adam_curve_matches_reference, {"steps": 20}),
        ("noise", T.check_same_seed_same_numbers, {}),
    ],
)
def test_checks_catch_a_broken_backend(monkeypatch, fault, check, kwargs):
    case = next(c for c in CASES if c.variant == "reset_before" and c.num_layers == 2)
    real = T.get_backend
    monkeypatch.setattr(T, "get_backend", lambda name: _Broken(fault) if name == "broken" else real(name))
    check("numpy", "cpu", case, **kwargs)  # the healthy backend passes
    with pytest.raises(AssertionError):
        check("broken", "cpu", case, **kwargs)


def test_deviation():
    assert T.deviation(np.array([1.0, 2.0]), np.array([1.0, 2.0])) == 0.0
    assert T.deviation(np.array([1.0, 2.5]), np.array([1.0, 2.0])) == pytest.approx(0.25)
    assert T.deviation(np.zeros(3), np.zeros(3)) == 0.0
    assert T.deviation(np.ones(3), np.zeros(3)) == np.inf
    assert T.deviation(np.array([np.nan]), np.array([1.0])) == np.inf
    with pytest.raises(AssertionError, match="shape"):
        T.deviation(np.zeros(2), np.zeros(3))


def test_conformance_cases_cover_the_matrix():
    got = {(c.cell, c.variant, c.head, c.num_layers) for c in CASES}
    want = {(c, v, h, n) for c, v in [("gru", "reset_after"), ("gru", "reset_before"), ("lstm", "standard")]
            for h in ("last", "every") for n in (1, 2)}
    assert got == want and len(CASES) == 12


def test_check_backend_runs_every_check_and_refuses_a_device_it_cannot_use(one_thread):
    one_thread("numpy")
    case = next(c for c in CASES if c.id == "lstm-standard-last-L2")
    report = T.check_backend("numpy", "cpu", dtypes=("float64",), cases=[case])
    assert set(report) == {f"{name} {case.id} float64" for name in [*T.CHECKS, *T.FLOAT64_ONLY]}
    assert report[f"forward {case.id} float64"] == 0.0  # the reference against itself
    with pytest.raises(RuntimeError, match="numpy/cuda cannot run here"):
        T.check_backend("numpy", "cuda")
