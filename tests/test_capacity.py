"""Huge sizes refused up front (capacity.py), and the chunked initialisation: the same weights, bit for bit, with
no float64 copy of a float32 model."""
from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from gru_bench import capacity, spec
from gru_bench.case import Case
from gru_bench.cli import main
from gru_bench.status import ExitStatus
from gru_bench.errors import InputError
from gru_bench.spec import ModelSpec, init_weights, param_count, param_shapes
from gru_bench.suite import load_suite

from conftest import error_lines, write_suite


# ------------------------------------------------------------------------------------------------ estimate
def test_estimate_counts_weights_gradients_adam_and_activations():
    c = Case(backend="numpy", cell="gru", variant="reset_after", task="adding", seq_len=50, hidden=64,
             batch_size=32, dtype="float32")
    e = capacity.estimate(c)
    P = param_count(ModelSpec("gru", 2, 64, 1))  # adding: 2 inputs, 1 output, many-to-one
    assert (e.weights, e.gradients, e.optimizer) == (4 * P, 4 * P, 8 * P)
    assert e.activations == 32 * 50 * 64 * 3 * 4 + 32 * 50 * 64 * 4  # gates + hidden states, (B, T, H)
    assert e.batch == 32 * 50 * 2 * 4 + 32 * 1 * 4
    assert capacity.estimate(c.model_copy(update={"optimizer": "sgd"})).optimizer == 0
    deep = c.model_copy(update={"num_layers": 5})
    assert capacity.estimate(deep).weights == 4 * param_count(ModelSpec("gru", 2, 64, 1, num_layers=5))
    assert capacity.estimate(c.model_copy(update={"dtype": "float64"})).total == 2 * e.total


@pytest.mark.parametrize("key, value", [("hidden", 10**9), ("seq_len", 10**11), ("batch_size", 10**11),
                                        ("num_layers", 10**10)])  # far beyond any machine, at H=8
def test_huge_sizes_are_refused_before_anything_runs(key, value, tmp_path, capsys, monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("calibrated a run that cannot fit")

    monkeypatch.setattr("gru_bench.calibration.calibrate", refuse)
    suite = write_suite(tmp_path / "s.toml", **{key: value})
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "--no-progress"]) == ExitStatus.USAGE
    (line,) = error_lines(capsys)
    assert line.startswith("error: case numpy/cpu gru[reset_after] adding ") and "needs at least" in line
    assert "this machine's RAM" in line and "--force" in line
    assert not (tmp_path / "out").exists()


def test_force_skips_the_check(tmp_path, monkeypatch):
    reached = []

    def stop_here(suite, out_dir, label=None, **kw):
        reached.append(suite.hidden)
        raise InputError("stopped by the test after the checks")

    monkeypatch.setattr("gru_bench.runner.new_run", stop_here)
    suite = write_suite(tmp_path / "s.toml", hidden=10**9)
    assert main(["run", str(suite), "--out", str(tmp_path / "out"), "--force"]) == ExitStatus.USAGE
    assert reached == [[10**9]]


def test_what_fits_passes_and_devices_have_their_own_limit():
    cases = load_suite("quick").cases()
    capacity.check_cases(cases)  # the shipped suite fits a small machine
    big = Case(backend="torch", device="cuda:1", cell="lstm", variant="standard", task="adding", seq_len=100,
               hidden=4096, batch_size=256)
    need = capacity.estimate(big).total
    capacity.check_cases([big], ram_bytes=1, device_bytes={"1": need + 1})  # the device's memory, not the RAM
    with pytest.raises(InputError, match=r"case torch/cuda:1 lstm .*more than the memory of cuda:1"):
        capacity.check_cases([big], ram_bytes=10**15, device_bytes={"0": 10**15, "1": need - 1})


# ---------------------------------------------------------------------------------------------------- init
def _reference(model: ModelSpec, seed: int, scheme: str, dtype: str) -> dict[str, np.ndarray]:
    """The initialisation as it was before chunking: whole float64 draws, then cast."""
    rng = np.random.default_rng(seed)
    G, H, O = model.gates, model.hidden_size, model.output_size
    w = {}
    if scheme == "pytorch":
        b = 1.0 / math.sqrt(H)
        for k, shape in param_shapes(model).items():
            w[k] = rng.uniform(-b, b, shape)
    else:
        def glorot(fi, fo, shape):
            lim = math.sqrt(6.0 / (fi + fo))
            return rng.uniform(-lim, lim, shape)

        for k in range(model.num_layers):
            In = model.layer_input_size(k)
            w[f"weight_ih_l{k}"] = glorot(In, G * H, (In, G * H)).T.copy()
            w[f"weight_hh_l{k}"] = spec._orthogonal(rng, H, G * H).T.copy()
            w[f"bias_ih_l{k}"] = np.zeros(G * H)
            w[f"bias_hh_l{k}"] = np.zeros(G * H)
            if model.cell == "lstm":
                w[f"bias_ih_l{k}"][H: 2 * H] = 1.0
        w["head.weight"] = glorot(H, O, (H, O)).T.copy()
        w["head.bias"] = np.zeros(O)
    return {k: np.ascontiguousarray(v, dtype=dtype) for k, v in w.items()}


@pytest.mark.parametrize("chunk", [spec.INIT_CHUNK, 7])  # 7: every matrix drawn in many ragged pieces
@pytest.mark.parametrize("scheme", ["pytorch", "keras"])
@pytest.mark.parametrize("cell, H, L", [("gru", 8, 1), ("lstm", 16, 2), ("gru", 64, 2), ("lstm", 128, 1)])
def test_init_is_bit_identical_to_the_whole_draw(cell, H, L, scheme, chunk, monkeypatch):
    monkeypatch.setattr(spec, "INIT_CHUNK", chunk)
    model = ModelSpec(cell, 3, H, 5, num_layers=L)
    for dtype in ("float32", "float64"):
        for seed in (0, 1, 12345):
            got, want = init_weights(model, seed, scheme, dtype), _reference(model, seed, scheme, dtype)
            assert list(got) == list(want)
            for k in want:  # exact: same bits, same dtype, contiguous
                assert got[k].dtype == want[k].dtype and got[k].flags.c_contiguous
                assert got[k].tobytes() == want[k].tobytes(), (k, dtype, seed)


def test_float32_init_holds_no_float64_copy():
    model = ModelSpec("gru", 2, 1500, 1)  # weight_hh (4500, 1500): 54 MB in float64, 27 MB in float32
    float32_bytes = 4 * param_count(model)
    tracemalloc.start()
    try:
        w = init_weights(model, 0, "pytorch", "float32")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(a.nbytes for a in w.values()) == float32_bytes
    largest64 = 8 * max(math.prod(s) for s in param_shapes(model).values())
    # the float32 arrays plus one chunk's float64 draw (8 MiB), never the float64 matrix itself (54 MB)
    assert peak < float32_bytes + 2 * 8 * spec.INIT_CHUNK + (1 << 20) < float32_bytes + largest64
