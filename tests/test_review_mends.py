"""Mends from a review whose tests have no file of their own here: the worker's load snapshot and working-set
windows (worker.py)."""
from __future__ import annotations

import gc
import weakref

from gru_bench import worker
from gru_bench.case import Case

TINY = dict(backend="numpy", cell="gru", variant="reset_after", task="adding", seq_len=10, hidden=6, batch_size=8,
            warmup=1, repetitions=3, eval_every=10, eval_batches=1, threads=1)


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
    r = worker.run_case(Case(**TINY, steps=20))
    assert r.status == "ok", r.reason
    assert events == ["snapshot", "training", "snapshot", "windows"]
    assert len(models) == 2  # the timing model and the training model
    assert r.load is not None and not r.load.busy

    events.clear()
    r = worker.run_case(Case(**TINY), phases=("timing",))  # --jobs' timing phase, and ab's
    assert r.status == "ok" and events == ["snapshot", "snapshot", "windows"]
    events.clear()
    worker.run_case(Case(**TINY, steps=20), phases=("accuracy",))  # a training phase has no windows
    assert events == ["snapshot", "training", "snapshot"]
