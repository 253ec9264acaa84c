"""worker.run_case in this process: the measurements of one case, and the status of each way a case goes wrong."""
from __future__ import annotations

import gc
import json
import subprocess
import sys
import weakref

import numpy as np
import pytest

import fault_backend
from gru_bench import worker
from gru_bench.case import Case
from gru_bench.schema import CaseResult, Calibration
from gru_bench.spec import ModelSpec, flops, param_count
from gru_bench.tasks import get_task
from gru_bench.worker import exception_reason, is_oom, run_case

TINY = dict(task="adding", seq_len=12, hidden=8, batch_size=8, warmup=2, repetitions=4, threads=1)


def tiny(**kw) -> Case:
    d = dict(backend="numpy", cell="gru", variant="reset_after", **TINY)
    d.update(kw)
    return Case(**d)


@pytest.fixture
def faults(monkeypatch):
    fault_backend.enable(monkeypatch)


@pytest.fixture(scope="module")
def trained() -> tuple[Case, CaseResult]:
    case = tiny(cell="lstm", variant="standard", steps=60, eval_every=20, eval_batches=2, seed=3)
    return case, run_case(case, Calibration(gemm_gflops=10.0, method="test"))


def test_ok_case_has_every_measurement(trained):
    case, r = trained
    assert r.status == "ok", r.reason
    assert r.case_id == case.case_id
    io = get_task("adding").model_io(case.seq_len)
    spec = ModelSpec("lstm", io["input_size"], case.hidden, io["output_size"], head=io["head"], loss=io["loss"])
    assert r.params == param_count(spec) == r.params_backend
    assert r.flops_train_step == pytest.approx(flops(spec, case.batch_size, case.seq_len).train_step, rel=0)
    assert r.implementation and r.implementation == r.provenance["implementation"]
    assert r.threads["requested"] == 1
    for timing in (r.train_time, r.forward_time):
        assert len(timing.samples) == case.repetitions  # raw samples kept, one per timed call
        assert timing.min <= timing.median <= max(timing.samples)
        assert timing.gflops == pytest.approx(
            (r.flops_train_step if timing is r.train_time else r.flops_forward) / timing.median / 1e9, rel=1e-9)
        assert timing.pct_peak == pytest.approx(timing.gflops / 10.0 * 100, rel=1e-9)  # vs the given calibration
    names = {m.name: m for m in r.memory}
    assert {"host_peak_rss_delta", "host_maxrss_delta", "activation_estimate", "tracemalloc_peak"} <= set(names)
    G, S = 4, 2  # an LSTM's gates and states
    assert names["activation_estimate"].bytes == case.batch_size * case.seq_len * case.hidden * (G + S) * 4
    assert all(m.method for m in r.memory)
    assert r.load is not None and r.load.before is not None and r.load.after is not None
    assert r.node and r.started_at and r.wall_s > 0


def test_accuracy_curve_and_held_out_evaluation(trained):
    case, r = trained
    acc = r.accuracy
    assert acc.metric == "mse" and acc.baseline_loss == pytest.approx(1 / 6, rel=1e-12)
    assert acc.curve.step == [20, 40, 60]  # every eval_every steps
    assert all(np.isfinite(acc.curve.loss)) and acc.curve.seconds == sorted(acc.curve.seconds)
    assert acc.final_loss is not None and np.isfinite(acc.final_loss)
    assert acc.final_metric == pytest.approx(acc.final_loss, rel=1e-12)  # adding: the metric is the MSE
    assert acc.solved == (acc.final_loss < 0.1 * acc.baseline_loss)
    # the held-out batches come from their own seed stream: the final loss is not the last training window's
    assert acc.final_loss != pytest.approx(acc.curve.loss[-1], rel=1e-9)


def test_same_seed_same_numbers(trained):
    case, r = trained
    again = run_case(case)
    assert again.accuracy.curve.loss == r.accuracy.curve.loss  # bit-identical: same weights, same batches
    assert again.accuracy.final_loss == r.accuracy.final_loss
    other = run_case(case.model_copy(update={"seed": case.seed + 1}))
    assert other.accuracy.curve.loss != r.accuracy.curve.loss


def test_steps_to_solve_recorded_when_solved():
    # adding, T=6, H=16, lr 1e-2: the held-out MSE falls below 10 % of the baseline (0.0167) well within 400 steps
    # (measured: held-out MSE 5.5e-4 after 400 steps, solved at step 150); the first passing check gives steps/seconds.
    case = tiny(seq_len=6, hidden=16, batch_size=32, lr=1e-2, steps=400, eval_every=50, eval_batches=2,
                repetitions=1, warmup=0)
    r = run_case(case)
    assert r.status == "ok", r.reason
    acc = r.accuracy
    assert acc.solved, acc.final_loss
    assert acc.steps_to_solve in acc.curve.step
    assert acc.seconds_to_solve == acc.curve.seconds[acc.curve.step.index(acc.steps_to_solve)]


# adding, T=10, GRU H=16, Adam lr 0.02, batch 32, evaluation every 25 steps on 2 held-out batches. Measured (seed 0):
# held-out MSE 0.122, 0.110, 0.062, 0.0043 at steps 25..100 -> the first evaluation under the target (1/60 = 0.0167)
# is step 100; best 3.0e-4 at step 300 of 400.
SOLVES = dict(seq_len=10, hidden=16, batch_size=32, lr=0.02, steps=400, eval_every=25, eval_batches=2,
              repetitions=1, warmup=0)


@pytest.fixture(scope="module")
def solving() -> CaseResult:
    return run_case(tiny(**SOLVES), phases=("accuracy",))


def test_heldout_curve_at_every_evaluation_and_time_to_target(solving):
    r = solving
    assert r.status == "ok", r.reason
    acc = r.accuracy
    assert acc.eval_every == 25 and acc.target_loss == pytest.approx(0.1 / 6, rel=1e-12)
    h = acc.heldout
    assert h.step == acc.curve.step == list(range(25, 401, 25))  # beside the training curve, point for point
    assert h.seconds == acc.curve.seconds and len(h.loss) == len(h.metric) == len(h.step)
    assert h.metric == pytest.approx(h.loss, rel=1e-12)  # adding: the metric is the MSE
    # time-to-target is the first evaluation under the target; every earlier one is at or above it
    first = next(s for s, v in zip(h.step, h.loss) if v < acc.target_loss)
    assert acc.steps_to_target == first and all(v >= acc.target_loss for v in h.loss[:h.step.index(first)])
    assert acc.steps_to_target < SOLVES["steps"], "the case must solve before its budget to test anything"
    assert acc.seconds_to_target == h.seconds[h.step.index(first)]  # training seconds, evaluation excluded
    assert (acc.steps_to_solve, acc.seconds_to_solve) == (acc.steps_to_target, acc.seconds_to_target)
    i = min(range(len(h.loss)), key=h.loss.__getitem__)
    assert (acc.best_loss, acc.best_metric, acc.best_step) == (h.loss[i], h.metric[i], h.step[i])
    assert (acc.final_loss, acc.final_metric) == (h.loss[-1], h.metric[-1])
    assert acc.solved and not acc.stopped_at_target


def test_stop_at_target_ends_training_at_the_target(solving):
    full = solving.accuracy
    r = run_case(tiny(**SOLVES, stop_at_target=True), phases=("accuracy",))
    assert r.status == "ok", r.reason
    acc = r.accuracy
    n = full.heldout.step.index(full.steps_to_target) + 1
    assert acc.stopped_at_target and acc.steps_to_target == full.steps_to_target
    assert acc.curve.step[-1] == acc.heldout.step[-1] == full.steps_to_target  # no step after the target
    # the same run up to there, bit for bit (evaluating does not disturb training)
    assert acc.heldout.loss == full.heldout.loss[:n] and acc.curve.loss == full.curve.loss[:n]
    assert acc.final_loss == acc.heldout.loss[-1] < acc.target_loss and acc.solved


def test_unsolved_case_has_no_time_to_target(trained):
    _, r = trained  # the LSTM, 60 steps: far from the target
    acc = r.accuracy
    assert acc.heldout.step == acc.curve.step == [20, 40, 60]
    assert min(acc.heldout.loss) >= acc.target_loss
    assert acc.steps_to_target is None and acc.seconds_to_target is None and not acc.stopped_at_target
    assert acc.best_loss == min(acc.heldout.loss)


def test_unavailable_device_is_skipped_with_reason():
    r = run_case(tiny(device="cuda"))
    assert r.status == "skipped"
    assert "cuda" in r.reason.lower()
    assert r.train_time is None


def test_unimportable_plugin_is_skipped(monkeypatch):
    monkeypatch.setenv("GRU_BENCH_BACKENDS", "ghost=no_such_module_xyz:Ghost")
    r = run_case(tiny(backend="ghost"))
    assert r.status == "skipped" and "no_such_module_xyz" in r.reason


def test_backend_reason_is_skipped(faults):
    r = run_case(tiny(backend="nodevice"))
    assert r.status == "skipped" and r.reason == "device 'cpu' is not supported by this test backend"


def test_nan_loss_is_diverged(faults):
    r = run_case(tiny(backend="nan"))
    assert r.status == "diverged" and "nan" in r.reason
    assert r.train_time is None  # NaN already in the warm-up: nothing was timed
    assert r.params is not None and r.implementation  # what was known before the fault is kept


def test_divergence_during_training_keeps_timing_and_curve(faults):
    # the timing model takes 7 real steps (2 warm-up, 4 timed, 1 tracemalloc); the accuracy run rebuilds the model,
    # which then gives 20 real losses and inf at its 21st step
    r = run_case(tiny(backend="late_nan", steps=40, eval_every=5))
    assert r.status == "diverged" and "step 21" in r.reason, r.reason
    assert r.train_time is not None and len(r.train_time.samples) == 4
    assert r.accuracy.curve.step == [5, 10, 15, 20]  # the finite points before the divergence
    assert r.accuracy.final_loss is None


def test_memory_error_is_oom(faults):
    r = run_case(tiny(backend="memhog"))
    assert r.status == "oom"
    assert r.reason.startswith("_ArrayMemoryError") or r.reason.startswith("MemoryError")


def test_other_exception_is_failed_with_one_line(faults):
    r = run_case(tiny(backend="raising"))
    assert r.status == "failed"
    assert r.reason == "RuntimeError: kernel exploded"


def test_bad_case_value_is_failed_not_raised():
    r = run_case(tiny(task="adding", seq_len=1))  # the adding task needs T >= 2
    assert r.status == "failed" and "seq_len" in r.reason


@pytest.mark.parametrize("name", ["OutOfMemoryError", "ResourceExhaustedError", "MemoryError"])
def test_oom_detected_by_class_name(name):
    # torch.OutOfMemoryError and tf.errors.ResourceExhaustedError, recognised without importing either framework
    exc = type(name, (RuntimeError,), {})("CUDA out of memory. Tried to allocate 2.00 GiB")
    assert is_oom(exc)
    assert not is_oom(RuntimeError("out of patience"))
    assert exception_reason(exc) == f"{name}: CUDA out of memory. Tried to allocate 2.00 GiB"


def test_worker_process_entry(tmp_path):
    case = tiny(repetitions=2)
    req, res = tmp_path / "req.json", tmp_path / "res.json"
    req.write_text(json.dumps({"case": case.model_dump(mode="json"), "calibration": None}))
    p = subprocess.run([sys.executable, "-m", "gru_bench.worker", "--request", str(req), "--result", str(res)],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    r = CaseResult.model_validate_json(res.read_text())
    assert r.status == "ok" and r.case == case and len(r.train_time.samples) == 2
    assert not (tmp_path / "res.json.tmp").exists()


@pytest.mark.parametrize("phases", [("timing",), ("accuracy",)])
def test_one_phase_runs_alone(phases):
    r = run_case(tiny(steps=10, eval_every=5, eval_batches=1), phases=phases)
    assert r.status == "ok", r.reason
    assert (r.train_time is not None) == ("timing" in phases)  # timed steps only when asked
    assert (r.accuracy is not None) == ("accuracy" in phases)  # training run only when asked
    assert r.params and r.implementation  # built either way: parameters and provenance are known


def test_unknown_phase_is_refused():
    with pytest.raises(ValueError, match="phases"):
        run_case(tiny(), phases=("warmup",))


# ------------------------------------------------------------------- the order of the load snapshot and the windows
ORDER_CASE = dict(backend="numpy", cell="gru", variant="reset_after", task="adding", seq_len=10, hidden=6,
                  batch_size=8, warmup=1, repetitions=3, eval_every=10, eval_batches=1, threads=1)


def test_load_is_sampled_before_the_working_set_windows_with_the_timing_model_released(monkeypatch):
    """The windows are fresh processes of this case: the "after" load snapshot comes before them (they must not mark
    the case busy), after the training; when they run, no model the case built is alive."""
    events: list[str] = []
    models: list[weakref.ref] = []
    real_build = worker.build_model

    def build(case, backend, spec):
        model = real_build(case, backend, spec)
        models.append(weakref.ref(model))
        return model

    def snapshot(interval=0.2):
        events.append("snapshot")
        return [0.0, 0.0, 0.0], 0.0

    def windows(case, threads):
        gc.collect()
        events.append("windows" if all(m() is None for m in models) else "windows with a model alive")
        return [], None

    def accuracy(*args, **kwargs):
        events.append("training")
        return real_accuracy(*args, **kwargs)

    real_accuracy = worker._accuracy
    monkeypatch.setattr(worker, "build_model", build)
    monkeypatch.setattr(worker.sysload, "load_snapshot", snapshot)
    monkeypatch.setattr(worker.memory_figures, "working_set", windows)
    monkeypatch.setattr(worker, "_accuracy", accuracy)
    r = worker.run_case(Case(**ORDER_CASE, steps=20))
    assert r.status == "ok", r.reason
    assert events == ["snapshot", "training", "snapshot", "windows"]
    assert len(models) == 2  # the timing model and the training model
    assert r.load is not None and not r.load.busy

    events.clear()
    r = worker.run_case(Case(**ORDER_CASE), phases=("timing",))  # --jobs' timing phase, and ab's
    assert r.status == "ok" and events == ["snapshot", "snapshot", "windows"]
    events.clear()
    worker.run_case(Case(**ORDER_CASE, steps=20), phases=("accuracy",))  # a training phase has no windows
    assert events == ["snapshot", "training", "snapshot"]
