"""The PyTorch backend beyond the generic conformance suite (``test_conformance.py`` runs every ``testing.py`` check
on torch/cpu with the default options): converters, kernel provenance, the reset_before loop in each of its
implementations against a transcription of ``spec.py`` and against the NumPy reference, options, batches, devices.

Tolerances are stated where used: float64 parity 1e-8 relative (``testing.TOLERANCES``), exact (bit for bit) where
nothing but a rename happens, 1e-12 where two float64 implementations of one formula are compared.
CUDA tests (``@pytest.mark.cuda``) skip with the reason ``available`` gives when there is no GPU.
"""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is a test dependency (pip install 'gru-bench[torch]')")

import torch_reference as TR  # noqa: E402  (tests/ is on sys.path under pytest)

from gru_bench import testing as T  # noqa: E402
from gru_bench.backends import TrainConfig, get_backend  # noqa: E402
from gru_bench.backends._torch_cells import ResetBeforeGRU, gru_reset_before_layer, scripted_layer  # noqa: E402
from gru_bench.backends._torch_convert import canonical_to_state_dict, state_dict_to_canonical  # noqa: E402
from gru_bench.backends.torch_backend import TorchBackend  # noqa: E402
from gru_bench.spec import ModelSpec, init_weights, param_count  # noqa: E402

CASES = T.conformance_cases()
RB_CASES = [c for c in CASES if c.variant == "reset_before"]
B = TorchBackend()
CUDA_REASON = B.available("cuda")
needs_cuda = pytest.mark.skipif(CUDA_REASON is not None, reason=f"torch/cuda: {CUDA_REASON}")


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Correctness tests of tiny models: one intra-op thread (two threads on a loaded 2-core machine make every tiny
    op wait on the other thread's time slice: 10x slower, same numbers)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _batch(case, seed=0, dtype="float64"):
    return case.batch(np.random.default_rng(seed), dtype)


class _WithOptions:
    """TorchBackend with build options fixed, so ``testing.py``'s checks run on a chosen implementation."""

    name = "torch"

    def __init__(self, **options):
        self.inner, self.options = TorchBackend(), options

    def __getattr__(self, item):
        return getattr(self.inner, item)

    def build(self, spec, weights, device="cpu", dtype="float32", train=TrainConfig(), options=None):
        return self.inner.build(spec, weights, device, dtype, train, {**self.options, **(options or {})})


@pytest.fixture
def with_options(monkeypatch):
    """``with_options(**opts)`` -> a backend name that ``testing.py``'s checks resolve to TorchBackend(opts)."""
    real = T.get_backend
    made: dict[str, _WithOptions] = {}

    def make(**opts):
        name = "torch+" + ",".join(f"{k}={v}" for k, v in sorted(opts.items()))
        made[name] = _WithOptions(**opts)
        return name

    monkeypatch.setattr(T, "get_backend", lambda name: made[name] if name in made else real(name))
    return make


# ------------------------------------------------------------------------------------------------ converters
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_converters_round_trip_exactly(case):
    """canonical -> state dict -> canonical is the identity bit for bit (the layouts are the same; keys renamed)."""
    spec = case.spec
    w = init_weights(spec, 3)
    sd = canonical_to_state_dict(spec, w)
    assert all(k.startswith(("rnn.", "head.")) for k in sd)
    back = state_dict_to_canonical(spec, sd)
    assert list(back) == list(w)
    for k in w:
        assert back[k].dtype == w[k].dtype and np.array_equal(back[k], w[k]), k


@pytest.mark.parametrize("case", [c for c in CASES if c.variant != "reset_before"], ids=lambda c: c.id)
def test_torch_modules_state_dict_to_canonical_keeps_the_function(case):
    """A state dict written by plain nn.GRU/nn.LSTM + nn.Linear modules converts to canonical weights with which the
    backend computes the same output as those modules (float64, 1e-12 relative)."""
    spec = case.spec
    torch.manual_seed(0)
    cls = torch.nn.GRU if spec.cell == "gru" else torch.nn.LSTM
    rnn = cls(spec.input_size, spec.hidden_size, spec.num_layers, batch_first=True, dtype=torch.float64)
    head = torch.nn.Linear(spec.hidden_size, spec.output_size, dtype=torch.float64)
    state = {**{f"rnn.{k}": v for k, v in rnn.state_dict().items()},
             **{f"head.{k}": v for k, v in head.state_dict().items()}}
    w = state_dict_to_canonical(spec, state)
    x, _ = _batch(case)
    with torch.no_grad():
        hs = rnn(torch.from_numpy(x))[0]
        want = head(hs[:, -1] if spec.head == "last" else hs).numpy()
    model = B.build(spec, w, dtype="float64")
    assert T.deviation(B.forward(model, x), want) <= 1e-12
    for k, v in B.weights(model).items():
        assert np.array_equal(v, w[k]), k


def test_state_dict_to_canonical_names_bad_keys():
    spec = CASES[0].spec
    sd = canonical_to_state_dict(spec, init_weights(spec, 0))
    sd.pop("rnn.bias_hh_l0")
    sd["rnn.extra"] = torch.zeros(1)
    with pytest.raises(ValueError, match=r"missing \['rnn.bias_hh_l0'\], unexpected \['rnn.extra'\]"):
        state_dict_to_canonical(spec, sd)


def test_export_after_training_is_the_trained_weights():
    """weights(model) after steps equals the module's parameters (canonical names) and differs from the start."""
    case = CASES[0]
    w = init_weights(case.spec, 0)
    model = B.build(case.spec, w, dtype="float64", train=TrainConfig(optimizer="sgd", lr=0.1))
    x, y = _batch(case)
    B.train_step(model, x, y)
    out = B.weights(model)
    params = dict(model.net.named_parameters())
    for k, v in out.items():
        key = k if k.startswith("head.") else f"rnn.{k}"
        assert np.array_equal(v, params[key].detach().numpy()), k
    assert not np.array_equal(out["weight_hh_l0"], w["weight_hh_l0"])


# ---------------------------------------------------------------------------------------------- provenance
def _spec(cell, variant=None, layers=1):
    return ModelSpec(cell, 1, 8, 1, layers, variant=variant)


def test_provenance_names_the_kernel_that_ran_on_cpu():
    """The implementation string comes from the autograd graph built at build time: on the CPU, nn.LSTM float32 runs
    oneDNN (``MkldnnRnnLayerBackward0``) when oneDNN is available and on; nn.GRU and float64 nn.LSTM run the native
    cell loop (GEMM and gate nodes)."""
    onednn = torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled
    native_lstm = "torch.nn.LSTM (native ATen cell loop)"
    cases = {("gru", "float32"): "torch.nn.GRU (native ATen cell loop)",
             ("gru", "float64"): "torch.nn.GRU (native ATen cell loop)",
             ("lstm", "float32"): "torch.nn.LSTM (oneDNN/mkldnn)" if onednn else native_lstm,
             ("lstm", "float64"): "torch.nn.LSTM (native ATen cell loop)"}
    for (cell, dtype), want in cases.items():
        spec = _spec(cell)
        prov = B.provenance(B.build(spec, init_weights(spec, 0, dtype=dtype), dtype=dtype))
        assert prov["implementation"] == want, (cell, dtype, prov["implementation"])
        if "oneDNN" in want:
            assert prov["kernel_evidence"] == ["MkldnnRnnLayerBackward0"]
        else:  # the native loop: GEMMs and gate math, no fused RNN node
            assert {"AddmmBackward0", "SigmoidBackward0", "TanhBackward0"} <= set(prov["kernel_evidence"])
            assert not any("Rnn" in node for node in prov["kernel_evidence"])


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="this torch build has no oneDNN")
def test_onednn_evidence_agrees_with_the_profiler_and_the_switch():
    """Independent witness: torch.profiler sees ``aten::mkldnn_rnn_layer`` for nn.LSTM float32; with the ``onednn``
    option off, the backend reports (and runs) the native loop instead."""
    from torch.profiler import ProfilerActivity, profile

    spec = _spec("lstm")
    model = B.build(spec, init_weights(spec, 0, dtype="float32"), dtype="float32")
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        B.forward(model, np.zeros((2, 3, 1), np.float32))
    names = {e.key for e in prof.key_averages()}
    assert "aten::mkldnn_rnn_layer" in names
    try:
        off = B.build(spec, init_weights(spec, 0, dtype="float32"), dtype="float32", options={"onednn": False})
        assert B.provenance(off)["implementation"] == "torch.nn.LSTM (native ATen cell loop)"
        assert B.provenance(off)["onednn_enabled"] is False
    finally:
        torch.backends.mkldnn.enabled = True


@pytest.mark.parametrize("loop, want", [("plain", "eager reset_before loop"),
                                        ("scripted", "scripted reset_before loop")])
def test_provenance_of_the_reset_before_loop(loop, want):
    spec = _spec("gru", "reset_before", layers=2)
    model = B.build(spec, init_weights(spec, 0), dtype="float64", options={"loop": loop})
    prov = B.provenance(model)
    assert prov["implementation"] == want and prov["loop"] == loop and prov["compile"] is False
    assert isinstance(model.net.rnn, ResetBeforeGRU)  # never nn.GRU: that is the reset_after function


def test_provenance_contents():
    spec = _spec("gru")
    model = B.build(spec, init_weights(spec, 0, dtype="float32"), dtype="float32",
                    train=TrainConfig(optimizer="sgd", lr=0.1, clip=0.5), options={"optimizer_impl": "foreach"})
    prov = B.provenance(model)
    assert prov["torch"] == torch.__version__
    assert prov["device"] == "cpu" and prov["dtype"] == "float32" and prov["autocast"] is None
    assert prov["optimizer"] == "sgd" and prov["optimizer_impl"] == "foreach"
    assert prov["clip"] == "torch.nn.utils.clip_grad_norm_(max_norm=0.5)"
    assert prov["loss"] == "MSELoss" and prov["grad_scaler"] is False
    assert prov["param_count"] == param_count(spec)
    assert prov["threads"] == {"torch_intra_op": torch.get_num_threads(),
                               "torch_interop": torch.get_num_interop_threads()}
    assert prov["onednn_available"] == torch.backends.mkldnn.is_available()
    auto = B.build(spec, init_weights(spec, 0, dtype="float32"), dtype="float32")
    assert B.provenance(auto)["optimizer_impl"] == "for-loop"  # torch's CPU default, made explicit


# ------------------------------------------------------------------------- the reset_before loop is the formula
@pytest.mark.parametrize("case", RB_CASES, ids=lambda c: c.id)
@pytest.mark.parametrize("loop", ["plain", "scripted"])
def test_reset_before_loop_equals_the_transcribed_equations(case, loop):
    """Forward output and every gradient of the loop equal a line-by-line transcription of ``spec.py``'s
    reset_before equations (``torch_reference.transcribed_model``), float64, to 1e-12 relative."""
    spec = case.spec
    w = init_weights(spec, 1)
    x, y = _batch(case, 2)
    model = B.build(spec, w, dtype="float64", options={"loop": loop})
    ref = TR.transcribed_model(spec, w)
    assert T.deviation(B.forward(model, x), TR.forward(ref, x)) <= 1e-12
    _, want = TR.loss_and_grads(ref, x, y)
    got = B.gradients(model, x, y)
    assert max(T.deviation(got[k], want[k]) for k in want) <= 1e-12


def test_reset_before_layer_is_not_reset_after():
    """Guard against a silent variant swap: with the same weights, the loop differs from nn.GRU (reset_after)."""
    torch.manual_seed(0)
    gru = torch.nn.GRU(3, 4, batch_first=True, dtype=torch.float64)
    x = torch.randn(2, 5, 3, dtype=torch.float64)
    gi = torch.nn.functional.linear(x, gru.weight_ih_l0, gru.bias_ih_l0)  # (B, T, 3H)
    out, _ = gru_reset_before_layer(gi, torch.zeros(2, 4, dtype=torch.float64), gru.weight_hh_l0, gru.bias_hh_l0)
    assert (out - gru(x)[0]).abs().max().item() > 1e-3
    out2, _ = scripted_layer()(gi, torch.zeros(2, 4, dtype=torch.float64), gru.weight_hh_l0, gru.bias_hh_l0)
    assert torch.equal(out, out2)


@pytest.mark.parametrize("case", RB_CASES, ids=lambda c: c.id)
def test_scripted_loop_passes_the_reference_checks_float64(with_options, case):
    """The scripted loop (CPU default is the eager one, which test_conformance covers) against the NumPy reference:
    forward and gradients <= 1e-8, one SGD step <= 1e-8, 100 Adam steps' losses <= 1e-8 relative."""
    name = with_options(loop="scripted")
    assert T.check_forward_matches_reference(name, "cpu", case, "float64") <= 1e-8
    assert T.check_gradients_match_reference(name, "cpu", case, "float64") <= 1e-8
    assert T.check_sgd_step_matches_reference(name, "cpu", case, "float64") <= 1e-8
    assert T.check_adam_curve_matches_reference(name, "cpu", case, "float64", steps=100) <= 1e-8


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch's own, raised while dynamo traces
def test_compiled_loop_matches_the_reference_float64():
    """The torch.compile'd loop (Inductor, fullgraph: a graph break would raise, never fall back) against the NumPy
    reference in float64: gradients (the training graph), forward (the inference graph) and one SGD step, 1e-8
    relative. T=2 and H=5 keep the unrolled graphs small: a cold compile costs ~40 s of CPU."""
    spec = ModelSpec("gru", 2, 5, 1, 2, variant="reset_before")
    w = init_weights(spec, 0)
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((3, 2, 2)), rng.standard_normal((3, 1))
    train = TrainConfig(optimizer="sgd", lr=0.1, clip=None)
    model = B.build(spec, w, dtype="float64", train=train, options={"compile": True})
    prov = B.provenance(model)
    assert prov["implementation"] == "compiled reset_before loop" and prov["compile"]["fullgraph"] is True
    ref_backend = get_backend("numpy")
    ref = ref_backend.build(spec, w, dtype="float64", train=train)
    got, want = B.gradients(model, x, y), ref_backend.gradients(ref, x, y)
    assert max(T.deviation(got[k], want[k]) for k in want) <= 1e-8
    assert T.deviation(B.forward(model, x), ref_backend.forward(ref, x)) <= 1e-8
    loss, ref_loss = B.train_step(model, x, y), ref_backend.train_step(ref, x, y)
    assert abs(loss - ref_loss) <= 1e-8 * abs(ref_loss)
    after, ref_after = B.weights(model), ref_backend.weights(ref)
    assert max(T.deviation(after[k] - w[k], ref_after[k] - w[k]) for k in w) <= 1e-8


@pytest.mark.parametrize("impl", ["foreach", "fused"])
def test_optimizer_implementations_agree(impl):
    """foreach / fused Adam and SGD give the for-loop's numbers (float64, 1e-12 relative after 5 steps)."""
    case = CASES[4]  # reset_before, head last, one layer
    x, y = _batch(case)
    for opt in ("adam", "sgd"):
        train = TrainConfig(optimizer=opt, lr=0.05)
        runs = {}
        for name in ("for-loop", impl):
            model = B.build(case.spec, init_weights(case.spec, 0), dtype="float64", train=train,
                            options={"optimizer_impl": name})
            losses = [B.train_step(model, x, y) for _ in range(5)]
            runs[name] = (losses, B.weights(model))
        assert np.allclose(runs[impl][0], runs["for-loop"][0], rtol=1e-12, atol=0)
        assert max(T.deviation(runs[impl][1][k], runs["for-loop"][1][k]) for k in runs[impl][1]) <= 1e-12


# -------------------------------------------------------------------------------------------- options, batches
@pytest.mark.parametrize("options, match", [
    ({"loops": "plain"}, r"options\['loops'\]: unknown torch option"),
    ({"loop": "fast"}, r"options\['loop'\]='fast': expected one of"),
    ({"compile": 1}, r"options\['compile'\]=1: expected one of"),
    ({"compile": True, "loop": "plain"}, r"options\['compile'\]=True conflicts with options\['loop'\]='plain'"),
    ({"compile": False, "loop": "compiled"}, r"options\['compile'\]=False conflicts"),
    ({"autocast": "bfloat16"}, r"options\['autocast'\]='bfloat16': autocast runs on CUDA only"),
    ({"optimizer_impl": "apex"}, r"options\['optimizer_impl'\]='apex'"),
])
def test_bad_options_are_one_line_value_errors(options, match):
    spec = _spec("gru", "reset_before")
    with pytest.raises(ValueError, match=match):
        B.build(spec, init_weights(spec, 0, dtype="float32"), options=options)


def test_bad_build_arguments():
    spec = _spec("gru")
    w = init_weights(spec, 0)
    with pytest.raises(ValueError, match=r"dtype='float16': expected one of float32, float64"):
        B.build(spec, w, dtype="float16")
    with pytest.raises(ValueError, match=r"device='cuda:7': "):
        B.build(spec, w, device="cuda:7")
    with pytest.raises(ValueError, match=r"weights\['head.bias'\] has shape"):
        B.build(spec, {**w, "head.bias": np.zeros(3)})


def test_prepared_tensors_and_numpy_arrays_give_the_same_steps():
    """prepare() puts the batch on the device once in the step's dtypes; steps from prepared tensors equal steps
    from NumPy arrays bit for bit."""
    for case in (CASES[0], CASES[2]):  # adding (mse, float y) and copy (xent, int y)
        x, y = _batch(case, dtype="float32")
        runs = []
        for prepared in (False, True):
            model = B.build(case.spec, init_weights(case.spec, 0, dtype="float32"), dtype="float32")
            xp, yp = B.prepare(model, x, y) if prepared else (x, y)
            if prepared:
                assert isinstance(xp, torch.Tensor) and xp.dtype == torch.float32 and xp.device.type == "cpu"
                assert yp.dtype == (torch.float32 if case.spec.loss == "mse" else torch.int64)
            runs.append([B.train_step(model, xp, yp) for _ in range(3)])
        assert runs[0] == runs[1]


def test_bad_batches_name_the_argument():
    case = CASES[2]  # copy: xent, head every
    model = B.build(case.spec, init_weights(case.spec, 0, dtype="float32"), dtype="float32")
    x, y = _batch(case, dtype="float32")
    with pytest.raises(ValueError, match=r"x has shape \(3, 22\): expected \(B, T, "):
        B.forward(model, x[..., 0])
    with pytest.raises(ValueError, match=r"y has shape \(3,\): expected \(3, 22\) class indices"):
        B.train_step(model, x, y[:, 0])
    with pytest.raises(ValueError, match=r"y has dtype .*float.*: expected integer class indices"):
        B.train_step(model, x, y.astype(np.float32))
    with pytest.raises(ValueError, match=r"y has class indices in \[0, 99\]: expected 0 <= y < "):
        bad = y.copy()
        bad[0, 0] = 99
        B.train_step(model, x, bad)
    with pytest.raises(ValueError, match="expected a model built by TorchBackend.build"):
        B.forward(object(), x)


def test_gradients_leave_the_model_and_optimizer_untouched():
    case = CASES[1]
    model = B.build(case.spec, init_weights(case.spec, 0), dtype="float64")
    x, y = _batch(case)
    before = B.weights(model)
    g1 = B.gradients(model, x, y)
    g2 = B.gradients(model, x, y)
    assert all(p.grad is None for p in model.net.parameters())
    assert model.optimizer.state_dict()["state"] == {}
    assert all(np.array_equal(g1[k], g2[k]) for k in g1)
    assert all(np.array_equal(before[k], v) for k, v in B.weights(model).items())


# -------------------------------------------------------------------------------------------------- devices
def test_available():
    assert B.available("cpu") is None
    assert B.available("tpu") == "device='tpu': expected 'cpu', 'cuda' or 'cuda:N'"
    assert B.available("cpu:0") == "device='cpu:0': expected 'cpu', 'cuda' or 'cuda:N'"
    if torch.version.cuda is None and torch.version.hip is None:
        assert B.available("cuda") == f"CUDA is not available: torch {torch.__version__} was built without CUDA"
        assert B.available("cuda:0") == B.available("cuda")


def test_available_cuda_index_out_of_range(monkeypatch):
    """With CUDA present (simulated: one device), cuda:0 is available and cuda:1 says how many there are."""
    monkeypatch.setattr(torch.version, "cuda", "12.4")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert B.available("cuda") is None and B.available("cuda:0") is None
    assert B.available("cuda:1") == "cuda:1 does not exist: 1 CUDA device(s) visible (cuda:0..cuda:0)"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert B.available("cuda").startswith("no CUDA device")


def test_cpu_sync_memory_threads():
    B.sync("cpu")  # a no-op that must not raise
    with pytest.raises(ValueError, match=r"device='gpu'"):
        B.sync("gpu")
    probe = B.memory("cpu")
    assert probe.method == "none" and probe.peak() == {}
    before = torch.get_num_threads()
    try:
        got = B.set_threads(1)
        assert got["torch_intra_op"] == 1 == torch.get_num_threads() and got["torch_interop"] >= 1
    finally:
        torch.set_num_threads(before)
    assert B.set_threads(None)["torch_intra_op"] == before
    with pytest.raises(ValueError, match=r"threads=0: expected a positive integer"):
        B.set_threads(0)


def test_registry_returns_this_backend():
    assert isinstance(get_backend("torch"), TorchBackend) and TorchBackend.name == "torch"


# ----------------------------------------------------------------------------------------------------- CUDA
CUDA_CASES = [c for c in CASES if c.head == "last" and c.num_layers == 2] + [CASES[2]]


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("case", CUDA_CASES, ids=lambda c: c.id)
def test_cuda_float32_matches_reference(case):
    """On the GPU in float32 (TF32 off, the default): forward <= 1e-4, gradients <= 1e-3, one SGD step <= 1e-3,
    100 Adam steps <= 1e-3 relative against the float64 NumPy reference."""
    assert T.check_forward_matches_reference("torch", "cuda", case, "float32") <= 1e-4
    assert T.check_gradients_match_reference("torch", "cuda", case, "float32") <= 1e-3
    assert T.check_sgd_step_matches_reference("torch", "cuda", case, "float32") <= 1e-3
    assert T.check_adam_curve_matches_reference("torch", "cuda", case, "float32", steps=100) <= 1e-3


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("loop", ["plain", "scripted"])
def test_cuda_reset_before_loops_float64(with_options, loop):
    case = next(c for c in RB_CASES if c.num_layers == 2 and c.head == "last")
    name = with_options(loop=loop)
    assert T.check_forward_matches_reference(name, "cuda", case, "float64") <= 1e-8
    assert T.check_gradients_match_reference(name, "cuda", case, "float64") <= 1e-8


@pytest.mark.cuda
@needs_cuda
def test_cuda_provenance_and_memory():
    spec = _spec("lstm", layers=2)
    model = B.build(spec, init_weights(spec, 0, dtype="float32"), device="cuda", dtype="float32")
    prov = B.provenance(model)
    if torch.backends.cudnn.is_available() and torch.version.hip is None:
        assert prov["implementation"] == "torch.nn.LSTM (cuDNN)"
        assert prov["kernel_evidence"] == ["CudnnRnnBackward0"]
    assert prov["gpu"] == torch.cuda.get_device_name(0) and prov["optimizer_impl"] == "fused"
    assert prov["tf32_cudnn"] is False and prov["tf32_matmul"] is False
    probe = B.memory("cuda")
    probe.reset()
    x = np.zeros((64, 50, 1), np.float32)
    B.train_step(model, *B.prepare(model, x, np.zeros((64, 1), np.float32)))
    B.sync("cuda")
    peak = probe.peak()
    assert peak["allocated"] >= x.nbytes and peak["reserved"] >= peak["allocated"]


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("autocast", ["bfloat16", "float16"])
def test_cuda_autocast_smoke(autocast):
    """Autocast trains (loss finite and falling on fixed batches), keeps float32 weights, reports itself."""
    if autocast == "bfloat16" and not torch.cuda.is_bf16_supported():
        pytest.skip(f"{torch.cuda.get_device_name(0)} has no bfloat16")
    case = CASES[0]
    w = init_weights(case.spec, 0, dtype="float32")
    model = B.build(case.spec, w, device="cuda", dtype="float32", train=TrainConfig(lr=0.03),
                    options={"autocast": autocast})
    prov = B.provenance(model)
    assert prov["autocast"] == autocast and prov["grad_scaler"] is (autocast == "float16")
    rng = np.random.default_rng(0)
    fixed = [B.prepare(model, *case.batch(rng, "float32")) for _ in range(4)]
    losses = [B.train_step(model, *fixed[i % 4]) for i in range(40)]
    assert np.all(np.isfinite(losses)) and np.mean(losses[-4:]) < 0.5 * np.mean(losses[:4])
    assert all(v.dtype == np.float32 for v in B.weights(model).values())
    assert B.forward(model, fixed[0][0]).dtype == np.float32


@pytest.mark.cuda
@needs_cuda
def test_cuda_out_of_memory_propagates():
    """An allocation beyond the GPU raises torch.OutOfMemoryError (the worker records it as 'oom'): here the loop's
    input projection (B, T, 3H), sized to twice the GPU's memory."""
    spec = ModelSpec("gru", 1, 8192, 1, variant="reset_before")
    model = B.build(spec, init_weights(spec, 0, dtype="float32"), device="cuda", dtype="float32")
    total = torch.cuda.get_device_properties(0).total_memory
    T_ = int(2 * total / (64 * 8192 * 3 * 4)) + 1  # (64, T_, 3·8192) float32 = twice the GPU memory
    try:
        with pytest.raises(torch.OutOfMemoryError):
            B.train_step(model, torch.zeros(64, T_, 1, device="cuda"), torch.zeros(64, 1, device="cuda"))
    finally:
        del model
        torch.cuda.empty_cache()
