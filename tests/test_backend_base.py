"""The backend contract of ``backends/base.py``: an abstract base with documented defaults, declared capabilities
and options, the shared checks, the ``Device`` grammar, and the registry's declarations (read without a framework)."""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import fault_backend
from gru_bench.backends import (Backend, BackendUnavailable, Device, backend_class, declared, framework_builds,
                                get_backend, usable_without_a_framework)
from gru_bench.backends import _denormals
from gru_bench.backends.base import Capabilities, Option, TrainConfig, check_options, check_threads
from gru_bench.backends.numpy_backend import NumpyBackend
from gru_bench.case import Case
from gru_bench.spec import ModelSpec, init_weights
from gru_bench.worker import run_case

SPEC = ModelSpec("gru", 2, 4, 3, variant="reset_before")


class Untraced(NumpyBackend):
    """A plugin that says tracemalloc does not see its allocations (as a framework's)."""

    name = "untraced"
    capabilities = replace(NumpyBackend.capabilities, traced_allocations=False)


class Minimal(Backend):
    """A plugin implementing only what is abstract (over the NumPy backend), keeping every default."""

    name = "minimal"

    def __init__(self) -> None:
        self.inner = NumpyBackend()

    def make_model(self, spec, weights, device, dtype, train, options):
        return self.inner.make_model(spec, weights, device, dtype, train, options)

    def train_step(self, model, x, y):
        return self.inner.train_step(model, x, y)

    def forward(self, model, x):
        return self.inner.forward(model, x)

    def gradients(self, model, x, y):
        return self.inner.gradients(model, x, y)

    def weights(self, model):
        return self.inner.weights(model)

    def provenance(self, model):
        return {"implementation": "minimal"}

    def set_threads(self, n):
        return {}


def test_the_base_is_abstract_and_names_what_is_missing():
    class Half(Backend):
        name = "half"

        def forward(self, model, x):
            return x

    with pytest.raises(TypeError, match="abstract"):
        Half()
    missing = Half.__abstractmethods__
    assert {"make_model", "train_step", "gradients", "weights", "provenance", "set_threads"} <= missing


def test_defaults_of_the_optional_hooks():
    b = Minimal()
    w = init_weights(SPEC, 0, dtype="float32")
    model = b.build(SPEC, w)
    x, y = np.zeros((2, 3, 2), np.float32), np.zeros((2, 3), np.float32)
    assert b.prepare(model, x, y) == (x, y)  # unchanged: the same objects
    assert b.sync("cpu") is None
    probe = b.memory("cpu")
    assert probe.method == "none" and probe.peak() == {} and probe.reset() is None
    assert b.available("cpu") is None
    assert b.available("cuda") == "the minimal backend runs on 'cpu' only, not 'cuda'"
    assert b.available("gpu") == "device='gpu': expected 'cpu', 'cuda' or 'cuda:N'"
    assert type(b).build_info() == {}
    assert _denormals.apply(b, "flush") == {"policy": "flush", "method": "none (backend has no set_denormals)",
                                            "applied": False}


class KnownGradients(Minimal):
    """Minimal, with gradients of known values: 3 of their 8 entries subnormal in float32 (tiny = 1.18e-38)."""

    name = "known"

    def gradients(self, model, x, y):
        sub = np.float32(1e-40)
        return {"w": np.array([[sub, 1.0, 0.0], [-sub, 1e-30, 2.0]], np.float32),  # (2, 3): 2 subnormal
                "b": np.array([np.finfo(np.float32).tiny, sub], np.float32)}  # (2,): tiny itself is normal; 1


def test_default_census_counts_subnormals_over_all_parameter_gradients():
    b = KnownGradients()
    model = b.build(SPEC, init_weights(SPEC, 0, dtype="float32"))
    x, y = np.zeros((2, 3, 2), np.float32), np.zeros((2, 3), np.float32)
    assert b.subnormal_census(model, x, y) == {"param_grad": 3 / 8}


def test_plugins_subclass_the_base_and_a_class_that_does_not_is_refused(monkeypatch):
    assert all(issubclass(cls, Backend) for cls in fault_backend.ALL.values())
    monkeypatch.setenv("GRU_BENCH_BACKENDS", "plain=test_backend_base:SPEC")
    with pytest.raises(BackendUnavailable, match="does not subclass gru_bench.backends.Backend"):
        backend_class("plain")


def test_shared_build_checks_name_the_argument():
    for b in (NumpyBackend(), Minimal()):
        w = init_weights(SPEC, 0)
        for kwargs, match in [(dict(dtype="float16"), "dtype='float16': expected one of float32, float64"),
                              (dict(device="cuda:1"), "device='cuda:1': the .* backend runs on 'cpu' only"),
                              (dict(device="cpu:0"), "device='cpu:0': expected 'cpu', 'cuda' or 'cuda:N'"),
                              (dict(train="adam"), "train is a str: expected a TrainConfig"),
                              (dict(options={"loop": "plain"}), r"options=\{'loop': 'plain'\}: the .* takes no")]:
            with pytest.raises(ValueError, match=match):
                b.build(SPEC, w, **kwargs)
        with pytest.raises(ValueError, match="spec is a dict"):
            b.build(SPEC.to_dict(), w)


FRAMEWORK = {"numpy": "numpy", "torch": "torch", "tf": "tensorflow"}  # backend -> the module its extra installs


@pytest.mark.parametrize("backend", ["numpy", "torch", "tf"])
def test_shared_batch_checks_are_the_same_on_every_backend(backend):
    """One message per defect, from ``base.check_x_shape``/``check_y``, whichever backend holds the model."""
    pytest.importorskip(FRAMEWORK[backend])
    b = get_backend(backend)
    models = [(b, b.build(SPEC, init_weights(SPEC, 0, dtype="float32")))]
    x = np.zeros((2, 3, 2), np.float32)
    for bad_x, match in [(np.zeros((2, 3), np.float32), r"x has shape \(2, 3\): expected \(B, T, 2\) with B, T >= 1"),
                         (np.zeros((2, 0, 2), np.float32), r"x has shape \(2, 0, 2\)")]:
        for b, m in models:
            with pytest.raises(ValueError, match=match):
                b.forward(m, bad_x)
    for bad_y, match in [(np.zeros((2, 3, 3), np.float32), r"y has shape \(2, 3, 3\): expected \(2, 3\) for head"),
                         (np.zeros((2, 3), np.int64), r"y has dtype .*int64: expected floating targets")]:
        for b, m in models:
            with pytest.raises(ValueError, match=match):
                b.train_step(m, x, bad_y)


def test_check_options_fills_defaults_and_tells_true_from_one():
    declared_ = (Option("flag", (True, False), False), Option("mode", ("a", "b"), "a"))
    assert check_options("x", declared_, None) == {"flag": False, "mode": "a"}
    assert check_options("x", declared_, {"flag": True}) == {"flag": True, "mode": "a"}
    with pytest.raises(ValueError, match=r"options\['flag'\]=1: expected one of True, False"):
        check_options("x", declared_, {"flag": 1})
    with pytest.raises(ValueError, match=r"options\['other'\]: unknown x option; expected one of flag, mode"):
        check_options("x", declared_, {"other": 1})
    assert check_options("x", (), {}) == {}
    assert check_threads(None) is None and check_threads(np.int64(3)) == 3
    for bad in (0, True, 1.5, "2"):
        with pytest.raises(ValueError, match="expected a positive integer or None"):
            check_threads(bad)


@pytest.mark.parametrize("text, kind, index", [("cpu", "cpu", None), ("cuda", "cuda", None), ("cuda:3", "cuda", 3)])
def test_device_parses_and_prints_back(text, kind, index):
    d = Device.parse(text)
    assert (d.kind, d.index, str(d), d.is_cpu) == (kind, index, text, kind == "cpu")


@pytest.mark.parametrize("text", ["gpu", "cpu:0", "cuda:", "cuda:x", "CUDA", " cpu", 0, None])
def test_device_rejects_anything_else(text):
    with pytest.raises(ValueError, match=r"expected 'cpu', 'cuda' or 'cuda:N'"):
        Device.parse(text)


def test_declarations_are_read_without_starting_a_framework():
    code = ("import sys; from gru_bench.backends import declared, framework_builds, usable_without_a_framework; "
            "t, f = declared('torch'), declared('tf'); framework_builds(); "
            "print([o.name for o in t.options][:2], t.capabilities.devices, f.capabilities.denormals, "
            "usable_without_a_framework('torch', 'cpu'), 'torch' in sys.modules, 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['loop', 'compile'] ('cpu', 'cuda') ('flush',) False False False"


def test_numpy_is_its_own_declaration_and_builds_name_their_framework():
    assert declared("numpy") is NumpyBackend and NumpyBackend.capabilities.traced_allocations
    assert usable_without_a_framework("numpy", "cpu") and not usable_without_a_framework("numpy", "cuda")
    builds = framework_builds()  # read from the declarations: no framework imported
    assert builds == {**declared("torch").build_info(), **declared("tf").build_info()}
    assert all(k.startswith(("torch_", "tensorflow_")) for k in builds)


@pytest.mark.parametrize("backend", ["torch", "tf"])
def test_the_real_classes_carry_their_declarations(backend):
    pytest.importorskip(FRAMEWORK[backend])
    cls = backend_class(backend)
    assert issubclass(cls, declared(backend)) and cls.options == declared(backend).options
    assert not cls.capabilities.traced_allocations and cls.capabilities.device_memory
    assert cls.build_info() == declared(backend).build_info()


def test_tracemalloc_figure_follows_the_declared_capability(monkeypatch):
    """The worker's extra tracemalloc step runs for a backend that declares ``traced_allocations`` (by capability,
    not by name): the same NumPy model with the capability off has no ``tracemalloc_peak``."""
    monkeypatch.setenv("GRU_BENCH_BACKENDS", "untraced=test_backend_base:Untraced")
    # the memory windows run in fresh processes (memory_window.py): they must find this module too
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(Path(__file__).parent),
                                                                    os.environ.get("PYTHONPATH")])))
    kw = dict(cell="gru", variant="reset_after", task="adding", seq_len=8, hidden=4, batch_size=4, warmup=1,
              repetitions=2, threads=1)
    names = {}
    for backend in ("numpy", "untraced"):
        r = run_case(Case(backend=backend, **kw))
        assert r.status == "ok", r.reason
        names[backend] = {m.name for m in r.memory}
    assert "tracemalloc_peak" in names["numpy"] and "tracemalloc_peak" not in names["untraced"]
    assert names["numpy"] - {"tracemalloc_peak"} == names["untraced"]


def test_capabilities_defaults_are_conservative():
    c = Capabilities()
    assert (c.devices, c.device_memory, c.traced_allocations) == (("cpu",), False, False)
    assert c.denormals == _denormals.POLICIES and TrainConfig().optimizer == "adam"
