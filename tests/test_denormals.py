"""Issue #11 parts 1 and 4: the denormal policy (suite key, applied on each backend, recorded), the subnormal census,
the keep warning, stable case ids, and the GEMM floor."""
from __future__ import annotations

import json
import platform
import sys
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
    # the id BASE's case had before the denormals key existed (computed at 808f957^, where it was added)
    assert case.denormals == "flush" and case.case_id == "8f36b7ae2875"
    assert case.model_copy(update={"denormals": "keep"}).case_id == "cc0b8ffbf847"


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
        x = torch.tensor([1e-20], dtype=torch.float32)
        entry = _denormals.apply(backend, "flush")
        assert entry["method"] == "torch.set_flush_denormal"
        if platform.machine().lower() in ("x86_64", "amd64"):  # x86-64 always has SSE3: torch can set FTZ/DAZ
            assert entry["applied"] is True, entry
        if entry["applied"]:
            assert float(x * 1e-20) == 0.0  # FTZ set: the subnormal product becomes exactly 0
        assert _denormals.apply(backend, "keep")["applied"] is True
        # kept: the subnormal survives; float32's subnormal spacing 1.4e-45 is 1.4e-5 of 1e-40 (1e-4 rel)
        assert float(x * 1e-20) == pytest.approx(1e-40, rel=1e-4)
        if not entry["applied"]:
            pytest.skip(f"FTZ not checked: torch.set_flush_denormal(True) returned False on {platform.machine()}")
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
    # spec's train step is 3x the forward FLOPs (head included, which the list has too); the list is that less one
    # dL/dh_prev per layer (none before step 0: 2·G·B·H·H each) and less layer 1's dL/dx (no layer below it:
    # 2·G·B·T·H·I), exactly (integers in float64): 12 043 776 - 131 072 - 81 920
    G, H, I = 4, 32, 2  # noqa: E741 - the input width, as in spec.py
    assert flops(spec, B, L).train_step == 12_043_776
    assert gemm == flops(spec, B, L).train_step - 2 * (2 * G * B * H * H) - 2 * G * B * L * H * I == 11_830_784


def test_gemm_floor_recorded_with_a_sane_efficiency():
    r = run_case(tiny_case(seq_len=20, hidden=32, batch_size=16, repetitions=3))
    g = r.gemm_floor
    assert g is not None and g.seconds > 0 and g.shapes
    assert g.seconds == pytest.approx(sum(s["count"] * s["seconds"] for s in g.shapes), rel=1e-9)
    # efficiency = floor seconds / the step's median seconds (gemm_floor.floor, called by the worker)
    assert g.efficiency == pytest.approx(g.seconds / r.train_time.median, rel=1e-12)
    # the GEMMs are part of the step, so the floor is below it (measured ~0.1 here); 1.5 leaves room for a load spike
    # while the floor's shapes are timed, and still catches a miscounted GEMM list (T or T² times too many)
    assert 0 < g.efficiency < 1.5, g.efficiency
    direct = floor(ModelSpec(cell="gru", input_size=2, hidden_size=32, output_size=1), 16, 20, "float32", None)
    assert direct.efficiency is None and direct.gflops > 0


# ------------------------------------------------------------------------------------------- isolation (conftest)
def test_leaves_both_flushes_on_for_the_next_test():
    """Sets what an in-process "flush" case leaves behind (conftest's autouse fixture must undo it after this test);
    the next test checks that it did."""
    _np_layers.set_flush(True)
    if sys.modules.get("torch") is not None:
        sys.modules["torch"].set_flush_denormal(True)
    assert _np_layers._FLUSH[0] is True


def test_a_keep_test_after_a_flush_test_sees_subnormals():
    """Runs after the test above (file order): the NumPy flag is back at its default and, where torch is imported,
    its FTZ is off, so a subnormal float32 product survives (1e-20 · 1e-20 = 1e-40, 1e-4 rel)."""
    assert _np_layers._FLUSH[0] is False
    torch = sys.modules.get("torch")
    if torch is not None:
        assert float(torch.tensor([1e-20], dtype=torch.float32) * 1e-20) == pytest.approx(1e-40, rel=1e-4)
