"""`run --jobs N`: timing phases alone first, then the training phases N at a time on one thread each; every case
ends as one result holding both phases, with the same training curve as when run whole."""
from __future__ import annotations

import threading
import time

from gru_bench.case import Case
from gru_bench.executors import local
from gru_bench.executors.local import LocalExecutor, merge_phases
from gru_bench.worker import run_case

TINY = dict(backend="numpy", task="adding", seq_len=10, hidden=6, batch_size=8, warmup=1,
            repetitions=3, steps=40, eval_every=10, eval_batches=1, lr=0.02, options={"threads": 1})


def _cases() -> list[Case]:
    variants = {"gru": "reset_after", "lstm": "standard"}
    return [Case(cell=cell, variant=variants[cell], seed=seed, **TINY) for cell in variants for seed in (0, 1)] + \
        [Case(cell="gru", variant="reset_after", seed=5, **{**TINY, "steps": 0})]


def test_jobs_runs_timing_alone_then_training_in_parallel_and_merges(monkeypatch):
    calls: list[tuple[str, tuple | None, int | None, float, float]] = []
    lock = threading.Lock()
    real = local.run_isolated

    def spy(case, calibration=None, should_stop=lambda: False, poll_s=0.2, python=None, extra_env=None, phases=None,
            threads=None):
        t0 = time.monotonic()
        # in this process (no subprocess) keeps the test quick; run_isolated's own paths are tested elsewhere
        result = run_case(case, calibration, phases or ("timing", "accuracy"), threads)
        with lock:
            calls.append((case.case_id, tuple(phases) if phases else None, threads, t0, time.monotonic()))
        return result

    monkeypatch.setattr(local, "run_isolated", spy)
    got = []
    LocalExecutor(jobs=2).run(_cases(), None, got.append, lambda: False)
    assert real is not spy
    cases = _cases()
    assert sorted(r.case_id for r in got) == sorted(c.case_id for c in cases), "one result per case"
    timing = [c for c in calls if c[1] != ("accuracy",)]
    training = [c for c in calls if c[1] == ("accuracy",)]
    assert len(timing) == 5 and len(training) == 4
    assert all(c[2] == 1 for c in training), "training phases run on one thread"
    assert max(c[4] for c in timing) <= min(c[3] for c in training), "no training phase overlaps a timing phase"
    for r in got:
        assert r.status == "ok", r.reason
        assert r.train_time is not None
        if r.case.steps:
            assert r.accuracy is not None and r.provenance["accuracy_run"]["jobs"] == 2
            whole = run_case(r.case)  # the same case run whole, in one phase pair, on its own thread count
            assert r.accuracy.curve.loss == whole.accuracy.curve.loss, "training is the same computation"
            assert any("--jobs 2" in w for w in r.warnings)
        else:
            assert r.accuracy is None and "accuracy_run" not in r.provenance


def test_merge_keeps_the_worse_status_and_both_sides():
    case = Case(cell="gru", variant="reset_after", seed=0, **TINY)
    timing = run_case(case, phases=("timing",))
    training = timing.model_copy(update={"status": "diverged", "reason": "loss nan at step 3", "warnings": ["w"],
                                         "train_time": None})
    merged = merge_phases(timing, training, jobs=3)
    assert merged.status == "diverged" and merged.reason == "loss nan at step 3"
    assert merged.train_time == timing.train_time, "the figures come from the timing phase"
    assert "w" in merged.warnings and merged.wall_s == timing.wall_s + training.wall_s


def test_one_job_or_one_training_case_runs_cases_whole(monkeypatch):
    seen = []
    monkeypatch.setattr(local, "run_isolated",
                        lambda case, cal, stop, poll, py, env=None, phases=None, threads=None: seen.append(phases) or
                        run_case(case))
    LocalExecutor(jobs=1).run(_cases()[:2], None, lambda r: None, lambda: False)
    LocalExecutor(jobs=4).run(_cases()[:1], None, lambda r: None, lambda: False)
    assert seen == [None, None, None]
