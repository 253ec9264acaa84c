"""Sweeps through Ray: the resource rules, the same cases and deterministic metrics as the local executor, a lost
worker retried (then failed), a hung case cancelled at its time limit, Ctrl-C then resume, the CLI wiring, and the
install hint without Ray.

One local Ray instance (2 CPUs, no dashboard) serves the whole file: Ray takes tens of seconds to start on a
2-core machine. Its workers inherit this process's environment at start, so the fault backends of
``fault_backend.py`` and ``CrashOnceBackend`` below are registered before ``ray.init``.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

import fault_backend
from gru_bench.backends.numpy_backend import NumpyBackend
from gru_bench.case import Case
from gru_bench.cli import main
from gru_bench.executors.local import LocalExecutor
from gru_bench.journal import journal_path_for
from gru_bench.runner import execute, new_run, resume
from gru_bench.schema import CaseResult
from gru_bench.storage import load_record
from gru_bench.suite import load_suite

HERE = Path(__file__).resolve().parent
CRASH_MARKER_ENV = "GRU_BENCH_TEST_CRASH_MARKER"
QUIET = Console(file=open(os.devnull, "w"))
TINY = dict(task="adding", seq_len=5, hidden=4, batch_size=4, warmup=1, repetitions=2, options={"threads": 1})


class CrashOnceBackend(NumpyBackend):
    """The NumPy backend whose worker kills itself (SIGKILL) in its first training step, once per marker file."""

    name = "crashonce"

    def train_step(self, model, x, y) -> float:
        marker = Path(os.environ[CRASH_MARKER_ENV])
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
            time.sleep(60)
        return super().train_step(model, x, y)


def case(backend: str = "numpy", **kw) -> Case:
    d = dict(backend=backend, cell="gru", variant="reset_after", **TINY)
    d.update(kw)
    return Case(**d)


def write_suite(path: Path, **keys) -> Path:
    base = dict(name="tiny", backend="numpy", cell=["gru", "lstm"], variant=["reset_after", "reset_before"],
                task="adding", seq_len=5, hidden=4, batch_size=4, steps=20, eval_every=10, warmup=1,
                repetitions=2, threads=1, timeout_s=120)
    base.update(keys)
    path.write_text("\n".join(f"{k} = {json.dumps(v)}" for k, v in base.items()) + "\n")
    return path


def cpus_free_again(ray, expected: float, within_s: float = 30.0) -> bool:
    """True once every CPU of the instance is free (no task left running), polling up to ``within_s``."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU", 0) == expected:
            return True
        time.sleep(0.2)
    return False


@pytest.fixture(scope="module")
def ray_instance(tmp_path_factory):
    ray = pytest.importorskip("ray")
    marker = tmp_path_factory.mktemp("ray") / "crashed-once"
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
           "GRU_BENCH_BACKENDS": f"{fault_backend.PLUGIN_VALUE},crashonce=test_ray:CrashOnceBackend",
           CRASH_MARKER_ENV: str(marker), "TF_CPP_MIN_LOG_LEVEL": "2"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING)
    try:
        yield ray
    finally:
        ray.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# ------------------------------------------------------------------------------------------- no cluster needed
def test_resource_requests_keep_timing_cases_apart():
    from gru_bench.executors.ray import case_resources

    assert case_resources(case(device="cuda", options={"threads": 2}), 16) == {"num_cpus": 2, "num_gpus": 1}
    assert case_resources(case(device="cuda:3"), 16) == {"num_cpus": 1, "num_gpus": 1}
    assert case_resources(case(options={"threads": 2}), 16) == {"num_cpus": 16, "num_gpus": 0}  # a whole node
    assert case_resources(case(repetitions=0, options={"threads": 2}), 16) == {"num_cpus": 2, "num_gpus": 0}


def test_ray_executor_module_imports_no_ray_and_names_the_real_package():
    import gru_bench.executors.ray as module

    src = Path(module.__file__).read_text()
    assert "\nimport ray" not in src and "\nfrom ray" not in src  # imported inside functions only
    ray = pytest.importorskip("ray")
    assert module._import_ray() is ray  # `import ray` inside gru_bench/executors/ray.py is the top-level package


def test_without_ray_the_cli_says_how_to_install_it(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    assert main(["run", "--executor", "ray", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'gru-bench[ray]'" in err and "--executor ray" in err
    assert not list(tmp_path.iterdir())  # nothing ran


@pytest.mark.parametrize("argv, needle", [
    (["--ray-address", "auto"], "--ray-address with --executor local: expected --executor ray"),
    (["--executor", "ray", "--ray-cpus-per-case", "0"], "cpus_per_case=0: expected a positive whole number"),
])
def test_ray_options_misused_exit_2(argv, needle, capsys, tmp_path):
    pytest.importorskip("ray")
    assert main(["run", *argv, "--out", str(tmp_path)]) == 2
    assert needle in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- on a Ray instance
@pytest.mark.ray
@pytest.mark.slow
def test_same_cases_and_metrics_as_the_local_executor(ray_instance, tmp_path):
    from gru_bench.executors.ray import RayExecutor

    suite = load_suite(str(write_suite(tmp_path / "tiny.toml", variant="reset_before")))
    local = execute(new_run(suite, tmp_path / "local", calibrate=False), LocalExecutor(), QUIET, progress=False)
    ex = RayExecutor(cpus_per_case=1)  # packs two cases at once on the 2-CPU instance
    remote = execute(new_run(suite, tmp_path / "ray", calibrate=False), ex, QUIET, progress=False)

    assert not local.interrupted and not remote.interrupted
    assert [r.case_id for r in remote.record.cases] == [c.case_id for c in suite.cases()]  # plan order, once each
    assert {r.case_id for r in remote.record.cases} == {r.case_id for r in local.record.cases}
    by_id = {r.case_id: r for r in local.record.cases}
    for r in remote.record.cases:
        ref = by_id[r.case_id]
        assert r.status == ref.status == "ok", (r.reason, ref.reason)
        assert r.case == ref.case
        for key in ("params", "params_backend", "flops_forward", "flops_train_step", "implementation"):
            assert getattr(r, key) == getattr(ref, key), key
        # same seeds, one BLAS thread each: the same float operations in the same order (tolerance 1e-12 rel.)
        assert r.accuracy.curve.step == ref.accuracy.curve.step == [10, 20]
        np.testing.assert_allclose(r.accuracy.curve.loss, ref.accuracy.curve.loss, rtol=1e-12, atol=0)
        np.testing.assert_allclose(r.accuracy.final_loss, ref.accuracy.final_loss, rtol=1e-12, atol=0)
        assert r.node == socket.gethostname()
        assert any("shared node" in w and "1 of the 2 CPUs" in w for w in r.warnings)
    saved = load_record(remote.record_path)  # the record on disk: machines per node, as report/compare read it
    assert set(saved.machines) == {socket.gethostname()}
    manifest = saved.machines[socket.gethostname()]
    assert manifest["cores_logical"] >= 1 and manifest["ray_resources"]["CPU"] == 2
    assert not saved.machines.get("error")
    assert cpus_free_again(ray_instance, 2.0)


@pytest.mark.ray
@pytest.mark.slow
def test_lost_worker_is_retried_once_then_failed_and_a_hang_times_out(ray_instance):
    from gru_bench.executors.ray import RayExecutor

    marker = Path(os.environ[CRASH_MARKER_ENV])
    marker.unlink(missing_ok=True)
    cases = [case("crashonce"), case("segfault"), case("hang", timeout_s=3)]
    got: list[CaseResult] = []
    started: list[Case] = []
    RayExecutor(cpus_per_case=1).run(cases, None, got.append, lambda: False, started.append)

    assert sorted(r.case_id for r in got) == sorted(c.case_id for c in cases)  # one result per case
    res = {r.case.backend: r for r in got}
    crash, segv, hang = res["crashonce"], res["segfault"], res["hang"]
    assert marker.exists()  # the first attempt did kill its worker
    assert crash.status == "ok" and crash.train_time is not None
    assert any(w.startswith("retried: the first attempt was lost (WorkerCrashedError") for w in crash.warnings)
    assert segv.status == "failed"
    assert segv.reason.startswith("the Ray worker was lost on both attempts: WorkerCrashedError on ")
    assert segv.params == crash.params and segv.flops_forward == crash.flops_forward  # spec.py costs kept
    assert started.count(cases[0]) == 2 and started.count(cases[1]) == 2 and started.count(cases[2]) == 1
    assert hang.status == "timeout" and "time limit of 3 s" in hang.reason
    assert 3.0 <= hang.wall_s < 15.0  # counted from the task's start, cancelled promptly
    assert cpus_free_again(ray_instance, 2.0)  # the hung worker was killed, not left running


class InterruptAfterFirst:
    """The Ray executor with a Ctrl-C (SIGINT to this process) as soon as the first case is journaled."""

    name = "ray"

    def __init__(self) -> None:
        from gru_bench.executors.ray import RayExecutor

        self.inner = RayExecutor()

    def run(self, cases, calibration, on_result, should_stop, on_start=None):
        def then_interrupt(result):
            on_result(result)
            os.kill(os.getpid(), signal.SIGINT)

        self.inner.run(cases, calibration, then_interrupt, should_stop, on_start)

    def machines(self):
        return self.inner.machines()


@pytest.mark.ray
@pytest.mark.slow
def test_ctrl_c_cancels_outstanding_tasks_and_the_journal_resumes(ray_instance, tmp_path):
    from gru_bench.executors.ray import RayExecutor

    suite = load_suite(str(write_suite(tmp_path / "tiny.toml", variant="reset_after", steps=0)))
    plan = suite.cases()
    assert len(plan) == 2
    first = execute(new_run(suite, tmp_path, calibrate=False), InterruptAfterFirst(), QUIET, progress=False)
    assert first.interrupted
    assert len(first.record.cases) == 1  # one case at a time (whole node each): the rest were cancelled
    assert journal_path_for(first.record_path).exists()
    assert cpus_free_again(ray_instance, 2.0)  # nothing left running or queued on the cluster

    done = resume(first.record.run_id, tmp_path, RayExecutor(), QUIET, progress=False)
    assert not done.interrupted and done.record.finished is not None
    assert [r.case_id for r in done.record.cases] == [c.case_id for c in plan]  # every case once, plan order
    kept = first.record.cases[0]
    again = next(r for r in done.record.cases if r.case_id == kept.case_id)
    assert again.started_at == kept.started_at and again.train_time == kept.train_time  # kept, not rerun
    assert all(r.status == "ok" for r in done.record.cases)
    assert not journal_path_for(done.record_path).exists()


@pytest.mark.ray
@pytest.mark.slow
def test_cli_runs_a_suite_through_ray(ray_instance, tmp_path, capsys):
    path = write_suite(tmp_path / "one.toml", cell="lstm", steps=0)
    assert main(["run", str(path), "--executor", "ray", "--out", str(tmp_path / "out"), "--no-progress"]) == 0
    (record_path,) = (tmp_path / "out").glob("*/*.json")
    rec = load_record(record_path)
    assert [r.status for r in rec.cases] == ["ok"] and rec.cases[0].node == socket.gethostname()
    assert rec.machines[socket.gethostname()]["calibration"]["gemm_gflops"] > 0  # this node's own peak
