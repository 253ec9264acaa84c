"""Issue #11 parts 1 and 4: the denormal policy (suite key, applied on each backend, recorded), the subnormal census,
the keep warning, stable case ids, and the GEMM floor."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from gru_bench.backends import _denormals, _np_layers, get_backend
from gru_bench.case import Case
from gru_bench.errors import InputError
from gru_bench.gemm_floor import floor, step_gemms
from gru_bench.spec import ModelSpec, flops
from gru_bench.suite import load_suite, validate_suite
from gru_bench.worker import run_case

REPO = Path(__file__).resolve().parents[1]
BASE = {"name": "b", "backend": "numpy", "cell": "gru", "task": "adding", "seq_len": 10, "hidden": 8}
SUB32 = np.float32(1e-40)  # subnormal in float32 (tiny = 1.18e-38)


def tiny_case(**kw) -> Case:
    d = dict(backend="numpy", cell="gru", variant="reset_after", task="adding", seq_len=8, hidden=8, batch_size=4,
             warmup=1, repetitions=2, options={"threads": 1})
    return Case(**{**d, **kw})


# ------------------------------------------------------------------------------------------- suite key, ids
def test_suite_key_expands_and_rejects_a_bad_value():
    assert [c.denormals for c in validate_suite({**BASE, "denormals": ["flush", "keep"]}).cases()] == ["flush", "keep"]
    assert validate_suite(BASE).cases()[0].denormals == "flush"  # the default
    with pytest.raises(InputError, match=r"denormals.*'off'.*expected one of flush, keep"):
        validate_suite({**BASE, "denormals": "off"})


def test_default_policy_keeps_the_case_id_and_keep_changes_it():
    case = validate_suite(BASE).cases()[0]
    d = case.model_dump(exclude={"timeout_s", "stop_at_target", "denormals", "threads"})
    d["options"] = {**d["options"], "threads": case.threads}  # hashed where it was before it became a field
    assert case.case_id == hashlib.sha1(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()[:12]
    assert case.model_copy(update={"denormals": "keep"}).case_id != case.case_id


def test_baseline_ids_still_match():
    raw = json.loads((REPO / "results" / "baselines" / "quick.json").read_text())
    assert raw["cases"]
    for c in raw["cases"]:
        assert Case(**c["case"]).case_id == c["case_id"]


def test_shipped_suite_runs_flush_and_keep_side_by_side():
    cases = load_suite("denormals").cases()
    keys = {(c.backend, c.cell, c.seq_len) for c in cases}
    assert {c.seq_len for c in cases} == {100, 200, 400} and {c.backend for c in cases} == {"numpy", "torch"}
    for k in keys:  # each point once with each policy
        assert sorted(c.denormals for c in cases if (c.backend, c.cell, c.seq_len) == k) == ["flush", "keep"]


# ------------------------------------------------------------------------------------------- census
def test_census_counts_subnormals_exactly():
    a = np.array([0.0, 1.0, SUB32, -SUB32, np.finfo(np.float32).tiny, 1e-30, np.nan, SUB32], dtype=np.float32)
    # subnormal: the three ±1e-40 (zero, tiny itself and normal values are not)
    assert _denormals.subnormal_fraction(a) == pytest.approx(3 / 8, abs=0)
    assert _denormals.census([("h", a), ("z", np.zeros(4, np.float64))]) == {"h": 3 / 8, "z": 0.0}
    assert _denormals.subnormal_fraction(np.array([1e-310, 1.0])) == 0.5  # float64 threshold is float64's


# ------------------------------------------------------------------------------------------- policy per backend
def test_numpy_flush_zeroes_small_gradients_and_keep_leaves_them():
    a = np.array([[SUB32, 1e-32, 1.0, -1e-20]], dtype=np.float32)  # (1, 4)
    _np_layers._flush(a)
    assert a.tolist() == [[0.0, 0.0, 1.0, pytest.approx(-1e-20, rel=1e-6)]]  # below tiny·2^24 (2e-31): zero
    numpy = get_backend("numpy")
    _denormals.apply(numpy, "keep")
    assert _np_layers._FLUSH[0] is False
    assert _denormals.apply(numpy, "flush") == {"policy": "flush", "method": "software-dh", "applied": True}
    assert _np_layers._FLUSH[0] is True
    with pytest.raises(ValueError, match="denormals='off'"):
        _denormals.apply(numpy, "off")


def test_a_backend_without_the_method_is_recorded_as_not_applied():
    from dataclasses import replace

    from gru_bench.backends.base import Backend
    from gru_bench.backends.numpy_backend import NumpyBackend

    class Plugin(NumpyBackend):  # a plugin that keeps the base class's set_denormals
        name = "plugin"
        set_denormals = Backend.set_denormals

    assert _denormals.apply(Plugin(), "keep") == {"policy": "keep", "method": "none (backend has no set_denormals)",
                                                  "applied": False}

    class FlushOnly(Plugin):  # declares that it cannot keep them: "keep" is a visible skip, not a silent flush
        capabilities = replace(NumpyBackend.capabilities, denormals=("flush",))

    assert _denormals.apply(FlushOnly(), "flush")["policy"] == "flush"
    with pytest.raises(_denormals.KeepUnsupported, match="the plugin backend cannot put it in force"):
        _denormals.apply(FlushOnly(), "keep")


def test_numpy_flush_leaves_no_subnormal_gradient_at_long_t():
    # T=200: kept, dL/dh decays into the subnormal range (measured ~10 % of entries); flushed, none
    for policy, some in (("keep", True), ("flush", False)):
        r = run_case(tiny_case(seq_len=200, hidden=64, batch_size=16, denormals=policy))
        assert r.status == "ok", r.reason
        assert r.provenance["denormals"]["policy"] == policy
        assert (r.subnormals["hidden_grad"] > 0) is some, (policy, r.subnormals)


def test_torch_flush_is_applied_in_this_thread():
    torch = pytest.importorskip("torch")  # the [torch] extra
    try:
        backend = get_backend("torch")
        entry = _denormals.apply(backend, "flush")
        assert entry["method"] == "torch.set_flush_denormal"
        x = torch.tensor([1e-20], dtype=torch.float32)
        if entry["applied"]:  # x86 with SSE3, and ARM: FTZ set; a subnormal product becomes exactly 0
            assert float(x * 1e-20) == 0.0
        _denormals.apply(backend, "keep")
        assert float(x * 1e-20) == pytest.approx(1e-40, rel=1e-2)  # kept: the subnormal survives (1 % rel)
    finally:
        torch.set_flush_denormal(False)


def test_tf_keep_is_a_visible_skip():
    with pytest.raises(_denormals.KeepUnsupported, match="TensorFlow"):
        _denormals.tf_policy("keep")
    assert _denormals.tf_policy("flush")["method"] == "tf-default"
    pytest.importorskip("tensorflow")  # the [tf] extra: the worker path below needs TF to get to the policy
    r = run_case(tiny_case(backend="tf", denormals="keep"))
    assert r.status == "skipped" and "keep" in r.reason and r.train_time is None


def test_keep_warning_when_census_is_nonzero():
    r = run_case(tiny_case(seq_len=200, hidden=64, batch_size=16, denormals="keep"))
    assert any(w.startswith("denormals kept and present") for w in r.warnings), r.warnings
    flushed = run_case(tiny_case(seq_len=200, hidden=64, batch_size=16))
    assert not any("denormals" in w for w in flushed.warnings)


# ------------------------------------------------------------------------------------------- GEMM floor
def test_step_gemms_match_the_analytic_flops():
    spec = ModelSpec(cell="lstm", input_size=2, hidden_size=32, output_size=1, num_layers=2)
    B, L = 8, 20
    gemm = sum(2.0 * m * k * n * c for (m, k, n), c in step_gemms(spec, B, L).items())
    # spec's train step is 3x the forward GEMM FLOPs; the list is that minus one dL/dh_prev per layer plus the
    # head and dL/dx of layer 2: within 5 %
    assert gemm == pytest.approx(flops(spec, B, L).train_step, rel=0.05)


def test_gemm_floor_recorded_with_a_sane_efficiency():
    r = run_case(tiny_case(seq_len=20, hidden=32, batch_size=16, repetitions=3))
    g = r.gemm_floor
    assert g is not None and g.seconds > 0 and g.shapes
    assert g.seconds == pytest.approx(sum(s["count"] * s["seconds"] for s in g.shapes), rel=1e-9)
    # the floor is part of the step: below its time (a step also does element-wise work), but not vanishing
    assert 0.001 < g.efficiency < 1.5, g.efficiency
    direct = floor(ModelSpec(cell="gru", input_size=2, hidden_size=32, output_size=1), 16, 20, "float32", None)
    assert direct.efficiency is None and direct.gflops > 0
